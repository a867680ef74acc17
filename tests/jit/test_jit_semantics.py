"""The JIT against the interpreter, instruction class by instruction class.

Every case runs on both tiers (``jit_util.both``) and must give the same r0 or the same
fault (pc, address, size, reason); faults need the JIT's sanitize mode, which checks
every access as the interpreter does.
"""

from __future__ import annotations

import pytest
from jit_util import both, both_many, flat

from pybpf.errors import BpfFault
from pybpf.isa.insn import Insn, ld_imm64
from pybpf.jit import compile_program
from pybpf.runtime.context import BPF_MAX_LOOPS
from pybpf.runtime.interpreter import TailCall
from pybpf.runtime.memory import REGISTRY

M64 = (1 << 64) - 1
EXIT = Insn(0x95)


def mov64(dst: int, imm: int) -> Insn:
    return Insn(0xB7, dst, 0, 0, imm)


def alu(code: int, dst: int, src: int = 0, imm: int = 0, off: int = 0) -> Insn:
    return Insn(code, dst, src, off, imm)


ALU_REG_CODES = [0x0F, 0x1F, 0x2F, 0x3F, 0x4F, 0x5F, 0x6F, 0x7F, 0x9F, 0xAF, 0xCF,
                 0x0C, 0x1C, 0x2C, 0x3C, 0x4C, 0x5C, 0x6C, 0x7C, 0x9C, 0xAC, 0xCC]
VALUES = [0, 1, 7, 0xFFFFFFFF, 0x80000000, 1 << 63, M64, (1 << 40) | 10, 65, 33]


PAIRS = [(a, b) for a in VALUES for b in VALUES]


@pytest.mark.parametrize("code", ALU_REG_CODES)
def test_alu_reg_matches_interpreter(code: int) -> None:
    both_many([alu(0xBF, 0, 1), alu(code, 0, 2), EXIT], PAIRS)


def test_alu_imm_matches_interpreter() -> None:
    for code in [c & ~0x08 for c in ALU_REG_CODES]:
        for imm in (0, 1, -1, 31, 63, 0x7FFFFFFF, -(2**31)):
            both_many([alu(0xBF, 0, 1), alu(code, 0, imm=imm), EXIT], [(a,) for a in VALUES])


SIGNED = [0, 7, (-7) & M64, 1 << 63, 0x80000000, 0xFFFFFFF9, 2, M64, 0xFFFFFFFF, (-2) & M64]


@pytest.mark.parametrize("code", [0x3F, 0x9F, 0x3C, 0x9C])
def test_signed_division_edges(code: int) -> None:
    both_many([alu(0xBF, 0, 1), alu(code, 0, 2, off=1), EXIT],
              [(a, b) for a in SIGNED for b in SIGNED])
    for imm in (0, 2, -1, -2, -(2**31)):
        both_many([alu(0xBF, 0, 1), alu(code & ~0x08, 0, imm=imm, off=1), EXIT],
                  [(a,) for a in SIGNED])


def test_movsx_neg_and_byte_swaps() -> None:
    v = 0x1122334455667788
    xs = [(x,) for x in (0x80, 0x8000, 0x80000000, v, M64, 0)]
    for code, off in [(0xBF, 8), (0xBF, 16), (0xBF, 32), (0xBC, 8), (0xBC, 16)]:
        both_many([alu(code, 0, 1, off=off), EXIT], xs)
    for code, imm in [(0xDC, 16), (0xDC, 32), (0xDC, 64), (0xD4, 16), (0xD4, 32), (0xD4, 64),
                      (0xD7, 16), (0xD7, 32), (0xD7, 64)]:
        both_many([alu(0xBF, 0, 1), alu(code, 0, imm=imm), EXIT], xs)
    both_many([alu(0xBF, 0, 1), alu(0x87, 0), EXIT], xs)
    both_many([alu(0xBF, 0, 1), alu(0x84, 0), EXIT], xs)
    assert both([Insn(0xB4, 0, 0, 0, -1), EXIT]) == ("r0", 0xFFFFFFFF)


