"""LRU maps against the live kernel: which keys survive eviction, exactly.

Linux's LRU (``bpf_lru_list.c``) evicts in batches from per-CPU local lists, and a BPF
program's lookup sets a node's ref bit, which saves it from the next shrink. Both are
observable from user space, so the same operation sequences — syscall updates, deletes,
lookups and *program* lookups — run on a live-kernel map and a pybpf map, and must leave
the same keys in the same iteration order with the same errnos.

The kernel serves a syscall on the caller's CPU; the test process is pinned to CPU 0
and pybpf's syscall CPU (:func:`pybpf.maps.core.sys_cpu`) is 0 by default.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybpf.uapi as U
from pybpf.errors import BpfError
from pybpf.isa.insn import Insn, encode, ld_imm64
from pybpf.maps import elem_cmds
from pybpf.maps.api import create_map
from pybpf.maps.bpf_lru import FREE, INACTIVE, LOCAL_FREE, REF_WORD
from pybpf.maps.core import BpfMap, num_possible_cpus, on_cpu
from pybpf.maps.htab import HashTab
from pybpf.runtime.memory import REGISTRY

LRU = U.BPF_MAP_TYPE_LRU_HASH
LRU_PCPU = U.BPF_MAP_TYPE_LRU_PERCPU_HASH
NO_COMMON = U.BPF_F_NO_COMMON_LRU
ZS = U.BPF_F_ZERO_SEED


@pytest.fixture
def cpu0(kernel: ModuleType) -> Iterator[ModuleType]:
    """The oracle, with this process pinned to CPU 0 for the duration of the test."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs os.sched_setaffinity to pin the kernel's syscall CPU")
    saved = os.sched_getaffinity(0)
    if 0 not in saved:
        pytest.skip("CPU 0 is not available to this process")
    os.sched_setaffinity(0, {0})
    try:
        yield kernel
    finally:
        os.sched_setaffinity(0, saved)


def lookup_prog(kernel: ModuleType, keymap_fd: int, lru_fd: int) -> int:
    """A socket filter that looks up, from a program, the u32 key stored in ``keymap[0]``."""
    fd_kind = U.BPF_PSEUDO_MAP_FD
    insns = [Insn(0x62, 10, 0, -4, 0),                       # *(u32 *)(r10 - 4) = 0
             *ld_imm64(1, keymap_fd, fd_kind),
             Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
             Insn(0x85, 0, 0, 0, U.BPF_FUNC_map_lookup_elem),
             Insn(0x15, 0, 0, 7, 0),                         # if r0 == 0 goto exit
             Insn(0x61, 6, 0, 0, 0),                         # r6 = *(u32 *)(r0 + 0)
             Insn(0x63, 10, 6, -8, 0),                       # *(u32 *)(r10 - 8) = r6
             *ld_imm64(1, lru_fd, fd_kind),
             Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -8),
             Insn(0x85, 0, 0, 0, U.BPF_FUNC_map_lookup_elem),
             Insn(0xB7, 0, 0, 0, 0), Insn(0x95, 0, 0, 0, 0)]
    res = kernel.prog_load(U.BPF_PROG_TYPE_SOCKET_FILTER, encode(insns))
    assert res.ok, res.log
    return int(res.fd)


