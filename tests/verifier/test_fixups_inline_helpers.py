"""Helpers 6.18 inlines on x86-64: ``bpf_get_smp_processor_id`` and ``bpf_jiffies64``.

The xlated program must be the kernel's instruction for instruction, the variable's
address aside (``cpu_number`` through a 32-bit ``mov``, ``jiffies`` through an
``ld_imm64``), and both tiers must run it: the CPU id the run pretends to be on (what the
kernel's test_run on a chosen CPU returns), and the current jiffies.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.helpers.impls import jiffies64
from pybpf.isa.insn import Insn, encode
from pybpf.jit import compile_program
from pybpf.runtime.context import RunContext
from pybpf.runtime.cpus import num_possible_cpus
from pybpf.runtime.interpreter import BPF_ADDR_PERCPU, CompiledProgram
from pybpf.runtime.kvars import cpu_number_addr, jiffies_addr
from pybpf.verifier.api import VerifierInput, bpf_check

SOCKET_FILTER, XDP, RAW_TRACEPOINT = 1, 6, 17
BPF_F_TEST_RUN_ON_CPU = 1
EXIT = Insn(0x95, 0, 0, 0, 0)


def call_prog(fid: int, shift: int = 0) -> list[Insn]:
    out = [Insn(0x85, 0, 0, 0, fid)]
    if shift:
        out.append(Insn(0x77, 0, 0, 0, shift))
    return [*out, EXIT]


def xlated(insns: list[Insn], prog_type: int = SOCKET_FILTER) -> list[Insn]:
    res = bpf_check(VerifierInput(insns=insns, prog_type=prog_type))
    assert res.errno == 0, res.log
    return list(res.insns)


def shape(insns: list[Insn]) -> list[tuple[int, ...]]:
    """Instructions without the variable addresses (the immediates of ``mov``/``ld_imm64``)."""
    return [(i.code, i.dst, i.src, i.off) if i.code in (0x18, 0x00, 0xB7)
            else (i.code, i.dst, i.src, i.off, i.imm) for i in insns]


def tiers(insns: list[Insn]) -> list[object]:
    return [CompiledProgram(insns), compile_program(insns)]


@pytest.mark.parametrize("prog_type", [SOCKET_FILTER, XDP, RAW_TRACEPOINT])
def test_smp_processor_id_xlated_equals_kernel(kernel: ModuleType, prog_type: int) -> None:
    with kernel.KernelFds() as fds:
        res = fds.prog_load(prog_type, encode(call_prog(8)))
        assert res.ok, res.log
        theirs = kernel.prog_xlated(res.fd)
    ours = xlated(call_prog(8), prog_type)
    assert shape(ours) == shape(theirs)
    assert ours[0].imm == cpu_number_addr()
    assert ours[1] == Insn(0xBF, 0, 0, BPF_ADDR_PERCPU, 0)


@pytest.mark.parametrize("prog_type", [SOCKET_FILTER, XDP])
def test_jiffies64_xlated_equals_kernel(kernel: ModuleType, prog_type: int) -> None:
    with kernel.KernelFds() as fds:
        res = fds.prog_load(prog_type, encode(call_prog(118)))
        assert res.ok, res.log
        theirs = kernel.prog_xlated(res.fd)
    ours = xlated(call_prog(118), prog_type)
    assert shape(ours) == shape(theirs)
    assert (ours[0].imm & 0xFFFFFFFF) | (ours[1].imm << 32) == jiffies_addr()


def test_smp_processor_id_runs_as_kernel_test_run_on_cpu(kernel: ModuleType) -> None:
    """raw_tp test_run with ``BPF_F_TEST_RUN_ON_CPU``: the program sees that CPU."""
    ours = xlated(call_prog(8), RAW_TRACEPOINT)
    with kernel.KernelFds() as fds:
        res = fds.prog_load(RAW_TRACEPOINT, encode(call_prog(8)))
        assert res.ok, res.log
        for cpu in range(num_possible_cpus()):
            run = kernel.prog_test_run(res.fd, flags=BPF_F_TEST_RUN_ON_CPU, cpu=cpu, repeat=0)
            assert run.errno == 0 and run.retval == cpu
            for prog in tiers(ours):
                assert prog.run(cpu=cpu) == cpu  # type: ignore[attr-defined]


def test_jiffies64_runs_on_both_tiers() -> None:
    ours = xlated(call_prog(118))
    for prog in tiers(ours):
        before = jiffies64(RunContext())
        got = prog.run()  # type: ignore[attr-defined]
        after = jiffies64(RunContext())
        assert before - 2 <= got <= after  # the word is refreshed every tick


def test_jiffies64_upper_bits_are_the_kernels(kernel: ModuleType) -> None:
    """Both return a full 64-bit count: ``jiffies >> 32`` is what test_run sees here."""
    with kernel.KernelFds() as fds:
        res = fds.prog_load(SOCKET_FILTER, encode(call_prog(118, 63)))
        assert res.ok, res.log
        assert kernel.prog_test_run(res.fd, bytes(64)).retval == 0
    for prog in tiers(xlated(call_prog(118, 63))):
        assert prog.run() == 0  # type: ignore[attr-defined]
