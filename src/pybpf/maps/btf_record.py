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
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pybpf.btf.raw import BtfKind
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


@dataclass(frozen=True)
class ValueMember:
    """One top-level place of a map value: a struct member, or a variable of a DATASEC
    (global data: ``btf_find_datasec_var``). A ``contains:`` decl tag names it through
    ``tag_holder`` (the struct, or the VAR) and ``tag_idx`` (member index, or -1)."""

    type: int
    bit_offset: int
    tag_holder: int
    tag_idx: int
    size: int = 0  # a variable's size in its section (``expected_size``), 0 for a member


def value_members(types: list[Any], value_type_id: int) -> list[ValueMember]:
    """The members ``btf_parse_fields`` scans in a map value type: a struct's members or a
    DATASEC's variables; none for other types."""
    if not 0 < value_type_id < len(types):
        return []
    tid = value_type_id
    for _ in range(32):
        t = types[tid]
        if getattr(t, "kind", None) is None or t.kind.name not in _MODIFIER_KINDS:
            break
        tid = t.type
    t = types[tid]
    kind = getattr(getattr(t, "kind", None), "name", None)
    if kind == "STRUCT":
        return [ValueMember(m.type, m.bit_offset, tid, i) for i, m in enumerate(t.members)]
    if kind == "DATASEC":
        return [ValueMember(types[v.type].type, 8 * v.offset, v.type, -1, v.size) for v in t.vars
                if 0 < v.type < len(types) and types[v.type].kind.name == "VAR"]
    return []


#: ``btf_get_field_type``'s special structs: name -> (size, alignment)
FIELD_STRUCTS = {
    "bpf_spin_lock": (4, 4), "bpf_res_spin_lock": (4, 4), "bpf_timer": (16, 8),
    "bpf_wq": (16, 8), "bpf_task_work": (8, 8), "bpf_list_head": (16, 8),
    "bpf_list_node": (24, 8), "bpf_rb_root": (16, 8), "bpf_rb_node": (32, 8),
    "bpf_refcount": (4, 4),
}
#: at most one of each in a value (a second is E2BIG: ``seen_mask``)
UNIQUE_FIELDS = frozenset({"bpf_spin_lock", "bpf_res_spin_lock", "bpf_timer", "bpf_wq",
                           "bpf_task_work", "bpf_refcount"})
#: what an array may repeat (``btf_repeat_fields``; anything else repeated is EINVAL)
REPEATABLE_FIELDS = frozenset({"bpf_list_head", "bpf_rb_root"})
#: the special structs of a map value (``map_check_btf``'s mask; kptrs: :func:`find_kptrs`)
MAP_VALUE_FIELDS = frozenset(FIELD_STRUCTS) - {"bpf_list_node", "bpf_rb_node"}


@dataclass(frozen=True)
class StructField:
    """A special struct found in a value: its name, offset and the member (or variable)
    that holds it, for a ``contains:`` decl tag (``tag_holder``, ``tag_idx``)."""

    name: str
    offset: int
    tag_holder: int
    tag_idx: int


