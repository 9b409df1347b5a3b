"""`spime quote|order|watch|orders|rate|cancel|record|ledger|grant` in process against a real in-process hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub.client.cli import main
from tests.hub.clocked import clocked_fixture
from tests.hub.fake_agent import ClockedHub, FakeAgent, printer
from tests.hub.test_orders_api import FILES, cube_manifest

hub = clocked_fixture()  # a clocked hub, once on SQLite and once on PostgreSQL


def _spime(hub: ClockedHub, capsys: pytest.CaptureFixture[str], user: str, *argv: str) -> tuple[int, Any, str]:
    capsys.readouterr()
    code = main([*argv, "--json", "--hub", hub.address, "--token", hub.tokens[user]])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def test_customer_commands(hub: ClockedHub, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    hub.push("alice", "cube", dict(FILES), manifest=cube_manifest(), create=True)
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    agent.connect()
    code, quote, err = _spime(hub, capsys, "carol", "quote", "cube", "--material", "PLA", "--near", "52.5,13.4",
                              "--param", "size=25")
    assert code == 0, err
    assert quote["fabricable"] and quote["options"][0]["node"] == "lab-1"
    qr = tmp_path / "labels" / "cube.png"
    code, order, err = _spime(hub, capsys, "carol", "order", "cube", "--material", "PLA", "--quote", quote["quote_id"],
                              "--key", "first", "--qr", str(qr))
    assert code == 0, err
    assert order["qr_files"] == [str(qr)] and qr.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert order["spec"]["parameters"] == {"size": "25"}
    agent.print_job()
    code, final, err = _spime(hub, capsys, "carol", "watch", order["id"])
    assert code == 0 and final["state"] == "ORDER_STATE_DELIVERED" and "delivered" in err
    code, listed, _ = _spime(hub, capsys, "carol", "orders", "--all")
    assert [o["id"] for o in listed["orders"]] == [order["id"]]
    code, _, err = _spime(hub, capsys, "carol", "rate", order["id"], "--stars", "5", "--criteria", "quality=5,fairness=4")
    assert code == 0, err
    code, record, _ = _spime(hub, capsys, "carol", "record", "cube")
    assert record["fabrication_count"] == 1 and record["aggregates"][0]["prints"] == 1
    code, ledger, _ = _spime(hub, capsys, "carol", "ledger", "cube")
    assert sum(int(e["amount"]["minor_units"]) for e in ledger["entries"]) == int(order["price"]["minor_units"])
    code, mine, _ = _spime(hub, capsys, "carol", "ledger", "--node", "lab-1")
    assert code == 0 and mine["balances"][0]["recipient"] == "lab-1"
    key = tmp_path / "alice.key"
    assert main(["key", "gen", "--key", str(key)]) == 0
    assert _spime(hub, capsys, "alice", "key", "register", "--key", str(key))[0] == 0
    code, grant, err = _spime(hub, capsys, "alice", "grant", "cube", "--scope", "paid", "--any", "--until", "2030-01-01",
                              "--key", str(key))
    assert code == 0 and grant["until"] == "2030-01-01T23:59:59Z", err
    agent.close()


def test_refusals_and_usage_errors(hub: ClockedHub, capsys: pytest.CaptureFixture[str]) -> None:
    hub.push("alice", "cube", dict(FILES), manifest=cube_manifest(), create=True)
    code, _, err = _spime(hub, capsys, "carol", "quote", "cube", "--material", "PLA", "--param", "size=400")
    assert code == 1 and "INVALID_ARGUMENT" in err and "size" in err
    code, _, err = _spime(hub, capsys, "carol", "quote", "cube", "--material", "PLA", "--param", "size")
    assert code == 2 and "NAME=VALUE" in err
    code, quote, _ = _spime(hub, capsys, "carol", "quote", "cube", "--material", "PLA")
    assert code == 0 and not quote["fabricable"] and "no printer" in quote["refusal"]
    code, _, err = _spime(hub, capsys, "bob", "grant", "cube", "--scope", "paid", "--any", "--until", "2030-01-01")
    assert code == 1 and "PERMISSION_DENIED" in err
    code, _, err = _spime(hub, capsys, "carol", "ledger")
    assert code == 2
