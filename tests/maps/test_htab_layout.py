"""The hash table's native layout and element reuse (what the JIT and programs rely on)."""

from __future__ import annotations

import struct
import threading

import pybpf.uapi as U
from pybpf.maps import elem_cmds
from pybpf.maps.api import Map, create_map
from pybpf.maps.htab import CTL_SIZE, ELEM_HDR, HashTab
from pybpf.runtime.memory import REGISTRY

ZS = U.BPF_F_ZERO_SEED


def prog_lookup(bmap: HashTab, key: bytes) -> int:
    scratch = REGISTRY.alloc(len(key), "key")
    try:
        scratch.mv[:] = key
        return int(bmap.ops.map_lookup_elem(bmap, scratch.start, 0))  # type: ignore[call-arg]
    finally:
        REGISTRY.remove(scratch)


def test_update_swaps_in_the_cpus_spare_element_and_never_tears_the_old_value() -> None:
    bmap = create_map(U.BPF_MAP_TYPE_HASH, 4, 8, 4, ZS)
    assert isinstance(bmap, HashTab)
    key = bytes(4)
    elem_cmds.map_update_elem(bmap, key, b"A" * 8)
    first = prog_lookup(bmap, key)
    elem_cmds.map_update_elem(bmap, key, b"B" * 8)
    second = prog_lookup(bmap, key)
    assert second != first
    assert REGISTRY.read(first, 8) == b"A" * 8  # a reader of the old element sees old data
    assert REGISTRY.read(second, 8) == b"B" * 8
    elem_cmds.map_update_elem(bmap, key, b"C" * 8)
    assert prog_lookup(bmap, key) == first  # the old element was the spare, reused
    assert bmap.count == 1 and bmap.free_top == 3
    bmap.ops.map_free(bmap)


def test_percpu_and_locked_updates_stay_in_place() -> None:
    pc = create_map(U.BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 4, ZS)
    assert isinstance(pc, HashTab)
    size = pc.ops.sys_value_size(pc)  # type: ignore[attr-defined]
    elem_cmds.map_update_elem(pc, bytes(4), bytes(size))
    addr = prog_lookup(pc, bytes(4))
    elem_cmds.map_update_elem(pc, bytes(4), b"\1" * size)
    assert prog_lookup(pc, bytes(4)) == addr
    locked = create_map(U.BPF_MAP_TYPE_HASH, 4, 16, 4, ZS)
    assert isinstance(locked, HashTab)
    locked.spin_lock_off = 8  # as BTF would say: struct { u64 x; struct bpf_spin_lock l; }
    assert locked.fast_update is None
    elem_cmds.map_update_elem(locked, bytes(4), b"\1" * 16)
    addr = prog_lookup(locked, bytes(4))
    REGISTRY.store(addr + 8, 4, 7)  # pretend a program holds the lock word
    elem_cmds.map_update_elem(locked, bytes(4), b"\2" * 16, U.BPF_F_LOCK)
    assert prog_lookup(locked, bytes(4)) == addr
    assert REGISTRY.read(addr, 16) == b"\2" * 8 + (7).to_bytes(4, "little") + b"\2" * 4
    assert elem_cmds.map_lookup_elem(locked, bytes(4)) == b"\2" * 8 + bytes(4) + b"\2" * 4
    for b in (pc, locked):
        b.ops.map_free(b)


def test_control_block_matches_the_documented_layout() -> None:
    for map_type, extra in ((U.BPF_MAP_TYPE_HASH, True), (U.BPF_MAP_TYPE_LRU_HASH, False),
                            (U.BPF_MAP_TYPE_PERCPU_HASH, False)):
        bmap = create_map(map_type, 6, 12, 5, ZS)
        assert isinstance(bmap, HashTab)
        elem_cmds.map_update_elem(bmap, b"abcdef", bytes(bmap.ops.sys_value_size(bmap)))  # type: ignore[attr-defined]
        raw = bmap.ctl.mv[:CTL_SIZE].tobytes()
        (n_buckets, hashrnd, elem_size, key_size, value_off, n_elems, count, free_top, gen,
         buckets, elems, pcpu, nr_cpus, vstride, max_entries, flags, free_stack, extra_addr,
         lru) = struct.unpack_from("<IIIIIIIIQQQQIIIIQQQ", raw)
        assert (n_buckets, hashrnd, key_size, max_entries) == (8, 0, 6, 5)
        assert value_off == ELEM_HDR + 8 and vstride == 16 and count == 1 and gen > 0
        assert elem_size == value_off + (0 if bmap.percpu else 16)
        assert n_elems == 5 + (nr_cpus if extra else 0)
        assert (buckets, elems) == (bmap.buckets.start, bmap.elems.start)
        assert bool(pcpu) == bmap.percpu and bool(lru) == bmap.lru
        assert bool(extra_addr) == extra and bool(free_stack) == (not bmap.lru)
        assert flags & 1 == bmap.percpu and flags & 2 == 2 * bmap.lru
        if not bmap.lru:
            assert free_top == 4
        idx = bmap.index[b"abcdef"]
        bucket = struct.unpack_from("<I", bmap.buckets.mv, 4 * (bmap.hash_of(b"abcdef") & 7))[0]
        assert bucket == idx + 1
        bmap.ops.map_free(bmap)


def test_native_writers_are_noticed_through_gen() -> None:
    """A native delete (unlink + free stack + count + gen) is picked up by Python."""
    m = Map.create(U.BPF_MAP_TYPE_HASH, 4, 8, 4, flags=ZS)
    b = m.bmap
    assert isinstance(b, HashTab)
    m[1] = 10
    m[2] = 20
    idx = b.index[(1).to_bytes(4, "little")]
    b.unlink(idx)  # what native code would do, then publish:
    b.e32[idx * b.ew + 2] = 0
    b.fs32[b.ctl_i[7]] = idx  # type: ignore[index]
    b.ctl_i[7] += 1
    b.ctl_i[6] -= 1
    b.ctl_q[4] += 1
    assert 1 not in m and m[2] == 20 and len(m) == 1
    m[3] = 30
    assert sorted(m.items()) == [(2, 20), (3, 30)]


def test_concurrent_updates_and_reads_from_threads_lose_nothing() -> None:
    m = Map.create(U.BPF_MAP_TYPE_HASH, 4, 8, 64, key_type=int, value_type=int)
    errors: list[str] = []

    def writer(base: int) -> None:
        for i in range(2000):
            key = base + i % 8
            m[key] = key * 100_000 + i

    def reader() -> None:
        for _ in range(2000):
            for k, v in m.items():
                if v // 100_000 != k:
                    errors.append(f"{k}: {v}")

    threads = [threading.Thread(target=writer, args=(b,)) for b in (0, 8, 16)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(m) == 24