def find_struct_fields(types: list[Any], value_type_id: int, names: frozenset[str]
                       ) -> list[StructField]:
    """``btf_find_field`` for the special structs ``names`` of a struct or DATASEC value:
    members and variables, arrays of them (flattened; only graph roots may repeat) and
    structs nested in them, at most 32 deep. Sorted by offset. Raises :class:`BpfError`
    as the kernel fails: E2BIG for a second lock / timer / ..., EINVAL for a repeated
    field that may not repeat or a member at a bit offset, EFAULT for a misplaced lock."""
    seen: set[str] = set()

    def one(tid: int, off: int, holder: int, idx: int, expected: int, level: int) -> list[StructField]:
        try:
            t, nelems = _flatten_array(types, tid)
        except _RecordError:
            raise BpfError(errno.E2BIG, "array nesting too deep") from None
        if nelems == 0 or t.kind.name != "STRUCT":
            return []
        if t.name in names:
            size, align = FIELD_STRUCTS[t.name]
            if t.name in UNIQUE_FIELDS:
                if t.name in seen:
                    raise BpfError(errno.E2BIG, f"more than one {t.name} in the value")
                seen.add(t.name)
            if (expected and expected != size * nelems) or t.size != size:
                return []
            if off % align:
                if t.name == BPF_SPIN_LOCK_NAME:  # BTF_LOAD refuses it so (EFAULT)
                    raise BpfError(errno.EFAULT, "misplaced bpf_spin_lock")
                return []
            found = [StructField(t.name, off, holder, idx)]
        elif t.name in FIELD_STRUCTS:  # a special struct outside the mask: opaque
            return []
        else:
            if expected and expected != t.size * nelems:
                return []
            if level + 1 >= MAX_RESOLVE_DEPTH:
                raise BpfError(errno.E2BIG, "struct nesting too deep")
            found = []
            for i, m in enumerate(t.members):
                if m.bit_offset % 8:
                    raise BpfError(errno.EINVAL, "member at a bit offset")
                found += one(m.type, off + m.bit_offset // 8, t.id, i, 0, level + 1)
        if nelems > 1 and found:
            if any(f.name not in REPEATABLE_FIELDS for f in found):
                raise BpfError(errno.EINVAL, "only graph roots may be repeated in an array")
            found = [StructField(f.name, f.offset + i * t.size, f.tag_holder, f.tag_idx)
                     for i in range(nelems) for f in found]
        return found

    out: list[StructField] = []
    for m in value_members(types, value_type_id):
        if m.bit_offset % 8:
            raise BpfError(errno.EINVAL, "member at a bit offset")
        out += one(m.type, m.bit_offset // 8, m.tag_holder, m.tag_idx, m.size, 0)
    return sorted(out, key=lambda f: f.offset)


def record_parse_error(btf: Any, value_type_id: int) -> str | None:
    """Why ``btf_parse_fields`` fails for a map value (bad layouts, a graph root without a
    valid ``contains`` tag or without a lock, both kinds of lock), or None. Linux then
    creates the map with its BTF but without a record: no lock, no root, no kptr."""
    from pybpf.verifier.graph import map_graph_roots

    try:
        found = find_struct_fields(_parsed(btf).types, value_type_id, MAP_VALUE_FIELDS)
        map_graph_roots(btf, value_type_id)
    except (BpfError, ValueError) as exc:
        return str(exc)
    names = {f.name for f in found}
    if names & {"bpf_list_head", "bpf_rb_root"} and BPF_SPIN_LOCK_NAME not in names:
        return "a bpf_list_head / bpf_rb_root needs a bpf_spin_lock"
    if {BPF_SPIN_LOCK_NAME, "bpf_res_spin_lock"} <= names:
        return "bpf_spin_lock and bpf_res_spin_lock in one value"
    return None


def find_spin_lock(btf: Any, value_type_id: int) -> int:
    """Offset of the value's ``struct bpf_spin_lock`` (at any depth), or -1.

    Raises :class:`BpfError` as ``btf_parse_fields`` fails (E2BIG, EFAULT, EINVAL).
    """
    return find_special_field(btf, value_type_id, BPF_SPIN_LOCK_NAME, SIZEOF_BPF_SPIN_LOCK, 4)


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


def find_special_field(btf: Any, value_type_id: int, struct_name: str, size: int,
                       align: int = 8) -> int:
    """Offset of the ``struct <struct_name>`` of a map value type (BTF), or -1 — one field
    of the kernel's ``btf_parse_fields`` (:func:`find_struct_fields`; ``size`` and
    ``align`` are the struct's, as in :data:`FIELD_STRUCTS`)."""
    if btf is None:
        return -1
    found = find_struct_fields(_parsed(btf).types, value_type_id, frozenset({struct_name}))
    return found[0].offset if found else -1


def find_timer(btf: Any, value_type_id: int) -> int:
    """The ``struct bpf_timer`` of a map value, or -1: recorded as ``("timer", off, 16)``
    in ``bmap.btf_record`` for the verifier's ``process_timer_func``."""
    return find_special_field(btf, value_type_id, BPF_TIMER_NAME, SIZEOF_BPF_TIMER)


SIZEOF_BPF_TASK_WORK = 8
BPF_TASK_WORK_NAME = "bpf_task_work"
#: map types whose values may hold a ``bpf_task_work`` (``map_check_btf``)
TASK_WORK_MAP_TYPES = frozenset({1, 2, 9})  # hash, array, lru hash


SIZEOF_BPF_RES_SPIN_LOCK = 4


def find_res_spin_lock(bmap: Any, btf: Any, value_type_id: int, spin_lock_off: int) -> int:
    """The ``struct bpf_res_spin_lock`` of a map value, or -1: recorded as
    ``("res_spin_lock", off, 4)``. The map types that may hold a ``bpf_spin_lock`` may hold
    one (EOPNOTSUPP elsewhere); a value may not hold both kinds of lock (EINVAL)."""
    off = find_special_field(btf, value_type_id, "bpf_res_spin_lock", SIZEOF_BPF_RES_SPIN_LOCK,
                             align=4)
    if off < 0:
        return -1
    if spin_lock_off >= 0:
        raise BpfError(errno.EINVAL, "bpf_spin_lock and bpf_res_spin_lock in one value")
    if bmap.map_type not in SPIN_LOCK_MAP_TYPES:
        raise BpfError(errno.EOPNOTSUPP, "bpf_res_spin_lock not supported in this map type")
    return off


SIZEOF_BPF_WQ = 16
#: map types whose values may hold a ``bpf_wq`` (``map_check_btf``)
WQ_MAP_TYPES = frozenset({1, 2, 9})  # hash, array, lru hash


def find_wq(bmap: Any, btf: Any, value_type_id: int) -> int:
    """The ``struct bpf_wq`` of a map value, or -1: recorded as ``("wq", off, 16)`` for
    the verifier (verifier/async_work.py); EOPNOTSUPP in other map types."""
    off = find_special_field(btf, value_type_id, "bpf_wq", SIZEOF_BPF_WQ)
    if off >= 0 and bmap.map_type not in WQ_MAP_TYPES:
        raise BpfError(errno.EOPNOTSUPP, "bpf_wq not supported in this map type")
    return off


def find_task_work(bmap: Any, btf: Any, value_type_id: int) -> int:
    """The ``struct bpf_task_work`` of a map value, or -1: recorded as
    ``("task_work", off, 8)`` for the verifier (verifier/async_work.py). Only hash, LRU
    hash and array values may hold one (EOPNOTSUPP)."""
    off = find_special_field(btf, value_type_id, BPF_TASK_WORK_NAME, SIZEOF_BPF_TASK_WORK)
    if off >= 0 and bmap.map_type not in TASK_WORK_MAP_TYPES:
        raise BpfError(errno.EOPNOTSUPP, "bpf_task_work not supported in this map type")
    return off


#: ``btf_find_kptr``: the type tag on a pointer member names the kind of kptr (``uptr``,
#: user-space pointers of task storage, is not supported by pybpf: refused like a map type
#: that may not hold it)
KPTR_TAGS = {"kptr_untrusted": "kptr_untrusted", "kptr": "kptr", "percpu_kptr": "percpu_kptr"}
#: struct names ``btf_get_field_type`` matches before it considers a member a kptr
SPECIAL_STRUCTS = frozenset({"bpf_spin_lock", "bpf_timer", "bpf_wq", "bpf_list_head",
                             "bpf_list_node", "bpf_rb_root", "bpf_rb_node", "bpf_refcount",
                             "bpf_task_work"})
#: kernel structs with a destructor kfunc (``register_btf_id_dtor_kfuncs``): only these may
#: be referenced kptrs (``btf_find_dtor_kfunc`` is also the whitelist), each with its dtor
KPTR_DTORS = {
    "task_struct": "bpf_task_release_dtor",
    "cgroup": "bpf_cgroup_release_dtor",
    "bpf_cpumask": "bpf_cpumask_release_dtor",
    "bpf_crypto_ctx": "bpf_crypto_ctx_release_dtor",
    "prog_test_ref_kfunc": "bpf_kfunc_call_test_release_dtor",
    "prog_test_member": "bpf_kfunc_call_memb_release_dtor",
}
#: map types whose values may hold kptrs (``map_check_btf``)
KPTR_MAP_TYPES = frozenset({1, 2, 5, 6, 9, 10, 24, 28, 29, 32})
MAX_RESOLVE_DEPTH = 32


@dataclass(frozen=True)
class KptrInfo:
    """One kptr field of a map value: kind, offset, the pointee's name and its id in the
    map's own BTF (the verifier resolves the name in vmlinux BTF, else uses the local id)."""

    kind: str
    offset: int
    name: str
    type_id: int


class _RecordError(Exception):
    """``btf_parse_fields`` failed: Linux then gives the map no record at all."""


def _find_kptr(types: list[Any], t: Any, off: int) -> KptrInfo | None:
    """``btf_find_kptr`` for a member of type ``t`` at ``off``: None when it is no kptr."""
    if t.kind.name == "VOLATILE":  # modifiers on the pointer itself
        t = types[t.type]
    if t.kind.name != "PTR":
        return None
    tag = types[t.type]
    if tag.kind.name != "TYPE_TAG" or tag.kind_flag:
        return None
    if types[tag.type].kind.name == "TYPE_TAG" or tag.name not in KPTR_TAGS:
        raise _RecordError(f"unsupported type tag {tag.name!r} on a map value pointer")
    pointee = _skip_modifiers(types, tag.type)
    pid = tag.type
    while types[pid] is not pointee:
        pid = types[pid].type
    if pointee.kind.name != "STRUCT":
        raise _RecordError("a kptr must point to a struct")
    return KptrInfo(KPTR_TAGS[tag.name], off, str(pointee.name), pid)


def _flatten_array(types: list[Any], tid: int) -> tuple[Any, int]:
    """The element type of (nested) arrays and how many elements in all (1: no array)."""
    t, nelems = types[tid], 1
    for _ in range(MAX_RESOLVE_DEPTH):
        if t.kind.name != "ARRAY":
            return t, nelems
        nelems *= t.nelems
        t = types[t.type]
    raise _RecordError("array nesting too deep")


def _find_struct_kptrs(types: list[Any], members: Any, level: int) -> list[KptrInfo]:
    """``btf_find_struct_field`` restricted to kptrs: members (of a struct, or a map
    value's :func:`value_members`), arrays of them (flattened and repeated) and nested
    structs, offsets relative to their holder."""
    out: list[KptrInfo] = []
    for member in members:
        bit_off = member.bit_offset
        if bit_off % 8:
            raise _RecordError("member at a bit offset")
        off = bit_off // 8
        t, nelems = _flatten_array(types, member.type)
        if nelems == 0:
            continue
        if t.kind.name == "STRUCT":
            if t.name in SPECIAL_STRUCTS:
                continue
            if level + 1 >= MAX_RESOLVE_DEPTH:
                raise _RecordError("struct nesting too deep")
            inner = _find_struct_kptrs(types, t.members, level + 1)
            out += [KptrInfo(k.kind, off + i * t.size + k.offset, k.name, k.type_id)
                    for i in range(nelems) for k in inner]
            continue
        if off % 8:  # btf_find_field_one skips a misaligned candidate
            continue
        found = _find_kptr(types, t, off)
        if found is not None:
            out += [KptrInfo(found.kind, off + 8 * i, found.name, found.type_id)
                    for i in range(nelems)]
    return out


def find_kptrs(btf: Any, value_type_id: int) -> list[KptrInfo]:
    """The kptr fields of a map value type (``btf_parse_fields`` with ``BPF_KPTR``): a
    pointer member whose pointee carries a ``kptr``/``kptr_untrusted``/``percpu_kptr`` type
    tag (``struct foo __kptr *p`` is ``PTR -> TYPE_TAG "kptr" -> STRUCT foo``), also inside
    nested structs and arrays, sorted by offset.

    BTF Linux cannot parse into a record (another tag, a pointee that is no struct) leaves
    the map without kptrs, as it leaves it without any record (pybpf keeps the lock and
    timer fields, found separately). Raises ``ENOENT`` for a referenced kptr of a kernel
    struct without a destructor, which Linux refuses already at ``BPF_BTF_LOAD``.
    """
    if btf is None:
        return []
    parsed = _parsed(btf)
    types = parsed.types if parsed is not None else []
    try:
        found = _find_struct_kptrs(types, value_members(types, value_type_id), 0)
    except _RecordError:
        return []
    return sorted(found, key=lambda k: k.offset)


def check_kptr_pointees(found: list[KptrInfo], vmlinux: Any) -> None:
    """``btf_parse_kptr``: a referenced kptr of a kernel struct needs its destructor
    (``ENOENT`` otherwise). Names vmlinux does not have are the program's own types
    (``bpf_obj_new`` objects), which need none."""
    if vmlinux is None:
        return
    for k in found:
        if k.kind == "kptr" and k.name not in KPTR_DTORS and vmlinux.find_all(k.name, BtfKind.STRUCT):
            raise BpfError(errno.ENOENT, f"no destructor kfunc for referenced kptr to struct {k.name}")


BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG = 1 << 7, 1 << 8


def check_graph_record(bmap: Any, value_type_id: int, spin_lock_off: int) -> dict[int, Any]:
    """``btf_parse_fields`` / ``map_check_btf`` for the ``bpf_list_head`` / ``bpf_rb_root``
    members of a map value (:func:`pybpf.verifier.graph.map_graph_roots`): a root needs a
    valid ``contains`` tag and a ``bpf_spin_lock`` beside it (``EINVAL``), and a map type
    that may hold it (``EOPNOTSUPP``). Offset → field."""
    from pybpf.verifier.graph import GRAPH_MAP_TYPES, map_graph_roots

    if bmap.btf is None:
        return {}
    try:
        roots = map_graph_roots(bmap.btf, value_type_id)
    except ValueError as exc:
        raise BpfError(errno.EINVAL, str(exc)) from None
    if not roots:
        return {}
    if spin_lock_off < 0:
        raise BpfError(errno.EINVAL, "a bpf_list_head / bpf_rb_root needs a bpf_spin_lock")
    if bmap.map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG):
        raise BpfError(errno.EACCES, "a map with graph roots may not be read- or write-only for programs")
    if bmap.map_type not in GRAPH_MAP_TYPES:
        raise BpfError(errno.EOPNOTSUPP, "graph roots are not supported in this map type")
    return {f.offset: f for f in roots}


def check_kptr_record(bmap: Any, value_type_id: int) -> list[KptrInfo]:
    """``map_check_btf`` for the kptr fields of a map being created: the map type must be
    one that may hold them (``EOPNOTSUPP``), the program may not be limited to reading or
    writing it (``EACCES``), and referenced kernel kptrs need a destructor (``ENOENT``)."""
    found = find_kptrs(bmap.btf, value_type_id)
    if not found:
        return found
    if bmap.map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG):
        raise BpfError(errno.EACCES, "a map with kptrs may not be read- or write-only for programs")
    if bmap.map_type not in KPTR_MAP_TYPES:
        raise BpfError(errno.EOPNOTSUPP, "kptrs are not supported in this map type")
    obj = getattr(getattr(bmap, "kernel", None), "vmlinux_btf", None)
    try:
        vmlinux = obj.parsed() if obj is not None else None
    except (OSError, ValueError):
        vmlinux = None
    check_kptr_pointees(found, vmlinux)
    return found


