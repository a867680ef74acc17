"""Every helper prototype pybpf knows: map helpers (from :mod:`pybpf.helpers.maps` when the maps
engineer's module provides ``MAP_HELPERS``) over the non-map ones in :mod:`pybpf.helpers.protos`,
with implementations attached from :mod:`pybpf.helpers.impls`."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

from pybpf.helpers.proto import FuncProto


@lru_cache(maxsize=1)
def all_protos() -> dict[int, FuncProto]:
    from pybpf.helpers.impls import IMPLS
    from pybpf.helpers.protos import HELPER_PROTOS

    out = dict(HELPER_PROTOS)
    for fid, impl in IMPLS.items():
        if fid in out and out[fid].impl is None:
            out[fid] = dataclasses.replace(out[fid], impl=impl)
    try:
        from pybpf.helpers.maps import MAP_HELPERS
    except ImportError:
        MAP_HELPERS = {}
    for fid, proto in dict(MAP_HELPERS).items():
        mine = out.get(fid)
        if mine is not None and proto.impl is not None:
            out[fid] = dataclasses.replace(mine, impl=proto.impl)
        elif mine is None:
            out[fid] = proto
    return out
