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
instruction (after the pruning check). pybpf's verifier records it in ``v.insn_seen``;
until it does so natively, :func:`_install_seen_recorder` observes the assignment of
``Verifier.prev_insn_idx`` that ``do_check`` makes at exactly that point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


class _SeenRecorder:
    """Data descriptor for ``Verifier.prev_insn_idx`` that also records each value.

    ``do_check`` assigns ``prev_insn_idx = insn_idx`` once per processed instruction,
    right where the kernel sets ``insn_aux_data[insn_idx].seen``; ``pop_stack`` assigns
    the (already seen) jump a branch came from. The set lands in ``v.insn_seen``.
    """

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__.get("_prev_insn_idx", -1)

    def __set__(self, obj: Any, value: int) -> None:
        d = obj.__dict__
        d["_prev_insn_idx"] = value
        seen = d.get("insn_seen")
        if seen is None:
            seen = d["insn_seen"] = set()
        if value >= 0:
            seen.add(value)


def _install_seen_recorder() -> None:
    from pybpf.verifier.core import Verifier

    if "prev_insn_idx" not in Verifier.__dict__ or not isinstance(
            Verifier.__dict__["prev_insn_idx"], _SeenRecorder):
        Verifier.prev_insn_idx = _SeenRecorder()  # type: ignore[assignment,misc]


def insn_seen(v: Verifier) -> list[bool] | None:
    """Per slot: did ``do_check`` reach it? ``None`` when the run was not observed."""
    n = len(v.insns)
    seen_set = v.__dict__.get("insn_seen")
    if seen_set is None:
        if not any("seen" in a for a in v.aux):
            return None
        out = [bool(a.get("seen")) for a in v.aux]
    else:
        out = [i in seen_set for i in range(n)]
    for i, ins in enumerate(v.insns):  # the 2nd half of a reached ld_imm64 is reached
        if ins.code == LD_IMM64 and out[i] and i + 1 < n:
            out[i + 1] = True
    return out


def _shadow_seen(v: Verifier) -> list[bool] | None:
    """Re-verify quietly to learn what was reached (only for a run made before the
    recorder was installed: the first program of a process)."""
    import dataclasses

    from pybpf.verifier.core import Verifier as V

    try:
        inp = dataclasses.replace(v.inp, log_level=0)
        shadow = V(inp)
        shadow.run()
    except Exception:  # noqa: BLE001 - no dead-code passes rather than a wrong result
        return None
    return insn_seen(shadow)


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


def dead_code_pass(v: Verifier, p: ProgPatcher) -> None:
    """The kernel's dead-code passes, privileged or not, between the loop inlining and
    ``convert_ctx_accesses``."""
    if len(p.insns) != len(v.insns):  # an earlier pass changed the layout: no aux map
        return
    seen = insn_seen(v)
    if seen is None:
        seen = _shadow_seen(v)
        if seen is None:
            return
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


_install_seen_recorder()
register_fixup_pass(20, dead_code_pass)
