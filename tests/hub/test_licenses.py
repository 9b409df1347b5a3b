"""Licence rules, driven by the test vectors in tests/data/licenses/ (see SOURCE.txt there)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from hub import licenses
from hub.errors import InvalidLicense, LicenseConflict

DATA = Path(__file__).resolve().parents[1] / "data" / "licenses"


def _rows(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


PAIRS = _rows("license_compat_pairs.csv")
RULES = _rows("license_rules.csv")


def test_shipped_rules_equal_the_test_vectors() -> None:
    assert set(licenses.rules()) == {row["spdx_id"] for row in RULES}


@pytest.mark.parametrize("row", PAIRS, ids=[f"{r['source']}->{r['target']}" for r in PAIRS])
def test_compat_pairs(row: dict[str, str]) -> None:
    parents = [(f"parent-{i}", lic.strip()) for i, lic in enumerate(row["source"].split("+"))]
    if row["target"] == "ANY":
        assert licenses.allowed_derivative_licenses([lic for _, lic in parents]) == frozenset()
        with pytest.raises(LicenseConflict, match="parent"):
            licenses.check_derivative(parents, "CC0-1.0")
        return
    if row["derivative_allowed"] == "yes":
        licenses.check_derivative(parents, row["target"])
    else:  # "no", and "conditional" (a condition the hub cannot check is refused)
        with pytest.raises(LicenseConflict) as info:
            licenses.check_derivative(parents, row["target"])
        assert "licence rule" in str(info.value) and "parent-" in str(info.value)


def test_issue_examples() -> None:
    assert licenses.allowed_derivative_licenses(["CC-BY-SA-4.0", "GPL-3.0"]) == {"GPL-3.0-only"}
    with pytest.raises(LicenseConflict, match="no derivatives.*nd-design"):
        licenses.check_derivative([("nd-design", "CC-BY-ND-4.0")], "CC-BY-ND-4.0")
    with pytest.raises(LicenseConflict, match="intersection.*sa.*nc"):
        licenses.check_derivative([("sa", "CC-BY-SA-4.0"), ("nc", "CC-BY-NC-4.0")], "CC-BY-NC-SA-4.0")


def test_expressions_or_picks_either_and_binds_both() -> None:
    assert licenses.allowed_derivative_licenses(["MIT OR CC-BY-ND-4.0"]) is None
    assert licenses.allowed_derivative_licenses(["MIT AND CC-BY-ND-4.0"]) == frozenset()
    assert licenses.allowed_derivative_licenses(["CC-BY-SA-4.0 AND GPL-3.0-or-later"]) == {"GPL-3.0-only", "GPL-3.0-or-later"}


def test_unknown_licence_allows_no_remix() -> None:
    with pytest.raises(LicenseConflict, match="unknown licence.*LicenseRef-Mine"):
        licenses.check_derivative([("p", "LicenseRef-Mine")], "MIT")


@pytest.mark.parametrize(
    ("text", "normal"),
    [("cern-ohl-s-2.0", "CERN-OHL-S-2.0"), ("GPL-3.0+", "GPL-3.0-or-later"), ("mit or cc0-1.0", "MIT OR CC0-1.0"),
     ("CC-BY-4.0 AND LicenseRef-Extra", "CC-BY-4.0 AND LicenseRef-Extra")],
)
def test_parse_expression_normalises(text: str, normal: str) -> None:
    assert licenses.parse_expression(text) == normal


@pytest.mark.parametrize(("text", "named"), [("Bogus-2.0", "Bogus-2.0"), ("MIT OR Nope", "Nope"), ("MIT AND (", "malformed"), ("", "empty")])
def test_parse_expression_refuses_naming_the_symbol(text: str, named: str) -> None:
    with pytest.raises(InvalidLicense, match=named):
        licenses.parse_expression(text)


# README.md §2 of the licence notes: order-time fabrication vectors (licence, paid, modified, allowed).
FABRICATION = [
    *[(lic, paid, mod, True) for lic in ("CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0", "MIT", "GPL-3.0-or-later",
                                         "CERN-OHL-S-2.0", "CERN-OHL-W-2.0", "CERN-OHL-P-2.0")
      for paid in (True, False) for mod in (True, False)],
    ("CC-BY-ND-4.0", True, False, True), ("CC-BY-ND-4.0", True, True, False), ("CC-BY-ND-4.0", False, True, False),
    ("CC-BY-NC-4.0", True, False, False), ("CC-BY-NC-4.0", True, True, False),
    ("CC-BY-NC-SA-4.0", True, True, False), ("CC-BY-NC-ND-4.0", True, False, False),
    ("CC-BY-NC-4.0", False, True, True), ("CC-BY-NC-4.0", False, False, True), ("CC-BY-NC-SA-4.0", False, False, True),
    ("CC-BY-NC-ND-4.0", False, False, True),
    *[(lic, paid, mod, False) for lic in ("LicenseRef-AllRightsReserved", "LicenseRef-StandardDigitalFileLicense")
      for paid in (True, False) for mod in (True, False)],
]


@pytest.mark.parametrize(("license", "paid", "modified", "allowed"), FABRICATION)
def test_may_fabricate(license: str, paid: bool, modified: bool, allowed: bool) -> None:
    decision = licenses.may_fabricate(license, paid=paid, modified=modified)
    assert decision.allowed is allowed, decision.rule
    assert license in decision.rule


def test_obligations_follow_the_rules_table() -> None:
    assert licenses.obligations("CC0-1.0").notices() == ()
    by = licenses.obligations("CC-BY-4.0")
    assert by.attribution and by.modification_notice and not by.source_with_product
    assert licenses.obligations("CERN-OHL-S-2.0").source_with_product
    assert licenses.may_fabricate("CC-BY-4.0", paid=True, modified=False).obligations
