"""Licence rules for designs: SPDX parsing, derivative licences, fabrication, attribution.

Pure: the rules come from hub/data/license_rules.csv (one row per licence) read
once; nothing here touches the network, the clock or the database. The rules
are a conservative reading of the licence texts, chosen so that the hub never
*enables* an infringement: a licence the table does not know permits no remix.

Expressions follow SPDX semantics: ``A OR B`` lets the licensee pick either,
so a derivative may use whatever either alternative allows; ``A AND B`` binds
both, so only what both allow.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import license_expression

from hub.errors import InvalidLicense, LicenseConflict

__all__ = [
    "ANY",
    "Decision",
    "LicenseRule",
    "Obligations",
    "allowed_derivative_licenses",
    "check_derivative",
    "check_revision_license",
    "license_ids",
    "may_fabricate",
    "obligations",
    "parse_expression",
    "rule_for",
    "rules",
]

ANY = "ANY"
_LICENSE_REF = re.compile(r"^(DocumentRef-[A-Za-z0-9.\-]+:)?LicenseRef-[A-Za-z0-9.\-]+\Z")
_MAX_EXPRESSION = 512
_NOT_SPDX = re.compile(r"[^A-Za-z0-9.\-+:() \t]")


@dataclass(frozen=True, slots=True)
class LicenseRule:
    """One row of license_rules.csv, with the derivative column decoded.

    Attributes:
        spdx_id: the licence identifier.
        remix_allowed: whether an adaptation may be published at all.
        derivative_targets: licences a derivative may carry; None means any.
        conditional_targets: licences allowed only under a condition the hub cannot check.
        row: the raw CSV row (for messages and clauses).
    """

    spdx_id: str
    remix_allowed: bool
    derivative_targets: frozenset[str] | None
    conditional_targets: frozenset[str]
    row: tuple[tuple[str, str], ...]

    def field(self, name: str) -> str:
        """Return a raw CSV column of this rule."""
        return dict(self.row)[name]


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a fabrication is allowed, and the rule that decided it."""

    allowed: bool
    rule: str
    obligations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Obligations:
    """What a remix or a print of a licence must carry."""

    license: str
    attribution: bool
    modification_notice: bool
    source_with_product: bool
    clauses: str

    def notices(self) -> tuple[str, ...]:
        """Human-readable duties, empty when the licence asks for none."""
        duties = [
            (self.attribution, "credit the licensor and contributors and keep the licence notice"),
            (self.modification_notice, "state that the design was modified, by whom and when"),
            (self.source_with_product, "give each recipient the source or its source location"),
        ]
        return tuple(f"{self.license}: {text}" for flag, text in duties if flag)


# -- parsing ---------------------------------------------------------------


@functools.cache
def _licensing() -> license_expression.Licensing:
    return license_expression.get_spdx_licensing()