# --------------------------------------------------------------------------------------
# Kptr slots seen from user space: copy_map_value / bpf_obj_free_fields
# --------------------------------------------------------------------------------------

#: what pybpf runs when a map drops a *referenced* kptr it holds (the kernel's
#: ``bpf_obj_free_fields`` → the pointee's destructor kfunc, ``KPTR_DTORS``): pointee
#: struct name → callable taking the pointer. An object model that counts references
#: registers its release here; untrusted kptrs are only cleared, never released.
KPTR_DTOR_HOOKS: dict[str, Callable[[int], None]] = {}
PERCPU_VALUE_MAP_TYPES = frozenset({5, 6, 10})  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
_U64 = struct.Struct("<Q")


def _value_period(bmap: Any) -> int:
    """Distance between consecutive values in a syscall buffer: per-CPU maps hand one
    ``round_up(value_size, 8)`` copy per CPU, the others ``value_size`` per element."""
    return int(bmap.value_stride if bmap.map_type in PERCPU_VALUE_MAP_TYPES else bmap.value_size)


def zero_kptr_slots(bmap: Any, data: bytes) -> bytes:
    """``copy_map_value`` skips special fields and ``check_and_init_map_value`` clears them:
    the value(s) in ``data`` with every kptr slot zeroed."""
    period = _value_period(bmap)
    out = bytearray(data)
    for base in range(0, len(out) - bmap.value_size + 1, period):
        for field in bmap.kptr_fields.values():
            out[base + field.offset:base + field.offset + 8] = bytes(8)
        for root in getattr(bmap, "graph_fields", {}).values():
            out[base + root.offset:base + root.offset + root.size] = bytes(root.size)
    return bytes(out)


