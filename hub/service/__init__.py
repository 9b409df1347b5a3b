"""The hub's use cases, composed into one object the API layer calls."""

from __future__ import annotations

from dataclasses import dataclass

from hub.service.accounts import AccountService
from hub.service.blobs import BlobService
from hub.service.designs import DesignService
from hub.service.forks import ForkService
from hub.service.grants import GrantService
from hub.service.jobs import JobService
from hub.service.nodes import NodeService
from hub.service.orders import OrderService
from hub.service.records import RecordService

__all__ = [
    "AccountService", "BlobService", "DesignService", "ForkService", "GrantService", "Hub", "JobService", "NodeService",
    "OrderService", "RecordService",
]


@dataclass(frozen=True, slots=True)
class Hub:
    """Every use case of a running hub."""

    accounts: AccountService
    blobs: BlobService
    designs: DesignService
    forks: ForkService
    records: RecordService
    jobs: JobService
    nodes: NodeService
    orders: OrderService | None = None  # issue 8: quotes, orders, ratings, grants, the ledger
