"""`spime-hub node add|list` and `spime-hub job add|list|requeue|fail|cancel`: admin commands on the store.

They work on the data directory / database directly (like `user add`); a running hub
notices new jobs and commands within one sweep (about a second).

    spime-hub node add NAME [--again] [--json]
    spime-hub node list [--online] [--json]
    spime-hub job add DESIGN[@REV] --material PLA [--param name=value ...] [--node N] [--printer P] [--json]
    spime-hub job list [--state STATE ...] [--json]
    spime-hub job requeue JOB [--json]
    spime-hub job fail JOB [--reason TEXT] [--json]
    spime-hub job cancel JOB [--reason TEXT] [--json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hub.errors import InvalidArgument, NotFound
from hub.jobs import Job, JobSpec, JobState
from hub.manifest import parse_manifest
from hub.scheduler import PrinterRecord
from hub.service.job_changes import check_spec
from hub.service.orders import MATERIALS
from hub.service.quoting import check_parameters
from hub.store.nodes import NodeInfo

if TYPE_CHECKING:
    from hub.__main__ import Composed

__all__ = ["COMMANDS", "job_document", "node_document", "register", "run"]

COMMANDS = ("node", "job")
StoreArgs = Callable[[argparse.ArgumentParser], None]


def register(sub: Any, store_args: StoreArgs) -> None:
    """Add the node and job subcommands to spime-hub's parser."""
    node = sub.add_parser("node", help="manage node agents").add_subparsers(dest="node_command", required=True)
    add = node.add_parser("add", help="create a node account and print its one-time enrollment token (24 h)")
    add.add_argument("name")
    add.add_argument("--again", action="store_true",
                     help="a new enrollment token for an existing node whose credential was lost or leaked: "
                          "its earlier enrollment tokens stop working now and its credential is revoked (a hub "
                          "running elsewhere shuts it out within a minute) until its agent enrolls with the new token")
    _common(add, store_args, '{"node", "enrollment_token", "expires_at"}')
    drain = node.add_parser("drain", help="route no new job to a node; its prints run on and report as ever, "
                                          "and its agent is told within seconds (it says so in `spime-node status`)")
    drain.add_argument("name")
    drain.add_argument("--reason", required=True, help="why, for the node's operator (at most 200 characters)")
    _common(drain, store_args, "the node")
    resume = node.add_parser("resume", help="undo `node drain`: the node takes jobs again from its agent's next "
                                            "session (the hub closes the drained one within seconds)")
    resume.add_argument("name")
    _common(resume, store_args, "the node")
    nlist = node.add_parser("list", help="list the nodes with their printers as the hub last heard of them")
    nlist.add_argument("--online", action="store_true", help="only nodes with a session open now")
    _common(nlist, store_args, "a list of nodes, each with its printers")
    job = sub.add_parser("job", help="manage fabrication jobs").add_subparsers(dest="job_command", required=True)
    jadd = job.add_parser("add", help="queue a job for a design revision (head unless @REV)")
    jadd.add_argument("design", metavar="DESIGN[@REV]")
    jadd.add_argument("--material", required=True, help="e.g. PLA")
    jadd.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a design parameter")
    jadd.add_argument("--node", help="only this node may take it")
    jadd.add_argument("--printer", help="only this printer may take it")
    _common(jadd, store_args, "the job")
    jlist = job.add_parser("list", help="list jobs")
    jlist.add_argument("--state", action="append", default=[], choices=[s.value for s in JobState])
    _common(jlist, store_args, "a list of jobs")
    for name, text in (("requeue", "print again under a new lease epoch (outcome_unknown or failed jobs)"),
                       ("fail", "declare the job failed"), ("cancel", "cancel the job")):
        p = job.add_parser(name, help=text)
        p.add_argument("job")
        if name != "requeue":
            p.add_argument("--reason", default="", help="why (kept on the job and its fabrication)")
        _common(p, store_args, "the job")


def _common(p: argparse.ArgumentParser, store_args: StoreArgs, what: str) -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON")
    store_args(p)


def job_document(job: Job) -> dict[str, Any]:
    """A job as one JSON object."""
    return {
        "id": job.id, "design": job.design, "revision_id": job.revision_id, "material": job.material,
        "parameters": dict(job.parameters), "order_id": job.order_id, "state": job.state.value, "node": job.node,
        "printer": job.printer, "lease_epoch": job.lease_epoch, "progress_percent": job.progress_percent,
        "estimated_seconds": job.estimated_seconds, "failure_reason": job.failure_reason,
        "created_at": job.created_at, "updated_at": job.updated_at,
    }


def node_document(node: NodeInfo, printers: Sequence[PrinterRecord]) -> dict[str, Any]:
    """What `spime-hub node list --json` says of one node."""
    return {
        "node": node.name, "online": node.online, "last_seen": node.last_seen, "location": node.location,
        "latitude": node.latitude, "longitude": node.longitude, "session_epoch": node.session_epoch,
        "drained": node.drained,
        "printers": [{"printer": p.printer, "model": p.model, "phase": p.phase, "materials": list(p.materials),
                      "bed_clear": p.bed_clear, "accepting": p.accepting} for p in printers],
    }


