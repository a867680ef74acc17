"""User-space mappings of ``BPF_F_MMAPABLE`` arrays (``bpf_map_mmap`` + ``array_map_mmap``).

``mmap(map_fd)`` in Linux maps the array's value pages (offset 0 = value 0) into the
process. pybpf keeps those pages in a memfd (:func:`pybpf.maps.storage.alloc_pages`),
so :func:`map_mmap` returns a real second mapping of the same pages — an
:class:`mmap.mmap` (buffer protocol, slicing, ``numpy.frombuffer``) that sees program
writes at once. The rules are the kernel's:

- the map must be an ``BPF_F_MMAPABLE`` array (else ``EINVAL``) without special BTF
  fields (``ENOTSUPP``); the range must lie within the value pages (``EINVAL``);
- a writable mapping of a frozen map is ``EPERM``; of a ``BPF_F_RDONLY_PROG`` map
  ``EACCES``; an fd without read permission (``BPF_F_WRONLY``) cannot be mapped at all
  (``EACCES``); an fd without write permission (``BPF_F_RDONLY``) gives ``EACCES`` for a
  writable mapping and ``EINVAL`` for a read-only one (the VFS drops ``VM_SHARED``
  for such files, and ``bpf_map_mmap`` wants shared mappings);
- while a writable mapping exists it counts as an active writer
  (``bpf_map_write_active``): ``BPF_MAP_FREEZE`` fails with ``EBUSY``. Closing the
  mapping (``close()``, leaving a ``with`` block, or garbage collection) ends that.
  Read-only mappings are always allowed and never block FREEZE.
"""

from __future__ import annotations

import errno
import mmap
from typing import TYPE_CHECKING, Any

from pybpf.errors import BpfError
from pybpf.maps.common import ENOTSUPP, PAGE_SIZE
from pybpf.uapi import BPF_F_MMAPABLE, BPF_F_RDONLY, BPF_F_RDONLY_PROG, BPF_F_WRONLY

if TYPE_CHECKING:
    from pybpf.maps.core import BpfMap


class MapMmap(mmap.mmap):
    """A shared mapping of a map's value pages; a writable one holds a writer count."""

    _bmap: Any
    _counted: bool

    def __new__(cls, bmap: BpfMap, length: int, offset: int, writable: bool) -> MapMmap:
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        self = super().__new__(cls, bmap.mmap_fd, length,  # type: ignore[attr-defined]
                               flags=mmap.MAP_SHARED, prot=prot, offset=offset)
        self._bmap = bmap
        self._counted = False
        return self

    def __init__(self, bmap: BpfMap, length: int, offset: int, writable: bool) -> None:
        pass

    def _release(self) -> None:
        if getattr(self, "_counted", False):
            self._counted = False
            with self._bmap.lock:
                self._bmap.writecnt -= 1

    def close(self) -> None:
        super().close()  # BufferError while numpy views still export the memory
        self._release()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self._release()


def map_mmap(bmap: BpfMap, writable: bool = True, length: int | None = None,
             offset: int = 0, can_write: bool | None = None,
             can_read: bool | None = None) -> MapMmap:
    """Map ``length`` bytes (default: every value page) from ``offset`` (page multiple)."""
    own = getattr(bmap.ops, "map_mmap", None)  # a type with mapping rules of its own (arena)
    if own is not None:
        return own(bmap, writable, length, offset)
    if not bmap.map_flags & BPF_F_MMAPABLE or getattr(bmap, "mmap_fd", None) is None:
        raise BpfError(errno.EINVAL, "map is not an mmapable array")
    if bmap.has_record:
        raise BpfError(ENOTSUPP, "map values have special fields")
    total = int(bmap.mmap_size)  # type: ignore[attr-defined]
    if length is None:
        length = total - offset
    if offset < 0 or offset % PAGE_SIZE or length <= 0 or offset + length > total:
        raise BpfError(errno.EINVAL, "range outside the map's value pages")
    if can_write is None:
        can_write = not bmap.create_flags & BPF_F_RDONLY
    if can_read is None:
        can_read = not bmap.create_flags & BPF_F_WRONLY
    if not can_read:
        raise BpfError(errno.EACCES, "map fd is write-only")
    if not can_write and not writable:
        raise BpfError(errno.EINVAL, "a read-only fd gives no shared mapping")
    with bmap.lock:
        if writable:
            if not can_write:
                raise BpfError(errno.EACCES, "map fd is read-only")
            if bmap.frozen:
                raise BpfError(errno.EPERM, "map is frozen")
            if bmap.map_flags & BPF_F_RDONLY_PROG:
                raise BpfError(errno.EACCES, "map is read-only for programs")
        view = MapMmap(bmap, length, offset, writable)
        if writable:
            bmap.writecnt += 1
            view._counted = True
    return view
