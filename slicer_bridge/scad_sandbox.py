"""OpenSCAD renders only a design revision's own files, in a sandbox.

Before anything runs, ``check_references`` reads the design's statements that pull
in other files (``include <f>``, ``use <f>``, ``import("f")``, ``surface(file="f")``
and the old DXF readers) in the main file and, transitively, in every file it
includes. Each must name, as a plain string, an existing regular file inside the
revision's folder: an absolute path, ``~``, a ``..`` that climbs out, a symlink, a
missing file (OpenSCAD would search its library paths) or a computed name (a
variable or ``str(...)``, which could be anything, even a customer's value) is
refused with the file and line.

``sandbox_argv`` then runs OpenSCAD on a copy of just those files in a temporary
directory with ``OPENSCADPATH`` empty and ``HOME`` set to that directory, under
``prlimit`` (address space, CPU seconds, output size, no core dumps) and inside
bubblewrap (``confined``): OpenSCAD sees the system's programs and fonts read-only and
that directory, nothing else of the node's files, in namespaces of its own (no
network). That stops what no reading of the source can see: a file name computed
while OpenSCAD runs (``chr(47)``…, passed as a variable to a call that reads a file).
Where bubblewrap cannot run, the render goes on unconfined (the node's log says so)
and, as root, under ``unshare -n``. The caller's time limit kills the whole process group.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from slicer_bridge.base import RenderError
from slicer_bridge.scad_text import Brackets, Lines, scan

__all__ = [
    "SandboxLimits",
    "ScadReferenceError",
    "check_references",
    "confined",
    "copy_into",
    "references",
    "sandbox_argv",
    "sandbox_env",
]

_MAX_FILE_BYTES = 2_000_000
_MAX_FILES = 200
_INCLUDE = re.compile(r"\b(include|use)\s*<([^<>\n]*)>", re.ASCII)  # [^<>]: each try stops at the next <
# Every OpenSCAD 2021.01 call that reads a file, with the deprecated aliases it still
# honours (import_stl/import_off/import_dxf, dxf_linear_extrude, dxf_rotate_extrude).
_CALL = re.compile(r"(?<![\w$])([A-Za-z_][\w]*)\s*\(", re.ASCII)
_FILE_FUNCTIONS = frozenset({"import", "import_stl", "import_off", "import_dxf", "surface",
                             "dxf_linear_extrude", "dxf_rotate_extrude", "dxf_dim", "dxf_cross",
                             "linear_extrude", "rotate_extrude"})
# linear_extrude's first positional argument is its file when it is a string, else the height.
_HEIGHT_OR_FILE = frozenset({"linear_extrude", "rotate_extrude", "dxf_linear_extrude",
                             "dxf_rotate_extrude"})
# import() reads filename= when file= is undefined; the others ignore it, but a name
# that is sometimes a file is always checked as one.
_FILE_PARAMETERS = frozenset({"file", "filename"})
# A string OpenSCAD would resolve outside the sandbox's copy: absolute, or climbing out.
_PATH_OUT = re.compile(r"^(?:[/\\]|[A-Za-z]:[/\\])|(?:^|[/\\])\.\.(?:[/\\]|$)")
_NAMED = re.compile(r"\s*([A-Za-z_$]\w*)\s*=(?!=)", re.ASCII)  # an argument's name; its value follows
_LITERAL = re.compile(r'\s*"((?:[^"\\]++|\\.)*+)"\s*', re.DOTALL)
_NONBLANK = re.compile(r"\S")


class ScadReferenceError(RenderError):
    """The design reaches for a file outside its revision; nothing was rendered."""

    def __init__(self, reason: str) -> None:
        super().__init__((), None, "", "", reason=f"refused before rendering: {reason}")


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """What one OpenSCAD run may use.

    Attributes:
        memory_bytes: Address-space limit (``RLIMIT_AS``).
        cpu_s: CPU-time limit (``RLIMIT_CPU``); the wall-clock limit is the caller's.
        output_bytes: Largest file it may write (``RLIMIT_FSIZE``).
        network: Leave the network reachable (False: an empty namespace when root).
    """

    memory_bytes: int = 2 << 30
    cpu_s: float = 300.0
    output_bytes: int = 512 << 20
    network: bool = False


# ---------------------------------------------------------------- reading statements (pure)


def _file_arguments(code: str, function: str, parts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (start, end) in ``code`` of every argument of the call that OpenSCAD may read as a file
    name (a named one: its value), given the call's comma-separated ``parts``."""
    found, positional = [], []
    for start, end in parts:
        if not _NONBLANK.search(code, start, end):
            continue
        named = _NAMED.match(code, start, end)
        if named is None:
            positional.append((start, end))
        elif named.group(1) in _FILE_PARAMETERS:
            found.append((named.end(), end))
    if positional and (function not in _HEIGHT_OR_FILE or _LITERAL.fullmatch(code, *positional[0])):
        found.append(positional[0])
    return found


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"'}


