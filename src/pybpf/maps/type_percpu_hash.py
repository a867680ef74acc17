"""``BPF_MAP_TYPE_PERCPU_HASH`` (``kernel/bpf/hashtab.c``).

Storage and semantics: :mod:`pybpf.maps.htab`."""

from __future__ import annotations

from pybpf.maps.htab import HtabOps
from pybpf.maps.ops import register_map_ops
from pybpf.uapi import BPF_MAP_TYPE_PERCPU_HASH


class PercpuHashOps(HtabOps):
    map_type = BPF_MAP_TYPE_PERCPU_HASH
    percpu = True
    lru = False
    percpu_values = True
    in_place = True  # htab_map_update_elem_in_place


register_map_ops(PercpuHashOps())
