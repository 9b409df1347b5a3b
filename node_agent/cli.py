"""The ``spime-node`` command line: argument parsing and the print flow.

Subcommands:

* ``spime-node run --config FILE``: the daemon (node_agent.daemon).
* ``spime-node enroll --config FILE --token T``: exchange the one-time enrollment
  token for the node credential, stored 0600 in the state directory.
* ``spime-node status [--json]``, ``bed-clear PRINTER``, ``outcome JOB success|failed
  [--reason R] [--notes N]``, ``printer PRINTER online|offline|maintenance``: talk to
  the running daemon over its control socket (exit 1, saying how to start it, when
  none runs).

* ``spime-node print FILE --printer NAME [--config PATH]`` or
  ``spime-node print FILE --port PORT --baud N`` (``--baud`` optional with ``--simulate``):
  print a local G-code file through the same safety filter, engine and driver the agent uses. Progress
  and temperatures go to stderr; ``--json`` prints one summary document on
  stdout. Ctrl-C cancels safely (end sequence); a second Ctrl-C sends M112.
* ``spime-node simulate --link PATH``: run the simulated Marlin on a pty for
  demos and dry runs (``print --simulate`` does that in-process).

Exit status: 0 the job completed, 1 it did not (refused by the safety filter,
printer unreachable, failed or cancelled), 2 usage or config error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import signal
import stat
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from node_agent import ops_cli
from node_agent.config import ConfigError, PrinterConfig, load_config
from node_agent.drivers.base import DriverError, PrinterDriver, PrinterStatus, PrintOutcome
from node_agent.jobfile import GcodeFileError, SafeJob, check_file
from node_agent.safety import JobRefused, SafetyLimits, limits_for

__all__ = ["PrintTarget", "build_parser", "render_status", "run"]

DEFAULT_CONFIG = "/etc/spimeforge/node.toml"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments, an unreadable file or a bad config (exit status 2)."""


@dataclass(frozen=True, slots=True)
class PrintTarget:
    """Where ``print`` goes: a configured printer, or an ad-hoc serial port."""

    name: str
    printer: PrinterConfig | None = None
    port: str | None = None
    baud: int | None = None
    trace: Callable[[str, str], None] | None = None


class TranscriptWriter:
    """A serial driver ``trace`` hook writing the golden-transcript format.

    ``< line`` received, ``> line`` written, ``= event``, ``! command`` (and
    ``+ line`` for a job's lines): the format tests/node_agent/transcripts.py
    replays byte by byte, so a conversation with a real printer can become a
    regression test.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._partial = ""

    def __call__(self, kind: str, text: str) -> None:
        if kind == "<":
            *lines, self._partial = (self._partial + text).split("\n")
            self._write("<", [line.rstrip("\r") for line in lines])
        elif kind == "!":
            head, *job = text.split("\n")
            self._write("!", [head])
            self._write("+", job)
        else:
            self._write(kind, text.splitlines() if kind == ">" else [text])

    def _write(self, kind: str, lines: list[str]) -> None:
        for line in lines:
            self.out.write(f"{kind} {line}\n")


DriverFactory = Callable[[PrintTarget], PrinterDriver]

# C0 (but newline), DEL, C1 and bidi controls: a hub, a printer's firmware or a file name can
# hold any of them, and none may move the cursor, retitle the window or reorder the text.
# (hub.client.terminal.shown's twin: node_agent must not import hub.)
_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _shown(text: str) -> str:
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                         else f"\\u{ord(m.group()):04x}", text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every ``spime-node`` subcommand."""
    parser = argparse.ArgumentParser(prog="spime-node", description="Spimeforge node agent")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("print", help="print a local G-code file (an operator's test print)")
    p.add_argument("file", help="G-code file")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--printer", help="a printer from the node config")
    where.add_argument("--port", help="ad hoc: a serial port, e.g. /dev/ttyACM0")
    p.add_argument("--baud", type=int, help="ad hoc: baud rate (with --port; --simulate: default 115200)")
    p.add_argument("--config", help=f"node config (default: $SPIME_NODE_CONFIG or {DEFAULT_CONFIG})")
    p.add_argument("--max-hotend", type=float, default=300.0, help="ad hoc limit, °C")
    p.add_argument("--max-bed", type=float, default=120.0, help="ad hoc limit, °C")
    p.add_argument("--build-volume", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="ad hoc: refuse moves outside this volume (mm)")
    p.add_argument("--simulate", action="store_true",
                   help="dry run: print to a simulated Marlin instead of the real port")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--trace", metavar="FILE",
                   help="serial only: record the conversation as a replayable transcript")
    _agent_parsers(sub)
    s = sub.add_parser("simulate", help="run a simulated Marlin printer on a pty (demo)")
    s.add_argument("--link", required=True, help="symlink to create for the port")
    s.add_argument("--baud", type=int, default=None)
    s.add_argument("--latency-ms", type=float, default=None)
    s.add_argument("--advanced-ok", action="store_true")
    ops_cli.add_completion(sub)
    ops_cli.finish_parser(parser)
    return parser


