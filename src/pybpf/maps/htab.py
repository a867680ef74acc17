"""Hash-table machinery shared by HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH, HASH_OF_MAPS.

The kernel's ``kernel/bpf/hashtab.c`` with preallocated elements, laid out once in
native memory so Python, the interpreter's helpers and JIT-generated code all work on the
same table (DESIGN decision 4). Native code can look up, insert and delete without
calling Python; Python keeps a key → element index *cache* that it revalidates against
``gen`` (see below) — the native table is the only source of truth.

Native layout (all little-endian; ``header.data`` = elements, ``header.aux`` = control)::

    control (128 bytes)
      0  u32 n_buckets      power of two >= max_entries
      4  u32 hashrnd        seed of htab_map_hash (0 with BPF_F_ZERO_SEED)
      8  u32 elem_size      bytes per element (multiple of 8)
      12 u32 key_size
      16 u32 value_off      offset of the value inside an element (16 + round_up(key_size, 8))
      20 u32 n_elems        elements in the slab (max_entries, + nr_cpus spares for HASH
                            and HASH_OF_MAPS)
      24 u32 count          elements in the table
      28 u32 free_top       entries on the free stack (not used by LRU types)
      32 u64 gen            bumped by every change of chains, count or free stack;
                            native writers MUST bump it
      40 u64 buckets        address of u32[n_buckets]
      48 u64 elems          address of the element slab
      56 u64 pcpu           per-CPU values (PERCPU types) or 0
      64 u32 nr_cpus        possible CPUs
      68 u32 vstride        round_up(value_size, 8)
      72 u32 max_entries
      76 u32 flags          bit0 percpu, bit1 lru, bit2 per-CPU LRU lists (NO_COMMON_LRU),
                            bit3 updates of existing keys are in place
      80 u64 free_stack     address of u32[n_elems]: free element indices; the next
                            element to use is free_stack[free_top - 1]
      88 u64 extra          address of u32[nr_cpus]: each CPU's spare element (HASH and
                            HASH_OF_MAPS), else 0
      96 u64 lru            address of the LRU lists (LRU types, :mod:`pybpf.maps.bpf_lru`)
                            else 0

    bucket[i]  u32: index + 1 of the first element of the chain, 0 = empty
    element    elem_size bytes at elems + index * elem_size
      0  u32 next    index + 1 of the next element in the chain
      4  u32 hash    htab_map_hash(key)
      8  u32 state   0 free, 1 in the table
      12 u32 (unused)
      16 u32 ref     LRU reference bit (set by program lookups of LRU maps; an inlined
                     lookup, ``htab_lru_map_gen_lookup``, stores 1 into its byte 19)
      20 (unused, 12 bytes)
      32 key         round_up(key_size, 8) bytes
      value_off      value (round_up(value_size, 8) bytes), absent for PERCPU types
                     (value_off = 32 + round_up(key_size, 8): the kernel's element puts
                     the key at 48, so kernel-shaped offsets from ``value - (48 + round_up(
                     key_size, 8))`` reach the value at +48+…, the ref byte at +35)
    per-CPU value  pcpu + (index * nr_cpus + cpu) * vstride

Operations (what native code must do, and what this module does):

- hash = ``htab_map_hash(key, hashrnd)`` (:mod:`pybpf.maps.jhash`), bucket =
  ``hash & (n_buckets - 1)``; a chain is searched head first comparing hash then key.
- insert of a new key: pop the free stack (HASH, PERCPU_HASH: E2BIG when empty) or the
  LRU (:meth:`pybpf.maps.bpf_lru.BpfLru.pop_free`, which may evict), fill header, key and
  value, then link at the *head* of its bucket (``hlist_nulls_add_head_rcu``),
  ``count += 1``, ``gen += 1``.
- update of an existing key, HASH: the new value goes into the updating CPU's *spare*
  element, which is linked at the head of the chain; the old element is unlinked and
  becomes that CPU's spare (``alloc_htab_elem`` with ``extra_elems``). A reader holding the
  old value's address never sees a half-written value. With ``BPF_F_LOCK`` the value is
  copied in place instead (the lock word is kept).
  LRU_HASH: a fresh element is popped from the LRU (evicting if need be), linked at the
  head with its ref bit set; the old one returns to the LRU.
  PERCPU_HASH, LRU_PERCPU_HASH, HASH_OF_MAPS: in place, the chain is unchanged
  (``htab_map_update_elem_in_place``); LRU_PERCPU_HASH sets the ref bit.
  Iteration order therefore equals Linux's for zero-seeded maps.
- delete: unlink, ``state = 0``, push on the free stack (or return to the LRU),
  ``count -= 1``, ``gen += 1``.

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
from pybpf.maps import core
from pybpf.maps.base import BaseMapOps, ForEachCallback
from pybpf.maps.batch import BatchResult, check_elem_flags
from pybpf.maps.bpf_lru import REF_WORD, BpfLru, lru_words
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
from pybpf.maps.core import BpfMap, MapAttr, sys_cpu, sys_cpu_fast
from pybpf.maps.jhash import htab_map_hash
from pybpf.maps.storage import alloc_region
from pybpf.runtime.memory import Region
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
SIZEOF_BPF_HTAB = 896  # sizeof(struct bpf_htab) in 6.18 (fdinfo memlock)
SIZEOF_LLIST_NODE = 8
SIZEOF_BUCKET = 16
#: bytes before an element's key: the kernel's ``offsetof(struct htab_elem, key)`` minus
#: 16, so that ``elem + ELEM_HDR - 13`` (where an inlined LRU lookup stores the ref byte,
#: ``htab_elem + 35``, counted from the kernel-shaped element ``__htab_map_lookup_elem``
#: hands out: value address minus ``48 + round_up(key_size, 8)``) is the ref word's last byte
ELEM_HDR = 32
CTL_SIZE = 128
_CTL = struct.Struct("<IIIIIIIIQQQQIIIIQQQ")
_ELEM_HDR = struct.Struct("<III4xI12x")  # next, hash, state, (pad), ref, (pad)
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
        self.in_place = ops.in_place
        self.percpu_lru = self.lru and bool(attr.map_flags & BPF_F_NO_COMMON_LRU)
        if self.percpu_lru:
            # every CPU's LRU list gets the same number of elements (htab_map_alloc)
            cpus = self.nr_cpus
            rounded = -(-attr.max_entries // cpus) * cpus
            self.max_entries = rounded if rounded >= attr.max_entries else \
                attr.max_entries // cpus * cpus
        if self.max_entries > 1 << 31:
            raise BpfError(errno.E2BIG)
        self.n_buckets = roundup_pow_of_two(self.max_entries)
        self.mask = self.n_buckets - 1
        self.hashrnd = 0 if attr.map_flags & BPF_F_ZERO_SEED else \
            int.from_bytes(os.urandom(4), "little")
        self.key_stride = round_up(self.key_size, 8)
        self.vstride = round_up(self.value_size, 8)
        self.value_off = ELEM_HDR + self.key_stride
        self.elem_size = self.value_off + (0 if self.percpu else self.vstride)
        self.has_extra = not self.percpu and not self.lru
        self.n_elems = self.max_entries + (self.nr_cpus if self.has_extra else 0)
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
        # count and free_top live only in the control block (properties below)
        self.free_stack: Region | None = None
        self.extra: Region | None = None
        self.lru_area: Region | None = None
        self.lru_lists: BpfLru | None = None
        if self.lru:
            words = lru_words(self.n_elems, self.nr_cpus, self.percpu_lru)
            self.lru_area = alloc_region(self, 4 * words, "lru lists")
            self.lru_lists = BpfLru(self.lru_area, self.n_elems, self.nr_cpus,
                                    self.percpu_lru, self.evict, self.e32, self.ew)
        else:
            self.free_stack = alloc_region(self, 4 * self.n_elems, "free stack")
            fs = self.free_stack.mv.cast("I")
            # element 0 is used first, as the first engineer's layout did
            for i in range(self.max_entries):
                fs[i] = self.max_entries - 1 - i
            self.free_top = self.max_entries
        self.fs32 = self.free_stack.mv.cast("I") if self.free_stack else None
        if self.has_extra:
            self.extra = alloc_region(self, 4 * self.nr_cpus, "spare elements")
            self.x32 = self.extra.mv.cast("I")
            for cpu in range(self.nr_cpus):
                self.x32[cpu] = self.max_entries + cpu
        self.publish()
        self.write_header(elem_size=self.elem_size, data=self.elems.start, aux=self.ctl.start)
        self.make_fast_paths()

    # -- control block ----------------------------------------------------------------
    @property
    def count(self) -> int:
        """Elements in the table (control word 24)."""
        return self.ctl_i[6]

    @count.setter
    def count(self, n: int) -> None:
        self.ctl_i[6] = n

    @property
    def free_top(self) -> int:
        """Entries on the free stack (control word 28)."""
        return self.ctl_i[7]

    @free_top.setter
    def free_top(self, n: int) -> None:
        self.ctl_i[7] = n

    def publish(self) -> None:
        """Write the Python-side counters into the native control block."""
        flags = (1 if self.percpu else 0) | (2 if self.lru else 0) | \
            (4 if self.percpu_lru else 0) | (8 if self.in_place else 0)
        _CTL.pack_into(self.ctl.mv, 0, self.n_buckets, self.hashrnd, self.elem_size,
                       self.key_size, self.value_off, self.n_elems, self.count,
                       self.free_top, self.gen, self.buckets.start, self.elems.start,
                       self.pcpu.start if self.pcpu else 0, self.nr_cpus, self.vstride,
                       self.max_entries, flags,
                       self.free_stack.start if self.free_stack else 0,
                       self.extra.start if self.extra else 0,
                       self.lru_area.start if self.lru_area else 0)

    def sync(self) -> None:
        """Reload state if native code changed the table behind Python's back."""
        gen = self.ctl_q[4]
        if gen == self.gen:
            return
        self.gen = gen
        index = self.index  # refilled in place: fast paths hold a reference to it
        index.clear()
        for idx in self.iter_indices():
            index[self.key_of(idx)] = idx

    def bump(self) -> None:
        """Advance ``gen`` (count and free_top are written through as they change)."""
        self.gen += 1
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

    def words(self) -> np.ndarray:
        """The element slab as a ``(n_elems, elem_size // 4)`` u32 array (a view)."""
        return np.frombuffer(self.elems.mv, "<u4").reshape(self.n_elems, self.ew)

    # -- table surgery (callers hold self.lock) ----------------------------------------
    def unlink(self, idx: int) -> None:
        e32, ew = self.e32, self.ew
        bucket = e32[idx * ew + 1] & self.mask
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
        bucket = h & self.mask
        self.e32[idx * self.ew] = self.b32[bucket]
        self.b32[bucket] = idx + 1

    def pop_free(self, cpu: int) -> int:
        """A free element: the free stack's top, or the LRU's (which may evict); -1 if none."""
        if self.lru_lists is not None:
            return self.lru_lists.pop_free(cpu)
        if not self.free_top:
            return -1
        self.free_top -= 1
        return self.fs32[self.free_top]  # type: ignore[index]

    def push_free(self, idx: int) -> None:
        """Element ``idx`` left the table: back to the free stack or the LRU."""
        base = idx * self.ew
        self.e32[base + 2] = FREE
        if self.lru_lists is not None:
            self.lru_lists.push_free(idx)
            return
        self.e32[base + REF_WORD] = 0
        self.fs32[self.free_top] = idx  # type: ignore[index]
        self.free_top += 1

    def evict(self, idx: int) -> bool:
        """``htab_lru_map_delete_node``: drop ``idx`` from the table if it is there."""
        if self.e32[idx * self.ew + 2] != USED:
            return False
        self.unlink(idx)
        self.index.pop(self.key_of(idx), None)
        self.e32[idx * self.ew + 2] = FREE
        self.count -= 1
        return True

    def insert(self, key: bytes, h: int, idx: int) -> None:
        """Fill ``idx``'s header and key and link it at the head of its bucket."""
        bucket = h & self.mask
        _ELEM_HDR.pack_into(self.emv, idx * self.elem_size, self.b32[bucket], h, USED, 0)
        off = idx * self.elem_size + ELEM_HDR
        self.emv[off:off + self.key_size] = key
        self.b32[bucket] = idx + 1
        self.index[key] = idx
        self.count += 1

    def remove(self, idx: int) -> None:
        key = self.key_of(idx)
        self.unlink(idx)
        self.index.pop(key, None)
        self.count -= 1
        self.push_free(idx)

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

    def values_of(self, idx: np.ndarray) -> bytes:
        """The syscall values of elements ``idx``, concatenated (vectorised read)."""
        if type(self).read_value is not HashTab.read_value:
            return b"".join(self.read_value(int(i)) for i in idx)
        if self.pcpu is not None:
            block = self.nr_cpus * self.vstride
            pcpu = np.frombuffer(self.pcpu.mv, np.uint8).reshape(self.n_elems, block)
            return pcpu[idx].tobytes()
        slab = np.frombuffer(self.emv, np.uint8).reshape(self.n_elems, self.elem_size)
        vals = slab[idx, self.value_off:self.value_off + self.value_size]
        if self.spin_lock_off >= 0:
            vals[:, self.spin_lock_off:self.spin_lock_off + 4] = 0
        return vals.tobytes()

    def keys_of(self, idx: np.ndarray) -> bytes:
        slab = np.frombuffer(self.emv, np.uint8).reshape(self.n_elems, self.elem_size)
        return slab[idx, ELEM_HDR:ELEM_HDR + self.key_size].tobytes()

    def buckets_in_order(self, first: int, end: int) -> np.ndarray:
        """Element indices of buckets ``first..end-1`` in iteration order (vectorised walk)."""
        heads = np.frombuffer(self.buckets.mv, "<u4")[first:end]
        nz = np.flatnonzero(heads)
        if not nz.size:
            return np.zeros(0, np.int64)
        words = self.words()
        cur = heads[nz].astype(np.int64) - 1
        bucket = nz
        parts_b = []
        parts_d = []
        parts_i = []
        depth = 0
        while cur.size:
            parts_b.append(bucket)
            parts_d.append(np.full(cur.size, depth))
            parts_i.append(cur)
            nxt = words[cur, 0].astype(np.int64)
            live = nxt != 0
            cur = nxt[live] - 1
            bucket = bucket[live]
            depth += 1
        if depth == 1:
            return parts_i[0]
        b = np.concatenate(parts_b)
        order = np.lexsort((np.concatenate(parts_d), b))
        return np.concatenate(parts_i)[order]

    # -- vectorised batch surgery (plain HASH; callers hold self.lock) -----------------
    @staticmethod
    def distinct(values: np.ndarray, bound: int) -> np.ndarray:
        """Sorted distinct ``values`` (all in ``range(bound)``)."""
        if bound <= 8 * values.size + 4096:
            return np.flatnonzero(np.bincount(values, minlength=bound))
        return np.unique(values)

    def member(self, values: np.ndarray, of: np.ndarray) -> np.ndarray:
        """``np.isin(values, of)`` for element indices."""
        if self.n_elems <= 8 * (values.size + of.size) + 4096:
            flag = np.zeros(self.n_elems, bool)
            flag[of] = True
            return flag[values]
        return np.isin(values, of)

    def chain_members(self, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bucket, depth, element) of every element chained in ``buckets``."""
        heads = np.frombuffer(self.buckets.mv, "<u4")[buckets]
        live = heads != 0
        cur = heads[live].astype(np.int64) - 1
        bucket = buckets[live]
        words = self.words()
        bs, ds, es = [], [], []
        depth = 0
        while cur.size:
            bs.append(bucket)
            ds.append(np.full(cur.size, depth, np.int64))
            es.append(cur)
            nxt = words[cur, 0].astype(np.int64)
            keep = nxt != 0
            cur = nxt[keep] - 1
            bucket = bucket[keep]
            depth += 1
        if not bs:
            empty = np.zeros(0, np.int64)
            return empty, empty, empty
        return np.concatenate(bs), np.concatenate(ds), np.concatenate(es)

    def relink(self, touched: np.ndarray, bucket: np.ndarray, elem: np.ndarray,
               order: np.ndarray) -> None:
        """Rebuild the chains of ``touched`` buckets: ``elem[order]`` head to tail."""
        heads = np.frombuffer(self.buckets.mv, "<u4")
        heads[touched] = 0
        if not order.size:
            return
        s_i = elem[order]
        s_b = bucket[order]
        same = s_b[1:] == s_b[:-1]
        nxt = np.zeros(s_i.size, np.uint32)
        nxt[:-1] = np.where(same, s_i[1:] + 1, 0)
        self.words()[s_i, 0] = nxt
        first = np.ones(s_i.size, bool)
        first[1:] = ~same
        heads[s_b[first]] = s_i[first] + 1

    def update_many(self, keys: bytes, values: bytes, n: int) -> tuple[int, int]:
        """BPF_ANY updates of ``n`` elements in order -> (done, errno), vectorised.

        The result equals ``n`` single updates on the syscall CPU: existing keys go
        through that CPU's spare element (the old element of key ``i`` holds key
        ``i + 1``'s value, the last one becomes the spare), new keys pop the free stack,
        and every touched chain starts with the batch's keys, last one first.
        """
        ks, vs = self.key_size, self.value_size
        klist = np.frombuffer(keys, f"V{ks}", n).tolist()
        if len(set(klist)) != n:  # repeated keys: do them one by one
            fast = self.fast_update
            for i in range(n):
                err = fast(keys[i * ks:(i + 1) * ks], values[i * vs:(i + 1) * vs])
                if err:
                    return i, err
            return n, 0
        get = self.index.get
        olds = np.array([get(k, -1) for k in klist], np.int64)
        is_new = olds < 0
        n_new = int(np.count_nonzero(is_new))
        err = 0
        if n_new > self.free_top:
            n = int(np.flatnonzero(is_new)[self.free_top])
            err = errno.E2BIG
            klist, olds, is_new = klist[:n], olds[:n], is_new[:n]
            n_new = self.free_top
        if not n:
            return 0, err
        words = self.words()
        hashes = np.empty(n, np.uint32)
        rep = np.flatnonzero(~is_new)
        old_rep = olds[rep]
        hashes[rep] = words[old_rep, 1]
        newidx = np.empty(n, np.int64)
        if n_new:
            hash_of = self.hash_of
            fresh = np.flatnonzero(is_new)
            hashes[fresh] = [hash_of(klist[i]) for i in fresh.tolist()]
            top = self.free_top
            stack = np.frombuffer(self.free_stack.mv, "<u4")  # type: ignore[union-attr]
            newidx[fresh] = stack[top - n_new:top][::-1]
            self.free_top = top - n_new
        if rep.size:
            cpu = sys_cpu() % self.nr_cpus
            newidx[rep[0]] = self.x32[cpu]
            newidx[rep[1:]] = old_rep[:-1]
            self.x32[cpu] = int(old_rep[-1])
        bucket = (hashes & self.mask).astype(np.int64)
        touched = self.distinct(bucket, self.n_buckets)
        mb, md, mi = self.chain_members(touched)
        if rep.size:
            keep = ~self.member(mi, old_rep)
            mb, md, mi = mb[keep], md[keep], mi[keep]
            words[old_rep, 2] = FREE
        slab = np.frombuffer(self.emv, np.uint8).reshape(self.n_elems, self.elem_size)
        slab[newidx, ELEM_HDR:ELEM_HDR + ks] = np.frombuffer(keys, np.uint8, n * ks
                                                             ).reshape(n, ks)
        slab[newidx, self.value_off:self.value_off + vs] = np.frombuffer(
            values, np.uint8, n * vs).reshape(n, vs)
        words[newidx, 1] = hashes
        words[newidx, 2] = USED
        words[newidx, REF_WORD] = 0
        all_b = np.concatenate((bucket, mb))
        group = np.concatenate((np.zeros(n, np.int64), np.ones(mb.size, np.int64)))
        rank = np.concatenate((-np.arange(n), md))
        all_i = np.concatenate((newidx, mi))
        self.relink(touched, all_b, all_i, np.lexsort((rank, group, all_b)))
        self.index.update(zip(klist, newidx.tolist(), strict=True))
        self.count += n_new
        self.bump()
        return n, err

    def delete_many(self, keys: bytes, n: int) -> tuple[int, int]:
        """Deletes of ``n`` keys in order -> (done, errno); a missing key stops them."""
        ks = self.key_size
        klist = np.frombuffer(keys, f"V{ks}", n).tolist()
        err = 0
        if len(set(klist)) != n:
            fast = self.fast_delete
            for i in range(n):
                err = fast(klist[i])
                if err:
                    return i, err
            return n, 0
        get = self.index.get
        olds = np.array([get(k, -1) for k in klist], np.int64)
        missing = np.flatnonzero(olds < 0)
        if missing.size:
            n = int(missing[0])
            err = errno.ENOENT
            olds = olds[:n]
        if not n:
            return 0, err
        words = self.words()
        touched = self.distinct((words[olds, 1] & self.mask).astype(np.int64), self.n_buckets)
        mb, md, mi = self.chain_members(touched)
        keep = ~self.member(mi, olds)
        mb, md, mi = mb[keep], md[keep], mi[keep]
        self.relink(touched, mb, mi, np.lexsort((md, mb)))
        words[olds, 2] = FREE
        words[olds, REF_WORD] = 0
        top = self.free_top
        np.frombuffer(self.free_stack.mv, "<u4")[top:top + n] = olds  # type: ignore[union-attr]
        self.free_top = top + n
        pop = self.index.pop
        for k in klist[:n]:
            pop(k)
        self.count -= n
        self.bump()
        return n, err

    # -- fast paths (plain HASH without spin lock; see make_fast_paths) -----------------
    def make_fast_paths(self) -> None:
        """Closures for the hot syscall-side operations of a plain HASH map.

        ``fast_lookup(key) -> bytes | None``, ``fast_update(key, value) -> errno`` (BPF_ANY)
        and ``fast_delete(key) -> errno`` do exactly what :class:`HtabOps` does, with every
        table attribute bound once; ``None`` for map flavours that need the general path.
        """
        self.fast_lookup = self.fast_update = self.fast_delete = None
        if self.spin_lock_off >= 0 or self.lru or self.in_place or self.percpu or type(self).read_value is not \
                HashTab.read_value:
            return
        lock, index, ctl_q = self.lock, self.index, self.ctl_q
        e32, b32, emv, ew, es, mask = self.e32, self.b32, self.emv, self.ew, self.elem_size, \
            self.mask
        voff, vs = self.value_off, self.value_size
        x32, fs32, nr_cpus, hash_of = self.x32, self.fs32, self.nr_cpus, self.hash_of
        gap = self.value_off - ELEM_HDR - self.key_size
        pack_elem = struct.Struct(f"<III4xI12x{self.key_size}s{gap}x{vs}s").pack_into
        get = index.get
        acquire, release = lock.acquire, lock.release
        bmap = self

        def fast_lookup(key: bytes) -> bytes | None:
            acquire()
            try:
                if ctl_q[4] != bmap.gen:
                    bmap.sync()
                idx = get(key)
                if idx is None:
                    return None
                off = idx * es + voff
                return emv[off:off + vs].tobytes()

            finally:
                release()

        def fast_update(key: bytes, value: bytes) -> int:
            acquire()
            try:
                if ctl_q[4] != bmap.gen:
                    bmap.sync()
                old = get(key, -1)
                if old >= 0:
                    cpu = sys_cpu_fast() % nr_cpus if core._overrides else 0
                    new = x32[cpu]
                    x32[cpu] = old
                    base = old * ew
                    h = e32[base + 1]
                    bucket = h & mask
                    head = b32[bucket]
                    if head == old + 1:
                        # the old element heads its chain: the spare takes its place
                        pack_elem(emv, new * es, e32[base], h, USED, 0, key, value)
                        b32[bucket] = new + 1
                    else:
                        pack_elem(emv, new * es, head, h, USED, 0, key, value)
                        b32[bucket] = new + 1
                        prev = head - 1
                        cur = e32[prev * ew]
                        while cur != old + 1:
                            prev = cur - 1
                            cur = e32[prev * ew]
                        e32[prev * ew] = e32[base]
                    e32[base + 2] = FREE
                    index[key] = new
                else:
                    ct = ctl_q[3]  # count | free_top << 32
                    top = ct >> 32
                    if not top:
                        return errno.E2BIG
                    new = fs32[top - 1]  # type: ignore[index]
                    h = hash_of(key)
                    bucket = h & mask
                    pack_elem(emv, new * es, b32[bucket], h, USED, 0, key, value)
                    b32[bucket] = new + 1
                    index[key] = new
                    ctl_q[3] = ct + 1 - (1 << 32)  # count + 1, free_top - 1
                gen = bmap.gen + 1
                bmap.gen = gen
                ctl_q[4] = gen
            finally:
                release()
            return 0

        def fast_delete(key: bytes) -> int:
            acquire()
            try:
                if ctl_q[4] != bmap.gen:
                    bmap.sync()
                idx = index.pop(key, -1)
                if idx < 0:
                    return errno.ENOENT
                base = idx * ew
                bucket = e32[base + 1] & mask
                cur = b32[bucket]
                if cur == idx + 1:
                    b32[bucket] = e32[base]
                else:
                    while True:
                        prev = (cur - 1) * ew
                        cur = e32[prev]
                        if cur == idx + 1:
                            e32[prev] = e32[base]
                            break
                e32[base + 2] = FREE
                ct = ctl_q[3]  # count | free_top << 32
                fs32[ct >> 32] = idx  # type: ignore[index]
                ctl_q[3] = ct - 1 + (1 << 32)  # count - 1, free_top + 1
                bmap.gen = gen = bmap.gen + 1
                ctl_q[4] = gen
            finally:
                release()
            return 0

        self.fast_lookup, self.fast_update, self.fast_delete = \
            fast_lookup, fast_update, fast_delete

    def clear(self) -> None:
        with self.lock:
            self.sync()
            for idx in list(self.iter_indices()):
                self.remove(idx)
            self.bump()


class HtabOps(BaseMapOps):
    """``htab_map_ops`` and its PERCPU / LRU variants (selected by class attributes)."""

    percpu = False
    lru = False
    in_place = False  # existing keys are updated in place (percpu and fd hash maps)

    def map_alloc_check(self, attr: MapAttr) -> None:
        htab_map_alloc_check(attr)

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        return HashTab(self, attr)

    def batch_token_size(self, bmap: BpfMap) -> int:
        return 4

    def mem_usage(self, bmap: BpfMap) -> int:
        """``htab_map_mem_usage`` (what fdinfo ``memlock`` shows): preallocated maps count
        every element (and HASH's per-CPU spares), others the elements in use."""
        assert isinstance(bmap, HashTab)
        cpus = bmap.nr_cpus
        elem = SIZEOF_HTAB_ELEM + bmap.key_stride + (8 if bmap.percpu else bmap.vstride)
        usage = SIZEOF_BPF_HTAB + SIZEOF_BUCKET * bmap.n_buckets
        if not bmap.map_flags & BPF_F_NO_PREALLOC:
            n = bmap.max_entries + (cpus if bmap.has_extra else 0)
            usage += elem * n
            if bmap.percpu:
                usage += bmap.vstride * cpus * n
            elif not bmap.lru:
                usage += 8 * cpus  # the per-CPU extra_elems pointers
            return usage
        n = bmap.count
        usage += (elem + SIZEOF_LLIST_NODE) * n
        if bmap.percpu:
            usage += (SIZEOF_LLIST_NODE + 8) * n + bmap.vstride * cpus * n
        return usage

    def native_layout(self, bmap: BpfMap) -> dict[str, int]:
        assert isinstance(bmap, HashTab)
        return {"header": bmap.addr, "control": bmap.ctl.start, "buckets": bmap.buckets.start,
                "elems": bmap.elems.start, "pcpu": bmap.pcpu.start if bmap.pcpu else 0,
                "elem_size": bmap.elem_size, "value_off": bmap.value_off,
                "n_buckets": bmap.n_buckets, "hashrnd": bmap.hashrnd,
                "free_stack": bmap.free_stack.start if bmap.free_stack else 0,
                "extra": bmap.extra.start if bmap.extra else 0,
                "lru": bmap.lru_area.start if bmap.lru_area else 0}

    # -- syscall side -----------------------------------------------------------------
    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        assert isinstance(bmap, HashTab)
        fast = bmap.fast_lookup
        if fast is not None and len(key) == bmap.key_size and bmap.spin_lock_off < 0:
            data = fast(key)
            if data is None:
                raise BpfError(errno.ENOENT)
            return data
        with bmap.lock:
            if bmap.ctl_q[4] != bmap.gen:
                bmap.sync()
            idx = bmap.index.get(key)
            if idx is None:
                raise BpfError(errno.ENOENT)
            return bmap.read_value(idx)

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        fast = bmap.fast_update
        if fast is not None and not flags and len(key) == bmap.key_size \
                and len(value) == bmap.value_size and bmap.spin_lock_off < 0:
            err = fast(key, value)
        else:
            err = self.update(bmap, key, value, flags, sys_cpu(), True)  # type: ignore[arg-type]
        if err:
            raise BpfError(err)

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        assert isinstance(bmap, HashTab)
        fast = bmap.fast_delete
        if fast is not None:
            if fast(key):
                raise BpfError(errno.ENOENT)
            return
        with bmap.lock:
            if bmap.ctl_q[4] != bmap.gen:
                bmap.sync()
            idx = bmap.index.pop(key, None)
            if idx is None:
                raise BpfError(errno.ENOENT)
            bmap.unlink(idx)
            bmap.count -= 1
            bmap.push_free(idx)
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
                    start = (bmap.e32[idx * bmap.ew + 1] & bmap.mask) + 1
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
        if flags and ((flags & ~BPF_F_LOCK) > BPF_EXIST
                      or ((lru or percpu) and flags > BPF_EXIST)
                      or (flags & BPF_F_LOCK and bmap.spin_lock_off < 0)):
            return errno.EINVAL
        with bmap.lock:
            if bmap.ctl_q[4] != bmap.gen:
                bmap.sync()
            if lru:
                if percpu:
                    err = self._lru_percpu_update(bmap, key, value, flags, cpu, from_sys)
                else:
                    err = self._lru_update(bmap, key, value, flags, cpu)
            elif bmap.in_place:
                err = self._in_place_update(bmap, key, value, flags, cpu, from_sys)
            else:
                err = self._htab_update(bmap, key, value, flags, cpu)
            bmap.bump()
            return err

    @staticmethod
    def _htab_update(bmap: HashTab, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        """``htab_map_update_elem`` (HASH): a spare or free element takes the new value."""
        old = bmap.index.get(key, -1)
        if flags:
            mode = flags & ~BPF_F_LOCK
            if old >= 0 and mode == BPF_NOEXIST:
                return errno.EEXIST
            if old < 0 and mode == BPF_EXIST:
                return errno.ENOENT
            if old >= 0 and flags & BPF_F_LOCK:
                bmap.write_value(old, value, cpu, True, False)
                return 0
        e32, ew = bmap.e32, bmap.ew
        if old >= 0:
            x32 = bmap.x32
            cpu %= bmap.nr_cpus
            new = x32[cpu]
            x32[cpu] = old
            h = e32[old * ew + 1]
        else:
            if not bmap.free_top:
                return errno.E2BIG
            bmap.free_top -= 1
            new = bmap.fs32[bmap.free_top]  # type: ignore[index]
            h = bmap.hash_of(key)
            bmap.count += 1
        es = bmap.elem_size
        emv = bmap.emv
        off = new * es
        b32 = bmap.b32
        bucket = h & bmap.mask
        head = b32[bucket]
        _ELEM_HDR.pack_into(emv, off, head, h, USED, 0)
        emv[off + ELEM_HDR:off + ELEM_HDR + bmap.key_size] = key
        if bmap.spin_lock_off < 0:
            voff = off + bmap.value_off
            emv[voff:voff + bmap.value_size] = value[:bmap.value_size]
        else:
            store_value(emv, off + bmap.value_off, value, bmap.value_size,
                        bmap.spin_lock_off)
        b32[bucket] = new + 1
        bmap.index[key] = new
        if old >= 0:
            # unlink the old element: it follows the new head somewhere in the chain
            prev = new
            cur = head
            target = old + 1
            while cur != target:
                prev = cur - 1
                cur = e32[prev * ew]
            e32[prev * ew] = e32[old * ew]
            e32[old * ew + 2] = FREE
        return 0

    @staticmethod
    def _in_place_update(bmap: HashTab, key: bytes, value: bytes, flags: int, cpu: int,
                         from_sys: bool) -> int:
        """``htab_map_update_elem_in_place`` (PERCPU_HASH, HASH_OF_MAPS)."""
        old = bmap.index.get(key, -1)
        err = HtabOps.check_flags(old, flags & ~BPF_F_LOCK)
        if err:
            return err
        if old >= 0:
            bmap.write_value(old, value, cpu, from_sys, False)
            return 0
        new = bmap.pop_free(cpu)
        if new < 0:
            return errno.E2BIG
        bmap.write_value(new, value, cpu, from_sys, True)
        bmap.insert(key, bmap.hash_of(key), new)
        return 0

    @staticmethod
    def _lru_update(bmap: HashTab, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        """``htab_lru_map_update_elem``: pop (maybe evicting) first, then decide."""
        new = bmap.pop_free(cpu)
        if new < 0:
            return errno.ENOMEM
        old = bmap.index.get(key, -1)  # the eviction may have removed it
        err = HtabOps.check_flags(old, flags)
        if err:
            bmap.push_free(new)
            return err
        bmap.write_value(new, value, cpu, True, False)
        bmap.insert(key, bmap.hash_of(key), new)
        if old >= 0:
            bmap.e32[new * bmap.ew + REF_WORD] = 1  # the replacement is referenced
            bmap.unlink(old)
            bmap.count -= 1
            bmap.push_free(old)
        return 0

    @staticmethod
    def _lru_percpu_update(bmap: HashTab, key: bytes, value: bytes, flags: int, cpu: int,
                           from_sys: bool) -> int:
        """``__htab_lru_percpu_map_update_elem``: in place for existing keys."""
        new = -1
        if flags != BPF_EXIST:
            new = bmap.pop_free(cpu)
            if new < 0:
                return errno.ENOMEM
        old = bmap.index.get(key, -1)
        err = HtabOps.check_flags(old, flags)
        if not err:
            if old >= 0:
                bmap.e32[old * bmap.ew + REF_WORD] = 1
                bmap.write_value(old, value, cpu, from_sys, False)
            else:
                bmap.write_value(new, value, cpu, from_sys, True)
                bmap.insert(key, bmap.hash_of(key), new)
                new = -1
        if new >= 0:
            bmap.push_free(new)
        return err

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
        """``generic_map_update_batch``: element by element, the first error stops it.

        Plain HASH maps take a vectorised path (:meth:`HashTab.update_many`) that leaves
        exactly the table the element-by-element updates would leave.
        """
        assert isinstance(bmap, HashTab)
        check_elem_flags(bmap, elem_flags)
        if not count:
            return BatchResult(count_written=False)
        ks, vs = bmap.key_size, self.sys_value_size(bmap)
        have = min(len(keys) // ks if ks else 0, len(values) // vs if vs else 0)
        n = min(count, have)
        cpu = sys_cpu()
        done = 0
        err = 0
        with bmap.lock:
            if bmap.ctl_q[4] != bmap.gen:
                bmap.sync()
            if bmap.fast_update is not None and not elem_flags and bmap.spin_lock_off < 0:
                done, err = bmap.update_many(keys, values, n)
            else:
                for i in range(n):
                    err = self.update(bmap, keys[i * ks:(i + 1) * ks],
                                      values[i * vs:(i + 1) * vs], elem_flags, cpu, True)
                    if err:
                        break
                    done += 1
        if not err and n < count:
            err = errno.EFAULT
        return BatchResult(done, err=err)

    def sys_delete_batch(self, bmap: BpfMap, keys: bytes, count: int, elem_flags: int,
                         flags: int) -> BatchResult:
        """``generic_map_delete_batch`` under one lock; the first missing key stops it."""
        assert isinstance(bmap, HashTab)
        check_elem_flags(bmap, elem_flags)
        if not count:
            return BatchResult(count_written=False)
        ks = bmap.key_size
        n = min(count, len(keys) // ks)
        done = 0
        err = 0
        with bmap.lock:
            if bmap.ctl_q[4] != bmap.gen:
                bmap.sync()
            if bmap.fast_delete is not None:
                done, err = bmap.delete_many(keys, n)
            else:
                index = bmap.index
                for i in range(n):
                    idx = index.pop(keys[i * ks:(i + 1) * ks], None)
                    if idx is None:
                        err = errno.ENOENT
                        break
                    bmap.unlink(idx)
                    bmap.count -= 1
                    bmap.push_free(idx)
                    done += 1
                bmap.bump()
        if not err and n < count:
            err = errno.EFAULT
        return BatchResult(done, err=err)

    def batch(self, bmap: BpfMap, in_batch: bytes | None, count: int, elem_flags: int,
              flags: int, delete: bool) -> BatchResult:
        """``__htab_map_lookup_and_delete_batch``: whole buckets; the token is a bucket index.

        Buckets are taken while they fit in ``count``; a first non-empty bucket larger
        than ``count`` is ENOSPC; running off the last bucket is ENOENT. ``out_batch`` is
        the first bucket not copied.
        """
        assert isinstance(bmap, HashTab)
        check_elem_flags(bmap, elem_flags)
        if flags:
            raise BpfError(errno.EINVAL)
        if not count:
            return BatchResult(count_written=False)
        batch = int.from_bytes(in_batch[:4], "little") if in_batch else 0
        nb = bmap.n_buckets
        if batch >= nb:
            return BatchResult(0, err=errno.ENOENT)
        with bmap.lock:
            bmap.sync()
            words = bmap.words()
            used = np.flatnonzero(words[:, 2] == USED)
            sizes = np.bincount(words[used, 1] & bmap.mask, minlength=nb)[batch:]
            filled = np.cumsum(sizes)
            over = np.flatnonzero(filled > count)
            if over.size:
                end = batch + int(over[0])
                total = int(filled[over[0] - 1]) if over[0] else 0
                err = 0 if total else errno.ENOSPC
            else:
                end = nb
                total = int(filled[-1])
                err = errno.ENOENT
            idx = bmap.buckets_in_order(batch, end)
            keys = bmap.keys_of(idx)
            values = bmap.values_of(idx)
            if delete and idx.size:
                for i in idx.tolist():
                    bmap.remove(i)
                bmap.bump()
        return BatchResult(total, keys, values, end.to_bytes(4, "little"), err)

    # -- program side -------------------------------------------------------------------
    def map_lookup_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        assert isinstance(bmap, HashTab)
        key = bmap.mem.read(key_addr, bmap.key_size)
        with bmap.lock:
            if bmap.ctl_q[4] != bmap.gen:
                bmap.sync()
            idx = bmap.index.get(key)
            if idx is None:
                return 0
            if bmap.lru:
                bmap.e32[idx * bmap.ew + REF_WORD] = 1
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
