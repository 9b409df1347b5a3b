"""The hub process's garbage collector, tuned for a long-running server.

CPython collects its youngest objects every 700 allocations and, every 100 of those, every object it
tracks: with the composed hub, its caches and a few thousand sessions that full collection pauses
each call in flight for tens of milliseconds (the record benchmark's p99 went from ~35 ms to 110-130
ms in one call out of fifty). :func:`tune_gc` freezes what start-up made (it is never garbage, so no
collection looks at it again) and collects young objects every 50,000 allocations: full collections
then come a thousand times less often. Garbage without cycles is freed at once as ever; only cyclic
garbage waits longer, a few MB at most.
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "tune_gc"]

GC_THRESHOLDS = (50_000, 20, 50)
"""gc.set_threshold: allocations before a young collection; young collections before a middle one;
middle ones before a full one."""


def tune_gc() -> None:
    """Call once the server is up: collect, freeze the survivors, raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
