"""Accounts: create (with a token), authenticate a token, register and revoke public keys.

A revision's signature counts only if it verifies with a key registered to its
author at the revision's time (issue 10 section 4); the hub signs every key
registration with its own key so that bundles prove authorship offline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from hub import keys, ledger
from hub.auth import TokenCache, new_token
from hub.domain import Account, Role
from hub.errors import FailedPrecondition, IntegrityError, InvalidArgument, PermissionDenied
from hub.keys import KeyRegistration
from hub.provenance import generate_private_key, public_key_of
from hub.service.batching import Batcher
from hub.service.common import Clock, format_time, parse_time
from hub.store.accounts import AccountStore, token_digest

__all__ = ["MAX_KEYS_PER_ACCOUNT", "PROOF_SKEW_S", "AccountService", "check_account_name", "check_new_account_name"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}\Z")
_FINGERPRINT = re.compile(r"^[0-9a-f]{32}\Z")
MAX_KEYS_PER_ACCOUNT = 100
PROOF_SKEW_S = 300
MAX_REVOKE_AHEAD = dt.timedelta(days=366)
_REGISTER_HINT = "run `spime key register` to register it to your account"


def check_account_name(name: str) -> str:
    """Raises: InvalidArgument: not 1-63 lowercase letters, digits, '_', '.', '-'."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(f"account name {name!r:.80} must be 1-63 lowercase letters, digits, '_', '.' or '-'")
    return name


def check_new_account_name(name: str) -> str:
    """The name of an account about to be made: an account name that is not one of the ledger's own
    recipients (its credits would merge with theirs). Lookups take any account name (check_account_name).

    Raises:
        InvalidArgument: a bad or reserved name.
    """
    if check_account_name(name) in ledger.RESERVED_RECIPIENTS:
        raise InvalidArgument(f"account name {name!r} is reserved: the ledger credits the {name} under it; "
                              "pick another name", reason="ACCOUNT_NAME_RESERVED")
    return name


def parse_role(text: str) -> Role:
    """Raises: InvalidArgument: unknown role."""
    try:
        return Role(text)
    except ValueError as exc:
        roles = "|".join(r.value for r in Role)
        raise InvalidArgument(f"unknown role {text!r}: use {roles}") from exc


