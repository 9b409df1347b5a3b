"""``spime`` against a real in-process hub where a command must stop or explain itself: hints that
fit what was not found, an order whose QR labels fail, and ``spime get`` over local files.

What is checked is the client's behaviour, the same on either database: one SQLite hub serves
the module, and each test uses its own names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.client.cli import main
from hub.client.common import EXIT_REFUSED, EXIT_USAGE
from tests.hub.fake_agent import ClockedHub, FakeAgent, printer, start_clocked
from tests.hub.test_orders_api import FILES, cube_manifest

SCAD = "calibration-cube.scad"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClockedHub]:
    running = start_clocked(tmp_path_factory.mktemp("hub"))
    try:
        yield running
    finally:
        running.stop()


def _spime(hub: ClockedHub, capsys: pytest.CaptureFixture[str], user: str, *argv: str) -> tuple[int, Any, str]:
    capsys.readouterr()
    code = main([*argv, "--json", "--hub", hub.address, "--token", hub.tokens[user]])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


@pytest.mark.parametrize(("argv", "hint"), [
    (("watch", "no-such-order"), "check the order id with `spime orders --all`"),
    (("cancel", "no-such-order"), "check the order id with `spime orders --all`"),
    (("rate", "no-such-order", "--stars", "3"), "check the order id with `spime orders --all`"),
    (("key", "list", "nobody-here"), "check the account name"),
    (("show", "no-such-design"), "check the design name with `spime search`"),
])
def test_a_not_found_hint_fits_what_was_missing(hub: ClockedHub, capsys: pytest.CaptureFixture[str],
                                                argv: tuple[str, ...], hint: str) -> None:
    code, _, err = _spime(hub, capsys, "carol", *argv)
    shown = err.strip().splitlines()[-1]  # the hint follows the hub's own message
    assert code == EXIT_REFUSED and "NOT_FOUND" in err and hint in shown, err
    assert "--new" not in shown


def test_an_unknown_proposal_points_at_the_proposals(hub: ClockedHub, capsys: pytest.CaptureFixture[str]) -> None:
    hub.push("alice", "hint-cube", dict(FILES), manifest=cube_manifest("hint-cube"), create=True)
    code, _, err = _spime(hub, capsys, "alice", "accept", "hint-cube", "no-such-proposal")
    shown = err.strip().splitlines()[-1]
    assert code == EXIT_REFUSED and "NOT_FOUND" in err and "spime proposals DESIGN" in shown, err
    assert "--new" not in shown


def test_an_order_whose_labels_fail_is_still_shown(hub: ClockedHub, capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    hub.push("alice", "qr-cube", dict(FILES), manifest=cube_manifest("qr-cube"), create=True)
    agent = FakeAgent.enrolled(hub, "qr-lab", [printer()])
    agent.connect()
    try:
        code, quote, err = _spime(hub, capsys, "carol", "quote", "qr-cube", "--material", "PLA", "--qty", "2")
        assert code == 0 and quote["fabricable"], err
        (tmp_path / "label-2.png").mkdir()  # the second object's label cannot be written
        code, order, err = _spime(hub, capsys, "carol", "order", "qr-cube", "--material", "PLA",
                                  "--quote", quote["quote_id"], "--qr", str(tmp_path / "label.png"))
        assert code == EXIT_REFUSED and order is not None, err
        assert order["id"] and len(order["objects"]) == 2
        assert order["qr_files"] == [str(tmp_path / "label.png")] and "label-2.png" in order["qr_error"]
        assert f"order {order['id']} is placed" in err and "label-2.png" in err
        code, listed, _ = _spime(hub, capsys, "carol", "orders", "--all")
        assert order["id"] in [o["id"] for o in listed["orders"]]
    finally:
        agent.close()


def test_get_refuses_to_overwrite_local_changes(hub: ClockedHub, capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    first = hub.push("alice", "get-cube", dict(FILES), manifest=cube_manifest("get-cube"), create=True)
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for folder in (mine, theirs):
        assert _spime(hub, capsys, "alice", "get", "get-cube", "-o", str(folder))[0] == 0
    (mine / SCAD).write_text("// my local edit\n")
    code, _, err = _spime(hub, capsys, "alice", "get", "get-cube", "-o", str(mine))
    assert code == EXIT_USAGE and SCAD in err and "--force" in err, err
    assert (mine / SCAD).read_text() == "// my local edit\n"
    changed = dict(FILES) | {SCAD: FILES[SCAD] + b"// upstream change\n"}
    hub.push("alice", "get-cube", changed, manifest=cube_manifest("get-cube"), parents=(first.revision_id,))
    code, _, err = _spime(hub, capsys, "alice", "get", "get-cube", "-o", str(theirs))
    assert code == 0 and (theirs / SCAD).read_bytes() == changed[SCAD], err  # unchanged files are updated
    code, _, err = _spime(hub, capsys, "alice", "get", "get-cube", "-o", str(mine))
    assert code == EXIT_USAGE and SCAD in err
    code, _, err = _spime(hub, capsys, "alice", "get", "get-cube", "-o", str(mine), "--force")
    assert code == 0 and (mine / SCAD).read_bytes() == changed[SCAD], err


def test_get_removes_what_the_new_revision_no_longer_lists(hub: ClockedHub, capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Path) -> None:
    """A later get brings the folder to the revision as a checkout does: a file the revision dropped
    goes (else the next push would bring it back), a locally edited one is a local change."""
    extra = {"notes/assembly.md": b"glue the halves\n", "notes/old.md": b"superseded\n"}
    first = hub.push("alice", "drop-cube", dict(FILES) | extra, manifest=cube_manifest("drop-cube"), create=True)
    clean, edited = tmp_path / "clean", tmp_path / "edited"
    for folder in (clean, edited):
        assert _spime(hub, capsys, "alice", "get", "drop-cube", "-o", str(folder))[0] == 0
    (clean / "mine.txt").write_text("never on the hub\n")
    (edited / "notes/old.md").write_text("my own notes now\n")
    second = hub.push("alice", "drop-cube", dict(FILES), manifest=cube_manifest("drop-cube"),
                      parents=(first.revision_id,))

    code, got, err = _spime(hub, capsys, "alice", "get", "drop-cube", "-o", str(clean))
    assert code == 0 and got["revision_id"] == second.revision_id, err
    assert sorted(got["removed"]) == ["notes/assembly.md", "notes/old.md"]
    assert not (clean / "notes").exists()  # the folder they leave empty goes too
    assert (clean / "mine.txt").read_text() == "never on the hub\n"  # never listed: not the get's to remove
    assert sorted(p.name for p in clean.iterdir() if not p.name.startswith(".")) == sorted(
        [*FILES, "mine.txt", "spime.toml"])

    code, _, err = _spime(hub, capsys, "alice", "get", "drop-cube", "-o", str(edited))
    assert code == EXIT_USAGE and "notes/old.md" in err and "--force" in err, err
    assert (edited / "notes/old.md").read_text() == "my own notes now\n"
    assert (edited / "notes/assembly.md").exists()  # refused before anything was written or removed
    code, got, err = _spime(hub, capsys, "alice", "get", "drop-cube", "-o", str(edited), "--force")
    assert code == 0 and sorted(got["removed"]) == ["notes/assembly.md", "notes/old.md"], err
    assert not (edited / "notes").exists()


def test_get_refuses_a_folder_of_another_design_or_unknown_files(hub: ClockedHub, capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    for name in ("one-cube", "two-cube"):
        hub.push("alice", name, dict(FILES), manifest=cube_manifest(name), create=True)
    folder = tmp_path / "one"
    assert _spime(hub, capsys, "alice", "get", "one-cube", "-o", str(folder))[0] == 0
    code, _, err = _spime(hub, capsys, "alice", "get", "two-cube", "-o", str(folder))
    assert code == EXIT_USAGE and "'one-cube'" in err and "--force" in err, err
    assert "one-cube" in (folder / "spime.toml").read_text()
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / SCAD).write_text("// someone's own file, not from the hub\n")
    (stranger / "notes.md").write_text("untouched\n")
    code, _, err = _spime(hub, capsys, "alice", "get", "one-cube", "-o", str(stranger))
    assert code == EXIT_USAGE and SCAD in err and "notes.md" not in err, err
    assert not (stranger / "spime.toml").exists()
