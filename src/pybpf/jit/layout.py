"""Where the native code of a compiled program lies: functions, sizes, per-insn offsets.

Read from the object file MCJIT emitted (kept by :mod:`pybpf.jit.engine`): its symbol
table gives each function's offset and size in ``.text``; its DWARF line table — the
translator gives every BPF instruction the line ``pc + 1`` — gives the native address of
each instruction. This is what ``jited_ksyms``, ``jited_func_lens`` and
``jited_line_info`` (``bpf_prog_fill_jited_linfo``) report.
"""

from __future__ import annotations

import ctypes
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

if TYPE_CHECKING:
    from pybpf.jit.program import CompiledCode


@dataclass
class NativeFunction:
    name: str
    entry_pc: int  # BPF instruction index of the function's entry
    address: int
    size: int

    def code(self) -> bytes:
        return ctypes.string_at(self.address, self.size) if self.size else b""


@dataclass
class Layout:
    functions: list[NativeFunction]  # the program's main function first, then subprograms
    insn_addrs: dict[int, int] = field(default_factory=dict)  # pc → native address

    @property
    def insn_offsets(self) -> dict[int, int]:
        main = self.functions[0].address if self.functions else 0
        return {pc: addr - main for pc, addr in self.insn_addrs.items()}


def read_layout(code: CompiledCode) -> Layout:
    tr = code.translation
    elf = ELFFile(io.BytesIO(code.object_file))
    symbols: dict[str, tuple[int, int, int]] = {}  # name → (section index, value, size)
    for section in elf.iter_sections():
        if isinstance(section, SymbolTableSection):
            for sym in section.iter_symbols():
                if sym["st_info"]["type"] == "STT_FUNC" and isinstance(sym["st_shndx"], int):
                    symbols[sym.name] = (sym["st_shndx"], sym["st_value"], sym["st_size"])
    entry_sym = symbols.get(tr.entry)
    if entry_sym is None:
        return Layout([])
    shndx, entry_value, entry_size = entry_sym
    base = code.addresses[tr.entry] - entry_value
    functions = [NativeFunction(tr.entry, 0, base + entry_value, entry_size)]
    for name, pc in tr.functions:
        sym = symbols.get(name)
        if sym is None or pc == 0 or sym[0] != shndx:
            continue  # inlined into its callers: no code of its own
        functions.append(NativeFunction(name, pc, base + sym[1], sym[2]))
    layout = Layout(functions)
    if elf.has_dwarf_info():
        ranges = [(f.address, f.address + f.size) for f in functions]
        best: dict[int, int] = {}
        dwarf = elf.get_dwarf_info()
        for cu in dwarf.iter_CUs():
            lineprog = dwarf.line_program_for_CU(cu)
            if lineprog is None:
                continue
            for entry in lineprog.get_entries():
                state = entry.state
                if state is None or state.end_sequence or state.line < 1:
                    continue
                addr = base + state.address
                if not any(lo <= addr < hi for lo, hi in ranges):
                    continue
                pc = state.line - 1
                if pc not in best or addr < best[pc]:
                    best[pc] = addr
        layout.insn_addrs = _fill(best, len(tr.pcs) if hasattr(tr, "pcs") else 0, functions)
    return layout


def _fill(best: dict[int, int], _n: int, functions: list[NativeFunction]) -> dict[int, int]:
    """Give every instruction up to the last one seen an address (the previous one's)."""
    if not best:
        return {}
    out: dict[int, int] = {}
    last = functions[0].address
    for pc in range(max(best) + 1):
        if pc in best:
            last = best[pc]
        out[pc] = last
    return out
