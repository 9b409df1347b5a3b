"""File paths of a revision that check out on Linux, macOS and Windows.

Pure: rules over strings, no file system. A revision's paths are relative POSIX
paths ("parts/base.stl"). Each path must be writable as is on all three systems,
and the set of paths must stay distinct where names are compared loosely:

* per path: not empty, at most ``MAX_PATH_CHARS`` characters and ``MAX_DEPTH``
  components; not absolute (``/x``, ``C:x``); no backslash; no empty, ``.`` or
  ``..`` component; each component at most ``MAX_COMPONENT_BYTES`` UTF-8 bytes
  (ext4, APFS; NTFS counts UTF-16 units, never more); no control (Cc), format
  (Cf: bidi overrides, zero-width) or surrogate characters; none of Windows'
  forbidden characters ``<>:"|?*``; no component ending in a dot or a space
  (Windows strips them); no Windows device name (CON, PRN, AUX, NUL, COM1-9,
  LPT1-9, CONIN$, CONOUT$, also with an extension such as ``nul.stl``).
* per revision: no two paths equal after Unicode case folding and NFC/NFD
  normalisation (macOS and Windows would merge them), no path that is both a
  file and a folder, no folder spelled two ways, and none of the names the
  client keeps for itself (``spime.toml``, the ``.spime`` folder).

Each refusal is an :class:`~hub.errors.InvalidArgument` whose reason names the
rule (``PATH_RESERVED_NAME`` …), whose field names the path's request field,
and whose message names the path and the rule.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from hub.errors import InvalidArgument

__all__ = [
    "CLIENT_RESERVED",
    "MAX_COMPONENT_BYTES",
    "MAX_DEPTH",
    "MAX_PATH_CHARS",
    "PathProblem",
    "check_path",
    "check_paths",
    "fold",
    "path_problem",
]

MAX_PATH_CHARS = 240  # leaves room for a target folder under Windows' 260-character MAX_PATH
MAX_DEPTH = 16
MAX_COMPONENT_BYTES = 255
# Names the client writes itself next to a revision's files (folded).
CLIENT_RESERVED = ("spime.toml", ".spime")

_DEVICE = re.compile(r"^(con|prn|aux|nul|conin\$|conout\$|(com|lpt)[0-9¹²³])\Z")
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True, slots=True)
class PathProblem:
    """Why one path is refused: the rule's reason code and a sentence naming it."""

    path: str
    rule: str
    message: str


