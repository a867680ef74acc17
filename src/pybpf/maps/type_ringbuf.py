"""``BPF_MAP_TYPE_RINGBUF`` (``kernel/bpf/ringbuf.c``): the BPF ring buffer.

``max_entries`` is the data size: a power of two and a multiple of the page size;
key and value size must be 0. Layout (native, as user space mmaps it in Linux)::

    meta  page 0: u64 consumer_pos        (user space advances it)
          page 1: u64 producer_pos        (producers advance it)
    data  size bytes, mapped twice back to back, so a record that wraps around the end
          is still contiguous (the kernel maps the data pages twice too)

A record is an 8-byte header ``u32 len | BUSY (1 << 31) | DISCARD (1 << 30)``, ``u32
pg_off``, then ``len`` bytes, padded to 8. ``pg_off`` is Linux's: the record's page
counted from the start of ``struct bpf_ringbuf``, whose data pages come after
``RINGBUF_NR_META_PAGES`` (3) pages, i.e. ``3 + offset_in_data // PAGE_SIZE``. ``reserve`` fails (NULL) when the record does
not fit in what the consumer has freed or behind the oldest uncommitted record;
``submit``/``discard`` clear BUSY (discard sets DISCARD) and wake the consumer when the
record is the one it waits on (or with ``BPF_RB_FORCE_WAKEUP``; never with
``BPF_RB_NO_WAKEUP``). The wakeup is a write to :attr:`RingBufMap.wakeup_fd` (an eventfd),
which a consumer can wait on with select/poll (see :mod:`pybpf.maps.ringbuf_consumer`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import struct
import threading

from pybpf.errors import BpfError
from pybpf.maps.base import BaseMapOps
from pybpf.maps.common import ENOTSUPP, PAGE_SIZE, is_power_of_2
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.ops import register_map_ops
from pybpf.maps.storage import map_regions
from pybpf.runtime.memory import Region
from pybpf.uapi import (
    BPF_F_NUMA_NODE,
    BPF_MAP_TYPE_RINGBUF,
    BPF_RB_AVAIL_DATA,
    BPF_RB_CONS_POS,
    BPF_RB_FORCE_WAKEUP,
    BPF_RB_NO_WAKEUP,
    BPF_RB_PROD_POS,
    BPF_RB_RING_SIZE,
)

RINGBUF_CREATE_FLAG_MASK = BPF_F_NUMA_NODE
RINGBUF_MAX_RECORD_SZ = 0xFFFFFFFF // 4
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
RINGBUF_NR_META_PAGES = 3  # RINGBUF_PGOFF (1) + RINGBUF_POS_PAGES (2)
SIZEOF_BPF_RINGBUF_MAP = 304
_U64 = struct.Struct("<Q")
_HDR = struct.Struct("<II")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FIXED = 0x10
_MAP_FAILED = ctypes.c_void_p(-1).value


class _DoubleMapping:
    """``2 * PAGE_SIZE`` of positions followed by ``size`` data bytes mapped twice."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.total = 2 * PAGE_SIZE + 2 * size
        self.fd = os.memfd_create("pybpf-ringbuf", 0)
        try:
            os.ftruncate(self.fd, 2 * PAGE_SIZE + size)
            prot = mmap.PROT_READ | mmap.PROT_WRITE
            base = _libc.mmap(None, self.total, prot, mmap.MAP_SHARED, self.fd, 0)
            if base in (None, _MAP_FAILED):
                raise BpfError(errno.ENOMEM, "ringbuf mmap failed")
            self.base = int(base)
            second = _libc.mmap(self.base + 2 * PAGE_SIZE + size, size, prot,
                                mmap.MAP_SHARED | _MAP_FIXED, self.fd, 2 * PAGE_SIZE)
            if second in (None, _MAP_FAILED):
                _libc.munmap(self.base, self.total)
                raise BpfError(errno.ENOMEM, "ringbuf double mapping failed")
        except BaseException:
            os.close(self.fd)
            raise
        self.buf = (ctypes.c_char * self.total).from_address(self.base)
        self.mv = memoryview(self.buf).cast("B")

    def close(self) -> None:
        if self.fd >= 0:
            self.mv.release()
            _libc.munmap(self.base, self.total)
            os.close(self.fd)
            self.fd = -1