def _unescape(body: str) -> str:
    """The string OpenSCAD reads from a literal's body (its \\x, \\u and \\U escapes too)."""
    def one(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return chr(min(int(m.group(1)[1:], 16), 0x10FFFF))
        return _ESCAPES.get(m.group(2), m.group(2))
    return re.sub(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{6})|\\(.)", one, body,
                  flags=re.DOTALL)


def _file_references(source: str) -> Iterator[tuple[int, str, str | None, str | None]]:
    """(line, statement, file name or None, problem or None) for each file reference."""
    scanned = scan(source)
    code, masked, lines = scanned.code, scanned.masked, Lines(scanned.code)
    for match in _INCLUDE.finditer(masked):
        target = code[match.start(2):match.end(2)].strip()
        yield lines.of(match.start()), match.group(1), target, None
    brackets = Brackets(masked)
    for match in _CALL.finditer(masked):
        function = match.group(1)
        if function not in _FILE_FUNCTIONS:
            continue
        arguments = _file_arguments(code, function, brackets.arguments(match.end() - 1))
        line = lines.of(match.start())
        if len(arguments) > 1:  # OpenSCAD reads the last; a checker might read the first
            yield line, f"{function}()", None, "names a file more than once"
            continue
        for start, end in arguments:
            literal = _LITERAL.fullmatch(code, start, end)
            yield line, f"{function}()", _unescape(literal.group(1)) if literal else None, None


def references(source: str) -> Iterator[tuple[int, str, str | None]]:
    """(line, statement, file name or None when not a plain string) for each file reference."""
    for line, statement, name, problem in _file_references(source):
        if problem is None:
            yield line, statement, name


def _paths_out(source: str) -> Iterator[tuple[int, str]]:
    """(line, value) of every string literal that names a path outside its folder.

    A file call may get its name from a variable (``h = "/x.dxf"; linear_extrude(h)``),
    so a literal that could only serve as such a path is refused wherever it stands.
    """
    scanned = scan(source)
    lines = Lines(scanned.code)
    for start, end in scanned.literals:
        value = _unescape(scanned.code[start + 1:end - 1])
        if _PATH_OUT.search(value):
            yield lines.of(start), value


# ---------------------------------------------------------------- checking against the folder


def _inside(root: Path, base: Path, name: str, trusted: tuple[Path, ...]) -> Path:
    """The file ``name`` (as written in a file in ``base``) names inside ``root``.

    A symbolic link is followed only to a file inside ``root`` or inside a ``trusted``
    folder (the hub stages a revision as links into its own blob store).

    Raises:
        ValueError: why it is not a regular file inside ``root``.
    """
    if not name:
        raise ValueError("names no file")
    if name.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", name) or "\0" in name:
        raise ValueError(f"{name!r} is an absolute path; only the design's own files may be used")
    lexical = Path(os.path.normpath(base / name))
    if not lexical.is_relative_to(root):
        raise ValueError(f"{name!r} is outside the design's folder")
    real = lexical.resolve()
    if real != lexical and not any(real.is_relative_to(t) for t in (root.resolve(), *trusted)):
        raise ValueError(f"{name!r} is or passes through a symbolic link out of the design")
    if not lexical.is_file():
        raise ValueError(f"{name!r} is not a file of the design (OpenSCAD would search "
                         "its library paths)")
    return lexical