def test_stack_and_sign_extending_loads() -> None:
    assert both([mov64(1, -2), Insn(0x7B, 10, 1, -8), Insn(0x71, 0, 10, -8), EXIT]) == \
        ("r0", 0xFE)
    assert both([mov64(1, -2), Insn(0x7B, 10, 1, -8), Insn(0x91, 0, 10, -8), EXIT]) == \
        ("r0", M64 - 1)
    both([Insn(0x62, 10, 0, -4, -1), Insn(0x81, 0, 10, -4), EXIT])
    both([Insn(0x72, 10, 0, -1, 0x1FF), Insn(0x71, 0, 10, -1), EXIT])
    # a copy of r10 used as a base, and the frame is zeroed on entry
    both([alu(0xBF, 2, 10), alu(0x07, 2, imm=-16), Insn(0x79, 0, 2, 0), EXIT])


def test_faults_match_the_interpreter() -> None:
    kind, (pc, _addr, size, reason) = both([mov64(0, 0), Insn(0x79, 0, 10, 0), EXIT])
    assert kind == "fault" and pc == 1 and size == 8 and reason == "invalid memory read"
    both([mov64(1, 0), Insn(0x61, 0, 1, 0), EXIT])
    both(flat(ld_imm64(1, 0xDEAD0000), Insn(0x63, 1, 1, 0), EXIT))
    both([Insn(0x05, 0, 0, 5), EXIT])
    both([mov64(0, 1)])
    both([Insn(0xFF), EXIT])
    both(flat(Insn(0x05, 0, 0, 1), ld_imm64(0, 1), EXIT))
    both([Insn(0x85, 0, 1, 0, -1), EXIT])  # call depth
    both([Insn(0x05, 0, 0, -1)], steps=10_000)  # budget
    both([Insn(0xBF, 0, 12), EXIT])  # invalid register


def test_read_only_regions_and_program_arguments() -> None:
    data = REGISTRY.alloc(8, "jit test input")
    ro = REGISTRY.alloc(8, "jit ro input", writable=False)
    try:
        data.write(0, bytes(range(8)))
        assert both([Insn(0x79, 0, 1, 0), EXIT], data.start) == ("r0", 0x0706050403020100)
        kind, (_pc, _a, _s, reason) = both([Insn(0x7A, 1, 0, 0, 1), EXIT], ro.start)
        assert kind == "fault" and "read-only" in reason
        both([mov64(2, 1), Insn(0xDB, 1, 2, 0, 0), EXIT], ro.start)  # atomic on read-only
        both([mov64(2, 1), Insn(0xDB, 1, 2, 4, 0), EXIT], data.start)  # atomic off the end
    finally:
        REGISTRY.remove(data)
        REGISTRY.remove(ro)


def test_atomics_match() -> None:
    prog = [
        mov64(1, 10), Insn(0x7B, 10, 1, -8),
        mov64(2, 5), Insn(0xDB, 10, 2, -8, 0x00),
        mov64(3, 3), Insn(0xDB, 10, 3, -8, 0x01),
        mov64(4, 0xFF), Insn(0xDB, 10, 4, -8, 0xE1),
        mov64(0, 0xFF), mov64(5, 7), Insn(0xDB, 10, 5, -8, 0xF1),
        Insn(0x79, 6, 10, -8),
        alu(0x27, 6, imm=1000), alu(0x0F, 6, 3), alu(0x27, 6, imm=1000), alu(0x0F, 6, 4),
        alu(0xBF, 0, 6), EXIT,
    ]
    assert both(prog) == ("r0", (7 * 1000 + 15) * 1000 + 18)
    prog = [
        *ld_imm64(1, 0xFFFFFFFF_00000005), Insn(0x7B, 10, 1, -8),
        mov64(2, -1), Insn(0xC3, 10, 2, -8, 0x01),
        mov64(0, 1), mov64(3, 9), Insn(0xC3, 10, 3, -8, 0xF1),
        alu(0x27, 0, imm=100), alu(0x0F, 0, 2), EXIT,
    ]
    assert both(prog) == ("r0", 405)
    # load-acquire / store-release, every width
    for size_bits, code in ((0x18, 0xDB), (0x00, 0xC3), (0x08, 0xCB), (0x10, 0xD3)):
        del size_bits
        both(flat(ld_imm64(1, 0x8182838485868788), Insn(0x7B, 10, 1, -8),
                  Insn(code, 10, 1, -8, 0x110), Insn(code, 0, 10, -8, 0x100), EXIT))


