"""`spime participation` and `spime equation` end to end: a maintainer declares, the record shows it, anyone
else is refused (both databases)."""

from __future__ import annotations

import pytest

from tests.hub.client.test_spime_grant_cli import _spime
from tests.hub.clocked import clocked_fixture
from tests.hub.fake_agent import ClockedHub
from tests.hub.test_orders_api import FILES, cube_manifest

hub = clocked_fixture()  # a clocked hub, once on SQLite and once on PostgreSQL


def test_a_maintainer_declares_the_rung_and_the_equation_the_record_shows(
        hub: ClockedHub, capsys: pytest.CaptureFixture[str]) -> None:
    hub.push("alice", "cube", dict(FILES), manifest=cube_manifest(), create=True)
    code, record, err = _spime(hub, capsys, "alice", "participation", "cube", "co-design")
    assert code == 0 and record["participation"] == "co-design", err
    code, published, err = _spime(hub, capsys, "alice", "equation", "cube", "--maker", "55", "--lineage", "30",
                                  "--commons", "15", "--own", "80", "--upstream", "20")
    assert code == 0, err
    assert (published["maker"], published["design_lineage"], published["commons"]) == ("55", "30", "15")
    code, shown, _ = _spime(hub, capsys, "carol", "record", "cube")
    assert shown["participation"] == "co-design" and shown["value_equation"]["version"] == published["version"]
    assert shown["value_equation"]["own_revision"] == "80"


def test_others_are_refused_and_shares_must_add_up(hub: ClockedHub, capsys: pytest.CaptureFixture[str]) -> None:
    hub.push("alice", "cube", dict(FILES), manifest=cube_manifest(), create=True)
    code, _, err = _spime(hub, capsys, "bob", "participation", "cube", "consume")
    assert code == 1 and "PERMISSION_DENIED" in err
    code, _, err = _spime(hub, capsys, "alice", "equation", "cube", "--maker", "60", "--lineage", "30",
                          "--commons", "15")
    assert code == 1 and "INVALID_ARGUMENT" in err and "100" in err
    code, _, err = _spime(hub, capsys, "alice", "participation", "cube", "everyone")
    assert code == 2 and "invalid choice" in err
