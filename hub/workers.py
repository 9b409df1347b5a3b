"""Where the hub's expensive work runs, so no caller can starve the others.

* :class:`CheckPool`: the push-time printability check runs in a few worker
  *processes* (at most ``size`` at once), each with a CPU-time and an address
  space limit set in the child (``setrlimit``), and a wall timeout after which
  the child is killed, not left running. A check that is killed or over a limit
  becomes a ``check_aborted`` finding.
* :class:`OwnLoop`: a coroutine (the token check) runs on its own event loop
  thread, whose blocking calls use that loop's own thread pool, never the pool
  that pushes, searches and uploads fill.
* :class:`CallGate`: a per-account limit on concurrent calls of an expensive RPC;
  :class:`RateGate`: a per-account token bucket per rate class; :class:`FailureGate`:
  a per-address budget of failed authentications; :class:`Admission` holds them
  (the rules and numbers are in hub.limits). A call over a limit waits a little
  for its turn, then is refused RESOURCE_EXHAUSTED with a RetryInfo hint.

The child side of the pool is this module run as ``python -m hub.workers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from hub.errors import HubError
from hub.limits import (
    ADMISSION_WAIT_S,
    CONCURRENT_CALLS,
    DEFAULT_RATES,
    MAX_PEERS_TRACKED,
    MAX_WAITING,
    RATE_CLASSES,
    REFUSAL_COST,
    RateLimit,
    TokenBucket,
    auth_failures_limited,
    rate_limited,
    too_busy,
    too_many_waiting,
)

__all__ = ["Admission", "CallGate", "CheckLimits", "CheckPool", "FailureGate", "OwnLoop", "RateGate", "aborted_report",
           "check_mesh"]

T = TypeVar("T")
MESH_CHECK = "hub.workers:check_mesh"


def check_mesh(blob_path: str, name: str) -> dict[str, Any]:
    """The printability check of one mesh blob, as plain data (runs in a worker process)."""
    from slicer_bridge.printability import check_file

    # The loader picks the format by extension, and blobs have none: link under the real name.
    with tempfile.TemporaryDirectory(prefix="spime-check-") as tmp:
        link = Path(tmp) / Path(name).name
        os.symlink(blob_path, link)
        return check_file(link).to_dict()


def aborted_report(name: str, reason: str, code: str = "check_aborted") -> dict[str, Any]:
    """A report saying the check did not finish (the push itself is not refused)."""
    return {"path": name, "ok": False, "findings": [{
        "code": code, "severity": "warning", "details": {},
        "message": f"printability check stopped: {reason}; run `spime check` on the file locally",
    }]}


def _cores() -> int:
    """CPUs this process may run on (its affinity, as a container's cpuset sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 2


@dataclass(frozen=True, slots=True)
class CheckLimits:
    """Limits of one check.

    Attributes:
        size: worker processes (checks running at once); default one fewer than the cores, so the
            serving process always has one (the workers also run at low CPU priority).
        cpu_s: CPU seconds one check may use before the kernel stops it (RLIMIT_CPU).
        memory_bytes: address space of a worker process (RLIMIT_AS).
        timeout_s: wall time of one check, waiting for a worker included; then the child is killed.
    """

    size: int = dataclasses.field(default_factory=lambda: max(1, _cores() - 1))
    cpu_s: int = 60
    memory_bytes: int = 2 << 30
    timeout_s: float = 60.0


class _Worker:
    """One child process answering one JSON line per JSON line it is sent."""

    def __init__(self, target: str, limits: CheckLimits) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
               "SPIME_HUB_PID": str(os.getpid()), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hub.workers", target, str(limits.cpu_s), str(limits.memory_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )

    def exchange(self, args: list[str]) -> dict[str, Any] | None:
        """Send one job and read its answer (blocking); None when the child died."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(json.dumps(args).encode() + b"\n")
            stdin.flush()
            line = stdout.readline()
        except (OSError, ValueError):
            return None
        answer: dict[str, Any] | None = json.loads(line) if line else None
        return answer

    def why_dead(self) -> str:
        code = self.process.wait()
        if code == -signal.SIGXCPU:
            return "it used more CPU time than the hub allows for one file"
        if code == -signal.SIGKILL:
            return "it was killed (too slow or too large)"
        return f"the checker exited with status {code}"

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()


class CheckPool:
    """Runs ``target(blob_path, name) -> dict`` in worker processes with limits.

    Workers start on first use and are reused; a worker that times out, crosses
    a limit or dies is killed and replaced by a fresh one on the next check.
    """

    def __init__(self, limits: CheckLimits = CheckLimits(), target: str = MESH_CHECK) -> None:
        self.limits, self.target = limits, target
        self._threads = ThreadPoolExecutor(limits.size, thread_name_prefix="check")
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    def pids(self) -> list[int]:
        """Process ids of the live workers (tests check none is left behind)."""
        with self._lock:
            return [w.process.pid for w in self._all]

    async def check(self, blob_path: str, name: str) -> dict[str, Any]:
        """The report of one file; a check that cannot finish becomes a ``check_aborted`` finding."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limits.size)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.timeout_s
        try:
            await asyncio.wait_for(self._slots.acquire(), self.limits.timeout_s)
        except TimeoutError:
            return aborted_report(name, f"the hub's {self.limits.size} check worker(s) stayed busy for "
                                        f"{self.limits.timeout_s:.0f} s", "not_checked")
        try:
            return await self._run(blob_path, name, max(0.0, deadline - loop.time()))
        finally:
            self._slots.release()

    async def _run(self, blob_path: str, name: str, timeout: float) -> dict[str, Any]:
        worker = self._take()
        job = asyncio.get_running_loop().run_in_executor(self._threads, worker.exchange, [blob_path, name])
        try:
            answer = await asyncio.wait_for(asyncio.shield(job), timeout)
        except TimeoutError:
            await self._discard(worker, job)
            return aborted_report(name, f"it took longer than {self.limits.timeout_s:.0f} s")
        except BaseException:
            await self._discard(worker, job)
            raise
        if answer is None or "aborted" in answer:
            reason = answer["aborted"] if answer else worker.why_dead()
            await self._discard(worker, job)
            return aborted_report(name, reason)
        self._give_back(worker)
        return answer.get("report") or aborted_report(name, str(answer.get("error", "no report")), "check_failed")

    def _take(self) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            worker = _Worker(self.target, self.limits)
            self._all.add(worker)
            return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if self._closed:
                self._all.discard(worker)
            else:
                self._idle.append(worker)
                return
        worker.kill()

    async def _discard(self, worker: _Worker, job: asyncio.Future[Any]) -> None:
        with self._lock:
            self._all.discard(worker)
            with contextlib.suppress(ValueError):
                self._idle.remove(worker)
        worker.kill()
        with contextlib.suppress(Exception):
            await job  # the exchange thread sees EOF once the child is gone

    def close(self) -> None:
        """Kill every worker and wait for them (idempotent; safe from any thread)."""
        with self._lock:
            self._closed = True
            workers, self._idle = list(self._all), []
            self._all.clear()
        for worker in workers:
            worker.kill()
        self._threads.shutdown(wait=True, cancel_futures=True)


class OwnLoop:
    """An event loop on its own thread: coroutines run there, with their own thread pool."""

    def __init__(self, name: str, threads: int = 4) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.set_default_executor(ThreadPoolExecutor(threads, thread_name_prefix=name))
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def wrap(self, fn: Callable[[str], Coroutine[Any, Any, T]]) -> Callable[[str], Awaitable[T]]:
        """``fn`` made to run on this loop, awaited from the caller's loop."""
        async def run(arg: str) -> T:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fn(arg), self._loop))

        return run

    def close(self) -> None:
        """Stop the loop and its threads (idempotent)."""
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        executor = self._loop._default_executor  # type: ignore[attr-defined]
        self._loop.close()
        if executor is not None:
            executor.shutdown(wait=True)


