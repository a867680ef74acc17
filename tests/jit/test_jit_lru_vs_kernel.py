"""Native LRU updates and deletes against the live kernel: the same keys survive, in order.

A program updates, looks up or deletes one key of an LRU map, in the live kernel
(``BPF_PROG_TEST_RUN`` on CPU 0, the key, value and flags read from an array map) and on
pybpf's JIT (native map code, no bridge, CPU 0). After every operation the helpers'
results must agree, and at the end the maps must hold the same keys in the same
iteration order — which keys an LRU map evicts is Linux's algorithm
(``kernel/bpf/bpf_lru_list.c``), observable from user space.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.helpers.maps import MAP_HELPERS
from pybpf.isa.insn import Insn, encode, ld_imm64
from pybpf.maps.api import create_map

pytest.importorskip("llvmlite")
from pybpf.jit import compile_program

for _mod in ("type_array", "type_lru_hash", "type_lru_percpu_hash"):
    importlib.import_module(f"pybpf.maps.{_mod}")

HELPERS = {fid: proto.impl for fid, proto in MAP_HELPERS.items()}
ARRAY, LRU, LRU_PCPU = 2, 9, 10
NO_COMMON, ZERO_SEED = 0x2, 0x40
SOCKET_FILTER = 1
EXIT = Insn(0x95, 0, 0, 0, 0)
M64 = (1 << 64) - 1
OPS = ("update", "lookup", "delete")


def kernel_prog(args_fd: int, lru_fd: int, op: str) -> list[Insn]:
    """args[0] = {u32 key; u32 flags; u64 value; s64 ret}: ret = op(lru, &key, ...)."""
    head = [Insn(0x62, 10, 0, -4, 0), *ld_imm64(1, args_fd, 1), Insn(0xBF, 2, 10, 0, 0),
            Insn(0x07, 2, 0, 0, -4), Insn(0x85, 0, 0, 0, 1), Insn(0x55, 0, 0, 2, 0),
            Insn(0xB7, 0, 0, 0, 0), EXIT, Insn(0xBF, 7, 0, 0, 0),
            *ld_imm64(1, lru_fd, 1), Insn(0xBF, 2, 7, 0, 0)]
    if op == "update":
        body = [Insn(0xBF, 3, 7, 0, 0), Insn(0x07, 3, 0, 0, 8), Insn(0x61, 4, 7, 4, 0),
                Insn(0x85, 0, 0, 0, 2)]
    elif op == "delete":
        body = [Insn(0x85, 0, 0, 0, 3)]
    else:  # r0 = found ? *(u64 *)value : -1
        body = [Insn(0x85, 0, 0, 0, 1), Insn(0x15, 0, 0, 2, 0), Insn(0x79, 0, 0, 0, 0),
                Insn(0x05, 0, 0, 1, 0), Insn(0xB7, 0, 0, 0, -1)]
    return [*head, *body, Insn(0x7B, 7, 0, 16, 0), Insn(0xB7, 0, 0, 0, 0), EXIT]


def jit_prog(lru_addr: int, op: str) -> list[Insn]:
    """The same operation on pybpf: key r1, value r2, flags r3; r0 = the helper's result."""
    head = [Insn(0x63, 10, 1, -4, 0), Insn(0x7B, 10, 2, -16, 0), Insn(0xBF, 4, 3, 0, 0),
            *ld_imm64(1, lru_addr, 1), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4)]
    if op == "update":
        body = [Insn(0xBF, 3, 10, 0, 0), Insn(0x07, 3, 0, 0, -16), Insn(0x85, 0, 0, 0, 2)]
    elif op == "delete":
        body = [Insn(0x85, 0, 0, 0, 3)]
    else:
        body = [Insn(0x85, 0, 0, 0, 1), Insn(0x15, 0, 0, 2, 0), Insn(0x79, 0, 0, 0, 0),
                EXIT, Insn(0xB7, 0, 0, 0, -1)]
    return [*head, *body, EXIT]


@pytest.fixture
def cpu0(kernel: ModuleType) -> Iterator[ModuleType]:
    if not hasattr(os, "sched_setaffinity") or 0 not in os.sched_getaffinity(0):
        pytest.skip("needs CPU 0 to pin the kernel's test_run CPU")
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        yield kernel
    finally:
        os.sched_setaffinity(0, saved)


