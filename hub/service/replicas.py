"""Several hub replicas on one PostgreSQL serving the same agents (issue 9).

An agent's stream is sticky to the replica it reached; any replica may write a command for
any node (an order placed, a job dispatched). The command row is the truth, NOTIFY the
doorbell: the replica holding the node's session rings it at once (the periodic outbox poll
stays as the safety net, and is the only mechanism on SQLite). A Hello on another replica
supersedes the session here (NOTIFY "NODE EPOCH", re-checked every round in case it was
missed). Each replica keeps a lease row alive; the sessions of a replica whose lease expired
are released by the survivors, and their printing jobs become LOST_CONTACT as after any cut.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.service.common import format_time
from hub.store.notify import Listener, listen
from hub.store.replicas import Released, ReplicaStore

if TYPE_CHECKING:
    from hub.service.nodes import NodeService

__all__ = ["DEFAULT_POLICY", "ReplicaPolicy", "ReplicaService", "new_replica_id", "parse_wakeup"]

log = logging.getLogger("hub.replicas")


@dataclass(frozen=True, slots=True)
class ReplicaPolicy:
    """beat_s: how often a replica renews its lease (and re-checks its sessions);
    ttl_s: how long a lease lasts without renewal before the other replicas take over."""

    beat_s: float = 5.0
    ttl_s: float = 30.0


DEFAULT_POLICY = ReplicaPolicy()


def new_replica_id() -> str:
    """host-pid-random, at most 64 characters: unique per process start."""
    return f"{socket.gethostname()[:36]}-{os.getpid()}-{secrets.token_hex(4)}"


def parse_wakeup(payload: str) -> tuple[str, int | None]:
    """A NOTIFY payload: "NODE" (commands to send) or "NODE EPOCH" (a Hello elsewhere); a
    malformed epoch reads as a plain ring (harmless: the outbox is re-read)."""
    node, _, epoch = payload.partition(" ")
    return node, int(epoch) if epoch.isascii() and epoch.isdigit() else None


class ReplicaService:
    """This process as one replica: its lease, its wake-ups, and the release of dead replicas' sessions."""

    def __init__(self, nodes: NodeService, policy: ReplicaPolicy = DEFAULT_POLICY) -> None:
        self.nodes, self.policy = nodes, policy
        self.store = ReplicaStore(nodes.nodes.engine)
        self.listener: Listener | None = None

    @property
    def replica(self) -> str:
        return self.nodes.replica

    @property
    def shared(self) -> bool:
        """Whether replicas can share this database (PostgreSQL; SQLite is one process's)."""
        return self.store.engine.dialect.name == "postgresql"

    async def start(self) -> None:
        """Before serving: take a lease, release the sessions a previous life of this replica held
        (never the other replicas'), then listen for wake-ups (PostgreSQL).

        Raises:
            StorageError: the database failed.
        """
        if not self.shared:
            await self.nodes.startup()  # SQLite: one hub process per database, nobody else is connected
            return
        await self._beat()
        now = format_time(self.nodes.clock())
        await self._lost(await asyncio.to_thread(self.store._thd_release_own, self.replica, now))
        self.listener = await asyncio.to_thread(listen, self.store.engine, self.wake, self.nodes.ring_all)

    async def stop(self) -> None:
        """After the sessions closed: stop listening and give the lease up."""
        if self.listener is not None:
            await asyncio.to_thread(self.listener.stop)
        if self.shared:
            await asyncio.to_thread(self.store._thd_leave, self.replica)

    def wake(self, payload: str) -> None:
        """A NOTIFY arrived (listener thread)."""
        node, epoch = parse_wakeup(payload)
        if epoch is None:
            self.nodes.ring(node)
        else:
            self.nodes.supersede(node, epoch)

    async def run(self, stop: asyncio.Event) -> None:
        """Renew the lease and release dead replicas' sessions every policy.beat_s until stop is set
        (nothing to do on SQLite)."""
        while self.shared and not stop.is_set():
            try:
                await self.round()
            except Exception:
                log.exception("replica round failed")  # the next round retries
            try:
                await asyncio.wait_for(stop.wait(), self.policy.beat_s)
            except TimeoutError:
                pass

    async def round(self) -> None:
        """One lease renewal, release of expired replicas' sessions, and supersede check.

        Raises:
            StorageError: the database failed.
        """
        await self._beat()
        await self._lost(await asyncio.to_thread(self.store._thd_release_dead, format_time(self.nodes.clock())))
        local = self.nodes.local_epochs()
        holders = await asyncio.to_thread(self.store._thd_holders, sorted(local))
        for node, epoch in local.items():
            stored_epoch, holder = holders.get(node, (epoch, self.replica))
            if stored_epoch > epoch:  # a Hello elsewhere whose NOTIFY we missed
                self.nodes.supersede(node, stored_epoch)
            elif stored_epoch == epoch and holder != self.replica:  # released while our lease lapsed
                self.nodes.drop(node, epoch)

    async def _beat(self) -> None:
        now = self.nodes.clock()
        expires = now + dt.timedelta(seconds=self.policy.ttl_s)
        await asyncio.to_thread(self.store._thd_beat, self.replica, format_time(now), format_time(expires))

    async def _lost(self, released: list[Released]) -> None:
        for gone in released:
            log.warning("released the session of a gone replica",
                        extra={"node": gone.node, "session_epoch": gone.session_epoch, "replica": gone.replica})
            await asyncio.to_thread(self.nodes.jobs._thd_node_lost, gone.node)
