"""Resilient spin locks: ``bpf_res_spin_lock`` / ``bpf_res_spin_unlock`` and their
``_irqsave`` / ``_irqrestore`` variants (Linux 6.18).

A ``struct bpf_res_spin_lock`` lives in a map value (or an allocated object). Unlike a
``bpf_spin_lock``, taking it can fail (a deadlock or a timeout detected at run time): the
verifier forks at the call — one path where it failed (R0 in [-MAX_ERRNO, -1], R1–R5
clobbered, no lock held) and one where it succeeded (R0 = 0, the lock held) — so the
program must test the result before touching what the lock protects. Several resilient
locks may be held at once, released in reverse order; the same lock twice is an AA
deadlock. The ``_irqsave`` variants also save the interrupt state in an ``__irq_flag``
slot of the lock class (verifier/irq_flags.py).

Held locks are references of kind ``res_lock`` / ``res_lock_irq`` carrying the lock's
owner (the map, or the allocated object's id) — ``bpf_reference_state.ptr`` — and the
state's ``active_lock`` names the innermost one.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.verifier.async_work import map_name_str
from pybpf.verifier.regs import (
    RegType,
    mark_known,
    mark_not_init,
    mark_unknown,
    reg_bounds_sync,
)
from pybpf.verifier.state import RefState

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

MAX_ERRNO = 4095
#: kfunc name -> (takes the lock, saves/restores the interrupt state)
RES_LOCK_KFUNCS = {
    "bpf_res_spin_lock": (True, False),
    "bpf_res_spin_unlock": (False, False),
    "bpf_res_spin_lock_irqsave": (True, True),
    "bpf_res_spin_unlock_irqrestore": (False, True),
}
LOCK_KINDS = frozenset({"lock", "res_lock", "res_lock_irq"})
#: the kfuncs that take a resilient lock (and may fail doing so)
RES_LOCK_TAKERS = frozenset(n for n, (lock, _irq) in RES_LOCK_KFUNCS.items() if lock)


def push_failed_lock(v: Verifier) -> None:
    """The path where taking the lock failed: continue after the call with R1–R5 unset
    and R0 an s32 error in [-MAX_ERRNO, -1] (pushed before the arguments are checked)."""
    branch = v.push_stack(v.insn_idx + 1, v.insn_idx)
    regs = branch.cur.regs
    for r in range(6):
        mark_not_init(regs[r])
    r0 = regs[0]
    mark_unknown(r0)
    r0.s32_min = max(r0.s32_min, -MAX_ERRNO)
    r0.s32_max = min(r0.s32_max, -1)
    r0.smin = max(r0.smin, -MAX_ERRNO)
    r0.smax = min(r0.smax, -1)
    reg_bounds_sync(r0)
    r0.subreg_def = v.insn_idx + 1  # a 32-bit result (mark_btf_func_reg_size)


def mark_lock_success(v: Verifier) -> None:
    """R0 = 0 on the path where the lock was taken."""
    mark_known(v.regs[0], 0)


def process_res_spin_lock(v: Verifier, name: str, regno: int, argno: int) -> None:
    """``process_spin_lock`` with ``PROCESS_RES_LOCK`` for the lock argument."""
    reg = v.regs[regno]
    if reg.type != RegType.PTR_TO_MAP_VALUE:
        v.fail(errno.EINVAL, f"arg#{argno} doesn't point to map value or allocated object\n")
    is_lock, is_irq = RES_LOCK_KFUNCS[name]
    if reg.var_off.mask:
        v.fail(errno.EINVAL, f"R{regno} doesn't have constant offset. bpf_res_spin_lock has to "
                             "be at the constant offset\n")
    m = reg.map_ptr
    mname = map_name_str(m)
    if getattr(m, "btf", None) is None:
        v.fail(errno.EINVAL, f"map '{mname}' has to have BTF in order to use bpf_res_spin_lock\n")
    off = next((o for k, o, _s in getattr(m, "btf_record", None) or () if k == "res_spin_lock"), -1)
    if off < 0:
        v.fail(errno.EINVAL, f"map '{mname}' has no valid bpf_res_spin_lock\n")
    val = reg.var_off.value + reg.off
    if off != val:
        v.fail(errno.EINVAL, f"off {val} doesn't point to 'struct bpf_res_spin_lock' that is "
                             f"at {off}\n")
    st = v.state
    owner = m  # ``ptr`` of the lock's reference: the map (only map values get here)
    kind = "res_lock_irq" if is_irq else "res_lock"
    held = [r for r in st.refs if r.kind in LOCK_KINDS]
    if is_lock:
        if any(r.kind in ("res_lock", "res_lock_irq") and r.id == reg.id and r.ptr[0] is owner
               for r in held):
            v.fail(errno.EINVAL, "Acquiring the same lock again, AA deadlock detected\n")
        st.refs.append(RefState(reg.id, v.insn_idx, kind, (owner, val)))
        update_active_lock(st)
        return
    if not held:
        v.fail(errno.EINVAL, "bpf_res_spin_unlock without taking a lock\n")
    mine = next((r for r in held if r.kind == kind and r.id == reg.id and r.ptr[0] is owner),
                None)
    if mine is None:
        v.fail(errno.EINVAL, "bpf_res_spin_unlock of different lock\n")
    assert mine is not None
    if held[-1] is not mine:
        v.fail(errno.EINVAL, "bpf_res_spin_unlock cannot be out of order\n")
    st.refs.remove(mine)
    update_active_lock(st)


def update_active_lock(st: Any) -> None:
    """``active_lock``: the innermost held lock as (owner or id, offset), or None."""
    held = [r for r in st.refs if r.kind in LOCK_KINDS]
    if not held:
        st.active_lock = None
        return
    last = held[-1]
    owner, off = last.ptr if last.ptr is not None else (None, 0)
    st.active_lock = (owner if last.id == 0 else last.id, off)
