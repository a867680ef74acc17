"""Queue and stack maps (``kernel/bpf/queue_stack_maps.c``): one ring of ``max_entries + 1`` slots.

Layout (native)::

    header.data -> slots: (max_entries + 1) * value_size bytes
    header.aux  -> control: u32 head, u32 tail, u32 size (= max_entries + 1)

Empty when ``head == tail``, full when ``head + 1 == tail`` (mod size). A queue pops at
``tail``, a stack at ``head - 1``. Push with ``BPF_EXIST`` overwrites the oldest element
when full; otherwise a full map is E2BIG. Pop/peek of an empty map is ENOENT.
"""

from __future__ import annotations

import errno
import struct

from pybpf.errors import BpfError
from pybpf.maps.base import BaseMapOps
from pybpf.maps.common import (
    BPF_F_ACCESS_MASK,
    KMALLOC_MAX_SIZE,
    U32_MAX,
    bpf_map_flags_access_ok,
)
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.storage import alloc_region
from pybpf.uapi import BPF_EXIST, BPF_F_NUMA_NODE, BPF_NOEXIST

QUEUE_STACK_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
SIZEOF_BPF_QUEUE_STACK = 312
_CTL = struct.Struct("<III")


class QueueStackMap(BpfMap):
    def __init__(self, ops: BaseMapOps, attr: MapAttr) -> None:
        super().__init__(ops, attr)
        self.size = self.max_entries + 1
        self.slots = alloc_region(self, self.size * self.value_size, "slots")
        self.ctl = alloc_region(self, 16, "queue control")
        self.head = self.tail = 0
        self.publish()
        self.write_header(elem_size=self.value_size, data=self.slots.start, aux=self.ctl.start)

    def publish(self) -> None:
        _CTL.pack_into(self.ctl.mv, 0, self.head, self.tail, self.size)

    def is_empty(self) -> bool:
        return self.head == self.tail

    def is_full(self) -> bool:
        return (self.head + 1) % self.size == self.tail


class QueueStackOps(BaseMapOps):
    push_via_update = True
    lookup_is_peek = True
    is_stack = False

    def map_alloc_check(self, attr: MapAttr) -> None:
        if (attr.max_entries == 0 or attr.key_size != 0 or attr.value_size == 0
                or attr.map_flags & ~QUEUE_STACK_CREATE_FLAG_MASK
                or not bpf_map_flags_access_ok(attr.map_flags)):
            raise BpfError(errno.EINVAL)
        if attr.value_size > KMALLOC_MAX_SIZE:
            raise BpfError(errno.E2BIG)
        if attr.max_entries >= U32_MAX // attr.value_size:
            raise BpfError(errno.E2BIG)

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        return QueueStackMap(self, attr)

    def mem_usage(self, bmap: BpfMap) -> int:
        return SIZEOF_BPF_QUEUE_STACK + (bmap.max_entries + 1) * bmap.value_size

    def native_layout(self, bmap: BpfMap) -> dict[str, int]:
        assert isinstance(bmap, QueueStackMap)
        return {"header": bmap.addr, "slots": bmap.slots.start, "control": bmap.ctl.start}

    # -- core operations on bytes -------------------------------------------------------
    def push(self, bmap: BpfMap, value: bytes, flags: int) -> int:
        assert isinstance(bmap, QueueStackMap)
        if flags & BPF_NOEXIST or flags > BPF_EXIST:
            return errno.EINVAL
        with bmap.lock:
            if bmap.is_full():
                if not flags & BPF_EXIST:
                    return errno.E2BIG
                bmap.tail = (bmap.tail + 1) % bmap.size
            off = bmap.head * bmap.value_size
            bmap.slots.mv[off:off + bmap.value_size] = value[:bmap.value_size]
            bmap.head = (bmap.head + 1) % bmap.size
            bmap.publish()
        return 0

    def get(self, bmap: BpfMap, delete: bool) -> bytes | None:
        assert isinstance(bmap, QueueStackMap)
        with bmap.lock:
            if bmap.is_empty():
                return None
            if self.is_stack:
                index = (bmap.head - 1) % bmap.size
            else:
                index = bmap.tail
            off = index * bmap.value_size
            data = bmap.slots.mv[off:off + bmap.value_size].tobytes()
            if delete:
                if self.is_stack:
                    bmap.head = index
                else:
                    bmap.tail = (bmap.tail + 1) % bmap.size
                bmap.publish()
            return data

    # -- syscall side ---------------------------------------------------------------------
    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        data = self.get(bmap, False)
        if data is None:
            raise BpfError(errno.ENOENT)
        return data

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        err = self.push(bmap, value, flags)
        if err:
            raise BpfError(err)

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        raise BpfError(errno.EINVAL)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        raise BpfError(errno.EINVAL)

    def sys_lookup_and_delete(self, bmap: BpfMap, key: bytes | None, flags: int) -> bytes:
        if flags:
            raise BpfError(errno.EINVAL)
        data = self.get(bmap, True)
        if data is None:
            raise BpfError(errno.ENOENT)
        return data

    # -- program side -------------------------------------------------------------------
    def map_update_elem(self, bmap: BpfMap, key_addr: int, value_addr: int, flags: int,
                        cpu: int = 0) -> int:
        return -errno.EINVAL

    def map_delete_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        return -errno.EINVAL

    def map_push_elem(self, bmap: BpfMap, value_addr: int, flags: int) -> int:
        return -self.push(bmap, bmap.mem.read(value_addr, bmap.value_size), flags)

    def _get_into(self, bmap: BpfMap, value_addr: int, delete: bool) -> int:
        data = self.get(bmap, delete)
        if data is None:
            bmap.mem.write(value_addr, bytes(bmap.value_size))
            return -errno.ENOENT
        bmap.mem.write(value_addr, data)
        return 0

    def map_pop_elem(self, bmap: BpfMap, value_addr: int) -> int:
        return self._get_into(bmap, value_addr, True)

    def map_peek_elem(self, bmap: BpfMap, value_addr: int) -> int:
        return self._get_into(bmap, value_addr, False)
