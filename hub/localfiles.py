"""What may be renamed over a path a user gave, the atomic write that renames it, and the read of a
file a user named (only a regular file, and only so much of it).

The tools write a file next to its target and rename it over the target when complete
(``spime-hub backup``, ``spime get``, ``spime export``, ``spime key gen``). A rename replaces
whatever is there; only a regular file should be. A device, folder, pipe or socket at that
path (``spime-hub backup /dev/null`` run as root) would be swapped for a plain file.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["FileTooLarge", "NotRegularFile", "file_kind", "not_replaceable", "read_regular", "replacing"]

_KINDS = ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "folder"), (stat.S_ISCHR, "device"),
          (stat.S_ISBLK, "device"), (stat.S_ISFIFO, "pipe"), (stat.S_ISSOCK, "socket"))


def file_kind(mode: int) -> str:
    """What an ``st_mode`` is, in words: "regular file", "folder", "device", "pipe", "socket"."""
    return next((name for test, name in _KINDS if test(mode)), "special file")


def not_replaceable(path: Path) -> str | None:
    """Why a finished file may not be renamed over ``path``, or None when it may (nothing there, or a
    regular file). A symbolic link counts as what it points to."""
    if path.name in ("", ".", ".."):  # ".", "/" and "x/..": no name to write a file beside
        return f"{path} is a folder, not a file name: give a file name of its own"
    try:
        mode = path.stat().st_mode
    except OSError:  # nothing there (or nothing this user can see): the write itself says what is wrong
        return None
    if stat.S_ISREG(mode):
        return None
    return f"{path} is a {file_kind(mode)}, not a regular file: give a file name of its own"


@contextmanager
def replacing(path: Path, mode: int = 0o666) -> Iterator[BinaryIO]:
    """Write ``path`` atomically: the block writes a new hidden file beside it, renamed over
    ``path`` when the block completes and removed when it fails or is interrupted.

    The new file is created exclusively (never through a link or over a file left there) with
    ``mode`` less the umask. Check the target with :func:`not_replaceable` first: the rename
    replaces whatever is at ``path`` itself (a symbolic link, not what it points to).

    Raises:
        OSError: the file could not be created, written or renamed.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class NotRegularFile(OSError):
    """A pipe, socket, device or folder where a file was to be read; ``kind`` says which."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path} is a {kind}, not a regular file")
        self.kind = kind


class FileTooLarge(OSError):
    """A file over what its reader accepts (``limit`` bytes); it was not read whole."""

    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(f"{path} is over {limit} bytes")
        self.limit = limit


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them.

    The type is checked before the file is opened (opening a serial device can reset the printer
    on it) and again on the opened file (opened without blocking: a pipe with no writer would wait
    for ever, /dev/zero never end).

    Raises:
        NotRegularFile: a pipe, socket, device or folder is there.
        FileTooLarge: the file holds more than ``limit`` bytes.
        OSError: it cannot be opened or read (FileNotFoundError: nothing is there).
    """
    if not stat.S_ISREG(mode := os.stat(path).st_mode):
        raise NotRegularFile(path, file_kind(mode))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(mode := os.fstat(fh.fileno()).st_mode):
            raise NotRegularFile(path, file_kind(mode))
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(path, limit)
    return data
