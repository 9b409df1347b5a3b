"""The agent's journal on a real SQLite file: outbox, watermark, crash and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from node_agent.jobs import EventKind, InvalidTransition, JobState
from node_agent.journal import Journal, JournalError, PrinterFlags
from node_agent.messages import ArtifactRef, Attribution, Offer

ROOT = Path(__file__).resolve().parents[2]


def offer(job_id: str = "job-1", epoch: int = 1) -> Offer:
    return Offer(hub_seq=1, offer_id=f"offer-{job_id}", job_id=job_id, design="cube",
                 revision_id="r1", artifacts=(ArtifactRef("ab" * 32, 10, "mesh", "cube.stl"),),
                 parameters={"size": "20"}, material="PLA", printer_id="mk3", lease_epoch=epoch,
                 attributions=(Attribution("cube", "r1", "Cube", "CC-BY-4.0", "Ann", ("Bo",)),))


def test_offer_round_trips_and_transitions_queue_events(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db")
    job = journal.add_job(offer())
    assert job.offer == offer() and job.state is JobState.ACCEPTED
    journal.transition("job-1", JobState.PREPARING)
    first = journal.record("job-1", EventKind.DOWNLOADED, {"bytes": "10"})
    second = journal.transition("job-1", JobState.FAILED, EventKind.FAILED,
                                {"failure_reason": "slicer said no", "detected_by": "slicer"})
    assert second is not None and (first.agent_seq, second.agent_seq) == (1, 2)
    assert [e.kind for e in journal.pending()] == [EventKind.DOWNLOADED, EventKind.FAILED]
    assert journal.pending(1) == [second]
    with pytest.raises(InvalidTransition):
        journal.transition("job-1", JobState.PRINTING, EventKind.STARTED)
    assert journal.last_agent_seq() == 2 and journal.job("job-1").state is JobState.FAILED
    with pytest.raises(JournalError, match="already in the journal"):
        journal.add_job(offer())


def test_acks_trim_the_outbox_but_sequence_numbers_never_repeat(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db")
    journal.add_job(offer())
    for _ in range(3):
        journal.record("job-1", EventKind.DOWNLOADED)
    assert journal.acknowledge(2) == 2 and [e.agent_seq for e in journal.pending()] == [3]
    journal.acknowledge(3)
    journal.close()
    again = Journal.open(tmp_path / "journal.db")
    assert again.record("job-1", EventKind.DOWNLOADED).agent_seq == 4


def test_hub_commands_apply_once_and_a_failed_block_keeps_nothing(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db")
    with journal.applying(5) as fresh:
        assert fresh
        journal.add_job(offer())
    with journal.applying(5) as fresh:
        assert not fresh
    with pytest.raises(RuntimeError), journal.applying(6) as fresh:
        journal.add_job(offer("job-2"))
        raise RuntimeError("crash while applying")
    assert journal.last_hub_seq_applied() == 5 and journal.find("job-2") is None


def test_printer_flags_persist(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db")
    assert journal.printer_flags("mk3") == PrinterFlags(True, "online")
    journal.set_printer_flags("mk3", bed_clear=False)
    journal.set_printer_flags("mk3", mode="maintenance")
    with pytest.raises(ValueError, match="online, offline, maintenance"):
        journal.set_printer_flags("mk3", mode="asleep")
    journal.close()
    assert Journal.open(tmp_path / "journal.db").printer_flags("mk3") == PrinterFlags(False,
                                                                                     "maintenance")


def test_prune_keeps_final_jobs_until_their_events_are_acknowledged(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db")
    journal.add_job(offer())
    journal.transition("job-1", JobState.CANCELLED, EventKind.CANCELLED, {"reason": "x"})
    assert journal.prune() == 0
    journal.acknowledge(journal.last_agent_seq())
    assert journal.prune() == 1 and journal.jobs() == []


WRITER = textwrap.dedent("""
    import os, signal, sys
    from node_agent.jobs import EventKind, JobState
    from node_agent.journal import Journal
    from tests.node_agent.test_journal import offer
    journal = Journal.open(sys.argv[1])
    journal.add_job(offer("printing-job"))
    journal.add_job(offer("ready-job"))
    for job in ("printing-job", "ready-job"):
        journal.transition(job, JobState.PREPARING)
        journal.transition(job, JobState.READY)
    journal.update("printing-job", granted_epoch=1)
    journal.transition("printing-job", JobState.PRINTING, EventKind.STARTED, {"printer": "mk3"})
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_after_kill_9_a_running_print_is_interrupted_never_resumed(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    done = subprocess.run([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}"},
                          check=False, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    journal = Journal.open(path)
    marked = journal.recover()
    assert [j.job_id for j in marked] == ["printing-job"]
    assert journal.job("printing-job").state is JobState.INTERRUPTED
    assert journal.job("ready-job").state is JobState.READY  # nothing physical happened
    kinds = [(e.job_id, e.kind) for e in journal.pending()]
    assert kinds == [("printing-job", EventKind.STARTED), ("printing-job", EventKind.INTERRUPTED)]
    assert journal.recover() == []  # idempotent
    held = {h.job_id: (h.state, h.last_agent_seq) for h in journal.held_jobs()}
    assert held == {"printing-job": (JobState.INTERRUPTED, 2), "ready-job": (JobState.READY, 0)}
