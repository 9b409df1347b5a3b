"""The documented maximum of every request field, and the checks that enforce them. Pure.

Each limit has a name (``Message.field``) that the refusal quotes, so a caller
can tell which maximum it crossed. Text is measured in characters, bytes in
bytes and repeated fields in items; a ``field[]`` entry bounds each item of a
repeated field. The same numbers are written in the ``.proto`` comments
(designs.proto, common.proto). Every unsigned 64-bit number (sequence numbers,
epochs, offsets, sizes) is at most 2**63 - 1, what both databases store: the API
refuses a larger one as it decodes the request (hub.api.wide_numbers).

Besides field sizes this module holds the shape of the answers (how much one
page may carry) and of the work a caller may start at once and per second:

* CONCURRENT_CALLS: expensive RPCs (and long-lived streams) one account may run at once;
* RATE_CLASSES / DEFAULT_RATES: a token bucket per account and method class
  (``search``, ``blobs``, ``order``, ``export``, ``grant``; ``enroll`` per peer address, as Nodes.Enroll has no account): ``per_s`` calls a second on
  average, bursts of ``burst``. Both are admission rules, applied by the API's
  interceptor after authentication and before the request body is decoded or
  any database work: a call over either waits for its turn up to ADMISSION_WAIT_S
  (so a normal burst is only slowed, and a caller that floods is held to the
  rate); a call whose turn is further away waits ADMISSION_WAIT_S too and is then
  refused RESOURCE_EXHAUSTED with a RetryInfo hint naming the limit (``limit rate
  search``, ``limit concurrent Designs.Push``): an answer at once would only
  invite a tight retry loop. At most MAX_WAITING calls of one account and limit
  wait; one more is refused at once. A search or blob call that the hub refuses
  (a bad or oversized request) costs REFUSAL_COST more tokens: a caller that keeps
  sending what is refused is slowed further.
  The operator sets other rates with ``spime-hub serve --rate-limit
  CLASS=PER_S/BURST`` (hub.config.HubConfig.rate_limits).
* the ``auth`` rate class is a budget of failed authentications per peer address (an IPv6
  address counts with its /64): a call whose bearer token matches no live account costs its
  address one token (it is UNAUTHENTICATED as before). An address with no token left is refused
  before its token is even looked up, whatever the token, valid or not, the same way as the
  other rate limits (RESOURCE_EXHAUSTED after ADMISSION_WAIT_S, ``limit rate auth``, RetryInfo),
  and each such call costs REFUSAL_COST more: a right guess then answers like a wrong one, so
  guessing stays at the rate, and a wrong token costs no database lookup. An address that stops
  calling may again once its budget refilled (the RetryInfo hint); a successful authentication
  takes nothing from the budget. The hub
  tracks at most MAX_PEERS_TRACKED addresses; past that, the failures of addresses not tracked
  share one budget (a flood from more addresses than that slows those addresses together, and
  the hub's memory stays bounded).
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hub.errors import InvalidArgument, ResourceExhausted

__all__ = [
    "ADMISSION_WAIT_S",
    "CONCURRENT_CALLS",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_RATES",
    "FIELD_LIMITS",
    "ITEM_LIMITS",
    "MAX_CHECKED_MESHES",
    "MAX_FILES",
    "MAX_HELD",
    "MAX_LIVE_GRANTS",
    "MAX_MANIFEST_BYTES",
    "MAX_PAGE_SIZE",
    "MAX_PEERS_TRACKED",
    "MAX_PRINTERS",
    "MAX_WAITING",
    "MULTI_LINE_FIELDS",
    "PAGE_MAX_BYTES",
    "RATE_CLASSES",
    "REFUSAL_COST",
    "PageCut",
    "RateLimit",
    "TokenBucket",
    "auth_failures_limited",
    "check_fields",
    "check_page_size",
    "check_page_token",
    "check_plain_text",
    "check_visible",
    "cut_page",
    "parse_rates",
    "plain_text",
    "rate_limited",
    "too_busy",
    "too_many_grants",
    "too_many_waiting",
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
    "RevokeGrantRequest": {"grant_id": 32, "signature": 128, "statement": 1024},
    "GetGrantRequest": {"grant_id": 32},
}
"""Message name -> field -> maximum (characters, bytes, or items of a repeated field)."""

MAX_PRINTERS = 64
"""Printers one node reports (Hello, Heartbeat)."""
MAX_HELD = 1000
"""Jobs one Hello lists, and leases one Heartbeat renews."""
MAX_LIVE_GRANTS = 1000
"""Licence grants of one design in force at once (recorded, not revoked, ``until`` still ahead): one
grant per node for a whole region's makerspaces, several per revision. One more is RESOURCE_EXHAUSTED
(limit live grants per design) until one is revoked or ends; a script granting in a loop cannot grow
what each order's licence check reads."""

