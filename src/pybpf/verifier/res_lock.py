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

Taking and releasing is ``process_spin_lock`` (verifier/spin_lock.py), shared with
``bpf_spin_lock``: held locks are references of kind ``res_lock`` / ``res_lock_irq``.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pybpf.verifier.regs import (
    MEM_ALLOC,
    RegType,
    mark_known,
    mark_not_init,
    mark_unknown,
    reg_bounds_sync,
)
from pybpf.verifier.spin_lock import process_spin_lock

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
    """``KF_ARG_PTR_TO_RES_SPIN_LOCK``: a map value or an allocated object, then
    ``process_spin_lock`` with ``PROCESS_RES_LOCK`` (verifier/spin_lock.py)."""
    reg = v.regs[regno]
    if reg.type not in (RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_BTF_ID | MEM_ALLOC):
        v.fail(errno.EINVAL, f"arg#{argno} doesn't point to map value or allocated object\n")
    is_lock, is_irq = RES_LOCK_KFUNCS[name]
    process_spin_lock(v, regno, is_lock, res=True, irq=is_irq)
