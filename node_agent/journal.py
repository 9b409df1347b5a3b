"""The agent's local journal: jobs, the outbox of reports, and the hub command watermark.

One SQLite file in the state directory, ``synchronous=FULL`` in WAL mode so that
every commit is on disk before the agent acts on it (write first, then act).
A job's state change and the event reporting it are one transaction (the
transactional outbox); a hub command's effect and ``last_hub_seq_applied`` are
one transaction too (:meth:`Journal.applying`), so a replayed command is a no-op.

After a crash, :meth:`Journal.recover` turns every job that may have been on the
printer (printing, paused) into ``interrupted`` with an INTERRUPTED event: the
agent reports it and never restarts it.

Every method blocks on the disk; the agent calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from node_agent.jobs import ACTIVE, TERMINAL, EventKind, JobState, advance, check_event_data
from node_agent.messages import ArtifactRef, Attribution, HeldJob, JobEvent, Offer

__all__ = ["Journal", "JournalError", "JournalJob", "PrinterFlags"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    offer_id TEXT NOT NULL,
    lease_epoch INTEGER NOT NULL,
    state TEXT NOT NULL,
    printer TEXT NOT NULL,
    offer TEXT NOT NULL,
    granted_epoch INTEGER,
    gcode_path TEXT,
    estimated_seconds REAL,
    filament_mm REAL,
    started_at REAL,
    reason TEXT NOT NULL DEFAULT '',
    last_seq INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    agent_seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    lease_epoch INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS printers (
    name TEXT PRIMARY KEY,
    bed_clear INTEGER NOT NULL,
    mode TEXT NOT NULL
);
"""
_MODES = ("online", "offline", "maintenance")


class JournalError(Exception):
    """The journal cannot be opened or written (disk full, permissions, corruption)."""


@dataclass(frozen=True, slots=True)
class JournalJob:
    """A job as the node remembers it."""

    job_id: str
    offer_id: str
    lease_epoch: int
    state: JobState
    printer: str
    offer: Offer
    granted_epoch: int | None
    gcode_path: str | None
    estimated_seconds: float | None
    filament_mm: float | None
    started_at: float | None
    reason: str
    updated_at: float
    last_seq: int = 0               # the agent_seq of the job's newest event

    @property
    def granted(self) -> bool:
        """True when the hub granted the start for the job's current epoch."""
        return self.granted_epoch is not None and self.granted_epoch == self.lease_epoch


@dataclass(frozen=True, slots=True)
class PrinterFlags:
    """What the operator said about a printer: bed clear, and online/offline/maintenance."""

    bed_clear: bool = True
    mode: str = "online"


@dataclass
class _Tx:
    depth: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)