ITEM_LIMITS: Mapping[str, Mapping[str, int]] = {
    "MissingBlobsRequest": {"sha256": 10_000},
    "PushRequest": {"parent_ids": _PARENTS, "files": MAX_FILES},
    "SearchRequest": {"tags": 16},
    "ForkRequest": {"parents": _PARENTS},
    "OrderSpec": {"parameters": 64},
    "Rating": {"criteria": 4},
    "Hello": {"printers": MAX_PRINTERS, "jobs": MAX_HELD},
    "Heartbeat": {"printers": MAX_PRINTERS, "progress": MAX_HELD},
    "PrinterState": {"materials": 32},
    "OfferReply": {"reports": MAX_CHECKED_MESHES},
    "PrintabilityReport": {"findings": 64},
    "Finding": {"details": 16},
    # The wire maximum: an event with more than hub.jobs.MAX_DATA_ENTRIES (32) is recorded as refused
    # and acked, so the agent's outbox moves on; past this one the stream ends, nothing recorded.
    "JobEvent": {"data": 1024, "artifact_sha256": 16},
}
"""Message name -> repeated or map field -> most items, for every repeated field of every request
message. The API counts them (``len()``, no walk) as it decodes a request, before anything reads
an item: a 4-million-item field costs its decoding and nothing more (hub.api.item_counts)."""

CONCURRENT_CALLS: Mapping[str, int] = {
    "Designs.Push": 2,
    "Designs.UploadBlob": 4,
    "Designs.Fork": 2,
    "Designs.Search": 4,
    "Records.Export": 2,
    "Orders.Quote": 2,
    "Orders.PlaceOrder": 2,
    "Orders.WatchOrder": 8,
}
"""Expensive RPCs one account may run at once; one more waits up to ADMISSION_WAIT_S for a
slot, then is RESOURCE_EXHAUSTED (Quote and PlaceOrder slice the design on the hub; a
WatchOrder stream holds its slot while it runs, and a person follows a few orders at once)."""

ADMISSION_WAIT_S = 2.0
"""How long a call over its account's rate or concurrency limit may wait before it is refused."""
MAX_WAITING = 16
"""Calls of one account and limit that may wait at once; one more is refused at once."""
MAX_PEERS_TRACKED = 100_000
"""Peer addresses whose failed authentications the hub counts separately (about 100 bytes each)."""
REFUSAL_COST: Mapping[str, int] = {"search": 10, "blobs": 10, "enroll": 20, "auth": 5}
"""Extra tokens a refused call of a rate class costs its account: the cheap classes a flood of bad
requests would use (orders are held by their rate and concurrency; a customer's mistakes there cost no more).
For ``auth``, what a call costs its address when it arrives with the budget spent."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``per_s`` calls a second on average, with bursts of up to ``burst`` calls."""

    per_s: float
    burst: int


RATE_CLASSES: Mapping[str, str] = {
    "Designs.Search": "search",
    "Designs.MissingBlobs": "blobs",
    "Designs.UploadBlob": "blobs",
    "Orders.Quote": "order",
    "Orders.PlaceOrder": "order",
    "Records.Export": "export",
    "Orders.Grant": "grant",
    "Orders.RevokeGrant": "grant",
    "Nodes.Enroll": "enroll",
}
"""RPC -> the rate class whose token bucket (one per account; for Nodes.Enroll, which needs no
token, one per peer address) it draws from."""

DEFAULT_RATES: Mapping[str, RateLimit] = {
    # A person searches a few times a minute; a script paging through the catalogue a few pages a second.
    "search": RateLimit(per_s=10, burst=50),
    # `spime push` of a 1,000-file revision: a few MissingBlobs calls and up to 1,000 uploads at once.
    "blobs": RateLimit(per_s=50, burst=2000),
    # Quotes slice the design (seconds of CPU each); `spime quote` then `spime order` is two calls.
    "order": RateLimit(per_s=2, burst=50),
    "export": RateLimit(per_s=2, burst=20),
    # A maintainer grants a makerspace or a region at a time, a script a few hundred at once; a grant
    # and revoke loop (each leaves its row on record) is held to about one row a second per account.
    "grant": RateLimit(per_s=1, burst=200),
    # Each node enrolls once; a makerspace sets up its fleet in one go. A refused enrollment (an
    # unknown token) costs REFUSAL_COST more: about ten wrong tokens, then one every 4 s.
    "enroll": RateLimit(per_s=5, burst=200),
    # Failed authentications per peer address (not per account: a wrong token belongs to none). A
    # person's typo or a script with an old token fails a few times; a makerspace's agents behind one
    # address reconnect with a revoked token every few seconds at most.
    "auth": RateLimit(per_s=1, burst=30),
}
"""Rate class -> its default limit per account (``spime-hub serve --rate-limit`` overrides)."""