class RingBufMap(BpfMap):
    def __init__(self, ops: BaseMapOps, attr: MapAttr) -> None:
        super().__init__(ops, attr)
        size = self.max_entries
        self.mask = size - 1
        self.mapping = _DoubleMapping(size)
        mv = self.mapping.mv
        base = self.mapping.base
        self.meta = Region(base, 2 * PAGE_SIZE, f"ringbuf {self.name!r} positions",
                           mv[:2 * PAGE_SIZE], True, True, self.mapping, self)
        self.data = Region(base + 2 * PAGE_SIZE, 2 * size, f"ringbuf {self.name!r} data",
                           mv[2 * PAGE_SIZE:], True, True, self.mapping, self)
        self.mem.add(self.meta)
        self.mem.add(self.data)
        map_regions(self).extend([self.meta, self.data])
        self.pending_pos = 0
        self.spin = threading.Lock()
        self.wakeup_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.write_header(data=self.data.start, aux=self.meta.start)

    @property
    def consumer_pos(self) -> int:
        return _U64.unpack_from(self.meta.mv, 0)[0]

    @consumer_pos.setter
    def consumer_pos(self, pos: int) -> None:
        _U64.pack_into(self.meta.mv, 0, pos)

    @property
    def producer_pos(self) -> int:
        return _U64.unpack_from(self.meta.mv, PAGE_SIZE)[0]

    def reserve(self, size: int) -> int:
        """``__bpf_ringbuf_reserve``: address of the sample, or 0."""
        if size > RINGBUF_MAX_RECORD_SZ:
            return 0
        length = (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
        if length > self.mask + 1:
            return 0
        cons_pos = self.consumer_pos
        with self.spin:
            pend_pos = self.pending_pos
            prod_pos = self.producer_pos
            new_prod_pos = prod_pos + length
            dmv = self.data.mv
            while prod_pos - pend_pos > 0:
                hdr_len = _HDR.unpack_from(dmv, pend_pos & self.mask)[0]
                if hdr_len & BPF_RINGBUF_BUSY_BIT:
                    break
                tmp = hdr_len & ~BPF_RINGBUF_DISCARD_BIT
                pend_pos += (tmp + BPF_RINGBUF_HDR_SZ + 7) & ~7
            self.pending_pos = pend_pos
            if new_prod_pos - cons_pos > self.mask or new_prod_pos - pend_pos > self.mask:
                return 0
            off = prod_pos & self.mask
            # pg_off: the record's page counted from the start of struct bpf_ringbuf, whose
            # data follows RINGBUF_NR_META_PAGES pages (header, consumer, producer)
            _HDR.pack_into(dmv, off, size | BPF_RINGBUF_BUSY_BIT,
                           (RINGBUF_NR_META_PAGES * PAGE_SIZE + off) // PAGE_SIZE)
            _U64.pack_into(self.meta.mv, PAGE_SIZE, new_prod_pos)
            return self.data.start + off + BPF_RINGBUF_HDR_SZ

    def commit(self, sample: int, flags: int, discard: bool) -> None:
        """``bpf_ringbuf_commit``: clear BUSY (set DISCARD), wake the consumer if due."""
        off = sample - BPF_RINGBUF_HDR_SZ - self.data.start
        off &= self.mask
        dmv = self.data.mv
        hdr_len = _HDR.unpack_from(dmv, off)[0]
        new_len = hdr_len ^ BPF_RINGBUF_BUSY_BIT
        if discard:
            new_len |= BPF_RINGBUF_DISCARD_BIT
        struct.pack_into("<I", dmv, off, new_len)
        cons = self.consumer_pos & self.mask
        if flags & BPF_RB_FORCE_WAKEUP or (cons == off and not flags & BPF_RB_NO_WAKEUP):
            self.wakeup()

    def wakeup(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.eventfd_write(self.wakeup_fd, 1)

    def query(self, flags: int) -> int:
        if flags == BPF_RB_AVAIL_DATA:
            return self.producer_pos - self.consumer_pos
        if flags == BPF_RB_RING_SIZE:
            return self.mask + 1
        if flags == BPF_RB_CONS_POS:
            return self.consumer_pos
        if flags == BPF_RB_PROD_POS:
            return self.producer_pos
        return 0


def ringbuf_of_sample(bmap_mem: object, sample: int) -> RingBufMap | None:
    """The ring buffer whose data area holds ``sample`` (what the record's pg_off finds)."""
    from pybpf.runtime.memory import MemoryRegistry

    assert isinstance(bmap_mem, MemoryRegistry)
    region = bmap_mem.find(sample - BPF_RINGBUF_HDR_SZ, 1)
    owner = region.owner if region is not None else None
    return owner if isinstance(owner, RingBufMap) else None


class RingBufOps(BaseMapOps):
    map_type = BPF_MAP_TYPE_RINGBUF

    def map_alloc_check(self, attr: MapAttr) -> None:
        if attr.map_flags & ~RINGBUF_CREATE_FLAG_MASK:
            raise BpfError(errno.EINVAL)
        if (attr.key_size or attr.value_size or not is_power_of_2(attr.max_entries)
                or attr.max_entries % PAGE_SIZE):
            raise BpfError(errno.EINVAL)

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        return RingBufMap(self, attr)

    def map_free(self, bmap: BpfMap) -> None:
        super().map_free(bmap)
        assert isinstance(bmap, RingBufMap)
        os.close(bmap.wakeup_fd)

    def mem_usage(self, bmap: BpfMap) -> int:
        nr_data_pages = bmap.max_entries // PAGE_SIZE
        nr_pages = RINGBUF_NR_META_PAGES + nr_data_pages
        return (SIZEOF_BPF_RINGBUF_MAP + nr_pages * PAGE_SIZE
                + (RINGBUF_NR_META_PAGES + 2 * nr_data_pages) * 8)

    def native_layout(self, bmap: BpfMap) -> dict[str, int]:
        assert isinstance(bmap, RingBufMap)
        return {"header": bmap.addr, "consumer_pos": bmap.meta.start,
                "producer_pos": bmap.meta.start + PAGE_SIZE, "data": bmap.data.start,
                "mask": bmap.mask}

    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        raise BpfError(ENOTSUPP)

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        raise BpfError(ENOTSUPP)

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        raise BpfError(ENOTSUPP)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        raise BpfError(ENOTSUPP)

    def map_update_elem(self, bmap: BpfMap, key_addr: int, value_addr: int, flags: int,
                        cpu: int = 0) -> int:
        return -ENOTSUPP

    def map_delete_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        return -ENOTSUPP


register_map_ops(RingBufOps())
