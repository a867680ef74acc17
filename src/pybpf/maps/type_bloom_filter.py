"""``BPF_MAP_TYPE_BLOOM_FILTER`` (``kernel/bpf/bloom_filter.c``).

Keyless: "update" pushes a value, "lookup" peeks (0 = maybe present, ENOENT = absent).
``map_extra & 0xF`` is the number of hash functions (default 5). The bit array has
``roundup_pow_of_two(max_entries * nr_hashes * 7 / 5)`` bits (at least 64); hash ``i``
of a value is ``jhash2``/``jhash`` seeded with ``hash_seed + i`` (0 with
``BPF_F_ZERO_SEED``), so a zero-seeded filter answers exactly like Linux's, false
positives included.

Layout: ``header.data`` -> bitset (u64 words, bit ``h`` = word ``h / 64``, bit ``h % 64``);
``header[48]`` u32 bitset_mask, ``[52]`` u32 hash_seed, ``[56]`` u32 nr_hash_funcs.
"""

from __future__ import annotations

import errno
import os

from pybpf.errors import BpfError
from pybpf.maps.base import BaseMapOps
from pybpf.maps.common import (
    BPF_F_ACCESS_MASK,
    KMALLOC_MAX_SIZE,
    U32_MAX,
    bpf_map_flags_access_ok,
    roundup_pow_of_two,
)
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.jhash import jhash, jhash2
from pybpf.maps.ops import register_map_ops
from pybpf.maps.storage import alloc_region
from pybpf.uapi import BPF_ANY, BPF_F_NUMA_NODE, BPF_F_ZERO_SEED, BPF_MAP_TYPE_BLOOM_FILTER

BLOOM_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_ZERO_SEED | BPF_F_ACCESS_MASK
SIZEOF_BPF_BLOOM_FILTER = 312


class BloomFilterMap(BpfMap):
    def __init__(self, ops: BaseMapOps, attr: MapAttr) -> None:
        super().__init__(ops, attr)
        self.nr_hash_funcs = attr.map_extra or 5
        nr_bits = attr.max_entries * self.nr_hash_funcs
        if nr_bits > U32_MAX or (nr_bits // 5) * 7 > U32_MAX or (nr_bits // 5) * 7 > 1 << 31:
            self.bitset_mask = U32_MAX
        else:
            nr_bits = (nr_bits // 5) * 7
            nr_bits = 64 if nr_bits <= 64 else roundup_pow_of_two(nr_bits)
            self.bitset_mask = nr_bits - 1
        nbytes = ((self.bitset_mask + 1 + 63) // 64) * 8
        self.bits = alloc_region(self, nbytes, "bitset")
        self.hash_seed = 0 if attr.map_flags & BPF_F_ZERO_SEED else \
            int.from_bytes(os.urandom(4), "little")
        self.write_header(data=self.bits.start)
        mv = self.header.mv
        mv[48:52] = self.bitset_mask.to_bytes(4, "little")
        mv[52:56] = self.hash_seed.to_bytes(4, "little")
        mv[56:60] = self.nr_hash_funcs.to_bytes(4, "little")

    def positions(self, value: bytes) -> list[int]:
        fn = jhash2 if self.value_size % 4 == 0 else jhash
        seed = self.hash_seed
        return [(fn(value, (seed + i) & U32_MAX)) & self.bitset_mask
                for i in range(self.nr_hash_funcs)]


class BloomFilterOps(BaseMapOps):
    map_type = BPF_MAP_TYPE_BLOOM_FILTER
    lookup_reads_value = True
    push_via_update = True
    lookup_is_peek = True

    def map_alloc_check(self, attr: MapAttr) -> None:
        if attr.value_size > KMALLOC_MAX_SIZE:
            raise BpfError(errno.E2BIG)
        if (attr.key_size != 0 or attr.value_size == 0 or attr.max_entries == 0
                or attr.map_flags & ~BLOOM_CREATE_FLAG_MASK
                or not bpf_map_flags_access_ok(attr.map_flags) or attr.map_extra & ~0xF):
            raise BpfError(errno.EINVAL)

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        return BloomFilterMap(self, attr)

    def mem_usage(self, bmap: BpfMap) -> int:
        assert isinstance(bmap, BloomFilterMap)
        nbytes = (bmap.bitset_mask + 1 + 7) // 8
        return SIZEOF_BPF_BLOOM_FILTER + (nbytes + 7) // 8 * 8

    def native_layout(self, bmap: BpfMap) -> dict[str, int]:
        assert isinstance(bmap, BloomFilterMap)
        return {"header": bmap.addr, "bitset": bmap.bits.start}

    def push(self, bmap: BpfMap, value: bytes, flags: int) -> int:
        assert isinstance(bmap, BloomFilterMap)
        if flags != BPF_ANY:
            return errno.EINVAL
        mv = bmap.bits.mv
        with bmap.lock:
            for h in bmap.positions(value[:bmap.value_size]):
                mv[h >> 3] |= 1 << (h & 7)
        return 0

    def peek(self, bmap: BpfMap, value: bytes) -> int:
        assert isinstance(bmap, BloomFilterMap)
        mv = bmap.bits.mv
        for h in bmap.positions(value[:bmap.value_size]):
            if not mv[h >> 3] & (1 << (h & 7)):
                return errno.ENOENT
        return 0

    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        err = self.peek(bmap, value or bytes(bmap.value_size))
        if err:
            raise BpfError(err)
        return value or b""

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        err = self.push(bmap, value, flags)
        if err:
            raise BpfError(err)

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        raise BpfError(errno.EOPNOTSUPP)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        raise BpfError(errno.EOPNOTSUPP)

    def map_update_elem(self, bmap: BpfMap, key_addr: int, value_addr: int, flags: int,
                        cpu: int = 0) -> int:
        return -errno.EINVAL

    def map_delete_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        return -errno.EOPNOTSUPP

    def map_push_elem(self, bmap: BpfMap, value_addr: int, flags: int) -> int:
        return -self.push(bmap, bmap.mem.read(value_addr, bmap.value_size), flags)

    def map_peek_elem(self, bmap: BpfMap, value_addr: int) -> int:
        return -self.peek(bmap, bmap.mem.read(value_addr, bmap.value_size))

    def map_pop_elem(self, bmap: BpfMap, value_addr: int) -> int:
        return -errno.EOPNOTSUPP


register_map_ops(BloomFilterOps())
