"""Every slicer the bridge knows, by name. Add another (CuraEngine, OrcaSlicer) as a module
implementing `slicer_bridge.base.Slicer` and one line here; callers pick by name.
"""

from __future__ import annotations

from slicer_bridge.base import Slicer
from slicer_bridge.prusaslicer import PrusaSlicer

__all__ = ["SLICERS"]

SLICERS: dict[str, Slicer] = {PrusaSlicer.name: PrusaSlicer()}
