"""Real processes for the fault tests: a `spime-hub serve` that can be killed and restarted on
the same data, `spime-node run` agents with their own configs and state, a tiny design, and
read-only views of the hub's record (job_events, fabrications) straight from its database.

Every agent reaches the hub through its own TcpProxy (tests/fixtures/tcp_proxy.py): the proxy
can cut an agent off, and follows the hub to its new port after a restart.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
import trimesh
from spimeforge.v1 import common_pb2, designs_pb2_grpc

from hub.__main__ import Composed, compose
from hub.config import HubConfig
from hub.jobs import Job, JobSpec
from hub.store import schema
from tests.fixtures.hub_server import USERS, RunningHub, hub_env, start_hub
from tests.fixtures.tcp_proxy import TcpProxy
from tests.hub.harness import CHUNK, InProcessHub, manifest_toml, sha

ROOT = Path(__file__).resolve().parents[2]
ENV = {**hub_env(), "PYTHONUNBUFFERED": "1"}
WAIT_S = 90.0
DESIGN = "tiny-plate"


def poll(what: str, check: Callable[[], Any], deadline_s: float = WAIT_S,
         explain: Callable[[], str] = lambda: "") -> Any:
    """Poll a condition with a bounded deadline; its first truthy value."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}\n{explain()}")


def plate_stl() -> bytes:
    """A 10 x 10 x 0.6 mm plate: three layers, a few hundred G-code lines."""
    out = io.BytesIO()
    mesh = trimesh.creation.box(extents=(10.0, 10.0, 0.6))
    mesh.apply_translation((0.0, 0.0, 0.3))
    mesh.export(out, file_type="stl")
    return out.getvalue()


# -- the hub -------------------------------------------------------------------------------


@dataclass
class HubProcess:
    """`spime-hub serve` on one data directory / database, restartable; an admin view on its store."""

    data_dir: Path
    database_url: str
    running: RunningHub | None = None
    proxies: list[TcpProxy] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    _admin: Composed | None = None

    def start(self) -> None:
        first = not self.tokens
        self.running = start_hub(self.data_dir, self.database_url, users=USERS if first else {})
        if first:
            self.tokens = dict(self.running.tokens)
        for proxy in self.proxies:
            proxy.retarget("127.0.0.1", self.running.port)

    @property
    def address(self) -> str:
        assert self.running is not None
        return self.running.address

    def kill(self) -> None:
        """kill -9: no graceful stop, sessions end as the kernel closes the sockets."""
        assert self.running is not None and self.running.process is not None
        self.running.process.kill()
        self.running.process.wait(timeout=30)

    def stop(self) -> None:
        from tests.fixtures.hub_server import stop_hub

        if self.running is not None:
            stop_hub(self.running)
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def log(self) -> str:
        return self.running.log()[-4000:] if self.running else ""

    def proxy(self) -> TcpProxy:
        """A proxy to this hub for one agent (closed by close_proxies)."""
        assert self.running is not None
        made = TcpProxy("127.0.0.1", self.running.port)
        self.proxies.append(made)
        return made

    def close_proxies(self) -> None:
        for proxy in self.proxies:
            proxy.close()

    @property
    def admin(self) -> Composed:
        """The store, as `spime-hub job add|list` open it (same data directory or database)."""
        if self._admin is None:
            self._admin = compose(HubConfig(data_dir=self.data_dir, database_url=self.database_url),
                                  printability=None)
        return self._admin

    # -- what the tests read and do ----------------------------------------------------

    def push_design(self) -> str:
        """Push the tiny plate as alice over gRPC; returns the revision id."""
        files = {"plate.stl": plate_stl()}
        md = (("authorization", f"Bearer {self.tokens['alice']}"),)
        with grpc.insecure_channel(self.address) as channel:
            stub = designs_pb2_grpc.DesignsStub(channel)
            for data in files.values():
                first = common_pb2.BlobChunk(sha256=sha(data), total_size=len(data), offset=0,
                                             data=data[:CHUNK])
                stub.UploadBlob(iter([first]), metadata=md, timeout=60)
            manifest = manifest_toml(DESIGN, license="CC0-1.0", files=("plate.stl",))
            request = InProcessHub.push_request(DESIGN, files, manifest=manifest, create=True)
            return str(stub.Push(request, metadata=md, timeout=60).revision_id)

    def add_job(self, revision: str, node: str, printer: str) -> Job:
        """What `spime-hub job add tiny-plate@REV --material PLA --node N --printer P` does."""
        spec = JobSpec(DESIGN, revision, "PLA", node=node, printer=printer)
        return self.admin.hub.jobs._thd_create_job(spec, "admin")

    def job(self, job_id: str) -> Job:
        return self.admin.hub.jobs._thd_get_job(job_id)

    def state(self, job_id: str) -> str:
        return str(self.job(job_id).state.value)

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's reports on the hub's record, in agent_seq order."""
        t = schema.job_events
        with self.admin.store.designs.engine.connect() as db:
            rows = db.execute(sa.select(t).where(t.c.job_id == job_id).order_by(t.c.node, t.c.agent_seq))
            return [dict(r) for r in rows.mappings()]

    def node_seqs(self, node: str) -> list[int]:
        """The agent_seq of every report of a node on the hub's record, in order."""
        t = schema.job_events
        with self.admin.store.designs.engine.connect() as db:
            return list(db.scalars(sa.select(t.c.agent_seq).where(t.c.node == node).order_by(t.c.agent_seq)))

    def fabrications(self, job_id: str) -> list[dict[str, Any]]:
        t = schema.fabrications
        with self.admin.store.designs.engine.connect() as db:
            return [dict(r) for r in db.execute(sa.select(t).where(t.c.job_id == job_id)).mappings()]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`spime-hub ARGS --data DIR [--database URL]` as a process."""
        store = ["--data", str(self.data_dir)] + (["--database", self.database_url] if self.database_url else [])
        return subprocess.run([sys.executable, "-m", "hub", *args, *store], cwd=ROOT, env=ENV, text=True,
                              capture_output=True, timeout=120, check=False)


def applied(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind and e["applied"]]


# -- the agents ----------------------------------------------------------------------------


def serial_printer(name: str, port: str, baud: int = 250000) -> str:
    return f'driver = "serial"\nname = "{name}"\nport = "{port}"\nbaud = {baud}\n'


def octoprint_printer(name: str, url: str, api_key: str) -> str:
    return (f'driver = "octoprint"\nname = "{name}"\nurl = "{url}"\napi_key = "{api_key}"\n'
            'port = "VIRTUAL"\nbaud = 115200\n')


_PRINTER_COMMON = """model = "Prusa MK3S"
build_volume_mm = [250, 210, 210]
nozzle_mm = 0.4
materials = ["PLA"]
max_hotend_c = 280
max_bed_c = 110
slicer_profile = "prusa_mk3s"
"""


@dataclass
class AgentProcess:
    """One `spime-node run` with its own config, state directory and proxy to the hub."""

    name: str
    root: Path
    proxy: TcpProxy
    printers: list[str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.root / "node.toml"

    @property
    def log_path(self) -> Path:
        return self.root / "agent.log"

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        printers = "".join(f"\n[[printers]]\n{p}{_PRINTER_COMMON}" for p in self.printers)
        self.config.write_text(f"""[node]
