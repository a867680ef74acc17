"""Spectre v1/v4 mitigations for programs loaded without CAP_PERFMON (6.18's verifier).

Why: an unprivileged program must not be able to read kernel memory even on paths the CPU
only runs speculatively. Linux does four things about it, and pybpf does them the same way
so that verdicts, ``processed N insns``, the log and ``prog dump xlated`` agree:

- ``sanitize_ptr_alu`` (pointer ``+=``/``-=`` a register): records in the instruction's
  aux data how to mask the offset (``alu_state``: which operand is the offset, its sign,
  whether it is a constant; ``alu_limit``: how far the pointer may move), refuses
  what it cannot mask (``sanitize_err``), and simulates the masked outcome (offset 0) on a
  speculative path. ``do_misc_fixups`` then rewrites the instruction into the
  ``BPF_REG_AX`` masking sequence (:func:`ptr_alu_patch`).
- ``sanitize_speculative_path``: a conditional jump whose outcome the verifier knows still
  has its other side explored, as a *speculative* state with the compared registers
  unknown (:func:`push_speculative_branch`).
- ``nospec``: an error on a speculative path the kernel can recover from (EPERM, EACCES,
  EINVAL) does not reject the program: the instruction gets a speculation barrier before
  it (``insn_aux_data.nospec``) and the path ends (:func:`recover_with_nospec`).
- ``nospec_result`` (Spectre v4): a stack write over anything but plain data, or a pointer
  spill, gets a barrier after it (:func:`note_stack_write`); a speculative path ends there.

The barrier is ``BPF_ST | BPF_NOSPEC`` (``0xc2``); both tiers run it as a no-op.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybpf.isa.insn import Insn
from pybpf.verifier.fixups import register_fixup_pass
from pybpf.verifier.regs import Reg, RegType, base_type, mark_unknown

if TYPE_CHECKING:
    from pybpf.verifier.cfg import VerifyError
    from pybpf.verifier.core import Verifier
    from pybpf.verifier.patch import ProgPatcher

# insn_aux_data.alu_state bits (include/linux/bpf_verifier.h)
BPF_ALU_SANITIZE_SRC = 1 << 0
BPF_ALU_SANITIZE_DST = 1 << 1
BPF_ALU_NEG_VALUE = 1 << 2
BPF_ALU_NON_POINTER = 1 << 3
BPF_ALU_IMMEDIATE = 1 << 4
BPF_ALU_SANITIZE = BPF_ALU_SANITIZE_SRC | BPF_ALU_SANITIZE_DST

# sanitize_ptr_alu's refusals (enum in verifier.c)
REASON_BOUNDS, REASON_TYPE, REASON_PATHS, REASON_LIMIT = -1, -2, -3, -4

MAX_BPF_STACK = 512
BPF_REG_AX = 11
BPF_ADD, BPF_SUB = 0x00, 0x10
ALU64_ADD_X, ALU64_SUB_X = 0x0F, 0x1F
NOSPEC = Insn(0xC2, 0, 0, 0, 0)  # BPF_ST_NOSPEC()
_U32 = 0xFFFFFFFF


def bypass_spec_v1(v: Verifier) -> bool:
    """``bpf_bypass_spec_v1``: CAP_PERFMON (mitigations are on in the live kernel)."""
    return bool(v.inp.perfmon_capable)


bypass_spec_v4 = bypass_spec_v1  # the same capability in 6.18


def error_recoverable_with_nospec(err: int) -> bool:
    """Errors a speculative path may end in without rejecting the program."""
    return err in (errno.EPERM, errno.EACCES, errno.EINVAL)


# ------------------------------------------------------------------ speculative paths


def push_speculative(v: Verifier, next_idx: int, curr_idx: int) -> Any:
    """``push_stack(..., speculative=true)``."""
    st = v.push_stack(next_idx, curr_idx)
    st.speculative = True
    return st


def push_speculative_branch(v: Verifier, ins: Insn, next_idx: int) -> None:
    """``sanitize_speculative_path`` for a jump whose outcome is known: the side the
    program cannot take is still explored speculatively, the compared registers unknown."""
    if bypass_spec_v1(v):
        return
    st = push_speculative(v, next_idx, v.insn_idx)
    regs = st.cur.regs
    precise = not v.bpf_capable  # __mark_reg_unknown
    mark_unknown(regs[ins.dst], precise)
    if ins.code & 0x08:
        mark_unknown(regs[ins.src], precise)


def recover_with_nospec(v: Verifier, e: VerifyError) -> bool:
    """A recoverable error on a speculative path: a barrier goes before the instruction
    (``aux.nospec``), its ALU masking is dropped, and the path ends. The message stays in a
    level-2 log (a level-1 log loses it with the path) but is no verdict."""
    if not v.state.speculative or not error_recoverable_with_nospec(e.errno):
        return False
    if e.msg.startswith("infinite loop detected"):  # is_state_visited's, not the insn's
        return False
    aux = v.aux[v.insn_idx]
    aux["nospec"] = True
    aux.pop("alu_state", None)
    aux.pop("alu_limit", None)
    if v.errors and v.errors[-1] == e.msg:
        v.errors.pop()
    return True


def stops_speculation(v: Verifier, idx: int, after: bool) -> bool:
    """A speculative path ends at a barrier: before an instruction marked ``nospec``, or
    after one marked ``nospec_result``."""
    return v.state.speculative and bool(v.aux[idx].get("nospec_result" if after else "nospec"))


def note_stack_write(v: Verifier, types: list[str], size: int, vreg: Reg | None) -> None:
    """``check_stack_write_fixed_off``'s Spectre v4 rule: a pointer spill, or a write of
    a slot whose first ``size`` type bytes are not all plain data, gets ``nospec_result``
    (the kernel reads ``slot_type[0..size)``, not the bytes written)."""
    from pybpf.verifier.mem import _SPILLABLE
    from pybpf.verifier.state import STACK_MISC, STACK_ZERO

    if bypass_spec_v4(v):
        return
    sanitize = vreg is not None and base_type(vreg.type) in _SPILLABLE
    if not sanitize:
        sanitize = any(t not in (STACK_MISC, STACK_ZERO) for t in types[:size])
    if sanitize:
        v.aux[v.insn_idx]["nospec_result"] = True


# ------------------------------------------------------------------ sanitize_ptr_alu


@dataclass
class SanitizeInfo:
    """``struct bpf_sanitize_info``: the first pass's state and limit, for the commit."""

    alu_state: int = 0
    alu_limit: int = 0
    mask_to_left: bool = False


