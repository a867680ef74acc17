"""The fd arrays: PROG_ARRAY, ARRAY_OF_MAPS, PERF_EVENT_ARRAY, CGROUP_ARRAY.

``fd_array_map_alloc_check`` (value_size 4, no ``_PROG`` access flags, then the array
rules); update takes only ``BPF_ANY`` (EINVAL), E2BIG past the end; delete is ENOENT on
an empty slot; a syscall lookup returns the object's id for types that define one
(PROG_ARRAY, ARRAY_OF_MAPS) and ENOTSUPP otherwise; program lookups are refused
(``-EOPNOTSUPP``) except ARRAY_OF_MAPS, which yields the inner map's address.
Storage: :mod:`pybpf.maps.fdmaps`; the slots are at ``map + FD_ARRAY_PTRS_OFF`` (312), as
``struct bpf_array``'s ``ptrs``.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from pybpf.errors import BpfError
from pybpf.maps.arraybase import SIZEOF_BPF_ARRAY, array_get_next_key, array_map_alloc_check
from pybpf.maps.base import BaseMapOps, NoProgElemOps
from pybpf.maps.batch import BatchResult, generic_lookup_batch, generic_update_batch
from pybpf.maps.common import ENOTSUPP
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.fdmaps import object_addr, object_id, resolve_fd
from pybpf.maps.storage import colocate_after_header
from pybpf.uapi import BPF_ANY, BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG

_U64 = struct.Struct("<Q")
#: ``offsetof(struct bpf_array, ptrs)`` on x86-64 Linux 6.18: where an inlined
#: ARRAY_OF_MAPS lookup (``array_of_map_gen_lookup``: ``r1 += 312``) finds the slots
FD_ARRAY_PTRS_OFF = 312


class FdArrayMap(BpfMap):
    def __init__(self, ops: BaseMapOps, attr: MapAttr) -> None:
        super().__init__(ops, attr)
        # the slots sit where ``struct bpf_array`` keeps its ``ptrs``, so the verifier can
        # inline program lookups as the kernel does (read-only for programs)
        self.slots = colocate_after_header(self, FD_ARRAY_PTRS_OFF, 8 * self.max_entries,
                                           "object slots")
        self.objects: list[Any] = [None] * self.max_entries
        self.write_header(elem_size=8, data=self.slots.start)

    def tail_call_target(self, index: int) -> Any:
        """The runnable program behind slot ``index`` for ``bpf_tail_call``, or ``None``.

        Slots hold kernel program objects; what runs is their runtime (``bpf_func``).
        """
        obj = self.objects[index] if 0 <= index < self.max_entries else None
        return getattr(obj, "bpf_func", None) if obj is not None else None

    def set_slot(self, index: int, obj: Any) -> Any:
        old = self.objects[index]
        self.objects[index] = obj
        _U64.pack_into(self.slots.mv, 8 * index, object_addr(obj) if obj is not None else 0)
        return old


class FdArrayOps(NoProgElemOps):
    fd_values = True
    fd_kind = "map"
    has_sys_lookup = False

    def map_alloc_check(self, attr: MapAttr) -> None:
        if attr.value_size != 4:
            raise BpfError(errno.EINVAL)
        if attr.map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG):
            raise BpfError(errno.EINVAL)
        array_map_alloc_check(attr)

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        return FdArrayMap(self, attr)

    def mem_usage(self, bmap: BpfMap) -> int:
        return SIZEOF_BPF_ARRAY + bmap.max_entries * 8

    def native_layout(self, bmap: BpfMap) -> dict[str, int]:
        assert isinstance(bmap, FdArrayMap)
        return {"header": bmap.addr, "slots": bmap.slots.start}

    def check_object(self, bmap: FdArrayMap, obj: Any) -> Any:
        """``map_fd_get_ptr``: validate the object an fd resolved to (type hook)."""
        return obj

    def put_object(self, bmap: BpfMap, key: bytes, obj: Any, flags: int) -> None:
        assert isinstance(bmap, FdArrayMap)
        if flags != BPF_ANY:
            raise BpfError(errno.EINVAL)
        index = int.from_bytes(key[:4], "little")
        if index >= bmap.max_entries:
            raise BpfError(errno.E2BIG)
        obj = self.check_object(bmap, obj)
        with bmap.lock:
            bmap.set_slot(index, obj)

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        assert isinstance(bmap, FdArrayMap)
        if flags != BPF_ANY:
            raise BpfError(errno.EINVAL)
        if int.from_bytes(key[:4], "little") >= bmap.max_entries:
            raise BpfError(errno.E2BIG)
        fd = int.from_bytes(value[:4], "little", signed=True)
        self.put_object(bmap, key, resolve_fd(bmap, fd, self.fd_kind), flags)

    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        assert isinstance(bmap, FdArrayMap)
        if not self.has_sys_lookup:
            raise BpfError(ENOTSUPP)
        index = int.from_bytes(key[:4], "little")
        obj = bmap.objects[index] if index < bmap.max_entries else None
        if obj is None:
            raise BpfError(errno.ENOENT)
        return object_id(obj).to_bytes(4, "little")

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        assert isinstance(bmap, FdArrayMap)
        index = int.from_bytes(key[:4], "little")
        if index >= bmap.max_entries:
            raise BpfError(errno.E2BIG)
        with bmap.lock:
            if bmap.set_slot(index, None) is None:
                raise BpfError(errno.ENOENT)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        return array_get_next_key(bmap, key)

    def object_at(self, bmap: BpfMap, index: int) -> Any:
        """The object in slot ``index`` (tail calls, perf output), or ``None``."""
        assert isinstance(bmap, FdArrayMap)
        return bmap.objects[index] if 0 <= index < bmap.max_entries else None



class FdArrayBatchOps(FdArrayOps):
    """fd arrays that also offer the generic batch lookup/update (ARRAY_OF_MAPS)."""

    def sys_lookup_batch(self, bmap: BpfMap, in_batch: bytes | None, count: int,
                         elem_flags: int, flags: int) -> BatchResult:
        return generic_lookup_batch(self, bmap, in_batch, count, elem_flags, flags)

    def sys_update_batch(self, bmap: BpfMap, keys: bytes, values: bytes, count: int,
                         elem_flags: int, flags: int) -> BatchResult:
        return generic_update_batch(self, bmap, keys, values, count, elem_flags, flags)
