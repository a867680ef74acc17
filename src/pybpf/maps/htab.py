"""Hash-table machinery shared by HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH, HASH_OF_MAPS.

The kernel's ``kernel/bpf/hashtab.c`` with preallocated elements, laid out once in
native memory so Python, the interpreter's helpers and JIT-generated code all work on the
same table (DESIGN decision 4). Native code can look up, insert and delete without
calling Python; Python keeps a key → element index *cache* that it revalidates against
``gen`` (see below) — the native table is the only source of truth.

Native layout (all little-endian; ``header.data`` = elements, ``header.aux`` = control)::

    control (96 bytes)
      0  u32 n_buckets      power of two >= max_entries
      4  u32 hashrnd        seed of htab_map_hash (0 with BPF_F_ZERO_SEED)
      8  u32 elem_size      bytes per element (multiple of 8)
      12 u32 key_size
      16 u32 value_off      offset of the value inside an element (16 + round_up(key_size, 8))
      20 u32 n_elems        elements in the slab
      24 u32 count          elements in the table
      28 u32 free_head      first free element (index + 1; 0 = none)
      32 u64 gen            bumped by every insert/delete; native writers MUST bump it
      40 u64 buckets        address of u32[n_buckets]
      48 u64 elems          address of the element slab
      56 u64 pcpu           per-CPU values (PERCPU types) or 0
      64 u32 nr_cpus        possible CPUs
      68 u32 vstride        round_up(value_size, 8)
      72 u32 clock_hand     LRU: next element the eviction clock looks at
      76 u32 flags          bit0 percpu, bit1 lru
      80 u32 max_entries

    bucket[i]  u32: index + 1 of the first element of the chain, 0 = empty
    element    elem_size bytes at elems + index * elem_size
      0  u32 next    index + 1 of the next element in the chain (or in the free list)
      4  u32 hash    htab_map_hash(key)
      8  u32 state   0 free, 1 in the table
      12 u32 ref     LRU reference bit (set by program lookups)
      16 key         round_up(key_size, 8) bytes
      value_off      value (round_up(value_size, 8) bytes), absent for PERCPU types
    per-CPU value  pcpu + (index * nr_cpus + cpu) * vstride

Operations (what native code must do, and what this module does):

- hash = ``htab_map_hash(key, hashrnd)`` (:mod:`pybpf.maps.jhash`), bucket =
  ``hash & (n_buckets - 1)``; a chain is searched head first comparing hash then key.
- insert: pop ``free_head``, fill key/hash/value, ``state = 1``, link at the *head* of
  its bucket (the kernel's ``hlist_nulls_add_head_rcu``), ``count += 1``, ``gen += 1``.
- update of an existing key (HASH, LRU_HASH): the element moves to the head of its chain
  and takes the new value (the kernel links a fresh element at the head and frees the
  old one); PERCPU types update in place. Iteration order therefore equals Linux's for
  zero-seeded maps.
- delete: unlink, ``state = 0``, push on the free list, ``count -= 1``, ``gen += 1``.
- LRU: when no element is free, the eviction *clock* walks elements from ``clock_hand``:
  referenced ones lose their bit, the first unreferenced one is evicted. (Linux uses
  per-CPU active/inactive lists and evicts in batches; which keys go first differs.)

Value addresses stay valid while the element lives; freed elements are reused, as the
kernel's preallocated elements are.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import Any

import numpy as np

from pybpf.errors import BpfError
from pybpf.maps.base import BaseMapOps, ForEachCallback
from pybpf.maps.batch import (
    BatchResult,
    check_elem_flags,
    generic_delete_batch,
    generic_update_batch,
)
from pybpf.maps.common import (
    BPF_F_ACCESS_MASK,
    ENOTSUPP,
    KMALLOC_MAX_SIZE,
    PCPU_MIN_UNIT_SIZE,
    bpf_map_flags_access_ok,
    round_up,
    roundup_pow_of_two,
    store_value,
    value_with_lock_zeroed,
)
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.jhash import htab_map_hash
from pybpf.maps.storage import alloc_region
from pybpf.uapi import (
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_F_NO_COMMON_LRU,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_ZERO_SEED,
    BPF_MAP_TYPE_LRU_HASH,
    BPF_MAP_TYPE_LRU_PERCPU_HASH,
    BPF_MAP_TYPE_PERCPU_HASH,
    BPF_NOEXIST,
)

HTAB_CREATE_FLAG_MASK = (BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE
                         | BPF_F_ACCESS_MASK | BPF_F_ZERO_SEED)
SIZEOF_HTAB_ELEM = 48
SIZEOF_BPF_HTAB = 832
SIZEOF_BUCKET = 16
ELEM_HDR = 16
CTL_SIZE = 96
_CTL = struct.Struct("<IIIIIIIIQQQQIIIII")
FREE, USED = 0, 1


def htab_map_alloc_check(attr: MapAttr) -> None:
    """``htab_map_alloc_check`` (root: BPF_F_ZERO_SEED is allowed)."""
    percpu = attr.map_type in (BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH)
    lru = attr.map_type in (BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH)
    percpu_lru = bool(attr.map_flags & BPF_F_NO_COMMON_LRU)
    prealloc = not attr.map_flags & BPF_F_NO_PREALLOC
    numa = attr.map_flags & BPF_F_NUMA_NODE
    if attr.map_flags & ~HTAB_CREATE_FLAG_MASK or not bpf_map_flags_access_ok(attr.map_flags):
        raise BpfError(errno.EINVAL)
    if not lru and percpu_lru:
        raise BpfError(errno.EINVAL)
    if lru and not prealloc:
        raise BpfError(ENOTSUPP)
    if numa and (percpu or percpu_lru):
        raise BpfError(errno.EINVAL)
    if attr.max_entries == 0 or attr.key_size == 0 or attr.value_size == 0:
        raise BpfError(errno.EINVAL)
    if attr.key_size + attr.value_size >= KMALLOC_MAX_SIZE - SIZEOF_HTAB_ELEM:
        raise BpfError(errno.E2BIG)
    if percpu and round_up(attr.value_size, 8) > PCPU_MIN_UNIT_SIZE:
        raise BpfError(errno.E2BIG)


class HashTab(BpfMap):
    """A hash map's native table plus the Python-side index cache."""

    def __init__(self, ops: HtabOps, attr: MapAttr) -> None:
        super().__init__(ops, attr)
        self.percpu = ops.percpu
        self.lru = ops.lru
        if self.lru and attr.map_flags & BPF_F_NO_COMMON_LRU:
            # every CPU's LRU list gets the same number of elements (htab_map_alloc)
            cpus = self.nr_cpus
            rounded = -(-attr.max_entries // cpus) * cpus
            self.max_entries = rounded if rounded >= attr.max_entries else \
                attr.max_entries // cpus * cpus
        if self.max_entries > 1 << 31:
            raise BpfError(errno.E2BIG)
        self.n_buckets = roundup_pow_of_two(self.max_entries)
        self.hashrnd = 0 if attr.map_flags & BPF_F_ZERO_SEED else \
            int.from_bytes(os.urandom(4), "little")
        self.key_stride = round_up(self.key_size, 8)
        self.vstride = round_up(self.value_size, 8)
        self.value_off = ELEM_HDR + self.key_stride
        self.elem_size = self.value_off + (0 if self.percpu else self.vstride)
        self.n_elems = self.max_entries
        self.ctl = alloc_region(self, CTL_SIZE, "htab control")
        self.buckets = alloc_region(self, 4 * self.n_buckets, "buckets")
        self.elems = alloc_region(self, self.elem_size * self.n_elems, "elements")
        self.pcpu = alloc_region(self, self.n_elems * self.nr_cpus * self.vstride,
                                 "per-cpu values") if self.percpu else None
        self.ctl_i = self.ctl.mv.cast("I")
        self.ctl_q = self.ctl.mv.cast("Q")
        self.b32 = self.buckets.mv.cast("I")
        self.e32 = self.elems.mv.cast("I")
        self.emv = self.elems.mv
        self.ew = self.elem_size // 4  # element stride in u32 words
        self.index: dict[bytes, int] = {}
        self.hash_cache: dict[bytes, int] = {}
        self.gen = 0
        self.count = 0
        self.clock = 0
        # free list: all elements, lowest index first
        e32, ew = self.e32, self.ew
        for i in range(self.n_elems - 1):
            e32[i * ew] = i + 2
        self.free_head = 1 if self.n_elems else 0
        self.publish()
        self.write_header(elem_size=self.elem_size, data=self.elems.start, aux=self.ctl.start)

    # -- control block ----------------------------------------------------------------
    def publish(self) -> None:
        """Write the Python-side counters into the native control block."""
        flags = (1 if self.percpu else 0) | (2 if self.lru else 0)
        _CTL.pack_into(self.ctl.mv, 0, self.n_buckets, self.hashrnd, self.elem_size,
                       self.key_size, self.value_off, self.n_elems, self.count,
                       self.free_head, self.gen, self.buckets.start, self.elems.start,
                       self.pcpu.start if self.pcpu else 0, self.nr_cpus, self.vstride,
                       self.clock, flags, self.max_entries)

    def sync(self) -> None:
        """Reload state if native code changed the table behind Python's back."""
        if self.ctl_q[4] == self.gen:
            return
        (_nb, _h, _es, _ks, _vo, _ne, count, free_head, gen, *_rest
         ) = _CTL.unpack_from(self.ctl.mv, 0)
        if gen == self.gen:
            return
        self.count, self.free_head, self.gen = count, free_head, gen
        self.clock = _rest[-3]
        self.index = {}
        for idx in self.iter_indices():
            self.index[self.key_of(idx)] = idx

    def bump(self) -> None:
        """Publish count, free list and clock, then advance ``gen``."""
        self.gen += 1
        ci = self.ctl_i
        ci[6] = self.count
        ci[7] = self.free_head
        ci[18] = self.clock
        self.ctl_q[4] = self.gen

    # -- element access ---------------------------------------------------------------
    def key_of(self, idx: int) -> bytes:
        off = idx * self.elem_size + ELEM_HDR
        return self.emv[off:off + self.key_size].tobytes()

    def value_offset(self, idx: int) -> int:
        return idx * self.elem_size + self.value_off

    def value_addr(self, idx: int, cpu: int = 0) -> int:
        if self.pcpu is not None:
            return self.pcpu.start + (idx * self.nr_cpus + cpu) * self.vstride
        return self.elems.start + idx * self.elem_size + self.value_off

    def hash_of(self, key: bytes) -> int:
        h = self.hash_cache.get(key)
        if h is None:
            h = htab_map_hash(key, self.hashrnd)
            if len(self.hash_cache) > 65536:
                self.hash_cache.clear()
            self.hash_cache[key] = h
        return h

    def iter_indices(self) -> Any:
        """Element indices in the kernel's iteration order (bucket by bucket, head first)."""
        b32, e32, ew = self.b32, self.e32, self.ew
        for nz in np.flatnonzero(np.frombuffer(self.buckets.mv, dtype="<u4")):
            nxt = b32[int(nz)]
            while nxt:
                idx = nxt - 1
                yield idx
                nxt = e32[idx * ew]

    def chain(self, bucket: int) -> list[int]:
        out = []
        nxt = self.b32[bucket]
        e32, ew = self.e32, self.ew
        while nxt:
            out.append(nxt - 1)
            nxt = e32[(nxt - 1) * ew]
        return out

    # -- table surgery (callers hold self.lock) ----------------------------------------
    def unlink(self, idx: int) -> None:
        e32, ew = self.e32, self.ew
        bucket = e32[idx * ew + 1] & (self.n_buckets - 1)
        cur = self.b32[bucket]
        if cur == idx + 1:
            self.b32[bucket] = e32[idx * ew]
            return
        while cur:
            nxt = e32[(cur - 1) * ew]
            if nxt == idx + 1:
                e32[(cur - 1) * ew] = e32[idx * ew]
                return
            cur = nxt

    def link_head(self, idx: int, h: int) -> None:
        bucket = h & (self.n_buckets - 1)
        self.e32[idx * self.ew] = self.b32[bucket]
        self.b32[bucket] = idx + 1

    def alloc_elem(self, cpu: int) -> int:
        """Pop a free element (LRU: evict one when none is free); -1 when full."""
        if not self.free_head:
            if not self.lru:
                return -1
            self.evict_one()
        idx = self.free_head - 1
        self.free_head = self.e32[idx * self.ew]
        return idx

    def free_elem(self, idx: int) -> None:
        base = idx * self.ew
        self.e32[base + 2] = FREE
        self.e32[base + 3] = 0
        self.e32[base] = self.free_head
        self.free_head = idx + 1

    def evict_one(self) -> None:
        e32, ew, n = self.e32, self.ew, self.n_elems
        hand = self.clock
        for _ in range(2 * n + 1):
            base = hand * ew
            if e32[base + 2] == USED:
                if e32[base + 3]:
                    e32[base + 3] = 0
                else:
                    self.remove(hand)
                    self.clock = (hand + 1) % n
                    return
            hand = (hand + 1) % n
        self.clock = hand

    def insert(self, key: bytes, h: int, idx: int) -> None:
        base = idx * self.ew
        e32 = self.e32
        e32[base + 1] = h
        e32[base + 2] = USED
        e32[base + 3] = 0
        off = idx * self.elem_size + ELEM_HDR
        self.emv[off:off + self.key_size] = key
        self.link_head(idx, h)
        self.index[key] = idx
        self.count += 1

    def remove(self, idx: int) -> None:
        key = self.key_of(idx)
        self.unlink(idx)
        self.index.pop(key, None)
        self.free_elem(idx)
        self.count -= 1

    def write_value(self, idx: int, value: bytes, cpu: int, all_cpus: bool,
                    zero_others: bool) -> None:
        if self.pcpu is None:
            store_value(self.emv, self.value_offset(idx), value, self.value_size,
                        self.spin_lock_off)
            return
        block = self.nr_cpus * self.vstride
        pmv = self.pcpu.mv
        if all_cpus:
            pmv[idx * block:(idx + 1) * block] = value[:block]
            return
        if zero_others:
            pmv[idx * block:(idx + 1) * block] = bytes(block)
        off = (idx * self.nr_cpus + cpu) * self.vstride
        pmv[off:off + self.value_size] = value[:self.value_size]

    def read_value(self, idx: int) -> bytes:
        if self.pcpu is None:
            off = idx * self.elem_size + self.value_off
            data = self.emv[off:off + self.value_size].tobytes()
            return value_with_lock_zeroed(data, self.spin_lock_off)
        block = self.nr_cpus * self.vstride
        return self.pcpu.mv[idx * block:(idx + 1) * block].tobytes()

    def clear(self) -> None:
        with self.lock:
            for idx in list(self.iter_indices()):
                self.remove(idx)
            self.bump()


class HtabOps(BaseMapOps):
    """``htab_map_ops`` and its PERCPU / LRU variants (selected by class attributes)."""

    percpu = False
    lru = False

    def map_alloc_check(self, attr: MapAttr) -> None:
        htab_map_alloc_check(attr)

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        return HashTab(self, attr)

    def batch_token_size(self, bmap: BpfMap) -> int:
        return 4

    def mem_usage(self, bmap: BpfMap) -> int:
        assert isinstance(bmap, HashTab)
        elem = SIZEOF_HTAB_ELEM + bmap.key_stride + (8 if bmap.percpu else bmap.vstride)
        usage = SIZEOF_BPF_HTAB + SIZEOF_BUCKET * bmap.n_buckets + 8 * bmap.nr_cpus * 8
        n = bmap.max_entries + (0 if (bmap.percpu or bmap.lru) else bmap.nr_cpus)
        usage += elem * n
        if bmap.percpu:
            usage += bmap.vstride * bmap.nr_cpus * bmap.max_entries
        return usage

    def native_layout(self, bmap: BpfMap) -> dict[str, int]:
        assert isinstance(bmap, HashTab)
        return {"header": bmap.addr, "control": bmap.ctl.start, "buckets": bmap.buckets.start,
                "elems": bmap.elems.start, "pcpu": bmap.pcpu.start if bmap.pcpu else 0,
                "elem_size": bmap.elem_size, "value_off": bmap.value_off,
                "n_buckets": bmap.n_buckets, "hashrnd": bmap.hashrnd}

    # -- syscall side -----------------------------------------------------------------
    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        assert isinstance(bmap, HashTab)
        with bmap.lock:
            bmap.sync()
            idx = bmap.index.get(key)
            if idx is None:
                raise BpfError(errno.ENOENT)
            return bmap.read_value(idx)

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        err = self.update(bmap, key, value, flags, 0, True)  # type: ignore[arg-type]
        if err:
            raise BpfError(err)

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        assert isinstance(bmap, HashTab)
        with bmap.lock:
            bmap.sync()
            idx = bmap.index.get(key)
            if idx is None:
                raise BpfError(errno.ENOENT)
            bmap.remove(idx)
            bmap.bump()

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        assert isinstance(bmap, HashTab)
        with bmap.lock:
            bmap.sync()
            start = 0
            if key is not None:
                idx = bmap.index.get(key)
                if idx is not None:
                    nxt = bmap.e32[idx * bmap.ew]
                    if nxt:
                        return bmap.key_of(nxt - 1)
                    start = (bmap.e32[idx * bmap.ew + 1] & (bmap.n_buckets - 1)) + 1
            if start < bmap.n_buckets:
                rest = np.frombuffer(bmap.buckets.mv, dtype="<u4")[start:]
                nz = np.flatnonzero(rest)
                if nz.size:
                    return bmap.key_of(int(rest[nz[0]]) - 1)
            raise BpfError(errno.ENOENT)

    def sys_lookup_and_delete(self, bmap: BpfMap, key: bytes | None, flags: int) -> bytes:
        assert isinstance(bmap, HashTab)
        if flags & ~BPF_F_LOCK:
            raise BpfError(errno.EINVAL)
        with bmap.lock:
            bmap.sync()
            idx = bmap.index.get(key or b"")
            if idx is None:
                raise BpfError(errno.ENOENT)
            data = bmap.read_value(idx)
            bmap.remove(idx)
            bmap.bump()
            return data

    def update(self, bmap: HashTab, key: bytes, value: bytes, flags: int, cpu: int,
               from_sys: bool) -> int:
        """``htab_*_map_update_elem``: 0 or an errno. ``from_sys``: all-CPU values."""
        lru, percpu = bmap.lru, bmap.percpu
        if (flags & ~BPF_F_LOCK) > BPF_EXIST or ((lru or percpu) and flags > BPF_EXIST):
            return errno.EINVAL
        if flags & BPF_F_LOCK and bmap.spin_lock_off < 0:
            return errno.EINVAL
        mode = flags & ~BPF_F_LOCK
        with bmap.lock:
            bmap.sync()
            old = bmap.index.get(key, -1)
            if lru and (not percpu or mode != BPF_EXIST):
                # LRU takes a fresh element first (and may evict) whatever happens next
                new = bmap.alloc_elem(cpu)
                if new < 0:
                    return errno.ENOMEM
                old = bmap.index.get(key, -1)  # eviction may have removed it
                err = self.check_flags(old, mode)
                if err or (percpu and old >= 0):
                    bmap.free_elem(new)
                    if err:
                        bmap.bump()
                        return err
                else:
                    bmap.write_value(new, value, cpu, from_sys, True)
                    bmap.insert(key, bmap.hash_of(key), new)
                    if old >= 0:
                        bmap.e32[new * bmap.ew + 3] = 1  # the replacement is referenced
                        bmap.remove(old)
                    bmap.bump()
                    return 0
            err = self.check_flags(old, mode)
            if err:
                return err
            if old >= 0:
                if percpu:
                    if lru:
                        bmap.e32[old * bmap.ew + 3] = 1
                    bmap.write_value(old, value, cpu, from_sys, False)
                    return 0
                bmap.write_value(old, value, cpu, from_sys, False)
                if not flags & BPF_F_LOCK:
                    h = bmap.e32[old * bmap.ew + 1]
                    if bmap.b32[h & (bmap.n_buckets - 1)] != old + 1:
                        bmap.unlink(old)
                        bmap.link_head(old, h)
                        bmap.bump()
                return 0
            new = bmap.alloc_elem(cpu)
            if new < 0:
                return errno.E2BIG
            bmap.write_value(new, value, cpu, from_sys, True)
            bmap.insert(key, bmap.hash_of(key), new)
            bmap.bump()
            return 0

    @staticmethod
    def check_flags(old: int, mode: int) -> int:
        if old >= 0 and mode == BPF_NOEXIST:
            return errno.EEXIST
        if old < 0 and mode == BPF_EXIST:
            return errno.ENOENT
        return 0

    # -- batch --------------------------------------------------------------------------
    def sys_lookup_batch(self, bmap: BpfMap, in_batch: bytes | None, count: int,
                         elem_flags: int, flags: int) -> BatchResult:
        return self.batch(bmap, in_batch, count, elem_flags, flags, False)

    def sys_lookup_and_delete_batch(self, bmap: BpfMap, in_batch: bytes | None, count: int,
                                    elem_flags: int, flags: int) -> BatchResult:
        return self.batch(bmap, in_batch, count, elem_flags, flags, True)

    def sys_update_batch(self, bmap: BpfMap, keys: bytes, values: bytes, count: int,
                         elem_flags: int, flags: int) -> BatchResult:
        return generic_update_batch(self, bmap, keys, values, count, elem_flags, flags)

    def sys_delete_batch(self, bmap: BpfMap, keys: bytes, count: int, elem_flags: int,
                         flags: int) -> BatchResult:
        return generic_delete_batch(self, bmap, keys, count, elem_flags, flags)

    def batch_value(self, bmap: HashTab, idx: int) -> bytes:
        return bmap.read_value(idx)

    def batch(self, bmap: BpfMap, in_batch: bytes | None, count: int, elem_flags: int,
              flags: int, delete: bool) -> BatchResult:
        """``__htab_map_lookup_and_delete_batch``: whole buckets; the token is a bucket index."""
        assert isinstance(bmap, HashTab)
        check_elem_flags(bmap, elem_flags)
        if flags:
            raise BpfError(errno.EINVAL)
        if not count:
            return BatchResult(count_written=False)
        batch = int.from_bytes(in_batch[:4], "little") if in_batch else 0
        if batch >= bmap.n_buckets:
            return BatchResult(0, err=errno.ENOENT)
        keys: list[bytes] = []
        values: list[bytes] = []
        err = 0
        with bmap.lock:
            bmap.sync()
            buckets = np.frombuffer(bmap.buckets.mv, dtype="<u4")
            nonempty = np.flatnonzero(buckets[batch:]) + batch
            pos = 0
            total = 0
            while True:
                if pos < len(nonempty):
                    batch = int(nonempty[pos])
                else:
                    batch = bmap.n_buckets
                    err = errno.ENOENT
                    break
                members = bmap.chain(batch)
                if len(members) > count - total:
                    if total == 0:
                        err = errno.ENOSPC
                    break
                for idx in members:
                    keys.append(bmap.key_of(idx))
                    values.append(self.batch_value(bmap, idx))
                    if delete:
                        bmap.remove(idx)
                total += len(members)
                pos += 1
                batch += 1
                if batch >= bmap.n_buckets:
                    err = errno.ENOENT
                    break
            if delete:
                bmap.bump()
        return BatchResult(total, b"".join(keys), b"".join(values),
                           batch.to_bytes(4, "little"), err)

    # -- program side -------------------------------------------------------------------
    def map_lookup_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        assert isinstance(bmap, HashTab)
        key = bmap.mem.read(key_addr, bmap.key_size)
        with bmap.lock:
            bmap.sync()
            idx = bmap.index.get(key)
            if idx is None:
                return 0
            if bmap.lru:
                bmap.e32[idx * bmap.ew + 3] = 1
            return bmap.value_addr(idx, cpu)

    def map_lookup_percpu_elem(self, bmap: BpfMap, key_addr: int, cpu: int) -> int:
        if not self.percpu or cpu >= bmap.nr_cpus:
            return 0
        return self.map_lookup_elem(bmap, key_addr, cpu)

    def map_update_elem(self, bmap: BpfMap, key_addr: int, value_addr: int, flags: int,
                        cpu: int = 0) -> int:
        assert isinstance(bmap, HashTab)
        key = bmap.mem.read(key_addr, bmap.key_size)
        value = bmap.mem.read(value_addr, bmap.value_size)
        return -self.update(bmap, key, value, flags, cpu, False)

    def map_delete_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        key = bmap.mem.read(key_addr, bmap.key_size)
        try:
            self.sys_delete(bmap, key)
        except BpfError as exc:
            return -(exc.errno or errno.EINVAL)
        return 0

    def map_for_each_callback(self, bmap: BpfMap, callback: ForEachCallback,
                              cpu: int = 0) -> int:
        assert isinstance(bmap, HashTab)
        n = 0
        with bmap.lock:
            bmap.sync()
            for idx in list(bmap.iter_indices()):
                n += 1
                key_addr = bmap.elems.start + idx * bmap.elem_size + ELEM_HDR
                if callback(key_addr, bmap.value_addr(idx, cpu)):
                    break
        return n