def retrieve_ptr_limit(ptr: Reg, mask_to_left: bool) -> tuple[int, int]:
    """``retrieve_ptr_limit``: (reason or 0, how far the pointer may move)."""
    if ptr.type == RegType.PTR_TO_STACK:
        limit_max = MAX_BPF_STACK + int(mask_to_left)
        limit = (-(ptr.var_off.value + ptr.off)) & _U32
    elif ptr.type == RegType.PTR_TO_MAP_VALUE and ptr.map_ptr is not None:
        limit_max = int(ptr.map_ptr.value_size)
        limit = ((ptr.smin if mask_to_left else ptr.umax) + ptr.off) & _U32
    else:
        return REASON_TYPE, 0
    if limit >= limit_max:
        return REASON_LIMIT, 0
    return 0, limit


def update_alu_sanitation_state(aux: dict[str, Any], alu_state: int, alu_limit: int) -> int:
    """Every path must agree on how an instruction is masked (``REASON_PATHS``)."""
    old = aux.get("alu_state", 0)
    if old and (old != alu_state or aux.get("alu_limit", 0) != alu_limit):
        return REASON_PATHS
    aux["alu_state"] = alu_state
    aux["alu_limit"] = alu_limit
    return 0


def sanitize_err(v: Verifier, ins: Insn, reason: int, off_is_dst: bool) -> None:
    """``sanitize_err``: the refusal's message (EACCES)."""
    err = "pointer arithmetic with it prohibited for !root"
    op = "add" if ins.code & 0xF0 == BPF_ADD else "sub"
    dst, src = ins.dst, ins.src
    if reason == REASON_BOUNDS:
        msg = f"R{dst if off_is_dst else src} has unknown scalar with mixed signed bounds, {err}\n"
    elif reason == REASON_TYPE:
        msg = f"R{src if off_is_dst else dst} has pointer with unsupported alu operation, {err}\n"
    elif reason == REASON_PATHS:
        msg = f"R{dst} tried to {op} from different maps, paths or scalars, {err}\n"
    elif reason == REASON_LIMIT:
        msg = f"R{dst} tried to {op} beyond pointer bounds, {err}\n"
    else:
        msg = f"verifier internal error: unknown reason ({reason})\n"
    v.fail(errno.EACCES, msg)


def sanitize_ptr_alu(v: Verifier, ins: Insn, ptr: Reg, off: Reg, info: SanitizeInfo,
                     ptr_is_dst: bool, commit_window: bool) -> None:
    """``sanitize_ptr_alu`` (register offsets, without CAP_PERFMON). First pass (before the
    arithmetic): the limit from the pointer's bounds, remembered in ``info``, and the
    speculative path where masking truncated the offset to 0. Commit pass (after): the
    masking window is the distance the pointer actually moved; recorded in the aux data."""
    if bypass_spec_v1(v) or not ins.code & 0x08:  # can_skip_alu_sanitation
        return
    op = ins.code & 0xF0
    off_is_imm = off.var_off.mask == 0
    off_is_neg = off.smin < 0
    aux = v.aux[v.insn_idx]
    if not v.state.speculative:
        if not commit_window:
            if not off_is_imm and (off.smin < 0) != (off.smax < 0):
                sanitize_err(v, ins, REASON_BOUNDS, not ptr_is_dst)
            info.mask_to_left = (op == BPF_ADD and off_is_neg) or (op == BPF_SUB and not off_is_neg)
        reason, limit = retrieve_ptr_limit(ptr, info.mask_to_left)
        if reason:
            sanitize_err(v, ins, reason, not ptr_is_dst)
        if commit_window:
            reason = update_alu_sanitation_state(aux, info.alu_state, abs(info.alu_limit - limit))
            if reason:
                sanitize_err(v, ins, reason, not ptr_is_dst)
            return
        info.alu_state = (BPF_ALU_NEG_VALUE if off_is_neg else 0) \
            | (BPF_ALU_IMMEDIATE if off_is_imm else 0) \
            | (BPF_ALU_SANITIZE_SRC if ptr_is_dst else BPF_ALU_SANITIZE_DST)
        info.alu_limit = limit
        if not off_is_imm:
            v.explore_alu_limits = True
    if commit_window or off_is_imm:
        return
    # the offset masked to 0: the pointer unmoved, from the next instruction on
    st = push_speculative(v, v.insn_idx + 1, v.insn_idx)
    if not ptr_is_dst:
        st.cur.regs[ins.dst].assign(ptr)


