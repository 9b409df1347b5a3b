"""Accounts: create (with a token), authenticate a token."""

from __future__ import annotations

import asyncio
import re

from hub.auth import new_token
from hub.domain import Account, Role
from hub.errors import InvalidArgument
from hub.service.common import Clock, format_time
from hub.store.accounts import AccountStore

__all__ = ["AccountService", "check_account_name"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def check_account_name(name: str) -> str:
    """Raises: InvalidArgument: not 1-63 lowercase letters, digits, '_', '.', '-'."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(f"account name {name!r:.80} must be 1-63 lowercase letters, digits, '_', '.' or '-'")
    return name


def parse_role(text: str) -> Role:
    """Raises: InvalidArgument: unknown role."""
    try:
        return Role(text)
    except ValueError as exc:
        roles = "|".join(r.value for r in Role)
        raise InvalidArgument(f"unknown role {text!r}: use {roles}") from exc


class AccountService:
    def __init__(self, accounts: AccountStore, clock: Clock) -> None:
        self.accounts, self.clock = accounts, clock

    def _thd_add_user(self, name: str, role: Role) -> tuple[Account, str]:
        """Create an account; returns it and its token (shown once).

        Raises:
            InvalidArgument: bad name.
            AlreadyExists: the name is taken.
        """
        token = new_token()
        account = self.accounts._thd_add(check_account_name(name), role, token, format_time(self.clock()))
        return account, token

    async def authenticate(self, token: str) -> Account | None:
        """The account of a token, or None."""
        return await asyncio.to_thread(self.accounts._thd_by_token, token)
