"""``BPF_MAP_TYPE_PROG_ARRAY``: programs for ``bpf_tail_call`` (fd array of programs).

A syscall lookup returns the program id. All programs stored must share the program
type of the first one (``bpf_prog_map_compatible``), else EINVAL. Semantics and layout:
:mod:`pybpf.maps.fdarray`; ``object_at(bmap, index)`` is what the tail-call helper uses.
"""

from __future__ import annotations

import errno
from typing import Any

from pybpf.errors import BpfError
from pybpf.maps.fdarray import FdArrayMap, FdArrayOps
from pybpf.maps.ops import register_map_ops
from pybpf.uapi import BPF_MAP_TYPE_PROG_ARRAY


class ProgArrayOps(FdArrayOps):
    map_type = BPF_MAP_TYPE_PROG_ARRAY
    fd_kind = "prog"
    has_sys_lookup = True
    has_meta_equal = False  # cannot be a map-in-map template (ENOTSUPP)

    def check_object(self, bmap: FdArrayMap, obj: Any) -> Any:
        prog_type = getattr(obj, "prog_type", getattr(obj, "type", None))
        if prog_type is not None:
            if bmap.owner_prog_type is None:
                bmap.owner_prog_type = prog_type
            elif bmap.owner_prog_type != prog_type:
                raise BpfError(errno.EINVAL)
        return obj


register_map_ops(ProgArrayOps())
