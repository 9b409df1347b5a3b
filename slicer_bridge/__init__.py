"""The slicer bridge: printability checks, parametric rendering, slicing and a slice cache.

It imports nothing else of ours; the node agent and the hub call it.
"""

from slicer_bridge.base import (
    GcodeMetadata,
    ParameterError,
    ProfileError,
    RenderError,
    Slicer,
    SlicerBridgeError,
    SliceRequest,
    SlicerError,
    SliceResult,
    ToolError,
    ToolNotFound,
)
from slicer_bridge.cache import CacheError, SliceCache, slice_cached
from slicer_bridge.gcode_meta import GcodeMetadataError, parse_gcode_metadata
from slicer_bridge.openscad import (
    Parameter,
    ParameterSchema,
    ParamKind,
    parse_parameters,
    render_scad,
    validate,
)
from slicer_bridge.profiles import PrinterProfile, list_profiles, load_profile
from slicer_bridge.registry import SLICERS
from slicer_bridge.render_cache import RenderCache

__all__ = [
    "SLICERS",
    "CacheError",
    "GcodeMetadata",
    "GcodeMetadataError",
    "ParamKind",
    "Parameter",
    "ParameterError",
    "ParameterSchema",
    "PrinterProfile",
    "ProfileError",
    "RenderCache",
    "RenderError",
    "SliceCache",
    "SliceRequest",
    "SliceResult",
    "Slicer",
    "SlicerBridgeError",
    "SlicerError",
    "ToolError",
    "ToolNotFound",
    "list_profiles",
    "load_profile",
    "parse_gcode_metadata",
    "parse_parameters",
    "render_scad",
    "slice_cached",
    "validate",
]