class CallGate:
    """Counts each account's running calls of each expensive method.

    A call over the method's maximum waits up to ``max_wait_s`` for a slot (first come,
    first served; at most ``max_waiting`` of one account and method wait), then is refused.
    """

    def __init__(self, maxima: Mapping[str, int], max_wait_s: float = 0.0, max_waiting: int = MAX_WAITING) -> None:
        self._maxima = dict(maxima)
        self._max_wait_s, self._max_waiting = max_wait_s, max_waiting
        self._running: Counter[tuple[str, str]] = Counter()
        self._waiting: dict[tuple[str, str], deque[asyncio.Future[None]]] = {}

    def limits(self, method: str) -> bool:
        """Whether ``method`` has a maximum of concurrent calls."""
        return method in self._maxima

    @contextlib.asynccontextmanager
    async def enter(self, method: str, account: str) -> AsyncIterator[None]:
        """Hold one of the account's slots of ``method`` while the body runs.

        Raises:
            ResourceExhausted: the account already runs as many as allowed, and no slot
                became free within ``max_wait_s`` (or too many of its calls wait already).
        """
        key, maximum = (account, method), self._maxima.get(method)
        if maximum is None:
            yield
            return
        if self._running[key] >= maximum:
            await self._wait(key)  # a finishing call hands its slot over: the count stays
        else:
            self._running[key] += 1
        try:
            yield
        finally:
            self._release(key)

    async def _wait(self, key: tuple[str, str]) -> None:
        account, method = key
        queue = self._waiting.setdefault(key, deque())
        if self._max_wait_s <= 0 or len(queue) >= self._max_waiting:
            if not queue:
                del self._waiting[key]
            if self._max_wait_s <= 0:
                raise too_busy(method, account, self._running[key])
            raise too_many_waiting(f"concurrent {method}", account, len(queue))
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(turn)
        try:
            await asyncio.wait_for(asyncio.shield(turn), self._max_wait_s)
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._release(key)  # handed a slot as we gave up: pass it on
            else:
                turn.cancel()
                with contextlib.suppress(ValueError):
                    queue.remove(turn)
                if not queue and self._waiting.get(key) is queue:
                    del self._waiting[key]
            if isinstance(exc, TimeoutError):
                raise too_busy(method, account, self._running[key]) from None
            raise

    def _release(self, key: tuple[str, str]) -> None:
        queue = self._waiting.get(key)
        while queue:
            turn = queue.popleft()
            if not turn.done():
                turn.set_result(None)
                if not queue:
                    del self._waiting[key]
                return
        self._waiting.pop(key, None)
        self._running[key] -= 1
        if not self._running[key]:
            del self._running[key]


