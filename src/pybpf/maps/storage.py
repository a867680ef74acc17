"""Native storage for maps: regions owned by a map, page-aligned mmap-able areas.

Every byte a program can reach through a map lives in a :class:`~pybpf.runtime.memory.Region`
registered with the map's memory registry, so the checked interpreter validates accesses
and the JIT can address it directly. The regions a map owns are listed in
``bmap.regions`` and released by ``map_free``.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import weakref
from typing import TYPE_CHECKING

from pybpf.maps.common import PAGE_SIZE, check_mem, round_up
from pybpf.runtime.memory import Region

if TYPE_CHECKING:
    from pybpf.maps.core import BpfMap


def map_regions(bmap: BpfMap) -> list[Region]:
    regions: list[Region] | None = getattr(bmap, "regions", None)
    if regions is None:
        regions = []
        bmap.regions = regions  # type: ignore[attr-defined]
    return regions


def alloc_region(bmap: BpfMap, size: int, what: str, *, writable: bool = True) -> Region:
    """Zeroed native memory owned by ``bmap`` (8-byte aligned, registered)."""
    check_mem(size)
    region = bmap.mem.alloc(max(size, 1), f"map {bmap.name!r} {what}", writable=writable,
                            owner=bmap)
    map_regions(bmap).append(region)
    return region


def alloc_pages(bmap: BpfMap, size: int, what: str) -> Region:
    """Zeroed, page-aligned, mmap-backed memory (``BPF_F_MMAPABLE`` arrays).

    The pages are a memfd mapped shared, so user space can map the very same pages again
    (:class:`pybpf.maps.mmap_view.MapMmap`) and see program writes, as an ``mmap`` of a
    kernel map fd does. The memfd is kept as ``bmap.mmap_fd`` and closed by ``map_free``.
    """
    size = round_up(max(size, 1), PAGE_SIZE)
    check_mem(size)
    fd = os.memfd_create(f"pybpf-map-{what}", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    buf = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
    bmap.mmap_fd = fd  # type: ignore[attr-defined]
    bmap.mmap_size = size  # type: ignore[attr-defined]
    bmap.mmap_fd_close = weakref.finalize(bmap, os.close, fd)  # type: ignore[attr-defined]
    cbuf = (ctypes.c_char * size).from_buffer(buf)
    start = ctypes.addressof(cbuf)
    region = Region(start, size, f"map {bmap.name!r} {what}", memoryview(cbuf).cast("B"),
                    True, True, (buf, cbuf), bmap)
    bmap.mem.add(region)
    map_regions(bmap).append(region)
    return region


_GUARD = 16  # unregistered bytes around a colocated allocation, as the registry keeps


def colocate_after_header(bmap: BpfMap, off: int, size: int, what: str, *,
                          writable: bool = False) -> Region:
    """Move ``bmap``'s header into one allocation with a table ``off`` bytes after it.

    The kernel's inlined lookups (``map_gen_lookup``) address a map's table from the map
    pointer itself (``r1 += offsetof(struct bpf_array, value)`` …); a pybpf map that keeps
    its table where the kernel's struct does runs the very instructions the kernel's
    xlated program holds. Header and table are two registered regions of one ctypes
    buffer; the bytes between them stay unregistered (an access there faults). The
    table is read-only for programs unless ``writable``; Python writes it through ``mv``.
    """
    from pybpf.maps.core import _BY_ADDR, MAP_HEADER_SIZE

    check_mem(size)
    size = max(size, 1)
    total = _GUARD + off + size + _GUARD
    buf = (ctypes.c_uint64 * ((total + 7) // 8))()
    start = ctypes.addressof(buf) + _GUARD
    raw = memoryview(buf).cast("B")
    old = bytes(bmap.header.mv)
    header = Region(start, MAP_HEADER_SIZE, bmap.header.name,
                    raw[_GUARD:_GUARD + MAP_HEADER_SIZE], True, False, buf, bmap)
    header.mv[:len(old)] = old
    table = Region(start + off, size, f"map {bmap.name!r} {what}",
                   raw[_GUARD + off:_GUARD + off + size], True, writable, buf, bmap)
    bmap.release_header()
    bmap.header = bmap.mem.add(header)
    _BY_ADDR[header.start] = bmap
    bmap.mem.add(table)
    map_regions(bmap).append(table)
    return table
