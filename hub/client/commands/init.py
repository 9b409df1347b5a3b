"""``spime init DIR``: scaffold a spime.toml for the files in a folder."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from hub.client.common import EXIT_OK, UsageError, add_json_option, emit
from hub.errors import HubError
from hub.localfiles import not_replaceable, replacing
from hub.manifest import MANIFEST_NAME, parse_manifest, safe_relative_path

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
    if target.is_symlink() or target.exists():
        if not args.force:
            raise UsageError(f"{target} already exists (use --force to overwrite)")
        if problem := not_replaceable(target):
            raise UsageError(problem)
    name = args.name or _slugify(folder.resolve().name)
    text = scaffold(folder, name, args.license, args.title or _titleize(name),
                    args.licensor or _user())
    try:
        manifest = parse_manifest(text)
    except HubError as exc:
        raise UsageError(str(exc)) from exc
    folder.mkdir(parents=True, exist_ok=True)
    with replacing(target) as fh:  # a link there is replaced, never written through
        fh.write(text.encode("utf-8"))
    emit(args, {"path": str(target), "manifest": manifest.to_dict()},
         lambda d: f"wrote {d['path']}; add your files, edit it, then `spime push {folder}`")
    return EXIT_OK


def scaffold(folder: Path, name: str, license_: str, title: str, licensor: str) -> str:
    """The text of a new spime.toml listing the meshes and OpenSCAD file found in ``folder``.

    Raises:
        UsageError: a file name a design may not hold, or an option that is not valid UTF-8.
    """
    found = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
    meshes = [p.name for p in found if p.suffix.lower() in _MESH_SUFFIXES] or [f"{name}.stl"]
    scad = next((p.name for p in found if p.suffix.lower() == ".scad"), "")
    for listed in [*meshes, scad] if scad else meshes:
        _check_listable(folder, listed)
    parts = "".join(
        f'\n[[parts]]\nname = "{_esc(Path(m).stem, "the file name")}"\n'
        f'files = ["{_esc(m, "the file name")}"]\nmaterial = "PLA"\nquantity = 1\n'
        for m in meshes)
    openscad = (f'\n[openscad]\nsource = "{_esc(scad, "the file name")}"\nparameters = {{}}\n'
                if scad else "")
    return _TEMPLATE.format(name=_esc(name, "--name"), title=_esc(title, "--title"),
                            license=_esc(license_, "--license"),
                            licensor=_esc(licensor, "--licensor"), parts=parts, openscad=openscad)


def _check_listable(folder: Path, name: str) -> None:
    """Refuse a file the manifest could not list, naming it (not the manifest field)."""
    try:
        _esc(name, "the file name")
        safe_relative_path(name)
    except (HubError, UsageError) as exc:
        raise UsageError(f"cannot list {str(folder / name)!r} in {MANIFEST_NAME}: {exc}; "
                         "rename the file") from exc


# TOML basic strings: these by their short escape, other controls (U+0000-U+001F, U+007F) as \u and four hex digits.
_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
                 "\r": "\\r"}


def _esc(text: str, what: str) -> str:
    """``text`` escaped for a TOML basic string ("...").

    Raises:
        UsageError: ``text`` holds a byte that is not UTF-8 (Python reads it as a lone
            surrogate, which no TOML string can hold); ``what`` names where it came from.
    """
    if any("\ud800" <= c <= "\udfff" for c in text):
        raise UsageError(f"{what} {text!r} is not valid UTF-8, so spime.toml cannot hold it")
    return "".join(_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04X}" if c < " " or c == "\x7f" else c)
                   for c in text)


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