def test_control_flow() -> None:
    assert both([mov64(0, 0), mov64(1, 0), alu(0x0F, 0, 1), alu(0x07, 1, imm=1),
                 Insn(0xA6, 1, 0, -3, 100), EXIT]) == ("r0", sum(range(100)))
    both([mov64(0, 2), mov64(1, -1), Insn(0xC5, 1, 0, 1, 0), mov64(0, 1), EXIT])
    both([mov64(0, 2), mov64(1, -1), Insn(0xA5, 1, 0, 1, 0), mov64(0, 1), EXIT])
    both([mov64(0, 1), Insn(0x06, 0, 0, 0, 1), mov64(0, 2), EXIT])
    assert both([mov64(0, 0), Insn(0xE5, 0, 0, 2), alu(0x07, 0, imm=1), Insn(0x05, 0, 0, -3),
                 EXIT]) == ("r0", BPF_MAX_LOOPS)


def test_bpf_to_bpf_calls() -> None:
    assert both([
        mov64(6, 6), mov64(1, 20), mov64(2, 22), Insn(0x85, 0, 1, 0, 3),
        alu(0x0F, 0, 6), EXIT, EXIT,
        mov64(6, 100), alu(0xBF, 0, 1), alu(0x0F, 0, 2), EXIT,
    ]) == ("r0", 48)
    assert both([
        mov64(1, 1), Insn(0x7B, 10, 1, -8), Insn(0x85, 0, 1, 0, 2),
        Insn(0x79, 0, 10, -8), EXIT,
        mov64(1, 99), Insn(0x7B, 10, 1, -8), EXIT,
    ]) == ("r0", 1)
    # recursion: sum(1..5) by calling itself, r1 counting down; callee clobbers r1..r5
    fact = [
        mov64(1, 5), Insn(0x85, 0, 1, 0, 1), EXIT,
        Insn(0x55, 1, 0, 2, 0), mov64(0, 0), EXIT,
        alu(0xBF, 6, 1), alu(0x07, 1, imm=-1), Insn(0x85, 0, 1, 0, -6), alu(0x0F, 0, 6), EXIT,
    ]
    assert both(fact) == ("r0", 15)
    # passing a stack pointer to a subprogram, which writes through it
    assert both([
        alu(0xBF, 1, 10), alu(0x07, 1, imm=-8), Insn(0x85, 0, 1, 0, 2),
        Insn(0x79, 0, 10, -8), EXIT,
        Insn(0x7A, 1, 0, 0, 77), EXIT,
    ]) == ("r0", 77)


def test_helpers_get_r1_to_r5_and_set_r0() -> None:
    seen: list[tuple[int, ...]] = []

    def helper(ctx: object, *args: int) -> int:
        seen.append(args)
        return -1

    prog = [mov64(1, 1), mov64(2, 2), mov64(3, 3), mov64(4, 4), mov64(5, 5),
            Insn(0x85, 0, 0, 0, 7), EXIT]
    assert compile_program(prog, helpers={7: helper}).run() == M64
    assert seen == [(1, 2, 3, 4, 5)]
    with pytest.raises(BpfFault, match="unknown helper"):
        compile_program([Insn(0x85, 0, 0, 0, 8), EXIT]).run()


class Boom(Exception):
    pass


