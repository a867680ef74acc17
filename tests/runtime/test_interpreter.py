"""The checked interpreter: Linux semantics of every instruction class, faults, calls."""

from __future__ import annotations

import threading

import pytest

from pybpf.errors import BpfFault
from pybpf.isa.insn import Insn, ld_imm64
from pybpf.runtime.interpreter import CompiledProgram, TailCall
from pybpf.runtime.memory import REGISTRY

M64 = (1 << 64) - 1
EXIT = Insn(0x95)


def mov64(dst: int, imm: int) -> Insn:
    return Insn(0xB7, dst, 0, 0, imm)


def alu(code: int, dst: int, src: int = 0, imm: int = 0, off: int = 0) -> Insn:
    return Insn(code, dst, src, off, imm)


def run(*insns: Insn | tuple[Insn, Insn], **kw: object) -> int:
    flat: list[Insn] = []
    for i in insns:
        flat.extend((i,) if isinstance(i, Insn) else i)
    return CompiledProgram(flat, **kw).run()  # type: ignore[arg-type]


def lddw(dst: int, value: int) -> tuple[Insn, Insn]:
    return ld_imm64(dst, value)


# --- ALU -------------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "a", "b", "expect"), [
    (0x0F, 5, 7, 12),  # add64 reg
    (0x1F, 5, 7, (5 - 7) & M64),  # sub64
    (0x2F, 1 << 63, 2, 0),  # mul64 wraps
    (0x3F, 7, 0, 0),  # div by zero -> 0
    (0x9F, 7, 0, 7),  # mod by zero -> dst
    (0x6F, 1, 65, 2),  # lsh masks the amount to 6 bits
    (0x7F, 1 << 63, 63, 1),  # rsh logical
    (0xCF, 1 << 63, 63, M64),  # arsh
    (0x0C, 0xFFFFFFFF, 1, 0),  # add32 wraps and zero-extends
    (0x3C, (1 << 40) | 10, (1 << 40) | 0, 0),  # div32 by a zero low half
    (0x9C, (1 << 40) | 10, 1 << 40, 10),  # mod32 by zero: dst zero-extended
    (0x6C, 1, 33, 2),  # lsh32 masks to 5 bits
    (0xCC, 0x80000000, 31, 0xFFFFFFFF),  # arsh32
])
def test_alu_reg(code: int, a: int, b: int, expect: int) -> None:
    assert run(*lddw(0, a), *lddw(1, b), alu(code, 0, 1), EXIT) == expect


@pytest.mark.parametrize(("off", "code", "a", "b", "expect"), [
    (1, 0x3F, (-7) & M64, 2, (-3) & M64),  # sdiv64 truncates toward zero
    (1, 0x9F, (-7) & M64, 2, (-1) & M64),  # smod64 sign follows the dividend
    (1, 0x3F, 1 << 63, M64, 1 << 63),  # INT_MIN / -1 wraps
    (1, 0x9F, 1 << 63, M64, 0),  # INT_MIN % -1 = 0
    (1, 0x3F, 5, 0, 0),  # sdiv by zero
    (1, 0x9F, (-5) & M64, 0, (-5) & M64),  # smod by zero leaves dst
    (1, 0x3C, 0x80000000, 0xFFFFFFFF, 0x80000000),  # sdiv32 INT_MIN / -1
    (1, 0x9C, 0xFFFFFFF9, 2, 0xFFFFFFFF),  # smod32 -7 % 2 = -1, zero-extended
])
def test_signed_division(off: int, code: int, a: int, b: int, expect: int) -> None:
    assert run(*lddw(0, a), *lddw(1, b), alu(code, 0, 1, off=off), EXIT) == expect


def test_immediates_are_sign_extended_for_alu64_and_truncated_for_alu32() -> None:
    assert run(mov64(0, -1), EXIT) == M64
    assert run(Insn(0xB4, 0, 0, 0, -1), EXIT) == 0xFFFFFFFF
    assert run(mov64(0, 10), alu(0x37, 0, imm=-1), EXIT) == 0  # 10 / 0xffff...ffff


