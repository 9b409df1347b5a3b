"""``spime demo``: the whole design-commons story against an embedded hub.

It starts its own ``spime-hub`` on a free 127.0.0.1 port with a temporary data
directory, creates accounts, and then runs :data:`STEPS` in order, each one a
chapter of the story told on stderr. Every step drives the real ``spime``
commands (in process, with ``--json``) so the demo exercises exactly what a
user runs. Later issues append steps (orders, printing) to :data:`STEPS`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.client.common import (
    EXIT_OK,
    EXIT_REFUSED,
    ClientError,
    UsageError,
    add_json_option,
    emit,
    log,
)
from hub.client.embedded import EmbeddedHub

__all__ = [
    "STEPS",
    "Demo",
    "StepFailed",
    "chapter",
    "register",
    "run",
    "say",
    "step_proposal",
    "step_push_designs",
    "step_remix",
    "step_second_revision",
    "step_verify_export",
]

_REPO_DESIGNS = Path(__file__).resolve().parents[3] / "designs"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime demo``."""
    p = subparsers.add_parser("demo", help="run the whole story against an embedded hub")
    p.add_argument("--designs", type=Path, default=None,
                   help="folder of sample designs (default: the repository's designs/)")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    add_json_option(p)
    p.set_defaults(func=run)


class StepFailed(ClientError):
    """A demo step did not get the outcome the story expects."""


@dataclass
class Demo:
    """State shared by the demo's steps.

    Attributes:
        hub: the embedded hub.
        work: scratch directory for design copies, keys and exports.
        designs: the sample design folders.
        summary: the JSON summary printed with ``--json``, filled by the steps.
    """

    hub: EmbeddedHub
    work: Path
    designs: list[Path]
    summary: dict[str, Any] = field(default_factory=dict)

    def spime(self, user: str, *argv: str, expect: int = EXIT_OK,
              offline: bool = False) -> dict[str, Any]:
        """Run ``spime ARGV --json`` as ``user``; return its JSON (or the refusal text).

        Raises:
            StepFailed: the exit code is not ``expect``.
        """
        from hub.client.cli import main

        full = [*argv, "--json"]
        if not offline:
            full += ["--hub", self.hub.address, "--token", self.hub.tokens[user]]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(full)
        if code != expect:
            raise StepFailed(f"`spime {' '.join(argv)}` as {user} exited {code}, expected "
                             f"{expect}:\n{err.getvalue().strip()}")
        if code != EXIT_OK:
            return {"exit": code, "stderr": err.getvalue().strip()}
        return dict(json.loads(out.getvalue())) if out.getvalue().strip() else {}

    def copy_design(self, name: str, as_name: str = "") -> Path:
        """A scratch copy of a sample design."""
        target = self.work / "copies" / (as_name or name)
        shutil.copytree(self._design(name), target)
        return target

    def _design(self, name: str) -> Path:
        for d in self.designs:
            if d.name == name:
                return d
        raise StepFailed(f"the sample design {name!r} is missing from designs/")


def say(text: str) -> None:
    """Tell the story on stderr."""
    log(f"  {text}")


def chapter(title: str) -> None:
    """Start a chapter of the story."""
    log(f"\n== {title}")


def step_push_designs(demo: Demo) -> None:
    """Alice makes a signing key and pushes every sample design."""
    chapter("Alice publishes the sample designs (signed pushes)")
    key = demo.spime("alice", "key", "gen", "--key", str(demo.work / "alice.key"), offline=True)
    reg = demo.spime("alice", "key", "register", "--key", str(demo.work / "alice.key"))
    say(f"alice's Ed25519 public key {key['public_key'][:16]}… registered with the hub "
        f"(fingerprint {reg['fingerprint']})")
    pushed = []
    for folder in demo.designs:
        doc = demo.spime("alice", "push", str(folder), "--new", "-m", "first release",
                         "--key", str(demo.work / "alice.key"), "--no-progress")
        say(f"pushed {doc['design']:<18} revision {doc['revision_id'][:12]} "
            f"({doc['blobs_uploaded']} blobs, {doc['bytes_uploaded']} bytes, signed)")
        pushed.append({"design": doc["design"], "revision_id": doc["revision_id"]})
    demo.summary["pushed"] = pushed


