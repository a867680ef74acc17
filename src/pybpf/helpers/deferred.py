"""Callbacks that run after the program: ``bpf_task_work`` and ``bpf_wq``.

Linux runs a task work's callback when the task next returns to user space
(``task_work_add``, ``TWA_RESUME``; ``TWA_SIGNAL`` interrupts it first) and a workqueue's
on a kworker soon after ``bpf_wq_start``. Either way the callback is
``callback(map, key, value)`` of the element holding the ``struct bpf_task_work`` /
``struct bpf_wq``, and it runs once per scheduling: scheduling a task work again while it
is pending is -EBUSY, starting a pending workqueue again does nothing.

pybpf's tasks are the threads of this process and it has no kworkers: a program "returns
to user space" when its outermost run ends, and :func:`run_deferred` (called then by
``BpfProg.run``) runs what was scheduled, in order — as the live kernel has run both by
the time ``BPF_PROG_TEST_RUN`` is back in user space and the workqueue has drained. A
callback whose element was deleted meanwhile does not run (the kernel cancels it with
the element).

The kfuncs: ``bpf_task_work_schedule_signal_impl`` / ``_resume_impl`` and ``bpf_wq_init``
/ ``bpf_wq_set_callback_impl`` / ``bpf_wq_start``, with the kernel's errnos (init twice
-EBUSY, flags -EINVAL, start before a callback is set -EINVAL).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pybpf.runtime.context import RunContext

M64 = (1 << 64) - 1


def _neg(err: int) -> int:
    return (-err) & M64


@dataclass
class Callback:
    """A callback bound to one map-value field: where to run it, and with what."""

    addr: int  # the field's address in the map value
    map_addr: int
    prog: Any
    runner: Any
    callback_pc: int
    cpu: int


class Deferred:
    """The pending callbacks and the initialised workqueues of one instance."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.lock = threading.Lock()
        self.pending: dict[int, Callback] = {}  # by field address, in scheduling order
        self.wqs: dict[int, tuple[int, Callback | None]] = {}  # wq addr: (map, callback)
        self.ran = 0

    def schedule(self, cb: Callback) -> bool:
        """Queue ``cb``; False when its field already has one pending."""
        with self.lock:
            if cb.addr in self.pending:
                return False
            self.pending[cb.addr] = cb
        return True

    def run_pending(self) -> int:
        """Run every pending callback (those scheduled meanwhile too); how many ran."""
        from pybpf.maps.core import map_from_addr

        ran = 0
        while True:
            with self.lock:
                if not self.pending:
                    return ran
                addr = next(iter(self.pending))
                cb = self.pending[addr]
            bmap: Any = map_from_addr(cb.map_addr)
            if bmap is not None and cb.prog is not None and \
                    getattr(cb.prog, "bpf_func", 1) is not None:
                ran += self._run(cb, bmap)
            with self.lock:
                if self.pending.get(addr) is cb:
                    del self.pending[addr]  # may be scheduled anew

    def _run(self, cb: Callback, bmap: Any) -> int:
        from pybpf.helpers.timer import run_element_callback

        ran = run_element_callback(self.kernel, bmap, cb.addr, cb.map_addr, cb.prog, cb.runner,
                                   cb.callback_pc, cb.cpu)
        if not ran:  # the element is gone, and its workqueue with it
            with self.lock:
                self.wqs.pop(cb.addr, None)
        self.ran += ran
        return ran


def deferred(kernel: Any) -> Deferred:
    """The instance's :class:`Deferred` (created on first use)."""
    return kernel.subsystem("_deferred", Deferred)


def run_deferred(kernel: Any) -> None:
    """The program's run is over ("return to user space"): run what it scheduled."""
    d = kernel.__dict__.get("_deferred")
    if d is not None and d.pending:
        d.run_pending()


def _callback(ctx: RunContext, addr: int, map_addr: int, callback: int) -> Callback:
    from pybpf.helpers.impls import callback_pc

    return Callback(addr, map_addr, ctx.prog, ctx.runner, callback_pc(ctx, callback), ctx.cpu)


# -- bpf_task_work -------------------------------------------------------------------------
def _schedule_task_work(ctx: RunContext, task: int, tw: int, map_addr: int, callback: int) -> int:
    if ctx.kernel is None or ctx.prog is None or not task:
        return _neg(errno.EBADF)
    if not deferred(ctx.kernel).schedule(_callback(ctx, tw, map_addr, callback)):
        return _neg(errno.EBUSY)
    return 0


def task_work_schedule_signal_impl(ctx: RunContext, task: int, tw: int, map_addr: int,
                                   callback: int, aux: int, *_: int) -> int:
    """``bpf_task_work_schedule_signal_impl`` (``TWA_SIGNAL``)."""
    return _schedule_task_work(ctx, task, tw, map_addr, callback)


def task_work_schedule_resume_impl(ctx: RunContext, task: int, tw: int, map_addr: int,
                                   callback: int, aux: int, *_: int) -> int:
    """``bpf_task_work_schedule_resume_impl`` (``TWA_RESUME``)."""
    return _schedule_task_work(ctx, task, tw, map_addr, callback)


# -- bpf_wq --------------------------------------------------------------------------------
def wq_init(ctx: RunContext, wq: int, map_addr: int, flags: int, *_: int) -> int:
    """``bpf_wq_init``: -EINVAL for flags, -EBUSY when already initialised."""
    if flags & 0xFFFFFFFF:
        return _neg(errno.EINVAL)
    if ctx.kernel is None:
        return _neg(errno.EOPNOTSUPP)
    d = deferred(ctx.kernel)
    with d.lock:
        if wq in d.wqs:
            return _neg(errno.EBUSY)
        d.wqs[wq] = (map_addr, None)
    return 0


def wq_set_callback_impl(ctx: RunContext, wq: int, callback: int, flags: int, aux: int,
                         *_: int) -> int:
    """``bpf_wq_set_callback_impl``: -EINVAL for flags or an uninitialised workqueue."""
    if flags & 0xFFFFFFFF or ctx.kernel is None:
        return _neg(errno.EINVAL)
    d = deferred(ctx.kernel)
    with d.lock:
        if wq not in d.wqs:
            return _neg(errno.EINVAL)
        map_addr = d.wqs[wq][0]
        d.wqs[wq] = (map_addr, _callback(ctx, wq, map_addr, callback))
    return 0


def wq_start(ctx: RunContext, wq: int, flags: int, *_: int) -> int:
    """``bpf_wq_start``: -EINVAL for flags or without a callback; queued once."""
    if flags & 0xFFFFFFFF or ctx.kernel is None:
        return _neg(errno.EINVAL)
    d = deferred(ctx.kernel)
    with d.lock:
        _map, cb = d.wqs.get(wq, (0, None))
    if cb is None:
        return _neg(errno.EINVAL)
    d.schedule(cb)
    return 0


DEFERRED_IMPLS: dict[str, Callable[..., int]] = {
    "bpf_task_work_schedule_signal_impl": task_work_schedule_signal_impl,
    "bpf_task_work_schedule_resume_impl": task_work_schedule_resume_impl,
    "bpf_wq_init": wq_init,
    "bpf_wq_set_callback_impl": wq_set_callback_impl,
    "bpf_wq_start": wq_start,
}
