"""The chapters of ``spime demo``: each one drives the real ``spime`` commands (in
process, ``--json``) or ``spime-node``/``spime-hub`` (as subprocesses) and tells
the story on stderr.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.client.common import EXIT_OK, EXIT_REFUSED, log
from hub.client.demo import octoprint as octo
from hub.client.demo import summary
from hub.client.demo.node import (
    NODE,
    OCTO_PRINTER,
    SERIAL_PRINTER,
    Node,
    add_node_command,
    node_config,
    start_simulator,
)
from hub.client.demo.processes import Child, Children, StepFailed, command, wait_for
from hub.client.embedded import EmbeddedHub

__all__ = ["STEPS", "Demo", "chapter", "say", "step_forks", "step_hub", "step_makerspace",
           "step_orders", "step_print", "step_push", "step_ratings", "step_record"]

OCTOPRINT_START_S = 45.0
CLI_DEADLINE_S = 120.0
HUB_START_S = 60.0
QUOTE_WAIT_S = 60.0  # until the agent connected its printers
# An order in any other state may still move (LOST_CONTACT and OUTCOME_UNKNOWN can recover).
FINAL_ORDER_STATES = frozenset({"ORDER_STATE_DELIVERED", "ORDER_STATE_FAILED",
                                "ORDER_STATE_CANCELLED"})
PRINT_DEADLINE_S = 150.0
CUSTOMER = "carol"
# The parametric order: a smaller, thinner shelf bracket than the default.
BRACKET_PARAMS = {"width": "12", "arm_length": "30", "thickness": "3", "holes_per_arm": "1"}


@dataclass
class Demo:
    """State shared by the chapters."""

    hub: EmbeddedHub
    work: Path
    designs: list[Path]
    children: Children
    node: Node
    with_octoprint: bool = True
    enrollment_token: str = ""
    octoprint: octo.OctoPrint | None = None
    skipped: list[str] = field(default_factory=list)
    refused: list[summary.Refusal] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)
    ordered_designs: list[str] = field(default_factory=list)

    def spime(self, user: str, *argv: str, expect: int = EXIT_OK, offline: bool = False,
              token: str = "") -> dict[str, Any]:
        """Run ``spime ARGV --json`` as ``user``; its JSON (or ``{"exit", "stderr"}``).

        Raises:
            StepFailed: the exit code is not ``expect``.
        """
        from hub.client.cli import main

        full = [*argv, "--json"]
        if not offline:
            full += ["--hub", self.hub.address, "--token", token or self.hub.tokens[user]]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(full)
        if code != expect:
            raise StepFailed(f"`spime {' '.join(argv)}` as {user} exited {code}, expected "
                             f"{expect}:\n{err.getvalue().strip()}")
        if code != EXIT_OK:
            return {"exit": code, "stderr": err.getvalue().strip()}
        return dict(json.loads(out.getvalue())) if out.getvalue().strip() else {}

    def design(self, name: str) -> Path:
        """The sample design folder ``name``.

        Raises:
            StepFailed: it is missing.
        """
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


def _user_command(demo: Demo, name: str, role: str) -> list[str]:
    return [*command("spime-hub"), "user", "add", name, "--role", role,
            "--data", str(demo.hub.data), "--json"]


def _accounts(demo: Demo) -> str:
    """Create the accounts and the node, side by side once the database exists."""
    users = {"alice": "designer", "bob": "designer", CUSTOMER: "customer"}
    first = {"user-alice": _user_command(demo, "alice", users.pop("alice"))}
    outs = demo.children.run_all(first, CLI_DEADLINE_S)  # creates and migrates the database
    rest = {f"user-{n}": _user_command(demo, n, r) for n, r in users.items()}
    outs |= demo.children.run_all({**rest, "node-add": add_node_command(demo.hub.data)},
                                  CLI_DEADLINE_S)
    for name, out in outs.items():
        if name.startswith("user-"):
            demo.hub.tokens[name.removeprefix("user-")] = str(json.loads(out)["token"])
    return str(json.loads(outs["node-add"])["enrollment_token"])


def _start_hub(demo: Demo) -> None:
    """``spime-hub serve`` on 127.0.0.1:0; the address it bound comes back in a ready file."""
    ready = demo.work / "hub.ready"
    hub = demo.children.spawn("spime-hub", [*command("spime-hub"), "serve", "--data",
                                            str(demo.hub.data), "--listen", "127.0.0.1:0",
                                            "--ready-file", str(ready)])

    def bound() -> str | None:
        if not hub.alive():
            raise StepFailed(f"spime-hub serve exited {hub.process.returncode}:\n{hub.log_tail()}")
        text = ready.read_text(encoding="utf-8") if ready.exists() else ""
        return text.strip() if text.endswith("\n") else None  # whole, not half written
    demo.hub.address = wait_for("the hub to serve", bound, HUB_START_S, hub.log_tail)


def step_hub(demo: Demo) -> None:
    """Accounts, the node and OctoPrint's admin side by side; then the hub and OctoPrint."""
    chapter("Starting a hub, a makerspace node and its printers")
    octo_dir = demo.work / "octoprint"
    added: Child | None = None
    if not demo.with_octoprint:
        _skip_octoprint(demo, "--no-octoprint was given")
    else:
        try:
            added = octo.user_add(demo.children, octo_dir)
        except StepFailed as exc:
            _skip_octoprint(demo, str(exc))
    token = _accounts(demo)
    _start_hub(demo)
    say(f"spime-hub serving on {demo.hub.address} (SQLite + blobs in {demo.hub.data}); "
        f"accounts alice, bob (designers), {CUSTOMER} (customer); node {NODE} added")
    if added is not None:
        try:
            demo.octoprint = octo.launch(demo.children, added, octo_dir, OCTOPRINT_START_S)
            say(f"octoprint serve starting at {demo.octoprint.url} (virtual printer)")
        except StepFailed as exc:
            _skip_octoprint(demo, str(exc))
    demo.enrollment_token = token


