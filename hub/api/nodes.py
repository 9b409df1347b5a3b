"""The Nodes servicer: Enroll, the agent's Session stream, artifacts. Thin: protos <-> domain here.

Refusals on the Session stream end it with the error's status (PERMISSION_DENIED for
another node's job, INVALID_ARGUMENT for malformed messages, NOT_FOUND for an
unknown job); a refused JobEvent is recorded and acked first, so the agent's
outbox moves past it and a reconnect does not repeat the refusal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from google.protobuf import timestamp_pb2
from grpc import aio
from spimeforge.v1 import common_pb2, nodes_pb2, nodes_pb2_grpc

from hub.api.interceptors import current_account
from hub.auth import bearer_token
from hub.domain import Attribution
from hub.errors import HubError, InvalidArgument, ResourceExhausted
from hub.jobs import Command
from hub.limits import MAX_PRINTERS, check_plain_text
from hub.scheduler import PrinterRecord
from hub.service import Hub
from hub.service.blobs import Chunk
from hub.service.jobs import HeldJob, Progress
from hub.service.nodes import (
    Ack,
    Drain,
    EventAck,
    Heartbeat,
    Hello,
    Incoming,
    OfferDetails,
    OfferReply,
    Outgoing,
    PrinterChanged,
    StartRequest,
    Superseded,
    Welcome,
)
from hub.service.nodes import (
    Session as AgentSession,
)
from hub.store.accounts import token_digest
from hub.store.jobs import EventRecord

__all__ = ["MAX_PUT_BYTES", "NodesServicer"]

MAX_PUT_BYTES = 64 * 1024 * 1024
MAX_COLOR_CHARS = 64  # nodes.loaded_color is VARCHAR(64)
MAX_PRINTER_ID_CHARS = 64

_PHASES = {
    nodes_pb2.PRINTER_PHASE_IDLE: "idle", nodes_pb2.PRINTER_PHASE_PRINTING: "printing",
    nodes_pb2.PRINTER_PHASE_PAUSED: "paused", nodes_pb2.PRINTER_PHASE_ERROR: "error",
    nodes_pb2.PRINTER_PHASE_MAINTENANCE: "maintenance", nodes_pb2.PRINTER_PHASE_OFFLINE: "offline",
}
_LOCAL = {
    nodes_pb2.JOB_LOCAL_STATE_PREPARING: "preparing", nodes_pb2.JOB_LOCAL_STATE_READY: "ready",
    nodes_pb2.JOB_LOCAL_STATE_PRINTING: "printing", nodes_pb2.JOB_LOCAL_STATE_PAUSED: "paused",
    nodes_pb2.JOB_LOCAL_STATE_FINISHED_AWAITING_BED_CLEAR: "finished", nodes_pb2.JOB_LOCAL_STATE_DONE: "done",
    nodes_pb2.JOB_LOCAL_STATE_FAILED: "failed", nodes_pb2.JOB_LOCAL_STATE_CANCELLED: "cancelled",
    nodes_pb2.JOB_LOCAL_STATE_INTERRUPTED: "interrupted",
}
_KINDS = {
    nodes_pb2.EVENT_KIND_DOWNLOADED: "downloaded", nodes_pb2.EVENT_KIND_PRINTABILITY_OK: "printability_ok",
    nodes_pb2.EVENT_KIND_PRINTABILITY_FAILED: "printability_failed", nodes_pb2.EVENT_KIND_SLICED: "sliced",
    nodes_pb2.EVENT_KIND_STARTED: "started", nodes_pb2.EVENT_KIND_PROGRESS: "progress",
    nodes_pb2.EVENT_KIND_PAUSED: "paused", nodes_pb2.EVENT_KIND_RESUMED: "resumed",
    nodes_pb2.EVENT_KIND_FAILED: "failed", nodes_pb2.EVENT_KIND_COMPLETED: "completed",
    nodes_pb2.EVENT_KIND_BED_CLEARED: "bed_cleared", nodes_pb2.EVENT_KIND_CANCELLED: "cancelled",
    nodes_pb2.EVENT_KIND_INTERRUPTED: "interrupted", nodes_pb2.EVENT_KIND_OUTCOME: "outcome",
}
_DESIRED = {"run": nodes_pb2.DESIRED_RUN, "hold": nodes_pb2.DESIRED_HOLD, "cancel": nodes_pb2.DESIRED_CANCEL,
            "forget": nodes_pb2.DESIRED_FORGET}
_DECLINES = {v: k for k, v in nodes_pb2.DeclineReason.items()}


def _enum(names: Mapping[Any, str], number: int, field: str, unspecified: str) -> str:
    """The name of an enum number; UNSPECIFIED (0) is ``unspecified``.

    Raises:
        InvalidArgument: a number the enum does not have (an agent newer than the hub, or a broken one).
    """
    if number == 0:
        return unspecified
    name = names.get(number)
    if name is None:
        raise InvalidArgument(f"{field} {number} is none of the values this hub knows "
                              f"({', '.join(f'{k} {v}' for k, v in sorted(names.items()))})", field=field)
    return name


def _printer_from_proto(p: nodes_pb2.PrinterState) -> PrinterRecord:
    check_plain_text(p.loaded_color, "PrinterState.loaded_color", MAX_COLOR_CHARS)
    return PrinterRecord(
        node="", printer=p.printer_id, model=p.model,
        build_volume_mm=(p.build_volume_mm.x, p.build_volume_mm.y, p.build_volume_mm.z),
        nozzle_mm=p.nozzle_diameter_mm, materials=tuple(p.materials),
        phase=_enum(_PHASES, p.phase, "PrinterState.phase", "offline"),
        bed_clear=p.bed_clear, accepting=p.accepting, online=True,
        rate_per_hour=(p.rate_per_hour.currency, int(p.rate_per_hour.minor_units)),
        rate_per_gram=(p.rate_per_gram.currency, int(p.rate_per_gram.minor_units)),
        slicer_profile=p.slicer_profile,
    )


def _held_from_proto(j: nodes_pb2.HeldJob) -> HeldJob:
    check_plain_text(j.printer_id, "HeldJob.printer_id", MAX_PRINTER_ID_CHARS)
    return HeldJob(j.job_id, int(j.lease_epoch), _enum(_LOCAL, j.state, "HeldJob.state", "unknown"), j.printer_id)


def _hello_from_proto(h: nodes_pb2.Hello) -> Hello:
    held = tuple(_held_from_proto(j) for j in h.jobs)
    has_place = h.latitude != 0 or h.longitude != 0
    return Hello(h.agent_id, h.agent_version, int(h.last_hub_seq_applied),
                 tuple(_printer_from_proto(p) for p in h.printers), held, h.location,
                 h.latitude if has_place else None, h.longitude if has_place else None)


_LAST_RFC3339_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z


def _time_text(ts: timestamp_pb2.Timestamp) -> str:
    """RFC 3339 text of a timestamp ("" when unset). Past the year 9999 (RFC 3339's last) it is the bare
    seconds, which the event's check refuses as the event's own fault: recorded and acknowledged, so
    the agent's outbox moves on instead of sending it again on every reconnect."""
    if ts.seconds <= 0:
        return ""
    if ts.seconds > _LAST_RFC3339_SECOND:
        return str(ts.seconds)
    return dt.datetime.fromtimestamp(ts.seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")



class _Printers:
    """One session's printer conversions, by the PrinterState's bytes: an agent heartbeats the same
    printers every interval, and converting them again is most of a heartbeat's cost."""

    __slots__ = ("_known",)
    _KEPT = 2 * MAX_PRINTERS

    def __init__(self) -> None:
        self._known: dict[bytes, PrinterRecord] = {}

    def __call__(self, p: nodes_pb2.PrinterState) -> PrinterRecord:
        key = p.SerializeToString(deterministic=True)
        record = self._known.get(key)
        if record is None:
            if len(self._known) >= self._KEPT:
                self._known.clear()
            record = self._known[key] = _printer_from_proto(p)
        return record


def _now_text(clock: Callable[[], dt.datetime]) -> str:
    return clock().strftime("%Y-%m-%dT%H:%M:%SZ")


def _incoming(msg: nodes_pb2.AgentMsg, node: str, clock: Callable[[], dt.datetime],
              printer: Callable[[nodes_pb2.PrinterState], PrinterRecord] = _printer_from_proto) -> Incoming:
    kind = msg.WhichOneof("kind")
    if kind == "heartbeat":
        progress = tuple(Progress(p.job_id, int(p.lease_epoch), p.percent, int(p.layer)) for p in msg.heartbeat.progress)
        return Heartbeat(tuple(printer(p) for p in msg.heartbeat.printers), progress)
    if kind == "offer_reply":
        r = msg.offer_reply
        reason = f"{_DECLINES.get(r.reason, 'unspecified')}: {r.detail}"[:1024]
        return OfferReply(r.offer_id, r.accept, reason, int(r.est_print_seconds))
    if kind == "start_request":
        s = msg.start_request
        return StartRequest(s.job_id, int(s.lease_epoch), s.printer_id)
    if kind == "job_event":
        e = msg.job_event
        return EventRecord(node, int(e.agent_seq), e.job_id, int(e.lease_epoch), _KINDS.get(e.kind, "unspecified"),
                           _time_text(e.at) or _now_text(clock), dict(e.data))
    if kind == "ack":
        return Ack(int(msg.ack.hub_seq))
    if kind == "printer_changed":
        return PrinterChanged(printer(msg.printer_changed.printer))
    raise InvalidArgument("a Session message must set one of its kinds (a second Hello is not allowed)")


def _attribution(a: Attribution) -> common_pb2.Attribution:
    return common_pb2.Attribution(design=a.design, revision_id=a.revision_id, title=a.title, license=a.license,
                                  licensor=a.licensor, contributors=list(a.contributors), notice=a.notice)


def _timestamp(text: str) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    if text:
        ts.FromJsonString(text)
    return ts


def _offer(o: OfferDetails) -> nodes_pb2.HubMsg:
    job = o.job
    bbox = common_pb2.Vector3(x=o.bbox_mm[0], y=o.bbox_mm[1], z=o.bbox_mm[2]) if o.bbox_mm else None
    offer = nodes_pb2.JobOffer(
        offer_id=o.offer_id, job_id=job.id, design=job.design, revision_id=job.revision_id,
        artifacts=[nodes_pb2.ArtifactRef(sha256=s, size=n, kind=k, path=p) for s, n, k, p in o.artifacts],
        parameters=dict(job.parameters), material=job.material, quantity=1, bbox_mm=bbox,
        offer_expires_at=_timestamp(o.expires_at),
        payout=common_pb2.Money(currency=job.payout_currency, minor_units=job.payout_minor),
        attributions=[_attribution(a) for a in o.attributions], printer_id=o.printer, lease_epoch=o.lease_epoch,
        part=job.part,
    )
    return nodes_pb2.HubMsg(hub_seq=o.hub_seq, offer=offer)


def _command(c: Command) -> nodes_pb2.HubMsg:
    epoch = int(str(c.body.get("lease_epoch", 0)))
    reason = str(c.body.get("reason", ""))
    if c.kind == "assigned":
        return nodes_pb2.HubMsg(hub_seq=c.hub_seq, assigned=nodes_pb2.Assigned(
            job_id=c.job_id, offer_id=str(c.body.get("offer_id", "")), lease_epoch=epoch))
    if c.kind == "start_granted":
        return nodes_pb2.HubMsg(hub_seq=c.hub_seq, start_granted=nodes_pb2.StartGranted(job_id=c.job_id,
                                                                                        lease_epoch=epoch))
    if c.kind == "start_denied":
        return nodes_pb2.HubMsg(hub_seq=c.hub_seq, start_denied=nodes_pb2.StartDenied(
            job_id=c.job_id, lease_epoch=epoch, reason=reason))
    if c.kind == "hold":
        return nodes_pb2.HubMsg(hub_seq=c.hub_seq, hold=nodes_pb2.Hold(job_id=c.job_id, lease_epoch=epoch,
                                                                       reason=reason))
    return nodes_pb2.HubMsg(hub_seq=c.hub_seq, cancel=nodes_pb2.Cancel(job_id=c.job_id, lease_epoch=epoch,
                                                                       reason=reason))


def _outgoing(item: Outgoing) -> nodes_pb2.HubMsg:
    if isinstance(item, Welcome):
        desired = [nodes_pb2.DesiredJob(job_id=d.job_id, lease_epoch=d.lease_epoch, desired=_DESIRED[d.desired])
                   for d in item.desired]
        return nodes_pb2.HubMsg(welcome=nodes_pb2.Welcome(
            session_epoch=item.session_epoch, last_agent_seq_committed=item.last_agent_seq_committed,
            desired=desired, heartbeat_interval_s=item.heartbeat_s, lease_ttl_s=item.lease_ttl_s))
    if isinstance(item, EventAck):
        return nodes_pb2.HubMsg(event_ack=nodes_pb2.EventAck(agent_seq=item.agent_seq))
    if isinstance(item, Superseded):
        return nodes_pb2.HubMsg(superseded=nodes_pb2.Superseded(new_session_epoch=item.new_session_epoch))
    if isinstance(item, Drain):
        return nodes_pb2.HubMsg(drain=nodes_pb2.Drain(reason=item.reason))
    if isinstance(item, OfferDetails):
        return _offer(item)
    return _command(item)


def _first_hello(first: nodes_pb2.AgentMsg | None) -> Hello:
    """Raises: InvalidArgument: the stream did not start with a Hello (or a malformed one)."""
    if first is None or first.WhichOneof("kind") != "hello":
        raise InvalidArgument("the first message of a Session must be Hello")
    return _hello_from_proto(first.hello)


async def _bounded(requests: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    first = True
    async for chunk in requests:  # decoded by the interceptor (hub.api.blob_wire)
        if first and chunk.total_size > MAX_PUT_BYTES:
            raise ResourceExhausted(f"an artifact may be at most {MAX_PUT_BYTES >> 20} MiB; "
                                    f"this one declares {chunk.total_size} bytes")
        first = False
        yield chunk


class NodesServicer(nodes_pb2_grpc.NodesServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def Enroll(self, request: nodes_pb2.EnrollRequest, context: aio.ServicerContext) -> Any:
        # Public (no bearer token): the interceptor decodes, admits per peer and maps errors all the same.
        node, token = await self.hub.nodes.enroll(request.enrollment_token, request.agent_version)
        return nodes_pb2.EnrollResponse(node=node, token=token)

    async def Session(self, request_iterator: AsyncIterator[nodes_pb2.AgentMsg],
                      context: aio.ServicerContext) -> AsyncIterator[nodes_pb2.HubMsg]:
        account = current_account()
        hello = _first_hello(await anext(aiter(request_iterator), None))  # the message is not kept for the stream's life
        credential = token_digest(bearer_token(context.invocation_metadata() or ()))
        session = await self.hub.nodes.open(account, hello, credential)
        reader = asyncio.create_task(self._read(session, request_iterator))
        try:
            async for item in self.hub.nodes.outgoing(session):
                yield _outgoing(item)
        finally:
            reader.cancel()
            self.hub.nodes.close_soon(session)

    async def _read(self, session: AgentSession, requests: AsyncIterator[nodes_pb2.AgentMsg]) -> None:
        nodes, printers = self.hub.nodes, _Printers()
        try:
            async for msg in requests:
                message = _incoming(msg, session.node, nodes.clock, printers)
                del msg  # not kept until the next message (a heartbeat's comes 15 s later)
                await nodes.handle(session, message)
        except HubError as exc:
            session.end(exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the sender raises it; the interceptor logs and maps it
            session.end(exc)
            return
        session.end()

    async def FetchArtifact(self, request: nodes_pb2.DownloadArtifactRequest,
                            context: aio.ServicerContext) -> AsyncIterator[common_pb2.BlobChunk]:
        await self.hub.nodes.may_fetch(current_account(), request.sha256)
        async for chunk in self.hub.blobs.download(request.sha256, int(request.offset)):
            yield common_pb2.BlobChunk(sha256=chunk.sha256, total_size=chunk.total_size, offset=chunk.offset,
                                       data=bytes(chunk.data))

    async def PutArtifact(self, request_iterator: AsyncIterator[Chunk],
                          context: aio.ServicerContext) -> nodes_pb2.PutArtifactResponse:
        result = await self.hub.blobs.upload(_bounded(request_iterator))
        return nodes_pb2.PutArtifactResponse(sha256=result.sha256, stored_bytes=result.size,
                                             already_present=result.already_present)
