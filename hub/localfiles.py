"""What may be renamed over a path a user gave: the check before an atomic write.

The tools write a file next to its target and rename it over the target when complete
(``spime-hub backup``, ``spime get``). A rename replaces whatever is there; only a regular
file should be. A device, folder, pipe or socket at that path (``spime-hub backup
/dev/null`` run as root) would be swapped for a plain file.
"""

from __future__ import annotations

import stat
from pathlib import Path

__all__ = ["not_replaceable"]

_KINDS = ((stat.S_ISDIR, "folder"), (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device"), (stat.S_ISFIFO, "pipe"),
          (stat.S_ISSOCK, "socket"))


def not_replaceable(path: Path) -> str | None:
    """Why a finished file may not be renamed over ``path``, or None when it may (nothing there, or a
    regular file). A symbolic link counts as what it points to."""
    try:
        mode = path.stat().st_mode
    except OSError:  # nothing there (or nothing this user can see): the write itself says what is wrong
        return None
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "special file")
    return f"{path} is a {kind}, not a regular file: give a file name of its own"
