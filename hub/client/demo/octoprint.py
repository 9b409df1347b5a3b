"""A headless OctoPrint with its virtual printer, for the demo's second printer.

The recipe is the project's verified one (an admin user with a known API key, no
first-run wizard, phone-home plugins off, the virtual printer without injected
errors and with a deep command buffer). Start-up is bounded: when OctoPrint is
missing or slow, the demo goes on with the serial printer alone and says why.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from hub.client.demo.processes import Child, Children, StepFailed
from hub.client.embedded import free_port

__all__ = ["OctoPrint", "launch", "octoprint_command", "user_add", "wait_ready"]

USER = "demo"
_DISABLED = ["announcements", "softwareupdate", "tracking", "errortracking", "discovery",
             "achievements", "pluginmanager", "backup", "health_check", "firmware_check"]


@dataclass(frozen=True)
class OctoPrint:
    """A started ``octoprint serve``: where it listens and its API key."""

    url: str
    api_key: str
    child: Child


def octoprint_command() -> str | None:
    """The ``octoprint`` executable of this installation, if there is one."""
    beside = Path(sys.executable).with_name("octoprint")
    return str(beside) if beside.exists() else None


def _settings(api_block: str) -> str:
    # JSON is YAML: the merged settings are written as JSON lines after the original api block.
    doc = {
        "server": {"firstRun": False, "onlineCheck": {"enabled": False},
                   "pluginBlacklist": {"enabled": False}, "seenWizards": {"corewizard": 4}},
        "plugins": {"_disabled": _DISABLED,
                    "virtual_printer": {"enabled": True, "simulated_errors": [],
                                        "commandBuffer": 100000}},
        "serial": {"autoconnect": False, "log": False},
    }
    return api_block + "".join(f"{k}: {json.dumps(v)}\n" for k, v in doc.items())


def user_add(children: Children, basedir: Path) -> Child:
    """Start ``octoprint user add`` (an admin) in ``basedir``; :func:`launch` follows.

    Raises:
        StepFailed: OctoPrint is not installed.
    """
    exe = octoprint_command()
    if exe is None:
        raise StepFailed("the `octoprint` program is not installed beside this Python")
    basedir.mkdir(parents=True, exist_ok=True)
    return children.spawn("octoprint-user-add", [exe, "--basedir", str(basedir), "user", "add",
                                                 "--password", secrets.token_urlsafe(12),
                                                 "--admin", USER])


def _configure(basedir: Path, api_key: str) -> None:
    users = basedir / "users.yaml"
    text = users.read_text(encoding="utf-8") if users.exists() else ""
    if "apikey: null" not in text:
        raise StepFailed("OctoPrint's users.yaml has an unexpected shape (no `apikey: null`)")
    users.write_text(text.replace("apikey: null", f"apikey: {api_key}", 1), encoding="utf-8")
    config = basedir / "config.yaml"
    api_block = config.read_text(encoding="utf-8") if config.exists() else ""
    config.write_text(_settings(api_block if api_block.startswith("api:") else ""),
                      encoding="utf-8")


def launch(children: Children, added: Child, basedir: Path, timeout_s: float) -> OctoPrint:
    """Once ``added`` (:func:`user_add`) ends, configure and start ``octoprint serve``.

    Raises:
        StepFailed: the user could not be added in time or the configuration failed.
    """
    try:
        code = added.process.wait(timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(f"`octoprint user add` took over {timeout_s:.0f} s") from exc
    if code != 0:
        raise StepFailed(f"`octoprint user add` exited {code}: {added.log_tail(5)}")
    exe = str(octoprint_command())
    api_key = secrets.token_hex(16)
    _configure(basedir, api_key)
    port = free_port()
    argv = [exe, "serve", "--basedir", str(basedir), "--host", "127.0.0.1", "--port", str(port)]
    if os.geteuid() == 0:
        argv.append("--iknowwhatimdoing")
    child = children.spawn("octoprint", argv)
    return OctoPrint(f"http://127.0.0.1:{port}", api_key, child)


def _answers(server: OctoPrint) -> bool:
    request = urllib.request.Request(server.url + "/api/version",
                                     headers={"X-Api-Key": server.api_key})
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return False  # not up yet, or up halfway


def wait_ready(server: OctoPrint, deadline_s: float) -> None:
    """Wait until ``/api/version`` answers 200, at most ``deadline_s`` seconds.

    Raises:
        StepFailed: OctoPrint exited or did not answer in time.
    """
    end = time.monotonic() + deadline_s
    while not _answers(server):
        if not server.child.alive():
            raise StepFailed(f"octoprint serve exited with {server.child.process.returncode}")
        if time.monotonic() > end:
            raise StepFailed(f"octoprint serve did not answer within {deadline_s:.0f} s")
        time.sleep(0.2)