def bpf_obj_free_fields(bmap: Any, data: bytes | None) -> int:
    """Drop the kptrs held by the value(s) ``data`` of an element leaving the map or being
    overwritten: referenced ones go to their destructor hook. Returns how many were
    released."""
    if not data:
        return 0
    period = _value_period(bmap)
    released = 0
    for base in range(0, len(data) - bmap.value_size + 1, period):
        for field in bmap.kptr_fields.values():
            ptr = _U64.unpack_from(data, base + field.offset)[0]
            if not ptr or field.kind == "kptr_untrusted":
                continue
            hook = KPTR_DTOR_HOOKS.get(field.name)
            if hook is not None:
                hook(ptr)
            else:  # the program's own objects (bpf_obj_new, bpf_percpu_obj_new)
                from pybpf.helpers.kfunc_alloc import drop_object, drop_percpu_object

                (drop_percpu_object if field.kind == "percpu_kptr" else drop_object)(ptr)
            released += 1
        for root in getattr(bmap, "graph_fields", {}).values():  # bpf_list_head_free & co.
            from pybpf.helpers.kfunc_graph import free_root

            free_root(_U64.unpack_from(data, base + root.offset)[0], root)
    return released



class KptrFieldOps:
    """The map type's ops, wrapped for a map whose values hold kptrs: the syscall / Python
    side never reads nor writes the kptr slots, and an element that is overwritten or
    deleted (or the whole map, when freed) releases the objects it held. Everything else
    (the program side, flags, layouts) is the wrapped ops' own."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _held(self, bmap: Any, key: bytes | None) -> bytes | None:
        """The element's raw value(s), kptr slots included, or None when absent."""
        try:
            return bytes(self.inner.sys_lookup(bmap, key, 0))
        except BpfError:
            return None

    def sys_lookup(self, bmap: Any, key: bytes, flags: int, *rest: Any) -> bytes:
        return zero_kptr_slots(bmap, self.inner.sys_lookup(bmap, key, flags, *rest))

    def sys_update(self, bmap: Any, key: bytes, value: bytes, flags: int) -> None:
        with bmap.lock:
            old = self._held(bmap, key)
            self.inner.sys_update(bmap, key, zero_kptr_slots(bmap, value), flags)
        bpf_obj_free_fields(bmap, old)

    def sys_delete(self, bmap: Any, key: bytes) -> None:
        with bmap.lock:
            old = self._held(bmap, key)
            self.inner.sys_delete(bmap, key)
        bpf_obj_free_fields(bmap, old)

    # -- program side: bpf_map_update_elem / bpf_map_delete_elem copy the same way --------
    def map_update_elem(self, bmap: Any, key_addr: int, value_addr: int, flags: int,
                        *rest: Any) -> int:
        if bmap.map_type in PERCPU_VALUE_MAP_TYPES:  # one CPU's copy: left to the map type
            return int(self.inner.map_update_elem(bmap, key_addr, value_addr, flags, *rest))
        from pybpf.runtime.memory import REGISTRY

        try:
            self.sys_update(bmap, REGISTRY.read(key_addr, bmap.key_size),
                            REGISTRY.read(value_addr, bmap.value_size), flags)
        except BpfError as exc:
            return -(exc.errno or errno.EINVAL)
        return 0

    def map_delete_elem(self, bmap: Any, key_addr: int, *rest: Any) -> int:
        if bmap.map_type in PERCPU_VALUE_MAP_TYPES:
            return int(self.inner.map_delete_elem(bmap, key_addr, *rest))
        from pybpf.runtime.memory import REGISTRY

        try:
            self.sys_delete(bmap, REGISTRY.read(key_addr, bmap.key_size))
        except BpfError as exc:
            return -(exc.errno or errno.EINVAL)
        return 0

    def sys_lookup_and_delete(self, bmap: Any, key: bytes | None, flags: int) -> bytes:
        data = self.inner.sys_lookup_and_delete(bmap, key, flags)
        bpf_obj_free_fields(bmap, data)
        return zero_kptr_slots(bmap, data)

    def sys_lookup_batch(self, bmap: Any, *args: Any) -> Any:
        res = self.inner.sys_lookup_batch(bmap, *args)
        res.values = zero_kptr_slots(bmap, res.values)
        return res

    def sys_lookup_and_delete_batch(self, bmap: Any, *args: Any) -> Any:
        res = self.inner.sys_lookup_and_delete_batch(bmap, *args)
        bpf_obj_free_fields(bmap, res.values)
        res.values = zero_kptr_slots(bmap, res.values)
        return res

    def sys_update_batch(self, bmap: Any, keys: bytes, values: bytes, count: int,
                         elem_flags: int, flags: int) -> Any:
        from pybpf.maps.batch import generic_update_batch
        return generic_update_batch(self, bmap, keys, values, count, elem_flags, flags)  # type: ignore[arg-type]

    def sys_delete_batch(self, bmap: Any, keys: bytes, count: int, elem_flags: int,
                         flags: int) -> Any:
        from pybpf.maps.batch import generic_delete_batch
        return generic_delete_batch(self, bmap, keys, count, elem_flags, flags)  # type: ignore[arg-type]

    def map_free(self, bmap: Any) -> None:
        """``bpf_map_free_record`` after every element's ``bpf_obj_free_fields``."""
        key: bytes | None = None
        seen = 0
        while seen <= bmap.max_entries:
            try:
                key = bytes(self.inner.sys_get_next_key(bmap, key))
            except BpfError:
                break
            bpf_obj_free_fields(bmap, self._held(bmap, key))
            seen += 1
        self.inner.map_free(bmap)


def install_kptr_field_ops(bmap: Any) -> None:
    """Give a map with kptr fields the :class:`KptrFieldOps` view of its ops, and no
    syscall-side fast paths (they copy whole values)."""
    if not (getattr(bmap, "kptr_fields", None) or getattr(bmap, "graph_fields", None)) \
            or isinstance(bmap.ops, KptrFieldOps):
        return
    bmap.ops = KptrFieldOps(bmap.ops)
    bmap.fast_lookup = bmap.fast_update = bmap.fast_delete = None
    bmap.make_fast_paths = _no_fast_paths


def _no_fast_paths() -> None:
    """``make_fast_paths`` of a map with kptr fields: every copy goes through the ops."""