class Pair:
    """One LRU geometry in the kernel and in pybpf, driven together."""

    def __init__(self, kernel: ModuleType, map_type: int, max_entries: int, flags: int) -> None:
        self.k = kernel
        self.fd = kernel.map_create(map_type, 4, 8, max_entries, flags | ZS)
        self.keymap = kernel.map_create(U.BPF_MAP_TYPE_ARRAY, 4, 4, 1)
        self.prog = lookup_prog(kernel, self.keymap, self.fd)
        self.bmap: BpfMap = create_map(map_type, 4, 8, max_entries, flags | ZS)
        self.vsize = self.bmap.ops.sys_value_size(self.bmap)  # type: ignore[attr-defined]
        self.scratch = REGISTRY.alloc(8, "lru test key")

    def close(self) -> None:
        for fd in (self.prog, self.keymap, self.fd):
            os.close(fd)
        self.bmap.ops.map_free(self.bmap)
        REGISTRY.remove(self.scratch)

    def ours(self, fn: Any, *args: Any) -> tuple[int, Any]:
        try:
            return 0, fn(self.bmap, *args)
        except BpfError as exc:
            return exc.errno, None

    def step(self, op: tuple[Any, ...]) -> tuple[Any, Any]:
        name, key = op[0], op[1].to_bytes(4, "little")
        if name == "update":
            value = bytes([op[1] & 0xFF, op[2]]) * (self.vsize // 2)
            return (self.k.map_update_raw(self.fd, key, value, op[2]),
                    self.ours(elem_cmds.map_update_elem, key, value, op[2])[0])
        if name == "delete":
            return (self.k.map_delete_raw(self.fd, key),
                    self.ours(elem_cmds.map_delete_elem, key)[0])
        if name == "lookup":
            err, val = self.k.map_lookup_raw(self.fd, key, self.vsize)
            return (err, val if not err else None), self.ours(elem_cmds.map_lookup_elem, key)
        if name == "pop":
            err, val = self.k.map_lookup_and_delete_raw(self.fd, key, self.vsize)
            return ((err, val if not err else None),
                    self.ours(elem_cmds.map_lookup_and_delete_elem, key))
        assert name == "prog_lookup"
        self.k.map_update(self.keymap, bytes(4), key)
        run = self.k.prog_test_run(self.prog, data_in=bytes(64))
        assert run.errno == 0
        self.scratch.mv[0:4] = key
        self.bmap.ops.map_lookup_elem(self.bmap, self.scratch.start, 0)  # type: ignore[attr-defined]
        return None, None  # the effect (the ref bit) shows in what survives later

    def contents(self) -> tuple[list[bytes], list[bytes]]:
        theirs = list(self.k.map_keys(self.fd, 4))
        ours: list[bytes] = []
        key = None
        while True:
            try:
                key = self.bmap.ops.sys_get_next_key(self.bmap, key)  # type: ignore[attr-defined]
            except BpfError:
                break
            ours.append(key)
        return theirs, ours


def lru_ops(max_entries: int) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    keys = st.integers(0, 3 * max_entries)
    op = st.one_of(
        st.tuples(st.just("update"), keys, st.sampled_from([0, 0, 0, 1, 2])),
        st.tuples(st.just("update"), keys, st.just(0)),
        st.tuples(st.just("delete"), keys),
        st.tuples(st.just("lookup"), keys),
        st.tuples(st.just("prog_lookup"), keys),
        st.tuples(st.just("pop"), keys),
    )
    return st.lists(op, min_size=1, max_size=max(12, 4 * max_entries))


GEOMETRIES = [(LRU, 4, 0), (LRU, 16, 0), (LRU, 37, 0), (LRU, 9, NO_COMMON),
              (LRU, 16, NO_COMMON), (LRU_PCPU, 8, 0), (LRU_PCPU, 12, NO_COMMON)]


@pytest.mark.parametrize("geo", GEOMETRIES, ids=lambda g: f"type{g[0]}-n{g[1]}-f{g[2]:#x}")
def test_lru_sequences_match_kernel(cpu0: ModuleType, geo: tuple[int, int, int]) -> None:
    map_type, max_entries, flags = geo

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
    @given(lru_ops(max_entries))
    def check(ops: list[tuple[Any, ...]]) -> None:
        pair = Pair(cpu0, map_type, max_entries, flags)
        try:
            for op in ops:
                theirs, ours = pair.step(op)
                assert ours == theirs, op
            theirs_c, ours_c = pair.contents()
            assert ours_c == theirs_c
        finally:
            pair.close()

    check()


@pytest.mark.parametrize("max_entries", [16, 64, 1024])
def test_full_map_evicts_a_batch_like_linux(cpu0: ModuleType, max_entries: int) -> None:
    """Filling an LRU map past max_entries loses target_free keys at once, the oldest.

    (max_entries is a multiple of target_free here; otherwise the last refill of the
    local free list already evicts before the map is full.)
    """
    pair = Pair(cpu0, LRU, max_entries, 0)
    try:
        for k in range(max_entries + 1):
            theirs, ours = pair.step(("update", k, 0))
            assert theirs == ours == 0
        theirs_c, ours_c = pair.contents()
        assert ours_c == theirs_c
        target = min(max(max_entries // num_possible_cpus() // 2, 1), 128)
        assert len(ours_c) == max_entries + 1 - target
        gone = set(range(max_entries + 1)) - {int.from_bytes(k, "little") for k in ours_c}
        assert gone == set(range(target))
    finally:
        pair.close()


def test_referenced_keys_survive_eviction(cpu0: ModuleType) -> None:
    """Keys a program looked up get the ref bit and outlive older unreferenced ones."""
    pair = Pair(cpu0, LRU, 16, 0)
    try:
        for k in range(16):
            pair.step(("update", k, 0))
        for k in (0, 1, 2):
            pair.step(("prog_lookup", k))
        for k in range(100, 120):
            pair.step(("update", k, 0))
        theirs, ours = pair.contents()
        assert ours == theirs
        assert {0, 1, 2} <= {int.from_bytes(k, "little") for k in ours}
    finally:
        pair.close()


# -- model checks that need no kernel ------------------------------------------------------


def test_syscall_lookups_do_not_set_the_ref_bit() -> None:
    bmap = create_map(LRU, 4, 8, 4, ZS)
    assert isinstance(bmap, HashTab)
    elem_cmds.map_update_elem(bmap, bytes(4), bytes(8))
    elem_cmds.map_lookup_elem(bmap, bytes(4))
    idx = bmap.index[bytes(4)]
    assert bmap.e32[idx * bmap.ew + REF_WORD] == 0
    key = REGISTRY.alloc(4, "key")
    try:
        assert bmap.ops.map_lookup_elem(bmap, key.start, 0)  # type: ignore[call-arg]
        assert bmap.e32[idx * bmap.ew + REF_WORD] == 1
    finally:
        REGISTRY.remove(key)
        bmap.ops.map_free(bmap)


def test_no_common_lru_gives_each_cpu_its_share() -> None:
    """With per-CPU LRU lists, CPU c only ever uses its own max_entries / cpus elements."""
    cpus = num_possible_cpus()
    bmap = create_map(LRU, 4, 8, 4 * cpus, ZS | NO_COMMON)
    assert isinstance(bmap, HashTab) and bmap.lru_lists is not None
    try:
        for k in range(10 * cpus):
            elem_cmds.map_update_elem(bmap, k.to_bytes(4, "little"), bytes(8))
        assert bmap.count == 4
        if cpus > 1:
            with on_cpu(1):
                for k in range(1000, 1012):  # 4 to fill, then 2 x (evict 4, refill 4)
                    elem_cmds.map_update_elem(bmap, k.to_bytes(4, "little"), bytes(8))
            assert bmap.count == 8
        lists = bmap.lru_lists
        owned = [i for i in range(bmap.n_elems) if lists.node_cpu(i) == 0]
        assert len(owned) == 4
    finally:
        bmap.ops.map_free(bmap)


def test_lru_lists_stay_consistent_and_steal_across_cpus() -> None:
    """Every element is on exactly one list; a CPU with nothing local steals."""
    cpus = num_possible_cpus()
    bmap = create_map(LRU, 4, 8, 8, ZS)
    assert isinstance(bmap, HashTab) and bmap.lru_lists is not None
    lists = bmap.lru_lists
    try:
        for k in range(40):
            with on_cpu(k % cpus):
                elem_cmds.map_update_elem(bmap, k.to_bytes(4, "little"), bytes(8))
            seen: list[int] = []
            for t in (0, 1, 2):
                seen += lists.walk(lists.head(0, t))
            for cpu in range(cpus):
                seen += lists.walk(lists.local_head(cpu, LOCAL_FREE))
                seen += lists.walk(lists.local_head(cpu, LOCAL_FREE + 1))
            assert sorted(seen) == list(range(bmap.n_elems))
            assert bmap.count == len(bmap.index) <= 8
        assert bmap.count == 8 or cpus > 1
        for key in list(bmap.index):
            elem_cmds.map_delete_elem(bmap, key)
        assert bmap.count == 0
        assert all(lists.node_type(i) in (FREE, LOCAL_FREE) for i in range(bmap.n_elems))
        assert lists.node_type(0) != INACTIVE
    finally:
        bmap.ops.map_free(bmap)


def test_program_update_on_full_lru_never_fails() -> None:
    """An update on a full LRU map evicts instead of failing with E2BIG."""
    bmap = create_map(LRU_PCPU, 4, 8, 2, ZS)
    try:
        key = REGISTRY.alloc(16, "key+value")
        try:
            for k in range(50):
                key.mv[0:4] = k.to_bytes(4, "little")
                assert bmap.ops.map_update_elem(bmap, key.start, key.start + 8, 0,  # type: ignore[call-arg]
                                                k % num_possible_cpus()) == 0
        finally:
            REGISTRY.remove(key)
        assert 1 <= len(list(elem_cmds.map_batch(bmap, "lookup", count=100).keys)) // 4 <= 2
    finally:
        bmap.ops.map_free(bmap)