def test_movsx_and_byte_swaps() -> None:
    assert run(*lddw(1, 0x80), alu(0xBF, 0, 1, off=8), EXIT) == (-128) & M64
    assert run(*lddw(1, 0x8000), alu(0xBC, 0, 1, off=16), EXIT) == 0xFFFF8000
    assert run(*lddw(1, 0x80000000), alu(0xBF, 0, 1, off=32), EXIT) == 0xFFFFFFFF80000000
    v = 0x1122334455667788
    assert run(*lddw(0, v), alu(0xDC, 0, imm=16), EXIT) == 0x8877
    assert run(*lddw(0, v), alu(0xDC, 0, imm=32), EXIT) == 0x88776655
    assert run(*lddw(0, v), alu(0xDC, 0, imm=64), EXIT) == 0x8877665544332211
    assert run(*lddw(0, v), alu(0xD4, 0, imm=16), EXIT) == 0x7788
    assert run(*lddw(0, v), alu(0xD7, 0, imm=32), EXIT) == 0x88776655
    assert run(*lddw(0, v), alu(0x87, 0), EXIT) == (-v) & M64
    assert run(*lddw(0, v), alu(0x84, 0), EXIT) == (-0x55667788) & 0xFFFFFFFF


# --- memory -----------------------------------------------------------------------------
def test_stack_store_load_and_sign_extending_loads() -> None:
    assert run(mov64(1, -2), Insn(0x7B, 10, 1, -8), Insn(0x71, 0, 10, -8), EXIT) == 0xFE
    assert run(mov64(1, -2), Insn(0x7B, 10, 1, -8), Insn(0x91, 0, 10, -8), EXIT) == M64 - 1
    assert run(Insn(0x62, 10, 0, -4, -1), Insn(0x81, 0, 10, -4), EXIT) == M64  # ldxsw
    assert run(Insn(0x72, 10, 0, -1, 0x1FF), Insn(0x71, 0, 10, -1), EXIT) == 0xFF  # stb truncs


def test_out_of_frame_access_faults_with_pc_and_address() -> None:
    with pytest.raises(BpfFault) as exc:
        run(mov64(0, 0), Insn(0x79, 0, 10, 0), EXIT)  # r10 + 0 is one past the frame
    assert exc.value.pc == 1 and exc.value.size == 8


def test_null_and_wild_pointers_fault() -> None:
    with pytest.raises(BpfFault):
        run(mov64(1, 0), Insn(0x61, 0, 1, 0), EXIT)
    with pytest.raises(BpfFault):
        run(*lddw(1, 0xDEAD0000), Insn(0x63, 1, 1, 0), EXIT)


def test_program_memory_argument_and_read_only_regions() -> None:
    data = REGISTRY.alloc(8, "test input")
    ro = REGISTRY.alloc(8, "ro input", writable=False)
    try:
        data.write(0, bytes(range(8)))
        prog = CompiledProgram([Insn(0x79, 0, 1, 0), EXIT])
        assert prog.run(data.start) == 0x0706050403020100
        with pytest.raises(BpfFault, match="read-only"):
            CompiledProgram([Insn(0x7A, 1, 0, 0, 1), EXIT]).run(ro.start)
    finally:
        REGISTRY.remove(data)
        REGISTRY.remove(ro)


def test_atomics() -> None:
    prog = [
        mov64(1, 10), Insn(0x7B, 10, 1, -8),
        mov64(2, 5), Insn(0xDB, 10, 2, -8, 0x00),  # lock add -> 15
        mov64(3, 3), Insn(0xDB, 10, 3, -8, 0x01),  # fetch add: r3 = 15, mem = 18
        mov64(4, 0xFF), Insn(0xDB, 10, 4, -8, 0xE1),  # xchg: r4 = 18, mem = 0xff
        mov64(0, 0xFF), mov64(5, 7), Insn(0xDB, 10, 5, -8, 0xF1),  # cmpxchg hits: mem = 7
        Insn(0x79, 6, 10, -8),
        alu(0x27, 6, imm=1000), alu(0x0F, 6, 3), alu(0x27, 6, imm=1000), alu(0x0F, 6, 4),
        alu(0xBF, 0, 6), EXIT,
    ]
    assert run(*prog) == (7 * 1000 + 15) * 1000 + 18


