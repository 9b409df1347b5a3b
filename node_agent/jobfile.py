"""G-code files on disk: check a whole file first, then stream exactly what was checked.

``check_file`` reads the file once, line by line with bounded memory (a line is at
most ``MAX_LINE_BYTES``), through the safety filter; a refusal names the lines and
happens before anything is sent. It returns a :class:`SafeJob`, the only thing a
printer driver accepts, so nothing reaches a printer unfiltered. A ``SafeJob`` holds
no G-code, only where the file is and what it holds: the command count, its SHA-256,
a bounded table of layer starts and progress points.

Sending reads the file again, as a stream. The file may have changed in between, so
the stream re-checks every line with a fresh filter (the exact sequence sent is the
sequence judged) and raises :class:`JobChanged` as soon as it differs from what was
checked: a changed size, a line the filter refuses, too few or too many commands.
Uploads (OctoPrint) verify the SHA-256 of the bytes sent instead.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import stat
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, overload

from node_agent.gcode import PreparedJob, layer_marker, strip_comment
from node_agent.safety import Checker, JobRefused, SafetyLimits, Violation

__all__ = [
    "MAX_LINE_BYTES",
    "STAND_IN",
    "GcodeFileError",
    "JobChanged",
    "SafeJob",
    "StreamedCommands",
    "VerifiedReader",
    "check_file",
]

MAX_LINE_BYTES = 64 * 1024
_PROGRESS_POINTS = 1024
_MAX_LAYER_MARKS = 100_000
_READ_BYTES = 1 << 16
_SEAL = object()


class GcodeFileError(Exception):
    """The file cannot be read as G-code (missing, not a regular file, unreadable)."""


class JobChanged(Exception):
    """The file differs from the one the safety filter checked; stop sending it."""


@dataclass(frozen=True, slots=True)
class _Identity:
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> _Identity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True, eq=False)
class SafeJob:
    """A G-code file the safety filter accepted for one printer's limits.

    Only :func:`check_file` makes one. Attributes:
        name: The job's name (the file name unless given).
        path: The file.
        limits: The limits it was checked against.
        commands: How many commands it sends.
        size: Its size in bytes.
        sha256: Its SHA-256, hex.
        layer_starts: Command index where each slicer layer starts (at most 100,000).
        layer_numbers: The number of each of those layers.
        progress: (byte offset, commands before it) points, at most 1,024, for turning
            a byte position (OctoPrint's ``filepos``) into commands done.
    """

    name: str
    path: str
    limits: SafetyLimits
    commands: int
    size: int
    sha256: str
    layer_starts: tuple[int, ...]
    layer_numbers: tuple[int, ...]
    progress: tuple[tuple[int, int], ...]
    _identity: _Identity = field(repr=False)
    _seal: object = field(repr=False, default=None)

    def __post_init__(self) -> None:
        if self._seal is not _SEAL:
            raise TypeError("a SafeJob comes only from node_agent.jobfile.check_file()")

    def commands_before(self, offset: int) -> int:
        """Commands that end at or before byte ``offset`` (exact at progress points)."""
        offsets = [p[0] for p in self.progress]
        i = bisect.bisect_right(offsets, offset)
        if i == 0:
            return 0
        if i == len(offsets):
            return self.commands if offset >= self.size else self.progress[-1][1]
        (o0, c0), (o1, c1) = self.progress[i - 1], self.progress[i]
        return c0 + (c1 - c0) * (offset - o0) // max(1, o1 - o0)

    def command_before(self, offset: int) -> str:
        """The last command that ends at or before byte ``offset`` (what a printer fed this file up
        to there works on), its comment stripped; "" when none ends within ``MAX_LINE_BYTES`` before
        it or the file cannot be read."""
        offset = max(0, min(offset, self.size))
        start = max(0, offset - MAX_LINE_BYTES)
        try:
            with open(self.path, "rb") as file:
                file.seek(start)
                lines = file.read(offset - start).split(b"\n")
        except OSError:
            return ""
        if offset < self.size or not lines[-1]:
            lines.pop()  # not ended yet (empty when offset is at a line's start)
        if start > 0:
            lines = lines[1:]  # the window's first line may be cut
        elif lines:
            lines[0] = lines[0].removeprefix(b"\xef\xbb\xbf")
        for raw in reversed(lines):
            command = strip_comment(raw.decode("latin-1"))
            if command:
                return command
        return ""

    def layer_at(self, index: int) -> int | None:
        """The layer the command at ``index`` belongs to, or None before the first marker."""
        pos = bisect.bisect_right(self.layer_starts, index) - 1
        return self.layer_numbers[pos] if pos >= 0 else None

    def stream(self) -> Generator[tuple[int, str], None, None]:
        """Yield (file line, command) from disk, re-checking each line.

        Raises:
            JobChanged: the file is not the one checked (raised when the difference is
                read, before the differing command is yielded).
            GcodeFileError: the file cannot be opened any more.
        """
        with _open(self.path) as fh:
            if _Identity.of(os.fstat(fh.fileno())) != self._identity:
                raise JobChanged(f"{self.path} changed after the safety check; check it again")
            checker = Checker(self.limits)
            count = 0
            for lineno, text, _ in _lines(fh):
                if _control_problem(text) is not None or checker.check(text) is not None:
                    raise JobChanged(f"{self.path} line {lineno} changed after the safety check")
                command = text.split(";", 1)[0].strip()
                if command:
                    count += 1
                    if count > self.commands:
                        raise JobChanged(f"{self.path} grew after the safety check")
                    yield lineno, command
            if count != self.commands:
                raise JobChanged(f"{self.path} lost commands after the safety check")

    def prepared(self) -> PreparedJob:
        """The job for the protocol engine: commands read lazily from disk, in order."""
        return PreparedJob(self.name, StreamedCommands(self), (), self.layer_starts,
                           self.layer_numbers, checked=True)

    def open_bytes(self) -> VerifiedReader:
        """The file's bytes for an upload; ``verified()`` tells whether they were the checked ones.

        Raises:
            GcodeFileError: the file cannot be opened any more.
        """
        return VerifiedReader(self)


#: Sent in place of a command once the file turned out changed: finish the moves
#: already queued, nothing else. The driver then cancels the job (safe end sequence).
STAND_IN = "M400"


class StreamedCommands(Sequence[str]):
    """The commands of a ``SafeJob`` as a sequence the engine reads in order.

    Only the current and the next index can be read (the engine peeks at the next
    command until the window lets it go); the engine's own history serves resends.
    The engine must never see an exception mid-send, so a changed file turns every
    further command into ``STAND_IN`` and sets ``changed`` (the reason) for the driver.
    """

    def __init__(self, job: SafeJob) -> None:
        self._job = job
        self._stream: Generator[tuple[int, str], None, None] | None = None
        self._index = -1
        self._current = ""
        self.changed: str | None = None

    def __len__(self) -> int:
        return self._job.commands

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            raise TypeError("a streamed job cannot be sliced")
        if index == self._index:
            return self._current
        if index != self._index + 1 or not 0 <= index < self._job.commands:
            raise IndexError(f"a streamed job is read in order (asked {index}, at {self._index})")
        self._index = index
        self._current = self._read()
        return self._current

    def _read(self) -> str:
        if self.changed is not None:
            return STAND_IN
        try:
            if self._stream is None:
                self._stream = self._job.stream()
            return next(self._stream)[1]
        except StopIteration:
            self.changed = f"{self._job.path} lost commands after the safety check"
        except (JobChanged, JobRefused, GcodeFileError) as exc:
            self.changed = str(exc)
        self.close()
        return STAND_IN

    def __iter__(self) -> Iterator[str]:
        return (command for _, command in self._job.stream())

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class VerifiedReader:
    """Exactly ``size`` bytes of the file, hashed as they are read."""

    def __init__(self, job: SafeJob) -> None:
        self._job = job
        self._fh = _open(job.path)
        self._left = job.size
        self._hash = hashlib.sha256()
        self._short = False

    def read(self, n: int = -1) -> bytes:
        want = self._left if n < 0 else min(n, self._left)
        data = self._fh.read(want) if want else b""
        if len(data) < want:  # the file shrank: keep the promised length, fail verification
            self._short = True
            data += b"\n" * (want - len(data))
        self._left -= len(data)
        self._hash.update(data)
        return data

    def verified(self) -> bool:
        return not self._short and self._left == 0 and self._hash.hexdigest() == self._job.sha256

    def close(self) -> None:
        self._fh.close()


def _open(path: str) -> BinaryIO:
    # O_NONBLOCK: opening a FIFO must not hang the node; only regular files are jobs.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise GcodeFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise GcodeFileError(f"{path}: cannot read: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise GcodeFileError(f"{path}: not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _lines(fh: BinaryIO) -> Iterator[tuple[int, str, int]]:
    """(line number, text, bytes) with bounded memory; a line over MAX_LINE_BYTES is refused."""
    lineno = 0
    while raw := fh.readline(MAX_LINE_BYTES + 1):
        lineno += 1
        if len(raw) > MAX_LINE_BYTES:
            why = (_CR_ONLY if b"\r" in raw[:MAX_LINE_BYTES]
                   else f"is longer than {MAX_LINE_BYTES} bytes")
            raise JobRefused([Violation(lineno, raw[:40].decode("latin-1") + "...", why)], 1)
        size = len(raw)
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a UTF-8 byte-order mark some editors write: not a command
        # latin-1 maps every byte; the filter refuses non-ASCII outside comments.
        text = raw.decode("latin-1")
        yield lineno, text[:-2] if text.endswith("\r\n") else text.rstrip("\n"), size


_SAVE_AS_LF = "save the file with LF or CR LF line endings"
_CR_ONLY = f"has CR-only line endings (a bare carriage return ends each line); {_SAVE_AS_LF}"
# C0 controls and DEL, comments included: OctoPrint and some firmware end a line at a
# bare CR, so a "comment" could hide commands the filter never saw. Tab is a blank.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _control_problem(text: str) -> str | None:
    """Why a line (comment included) holds a character that is not G-code text, or None."""
    bad = _CONTROL.search(text)
    if bad is None:
        return None
    if bad.group() == "\r":
        return ("contains a carriage return inside the line (in a comment too): OctoPrint "
                f"and the firmware start a new command there; {_SAVE_AS_LF}")
    return f"contains the control character {bad.group()!r} (in a comment too); not allowed in a job"


class _Scan:
    """What the checking pass learns besides violations (all bounded)."""

    def __init__(self) -> None:
        self.commands = 0
        self.starts: list[int] = []
        self.numbers: list[int] = []
        self.progress: list[tuple[int, int]] = []
        self._stride = 1

    def layer(self, text: str) -> None:
        if len(self.starts) < _MAX_LAYER_MARKS:
            number = layer_marker(text, len(self.starts))
            if number is not None:
                self.starts.append(self.commands)
                self.numbers.append(number)

    def command(self, offset: int) -> None:
        self.commands += 1
        if self.commands % self._stride == 0:
            self.progress.append((offset, self.commands))
            if len(self.progress) > _PROGRESS_POINTS:
                self.progress = self.progress[1::2]
                self._stride *= 2


def check_file(path: str, limits: SafetyLimits, *, name: str | None = None,
               max_violations: int = 20) -> SafeJob:
    """Check a G-code file against a printer's limits, streaming, and seal it for sending.

    Args:
        path: The G-code file.
        limits: The printer's limits.
        name: The job's name (default: the file name).
        max_violations: How many violations a refusal lists (all are counted).

    Returns:
        The checked job, for a driver's ``print_job``.

    Raises:
        JobRefused: a line breaks the limits (every violation's line and reason), or a
            line is longer than ``MAX_LINE_BYTES``. Nothing was sent.
        GcodeFileError: the file cannot be read.
    """
    found: list[Violation] = []
    total = 0
    checker, scan = Checker(limits), _Scan()
    with _open(path) as fh:
        identity = _Identity.of(os.fstat(fh.fileno()))
        offset = 0
        for lineno, text, size in _lines(fh):
            offset += size
            reason = _control_problem(text) or checker.check(text)
            if reason is not None and lineno == 1 and offset == identity.size and "\r" in text:
                reason = _CR_ONLY  # the whole file is one "line"
            if reason is not None:
                total += 1
                if len(found) < max_violations:
                    found.append(Violation(lineno, text.split(";", 1)[0].strip(), reason))
            elif text.lstrip().startswith(";"):
                scan.layer(text)
            elif text.split(";", 1)[0].strip():
                scan.command(offset)
        sha = _file_sha256(fh)
    if found:
        raise JobRefused(found, total)
    return SafeJob(name or os.path.basename(path), path, limits, scan.commands, identity.size,
                   sha, tuple(scan.starts), tuple(scan.numbers), tuple(scan.progress),
                   identity, _SEAL)


def _file_sha256(fh: BinaryIO) -> str:
    # Hash the raw bytes (line endings included) in a second sequential read of the
    # same open file: cheap next to the filter, and exactly what an upload sends.
    fh.seek(0)
    digest = hashlib.sha256()
    while chunk := fh.read(_READ_BYTES):
        digest.update(chunk)
    return digest.hexdigest()