def fold(path: str) -> str:
    """The key under which macOS and Windows treat two names as the same.

    Canonical caseless matching (Unicode §3.13): NFD, case fold, then NFC.
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", path).casefold())


def _bad_character(text: str) -> str:
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Cs"):
            return f"U+{ord(char):04X} ({unicodedata.name(char, 'control or format character')})"
    return ""


def _text_problem(path: str) -> tuple[str, str] | None:
    if not path:
        return "PATH_EMPTY", "it is empty"
    if "\x00" in path:
        return "PATH_CONTROL_CHARACTER", "it contains NUL"
    bad = _bad_character(path)
    if bad:
        return "PATH_CONTROL_CHARACTER", f"it contains the control, bidi or format character {bad}"
    if "\\" in path:
        return "PATH_BACKSLASH", "it contains a backslash (use '/')"
    if path.startswith("/") or _DRIVE.match(path):
        return "PATH_ABSOLUTE", "it is absolute"
    return None


def _structure_problem(part: str) -> tuple[str, str] | None:
    if part == "..":
        return "PATH_PARENT_REFERENCE", "it contains '..'"
    if part in ("", "."):
        return "PATH_EMPTY_COMPONENT", "it has an empty or '.' component"
    return None


def _portability_problem(part: str) -> tuple[str, str] | None:
    if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
        return "PATH_COMPONENT_TOO_LONG", f"the name {part[:40]!r}… is longer than {MAX_COMPONENT_BYTES} bytes"
    forbidden = sorted(set(part) & _WINDOWS_FORBIDDEN)
    if forbidden:
        return "PATH_WINDOWS_FORBIDDEN_CHARACTER", f"the name {part!r} contains {''.join(forbidden)!r}, which Windows forbids"
    if part[-1] in ". ":
        return "PATH_TRAILING_DOT_OR_SPACE", f"the name {part!r} ends in a dot or a space, which Windows drops"
    if _DEVICE.match(part.split(".")[0].rstrip(" ").casefold()):
        return "PATH_RESERVED_NAME", f"the name {part!r} is a reserved Windows device name"
    return None


def _size_problem(path: str, parts: list[str]) -> tuple[str, str] | None:
    if len(path) > MAX_PATH_CHARS:
        return "PATH_TOO_LONG", f"it is longer than {MAX_PATH_CHARS} characters"
    if len(parts) > MAX_DEPTH:
        return "PATH_TOO_DEEP", f"it is more than {MAX_DEPTH} folders deep"
    return None


def path_problem(path: object) -> PathProblem | None:
    """The first rule one path breaks, or None when it checks out everywhere.

    Rules that keep a path safe anywhere (NUL and control characters, backslashes,
    absolute paths, ``..``) are checked before those that keep it portable, so the
    rule reported for a path that breaks several is the most serious one.

    Args:
        path: a path as written in a push or a manifest (anything: it is checked).
    """
    if not isinstance(path, str):
        return PathProblem(repr(path)[:80], "PATH_NOT_TEXT", "it is not text")
    found = _text_problem(path)
    parts = path.split("/") if found is None else []
    found = found or next(filter(None, map(_structure_problem, parts)), None)
    found = found or next(filter(None, map(_portability_problem, parts)), None)
    found = found or _size_problem(path, parts)
    return None if found is None else PathProblem(path, found[0], found[1])


def _refuse(path: str, rule: str, message: str, field: str) -> InvalidArgument:
    return InvalidArgument(
        f"file path {path!r:.300} is not allowed: {message}; use a relative path that checks out "
        "on Linux, macOS and Windows", reason=rule, field=field)


def check_path(path: object, field: str = "path") -> str:
    """Check one path (see the module docstring for the rules).

    Args:
        path: the path.
        field: the request field it came from, for the error's details.

    Returns:
        The path, unchanged.

    Raises:
        InvalidArgument: naming the path and the rule it breaks.
    """
    problem = path_problem(path)
    if problem is not None:
        raise _refuse(problem.path, problem.rule, problem.message, field)
    assert isinstance(path, str)
    return path


def _folders(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def check_paths(paths: Sequence[object], field: str = "files", *,
                reserved: Sequence[str] = CLIENT_RESERVED) -> tuple[str, ...]:
    """Check every path of a revision, alone and as a set.

    Args:
        paths: the revision's file paths, in request order.
        field: the repeated request field they came from (``files`` → ``files[3].path``).
        reserved: folded names no path may take as its first component.

    Returns:
        The paths, unchanged.

    Raises:
        InvalidArgument: naming the path (and the one it collides with) and the rule.
    """
    files: dict[str, str] = {}
    checked = [check_path(p, f"{field}[{i}].path") for i, p in enumerate(paths)]
    for index, path in enumerate(checked):
        where, key = f"{field}[{index}].path", fold(path)
        if key.split("/")[0] in reserved:
            raise _refuse(path, "PATH_RESERVED_NAME", "the client keeps that name for itself", where)
        if key in files:
            rule = "PATH_DUPLICATE" if files[key] == path else "PATH_CASE_COLLISION"
            raise _refuse(path, rule, f"it is listed twice or equals {files[key]!r} after case folding "
                          "and Unicode normalisation", where)
        files[key] = path
    _check_folders(checked, files, field)
    return tuple(checked)


def _check_folders(paths: Sequence[str], files: dict[str, str], field: str) -> None:
    folders: dict[str, str] = {}
    for index, path in enumerate(paths):
        for folder in _folders(path):
            key, where = fold(folder), f"{field}[{index}].path"
            if key in files:
                raise _refuse(path, "PATH_FILE_AND_FOLDER",
                              f"{files[key]!r} is a file, so it cannot also be a folder", where)
            if folders.setdefault(key, folder) != folder:
                raise _refuse(path, "PATH_CASE_COLLISION", f"its folder {folder!r} equals "
                              f"{folders[key]!r} after case folding and Unicode normalisation", where)
