"""Every RPC of the hub, every field at its extremes: a clear status, never INTERNAL or UNKNOWN.

The class check behind the per-field tests: each method of every service the hub serves is
called with requests built from its message descriptor (empty; every text field very long;
numbers at their type's extremes, NaN and infinities; an enum value no .proto names; many
repeated entries; strings a file system or a database treats specially), by each kind of
caller (admin, designer, customer, node, no token). Whatever the answer, it is a status a
client can act on, with a message; the hub keeps serving; nothing is left half-written (the
hub's temp files are gone). Both databases.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from spimeforge.v1 import (
    accounts_pb2,
    designs_pb2,
    nodes_pb2,
    orders_pb2,
    records_pb2,
)

from tests.fixtures.postgres import create_database
from tests.hub.harness import InProcessHub, start_in_process

SERVICES = (accounts_pb2, designs_pb2, nodes_pb2, orders_pb2, records_pb2)
CALLERS = ("admin", "alice", "carol", "node-1", None)
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNIMPLEMENTED,
             grpc.StatusCode.DATA_LOSS}
STREAM_WAIT_S = 1.0  # server streams that follow something (WatchOrder, Session) run until cancelled
LONG = "x" * 100_000
ODD_TEXTS = ("../../etc/passwd", "CON", "a\u202eb", " ", ".", "%s%n", "' OR 1=1 --", "\u00e9" * 200, "cube")
INT_EXTREMES = {
    FieldDescriptor.TYPE_INT64: (2**63 - 1, -(2**63)), FieldDescriptor.TYPE_SINT64: (2**63 - 1, -(2**63)),
    FieldDescriptor.TYPE_SFIXED64: (2**63 - 1, -(2**63)), FieldDescriptor.TYPE_UINT64: (2**64 - 1, 0),
    FieldDescriptor.TYPE_FIXED64: (2**64 - 1, 0), FieldDescriptor.TYPE_INT32: (2**31 - 1, -(2**31)),
    FieldDescriptor.TYPE_SINT32: (2**31 - 1, -(2**31)), FieldDescriptor.TYPE_SFIXED32: (2**31 - 1, -(2**31)),
    FieldDescriptor.TYPE_UINT32: (2**32 - 1, 0), FieldDescriptor.TYPE_FIXED32: (2**32 - 1, 0),
}
FLOATS = (math.nan, math.inf, -math.inf, -1e300, 1e300)
MAX_DEPTH = 3
VARIANTS = ("long", "extreme", "odd", "many")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessHub]:
    """A hub on each database whose per-address enroll budget does not run out here: every hostile
    request comes from 127.0.0.1, and a refused enrollment costs that address 20 (hub.limits), so the
    later Enroll requests were answered RESOURCE_EXHAUSTED after waiting, never reaching the field
    checks this test is about (the budget itself: test_enroll_hostile.py)."""
    url = "" if request.param == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    hub = start_in_process(tmp_path / "data", url, settings={"rate_limits": "enroll=100000/100000"})
    try:
        yield hub
    finally:
        hub.stop()


def _value(field: FieldDescriptor, variant: str, index: int) -> Any:
    """One value of a scalar field for a variant ("long", "extreme", "odd", "many")."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return LONG if variant == "long" else ODD_TEXTS[index % len(ODD_TEXTS)] if variant == "odd" else f"v{index}"
    if kind == FieldDescriptor.TYPE_BYTES:
        return b"\xff" * 100_000 if variant == "long" else bytes((index + i) % 256 for i in range(32))
    if kind == FieldDescriptor.TYPE_BOOL:
        return True
    if kind == FieldDescriptor.TYPE_ENUM:
        return 999 if variant in ("extreme", "odd") else field.enum_type.values[-1].number
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return FLOATS[index % len(FLOATS)] if variant in ("extreme", "odd") else 1.5
    low, high = INT_EXTREMES[kind][1], INT_EXTREMES[kind][0]
    return (high if index % 2 == 0 else low) if variant in ("extreme", "odd") else 1


def _fill(message: Any, descriptor: Descriptor, variant: str, depth: int = 0, only: str = "") -> None:
    """Set every field of ``message`` (or the one named ``only``) for ``variant``, nested messages
    down to MAX_DEPTH."""
    for index, field in enumerate(descriptor.fields):
        if only and field.name != only:
            continue
        if not only and field.containing_oneof is not None and field.containing_oneof.fields[0] is not field:
            continue  # one member of each oneof (each member is set alone by the per-field variants)
        _set(message, field, variant, depth, index)


