"""Hypothesis strategies that generate programs the Linux verifier accepts.

``stack_programs()`` builds straight-line and forward-branching programs over
ALU/ALU64 (every operation, register and immediate forms, signed division, movsx,
byte swaps), JMP/JMP32 (every condition), LDX/ST/STX and atomics on the stack. Every
register r0–r9 and eight stack slots are initialised first, immediates avoid what the
verifier refuses (division by a zero immediate, out-of-range shift immediates), jumps only
go forward and the last instruction is ``exit`` — so the program is valid in the kernel
and its full 64-bit r0 is comparable across the kernel, the interpreter and the JIT.

Requires ``hypothesis`` (a test dependency); import this module only from tests.
"""

from __future__ import annotations

from hypothesis import strategies as st

from pybpf.isa.insn import Insn, ld_imm64
from pybpf.isa.opcodes import OPCODES, AluOp, AtomicOp, Kind, OpSpec

SLOTS = 8  # initialised 8-byte stack slots at r10-8 .. r10-64
GP_REGS = st.integers(0, 9)
IMM32 = st.one_of(st.integers(-(2**31), 2**31 - 1),
                  st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31), 0xFF, 0xFFFF, 7, 31, 32, 63]))
U64 = st.one_of(st.integers(0, 2**64 - 1),
                st.sampled_from([0, 1, 2**63, 2**63 - 1, 2**64 - 1, 2**32, 2**32 - 1, 0x80000000]))

_ALU = [s for s in OPCODES if s.kind in (Kind.ALU, Kind.SDIV, Kind.SMOD, Kind.NEG, Kind.MOV,
                                         Kind.MOVSX, Kind.END, Kind.BSWAP)]
_JMP = [s for s in OPCODES if s.kind is Kind.JMP]
_MEM = [s for s in OPCODES if s.kind in (Kind.LDX, Kind.LDXSX, Kind.ST, Kind.STX) and s.linux]
_ATOMIC = [s for s in OPCODES if s.kind is Kind.ATOMIC
           and s.op not in (AtomicOp.LOAD_ACQ, AtomicOp.STORE_REL)]


@st.composite
def _alu(draw: st.DrawFn, spec: OpSpec) -> Insn:
    dst = draw(GP_REGS)
    src = draw(GP_REGS) if spec.src_reg else 0
    off = spec.variant if spec.variant_field == "off" and spec.variant is not None else 0
    if spec.kind in (Kind.END, Kind.BSWAP):
        return Insn(spec.code, dst, 0, 0, spec.size)
    if spec.kind is Kind.NEG:
        return Insn(spec.code, dst)
    imm = 0
    if not spec.src_reg:
        if spec.op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
            imm = draw(st.integers(0, 63 if spec.is64 else 31))
        elif spec.op in (AluOp.DIV, AluOp.MOD):
            imm = draw(IMM32.filter(lambda v: v != 0))
        else:
            imm = draw(IMM32)
    return Insn(spec.code, dst, src, off, imm)


@st.composite
def _mem(draw: st.DrawFn, spec: OpSpec) -> Insn:
    size = spec.size
    slot_bytes = SLOTS * 8
    off = -draw(st.integers(1, slot_bytes // size)) * size
    if spec.kind in (Kind.LDX, Kind.LDXSX):
        return Insn(spec.code, draw(GP_REGS), 10, off, 0)
    if spec.kind is Kind.ST:
        return Insn(spec.code, 10, 0, off, draw(IMM32))
    return Insn(spec.code, 10, draw(GP_REGS), off, 0)


@st.composite
def _atomic(draw: st.DrawFn, spec: OpSpec) -> Insn:
    size = spec.size
    off = -draw(st.integers(1, SLOTS * 8 // size)) * size
    src = draw(st.integers(1, 9)) if spec.op == AtomicOp.CMPXCHG else draw(GP_REGS)
    return Insn(spec.code, 10, src, off, spec.op)


@st.composite
def _jmp(draw: st.DrawFn, spec: OpSpec) -> Insn:
    # the offset is patched later, once the program length is known
    dst = draw(GP_REGS)
    if spec.src_reg:
        return Insn(spec.code, dst, draw(GP_REGS), 0, 0)
    return Insn(spec.code, dst, 0, 0, draw(IMM32))


def _body_insn() -> st.SearchStrategy[Insn]:
    return st.one_of(
        st.sampled_from(_ALU).flatmap(_alu),
        st.sampled_from(_MEM).flatmap(_mem),
        st.sampled_from(_ATOMIC).flatmap(_atomic),
        st.sampled_from(_JMP).flatmap(_jmp),
    )


@st.composite
def stack_programs(draw: st.DrawFn, max_body: int = 40, branches: bool = True) -> list[Insn]:
    """A complete program: register/stack initialisation, a body, ``exit``."""
    prologue: list[Insn] = []
    for reg in range(10):
        prologue.extend(ld_imm64(reg, draw(U64)))
    for slot in range(1, SLOTS + 1):
        prologue.append(Insn(0x7B, 10, draw(GP_REGS), -8 * slot, 0))
    body_strategy = _body_insn() if branches else st.one_of(
        st.sampled_from(_ALU).flatmap(_alu), st.sampled_from(_MEM).flatmap(_mem),
        st.sampled_from(_ATOMIC).flatmap(_atomic))
    body = draw(st.lists(body_strategy, min_size=1, max_size=max_body))
    # Forward jumps only: each conditional jump lands somewhere after it (or on exit).
    fixed: list[Insn] = []
    n = len(body)
    for i, ins in enumerate(body):
        spec = ins.spec
        if spec is not None and spec.kind is Kind.JMP:
            remaining = n - i - 1  # instructions after this one, before the exit
            ins = ins._replace(off=draw(st.integers(0, remaining)))
        fixed.append(ins)
    return [*prologue, *fixed, Insn(0x95)]