def test_atomic32_fetch_zero_extends_and_cmpxchg_miss_returns_old() -> None:
    prog = [
        *lddw(1, 0xFFFFFFFF_00000005), Insn(0x7B, 10, 1, -8),
        mov64(2, -1), Insn(0xC3, 10, 2, -8, 0x01),  # fetch add32: r2 = 5
        mov64(0, 1), mov64(3, 9), Insn(0xC3, 10, 3, -8, 0xF1),  # cmpxchg32 miss: r0 = 4
        alu(0x27, 0, imm=100), alu(0x0F, 0, 2), EXIT,
    ]
    assert run(*prog) == 405


# --- control flow -------------------------------------------------------------------------
def test_loops_and_jmp32() -> None:
    # r0 = 0; r1 = 0; loop: r0 += r1; r1 += 1; if w1 < 100 goto loop; exit
    assert run(mov64(0, 0), mov64(1, 0), alu(0x0F, 0, 1), alu(0x07, 1, imm=1),
               Insn(0xA6, 1, 0, -3, 100), EXIT) == sum(range(100))


def test_signed_conditional_jumps() -> None:
    # if r1 s< 0 goto +1; r0 = 1 ... (r1 = -1)
    prog = [mov64(0, 2), mov64(1, -1), Insn(0xC5, 1, 0, 1, 0), mov64(0, 1), EXIT]
    assert run(*prog) == 2
    prog = [mov64(0, 2), mov64(1, -1), Insn(0xA5, 1, 0, 1, 0), mov64(0, 1), EXIT]  # unsigned
    assert run(*prog) == 1


def test_gotol_uses_imm() -> None:
    assert run(mov64(0, 1), Insn(0x06, 0, 0, 0, 1), mov64(0, 2), EXIT) == 1


def test_bpf_to_bpf_calls_preserve_callee_saved_registers() -> None:
    prog = [
        mov64(6, 6), mov64(1, 20), mov64(2, 22),
        Insn(0x85, 0, 1, 0, 3),  # call pc+3
        alu(0x0F, 0, 6),  # r0 += r6 (must still be 6)
        EXIT,
        EXIT,  # padding (unreachable)
        mov64(6, 100), alu(0xBF, 0, 1), alu(0x0F, 0, 2), EXIT,  # callee: r0 = r1 + r2
    ]
    assert run(*prog) == 48


def test_callee_gets_its_own_stack_frame() -> None:
    prog = [
        mov64(1, 1), Insn(0x7B, 10, 1, -8),
        Insn(0x85, 0, 1, 0, 2),
        Insn(0x79, 0, 10, -8), EXIT,
        mov64(1, 99), Insn(0x7B, 10, 1, -8), EXIT,
    ]
    assert run(*prog) == 1


def test_call_depth_limit() -> None:
    with pytest.raises(BpfFault, match="call depth"):
        run(Insn(0x85, 0, 1, 0, -1), EXIT)  # calls itself forever


def test_bad_control_flow_faults() -> None:
    with pytest.raises(BpfFault, match="out of range"):
        run(Insn(0x05, 0, 0, 5), EXIT)
    with pytest.raises(BpfFault, match="fell off"):
        run(mov64(0, 1))
    with pytest.raises(BpfFault, match="unknown opcode"):
        run(Insn(0xFF), EXIT)
    with pytest.raises(BpfFault, match="middle"):
        run(Insn(0x05, 0, 0, 1), *lddw(0, 1), EXIT)


def test_instruction_budget_stops_runaway_programs() -> None:
    prog = CompiledProgram([Insn(0x05, 0, 0, -1)])
    with pytest.raises(BpfFault, match="budget"):
        prog.run(steps=10_000)


def test_may_goto_bounds_a_loop() -> None:
    # loop: may_goto +2; r0 += 1; goto loop; exit  -> runs BPF_MAX_LOOPS times
    from pybpf.runtime.context import BPF_MAX_LOOPS

    prog = [mov64(0, 0), Insn(0xE5, 0, 0, 2), alu(0x07, 0, imm=1), Insn(0x05, 0, 0, -3), EXIT]
    assert run(*prog) == BPF_MAX_LOOPS


