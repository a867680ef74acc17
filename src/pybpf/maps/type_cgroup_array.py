"""``BPF_MAP_TYPE_CGROUP_ARRAY``: cgroups by fd (fd array; no syscall lookup → ENOTSUPP).

pybpf has no cgroups of its own: the syscall layer's resolver decides what a cgroup fd
means (kind ``"cgroup"``). Semantics: :mod:`pybpf.maps.fdarray`.
"""

from __future__ import annotations

from pybpf.maps.fdarray import FdArrayOps
from pybpf.maps.ops import register_map_ops
from pybpf.uapi import BPF_MAP_TYPE_CGROUP_ARRAY


class CgroupArrayOps(FdArrayOps):
    map_type = BPF_MAP_TYPE_CGROUP_ARRAY
    fd_kind = "cgroup"


register_map_ops(CgroupArrayOps())
