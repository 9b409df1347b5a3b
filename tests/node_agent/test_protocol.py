"""The sans-IO Marlin engine, paired in memory with the simulated firmware model.

No ports, no clock: a ``Link`` moves bytes between ``MarlinProtocol`` and
``node_agent.testing.MarlinModel`` (h11's ConnectionPair idea) with a fake
time. Golden transcripts of recorded conversations are replayed byte by byte.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from node_agent import protocol
from node_agent.gcode import prepare
from node_agent.protocol import (
    NEED_DATA,
    Busy,
    Echo,
    Event,
    FirmwareError,
    FirmwareInfo,
    HostAction,
    JobFinished,
    JobOutcome,
    LocalProtocolError,
    MarlinProtocol,
    Ok,
    Other,
    ProtocolSettings,
    RemoteProtocolError,
    Resend,
    Start,
    State,
    TemperatureReport,
    Wait,
    frame,
)
from node_agent.testing import FirmwareOptions, MarlinModel
from tests.node_agent.transcripts import DATA, replay

MOVES = [f"G1 X{i % 200}.{i % 7} Y{(i * 7) % 200}.5 E{i * 0.01:.4f} F1800" for i in range(1500)]


class Link:
    """Engine <-> firmware model, bytes delivered line by line, time advanced by hand."""

    def __init__(self, engine: MarlinProtocol, model: MarlinModel) -> None:
        self.engine, self.model, self.now = engine, model, 0.0
        self.events: list[Event] = []
        self.max_tail = 0

    def pump(self) -> bool:
        out = self.engine.data_to_send()
        for line in out.splitlines(keepends=True):
            self.model.feed(line)
            self._deliver(self.model.step(self.now))
        self._deliver(self.model.step(self.now))
        return bool(out)

    def _deliver(self, data: bytes) -> None:
        if data:
            self.engine.receive_data(data)
        while (event := self.engine.next_event()) is not NEED_DATA:
            self.events.append(event)  # type: ignore[arg-type]

    def run(self, until: object, limit_s: float = 120.0, probe_after_s: float = 1.5) -> None:
        idle = 0.0
        while not until() and self.now < limit_s:  # type: ignore[operator]
            if self.pump():
                idle = 0.0
                continue
            self.now += 0.01
            idle += 0.01
            if idle >= probe_after_s and self.engine.awaiting_response:
                self.engine.probe()  # what the driver's communication timer does
                idle = 0.0

    def of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


def connected(options: FirmwareOptions | None = None,
              settings: ProtocolSettings | None = None) -> Link:
    link = Link(MarlinProtocol(settings), MarlinModel(options or FirmwareOptions()))
    link.engine.connect()
    link.run(lambda: link.engine.state is State.IDLE, limit_s=5)
    assert link.engine.state is State.IDLE
    link.run(lambda: False, limit_s=link.now + 0.05)  # barrier, then M155
    return link


def print_job(link: Link, lines: list[str], limit_s: float = 300.0) -> JobFinished:
    link.engine.start_job(prepare("job", lines))
    link.run(lambda: link.of(JobFinished), limit_s=limit_s)
    finished = link.of(JobFinished)
    assert finished, f"job did not finish by t={link.now}"
    return finished[-1]  # type: ignore[return-value]


def accepted_job_lines(link: Link) -> list[str]:
    stats = link.model.stats
    return [c for c, n in zip(stats.accepted, stats.numbers, strict=True)
            if n >= 0 and c.startswith("G1 ")]


# -- framing ---------------------------------------------------------------------------


def test_frame_matches_marlins_checksum() -> None:
    # "N0 M110 N0*125" is the canonical reset line (Marlin docs, Printrun, OctoPrint).
    assert frame(0, "M110 N0") == b"N0 M110 N0*125\n"
    assert frame(1, "M115") == b"N1 M115*39\n"


def test_all_is_pinned() -> None:
    assert "MarlinProtocol" in protocol.__all__ and "NEED_DATA" in protocol.__all__
    assert all(hasattr(protocol, name) for name in protocol.__all__)


# -- handshake and window ----------------------------------------------------------------


def test_handshake_reads_m115_and_uses_marlin_defaults() -> None:
    link = connected()
    info = link.of(FirmwareInfo)[0]
    assert isinstance(info, FirmwareInfo)
    assert info.is_marlin and info.has("AUTOREPORT_TEMP") and info.has("EMERGENCY_PARSER")
    assert info.fields["PROTOCOL_VERSION"] == "1.0"
    assert link.engine.window == protocol.Window("marlin-default", 128, 4)
    assert "M155 S2" in link.model.stats.accepted  # auto-report instead of polling


def test_advanced_ok_makes_the_window_exact() -> None:
    link = connected(FirmwareOptions(advanced_ok=True, command_buffer=8))
    assert link.engine.window.kind == "advanced-ok"
    assert link.engine.window.commands == 8  # learned from B (free slots) + 1
    oks = [e for e in link.of(Ok) if isinstance(e, Ok) and e.line_number is not None]
    assert oks and oks[0].buffer_free is not None and oks[0].planner_free == 15


def test_unknown_firmware_gets_one_line_per_ok() -> None:
    link = connected(FirmwareOptions(firmware_name="Mystery 0.1"))
    assert link.engine.window.kind == "strict"
    link.run(lambda: not link.engine.awaiting_response, limit_s=5)
    link.engine.start_job(prepare("job", MOVES[:5]))
    assert link.engine.data_to_send().count(b"\n") == 1


def test_per_printer_override_wins() -> None:
    link = connected(FirmwareOptions(firmware_name="Mystery 0.1"),
                     ProtocolSettings(rx_buffer_bytes=256, command_buffer=2))
    assert link.engine.window == protocol.Window("configured", 256, 2)
    assert print_job(link, MOVES[:300]).outcome is JobOutcome.COMPLETED


@pytest.mark.parametrize("advanced_ok", [False, True])
def test_window_never_overflows_a_slow_firmware(advanced_ok: bool) -> None:
    # moves take time, so the command ring fills and bytes wait in the 128-byte RX ring
    link = connected(FirmwareOptions(move_time_s=0.002, advanced_ok=advanced_ok))
    assert print_job(link, MOVES[:600]).outcome is JobOutcome.COMPLETED
    assert link.model.stats.rx_overflow_bytes == 0
    assert accepted_job_lines(link) == MOVES[:600]


# -- resends -------------------------------------------------------------------------------


@pytest.mark.parametrize("advanced_ok", [False, True])
@pytest.mark.parametrize("resend_ok", [True, False])
def test_corrupted_lines_arrive_exactly_once_in_order(advanced_ok: bool, resend_ok: bool) -> None:
    options = FirmwareOptions(corrupt_rate=0.03, advanced_ok=advanced_ok, resend_ok=resend_ok,
                              seed=7)
    link = connected(options)
    finished = print_job(link, MOVES)
    assert finished.outcome is JobOutcome.COMPLETED
    assert link.model.stats.corrupted > 20
    assert link.engine.resends > 0
    assert accepted_job_lines(link) == MOVES


def test_stale_resends_of_a_storm_are_ignored() -> None:
    link = connected()
    link.run(lambda: not link.engine.awaiting_response, limit_s=5)
    engine = link.engine
    engine.start_job(prepare("job", MOVES[:10]))
    sent = engine.data_to_send().splitlines()
    first = int(sent[0].split()[0][1:])
    # Marlin rejects the first line, flushes RX, then rejects every line still on the wire.
    storm = f"Error:checksum mismatch, Last Line: {first - 1}\nResend: {first}\nok\n"
    for n in range(first + 1, first + len(sent)):
        storm += (f"Error:Line Number is not Last Line Number+1, Last Line: {first - 1}\n"
                  f"Resend: {first}\nok\n")
    engine.receive_data(storm.encode())
    events = list(iter(engine.next_event, NEED_DATA))
    resends = [e for e in events if isinstance(e, Resend)]
    assert [r.stale for r in resends] == [False] + [True] * (len(sent) - 1)
    assert engine.data_to_send() == b"M105\n"  # a barrier before replaying
    engine.receive_data(b"ok T:21.0 /0.0 B:21.0 /0.0\n")
    list(iter(engine.next_event, NEED_DATA))
    replayed = engine.data_to_send().splitlines()
    assert replayed[0] == sent[0]  # replays from N, with the same bytes
    assert engine.resends == 1


def test_endless_resends_of_one_line_fail_the_job() -> None:
    link = connected()
    link.run(lambda: not link.engine.awaiting_response, limit_s=5)
    engine = link.engine
    engine.start_job(prepare("job", MOVES[:3]))
    first = int(engine.data_to_send().split()[0][1:])
    for _ in range(12):
        engine.receive_data(f"Resend: {first}\nok\n".encode())
        list(iter(engine.next_event, NEED_DATA))
        engine.data_to_send()  # the barrier
        engine.receive_data(b"ok T:20 /0 B:20 /0\n")
        list(iter(engine.next_event, NEED_DATA))
        engine.data_to_send()  # the replay
    assert engine.state is State.ERROR
    assert "keeps requesting line" in (engine.error or "")


def test_unreadable_resend_is_a_remote_protocol_error() -> None:
    engine = MarlinProtocol()
    engine.connect()
    engine.receive_data(b"Resend: soon\n")
    with pytest.raises(RemoteProtocolError):
        engine.next_event()


# -- lost ok, busy, reports ------------------------------------------------------------------


def test_a_lost_ok_is_recovered_by_a_probe() -> None:
    link = connected(FirmwareOptions(drop_ok_after=(50, 700)))
    finished = print_job(link, MOVES)
    assert finished.outcome is JobOutcome.COMPLETED
    assert link.model.stats.dropped_oks == 2
    assert link.now < 5.0  # each loss costs one 1.5 s probe at most
    assert accepted_job_lines(link) == MOVES


def test_busy_wait_echo_and_actions_become_events() -> None:
    engine = MarlinProtocol()
    engine.connect()
    engine.receive_data(b"echo:busy: processing\nbusy: paused for user\nwait\n"
                        b"echo:Unknown command: \"M999\"\n//action:pause\nhello\n")
    events = list(iter(engine.next_event, NEED_DATA))
    assert events == [Busy("processing"), Busy("paused for user"), Wait(),
                      Echo('Unknown command: "M999"'), HostAction("pause"), Other("hello")]


@pytest.mark.parametrize(("line", "expected"), [
    (b"ok T:210.0 /210.0 B:60.0 /60.0 @:64 B@:32\n", (210.0, 210.0, 60.0, 60.0)),
    (b" T:21.00 /0.00 B:20.50 /0.00 @:0 B@:0\n", (21.0, 0.0, 20.5, 0.0)),
    (b"T:203.1 E:0 W:?\n", (203.1, None, None, None)),
    (b"ok T0:200.0 /200.0 T1:25.0 /0.0 B:60.0 /60.0\n", (200.0, 200.0, 60.0, 60.0)),
])
def test_temperature_reports_are_parsed(line: bytes, expected: tuple[object, ...]) -> None:
    engine = MarlinProtocol()
    engine.connect()
    engine.receive_data(line)
    reports = [e for e in iter(engine.next_event, NEED_DATA) if isinstance(e, TemperatureReport)]
    assert len(reports) == 1
    r = reports[0]
    assert (r.hotend_c, r.hotend_target_c, r.bed_c, r.bed_target_c) == expected


def test_busy_keeps_a_long_dwell_alive() -> None:
    link = connected(FirmwareOptions(busy_interval_s=0.5))
    finished = print_job(link, ["G4 S3", *MOVES[:5]])
    assert finished.outcome is JobOutcome.COMPLETED
    assert len(link.of(Busy)) >= 4


# -- errors, job control -----------------------------------------------------------------------


def test_thermal_runaway_fails_the_job_with_the_firmware_reason() -> None:
    link = connected(FirmwareOptions(fail_at_line=40))
    finished = print_job(link, MOVES[:200])
    assert finished.outcome is JobOutcome.FAILED
    assert "Thermal Runaway" in (finished.reason or "") and not finished.retryable
    assert link.engine.state is State.ERROR
    fatal = [e for e in link.of(FirmwareError) if isinstance(e, FirmwareError) and e.fatal]
    assert fatal and "Thermal Runaway" in fatal[0].message
    with pytest.raises(LocalProtocolError):
        link.engine.start_job(prepare("again", MOVES[:2]))
    assert link.engine.state is State.ERROR  # sticky


def test_recoverable_line_errors_are_not_fatal() -> None:
    engine = MarlinProtocol()
    engine.connect()
    engine.receive_data(b"Error:checksum mismatch, Last Line: 41\n")
    assert engine.next_event() == FirmwareError("checksum mismatch, Last Line: 41", False, 41)
    assert engine.state is State.CONNECTING


def test_illegal_commands_raise_before_anything_changes() -> None:
    engine = MarlinProtocol()
    for command in (engine.pause, engine.resume, engine.cancel):
        with pytest.raises(LocalProtocolError):
            command()
    with pytest.raises(LocalProtocolError):
        engine.start_job(prepare("x", ["G28"]))
    assert engine.state is State.DISCONNECTED and engine.data_to_send() == b""
    with pytest.raises(LocalProtocolError):
        engine.send_command("G1 X1*12")
    link = connected()
    with pytest.raises(LocalProtocolError, match="not a single ASCII G-code command"):
        link.engine.start_job(prepare("x", ["G28", "M117 Grüße"]))
    assert link.engine.state is State.IDLE and link.engine.job is None


def test_pause_holds_and_resume_finishes() -> None:
    link = connected()
    link.engine.start_job(prepare("job", MOVES[:400]))
    link.run(lambda: link.engine.lines_sent >= 100)
    link.engine.pause()
    link.run(lambda: not link.engine.awaiting_response)
    held = link.engine.lines_sent
    for _ in range(50):
        link.pump()
    assert link.engine.lines_sent == held and link.engine.state is State.PAUSED
    link.engine.resume()
    link.run(lambda: link.of(JobFinished))
    assert accepted_job_lines(link) == MOVES[:400]


def test_cancel_runs_the_safe_end_sequence() -> None:
    end = ("M104 S0", "M140 S0", "M107", "G91", "G1 Z10 F600", "G90", "M84")
    link = connected(settings=ProtocolSettings(end_gcode=end))
    link.engine.start_job(prepare("job", MOVES[:400]))
    link.run(lambda: link.engine.lines_sent >= 100)
    link.engine.cancel()
    link.run(lambda: link.of(JobFinished))
    finished = link.of(JobFinished)[0]
    assert isinstance(finished, JobFinished) and finished.outcome is JobOutcome.CANCELLED
    accepted = link.model.stats.accepted
    assert tuple(accepted[-len(end):]) == end
    assert len(accepted_job_lines(link)) < 400
    assert link.engine.state is State.IDLE


def test_emergency_stop_goes_ahead_of_the_queue() -> None:
    link = connected()
    link.engine.start_job(prepare("job", MOVES[:400]))
    link.run(lambda: link.engine.lines_sent >= 50)
    link.engine.emergency_stop()
    assert link.engine.data_to_send().startswith(b"M112\n")
    assert link.engine.state is State.ERROR
    finished = [e for e in iter(link.engine.next_event, NEED_DATA) if isinstance(e, JobFinished)]
    assert finished[0].outcome is JobOutcome.CANCELLED and "emergency" in (finished[0].reason or "")


def test_a_printer_restart_fails_the_job_and_reconnects() -> None:
    link = connected()
    link.engine.start_job(prepare("job", MOVES[:400]))
    link.run(lambda: link.engine.lines_sent >= 50)
    link.engine.receive_data(b"start\n")
    events = list(iter(link.engine.next_event, NEED_DATA))
    assert Start() in events
    finished = next(e for e in events if isinstance(e, JobFinished))
    assert finished.outcome is JobOutcome.FAILED and finished.retryable
    assert link.engine.state is State.CONNECTING
    assert link.engine.data_to_send().startswith(b"N0 M110 N0*125\n")


def test_progress_counts_lines_bytes_and_layers() -> None:
    lines = [";LAYER:0", "G1 Z0.2", *MOVES[:10], ";LAYER:1", "G1 Z0.4", *MOVES[10:20]]
    link = connected()
    finished = print_job(link, lines)
    assert finished.outcome is JobOutcome.COMPLETED
    assert link.engine.lines_sent == link.engine.lines_acknowledged == 22
    assert link.engine.layer == 1
    commands = prepare("job", lines).commands  # numbered after M110 N0, M115, M155 (N0-N2)
    assert link.engine.job_bytes_sent == sum(
        len(frame(3 + i, c)) for i, c in enumerate(commands)
    )


# -- golden transcripts ------------------------------------------------------------------------


TRANSCRIPTS = sorted(Path(DATA).glob("*.txt"))


def test_there_are_golden_transcripts() -> None:
    names = {p.stem for p in TRANSCRIPTS}
    assert {"virtualprinter_resends", "virtualprinter_busy_temperatures",
            "marlin_resend_storm", "marlin_advanced_ok", "marlin_lost_ok",
            "marlin_thermal_runaway"} <= names


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_golden_transcript_replays_byte_by_byte(path: Path) -> None:
    result = replay(path.read_text(encoding="utf-8"))
    assert result.written == result.expected_written
    assert result.events == result.expected_events
    assert any("JobFinished" in e for e in result.events)


def test_a_line_that_fails_twice_is_replayed_alone() -> None:
    link = connected()
    link.run(lambda: not link.engine.awaiting_response, limit_s=5)
    engine = link.engine
    engine.start_job(prepare("job", MOVES[:20]))
    first = int(engine.data_to_send().split()[0][1:])

    def fail_and_barrier() -> list[bytes]:
        engine.receive_data(f"Error:checksum mismatch, Last Line: {first - 1}\n"
                            f"Resend: {first}\nok\n".encode())
        list(iter(engine.next_event, NEED_DATA))
        assert engine.data_to_send() == b"M105\n"
        engine.receive_data(b"ok T:21.0 /0.0 B:21.0 /0.0\n")
        list(iter(engine.next_event, NEED_DATA))
        return engine.data_to_send().splitlines()

    assert len(fail_and_barrier()) > 1  # first time: replay with the full window
    alone = fail_and_barrier()
    assert len(alone) == 1 and alone[0].startswith(f"N{first} ".encode())
    engine.receive_data(b"ok\n")
    list(iter(engine.next_event, NEED_DATA))
    assert len(engine.data_to_send().splitlines()) > 1  # acknowledged: window open again