@dataclass(slots=True)
class TokenBucket:
    """One account's bucket of one rate class (GCRA: ``tat`` is when the bucket is full again)."""

    rate: RateLimit
    tat: float = dataclasses.field(default=-math.inf)

    def reserve(self, now: float, max_wait: float) -> float | None:
        """Take a token: the seconds to wait for it (0 = now), or None (over ``max_wait``; nothing taken).

        Args:
            now: the monotonic time.
            max_wait: the longest wait the caller accepts.
        """
        interval = 1.0 / self.rate.per_s
        new_tat = max(self.tat, now) + interval
        wait = new_tat - now - self.rate.burst * interval
        wait = 0.0 if wait < 1e-9 else wait  # rounding of the float sums is no wait
        if wait > max_wait:
            return None
        self.tat = new_tat
        return wait

    def charge(self, now: float, tokens: float) -> None:
        """Take ``tokens`` more (never waited for: later calls wait longer)."""
        self.tat = max(self.tat, now) + tokens / self.rate.per_s

    def wait_for_token(self, now: float) -> float:
        """Seconds until a token is free (0 = one is free now), taking nothing."""
        interval = 1.0 / self.rate.per_s
        wait = max(self.tat, now) + interval - now - self.rate.burst * interval
        return 0.0 if wait < 1e-9 else wait

    def retry_after(self, now: float) -> float:
        """Seconds until one token is free again."""
        interval = 1.0 / self.rate.per_s
        return max(interval, max(self.tat, now) + interval - now - self.rate.burst * interval)

    def idle(self, now: float) -> bool:
        """Whether the bucket is full (it may be forgotten)."""
        return self.tat <= now


def parse_rates(spec: str | Sequence[str], base: Mapping[str, RateLimit] = DEFAULT_RATES) -> dict[str, RateLimit]:
    """Rates from ``CLASS=PER_S/BURST`` items (comma-separated or a sequence) over ``base``.

    Raises:
        InvalidArgument: an unknown class, or a rate outside 0.01..100000/s, or a burst outside 1..1000000.
    """
    items = [i.strip() for i in (spec.split(",") if isinstance(spec, str) else spec) if i.strip()]
    rates = dict(base)
    for item in items:
        name, _, value = item.partition("=")
        per_s, _, burst = value.partition("/")
        try:
            limit = RateLimit(float(per_s), int(burst or max(1, math.ceil(float(per_s)))))
        except ValueError:
            limit = None
        if name not in base or limit is None or not (0.01 <= limit.per_s <= 100_000 and 1 <= limit.burst <= 1_000_000):
            raise InvalidArgument(
                f"--rate-limit {item!r}: expected CLASS=PER_S/BURST with CLASS one of {', '.join(sorted(base))}, "
                "PER_S 0.01..100000 and BURST 1..1000000, e.g. search=10/50")
        rates[name] = limit
    return rates


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
    field = limit_name.rpartition(".")[2]
    if isinstance(value, str) and field not in _PATHS:
        _check_characters(value, limit_name, field in MULTI_LINE_FIELDS, limit_name)
    size = _measure(value)
    if size > maximum:
        raise InvalidArgument(
            f"{limit_name} has {size:,} {_unit(value)}, over its maximum of {maximum:,} (limit {limit_name})",
            reason="FIELD_TOO_LARGE", field=limit_name,
        )


# C0 and C1 controls (category Cc) and the bidi controls (LRM, RLM, LRE..RLO, LRI..PDI), which reorder
# the text around them when someone else reads it; text of several lines keeps tabs and line ends.
_CONTROLS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
_ONE_LINE_REFUSED = re.compile(f"[{_CONTROLS}\t\n\r]")
_MULTI_LINE_REFUSED = re.compile(f"[{_CONTROLS}]|\r(?!\n)")
MULTI_LINE_FIELDS = frozenset({"message", "reason", "manifest_toml"})
"""Fields of FIELD_LIMITS' messages that hold text of several lines."""
_PATHS = frozenset({"path"})  # hub.paths refuses their control characters with a reason of its own


