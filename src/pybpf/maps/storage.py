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
import sys
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


def alloc_pages(bmap: BpfMap, size: int, what: str, *, header_off: int = 0) -> Region:
    """Zeroed, page-aligned, mmap-backed memory (``BPF_F_MMAPABLE`` arrays).

    The pages are a memfd mapped shared, so user space can map the very same pages again
    (:class:`pybpf.maps.mmap_view.MapMmap`) and see program writes, as an ``mmap`` of a
    kernel map fd does. The memfd is kept as ``bmap.mmap_fd`` and closed by ``map_free``.

    With ``header_off`` the map's header moves to ``header_off`` bytes before the pages,
    into a private anonymous page mapped right below them, which is where the kernel's
    mmap-able ``struct bpf_array`` keeps its header: ``value`` is page-aligned and the
    struct ends on the page before (``array_map_alloc``). Inlined lookups
    (``array_map_gen_lookup``: ``r1 += 312``) then reach the values from the map pointer.
    """
    size = round_up(max(size, 1), PAGE_SIZE)
    check_mem(size)
    fd = os.memfd_create(f"pybpf-map-{what}", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    bmap.mmap_fd = fd  # type: ignore[attr-defined]
    bmap.mmap_size = size  # type: ignore[attr-defined]
    bmap.mmap_fd_close = weakref.finalize(bmap, os.close, fd)  # type: ignore[attr-defined]
    start, keep = _map_below_header(fd, size) if header_off else (0, None)
    below = bool(start)
    if below:
        cbuf = (ctypes.c_char * size).from_address(start)
    else:
        buf = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        cbuf = (ctypes.c_char * size).from_buffer(buf)
        start = ctypes.addressof(cbuf)
        keep = buf
    region = Region(start, size, f"map {bmap.name!r} {what}", memoryview(cbuf).cast("B"),
                    True, True, (keep, cbuf), bmap)
    if below:
        _move_header(bmap, start - header_off, keep)
    bmap.mem.add(region)
    map_regions(bmap).append(region)
    return region


def _map_below_header(fd: int, size: int) -> tuple[int, mmap.mmap | None]:
    """Reserve a page plus ``size`` anonymous bytes, map the memfd over all but the first
    page (``MAP_FIXED``): the pages' address and the anonymous mapping, which owns the
    whole range (its unmapping, at garbage collection, unmaps both), or ``(0, None)``
    where that cannot be done."""
    if not hasattr(mmap, "MAP_ANONYMOUS") or not sys.platform.startswith("linux"):
        return 0, None
    anon = mmap.mmap(-1, PAGE_SIZE + size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = ctypes.addressof(ctypes.c_char.from_buffer(anon))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    want = base + PAGE_SIZE
    got = libc.mmap(want, size, mmap.PROT_READ | mmap.PROT_WRITE,
                    mmap.MAP_SHARED | _MAP_FIXED, fd, 0)
    if got != want:
        return 0, None  # the anonymous pages stay in place of it: dropped with ``anon``
    return want, anon


_MAP_FIXED = 0x10


def _move_header(bmap: BpfMap, addr: int, keep: object) -> None:
    """Re-register ``bmap``'s header at ``addr`` (inside the page below its values)."""
    from pybpf.maps.core import _BY_ADDR, MAP_HEADER_SIZE

    old = bytes(bmap.header.mv)
    cbuf = (ctypes.c_char * MAP_HEADER_SIZE).from_address(addr)
    header = Region(addr, MAP_HEADER_SIZE, bmap.header.name, memoryview(cbuf).cast("B"),
                    True, False, (keep, cbuf), bmap)
    header.mv[:len(old)] = old
    bmap.release_header()
    bmap.header = bmap.mem.add(header)
    _BY_ADDR[addr] = bmap


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
