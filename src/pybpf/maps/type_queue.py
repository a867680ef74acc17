"""``BPF_MAP_TYPE_QUEUE`` (``kernel/bpf/queue_stack_maps.c``).

Storage and semantics: :mod:`pybpf.maps.queue_stack`."""

from __future__ import annotations

from pybpf.maps.ops import register_map_ops
from pybpf.maps.queue_stack import QueueStackOps
from pybpf.uapi import BPF_MAP_TYPE_QUEUE


class QueueOps(QueueStackOps):
    map_type = BPF_MAP_TYPE_QUEUE
    is_stack = False


register_map_ops(QueueOps())
