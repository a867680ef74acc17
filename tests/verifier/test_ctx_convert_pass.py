"""The type-independent part of convert_ctx_accesses: narrow loads, movsx, prologue."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pybpf.isa.insn import Insn
from pybpf.verifier.ctx_convert import convert_ctx_accesses
from pybpf.verifier.patch import ProgPatcher
from pybpf.verifier.regs import RegType

LDX_W, LDX_H, LDX_B, LDX_DW = 0x61, 0x69, 0x71, 0x79
LDSX_B = 0x91
EXIT = 0x95


class _Ops:
    """A ctx whose 4-byte field at user offset 0 lives at internal offset 100."""

    def __init__(self, prologue: list[Insn] | None = None) -> None:
        self.prologue = prologue

    def convert_ctx_access(self, write: bool, insn: Insn, prog: Any) -> tuple[list[Insn], int]:
        return [insn._replace(off=insn.off + 100)], 4

    def gen_prologue(self, direct_write: bool, prog: Any) -> list[Insn]:
        return list(self.prologue or [])


def _run(insns: list[Insn], sizes: dict[int, int], ops: _Ops) -> list[Insn]:
    aux = [{"ptr_type": int(RegType.PTR_TO_CTX), "ctx_field_size": sizes[i]} if i in sizes else {}
           for i in range(len(insns))]
    v = SimpleNamespace(prog_ops=ops, inp=SimpleNamespace(prog=None), seen_direct_write=False)
    p = ProgPatcher(insns, aux)
    convert_ctx_accesses(v, p)  # type: ignore[arg-type]
    return p.insns


def test_full_load_is_converted_alone() -> None:
    out = _run([Insn(LDX_W, 0, 1, 0), Insn(EXIT)], {0: 4}, _Ops())
    assert out == [Insn(LDX_W, 0, 1, 100), Insn(EXIT)]


def test_narrow_load_widens_then_shifts_and_masks_like_the_kernel() -> None:
    out = _run([Insn(LDX_B, 2, 1, 3), Insn(EXIT)], {0: 4}, _Ops())
    assert out == [Insn(LDX_W, 2, 1, 100), Insn(0x74, 2, 0, 0, 24), Insn(0x54, 2, 0, 0, 0xFF),
                   Insn(EXIT)]
    out = _run([Insn(LDX_H, 2, 1, 0), Insn(EXIT)], {0: 4}, _Ops())
    assert out == [Insn(LDX_W, 2, 1, 100), Insn(0x54, 2, 0, 0, 0xFFFF), Insn(EXIT)]


def test_sign_extending_ctx_load_gets_a_movsx() -> None:
    out = _run([Insn(LDSX_B, 3, 1, 1), Insn(EXIT)], {0: 4}, _Ops())
    assert out == [Insn(LDX_W, 3, 1, 100), Insn(0x74, 3, 0, 0, 8), Insn(0x54, 3, 0, 0, 0xFF),
                   Insn(0xBF, 3, 3, 8, 0), Insn(EXIT)]


def test_prologue_is_inserted_and_back_jumps_skip_it() -> None:
    ops = _Ops(prologue=[Insn(0xB7, 6, 0, 0, 1)])
    out = _run([Insn(0xB7, 0, 0, 0, 0), Insn(0x05, 0, 0, -2, 0), Insn(EXIT)], {}, ops)
    assert out[0] == Insn(0xB7, 6, 0, 0, 1)
    assert 2 + out[2].off + 1 == 1