class Journal:
    """The journal file; use :meth:`open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path,
                 clock: Callable[[], float] = time.time) -> None:
        self._conn, self.path, self._clock = conn, path, clock
        self._tx = _Tx()

    @classmethod
    def open(cls, path: str | Path, clock: Callable[[], float] = time.time) -> Journal:
        """Open (creating) the journal at ``path``.

        Raises:
            JournalError: the file cannot be opened or is not a journal.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"{path}: cannot open the journal: {exc}") from exc
        return cls(conn, path, clock)

    def close(self) -> None:
        """Close the file; idempotent."""
        with self._tx.lock:
            self._conn.close()

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._tx.lock:
            outer = self._tx.depth == 0
            try:
                if outer:
                    self._conn.execute("BEGIN IMMEDIATE")
                self._tx.depth += 1
                try:
                    yield self._conn
                finally:
                    self._tx.depth -= 1
                if outer:
                    self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if outer and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise JournalError(f"{self.path}: journal write failed: {exc}") from exc
            except BaseException:
                if outer and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def applying(self, hub_seq: int) -> Iterator[bool]:
        """Apply one hub command at most once.

        Yields True when ``hub_seq`` is new (or 0, a message needing no ack): the
        block's journal writes and the new watermark commit together. Yields False
        for a command already applied; the block should then do nothing.

        Raises:
            JournalError: the write failed (nothing of the block is kept).
        """
        with self._write():
            if hub_seq and hub_seq <= self.last_hub_seq_applied():
                yield False
                return
            yield True
            if hub_seq:
                self._set_meta("last_hub_seq_applied", hub_seq)

    def _meta(self, key: str) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                           "DO UPDATE SET value = excluded.value", (key, value))

    def last_hub_seq_applied(self) -> int:
        """The highest hub command sequence number applied."""
        with self._tx.lock:
            return self._meta("last_hub_seq_applied")

    # ------------------------------------------------------------------ jobs
    def add_job(self, offer: Offer) -> JournalJob:
        """Record an accepted offer as a job in ``accepted`` state.

        Raises:
            JournalError: the write failed, or the job is already held.
        """
        now = self._clock()
        with self._write() as db:
            if self._row(offer.job_id) is not None:
                raise JournalError(f"job {offer.job_id} is already in the journal")
            db.execute(
                "INSERT INTO jobs (job_id, offer_id, lease_epoch, state, printer, offer, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (offer.job_id, offer.offer_id, offer.lease_epoch, JobState.ACCEPTED.value,
                 offer.printer_id, _offer_json(offer), now, now))
        return self.job(offer.job_id)

    def job(self, job_id: str) -> JournalJob:
        """The job ``job_id``.

        Raises:
            KeyError: the journal does not hold it.
        """
        with self._tx.lock:
            row = self._row(job_id)
        if row is None:
            raise KeyError(job_id)
        return _job(row)

    def find(self, job_id: str) -> JournalJob | None:
        """The job ``job_id``, or None."""
        with self._tx.lock:
            row = self._row(job_id)
        return None if row is None else _job(row)

    def _row(self, job_id: str) -> sqlite3.Row | None:
        cur = self._conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        cur.row_factory = sqlite3.Row
        row: sqlite3.Row | None = cur.fetchone()
        return row

    def jobs(self) -> list[JournalJob]:
        """Every job held, oldest first."""
        with self._tx.lock:
            cur = self._conn.execute("SELECT * FROM jobs ORDER BY created_at, job_id")
            cur.row_factory = sqlite3.Row
            return [_job(r) for r in cur.fetchall()]

    def update(self, job_id: str, **fields: Any) -> JournalJob:
        """Set plain fields of a job without a state change.

        Raises:
            KeyError: no such job.
            JournalError: the write failed.
        """
        allowed = {"lease_epoch", "granted_epoch", "gcode_path", "estimated_seconds",
                   "filament_mm", "started_at", "reason", "offer_id"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"not journal fields: {sorted(bad)}")
        with self._write() as db:
            self.job(job_id)
            sets = ", ".join(f"{k} = ?" for k in fields)
            db.execute(f"UPDATE jobs SET {sets}, updated_at = ? WHERE job_id = ?",
                       (*fields.values(), self._clock(), job_id))
        return self.job(job_id)

    def transition(self, job_id: str, new: JobState, event: EventKind | None = None,
                   data: Mapping[str, str] | None = None, reason: str = "") -> JobEvent | None:
        """Move a job to ``new`` and, in the same transaction, queue its event.

        Returns:
            The queued event, or None when ``event`` is None.

        Raises:
            KeyError: no such job.
            InvalidTransition: the table forbids the move (nothing written).
            InvalidEventData: the event's data breaks the vocabulary.
            JournalError: the write failed.
        """
        with self._write() as db:
            job = self.job(job_id)
            advance(job_id, job.state, new)
            db.execute("UPDATE jobs SET state = ?, reason = ?, updated_at = ? WHERE job_id = ?",
                       (new.value, reason or job.reason, self._clock(), job_id))
            return None if event is None else self._append(job, event, data or {})

    def record(self, job_id: str, kind: EventKind, data: Mapping[str, str] | None = None
               ) -> JobEvent:
        """Queue an event for a job without changing its state.

        Raises:
            KeyError: no such job.
            InvalidEventData: the data breaks the vocabulary.
            JournalError: the write failed.
        """
        with self._write():
            return self._append(self.job(job_id), kind, data or {})

    def _append(self, job: JournalJob, kind: EventKind, data: Mapping[str, str]) -> JobEvent:
        check_event_data(kind, data)
        seq = self._meta("last_agent_seq") + 1
        self._set_meta("last_agent_seq", seq)
        at = self._clock()
        self._conn.execute(
            "INSERT INTO outbox (agent_seq, job_id, lease_epoch, kind, at, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (seq, job.job_id, job.lease_epoch, kind.value, at, json.dumps(dict(data))))
        self._conn.execute("UPDATE jobs SET last_seq = ? WHERE job_id = ?", (seq, job.job_id))
        return JobEvent(seq, job.job_id, job.lease_epoch, kind, at, data)

    def forget(self, job_id: str) -> None:
        """Drop a job the hub no longer wants us to remember (its unsent events stay).

        Raises:
            JournalError: the write failed.
        """
        with self._write() as db:
            db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def recover(self) -> list[JournalJob]:
        """After a restart: every job that may have been printing becomes interrupted.

        Returns:
            The jobs so marked (each with an INTERRUPTED event queued).

        Raises:
            JournalError: the write failed.
        """
        marked = []
        with self._write():
            for job in self.jobs():
                if job.state in ACTIVE:
                    self.transition(job.job_id, JobState.INTERRUPTED, EventKind.INTERRUPTED,
                                    {"reason": "the node agent restarted during the print"},
                                    reason="agent restarted mid-print")
                    marked.append(self.job(job.job_id))
        return marked

    def held_jobs(self) -> list[HeldJob]:
        """The jobs to tell the hub about in Hello: every job not forgotten."""
        return [HeldJob(j.job_id, j.lease_epoch, j.state, j.last_seq, j.printer)
                for j in self.jobs()]

    # ------------------------------------------------------------------ outbox
    def last_agent_seq(self) -> int:
        """The sequence number of the newest event ever queued."""
        with self._tx.lock:
            return self._meta("last_agent_seq")

    def pending(self, after: int = 0) -> list[JobEvent]:
        """Queued events with ``agent_seq > after``, in order."""
        with self._tx.lock:
            rows = self._conn.execute(
                "SELECT agent_seq, job_id, lease_epoch, kind, at, data FROM outbox "
                "WHERE agent_seq > ? ORDER BY agent_seq", (after,)).fetchall()
        return [JobEvent(r[0], r[1], r[2], EventKind(r[3]), r[4], json.loads(r[5])) for r in rows]

    def acknowledge(self, agent_seq: int) -> int:
        """Delete events up to ``agent_seq`` (cumulative ack); returns how many went.

        Raises:
            JournalError: the write failed.
        """
        with self._write() as db:
            return db.execute("DELETE FROM outbox WHERE agent_seq <= ?", (agent_seq,)).rowcount

    def prune(self) -> int:
        """Forget final jobs whose every event was acknowledged; returns how many.

        Raises:
            JournalError: the write failed.
        """
        final = tuple(s.value for s in TERMINAL)
        with self._write() as db:
            return db.execute(
                f"DELETE FROM jobs WHERE state IN ({','.join('?' * len(final))}) "
                "AND job_id NOT IN (SELECT job_id FROM outbox)", final).rowcount

    # ------------------------------------------------------------------ printers
    def printer_flags(self, name: str) -> PrinterFlags:
        """What the operator last said about ``name`` (default: bed clear, online)."""
        with self._tx.lock:
            row = self._conn.execute("SELECT bed_clear, mode FROM printers WHERE name = ?",
                                     (name,)).fetchone()
        return PrinterFlags() if row is None else PrinterFlags(bool(row[0]), str(row[1]))

    def set_printer_flags(self, name: str, *, bed_clear: bool | None = None,
                          mode: str | None = None) -> PrinterFlags:
        """Change what is known about a printer; None keeps a value.

        Raises:
            ValueError: ``mode`` is not online, offline or maintenance.
            JournalError: the write failed.
        """
        if mode is not None and mode not in _MODES:
            raise ValueError(f"printer mode must be one of {', '.join(_MODES)}, got {mode!r}")
        with self._write() as db:
            old = self.printer_flags(name)
            new = PrinterFlags(old.bed_clear if bed_clear is None else bed_clear, mode or old.mode)
            db.execute("INSERT INTO printers (name, bed_clear, mode) VALUES (?, ?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET bed_clear = excluded.bed_clear, "
                       "mode = excluded.mode", (name, int(new.bed_clear), new.mode))
        return new


def _offer_json(offer: Offer) -> str:
    raw = {f.name: getattr(offer, f.name) for f in fields(offer)}
    raw["parameters"] = dict(offer.parameters)
    raw["artifacts"] = [asdict(a) for a in offer.artifacts]
    raw["attributions"] = [asdict(a) for a in offer.attributions]
    return json.dumps(raw)


def _offer(text: str) -> Offer:
    raw = json.loads(text)
    raw["artifacts"] = tuple(ArtifactRef(**a) for a in raw["artifacts"])
    raw["attributions"] = tuple(
        Attribution(**{**a, "contributors": tuple(a["contributors"])}) for a in raw["attributions"])
    raw["bbox_mm"] = tuple(raw["bbox_mm"])
    raw["parameters"] = MappingProxyType(raw["parameters"])
    return Offer(**raw)


def _job(row: sqlite3.Row) -> JournalJob:
    return JournalJob(
        job_id=row["job_id"], offer_id=row["offer_id"], lease_epoch=row["lease_epoch"],
        state=JobState(row["state"]), printer=row["printer"], offer=_offer(row["offer"]),
        granted_epoch=row["granted_epoch"], gcode_path=row["gcode_path"],
        estimated_seconds=row["estimated_seconds"], filament_mm=row["filament_mm"],
        started_at=row["started_at"],
        reason=row["reason"], updated_at=row["updated_at"], last_seq=row["last_seq"])