def test_helper_exceptions_propagate_through_native_frames() -> None:
    calls: list[int] = []

    def helper(ctx: object, r1: int, *rest: int) -> int:
        calls.append(r1)
        if r1 == 3:
            raise Boom("from a helper")
        return r1

    # main calls a subprogram that calls the helper in a loop; the third call raises
    prog = [
        Insn(0x85, 0, 1, 0, 2), mov64(0, 99), EXIT,
        mov64(6, 1),
        alu(0xBF, 1, 6), Insn(0x85, 0, 0, 0, 1), alu(0x07, 6, imm=1), Insn(0xA5, 6, 0, -4, 10),
        EXIT,
    ]
    jit = compile_program(prog, helpers={1: helper})
    with pytest.raises(Boom, match="from a helper"):
        jit.run()
    assert calls == [1, 2, 3]
    # the thread's context is usable again afterwards
    assert compile_program([mov64(0, 5), EXIT]).run() == 5
    with pytest.raises(BpfFault, match="unknown kfunc"):
        compile_program([Insn(0x85, 0, 2, 0, 1234), EXIT]).run()


def test_tail_calls_and_their_limit() -> None:
    target = compile_program([alu(0xBF, 0, 1), alu(0x07, 0, imm=1), EXIT])

    def tail_call(ctx: object, *args: int) -> int:
        raise TailCall(target)

    prog = compile_program([Insn(0x85, 0, 0, 0, 12), mov64(0, 0), EXIT], helpers={12: tail_call})
    assert prog.run(41) == 42
    # a program that tail-calls itself stops after 33 tail calls, as the interpreter does
    from pybpf.runtime.interpreter import CompiledProgram

    counter = {"n": 0}
    selfish: dict[str, object] = {}

    def again(ctx: object, *args: int) -> int:
        counter["n"] += 1
        raise TailCall(selfish["p"])

    insns = [Insn(0x85, 0, 0, 0, 12), mov64(0, 0), EXIT]
    selfish["p"] = CompiledProgram(insns, helpers={12: again})
    interp = selfish["p"].run()  # type: ignore[attr-defined]
    n_interp = counter["n"]
    counter["n"] = 0
    selfish["p"] = compile_program(insns, helpers={12: again})
    assert selfish["p"].run() == interp  # type: ignore[attr-defined]
    assert counter["n"] == n_interp == 34


def test_ld_abs_uses_the_callback_and_ends_with_zero_when_out_of_bounds() -> None:
    packet = bytes(range(16))

    def ld_abs(ctx: object, skb: int, off: int, size: int) -> int | None:
        if off + size > len(packet):
            return None
        return int.from_bytes(packet[off:off + size], "big")

    assert both([Insn(0x28, 0, 0, 0, 2), EXIT], ld_abs=ld_abs) == ("r0", 0x0203)
    assert both([Insn(0x20, 0, 0, 0, 14), mov64(0, 5), EXIT], ld_abs=ld_abs) == ("r0", 0)
    assert both([mov64(7, 4), Insn(0x48, 0, 7, 0, 2), EXIT], ld_abs=ld_abs) == ("r0", 0x0607)
    both([Insn(0x28, 0, 0, 0, 2), EXIT])  # no ld_abs callback: a fault


def test_callx_calls_the_helper_in_the_register() -> None:
    prog = [mov64(2, 7), mov64(1, 40), Insn(0x8D, 2, 0, 0, 0), alu(0x07, 0, imm=2), EXIT]
    assert both(prog, helpers={7: lambda ctx, r1, *a: r1}) == ("r0", 42)


def test_cpu_is_visible_to_native_smp_processor_id() -> None:
    from pybpf.jit.natives import native_equivalent

    @native_equivalent("get_smp_processor_id")
    def smp(ctx: object, *args: int) -> int:
        return ctx.cpu  # type: ignore[attr-defined,no-any-return]

    prog = [Insn(0x85, 0, 0, 0, 8), EXIT]
    jit = compile_program(prog, helpers={8: smp})
    assert not jit.code.translation.uses_bridge  # runs natively
    from pybpf.runtime.cpus import num_possible_cpus

    last = num_possible_cpus() - 1
    assert jit.run(cpu=last) == last == both(prog, helpers={8: smp}, cpu=last)[1]
    # an override (not the standard implementation) still goes through Python
    jit = compile_program(prog, helpers={8: lambda ctx, *a: 77})
    assert jit.code.translation.uses_bridge and jit.run(cpu=last) == 77
