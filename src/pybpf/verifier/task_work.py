"""``bpf_task_work`` in the verifier: ``bpf_task_work_schedule_signal_impl`` and
``bpf_task_work_schedule_resume_impl`` (6.18).

A ``struct bpf_task_work`` lives in a map value, like a ``bpf_timer``. The kfuncs take
the task, a pointer to that field (``KF_ARG_PTR_TO_TASK_WORK``: a map value pointer at the
field's constant offset), the map it belongs to (``__map``: the same map), the callback
(``KF_ARG_PTR_TO_CALLBACK``, a ``PTR_TO_FUNC``) and ``aux__prog``. The callback runs later,
on its own, when the task next returns to user space: the verifier queues it as an
asynchronous callback path (``push_async_cb``), sleepable, with ``(map, key, value)`` of
the element in R1–R3 and any int as its return value.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.verifier.regs import RegType

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier
    from pybpf.verifier.kfuncs import KfuncMeta
    from pybpf.verifier.state import FuncState

TASK_WORK_KFUNCS = frozenset({"bpf_task_work_schedule_signal_impl",
                              "bpf_task_work_schedule_resume_impl"})
TASK_WORK_STRUCT = "bpf_task_work"
#: the callback's return value: anything an int holds (``retval_range(S32_MIN, S32_MAX)``)
CALLBACK_RET_RANGE = (-(1 << 31), (1 << 31) - 1)


def _field_off(m: Any) -> int:
    for kind, off, _size in getattr(m, "btf_record", None) or ():
        if kind == "task_work":
            return int(off)
    return -1


def process_task_work_func(v: Verifier, regno: int, argno: int, meta: KfuncMeta) -> None:
    """The ``KF_ARG_PTR_TO_TASK_WORK`` argument: the map value's ``bpf_task_work`` field,
    at a constant offset; remembers the map for the ``__map`` argument that follows."""
    reg = v.regs[regno]
    if reg.type != RegType.PTR_TO_MAP_VALUE:
        v.fail(errno.EINVAL, f"arg#{argno} doesn't point to a map value\n")
    m = reg.map_ptr
    if reg.var_off.mask:
        v.fail(errno.EINVAL, f"R{regno} doesn't have constant offset. {TASK_WORK_STRUCT} has to "
                             "be at the constant offset\n")
    off = _field_off(m)
    name = getattr(m, "name", b"")
    name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    if off < 0:
        v.fail(errno.EINVAL, f"map '{name}' has no valid {TASK_WORK_STRUCT}\n")
    val = reg.var_off.value + reg.off
    if val != off:
        v.fail(errno.EINVAL, f"off {val} doesn't point to 'struct {TASK_WORK_STRUCT}' that is "
                             f"at {off}\n")
    meta.map_ptr = m
    meta.map_uid = getattr(reg, "map_uid", 0)


def check_task_work_map_arg(v: Verifier, meta: KfuncMeta, regno: int) -> None:
    """The ``__map`` argument after a ``bpf_task_work`` one must be that field's map."""
    if meta.map_ptr is None or _field_off(meta.map_ptr) < 0:
        return
    reg = v.regs[regno]
    uid = getattr(reg, "map_uid", 0)
    if reg.map_ptr is not meta.map_ptr or uid != meta.map_uid:
        v.fail(errno.EINVAL, f"bpf_task_work pointer in R2 map_uid={meta.map_uid} doesn't match "
                             f"map pointer in R3 map_uid={uid}\n")


def set_task_work_schedule_callback_state(v: Verifier, caller: FuncState, callee: FuncState,
                                          callsite: int) -> None:
    """``callback(map, key, value)``: the map of R3, its key and value."""
    from pybpf.verifier.callbacks import set_timer_callback_state

    set_timer_callback_state(v, caller, callee, callsite, map_regno=3)


def push_task_work_callback(v: Verifier, meta: KfuncMeta) -> None:
    """``push_callback_call`` with ``set_task_work_schedule_callback_state``: an
    asynchronous, sleepable callback path."""
    sub = meta.subprogno
    if sub is None:
        return
    v._check_callback_btf(sub)
    v.push_async_cb(sub, v.state.cur, setup=set_task_work_schedule_callback_state,
                    ret_range=CALLBACK_RET_RANGE, sleepable=True)
