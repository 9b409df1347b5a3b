"""The hub process's collector settings (hub/runtime.py): start-up objects frozen, fewer collections."""

from __future__ import annotations

import gc

from hub.runtime import GC_THRESHOLDS, tune_gc


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
