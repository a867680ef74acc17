"""Inlined ``bpf_map_lookup_elem`` on ``PERCPU_ARRAY`` (``percpu_array_map_gen_lookup``).

The verifier rewrites the call into a ``pptrs`` load plus the per-CPU mov
(``BPF_MOV64_PERCPU_REG``); the rewritten program must equal the live kernel's instruction
for instruction (map addresses aside), and both tiers must run it against pybpf's per-CPU
layout: each CPU's copy ``this_cpu_off(cpu)`` after CPU 0's, what the syscall side reads.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest

from pybpf.helpers.maps import MAP_HELPERS
from pybpf.isa.insn import Insn, encode, ld_imm64
from pybpf.jit import compile_program
from pybpf.maps.api import create_map
from pybpf.runtime.cpus import num_possible_cpus
from pybpf.runtime.interpreter import BPF_ADDR_PERCPU, CompiledProgram
from pybpf.testing.xlated import comparable, verified_with_map
from pybpf.verifier.api import VerifierInput, bpf_check

importlib.import_module("pybpf.maps.type_percpu_array")

XDP, PERCPU_ARRAY, ARRAY = 6, 6, 2
EXIT = Insn(0x95, 0, 0, 0, 0)
HELPERS = {fid: proto.impl for fid, proto in MAP_HELPERS.items()}
FD = 100


def prog_count(fd: int, key: int) -> list[Insn]:
    """Add 1 to this CPU's copy of value ``key``; return the new count, or -1 if absent."""
    return [Insn(0x62, 10, 0, -4, key), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
            *ld_imm64(1, fd, 1), Insn(0x85, 0, 0, 0, 1), Insn(0x15, 0, 0, 5, 0),
            Insn(0x79, 1, 0, 0, 0), Insn(0x07, 1, 0, 0, 1), Insn(0x7B, 0, 1, 0, 0),
            Insn(0xBF, 0, 1, 0, 0), EXIT, Insn(0xB7, 0, 0, 0, -1), EXIT]


def xlated_(bmap: Any, insns: list[Insn]) -> list[Insn]:
    return verified_with_map(bmap, insns, XDP, FD)


@pytest.mark.parametrize("value_size,max_entries", [(8, 4), (20, 256), (16, 1)])
def test_percpu_lookup_xlated_equals_kernel(kernel: ModuleType, value_size: int,
                                            max_entries: int) -> None:
    ours = xlated_(create_map(PERCPU_ARRAY, 4, value_size, max_entries), prog_count(FD, 1))
    assert any(i.code == 0xBF and i.off == BPF_ADDR_PERCPU for i in ours)
    assert not any(i.code == 0x85 and i.imm == 1 for i in ours)
    fd = kernel.map_create(PERCPU_ARRAY, 4, value_size, max_entries)
    try:
        res = kernel.prog_load(XDP, encode(prog_count(fd, 1)))
        assert res.fd >= 0, res.log
        try:
            theirs = kernel.prog_xlated(res.fd)
        finally:
            kernel.close(res.fd)
    finally:
        kernel.close(fd)
    assert comparable(ours, helper_imms=True) == comparable(theirs, helper_imms=True)


def test_user_percpu_mov_is_refused_like_the_kernel(kernel: ModuleType) -> None:
    """Only the verifier may emit the per-CPU mov: a loaded one is reserved fields."""
    insns = [Insn(0xB7, 0, 0, 0, 0), Insn(0xBF, 0, 0, BPF_ADDR_PERCPU, 0), EXIT]
    res = bpf_check(VerifierInput(insns=insns, prog_type=XDP, log_level=1))
    assert res.errno == 22 and "BPF_MOV uses reserved fields" in res.log
    k = kernel.prog_load(XDP, encode(insns), log_level=1, log_size=1 << 16)
    assert k.errno == 22 and "BPF_MOV uses reserved fields" in k.log


@pytest.mark.parametrize("tier", ["interp", "jit"])
def test_inlined_lookup_counts_per_cpu(tier: str) -> None:
    """Each CPU increments its own copy; the syscall value shows every CPU's count."""
    m = create_map(PERCPU_ARRAY, 4, 8, 4)
    insns = xlated_(m, prog_count(FD, 2))
    prog = (CompiledProgram(insns, helpers=HELPERS) if tier == "interp"
            else compile_program(insns, helpers=HELPERS))
    cpus = num_possible_cpus()
    for cpu in range(cpus):
        for n in range(cpu + 1):
            assert prog.run(cpu=cpu) == n + 1
    value = m.ops.sys_lookup(m, (2).to_bytes(4, "little"), 0)
    counts = [int.from_bytes(value[8 * c:8 * c + 8], "little") for c in range(cpus)]
    assert counts == [c + 1 for c in range(cpus)]
    assert m.ops.sys_lookup(m, (1).to_bytes(4, "little"), 0) == bytes(8 * cpus)


@pytest.mark.parametrize("tier", ["interp", "jit"])
def test_inlined_lookup_out_of_range_is_null(tier: str) -> None:
    m = create_map(PERCPU_ARRAY, 4, 8, 4)
    insns = xlated_(m, prog_count(FD, 4))
    prog = (CompiledProgram(insns, helpers=HELPERS) if tier == "interp"
            else compile_program(insns, helpers=HELPERS))
    assert prog.run(cpu=0) == (1 << 64) - 1


def test_syscall_writes_reach_the_cpu_copies() -> None:
    """A value written through ``bpf()`` is what the inlined lookup reads on each CPU."""
    m = create_map(PERCPU_ARRAY, 4, 8, 4)
    cpus = num_possible_cpus()
    m.ops.sys_update(m, (3).to_bytes(4, "little"),
                     b"".join((10 * (c + 1)).to_bytes(8, "little") for c in range(cpus)), 0)
    insns = xlated_(m, prog_count(FD, 3))
    prog = CompiledProgram(insns, helpers=HELPERS)
    assert [prog.run(cpu=c) for c in range(cpus)] == [10 * (c + 1) + 1 for c in range(cpus)]
