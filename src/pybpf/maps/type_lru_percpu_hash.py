"""``BPF_MAP_TYPE_LRU_PERCPU_HASH`` (``kernel/bpf/hashtab.c``).

Storage and semantics: :mod:`pybpf.maps.htab`."""

from __future__ import annotations

from pybpf.maps.htab import HtabOps
from pybpf.maps.ops import register_map_ops
from pybpf.uapi import BPF_MAP_TYPE_LRU_PERCPU_HASH


class LruPercpuHashOps(HtabOps):
    map_type = BPF_MAP_TYPE_LRU_PERCPU_HASH
    percpu = True
    lru = True
    percpu_values = True


register_map_ops(LruPercpuHashOps())
