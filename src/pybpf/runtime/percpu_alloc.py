"""Dynamic per-CPU memory: pybpf's ``__alloc_percpu`` for objects made at run time.

pybpf's per-CPU model (:mod:`pybpf.runtime.cpus`) puts CPU ``c``'s copy of every per-CPU
object ``this_cpu_off(c)`` bytes after CPU 0's. A :class:`PercpuArea` reserves, lazily and
without committing memory, one span that holds every CPU's unit, and carves objects out of
it: each object is one address (CPU 0's copy) and one registered region per possible CPU,
so a program reaching another CPU's copy through ``bpf_per_cpu_ptr`` reads real, checked
memory. Freed chunks are reused by size; a reused chunk is zeroed again, as the kernel's
``bpf_mem_alloc`` hands out zeroed per-CPU objects here.
"""

from __future__ import annotations

import ctypes
import mmap
import threading
from dataclasses import dataclass

from pybpf.runtime.cpus import num_possible_cpus, this_cpu_off
from pybpf.runtime.memory import REGISTRY, Region

_MAP_NORESERVE = 0x4000
CHUNK_ALIGN = 16


@dataclass(eq=False)
class _Chunk:
    offset: int
    size: int
    regions: list[Region]


class PercpuArea:
    """Up to ``unit_size`` bytes of objects, each with a copy per possible CPU."""

    def __init__(self, unit_size: int, label: str) -> None:
        self.unit_size, self.label = unit_size, label
        self._lock = threading.Lock()
        self._span: tuple[mmap.mmap, ctypes.Array[ctypes.c_char], int] | None = None
        self._used = 0
        self._free: dict[int, list[int]] = {}  # chunk size -> offsets to reuse
        self._live: dict[int, _Chunk] = {}  # CPU 0 address -> chunk

    def _reserve(self) -> tuple[mmap.mmap, ctypes.Array[ctypes.c_char], int]:
        if self._span is None:
            total = this_cpu_off(num_possible_cpus() - 1) + self.unit_size
            buf = mmap.mmap(-1, total, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
            cbuf = (ctypes.c_char * total).from_buffer(buf)
            self._span = (buf, cbuf, ctypes.addressof(cbuf))
        return self._span

    def alloc(self, size: int, name: str, writable: bool = True, owner: object = None) -> int:
        """CPU 0's address of a new zeroed object of ``size`` bytes, or 0 when the area is
        full (callers answer as the kernel's allocator does when it fails: NULL)."""
        size = max(size, 1)
        chunk = (size + CHUNK_ALIGN - 1) & ~(CHUNK_ALIGN - 1)
        with self._lock:
            buf, cbuf, base = self._reserve()
            reuse = self._free.get(chunk)
            if reuse:
                off = reuse.pop()
            elif self._used + chunk <= self.unit_size:
                off, self._used = self._used, self._used + chunk
            else:
                return 0
            raw = memoryview(cbuf).cast("B")
            regions = []
            for cpu in range(num_possible_cpus()):
                start = this_cpu_off(cpu) + off
                raw[start:start + chunk] = bytes(chunk)
                region = Region(base + start, size, f"{name} cpu{cpu}", raw[start:start + size],
                                True, writable, (buf, cbuf), owner)
                REGISTRY.add(region)
                regions.append(region)
            self._live[base + off] = _Chunk(off, chunk, regions)
            return base + off

    def free(self, addr: int) -> bool:
        """Give the object at ``addr`` back; False when it is not one of this area's."""
        with self._lock:
            chunk = self._live.pop(addr, None)
            if chunk is None:
                return False
            for region in chunk.regions:
                REGISTRY.remove(region)
            self._free.setdefault(chunk.size, []).append(chunk.offset)
            return True

    def live(self) -> int:
        """How many objects are allocated."""
        return len(self._live)


__all__ = ["PercpuArea"]
