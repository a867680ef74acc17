"""Arena maps at load time: libbpf maps every ``BPF_MAP_TYPE_ARENA`` right after creating
it (``bpf_object__create_maps``), at ``map_extra`` when the object sets it, so that the
arena has its user address (``user_vm_start``) before any program referencing it is
loaded — the verifier refuses the program otherwise. The mapping stays with the loaded
object (``LoadedObject.arenas``, by map name) and is what user space reads the arena
through.

``__arena`` globals (the ``.addr_space.1`` section) live in the arena too: libbpf
copies their initial bytes into the fresh mapping and relocates their ``ld_imm64``
references as ``BPF_PSEUDO_MAP_VALUE`` of the arena map, at ``ARENA_DATA_OFF`` plus the
symbol's offset. The verifier turns such an ``ld_imm64`` into the variable's user
address (a scalar); programs reach it through ``addr_space_cast``.
"""

from __future__ import annotations

import ctypes
import errno
from typing import Any

from pybpf.errors import BpfError

BPF_MAP_TYPE_ARENA = 33
PAGE_SIZE = 4096
#: where the ``__arena`` globals start in the arena. libbpf puts them at the arena's end
#: when the kernel takes ``ld_imm64`` value offsets of 2**29 and more
#: (``FEAT_LDIMM64_FULL_RANGE_OFF``); 6.18 still refuses those ("direct value offset of
#: %u is not allowed"), so with it they start at offset 0.
ARENA_DATA_OFF = 0
_PROT_RW, _MAP_SHARED, _MAP_FIXED_NOREPLACE = 0x3, 0x01, 0x100000


class LiveArenaMapping:
    """An arena of the live kernel mapped into this process (``mmap(map_fd)``)."""

    def __init__(self, fd: int, length: int, addr: int) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self._libc = libc
        # libbpf passes MAP_FIXED; NOREPLACE fails instead of clobbering this process
        flags = _MAP_SHARED | (_MAP_FIXED_NOREPLACE if addr else 0)
        got = libc.mmap(addr or None, length, _PROT_RW, flags, fd, 0)
        if got is None or got == ctypes.c_void_p(-1).value:
            raise BpfError(ctypes.get_errno() or errno.EINVAL, "failed to mmap arena")
        self.addr, self.length = int(got), length

    def read(self, off: int, size: int) -> bytes:
        return ctypes.string_at(self.addr + off, size)

    def write(self, off: int, data: bytes) -> None:
        ctypes.memmove(self.addr + off, data, len(data))

    def close(self) -> None:
        if self.length:
            self._libc.munmap(self.addr, self.length)
            self.length = 0


def mmap_arena(sys: Any, fd: int, max_entries: int, map_extra: int) -> Any:
    """Map the arena behind ``fd`` of ``sys`` (a pybpf kernel or task, or the live
    kernel's ``LiveSyscalls``): the pybpf :class:`~pybpf.maps.type_arena.ArenaMmap` or
    a :class:`LiveArenaMapping`."""
    length = max_entries * PAGE_SIZE
    task = getattr(sys, "root", sys)
    if hasattr(task, "fds") and hasattr(task, "kernel"):
        from pybpf.syscall.objects import map_get

        kmap, _file = map_get(task, fd)
        return kmap.bmap.mmap(length=length)  # type: ignore[attr-defined]
    return LiveArenaMapping(fd, length, map_extra)
