"""The eBPF instruction set: one opcode table and everything derived from it."""

from pybpf.isa.insn import INSN_SIZE, Insn, decode, encode, imm64, iter_program, ld_imm64
from pybpf.isa.opcodes import OPCODES, Kind, OpSpec, lookup

__all__ = [
    "INSN_SIZE",
    "OPCODES",
    "Insn",
    "Kind",
    "OpSpec",
    "decode",
    "encode",
    "imm64",
    "iter_program",
    "ld_imm64",
    "lookup",
]
