"""G-code files on disk: checked whole before line one, streamed with bounded memory.

The memory bound is measured in a subprocess (its peak RSS), next to a reference
that reads the same file into memory the way the node did before, so the test
shows the measure can see the difference it asserts. The peak is the process's own
``VmHWM``: Linux carries ``ru_maxrss`` across ``execve`` from the forked parent (a
large pytest process), which would hide the growth.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node_agent.drivers.base import PrintOutcome
from node_agent.drivers.serial import SerialDriver
from node_agent.jobfile import MAX_LINE_BYTES, GcodeFileError, JobChanged, SafeJob, check_file
from node_agent.safety import JobRefused, SafetyLimits
from node_agent.testing import simulated_printer

ROOT = Path(__file__).resolve().parents[2]
MK3 = SafetyLimits(max_hotend_c=280, max_bed_c=110, build_volume_mm=(250, 210, 210))
MOVES = [f"G1 X{10 + i % 100}.5 Y{10 + (i * 7) % 100}.25 E{i * 0.02:.4f} F1800" for i in range(300)]
END = ("M104 S0", "M140 S0", "M107", "G91", "G1 Z10 F600", "G90", "M84")


def write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return str(path)


def replace_line_keeping_size_and_mtime(path: str, lineno: int, new: str) -> None:
    """Tamper with a checked file the way an attacker would: same size, same mtime."""
    st = os.stat(path)
    lines = Path(path).read_text(encoding="latin-1").split("\n")
    old = lines[lineno - 1]
    assert len(new) <= len(old)
    lines[lineno - 1] = new.ljust(len(old))
    Path(path).write_text("\n".join(lines), encoding="latin-1")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size


def test_a_file_is_checked_whole_and_sealed(tmp_path: Path) -> None:
    path = write(tmp_path / "cube.gcode", ["G28", ";LAYER:0", *MOVES[:10], ";LAYER:1", *MOVES[10:]])
    job = check_file(path, MK3)
    assert (job.name, job.commands, job.layer_starts, job.layer_numbers) == (
        "cube.gcode", 301, (1, 11), (0, 1))
    assert job.commands_before(0) == 0 and job.commands_before(job.size) == 301
    assert job.layer_at(0) is None and job.layer_at(5) == 0 and job.layer_at(300) == 1
    assert [c for _, c in job.stream()] == ["G28", *MOVES]
    with pytest.raises(TypeError, match="only from node_agent.jobfile.check_file"):
        SafeJob(*[getattr(job, f) for f in ("name", "path", "limits", "commands", "size",
                                            "sha256", "layer_starts", "layer_numbers",
                                            "progress")], job._identity)


def test_the_command_before_a_file_position_is_the_last_one_that_ends_there(tmp_path: Path) -> None:
    """What OctoPrint's printer works on when it reports ``filepos`` (the stuck-job ceiling's command)."""
    path = tmp_path / "pos.gcode"
    path.write_bytes(b"\xef\xbb\xbfM190 S60\r\n; wait\r\n\r\nM109 S200 ; hot\r\nG1 X1")  # no newline at the end
    job = check_file(str(path), MK3)
    ends = [len(b"\xef\xbb\xbfM190 S60\r\n"), len(b"\xef\xbb\xbfM190 S60\r\n; wait\r\n\r\nM109 S200 ; hot\r\n")]
    assert job.command_before(0) == job.command_before(ends[0] - 1) == ""
    assert job.command_before(ends[0]) == job.command_before(ends[1] - 1) == "M190 S60"
    assert job.command_before(ends[1]) == job.command_before(job.size - 1) == "M109 S200"
    assert job.command_before(job.size) == job.command_before(job.size + 99) == "G1 X1"
    long_path = tmp_path / "long.gcode"  # more than a window of comments: nothing within reach
    long_path.write_bytes(b"G28\n" + b"; filler\n" * (MAX_LINE_BYTES // 9 + 1) + b"G1 X2\n")
    long_job = check_file(str(long_path), MK3)
    assert long_job.command_before(long_job.size - 6) == "" and long_job.command_before(long_job.size) == "G1 X2"


def test_refusals_name_every_line_before_anything_is_sent(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.gcode", ["G28", "M 112", *MOVES[:5], "M810 M500", "G1 Z-1"])
    with pytest.raises(JobRefused) as caught:
        check_file(path, MK3)
    assert [v.line for v in caught.value.violations] == [2, 8, 9]


def test_a_line_longer_than_the_bound_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "long.gcode"
    path.write_bytes(b"G28\n; " + b"x" * (2 * MAX_LINE_BYTES) + b"\nG1 X1\n")
    with pytest.raises(JobRefused, match=f"line 2: .*longer than {MAX_LINE_BYTES} bytes"):
        check_file(str(path), MK3)


def test_windows_line_endings_a_byte_order_mark_and_utf8_comments_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "win.gcode"
    path.write_bytes(b"\xef\xbb\xbfG28\r\n; W\xc3\xbcrfel\r\nG1 X10 Y10\r\n")
    job = check_file(str(path), MK3)
    assert [c for _, c in job.stream()] == ["G28", "G1 X10 Y10"]
    assert job.commands_before(job.size) == 2


def test_unreadable_files_are_file_errors(tmp_path: Path) -> None:
    with pytest.raises(GcodeFileError, match="no such file"):
        check_file(str(tmp_path / "none.gcode"), MK3)
    with pytest.raises(GcodeFileError, match="not a regular file"):
        check_file(str(tmp_path), MK3)
    os.mkfifo(tmp_path / "fifo.gcode")  # opening it must not wait for a writer
    with pytest.raises(GcodeFileError, match="not a regular file"):
        check_file(str(tmp_path / "fifo.gcode"), MK3)


def test_a_file_changed_after_its_check_is_not_streamed_on(tmp_path: Path) -> None:
    path = write(tmp_path / "job.gcode", ["G28", *MOVES])
    job = check_file(path, MK3)
    replace_line_keeping_size_and_mtime(path, 100, "M500")
    stream = job.stream()
    sent = [next(stream) for _ in range(99)]
    with pytest.raises(JobChanged, match="line 100 changed after the safety check"):
        next(stream)
    assert all(cmd != "M500" for _, cmd in sent)
    # A visible change (size, mtime) is caught when the stream opens.
    Path(path).write_text("G28\nM500\n", encoding="ascii")
    with pytest.raises(JobChanged, match="changed after the safety check"):
        next(job.stream())


def test_the_serial_driver_stops_a_job_whose_file_changed(tmp_path: Path) -> None:
    path = write(tmp_path / "job.gcode", ["G28", *MOVES])
    job = check_file(path, MK3)
    replace_line_keeping_size_and_mtime(path, 200, "M502")

    async def scenario() -> None:
        async with simulated_printer() as fw:
            driver = SerialDriver("sim", fw.port, 115200)
            try:
                await driver.connect()
                result = await asyncio.wait_for(driver.print_job(job), 60)
            finally:
                await driver.close()
            assert result.outcome is PrintOutcome.FAILED and not result.retryable
            assert "line 200 changed after the safety check" in (result.reason or "")
            accepted = fw.stats.accepted
            assert "M502" not in accepted and MOVES[197] in accepted
            assert MOVES[198] not in accepted  # line 200 is MOVES[198]
            tail = accepted[accepted.index(MOVES[197]):]
            assert all(c in tail for c in END), tail  # cancelled with the safe end sequence

    asyncio.run(scenario())


_MEASURE = """
import json, resource, sys
mode, path = sys.argv[1], sys.argv[2]
from node_agent.jobfile import check_file
from node_agent.safety import SafetyLimits

