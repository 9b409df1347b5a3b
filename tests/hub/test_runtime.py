"""The hub process's runtime settings (hub/runtime.py): start-up objects frozen, fewer collections, and
threads waiting for the GIL let in sooner."""

from __future__ import annotations

import gc
import sys

from hub.runtime import GC_THRESHOLDS, SWITCH_INTERVAL_S, tune_gc, tune_switching


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
