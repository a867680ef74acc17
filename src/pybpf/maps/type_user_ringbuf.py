"""``BPF_MAP_TYPE_USER_RINGBUF`` (``kernel/bpf/ringbuf.c``, ``user_ringbuf_map_ops``).

The BPF ring buffer run in the other direction: user space produces records, a program
consumes them with ``bpf_user_ringbuf_drain`` (:mod:`pybpf.helpers.dynptr`). The storage
is :class:`~pybpf.maps.type_ringbuf.RingBufMap`'s, byte for byte — position pages, data
mapped twice, 8-byte record headers ``u32 len | BUSY | DISCARD``, ``u32`` pad — because
the kernel shares it too; only who writes which position differs:

- user space owns ``producer_pos`` and the data (:class:`UserRingBuffer`, libbpf's
  ``user_ring_buffer__reserve``/``submit``/``discard``);
- the kernel owns ``consumer_pos``: the drain advances it, and wakes writers waiting for
  room (``wakeup_fd``, what ``epoll`` on the map fd reports as ``EPOLLOUT`` in Linux).

Creation rules are the ring buffer's (key and value size 0, ``max_entries`` a power of
two and a multiple of the page size, only ``BPF_F_NUMA_NODE``); element commands are
``ENOTSUPP``; programs reach the map only through ``bpf_user_ringbuf_drain`` (the
verifier's map/helper compatibility table).
"""

from __future__ import annotations

from pybpf.maps.ops import register_map_ops
from pybpf.maps.type_ringbuf import RingBufOps
from pybpf.uapi import BPF_MAP_TYPE_USER_RINGBUF


class UserRingBufOps(RingBufOps):
    map_type = BPF_MAP_TYPE_USER_RINGBUF


register_map_ops(UserRingBufOps())
