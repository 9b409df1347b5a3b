"""hub.api.wide_numbers: unsigned 64-bit fields over what the databases store are found by name."""

from __future__ import annotations

from spimeforge.v1 import common_pb2, nodes_pb2

from hub.api.wide_numbers import MAX_STORED_INT, too_wide


def test_the_largest_stored_number_passes_and_one_more_is_named() -> None:
    assert too_wide(nodes_pb2.AgentMsg(ack=nodes_pb2.CommandAck(hub_seq=MAX_STORED_INT))) is None
    assert too_wide(nodes_pb2.AgentMsg(ack=nodes_pb2.CommandAck(hub_seq=MAX_STORED_INT + 1))) == (
        "ack.hub_seq", MAX_STORED_INT + 1)


def test_repeated_nested_fields_are_named_with_their_index() -> None:
    hello = nodes_pb2.Hello(agent_id="n", jobs=[nodes_pb2.HeldJob(job_id="a", lease_epoch=1),
                                                 nodes_pb2.HeldJob(job_id="b", last_agent_seq=2**64 - 1)])
    assert too_wide(nodes_pb2.AgentMsg(hello=hello)) == ("hello.jobs[1].last_agent_seq", 2**64 - 1)


def test_unset_messages_and_other_number_types_are_not_visited() -> None:
    assert too_wide(nodes_pb2.AgentMsg()) is None
    assert too_wide(common_pb2.BlobChunk(total_size=2**63, offset=0)) == ("total_size", 2**63)
    assert too_wide(nodes_pb2.AgentMsg(offer_reply=nodes_pb2.OfferReply(est_print_seconds=2**32 - 1))) is None


class _Counting:
    """A message whose oneof lookups are counted (what the check reads of it)."""

    def __init__(self, message: nodes_pb2.AgentMsg) -> None:
        self.message, self.asked = message, 0
        self.DESCRIPTOR = message.DESCRIPTOR

    def WhichOneof(self, name: str) -> str | None:
        self.asked += 1
        return self.message.WhichOneof(name)

    def __getattr__(self, name: str) -> object:
        return getattr(self.message, name)


def test_a_oneof_is_asked_once_for_its_set_member() -> None:
    """Every agent message is checked (10,000 agents: hundreds a second): its oneof ``kind`` is read
    once, not once for each of its members that could hold a wide number."""
    counted = _Counting(nodes_pb2.AgentMsg(ack=nodes_pb2.CommandAck(hub_seq=MAX_STORED_INT + 1)))
    assert too_wide(counted) == ("ack.hub_seq", MAX_STORED_INT + 1)
    assert counted.asked == 1