def _skip_octoprint(demo: Demo, why: str) -> None:
    demo.skipped.append(f"{OCTO_PRINTER}: {why}")
    say(f"SKIPPED the OctoPrint printer: {why}; the demo goes on with the serial printer")
    demo.octoprint = None


def step_makerspace(demo: Demo) -> None:
    """Simulated Marlin, OctoPrint ready (or skipped), enroll and run the agent."""
    port = demo.work / "ttyMARLIN"
    start_simulator(demo.children, port)
    say(f"simulated Marlin 2.1 firmware on a pseudo-terminal at {port} (faster than real time)")
    if demo.octoprint is not None:
        try:
            octo.wait_ready(demo.octoprint, OCTOPRINT_START_S)
            say(f"OctoPrint answers at {demo.octoprint.url}")
        except StepFailed as exc:
            demo.children.stop(demo.octoprint.child, 5.0)
            _skip_octoprint(demo, str(exc))
    demo.node.root.mkdir(parents=True, exist_ok=True)
    demo.node.config.write_text(node_config(demo.hub.address, port, demo.octoprint),
                                encoding="utf-8")
    demo.node.enroll(demo.enrollment_token)
    demo.node.run(demo.children)
    printers = [SERIAL_PRINTER] + ([OCTO_PRINTER] if demo.octoprint else [])
    say(f"`spime-node enroll` then `spime-node run`: node {NODE} with printers {', '.join(printers)}")


def step_push(demo: Demo) -> None:
    """Alice registers a signing key and pushes every sample design, signed."""
    chapter("Alice publishes the sample designs (signed pushes)")
    key = str(demo.work / "alice.key")
    gen = demo.spime("alice", "key", "gen", "--key", key, offline=True)
    reg = demo.spime("alice", "key", "register", "--key", key)
    say(f"alice's Ed25519 key {gen['public_key'][:16]}… registered (fingerprint {reg['fingerprint']})")
    for folder in demo.designs:
        doc = demo.spime("alice", "push", str(folder), "--new", "-m", "first release",
                         "--key", key, "--no-progress")
        say(f"pushed {doc['design']:<18} revision {doc['revision_id'][:12]} (signed)")


