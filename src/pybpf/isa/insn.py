"""``struct bpf_insn``: one 8-byte slot, decoded and encoded.

A program is a sequence of slots exactly as the kernel sees it; ``ld_imm64`` occupies two
slots (the second has ``code == 0`` and carries the upper 32 bits in ``imm``), so an
instruction index here is the kernel's instruction index (the ``pc`` of verifier logs).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from pybpf.isa.opcodes import OpSpec, lookup

INSN_SIZE = 8
_INSN = struct.Struct("<BBhi")


class Insn(NamedTuple):
    """One slot: ``code``, ``dst``/``src`` registers (4 bits each), signed ``off`` and ``imm``."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    @property
    def spec(self) -> OpSpec | None:
        return lookup(self.code, self.off, self.imm)

    def encode(self) -> bytes:
        return _INSN.pack(self.code & 0xFF, (self.dst & 0xF) | ((self.src & 0xF) << 4),
                          _s16(self.off), _s32(self.imm))

    @classmethod
    def decode(cls, raw: bytes | memoryview, offset: int = 0) -> Insn:
        code, regs, off, imm = _INSN.unpack_from(raw, offset)
        return cls(code, regs & 0xF, regs >> 4, off, imm)


def _s16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


def decode(raw: bytes | bytearray | memoryview) -> list[Insn]:
    """Split raw program bytes into slots. The length must be a multiple of 8."""
    if len(raw) % INSN_SIZE:
        raise ValueError(f"program length {len(raw)} is not a multiple of {INSN_SIZE}")
    return [Insn(c, r & 0xF, r >> 4, o, i) for c, r, o, i in _INSN.iter_unpack(raw)]


def encode(insns: Iterable[Insn]) -> bytes:
    """Join slots into raw program bytes."""
    return b"".join(i.encode() for i in insns)


def ld_imm64(dst: int, value: int, src: int = 0) -> tuple[Insn, Insn]:
    """The two slots of ``dst = value ll`` (``src`` is a ``BPF_PSEUDO_*`` kind)."""
    value &= 0xFFFFFFFFFFFFFFFF
    return (Insn(0x18, dst, src, 0, _s32(value)), Insn(0, 0, 0, 0, _s32(value >> 32)))


def imm64(first: Insn, second: Insn) -> int:
    """The 64-bit immediate of an ``ld_imm64`` pair, unsigned."""
    return (first.imm & 0xFFFFFFFF) | ((second.imm & 0xFFFFFFFF) << 32)


def iter_program(insns: list[Insn]) -> Iterator[tuple[int, Insn, OpSpec | None]]:
    """Walk a program instruction by instruction (skipping ``ld_imm64`` second slots)."""
    i = 0
    n = len(insns)
    while i < n:
        ins = insns[i]
        spec = ins.spec
        yield i, ins, spec
        i += 2 if spec is not None and spec.is_wide else 1
