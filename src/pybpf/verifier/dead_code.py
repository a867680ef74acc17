"""Dead-code passes after verification (the kernel's ``opt_*`` / ``sanitize_dead_code``).

The verifier walks every path a program can take; instructions it never reached are dead
(a branch ``is_branch_taken`` proved one-sided, code after a known-constant test). For a
privileged load (``bpf_capable``) the kernel then

1. ``opt_hard_wire_dead_code_branches``: a conditional jump with one dead side becomes a
   ``goto`` to the live side (``goto pc+off`` or ``goto pc+0``);
2. ``opt_remove_dead_code``: removes every unreached instruction;
3. ``opt_remove_nops``: removes ``goto pc+0`` (and ``may_goto`` with offset 0).

For an unprivileged load it keeps the size and overwrites unreached instructions with
``goto pc-1`` (``sanitize_dead_code``) so speculation cannot run them.

"Reached" is the kernel's ``insn_aux_data.seen``: set when ``do_check`` processes an
instruction (after the pruning check); pybpf's verifier records it as ``aux["seen"]``.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from pybpf.isa.insn import Insn
from pybpf.verifier.fixups import register_fixup_pass
from pybpf.verifier.patch import ProgPatcher

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

BPF_JMP, BPF_JMP32 = 0x05, 0x06
BPF_JA, BPF_CALL, BPF_EXIT, BPF_JCOND = 0x00, 0x80, 0x90, 0xE0
LD_IMM64 = 0x18
NOP = Insn(BPF_JMP | BPF_JA, 0, 0, 0, 0)
MAY_GOTO_0 = Insn(BPF_JMP | BPF_JCOND, 0, 0, 0, 0)
TRAP = Insn(BPF_JMP | BPF_JA, 0, 0, -1, 0)


# ------------------------------------------------------------------------- "seen"


def insn_seen(p: ProgPatcher) -> list[bool]:
    """Per slot: did ``do_check`` reach it (the second half of a reached ``ld_imm64`` too)?

    Read off the patcher's aux data, which moves with its instruction through earlier
    patches (``optimize_bpf_loop``'s slots inherit the call's ``seen``)."""
    n = len(p.insns)
    out = [bool(a.get("seen")) for a in p.aux[:n]]
    for i, ins in enumerate(p.insns):
        if ins.code == LD_IMM64 and out[i] and i + 1 < n:
            out[i + 1] = True
    return out


# ------------------------------------------------------------------------- passes


def _is_cond_jump(ins: Insn) -> bool:
    cls, op = ins.code & 0x07, ins.code & 0xF0
    return cls in (BPF_JMP, BPF_JMP32) and op not in (BPF_JA, BPF_CALL, BPF_EXIT, BPF_JCOND)


def hard_wire_dead_code_branches(p: ProgPatcher, seen: list[bool]) -> None:
    """``opt_hard_wire_dead_code_branches``: one-sided conditional jumps become gotos."""
    for i, ins in enumerate(p.insns):
        if not _is_cond_jump(ins) or not seen[i]:
            continue
        fall, target = i + 1, i + 1 + ins.off
        if fall < len(seen) and not seen[fall]:
            p.insns[i] = Insn(BPF_JMP | BPF_JA, 0, 0, ins.off, 0)
        elif 0 <= target < len(seen) and not seen[target]:
            p.insns[i] = NOP


def remove_dead_code(p: ProgPatcher, seen: list[bool]) -> None:
    """``opt_remove_dead_code``: drop every run of unreached slots."""
    keep = list(seen)
    i = 0
    while i < len(keep):
        if keep[i]:
            i += 1
            continue
        j = i
        while j < len(keep) and not keep[j]:
            j += 1
        p.remove(i, j - i)
        del keep[i:j]


def remove_nops(p: ProgPatcher) -> None:
    """``opt_remove_nops``: drop ``goto pc+0`` and ``may_goto pc+0``."""
    i = 0
    while i < len(p.insns):
        ins = p.insns[i]
        if ins.code == LD_IMM64:
            i += 2
            continue
        is_may_goto_0 = ins == MAY_GOTO_0
        if ins != NOP and not is_may_goto_0:
            i += 1
            continue
        p.remove(i, 1)
        if is_may_goto_0 and i > 0:  # a `may_goto +1; may_goto +0` pair collapses too
            i -= 1


def sanitize_dead_code(p: ProgPatcher, seen: list[bool]) -> None:
    """``sanitize_dead_code``: unreached slots become ``goto pc-1`` (unprivileged)."""
    for i, s in enumerate(seen):
        if not s:
            p.insns[i] = TRAP


def keep_unwalked_subprogs(p: ProgPatcher, seen: list[bool]) -> None:
    """Subprograms nobody walked that a reached call still calls count as reached.

    The kernel walks callbacks (``bpf_loop``, timers, ``for_each_map_elem``…) as part of
    the caller's path, and removes a callback it never walked even where a reached
    ``ld_imm64`` takes its address (corpus 195). pybpf's verifier walks every helper
    callback as the kernel does, but maybe not every kfunc's callback yet: in a program
    with kfunc calls, such ``ld_imm64`` targets stay whole. A reached bpf-to-bpf call
    of an unwalked subprogram exists only after ``optimize_bpf_loop`` inlined a loop whose
    callback no path runs (``nr_loops == 0``): the kernel removes the callback and leaves
    the call pointing past it; pybpf keeps it, so that both runtimes can still compile the
    call. Everything those subprograms call or reference stays too.
    """
    bounds = sorted({*p.subprog_starts, 0, len(seen)})
    ranges = [(a, b) for a, b in itertools.pairwise(bounds) if a < b <= len(seen)]

    def subprog_at(idx: int) -> tuple[int, int] | None:
        return next(((a, b) for a, b in ranges if a <= idx < b), None)

    has_kfuncs = any(ins.code == 0x85 and ins.src == 2 for ins in p.insns)
    work = [i + ins.imm + 1 for i, ins in enumerate(p.insns)
            if i < len(seen) and seen[i] and ((ins.code == 0x85 and ins.src == 1)
                                              or (has_kfuncs and ins.code == LD_IMM64
                                                  and ins.src == 4))]
    done: set[tuple[int, int]] = set()
    while work:
        rng = subprog_at(work.pop())
        if rng is None or rng in done:
            continue
        done.add(rng)
        a, b = rng
        if not any(seen[a:b]):
            seen[a:b] = [True] * (b - a)
        for i in range(a, b):
            ins = p.insns[i]
            if seen[i] and ((ins.code == 0x85 and ins.src == 1)
                            or (ins.code == LD_IMM64 and ins.src == 4)):
                work.append(i + ins.imm + 1)


def dead_code_pass(v: Verifier, p: ProgPatcher) -> None:
    """The kernel's dead-code passes, privileged or not, between the loop inlining and
    ``convert_ctx_accesses``."""
    seen = insn_seen(p)
    keep_unwalked_subprogs(p, seen)
    if all(seen):
        if getattr(v, "bpf_capable", True):
            remove_nops(p)
        return
    if getattr(v, "bpf_capable", True):
        hard_wire_dead_code_branches(p, seen)
        remove_dead_code(p, seen)
        remove_nops(p)
    else:
        sanitize_dead_code(p, seen)


register_fixup_pass(20, dead_code_pass)
