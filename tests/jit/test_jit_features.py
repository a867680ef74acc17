"""Constant blinding, the compile cache, jited info, disassembly, native helpers."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from jit_util import both_many

from pybpf.isa.insn import Insn, ld_imm64
from pybpf.jit import compile_program
from pybpf.jit.blinding import BPF_REG_AX, blind_constants
from pybpf.jit.cache import CACHE
from pybpf.jit.disasm import disassembler
from pybpf.jit.natives import native_equivalent
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.testing.strategies import stack_programs

EXIT = Insn(0x95)


def test_blinding_hides_every_immediate_and_keeps_semantics() -> None:
    prog = [*ld_imm64(1, 0x1122334455667788), Insn(0x07, 1, 0, 0, 0x5A5A5A5A),
            Insn(0xB7, 2, 0, 0, 0), Insn(0x62, 10, 0, -4, 0x3C3C3C3C),
            Insn(0x61, 3, 10, -4), Insn(0x0F, 1, 3),
            Insn(0x25, 1, 0, 1, 0x7E7E7E7E),  # if r1 > imm goto +1
            Insn(0xB7, 1, 0, 0, 1), Insn(0xBF, 0, 1), EXIT]
    blinded, mapping = blind_constants(prog)
    secrets = {0x11223344, 0x55667788, 0x5A5A5A5A, 0x3C3C3C3C, 0x7E7E7E7E}
    assert not secrets & {i.imm & 0xFFFFFFFF for i in blinded}
    assert any(BPF_REG_AX in (i.dst, i.src) for i in blinded)
    assert len(mapping) == len(prog) and mapping[0] == 0
    assert Insn(0xAF, 2, 2) in blinded  # r2 = 0 becomes r2 ^= r2
    expected = CompiledProgram(prog).run()
    hardened = compile_program(prog, harden=True)
    assert hardened.blinded and hardened.run() == expected
    # a fresh key every load
    assert blind_constants(prog)[0] != blinded


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack_programs(max_body=30))
def test_blinded_programs_agree_with_the_interpreter(insns: list[Insn]) -> None:
    assert compile_program(insns, harden=True).run() == CompiledProgram(insns).run()


def test_blinding_retargets_jumps_and_calls() -> None:
    prog = [Insn(0xB7, 1, 0, 0, 3), Insn(0x85, 0, 1, 0, 3), Insn(0x07, 0, 0, 0, 100), EXIT,
            EXIT,
            Insn(0xB7, 0, 0, 0, 0), Insn(0x07, 0, 0, 0, 5), Insn(0x07, 1, 0, 0, -1),
            Insn(0x55, 1, 0, -3, 0), EXIT]
    assert compile_program(prog, harden=True).run() == CompiledProgram(prog).run() == 115


def test_compile_cache_makes_reloading_fast() -> None:
    prog = [Insn(0xB7, 0, 0, 0, 1), *[Insn(0x07, 0, 0, 0, i) for i in range(300)], EXIT]
    CACHE.clear()
    first = compile_program(prog)
    second = compile_program(prog)
    assert second.code is first.code and CACHE.hits >= 1  # no second LLVM compile
    assert compile_program(prog, sanitize=True).code is not first.code
    assert compile_program(prog, harden=True).code is not first.code


def test_jited_info_and_line_offsets() -> None:
    def helper(ctx: object, *args: int) -> int:
        return 1

    prog = [Insn(0xB7, 6, 0, 0, 0),
            Insn(0xBF, 1, 6), Insn(0x85, 0, 0, 0, 1), Insn(0x0F, 6, 0),
            Insn(0xA5, 6, 0, -4, 10), Insn(0xBF, 0, 6), EXIT]
    jit = compile_program(prog, helpers={1: helper})
    assert jit.run() == 10
    assert jit.jited_len == sum(jit.jited_func_lens) > 0
    assert len(jit.native_code) == jit.jited_len
    assert jit.jited_ksyms[0] > 0
    offsets = jit.insn_offsets
    assert offsets and all(0 <= off < jit.jited_len for off in offsets.values())
    addrs = jit.jited_line_info([0, 2, 5])
    lo, hi = jit.jited_ksyms[0], jit.jited_ksyms[0] + jit.jited_func_lens[0]
    assert all(lo <= a < hi for a in addrs)


def test_disassembly_lists_native_instructions_with_annotations() -> None:
    jit = compile_program([Insn(0xB7, 0, 0, 0, 42), EXIT], name="answer")
    lines = jit.disassemble(annotate=lambda pc: f"insn {pc}", tag="0123456789abcdef")
    assert lines[0] == "bpf_prog_0123456789abcdef_answer:"
    body = [ln for ln in lines[1:] if ln and not ln.startswith(";")]
    assert body and body[0].split(":")[0].strip() == "0"
    if disassembler() is not None:
        assert any("ret" in ln for ln in body)
        assert any("$0x2a" in ln for ln in body)
    assert any(ln.startswith("; insn") for ln in lines)


def test_native_clock_and_prandom() -> None:
    @native_equivalent("ktime_get_ns")
    def ktime(ctx: object, *a: int) -> int:
        return time.monotonic_ns()

    @native_equivalent("get_prandom_u32")
    def prandom(ctx: object, *a: int) -> int:
        return 4

    t0 = time.monotonic_ns()
    jit = compile_program([Insn(0x85, 0, 0, 0, 5), EXIT], helpers={5: ktime})
    assert not jit.code.translation.uses_bridge
    assert t0 <= jit.run() <= time.monotonic_ns()
    jit = compile_program([Insn(0x85, 0, 0, 0, 7), Insn(0xBF, 6, 0), Insn(0x85, 0, 0, 0, 7),
                           Insn(0x67, 0, 0, 0, 32), Insn(0x4F, 0, 6), EXIT],
                          helpers={7: prandom})
    values = {jit.run() for _ in range(20)}
    assert len(values) == 20  # different every call, 32 bits each
    assert all(v >> 32 < 2**32 for v in values)


def test_native_test_run_loop_times_repeats() -> None:
    jit = compile_program([Insn(0xBF, 0, 1), Insn(0x07, 0, 0, 0, 1), EXIT])
    r0, ns = jit.test_run(41, repeat=1000)
    assert r0 == 42 and ns > 0


def test_sanitize_catches_what_the_interpreter_catches() -> None:
    # a loop running off the end of its stack frame, with a variable offset
    prog = [Insn(0xBF, 2, 10), Insn(0x07, 2, 0, 0, -8), Insn(0x7A, 2, 0, 0, 1),
            Insn(0x07, 2, 0, 0, -8), Insn(0x05, 0, 0, -3)]
    out = both_many(prog, [()])
    kind, (pc, _addr, size, reason) = out[0]
    assert kind == "fault" and pc == 2 and size == 8 and "write" in reason