def _set(message: Any, field: FieldDescriptor, variant: str, depth: int, index: int) -> None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        target = getattr(message, field.name)
        key_field, value_field = (field.message_type.fields_by_name[n] for n in ("key", "value"))
        for i in range(2_000 if variant == "many" else 1):
            key = f"k{i}" if variant == "many" else _value(key_field, variant, i)
            if value_field.message_type is None:
                target[key] = _value(value_field, variant, i)
            else:
                _fill(target[key], value_field.message_type, variant, depth + 1)
        return
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if depth >= MAX_DEPTH or field.message_type.full_name.startswith("google.protobuf"):
            return
        if field.is_repeated:
            for _ in range(2_000 if variant == "many" and depth == 0 else 1):
                _fill(getattr(message, field.name).add(), field.message_type, variant, depth + 1)
        else:
            getattr(message, field.name).SetInParent()
            _fill(getattr(message, field.name), field.message_type, variant, depth + 1)
        return
    if field.is_repeated:
        count = 5_000 if variant == "many" else 2
        getattr(message, field.name).extend(_value(field, variant, index + i) for i in range(count))
    else:
        setattr(message, field.name, _value(field, variant, index))


# Values a request would carry to get past its first checks, by field name (the design the test
# pushes, a material printers load, ...): each field is then also mutated alone on top of these.
PLAUSIBLE: dict[str, object] = {
    "design": "cube", "material": "PLA", "near": "49.0,9.0", "quantity": 1, "max_km": 50.0, "account": "bob",
    "scope": "paid", "best": "cheapest", "rung": "co-design", "license": "CC-BY-4.0", "text": "cube",
    "until": "2030-01-01", "message": "m", "name": "cube-2", "slug": "cube-2", "reason": "r", "stars": 4,
    "new_design": "cube-2", "format": "prov-json", "kind": "mesh"}


def _plausible(descriptor: Descriptor, depth: int = 0) -> Any:
    message = _message_class(descriptor)()
    for field in descriptor.fields:
        if field.is_repeated or field.containing_oneof is not None:
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth < 2 and not field.message_type.full_name.startswith("google.protobuf"):
                inner = _plausible(field.message_type, depth + 1)
                if inner.ListFields():
                    getattr(message, field.name).CopyFrom(inner)
            continue
        value = PLAUSIBLE.get(field.name)
        if value is not None and isinstance(value, str) == (field.type == FieldDescriptor.TYPE_STRING):
            try:
                setattr(message, field.name, value)
            except (TypeError, ValueError):
                pass
    return message


def requests(descriptor: Descriptor) -> Iterator[tuple[str, Any, tuple[str | None, ...]]]:
    """(name, request, callers): the whole message at each variant by every kind of caller, then
    each field alone at each variant on top of plausible values (and each field of a message field
    the same way, one level down) by the callers with an account."""
    cls = _message_class(descriptor)
    yield "empty", cls(), CALLERS
    for variant in VARIANTS:
        message = cls()
        _fill(message, descriptor, variant)
        yield variant, message, CALLERS
    base = _plausible(descriptor)
    for field in descriptor.fields:
        for variant in VARIANTS:
            message = cls()
            message.CopyFrom(base)
            message.ClearField(field.name)
            _fill(message, descriptor, variant, only=field.name)
            yield f"{field.name} {variant}", message, CALLERS[:-1]
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.is_repeated or not base.HasField(field.name):
            continue
        for inner in field.message_type.fields:
            for variant in VARIANTS:
                message = cls()
                message.CopyFrom(base)
                nested = getattr(message, field.name)
                nested.ClearField(inner.name)
                _fill(nested, field.message_type, variant, 1, only=inner.name)
                yield f"{field.name}.{inner.name} {variant}", message, CALLERS[:-1]


def _message_class(descriptor: Descriptor) -> Any:
    return message_factory.GetMessageClass(descriptor)


def _enroll_node(api: InProcessHub) -> None:
    """Node "node-1", enrolled: its token is api.tokens["node-1"]."""
    _, enrollment, _ = api.composed.hub.nodes._thd_add_node("node-1")
    enrolled = asyncio.run_coroutine_threadsafe(api.composed.hub.nodes.enroll(enrollment, "test"), api.loop)
    api.tokens["node-1"] = enrolled.result(timeout=30)[1]


