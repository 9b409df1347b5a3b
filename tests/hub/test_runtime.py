"""The hub process's runtime settings (hub/runtime.py): start-up objects frozen, fewer collections, and
threads waiting for the GIL let in sooner."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from hub.runtime import GC_THRESHOLDS, SWITCH_INTERVAL_S, tune_gc, tune_switching

ROOT = Path(__file__).resolve().parents[2]
# Upload-like traffic: 512 KiB messages passing through a queue of eight, as a blob writer sees them.
# Prints the page faults it caused (each a page the kernel had to map and zero).
BUFFERS = """
import collections, random, resource, sys
from hub.runtime import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc()
rng, queue = random.Random(1), collections.deque()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(400):
    queue.append(b"x" * ((512 << 10) + rng.randrange(64)))
    if len(queue) > 8:
        queue.popleft()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_tune_gc_freezes_what_exists_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    kept = [[i] for i in range(1000)]  # tracked objects alive at "start-up"
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() >= len(kept)
        assert gc.get_threshold()[0] > 50 * before[0]  # young collections far rarer than CPython's default
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_tune_switching_lets_a_waiting_thread_in_within_a_millisecond() -> None:
    before = sys.getswitchinterval()
    try:
        tune_switching()
        assert sys.getswitchinterval() == SWITCH_INTERVAL_S < before  # CPython's default is 5 ms
    finally:
        sys.setswitchinterval(before)


def _faults(mode: str) -> int:
    run = subprocess.run([sys.executable, "-c", BUFFERS, mode], cwd=ROOT, capture_output=True, text=True, check=True)
    return int(run.stdout)


def test_tune_malloc_reuses_large_buffers_instead_of_faulting_in_new_pages() -> None:
    # In a fresh process each: the settings last for the process, and pytest's own heap would blur the count.
    plain, tuned = _faults("plain"), _faults("tuned")
    assert tuned * 3 < plain, (tuned, plain)  # measured: ~1,700 (filling the queue once) against ~7,000
