"""User-space reader of a PERF_EVENT_ARRAY (libbpf's ``perf_buffer`` / BCC's ``open_perf_buffer``).

``PerfBuffer(map, page_cnt, sample_cb, lost_cb)`` opens one :class:`PerfEvent` per
possible CPU, installs it in the map's slot for that CPU, and reads records back:
``sample_cb(cpu, data: bytes)`` per sample, ``lost_cb(cpu, count)`` per LOST record.
``fileno()`` is an eventfd written on every output, so the buffer can be waited on with
select/poll; :meth:`poll` does that and then consumes.
"""

from __future__ import annotations

import contextlib
import os
import select
import struct
from collections.abc import Callable
from typing import Any

from pybpf.maps.common import PAGE_SIZE
from pybpf.maps.type_perf_event_array import (
    DATA_HEAD_OFF,
    DATA_TAIL_OFF,
    PERF_RECORD_LOST,
    PERF_RECORD_SAMPLE,
    PerfEvent,
)

_Q = struct.Struct("<Q")
_HDR = struct.Struct("<IHH")


class PerfBuffer:
    def __init__(self, bpf_map: Any, page_cnt: int = 8,
                 sample_cb: Callable[[int, bytes], None] | None = None,
                 lost_cb: Callable[[int, int], None] | None = None) -> None:
        from pybpf.maps.fdarray import FdArrayMap

        bmap = getattr(bpf_map, "bmap", bpf_map)
        assert isinstance(bmap, FdArrayMap)
        self.bmap = bmap
        self.sample_cb = sample_cb
        self.lost_cb = lost_cb
        self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.events: list[PerfEvent] = []
        for cpu in range(min(bmap.nr_cpus, bmap.max_entries)):
            ev = PerfEvent(cpu, page_cnt, bmap.mem, self.efd)
            self.events.append(ev)
            bmap.ops.put_object(bmap, cpu.to_bytes(4, "little"), ev, 0)  # type: ignore[attr-defined]

    def fileno(self) -> int:
        return self.efd

    def _read(self, ev: PerfEvent, pos: int, n: int) -> bytes:
        off = pos % ev.size
        base = PAGE_SIZE
        first = min(n, ev.size - off)
        out = ev.mv[base + off:base + off + first].tobytes()
        if first < n:
            out += ev.mv[base:base + n - first].tobytes()
        return out

    def consume(self) -> int:
        """Hand every pending record to the callbacks; the number of samples read."""
        samples = 0
        for ev in self.events:
            head = _Q.unpack_from(ev.mv, DATA_HEAD_OFF)[0]
            tail = _Q.unpack_from(ev.mv, DATA_TAIL_OFF)[0]
            while tail < head:
                rtype, _misc, size = _HDR.unpack(self._read(ev, tail, 8))
                body = self._read(ev, tail + 8, size - 8)
                if rtype == PERF_RECORD_SAMPLE:
                    raw = int.from_bytes(body[:4], "little")
                    samples += 1
                    if self.sample_cb is not None:
                        self.sample_cb(ev.cpu, body[4:4 + raw])
                elif rtype == PERF_RECORD_LOST and self.lost_cb is not None:
                    self.lost_cb(ev.cpu, _Q.unpack_from(body, 8)[0])
                tail += size
            _Q.pack_into(ev.mv, DATA_TAIL_OFF, tail)
        return samples

    def poll(self, timeout_ms: int = -1) -> int:
        """Wait up to ``timeout_ms`` (-1 forever) for output, then :meth:`consume`."""
        timeout = None if timeout_ms < 0 else timeout_ms / 1000
        ready, _, _ = select.select([self.efd], [], [], timeout)
        if ready:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self.efd)
        return self.consume()

    def close(self) -> None:
        for cpu, ev in enumerate(self.events):
            with contextlib.suppress(OSError):
                self.bmap.ops.sys_delete(self.bmap, cpu.to_bytes(4, "little"))
            ev.close()
        self.events = []
        os.close(self.efd)
