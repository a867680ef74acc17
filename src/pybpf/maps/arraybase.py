"""What ``kernel/bpf/arraymap.c`` shares between its array flavours.

``array_map_alloc_check`` and ``array_map_get_next_key`` serve ARRAY, PERCPU_ARRAY and the
fd arrays (PROG_ARRAY, PERF_EVENT_ARRAY, CGROUP_ARRAY, ARRAY_OF_MAPS) alike. Keys are
``u32`` indices; every element exists from creation on.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from pybpf.errors import BpfError
from pybpf.maps.common import (
    BPF_F_ACCESS_MASK,
    INT_MAX,
    PCPU_MIN_UNIT_SIZE,
    bpf_map_flags_access_ok,
    round_up,
)
from pybpf.uapi import (
    BPF_F_INNER_MAP,
    BPF_F_MMAPABLE,
    BPF_F_NUMA_NODE,
    BPF_F_PRESERVE_ELEMS,
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_PERCPU_ARRAY,
    BPF_MAP_TYPE_PERF_EVENT_ARRAY,
)

if TYPE_CHECKING:
    from pybpf.maps.core import BpfMap, MapAttr

ARRAY_CREATE_FLAG_MASK = (BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_ACCESS_MASK
                          | BPF_F_PRESERVE_ELEMS | BPF_F_INNER_MAP)
SIZEOF_BPF_ARRAY = 312  # sizeof(struct bpf_array) in 6.18 (mem_usage)
U32 = struct.Struct("<I")


def array_map_alloc_check(attr: MapAttr) -> None:
    percpu = attr.map_type == BPF_MAP_TYPE_PERCPU_ARRAY
    numa = attr.map_flags & BPF_F_NUMA_NODE
    if (attr.max_entries == 0 or attr.key_size != 4 or attr.value_size == 0
            or attr.map_flags & ~ARRAY_CREATE_FLAG_MASK
            or not bpf_map_flags_access_ok(attr.map_flags) or (percpu and numa)):
        raise BpfError(errno.EINVAL)
    if attr.map_type != BPF_MAP_TYPE_ARRAY and attr.map_flags & (BPF_F_MMAPABLE | BPF_F_INNER_MAP):
        raise BpfError(errno.EINVAL)
    if attr.map_type != BPF_MAP_TYPE_PERF_EVENT_ARRAY and attr.map_flags & BPF_F_PRESERVE_ELEMS:
        raise BpfError(errno.EINVAL)
    if attr.value_size > INT_MAX:
        raise BpfError(errno.E2BIG)
    if percpu and round_up(attr.value_size, 8) > PCPU_MIN_UNIT_SIZE:
        raise BpfError(errno.E2BIG)


def array_get_next_key(bmap: BpfMap, key: bytes | None) -> bytes:
    """Index after ``key``; an absent or out-of-range key restarts at 0; ENOENT after the last."""
    index = U32.unpack_from(key)[0] if key is not None and len(key) >= 4 else 0xFFFFFFFF
    if index >= bmap.max_entries:
        return b"\0\0\0\0"
    if index == bmap.max_entries - 1:
        raise BpfError(errno.ENOENT)
    return U32.pack(index + 1)


def index_of(key: bytes) -> int:
    return U32.unpack_from(key)[0]
