"""Disassembly of JIT code for ``pybpf prog dump jited`` (bpftool's format).

llvmlite cannot disassemble, so this runs the first disassembler found on the machine:
``llvm-objdump`` (LLVM's, what bpftool links against when built with LLVM) or binutils
``objdump``, on the code bytes read from memory (relocations applied), in AT&T syntax
with offsets relative to each function, as bpftool prints them. Without a disassembler
the code is shown as hex bytes.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pybpf.jit.program import JitProgram

_ARCH = {"x86_64": "i386:x86-64", "aarch64": "aarch64"}
_LINE = re.compile(r"^\s*([0-9a-f]+):\s*(.*)$")


def disassembler() -> str | None:
    """The tool used: ``llvm-objdump``, ``objdump`` or None."""
    for tool in ("llvm-objdump", "llvm-objdump-14", "objdump"):
        path = shutil.which(tool)
        if path:
            return path
    return None


def disassemble_bytes(code: bytes) -> list[tuple[int, str]]:
    """``(offset, instruction text)`` for each native instruction of ``code``."""
    tool = disassembler()
    if tool is None or not code:
        return [(i, code[i:i + 16].hex(" ")) for i in range(0, len(code), 16)]
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
        f.write(code)
        path = f.name
    try:
        if "llvm-objdump" in os.path.basename(tool):
            cmd = [tool, "-D", "--no-show-raw-insn", f"--triple={platform.machine()}",
                   "-b", "binary", path]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:  # older llvm-objdump cannot read raw binaries
                tool = shutil.which("objdump") or tool
        if "llvm-objdump" not in os.path.basename(tool):
            arch = _ARCH.get(platform.machine(), platform.machine())
            cmd = [tool, "-D", "--no-show-raw-insn", "-b", "binary", "-m", arch, path]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        os.unlink(path)
    rows: list[tuple[int, str]] = []
    for line in out.stdout.splitlines():
        m = _LINE.match(line)
        if m and m.group(2).strip():
            rows.append((int(m.group(1), 16), " ".join(m.group(2).split())))
    return rows


def disassemble(prog: JitProgram, *, annotate: Callable[[int], str | None] | None = None,
                tag: str = "") -> list[str]:
    """Lines of ``bpftool prog dump jited`` for a program.

    ``annotate(pc)`` may return source text for a BPF instruction (its line info); it is
    printed as ``; text`` before the first native instruction of that BPF instruction.
    """
    layout = prog.code.layout()
    starts: dict[int, list[int]] = {}
    for pc, addr in sorted(layout.insn_addrs.items()):
        if not starts.get(addr):
            starts.setdefault(addr, []).append(pc)
    lines: list[str] = []
    for fn in layout.functions:
        label = f"bpf_prog_{tag}_{prog.name}" if tag else f"bpf_prog_{prog.name}"
        if fn.entry_pc:
            label += f"_F{fn.entry_pc}"
        lines.append(f"{label}:")
        for off, text in disassemble_bytes(fn.code()):
            if annotate is not None:
                for pc in starts.get(fn.address + off, []):
                    note = annotate(pc)
                    if note:
                        lines.append(f"; {note}")
            lines.append(f"{off:4x}:\t{text}")
        lines.append("")
    return lines
