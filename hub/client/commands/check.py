"""``spime check FILE [--printer PROFILE] [--json] [--repair -o OUT]``: a local pre-flight.

Runs the same printability check the hub runs on every pushed mesh and the node
agent runs before every job. Exit 0 when the mesh is printable, 1 when a finding
is an error, 2 for a usage error (missing file, unknown profile, bad options).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.client.common import EXIT_OK, EXIT_REFUSED, UsageError, add_json_option, emit, log
from hub.client.local import read_local_file

if TYPE_CHECKING:
    from slicer_bridge.printability import CheckResult
    from slicer_bridge.profiles import PrinterProfile

# slicer_bridge (numpy, scipy, trimesh: ~0.5 s, ~80 MB) is imported only when `check`
# runs, so the other `spime` commands start fast.

_MAX_PROFILE_BYTES = 1_000_000  # what slicer_bridge.profiles reads of an .ini


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime check``."""
    p = subparsers.add_parser(
        "check", help="check whether a mesh file can be printed (locally, no hub needed)",
        description="Printability pre-flight: watertight, winding, bodies, build volume, "
                    "overhangs, thin walls, units. Exit 0 printable, 1 not printable.")
    p.add_argument("file", type=Path, help="STL, OBJ, PLY or 3MF file")
    p.add_argument("--printer", metavar="PROFILE", default=None,
                   help="printer profile name (e.g. prusa_mk3s) or a PrusaSlicer .ini path; "
                        "default: 250 x 210 x 210 mm, 0.4 mm nozzle")
    p.add_argument("--repair", action="store_true",
                   help="repair what can be repaired (reported) and write it with -o")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="where --repair writes the repaired mesh (binary STL)")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the file, print the report, return 0 (printable) or 1 (not printable).

    Raises:
        UsageError: The file does not exist, the profile is unknown, or -o is
            missing with --repair (or given without it).
    """
    if not args.file.is_file():
        raise UsageError(f"{args.file}: no such file")
    if args.repair != (args.output is not None):
        raise UsageError("--repair and -o OUT go together: --repair -o fixed.stl")
    from slicer_bridge.mesh_io import write_binary_stl
    from slicer_bridge.printability import check_path

    profile = _profile(args.printer)
    log(f"spime: checking {args.file} for {profile.name if profile else 'the default printer'}")
    result = check_path(args.file, profile, repair=args.repair)
    if args.repair and result.report.faces:
        write_binary_stl(args.output, result.vertices, result.faces)
        log(f"spime: wrote the repaired mesh to {args.output}")
    emit(args, _document(result, args.output), _human)
    return EXIT_OK if result.report.ok else EXIT_REFUSED


def _profile(name: str | None) -> PrinterProfile | None:
    from slicer_bridge.base import ProfileError
    from slicer_bridge.profiles import load_profile, parse_profile

    if name is None:
        return None
    path = Path(name)
    try:
        if path.suffix != ".ini" and not path.exists():
            return load_profile(name)  # a shipped profile's short name
        # A path the user gave: read here, so a pipe or device is refused, never read (or opened).
        data = read_local_file(path, _MAX_PROFILE_BYTES, "the printer profile")
        if data is None:
            raise UsageError(f"the printer profile {path} does not exist")
        return parse_profile(data.decode("utf-8", errors="replace"), path.resolve(), hashlib.sha256(data).hexdigest())
    except ProfileError as exc:
        raise UsageError(str(exc)) from exc


def _document(result: CheckResult, output: Path | None) -> dict[str, Any]:
    doc = result.report.to_dict()
    if output is not None and result.report.faces:
        doc["repaired_path"] = str(output)
    return doc


def _human(doc: dict[str, Any]) -> str:
    size = " x ".join(f"{x:g}" for x in doc["extents_mm"])
    verdict = "printable" if doc["ok"] else "NOT printable"
    head = (f"{doc['path']}: {verdict} ({doc['faces']:,} faces, {doc['bodies']} bodies, "
            f"{size} mm, best orientation {doc['best_orientation'] or '-'})")
    lines = [head]
    lines += [f"  {f['severity']:<7} {f['code']}: {f['message']}" for f in doc["findings"]]
    return "\n".join(lines)

