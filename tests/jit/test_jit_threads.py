"""Several Python threads run one JIT program at once: atomics stay exact, CPUs separate.

ctypes releases the GIL while native code runs, so these threads really execute the
program concurrently; a lost update would show in the counter.
"""

from __future__ import annotations

import threading

from pybpf.isa.insn import Insn
from pybpf.jit import compile_program
from pybpf.jit.natives import native_equivalent
from pybpf.runtime.cpus import num_possible_cpus
from pybpf.runtime.memory import REGISTRY

THREADS = 4
# one thread per possible CPU where a test gives each thread its own CPU id, as the kernel
# never runs two programs on one CPU at once
CPUS = min(THREADS, num_possible_cpus())
ITERATIONS = 200_000


def test_atomic_adds_are_exact_under_contention() -> None:
    counter = REGISTRY.alloc(8, "jit shared counter")
    try:
        # r2 = 1; r3 = 0; loop: lock *(u64 *)(r1 + 0) += r2; r3 += 1; if r3 < N goto loop
        prog = compile_program([
            Insn(0xB7, 2, 0, 0, 1), Insn(0xB7, 3, 0, 0, 0),
            Insn(0xDB, 1, 2, 0, 0), Insn(0x07, 3, 0, 0, 1), Insn(0xA5, 3, 0, -3, ITERATIONS),
            Insn(0xB7, 0, 0, 0, 0), Insn(0x95),
        ])
        barrier = threading.Barrier(THREADS)

        def worker() -> None:
            barrier.wait()
            prog.run(counter.start)

        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert REGISTRY.load(counter.start, 8) == THREADS * ITERATIONS
    finally:
        REGISTRY.remove(counter)


@native_equivalent("get_smp_processor_id")
def _smp_processor_id(ctx: object, *args: int) -> int:
    return ctx.cpu  # type: ignore[attr-defined,no-any-return]


def test_per_cpu_slots_are_exact_when_each_thread_is_a_cpu() -> None:
    """Each thread adds into slot[cpu] non-atomically: correct only if CPUs stay separate."""
    slots = REGISTRY.alloc(8 * CPUS, "jit per-cpu slots")
    try:
        # r6 = r1; r0 = smp_processor_id(); r6 += r0 * 8; loop N: *(u64 *)r6 += 1
        prog = compile_program([
            Insn(0xBF, 6, 1), Insn(0x85, 0, 0, 0, 8), Insn(0x67, 0, 0, 0, 3),
            Insn(0x0F, 6, 0), Insn(0xB7, 3, 0, 0, 0),
            Insn(0x79, 4, 6, 0), Insn(0x07, 4, 0, 0, 1), Insn(0x7B, 6, 4, 0),
            Insn(0x07, 3, 0, 0, 1), Insn(0xA5, 3, 0, -5, ITERATIONS),
            Insn(0xB7, 0, 0, 0, 0), Insn(0x95),
        ], helpers={8: _smp_processor_id})
        assert not prog.code.translation.uses_bridge
        results: list[int] = []
        threads = [threading.Thread(target=lambda c=cpu: results.append(
            prog.run(slots.start, cpu=c))) for cpu in range(CPUS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [REGISTRY.load(slots.start + 8 * c, 8) for c in range(CPUS)] == \
            [ITERATIONS] * CPUS
    finally:
        REGISTRY.remove(slots)


def test_threads_with_python_helpers_run_concurrently() -> None:
    """Bridge calls from several threads each reach their own run's helpers and context."""
    seen: dict[int, set[int]] = {}
    lock = threading.Lock()

    def helper(ctx: object, r1: int, *rest: int) -> int:
        with lock:
            seen.setdefault(ctx.cpu, set()).add(r1)  # type: ignore[attr-defined]
        return r1 * 2

    prog = compile_program([
        Insn(0xB7, 6, 0, 0, 0), Insn(0xB7, 7, 0, 0, 0),
        Insn(0xBF, 1, 6), Insn(0x85, 0, 0, 0, 1), Insn(0x0F, 7, 0),
        Insn(0x07, 6, 0, 0, 1), Insn(0xA5, 6, 0, -5, 100),
        Insn(0xBF, 0, 7), Insn(0x95),
    ], helpers={1: helper})
    out: dict[int, int] = {}
    threads = [threading.Thread(target=lambda c=cpu: out.__setitem__(c, prog.run(cpu=c)))
               for cpu in range(CPUS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == {c: 2 * sum(range(100)) for c in range(CPUS)}
    assert seen == {c: set(range(100)) for c in range(CPUS)}
