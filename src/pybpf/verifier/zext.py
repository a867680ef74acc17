"""Zero extension of 32-bit results: ``subreg_def`` / ``zext_dst`` and the zext pass.

Every BPF instruction that writes a 32-bit result defines the upper half of its
register as zero. Most JITs get that for free from the CPU; where they do not, the
kernel's verifier inserts an explicit zero extension (``BPF_ZEXT_REG``: ``wD = wD`` with
``imm = 1``) after each 32-bit definition whose full 64 bits some later instruction
reads. It learns which ones while it walks the program:

- a register written by a 32-bit operation remembers the instruction
  (``reg->subreg_def = insn_idx + 1``; 0 is ``DEF_NOT_SUBREG``);
- a 64-bit read of such a register marks that instruction ``zext_dst``
  (``mark_insn_zext``) and forgets the definition.

``opt_subreg_zext_lo32_rnd_hi32`` then patches the marked instructions. On x86-64
(``bpf_jit_needs_zext()`` is false) only one kind gets a zext: a 32-bit ``cmpxchg``,
whose ``r0`` the kernel must zero-extend itself because the CPU instruction leaves the
upper half alone when the comparison fails. That is the ``(bc) w0 = w0`` the live 6.18
kernel shows after ``r0 = atomic_cmpxchg((u32 *)...)``. ``BPF_F_TEST_RND_HI32`` (the test
flag every ``test_verifier`` case carries) poisons the upper half after every other 32-bit
definition: ``r11 = <random>; r11 <<= 32; rD |= r11``, so a missed ``zext_dst`` shows as a
wrong result.

Tracking is the kernel's except that register copies (``mov``, stack fills) keep the
destination's own definition (:meth:`pybpf.verifier.regs.Reg.assign` does not copy
``subreg_def``), which is what ``mov`` does in the kernel and differs only for a 32-bit
value spilled and filled 32-bit between its definition and a 64-bit read.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from pybpf.isa.insn import Insn
from pybpf.verifier.fixups import register_fixup_pass
from pybpf.verifier.patch import ProgPatcher
from pybpf.verifier.regs import Reg, RegType, base_type

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

BPF_LD, BPF_LDX, BPF_ST, BPF_STX = 0x00, 0x01, 0x02, 0x03
BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = 0x04, 0x05, 0x06, 0x07
BPF_CALL, BPF_EXIT, BPF_END, BPF_MOV = 0x80, 0x90, 0xD0, 0xB0
BPF_DW, BPF_W = 0x18, 0x00
BPF_IMM, BPF_MEMSX, BPF_ATOMIC = 0x00, 0x80, 0xC0
BPF_CMPXCHG = 0xF1
BPF_FETCH = 0x01
BPF_LOAD_ACQ = 0x100
BPF_PROBE_ATOMIC = 0xE0
BPF_LSH, BPF_OR = 0x60, 0x40
BPF_REG_AX = 11
BPF_F_TEST_RND_HI32 = 1 << 2
BPF_PSEUDO_CALL, BPF_PSEUDO_KFUNC_CALL = 1, 2
DEF_NOT_SUBREG = 0


def is_reg64(ins: Insn, regno: int, reg: Reg | None, src: bool) -> bool:
    """``is_reg64``: does ``ins`` read (``src``) or write all 64 bits of ``regno``?

    Conservative (64-bit) where the kernel is: exits, helper arguments, pointers.
    """
    code = ins.code
    cls, op = code & 0x07, code & 0xF0
    if cls in (BPF_JMP, BPF_JMP32):
        if op == BPF_EXIT:
            return True
        if op == BPF_CALL:
            if ins.src == BPF_PSEUDO_CALL:
                return False  # caller-saved clobber of a bpf-to-bpf call: NOT_INIT anyway
            return src  # helper arguments 64-bit; the clobbered r0-r5 are not defs
    if cls == BPF_ALU64 and op == BPF_END and ins.imm in (16, 32):
        return False
    if cls in (BPF_ALU64, BPF_JMP) or (cls == BPF_ALU and op == BPF_END and ins.imm == 64):
        return True
    if cls in (BPF_ALU, BPF_JMP32):
        return False
    if cls == BPF_LDX:
        if not src:
            return (code & 0x18) == BPF_DW or (code & 0xE0) == BPF_MEMSX
        return True  # the source is a pointer
    if cls == BPF_STX:
        if src and reg is not None and reg.type != RegType.SCALAR_VALUE:
            return True
        return (code & 0x18) == BPF_DW
    if cls == BPF_LD:
        if (code & 0xE0) == BPF_IMM:
            return True
        return src  # LD_ABS/LD_IND define 32 bits, read the ctx pointer
    return True  # BPF_ST reads only a pointer; anything else conservatively


def is_cmpxchg_insn(ins: Insn) -> bool:
    return ins.code & 0x07 == BPF_STX and ins.code & 0xE0 == BPF_ATOMIC \
        and ins.imm == BPF_CMPXCHG


def mark_insn_zext(v: Verifier, reg: Reg) -> None:
    """``mark_insn_zext``: the 32-bit definition ``reg`` carries is read as 64 bits."""
    def_idx = reg.subreg_def
    if def_idx == DEF_NOT_SUBREG:
        return
    v.aux[def_idx - 1]["zext_dst"] = True
    reg.subreg_def = DEF_NOT_SUBREG  # zero-extended from now on


def note_reg_arg(v: Verifier, regno: int, reg: Reg, src: bool) -> None:
    """The zext part of ``check_reg_arg``: mark a 64-bit read, record a definition."""
    ins = v.insns[v.insn_idx]
    rw64 = is_reg64(ins, regno, reg, src)
    if src:
        if rw64 and regno != 10:
            mark_insn_zext(v, reg)
    else:
        reg.subreg_def = DEF_NOT_SUBREG if rw64 else v.insn_idx + 1


def zext_ins(regno: int) -> Insn:
    """``BPF_ZEXT_REG``: ``wD = wD`` with ``imm = 1`` (a zext the verifier inserted)."""
    return Insn(BPF_ALU | BPF_MOV | 0x08, regno, regno, 0, 1)


def insn_def_regno(ins: Insn) -> int:
    """``insn_def_regno``: the register an instruction writes, or -1."""
    cls = ins.code & 0x07
    if cls in (BPF_JMP, BPF_JMP32, BPF_ST):
        return -1
    if cls == BPF_STX:
        if ins.code & 0xE0 in (BPF_ATOMIC, BPF_PROBE_ATOMIC):
            if ins.imm == BPF_CMPXCHG:
                return 0
            if ins.imm == BPF_LOAD_ACQ:
                return ins.dst
            if ins.imm & BPF_FETCH:
                return ins.src
        return -1
    return ins.dst


def insn_has_def32(ins: Insn) -> bool:
    """``insn_has_def32``: ``ins`` writes a 32-bit result."""
    regno = insn_def_regno(ins)
    return regno != -1 and not is_reg64(ins, regno, None, False)


def rnd_hi32(ins: Insn, regno: int) -> list[Insn]:
    """``ins``, then random upper 32 bits OR-ed into its 32-bit result (through AX)."""
    return [ins, Insn(BPF_ALU64 | BPF_MOV, BPF_REG_AX, 0, 0, _s32(random.getrandbits(32))),
            Insn(BPF_ALU64 | BPF_LSH, BPF_REG_AX, 0, 0, 32),
            Insn(BPF_ALU64 | BPF_OR | 0x08, regno, BPF_REG_AX, 0, 0)]


def opt_subreg_zext_lo32(v: Verifier, p: ProgPatcher) -> None:
    """``opt_subreg_zext_lo32_rnd_hi32`` for a JIT that does not need zext (x86-64):
    a ``zext_dst`` 32-bit ``cmpxchg`` gets ``w0 = w0`` after it; with
    ``BPF_F_TEST_RND_HI32`` every other 32-bit definition gets random upper bits, which
    no instruction may then read (a test of the verifier's zext tracking)."""
    poison = bool(v.inp.prog_flags & BPF_F_TEST_RND_HI32)
    i = 0
    while i < len(p.insns):
        ins = p.insns[i]
        aux = p.aux[i]
        if not aux.get("zext_dst"):
            regno = insn_def_regno(ins) if poison else -1
            if regno < 0:
                i += 1
                continue
            if is_reg64(ins, regno, None, False):
                i += 2 if ins.code == 0x18 else 1  # an ld_imm64 is two slots
                continue
            if ins.code & 0x07 == BPF_LDX and base_type(aux.get("ptr_type", 0)) == RegType.PTR_TO_CTX:
                i += 1  # ctx loads may be widened by the conversion
                continue
            p.patch(i, rnd_hi32(ins, regno))
            i += 4
            continue
        if is_cmpxchg_insn(ins) and (ins.code & 0x18) != BPF_DW:
            p.patch(i, [ins, zext_ins(0)])
            i += 2
            continue
        i += 1


def _s32(v: int) -> int:
    return v - (1 << 32) if v >> 31 else v


register_fixup_pass(70, opt_subreg_zext_lo32)