def _agent_parsers(sub: Any) -> None:
    config_help = f"node config (default: $SPIME_NODE_CONFIG or {DEFAULT_CONFIG})"
    r = sub.add_parser("run", help="run the node agent daemon")
    r.add_argument("--config", help=config_help)
    r.add_argument("--metrics-listen", metavar="HOST:PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9465)")
    e = sub.add_parser("enroll", help="exchange an enrollment token for the node credential")
    e.add_argument("--config", help=config_help)
    e.add_argument("--token", required=True, help="the token `spime-hub node add` printed")
    e.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    st = sub.add_parser("status", help="printers, queue and the current job of the daemon")
    st.add_argument("--config", help=config_help)
    st.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    b = sub.add_parser("bed-clear", help="confirm a printer's bed is clear for the next job")
    b.add_argument("printer")
    o = sub.add_parser("outcome", help="how a finished print came out")
    o.add_argument("job")
    o.add_argument("outcome", choices=("success", "failed"))
    o.add_argument("--reason", default="", help="why it failed (max 4000 characters)")
    o.add_argument("--notes", default="", help="operator notes (max 4000 characters)")
    pr = sub.add_parser("printer", help="take a printer online, offline or into maintenance")
    pr.add_argument("printer")
    pr.add_argument("mode", choices=("online", "offline", "maintenance"))
    for p in (b, o, pr):
        p.add_argument("--config", help=config_help)
        p.add_argument("--json", action="store_true", help="print the answer as JSON")


def _config_path(args: argparse.Namespace) -> str:
    return str(args.config or os.environ.get("SPIME_NODE_CONFIG") or DEFAULT_CONFIG)


def _agent_command(args: argparse.Namespace, factory: DriverFactory, stdout: TextIO,
                   stderr: TextIO) -> int:
    try:
        config = load_config(_config_path(args))
    except ConfigError as exc:
        print(_shown(f"spime-node: {exc}"), file=stderr)
        return EXIT_USAGE
    if args.command not in ("run", "enroll"):
        return _ask_daemon(args, config.node.state_dir, config.source, stdout, stderr)
    from node_agent import daemon  # the daemon's imports (gRPC, slicer bridge) are heavy
    from node_agent.hub_client import HubError

    try:
        if args.command == "run":
            return daemon.run_daemon(config, lambda p: factory(PrintTarget(p.name, printer=p)),
                                     stderr, args.metrics_listen)
        if args.command == "enroll":
            node, path = daemon.enroll_node(config, args.token)
            if args.json:
                print(json.dumps({"node": node, "credential": str(path)}), file=stdout)
            else:
                print(_shown(f"enrolled node {node}; credential stored in {path}"), file=stderr)
    except (daemon.DaemonError, HubError) as exc:
        print(_shown(f"spime-node: {exc}"), file=stderr)
        return EXIT_FAILED
    return EXIT_OK


