"""End to end: the README's first command, ``spime demo``, through the installed console
script: a hub, a node agent with a serial (simulated Marlin) and an OctoPrint printer,
orders, prints, ratings and the ledger; and that it leaves no process behind, also when
interrupted with Ctrl-C (SIGINT) halfway."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SPIME = Path(sys.executable).with_name("spime")
WAIT_S = 240.0


def _environ_has(pid: str, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone meanwhile, or a kernel thread
        return False


def survivors(marker: str) -> list[str]:
    """Command lines of live processes that inherited the test's marker variable."""
    needle = f"SPIME_DEMO_TEST={marker}".encode()
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        if _environ_has(pid, needle):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            found.append(f"{pid}: {cmd.decode(errors='replace')[:200]}")
    return found


def poll(what: str, check: Callable[[], Any], deadline_s: float = WAIT_S) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def start_demo(tmp_path: Path, marker: str, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    assert SPIME.exists(), f"the spime console script is not installed at {SPIME}"
    err = tmp_path / "demo.stderr"
    env = {**os.environ, "SPIME_DEMO_TEST": marker}
    with (tmp_path / "demo.stdout").open("wb") as out, err.open("wb") as errf:
        proc = subprocess.Popen([str(SPIME), "demo", "--json", "--data", str(tmp_path / "data"), *extra],
                                cwd=ROOT, env=env, stdout=out, stderr=errf)
    return proc, err


def test_spime_demo_runs_the_whole_story(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    proc, err = start_demo(tmp_path, marker)
    try:
        code = proc.wait(timeout=WAIT_S)
    finally:
        proc.kill()
    log = err.read_text(errors="replace")
    assert code == 0, log[-6000:]
    assert survivors(marker) == []
    doc = json.loads((tmp_path / "demo.stdout").read_text())
    assert set(doc) >= {"designs", "refused", "orders", "fabrications", "ratings", "ledger"}
    assert set(doc["designs"]) >= {"calibration-cube", "shelf-bracket", "box-with-lid", "cable-clip",
                                   "shelf-bracket-gpl"}
    assert [(r["action"], r["design"], r["status"]) for r in doc["refused"]] == [
        ("fork", "cable-clip", "FAILED_PRECONDITION")]
    assert "CC-BY-ND-4.0" in doc["refused"][0]["message"]

    orders = {o["id"]: o for o in doc["orders"]}
    assert len(orders) == 2 and {o["state"] for o in orders.values()} == {"delivered"}
    assert any(o["params"] for o in orders.values()), "one order is parametric"
    assert all(o["price"] > 0 and len(o["revision"]) == 64 for o in orders.values())

    fabs = doc["fabrications"]
    assert {f["order"] for f in fabs} == set(orders)
    assert all(len(f["incarnation"]) == 12 and f["outcome"] == "success" for f in fabs)
    assert all(f["estimated_seconds"] > 0 and f["filament_mm"] > 0 and f["resends"] >= 0 for f in fabs)
    assert {f["printer"] for f in fabs} == {"mk3-serial", "mk3-octoprint"}, doc.get("skipped")

    paid: dict[str, float] = defaultdict(float)
    for entry in doc["ledger"]:
        paid[entry["order"]] += entry["amount"]
    assert {o: round(v, 2) for o, v in paid.items()} == {o["id"]: o["price"] for o in orders.values()}
    assert {(r["design"], r["role"]) for r in doc["ratings"]} >= {
        (o["design"], role) for o in orders.values() for role in ("customer", "maker")}

    for said in ("== Remix under the licence rules", "operator step confirmed automatically",
                 "incarnation ", "ledger order "):
        assert said in log


def test_ctrl_c_mid_demo_stops_every_process_it_started(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    proc, err = start_demo(tmp_path, marker)
    try:
        poll("the node agent to run", lambda: proc.poll() is not None or "spime-node run" in
             err.read_text(errors="replace"))
        assert proc.poll() is None, err.read_text(errors="replace")[-4000:]
        started = [s for s in survivors(marker) if not s.startswith(f"{proc.pid}:")]
        assert len(started) >= 3, started  # hub, simulator, agent (and OctoPrint)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    assert code == 130, err.read_text(errors="replace")[-4000:]
    assert "interrupted; stopping everything it started" in err.read_text(errors="replace")
    assert survivors(marker) == []


def test_a_failing_step_exits_non_zero_and_stops_every_process(tmp_path: Path) -> None:
    designs = tmp_path / "designs"
    shutil.copytree(ROOT / "designs" / "calibration-cube", designs / "calibration-cube")
    marker = uuid.uuid4().hex
    proc, err = start_demo(tmp_path, marker, "--designs", str(designs))  # no shelf-bracket to fork
    try:
        code = proc.wait(timeout=WAIT_S)
    finally:
        proc.kill()
    log = err.read_text(errors="replace")
    assert code == 1, log[-4000:]
    assert "spime demo: FAILED" in log and "shelf-bracket" in log
    assert (tmp_path / "demo.stdout").read_text() == ""
    assert survivors(marker) == []


def test_the_summary_is_built_from_the_hubs_answers() -> None:
    from hub.client.demo.summary import build, parse_refusal

    refusal = parse_refusal("fork", "cable-clip", "spime: hub refused: FAILED_PRECONDITION: licence rule 'x': no")
    order = {"id": "o1", "state": "ORDER_STATE_DELIVERED", "price": {"currency": "EUR", "minor_units": "129"},
             "spec": {"design": "cube", "revision_id": "r" * 64, "parameters": {"size": "12"}}}
    record = {"fabrications": [{"order_id": "o1", "incarnation_id": "abcdefghijkl", "actual_filament_mm": 12.5},
                               {"order_id": "someone-elses", "incarnation_id": "zzzzzzzzzzzz"}],
              "ratings": [{"rater": "carol", "role": "customer", "stars": 5}]}
    ledger = {"entries": [{"order_id": "o1", "recipient": "lab", "share": "maker",
                           "amount": {"currency": "EUR", "minor_units": "129"}},
                          {"order_id": "o2", "recipient": "lab", "share": "maker", "amount": {"minor_units": "5"}}]}
    doc = build(["cube"], [refusal], [order], {"cube": record}, {"cube": ledger})
    assert doc["refused"] == [{"action": "fork", "design": "cable-clip", "status": "FAILED_PRECONDITION",
                               "message": "licence rule 'x': no"}]
    assert doc["orders"][0] | {"currency": ""} == {"id": "o1", "design": "cube", "revision": "r" * 64,
                                                   "params": {"size": "12"}, "price": 1.29, "state": "delivered",
                                                   "currency": ""}
    assert [(f["incarnation"], f["filament_mm"], f["resends"]) for f in doc["fabrications"]] == [
        ("abcdefghijkl", 12.5, 0)]
    assert doc["ledger"] == [{"order": "o1", "party": "lab", "role": "maker", "amount": 1.29}]
    assert doc["ratings"][0]["rater"] == "carol"
