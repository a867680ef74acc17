"""Native memory that programs can touch, and the registry that checks every access.

DESIGN decision 3: everything a program reaches — stack frames, ctx, packets, map
values — lives in native memory with real addresses, as in the kernel. Each such buffer is
a :class:`Region`; the process-wide :data:`REGISTRY` maps address ranges to their region so
the checked interpreter can validate every load, store and atomic and raise
:class:`~pybpf.errors.BpfFault` instead of touching memory it must not.

Addresses are process-global, so one registry serves every ``Kernel`` instance. Lookups
read an immutable snapshot (no lock on the hot path); changes take a lock and publish a
new snapshot.
"""

from __future__ import annotations

import bisect
import ctypes
import struct
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pybpf.errors import BpfFault

_UNPACK: dict[int, Callable[[memoryview, int], tuple[int]]] = {
    1: struct.Struct("<B").unpack_from,
    2: struct.Struct("<H").unpack_from,
    4: struct.Struct("<I").unpack_from,
    8: struct.Struct("<Q").unpack_from,
}
_PACK: dict[int, Callable[..., None]] = {
    1: struct.Struct("<B").pack_into,
    2: struct.Struct("<H").pack_into,
    4: struct.Struct("<I").pack_into,
    8: struct.Struct("<Q").pack_into,
}
_GUARD_WORDS = 2  # 16 unregistered bytes before and after every allocation
_MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: 0xFFFFFFFFFFFFFFFF}


@dataclass(eq=False)
class Region:
    """A contiguous native buffer at a fixed address.

    ``keepalive`` holds the object that owns the memory (a ctypes array, an mmap, …) so the
    address stays valid while the region is registered.
    """

    start: int
    size: int
    name: str
    mv: memoryview
    readable: bool = True
    writable: bool = True
    keepalive: object = None
    owner: object = None
    end: int = field(init=False)

    def __post_init__(self) -> None:
        self.end = self.start + self.size

    def contains(self, addr: int, size: int) -> bool:
        return self.start <= addr and addr + size <= self.end

    def read(self, off: int, size: int) -> bytes:
        return bytes(self.mv[off:off + size])

    def write(self, off: int, data: bytes) -> None:
        self.mv[off:off + len(data)] = data

    def zero(self) -> None:
        ctypes.memset(self.start, 0, self.size)


