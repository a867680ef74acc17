"""``BPF_MAP_TYPE_LRU_HASH`` (``kernel/bpf/hashtab.c``).

Storage and semantics: :mod:`pybpf.maps.htab`."""

from __future__ import annotations

from pybpf.maps.htab import HtabOps
from pybpf.maps.ops import register_map_ops
from pybpf.uapi import BPF_MAP_TYPE_LRU_HASH


class LruHashOps(HtabOps):
    map_type = BPF_MAP_TYPE_LRU_HASH
    percpu = False
    lru = True
    percpu_values = False


register_map_ops(LruHashOps())