class AccountService:
    """Accounts, tokens and public keys.

    Args:
        accounts: the store connector.
        clock: the hub's clock.
        hub_key: the hub's raw Ed25519 private key (signs key registrations);
            None makes a throw-away one (tests and one-shot commands).
    """

    def __init__(self, accounts: AccountStore, clock: Clock, hub_key: bytes | None = None) -> None:
        self.accounts, self.clock = accounts, clock
        self._hub_key = hub_key if hub_key is not None else generate_private_key()
        self.hub_public_key = public_key_of(self._hub_key)
        # Token checks: live tokens cached briefly (revocation here clears them), misses of callers
        # arriving together looked up with one query (a reconnect storm is thousands at once).
        self.token_cache = TokenCache()
        self._lookups: Batcher[str, Account | None] = Batcher(self._thd_lookup_many, max_batch=512)

    def _thd_add_user(self, name: str, role: Role) -> tuple[Account, str]:
        """Create an account; returns it and its token (shown once).

        Raises:
            InvalidArgument: bad or reserved name.
            AlreadyExists: the name is taken.
        """
        token = new_token()
        account = self.accounts._thd_add(check_new_account_name(name), role, token, format_time(self.clock()))
        return account, token

    def _thd_new_token(self, name: str) -> str:
        """Give an existing account another token (shown once); its other tokens keep working
        until revoked (rotation: issue a new one, switch, revoke the old ones).

        Raises:
            InvalidArgument: bad name.
            NotFound: no such account.
        """
        token = new_token()
        self.accounts._thd_add_token(check_account_name(name), token, format_time(self.clock()))
        return token

    def cached_first(self, authenticate: Callable[[str], Awaitable[Account | None]]
                     ) -> Callable[[str], Awaitable[Account | None]]:
        """``authenticate`` (e.g. :meth:`authenticate` run on the hub's auth loop) answered from the
        token cache on the caller's own loop when it can: no thread or loop hop for a cached token."""
        async def check(token: str) -> Account | None:
            cached = self.token_cache.get(token_digest(token), time.monotonic())
            return cached if cached is not None else await authenticate(token)

        return check

    async def authenticate(self, token: str) -> Account | None:
        """The account of a live token, or None (unknown or revoked)."""
        digest = token_digest(token)
        cached = self.token_cache.get(digest, time.monotonic())
        if cached is not None:
            return cached
        account = await self._lookups.submit(digest)
        if account is not None:
            self.token_cache.put(digest, account, time.monotonic())
        return account

    def _thd_lookup_many(self, digests: Sequence[str]) -> list[Account | None | Exception]:
        found = self.accounts._thd_by_digests(sorted(set(digests)))
        return [found.get(d) for d in digests]

    def _thd_live_accounts(self, digests: Sequence[str]) -> dict[str, Account]:
        """The accounts of those token digests still live, read from the database (a revocation by
        another process counts at once); the others leave the token cache, and the live ones are
        cached afresh. A token just read live is as good as one just checked: the tokens of open
        streams (rechecked every CREDENTIAL_RECHECK_S) stay cached, so 10,000 agents reconnecting after
        a network drop are not all checked in the database again once their sessions outlived the TTL.
        A revocation still ends a stream at its next recheck and drops its token from the cache then."""
        found = self.accounts._thd_by_digests(digests)
        now = time.monotonic()
        for digest in digests:
            account = found.get(digest)
            if account is None:
                self.token_cache.forget(digest)
            else:
                self.token_cache.put(digest, account, now)
        return found

    def _thd_revoke_tokens(self, name: str) -> int:
        """Revoke every token of an account (they stop working at once on this hub; other hub
        replicas notice within the token cache's TTL); returns how many were live.

        Raises:
            InvalidArgument: bad name.
            NotFound: no such account.
        """
        try:
            return self.accounts._thd_revoke_tokens(check_account_name(name), format_time(self.clock()))
        finally:
            self.token_cache.forget_account(name)

    # -- public keys -----------------------------------------------------------------

    async def register_key(self, caller: Account, public_key: bytes, signed_at: str, proof: bytes) -> KeyRegistration:
        """Register a key to the caller after checking its proof of possession.

        Raises:
            InvalidArgument: a weak key, a bad time, or a proof that does not verify.
            AlreadyExists: the key is registered already.
            ResourceExhausted: the account holds too many keys.
        """
        keys.check_public_key(public_key)
        moment, now = parse_time(signed_at, "signed_at"), self.clock()
        if abs((moment - now).total_seconds()) > PROOF_SKEW_S:
            raise InvalidArgument(f"signed_at {signed_at} is more than {PROOF_SKEW_S} s from the hub's time "
                                  f"{format_time(now)}; check your clock and sign a fresh proof")
        message = keys.proof_message(caller.name, public_key, signed_at, self.hub_public_key)
        try:
            keys.verify_strict(public_key, message, proof, what="the proof of possession")
        except IntegrityError as exc:
            raise InvalidArgument(f"{exc}: sign the registration challenge with this key's private half") from exc
        # From the proof's own time when that is earlier: a client clock a little behind the hub's
        # must not make its next push look older than the key (only the caller's own revisions can use it).
        registered_at = min(format_time(now), format_time(moment))
        reg = keys.sign_registration(self._hub_key, KeyRegistration(caller.name, bytes(public_key), registered_at))
        return self._vouched(await asyncio.to_thread(self.accounts._thd_add_key, reg, MAX_KEYS_PER_ACCOUNT))

    async def list_keys(self, caller: Account, account: str) -> list[KeyRegistration]:
        """Every key registered to an account ("" = the caller), oldest first, each as the hub vouches
        for it now (see _vouched).

        Raises:
            InvalidArgument: a malformed account name.
            NotFound: no such account.
        """
        name = check_account_name(account) if account else caller.name
        return await asyncio.to_thread(lambda: [self._vouched(reg) for reg in self.accounts._thd_keys(name)])

    def _vouched(self, reg: KeyRegistration) -> KeyRegistration:
        """A stored registration signed again with the hub's time as its ``as_of``: what a bundle carries,
        proving the key only up to now (a later revocation, even one moved earlier, is not in it)."""
        return keys.vouch(self._hub_key, reg, format_time(self.clock()))

    async def revoke_key(self, caller: Account, fingerprint: str, effective_at: str,
                         account: str = "") -> KeyRegistration:
        """Revoke one of the caller's keys (an admin: anyone's) from ``effective_at`` ("" = now) on.

        Raises:
            InvalidArgument: a malformed fingerprint, account or time, or a time before the registration.
            PermissionDenied: another account's key, and the caller is not an admin.
            NotFound: the account has no such key.
            FailedPrecondition: the key is revoked already from that time or earlier.
        """
        owner = check_account_name(account) if account else caller.name
        if owner != caller.name and caller.role is not Role.ADMIN:
            raise PermissionDenied(f"only an admin may revoke {owner}'s keys; {caller.name} is {caller.role.value}")
        if not isinstance(fingerprint, str) or not _FINGERPRINT.match(fingerprint):
            raise InvalidArgument(f"fingerprint {fingerprint!r:.40} must be 32 lowercase hex digits (see `spime key list`)")
        now = self.clock()
        at = format_time(now) if not effective_at else format_time(parse_time(effective_at, "effective_at"))
        if parse_time(at) > now + MAX_REVOKE_AHEAD:
            raise InvalidArgument(f"effective_at {at} is more than {MAX_REVOKE_AHEAD.days} days ahead")
        return self._vouched(await asyncio.to_thread(self.accounts._thd_revoke_key, owner, fingerprint,
                                                     lambda reg: self._revoked(reg, at)))

    def _revoked(self, reg: KeyRegistration, at: str) -> KeyRegistration:
        if at < reg.registered_at:
            raise InvalidArgument(f"key {reg.fingerprint} was registered at {reg.registered_at}: "
                                  f"it cannot be revoked from {at}, before that")
        if reg.revoked_at and reg.revoked_at <= at:
            raise FailedPrecondition(f"key {reg.fingerprint} is revoked already from {reg.revoked_at}; "
                                     "a revocation can move earlier, never later")
        return keys.sign_registration(self._hub_key, replace(reg, revoked_at=at))

    async def check_signature(self, author: str, created_at: str, revision_id: str,
                              public_key: bytes, signature: bytes) -> None:
        """Accept an unsigned revision, or one signed by a key registered to its author.

        The key must be registered to ``author``, live at ``created_at`` and not
        revoked as of the hub's time (so a stolen key cannot backdate revisions).

        Raises:
            InvalidArgument: key without signature (or the reverse), a weak key, a forged signature.
            PermissionDenied: the key is not registered to the author.
            FailedPrecondition: the key was not live at created_at, or is revoked now.
        """
        if not signature and not public_key:
            return
        if not signature or not public_key:
            raise InvalidArgument("a signed push carries both signature and public_key")
        keys.check_public_key(public_key)
        reg = await asyncio.to_thread(self.accounts._thd_key, public_key)
        fp = keys.fingerprint(public_key)
        if reg is None or reg.account != author:
            whose = "no account" if reg is None else "another account"
            raise PermissionDenied(f"the signing key {fp} is registered to {whose}, not to {author}: {_REGISTER_HINT}")
        now = format_time(self.clock())
        if not reg.valid_at(created_at) or not reg.valid_at(max(now, created_at)):
            span = f"registered {reg.registered_at}" + (f", revoked from {reg.revoked_at}" if reg.revoked_at else "")
            raise FailedPrecondition(f"the signing key {fp} does not count for a revision made at {created_at} "
                                     f"({span}): sign with a live key (`spime key list`; {_REGISTER_HINT})")
        keys.verify_strict(public_key, revision_id.encode("ascii"), signature,
                           what=f"revision {revision_id[:12]}: the signature")
