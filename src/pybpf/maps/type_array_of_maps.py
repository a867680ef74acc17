"""``BPF_MAP_TYPE_ARRAY_OF_MAPS`` (``arraymap.c`` + ``map_in_map.c``).

``inner_map_fd`` names a template map; stored maps must match it (type, key/value size,
flags, and max_entries unless the template has ``BPF_F_INNER_MAP``), else EINVAL.
A syscall lookup returns the inner map's id; a program lookup returns the inner map's
address (its header), i.e. the ``struct bpf_map *`` to pass on to other map helpers.
"""

from __future__ import annotations

import struct
from typing import Any

from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.fdarray import FdArrayBatchOps, FdArrayMap
from pybpf.maps.fdmaps import check_inner_map, get_inner_map
from pybpf.maps.ops import register_map_ops
from pybpf.uapi import BPF_MAP_TYPE_ARRAY_OF_MAPS


class ArrayOfMapsOps(FdArrayBatchOps):
    map_type = BPF_MAP_TYPE_ARRAY_OF_MAPS
    fd_kind = "map"
    has_sys_lookup = True

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        check_inner_map(attr)
        return FdArrayMap(self, attr)

    def check_object(self, bmap: FdArrayMap, obj: Any) -> Any:
        return get_inner_map(bmap, obj)

    def map_lookup_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        assert isinstance(bmap, FdArrayMap)
        index = bmap.mem.load(key_addr, 4)
        if index >= bmap.max_entries:
            return 0
        return int(struct.unpack_from("<Q", bmap.slots.mv, 8 * index)[0])


register_map_ops(ArrayOfMapsOps())
