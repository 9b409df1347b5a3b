"""Accounts and their bearer tokens (only the tokens' SHA-256 is stored)."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from hub.domain import Account, Role
from hub.errors import AlreadyExists, NotFound
from hub.store import schema
from hub.store.engine import connect, write

__all__ = ["AccountStore", "token_digest"]


def token_digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _account(row: sa.Row) -> Account:  # type: ignore[type-arg]
    return Account(name=row.name, role=Role(row.role), public_key=row.public_key)


class AccountStore:
    """One connector for the accounts aggregate (accounts + tokens)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _thd_add(self, name: str, role: Role, token: str, now: str) -> Account:
        """Create an account with its first token.

        Raises:
            AlreadyExists: the name is taken.
        """
        with write(self.engine) as conn:
            if conn.scalar(sa.select(sa.func.count()).where(schema.accounts.c.name == name)):
                raise AlreadyExists(f"account {name!r} already exists; pick another name")
            conn.execute(sa.insert(schema.accounts).values(name=name, role=role.value, created_at=now))
            conn.execute(
                sa.insert(schema.tokens).values(token_sha256=token_digest(token), account=name, created_at=now)
            )
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

    def _thd_get(self, name: str) -> Account:
        """Raises: NotFound: no such account."""
        with connect(self.engine) as conn:
            return _account(self._require(conn, name))

    def _thd_exists(self, name: str) -> bool:
        with connect(self.engine) as conn:
            return bool(conn.scalar(sa.select(sa.func.count()).where(schema.accounts.c.name == name)))

    def _thd_set_public_key(self, name: str, public_key_hex: str) -> None:
        with write(self.engine) as conn:
            conn.execute(
                sa.update(schema.accounts).where(schema.accounts.c.name == name).values(public_key=public_key_hex)
            )

    @staticmethod
    def _require(conn: sa.Connection, name: str) -> sa.Row:  # type: ignore[type-arg]
        row = conn.execute(sa.select(schema.accounts).where(schema.accounts.c.name == name)).first()
        if row is None:
            raise NotFound(f"no account named {name!r}")
        return row