class Pair:
    """One LRU map in the live kernel and on pybpf, each driven by programs."""

    def __init__(self, k: ModuleType, map_type: int, max_entries: int, flags: int) -> None:
        self.k = k
        self.fds: list[int] = []
        self.lru = k.map_create(map_type, 4, 8, max_entries, flags | ZERO_SEED)
        self.args = k.map_create(ARRAY, 4, 24, 1)
        self.fds += [self.lru, self.args]
        self.kprogs = {}
        for op in OPS:
            res = k.prog_load(SOCKET_FILTER, encode(kernel_prog(self.args, self.lru, op)))
            assert res.ok, res.log
            self.fds.append(res.fd)
            self.kprogs[op] = res.fd
        self.bmap: Any = create_map(map_type, 4, 8, max_entries, flags | ZERO_SEED)
        self.jprogs = {op: compile_program(jit_prog(self.bmap.addr, op), helpers=HELPERS)
                       for op in OPS}
        assert not any(p.code.translation.uses_bridge for p in self.jprogs.values())

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.bmap.ops.map_free(self.bmap)

    def step(self, op: str, key: int, value: int, flags: int) -> tuple[int, int]:
        raw = key.to_bytes(4, "little") + flags.to_bytes(4, "little") + \
            value.to_bytes(8, "little") + bytes(8)
        self.k.map_update(self.args, bytes(4), raw)
        run = self.k.prog_test_run(self.kprogs[op], data_in=bytes(64))
        assert run.errno == 0
        theirs = int.from_bytes(self.k.map_lookup(self.args, bytes(4), 24)[16:], "little")
        ours = self.jprogs[op].run(key, value, flags, cpu=0) & M64
        return theirs, ours

    def contents(self) -> tuple[list[bytes], list[bytes]]:
        theirs = list(self.k.map_keys(self.lru, 4))
        ours: list[bytes] = []
        key = None
        while True:
            try:
                key = self.bmap.ops.sys_get_next_key(self.bmap, key)
            except Exception:
                break
            ours.append(key)
        return theirs, ours


def ops(max_entries: int) -> st.SearchStrategy[list[tuple[str, int, int, int]]]:
    keys = st.integers(0, 3 * max_entries)
    op = st.one_of(
        st.tuples(st.just("update"), keys, st.integers(0, 255), st.sampled_from([0, 0, 1, 2])),
        st.tuples(st.just("lookup"), keys, st.just(0), st.just(0)),
        st.tuples(st.just("delete"), keys, st.just(0), st.just(0)),
    )
    return st.lists(op, min_size=1, max_size=max(12, 4 * max_entries))


GEOMETRIES = [(LRU, 4, 0), (LRU, 16, 0), (LRU, 9, NO_COMMON), (LRU_PCPU, 8, 0),
              (LRU_PCPU, 12, NO_COMMON)]


@pytest.mark.parametrize("geo", GEOMETRIES, ids=lambda g: f"type{g[0]}-n{g[1]}-f{g[2]:#x}")
def test_native_lru_programs_match_kernel(cpu0: ModuleType, geo: tuple[int, int, int]) -> None:
    map_type, max_entries, flags = geo

    # one pair for every example: each sequence continues from the state the previous
    # ones left, on both sides alike (loading programs in the kernel is what costs)
    pair = Pair(cpu0, map_type, max_entries, flags)

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(ops(max_entries))
    def check(seq: list[tuple[str, int, int, int]]) -> None:
        for step in seq:
            theirs, ours = pair.step(*step)
            assert ours == theirs, step
        theirs_c, ours_c = pair.contents()
        assert ours_c == theirs_c

    try:
        check()
    finally:
        pair.close()


def test_filling_past_max_entries_evicts_like_linux(cpu0: ModuleType) -> None:
    """64 program updates into a 16-entry map: the native fast path and the Python slow
    path (refill, shrink, evict) together leave Linux's survivors."""
    pair = Pair(cpu0, LRU, 16, 0)
    try:
        for k in range(64):
            theirs, ours = pair.step("update", k, k, 0)
            assert theirs == ours == 0
            if k % 5 == 0:
                assert pair.step("lookup", k // 2, 0, 0)[0] == pair.step("lookup", k // 2, 0, 0)[1]
        theirs_c, ours_c = pair.contents()
        assert ours_c == theirs_c and len(ours_c) <= 16
    finally:
        pair.close()
