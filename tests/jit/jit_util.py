"""Run one program on both tiers and compare: the JIT must behave exactly like the interpreter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pybpf.errors import BpfFault
from pybpf.isa.insn import Insn
from pybpf.jit import compile_program
from pybpf.runtime.interpreter import CompiledProgram

Outcome = tuple[str, Any]


def flat(*insns: Insn | tuple[Insn, ...]) -> list[Insn]:
    out: list[Insn] = []
    for i in insns:
        out.extend((i,) if isinstance(i, Insn) else i)
    return out


def outcome(prog: Any, *args: int, **kw: Any) -> Outcome:
    try:
        return ("r0", prog.run(*args, **kw))
    except BpfFault as exc:
        return ("fault", (exc.pc, exc.addr, exc.size, exc.reason))


def both(insns: Sequence[Insn], *args: int, sanitize: bool = True, **kw: Any) -> Outcome:
    """The outcome of the interpreter, asserting the JIT's is the same."""
    return both_many(insns, [args], sanitize=sanitize, **kw)[0]


def both_many(insns: Sequence[Insn], inputs: Sequence[Sequence[int]], *,
              sanitize: bool = True, **kw: Any) -> list[Outcome]:
    """Compile once per tier, run every input (r1, r2, ...) on both, compare each."""
    run_kw = {k: kw.pop(k) for k in ("steps", "cpu", "ctx") if k in kw}
    interp_prog = CompiledProgram(insns, **kw)
    jit_prog = compile_program(insns, sanitize=sanitize, **kw)
    out = []
    for args in inputs:
        interp = outcome(interp_prog, *args, **run_kw)
        jit = outcome(jit_prog, *args, **run_kw)
        assert jit == interp, f"inputs {args}: JIT {jit} != interpreter {interp}"
        out.append(interp)
    return out
