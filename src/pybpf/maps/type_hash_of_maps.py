"""``BPF_MAP_TYPE_HASH_OF_MAPS`` (``hashtab.c`` + ``map_in_map.c``).

A hash table (:mod:`pybpf.maps.htab`) whose 8-byte value slot holds the inner map's
address; ``value_size`` must be 4 (an fd from ``bpf()``, an id back). Program lookups
return the inner map's address. Inner maps must match the ``inner_map_fd`` template.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from pybpf.errors import BpfError
from pybpf.maps.core import BpfMap, MapAttr, map_from_addr
from pybpf.maps.fdmaps import check_inner_map, get_inner_map, object_id, resolve_fd
from pybpf.maps.htab import HashTab, HtabOps, htab_map_alloc_check
from pybpf.maps.ops import register_map_ops
from pybpf.uapi import BPF_MAP_TYPE_HASH_OF_MAPS

_Q = struct.Struct("<Q")


class HashOfMapsTab(HashTab):
    def write_value(self, idx: int, value: bytes, cpu: int, all_cpus: bool,
                    zero_others: bool) -> None:
        off = self.value_offset(idx)
        self.emv[off:off + 8] = value[:8]

    def read_value(self, idx: int) -> bytes:
        addr = _Q.unpack_from(self.emv, self.value_offset(idx))[0]
        inner = map_from_addr(addr)
        return object_id(inner).to_bytes(4, "little")


class HashOfMapsOps(HtabOps):
    map_type = BPF_MAP_TYPE_HASH_OF_MAPS
    fd_values = True
    in_place = True  # htab_map_update_elem_in_place: the chain order is kept

    def map_alloc_check(self, attr: MapAttr) -> None:
        if attr.value_size != 4:
            raise BpfError(errno.EINVAL)
        htab_map_alloc_check(attr)

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        check_inner_map(attr)
        return HashOfMapsTab(self, attr)

    def put_object(self, bmap: BpfMap, key: bytes, obj: Any, flags: int) -> None:
        assert isinstance(bmap, HashTab)
        inner = get_inner_map(bmap, obj)
        err = self.update(bmap, key, _Q.pack(inner.addr), flags, 0, True)
        if err:
            raise BpfError(err)

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        fd = int.from_bytes(value[:4], "little", signed=True)
        self.put_object(bmap, key, resolve_fd(bmap, fd, "map"), flags)

    def map_lookup_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        addr = super().map_lookup_elem(bmap, key_addr, cpu)
        return int(_Q.unpack_from(bmap.mem.read(addr, 8))[0]) if addr else 0

    def map_update_elem(self, bmap: BpfMap, key_addr: int, value_addr: int, flags: int,
                        cpu: int = 0) -> int:
        return -errno.EOPNOTSUPP


register_map_ops(HashOfMapsOps())
