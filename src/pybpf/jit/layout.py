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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

if TYPE_CHECKING:
    from pybpf.jit.program import CompiledCode
    from pybpf.jit.translate import Translation


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
    """Function layout of a compiled program, and its pc → native address table.

    The table needs the program's line info, which may mean compiling a debug-info twin
    (tens of ms for a large program), so it is computed on first use: loading a program
    and reporting ``jited_prog_len``/``jited_func_lens`` never pays for it.
    """

    functions: list[NativeFunction]  # the program's main function first, then subprograms
    lines: Callable[[], dict[int, int]] | None = field(default=None, repr=False)
    _insn_addrs: dict[int, int] | None = field(default=None, repr=False)

    @property
    def insn_addrs(self) -> dict[int, int]:
        """pc → native address (from the line table; computed on first use)."""
        if self._insn_addrs is None:
            self._insn_addrs = self.lines() if self.lines is not None else {}
        return self._insn_addrs

    @property
    def insn_offsets(self) -> dict[int, int]:
        main = self.functions[0].address if self.functions else 0
        return {pc: addr - main for pc, addr in self.insn_addrs.items()}


def _symbols(elf: ELFFile) -> dict[str, tuple[int, int, int]]:
    """Function symbols: name → (section index, value, size)."""
    out: dict[str, tuple[int, int, int]] = {}
    for section in elf.iter_sections():
        if isinstance(section, SymbolTableSection):
            for sym in section.iter_symbols():
                if sym["st_info"]["type"] == "STT_FUNC" and isinstance(sym["st_shndx"], int):
                    out[sym.name] = (sym["st_shndx"], sym["st_value"], sym["st_size"])
    return out


def _functions(tr: Translation, symbols: dict[str, tuple[int, int, int]], base: int,
               shndx: int) -> list[NativeFunction]:
    entry = symbols[tr.entry]
    functions = [NativeFunction(tr.entry, 0, base + entry[1], entry[2])]
    for name, pc in tr.functions:
        sym = symbols.get(name)
        if sym is None or pc == 0 or sym[0] != shndx:
            continue  # inlined into its callers: no code of its own
        functions.append(NativeFunction(name, pc, base + sym[1], sym[2]))
    return functions


def read_layout(code: CompiledCode) -> Layout:
    tr = code.translation
    elf = ELFFile(io.BytesIO(code.object_file))
    symbols = _symbols(elf)
    if tr.entry not in symbols:
        return Layout([])
    shndx, entry_value, _size = symbols[tr.entry]
    base = code.addresses[tr.entry] - entry_value
    layout = Layout(_functions(tr, symbols, base, shndx))

    def lines() -> dict[int, int]:
        if code.line_twin is None:
            line_elf, line_functions = elf, layout.functions
        else:
            twin, obj = code.line_twin()
            line_elf = ELFFile(io.BytesIO(obj))
            twin_syms = _symbols(line_elf)
            if twin.entry not in twin_syms:
                return {}
            line_functions = _functions(twin, twin_syms, 0, twin_syms[twin.entry][0])
        return _line_addresses(line_elf, line_functions, layout.functions,
                               0 if code.line_twin is not None else base)

    layout.lines = lines
    return layout


def _line_addresses(elf: ELFFile, line_functions: list[NativeFunction],
                    functions: list[NativeFunction], base: int) -> dict[int, int]:
    """pc → native address in ``functions``, from the line table of ``elf``.

    ``line_functions`` are the same functions (same order, same entry pcs) as laid out in
    the object that carries the line table, relative to ``base``.
    """
    if not elf.has_dwarf_info():
        return {}
    by_pc = {f.entry_pc: f for f in functions}
    ranges = [(f.address, f.address + f.size, by_pc.get(f.entry_pc)) for f in line_functions]
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
            for lo, hi, target in ranges:
                if lo <= addr < hi and target is not None:
                    native = target.address + (addr - lo)
                    pc = state.line - 1
                    if pc not in best or native < best[pc]:
                        best[pc] = native
                    break
    return _fill(best, functions)


def _fill(best: dict[int, int], functions: list[NativeFunction]) -> dict[int, int]:
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