def _methods() -> list[MethodDescriptor]:
    return [m for module in SERVICES for service in module.DESCRIPTOR.services_by_name.values()
            for m in service.methods]


def _call(api: InProcessHub, method: MethodDescriptor, request: Any, caller: str | None) -> None:
    """Call ``method`` once with ``request`` (the only message of a client stream); reads a server
    stream for at most STREAM_WAIT_S. Raises grpc.RpcError."""
    assert api.channel is not None
    path = f"/{method.containing_service.full_name}/{method.name}"
    reply = _message_class(method.output_type)
    metadata = api.md(caller) if caller else ()
    serialize, deserialize = (lambda m: m.SerializeToString()), reply.FromString
    kinds: dict[tuple[bool, bool], Callable[..., Any]] = {
        (False, False): api.channel.unary_unary, (False, True): api.channel.unary_stream,
        (True, False): api.channel.stream_unary, (True, True): api.channel.stream_stream}
    stub = kinds[method.client_streaming, method.server_streaming](
        path, request_serializer=serialize, response_deserializer=deserialize)
    argument = iter([request]) if method.client_streaming else request
    if not method.server_streaming:
        stub(argument, metadata=metadata, timeout=60)
        return
    call = stub(argument, metadata=metadata, timeout=STREAM_WAIT_S)
    try:
        for _ in call:
            pass
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # a stream that follows something: still open
            raise


@pytest.mark.parametrize("method", _methods(), ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_every_method_answers_hostile_fields_with_a_clear_status(any_api: InProcessHub,
                                                                 method: MethodDescriptor) -> None:
    api = any_api
    api.push("alice", "cube", {"cube.stl": b"solid cube\nendsolid cube\n"}, create=True)
    _enroll_node(api)
    failures: list[str] = []
    for name, request, callers in requests(method.input_type):
        for caller in callers:
            try:
                _call(api, method, request, caller)
            except grpc.RpcError as exc:
                if exc.code() in FORBIDDEN or not exc.details():
                    failures.append(f"{name} as {caller}: {exc.code().name} {exc.details()!r:.300}")
    assert not failures, "\n".join(failures)
    who = api.accounts.WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=api.md("carol"), timeout=30)
    assert who.name == "carol"  # the hub keeps serving
    assert api.temp_files() == []


def _after_hello(api: InProcessHub, message: Any) -> list[str]:
    """Send a valid Hello, then ``message``, on node-1's Session; what went wrong (an empty list:
    the hub answered with a clear status or kept the stream open)."""
    assert api.channel is not None
    hello = nodes_pb2.AgentMsg(hello=nodes_pb2.Hello(agent_id="node-1", agent_version="sweep"))
    call = api.channel.stream_stream("/spimeforge.v1.Nodes/Session",
                                     request_serializer=lambda m: m.SerializeToString(),
                                     response_deserializer=nodes_pb2.HubMsg.FromString)(
        iter([hello, message]), metadata=api.md("node-1"), timeout=STREAM_WAIT_S)
    try:
        for _ in call:
            pass
    except grpc.RpcError as exc:
        if exc.code() in FORBIDDEN or not exc.details():
            return [f"{exc.code().name} {exc.details()!r:.300}"]
    return []


def test_every_agent_message_after_hello_gets_a_clear_status(any_api: InProcessHub) -> None:
    """A node's own Session: each message kind at each variant after a valid Hello."""
    api = any_api
    _enroll_node(api)
    failures: list[str] = []
    for member in nodes_pb2.AgentMsg.DESCRIPTOR.oneofs_by_name["kind"].fields:
        for variant in VARIANTS:
            message = nodes_pb2.AgentMsg()
            _fill(message, nodes_pb2.AgentMsg.DESCRIPTOR, variant, only=member.name)
            failures += [f"{member.name} {variant}: {f}" for f in _after_hello(api, message)]
    assert not failures, "\n".join(failures)
    assert [n.name for n in api.composed.store.nodes._thd_nodes()] == ["node-1"]  # the node row is intact
    who = api.accounts.WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=api.md("node-1"), timeout=30)
    assert who.name == "node-1"