class MemoryRegistry:
    """Address ranges → regions, with checked loads and stores.

    A single registry is shared by the process (:data:`REGISTRY`); tests may build their
    own for isolation.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._starts: tuple[int, ...] = ()
        self._regions: tuple[Region, ...] = ()
        self._caches: weakref.WeakSet[_LastHit] = weakref.WeakSet()
        self.version = 0  # bumped on every add/remove: native mirrors of the table re-sync

    # -- registration -------------------------------------------------------------------
    def add(self, region: Region) -> Region:
        with self._lock:
            starts = list(self._starts)
            regions = list(self._regions)
            i = bisect.bisect_right(starts, region.start)
            if i > 0 and regions[i - 1].end > region.start:
                raise ValueError(f"region {region.name} overlaps {regions[i - 1].name}")
            if i < len(regions) and region.end > regions[i].start:
                raise ValueError(f"region {region.name} overlaps {regions[i].name}")
            starts.insert(i, region.start)
            regions.insert(i, region)
            self._starts, self._regions = tuple(starts), tuple(regions)
            self.version += 1
        return region

    def remove(self, region: Region) -> None:
        with self._lock:
            regions = [r for r in self._regions if r is not region]
            self._regions = tuple(regions)
            self._starts = tuple(r.start for r in regions)
            self.version += 1
            for cache in list(self._caches):
                cache.forget(region)

    def alloc(self, size: int, name: str, *, writable: bool = True, owner: object = None,
              register: bool = True) -> Region:
        """Allocate zeroed native memory (8-byte aligned) and register it.

        Unregistered guard bytes on both sides keep two allocations from ever being
        adjacent, so running off the end of one faults instead of landing in the next.
        """
        words = max(1, (size + 7) // 8) + 2 * _GUARD_WORDS
        buf = (ctypes.c_uint64 * words)()
        start = ctypes.addressof(buf) + 8 * _GUARD_WORDS
        mv = memoryview(buf).cast("B")[8 * _GUARD_WORDS:8 * _GUARD_WORDS + size]
        region = Region(start, size, name, mv, True, writable, buf, owner)
        return self.add(region) if register else region

    def wrap(self, obj: ctypes.Array[Any] | ctypes.Structure | bytearray, name: str, *,
             writable: bool = True, owner: object = None) -> Region:
        """Register an existing writable buffer (ctypes object or bytearray) in place."""
        if isinstance(obj, bytearray):
            cobj: object = (ctypes.c_char * len(obj)).from_buffer(obj)
        else:
            cobj = obj
        size = ctypes.sizeof(cobj)  # type: ignore[arg-type]
        addr = ctypes.addressof(cobj)  # type: ignore[arg-type]
        mv = memoryview(cobj).cast("B") if size else memoryview(b"")  # type: ignore[arg-type]
        return self.add(Region(addr, size, name, mv, True, writable, (obj, cobj), owner))

    # -- lookup -------------------------------------------------------------------------
    def find(self, addr: int, size: int = 1) -> Region | None:
        """The region holding ``[addr, addr + size)`` entirely, or ``None``."""
        starts = self._starts
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0:
            return None
        r = self._regions[i]
        return r if addr + size <= r.end else None

    def regions(self) -> tuple[Region, ...]:
        return self._regions

    # -- checked access (used by helpers and the Python side) ---------------------------
    def check(self, addr: int, size: int, *, write: bool = False, pc: int = -1) -> Region:
        r = self.find(addr, size) if size > 0 else self.find(addr, 1)
        if r is None:
            raise BpfFault(pc, addr, size, "invalid memory access")
        if write and not r.writable:
            raise BpfFault(pc, addr, size, f"write to read-only {r.name}")
        return r

    def read(self, addr: int, size: int, pc: int = -1) -> bytes:
        if size == 0:
            return b""
        r = self.check(addr, size, pc=pc)
        return r.read(addr - r.start, size)

    def write(self, addr: int, data: bytes, pc: int = -1) -> None:
        if not data:
            return
        r = self.check(addr, len(data), write=True, pc=pc)
        r.write(addr - r.start, data)

    def load(self, addr: int, size: int, pc: int = -1) -> int:
        r = self.check(addr, size, pc=pc)
        return _UNPACK[size](r.mv, addr - r.start)[0]

    def store(self, addr: int, size: int, value: int, pc: int = -1) -> None:
        r = self.check(addr, size, write=True, pc=pc)
        _PACK[size](r.mv, addr - r.start, value & _MASK[size])

    def read_cstr(self, addr: int, limit: int, pc: int = -1) -> bytes:
        """Bytes up to (not including) the first NUL within ``limit`` bytes."""
        r = self.check(addr, 1, pc=pc)
        off = addr - r.start
        chunk = bytes(r.mv[off:min(off + limit, r.size)])
        nul = chunk.find(b"\0")
        return chunk if nul < 0 else chunk[:nul]

    def accessors(self) -> tuple[Callable[[int, int, int], int], Callable[[int, int, int, int], None]]:
        """Fast ``load(addr, size, pc)`` / ``store(addr, size, value, pc)`` closures.

        They remember the last region hit, which is almost always the next one too (a
        loop over a packet, a stack frame), so the common access is a subtraction and two
        comparisons before the unpack.
        """
        find = self.find
        unpack = _UNPACK
        pack = _PACK
        mask = _MASK
        last_r = _LastHit()
        last_w = _LastHit()
        self._caches.add(last_r)
        self._caches.add(last_w)

        def load(addr: int, size: int, pc: int) -> int:
            r = last_r.r
            off = addr - r.start
            if off < 0 or off + size > r.size:
                found = find(addr, size)
                if found is None:
                    raise BpfFault(pc, addr, size, "invalid memory read")
                r = last_r.r = found
                off = addr - r.start
            return unpack[size](r.mv, off)[0]

        def store(addr: int, size: int, value: int, pc: int) -> None:
            r = last_w.r
            off = addr - r.start
            if off < 0 or off + size > r.size:
                found = find(addr, size)
                if found is None:
                    raise BpfFault(pc, addr, size, "invalid memory write")
                if not found.writable:
                    raise BpfFault(pc, addr, size, f"write to read-only {found.name}")
                r = last_w.r = found
                off = addr - r.start
            pack[size](r.mv, off, value & mask[size])

        return load, store


_EMPTY = Region(0, 0, "none", memoryview(b""))


class _LastHit:
    """The last region an accessor hit; reset when that region is unregistered."""

    __slots__ = ("__weakref__", "r")

    def __init__(self) -> None:
        self.r = _EMPTY

    def forget(self, region: Region) -> None:
        if self.r is region:
            self.r = _EMPTY


REGISTRY = MemoryRegistry()
"""The process-wide registry: addresses are process-global."""