def _control_request(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "status":
        return {"cmd": "status"}
    if args.command == "bed-clear":
        return {"cmd": "bed_clear", "printer": args.printer}
    if args.command == "printer":
        return {"cmd": "printer", "printer": args.printer, "mode": args.mode}
    return {"cmd": "outcome", "job": args.job, "outcome": args.outcome, "reason": args.reason,
            "notes": args.notes}


def _ask_daemon(args: argparse.Namespace, state_dir: Any, source: str, stdout: TextIO,
                stderr: TextIO) -> int:
    from node_agent.control import NoDaemon, RequestTooLarge, control_path, request

    path = control_path(state_dir)
    try:
        answer = request(path, _control_request(args))
    except RequestTooLarge as exc:
        print(f"spime-node: {exc}", file=stderr)
        return EXIT_USAGE
    except (NoDaemon, OSError) as exc:
        print(_shown(f"spime-node: no spime-node daemon is running for this node ({exc}); start "
                     f"it with: spime-node run --config {source}"), file=stderr)
        return EXIT_FAILED
    if not answer.get("ok"):
        print(_shown(f"spime-node: {answer.get('error')}"), file=stderr)
        return EXIT_FAILED
    result = answer["result"]
    try:
        if args.json:
            print(json.dumps(result, sort_keys=True), file=stdout, flush=True)
        elif args.command == "status":
            print(_shown(render_status(result)), file=stdout, flush=True)
        else:
            print(_shown("ok: " + ", ".join(f"{k} {v}" for k, v in result.items())), file=stderr)
    except BrokenPipeError:  # `spime-node status | head -1`: the reader has gone
        _silence(stdout)
        return EXIT_FAILED
    return EXIT_OK


def _silence(stream: TextIO) -> None:
    """Point ``stream``'s descriptor at /dev/null, so that the flush at exit raises no second
    BrokenPipeError (the recipe of Python's documentation, "Note on SIGPIPE")."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a real file (a StringIO in tests): nothing is flushed at exit
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def render_status(status: dict[str, Any]) -> str:
    """``spime-node status`` for people: the node, each printer, then the jobs."""
    hub = "connected" if status["online"] else "not connected"
    lines = [f"node {status['node']}: hub {status['hub']} {hub}"
             + (f", drained by the hub ({status['drained_by_hub']})" if status.get("drained_by_hub")
                else ", draining" if status["draining"] else "")
             + f", {status['outbox']} report(s) not yet acknowledged"]
    for p in status["printers"]:
        temps = " ".join(f"{label} {p[key]:.0f}°C" for label, key in (("T", "hotend_c"),
                                                                       ("B", "bed_c"))
                         if p[key] is not None)
        job = f" job {p['job']} {p['percent']:.1f}%" + (f" layer {p['layer']}" if p["layer"]
                                                          else "") if p["job"] else ""
        bed = "bed clear" if p["bed_clear"] else (
            "part on the bed" if p["phase"] == "printing" else "BED NOT CLEAR (spime-node bed-clear)")
        lines.append(f"  {p['name']} ({p['model']}): {p['phase']}, {p['mode']}, {bed}"
                     f"{job} {temps}".rstrip())
        if p.get("failed_connects"):
            lines.append(f"    connect failed: {p['last_connect_error']} ({p['failed_connects']} attempt(s) failed; "
                         f"next at {p['next_connect_at']})")
    for j in status["jobs"]:
        lines.append(f"  job {j['job']} [{j['state']}] {j['design']} on {j['printer']}"
                     + (f": {j['reason']}" if j["reason"] else ""))
    return "\n".join(lines)


def run(argv: Sequence[str] | None, factory: DriverFactory, *, stdout: TextIO = sys.stdout,
        stderr: TextIO = sys.stderr) -> int:
    """Parse ``argv`` and run the subcommand; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command in ("run", "enroll", "status", "bed-clear", "outcome", "printer"):
        return _agent_command(args, factory, stdout, stderr)
    if args.command == "completion":
        return ops_cli.print_completion(parser, args.shell, stdout)
    if args.command == "simulate":
        from node_agent import testing

        if (args.baud is not None and args.baud < 1200) or (
                args.latency_ms is not None and not 0 <= args.latency_ms <= 10_000):  # also refuses NaN
            print("spime-node simulate: --baud must be 1200 or more and --latency-ms 0 to 10000", file=stderr)
            return 2

        sim_argv = ["--link", args.link]
        sim_argv += ["--baud", str(args.baud)] if args.baud else []
        sim_argv += ["--latency-ms", str(args.latency_ms)] if args.latency_ms is not None else []
        sim_argv += ["--advanced-ok"] if args.advanced_ok else []
        return testing.main(sim_argv)
    try:
        target, limits = _resolve(args)
        _readable(args.file)
    except (UsageError, ConfigError) as exc:
        print(_shown(f"spime-node: {exc}"), file=stderr)
        return EXIT_USAGE
    if not args.trace:
        return _print_file(args, target, limits, factory, stdout, stderr)
    try:
        trace = open(args.trace, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as exc:
        print(_shown(f"spime-node: --trace {args.trace}: {exc.strerror}"), file=stderr)
        return EXIT_USAGE
    with trace:
        target = dataclasses.replace(target, trace=TranscriptWriter(trace))
        return _print_file(args, target, limits, factory, stdout, stderr)


def _resolve(args: argparse.Namespace) -> tuple[PrintTarget, SafetyLimits]:
    if args.printer:
        if args.baud is not None:
            raise UsageError("--baud goes with --port; a configured printer has its own baud")
        path = args.config or os.environ.get("SPIME_NODE_CONFIG") or DEFAULT_CONFIG
        printer = load_config(path).printer(args.printer)
        limits = limits_for(printer)
        return PrintTarget(printer.name, printer=printer), limits
    if args.baud is None and not args.simulate:  # the simulated Marlin talks at any rate (115200 by default)
        raise UsageError("--port needs --baud (e.g. --baud 115200)")
    if args.baud is not None and args.baud < 1200:
        raise UsageError(f"--baud {args.baud} is not a usable baud rate")
    volume = tuple(args.build_volume) if args.build_volume else None
    try:
        limits = SafetyLimits(args.max_hotend, args.max_bed, volume)
    except ValueError as exc:
        raise UsageError(f"{exc} (--max-hotend, --max-bed, --build-volume)") from None
    return PrintTarget("ad-hoc", port=args.port, baud=args.baud), limits


def _readable(path: str) -> None:
    # O_NONBLOCK: opening a FIFO with no writer would hang; only a regular file is a job.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"{path}: not a regular file (a G-code job is a file on disk)")
    finally:
        os.close(fd)


def _print_file(args: argparse.Namespace, target: PrintTarget, limits: SafetyLimits,
                factory: DriverFactory, stdout: TextIO, stderr: TextIO) -> int:
    summary: dict[str, Any] = {"printer": target.name, "file": args.file}
    try:
        job = check_file(args.file, limits)  # streamed: bounded memory for any size
    except GcodeFileError as exc:
        print(_shown(f"spime-node: {exc}"), file=stderr)
        return EXIT_USAGE
    except JobRefused as exc:
        print(_shown(f"spime-node: {exc}"), file=stderr)
        summary.update(outcome="refused", reason=str(exc), lines_sent=0, resends=0, seconds=0.0,
                       violations=[{"line": v.line, "command": v.command, "reason": v.reason}
                                   for v in exc.violations])
        return _finish(summary, args.json, stdout, EXIT_FAILED)
    try:
        driver = factory(target)
    except (ValueError, DriverError) as exc:
        print(_shown(f"spime-node: {exc}"), file=stderr)
        return EXIT_USAGE
    summary.update(asyncio.run(_print(driver, job, stderr)))
    code = EXIT_OK if summary["outcome"] == PrintOutcome.COMPLETED.value else EXIT_FAILED
    return _finish(summary, args.json, stdout, code)


def _finish(summary: dict[str, Any], as_json: bool, stdout: TextIO, code: int) -> int:
    if as_json:
        print(json.dumps(summary, sort_keys=True), file=stdout)
    return code


async def _print(driver: PrinterDriver, job: SafeJob, err: TextIO) -> dict[str, Any]:
    name = job.name
    started = time.monotonic()
    try:
        await driver.connect()
    except DriverError as exc:
        print(_shown(f"spime-node: {exc}"), file=err)
        await driver.close()
        return {"outcome": "unreachable", "reason": str(exc), "lines_sent": 0, "resends": 0,
                "seconds": round(time.monotonic() - started, 3), "retryable": exc.retryable}
    loop = asyncio.get_running_loop()
    interrupts = _Interrupts(driver, err)
    loop.add_signal_handler(signal.SIGINT, interrupts.handle)
    shower = asyncio.create_task(_show_progress(driver, err))
    try:
        result = await driver.print_job(job)
    except DriverError as exc:
        print(_shown(f"\nspime-node: {exc}"), file=err)
        return {"outcome": PrintOutcome.FAILED.value, "reason": str(exc), "lines_sent": 0,
                "resends": 0, "seconds": round(time.monotonic() - started, 3),
                "retryable": exc.retryable}
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        shower.cancel()
        status = driver.status()
        await driver.close()
    print("\r" + _shown(f"{render_progress(status)}\n{name}: {result.outcome.value}"
                        + (f" ({result.reason})" if result.reason else "")), file=err)
    return {"outcome": result.outcome.value, "reason": result.reason,
            "lines_total": status.lines_total, "lines_sent": result.lines_sent,
            "resends": result.resends, "seconds": round(result.seconds, 3),
            "retryable": result.retryable, "firmware": status.firmware, "layer": status.layer}


class _Interrupts:
    """Ctrl-C: first a safe cancel (end sequence), then an emergency stop."""

    def __init__(self, driver: PrinterDriver, err: TextIO) -> None:
        self.driver, self.err, self.count = driver, err, 0
        self.tasks: set[asyncio.Task[None]] = set()

    def handle(self) -> None:
        self.count += 1
        if self.count == 1:
            print("\ncancelling: finishing buffered moves, then the end sequence "
                  "(Ctrl-C again for an emergency stop)", file=self.err)
            self._spawn(self.driver.cancel())
        else:
            print("\nemergency stop (M112)", file=self.err)
            self._spawn(self.driver.emergency_stop())

    def _spawn(self, coro: Any) -> None:
        async def guarded() -> None:
            try:
                await coro
            except DriverError as exc:
                print(_shown(f"spime-node: {exc}"), file=self.err)

        task = asyncio.create_task(guarded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def render_progress(status: PrinterStatus, width: int = 30) -> str:
    """One progress line: bar, percent, lines, layer, temperatures, resends."""
    filled = int(width * status.percent / 100)
    bar = "#" * filled + "." * (width - filled)
    t = status.temperatures
    parts = [f"[{bar}] {status.percent:5.1f}%", f"{status.lines_sent}/{status.lines_total} lines"]
    if status.layer is not None:
        parts.append(f"layer {status.layer}")
    if t.hotend_c is not None:
        parts.append(f"T {t.hotend_c:.0f}/{t.hotend_target_c or 0:.0f}°C")
    if t.bed_c is not None:
        parts.append(f"B {t.bed_c:.0f}/{t.bed_target_c or 0:.0f}°C")
    parts.append(f"resends {status.resends}")
    return "  ".join(parts)


async def _show_progress(driver: PrinterDriver, err: TextIO, every_s: float = 0.25) -> None:
    tty = err.isatty()
    last = 0.0
    async for status in driver.updates():
        now = time.monotonic()
        if now - last < (every_s if tty else 2.0):
            continue
        last = now
        line = render_progress(status)
        print(f"\r{line}" if tty else line, end="" if tty else "\n", file=err, flush=True)
