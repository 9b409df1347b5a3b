"""The engine against a broken or hostile firmware: bounded memory, readable errors, no stray exceptions.

Bytes go straight into the engine (or through the simulated firmware's ``say_after``); each case is
what a real device sent in the red-team run: a line that never ends, a Klipper ``!!`` shutdown, a
line number of 5000 digits (here 100: more than Marlin's 10 is already broken).
"""

from __future__ import annotations

import pytest

from node_agent.protocol import (
    MAX_LINE_BYTES,
    NEED_DATA,
    FirmwareError,
    JobOutcome,
    MarlinProtocol,
    Other,
    RemoteProtocolError,
    State,
)
from node_agent.testing import FirmwareOptions
from tests.node_agent.test_protocol import MOVES, connected, print_job


def test_a_line_that_never_ends_is_dropped_with_bounded_memory() -> None:
    engine = MarlinProtocol()
    engine.connect()
    chunk = b"x" * 65536
    engine.receive_data(chunk)
    with pytest.raises(RemoteProtocolError, match=f"longer than {MAX_LINE_BYTES} bytes"):
        engine.next_event()
    for _ in range(256):  # 16 MiB more of the same line: dropped as it comes, reported once
        engine.receive_data(chunk)
        assert engine.next_event() is NEED_DATA
        assert len(engine._rx) <= len(chunk)
    engine.receive_data(b"tail of the long line\nhello\n")
    assert engine.next_event() == Other("hello")


def test_a_long_line_with_its_newline_in_one_chunk_is_refused() -> None:
    engine = MarlinProtocol()
    engine.connect()
    engine.receive_data(b"echo:" + b"y" * MAX_LINE_BYTES + b"\nhello\n")
    with pytest.raises(RemoteProtocolError, match="longer than"):
        engine.next_event()
    assert engine.next_event() == Other("hello")


@pytest.mark.parametrize("line", [
    b"Resend: " + b"9" * 100,
    b"ok N" + b"9" * 100,
    b"ok N1 P" + b"9" * 100 + b" B3",
    b"Error:Line Number is not Last Line Number+1, Last Line: " + b"9" * 100,
], ids=["resend", "ok-N", "ok-P", "last-line"])
def test_a_huge_line_number_is_a_remote_protocol_error(line: bytes) -> None:
    engine = MarlinProtocol()
    engine.connect()
    engine.receive_data(line + b"\n")
    with pytest.raises(RemoteProtocolError, match="100 digits"):
        engine.next_event()  # taken as a number before (and 5000 digits raised ValueError)


def test_a_klipper_shutdown_fails_the_job_with_the_whole_message() -> None:
    shutdown = "!! MCU 'mcu' shutdown: Timer too close"
    link = connected(FirmwareOptions(say_after=tuple((n, shutdown) for n in range(10, 2000))))
    finished = print_job(link, MOVES[:100])
    assert finished.outcome is JobOutcome.FAILED and not finished.retryable
    assert finished.reason == "MCU 'mcu' shutdown: Timer too close"
    assert link.engine.state is State.ERROR
    assert FirmwareError("MCU 'mcu' shutdown: Timer too close", True) in link.events


def test_a_klipper_command_error_is_fatal_too() -> None:
    engine = MarlinProtocol()
    engine.connect()
    engine.receive_data(b"!! Move out of range: 300.000 0.000 0.200 [0.000]\n")
    assert engine.next_event() == FirmwareError("Move out of range: 300.000 0.000 0.200 [0.000]", True)
    assert engine.state is State.ERROR