def step_second_revision(demo: Demo) -> None:
    """Alice pushes a second revision, then re-pushes it unchanged."""
    chapter("A second revision, then an unchanged re-push")
    folder = demo.copy_design("shelf-bracket")
    manifest = folder / "spime.toml"
    manifest.write_text(manifest.read_text().replace('version = "1.0.0"', 'version = "1.1.0"'))
    scad = folder / "shelf-bracket.scad"
    scad.write_text(scad.read_text().replace("thickness = 4; ", "thickness = 5; "))
    key = str(demo.work / "alice.key")
    doc = demo.spime("alice", "push", str(folder), "-m", "thicker arms by default",
                     "--key", key, "--no-progress")
    say(f"shelf-bracket revision 2: {doc['revision_id'][:12]}, only the changed files sent "
        f"({doc['blobs_uploaded']} blob(s), {doc['bytes_uploaded']} bytes)")
    again = demo.spime("alice", "push", str(folder), "-m", "same again", "--key", key,
                       "--no-progress")
    say(f"re-push unchanged: unchanged={again['unchanged']}, {again['bytes_uploaded']} bytes sent")
    if not again["unchanged"] or again["bytes_uploaded"]:
        raise StepFailed("an unchanged re-push created something or sent bytes")
    demo.summary["second_revision"] = doc["revision_id"]


def step_proposal(demo: Demo) -> None:
    """Bob (not a maintainer) proposes a change; Alice accepts it."""
    chapter("Governance: Bob's push becomes a proposal, Alice accepts it")
    folder = demo.copy_design("calibration-cube", "cube-bob")
    manifest = folder / "spime.toml"
    manifest.write_text(manifest.read_text().replace(
        'contributors = ["Spimeforge developers"]', 'contributors = ["Spimeforge developers", "bob"]'))
    doc = demo.spime("bob", "push", str(folder), "-m", "credit the tester", "--no-progress")
    if not doc["is_proposal"]:
        raise StepFailed("a non-maintainer's push moved the head")
    say(f"bob's push became proposal {doc['proposal_id']} (the head did not move)")
    listed = demo.spime("alice", "proposals", "calibration-cube")
    say(f"alice sees {len(listed['proposals'])} open proposal(s)")
    accepted = demo.spime("alice", "accept", "calibration-cube", doc["proposal_id"])
    say(f"alice accepted it: head is now {accepted['design']['head_revision_id'][:12]}")
    demo.summary["proposal"] = {"id": doc["proposal_id"],
                                "state": accepted["proposal"]["state"]}


def step_remix(demo: Demo) -> None:
    """Forks and remixes under the license rules, including refusals."""
    chapter("Remix under the license rules")
    results = []
    cases = [
        ("fork a BY-SA design under GPL-3.0-or-later (one-way compatible)",
         ["shelf-bracket", "--name", "shelf-bracket-gpl", "--license", "GPL-3.0-or-later"], 0),
        ("remix CC0 cube + BY-SA bracket under CC-BY-SA-4.0",
         ["calibration-cube", "shelf-bracket", "--name", "bracket-with-cube",
          "--license", "CC-BY-SA-4.0"], 0),
        ("fork the ND cable clip", ["cable-clip", "--name", "cable-clip-wide"], EXIT_REFUSED),
        ("remix BY-SA bracket + CERN-OHL-S box (no common license)",
         ["shelf-bracket", "box-with-lid", "--name", "bracket-box",
          "--license", "CC-BY-SA-4.0"], EXIT_REFUSED),
    ]
    for what, argv, expect in cases:
        doc = demo.spime("bob", "fork", *argv, "-m", what, expect=expect)
        if expect == EXIT_OK:
            d = doc["design"]
            say(f"OK   {what}: {d['slug']} ({d['license']}), "
                f"{len(d['attributions'])} attribution(s) travel with it")
        else:
            reason = doc["stderr"].splitlines()[0].removeprefix("spime: hub refused: ")
            say(f"REFUSED {what}: {reason}")
        results.append({"case": what, "ok": expect == EXIT_OK, "detail": doc.get("stderr", "")})
    demo.summary["remix"] = results


