"""The ``current`` task helpers: ``bpf_get_current_pid_tgid``, ``_uid_gid``, ``_comm``,
``_task`` (``kernel/bpf/helpers.c``, ``kernel/trace/bpf_trace.c``).

In Linux they read ``current``, the task the program runs in. A pybpf instance has
tasks (:class:`pybpf.kernel.Task`: pid, credentials, comm); which one is ``current`` is,
in order: the task a host set with ``kernel.current = task`` (or :func:`set_current`), else
the task of a ``with running_as(kernel, task):`` block in this thread (``BPF_PROG_TEST_RUN``
runs the program as its caller, as the kernel does), else the instance's root task.

``bpf_get_current_task`` returns the address of a registered ``struct task_struct``
image of the task (6.18 layout, from :data:`pybpf.uapi.kernel_structs.KSTRUCTS`) holding
``pid``, ``tgid`` and ``comm``, so ``bpf_probe_read_kernel(&pid, 4, &task->pid)`` works.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pybpf.runtime.context import RunContext
from pybpf.runtime.memory import REGISTRY, Region

TASK_COMM_LEN = 16
M64 = (1 << 64) - 1
_tls = threading.local()


def _stack() -> list[tuple[Any, Any]]:
    st = getattr(_tls, "stack", None)
    if st is None:
        st = _tls.stack = []
    return st


@contextmanager
def running_as(kernel: Any, task: Any) -> Iterator[None]:
    """Make ``task`` the current task of ``kernel`` in this thread for the block."""
    if kernel is None or task is None:
        yield
        return
    st = _stack()
    st.append((kernel, task))
    try:
        yield
    finally:
        st.pop()


def set_current(kernel: Any, task: Any) -> None:
    """Fix the current task of ``kernel`` for every thread (``None``: back to the default)."""
    kernel.__dict__["_current_task"] = task


def current_task(kernel: Any) -> Any:
    """The task programs of ``kernel`` see as ``current`` now (see the module docstring)."""
    if kernel is None:
        return None
    fixed = kernel.__dict__.get("_current_task")
    if fixed is not None:
        return fixed
    for k, task in reversed(_stack()):
        if k is kernel:
            return task
    return getattr(kernel, "root", None)


def task_tgid(task: Any) -> int:
    return int(getattr(task, "tgid", 0) or task.pid)


def task_comm(task: Any) -> bytes:
    """``task->comm``: at most 15 bytes, NUL-padded to 16."""
    raw = task.comm.encode() if isinstance(task.comm, str) else bytes(task.comm)
    return raw[:TASK_COMM_LEN - 1].ljust(TASK_COMM_LEN, b"\0")


def task_struct_region(task: Any) -> Region:
    """The registered ``task_struct`` image of ``task`` (created once, refreshed on use)."""
    from pybpf.uapi.kernel_structs import KSTRUCTS

    ts = KSTRUCTS["task_struct"]
    region: Region | None = getattr(task, "_bpf_task_struct", None)
    if region is None:
        region = REGISTRY.alloc(ts.size, f"task_struct {task.pid}", writable=False)
        task._bpf_task_struct = region
    mv = region.mv
    mv[ts.off("pid"):ts.off("pid") + 4] = (task.pid & 0xFFFFFFFF).to_bytes(4, "little")
    mv[ts.off("tgid"):ts.off("tgid") + 4] = (task_tgid(task) & 0xFFFFFFFF).to_bytes(4, "little")
    mv[ts.off("comm"):ts.off("comm") + TASK_COMM_LEN] = task_comm(task)
    return region


# ------------------------------------------------------------------------ helpers
def get_current_pid_tgid(ctx: RunContext, *_: int) -> int:
    """``tgid << 32 | pid`` of current; ``-EINVAL`` without a task."""
    task = current_task(ctx.kernel)
    if task is None:
        return (-22) & M64
    return (task_tgid(task) & 0xFFFFFFFF) << 32 | (task.pid & 0xFFFFFFFF)


def get_current_uid_gid(ctx: RunContext, *_: int) -> int:
    """``gid << 32 | uid`` of current's credentials."""
    task = current_task(ctx.kernel)
    if task is None:
        return (-22) & M64
    cred = task.cred
    return (cred.gid & 0xFFFFFFFF) << 32 | (cred.uid & 0xFFFFFFFF)


def get_current_comm(ctx: RunContext, buf: int, size: int, *_: int) -> int:
    """Copy current's comm into ``buf`` (NUL-terminated, the rest zero): 0, or
    ``-EINVAL`` (buffer zeroed) without a task."""
    task = current_task(ctx.kernel)
    if not size:
        return 0
    if task is None:
        ctx.mem.write(buf, bytes(size))
        return (-22) & M64
    comm = task_comm(task).split(b"\0", 1)[0][:size - 1]
    ctx.mem.write(buf, comm + bytes(size - len(comm)))
    return 0


def get_current_task(ctx: RunContext, *_: int) -> int:
    """The address of current's ``task_struct`` image (0 without a task)."""
    task = current_task(ctx.kernel)
    return task_struct_region(task).start if task is not None else 0


IMPLS: dict[int, Callable[..., int]] = {
    14: get_current_pid_tgid,
    15: get_current_uid_gid,
    16: get_current_comm,
    35: get_current_task,
}
