"""Differential tests: the same map operations on the live kernel and on pybpf."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybpf.uapi as U
from pybpf.errors import BpfError
from pybpf.maps import elem_cmds
from pybpf.maps.api import create_map
from pybpf.maps.core import num_possible_cpus

T = U
ZS = U.BPF_F_ZERO_SEED

# (type, key_size, value_size, max_entries, flags, extra) geometries whose every observable
# (errno, value, iteration order) must match Linux exactly.
EXACT = [
    (T.BPF_MAP_TYPE_ARRAY, 4, 8, 6, 0, 0),
    (T.BPF_MAP_TYPE_ARRAY, 4, 5, 3, 0, 0),
    (T.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, 4, 0, 0),
    (T.BPF_MAP_TYPE_HASH, 4, 8, 5, ZS, 0),
    (T.BPF_MAP_TYPE_HASH, 3, 4, 7, ZS, 0),
    (T.BPF_MAP_TYPE_HASH, 8, 12, 4, ZS | U.BPF_F_NO_PREALLOC, 0),
    (T.BPF_MAP_TYPE_PERCPU_HASH, 4, 4, 4, ZS, 0),
    (T.BPF_MAP_TYPE_QUEUE, 0, 4, 3, 0, 0),
    (T.BPF_MAP_TYPE_STACK, 0, 4, 3, 0, 0),
    (T.BPF_MAP_TYPE_LPM_TRIE, 5, 4, 5, U.BPF_F_NO_PREALLOC, 0),
    (T.BPF_MAP_TYPE_BLOOM_FILTER, 0, 4, 8, ZS, 3),
]


def kernel_create(kernel: ModuleType, geo: tuple[int, ...]) -> int:
    mt, ks, vs, me, fl, ex = geo
    return int(kernel.map_create(mt, ks, vs, me, fl, map_extra=ex))


def run_both(kernel: ModuleType, fd: int, bmap: Any, op: tuple[Any, ...]) -> tuple[Any, Any]:
    name = op[0]
    vsize = bmap.ops.sys_value_size(bmap)

    def ours(fn: Any, *args: Any) -> Any:
        try:
            return 0, fn(bmap, *args)
        except BpfError as exc:
            return exc.errno, None

    if name == "update":
        _, key, value, flags = op
        value = value[:vsize].ljust(vsize, b"\0")
        k = kernel.map_update_raw(fd, key, value, flags)
        return (k, None), ours(elem_cmds.map_update_elem, key, value, flags)
    if name == "lookup":
        _, key, value = op
        if bmap.ops.lookup_reads_value:
            value = value[:vsize].ljust(vsize, b"\0")
            import ctypes

            vbuf = ctypes.create_string_buffer(value, vsize)
            kbuf = None
            attr = U.bpf_attr_map_elem()
            attr.map_fd, attr.key, attr.value = fd, 0, ctypes.addressof(vbuf)
            _ret, err = kernel.sys_bpf(U.BpfCmd.BPF_MAP_LOOKUP_ELEM, attr)
            del kbuf
            mine = ours(elem_cmds.map_lookup_elem, key, 0, value)
            return (err, None), (mine[0], None)
        err, val = kernel.map_lookup_raw(fd, key, vsize)
        return (err, val if not err else None), ours(elem_cmds.map_lookup_elem, key)
    if name == "delete":
        _, key = op
        return (kernel.map_delete_raw(fd, key), None), ours(elem_cmds.map_delete_elem, key)
    if name == "next":
        _, key = op
        err, nxt = kernel.map_get_next_key_raw(fd, key, bmap.key_size)
        return (err, nxt if not err else None), ours(elem_cmds.map_get_next_key, key)
    if name == "pop":
        _, key = op
        err, val = kernel.map_lookup_and_delete_raw(fd, key, vsize)
        return (err, val if not err else None), ours(elem_cmds.map_lookup_and_delete_elem, key)
    raise AssertionError(name)


def keys_for(geo: tuple[int, ...]) -> st.SearchStrategy[bytes | None]:
    mt, ks = geo[0], geo[1]
    if ks == 0:
        return st.just(b"")
    if mt == T.BPF_MAP_TYPE_LPM_TRIE:
        return st.builds(lambda p, d: p.to_bytes(4, "little") + bytes([d]),
                         st.integers(0, 9), st.sampled_from([0, 0x80, 0xC0, 0xA5, 0xFF, 0x40]))
    return st.integers(0, 9).map(lambda i: i.to_bytes(ks, "little"))


def ops_for(geo: tuple[int, ...]) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    keys = keys_for(geo)
    values = st.binary(min_size=0, max_size=32)
    flags = st.sampled_from([0, 0, 1, 2, 4, 3])
    op = st.one_of(
        st.tuples(st.just("update"), keys, values, flags),
        st.tuples(st.just("lookup"), keys, values),
        st.tuples(st.just("delete"), keys),
        st.tuples(st.just("next"), st.one_of(st.none(), keys)),
        st.tuples(st.just("pop"), keys),
    )
    return st.lists(op, max_size=25)


def final_contents(kernel: ModuleType, fd: int, bmap: Any) -> tuple[list[Any], list[Any]]:
    theirs: list[Any] = []
    ours: list[Any] = []
    if bmap.key_size == 0:
        return theirs, ours
    vsize = bmap.ops.sys_value_size(bmap)
    key = None
    for _ in range(64):
        err, key = kernel.map_get_next_key_raw(fd, key, bmap.key_size)
        if err:
            break
        theirs.append((key, kernel.map_lookup_raw(fd, key, vsize)))
    mkey = None
    for _ in range(64):
        try:
            mkey = bmap.ops.sys_get_next_key(bmap, mkey)
        except BpfError:
            break
        try:
            ours.append((mkey, (0, bmap.ops.sys_lookup(bmap, mkey, 0))))
        except BpfError as exc:
            ours.append((mkey, (exc.errno, b"")))
    return theirs, ours


@pytest.mark.parametrize("geo", EXACT, ids=lambda g: f"type{g[0]}-k{g[1]}-v{g[2]}-n{g[3]}")
def test_operation_sequences_match_kernel(kernel: ModuleType, geo: tuple[int, ...]) -> None:
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(ops_for(geo))
    def check(ops: list[tuple[Any, ...]]) -> None:
        fd = kernel_create(kernel, geo)
        bmap = create_map(geo[0], geo[1], geo[2], geo[3], geo[4], map_extra=geo[5])
        try:
            for op in ops:
                theirs, ours = run_both(kernel, fd, bmap, op)
                assert ours == theirs, op
            theirs_c, ours_c = final_contents(kernel, fd, bmap)
            assert ours_c == theirs_c
        finally:
            os.close(fd)
            bmap.ops.map_free(bmap)

    check()


CREATE_CASES = [
    (T.BPF_MAP_TYPE_ARRAY, 4, 4, 0, 0, 0), (T.BPF_MAP_TYPE_ARRAY, 8, 4, 1, 0, 0),
    (T.BPF_MAP_TYPE_ARRAY, 4, 0, 1, 0, 0), (T.BPF_MAP_TYPE_ARRAY, 4, 4, 1, U.BPF_F_NO_PREALLOC, 0),
    (T.BPF_MAP_TYPE_ARRAY, 4, 4, 1, U.BPF_F_MMAPABLE, 0),
    (T.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, 1, U.BPF_F_MMAPABLE, 0),
    (T.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 40000, 1, 0, 0),
    (T.BPF_MAP_TYPE_ARRAY, 4, 4, 1, U.BPF_F_RDONLY_PROG | U.BPF_F_WRONLY_PROG, 0),
    (T.BPF_MAP_TYPE_ARRAY, 4, 4, 1, U.BPF_F_RDONLY | U.BPF_F_WRONLY, 0),
    (T.BPF_MAP_TYPE_ARRAY, 4, 4, 1, U.BPF_F_PRESERVE_ELEMS, 0),
    (T.BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0, 1),
    (T.BPF_MAP_TYPE_HASH, 0, 4, 1, 0, 0), (T.BPF_MAP_TYPE_HASH, 4, 0, 1, 0, 0),
    (T.BPF_MAP_TYPE_HASH, 4, 4, 0, 0, 0), (T.BPF_MAP_TYPE_HASH, 4, 4, 1, U.BPF_F_NO_COMMON_LRU, 0),
    (T.BPF_MAP_TYPE_HASH, 4, 4, 1, U.BPF_F_MMAPABLE, 0),
    (T.BPF_MAP_TYPE_LRU_HASH, 4, 4, 1, U.BPF_F_NO_PREALLOC, 0),
    (T.BPF_MAP_TYPE_LRU_HASH, 4, 4, 4, U.BPF_F_NO_COMMON_LRU, 0),
    (T.BPF_MAP_TYPE_PERCPU_HASH, 4, 40000, 1, 0, 0),
    (T.BPF_MAP_TYPE_HASH, 600, 4, 1, 0, 0),
    (T.BPF_MAP_TYPE_QUEUE, 4, 4, 1, 0, 0), (T.BPF_MAP_TYPE_QUEUE, 0, 0, 1, 0, 0),
    (T.BPF_MAP_TYPE_STACK, 0, 4, 0, 0, 0), (T.BPF_MAP_TYPE_STACK, 0, 4, 1, U.BPF_F_NO_PREALLOC, 0),
    (T.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096, 0, 0), (T.BPF_MAP_TYPE_RINGBUF, 0, 0, 4097, 0, 0),
    (T.BPF_MAP_TYPE_RINGBUF, 0, 0, 2048, 0, 0), (T.BPF_MAP_TYPE_RINGBUF, 4, 0, 4096, 0, 0),
    (T.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096, U.BPF_F_RDONLY, 0),
    (T.BPF_MAP_TYPE_BLOOM_FILTER, 0, 4, 8, 0, 0x10), (T.BPF_MAP_TYPE_BLOOM_FILTER, 4, 4, 8, 0, 0),
    (T.BPF_MAP_TYPE_BLOOM_FILTER, 0, 4, 0, 0, 0),
    (T.BPF_MAP_TYPE_LPM_TRIE, 8, 4, 4, 0, 0), (T.BPF_MAP_TYPE_LPM_TRIE, 4, 4, 4, U.BPF_F_NO_PREALLOC, 0),
    (T.BPF_MAP_TYPE_LPM_TRIE, 261, 4, 4, U.BPF_F_NO_PREALLOC, 0),
    (T.BPF_MAP_TYPE_LPM_TRIE, 8, 4, 4, U.BPF_F_NO_PREALLOC, 0),
    (T.BPF_MAP_TYPE_STACK_TRACE, 4, 12, 4, 0, 0), (T.BPF_MAP_TYPE_STACK_TRACE, 4, 8 * 200, 4, 0, 0),
    (T.BPF_MAP_TYPE_STACK_TRACE, 4, 16, 4, 0, 0),
    (T.BPF_MAP_TYPE_PROG_ARRAY, 4, 8, 4, 0, 0), (T.BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4, U.BPF_F_RDONLY_PROG, 0),
    (T.BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4, 0, 0),
    (T.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 4, U.BPF_F_PRESERVE_ELEMS, 0),
    (T.BPF_MAP_TYPE_CGROUP_ARRAY, 4, 4, 4, 0, 0),
    (999, 4, 4, 4, 0, 0),
]


@pytest.mark.parametrize("case", CREATE_CASES)
def test_create_checks_match_kernel(kernel: ModuleType, case: tuple[int, ...]) -> None:
    mt, ks, vs, me, fl, ex = case
    fd, err = kernel.map_create_raw(mt, ks, vs, me, fl, map_extra=ex)
    if fd >= 0:
        os.close(fd)
    try:
        bmap = create_map(mt, ks, vs, me, fl, map_extra=ex)
    except BpfError as exc:
        ours = exc.errno
    else:
        ours = 0
        bmap.ops.map_free(bmap)
    assert ours == err


def test_possible_cpus_match_kernel(kernel: ModuleType) -> None:
    fd = kernel.map_create(T.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1)
    try:
        err, _ = kernel.map_lookup_raw(fd, bytes(4), 8 * num_possible_cpus())
        assert err == 0
        err, _ = kernel.map_lookup_raw(fd, bytes(4), 8 * num_possible_cpus() - 1)
    finally:
        os.close(fd)
