"""``do_misc_fixups``' timed ``may_goto``: the counter moves into the program's stack.

x86-64 Linux 6.18 (``bpf_jit_supports_timed_may_goto``) gives every subprogram that uses
``may_goto`` two more stack slots below its own: a count (``BPF_MAX_TIMED_LOOPS``) and a
timestamp, both set by two stores prepended to the subprogram. Each ``may_goto`` becomes::

    r11 = *(u64 *)(r10 -cnt)          ; BPF_REG_AX
    if r11 == 0x0 goto <the may_goto's target>
    r11 -= 1
    if r11 != 0x0 goto +2
    r11 = -cnt
    call arch_bpf_timed_may_goto      ; AX = a refill of the count, or 0: time is up
    *(u64 *)(r10 -cnt) = r11

so the budget is per frame, as the kernel's. ``arch_bpf_timed_may_goto`` is
:data:`pybpf.helpers.internal.TIMED_MAY_GOTO` (AX in, AX out, R0-R5 kept); the kernel
refills until 250 ms have passed, pybpf for a fixed number of refills (the untimed
budget, 8M iterations) so runs stay deterministic.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pybpf.helpers.internal import BPF_MAX_TIMED_LOOPS, TIMED_MAY_GOTO
from pybpf.isa.insn import Insn
from pybpf.verifier.fixups import register_fixup_pass
from pybpf.verifier.patch import PatchError

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier
    from pybpf.verifier.patch import ProgPatcher

BPF_REG_AX = 11
MAY_GOTO = 0xE5  # BPF_JMP | BPF_JCOND
MAX_BPF_STACK = 512
TIMED_EXTRA = 16  # the count and the timestamp


def _round8(n: int) -> int:
    return (n + 7) // 8 * 8


def _subprog_at(p: ProgPatcher, idx: int) -> int:
    """Position (in ``p.subprog_starts``) of the subprogram holding instruction ``idx``."""
    pos = 0
    for k, start in enumerate(p.subprog_starts[:-1]):
        if start <= idx:
            pos = k
    return pos


def timed_may_goto(v: Verifier, p: ProgPatcher) -> None:
    """Rewrite every ``may_goto`` and give its subprogram the counter slots."""
    extra: dict[int, int] = {}  # original subprogram id -> its stack depth before the slots
    i = 0
    while i < len(p.insns):
        ins = p.insns[i]
        if ins.code != MAY_GOTO or ins.src != 0:
            i += 1
            continue
        sid = p.subprog_ids[_subprog_at(p, i)]
        depth = extra.setdefault(sid, _round8(v.max_stack.get(sid, 0)))
        cnt = -depth - TIMED_EXTRA
        jeq_off = ins.off + 5 if ins.off >= 0 else ins.off - 1
        p.patch(i, [
            Insn(0x79, BPF_REG_AX, 10, cnt, 0),  # r11 = *(u64 *)(r10 + cnt)
            Insn(0x15, BPF_REG_AX, 0, jeq_off, 0),  # if r11 == 0 goto target
            Insn(0x17, BPF_REG_AX, 0, 0, 1),  # r11 -= 1
            Insn(0x55, BPF_REG_AX, 0, 2, 0),  # if r11 != 0 goto +2
            Insn(0xB7, BPF_REG_AX, 0, 0, cnt),  # r11 = cnt
            Insn(0x85, 0, 0, 0, TIMED_MAY_GOTO),  # call arch_bpf_timed_may_goto
            Insn(0x7B, 10, BPF_REG_AX, cnt, 0),  # *(u64 *)(r10 + cnt) = r11
        ])
        i += 7
    for sid, depth in extra.items():
        new_depth = depth + TIMED_EXTRA
        if new_depth > MAX_BPF_STACK:
            raise PatchError(errno.EINVAL, f"stack size {new_depth}(extra {TIMED_EXTRA}) is too large\n")
        v.max_stack[sid] = new_depth
        start = p.subprog_starts[p.subprog_ids.index(sid)]
        p.patch(start, [Insn(0x7A, 10, 0, -new_depth, BPF_MAX_TIMED_LOOPS),  # the count
                        Insn(0x7A, 10, 0, -new_depth + 8, 0),  # the timestamp
                        p.insns[start]])


register_fixup_pass(61, timed_may_goto)