class RateGate:
    """A token bucket per account and rate class (hub.limits.RATE_CLASSES).

    A call whose token is not there yet waits for it, up to ``max_wait_s``; one that
    would wait longer is refused after waiting ``max_wait_s`` (an answer at once would
    invite a tight retry loop); one that finds ``max_waiting`` of its account's calls
    waiting is refused at once.
    """

    def __init__(self, rates: Mapping[str, RateLimit] = DEFAULT_RATES, classes: Mapping[str, str] = RATE_CLASSES,
                 max_wait_s: float = ADMISSION_WAIT_S, max_waiting: int = MAX_WAITING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rates, self._classes = dict(rates), dict(classes)
        self._max_wait_s, self._max_waiting, self._clock = max_wait_s, max_waiting, clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._waiting: Counter[tuple[str, str]] = Counter()
        self._admitted = 0

    def limits(self, method: str) -> bool:
        """Whether ``method`` belongs to a rate class with a rate."""
        rate_class = self._classes.get(method)
        return rate_class is not None and self.rates.get(rate_class) is not None

    async def admit(self, method: str, account: str) -> None:
        """Return when the call may run (at once, or after waiting for its token).

        Raises:
            ResourceExhausted: over the account's rate of the method's class, naming the limit.
        """
        rate_class = self._classes.get(method)
        rate = self.rates.get(rate_class) if rate_class is not None else None
        if rate is None or rate_class is None:
            return
        key, now = (account, rate_class), self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate)
        if self._waiting[key] >= self._max_waiting:
            raise too_many_waiting(f"rate {rate_class}", account, self._waiting[key])
        wait = bucket.reserve(now, self._max_wait_s)
        self._admitted += 1
        if self._admitted % 1024 == 0:
            self._forget_idle(now)
        if wait != 0.0:
            self._waiting[key] += 1
            try:
                await asyncio.sleep(self._max_wait_s if wait is None else wait)
            finally:
                self._waiting[key] -= 1
                if not self._waiting[key]:
                    del self._waiting[key]
        if wait is None:
            raise rate_limited(rate_class, account, rate, bucket.retry_after(self._clock()))

    def charge(self, method: str, account: str) -> None:
        """Take the class's REFUSAL_COST more from the account's bucket of the method's class (a refused call)."""
        rate_class = self._classes.get(method)
        bucket = self._buckets.get((account, rate_class)) if rate_class is not None else None
        if bucket is not None and rate_class is not None and REFUSAL_COST.get(rate_class):
            bucket.charge(self._clock(), REFUSAL_COST[rate_class])

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if b.idle(now) and k not in self._waiting]:
            del self._buckets[key]


