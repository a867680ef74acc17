"""Differential property test: the interpreter against the live kernel, full 64-bit r0.

Hypothesis generates verifier-valid stack-only programs (ALU/JMP/LDX/STX/atomics, see
pybpf.testing.strategies); each runs in the live kernel (through the oracle's run_u64,
which recovers all 64 bits of r0) and in the checked interpreter.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from pybpf.isa.insn import Insn, encode
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.testing.strategies import stack_programs


def _check(kernel: Any, insns: list[Insn]) -> None:
    expected = kernel.run_u64(encode(insns))
    got = CompiledProgram(insns).run()
    assert got == expected, f"interpreter r0={got:#x}, kernel r0={expected:#x}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(prog=stack_programs(branches=False))
def test_straight_line_programs_match_the_kernel(kernel: Any, prog: list[Insn]) -> None:
    _check(kernel, prog)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(prog=stack_programs(branches=True))
def test_branching_programs_match_the_kernel(kernel: Any, prog: list[Insn]) -> None:
    _check(kernel, prog)


def test_generated_programs_are_what_the_strategy_promises() -> None:
    from hypothesis import find

    prog = find(stack_programs(), lambda p: any(i.code in (0xDB, 0xC3) for i in p))
    assert prog[-1] == Insn(0x95)
    with pytest.raises(AssertionError):
        _check(_WrongKernel(), prog)


class _WrongKernel:
    """An oracle that is always off by one: the comparison must notice."""

    @staticmethod
    def run_u64(raw: bytes) -> int:
        from pybpf.isa.insn import decode

        return (CompiledProgram(decode(raw)).run() + 1) & (2**64 - 1)
