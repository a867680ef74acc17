"""Batch operations: the result record and the kernel's generic implementations.

``generic_map_lookup_batch`` / ``generic_map_update_batch`` / ``generic_map_delete_batch``
(``kernel/bpf/syscall.c``) walk a map with ``get_next_key`` and the single-element
operations. Their user-visible rules, kept here exactly:

- ``count == 0`` → nothing happens, 0 returned, ``count`` not written;
- ``elem_flags`` other than ``BPF_F_LOCK`` → EINVAL; ``BPF_F_LOCK`` on a value without a
  spin lock → EINVAL;
- lookup: the walk starts after the key in ``in_batch`` (from the first key when NULL);
  elements that vanish between ``get_next_key`` and the lookup are skipped; the walk ends
  with ENOENT when keys run out; ``out_batch`` holds the last key visited when anything was
  copied; ``count`` is the number copied;
- update/delete: elements are processed in order and the first error stops the batch,
  ``count`` tells how many succeeded.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pybpf.errors import BpfError
from pybpf.uapi import BPF_F_LOCK

if TYPE_CHECKING:
    from pybpf.maps.base import BaseMapOps
    from pybpf.maps.core import BpfMap


@dataclass
class BatchResult:
    """What a batch command writes back: ``count``, ``out_batch`` and the data, plus errno.

    ``err`` is 0 or the errno the command returns *after* writing ``count`` (and
    ``out_batch`` when it is not ``None``), like ``-ENOENT`` at the end of a walk.
    """

    count: int = 0
    keys: bytes = b""
    values: bytes = b""
    out_batch: bytes | None = None
    err: int = 0
    count_written: bool = True


def check_elem_flags(bmap: BpfMap, elem_flags: int) -> None:
    if elem_flags & ~BPF_F_LOCK:
        raise BpfError(errno.EINVAL)
    if elem_flags & BPF_F_LOCK and bmap.spin_lock_off < 0:
        raise BpfError(errno.EINVAL)


def generic_lookup_batch(ops: BaseMapOps, bmap: BpfMap, in_batch: bytes | None, count: int,
                         elem_flags: int, flags: int) -> BatchResult:
    check_elem_flags(bmap, elem_flags)
    if not count:
        return BatchResult(count_written=False)
    keys: list[bytes] = []
    values: list[bytes] = []
    prev: bytes | None = in_batch
    err = 0
    while len(keys) < count:
        try:
            key = ops.sys_get_next_key(bmap, prev)
        except BpfError as exc:
            err = exc.errno or errno.EINVAL
            break
        try:
            value = ops.sys_lookup(bmap, key, elem_flags)
        except BpfError as exc:
            if exc.errno != errno.ENOENT:
                raise
        else:
            keys.append(key)
            values.append(value)
        prev = key
    return BatchResult(len(keys), b"".join(keys), b"".join(values),
                       prev if keys else None, err)


def generic_update_batch(ops: BaseMapOps, bmap: BpfMap, keys: bytes, values: bytes,
                         count: int, elem_flags: int, flags: int) -> BatchResult:
    check_elem_flags(bmap, elem_flags)
    if not count:
        return BatchResult(count_written=False)
    ks, vs = bmap.key_size, ops.sys_value_size(bmap)
    done = 0
    err = 0
    for i in range(count):
        key = keys[i * ks:(i + 1) * ks]
        value = values[i * vs:(i + 1) * vs]
        if len(key) < ks or len(value) < vs:
            err = errno.EFAULT
            break
        try:
            ops.sys_update(bmap, key, value, elem_flags)
        except BpfError as exc:
            err = exc.errno or errno.EINVAL
            break
        done += 1
    return BatchResult(done, err=err)


def generic_delete_batch(ops: BaseMapOps, bmap: BpfMap, keys: bytes, count: int,
                         elem_flags: int, flags: int) -> BatchResult:
    check_elem_flags(bmap, elem_flags)
    if not count:
        return BatchResult(count_written=False)
    ks = bmap.key_size
    done = 0
    err = 0
    for i in range(count):
        key = keys[i * ks:(i + 1) * ks]
        if len(key) < ks:
            err = errno.EFAULT
            break
        try:
            ops.sys_delete(bmap, key)
        except BpfError as exc:
            err = exc.errno or errno.EINVAL
            break
        done += 1
    return BatchResult(done, err=err)