def step_verify_export(demo: Demo) -> None:
    """Verify the chain online and offline, and export PROV-JSON and OKH."""
    chapter("Provenance: verify the chain, export bundle, PROV-JSON and OKH")
    online = demo.spime("alice", "verify", "shelf-bracket")
    say(f"online verify: {online['revisions']} revision(s), {online['files_checked']} file(s), "
        f"{len(online['signed'])} signed: OK")
    bundle = demo.work / "exports" / "shelf-bracket.bundle"
    demo.spime("alice", "export", "shelf-bracket", "--format", "bundle", "-o", str(bundle))
    hub_key = demo.spime("alice", "key", "hub")["public_key"]
    offline = demo.spime("alice", "verify", "--bundle", str(bundle), "--hub-key", hub_key, offline=True)
    say(f"offline verify of the exported bundle against the pinned hub key {hub_key[:16]}…: "
        f"OK ({offline['files_checked']} files, {len(offline['signed'])} signed by alice's registered key)")
    exports = {}
    for fmt, name in (("prov", "bracket-with-cube.prov.json"), ("okh", "shelf-bracket.okh.toml")):
        design = "bracket-with-cube" if fmt == "prov" else "shelf-bracket"
        doc = demo.spime("alice", "export", design, "--format", fmt,
                         "-o", str(demo.work / "exports" / name))
        exports[fmt] = doc["output"]
        say(f"{fmt} export of {design}: {doc['bytes']} bytes ({doc['media_type']})")
    demo.summary["verify"] = {"online": online["ok"], "offline": offline["ok"]}
    demo.summary["exports"] = exports


STEPS: list[Callable[[Demo], None]] = [
    step_push_designs, step_second_revision, step_proposal, step_remix, step_verify_export,
]


def run(args: argparse.Namespace) -> int:
    """Start the hub, run every step, stop the hub."""
    designs = _find_designs(args.designs)
    work = Path(tempfile.mkdtemp(prefix="spime-demo-"))
    hub = EmbeddedHub(data=work / "hub")
    hub.data.mkdir()
    demo = Demo(hub=hub, work=work, designs=designs)
    try:
        _setup(hub)
        for step in STEPS:
            step(demo)
    except ClientError as exc:
        log(f"\nspime demo: FAILED: {exc}")
        log(hub.log_tail())
        return EXIT_REFUSED
    finally:
        hub.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    chapter("Done: the hub stopped" + (f"; data kept in {work}" if args.keep else ""))
    emit(args, {"ok": True, "hub": hub.address, **demo.summary}, lambda d: "")
    return EXIT_OK


def _setup(hub: EmbeddedHub) -> None:
    chapter("Starting an embedded hub")
    for name, role in (("alice", "designer"), ("bob", "designer")):
        hub.add_user(name, role)
    hub.start()
    say(f"spime-hub serving on {hub.address} (data in {hub.data}); accounts alice, bob")


def _find_designs(explicit: Path | None) -> list[Path]:
    root = explicit or next((p for p in (_REPO_DESIGNS, Path.cwd() / "designs") if p.is_dir()),
                            _REPO_DESIGNS)
    found = sorted(p for p in root.iterdir() if (p / "spime.toml").is_file()) \
        if root.is_dir() else []
    if not found:
        raise UsageError(f"no designs found in {root}; pass --designs DIR")
    return found
