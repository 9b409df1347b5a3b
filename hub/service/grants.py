"""Licence at order time, grants on record, the value equation of a design and settling paid orders.

Order-time rules (shared/data/licenses/README.md §2): a paid order of an NC design
needs a grant of scope paid; an ND design is made only with its default
parameters unless a grant of scope modified is on record; an all-rights-reserved
(or unknown) licence needs a grant of scope any. A grant is a separate record
(design, revision or all, scope, node or any, until when, by a maintainer) and
never changes the design's licence. The maintainer signs it (hub.grants: the
canonical statement, signed by the Ed25519 key registered to their account and
live when they signed); the hub verifies the signature and stores the statement.
A maintainer revokes a grant the same way, with a signed revocation kept beside
it: it counts for orders placed after it is recorded (the gate reads only grants
not revoked, at quote time and again when a quote is placed), while orders placed
before stay valid and are made. A placement already under way when the revocation
is recorded (its licence checked a moment before) completes like one placed before:
the gate and the order's write are separate transactions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hub import grants as grant_rules
from hub import keys, ledger, licenses, limits
from hub.domain import Account, Design, Role
from hub.errors import InvalidArgument, LicenseConflict, PermissionDenied
from hub.orders import Grant, Order
from hub.service.common import Clock, format_time, parse_time
from hub.service.designs import check_slug
from hub.service.order_values import decode_token, encode_token
from hub.store.accounts import AccountStore
from hub.store.designs import DesignStore
from hub.store.grants import GrantStore, RecordedGrant, Revocation, already_revoked
from hub.store.orders import OrderStore

__all__ = ["GRANT_SCOPES", "SIGNING_SKEW_S", "GrantRequest", "GrantService", "LicenceGate", "RecordedGrant",
           "RevokeRequest", "signer_fingerprint"]

GRANT_SCOPES = ("paid", "modified", "any")
MAX_GRANT_YEARS = 10
SIGNING_SKEW_S = 300  # how far granted_at may be from the hub's time (as for key registrations)
# used with fullmatch: "$" would let a trailing newline through, and \d any script's digits
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_HEX = re.compile(r"[0-9a-f]{0,128}")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class GrantRequest:
    design: str
    revision_id: str
    scope: str
    node: str
    until: str
    signature: str = ""   # hex Ed25519 signature of statement
    statement: str = ""   # the canonical JSON statement (hub.grants) that was signed


@dataclass(frozen=True, slots=True)
class RevokeRequest:
    grant_id: str
    signature: str = ""   # hex Ed25519 signature of statement
    statement: str = ""   # the canonical JSON revocation (hub.grants.RevocationStatement) that was signed


@dataclass(frozen=True, slots=True)
class LicenceGate:
    """The outcome of the licence check of one order: allowed, and which nodes a grant limits it to."""

    rule: str
    nodes: frozenset[str] | None  # None = any node
    notices: tuple[str, ...]


def _until(text: str, now: dt.datetime) -> str:
    if _DATE.fullmatch(text):
        text += "T23:59:59Z"
    moment = parse_time(text, "until")
    if moment <= now:
        raise InvalidArgument(f"until {text} is in the past: a grant must end in the future")
    if moment > now + dt.timedelta(days=366 * MAX_GRANT_YEARS):
        raise InvalidArgument(f"until {text} is more than {MAX_GRANT_YEARS} years ahead")
    return format_time(moment)


def _needed_scopes(license: str, paid: bool, modified: bool) -> tuple[str, licenses.Decision]:
    decision = licenses.may_fabricate(license, paid, modified)
    if decision.allowed:
        return "", decision
    unpaid = licenses.may_fabricate(license, False, modified)
    unmodified = licenses.may_fabricate(license, paid, False)
    if paid and unpaid.allowed:
        return "paid", decision
    if modified and unmodified.allowed:
        return "modified", decision
    return "any", decision


class GrantService:
    """Grants, the licence gate of orders, value equations and settling paid orders into the ledger."""

    def __init__(self, designs: DesignStore, orders: OrderStore, clock: Clock, accounts: AccountStore,
                 grants: GrantStore) -> None:
        self.designs, self.orders, self.clock, self.accounts, self.grants = designs, orders, clock, accounts, grants

    async def grant(self, caller: Account, request: GrantRequest) -> RecordedGrant:
        """Record a licensor's grant, signed by a maintainer of the design with their registered key.

        An admin grants like anyone else: with a statement signed by a key registered to the admin's account.

        Raises:
            InvalidArgument: a bad design name, scope, node or date; no statement or signature; a statement that
                is not canonical or disagrees with the request; a signature that does not match.
            NotFound: no such design or revision.
            ResourceExhausted: the design has hub.limits.MAX_LIVE_GRANTS grants in force already.
            PermissionDenied: the caller does not maintain the design, signs for someone else, or with a key
                that is not registered to them or was not live when the grant was signed.
        """
        statement = grant_rules.parse_statement(request.statement) if request.statement else None
        design = await asyncio.to_thread(self.designs._thd_get_design,
                                         check_slug(statement.design if statement else request.design))
        _require_maintainer(caller, design)
        if statement is None or not request.signature:
            raise InvalidArgument(
                "a grant must be signed: send its statement and the Ed25519 signature of it by your registered key "
                "(`spime grant` signs with your key; make one with `spime key gen`, then `spime key register`)")
        _check_request_agrees(request, statement)
        now = self.clock()
        await self._check_fields(design, statement, now)
        await self._check_signed(caller, statement, statement.granted_by, statement.granted_at, request.signature,
                                 request.statement, "grant", now)
        grant = Grant(id=secrets.token_hex(8), design=statement.design, revision_id=statement.revision_id,
                      scope=statement.scope, node=statement.node, until=statement.until,
                      granted_by=statement.granted_by, granted_at=statement.granted_at,
                      statement_sha256=grant_rules.statement_sha256(request.statement), signature=request.signature)
        return await asyncio.to_thread(self.grants._thd_add, RecordedGrant(grant, request.statement), format_time(now))

    async def get_grant(self, grant_id: str) -> RecordedGrant:
        """One grant by its id, revoked or not.

        Raises:
            InvalidArgument: no id, or one with control characters; NotFound: no such grant.
        """
        return await asyncio.to_thread(self.grants._thd_get, _check_grant_id(grant_id))

    async def revoke(self, caller: Account, request: RevokeRequest) -> RecordedGrant:
        """Record a maintainer's signed revocation of a grant; the grant stays on record, shown revoked.

        Orders placed after it no longer count on the grant; orders placed before stay valid.

        Raises:
            InvalidArgument: a bad grant id; no statement or signature; a statement that is not canonical,
                names another grant, or was signed too far from the hub's time; a signature that does not match.
            NotFound: no such grant.
            PermissionDenied: the caller does not maintain the grant's design, signs for someone else, or with a
                key that is not registered to them or was not live when the revocation was signed.
            FailedPrecondition: the grant was revoked already by another revocation (nothing changed).
        """
        recorded = await asyncio.to_thread(self.grants._thd_get, _check_grant_id(request.grant_id))
        grant = recorded.grant
        _require_maintainer(caller, await asyncio.to_thread(self.designs._thd_get_design, grant.design))
        if recorded.revocation is not None:
            if recorded.revocation.statement == request.statement:
                return recorded  # the same revocation sent again (a retry): the record as it is
            raise already_revoked(grant.id, recorded.revocation)
        if not request.statement or not request.signature:
            raise InvalidArgument("a revocation must be signed: send its statement and the Ed25519 signature of it by "
                                  "your registered key (`spime grant revoke ID` signs with your key)")
        statement = grant_rules.parse_revocation(request.statement)
        names = (statement.grant_id, statement.design, statement.statement_sha256)
        if names != (grant.id, grant.design, grant.statement_sha256):
            raise InvalidArgument(f"the revocation names grant {statement.grant_id!r:.40} of {statement.design!r:.70} "
                                  f"with statement {statement.statement_sha256[:12]!r}, not grant {grant.id} of "
                                  f"{grant.design} ({grant.statement_sha256[:12]}): sign one for this grant",
                                  field="statement")
        now = self.clock()
        _check_signed_at(statement.revoked_at, "revoked_at", now)
        await self._check_signed(caller, statement, statement.revoked_by, statement.revoked_at, request.signature,
                                 request.statement, "revocation", now)
        revocation = Revocation(statement.revoked_at, statement.revoked_by, request.statement, request.signature)
        return await asyncio.to_thread(self.grants._thd_revoke, grant.id, revocation)

    async def _check_signed(self, caller: Account, statement: grant_rules.GrantStatement | grant_rules.RevocationStatement,
                            signer: str, signed_at: str, signature: str, text: str, what: str, now: dt.datetime) -> None:
        """The statement is the caller's, signed by a key registered to them and live then and now.

        Raises:
            InvalidArgument: a malformed or wrong signature.
            PermissionDenied: see _check_signer.
        """
        reg = await asyncio.to_thread(self.accounts._thd_key, grant_rules.statement_key(statement))
        _check_signer(caller, statement.fingerprint, signer, signed_at, reg, format_time(now), what)
        if not _HEX.fullmatch(signature) or len(signature) != 128:
            raise InvalidArgument("signature must be 128 lowercase hex digits (an Ed25519 signature)")
        keys.verify_strict(grant_rules.statement_key(statement), text.encode("utf-8"), bytes.fromhex(signature),
                           what=f"the {what}'s signature")

    async def _check_fields(self, design: Design, statement: grant_rules.GrantStatement, now: dt.datetime) -> None:
        """Raises: InvalidArgument, NotFound (the revision)."""
        if statement.scope not in GRANT_SCOPES:
            raise InvalidArgument(f"scope {statement.scope!r:.40}: use {', '.join(GRANT_SCOPES)}")
        if statement.node and not _NAME.fullmatch(statement.node):
            raise InvalidArgument(f"node {statement.node!r:.70} is not an account name")
        if statement.revision_id:
            found = await asyncio.to_thread(self.designs._thd_get_revision, design.slug, statement.revision_id)
            if found.id != statement.revision_id:
                raise InvalidArgument(f"the statement names revision {statement.revision_id!r:.70}: sign its full id "
                                      f"{found.id}")
        if _until(statement.until, now) != statement.until:
            raise InvalidArgument(f"until {statement.until!r:.40} must be RFC 3339 UTC like 2030-01-31T23:59:59Z")
        _check_signed_at(statement.granted_at, "granted_at", now)

    async def list_grants(self, slug: str, page_size: int = 0, token: str = "",
                          fits: Callable[[Sequence[RecordedGrant]], int] = len) -> tuple[list[RecordedGrant], str]:
        """A page of a design's grants, oldest first, and the next page's token ("" on the last).

        Args:
            fits: how many of the leading grants one answer carries (the API measures their bytes).

        Raises:
            NotFound: no such design.
            InvalidArgument: a bad slug or page token, or page_size over the maximum.
        """
        limit = limits.check_page_size(page_size, "ListGrants")
        after = decode_token(limits.check_page_token(token))
        await asyncio.to_thread(self.designs._thd_get_design, check_slug(slug))
        found = await asyncio.to_thread(self.grants._thd_list, slug, limit + 1, after)
        page = found[:limit]
        shown = max(1, min(fits(page), len(page))) if page else 0
        more = shown < len(page) or len(found) > limit
        return page[:shown], encode_token(page[shown - 1].grant.id) if more else ""

    def _thd_gate(self, design: Design, revision_id: str, paid: bool, modified: bool) -> LicenceGate:
        """Whether this order may exist under the design's licence (and grants on record).

        Raises:
            LicenseConflict: refused, naming the rule and the grant that would allow it.
        """
        scope, decision = _needed_scopes(design.license, paid, modified)
        if not scope:
            return LicenceGate(decision.rule, None, decision.obligations)
        covering = self.grants._thd_covering(design.slug, revision_id, scope, format_time(self.clock()))
        if not covering:
            what = {"paid": "a paid order", "modified": "changed parameters", "any": "any fabrication"}[scope]
            raise LicenseConflict(
                f"{design.slug} is licensed {design.license}: {what} is refused ({decision.rule}); "
                f"a maintainer can record a grant with `spime grant {design.slug} --scope {scope}`")
        any_node = covering[0][0] == ""
        nodes = None if any_node else frozenset(node for node, _ in covering)
        return LicenceGate(f"{decision.rule}; allowed by grant {covering[0][1]}", nodes, decision.obligations)

    # -- value equations and settlement ------------------------------------------------------

    def _thd_equation(self, slug: str, at: str | None = None) -> ledger.ValueEquation:
        """The design's value equation in force now, or at time ``at`` (RFC 3339 UTC)."""
        stored = self.orders._thd_equation(slug, at)
        return ledger.DEFAULT_EQUATION if stored is None else ledger.parse_equation(stored[1])

    async def equation(self, slug: str) -> ledger.ValueEquation:
        """The value equation in force for a design (the default until a maintainer publishes one)."""
        return await asyncio.to_thread(self._thd_equation, check_slug(slug))

    async def set_equation(self, caller: Account, slug: str, proposed: ledger.ValueEquation) -> ledger.ValueEquation:
        """Publish the next version of a design's value equation.

        Raises:
            NotFound, PermissionDenied, InvalidArgument: as for grants; InvalidTransition: a concurrent change.
        """
        design = await asyncio.to_thread(self.designs._thd_get_design, check_slug(slug))
        _require_maintainer(caller, design)
        stored = await asyncio.to_thread(self.orders._thd_equation, slug)
        current = 1 if stored is None else stored[0]
        version = current + 1
        equation = ledger.ValueEquation(str(version), proposed.maker_percent, proposed.design_percent,
                                        proposed.commons_percent, proposed.own_revision_percent,
                                        proposed.upstream_percent)
        if stored is None:
            await asyncio.to_thread(self.orders._thd_set_equation, slug, 0, ledger.DEFAULT_EQUATION.to_json(),
                                    "hub", format_time(self.clock()))
        await asyncio.to_thread(self.orders._thd_set_equation, slug, current, equation.to_json(), caller.name,
                                format_time(self.clock()))
        return equation

    def _thd_settle(self, order: Order, made: Mapping[str, int], of: int) -> bool:
        """Write a paid, delivered order's ledger entries once; False if there was nothing to do.

        ``made``: node -> the weight of the objects it made (the payouts of its finished jobs, in minor
        units), out of ``of`` (the order's price: every object's payout). Each node is the maker of that
        share of the price and costs, so the node that made the big part of a kit is paid for it; the
        share of objects cancelled before they were made is not shared out. The value equation is the
        one in force when the order was placed.
        """
        if not order.paid or order.settled or order.price_minor <= 0 or not made:
            return False
        equation = self._thd_equation(order.design, order.created_at)
        contributors, upstream = self._thd_beneficiaries(order.design)
        amounts = (order.price_minor, order.material_minor, order.machine_minor, order.fees_minor)
        split = [ledger.portions(amount, made, of) for amount in amounts]
        shares: list[ledger.Share] = []
        for maker in sorted(made):
            price, material, machine, fees = (part[maker] for part in split)
            who = ledger.Beneficiaries(maker, contributors, upstream)
            shares += ledger.distribute(price, order.currency, ledger.Costs(material, machine, fees), who, equation)
        return self.orders._thd_settle(order.id, order.design, order.currency, shares, equation.version,
                                       equation.to_json(), format_time(self.clock()))

    def _thd_beneficiaries(self, slug: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        own = self._thd_weights(slug)
        upstream: dict[str, dict[str, int]] = {}
        design = self.designs._thd_get_design(slug)
        for parent_id in design.forked_from:
            parent = self.designs._thd_revision_by_id(parent_id)
            if parent is not None and parent.design != slug:
                upstream[parent.design] = self._thd_weights(parent.design)
        return own, upstream

    def _thd_weights(self, slug: str) -> dict[str, int]:
        """Accepted contributions per person: revisions that reached the design (pushes, forks, merged proposals)."""
        accepted = {p.revision.id for p in self.designs._thd_list_proposals(slug, True) if p.state.value == "accepted"}
        weights: dict[str, int] = {}
        for rev in self.designs._thd_all_revisions(slug):
            if rev.kind.value != "proposal" or rev.id in accepted:
                weights[rev.author] = weights.get(rev.author, 0) + 1
        return weights


def signer_fingerprint(statement: str, revocation: bool = False) -> str:
    """The fingerprint of the key a stored grant (or ``revocation``) statement names; "" for grants recorded
    before grants were signed, and for a grant not revoked."""
    try:
        return (grant_rules.parse_revocation if revocation else grant_rules.parse_statement)(statement).fingerprint
    except InvalidArgument:
        return ""


def _check_request_agrees(request: GrantRequest, statement: grant_rules.GrantStatement) -> None:
    """The plain fields of a request, when given, must say what the signed statement says.

    Raises:
        InvalidArgument: naming the field that differs.
    """
    given = {"design": request.design, "revision_id": request.revision_id, "scope": request.scope,
             "node": request.node, "until": grant_rules.canonical_until(request.until)}
    for name, value in given.items():
        signed = getattr(statement, name)
        if value and value != signed:
            raise InvalidArgument(f"{name} {value!r:.70} differs from the signed statement's {signed!r:.70}")


def _check_grant_id(grant_id: str) -> str:
    """Raises: InvalidArgument: empty, too long or with control characters."""
    if not grant_id:
        raise InvalidArgument("grant_id is required: `spime grant DESIGN --list` shows a design's grants",
                              field="grant_id")
    return limits.check_plain_text(grant_id, "grant_id", 32, field="grant_id")


def _check_signed_at(text: str, name: str, now: dt.datetime) -> None:
    """Raises: InvalidArgument: not RFC 3339 UTC, or more than SIGNING_SKEW_S from the hub's time."""
    signed = parse_time(text, name)
    if abs((signed - now).total_seconds()) > SIGNING_SKEW_S:
        raise InvalidArgument(f"{name} {text} is more than {SIGNING_SKEW_S} s from the hub's "
                              f"time {format_time(now)}: check your clock and sign again")


def _check_signer(caller: Account, fp: str, signer: str, signed_at: str, reg: keys.KeyRegistration | None,
                  now: str, what: str = "grant") -> None:
    """The statement is the caller's (``signer``) and its key (fingerprint ``fp``) was registered to the
    caller, live when signed (``signed_at``) and now.

    Raises:
        PermissionDenied: naming the problem.
    """
    if signer != caller.name:
        verb = "granted" if what == "grant" else "revoked"
        raise PermissionDenied(f"the statement is {verb} by {signer!r:.70}, but you are {caller.name}: "
                               f"sign your own {what}s")
    if reg is None:
        raise PermissionDenied(f"the signing key {fp} is not registered to any account: register it with "
                               "`spime key register`")
    if reg.account != caller.name:
        raise PermissionDenied(f"the signing key {fp} is registered to another account, not to {caller.name}")
    if not reg.valid_at(signed_at) or not reg.valid_at(max(now, signed_at)):
        span = f"registered {reg.registered_at}" + (f", revoked from {reg.revoked_at}" if reg.revoked_at else "")
        raise PermissionDenied(f"the signing key {fp} does not count for a {what} signed at {signed_at} "
                               f"({span}): sign with a live key (`spime key list`)")


def _require_maintainer(caller: Account, design: Design) -> None:
    if caller.role is not Role.ADMIN and caller.name not in design.maintainers:
        raise PermissionDenied(f"only maintainers of {design.slug} may do this; {caller.name} is not one")

