"""Allocated objects: ``bpf_obj_new_impl``, ``bpf_obj_drop_impl``, ``bpf_refcount_acquire_impl``.

A program may allocate an object of one of its *own* BTF types (``bpf_obj_new(struct foo)``
passes ``bpf_core_type_id_local(struct foo)`` as a ``__k`` constant). The verifier types the
result ``PTR_TO_BTF_ID | MEM_ALLOC`` of the program's BTF, a new reference (maybe NULL)
that must reach ``bpf_obj_drop`` (or a map's kptr field, or a graph collection) before the
program exits. Reads and writes go through ``btf_struct_access`` of the program's BTF,
which refuses to touch the object's special fields (``bpf_refcount``, list / rbtree nodes,
spin locks, kptrs) directly.

The kernel describes those special fields once per BTF, at ``BPF_BTF_LOAD``
(``btf_parse_struct_metas``): a struct gets a ``btf_struct_meta`` when a member is of one of
the special struct types or is a kptr. :func:`btf_find_struct_meta` computes the same,
lazily, and keeps it on the parsed BTF.

After verification ``fixup_kfunc_call`` passes what the kernel's allocator needs in the
``__ign`` arguments: ``r1 = size`` of the type for ``bpf_obj_new``, and the struct meta
(``ld_imm64 r2``) for all three. pybpf's meta "address" is a small handle
(:data:`STRUCT_METAS`) the run-time side (:mod:`pybpf.helpers.kfunc_alloc`) resolves.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import TYPE_CHECKING, Any

from pybpf.btf.raw import BtfComposite, BtfDeclTag, BtfPtr, BtfStruct, BtfTypeTag
from pybpf.verifier.regs import (
    MEM_ALLOC,
    MEM_PERCPU,
    NON_OWN_REF,
    Reg,
    RegType,
    mark_known,
    mark_unknown,
    set_reg_btf,
)

if TYPE_CHECKING:
    from pybpf.isa.insn import Insn
    from pybpf.verifier.core import Verifier
    from pybpf.verifier.kfuncs import KfuncMeta

OBJ_NEW = "bpf_obj_new_impl"
PERCPU_OBJ_NEW = "bpf_percpu_obj_new_impl"
OBJ_DROP = "bpf_obj_drop_impl"
PERCPU_OBJ_DROP = "bpf_percpu_obj_drop_impl"
REFCOUNT_ACQUIRE = "bpf_refcount_acquire_impl"
#: the kfuncs this module verifies (``KF_bpf_obj_new_impl`` … of ``special_kfunc_list``)
ALLOC_KFUNCS = frozenset({OBJ_NEW, PERCPU_OBJ_NEW, OBJ_DROP, PERCPU_OBJ_DROP, REFCOUNT_ACQUIRE})
#: ``BPF_GLOBAL_PERCPU_MA_MAX_SIZE``: the largest type ``bpf_percpu_obj_new`` allocates
PERCPU_OBJ_MAX_SIZE = 512
#: kfuncs whose R0 is an allocated object although BTF says ``void *``
ALLOC_RET_KFUNCS = frozenset({OBJ_NEW, PERCPU_OBJ_NEW, REFCOUNT_ACQUIRE})

#: ``alloc_obj_fields``: a member of one of these struct types gives its struct a meta
ALLOC_OBJ_FIELDS = {
    # name: (btf_field_type_name, size)
    "bpf_spin_lock": ("bpf_spin_lock", 4),
    "bpf_list_head": ("bpf_list_head", 16),
    "bpf_list_node": ("bpf_list_node", 24),
    "bpf_rb_root": ("bpf_rb_root", 16),
    "bpf_rb_node": ("bpf_rb_node", 32),
    "bpf_refcount": ("bpf_refcount", 4),
}
ALLOC_OBJ_FIELD_NAMES = frozenset(ALLOC_OBJ_FIELDS)
KPTR_TAG_NAMES = {"kptr": "kptr", "kptr_untrusted": "kptr", "percpu_kptr": "percpu_kptr"}


@dataclass(frozen=True)
class BtfField:
    """One ``struct btf_field``: kind (``btf_field_type_name``), offset, size, and for a
    graph root (``contains:<type>:<node>``) its ``graph_root``: the BTF and id of the
    value type and the offset of the node member in it."""

    kind: str
    offset: int
    size: int
    contains: tuple[str, str] | None = None
    value_btf_id: int = 0
    node_offset: int = 0
    root_btf: Any = dc_field(default=None, compare=False, repr=False)
    kptr_tag: str = ""  # a kptr's type tag: kptr, kptr_untrusted, percpu_kptr


NODE_OF_ROOT = {"bpf_list_head": "bpf_list_node", "bpf_rb_root": "bpf_rb_node"}


def parse_graph_root(btf: Any, kind: str, off: int, contains: tuple[str, str] | None) -> BtfField | None:
    """``btf_parse_graph_root``: the ``contains`` tag must name a struct of the same BTF and
    a member of it of the matching node type; None when it does not (Linux then refuses
    the BTF / the map with EINVAL)."""
    size = ALLOC_OBJ_FIELDS[kind][1]
    if contains is None:
        return None
    vname, nname = contains
    vids = [i for i in btf.find_all(vname) if isinstance(btf.types[i], BtfStruct)]
    if not vids:
        return None
    vt = btf.types[vids[0]]
    for m in vt.members:
        if m.name != nname:
            continue
        mt = btf.types[m.type]
        if not isinstance(mt, BtfStruct) or mt.name != NODE_OF_ROOT[kind] or m.bit_offset % 8:
            return None
        return BtfField(kind, off, size, contains, vids[0], m.bit_offset // 8, btf)
    return None


@dataclass(frozen=True)
class StructMeta:
    """``struct btf_struct_meta``: a program type's special fields (its ``btf_record``)."""

    btf_id: int
    name: str
    size: int
    fields: tuple[BtfField, ...]
    handle: int

    def field(self, kind: str) -> BtfField | None:
        return next((f for f in self.fields if f.kind == kind), None)

    @property
    def refcount_off(self) -> int:
        f = self.field("bpf_refcount")
        return f.offset if f is not None else -1


