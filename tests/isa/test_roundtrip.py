"""``assemble(disassemble(x)) == x`` for every instruction of the table, in both syntaxes.

Instructions are generated per row of :data:`pybpf.isa.opcodes.OPCODES` with random
registers, offsets and immediates in the fields the row uses (reserved fields zero).
Where the kernel's printed form drops information, the test supplies what the kernel's
callbacks would (``pseudo_imm64``) or leaves the field out, as documented in
:mod:`pybpf.isa.disasm`:

- ``ld_imm64`` pseudo sources 1-6 print through :func:`lossless_imm64`;
- a kfunc call's ``off`` (module BTF fd index) is not printed, so kfunc calls use off 0;
- ``callx`` (0x8d) prints as the kernel prints any call and loses its register: it is
  round-tripped in the conformance syntax only (Linux rejects it anyway);
- the kernel-internal ``BPF_PROBE_MEM``/``BPF_PROBE_MEMSX`` loads print as the kernel
  prints them, ``BUG_ldx_<code>``: conformance syntax only.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.isa.asm import assemble
from pybpf.isa.disasm import disasm_conformance, disasm_kernel, lossless_imm64
from pybpf.isa.insn import Insn, decode, encode, ld_imm64
from pybpf.isa.opcodes import OPCODES, CallKind, Kind, OpSpec

REG = st.integers(0, 10)
OFF = st.integers(-0x8000, 0x7FFF)
IMM = st.integers(-0x80000000, 0x7FFFFFFF)
IMM64 = st.integers(0, (1 << 64) - 1)


def _with_variant(spec: OpSpec, ins: Insn) -> Insn:
    if spec.variant_field == "off":
        return ins._replace(off=spec.variant)
    if spec.variant_field == "imm":
        return ins._replace(imm=spec.variant)
    return ins


@st.composite
def instruction(draw: st.DrawFn, spec: OpSpec, *, kernel: bool = False) -> list[Insn]:
    """One valid instruction of ``spec`` (two slots for ``ld_imm64``)."""
    k = spec.kind
    d, s = draw(REG), draw(REG)
    if k == Kind.LD_IMM64:
        src = draw(st.integers(0, 6)) if kernel else 0
        return list(ld_imm64(d, draw(IMM64), src))
    if k in (Kind.ALU, Kind.SDIV, Kind.SMOD, Kind.MOV):
        ins = Insn(spec.code, d, s) if spec.src_reg else Insn(spec.code, d, imm=draw(IMM))
    elif k in (Kind.NEG, Kind.END, Kind.BSWAP):
        ins = Insn(spec.code, d)
    elif k == Kind.MOVSX:
        ins = Insn(spec.code, d, s)
    elif k == Kind.LD_ABS:
        ins = Insn(spec.code, imm=draw(IMM))
    elif k == Kind.LD_IND:
        ins = Insn(spec.code, src=s, imm=draw(IMM))
    elif k in (Kind.LDX, Kind.LDXSX, Kind.STX, Kind.ATOMIC):
        ins = Insn(spec.code, d, s, draw(OFF))
    elif k == Kind.ST:
        ins = Insn(spec.code, d, 0, draw(OFF), draw(IMM))
    elif k == Kind.JA:
        ins = Insn(spec.code, off=draw(OFF)) if spec.is64 else Insn(spec.code, imm=draw(IMM))
    elif k == Kind.JCOND:
        ins = Insn(spec.code, off=draw(OFF))
    elif k == Kind.JMP:
        ins = (Insn(spec.code, d, s, draw(OFF)) if spec.src_reg
               else Insn(spec.code, d, 0, draw(OFF), draw(IMM)))
    elif k == Kind.CALL:
        kind = draw(st.sampled_from(list(CallKind)))
        imm = draw(st.integers(0, 300)) if kind == CallKind.HELPER else draw(IMM)
        ins = Insn(spec.code, 0, kind, 0, imm)
    elif k == Kind.CALLX:
        ins = Insn(spec.code, d)
    else:
        ins = Insn(spec.code)
    return [_with_variant(spec, ins)]


def program(*, kernel: bool) -> st.SearchStrategy[list[Insn]]:
    rows = [s for s in OPCODES if not (kernel and (s.kind == Kind.CALLX or s.probe))]
    one = st.sampled_from(rows).flatmap(lambda spec: instruction(spec, kernel=kernel))
    return st.lists(one, min_size=1, max_size=12).map(lambda parts: [i for p in parts for i in p])


_ROWS = [(spec, kernel) for spec in OPCODES for kernel in (False, True)
         if not (kernel and (spec.kind == Kind.CALLX or spec.probe))]


@pytest.mark.parametrize(("spec", "kernel"), _ROWS,
                         ids=[f"{s.name}-{'kernel' if k else 'conf'}" for s, k in _ROWS])
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_every_row(spec: OpSpec, kernel: bool, data: st.DataObject) -> None:
    """Each row in both syntaxes (a sweep besides the random programs below)."""
    _check(data.draw(instruction(spec, kernel=kernel)), kernel)


def _check(prog: list[Insn], kernel: bool) -> None:
    if kernel:
        text = "\n".join(disasm_kernel(prog, pseudo_imm64=lossless_imm64))
        got = assemble(text, syntax="kernel")
    else:
        text = "\n".join(disasm_conformance(prog))
        got = assemble(text, syntax="conformance")
    assert encode(got) == encode(prog), text


@settings(max_examples=400, deadline=None)
@given(program(kernel=False))
def test_conformance_round_trip(prog: list[Insn]) -> None:
    _check(prog, kernel=False)


@settings(max_examples=400, deadline=None)
@given(program(kernel=True))
def test_kernel_round_trip(prog: list[Insn]) -> None:
    _check(prog, kernel=True)


@settings(max_examples=200, deadline=None)
@given(program(kernel=True))
def test_kernel_round_trip_auto_syntax(prog: list[Insn]) -> None:
    text = "\n".join(disasm_kernel(prog, pseudo_imm64=lossless_imm64))
    assert assemble(text) == prog


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=8, max_size=80).map(lambda b: b[: len(b) // 8 * 8]))
def test_conformance_round_trips_any_bytes(raw: bytes) -> None:
    """Unknown opcodes and stray fields become ``.insn`` lines: nothing is lost."""
    prog = decode(raw)
    assert encode(assemble("\n".join(disasm_conformance(prog)))) == raw


@settings(max_examples=200, deadline=None)
@given(program(kernel=True))
def test_kernel_text_without_opcode_column(prog: list[Insn]) -> None:
    """Without the ``(xx)`` column only ``ld_imm64`` of a small value changes meaning."""
    if any(i.code == 0x18 for i in prog):
        return
    lines = [ln.split(") ", 1)[1] for ln in disasm_kernel(prog, pseudo_imm64=lossless_imm64)]
    assert assemble("\n".join(lines)) == prog
