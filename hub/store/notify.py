"""LISTEN/NOTIFY adapter: a replica's wake-ups from the other replicas (PostgreSQL only).

NOTIFY is only a doorbell (no replay: a listener that is not connected misses it), so after
every (re)LISTEN the caller re-scans the tables (`on_listen`), and the periodic poll stays.
The listener owns one direct psycopg connection (not from the pool, never through a
transaction-pooling PgBouncer) in a daemon thread; callbacks run in that thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
import sqlalchemy as sa
from psycopg import sql

from hub.store.nodes import CHANNEL

__all__ = ["Listener", "listen"]

log = logging.getLogger("hub.notify")
WAIT_S = 0.5          # how often the thread looks at its stop flag
RETRY_S = (0.2, 1.0, 5.0)


class Listener:
    """LISTEN on a channel in a thread; every payload goes to on_message, every (re)LISTEN to on_listen."""

    def __init__(self, conninfo: str, channel: str, on_message: Callable[[str], None],
                 on_listen: Callable[[], None]) -> None:
        self.conninfo, self.channel = conninfo, channel
        self.on_message, self.on_listen = on_message, on_listen
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hub-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and wait (bounded) for the thread."""
        self._stop.set()
        self._thread.join(timeout=10 * WAIT_S)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._session()
                failures = 0
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning("LISTEN connection failed; retrying", extra={"error": type(exc).__name__})
                self._stop.wait(RETRY_S[min(failures, len(RETRY_S) - 1)])
                failures += 1

    def _session(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self.listening.set()
            self._safely(self.on_listen)  # wake-ups sent while we were not listening are lost
            while not self._stop.is_set():
                for note in conn.notifies(timeout=WAIT_S):
                    self._safely(lambda: self.on_message(note.payload))  # noqa: B023 (called at once)

    @staticmethod
    def _safely(call: Callable[[], None]) -> None:
        try:
            call()
        except Exception:
            log.exception("wake-up handler failed")  # one bad payload must not stop the listener


def listen(engine: sa.Engine, on_message: Callable[[str], None], on_listen: Callable[[], None]) -> Listener | None:
    """A started Listener on the node-command channel of engine's database; None on SQLite
    (one hub process: it rings its own sessions)."""
    if engine.dialect.name != "postgresql":
        return None
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    listener = Listener(conninfo, CHANNEL, on_message, on_listen)
    listener.start()
    return listener
