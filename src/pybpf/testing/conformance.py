"""The bpf_conformance suite: its test-file format and its plugin semantics.

A test file has ``-- asm`` (the program), optional ``-- mem`` (hex bytes the program gets
a pointer to in r1, with the length in r2), ``-- result`` (expected r0) or ``-- error``,
and optional ``-- raw`` (the expected encoding as 64-bit words). Programs run on the ISA
directly, without the verifier, as the suite's plugins do.

The suite's programs may call helper 5, ``unwind`` (from uBPF's test helpers): it returns
its argument, and a zero return ends the program with r0 = 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pybpf.errors import BpfFault
from pybpf.isa.insn import Insn, decode
from pybpf.runtime.context import RunContext
from pybpf.runtime.memory import REGISTRY

UNWIND_HELPER = 5


class _Unwind(Exception):
    """Raised by the ``unwind`` helper to end the program early."""


def _unwind(ctx: RunContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    if r1 == 0:
        raise _Unwind
    return r1


CONFORMANCE_HELPERS = {UNWIND_HELPER: _unwind}


@dataclass
class ConformanceCase:
    """One parsed ``.data`` file."""

    name: str
    asm: str
    mem: bytes = b""
    result: int | None = None
    error: str | None = None
    raw: list[int] = field(default_factory=list)


def parse_case(path: str | Path) -> ConformanceCase:
    """Read a bpf_conformance ``.data`` file into its sections."""
    p = Path(path)
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in p.read_text().splitlines():
        if line.startswith("-- "):
            current = line[3:].strip()
            sections.setdefault(current, [])
            continue
        if current is not None:
            sections[current].append(line)
    mem = bytes.fromhex(" ".join(
        ln.split("#", 1)[0] for ln in sections.get("mem", [])).replace(" ", ""))
    result_lines = [ln.strip() for ln in sections.get("result", []) if ln.strip()]
    error_lines = [ln.strip() for ln in sections.get("error", []) if ln.strip()]
    raw = [int(ln.strip(), 16) for ln in sections.get("raw", []) if ln.strip()]
    return ConformanceCase(
        name=p.stem,
        asm="\n".join(sections.get("asm", [])),
        mem=mem,
        result=int(result_lines[0], 16) if result_lines else None,
        error=" ".join(error_lines) or None,
        raw=raw,
    )


def run_program(insns: list[Insn] | bytes, mem: bytes = b"", *, tier: str = "interp",
                steps: int | None = 10_000_000) -> int:
    """Run a program the way a bpf_conformance plugin must; return r0.

    r1 points at a copy of ``mem`` (0 when there is none) and r2 holds its length.
    Raises :class:`BpfFault` on a fault and ``ValueError`` on undecodable bytes.
    """
    if isinstance(insns, bytes | bytearray):
        insns = decode(insns)
    if tier == "jit":
        import pybpf.jit

        compile_program = getattr(pybpf.jit, "compile_program", None)  # the llvmlite tier
        if compile_program is None:
            raise NotImplementedError("the JIT tier is not built yet")
        program = compile_program(insns, helpers=CONFORMANCE_HELPERS, name="conformance")
    elif tier == "interp":
        from pybpf.runtime.interpreter import CompiledProgram

        program = CompiledProgram(insns, helpers=CONFORMANCE_HELPERS, name="conformance")
    else:
        raise ValueError(f"unknown tier {tier!r} (interp or jit)")
    region = REGISTRY.alloc(len(mem), "conformance memory") if mem else None
    try:
        if region is not None:
            region.write(0, mem)
        r1 = region.start if region is not None else 0
        try:
            return program.run(r1, len(mem), steps=steps)
        except _Unwind:
            return 0
    finally:
        if region is not None:
            REGISTRY.remove(region)


def run_case(case: ConformanceCase, *, tier: str = "interp") -> tuple[bool, str]:
    """Assemble and run one case; ``(passed, explanation)``."""
    from pybpf.isa.asm import assemble

    try:
        insns = assemble(case.asm, syntax="conformance")
    except ValueError as exc:
        return False, f"assembler: {exc}"
    if case.raw:
        words = [int.from_bytes(i.encode(), "little") for i in insns]
        if words != case.raw:
            return False, f"encoding {[hex(w) for w in words]} != {[hex(w) for w in case.raw]}"
    try:
        r0 = run_program(insns, case.mem, tier=tier)
    except BpfFault as exc:
        if case.error is not None:
            return True, f"faulted as expected: {exc}"
        return False, f"fault: {exc}"
    if case.error is not None:
        return False, f"expected error {case.error!r}, got r0={r0:#x}"
    if case.result is not None and r0 != case.result:
        return False, f"r0 = {r0:#x}, expected {case.result:#x}"
    return True, f"r0 = {r0:#x}"
