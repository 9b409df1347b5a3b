"""The hub's domain values: frozen dataclasses and enums, nothing else.

Rows become these in hub/store, protos become these in hub/api/convert.py.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "SLUG_PATTERN",
    "Account",
    "Attribution",
    "BlobInfo",
    "Design",
    "Fabrication",
    "FileEntry",
    "LedgerLine",
    "PrintabilityRecord",
    "Proposal",
    "ProposalState",
    "RatingRecord",
    "Revision",
    "RevisionKind",
    "Role",
]

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}\Z")


class Role(enum.Enum):
    """What an account may do; checked on every call (hub/auth.py)."""

    DESIGNER = "designer"
    OPERATOR = "operator"
    CUSTOMER = "customer"
    ADMIN = "admin"
    NODE = "node"


class RevisionKind(enum.Enum):
    PUSH = "push"
    FORK = "fork"
    PROPOSAL = "proposal"


class ProposalState(enum.Enum):
    OPEN = "open"
    ACCEPTED = "accepted"
    DECLINED = "declined"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a revision: relative POSIX path, SHA-256 hex, size in bytes."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: Role
    public_key: str = ""  # hex of a registered Ed25519 key, empty when none


@dataclass(frozen=True, slots=True)
class BlobInfo:
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Attribution:
    """An attribution obligation that travels with every fork and job."""

    design: str
    revision_id: str
    title: str
    license: str
    licensor: str
    contributors: tuple[str, ...]
    notice: str


@dataclass(frozen=True, slots=True)
class PrintabilityRecord:
    """A stored printability report of one mesh of a revision (JSON of the report)."""

    path: str
    ok: bool
    report: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Revision:
    id: str
    design: str
    parent_ids: tuple[str, ...]
    manifest_toml: str
    files: tuple[FileEntry, ...]
    author: str
    created_at: str
    message: str
    kind: RevisionKind
    signature: bytes = b""
    public_key: bytes = b""
    reports: tuple[PrintabilityRecord, ...] = ()
    attributions: tuple[Attribution, ...] = ()


@dataclass(frozen=True, slots=True)
class Design:
    slug: str
    title: str
    description: str
    license: str
    head_revision_id: str
    maintainers: tuple[str, ...]
    tags: tuple[str, ...]
    forked_from: tuple[str, ...]
    created_at: str
    updated_at: str
    revision_count: int
    attributions: tuple[Attribution, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Proposal:
    id: str
    design: str
    revision: Revision
    author: str
    state: ProposalState
    base_revision_id: str
    decided_by: str = ""
    reason: str = ""
    created_at: str = ""
    decided_at: str = ""


@dataclass(frozen=True, slots=True)
class Fabrication:
    """One physical incarnation of a design revision (filled by later issues' nodes)."""

    job_id: str
    order_id: str
    revision_id: str
    node: str
    printer: str
    material: str
    settings: Mapping[str, str]
    estimated_seconds: int
    actual_seconds: int
    estimated_filament_g: float
    actual_filament_g: float
    outcome: str
    failure_reason: str
    finished_at: str
    incarnation_id: str = ""
    printer_model: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)
    actual_filament_mm: float = 0.0
    resends: int = 0


@dataclass(frozen=True, slots=True)
class RatingRecord:
    rater: str
    role: str
    stars: int
    criteria: Mapping[str, int]
    comment: str
    at: str


@dataclass(frozen=True, slots=True)
class LedgerLine:
    order_id: str
    recipient: str
    share: str
    currency: str
    minor_units: int
    equation_version: str
    explanation: str = ""
