"""The map side of the ``BPF_MAP_*`` commands (``kernel/bpf/syscall.c``), after fd lookup.

``map_lookup_elem`` … ``map_*_batch`` here apply what ``syscall.c`` checks before calling
into the map type — flag validation, the fd's read/write permission (``map_get_sys_perms``:
``BPF_F_RDONLY``/``WRONLY`` and a frozen map lose write), ``BPF_F_LOCK`` without a spin
lock, ``writecnt`` for FREEZE — and dispatch through the ops table. The syscall layer
calls them with the fd's mode; the Python :class:`~pybpf.maps.api.Map` uses the map's
creation flags. Errors raise :class:`~pybpf.errors.BpfError`.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pybpf.errors import BpfError
from pybpf.maps.batch import BatchResult
from pybpf.uapi import BPF_F_LOCK, BPF_F_RDONLY, BPF_F_WRONLY

if TYPE_CHECKING:
    from pybpf.maps.core import BpfMap


def default_perms(bmap: BpfMap) -> tuple[bool, bool]:
    """(can_read, can_write) of an fd created by MAP_CREATE (``bpf_get_file_flag``)."""
    return not bmap.create_flags & BPF_F_WRONLY, not bmap.create_flags & BPF_F_RDONLY


def _check_perms(bmap: BpfMap, read: bool, write: bool, can_read: bool | None,
                 can_write: bool | None) -> None:
    if can_read is None or can_write is None:
        can_read, can_write = default_perms(bmap)
    if bmap.frozen:
        can_write = False
    if (read and not can_read) or (write and not can_write):
        raise BpfError(errno.EPERM)


def _check_lock(bmap: BpfMap, flags: int) -> None:
    if flags & BPF_F_LOCK and bmap.spin_lock_off < 0:
        raise BpfError(errno.EINVAL)


def map_lookup_elem(bmap: BpfMap, key: bytes, flags: int = 0, value: bytes | None = None,
                    can_read: bool | None = None, can_write: bool | None = None) -> bytes:
    if flags & ~BPF_F_LOCK:
        raise BpfError(errno.EINVAL)
    _check_perms(bmap, True, False, can_read, can_write)
    _check_lock(bmap, flags)
    return bmap.ops.sys_lookup(bmap, key, flags, value)  # type: ignore[call-arg]


def map_update_elem(bmap: BpfMap, key: bytes, value: bytes, flags: int = 0,
                    can_read: bool | None = None, can_write: bool | None = None) -> None:
    with _write_active(bmap):
        _check_perms(bmap, False, True, can_read, can_write)
        _check_lock(bmap, flags)
        bmap.ops.sys_update(bmap, key, value, flags)


def map_delete_elem(bmap: BpfMap, key: bytes, can_read: bool | None = None,
                    can_write: bool | None = None) -> None:
    with _write_active(bmap):
        _check_perms(bmap, False, True, can_read, can_write)
        bmap.ops.sys_delete(bmap, key)


def map_get_next_key(bmap: BpfMap, key: bytes | None, can_read: bool | None = None,
                     can_write: bool | None = None) -> bytes:
    _check_perms(bmap, True, False, can_read, can_write)
    return bmap.ops.sys_get_next_key(bmap, key)


def map_lookup_and_delete_elem(bmap: BpfMap, key: bytes | None, flags: int = 0,
                               can_read: bool | None = None,
                               can_write: bool | None = None) -> bytes:
    if flags & ~BPF_F_LOCK:
        raise BpfError(errno.EINVAL)
    with _write_active(bmap):
        _check_perms(bmap, True, True, can_read, can_write)
        if flags and getattr(bmap.ops, "lookup_is_peek", False) and \
                getattr(bmap.ops, "push_via_update", False) and \
                not getattr(bmap.ops, "lookup_reads_value", False):
            raise BpfError(errno.EINVAL)  # queue/stack take no flags
        _check_lock(bmap, flags)
        return bmap.ops.sys_lookup_and_delete(bmap, key, flags)


def map_freeze(bmap: BpfMap, can_read: bool | None = None,
               can_write: bool | None = None) -> None:
    from pybpf.uapi import BPF_MAP_TYPE_STRUCT_OPS

    if bmap.map_type == BPF_MAP_TYPE_STRUCT_OPS or bmap.has_record:
        raise BpfError(524)
    _check_perms(bmap, False, True, can_read, can_write)
    bmap.freeze()


def map_batch(bmap: BpfMap, cmd: str, *, in_batch: bytes | None = None, keys: bytes = b"",
              values: bytes = b"", count: int = 0, elem_flags: int = 0, flags: int = 0,
              can_read: bool | None = None, can_write: bool | None = None) -> BatchResult:
    """``bpf_map_do_batch``: ``cmd`` is lookup, lookup_and_delete, update or delete."""
    has_read = cmd in ("lookup", "lookup_and_delete")
    has_write = cmd != "lookup"
    ops = bmap.ops
    if has_write:
        bmap.writecnt += 1
    try:
        _check_perms(bmap, has_read, has_write, can_read, can_write)
        if cmd == "lookup":
            return ops.sys_lookup_batch(bmap, in_batch, count, elem_flags, flags)  # type: ignore[attr-defined]
        if cmd == "lookup_and_delete":
            return ops.sys_lookup_and_delete_batch(bmap, in_batch, count, elem_flags, flags)  # type: ignore[attr-defined]
        if cmd == "update":
            return ops.sys_update_batch(bmap, keys, values, count, elem_flags, flags)  # type: ignore[attr-defined]
        return ops.sys_delete_batch(bmap, keys, count, elem_flags, flags)  # type: ignore[attr-defined]
    finally:
        if has_write:
            bmap.writecnt -= 1


class _write_active:
    def __init__(self, bmap: BpfMap) -> None:
        self.bmap = bmap

    def __enter__(self) -> None:
        self.bmap.writecnt += 1

    def __exit__(self, *exc: object) -> None:
        self.bmap.writecnt -= 1
