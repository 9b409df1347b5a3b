"""Golden serial transcripts: record a conversation at the engine boundary, replay it.

Format (one entry per line, UTF-8 text; see tests/data/transcripts/*.txt)::

    # comment / provenance
    ! connect | probe | pause | resume | cancel | emergency_stop | job NAME
    + <command>          a job line (after "! job NAME")
    < <line>             one complete line received from the printer
    > <line>             one line the engine wrote
    = <repr(event)>      an event the engine produced (``Ok`` events are left out)

Replay feeds the received lines *one byte at a time* and, at the same points
where the recording driver called it (before each ``>`` block or ``!``
command), asks ``data_to_send()``; what the engine writes must equal the ``>``
lines byte for byte, and the events must equal the ``=`` lines. Consecutive
received lines may be merged into one chunk: an empty ``data_to_send()`` has no
side effects, so chunk boundaries matter only where the engine wrote.

Re-record with::

    .venv/bin/python -m tests.node_agent.transcripts NAME   (see RECORDINGS below)
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node_agent.gcode import prepare
from node_agent.protocol import NEED_DATA, MarlinProtocol, Ok, ProtocolSettings
from tests.node_agent.jobfiles import print_lines

DATA = Path(__file__).resolve().parents[1] / "data" / "transcripts"


@dataclass
class Replay:
    written: list[str] = field(default_factory=list)
    expected_written: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    expected_events: list[str] = field(default_factory=list)
    engine: MarlinProtocol | None = None


def _entries(text: str) -> list[tuple[str, str]]:
    entries = []
    for raw in text.splitlines():
        if not raw or raw.startswith("#"):
            continue
        kind, _, rest = raw.partition(" ")
        entries.append((kind, rest))
    return entries


def replay(text: str, settings: ProtocolSettings | None = None) -> Replay:
    """Replay one transcript through a fresh engine; see the module docstring."""
    engine = MarlinProtocol(settings)
    result = Replay(engine=engine)
    entries = _entries(text)
    chunk: list[str] = []
    i = 0

    def drain() -> None:
        while (event := engine.next_event()) is not NEED_DATA:
            if not isinstance(event, Ok):
                result.events.append(repr(event))

    def feed_chunk() -> None:
        for byte in "".join(line + "\n" for line in chunk).encode("ascii"):
            engine.receive_data(bytes([byte]))
        chunk.clear()
        drain()

    def send() -> None:
        out = engine.data_to_send().decode("ascii")
        result.written.extend(out.splitlines())

    while i < len(entries):
        kind, rest = entries[i]
        if kind == "<":
            chunk.append(rest)
        elif kind == "=":
            result.expected_events.append(rest)
        elif kind == ">":
            if chunk:
                feed_chunk()
                send()
            while i < len(entries) and entries[i][0] == ">":
                result.expected_written.append(entries[i][1])
                i += 1
            continue
        elif kind == "!":
            if chunk:
                feed_chunk()
                send()
            i = _command(engine, rest, entries, i)
            drain()
            send()
            continue
        i += 1
    if chunk:
        feed_chunk()
        send()
    return result


def _command(engine: MarlinProtocol, command: str, entries: list[tuple[str, str]], i: int) -> int:
    i += 1
    if command.startswith("job "):
        lines = []
        while i < len(entries) and entries[i][0] == "+":
            lines.append(entries[i][1])
            i += 1
        engine.start_job(prepare(command[4:], lines))
    else:
        getattr(engine, command)()
    return i


# -- recording ------------------------------------------------------------------------


class Recorder:
    """A ``trace`` hook for SerialDriver that writes the transcript format."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self._partial = ""

    def __call__(self, kind: str, text: str) -> None:
        if kind == "<":
            data = self._partial + text
            *lines, self._partial = data.split("\n")
            self.out.extend(f"< {line.rstrip(chr(13))}" for line in lines)
        elif kind == ">":
            self.out.extend(f"> {line}" for line in text.splitlines())
        elif kind == "=":
            self.out.append(f"= {text}")
        elif kind == "!":
            head, *job = text.split("\n")
            self.out.append(f"! {head}")
            self.out.extend(f"+ {line}" for line in job)