def step_forks(demo: Demo) -> None:
    """A fork under a compatible licence, and the refused fork of the ND design."""
    chapter("Remix under the licence rules")
    doc = demo.spime("bob", "fork", "shelf-bracket", "--name", "shelf-bracket-gpl", "--license",
                     "GPL-3.0-or-later", "-m", "a GPL fork")
    d = doc["design"]
    say(f"OK      bob forks shelf-bracket (CC-BY-SA-4.0) as {d['slug']} ({d['license']}), "
        f"{len(d['attributions'])} attribution(s) travel with it")
    no = demo.spime("bob", "fork", "cable-clip", "--name", "cable-clip-wide", "-m", "wider",
                    expect=EXIT_REFUSED)
    refusal = summary.parse_refusal("fork", "cable-clip", no["stderr"])
    demo.refused.append(refusal)
    say(f"REFUSED bob forks cable-clip (CC-BY-ND-4.0): {refusal.status}: {refusal.message}")


def _option(quote: dict[str, Any], printer: str) -> dict[str, Any] | None:
    return next((o for o in quote.get("options", []) if o.get("printer") == printer), None)


def _quote(demo: Demo, argv: list[str], printer: str) -> tuple[dict[str, Any], dict[str, Any]]:
    def check() -> tuple[dict[str, Any], dict[str, Any]] | None:
        quote = demo.spime(CUSTOMER, "quote", *argv)
        option = _option(quote, printer)
        return (quote, option) if option else None
    return wait_for(f"a quote from {printer}", check, QUOTE_WAIT_S, _agent_log(demo))


def _agent_log(demo: Demo) -> Callable[[], str]:
    return lambda: demo.node.agent.log_tail() if demo.node.agent else ""


def _quote_for(demo: Demo, design: str, params: dict[str, str],
               printer: str) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    argv = [design, "--material", "PLA", "--near", "52.52,13.40"]
    argv += [f"--param={k}={v}" for k, v in params.items()]
    quote, option = _quote(demo, argv, printer)
    say(f"quote {quote['quote_id']} for {design}: {option['node']}/{option['printer']} "
        f"{summary.amount(option['price']):.2f} {option['price']['currency']}, "
        f"about {int(option['estimated_seconds']) // 60} min, {float(option['filament_g']):.1f} g")
    return argv, quote, option


def _order(demo: Demo, argv: list[str], quote: dict[str, Any], option: dict[str, Any]) -> None:
    design = argv[0]
    order = demo.spime(CUSTOMER, "order", *argv, "--quote", quote["quote_id"], "--option",
                       str(option["option"]), "--key", f"demo-{design}")
    demo.order_ids.append(order["id"])
    demo.ordered_designs.append(design)
    params = order["spec"].get("parameters", {})
    shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "default parameters"
    say(f"{CUSTOMER} ordered {design} ({shown}): order {order['id']}, "
        f"{summary.amount(order['price']):.2f} {order['price']['currency']}")


def step_orders(demo: Demo) -> None:
    """The customer quotes two objects, one parametric, then orders both at once."""
    chapter(f"{CUSTOMER} quotes and orders two objects")
    quotes = [_quote_for(demo, "calibration-cube", {}, SERIAL_PRINTER)]
    try:
        second = _quote_for(demo, "shelf-bracket", BRACKET_PARAMS,
                            OCTO_PRINTER if demo.octoprint else SERIAL_PRINTER)
    except StepFailed:
        if demo.octoprint is None:
            raise
        _skip_octoprint(demo, f"it never became ready to print (see {demo.node.agent_log})")
        second = _quote_for(demo, "shelf-bracket", BRACKET_PARAMS, SERIAL_PRINTER)
    quotes.append(second)
    for argv, quote, option in quotes:  # back to back: each printer gets one while both are free
        _order(demo, argv, quote, option)


def _operate(demo: Demo, obj: dict[str, Any], done: set[str]) -> None:
    job, printer = obj.get("job_id", ""), obj.get("printer", "")
    if obj.get("state") != "printed" or job in done:
        return
    demo.node.cli("outcome", job, "success", "--notes", "confirmed by spime demo")
    demo.node.cli("bed-clear", printer)
    done.add(job)
    say(f"operator step confirmed automatically: `spime-node outcome {job} success` and "
        f"`spime-node bed-clear {printer}`")