class FailureGate:
    """A budget of failed authentications per peer address (rate class ``auth``, hub.limits).

    Only failures take from it; an address with nothing left is refused before its token is
    checked. At most ``max_peers`` addresses have a bucket of their own; the failures of others
    share one (OVERFLOW) while the table is full of addresses that are still paying off theirs.
    """

    OVERFLOW = "addresses past the hub's tracking limit"

    def __init__(self, rate: RateLimit | None, max_wait_s: float = ADMISSION_WAIT_S, max_waiting: int = MAX_WAITING,
                 max_peers: int = MAX_PEERS_TRACKED, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self._max_wait_s, self._max_waiting, self._max_peers = rate, max_wait_s, max_waiting, max_peers
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._waiting: Counter[str] = Counter()
        self._failures, self._swept = 0, -math.inf

    def __len__(self) -> int:
        return len(self._buckets)

    async def admit(self, peer: Callable[[], str]) -> None:
        """Return when a call from ``peer()`` may have its token checked (at once while its budget lasts;
        ``peer`` is only asked when some address has failed lately).

        Raises:
            ResourceExhausted: the address spent its budget (after waiting a little), naming the limit.
        """
        if self.rate is None or not self._buckets:
            return
        key = peer()
        bucket = self._buckets.get(key)
        if bucket is None:
            key, bucket = self.OVERFLOW, self._buckets.get(self.OVERFLOW)
            if bucket is None:
                return
        if bucket.wait_for_token(self._clock()) == 0.0:
            return
        # Spent: refused (after the usual wait, against a tight retry loop), and each refused call
        # costs more, so an address that keeps calling stays refused while one that stops soon may again.
        bucket.charge(self._clock(), REFUSAL_COST.get("auth", 0))
        if self._waiting[key] >= self._max_waiting:
            raise too_many_waiting("rate auth", f"peer {key}", self._waiting[key])
        self._waiting[key] += 1
        try:
            await asyncio.sleep(self._max_wait_s)
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
        raise auth_failures_limited(key, self.rate, bucket.retry_after(self._clock()))

    def failed(self, peer: str) -> None:
        """A call from ``peer`` presented a token that matches no live account: take one from its budget."""
        if self.rate is None:
            return
        now = self._clock()
        bucket = self._buckets.get(peer)
        if bucket is None:
            if len(self._buckets) >= self._max_peers:
                self._forget_paid(now)
            key = peer if len(self._buckets) < self._max_peers else self.OVERFLOW
            bucket = self._buckets.setdefault(key, TokenBucket(self.rate))
        bucket.charge(now, 1)
        self._failures += 1
        if self._failures % 1024 == 0:
            self._forget_paid(now)

    def _forget_paid(self, now: float) -> None:
        """Drop the buckets that are full again (at most once a second: a full table is not scanned per failure)."""
        if now - self._swept < 1.0:
            return
        self._swept = now
        for key in [k for k, b in self._buckets.items() if b.idle(now) and k not in self._waiting]:
            del self._buckets[key]


_ADMITTED: contextlib.nullcontext[None] = contextlib.nullcontext()


class Admission:
    """Who may start a call now: the account's rate of the call's class, then its concurrency; and
    whose token is checked at all (the peer address's budget of failed authentications)."""

    def __init__(self, rates: Mapping[str, RateLimit] = DEFAULT_RATES, concurrent: Mapping[str, int] = CONCURRENT_CALLS,
                 max_wait_s: float = ADMISSION_WAIT_S, max_waiting: int = MAX_WAITING) -> None:
        self.rates = RateGate(rates, max_wait_s=max_wait_s, max_waiting=max_waiting)
        self.gate = CallGate(concurrent, max_wait_s=max_wait_s, max_waiting=max_waiting)
        self.failures = FailureGate(rates.get("auth"), max_wait_s=max_wait_s, max_waiting=max_waiting)

    def enter(self, method: str, account: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the call's admission while the body runs (``method`` is its short name, "Designs.Push").

        A method under neither a rate nor a concurrency limit is admitted by a shared empty context:
        an agent's Session stream would otherwise hold two async generators for its whole life, and a
        reconnect storm of 10,000 agents made and collected them all at once.

        Raises:
            ResourceExhausted: over a rate or concurrency limit (hub.limits), after waiting a little.
        """
        if not (self.rates.limits(method) or self.gate.limits(method)):
            return _ADMITTED
        return self._enter(method, account)

    @contextlib.asynccontextmanager
    async def _enter(self, method: str, account: str) -> AsyncIterator[None]:
        await self.rates.admit(method, account)
        async with self.gate.enter(method, account):
            try:
                yield
            except HubError:
                self.rates.charge(method, account)  # refused by the hub: a flood of bad requests slows down
                raise


# --- the child process -----------------------------------------------------------------

def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when the hub (the thread that started it) dies (Linux)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the hub died before prctl took effect
        os._exit(1)


def _limit_child(cpu_s: int, memory_bytes: int) -> None:
    import resource

    os.nice(10)  # checks yield the CPU to the hub's event loop and database work
    # SCHED_BATCH: the scheduler treats the check as CPU-bound, so a waking serving thread of the hub
    # preempts it at once instead of waiting for its time slice to end (Linux; elsewhere nice only).
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    _cpu_budget(cpu_s)


def _cpu_budget(cpu_s: int) -> None:
    """Allow ``cpu_s`` more CPU seconds from now (SIGXCPU ends the process past it)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime) + 1 + cpu_s
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _answer(out: IO[bytes], doc: Mapping[str, Any]) -> None:
    out.write(json.dumps(doc, default=str).encode() + b"\n")
    out.flush()


def _child(target: str, cpu_s: int, memory_bytes: int) -> None:
    _die_with_parent(int(os.environ.get("SPIME_HUB_PID", os.getppid())))
    module, _, name = target.partition(":")
    fn = getattr(importlib.import_module(module), name)
    if target == MESH_CHECK:
        importlib.import_module("slicer_bridge.printability")  # preload once, not per check
    _limit_child(cpu_s, memory_bytes)
    for line in sys.stdin.buffer:
        _cpu_budget(cpu_s)
        try:
            _answer(sys.stdout.buffer, {"report": fn(*json.loads(line))})
        except MemoryError:
            _answer(sys.stdout.buffer, {"aborted": "it needed more memory than the hub allows for one file"})
            return
        except Exception as exc:  # noqa: BLE001 - reported to the hub as a check_failed finding
            _answer(sys.stdout.buffer, {"error": f"{type(exc).__name__}: {exc}"[:500]})


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
