"""User-space consumer of a RINGBUF map (libbpf's ``ring_buffer__*`` / BCC's ``open_ring_buffer``).

``RingBufConsumer(map, callback)`` reads committed records in order, skips discarded
ones, stops at the first record still BUSY, and advances ``consumer_pos``. The map's
``wakeup_fd`` (an eventfd the producer writes, following the kernel's wakeup rules) is
:meth:`fileno`, so a consumer can be waited on with select/poll; :meth:`poll` does it.
A callback returning a non-zero int stops consumption (libbpf's convention).
"""

from __future__ import annotations

import contextlib
import os
import select
import struct
from collections.abc import Callable
from typing import Any

from pybpf.maps.type_ringbuf import (
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
    RingBufMap,
)

_HDR = struct.Struct("<II")


class RingBufConsumer:
    def __init__(self, bpf_map: Any, callback: Callable[[bytes], int | None] | None = None
                 ) -> None:
        rb = getattr(bpf_map, "bmap", bpf_map)
        assert isinstance(rb, RingBufMap)
        self.rb = rb
        self.callbacks: list[Callable[[bytes], int | None]] = []
        if callback is not None:
            self.callbacks.append(callback)

    def add(self, callback: Callable[[bytes], int | None]) -> None:
        self.callbacks.append(callback)

    def fileno(self) -> int:
        return self.rb.wakeup_fd

    def consume(self) -> int:
        """Process every committed record; the number handed to callbacks."""
        rb = self.rb
        dmv = rb.data.mv
        cons = rb.consumer_pos
        n = 0
        while True:
            prod = rb.producer_pos
            if cons >= prod:
                break
            off = cons & rb.mask
            length = _HDR.unpack_from(dmv, off)[0]
            if length & BPF_RINGBUF_BUSY_BIT:
                break
            size = length & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
            cons += (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
            stop = False
            if not length & BPF_RINGBUF_DISCARD_BIT:
                sample = dmv[off + BPF_RINGBUF_HDR_SZ:off + BPF_RINGBUF_HDR_SZ + size].tobytes()
                n += 1
                for cb in self.callbacks:
                    if cb(sample):
                        stop = True
            rb.consumer_pos = cons
            if stop:
                break
        return n

    def poll(self, timeout_ms: int = -1) -> int:
        """Wait for a wakeup (up to ``timeout_ms``; -1 = forever), then :meth:`consume`."""
        if not self.rb.producer_pos - self.rb.consumer_pos:
            timeout = None if timeout_ms < 0 else timeout_ms / 1000
            select.select([self.rb.wakeup_fd], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.rb.wakeup_fd)
        return self.consume()
