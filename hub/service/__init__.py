"""The hub's use cases, composed into one object the API layer calls."""

from __future__ import annotations

from dataclasses import dataclass

from hub.service.accounts import AccountService
from hub.service.blobs import BlobService
from hub.service.designs import DesignService
from hub.service.forks import ForkService
from hub.service.records import RecordService

__all__ = ["AccountService", "BlobService", "DesignService", "ForkService", "Hub", "RecordService"]


@dataclass(frozen=True, slots=True)
class Hub:
    """Every use case of a running hub."""

    accounts: AccountService
    blobs: BlobService
    designs: DesignService
    forks: ForkService
    records: RecordService