def parse_expression(text: str) -> str:
    """Normalise an SPDX licence expression.

    Known ids are case-normalised and deprecated ids replaced (``GPL-3.0+`` →
    ``GPL-3.0-or-later``); ``LicenseRef-…`` ids are accepted as written.

    Args:
        text: the expression, e.g. ``"CC-BY-SA-4.0 OR GPL-3.0-or-later"``.

    Returns:
        The normalised expression.

    Raises:
        InvalidLicense: empty, too long, malformed, or naming an unknown licence.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidLicense("license is empty: give an SPDX expression such as CC-BY-4.0")
    if len(text) > _MAX_EXPRESSION:
        raise InvalidLicense(f"license expression is longer than {_MAX_EXPRESSION} characters",
                             reason="LICENSE_TOO_LONG", field="license")
    bad = sorted(set(_NOT_SPDX.findall(text)))
    if bad:
        raise InvalidLicense(f"license expression {text[:80]!r} contains {''.join(bad)[:20]!r}: an SPDX "
                             "expression holds only letters, digits, '.', '-', '+', ':', parentheses and "
                             "spaces", reason="LICENSE_MALFORMED", field="license")
    try:
        return _parse(text)
    except (license_expression.ExpressionError, AttributeError, IndexError, TypeError, ValueError,
            RecursionError) as exc:
        # license-expression raises more than ExpressionError on malformed input
        # ("MIT OR" gives AttributeError, "()" IndexError).
        raise InvalidLicense(f"malformed SPDX expression {text!r}: check its operators and parentheses",
                             reason="LICENSE_MALFORMED", field="license") from exc


@functools.lru_cache(maxsize=1024)
def _parse(text: str) -> str:
    """The normalised expression (kept per text: a pure function of it and of the SPDX list shipped with
    license-expression; every order of a design not cached yet parses its manifest's licence, 0.2 ms each).
    A refusal raises and is not kept."""
    info = _licensing().validate(text)
    unknown = [s for s in info.invalid_symbols if not _LICENSE_REF.match(str(s))]
    if unknown or (info.errors and not info.invalid_symbols):
        raise InvalidLicense(_parse_message(text, unknown, info.errors), field="license",
                             reason="LICENSE_UNKNOWN" if any(str(s) for s in unknown) else "LICENSE_MALFORMED")
    return str(_licensing().parse(text).render())


def _parse_message(text: str, unknown: list[object], errors: list[str]) -> str:
    if unknown and any(str(s) for s in unknown):
        names = ", ".join(repr(str(s)) for s in unknown)
        return (
            f"unknown licence {names} in {text!r}: use an SPDX id (https://spdx.org/licenses/) "
            "or LicenseRef-<name> for a custom licence"
        )
    return f"malformed SPDX expression {text!r}: {'; '.join(errors)}"


Tree = str | tuple[str, list["Tree"]]  # an id, or ("AND" | "OR", subtrees)


def _tree(expression: str) -> Tree:
    """Parse to a plain tree: a str id, or ("AND"|"OR", [subtrees])."""
    return _convert(_licensing().parse(expression))


def _convert(node: object) -> Tree:
    if isinstance(node, license_expression.LicenseWithExceptionSymbol):
        return str(node.license_symbol.key)
    if isinstance(node, license_expression.LicenseSymbol):
        return str(node.key)
    op = "AND" if isinstance(node, license_expression.AND) else "OR"
    return (op, [_convert(arg) for arg in node.args])  # type: ignore[attr-defined]


def license_ids(expression: str) -> tuple[str, ...]:
    """Every licence id named in an expression, in order of appearance.

    Raises:
        InvalidLicense: the expression does not parse.
    """
    normalised = parse_expression(expression)
    return tuple(str(k) for k in _licensing().license_keys(_licensing().parse(normalised)))


# -- the rule table ---------------------------------------------------------


def _decode_targets(text: str) -> tuple[frozenset[str] | None, frozenset[str]]:
    """Decode the derivative_license_allowed column into (targets, conditional)."""
    if text.startswith("ANY"):
        return None, frozenset()
    if text.startswith("NONE"):
        return frozenset(), frozenset()
    plain: set[str] = set()
    conditional: set[str] = set()
    for item in text.split(";"):
        name = item.split("(")[0].strip()
        (conditional if "(only if" in item else plain).add(name)
    return frozenset(plain), frozenset(conditional)


def _rule(row: dict[str, str]) -> LicenseRule:
    targets, conditional = _decode_targets(row["derivative_license_allowed"])
    return LicenseRule(
        spdx_id=row["spdx_id"],
        remix_allowed=row["remix_publish"].startswith("yes"),
        derivative_targets=targets,
        conditional_targets=conditional,
        row=tuple(row.items()),
    )


@functools.cache
def rules() -> dict[str, LicenseRule]:
    """The licence rule table shipped in hub/data/license_rules.csv, by SPDX id."""
    text = resources.files("hub.data").joinpath("license_rules.csv").read_text("utf-8")
    return {row["spdx_id"]: _rule(row) for row in csv.DictReader(io.StringIO(text))}


def rule_for(spdx_id: str) -> LicenseRule | None:
    """The rule for one licence id, or None when the table does not know it."""
    return rules().get(spdx_id)


# -- derivatives ------------------------------------------------------------

_Targets = frozenset[str] | None  # None = any licence


def _intersect(a: _Targets, b: _Targets) -> _Targets:
    if a is None:
        return b
    return a if b is None else a & b


def _union(a: _Targets, b: _Targets) -> _Targets:
    return None if a is None or b is None else a | b


def _targets_of(tree: Tree) -> _Targets:
    if isinstance(tree, str):
        rule = rule_for(tree)
        if rule is None or not rule.remix_allowed:
            return frozenset()
        return rule.derivative_targets
    op, children = tree
    combine = _intersect if op == "AND" else _union
    result: _Targets = frozenset() if op == "OR" else None
    for child in children:
        result = combine(result, _targets_of(child))
    return result


def allowed_derivative_licenses(parents: Sequence[str]) -> frozenset[str] | None:
    """Licences a remix of all these parents may carry.

    Args:
        parents: the parents' SPDX expressions.

    Returns:
        The allowed licence ids; None when any licence is allowed; an empty
        set when no licence is (the remix must be refused).

    Raises:
        InvalidLicense: a parent's expression does not parse.
    """
    allowed: _Targets = None
    for expression in parents:
        allowed = _intersect(allowed, _targets_of(_tree(parse_expression(expression))))
    return allowed


def check_derivative(parent_licenses: Sequence[tuple[str, str]], target: str) -> None:
    """Refuse a remix whose licence is not one every parent allows.

    Args:
        parent_licenses: (design, SPDX expression) of every parent.
        target: the remix's SPDX expression; each id in it must be allowed.

    Raises:
        InvalidLicense: an expression does not parse.
        LicenseConflict: naming the rule and the parent that forbids the remix.
    """
    target_ids = license_ids(target)
    allowed = allowed_derivative_licenses([lic for _, lic in parent_licenses])
    if len(parent_licenses) > 1 and allowed is not None and not allowed:
        for design, expression in parent_licenses:
            if _targets_of(_tree(parse_expression(expression))) == frozenset():
                raise _no_remix(design, parse_expression(expression))
        names = " + ".join(f"{d} ({lic})" for d, lic in parent_licenses)
        raise LicenseConflict(
            f"licence rule 'intersection of allowed derivative licences': the parents {names} "
            "allow no common licence, so this remix cannot be published", reason="LICENSE_NO_COMMON_LICENSE"
        )
    for design, expression in parent_licenses:
        _check_parent(design, parse_expression(expression), target_ids)


def check_revision_license(target: str, upstream: Sequence[tuple[str, str]], *, previous: str | None = None,
                           may_relicense: bool = False) -> None:
    """The one licence check of every revision that enters the commons.

    Run on create, ordinary and multi-parent pushes, proposals, accepts and
    forks alike, against the whole lineage.

    Args:
        target: the new revision's SPDX expression.
        upstream: (``design@revision``, SPDX expression) of every ancestor in
            another design, transitively (what its attributions record).
        previous: the licence of the revision it follows in the same design,
            or None for a design's first revision.
        may_relicense: whether the author maintains the design: only
            maintainers change a design's licence, and only from this revision on.

    Raises:
        InvalidLicense: an expression does not parse.
        LicenseConflict: naming the rule and the ancestor that forbids it.
    """
    target = parse_expression(target)
    if previous is not None and not may_relicense and parse_expression(previous) != target:
        raise LicenseConflict(
            f"licence rule 'only maintainers relicense': the design is under {previous}; a proposal "
            f"cannot change it to {target}, ask a maintainer", reason="LICENSE_CHANGE_NOT_MAINTAINER")
    unique = list(dict.fromkeys((name, parse_expression(expression)) for name, expression in upstream))
    if unique:
        check_derivative(unique, target)


def _check_parent(design: str, expression: str, target_ids: tuple[str, ...]) -> None:
    tree = _tree(expression)
    allowed = _targets_of(tree)
    if allowed is not None and not allowed:
        raise _no_remix(design, expression)
    bad = [t for t in target_ids if allowed is not None and t not in allowed]
    if bad:
        raise LicenseConflict(_bad_target_message(design, expression, bad, tree),
                              reason="LICENSE_DERIVATIVE_NOT_ALLOWED")


def _ids(tree: Tree) -> list[str]:
    if isinstance(tree, str):
        return [tree]
    return [i for child in tree[1] for i in _ids(child)]


def _no_remix(design: str, expression: str) -> LicenseConflict:
    rule = rule_for(expression)
    if rule is None and " " not in expression:
        return LicenseConflict(
            f"licence rule 'unknown licence': parent {design} is under {expression}, which the "
            "hub's rule table does not know, so no remix is allowed without the licensor's grant",
            reason="LICENSE_UNKNOWN_NO_REMIX")
    if rule is not None and "ND" in expression.split("-"):
        clause = rule.field("key_clauses").split(" '")[0]
        return LicenseConflict(
            f"licence rule 'no derivatives' ({clause}): parent {design} is under {expression}, "
            "which forbids sharing adapted material, so it cannot be forked or remixed",
            reason="LICENSE_ND_NO_DERIVATIVES")
    return LicenseConflict(
        f"licence rule 'no remix': parent {design} is under {expression}, which does not allow "
        "publishing an adaptation without the licensor's grant", reason="LICENSE_NO_REMIX")


def _bad_target_message(design: str, expression: str, bad: list[str], tree: Tree) -> str:
    conditional = set().union(*(r.conditional_targets for i in _ids(tree) if (r := rule_for(i))))
    allowed = sorted(_targets_of(tree) or ())
    hint = "; allowed: " + ", ".join(allowed)
    if conditional & set(bad):
        hint += " (" + ", ".join(sorted(conditional & set(bad))) + " only under a condition the hub cannot check)"
    return (
        f"licence rule 'derivative licence': parent {design} is under {expression}, which does "
        f"not allow a derivative under {', '.join(bad)}{hint}"
    )


# -- fabrication and attribution ---------------------------------------------


def _fabricate_one(spdx_id: str, paid: bool, modified: bool) -> Decision:
    rule = rule_for(spdx_id)
    if rule is None:
        return Decision(False, f"{spdx_id}: unknown licence, no fabrication without a recorded grant")
    column = _fabrication_column(paid, modified)
    if paid or modified:
        allowed = rule.field(column).startswith("yes")
        if not paid and modified:
            allowed = allowed and rule.remix_allowed
    else:
        text = rule.field(column)
        allowed = text.startswith("yes") and "excluded" not in text
    verdict = "allowed" if allowed else "refused"
    kind = f"{'paid' if paid else 'unpaid'} {'modified' if modified else 'unmodified'} print"
    return Decision(allowed, f"{spdx_id}: {kind} {verdict} ({rule.field(column)})", obligations(spdx_id).notices())


def _fabrication_column(paid: bool, modified: bool) -> str:
    if not paid:
        return "remix_publish" if modified else "private_noncommercial_print"
    return "sell_print_modified" if modified else "sell_print_unmodified"


def _fabricate_tree(tree: Tree, paid: bool, modified: bool) -> Decision:
    if isinstance(tree, str):
        return _fabricate_one(tree, paid, modified)
    op, children = tree
    decisions = [_fabricate_tree(child, paid, modified) for child in children]
    if op == "OR":
        chosen = next((d for d in decisions if d.allowed), decisions[0])
        return chosen
    refused = next((d for d in decisions if not d.allowed), None)
    obligations_all = tuple(o for d in decisions for o in d.obligations)
    if refused is not None:
        return Decision(False, refused.rule, obligations_all)
    return Decision(True, "; ".join(d.rule for d in decisions), obligations_all)


def may_fabricate(license: str, paid: bool, modified: bool) -> Decision:
    """Whether a node may fabricate a design under this licence for an order.

    Args:
        license: the design's SPDX expression.
        paid: the customer pays (anything beyond a gift).
        modified: the object is an adaptation (a remix or a parametric instance).

    Returns:
        The decision with the rule that made it and the duties that travel with the print.

    Raises:
        InvalidLicense: the expression does not parse.
    """
    return _fabricate_tree(_tree(parse_expression(license)), paid, modified)


def obligations(spdx_id: str) -> Obligations:
    """The attribution duties of one licence id (unknown ids: attribution, conservatively)."""
    rule = rule_for(spdx_id)
    if rule is None:
        return Obligations(spdx_id, True, True, False, "unknown licence: keep every notice")
    return Obligations(
        license=spdx_id,
        attribution=rule.field("attribution_required").startswith("yes"),
        modification_notice=rule.field("modification_notice_required").startswith("yes"),
        source_with_product=rule.field("source_or_location_with_product").startswith(("yes", "notices")),
        clauses=rule.field("key_clauses"),
    )
