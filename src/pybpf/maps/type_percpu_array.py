"""``BPF_MAP_TYPE_PERCPU_ARRAY`` (``kernel/bpf/arraymap.c``).

Layout, as the kernel's per-CPU allocator gives it (so the verifier can inline lookups as
``percpu_array_map_gen_lookup`` does and run the very program the kernel runs)::

    map + 312 (offsetof(struct bpf_array, pptrs)) -> pptrs: max_entries u64, read-only
    pptrs[i]                  = CPU 0's copy of value i = data + i * elem_size
    value of key i on CPU c   = pptrs[i] + this_cpu_off(c)
                              = data + c * PCPU_UNIT_STRIDE + i * elem_size

``this_cpu_off`` / ``PCPU_UNIT_STRIDE`` (:mod:`pybpf.runtime.cpus`) are pybpf's
per-CPU offsets: one stride for every per-CPU object, which is what lets the per-CPU mov
(``BPF_MOV64_PERCPU_REG``) find a CPU's copy without knowing the map. Each CPU's block of
``max_entries * elem_size`` bytes is its own registered region inside one anonymous
``MAP_NORESERVE`` reservation (the gaps cost address space, not memory, and are not
registered: an access there faults). ``elem_size = round_up(value_size, 8)``. Header
byte 48 holds ``nr_cpus`` for the JIT's native map code (``jit/mapgen.py``), which
computes the same addresses.

The syscall value of one key is ``elem_size`` bytes per possible CPU, CPU 0 first (gathered
from the CPUs' blocks).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import platform
import sys

import numpy as np

from pybpf.errors import BpfError
from pybpf.maps.arraybase import SIZEOF_BPF_ARRAY
from pybpf.maps.batch import BatchResult, generic_update_batch
from pybpf.maps.common import check_mem
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.ops import register_map_ops
from pybpf.maps.storage import alloc_region, colocate_after_header, map_regions
from pybpf.maps.type_array import ArrayMap, ArrayOps
from pybpf.runtime.cpus import PCPU_UNIT_STRIDE, this_cpu_off
from pybpf.runtime.memory import Region
from pybpf.uapi import BPF_EXIST, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_NOEXIST

#: ``offsetof(struct bpf_array, pptrs)`` on x86-64 Linux 6.18
ARRAY_PPTRS_OFF = 312
#: ``MAP_NORESERVE`` (Python's mmap module does not export it before 3.13): the value of
#: the generic Linux ABI (x86-64, arm64, riscv, s390), none where it differs or is unknown
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform == "linux" and
                         platform.machine() in ("x86_64", "aarch64", "riscv64", "s390x")
                         else 0)


class PercpuArrayMap(ArrayMap):
    """A per-CPU array: one block of values per possible CPU, a ``pptrs`` table."""

    direct_value_addr = None  # type: ignore[assignment]  # per-CPU values have no one address

    def __init__(self, ops: ArrayOps, attr: MapAttr) -> None:
        BpfMap.__init__(self, ops, attr)
        stride = self.value_stride
        block = max(self.max_entries * stride, 1)
        check_mem(block * self.nr_cpus)
        self.values_follow_header = False
        self.pptrs = self._colocate_pptrs(self.max_entries * 8)
        self.cpu_values = self._alloc_percpu(block)
        self.values = self.cpu_values[0]
        self.base = self.values.start
        table = np.frombuffer(self.pptrs.mv, "<u8")
        table[:] = self.base + np.arange(self.max_entries, dtype=np.uint64) * stride
        self.key_scratch = alloc_region(self, 8, "key scratch")
        self.write_header(elem_size=stride, data=self.base)
        self.header.mv[48:52] = self.nr_cpus.to_bytes(4, "little")

    def _colocate_pptrs(self, size: int) -> Region:
        """Header and the read-only ``pptrs`` table in one allocation, as ``bpf_array``."""
        return colocate_after_header(self, ARRAY_PPTRS_OFF, size, "pptrs")

    def _alloc_percpu(self, block: int) -> list[Region]:
        """One region per CPU, ``PCPU_UNIT_STRIDE`` apart, in one lazy reservation."""
        if block > PCPU_UNIT_STRIDE:
            raise BpfError(errno.ENOMEM, f"per-CPU block of {block} bytes")
        total = this_cpu_off(self.nr_cpus - 1) + block
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
        try:
            buf = mmap.mmap(-1, total, flags=flags)
        except OSError as e:
            raise BpfError(errno.ENOMEM, f"per-CPU reservation failed: {e}") from None
        cbuf = (ctypes.c_char * total).from_buffer(buf)
        origin = ctypes.addressof(cbuf)
        raw = memoryview(cbuf).cast("B")
        regions = []
        for cpu in range(self.nr_cpus):
            off = this_cpu_off(cpu)
            region = Region(origin + off, block, f"map {self.name!r} values cpu{cpu}",
                            raw[off:off + block], True, True, (buf, cbuf), self)
            self.mem.add(region)
            map_regions(self).append(region)
            regions.append(region)
        return regions

    def copies(self) -> int:
        return self.nr_cpus

    def percpu_table(self) -> np.ndarray:
        """All values as ``(max_entries, nr_cpus, elem_size)`` bytes (a copy)."""
        stride = self.value_stride
        n = self.max_entries
        per_cpu = [np.frombuffer(r.mv, np.uint8, n * stride).reshape(n, stride)
                   for r in self.cpu_values]
        return np.stack(per_cpu, axis=1)

    @property
    def vmv(self) -> memoryview:  # type: ignore[override]
        """Element-major bytes (key 0 CPU 0, key 0 CPU 1, …): a read-only snapshot."""
        return memoryview(self.percpu_table().tobytes())

    def cpu_view(self, cpu: int) -> memoryview:
        return self.cpu_values[cpu].mv


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
        layout["pptrs"] = bmap.addr + ARRAY_PPTRS_OFF
        layout["pcpu_stride"] = PCPU_UNIT_STRIDE
        return layout

    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        assert isinstance(bmap, PercpuArrayMap)
        index = int.from_bytes(key[:4], "little")
        if index >= bmap.max_entries:
            raise BpfError(errno.ENOENT)
        stride = bmap.value_stride
        off = index * stride
        return b"".join(r.mv[off:off + stride] for r in bmap.cpu_values)

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        assert isinstance(bmap, PercpuArrayMap)
        if flags > BPF_EXIST:
            raise BpfError(errno.EINVAL)
        index = int.from_bytes(key[:4], "little")
        if index >= bmap.max_entries:
            raise BpfError(errno.E2BIG)
        if flags == BPF_NOEXIST:
            raise BpfError(errno.EEXIST)
        stride = bmap.value_stride
        off = index * stride
        with bmap.lock:
            for cpu, region in enumerate(bmap.cpu_values):
                region.mv[off:off + stride] = value[cpu * stride:(cpu + 1) * stride]

    def slice_values(self, bmap: ArrayMap, start: int, end: int) -> bytes:
        assert isinstance(bmap, PercpuArrayMap)
        return bmap.percpu_table()[start:end].tobytes()

    def sys_update_batch(self, bmap: BpfMap, keys: bytes, values: bytes, count: int,
                         elem_flags: int, flags: int) -> BatchResult:
        return generic_update_batch(self, bmap, keys, values, count, elem_flags, flags)

    def map_lookup_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        assert isinstance(bmap, ArrayMap)
        index = bmap.mem.load(key_addr, 4)
        if index >= bmap.max_entries:
            return 0
        return self.value_addr(bmap, index, cpu)

    def map_lookup_percpu_elem(self, bmap: BpfMap, key_addr: int, cpu: int) -> int:
        if cpu >= bmap.nr_cpus:
            return 0
        return self.map_lookup_elem(bmap, key_addr, cpu)

    def map_update_elem(self, bmap: BpfMap, key_addr: int, value_addr: int, flags: int,
                        cpu: int = 0) -> int:
        assert isinstance(bmap, PercpuArrayMap)
        if flags > BPF_EXIST:
            return -errno.EINVAL
        index = bmap.mem.load(key_addr, 4)
        if index >= bmap.max_entries:
            return -errno.E2BIG
        if flags == BPF_NOEXIST:
            return -errno.EEXIST
        data = bmap.mem.read(value_addr, bmap.value_size)
        off = index * bmap.value_stride
        with bmap.lock:
            bmap.cpu_values[cpu].mv[off:off + bmap.value_size] = data
        return 0

    def value_addr(self, bmap: ArrayMap, index: int, cpu: int) -> int:
        return bmap.base + this_cpu_off(cpu) + index * bmap.value_stride


register_map_ops(PercpuArrayOps())
