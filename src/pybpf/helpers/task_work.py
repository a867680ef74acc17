"""``bpf_task_work_schedule_signal_impl`` / ``_resume_impl`` at run time.

Linux queues the callback on the task with ``task_work_add`` (``TWA_SIGNAL`` interrupts the
task, ``TWA_RESUME`` waits for it to return to user space); it then runs as
``callback(map, key, value)`` of the element holding the ``struct bpf_task_work``. While
one is pending, scheduling the same ``bpf_task_work`` again is -EBUSY; after the callback
has run it may be scheduled again.

pybpf's tasks are the threads of this process, and a program "returns to user space" when
its outermost run ends: :func:`run_task_works` (called by ``BpfProg.run``) then runs the
callbacks that run scheduled, in order, as the live kernel runs them when
``BPF_PROG_TEST_RUN`` returns. Both modes behave the same here. A callback whose element
was deleted meanwhile does not run (the kernel cancels it with the element).
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass
from typing import Any

from pybpf.runtime.context import RunContext

M64 = (1 << 64) - 1


def _neg(err: int) -> int:
    return (-err) & M64


@dataclass
class TaskWork:
    """One scheduled ``bpf_task_work`` (``struct bpf_task_work_ctx``)."""

    addr: int
    map_addr: int
    prog: Any
    runner: Any
    callback_pc: int
    cpu: int


class TaskWorks:
    """The pending task works of one instance."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.lock = threading.Lock()
        self.pending: dict[int, TaskWork] = {}  # by bpf_task_work address, in order
        self.ran = 0

    def schedule(self, work: TaskWork) -> int:
        with self.lock:
            if work.addr in self.pending:
                return _neg(errno.EBUSY)
            self.pending[work.addr] = work
        return 0

    def run_pending(self) -> int:
        """Run every pending callback (those scheduled meanwhile too); how many ran."""
        from pybpf.maps.core import map_from_addr

        ran = 0
        while True:
            with self.lock:
                if not self.pending:
                    return ran
                addr = next(iter(self.pending))
                work = self.pending[addr]
            bmap: Any = map_from_addr(work.map_addr)
            if bmap is not None and work.prog is not None and \
                    getattr(work.prog, "bpf_func", 1) is not None:
                ran += self._run(work, bmap)
            with self.lock:
                if self.pending.get(addr) is work:
                    del self.pending[addr]  # STANDBY again: may be scheduled anew

    def _run(self, work: TaskWork, bmap: Any) -> int:
        value_size = int(getattr(bmap, "value_size", 0))
        ran = [0]

        def visit(key_addr: int, value_addr: int) -> int:
            if not value_addr <= work.addr < value_addr + value_size:
                return 0
            rc = RunContext(kernel=self.kernel, prog=work.prog, cpu=work.cpu)
            rc.runner = work.runner
            work.runner.call_subprog(rc, work.callback_pc, work.map_addr, key_addr,
                                     value_addr, 0, 0)
            ran[0] = 1
            return 1

        bmap.ops.map_for_each_callback(bmap, visit, work.cpu)
        self.ran += ran[0]
        return ran[0]


def task_works(kernel: Any) -> TaskWorks:
    """The instance's :class:`TaskWorks` (created on first use)."""
    return kernel.subsystem("_task_works", TaskWorks)


def run_task_works(kernel: Any) -> None:
    """The program's run is over ("return to user space"): run pending task works."""
    works = kernel.__dict__.get("_task_works") if hasattr(kernel, "__dict__") else None
    if works is not None and works.pending:
        works.run_pending()


def _schedule(ctx: RunContext, task: int, tw: int, map_addr: int, callback: int) -> int:
    from pybpf.helpers.impls import callback_pc

    if ctx.kernel is None or ctx.prog is None:
        return _neg(errno.EBADF)
    if not task:
        return _neg(errno.EBADF)
    work = TaskWork(tw, map_addr, ctx.prog, ctx.runner, callback_pc(ctx, callback), ctx.cpu)
    return task_works(ctx.kernel).schedule(work)


def task_work_schedule_signal_impl(ctx: RunContext, task: int, tw: int, map_addr: int,
                                   callback: int, aux: int, *_: int) -> int:
    """``bpf_task_work_schedule_signal_impl`` (``TWA_SIGNAL``)."""
    return _schedule(ctx, task, tw, map_addr, callback)


def task_work_schedule_resume_impl(ctx: RunContext, task: int, tw: int, map_addr: int,
                                   callback: int, aux: int, *_: int) -> int:
    """``bpf_task_work_schedule_resume_impl`` (``TWA_RESUME``)."""
    return _schedule(ctx, task, tw, map_addr, callback)


TASK_WORK_IMPLS = {
    "bpf_task_work_schedule_signal_impl": task_work_schedule_signal_impl,
    "bpf_task_work_schedule_resume_impl": task_work_schedule_resume_impl,
}
