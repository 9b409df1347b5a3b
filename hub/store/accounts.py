"""Accounts, their bearer tokens (only the tokens' SHA-256 is stored) and their registered public keys."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from hub.domain import Account, Role
from hub.errors import AlreadyExists, NotFound, ResourceExhausted
from hub.keys import KeyRegistration
from hub.store import schema
from hub.store.engine import connect, write

__all__ = ["DIGESTS_PER_QUERY", "AccountStore", "token_digest"]


def token_digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _key(row: sa.Row) -> KeyRegistration:  # type: ignore[type-arg]
    return KeyRegistration(account=row.account, public_key=bytes.fromhex(row.public_key),
                           registered_at=row.registered_at, revoked_at=row.revoked_at or "",
                           hub_signature=bytes.fromhex(row.hub_signature))


def _account(row: sa.Row) -> Account:  # type: ignore[type-arg]
    return Account(name=row.name, role=Role(row.role), public_key=row.public_key)


DIGESTS_PER_QUERY = 500  # token digests bound in one IN list (a recheck of 10,000 live sessions asks for all)
_BY_DIGESTS = (  # built once: token checks are the hottest query of a reconnect storm
    sa.select(schema.accounts, schema.tokens.c.token_sha256)
    .join(schema.tokens, schema.tokens.c.account == schema.accounts.c.name)
    .where(schema.tokens.c.token_sha256.in_(sa.bindparam("digests", expanding=True)),
           schema.tokens.c.revoked_at.is_(None))
)

class AccountStore:
    """One connector for the accounts aggregate (accounts + tokens)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _thd_add(self, name: str, role: Role, token: str, now: str) -> Account:
        """Create an account with its first token.

        Raises:
            AlreadyExists: the name is taken.
        """
        taken = AlreadyExists(f"account {name!r} already exists; pick another name")
        try:
            with write(self.engine) as conn:
                if conn.scalar(sa.select(sa.func.count()).where(schema.accounts.c.name == name)):
                    raise taken
                conn.execute(sa.insert(schema.accounts).values(name=name, role=role.value, created_at=now))
                conn.execute(
                    sa.insert(schema.tokens).values(token_sha256=token_digest(token), account=name, created_at=now)
                )
        except sa.exc.IntegrityError as exc:  # a concurrent add of the same name won (PostgreSQL)
            raise taken from exc
        return Account(name=name, role=role)

    def _thd_add_token(self, name: str, token: str, now: str) -> None:
        """Give an existing account another token.

        Raises:
            NotFound: no such account.
        """
        with write(self.engine) as conn:
            self._require(conn, name)
            conn.execute(
                sa.insert(schema.tokens).values(token_sha256=token_digest(token), account=name, created_at=now)
            )

    def _thd_by_token(self, token: str) -> Account | None:
        """The account a token belongs to, or None when unknown or revoked."""
        query = (
            sa.select(schema.accounts)
            .join(schema.tokens, schema.tokens.c.account == schema.accounts.c.name)
            .where(schema.tokens.c.token_sha256 == token_digest(token), schema.tokens.c.revoked_at.is_(None))
        )
        with connect(self.engine) as conn:
            row = conn.execute(query).first()
        return None if row is None else _account(row)

    def _thd_by_digests(self, digests: Sequence[str]) -> dict[str, Account]:
        """The accounts of live (unrevoked) tokens given by their stored form (token_digest), a query
        per DIGESTS_PER_QUERY: {digest: account}; unknown or revoked digests are absent."""
        wanted = list(digests)
        with connect(self.engine) as conn:
            return {row.token_sha256: _account(row)
                    for i in range(0, len(wanted), DIGESTS_PER_QUERY)
                    for row in conn.execute(_BY_DIGESTS, {"digests": wanted[i:i + DIGESTS_PER_QUERY]})}

    def _thd_revoke_tokens(self, name: str, now: str) -> int:
        """Revoke every live token of an account; returns how many were.

        Raises:
            NotFound: no such account.
        """
        with write(self.engine) as conn:
            self._require(conn, name)
            return int(conn.execute(sa.update(schema.tokens).where(
                schema.tokens.c.account == name, schema.tokens.c.revoked_at.is_(None)).values(revoked_at=now)).rowcount)

    def _thd_get(self, name: str) -> Account:
        """Raises: NotFound: no such account."""
        with connect(self.engine) as conn:
            return _account(self._require(conn, name))

    def _thd_exists(self, name: str) -> bool:
        with connect(self.engine) as conn:
            return bool(conn.scalar(sa.select(sa.func.count()).where(schema.accounts.c.name == name)))

    # -- public keys (issue 10 section 4) --------------------------------------------

    def _thd_add_key(self, reg: KeyRegistration, max_keys: int) -> KeyRegistration:
        """Register a key to its account.

        Raises:
            NotFound: no such account.
            AlreadyExists: the key is registered already (to this or another account).
            ResourceExhausted: the account holds max_keys keys, live or revoked.
        """
        keys = schema.account_keys
        try:
            with write(self.engine) as conn:
                self._require(conn, reg.account, lock=True)  # concurrent registrations count the keys in turn
                owner = conn.scalar(sa.select(keys.c.account).where(keys.c.public_key == reg.public_key.hex()))
                if owner is not None:
                    whose = "your account" if owner == reg.account else "another account"
                    raise AlreadyExists(f"key {reg.fingerprint} is already registered to {whose}")
                held = conn.scalar(sa.select(sa.func.count()).where(keys.c.account == reg.account)) or 0
                if held >= max_keys:
                    raise ResourceExhausted(f"an account holds at most {max_keys} keys, live or revoked")
                conn.execute(sa.insert(keys).values(
                    public_key=reg.public_key.hex(), account=reg.account, fingerprint=reg.fingerprint,
                    registered_at=reg.registered_at, revoked_at=None, hub_signature=reg.hub_signature.hex()))
        except sa.exc.IntegrityError as exc:  # a concurrent registration of the same key won
            raise AlreadyExists(f"key {reg.fingerprint} is already registered") from exc
        return reg

    def _thd_keys(self, account: str) -> list[KeyRegistration]:
        """Every key of an account, oldest first.

        Raises:
            NotFound: no such account.
        """
        keys = schema.account_keys
        with connect(self.engine) as conn:
            self._require(conn, account)
            rows = conn.execute(sa.select(keys).where(keys.c.account == account)
                                .order_by(keys.c.registered_at, keys.c.fingerprint)).all()
        return [_key(row) for row in rows]

    def _thd_key(self, public_key: bytes) -> KeyRegistration | None:
        """The registration of a key, or None when no account registered it."""
        keys = schema.account_keys
        with connect(self.engine) as conn:
            row = conn.execute(sa.select(keys).where(keys.c.public_key == bytes(public_key).hex())).first()
        return None if row is None else _key(row)

    def _thd_revoke_key(self, account: str, fingerprint: str,
                        revoke: Callable[[KeyRegistration], KeyRegistration]) -> KeyRegistration:
        """Replace a key's registration by ``revoke(current)`` in one transaction.

        Raises:
            NotFound: the account has no key with this fingerprint.
            HubError: whatever ``revoke`` raises (nothing is changed then).
        """
        keys = schema.account_keys
        with write(self.engine) as conn:
            # locked (PostgreSQL; SQLite's writer is alone): two revocations at once must not both
            # pass the "earlier, never later" check against the same old row
            row = conn.execute(sa.select(keys).where(keys.c.account == account, keys.c.fingerprint == fingerprint)
                               .with_for_update()).first()
            if row is None:
                raise NotFound(f"{account} has no key with fingerprint {fingerprint} (see `spime key list`)")
            revoked = revoke(_key(row))
            conn.execute(sa.update(keys).where(keys.c.public_key == row.public_key).values(
                revoked_at=revoked.revoked_at, hub_signature=revoked.hub_signature.hex()))
        return revoked

    @staticmethod
    def _require(conn: sa.Connection, name: str, *, lock: bool = False) -> sa.Row:  # type: ignore[type-arg]
        """The account's row, locked until the transaction ends with ``lock`` (PostgreSQL's FOR UPDATE;
        SQLite's writer is alone already).

        Raises:
            NotFound: no such account.
        """
        query = sa.select(schema.accounts).where(schema.accounts.c.name == name)
        row = conn.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise NotFound(f"no account named {name!r}")
        return row