#: handle → meta: the "address" ``fixup_kfunc_call`` loads into the ``meta__ign`` register
STRUCT_METAS: list[StructMeta] = []


def _contains_tag(btf: Any, struct_id: int, member_idx: int) -> tuple[str, str] | None:
    for t in btf.types:
        if isinstance(t, BtfDeclTag) and t.type == struct_id and t.component_idx == member_idx \
                and t.name.startswith("contains:"):
            parts = t.name[len("contains:"):].split(":")
            if len(parts) == 2:
                return parts[0], parts[1]
    return None


def _kptr_field(btf: Any, tid: int, off: int) -> BtfField | None:
    """A kptr member (``PTR -> TYPE_TAG kptr* -> struct``) at ``off``: its field, with the
    tag and the pointee's type id; None for any other member."""
    t = btf.types[tid]
    if not isinstance(t, BtfPtr):
        return None
    tag = btf.types[t.type]
    if not isinstance(tag, BtfTypeTag) or tag.name not in KPTR_TAG_NAMES:
        return None
    pointee = tag.type
    while isinstance(btf.types[pointee], (BtfTypeTag,)) or btf.types[pointee].kind.name in (
            "CONST", "VOLATILE", "RESTRICT", "TYPEDEF"):
        pointee = btf.types[pointee].type
    return BtfField(KPTR_TAG_NAMES[tag.name], off, 8, value_btf_id=pointee, kptr_tag=tag.name)


