"""Inlined ``bpf_map_lookup_elem`` on ``LRU_HASH`` (``htab_lru_map_gen_lookup``).

The kernel rewrites the call into ``call __htab_map_lookup_elem``, a test and set of the
element's LRU ref byte (element + 35) and the step to the value. pybpf's element layout
puts its ref word where that byte lands, so the rewritten program must (a) equal the
kernel's instruction for instruction, (b) return the value on both tiers, and (c) leave
the same keys referenced: after the same inserts, lookups and evictions the map holds
the same keys as the kernel's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from pybpf.errors import BpfError
from pybpf.helpers.internal import IMPLS as INTERNAL_IMPLS
from pybpf.helpers.maps import MAP_HELPERS
from pybpf.isa.insn import Insn, encode, ld_imm64
from pybpf.jit import compile_program
from pybpf.maps import elem_cmds
from pybpf.maps.api import create_map
from pybpf.maps.bpf_lru import REF_WORD
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.testing.xlated import comparable, verified_with_map

SOCKET_FILTER, LRU_HASH = 1, 9
BPF_F_ZERO_SEED = 1 << 6
EXIT = Insn(0x95, 0, 0, 0, 0)
HELPERS = {**{fid: proto.impl for fid, proto in MAP_HELPERS.items()}, **INTERNAL_IMPLS}
FD = 100


def prog_lookup(fd: int, key: int, key_size: int = 4) -> list[Insn]:
    """``v = lookup(lru, &key); return v ? *(u32 *)v : -1`` (key zero-padded)."""
    stores = [Insn(0x7A, 10, 0, -16 + off, 0) for off in range(0, 16, 8)]
    return [*stores, Insn(0x62, 10, 0, -16, key), Insn(0xBF, 2, 10, 0, 0),
            Insn(0x07, 2, 0, 0, -16), *ld_imm64(1, fd, 1), Insn(0x85, 0, 0, 0, 1),
            Insn(0x15, 0, 0, 2, 0), Insn(0x61, 0, 0, 0, 0), EXIT,
            Insn(0xB7, 0, 0, 0, -1), EXIT]


@pytest.fixture
def cpu0(kernel: ModuleType) -> Iterator[ModuleType]:
    """The oracle, with this process pinned to CPU 0 (LRU free lists are per CPU)."""
    if not hasattr(os, "sched_setaffinity") or 0 not in os.sched_getaffinity(0):
        pytest.skip("needs to pin this process to CPU 0")
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        yield kernel
    finally:
        os.sched_setaffinity(0, saved)


def xlated_(bmap: Any, insns: list[Insn]) -> list[Insn]:
    return verified_with_map(bmap, insns, SOCKET_FILTER, FD)


@pytest.mark.parametrize("key_size", [4, 12])
def test_lru_lookup_xlated_equals_kernel(kernel: ModuleType, key_size: int) -> None:
    insns = lambda fd: prog_lookup(fd, 1, key_size)  # noqa: E731
    with kernel.KernelFds() as fds:
        fd = fds.add(kernel.map_create(LRU_HASH, key_size, 8, 8))
        res = fds.prog_load(SOCKET_FILTER, encode(insns(fd)))
        assert res.ok, res.log
        theirs = kernel.prog_xlated(res.fd)
    ours = xlated_(create_map(LRU_HASH, key_size, 8, 8), insns(FD))
    assert comparable(ours) == comparable(theirs)
    assert not any(i.code == 0x85 and i.imm == 1 for i in ours)


@pytest.mark.parametrize("tier", ["interp", "jit"])
def test_inlined_lru_lookup_returns_the_value_and_sets_ref(tier: str) -> None:
    m = create_map(LRU_HASH, 4, 8, 8, BPF_F_ZERO_SEED)
    for k in range(4):
        elem_cmds.map_update_elem(m, k.to_bytes(4, "little"), (10 + k).to_bytes(8, "little"))
    for k, want in ((2, 12), (3, 13), (7, (1 << 64) - 1)):
        insns = xlated_(m, prog_lookup(FD, k))
        prog = (CompiledProgram(insns, helpers=HELPERS) if tier == "interp"
                else compile_program(insns, helpers=HELPERS))
        assert prog.run() == want
    refs = {k: int(m.e32[m.index[k.to_bytes(4, "little")] * m.ew + REF_WORD])  # type: ignore[attr-defined]
            for k in range(4)}
    # the table walk sets the word to 1, the program's store its byte 3 (element + 35)
    assert refs == {0: 0, 1: 0, 2: 0x01000001, 3: 0x01000001}


def _keys(bmap: Any) -> set[int]:
    out, key = set(), None
    while True:
        try:
            key = bmap.ops.sys_get_next_key(bmap, key)
        except BpfError:
            return out
        out.add(int.from_bytes(key, "little"))


def test_referenced_keys_survive_eviction_as_in_the_kernel(cpu0: ModuleType) -> None:
    """Fill, look three keys up from the rewritten program, overflow: same survivors."""
    n = 16
    ours = {tier: create_map(LRU_HASH, 4, 8, n, BPF_F_ZERO_SEED) for tier in ("interp", "jit")}
    with cpu0.KernelFds() as fds:
        fd = fds.add(cpu0.map_create(LRU_HASH, 4, 8, n, BPF_F_ZERO_SEED))
        for k in range(n):
            key, value = k.to_bytes(4, "little"), bytes(8)
            cpu0.map_update(fd, key, value)
            for m in ours.values():
                elem_cmds.map_update_elem(m, key, value)
        for k in (0, 1, 2):
            res = fds.prog_load(SOCKET_FILTER, encode(prog_lookup(fd, k)))
            assert res.ok, res.log
            assert cpu0.prog_test_run(res.fd, bytes(64)).retval == 0
            for tier, m in ours.items():
                insns = xlated_(m, prog_lookup(FD, k))
                prog = (CompiledProgram(insns, helpers=HELPERS) if tier == "interp"
                        else compile_program(insns, helpers=HELPERS))
                assert prog.run() == 0
        for k in range(100, 120):
            key = k.to_bytes(4, "little")
            cpu0.map_update(fd, key, bytes(8))
            for m in ours.values():
                elem_cmds.map_update_elem(m, key, bytes(8))
        theirs = {int.from_bytes(k, "little") for k in cpu0.map_keys(fd, 4)}
    assert {0, 1, 2} <= theirs
    for tier, m in ours.items():
        assert _keys(m) == theirs, tier
