"""``bpf_timer_init``/``set_callback``/``start``/``cancel`` driven by the host's clock
(``kernel/bpf/helpers.c``).

A ``struct bpf_timer`` lives in a map value (the verifier checks where). Its kernel state
(``struct bpf_hrtimer``: clock, callback program, expiry) is kept here, per instance, keyed
by the address of the ``bpf_timer`` — stable while the element exists. When a timer
expires its callback subprogram runs as ``callback(map, key, value)``, like the kernel's
``bpf_timer_cb``.

Time comes from the instance's :class:`BpfTimers` (``kernel.bpf_timers``):

- by default a *virtual* clock the host advances: ``kernel.bpf_timers.advance(ns)`` fires,
  in expiry order, every timer due by then (deterministic, for tests and replays);
  :meth:`BpfTimers.run_due` fires what is due at the current virtual time;
- or real time: :meth:`BpfTimers.start` runs a daemon thread firing timers at their
  ``CLOCK_MONOTONIC`` deadlines, until :meth:`BpfTimers.stop`.

Errnos are the kernel's: init with an unknown clock → ``-EINVAL``, twice → ``-EBUSY``;
set_callback/start/cancel on an uninitialised timer → ``-EINVAL``; start with unknown
flags or without a callback → ``-EINVAL``; cancel from the timer's own callback →
``-EDEADLK``; cancel returns 1 when it stopped a pending timer, else 0, and drops the
callback (a later start is ``-EINVAL`` until ``set_callback`` again), as the kernel does.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pybpf.runtime.context import RunContext

M64 = (1 << 64) - 1
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME = 0, 1, 7
MAX_CLOCKS = 16
BPF_F_TIMER_ABS = 1 << 0
BPF_F_TIMER_CPU_PIN = 1 << 1


def _neg(err: int) -> int:
    return (-err) & M64


@dataclass
class HrTimer:
    """``struct bpf_hrtimer``: one initialised ``bpf_timer``."""

    addr: int
    map_addr: int
    clockid: int
    prog: Any = None
    runner: Any = None
    callback_pc: int = -1
    expires: int | None = None  # ns on the instance clock; None: not queued
    seq: int = 0  # bumps on every (re)start/cancel: stale heap entries are skipped
    cpu: int = 0


class BpfTimers:
    """The timers of one instance and the clock that drives them (module docstring)."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.timers: dict[int, HrTimer] = {}
        self._heap: list[tuple[int, int, int, int]] = []  # (expires, order, seq, addr)
        self._order = itertools.count()
        self._virtual_ns = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.lock = threading.RLock()
        self.running: HrTimer | None = None  # the timer whose callback runs now
        self.fired = 0

    # -- the clock --------------------------------------------------------------------
    @property
    def realtime(self) -> bool:
        return self._thread is not None

    def now(self) -> int:
        return time.monotonic_ns() if self.realtime else self._virtual_ns

    def advance(self, ns: int) -> int:
        """Move the virtual clock ``ns`` forward, firing due timers; how many fired."""
        if self.realtime:
            raise RuntimeError("the timers run on real time (call stop() first)")
        if ns < 0:
            raise ValueError("time only moves forward")
        target = self._virtual_ns + ns
        fired = 0
        while True:
            with self.lock:
                nxt = self._next_due(target)
                if nxt is None:
                    break
                self._virtual_ns = max(self._virtual_ns, nxt.expires or 0)
            fired += self._fire(nxt)
        self._virtual_ns = target
        return fired

    def run_due(self) -> int:
        """Fire every timer due now (virtual clock)."""
        return self.advance(0)

    def start(self) -> None:
        """Fire timers on real time from a daemon thread."""
        if self._thread is not None:
            return
        with self.lock:
            base = time.monotonic_ns() - self._virtual_ns
            self._heap = [(e + base, o, s, a) for e, o, s, a in self._heap]
            heapq.heapify(self._heap)
            for t in self.timers.values():
                if t.expires is not None:
                    t.expires += base
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="pybpf-bpf-timers",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                nxt = self._next_due(time.monotonic_ns())
                wait = None
                if nxt is None and self._heap:
                    wait = max(0.0, (self._heap[0][0] - time.monotonic_ns()) / 1e9)
            if nxt is not None:
                self._fire(nxt)
                continue
            self._wake.wait(timeout=wait if wait is not None else 0.5)
            self._wake.clear()

    # -- queue ------------------------------------------------------------------------
    def _next_due(self, limit: int) -> HrTimer | None:
        while self._heap and self._heap[0][0] <= limit:
            _e, _o, seq, addr = heapq.heappop(self._heap)
            t = self.timers.get(addr)
            if t is not None and t.seq == seq and t.expires is not None:
                return t
        return None

    def arm(self, t: HrTimer, expires: int) -> None:
        with self.lock:
            t.seq += 1
            t.expires = expires
            heapq.heappush(self._heap, (expires, next(self._order), t.seq, t.addr))
        self._wake.set()

    def cancel(self, t: HrTimer) -> int:
        with self.lock:
            was = t.expires is not None
            t.seq += 1
            t.expires = None
            return int(was)

    def _fire(self, t: HrTimer) -> int:
        """``bpf_timer_cb``: run the callback on (map, key, value) of the timer's element."""
        from pybpf.maps.core import map_from_addr

        with self.lock:
            t.expires = None
            prog, runner, pc = t.prog, t.runner, t.callback_pc
        bmap: Any = map_from_addr(t.map_addr)
        if prog is None or runner is None or bmap is None or getattr(prog, "bpf_func", 1) is None:
            return 0
        prev, self.running = self.running, t
        try:
            ran = run_element_callback(self.kernel, bmap, t.addr, t.map_addr, prog, runner, pc,
                                       t.cpu)
        finally:
            self.running = prev
        if not ran:  # the element is gone: the kernel freed its timer with it
            with self.lock:
                self.timers.pop(t.addr, None)
        self.fired += ran
        return ran