# --- helpers --------------------------------------------------------------------------------
def test_helpers_get_r1_to_r5_and_set_r0() -> None:
    seen: list[tuple[int, ...]] = []

    def helper(ctx: object, *args: int) -> int:
        seen.append(args)
        return -1

    prog = CompiledProgram([mov64(1, 1), mov64(2, 2), mov64(3, 3), mov64(4, 4), mov64(5, 5),
                            Insn(0x85, 0, 0, 0, 7), EXIT], helpers={7: helper})
    assert prog.run() == M64
    assert seen == [(1, 2, 3, 4, 5)]
    with pytest.raises(BpfFault, match="unknown helper"):
        CompiledProgram([Insn(0x85, 0, 0, 0, 8), EXIT]).run()


def test_tail_call_continues_in_the_target_with_the_same_r1() -> None:
    target = CompiledProgram([alu(0xBF, 0, 1), alu(0x07, 0, imm=1), EXIT])

    def tail_call(ctx: object, *args: int) -> int:
        raise TailCall(target)

    prog = CompiledProgram([Insn(0x85, 0, 0, 0, 12), mov64(0, 0), EXIT], helpers={12: tail_call})
    assert prog.run(41) == 42


def test_ld_abs_uses_the_callback_and_ends_with_zero_when_out_of_bounds() -> None:
    packet = bytes(range(16))

    def ld_abs(ctx: object, skb: int, off: int, size: int) -> int | None:
        if off + size > len(packet):
            return None
        return int.from_bytes(packet[off:off + size], "big")

    prog = CompiledProgram([Insn(0x28, 0, 0, 0, 2), EXIT], ld_abs=ld_abs)  # ldabsh [2]
    assert prog.run() == 0x0203
    prog = CompiledProgram([Insn(0x20, 0, 0, 0, 14), mov64(0, 5), EXIT], ld_abs=ld_abs)
    assert prog.run() == 0


def test_threads_run_the_same_program_with_exact_atomics() -> None:
    counter = REGISTRY.alloc(8, "shared counter")
    try:
        # r2 = 1; loop 1000 times: lock *(u64 *)(r1 + 0) += r2
        prog = CompiledProgram([
            mov64(2, 1), mov64(3, 0),
            Insn(0xDB, 1, 2, 0, 0), alu(0x07, 3, imm=1), Insn(0xA5, 3, 0, -3, 1000),
            mov64(0, 0), EXIT,
        ])
        threads = [threading.Thread(target=prog.run, args=(counter.start,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert REGISTRY.load(counter.start, 8) == 4000
    finally:
        REGISTRY.remove(counter)


def test_helpers_can_call_back_into_a_subprogram() -> None:
    # main: r1 = 5; call helper 99 (which calls the subprogram at 4 with r1, r2); exit
    # sub (pc 4): r0 = r1 * r2; exit
    calls: list[int] = []

    def for_each(ctx: object, r1: int, *rest: int) -> int:
        from pybpf.runtime.context import RunContext

        assert isinstance(ctx, RunContext)
        total = 0
        for i in range(3):
            r0 = ctx.call_subprog(4, r1, i)
            calls.append(r0)
            total += r0
        return total

    prog = CompiledProgram([mov64(1, 5), Insn(0x85, 0, 0, 0, 99), EXIT, EXIT,
                            alu(0xBF, 0, 1), alu(0x2F, 0, 2), mov64(6, 1), EXIT],
                           helpers={99: for_each})
    assert prog.run() == 15
    assert calls == [0, 5, 10]


def test_a_run_on_an_impossible_cpu_is_refused() -> None:
    from pybpf.runtime.cpus import num_possible_cpus

    prog = CompiledProgram([mov64(0, 1), EXIT])
    assert prog.run(cpu=num_possible_cpus() - 1) == 1
    with pytest.raises(ValueError, match="not a possible CPU"):
        prog.run(cpu=num_possible_cpus())
    with pytest.raises(ValueError):
        prog.run(cpu=-1)
