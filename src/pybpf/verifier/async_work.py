"""Map-value fields that schedule a callback, in the verifier: ``bpf_wq`` (``bpf_wq_init``,
``bpf_wq_set_callback_impl``, ``bpf_wq_start``) and ``bpf_task_work``
(``bpf_task_work_schedule_signal_impl`` / ``_resume_impl``), Linux 6.18.

Both live in a map value, like a ``bpf_timer``. A kfunc takes a pointer to the field
(``KF_ARG_PTR_TO_WORKQUEUE`` / ``KF_ARG_PTR_TO_TASK_WORK``: a map value pointer at the
field's constant offset); a following ``__map`` argument must be the same map. The
callback argument (``KF_ARG_PTR_TO_CALLBACK``, a ``PTR_TO_FUNC``) runs later, on its own:
the verifier queues it as an asynchronous, sleepable callback path (``push_async_cb``) with
``(map, key, value)`` of the element in R1–R3; a workqueue callback returns 0, a task
work callback any int.
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
WQ_SET_CALLBACK = "bpf_wq_set_callback_impl"
#: the pointee struct of each field argument -> its btf_record kind
FIELD_STRUCTS = {"bpf_task_work": "task_work", "bpf_wq": "wq"}
#: a task work callback's return value: any int (``retval_range(S32_MIN, S32_MAX)``)
TASK_WORK_RET_RANGE = (-(1 << 31), (1 << 31) - 1)


def field_off(m: Any, kind: str) -> int:
    """The offset of the map value's ``kind`` field (``btf_record``), or -1."""
    for k, off, _size in getattr(m, "btf_record", None) or ():
        if k == kind:
            return int(off)
    return -1


def map_name_str(m: Any) -> str:
    """A map's name as text, for messages."""
    name = getattr(m, "name", b"")
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def process_field_arg(v: Verifier, struct_name: str, regno: int, argno: int,
                      meta: KfuncMeta) -> None:
    """``process_wq_func`` / ``process_task_work_func``: the map value's ``struct_name``
    field, at a constant offset; remembers the map for a ``__map`` argument that follows."""
    reg = v.regs[regno]
    if reg.type != RegType.PTR_TO_MAP_VALUE:
        v.fail(errno.EINVAL, f"arg#{argno} doesn't point to a map value\n")
    m = reg.map_ptr
    if reg.var_off.mask:
        v.fail(errno.EINVAL, f"R{regno} doesn't have constant offset. {struct_name} has to be "
                             "at the constant offset\n")
    off = field_off(m, FIELD_STRUCTS[struct_name])
    if off < 0:
        v.fail(errno.EINVAL, f"map '{map_name_str(m)}' has no valid {struct_name}\n")
    val = reg.var_off.value + reg.off
    if val != off:
        v.fail(errno.EINVAL, f"off {val} doesn't point to 'struct {struct_name}' that is at "
                             f"{off}\n")
    meta.map_ptr = m
    meta.map_uid = getattr(reg, "map_uid", 0)


def check_field_map_arg(v: Verifier, meta: KfuncMeta, regno: int) -> None:
    """The ``__map`` argument after a field argument must be that field's map (checked
    when the ``__map`` map holds a workqueue or a task work)."""
    reg = v.regs[regno]
    m = reg.map_ptr
    if meta.map_ptr is None or (field_off(m, "wq") < 0 and field_off(m, "task_work") < 0):
        return
    uid = getattr(reg, "map_uid", 0)
    if m is meta.map_ptr and uid == meta.map_uid:
        return
    if field_off(m, "task_work") >= 0:
        v.fail(errno.EINVAL, f"bpf_task_work pointer in R2 map_uid={meta.map_uid} doesn't "
                             f"match map pointer in R3 map_uid={uid}\n")
    v.fail(errno.EINVAL, f"workqueue pointer in R1 map_uid={meta.map_uid} doesn't match map "
                         f"pointer in R2 map_uid={uid}\n")


def set_task_work_schedule_callback_state(v: Verifier, caller: FuncState, callee: FuncState,
                                          callsite: int) -> None:
    """``callback(map, key, value)``: the map of R3, its key and value."""
    from pybpf.verifier.callbacks import set_timer_callback_state

    set_timer_callback_state(v, caller, callee, callsite, map_regno=3)


def push_field_callback(v: Verifier, meta: KfuncMeta) -> None:
    """``push_callback_call`` of ``bpf_wq_set_callback_impl`` (``set_timer_callback_state``:
    the map of the wq in R1, return 0) and of the task work kfuncs; both sleepable."""
    sub = meta.subprogno
    if sub is None:
        return
    v._check_callback_btf(sub)
    if meta.name == WQ_SET_CALLBACK:
        v.push_async_cb(sub, v.state.cur, sleepable=True)
    else:
        v.push_async_cb(sub, v.state.cur, setup=set_task_work_schedule_callback_state,
                        ret_range=TASK_WORK_RET_RANGE, sleepable=True)