name = "{self.name}"
hub = "{self.proxy.address}"
location = "Testlab"
latitude = 52.5
longitude = 13.4
state_dir = "state"
heartbeat_s = 1
reconnect_max_s = 5
{printers}""", encoding="utf-8")

    def enroll(self, hub: HubProcess) -> None:
        """`spime-hub node add NAME` + `spime-node enroll`."""
        _, token, _ = hub.admin.hub.nodes._thd_add_node(self.name)
        self.write_config()
        done = self.cli("enroll", "--token", token, "--json")
        assert done.returncode == 0, done.stderr

    @property
    def token(self) -> str:
        return (self.root / "state" / "credential").read_text(encoding="utf-8").strip()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "node_agent", *args, "--config", str(self.config)],
                              cwd=ROOT, env=ENV, text=True, capture_output=True, timeout=120, check=False)

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "node_agent", "run", "--config",
                                             str(self.config)], cwd=ROOT, env=ENV, stdout=out, stderr=out)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> int | None:
        """SIGTERM (the agent waits for running prints), kill if it hangs."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def status(self) -> dict[str, Any]:
        done = self.cli("status", "--json")
        return json.loads(done.stdout) if done.returncode == 0 else {}

    def printer(self, name: str) -> dict[str, Any]:
        """One printer of `spime-node status --json` ({} while the daemon does not answer)."""
        return next((p for p in self.status().get("printers", []) if p.get("name") == name), {})

    def local_job(self, job_id: str) -> dict[str, Any]:
        return next((j for j in self.status().get("jobs", []) if j.get("job") == job_id), {})

    def gcode_lines(self, job_id: str, prefix: str) -> int:
        """How many lines of the job's G-code start with prefix (what one print sends)."""
        gcode = self.root / "state" / "jobs" / job_id / "job.gcode"
        return sum(line.startswith(prefix) for line in gcode.read_text(encoding="ascii").splitlines())
