"""``spime init DIR``: scaffold a spime.toml for the files in a folder."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from hub.client.common import EXIT_OK, UsageError, add_json_option, emit
from hub.errors import HubError
from hub.manifest import MANIFEST_NAME, parse_manifest

__all__ = ["register", "run", "scaffold"]

_MESH_SUFFIXES = (".stl", ".3mf", ".obj", ".step", ".stp")

_TEMPLATE = '''# Spimeforge design manifest (fields follow Open Know-How).
name = "{name}"
title = "{title}"
description = """
Describe what this is, how to make it and how to use it.
"""
license = "{license}"   # an SPDX expression, e.g. CC-BY-SA-4.0 or CERN-OHL-S-2.0
licensor = "{licensor}"
version = "0.1.0"
function = "What the object does."
tags = []
contributors = []
documentation-language = "en"
{parts}{openscad}'''


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime init``."""
    p = subparsers.add_parser("init", help="scaffold a spime.toml in a design folder")
    p.add_argument("dir", type=Path, help="design folder (created if missing)")
    p.add_argument("--name", help="design slug (default: the folder name)")
    p.add_argument("--license", default="CC-BY-SA-4.0", help="SPDX expression")
    p.add_argument("--title", help="human title (default: from the name)")
    p.add_argument("--licensor", default="", help="who licenses it (default: $USER)")
    p.add_argument("--force", action="store_true", help="overwrite an existing spime.toml")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the scaffold and check it parses."""
    folder: Path = args.dir
    target = folder / MANIFEST_NAME
    if target.exists() and not args.force:
        raise UsageError(f"{target} already exists (use --force to overwrite)")
    name = args.name or _slugify(folder.resolve().name)
    text = scaffold(folder, name, args.license, args.title or _titleize(name),
                    args.licensor or _user())
    try:
        manifest = parse_manifest(text)
    except HubError as exc:
        raise UsageError(str(exc)) from exc
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    emit(args, {"path": str(target), "manifest": manifest.to_dict()},
         lambda d: f"wrote {d['path']}; add your files, edit it, then `spime push {folder}`")
    return EXIT_OK


def scaffold(folder: Path, name: str, license_: str, title: str, licensor: str) -> str:
    """The text of a new spime.toml listing the meshes and OpenSCAD file found in ``folder``."""
    found = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
    meshes = [p.name for p in found if p.suffix.lower() in _MESH_SUFFIXES] or [f"{name}.stl"]
    scad = next((p.name for p in found if p.suffix.lower() == ".scad"), "")
    parts = "".join(
        f'\n[[parts]]\nname = "{Path(m).stem}"\nfiles = ["{m}"]\nmaterial = "PLA"\nquantity = 1\n'
        for m in meshes)
    openscad = f'\n[openscad]\nsource = "{scad}"\nparameters = {{}}\n' if scad else ""
    return _TEMPLATE.format(name=name, title=_esc(title), license=_esc(license_),
                            licensor=_esc(licensor), parts=parts, openscad=openscad)


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug if len(slug) >= 2 else f"design-{slug}".strip("-")


def _titleize(slug: str) -> str:
    return slug.replace("-", " ").capitalize()


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
