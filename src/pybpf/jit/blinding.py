"""Constant blinding (``bpf_jit_harden``): no attacker-chosen immediate reaches native code.

As the kernel's ``bpf_jit_blind_constants`` does, every instruction carrying a 32-bit
immediate is rewritten to build that immediate in the auxiliary register ``BPF_REG_AX``
(r11, invisible to programs) from ``imm ^ rnd`` and ``rnd`` with a fresh random ``rnd``
per instruction, then to use the register form::

    r1 += 0x1234          →  ax = 0x1234 ^ rnd; ax ^= rnd; r1 += ax
    if r1 > 7 goto +3     →  ax = 7 ^ rnd; ax ^= rnd; if r1 > ax goto +3'
    *(u32 *)(r1 +4) = 5   →  ax = 5 ^ rnd; ax ^= rnd; *(u32 *)(r1 +4) = ax
    r1 = 0x1122.. ll      →  ax = hi ^ rnd; ax ^= rnd; ax <<= 32; r1 = ax;
                             w_ax = lo ^ rnd2; w_ax ^= rnd2; r1 |= ax
    r1 = 0                →  r1 ^= r1

Jump and call offsets are re-targeted to the rewritten instructions. The result keeps the
program's semantics exactly (the tiers' tests run blinded programs against the
interpreter on the original).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from pybpf.isa.insn import Insn
from pybpf.isa.opcodes import AluOp, CallKind, Cls, Kind, Src, lookup

BPF_REG_AX = 11
"""The auxiliary register (``MAX_BPF_REG`` in the kernel): never named by a program."""

_BLINDED_ALU = {AluOp.ADD, AluOp.SUB, AluOp.AND, AluOp.OR, AluOp.LSH, AluOp.RSH, AluOp.ARSH,
                AluOp.MUL, AluOp.MOV, AluOp.XOR, AluOp.DIV, AluOp.MOD}


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _rnd() -> int:
    return _s32(secrets.randbits(32))


def _expand(pc: int, ins: Insn, insns: Sequence[Insn]) -> tuple[list[Insn], int]:
    """Replacement of one instruction and the index (within it) of the jump, if any."""
    spec = lookup(ins.code, ins.off, ins.imm)
    if spec is None or BPF_REG_AX in (ins.dst, ins.src):
        return [ins], 0
    cls = ins.code & 0x07
    k = spec.kind
    if cls in (Cls.ALU, Cls.ALU64) and not spec.src_reg and spec.op in _BLINDED_ALU and k in (
            Kind.ALU, Kind.MOV, Kind.SDIV, Kind.SMOD):
        if spec.op == AluOp.MOV and ins.imm == 0:
            return [Insn(cls | Src.X | AluOp.XOR, ins.dst, ins.dst)], 0
        rnd = _rnd()
        mov = Cls.ALU64 if cls == Cls.ALU64 else Cls.ALU
        return [Insn(mov | Src.K | AluOp.MOV, BPF_REG_AX, 0, 0, _s32(rnd ^ ins.imm)),
                Insn(mov | Src.K | AluOp.XOR, BPF_REG_AX, 0, 0, rnd),
                Insn(ins.code | Src.X, ins.dst, BPF_REG_AX, ins.off, 0)], 0
    if k is Kind.JMP and not spec.src_reg:
        rnd = _rnd()
        mov = Cls.ALU64 if cls == Cls.JMP else Cls.ALU
        return [Insn(mov | Src.K | AluOp.MOV, BPF_REG_AX, 0, 0, _s32(rnd ^ ins.imm)),
                Insn(mov | Src.K | AluOp.XOR, BPF_REG_AX, 0, 0, rnd),
                Insn(ins.code | Src.X, ins.dst, BPF_REG_AX, ins.off, 0)], 2
    if k is Kind.ST:
        rnd = _rnd()
        stx = Cls.STX | (ins.code & 0xF8)
        return [Insn(Cls.ALU64 | Src.K | AluOp.MOV, BPF_REG_AX, 0, 0, _s32(rnd ^ ins.imm)),
                Insn(Cls.ALU64 | Src.K | AluOp.XOR, BPF_REG_AX, 0, 0, rnd),
                Insn(stx, ins.dst, BPF_REG_AX, ins.off, 0)], 0
    if k is Kind.LD_IMM64 and ins.src == 0 and pc + 1 < len(insns):
        hi, lo = insns[pc + 1].imm, ins.imm
        r1, r2 = _rnd(), _rnd()
        return [Insn(Cls.ALU64 | Src.K | AluOp.MOV, BPF_REG_AX, 0, 0, _s32(r1 ^ hi)),
                Insn(Cls.ALU64 | Src.K | AluOp.XOR, BPF_REG_AX, 0, 0, r1),
                Insn(Cls.ALU64 | Src.K | AluOp.LSH, BPF_REG_AX, 0, 0, 32),
                Insn(Cls.ALU64 | Src.X | AluOp.MOV, ins.dst, BPF_REG_AX),
                Insn(Cls.ALU | Src.K | AluOp.MOV, BPF_REG_AX, 0, 0, _s32(r2 ^ lo)),
                Insn(Cls.ALU | Src.K | AluOp.XOR, BPF_REG_AX, 0, 0, r2),
                Insn(Cls.ALU64 | Src.X | AluOp.OR, ins.dst, BPF_REG_AX)], 0
    return [ins], 0


def blind_constants(insns: Sequence[Insn]) -> tuple[list[Insn], list[int]]:
    """The blinded program and, for each original slot, its index in the blinded one."""
    insns = list(insns)
    n = len(insns)
    pieces: list[tuple[list[Insn], int]] = []
    pc = 0
    while pc < n:
        ins = insns[pc]
        spec = lookup(ins.code, ins.off, ins.imm)
        repl, at = _expand(pc, ins, insns)
        wide = spec is not None and spec.is_wide
        if wide and len(repl) > 1:
            pieces.append((repl, at))
            pieces.append(([], 0))  # the second slot vanishes into the expansion
            pc += 2
            continue
        pieces.append((repl, at))
        pc += 1
    new_index: list[int] = []
    pos = 0
    for repl, _at in pieces:
        new_index.append(pos)
        pos += len(repl)
    total = pos
    new_index.append(total)  # "one past the end" stays one past the end

    def remap(old_target: int) -> int:
        if 0 <= old_target <= n:
            return new_index[old_target]
        return old_target - n + total if old_target > n else old_target

    out: list[Insn] = []
    for old_pc, (repl, at) in enumerate(pieces):
        if not repl:
            continue
        orig = insns[old_pc]
        spec = lookup(orig.code, orig.off, orig.imm)
        for j, ins in enumerate(repl):
            here = len(out)
            if spec is not None and j == at:
                if spec.is_jump:
                    if spec.kind is Kind.JA and not spec.is64:  # gotol: offset in imm
                        ins = ins._replace(imm=remap(old_pc + orig.imm + 1) - here - 1)
                    else:
                        ins = ins._replace(off=remap(old_pc + orig.off + 1) - here - 1)
                elif spec.kind is Kind.CALL and orig.src == CallKind.PSEUDO_CALL:
                    ins = ins._replace(imm=remap(old_pc + orig.imm + 1) - here - 1)
            out.append(ins)
    return out, new_index[:n]