def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

before = peak_kib()
if mode == "stream":
    job = check_file(path, SafetyLimits(280, 110, (250, 210, 210)))
    commands = job.prepared().commands  # the drivers' read path
    count = sum(1 for i in range(len(commands)) if commands[i])
else:  # the reference: what the node did before (read the file, split it into lines)
    with open(path, encoding="ascii") as fh:
        count = len(fh.read().splitlines())
after = peak_kib()
print(json.dumps({"grew_kib": after - before, "count": count,
                  "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _measure(mode: str, path: Path) -> dict[str, int]:  # {"grew_kib", "count", ...}
    done = subprocess.run([sys.executable, "-c", _MEASURE, mode, str(path)], cwd=ROOT,
                          capture_output=True, text=True, check=True, timeout=300)
    result: dict[str, int] = json.loads(done.stdout)
    return result


def test_a_large_file_is_checked_and_streamed_with_bounded_memory(tmp_path: Path) -> None:
    # 64 MiB: 20,000 moves between slicer-style comment blocks (thumbnails, config).
    path = tmp_path / "large.gcode"
    padding = ("; " + "thumbnail-data-" * 130 + "\n") * 16  # ~31 KiB per block
    with path.open("w", encoding="ascii") as fh:
        fh.write("G28\n")
        while fh.tell() < 64 << 20:
            fh.write(padding)
            fh.write("".join(f"{m}\n" for m in MOVES[:10]))
    streamed = _measure("stream", path)
    reference = _measure("read", path)
    size_kib = path.stat().st_size // 1024
    print(f"\nRSS growth: streamed {streamed['grew_kib']} KiB, read whole "
          f"{reference['grew_kib']} KiB, file {size_kib} KiB")
    assert reference["grew_kib"] > size_kib  # the measure sees a whole-file read
    assert streamed["grew_kib"] < 16 * 1024, streamed
    assert streamed["count"] > 20_000
