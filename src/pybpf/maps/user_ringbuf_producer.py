"""User-space producer of a USER_RINGBUF map (libbpf's ``user_ring_buffer__*``).

``UserRingBuffer(map)`` reserves a record in the ring (:meth:`reserve` returns a writable
``memoryview`` of its bytes), and publishes it with :meth:`submit` or drops it with
:meth:`discard` — in any order, as libbpf allows: a program's drain stops at the first
record still BUSY, exactly as the kernel's ``__bpf_user_ringbuf_peek`` does. Reserving
moves ``producer_pos`` at once (the record is then BUSY); it fails with ``E2BIG`` for a
record that can never fit (or a size using the header's flag bits) and ``ENOSPC`` when the
consumer has not freed enough room yet. :meth:`reserve_blocking` waits for a drain to
free room, on the map's wakeup eventfd.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import struct
import time
from typing import Any

from pybpf.errors import BpfError
from pybpf.maps.common import PAGE_SIZE
from pybpf.maps.type_ringbuf import (
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
    RingBufMap,
)
from pybpf.uapi import BPF_MAP_TYPE_USER_RINGBUF

_HDR = struct.Struct("<II")
_U64 = struct.Struct("<Q")


class UserRingBuffer:
    def __init__(self, bpf_map: Any) -> None:
        rb = getattr(bpf_map, "bmap", bpf_map)
        if not isinstance(rb, RingBufMap) or rb.map_type != BPF_MAP_TYPE_USER_RINGBUF:
            raise BpfError(errno.EINVAL, "not a BPF_MAP_TYPE_USER_RINGBUF map")
        self.rb = rb
        # id of each view reserve() handed out → (the view, its data offset, its size)
        self._pending: dict[int, tuple[memoryview, int, int]] = {}

    # -- positions ------------------------------------------------------------------------
    @property
    def producer_pos(self) -> int:
        return self.rb.producer_pos

    def _set_producer_pos(self, pos: int) -> None:
        _U64.pack_into(self.rb.meta.mv, PAGE_SIZE, pos)  # the producer page

    def avail_size(self) -> int:
        """Bytes the producer may still reserve (headers included)."""
        return self.rb.mask + 1 - (self.rb.producer_pos - self.rb.consumer_pos)

    # -- records ----------------------------------------------------------------------------
    def reserve(self, size: int) -> memoryview:
        """A ``size``-byte record, BUSY until :meth:`submit` or :meth:`discard`."""
        if size < 0 or size & (BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT):
            raise BpfError(errno.E2BIG, f"record size {size} out of range")
        rb = self.rb
        total = (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
        if total > rb.mask + 1:
            raise BpfError(errno.E2BIG, f"a {size}-byte record can never fit a "
                                        f"{rb.mask + 1}-byte ring")
        if self.avail_size() < total:
            raise BpfError(errno.ENOSPC, "user ring buffer full")
        prod = rb.producer_pos
        off = prod & rb.mask
        _HDR.pack_into(rb.data.mv, off, size | BPF_RINGBUF_BUSY_BIT, 0)
        self._set_producer_pos(prod + total)
        start = off + BPF_RINGBUF_HDR_SZ  # the data is mapped twice: never wraps
        view = rb.data.mv[start:start + size]
        self._pending[id(view)] = (view, start, size)
        return view

    def reserve_blocking(self, size: int, timeout_ms: int = -1) -> memoryview:
        """:meth:`reserve`, waiting up to ``timeout_ms`` (-1: forever) for room."""
        deadline = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000
        while True:
            try:
                return self.reserve(size)
            except BpfError as e:
                if e.errno != errno.ENOSPC:
                    raise
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise BpfError(errno.ENOSPC, "user ring buffer full")
            select.select([self.rb.wakeup_fd], [], [], left)
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self.rb.wakeup_fd)

    def _commit(self, sample: memoryview, discard: bool) -> None:
        """``user_ringbuf_commit``: clear BUSY (set DISCARD) in the record's header."""
        entry = self._pending.pop(id(sample), None)
        if entry is None or entry[0] is not sample:
            raise BpfError(errno.EINVAL, "not a record reserved by this producer")
        _, start, size = entry
        new_len = size | (BPF_RINGBUF_DISCARD_BIT if discard else 0)
        struct.pack_into("<I", self.rb.data.mv, start - BPF_RINGBUF_HDR_SZ, new_len)

    def submit(self, sample: memoryview) -> None:
        """Publish a reserved record to the program's drain."""
        self._commit(sample, discard=False)

    def discard(self, sample: memoryview) -> None:
        """Drop a reserved record; the drain skips it."""
        self._commit(sample, discard=True)

    def write(self, data: bytes) -> None:
        """Reserve, fill and submit one record."""
        view = self.reserve(len(data))
        view[:] = data
        self.submit(view)