def run_element_callback(kernel: Any, bmap: Any, field_addr: int, map_addr: int, prog: Any,
                         runner: Any, pc: int, cpu: int) -> int:
    """Run callback ``pc`` as ``callback(map, key, value)`` of the element of ``bmap`` whose
    value holds ``field_addr`` (a timer's, a workqueue's): 1, or 0 when no element does."""
    value_size = int(getattr(bmap, "value_size", 0))
    ran = [0]

    def visit(key_addr: int, value_addr: int) -> int:
        if not value_addr <= field_addr < value_addr + value_size:
            return 0
        rc = RunContext(kernel=kernel, prog=prog, cpu=cpu)
        rc.runner = runner
        runner.call_subprog(rc, pc, map_addr, key_addr, value_addr, 0, 0)
        ran[0] = 1
        return 1

    bmap.ops.map_for_each_callback(bmap, visit, cpu)
    return ran[0]


def bpf_timers(kernel: Any) -> BpfTimers:
    """The instance's :class:`BpfTimers` (created on first use)."""
    return kernel.subsystem("_bpf_timers", BpfTimers)


# ------------------------------------------------------------------------ helpers
def _timers(ctx: RunContext) -> BpfTimers | None:
    return bpf_timers(ctx.kernel) if ctx.kernel is not None else None


def timer_init(ctx: RunContext, timer: int, map_addr: int, flags: int, *_: int) -> int:
    clockid = flags & (MAX_CLOCKS - 1)
    if flags >= MAX_CLOCKS or clockid not in (CLOCK_MONOTONIC, CLOCK_REALTIME,
                                              CLOCK_BOOTTIME):
        return _neg(errno.EINVAL)
    timers = _timers(ctx)
    if timers is None:
        return _neg(errno.EOPNOTSUPP)
    with timers.lock:
        if timer in timers.timers:
            return _neg(errno.EBUSY)
        timers.timers[timer] = HrTimer(timer, map_addr, clockid, cpu=ctx.cpu)
    return 0


def timer_set_callback(ctx: RunContext, timer: int, callback: int, *_: int) -> int:
    from pybpf.helpers.impls import callback_pc

    timers = _timers(ctx)
    t = timers.timers.get(timer) if timers is not None else None
    if t is None:
        return _neg(errno.EINVAL)
    t.prog, t.runner, t.callback_pc = ctx.prog, ctx.runner, callback_pc(ctx, callback)
    return 0


def timer_start(ctx: RunContext, timer: int, nsecs: int, flags: int, *_: int) -> int:
    if flags & ~(BPF_F_TIMER_ABS | BPF_F_TIMER_CPU_PIN):
        return _neg(errno.EINVAL)
    timers = _timers(ctx)
    t = timers.timers.get(timer) if timers is not None else None
    if timers is None or t is None or t.prog is None:
        return _neg(errno.EINVAL)
    expires = nsecs if flags & BPF_F_TIMER_ABS else timers.now() + nsecs
    timers.arm(t, expires)
    return 0


def timer_cancel(ctx: RunContext, timer: int, *_: int) -> int:
    timers = _timers(ctx)
    t = timers.timers.get(timer) if timers is not None else None
    if timers is None or t is None:
        return _neg(errno.EINVAL)
    if timers.running is t:
        return _neg(errno.EDEADLK)
    t.prog = t.runner = None  # drop_prog_refcnt: start needs a new set_callback
    return timers.cancel(t)


IMPLS: dict[int, Callable[..., int]] = {
    169: timer_init,
    170: timer_set_callback,
    171: timer_start,
    172: timer_cancel,
}
