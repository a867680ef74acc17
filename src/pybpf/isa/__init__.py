"""The eBPF instruction set: one opcode table and everything derived from it."""

from pybpf.isa.asm import assemble, assemble_bytes
from pybpf.isa.disasm import (
    bpftool_imm64,
    disasm_conformance,
    disasm_kernel,
    format_insn_conformance,
    format_insn_kernel,
    lossless_imm64,
)
from pybpf.isa.insn import INSN_SIZE, Insn, decode, encode, imm64, iter_program, ld_imm64
from pybpf.isa.opcodes import OPCODES, Kind, OpSpec, linux_accepts_code, lookup
from pybpf.isa.validate import (
    check_insn,
    check_insn_errno,
    check_insn_reserved,
    check_program_structure,
)

__all__ = [
    "INSN_SIZE",
    "OPCODES",
    "Insn",
    "Kind",
    "OpSpec",
    "assemble",
    "assemble_bytes",
    "bpftool_imm64",
    "check_insn",
    "check_insn_errno",
    "check_insn_reserved",
    "check_program_structure",
    "decode",
    "disasm_conformance",
    "disasm_kernel",
    "encode",
    "format_insn_conformance",
    "format_insn_kernel",
    "imm64",
    "iter_program",
    "ld_imm64",
    "linux_accepts_code",
    "lookup",
    "lossless_imm64",
]
