"""``BPF_MAP_TYPE_CGROUP_STORAGE`` and ``PERCPU_CGROUP_STORAGE`` (``kernel/bpf/local_storage.c``).

The map holds one value per (cgroup, attach type) that a program using it is attached
to; the storage is created by the attach and freed by the detach, never by map commands.
pybpf attaches no programs to cgroups, so a map is always empty, and the syscall side
answers as Linux does for an empty map: lookups and ``BPF_F_EXIST``/``BPF_ANY`` updates
``ENOENT``, ``BPF_NOEXIST`` and unknown flags ``EINVAL`` (an element can only be made by
an attach), deletes ``EINVAL`` (``cgroup_storage_delete_elem``), ``get_next_key``
``ENOENT``, lookup-and-delete and the batch commands ``ENOTSUPP`` (no such ops).

Keys are ``struct bpf_cgroup_storage_key`` (``u64 cgroup_inode_id; u32 attach_type``,
16 bytes) or a bare ``u64`` cgroup id; ``max_entries`` must be 0.
"""

from __future__ import annotations

import errno

from pybpf.errors import BpfError
from pybpf.maps.base import BaseMapOps
from pybpf.maps.common import BPF_F_ACCESS_MASK, PCPU_MIN_UNIT_SIZE, bpf_map_flags_access_ok
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.ops import register_map_ops
from pybpf.uapi import (
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_F_NUMA_NODE,
    BPF_MAP_TYPE_CGROUP_STORAGE,
    BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
    BPF_NOEXIST,
)

LOCAL_STORAGE_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
SIZEOF_BPF_CGROUP_STORAGE_KEY = 16
#: ``BPF_LOCAL_STORAGE_MAX_VALUE_SIZE``: ``U16_MAX`` less the element header (6.18, measured)
BPF_LOCAL_STORAGE_MAX_VALUE_SIZE = 65407
SIZEOF_BPF_CGROUP_STORAGE_MAP = 328  # cgroup_storage_map_usage (fdinfo memlock, 6.18)


class CgroupStorageOps(BaseMapOps):
    map_type = BPF_MAP_TYPE_CGROUP_STORAGE

    def max_value_size(self) -> int:
        return BPF_LOCAL_STORAGE_MAX_VALUE_SIZE

    def map_alloc_check(self, attr: MapAttr) -> None:
        """``cgroup_storage_map_alloc``'s checks, in its order: key size, empty value,
        oversized value (``E2BIG``), flags, then ``max_entries`` (must be 0)."""
        if attr.key_size not in (SIZEOF_BPF_CGROUP_STORAGE_KEY, 8) or attr.value_size == 0:
            raise BpfError(errno.EINVAL)
        if attr.value_size > self.max_value_size():
            raise BpfError(errno.E2BIG)
        if attr.map_flags & ~LOCAL_STORAGE_CREATE_FLAG_MASK or \
                not bpf_map_flags_access_ok(attr.map_flags):
            raise BpfError(errno.EINVAL)
        if attr.max_entries:
            raise BpfError(errno.EINVAL)

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        return BpfMap(self, attr)

    def mem_usage(self, bmap: BpfMap) -> int:
        return SIZEOF_BPF_CGROUP_STORAGE_MAP

    # -- syscall side: the map has no storage until a program is attached ----------------
    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        raise BpfError(errno.ENOENT)

    def check_update_flags(self, flags: int) -> None:
        """``cgroup_storage_update_elem``: at most ``BPF_EXIST`` beside ``BPF_F_LOCK``, and
        never ``BPF_NOEXIST`` (storage is only created by an attach)."""
        if (flags & ~BPF_F_LOCK) > BPF_EXIST or flags & BPF_NOEXIST:
            raise BpfError(errno.EINVAL)

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        self.check_update_flags(flags)
        raise BpfError(errno.ENOENT)

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        raise BpfError(errno.EINVAL)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        raise BpfError(errno.ENOENT)


class PercpuCgroupStorageOps(CgroupStorageOps):
    map_type = BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE
    percpu_values = True

    def max_value_size(self) -> int:
        return min(BPF_LOCAL_STORAGE_MAX_VALUE_SIZE, PCPU_MIN_UNIT_SIZE)

    def check_update_flags(self, flags: int) -> None:
        """``bpf_percpu_cgroup_storage_update``: ``BPF_ANY`` or ``BPF_EXIST`` only."""
        if flags not in (0, BPF_EXIST):
            raise BpfError(errno.EINVAL)


register_map_ops(CgroupStorageOps())
register_map_ops(PercpuCgroupStorageOps())
