"""``optimize_bpf_loop``: ``bpf_loop`` calls become an inline loop around a direct call.

The kernel replaces a ``bpf_loop(nr_loops, callback, ctx, flags)`` call by the loop the
helper runs (``inline_bpf_loop``) when every path that reaches the call site passes the
same callback and ``flags == 0`` (``loop_inline_state``, kept per call site while the
verifier walks: :func:`update_loop_inline_state`, called from
:mod:`pybpf.verifier.callbacks`)::

    if r1 <= BPF_MAX_LOOPS goto +2          ; more is -E2BIG, no call at all
    w0 = -E2BIG
    goto <after the loop>
    *(u64 *)(r10 base+0) = r6               ; r6..r8 become the loop's variables
    *(u64 *)(r10 base+8) = r7
    *(u64 *)(r10 base+16) = r8
    r6 = r1 ; w7 = 0 ; r8 = r3              ; bound, counter, ctx
    if r7 >= r6 goto +5
    r1 = r7 ; r2 = r8
    call <callback>                         ; a bpf-to-bpf call (BPF_PSEUDO_CALL)
    r7 += 1
    if r0 == 0 goto -6                      ; a callback returning 1 stops the loop
    r0 = r7                                 ; bpf_loop's result: iterations done
    r6 = *(u64 *)(r10 base+0) ...           ; restore r6..r8

The three spill slots sit below the calling subprogram's verified stack
(``base = -(stack_depth + 24 + round_up(stack_depth, 8) - stack_depth)``) and its stack
depth grows by that much. pybpf's runtime frames are ``MAX_BPF_STACK`` bytes on both
tiers, so a call site whose subprogram would outgrow 512 bytes keeps the helper call (the
kernel's JIT has no such limit); that is the only case where pybpf's xlated program
differs from the kernel's here. This pass runs first, before the dead-code passes and
``convert_ctx_accesses`` (order 10), as in ``bpf_check``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybpf.isa.insn import Insn
from pybpf.verifier.fixups import register_fixup_pass
from pybpf.verifier.patch import ProgPatcher

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

BPF_FUNC_loop = 181
BPF_MAX_LOOPS = 8 << 20
E2BIG = 7
BPF_REG_SIZE = 8
MAX_BPF_STACK = 512
CALL_INSN_OFFSET = 12  # where the callback call sits in the inlined sequence


def update_loop_inline_state(v: Verifier, subprogno: int) -> None:
    """``update_loop_inline_state``: a visit of the ``bpf_loop`` call at ``insn_idx``
    keeps it inlinable only with a zero ``flags`` (R4) and the callback seen before."""
    aux = v.aux[v.insn_idx]
    r4 = v.regs[4]
    flag_zero = r4.is_const() and r4.var_off.value == 0
    state = aux.get("loop_inline")
    if state is None:
        aux["loop_inline"] = (flag_zero, subprogno)
        return
    fit, sub = state
    if fit:
        aux["loop_inline"] = (flag_zero and sub == subprogno, sub)


def fit_for_bpf_loop_inline(aux: dict) -> bool:
    state = aux.get("loop_inline")
    return state is not None and bool(state[0])


def is_bpf_loop_call(ins: Insn) -> bool:
    return ins.code == 0x85 and ins.src == 0 and ins.imm == BPF_FUNC_loop


def inline_bpf_loop(stack_base: int) -> list[Insn]:
    """``inline_bpf_loop``'s sequence, the callback call's offset still 0."""
    r6_off, r7_off, r8_off = (stack_base + k * BPF_REG_SIZE for k in range(3))
    return [
        Insn(0xB5, 1, 0, 2, BPF_MAX_LOOPS),  # if r1 <= BPF_MAX_LOOPS goto +2
        Insn(0xB4, 0, 0, 0, -E2BIG),  # w0 = -E2BIG
        Insn(0x05, 0, 0, 16, 0),  # goto past the loop
        Insn(0x7B, 10, 6, r6_off, 0),
        Insn(0x7B, 10, 7, r7_off, 0),
        Insn(0x7B, 10, 8, r8_off, 0),
        Insn(0xBF, 6, 1, 0, 0),  # r6 = r1: the bound
        Insn(0xB4, 7, 0, 0, 0),  # w7 = 0: the counter
        Insn(0xBF, 8, 3, 0, 0),  # r8 = r3: the ctx
        Insn(0x3D, 7, 6, 5, 0),  # if r7 >= r6 goto +5
        Insn(0xBF, 1, 7, 0, 0),
        Insn(0xBF, 2, 8, 0, 0),
        Insn(0x85, 0, 1, 0, 0),  # call <callback> (set after patching)
        Insn(0x07, 7, 0, 0, 1),
        Insn(0x15, 0, 0, -6, 0),  # if r0 == 0 goto the loop header
        Insn(0xBF, 0, 7, 0, 0),  # r0 = iterations
        Insn(0x79, 6, 10, r6_off, 0),
        Insn(0x79, 7, 10, r7_off, 0),
        Insn(0x79, 8, 10, r8_off, 0),
    ]


def optimize_bpf_loop(v: Verifier, p: ProgPatcher) -> None:
    """Inline every eligible ``bpf_loop`` call; grow the subprograms' stack depths."""
    cur = 0  # p.subprog_starts: the last entry is the fake exit subprogram
    depth = v.max_stack.get(p.subprog_ids[cur], 0)
    extra = 0
    i = 0
    while i < len(p.insns):
        ins = p.insns[i]
        if is_bpf_loop_call(ins) and fit_for_bpf_loop_inline(p.aux[i]):
            want = BPF_REG_SIZE * 3 + (-depth) % 8
            if depth + want <= MAX_BPF_STACK:
                extra = want
                callback = p.aux[i]["loop_inline"][1]
                seq = inline_bpf_loop(-(depth + extra))
                p.patch(i, seq)
                call_at = i + CALL_INSN_OFFSET
                target = p.subprog_starts[p.subprog_ids.index(callback)]
                p.insns[call_at] = p.insns[call_at]._replace(imm=target - call_at - 1)
                i += len(seq) - 1
        starts = p.subprog_starts  # a patch replaces the list
        if cur + 1 < len(starts) and starts[cur + 1] == i + 1:
            if extra:
                sub = p.subprog_ids[cur]
                v.max_stack[sub] = v.max_stack.get(sub, 0) + extra
            cur += 1
            if cur < len(p.subprog_ids):
                depth = v.max_stack.get(p.subprog_ids[cur], 0)
            extra = 0
        i += 1


register_fixup_pass(10, optimize_bpf_loop)
