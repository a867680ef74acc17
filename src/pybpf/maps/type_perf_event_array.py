"""``BPF_MAP_TYPE_PERF_EVENT_ARRAY``: per-CPU perf ring buffers for ``bpf_perf_event_output``.

An fd array (see :mod:`pybpf.maps.fdarray`) of :class:`PerfEvent` objects. In Linux a
slot holds a perf event opened by user space with ``PERF_COUNT_SW_BPF_OUTPUT``; here a
:class:`PerfEvent` is that event plus its mmap'ed ring, in native memory:

    page 0   perf_event_mmap_page: u64 data_head at 1024, u64 data_tail at 1032
    pages 1… data (2^n pages) holding records:
      PERF_RECORD_SAMPLE (9): u32 type, u16 misc, u16 size, u32 raw_size, raw bytes
                              (raw_size = round_up(size + 4, 8) - 4, zero padded)
      PERF_RECORD_LOST   (2): header, u64 id, u64 lost

``bpf_perf_event_output`` writes to the slot of the current CPU (``BPF_F_CURRENT_CPU``)
or of an explicit index: E2BIG past the end, ENOENT for an empty slot, EOPNOTSUPP when
the event is on another CPU, ENOSPC (and a lost-record count) when the ring is full.
:class:`pybpf.maps.perf_reader.PerfBuffer` is the user-space reader.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import threading

from pybpf.maps.common import PAGE_SIZE
from pybpf.maps.fdarray import FdArrayMap, FdArrayOps
from pybpf.maps.ops import register_map_ops
from pybpf.runtime.memory import REGISTRY, MemoryRegistry, Region
from pybpf.uapi import BPF_MAP_TYPE_PERF_EVENT_ARRAY

PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
DATA_HEAD_OFF = 1024
DATA_TAIL_OFF = 1032
_Q = struct.Struct("<Q")
_HDR = struct.Struct("<IHH")


class PerfEvent:
    """A BPF-output perf event bound to ``cpu`` with a ring of ``page_cnt`` data pages."""

    def __init__(self, cpu: int, page_cnt: int = 8, mem: MemoryRegistry = REGISTRY,
                 wakeup_fd: int = -1) -> None:
        if page_cnt <= 0 or page_cnt & (page_cnt - 1):
            raise ValueError("page_cnt must be a power of two")
        self.cpu = cpu
        self.size = page_cnt * PAGE_SIZE
        self.mem = mem
        self.region: Region = mem.alloc(PAGE_SIZE + self.size, f"perf ring cpu{cpu}")
        self.mv = self.region.mv
        self.lost = 0
        self.id = 0
        self.wakeup_fd = wakeup_fd
        self.lock = threading.Lock()

    @property
    def addr(self) -> int:
        return self.region.start

    def head(self) -> int:
        return _Q.unpack_from(self.mv, DATA_HEAD_OFF)[0]

    def tail(self) -> int:
        return _Q.unpack_from(self.mv, DATA_TAIL_OFF)[0]

    def _write(self, pos: int, data: bytes) -> None:
        size = self.size
        off = pos % size
        first = min(len(data), size - off)
        base = PAGE_SIZE
        self.mv[base + off:base + off + first] = data[:first]
        if first < len(data):
            self.mv[base:base + len(data) - first] = data[first:]

    def output(self, data: bytes) -> int:
        """Append a sample; 0 or -ENOSPC (the loss is reported in a later LOST record)."""
        raw_size = ((len(data) + 4 + 7) & ~7) - 4
        rec = _HDR.pack(PERF_RECORD_SAMPLE, 0, 8 + 4 + raw_size) + \
            raw_size.to_bytes(4, "little") + data + bytes(raw_size - len(data))
        with self.lock:
            head, tail = self.head(), self.tail()
            need = len(rec) + (24 if self.lost else 0)
            if head + need - tail >= self.size:  # CIRC_SPACE: the ring never fills up
                self.lost += 1
                return -errno.ENOSPC
            if self.lost:
                lost = _HDR.pack(PERF_RECORD_LOST, 0, 24) + _Q.pack(self.id) + _Q.pack(self.lost)
                self._write(head, lost)
                head += 24
                self.lost = 0
            self._write(head, rec)
            _Q.pack_into(self.mv, DATA_HEAD_OFF, head + len(rec))
        if self.wakeup_fd >= 0:
            with contextlib.suppress(OSError):
                os.eventfd_write(self.wakeup_fd, 1)
        return 0

    def close(self) -> None:
        self.mem.remove(self.region)


class PerfEventArrayOps(FdArrayOps):
    map_type = BPF_MAP_TYPE_PERF_EVENT_ARRAY
    fd_kind = "perf_event"

    def output(self, bmap: FdArrayMap, index: int, cpu: int, data: bytes) -> int:
        """``__bpf_perf_event_output`` for ``index`` (already resolved from the flags)."""
        if index >= bmap.max_entries:
            return -errno.E2BIG
        event = bmap.objects[index]
        if event is None:
            return -errno.ENOENT
        if not isinstance(event, PerfEvent) or event.cpu != cpu:
            return -errno.EOPNOTSUPP
        return event.output(data)


register_map_ops(PerfEventArrayOps())
