"""Hypothesis: the JIT and the interpreter agree on generated programs.

Programs come from :func:`pybpf.testing.strategies.stack_programs` (every ALU, JMP, memory
and atomic instruction on initialised registers and stack), composed here into programs
with a bpf-to-bpf call and with a counted loop. Each runs on the interpreter, the JIT and
the sanitizing JIT; all three must return the same r0.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.isa.insn import Insn
from pybpf.jit import compile_program
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.testing.strategies import stack_programs

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def agree(insns: list[Insn]) -> None:
    expected = CompiledProgram(insns).run()
    assert compile_program(insns).run() == expected
    assert compile_program(insns, sanitize=True).run() == expected


@SETTINGS
@given(stack_programs(max_body=40))
def test_straight_line_and_branches(insns: list[Insn]) -> None:
    agree(insns)


@SETTINGS
@given(stack_programs(max_body=20), stack_programs(max_body=20))
def test_with_a_subprogram_call(main: list[Insn], sub: list[Insn]) -> None:
    # main's body, then: call sub; r0 += r6 (r6 survives the call); exit; sub
    head = main[:-1]
    prog = [*head, Insn(0x85, 0, 1, 0, 2), Insn(0x0F, 0, 6), Insn(0x95), *sub]
    agree(prog)


@SETTINGS
@given(stack_programs(max_body=20, branches=True), st.integers(1, 5))
def test_with_a_counted_loop(body: list[Insn], times: int) -> None:
    # counter at r10-72; the body runs `times` times; r1 is borrowed around the decrement
    prologue_end = next(i for i, ins in enumerate(body) if ins.code == 0x7B)
    init, rest = body[:prologue_end], body[prologue_end:-1]
    loop = [
        *rest,
        Insn(0x7B, 10, 1, -80),  # *(u64 *)(r10 - 80) = r1
        Insn(0x79, 1, 10, -72),
        Insn(0x07, 1, 0, 0, -1),
        Insn(0x7B, 10, 1, -72),
        Insn(0x15, 1, 0, 2, 0),  # if r1 == 0 goto out
        Insn(0x79, 1, 10, -80),
    ]
    loop.append(Insn(0x05, 0, 0, -(len(loop) + 1)))  # goto loop start
    prog = [*init, Insn(0x7A, 10, 0, -72, times), *loop, Insn(0x79, 1, 10, -80), Insn(0x95)]
    agree(prog)
