"""The documented maximum of every request field, and the checks that enforce them. Pure.

Each limit has a name (``Message.field``) that the refusal quotes, so a caller
can tell which maximum it crossed. Text is measured in characters, bytes in
bytes and repeated fields in items; a ``field[]`` entry bounds each item of a
repeated field. The same numbers are written in the ``.proto`` comments
(designs.proto, common.proto).

Besides field sizes this module holds the shape of the answers (how much one
page may carry) and of the work a caller may start at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hub.errors import InvalidArgument, ResourceExhausted

__all__ = [
    "CONCURRENT_CALLS",
    "DEFAULT_PAGE_SIZE",
    "FIELD_LIMITS",
    "MAX_CHECKED_MESHES",
    "MAX_FILES",
    "MAX_MANIFEST_BYTES",
    "MAX_PAGE_SIZE",
    "PAGE_MAX_BYTES",
    "PageCut",
    "check_fields",
    "check_page_size",
    "cut_page",
    "too_busy",
]

MAX_FILES = 1000
"""Files one revision lists (besides spime.toml)."""
MAX_MANIFEST_BYTES = 256 * 1024
"""Largest spime.toml, in UTF-8 bytes."""
MAX_CHECKED_MESHES = 32
"""Distinct mesh blobs the hub checks for printability per revision; others get a `not_checked` finding."""
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
PAGE_MAX_BYTES = 4 * 1024 * 1024
"""Serialized bytes one page of a list answer may carry (half the 8 MiB message limit)."""

_SLUG = 63
_ID = 64
_NAME = 63
_TEXT = 256
_MESSAGE = 64 * 1024
_PATH = 1024
_LICENSE = 256
_PARENTS = 16

FIELD_LIMITS: Mapping[str, Mapping[str, int]] = {
    "MissingBlobsRequest": {"sha256": 10_000, "sha256[]": _ID},
    "DownloadBlobRequest": {"sha256": _ID},
    "PushRequest": {
        "design": _SLUG, "parent_ids": _PARENTS, "parent_ids[]": _ID, "manifest_toml": MAX_MANIFEST_BYTES,
        "files": MAX_FILES, "created_at": 64, "message": _MESSAGE, "signature": 64, "public_key": 32,
    },
    "GetDesignRequest": {"design": _SLUG},
    "GetRevisionRequest": {"design": _SLUG, "revision_id": _ID},
    "LogRequest": {"design": _SLUG, "from_revision_id": _ID},
    "SearchRequest": {"text": _TEXT, "license": _LICENSE, "tags": 16, "tags[]": 64},
    "ForkRequest": {"parents": _PARENTS, "name": _SLUG, "license": _LICENSE, "message": _MESSAGE, "title": 200},
    "ForkParent": {"design": _SLUG, "revision_id": _ID},
    "FileEntry": {"path": _PATH, "sha256": _ID},
    "ListProposalsRequest": {"design": _SLUG},
    "AcceptProposalRequest": {"design": _SLUG, "proposal_id": _ID},
    "DeclineProposalRequest": {"design": _SLUG, "proposal_id": _ID, "reason": 4096},
    "AddMaintainerRequest": {"design": _SLUG, "account": _NAME},
    "GetRecordRequest": {"design": _SLUG},
    "ExportRequest": {"design": _SLUG, "revision_id": _ID},
    "PageRequest": {"page_token": _ID},
}
"""Message name -> field -> maximum (characters, bytes, or items of a repeated field)."""

CONCURRENT_CALLS: Mapping[str, int] = {
    "Designs.Push": 2,
    "Designs.UploadBlob": 4,
    "Designs.Fork": 2,
    "Designs.Search": 4,
    "Records.Export": 2,
}
"""Expensive RPCs one account may run at once; one more is RESOURCE_EXHAUSTED."""


def _measure(value: object) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    return len(value)  # type: ignore[arg-type]


def _unit(value: object) -> str:
    if isinstance(value, str):
        return "bytes of UTF-8"
    return "bytes" if isinstance(value, bytes) else "items"


def _check_one(limit_name: str, value: object, maximum: int) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise InvalidArgument(f"{limit_name} contains a NUL character; remove it", reason="NUL_CHARACTER",
                              field=limit_name)
    size = _measure(value)
    if size > maximum:
        raise InvalidArgument(
            f"{limit_name} has {size:,} {_unit(value)}, over its maximum of {maximum:,} (limit {limit_name})",
            reason="FIELD_TOO_LARGE", field=limit_name,
        )


def check_fields(message: str, values: Mapping[str, object]) -> None:
    """Check the fields of one request message against FIELD_LIMITS[message].

    Args:
        message: the proto message name, e.g. "SearchRequest".
        values: field name -> value (str, bytes, or a sequence for repeated fields).

    Raises:
        InvalidArgument: a field is over its maximum or holds a NUL character;
            the message names the limit ("SearchRequest.tags").
    """
    limits = FIELD_LIMITS.get(message, {})
    for field, value in values.items():
        name = f"{message}.{field}"
        if field in limits:
            _check_one(name, value, limits[field])
        if f"{field}[]" in limits and not isinstance(value, str | bytes):
            for item in value:  # type: ignore[attr-defined]
                _check_one(f"{name}[]", item, limits[f"{field}[]"])


def check_page_size(requested: int, what: str) -> int:
    """The page size to use (0 = the default).

    Raises:
        InvalidArgument: over MAX_PAGE_SIZE.
    """
    if requested > MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"{what} page_size {requested} is over its maximum of {MAX_PAGE_SIZE} (limit PageRequest.page_size)",
            reason="FIELD_TOO_LARGE", field="page.page_size",
        )
    return requested or DEFAULT_PAGE_SIZE


@dataclass(frozen=True, slots=True)
class PageCut:
    """How many of a page's candidate items fit, and whether any were held back."""

    count: int
    truncated: bool


def cut_page(item_sizes: Sequence[int], max_bytes: int = PAGE_MAX_BYTES) -> PageCut:
    """How many leading items fit in ``max_bytes`` (always at least one, so paging advances).

    Args:
        item_sizes: serialized size in bytes of each candidate item, in order.
        max_bytes: what one page may carry.
    """
    total = 0
    for index, size in enumerate(item_sizes):
        total += size + 8  # field tag and length prefix, generously
        if total > max_bytes and index > 0:
            return PageCut(index, True)
    return PageCut(len(item_sizes), False)


def too_busy(method: str, account: str, running: int) -> ResourceExhausted:
    """The refusal for one call too many of an expensive RPC (retrying after one finishes helps)."""
    return ResourceExhausted(
        f"{account} already runs {running} {method} call(s), the most one account may run at once "
        f"(limit concurrent {method}); retry when one finishes",
        retryable=True, reason="CONCURRENCY_LIMIT", retry_after_s=1.0,
    )
