"""hub.licenses.check_revision_license: the one licence check of every door (pure)."""

from __future__ import annotations

import pytest

from hub.errors import InvalidLicense, LicenseConflict
from hub.licenses import check_revision_license, parse_expression


@pytest.mark.parametrize(
    ("target", "upstream", "previous", "maintainer", "reason"),
    [
        ("MIT", [("shelf@1", "CC-BY-SA-4.0")], None, True, "LICENSE_DERIVATIVE_NOT_ALLOWED"),
        ("MIT", [("shelf@1", "CC-BY-SA-4.0"), ("fork@2", "GPL-3.0-or-later")], "GPL-3.0-or-later", True,
         "LICENSE_DERIVATIVE_NOT_ALLOWED"),
        ("MIT", [("logo@1", "CC-BY-ND-4.0")], "MIT", True, "LICENSE_ND_NO_DERIVATIVES"),
        ("MIT", [("x@1", "LicenseRef-AllRightsReserved")], None, True, "LICENSE_NO_REMIX"),
        ("MIT", [("x@1", "LicenseRef-MyOwnTerms")], None, True, "LICENSE_UNKNOWN_NO_REMIX"),
        ("CC-BY-NC-SA-4.0", [("a@1", "CC-BY-SA-4.0"), ("b@1", "CC-BY-NC-4.0")], None, True,
         "LICENSE_NO_COMMON_LICENSE"),
        ("MIT", [], "CC-BY-SA-4.0", False, "LICENSE_CHANGE_NOT_MAINTAINER"),
    ],
)
def test_refusals_name_the_rule(target: str, upstream: list[tuple[str, str]], previous: str | None,
                                maintainer: bool, reason: str) -> None:
    with pytest.raises(LicenseConflict) as info:
        check_revision_license(target, upstream, previous=previous, may_relicense=maintainer)
    assert info.value.reason == reason, info.value.message
    assert all(name.split("@")[0] in info.value.message for name, _ in upstream[:1]) or not upstream


@pytest.mark.parametrize(
    ("target", "upstream", "previous", "maintainer"),
    [
        ("MIT", [], "CC-BY-SA-4.0", True),  # an original's maintainers relicense it
        ("GPL-3.0-only", [("shelf@1", "CC-BY-SA-4.0")], "CC-BY-SA-4.0", True),  # one-way BY-SA → GPLv3
        ("CC-BY-SA-4.0", [("shelf@1", "CC-BY-SA-4.0")], "cc-by-sa-4.0", False),  # same licence, any spelling
        ("MIT", [("a@1", "CC0-1.0"), ("b@1", "MIT"), ("b@1", "MIT")], None, True),
    ],
)
def test_allowed(target: str, upstream: list[tuple[str, str]], previous: str | None, maintainer: bool) -> None:
    check_revision_license(target, upstream, previous=previous, may_relicense=maintainer)


@pytest.mark.parametrize("text", ["MIT OR", "MIT AND", "()", "mit or", "LicenseRef-x OR", "MIT\u202eGPL",
                                  "(" * 300 + "MIT" + ")" * 300, "MIT WITH", "\u00a0MIT"])
def test_malformed_expressions_are_invalid_license_never_another_exception(text: str) -> None:
    with pytest.raises(InvalidLicense) as info:
        parse_expression(text)
    assert info.value.reason.startswith("LICENSE_") and info.value.field == "license"
