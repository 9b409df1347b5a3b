"""Who may call what: bearer tokens and the role table. Pure rules.

Every RPC is authenticated by ``authorization: Bearer <token>`` metadata and then
checked against ROLE_RULES by its short name ("Designs.Push"). A method missing
from the table is allowed to admins only (deny by default). Membership rules
(only maintainers move a head) are checked by the service, not here.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

from hub.domain import Account, Role
from hub.errors import PermissionDenied, Unauthenticated

__all__ = ["PUBLIC_PREFIXES", "ROLE_RULES", "TokenCache", "authorize", "bearer_token", "is_public", "new_token", "short_name"]

# People's roles: a node credential can do nothing but be a node (issue 7).
_ALL = frozenset(Role) - {Role.NODE}
_NODES = frozenset({Role.NODE})
_AUTHORS = frozenset({Role.DESIGNER, Role.ADMIN})

ROLE_RULES: dict[str, frozenset[Role]] = {
    "Accounts.WhoAmI": _ALL | _NODES,
    "Accounts.GetHubKey": _ALL,
    "Accounts.ListKeys": _ALL,
    "Accounts.RegisterKey": _AUTHORS,
    "Accounts.RevokeKey": _AUTHORS,
    "Designs.MissingBlobs": _AUTHORS,
    "Designs.UploadBlob": _AUTHORS,
    "Designs.Push": _AUTHORS,
    "Designs.Fork": _AUTHORS,
    "Designs.AcceptProposal": _AUTHORS,
    "Designs.DeclineProposal": _AUTHORS,
    "Designs.AddMaintainer": _AUTHORS,
    "Designs.DownloadBlob": _ALL,
    "Designs.GetDesign": _ALL,
    "Designs.GetRevision": _ALL,
    "Designs.Log": _ALL,
    "Designs.Search": _ALL,
    "Designs.ListProposals": _ALL,
    "Records.GetRecord": _ALL,
    "Records.Export": _ALL,
    "Records.GetLedger": _ALL,
    "Records.SetValueEquation": _AUTHORS,
    "Records.SetParticipation": _AUTHORS,
    "Orders.Quote": _ALL,
    "Orders.PlaceOrder": _ALL,
    "Orders.GetOrder": _ALL,
    "Orders.ListOrders": _ALL,
    "Orders.WatchOrder": _ALL,
    "Orders.CancelOrder": _ALL,
    # a node rates the design it printed (role maker); the service checks it made the order
    "Orders.RateOrder": _ALL | _NODES,
    "Orders.Grant": _AUTHORS,
    "Orders.ListGrants": _ALL,
    "Orders.RevokeGrant": _AUTHORS,
    "Orders.GetGrant": _ALL,
    "Orders.GetIncarnation": _ALL,
    "Nodes.Session": _NODES,
    "Nodes.FetchArtifact": _NODES,
    "Nodes.PutArtifact": _NODES,
}

# Standard services that must answer without a token (health checks, grpcurl list).
PUBLIC_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.v1alpha.", "/grpc.reflection.v1.")
# An agent exchanges its one-time enrollment token for a credential: it has none yet.
_PUBLIC_METHODS = frozenset({"/spimeforge.v1.Nodes/Enroll"})

TOKEN_PREFIX = "spf_"


def new_token() -> str:
    """A fresh bearer token (shown once; the hub keeps only its hash)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def short_name(full_method: str) -> str:
    """"/spimeforge.v1.Designs/Push" → "Designs.Push"."""
    service, _, method = full_method.lstrip("/").partition("/")
    return f"{service.rsplit('.', 1)[-1]}.{method}"


def is_public(full_method: str) -> bool:
    """Whether a method is served without authentication."""
    return full_method.startswith(PUBLIC_PREFIXES) or full_method in _PUBLIC_METHODS


def bearer_token(metadata: list[tuple[str, str | bytes]] | tuple[tuple[str, str | bytes], ...]) -> str:
    """Extract the token of an ``authorization: Bearer …`` header.

    Raises:
        Unauthenticated: the header is missing or not a bearer token.
    """
    for key, value in metadata:
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    raise Unauthenticated(
        "no token: set SPIME_TOKEN or pass --token (get one with `spime-hub user add NAME --role ROLE`)"
    )


def authorize(full_method: str, account: Account | None) -> Account:
    """Check that an account may call a method.

    Raises:
        Unauthenticated: the token matched no account.
        PermissionDenied: the account's role may not call this method.
    """
    if account is None:
        raise Unauthenticated("unknown or revoked token: ask the hub's admin for a new one")
    name = short_name(full_method)
    allowed = ROLE_RULES.get(name, frozenset({Role.ADMIN}))
    if account.role not in allowed and account.role is not Role.ADMIN:
        roles = ", ".join(sorted(r.value for r in allowed)) or "admin"
        raise PermissionDenied(f"{name} needs role {roles}; {account.name} is {account.role.value}")
    return account


class TokenCache:
    """Accounts of recently checked tokens, keyed by the token's stored form (its SHA-256, never the
    token itself), for at most ``ttl_s`` seconds and ``max_entries`` entries (least recently added
    go first). Only live tokens are cached; :meth:`forget_account` (revocation) drops an account's
    entries at once, and the short TTL bounds how long a revocation made elsewhere (another hub
    replica, SQL) can go unnoticed. Thread safe; the caller passes the monotonic time.
    """

    def __init__(self, ttl_s: float = 60.0, max_entries: int = 100_000) -> None:
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._entries: OrderedDict[str, tuple[Account, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str, now: float) -> Account | None:
        """The cached account of a token digest, None when absent or expired."""
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry[1] <= now:
                del self._entries[digest]
                return None
            return entry[0]

    def put(self, digest: str, account: Account, now: float) -> None:
        with self._lock:
            self._entries[digest] = (account, now + self.ttl_s)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, digest: str) -> None:
        """Drop one token's entry (it was found revoked)."""
        with self._lock:
            self._entries.pop(digest, None)

    def forget_account(self, name: str) -> None:
        """Drop every cached token of an account (its tokens were revoked)."""
        with self._lock:
            for digest in [d for d, (account, _) in self._entries.items() if account.name == name]:
                del self._entries[digest]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