def _parse_meta(btf: Any, tid: int, handle: int) -> StructMeta | None:
    """``btf_parse_fields`` with ``alloc_obj_fields``: the special structs at any depth
    (maps/btf_record.py: ``find_struct_fields``) and the top-level kptrs."""
    from pybpf.errors import BpfError
    from pybpf.maps.btf_record import find_struct_fields

    t = btf.types[tid]
    if not isinstance(t, BtfStruct):
        return None
    try:
        found = find_struct_fields(btf.types, tid, ALLOC_OBJ_FIELD_NAMES)
    except BpfError:
        return None
    fields: list[BtfField] = []
    for f in found:
        if f.name in NODE_OF_ROOT:
            root = parse_graph_root(btf, f.name, f.offset, _contains_tag(btf, f.tag_holder, f.tag_idx))
            if root is None:
                return None
            fields.append(root)
        else:
            fields.append(BtfField(f.name, f.offset, ALLOC_OBJ_FIELDS[f.name][1]))
    for m in t.members:
        kptr = _kptr_field(btf, m.type, m.bit_offset // 8)
        if kptr is not None:
            fields.append(kptr)
    if not fields:
        return None
    return StructMeta(tid, t.name, t.size, tuple(sorted(fields, key=lambda f: f.offset)), handle)


def btf_find_struct_meta(btf: Any, tid: int) -> StructMeta | None:
    """``btf_find_struct_meta``: the program type's special fields, or None when it has
    none (the kernel then passes a NULL meta and allocates a plain object)."""
    if btf is None:
        return None
    cache: dict[int, StructMeta | None] | None = getattr(btf, "_pybpf_struct_metas", None)
    if cache is None:
        cache = {}
        btf._pybpf_struct_metas = cache
    if tid not in cache:
        meta = None
        if 0 < tid < len(btf.types):
            meta = _parse_meta(btf, tid, len(STRUCT_METAS) + 1)
            if meta is not None:
                STRUCT_METAS.append(meta)
        cache[tid] = meta
    return cache[tid]


def meta_by_handle(handle: int) -> StructMeta | None:
    return STRUCT_METAS[handle - 1] if 0 < handle <= len(STRUCT_METAS) else None


# -- argument checking (check_kfunc_args) ---------------------------------------------------

def is_kfunc_arg_alloc_obj(pname: str) -> bool:
    return len(pname) > len("__alloc") and pname.endswith("__alloc")


def is_kfunc_arg_refcounted_kptr(pname: str) -> bool:
    return len(pname) > len("__refcounted_kptr") and pname.endswith("__refcounted_kptr")


def is_non_owning_ref(reg: Reg) -> bool:
    return bool(reg.type & NON_OWN_REF)


def type_is_ptr_alloc_obj(reg: Reg) -> bool:
    return reg.base == RegType.PTR_TO_BTF_ID and bool(reg.type & MEM_ALLOC)


def process_alloc_arg(v: Verifier, meta: KfuncMeta, reg: Reg, argno: int) -> None:
    """``KF_ARG_PTR_TO_ALLOC_BTF_ID``: the object ``bpf_obj_drop`` frees."""
    if reg.type == RegType.PTR_TO_BTF_ID | MEM_ALLOC:
        if meta.name != OBJ_DROP:
            v.fail(errno.EINVAL, f"arg#{argno} expected for bpf_obj_drop_impl()\n")
    elif reg.type == RegType.PTR_TO_BTF_ID | MEM_ALLOC | MEM_PERCPU:
        if meta.name != PERCPU_OBJ_DROP:
            v.fail(errno.EINVAL, f"arg#{argno} expected for bpf_percpu_obj_drop_impl()\n")
    else:
        v.fail(errno.EINVAL, f"arg#{argno} expected pointer to allocated object\n")
    if not reg.ref_obj_id:
        v.fail(errno.EINVAL, "allocated object must be referenced\n")
    meta.arg_btf, meta.arg_btf_id = reg.btf, reg.btf_id
    v.aux[v.insn_idx]["alloc_obj"] = (0, btf_find_struct_meta(reg.btf, reg.btf_id))  # the fixup's r2


def process_refcounted_arg(v: Verifier, meta: KfuncMeta, reg: Reg, argno: int) -> None:
    """``KF_ARG_PTR_TO_REFCOUNTED_KPTR``: an owning or non-owning reference to an object
    whose type has a ``bpf_refcount``."""
    if not type_is_ptr_alloc_obj(reg):
        v.fail(errno.EINVAL, f"arg#{argno} is neither owning or non-owning ref\n")
    if not is_non_owning_ref(reg):
        meta.arg_owning_ref = True
    rec = btf_find_struct_meta(reg.btf, reg.btf_id)
    if rec is None:
        v.fail(errno.EFAULT, "verifier bug: Couldn't find btf_record\n")
    assert rec is not None
    if rec.refcount_off < 0:
        v.fail(errno.EINVAL, f"arg#{argno} doesn't point to a type with bpf_refcount field\n")
    meta.arg_btf, meta.arg_btf_id = reg.btf, reg.btf_id


# -- the return value (check_kfunc_call) ---------------------------------------------------

def set_alloc_return(v: Verifier, meta: KfuncMeta, r0: Reg) -> None:
    """R0 of ``bpf_obj_new_impl`` (the program type named by the constant) and of
    ``bpf_refcount_acquire_impl`` (the argument's type)."""
    from pybpf.verifier.btf_info import prog_btf

    aux = v.aux[v.insn_idx]
    if meta.name == REFCOUNT_ACQUIRE:
        mark_unknown(r0)
        mark_known(r0, 0)
        r0.type = RegType.PTR_TO_BTF_ID | MEM_ALLOC
        set_reg_btf(r0, meta.arg_btf, meta.arg_btf_id)
        aux["alloc_obj"] = (0, btf_find_struct_meta(meta.arg_btf, meta.arg_btf_id))
        return
    value = meta.arg_constant or 0
    if value >> 32:
        v.fail(errno.EINVAL, "local type ID argument must be in range [0, U32_MAX]\n")
    btf = prog_btf(v)
    if btf is None:
        v.fail(errno.EINVAL, "bpf_obj_new/bpf_percpu_obj_new requires prog BTF\n")
    t = btf.types[value] if 0 <= value < len(btf.types) else None
    if not isinstance(t, BtfStruct) or value == 0:  # __btf_type_is_struct: no unions
        v.fail(errno.EINVAL, "bpf_obj_new/bpf_percpu_obj_new type ID argument must be of a struct\n")
    assert isinstance(t, BtfComposite)
    if meta.name == PERCPU_OBJ_NEW:
        check_percpu_obj_type(v, btf, t, value)
    smeta = btf_find_struct_meta(btf, value)
    mark_unknown(r0)
    mark_known(r0, 0)
    r0.type = RegType.PTR_TO_BTF_ID | MEM_ALLOC | (MEM_PERCPU if meta.name == PERCPU_OBJ_NEW else 0)
    set_reg_btf(r0, btf, value)
    aux["alloc_obj"] = (t.size, smeta)


def check_percpu_obj_type(v: Verifier, btf: Any, t: BtfComposite, tid: int) -> None:
    """What ``bpf_percpu_obj_new`` may allocate: at most ``BPF_GLOBAL_PERCPU_MA_MAX_SIZE``
    bytes, no special fields, scalars only (the per-CPU copies are never freed field by
    field)."""
    from pybpf.verifier.kfuncs import _is_scalar_struct

    if t.size > PERCPU_OBJ_MAX_SIZE:
        v.fail(errno.EINVAL, f"bpf_percpu_obj_new type size ({t.size}) is greater than "
                             f"{PERCPU_OBJ_MAX_SIZE}\n")
    if btf_find_struct_meta(btf, tid) is not None:
        v.fail(errno.EINVAL, "bpf_percpu_obj_new type ID argument must not contain special fields\n")
    if not _is_scalar_struct(v, btf, t):
        v.fail(errno.EINVAL, "bpf_percpu_obj_new type ID argument must be of a struct of scalars\n")


def is_kfunc_ret_null(meta: KfuncMeta) -> bool:
    """``is_kfunc_ret_null``: ``bpf_refcount_acquire`` of an owning reference cannot fail."""
    from pybpf.helpers import kfuncs as K

    if meta.name == REFCOUNT_ACQUIRE and getattr(meta, "arg_owning_ref", False):
        return False
    return bool(meta.flags & K.KF_RET_NULL)


# -- btf_struct_access on an allocated object ------------------------------------------------

def check_alloc_field_access(reg: Reg, off: int, size: int) -> str | None:
    """``btf_struct_access``'s first step for ``MEM_ALLOC`` objects: the special fields of
    the type are off limits to loads and stores. The log line, or None."""
    if not reg.type & MEM_ALLOC:
        return None
    rec = btf_find_struct_meta(reg.btf, reg.btf_id)
    if rec is None:
        return None
    for f in rec.fields:
        if off < f.offset + f.size and f.offset < off + size:
            return f"direct access to {f.kind} is disallowed\n"
    return None


# -- fixup_kfunc_call -----------------------------------------------------------------------

def fixup_alloc_call(ins: Insn, aux: dict[str, Any]) -> list[Insn] | None:
    """The kernel's rewrite of an allocator kfunc call: ``r1 = size`` (``bpf_obj_new``) and
    ``r2 = struct meta`` before the call. None when ``ins`` is not one."""
    from pybpf.isa.insn import Insn as _Insn
    from pybpf.isa.insn import ld_imm64

    info = aux.get("alloc_obj")
    if info is None:
        return None
    size, smeta = info
    handle = smeta.handle if smeta is not None else 0
    out: list[Insn] = []
    if aux.get("kfunc", (0, ""))[1] in (OBJ_NEW, PERCPU_OBJ_NEW):
        out.append(_Insn(0xB7, 1, 0, 0, size))  # BPF_MOV64_IMM(BPF_REG_1, size)
    return [*out, *ld_imm64(2, handle), ins]


__all__ = ["ALLOC_KFUNCS", "ALLOC_RET_KFUNCS", "STRUCT_METAS", "BtfField", "StructMeta",
           "btf_find_struct_meta", "check_alloc_field_access", "fixup_alloc_call",
           "is_kfunc_arg_alloc_obj", "is_kfunc_arg_refcounted_kptr", "is_kfunc_ret_null",
           "meta_by_handle", "process_alloc_arg", "process_refcounted_arg", "set_alloc_return"]
