"""Packet buffers in the low 4 GiB of the address space.

Why: ``xdp_md.data``/``data_end`` and ``__sk_buff.data``/``data_end`` are 32-bit fields. In
the kernel the verifier's ``convert_ctx_access`` turns a load of them into a 64-bit load of
the real pointer from the kernel's ``xdp_buff``/``sk_buff``. Until pybpf's program types
convert those accesses, a program reads the user-visible field as is, so the packet must
live at an address that fits 32 bits for the pointer it builds to be the real one. On
x86-64 ``MAP_32BIT`` gives exactly that; elsewhere a low address hint is tried. The buffers
are registered :class:`~pybpf.runtime.memory.Region` s like any other program-visible memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import mmap
import platform

from pybpf.runtime.memory import REGISTRY, MemoryRegistry, Region

_MAP_32BIT = 0x40
_PAGE = mmap.PAGESIZE

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


class _Mapping:
    """Owns one anonymous low mapping; unmapped when garbage collected."""

    def __init__(self, addr: int, size: int) -> None:
        self.addr, self.size = addr, size

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            _libc.munmap(self.addr, self.size)


def _mmap_low(size: int) -> int:
    prot = mmap.PROT_READ | mmap.PROT_WRITE
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    if platform.machine() in ("x86_64", "AMD64"):
        addr = _libc.mmap(None, size, prot, flags | _MAP_32BIT, -1, 0)
        if addr not in (None, _MAP_FAILED) and addr + size < 1 << 32:
            return int(addr)
    for hint in range(0x10000000, 0xF0000000, 0x08000000):
        addr = _libc.mmap(hint, size, prot, flags, -1, 0)
        if addr in (None, _MAP_FAILED):
            continue
        if addr + size < 1 << 32:
            return int(addr)
        _libc.munmap(addr, size)
    raise MemoryError("no memory below 4 GiB for packet buffers")


def alloc_low(size: int, name: str, *, mem: MemoryRegistry = REGISTRY) -> Region:
    """A zeroed, registered region whose whole range lies below 4 GiB."""
    length = (size + _PAGE - 1) // _PAGE * _PAGE
    addr = _mmap_low(length)
    keep = _Mapping(addr, length)
    mv = memoryview((ctypes.c_char * length).from_address(addr)).cast("B")[:size]
    return mem.add(Region(addr, size, name, mv, True, True, keep, None))
