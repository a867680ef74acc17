"""Every helper prototype pybpf knows, with its implementation attached.

Prototypes come from :mod:`pybpf.helpers.protos` (non-map helpers) and
:mod:`pybpf.helpers.maps` (``MAP_HELPERS``). Implementations are grouped one module per
helper family (``impls``, ``skb``, ``xdp``, ``trace``…): every module of this package that
defines ``IMPLS: dict[func_id, impl]`` contributes, the way program and map types
self-register. A new helper group is one new module; nothing here changes.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from functools import lru_cache

from pybpf.helpers.proto import FuncProto

_NOT_GROUPS = frozenset({"proto", "protos", "registry", "maps"})


def helper_impls() -> dict[int, Callable[..., int]]:
    """``func_id -> impl`` gathered from every helper-group module of this package."""
    import pybpf.helpers as pkg

    out: dict[int, Callable[..., int]] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name in _NOT_GROUPS or info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"pybpf.helpers.{info.name}")
        impls = getattr(mod, "IMPLS", None)
        if not isinstance(impls, dict):
            continue
        for fid, impl in impls.items():
            prev = out.get(fid)
            if prev is not None and prev is not impl:
                # the catch-all ``impls`` module yields to a dedicated group module
                if info.name == "impls":
                    continue
                if prev.__module__ != "pybpf.helpers.impls":
                    raise RuntimeError(f"helper {fid} implemented twice "
                                       f"({prev.__module__} and {mod.__name__})")
            out[fid] = impl
    return out


@lru_cache(maxsize=1)
def all_protos() -> dict[int, FuncProto]:
    from pybpf.helpers.protos import HELPER_PROTOS

    out = dict(HELPER_PROTOS)
    from pybpf.helpers.dynptr import PROTOS_BY_ID as DYNPTR_PROTOS  # the dynptr helpers' own table

    for fid, proto in DYNPTR_PROTOS.items():
        out.setdefault(fid, proto)
    from pybpf.helpers.btf_ptrs import protos_with_btf_ids  # BTF-pointer helpers and ids

    out.update(protos_with_btf_ids(out))
    for fid, impl in helper_impls().items():
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