def _job(moves: int, extra: list[str] | None = None) -> list[str]:
    lines = ["G90", "M82", "G92 E0", ";LAYER:0"] + (extra or [])
    for i in range(moves):
        if i == moves // 2:
            lines.append(";LAYER:1")
        lines.append(f"G1 X{10 + i % 50}.5 Y{20 + (i * 7) % 50}.25 E{0.05 * (i + 1):.4f} F1800")
    return lines


async def _record_with(port: str, baud: int, job: list[str], before: Callable[[Any], Any] | None,
                       comm_timeout_s: float = 1.5) -> list[str]:
    from node_agent.drivers.serial import SerialDriver

    recorder = Recorder()
    driver = SerialDriver("rec", port, baud, trace=recorder, comm_timeout_s=comm_timeout_s)
    await driver.connect()
    if before is not None:
        await before(driver)
    await print_lines(driver, "golden", job)
    await driver.close()
    return recorder.out


def record(name: str) -> str:
    """Record one of the named conversations against its peer; returns the text."""
    header, peer, options, job, before = RECORDINGS[name]
    if peer == "virtualprinter":
        from tests.fixtures.virtual_printer import VirtualPrinterProcess

        vp = VirtualPrinterProcess(options).start()
        try:
            body = asyncio.run(_record_with(vp.port, 115200, job, before))
        finally:
            vp.stop()
    else:
        from node_agent.testing import FirmwareOptions, SimulatedPrinterProcess

        with SimulatedPrinterProcess(FirmwareOptions(**options)) as sim:
            body = asyncio.run(_record_with(sim.port, 115200, job, before))
    return "\n".join([f"# {line}" for line in header.splitlines()] + body) + "\n"


_VP = ("Recorded {date} from OctoPrint 1.11.8's VirtualPrinter (AGPL-3.0, an independent Marlin "
       "simulator)\nrunning on a pty through tests/fixtures/virtual_printer.py, settings: {opts}.")
_SIM = ("Recorded {date} from node_agent.testing's simulated Marlin 2.1 (this project, "
        "AGPL-3.0) in its own\nprocess on a pty at 115200 baud, options: {opts}.")
RECORDINGS: dict[str, tuple[str, str, dict[str, Any], list[str], Any]] = {
    "virtualprinter_resends": (
        _VP + "\nLine noise: every 7th line's checksum damaged on the wire -> Error/Resend/ok.",
        "virtualprinter", {"corrupt_every": 7}, _job(40), None),
    "virtualprinter_busy_temperatures": (
        _VP + "\nHeat-up with busy keep-alives and temperature auto-reports (M155).",
        "virtualprinter", {"sendBusy": True, "busyInterval": 0.5},
        _job(10, ["M104 S60", "M109 S60"]), None),
    "marlin_resend_storm": (
        _SIM + "\nMarlin flushes its RX ring after a bad line, so lines already on the wire "
        "fail too.", "simulator", {"corrupt_rate": 0.08, "seed": 3}, _job(60), None),
    "marlin_advanced_ok": (
        _SIM + "\nADVANCED_OK: every ok names its line (ok N<n> P<planner> B<buffer>).",
        "simulator", {"advanced_ok": True, "corrupt_rate": 0.05, "seed": 5}, _job(40), None),
    "marlin_lost_ok": (
        _SIM + "\nThe ok for line 20 is lost on the wire; the driver's timer sends a probe "
        "(M105) whose\nanswer acknowledges everything before it.",
        "simulator", {"drop_ok_after": [20]}, _job(30), None),
    "marlin_thermal_runaway": (
        _SIM + "\nThe firmware halts with a thermal runaway while processing line 25.",
        "simulator", {"fail_at_line": 25}, _job(40), None),
}


if __name__ == "__main__":
    import datetime

    today = datetime.date.today().isoformat()
    for wanted in sys.argv[1:] or list(RECORDINGS):
        header, peer, opts, job, before = RECORDINGS[wanted]
        RECORDINGS[wanted] = (header.format(date=today, opts=opts), peer, opts, job, before)
        text = record(wanted)
        (DATA / f"{wanted}.txt").write_text(text, encoding="utf-8")
        print(f"wrote {wanted}.txt ({len(text.splitlines())} lines)")
