"""Batch commands against the live kernel: LOOKUP, LOOKUP_AND_DELETE, UPDATE, DELETE.

The same map contents and the same batch calls (in_batch tokens, counts too small for a
bucket, walks off the end, duplicate and missing keys, bad flags) on a live-kernel map
and a pybpf map must give the same errno, ``count``, keys, values and ``out_batch``,
and leave the same contents.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybpf.uapi as U
from pybpf.errors import BpfError
from pybpf.maps import elem_cmds
from pybpf.maps.api import create_map
from pybpf.maps.core import BpfMap
from pybpf.testing.kernel import BATCH_FILL

ZS = U.BPF_F_ZERO_SEED
T = U

# (type, key_size, value_size, max_entries, flags)
GEOMETRIES = [
    (T.BPF_MAP_TYPE_HASH, 4, 8, 8, ZS),
    (T.BPF_MAP_TYPE_HASH, 3, 5, 5, ZS),
    (T.BPF_MAP_TYPE_PERCPU_HASH, 4, 4, 6, ZS),
    (T.BPF_MAP_TYPE_LRU_HASH, 4, 8, 8, ZS),
    (T.BPF_MAP_TYPE_LRU_PERCPU_HASH, 4, 8, 8, ZS),
    (T.BPF_MAP_TYPE_ARRAY, 4, 8, 6, 0),
    (T.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, 5, 0),
]


@pytest.fixture
def cpu0(kernel: ModuleType) -> Iterator[ModuleType]:
    saved = os.sched_getaffinity(0)
    if 0 not in saved:
        pytest.skip("CPU 0 is not available to this process")
    os.sched_setaffinity(0, {0})
    try:
        yield kernel
    finally:
        os.sched_setaffinity(0, saved)


def is_hash(map_type: int) -> bool:
    return map_type in (T.BPF_MAP_TYPE_HASH, T.BPF_MAP_TYPE_PERCPU_HASH,
                        T.BPF_MAP_TYPE_LRU_HASH, T.BPF_MAP_TYPE_LRU_PERCPU_HASH)


class Pair:
    def __init__(self, kernel: ModuleType, geo: tuple[int, ...]) -> None:
        mt, ks, vs, me, fl = geo
        self.k = kernel
        self.fd = kernel.map_create(mt, ks, vs, me, fl)
        self.bmap: BpfMap = create_map(mt, ks, vs, me, fl)
        self.ks = ks
        self.vsize = self.bmap.ops.sys_value_size(self.bmap)  # type: ignore[attr-defined]
        self.token = 4 if is_hash(mt) else ks

    def close(self) -> None:
        os.close(self.fd)
        self.bmap.ops.map_free(self.bmap)

    def key(self, i: int) -> bytes:
        return (i % (1 << (8 * self.ks))).to_bytes(self.ks, "little")

    def value(self, i: int) -> bytes:
        return bytes((i * 7 + j) & 0xFF for j in range(self.vsize))

    def fill(self, keys: list[int]) -> None:
        for i in keys:
            a = self.k.map_update_raw(self.fd, self.key(i), self.value(i))
            try:
                elem_cmds.map_update_elem(self.bmap, self.key(i), self.value(i))
                b = 0
            except BpfError as exc:
                b = exc.errno
            assert a == b

    def ours_lookup(self, cmd: str, in_batch: bytes | None, count: int, elem_flags: int,
                    flags: int) -> tuple[Any, ...]:
        fill = bytes([BATCH_FILL]) * self.token
        try:
            res = elem_cmds.map_batch(self.bmap, cmd, in_batch=in_batch, count=count,
                                      elem_flags=elem_flags, flags=flags)
        except BpfError as exc:
            return exc.errno, count, b"", b"", fill
        n = res.count if res.count_written else count
        out = res.out_batch if res.out_batch is not None else fill
        return (res.err, n, res.keys[:n * self.ks], res.values[:n * self.vsize],
                out[:self.token])

    def lookup(self, delete: bool, in_batch: bytes | None, count: int, elem_flags: int = 0,
               flags: int = 0) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        fn = self.k.map_lookup_and_delete_batch_raw if delete else self.k.map_lookup_batch_raw
        out = fn(self.fd, in_batch, count, self.ks, self.vsize, self.token, elem_flags, flags)
        n = out.count if out.errno not in (errno.EINVAL, 524) else count
        theirs = (out.errno, out.count, out.keys[:n * self.ks], out.values[:n * self.vsize],
                  out.out_batch)
        if out.errno in (errno.EINVAL, 524):
            theirs = (out.errno, out.count, b"", b"", out.out_batch)
        cmd = "lookup_and_delete" if delete else "lookup"
        return theirs, self.ours_lookup(cmd, in_batch, count, elem_flags, flags)

    def update(self, keys: list[int], elem_flags: int = 0, flags: int = 0
               ) -> tuple[tuple[int, int], tuple[int, int]]:
        kb = b"".join(self.key(i) for i in keys)
        vb = b"".join(self.value(i + 1) for i in keys)
        out = self.k.map_update_batch_raw(self.fd, kb, vb, len(keys), elem_flags, flags)
        return (out.errno, out.count), self._ours_write("update", kb, vb, len(keys),
                                                        elem_flags, flags)

    def delete(self, keys: list[int], elem_flags: int = 0, flags: int = 0
               ) -> tuple[tuple[int, int], tuple[int, int]]:
        kb = b"".join(self.key(i) for i in keys)
        out = self.k.map_delete_batch_raw(self.fd, kb, len(keys), elem_flags, flags)
        return (out.errno, out.count), self._ours_write("delete", kb, b"", len(keys),
                                                        elem_flags, flags)

    def _ours_write(self, cmd: str, kb: bytes, vb: bytes, count: int, elem_flags: int,
                    flags: int) -> tuple[int, int]:
        try:
            res = elem_cmds.map_batch(self.bmap, cmd, keys=kb, values=vb, count=count,
                                      elem_flags=elem_flags, flags=flags)
        except BpfError as exc:
            return exc.errno, count
        return res.err, res.count if res.count_written else count

    def contents(self) -> tuple[list[Any], list[Any]]:
        theirs = [(k, self.k.map_lookup_raw(self.fd, k, self.vsize)[1])
                  for k in self.k.map_keys(self.fd, self.ks)]
        ours = []
        key = None
        while True:
            try:
                key = elem_cmds.map_get_next_key(self.bmap, key)
            except BpfError:
                break
            ours.append((key, elem_cmds.map_lookup_elem(self.bmap, key)))
        return theirs, ours


def batch_ops(geo: tuple[int, ...]) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    me = geo[3]
    keys = st.lists(st.integers(0, 2 * me), max_size=me + 2)
    token = st.one_of(st.none(), st.just("prev"), st.integers(0, 2 * me + 1))
    op = st.one_of(
        st.tuples(st.just("lookup"), token, st.integers(0, me + 2)),
        st.tuples(st.just("lookup_and_delete"), token, st.integers(0, me + 2)),
        st.tuples(st.just("update"), keys),
        st.tuples(st.just("delete"), keys),
        st.tuples(st.just("flags"), st.sampled_from(["lookup", "update", "delete"]),
                  st.sampled_from([(U.BPF_F_LOCK, 0), (8, 0), (0, 1)])),
    )
    return st.tuples(st.lists(st.integers(0, 2 * me), max_size=me), st.lists(op, max_size=8))


@pytest.mark.parametrize("geo", GEOMETRIES, ids=lambda g: f"type{g[0]}-k{g[1]}-v{g[2]}-n{g[3]}")
def test_batch_sequences_match_kernel(cpu0: ModuleType, geo: tuple[int, ...]) -> None:
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(batch_ops(geo))
    def check(case: tuple[list[int], list[tuple[Any, ...]]]) -> None:
        initial, ops = case
        pair = Pair(cpu0, geo)
        prev: bytes | None = None
        try:
            pair.fill(initial)
            for op in ops:
                if op[0] in ("lookup", "lookup_and_delete"):
                    tok = op[1]
                    in_batch = prev if tok == "prev" else None if tok is None else \
                        int(tok).to_bytes(pair.token, "little")
                    theirs, ours = pair.lookup(op[0] == "lookup_and_delete", in_batch, op[2])
                    assert ours == theirs, op
                    if theirs[4] != bytes([BATCH_FILL]) * pair.token:
                        prev = theirs[4]
                elif op[0] == "update":
                    theirs_w, ours_w = pair.update(op[1])
                    assert ours_w == theirs_w, op
                elif op[0] == "delete":
                    theirs_w, ours_w = pair.delete(op[1])
                    assert ours_w == theirs_w, op
                else:
                    elem_flags, flags = op[2]
                    if op[1] == "lookup":
                        theirs, ours = pair.lookup(False, None, 4, elem_flags, flags)
                        assert ours == theirs, op
                    elif op[1] == "update":
                        theirs_w, ours_w = pair.update([1, 2], elem_flags, flags)
                        assert ours_w == theirs_w, op
                    else:
                        theirs_w, ours_w = pair.delete([1, 2], elem_flags, flags)
                        assert ours_w == theirs_w, op
            theirs_c, ours_c = pair.contents()
            assert ours_c == theirs_c
        finally:
            pair.close()

    check()


def test_full_walk_with_small_counts_matches_kernel(cpu0: ModuleType) -> None:
    """Walk a crowded hash map 3 elements at a time: ENOSPC, tokens, ENOENT at the end."""
    geo = (T.BPF_MAP_TYPE_HASH, 4, 8, 64, ZS)
    pair = Pair(cpu0, geo)
    try:
        pair.fill(list(range(64)))
        token: bytes | None = None
        for _ in range(200):
            theirs, ours = pair.lookup(False, token, 3)
            assert ours == theirs
            if theirs[0] == errno.ENOENT:
                break
            if theirs[0] == errno.ENOSPC:
                theirs, ours = pair.lookup(False, token, 64)
                assert ours == theirs
            token = theirs[4]
        else:
            pytest.fail("the walk never ended")
    finally:
        pair.close()


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_hash_update_batch_matches_kernel(cpu0: ModuleType, seed: int) -> None:
    """Distinct keys, half existing, crowded buckets, running out of room midway."""
    import random

    rnd = random.Random(seed)
    geo = (T.BPF_MAP_TYPE_HASH, 4, 8, 48, ZS)
    pair = Pair(cpu0, geo)
    try:
        pair.fill(rnd.sample(range(120), 30))
        for _ in range(3):
            keys = rnd.sample(range(120), rnd.randrange(1, 40))
            theirs_w, ours_w = pair.update(keys)
            assert ours_w == theirs_w
            theirs_c, ours_c = pair.contents()
            assert ours_c == theirs_c
            gone = rnd.sample(range(120), rnd.randrange(1, 20))
            theirs_w, ours_w = pair.delete(gone)
            assert ours_w == theirs_w
            theirs_c, ours_c = pair.contents()
            assert ours_c == theirs_c
    finally:
        pair.close()
