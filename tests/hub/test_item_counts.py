"""Every repeated field of every request is counted against its maximum before any item is read.

A request just under the 8 MiB message limit holds about 4 million empty items; reading them in
Python (the NUL check, the number check, a conversion) held the event loop for seconds (22 s for
a Push), so the refusal must come from the count alone. The refusals happen as the request is
decoded, before any store is reached.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import Descriptor
from spimeforge.v1 import accounts_pb2, common_pb2, designs_pb2, nodes_pb2, orders_pb2, records_pb2

from hub import limits
from hub.api.item_counts import too_many
from tests.hub.fake_agent import printer
from tests.hub.harness import InProcessHub
from tests.hub.refusal import details_of
from tests.hub.test_api_every_method import _enroll_node

MAX_BODY = 8 * 1024 * 1024 - 1024  # under the hub's 8 MiB receive limit


def _request_types() -> Iterator[Descriptor]:
    seen: set[str] = set()
    todo = [m.input_type for module in (accounts_pb2, designs_pb2, nodes_pb2, orders_pb2, records_pb2)
            for service in module.DESCRIPTOR.services_by_name.values() for m in service.methods]
    while todo:
        message = todo.pop()
        if message.full_name in seen:
            continue
        seen.add(message.full_name)
        yield message
        for field in message.fields:
            if field.message_type is not None:
                todo.append(field.message_type)


def test_every_repeated_request_field_has_a_most_items() -> None:
    missing = [f"{m.name}.{f.name}" for m in _request_types() for f in m.fields
               if f.is_repeated and f.name not in limits.ITEM_LIMITS.get(m.name, {})]
    assert not missing, f"repeated request fields without an ITEM_LIMITS entry: {missing}"


def test_item_limits_agree_with_the_field_limits() -> None:
    for message, fields in limits.ITEM_LIMITS.items():
        for field, most in fields.items():
            assert limits.FIELD_LIMITS.get(message, {}).get(field, most) == most, f"{message}.{field}"


def test_millions_of_items_are_counted_not_read() -> None:
    request = designs_pb2.PushRequest.FromString(b"\x22\x00" * (MAX_BODY // 2))
    assert too_many(request) == ("PushRequest.files", MAX_BODY // 2, limits.MAX_FILES)
    inner = nodes_pb2.AgentMsg(hello=nodes_pb2.Hello(printers=[printer(materials=["PLA"] * 33)]))
    assert too_many(inner) == ("PrinterState.materials", 33, 32)
    assert too_many(nodes_pb2.AgentMsg(hello=nodes_pb2.Hello(printers=[printer()]))) is None


def _raw(api: InProcessHub, path: str) -> grpc.UnaryUnaryMultiCallable:
    assert api.channel is not None
    return api.channel.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)


def test_a_huge_repeated_field_is_refused_by_its_count_before_its_items_are_read(api: InProcessHub) -> None:
    # 4 million tags, the first holding a NUL: reading the items would find the NUL first.
    tags = b"\x1a\x01\x00" + b"\x1a\x00" * (MAX_BODY // 2 - 4)
    with pytest.raises(grpc.RpcError) as info:
        _raw(api, "/spimeforge.v1.Designs/Search")(tags, metadata=api.md("carol"), timeout=300)
    refusal = details_of(info.value)
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal.info.reason == "FIELD_TOO_LARGE", refusal.message
    assert "limit SearchRequest.tags" in refusal.message
    with pytest.raises(grpc.RpcError) as info:
        _raw(api, "/spimeforge.v1.Designs/Push")(b"\x22\x00" * (MAX_BODY // 2), metadata=api.md("alice"), timeout=300)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"over its maximum of {limits.MAX_FILES:,} (limit PushRequest.files)" in (info.value.details() or "")


def _session(api: InProcessHub, first: nodes_pb2.AgentMsg) -> grpc.RpcError | None:
    assert api.channel is not None
    call = api.channel.stream_stream("/spimeforge.v1.Nodes/Session", request_serializer=lambda b: b,
                                     response_deserializer=nodes_pb2.HubMsg.FromString)
    try:
        for _ in call(iter([first.SerializeToString()]), metadata=api.md("node-1"), timeout=300):
            pass
    except grpc.RpcError as exc:
        return exc
    return None


@pytest.mark.parametrize(("message", "limit"), [
    (nodes_pb2.AgentMsg(hello=nodes_pb2.Hello(agent_id="node-1", jobs=[nodes_pb2.HeldJob()] * 200_000)), "Hello.jobs"),
    (nodes_pb2.AgentMsg(job_event=nodes_pb2.JobEvent(agent_seq=1, artifact_sha256=["0" * 64] * 17)),
     "JobEvent.artifact_sha256"),
    (nodes_pb2.AgentMsg(offer_reply=nodes_pb2.OfferReply(reports=[common_pb2.PrintabilityReport()] * 33)),
     "OfferReply.reports"),
])
def test_a_node_session_message_over_its_item_counts_ends_the_stream_naming_the_limit(
        api: InProcessHub, message: nodes_pb2.AgentMsg, limit: str) -> None:
    _enroll_node(api)
    refused = _session(api, message)
    assert refused is not None and refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"(limit {limit})" in (refused.details() or ""), refused.details()


PROTO = Path(__file__).resolve().parents[2] / "proto" / "spimeforge" / "v1"
_BOUND = re.compile(r"at most|max|limit|not used by the hub|\d+\s*(chars|characters|bytes|hex)|\d+\s*\.\.\s*\d+|\d+-\d+",
                    re.IGNORECASE)
# Fields bounded in code whose maximum the .proto once did not state (red-team report, fields 11).
BOUNDED_IN_CODE = [
    ("orders", "GetOrderRequest", "order_id"), ("orders", "CancelOrderRequest", "order_id"),
    ("orders", "RateOrderRequest", "job_id"), ("orders", "PlaceOrderRequest", "quote_id"),
    ("orders", "GrantRequest", "statement"), ("orders", "ListGrantsRequest", "design"),
    ("orders", "RevokeGrantRequest", "grant_id"), ("orders", "RevokeGrantRequest", "signature"),
    ("orders", "RevokeGrantRequest", "statement"), ("orders", "GetGrantRequest", "grant_id"),
    ("orders", "GetIncarnationRequest", "incarnation_id"), ("records", "GetRecordRequest", "design"),
    ("records", "ExportRequest", "design"), ("records", "ExportRequest", "revision_id"),
    ("records", "SetParticipationRequest", "design"), ("accounts", "RevokeKeyRequest", "account"),
    ("nodes", "JobProgress", "job_id"), ("nodes", "JobProgress", "layer"), ("nodes", "JobProgress", "percent"),
    ("nodes", "OfferReply", "est_print_seconds"), ("nodes", "HeldJob", "printer_id"),
    ("nodes", "PrinterState", "loaded_color"), ("nodes", "PrinterState", "rate_per_hour"),
    ("nodes", "DownloadArtifactRequest", "sha256"),
]


def _comment(message: str, field: str) -> str:
    """A field's line in whichever .proto declares the message, with the comment lines above it."""
    for proto in PROTO.glob("*.proto"):
        found = re.search(rf"^message {message} \{{(.*?)^\}}", proto.read_text(), re.DOTALL | re.MULTILINE)
        if found is None:
            continue
        lines = found.group(1).splitlines()
        for i, line in enumerate(lines):
            if re.match(rf"\s*(repeated\s+)?[\w.<>, ]+\s+{field}\s*=", line):
                above, j = [], i - 1
                while j >= 0 and lines[j].strip().startswith("//"):
                    above.append(lines[j])
                    j -= 1
                return "\n".join([*above, line])
    raise AssertionError(f"no field {message}.{field} in {PROTO}")


def test_every_bounded_request_field_documents_its_maximum() -> None:
    fields = [(m, f) for _, m, f in BOUNDED_IN_CODE]
    fields += [(m, f) for m, limited in limits.ITEM_LIMITS.items() for f in limited]
    missing = [f"{m}.{f}" for m, f in fields if not _BOUND.search(_comment(m, f))]
    assert not missing, "no documented maximum in the .proto: " + ", ".join(missing)