def check_plain_text(value: str, name: str, limit: int, *, multiline: bool = False, field: str = "") -> str:
    """Check text that people read: at most ``limit`` characters, no control or bidi character (a
    multi-line text keeps tabs, line feeds and CR LF). ``field``: the field at fault (default ``name``).

    Raises:
        InvalidArgument: too long, or the first control or bidi character (by its code point), naming the field.
    """
    if len(value) > limit:
        raise InvalidArgument(f"{name}: at most {limit} characters", reason="FIELD_TOO_LARGE", field=field or name)
    _check_characters(value, name, multiline, field or name)
    return value


# Characters that take no room: besides spaces and format characters (ZWSP, WJ, BOM: category Cf),
# the Hangul and half-width fillers and the blank Braille pattern.
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_BLANK_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def check_visible(value: str, name: str, field: str = "") -> str:
    """Check that text people read shows something: one character that is not a space, a format
    character (zero-width space, word joiner, BOM) or a filler.

    Raises:
        InvalidArgument: only blank or invisible characters, naming the field.
    """
    if not any(ch not in _FILLERS and unicodedata.category(ch) not in _BLANK_CATEGORIES for ch in value):
        raise InvalidArgument(f"{name} must show at least one visible character", reason="FIELD_BLANK",
                              field=field or name)
    return value


def plain_text(value: str, *, multiline: bool = False) -> str:
    """``value`` with each control or bidi character that check_plain_text refuses replaced by U+FFFD:
    for text people read that comes from devices (a printer's error), kept rather than refused."""
    return (_MULTI_LINE_REFUSED if multiline else _ONE_LINE_REFUSED).sub("\ufffd", value)


def _check_characters(value: str, name: str, multiline: bool, field: str) -> None:
    bad = (_MULTI_LINE_REFUSED if multiline else _ONE_LINE_REFUSED).search(value)
    if bad is not None:
        allowed = "plain text; tabs and line ends are fine" if multiline else "plain text on one line"
        raise InvalidArgument(f"{name} holds the control or bidi character U+{ord(bad[0]):04X}: it takes {allowed}",
                              reason="CONTROL_CHARACTER", field=field)


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


def check_page_token(token: str) -> str:
    """A page token as sent, once it is no longer than any the hub hands out.

    Raises:
        InvalidArgument: over FIELD_LIMITS' PageRequest.page_token, naming the limit.
    """
    check_fields("PageRequest", {"page_token": token})
    return token


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


def rate_limited(rate_class: str, account: str, rate: RateLimit, retry_after_s: float) -> ResourceExhausted:
    """The refusal for a call over its account's rate (retrying after the hint helps)."""
    return ResourceExhausted(
        f"{account} calls {rate_class} RPCs faster than one account may: {rate.per_s:g} a second, bursts of "
        f"{rate.burst} (limit rate {rate_class}); retry in {retry_after_s:.1f} s",
        retryable=True, reason="RATE_LIMIT", retry_after_s=retry_after_s,
    )


def too_many_grants(design: str, live: int) -> ResourceExhausted:
    """The refusal for one grant too many of a design (revoking one, or one ending, helps; waiting a moment does not)."""
    return ResourceExhausted(
        f"{design} has {live} grants in force, the most one design may have (limit live grants per design, "
        f"{MAX_LIVE_GRANTS}); revoke one (`spime grant revoke ID`) or let one end first",
        reason="GRANT_LIMIT",
    )


def auth_failures_limited(peer: str, rate: RateLimit, retry_after_s: float) -> ResourceExhausted:
    """The refusal for every call from an address that spent its budget of failed authentications."""
    return ResourceExhausted(
        f"too many calls with an unknown or revoked token from {peer}: {rate.burst} in a row, then "
        f"{rate.per_s:g} a second (limit rate auth); the hub answers no call from there until then, whatever "
        f"its token: check your token (SPIME_TOKEN or --token) and retry in {retry_after_s:.1f} s",
        retryable=True, reason="RATE_LIMIT", retry_after_s=retry_after_s,
    )


def too_many_waiting(limit: str, account: str, waiting: int) -> ResourceExhausted:
    """The refusal for a call when too many of the account's calls already wait for ``limit``."""
    return ResourceExhausted(
        f"{account} already has {waiting} calls waiting for the hub (limit {limit}); "
        "retry when earlier calls are answered",
        retryable=True, reason="RATE_LIMIT" if limit.startswith("rate") else "CONCURRENCY_LIMIT", retry_after_s=1.0,
    )
