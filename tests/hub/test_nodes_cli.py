"""`spime-hub node add` and `spime-hub job add|list|fail|requeue` against a running hub subprocess."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from spimeforge.v1 import nodes_pb2, nodes_pb2_grpc

from hub.__main__ import main
from tests.fixtures.hub_server import ROOT, RunningHub, hub_env, start_hub, stop_hub
from tests.fixtures.postgres import create_database
from tests.hub.fake_agent import FakeAgent, printer
from tests.hub.harness import InProcessHub, manifest_toml

STL = b"solid cube\nendsolid cube\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningHub]:
    url = "" if request.param == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    hub = start_hub(tmp_path / "hub", url)
    try:
        yield hub
    finally:
        stop_hub(hub)


def _store(hub: RunningHub) -> list[str]:
    return ["--data", str(hub.data_dir)] + (["--database", hub.database_url] if hub.database_url else [])


def _subprocess(hub: RunningHub, *argv: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "hub", *argv, *_store(hub)], cwd=ROOT, env=hub_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def _cli(hub: RunningHub, capsys: pytest.CaptureFixture[str], *argv: str, ok: bool = True) -> Any:
    """spime-hub in this process (the same main() as the console script, without its start-up cost)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = main([*argv, *_store(hub)])
    except SystemExit as exc:
        code = exc.code
    finally:
        root.handlers[:], root.level = handlers, level
    out = capsys.readouterr()
    assert (code == 0) == ok, out.err
    return json.loads(out.out) if ok and "--json" in argv else out


def test_cli_node_and_job_commands_reach_the_running_hub(running: RunningHub, capsys: pytest.CaptureFixture[str]) -> None:
    channel = grpc.insecure_channel(running.address)
    try:
        pusher = InProcessHub.push_request("cube", {"cube.stl": STL}, create=True)
        from spimeforge.v1 import common_pb2, designs_pb2_grpc
        designs = designs_pb2_grpc.DesignsStub(channel)
        md = running.metadata("alice")
        designs.UploadBlob(iter([common_pb2.BlobChunk(sha256=pusher.files[0].sha256, total_size=len(STL), data=STL)]), metadata=md)
        designs.Push(pusher, metadata=md)
        added = json.loads(_subprocess(running, "node", "add", "lab-1", "--json").stdout)
        assert set(added) == {"node", "enrollment_token", "expires_at"} and added["node"] == "lab-1"
        assert "already exists" in _cli(running, capsys, "node", "add", "lab-1", ok=False).err
        again = _cli(running, capsys, "node", "add", "lab-1", "--again", "--json")
        assert again["node"] == "lab-1" and again["enrollment_token"] != added["enrollment_token"]
        with pytest.raises(grpc.RpcError) as void:  # the re-issue voided the first token
            nodes_pb2_grpc.NodesStub(channel).Enroll(nodes_pb2.EnrollRequest(enrollment_token=added["enrollment_token"]))
        assert void.value.code() == grpc.StatusCode.UNAUTHENTICATED
        token = nodes_pb2_grpc.NodesStub(channel).Enroll(
            nodes_pb2.EnrollRequest(enrollment_token=again["enrollment_token"])).token
        agent = FakeAgent(channel, "lab-1", token, [printer()])
        agent.connect()
        _subprocess(running, "node", "add", "lab-2")  # never connected
        nodes = _cli(running, capsys, "node", "list", "--json")
        assert [(n["node"], n["online"]) for n in nodes] == [("lab-1", True), ("lab-2", False)]
        assert nodes[0]["printers"] == [{"printer": "mk3", "model": "Prusa MK3S", "phase": "idle", "materials": ["PLA"],
                                         "bed_clear": True, "accepting": True}]
        assert nodes[1]["printers"] == [] and nodes[1]["last_seen"] == ""
        assert [n["node"] for n in _cli(running, capsys, "node", "list", "--online", "--json")] == ["lab-1"]
        text = _cli(running, capsys, "node", "list").out.splitlines()
        assert text[0].startswith("lab-1  online ") and "mk3 (Prusa MK3S, idle, PLA)" in text[0]
        assert text[1].startswith("lab-2  offline  last seen never") and text[1].endswith("no printers")
        job = _cli(running, capsys, "job", "add", "cube", "--material", "PLA", "--json")
        assert job["state"] in ("queued", "offered") and job["parameters"] == {}
        assert "no OpenSCAD parameters" in _cli(running, capsys, "job", "add", "cube", "--material", "PLA",
                                                "--param", "size=20", ok=False).err  # an STL design has none
        offer = agent.expect("offer").offer  # the hub's sweep picked it up
        assert offer.job_id == job["id"]
        listed = _cli(running, capsys, "job", "list", "--json")
        assert [j["id"] for j in listed] == [job["id"]]
        assert "still with its node" in _cli(running, capsys, "job", "requeue", job["id"], ok=False).err
        # reasons and parameters reach orders and the public record: plain text only, as everywhere else
        assert "U+202E" in _cli(running, capsys, "job", "fail", job["id"], "--reason", "nozzle\u202eevil", ok=False).err
        assert "U+001B" in _cli(running, capsys, "job", "add", "cube", "--material", "PLA", "--param", "size=2\x1b[31m",
                                ok=False).err
        failed = _cli(running, capsys, "job", "fail", job["id"], "--reason", "operator said so", "--json")
        assert (failed["state"], failed["failure_reason"]) == ("failed", "operator said so")
        requeued = _cli(running, capsys, "job", "requeue", job["id"], "--json")
        assert requeued["lease_epoch"] == 1 and requeued["state"] in ("queued", "offered")
        assert "--material" in _cli(running, capsys, "job", "add", "cube", ok=False).err

        drained = _cli(running, capsys, "node", "drain", "lab-1", "--reason", "new nozzle, calibrating", "--json")
        assert drained == {"node": "lab-1", "drained": "new nozzle, calibrating", "online": True}
        assert agent.expect("drain").drain.reason == "new nozzle, calibrating"  # the running hub's check told it
        assert "lab-1  online   DRAINED (new nozzle, calibrating)" in _cli(running, capsys, "node", "list").out
        assert "no node named 'lab-9'" in _cli(running, capsys, "node", "drain", "lab-9", "--reason", "x", ok=False).err
        assert "--reason" in _cli(running, capsys, "node", "drain", "lab-1", ok=False).err
        assert "resumed" in _cli(running, capsys, "node", "resume", "lab-1").out
        assert agent.ended() is None  # the hub closed the drained session: the agent reconnects
        assert _cli(running, capsys, "node", "list", "--json")[0]["drained"] == ""
    finally:
        channel.close()