def _progress(demo: Demo, seen: dict[str, str]) -> list[dict[str, Any]]:
    orders = [o for o in demo.spime(CUSTOMER, "orders", "--all")["orders"]
              if o["id"] in demo.order_ids]
    for o in orders:
        for obj in o.get("objects", []):
            line = str(obj.get("state", "?"))
            if line == "ready":
                line += " (printability checked, sliced with PrusaSlicer, G-code on the node)"
            if line == "printing":  # a line per quarter of the print, not per poll
                line += f" {int(float(obj.get('progress_percent', 0)) // 25 * 25)} %+"
            key = obj.get("job_id") or o["id"]
            if seen.get(key) != line:
                seen[key] = line
                say(f"{o['spec']['design']:<17} job {key} on {obj.get('printer') or '?'}: {line}")
    return orders


def step_print(demo: Demo) -> None:
    """The node checks, slices and streams; the demo confirms the operator steps."""
    chapter("The node checks printability, slices with PrusaSlicer and prints")
    seen: dict[str, str] = {}
    done: set[str] = set()

    def finished() -> list[dict[str, Any]] | None:
        orders = _progress(demo, seen)
        for o in orders:
            for obj in o.get("objects", []):
                _operate(demo, obj, done)
        final = [o for o in orders if o["state"] in FINAL_ORDER_STATES]
        if demo.node.agent is not None and not demo.node.agent.alive():
            raise StepFailed(f"spime-node run exited:\n{demo.node.agent.log_tail()}")
        return orders if len(final) == len(demo.order_ids) else None

    orders = wait_for("both orders to be final", finished, PRINT_DEADLINE_S, _agent_log(demo))
    bad = [o for o in orders if o["state"] != "ORDER_STATE_DELIVERED"]
    if bad:
        raise StepFailed("orders not delivered: " + ", ".join(
            f"{o['id']} {o['state']} {o.get('failure_reason', '')}" for o in bad))
    say("both orders delivered")


def step_ratings(demo: Demo) -> None:
    """The customer rates each order; the maker (the node) rates each design."""
    chapter("Ratings")
    maker = demo.node.credential()
    for order_id, design in zip(demo.order_ids, demo.ordered_designs, strict=True):
        demo.spime(CUSTOMER, "rate", order_id, "--stars", "5", "--role", "customer",
                   "--criteria", "quality=5,fairness=5", "--comment", "exactly as ordered")
        demo.spime(NODE, "rate", order_id, "--stars", "4", "--role", "maker",
                   "--criteria", "printability=4", "--comment", f"{design} sliced and printed cleanly",
                   token=maker)
        say(f"{CUSTOMER} rated order {order_id} 5/5; the maker {NODE} rated {design} 4/5")


def step_record(demo: Demo) -> None:
    """Print each ordered design's record, the incarnation ids and the ledger."""
    chapter("The community record, the incarnations and the value ledger")
    for design in demo.ordered_designs:
        record = demo.spime(CUSTOMER, "record", design)
        ledger = demo.spime(CUSTOMER, "ledger", design)
        say(f"{design}: {record.get('fabrication_count', 0)} fabrication(s), rated "
            f"{float(record.get('design_reputation', {}).get('score', 0)):.1f}/5")
        for f in record.get("fabrications", []):
            say(f"  incarnation {f.get('incarnation_id')} order {f.get('order_id')} made on "
                f"{f.get('node')}/{f.get('printer')} in {f.get('material')}: {f.get('outcome')}, "
                f"{f.get('actual_seconds', 0)} s (estimated {f.get('estimated_seconds', 0)} s)")
        for row in summary.ledger_rows(ledger.get("entries", []), set(demo.order_ids)):
            say(f"  ledger order {row['order']}: {row['party']:<14} {row['role']:<13} "
                f"{row['amount']:.2f}")


STEPS: list[Callable[[Demo], None]] = [
    step_hub, step_makerspace, step_push, step_forks, step_orders, step_print, step_ratings,
    step_record,
]


def copy_designs(src: list[Path], dest: Path) -> list[Path]:
    """Scratch copies of the sample designs (pushing never touches the originals)."""
    out = []
    for folder in src:
        shutil.copytree(folder, dest / folder.name)
        out.append(dest / folder.name)
    return out
