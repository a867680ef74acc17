"""Special fields of a map value described by BTF (the kernel's ``btf_record``).

When a map is created with ``btf_value_type_id``, the kernel (``map_check_btf`` →
``btf_parse_fields``) scans the value struct's members for special types. pybpf handles
the one user space can observe through map commands: ``struct bpf_spin_lock``. Its
offset becomes ``bmap.spin_lock_off`` and the map gets a record, which changes
behaviour everywhere:

- ``BPF_F_LOCK`` lookups/updates become legal (EINVAL without a lock);
- copies to user space have the lock word zeroed, updates never overwrite it;
- ``BPF_MAP_FREEZE`` and ``mmap`` are refused (``ENOTSUPP``);
- only some map types may hold a lock (others: ``EOPNOTSUPP``).

Errors (as Linux 6.18): a lock in a map type without support → ``EOPNOTSUPP``. Linux
already refuses BTF with two locks in one struct (``E2BIG``) or a misaligned lock
(``EFAULT``) at ``BPF_BTF_LOAD``; should such BTF reach a map here (a BTF object pybpf
accepted, or a parsed blob given to ``Map.create``), creation fails with those errnos.
"""

from __future__ import annotations

import errno
from typing import Any

from pybpf.errors import BpfError
from pybpf.uapi import (
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_CGROUP_STORAGE,
    BPF_MAP_TYPE_CGRP_STORAGE,
    BPF_MAP_TYPE_HASH,
    BPF_MAP_TYPE_INODE_STORAGE,
    BPF_MAP_TYPE_SK_STORAGE,
    BPF_MAP_TYPE_TASK_STORAGE,
)

BPF_SPIN_LOCK_NAME = "bpf_spin_lock"
SIZEOF_BPF_SPIN_LOCK = 4

#: Map types whose values may contain a ``struct bpf_spin_lock`` (``map_check_btf``).
SPIN_LOCK_MAP_TYPES = frozenset({
    BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_CGROUP_STORAGE,
    BPF_MAP_TYPE_SK_STORAGE, BPF_MAP_TYPE_INODE_STORAGE, BPF_MAP_TYPE_TASK_STORAGE,
    BPF_MAP_TYPE_CGRP_STORAGE,
})

_MODIFIER_KINDS = ("TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG")


def _parsed(btf: Any) -> Any:
    """A :class:`pybpf.btf.raw.Btf` from a kernel BTF object or a parsed blob."""
    parsed = getattr(btf, "parsed", None)
    return parsed() if callable(parsed) else btf


def _skip_modifiers(types: list[Any], tid: int) -> Any:
    t = types[tid]
    for _ in range(32):
        if getattr(t, "kind", None) is None or t.kind.name not in _MODIFIER_KINDS:
            break
        t = types[t.type]
    return t


def find_spin_lock(btf: Any, value_type_id: int) -> int:
    """Offset of the ``struct bpf_spin_lock`` member of the value type, or -1.

    Raises :class:`BpfError` as ``btf_parse_fields`` fails (E2BIG, EINVAL).
    """
    types = _parsed(btf).types
    if not 0 < value_type_id < len(types):
        return -1
    value = _skip_modifiers(types, value_type_id)
    if getattr(value, "kind", None) is None or value.kind.name != "STRUCT":
        return -1
    found = -1
    for member in value.members:
        mtype = _skip_modifiers(types, member.type)
        if mtype.kind.name != "STRUCT" or mtype.name != BPF_SPIN_LOCK_NAME:
            continue
        if found >= 0:
            raise BpfError(errno.E2BIG, "more than one bpf_spin_lock in the value")
        off = member.bit_offset // 8
        if member.bit_offset % 8 or mtype.size != SIZEOF_BPF_SPIN_LOCK or \
                off % SIZEOF_BPF_SPIN_LOCK:
            raise BpfError(errno.EFAULT, "misplaced or mis-sized bpf_spin_lock")
        found = off
    return found


def apply_btf_record(bmap: Any, btf: Any, value_type_id: int) -> int:
    """Parse the value's record and check the map type may hold it; the lock offset."""
    if btf is None or not value_type_id:
        return -1
    off = find_spin_lock(btf, value_type_id)
    if off >= 0 and bmap.map_type not in SPIN_LOCK_MAP_TYPES:
        raise BpfError(errno.EOPNOTSUPP, "bpf_spin_lock not supported in this map type")
    return off


SIZEOF_BPF_TIMER = 16
BPF_TIMER_NAME = "bpf_timer"


def find_timer(btf: Any, value_type_id: int) -> int:
    """Offset of the ``struct bpf_timer`` member of a map value type (BTF), or -1 — the
    ``BPF_TIMER`` field of the kernel's ``btf_parse_fields`` (top-level members only; a
    second timer is ``-E2BIG``, a misaligned one ``-EINVAL``, both raised as BpfError).

    The map layer records it as ``("timer", off, 16)`` in ``bmap.btf_record`` for the
    verifier's ``process_timer_func``.
    """
    parsed = btf.parsed() if hasattr(btf, "parsed") else btf
    types = parsed.types
    if btf is None or not 0 < value_type_id < len(types):
        return -1

    def skip(tid: int) -> Any:
        t = types[tid]
        while t.kind.name in ("TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG"):
            t = types[t.type]
        return t

    value = skip(value_type_id)
    if value.kind.name != "STRUCT":
        return -1
    found = -1
    for member in value.members:
        mtype = skip(member.type)
        if mtype.kind.name != "STRUCT" or mtype.name != BPF_TIMER_NAME:
            continue
        if found >= 0:
            raise BpfError(errno.E2BIG, "more than one bpf_timer in the value")
        if member.bit_offset % 64 or mtype.size != SIZEOF_BPF_TIMER:
            raise BpfError(errno.EINVAL, "misaligned or mis-sized bpf_timer")
        found = member.bit_offset // 8
    return found


#: ``btf_parse_kptr``: the type tag on a pointer member names the kind of kptr
KPTR_TAGS = {"kptr_untrusted": "kptr_untrusted", "kptr": "kptr", "percpu_kptr": "percpu_kptr"}


def find_kptrs(btf: Any, value_type_id: int) -> list[tuple[str, int, str]]:
    """``(kind, offset, pointee struct name)`` of every kptr member of a map value type:
    a pointer whose pointee carries a ``kptr``/``kptr_untrusted``/``percpu_kptr`` type tag
    (``int __kptr *`` is ``PTR -> TYPE_TAG "kptr" -> STRUCT``). Top-level members only; a
    misaligned one is ``EINVAL``, as ``btf_parse_fields`` refuses it."""
    parsed = _parsed(btf)
    types = parsed.types if parsed is not None else []
    if btf is None or not 0 < value_type_id < len(types):
        return []
    value = _skip_modifiers(types, value_type_id)
    if value.kind.name != "STRUCT":
        return []
    out = []
    for member in value.members:
        t = types[member.type]
        while t.kind.name in ("TYPEDEF", "VOLATILE", "CONST", "RESTRICT"):
            t = types[t.type]
        if t.kind.name != "PTR":
            continue
        tag = types[t.type]
        if tag.kind.name != "TYPE_TAG" or tag.name not in KPTR_TAGS:
            continue
        pointee = _skip_modifiers(types, tag.type)
        if member.bit_offset % 64:
            raise BpfError(errno.EINVAL, f"misaligned kptr {member.name}")
        out.append((KPTR_TAGS[tag.name], member.bit_offset // 8, str(pointee.name)))
    return out
