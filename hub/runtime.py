"""The hub process's garbage collector and thread switching, tuned for a long-running server.

CPython collects its youngest objects every 700 allocations and, every 100 of those, every object it
tracks: with the composed hub, its caches and a few thousand sessions that full collection pauses
each call in flight for tens of milliseconds (the record benchmark's p99 went from ~35 ms to 110-130
ms in one call out of fifty). :func:`tune_gc` freezes what start-up made (it is never garbage, so no
collection looks at it again) and collects young objects every 50,000 allocations: full collections
then come a thousand times less often. Garbage without cycles is freed at once as ever; only cyclic
garbage waits longer, a few MB at most.

:func:`tune_switching` shortens how long a thread keeps the GIL while another waits for it. The hub's
threads (the event loop, the database workers, gRPC's poller) each give the GIL up at every SQLite
statement and socket call and must win it back; with CPython's 5 ms a write transaction waits up to
that long after each of its statements behind the busy event loop, holding SQLite's write lock all
the while. At 1 ms (agents benchmark, 10,000 agents, six runs each way alternating): a job's creation
call p99 8.2 ms instead of 16.6 (medians of the runs), offer p99 12.4 instead of 17.9 ms, every agent
back after a drop in 13.4 s instead of 15.2.
"""

from __future__ import annotations

import gc
import sys

__all__ = ["GC_THRESHOLDS", "SWITCH_INTERVAL_S", "tune_gc", "tune_switching"]

GC_THRESHOLDS = (50_000, 20, 50)
"""gc.set_threshold: allocations before a young collection; young collections before a middle one;
middle ones before a full one."""


def tune_gc() -> None:
    """Call once the server is up: collect, freeze the survivors, raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


SWITCH_INTERVAL_S = 0.001
"""sys.setswitchinterval: how long a thread runs on while another waits for the GIL (CPython: 5 ms)."""


def tune_switching() -> None:
    """Call once the server is up: threads waiting for the GIL get it after at most SWITCH_INTERVAL_S."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