def _node_list(composed: Composed, online_only: bool) -> tuple[Any, str]:
    printers: dict[str, list[PrinterRecord]] = {}
    for p in composed.store.nodes._thd_printers():
        printers.setdefault(p.node, []).append(p)
    docs, lines = [], []
    for node in composed.store.nodes._thd_nodes(online_only):
        own = sorted(printers.get(node.name, []), key=lambda p: p.printer)
        held = ", ".join(f"{p.printer} ({p.model}, {p.phase}, {'/'.join(p.materials) or 'no material'}"
                         f"{'' if p.bed_clear else ', bed not clear'}{'' if p.accepting else ', not accepting'})"
                         for p in own)
        drained = f"  DRAINED ({node.drained})" if node.drained else ""
        lines.append(f"{node.name}  {'online ' if node.online else 'offline'}{drained}  last seen "
                     f"{node.last_seen or 'never'}  {node.location or '-'}  {held or 'no printers'}")
        docs.append(node_document(node, own))
    return docs, "\n".join(lines) or "no nodes: add one with `spime-hub node add NAME`"


def _params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidArgument(f"--param {item!r} must be NAME=VALUE")
        params[name] = value
    return params


def _job_spec(args: argparse.Namespace, composed: Composed) -> JobSpec:
    """What `job add` asks for, checked as a quote checks an order's: the material known, the
    parameters within the design's OpenSCAD customizer schema, the node and printer existing
    (a job no node can take would sit queued for ever; one it cannot render would fail there).

    Raises:
        NotFound: no such design, revision, node or printer.
        InvalidArgument: a malformed field, an unknown material, a parameter the design does not
            have or a value out of its range.
    """
    slug, _, rev = args.design.partition("@")
    revision = composed.store.designs._thd_get_revision(slug, rev)
    spec = check_spec(JobSpec(slug, revision.id, args.material.upper(), _params(args.param),
                              node=args.node, printer=args.printer))
    if spec.material not in MATERIALS:
        raise InvalidArgument(f"unknown material {args.material!r:.40}: use one of {', '.join(MATERIALS)}")
    manifest = parse_manifest(revision.manifest_toml)
    scad = next((f for f in revision.files if manifest.openscad and f.path == manifest.openscad.source), None)
    source = composed.store.blobs.path(scad.sha256).read_text(encoding="utf-8", errors="replace") if scad else None
    check_parameters(manifest, source, spec.parameters)
    _check_target(composed, spec.node, spec.printer)
    return spec


def _check_target(composed: Composed, node: str | None, printer: str | None) -> None:
    """Raises: NotFound: the node, or a printer of that name (on that node), is unknown to the hub."""
    if node is not None:
        composed.store.nodes._thd_node(node)
    if printer is None:
        return
    known = [p for p in composed.store.nodes._thd_printers() if node is None or p.node == node]
    if not any(p.printer == printer for p in known):
        where = f"node {node!r}" if node is not None else "any node"
        raise NotFound(f"no printer named {printer!r} on {where} (printers are known once their node's agent "
                       "has connected: see `spime-hub node list`)")


def run(args: argparse.Namespace, open_hub: Callable[[], Composed]) -> None:
    """Run a node/job subcommand and print its result.

    Raises:
        HubError: the store refused (bad name, unknown design or job, illegal transition).
    """
    composed = open_hub()
    try:
        doc, text = _dispatch(args, composed)
    finally:
        composed.close()
    print(json.dumps(doc) if args.json else text)


def _dispatch(args: argparse.Namespace, composed: Composed) -> tuple[Any, str]:
    hub = composed.hub
    if args.command == "node" and args.node_command == "list":
        return _node_list(composed, args.online)
    if args.command == "node" and args.node_command in ("drain", "resume"):
        info = (hub.nodes._thd_drain_node(args.name, args.reason) if args.node_command == "drain"
                else hub.nodes._thd_resume_node(args.name))
        doc = {"node": info.name, "drained": info.drained, "online": info.online}
        if info.drained:
            return doc, f"{info.name} drained: no new jobs go to it; its prints run on (`spime-hub node resume` undoes it)"
        return doc, f"{info.name} resumed: it takes jobs again from its agent's next session"
    if args.command == "node":
        name, token, expires = hub.nodes._thd_add_node(args.name, again=args.again)
        return {"node": name, "enrollment_token": token, "expires_at": expires}, token
    if args.job_command == "list":
        jobs = hub.jobs._thd_list_jobs([JobState(s) for s in args.state])
        lines = [f"{j.id}  {j.state.value:<15} {j.design}@{j.revision_id[:12]}  {j.material}  {j.node or '-'}"
                 for j in jobs]
        return [job_document(j) for j in jobs], "\n".join(lines) or "no jobs"
    if args.job_command == "add":
        job = hub.jobs._thd_create_job(_job_spec(args, composed), "admin")
    elif args.job_command == "requeue":
        job = hub.jobs._thd_requeue(args.job)
    elif args.job_command == "fail":
        job = hub.jobs._thd_fail(args.job, args.reason)
    else:
        job = hub.jobs._thd_cancel_job(args.job, args.reason)
    return job_document(job), f"{job.id} {job.state.value}"