SCAD = ROOT / "designs" / "calibration-cube"
CUBE_FILES = {"calibration-cube.stl": (SCAD / "calibration-cube.stl").read_bytes(),
              "calibration-cube.scad": (SCAD / "calibration-cube.scad").read_bytes()}
CUBE_MANIFEST = manifest_toml("scad-cube", files=("calibration-cube.stl",),
                              extra='[openscad]\nsource = "calibration-cube.scad"\n'
                                    'parameters = { size = 20, mark_depth = 0.6, chamfer = 0.6 }\n')


def _in_process(api: InProcessHub, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    url = api.composed.config.database_url
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = main([*argv, "--data", str(api.data_dir), *(["--database", url] if url else [])])
    finally:
        root.handlers[:], root.level = handlers, level
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(("extra", "words"), [
    (("--material", "NOPE"), "unknown material 'NOPE': use one of PLA, PETG"),
    (("--material", "PLA", "--param", "size=nan"), "parameter 'size': 'nan' is not a number"),
    (("--material", "PLA", "--param", "size=1e999"), "parameter 'size': inf is not finite"),
    (("--material", "PLA", "--param", "size=99"), "parameter 'size': 99 is out of range"),
    (("--material", "PLA", "--param", "colour=red"), "parameter 'colour': the design has no such parameter"),
    (("--material", "PLA", "--node", "nope"), "no node named 'nope'"),
    (("--material", "PLA", "--node", "nope", "--printer", "nope"), "no node named 'nope'"),
    (("--material", "PLA", "--node", "lab-1", "--printer", "nope"), "no printer named 'nope' on node 'lab-1'"),
    (("--material", "PLA", "--printer", "nope"), "no printer named 'nope' on any node"),
])
def test_job_add_refuses_what_a_quote_refuses(any_api: InProcessHub, capsys: pytest.CaptureFixture[str],
                                              extra: tuple[str, ...], words: str) -> None:
    any_api.push("alice", "scad-cube", CUBE_FILES, manifest=CUBE_MANIFEST, create=True)
    agent = FakeAgent.enrolled(any_api, "lab-1", [printer()])
    agent.connect()
    try:
        code, out, err = _in_process(any_api, capsys, "job", "add", "scad-cube", *extra)
        assert code == 1 and out == "" and words in err, err
        assert _in_process(any_api, capsys, "job", "list", "--json")[1].strip() == "[]"  # nothing queued
        code, out, err = _in_process(any_api, capsys, "job", "add", "scad-cube", "--material", "pla", "--param",
                                     "size=25", "--node", "lab-1", "--printer", "mk3", "--json")
        assert code == 0, err
        job = json.loads(out)
        assert (job["material"], job["parameters"], job["node"], job["printer"]) == ("PLA", {"size": "25"}, "lab-1",
                                                                                     "mk3")
    finally:
        agent.close()
