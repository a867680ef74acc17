"""``BPF_MAP_TYPE_HASH`` (``kernel/bpf/hashtab.c``).

Storage and semantics: :mod:`pybpf.maps.htab`."""

from __future__ import annotations

from pybpf.maps.htab import HtabOps
from pybpf.maps.ops import register_map_ops
from pybpf.uapi import BPF_MAP_TYPE_HASH


class HashOps(HtabOps):
    map_type = BPF_MAP_TYPE_HASH
    percpu = False
    lru = False
    percpu_values = False


register_map_ops(HashOps())