def sanitize_val_alu(v: Verifier, ins: Insn) -> None:
    """``sanitize_val_alu``: scalar ``+=``/``-=`` a register is marked as such, so a path
    doing pointer arithmetic at the same instruction is refused (``REASON_PATHS``)."""
    if bypass_spec_v1(v) or not ins.code & 0x08:
        return
    if update_alu_sanitation_state(v.aux[v.insn_idx], BPF_ALU_NON_POINTER, 0):
        sanitize_err(v, ins, REASON_PATHS, False)


# ------------------------------------------------------------------ the rewrites


def ptr_alu_patch(ins: Insn, aux: dict[str, Any]) -> list[Insn] | None:
    """``do_misc_fixups``' masking of sanitized pointer arithmetic: the offset is replaced
    by ``AX``, which is the offset when ``0 <= off <= alu_limit`` and 0 otherwise (a
    constant offset: ``AX = alu_limit``, the constant's magnitude); a negative offset is
    flipped first and the operation turned around."""
    if ins.code not in (ALU64_ADD_X, ALU64_SUB_X):
        return None
    state = int(aux.get("alu_state", 0))
    if not state or state == BPF_ALU_NON_POINTER:
        return None
    limit = int(aux.get("alu_limit", 0))
    imm = limit - (1 << 32) if limit >> 31 else limit  # BPF_MOV32_IMM's s32
    isneg = bool(state & BPF_ALU_NEG_VALUE)
    issrc = (state & BPF_ALU_SANITIZE) == BPF_ALU_SANITIZE_SRC
    isimm = bool(state & BPF_ALU_IMMEDIATE)
    off_reg = ins.src if issrc else ins.dst
    out: list[Insn] = []
    if isimm:
        out.append(Insn(0xB4, BPF_REG_AX, 0, 0, imm))  # w11 = limit
    else:
        if isneg:
            out.append(Insn(0x27, off_reg, 0, 0, -1))  # off *= -1
        out += [Insn(0xB4, BPF_REG_AX, 0, 0, imm),  # w11 = limit
                Insn(0x1F, BPF_REG_AX, off_reg, 0, 0),  # r11 -= off
                Insn(0x4F, BPF_REG_AX, off_reg, 0, 0),  # r11 |= off
                Insn(0x87, BPF_REG_AX, 0, 0, 0),  # r11 = -r11
                Insn(0xC7, BPF_REG_AX, 0, 0, 63),  # r11 s>>= 63
                Insn(0x5F, BPF_REG_AX, off_reg, 0, 0)]  # r11 &= off
    if not issrc:
        out.append(Insn(0xBF, ins.dst, ins.src, 0, 0))  # dst = ptr
    code = ins.code
    if isneg:
        code = ALU64_SUB_X if code == ALU64_ADD_X else ALU64_ADD_X
    out.append(ins._replace(code=code, src=BPF_REG_AX))
    if issrc and isneg and not isimm:
        out.append(Insn(0x27, off_reg, 0, 0, -1))  # the offset register restored
    return out


def insert_nospec(v: Verifier, p: ProgPatcher) -> None:
    """``convert_ctx_accesses``' first step: ``nospec`` before every instruction a
    speculative path could not pass (after ``sanitize_dead_code``, before the ctx
    rewrites, which then see the instruction at the end of the patch)."""
    i = 0
    while i < len(p.insns):
        if p.aux[i].get("nospec"):
            ins = p.insns[i]
            p.patch(i, [NOSPEC, ins])
            p.aux[i + 1]["nospec"] = False
            i += 1
        i += 2 if p.insns[i].code == 0x18 else 1


register_fixup_pass(45, insert_nospec)


__all__ = ["SanitizeInfo", "bypass_spec_v1", "bypass_spec_v4", "error_recoverable_with_nospec",
           "insert_nospec", "note_stack_write", "ptr_alu_patch", "push_speculative_branch",
           "recover_with_nospec", "retrieve_ptr_limit", "sanitize_ptr_alu", "sanitize_val_alu",
           "stops_speculation"]
