"""``BPF_MAP_TYPE_PERCPU_ARRAY`` (``kernel/bpf/arraymap.c``).

Layout::

    header.data -> values: max_entries * nr_cpus * elem_size bytes (elem_size = round_up(value_size, 8))
    value of key i on CPU c = data + (i * nr_cpus + c) * elem_size
    header[48] u32 nr_cpus

Element-major order makes the syscall value of one key (``elem_size`` bytes per possible
CPU, CPU 0 first) a single contiguous slice. Programs see their own CPU's copy.
"""

from __future__ import annotations

import errno

from pybpf.errors import BpfError
from pybpf.maps.arraybase import SIZEOF_BPF_ARRAY
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.ops import register_map_ops
from pybpf.maps.type_array import ArrayMap, ArrayOps
from pybpf.uapi import BPF_EXIST, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_NOEXIST


class PercpuArrayMap(ArrayMap):
    direct_value_addr = None  # type: ignore[assignment]  # per-CPU values have no one address

    def __init__(self, ops: ArrayOps, attr: MapAttr) -> None:
        super().__init__(ops, attr)
        self.header.mv[48:52] = self.nr_cpus.to_bytes(4, "little")

    def copies(self) -> int:
        return self.nr_cpus


class PercpuArrayOps(ArrayOps):
    map_type = BPF_MAP_TYPE_PERCPU_ARRAY
    percpu_values = True

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        return PercpuArrayMap(self, attr)

    def mem_usage(self, bmap: BpfMap) -> int:
        entries = bmap.max_entries
        return SIZEOF_BPF_ARRAY + entries * 8 + entries * bmap.value_stride * bmap.nr_cpus

    def native_layout(self, bmap: BpfMap) -> dict[str, int]:
        layout = super().native_layout(bmap)
        layout["nr_cpus"] = bmap.nr_cpus
        return layout

    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        assert isinstance(bmap, ArrayMap)
        index = int.from_bytes(key[:4], "little")
        if index >= bmap.max_entries:
            raise BpfError(errno.ENOENT)
        block = bmap.value_stride * bmap.nr_cpus
        return bmap.vmv[index * block:(index + 1) * block].tobytes()

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        assert isinstance(bmap, ArrayMap)
        if flags > BPF_EXIST:
            raise BpfError(errno.EINVAL)
        index = int.from_bytes(key[:4], "little")
        if index >= bmap.max_entries:
            raise BpfError(errno.E2BIG)
        if flags == BPF_NOEXIST:
            raise BpfError(errno.EEXIST)
        block = bmap.value_stride * bmap.nr_cpus
        with bmap.lock:
            bmap.vmv[index * block:(index + 1) * block] = value[:block]

    def slice_values(self, bmap: ArrayMap, start: int, end: int) -> bytes:
        block = bmap.value_stride * bmap.nr_cpus
        return bmap.vmv[start * block:end * block].tobytes()

    def map_lookup_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        assert isinstance(bmap, ArrayMap)
        index = bmap.mem.load(key_addr, 4)
        if index >= bmap.max_entries:
            return 0
        return bmap.base + (index * bmap.nr_cpus + cpu) * bmap.value_stride

    def map_lookup_percpu_elem(self, bmap: BpfMap, key_addr: int, cpu: int) -> int:
        if cpu >= bmap.nr_cpus:
            return 0
        return self.map_lookup_elem(bmap, key_addr, cpu)

    def map_update_elem(self, bmap: BpfMap, key_addr: int, value_addr: int, flags: int,
                        cpu: int = 0) -> int:
        assert isinstance(bmap, ArrayMap)
        if flags > BPF_EXIST:
            return -errno.EINVAL
        index = bmap.mem.load(key_addr, 4)
        if index >= bmap.max_entries:
            return -errno.E2BIG
        if flags == BPF_NOEXIST:
            return -errno.EEXIST
        data = bmap.mem.read(value_addr, bmap.value_size)
        off = (index * bmap.nr_cpus + cpu) * bmap.value_stride
        with bmap.lock:
            bmap.vmv[off:off + bmap.value_size] = data
        return 0

    def value_addr(self, bmap: ArrayMap, index: int, cpu: int) -> int:
        return bmap.base + (index * bmap.nr_cpus + cpu) * bmap.value_stride


register_map_ops(PercpuArrayOps())