def _read(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScadReferenceError(f"cannot read {path.name}: {exc.strerror}") from exc
    if len(data) > _MAX_FILE_BYTES:
        raise ScadReferenceError(f"{path.name} is larger than {_MAX_FILE_BYTES} bytes")
    return data.decode("utf-8", errors="replace")


def check_references(scad: Path, root: Path, trusted_links: tuple[Path, ...] = ()) -> list[Path]:
    """Every file the design uses, all inside ``root``; the main file first.

    Args:
        scad: The main .scad file.
        root: The design revision's folder.
        trusted_links: Folders symbolic links in ``root`` may point into (a blob store).

    Returns:
        The files to copy into the sandbox (absolute paths inside ``root``).

    Raises:
        ScadReferenceError: a reference leaves the folder, is a link, is missing or is
            computed; the message names the file, line and statement.
    """
    root = Path(os.path.abspath(root))
    trusted = tuple(t.resolve() for t in trusted_links)
    try:
        main = _inside(root, root, os.path.relpath(os.path.abspath(scad), root), trusted)
    except ValueError as exc:
        raise ScadReferenceError(f"the design file {exc}") from exc
    found, queue = [main], [main]
    while queue:
        current = queue.pop()
        source = _read(current)
        for line, statement, name, problem in _file_references(source):
            where = f"{current.relative_to(root)} line {line}: {statement}"
            if problem is not None:
                raise ScadReferenceError(f"{where} {problem}; only one plain string naming "
                                         "a file of the design may be used")
            if name is None:
                raise ScadReferenceError(f"{where} names its file with an expression; "
                                         "only a plain string naming a file of the design may be used")
            try:
                target = _inside(root, current.parent, name, trusted)
            except ValueError as exc:
                raise ScadReferenceError(f"{where} {exc}") from exc
            if target in found:
                continue
            found.append(target)
            if len(found) > _MAX_FILES:
                raise ScadReferenceError(f"the design uses more than {_MAX_FILES} files")
            if statement in ("include", "use"):
                queue.append(target)
        for line, value in _paths_out(source):
            raise ScadReferenceError(
                f"{current.relative_to(root)} line {line}: the string {value!r} is a path out of "
                "the design's folder; only the design's own files may be used")
    return found


# ---------------------------------------------------------------- running


def copy_into(files: list[Path], root: Path, sandbox: Path) -> Path:
    """Copy ``files`` (inside ``root``) into ``sandbox`` keeping their layout; the main file's copy.

    Raises:
        OSError: a copy failed.
    """
    root = Path(os.path.abspath(root))
    copies = []
    for path in files:
        target = sandbox / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)  # contents only: links were checked, copies are plain
        copies.append(target)
    return copies[0]


def sandbox_argv(argv: list[str], limits: SandboxLimits, confine_to: Path | None = None,
                 cwd: Path | None = None) -> list[str]:
    """``argv`` under ``prlimit``; with ``confine_to`` inside bubblewrap, which shows it the system's
    programs and fonts read-only and ``confine_to`` (the sandbox), nothing else of the node's files, in
    namespaces of its own (no network unless ``limits.network``), starting in ``cwd``. Without it, as
    root without network, under ``unshare -n`` (pure but for which())."""
    wrapped = [
        "prlimit", f"--as={limits.memory_bytes}", f"--cpu={math.ceil(limits.cpu_s)}",
        f"--fsize={limits.output_bytes}", "--core=0", "--", *argv,
    ]
    if confine_to is not None:
        return [*confined(confine_to, cwd or confine_to, limits.network), *wrapped]
    if not limits.network and os.geteuid() == 0 and shutil.which("unshare"):
        wrapped = ["unshare", "--net", "--", *wrapped]
    return wrapped


def confined(sandbox: Path, cwd: Path, network: bool = False) -> list[str]:
    """The bubblewrap prefix that lets a program see only /usr and the fonts (read-only) and ``sandbox``.

    A name computed while OpenSCAD runs (``chr(47)`` and friends, passed as a variable to a call that
    reads a file) escapes any reading of the source beforehand; here it finds no file to read.
    """
    return [
        "bwrap", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin", "--ro-bind-try", "/etc/fonts", "/etc/fonts",
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", str(sandbox), str(sandbox),
        "--chdir", str(cwd), "--unshare-all", *(["--share-net"] if network else []), "--die-with-parent",
        "--new-session", "--",
    ]


def sandbox_env(sandbox: Path, base: Mapping[str, str]) -> dict[str, str]:
    """A minimal environment: PATH from ``base``, HOME and caches in the sandbox, no OPENSCADPATH."""
    home = str(sandbox)
    return {"PATH": base.get("PATH", "/usr/bin:/bin"), "HOME": home, "OPENSCADPATH": "",
            "XDG_CONFIG_HOME": home, "XDG_CACHE_HOME": home, "XDG_DATA_HOME": home,
            "LC_ALL": "C.UTF-8"}
