"""Maps whose values are kernel objects given by fd (``kernel/bpf/arraymap.c`` fd arrays,
``map_in_map.c``, ``hashtab.c``'s HASH_OF_MAPS).

From ``bpf()`` a value is a ``u32`` file descriptor going in and an object id coming out
(programs get the object itself). Which fd table a number refers to is the syscall
layer's business: it sets ``bmap.fd_resolver`` to ``resolve(fd, kind) -> object`` (kind
``"map"``, ``"prog"``, ``"perf_event"`` or ``"cgroup"``), raising ``BpfError(EBADF)`` /
``BpfError(EINVAL)`` as ``__bpf_map_get`` / ``bpf_prog_get`` would. Python code can store
objects directly (:meth:`FdSlotsMixin.put_object`), skipping fds.

Native layout of the fd arrays: ``header.data`` -> ``max_entries`` u64 slots holding the
object's address (a map's header address, a program's native handle or 0), which is
what ``bpf_tail_call`` and map-in-map lookups read.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.errors import BpfError
from pybpf.maps.common import ENOTSUPP

if TYPE_CHECKING:
    from pybpf.maps.core import BpfMap, MapAttr


def resolve_fd(bmap: BpfMap, fd: int, kind: str) -> Any:
    resolver = bmap.fd_resolver
    if resolver is None:
        raise BpfError(errno.EBADF, f"no fd table to resolve {kind} fd {fd}")
    return resolver(fd, kind)


def object_addr(obj: Any) -> int:
    """The address programs see for an object stored in an fd map."""
    addr = getattr(obj, "addr", None)
    if isinstance(addr, int):
        return addr
    return id(obj)


def object_id(obj: Any) -> int:
    return int(getattr(obj, "id", 0))


def map_meta_equal(meta: BpfMap, inner: BpfMap) -> bool:
    """``bpf_map_meta_equal`` / ``array_map_meta_equal`` (max_entries unless INNER_MAP)."""
    from pybpf.uapi import BPF_F_INNER_MAP, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY

    same = (meta.map_type == inner.map_type and meta.key_size == inner.key_size
            and meta.value_size == inner.value_size and meta.map_flags == inner.map_flags
            and meta.spin_lock_off == inner.spin_lock_off)
    if same and meta.map_type in (BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY) \
            and not meta.map_flags & BPF_F_INNER_MAP:
        same = meta.max_entries == inner.max_entries
    return same


def check_inner_map(attr: MapAttr) -> None:
    """``bpf_map_meta_alloc``: the template map given by ``inner_map_fd``."""
    inner = attr.inner_map
    if inner is None:
        raise BpfError(errno.EBADF, "map-in-map needs inner_map_fd")
    if inner.inner_map_meta is not None:
        raise BpfError(errno.EINVAL, "map-in-map nesting is limited to one level")
    if not getattr(inner.ops, "has_meta_equal", True):
        raise BpfError(ENOTSUPP)


def get_inner_map(outer: BpfMap, obj: Any) -> BpfMap:
    """``bpf_map_fd_get_ptr``: ``obj`` must match the outer map's template."""
    from pybpf.maps.core import BpfMap

    if not isinstance(obj, BpfMap):
        raise BpfError(errno.EINVAL)
    meta = outer.inner_map_meta
    if meta is None or not map_meta_equal(meta, obj):
        raise BpfError(errno.EINVAL)
    return obj
