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

:func:`tune_malloc` keeps the C library from handing the memory of large buffers back to the kernel
between uses. A blob upload passes 512 KiB messages through gRPC, the event loop and a writer thread;
with glibc's defaults (buffers over 128 KiB mapped one by one at first, the heap's free top returned
past twice that) each new message lands on freshly mapped pages, and the kernel faults in and zeroes
them: a 200 MB push cost the hub ~7,000 page faults. With the thresholds below, the same buffers are
reused from the heap (~100 faults) and the hub spends ~8 % less CPU on the push, for at most
MALLOC_TRIM_BYTES of freed heap kept.
"""

from __future__ import annotations

import ctypes
import gc
import sys

__all__ = ["GC_THRESHOLDS", "MALLOC_MMAP_BYTES", "MALLOC_TRIM_BYTES", "SWITCH_INTERVAL_S", "tune_gc", "tune_malloc",
           "tune_switching"]

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


MALLOC_MMAP_BYTES = 16 << 20
"""mallopt M_MMAP_THRESHOLD: buffers from this size on get pages of their own (twice the largest gRPC
message the hub takes, hub.api.server.MAX_MESSAGE_BYTES; glibc's default starts at 128 KiB)."""
MALLOC_TRIM_BYTES = 32 << 20
"""mallopt M_TRIM_THRESHOLD: free memory at the top of the heap kept for reuse (glibc: 128 KiB)."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def tune_malloc() -> bool:
    """Call once at start-up: large buffers are reused from the heap instead of mapped afresh each time.

    Returns:
        Whether the C library took both settings (glibc does; elsewhere nothing changes).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_BYTES))
