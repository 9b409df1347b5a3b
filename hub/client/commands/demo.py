"""``spime demo``: a hub, a makerspace node with two printers, and the whole story.

It starts ``spime-hub serve`` (SQLite + a local blob directory in a temporary or
``--data`` directory), a simulated Marlin on a pty, an OctoPrint with its virtual
printer and ``spime-node run``; then runs the chapters of
:mod:`hub.client.demo.story`. Every process it started is stopped on the way out,
also on Ctrl-C, SIGTERM and failure. ``--json`` prints one summary built from
what the hub recorded.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
from pathlib import Path

from hub.client.common import (
    EXIT_OK,
    EXIT_REFUSED,
    ClientError,
    UsageError,
    add_json_option,
    emit,
    log,
)
from hub.client.demo import summary
from hub.client.demo.node import Node
from hub.client.demo.processes import Children, interrupts_raise
from hub.client.demo.story import CUSTOMER, STEPS, Demo, chapter, copy_designs
from hub.client.embedded import EmbeddedHub

__all__ = ["EXIT_INTERRUPTED", "register", "run"]

EXIT_INTERRUPTED = 130
STOP_GRACE_S = 10.0  # the agent lets a running print end; after that it is killed
_REPO_DESIGNS = Path(__file__).resolve().parents[3] / "designs"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime demo``."""
    p = subparsers.add_parser("demo", help="run the whole story: hub, node, printers, orders")
    p.add_argument("--designs", type=Path, default=None,
                   help="folder of sample designs (default: the repository's designs/)")
    p.add_argument("--data", type=Path, default=None,
                   help="empty or new directory for everything (default: a temporary one, removed)")
    p.add_argument("--no-octoprint", action="store_true",
                   help="leave out the OctoPrint printer (the serial one prints both orders)")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the whole demo; stop every process it started, whatever happens."""
    designs = _find_designs(args.designs)
    work = _work_dir(args.data)
    children = Children(logs=work / "logs")
    children.logs.mkdir(parents=True, exist_ok=True)
    hub = EmbeddedHub(data=work / "hub")
    hub.data.mkdir(parents=True, exist_ok=True)
    demo = Demo(hub=hub, work=work, designs=copy_designs(designs, work / "designs"),
                children=children, node=Node(root=work / "node"),
                with_octoprint=not args.no_octoprint)
    code = EXIT_REFUSED
    try:
        with interrupts_raise():
            for step in STEPS:
                step(demo)
            doc = _summary(demo)
            code = EXIT_OK
    except ClientError as exc:
        log(f"\nspime demo: FAILED: {exc}\n(logs in {children.logs})" if args.data
            else f"\nspime demo: FAILED: {exc}")
    except (OSError, ValueError, KeyError) as exc:  # a broken answer or file: still clean up
        log(f"\nspime demo: FAILED unexpectedly: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        log("\nspime demo: interrupted; stopping everything it started")
        code = EXIT_INTERRUPTED
    finally:
        _cleanup(demo, keep=args.data is not None)
    if code == EXIT_OK:
        chapter("Done: every process stopped" + (f"; data kept in {work}" if args.data else ""))
        emit(args, doc, lambda d: "")
    return code


def _cleanup(demo: Demo, keep: bool) -> None:
    # A second Ctrl-C must not cut the clean-up short and leave processes behind.
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        demo.children.stop_all(grace_s=STOP_GRACE_S)
        demo.hub.stop()
        if not keep:
            shutil.rmtree(demo.work, ignore_errors=True)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _summary(demo: Demo) -> dict[str, object]:
    found = demo.spime(CUSTOMER, "search", "--limit", "100")
    names = [str(d.get("slug") or d.get("name")) for d in found.get("designs", [])]
    orders = [o for o in demo.spime(CUSTOMER, "orders", "--all")["orders"] if o["id"] in demo.order_ids]
    records = {d: demo.spime(CUSTOMER, "record", d) for d in demo.ordered_designs}
    ledgers = {d: demo.spime(CUSTOMER, "ledger", d) for d in demo.ordered_designs}
    return summary.build(names, demo.refused, orders, records, ledgers, demo.skipped)


def _work_dir(explicit: Path | None) -> Path:
    if explicit is None:
        return Path(tempfile.mkdtemp(prefix="spime-demo-"))
    if explicit.exists() and any(explicit.iterdir()):
        raise UsageError(f"--data {explicit} is not empty; give a new or empty directory")
    explicit.mkdir(parents=True, exist_ok=True)
    return explicit.resolve()


def _find_designs(explicit: Path | None) -> list[Path]:
    root = explicit or next((p for p in (_REPO_DESIGNS, Path.cwd() / "designs") if p.is_dir()),
                            _REPO_DESIGNS)
    found = sorted(p for p in root.iterdir() if (p / "spime.toml").is_file()) \
        if root.is_dir() else []
    if not found:
        raise UsageError(f"no designs found in {root}; pass --designs DIR")
    return found
