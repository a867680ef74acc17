"""``BPF_MAP_TYPE_STACK`` (``kernel/bpf/queue_stack_maps.c``).

Storage and semantics: :mod:`pybpf.maps.queue_stack`."""

from __future__ import annotations

from pybpf.maps.ops import register_map_ops
from pybpf.maps.queue_stack import QueueStackOps
from pybpf.uapi import BPF_MAP_TYPE_STACK


class StackOps(QueueStackOps):
    map_type = BPF_MAP_TYPE_STACK
    is_stack = True


register_map_ops(StackOps())
