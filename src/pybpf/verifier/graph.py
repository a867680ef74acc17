"""Graph collections: ``bpf_list_head`` / ``bpf_list_node`` and ``bpf_rb_root`` / ``bpf_rb_node``.

A map value (or an allocated object) may hold the root of a list or rbtree whose nodes are
``bpf_obj_new`` objects of the type its ``__contains(type, node)`` tag names. Linux 6.18
checks, as this module does:

- a root argument points to a map value or a referenced allocated object, at a constant
  offset where the record has such a root, and the ``bpf_spin_lock`` of that same
  allocation is held (``check_reg_allocation_locked``: the held lock's map / BTF and id
  equal the register's);
- a node argument is an owning reference to an object of the root's value type, at the
  offset of its node member;
- inserting (``bpf_list_push_*_impl``, ``bpf_rbtree_add_impl``) hands ownership to the
  collection: every register holding the node becomes a *non-owning* reference
  (``NON_OWN_REF``, plus ``MEM_RCU`` for refcounted types), readable and writable until
  ``bpf_spin_unlock`` invalidates it (``invalidate_non_owning_refs``);
- removing (``bpf_list_pop_*``, ``bpf_rbtree_remove``) returns a new owning reference
  (maybe NULL) to the node's object, peeking (``bpf_list_front/back``,
  ``bpf_rbtree_first/root/left/right``) a non-owning one (maybe NULL).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.btf.raw import BtfStruct
from pybpf.verifier.alloc_obj import (
    NODE_OF_ROOT,
    BtfField,
    _contains_tag,
    btf_find_struct_meta,
    parse_graph_root,
)
from pybpf.verifier.regs import (
    MEM_ALLOC,
    MEM_RCU,
    NON_OWN_REF,
    Reg,
    RegType,
    mark_known,
    mark_unknown,
)

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier
    from pybpf.verifier.kfuncs import KfuncMeta

LIST_PUSH = frozenset({"bpf_list_push_front_impl", "bpf_list_push_back_impl"})
LIST_API = LIST_PUSH | {"bpf_list_pop_front", "bpf_list_pop_back", "bpf_list_front", "bpf_list_back"}
RBTREE_ADD = "bpf_rbtree_add_impl"
RBTREE_REMOVE = "bpf_rbtree_remove"
RBTREE_API = frozenset({RBTREE_ADD, RBTREE_REMOVE, "bpf_rbtree_first", "bpf_rbtree_root",
                        "bpf_rbtree_left", "bpf_rbtree_right"})
#: the graph kfuncs this module verifies
GRAPH_KFUNCS = LIST_API | RBTREE_API
#: kfuncs whose node argument is checked (``check_kfunc_is_graph_node_api``)
NODE_API = {"bpf_list_node": LIST_PUSH, "bpf_rb_node": frozenset({RBTREE_ADD, RBTREE_REMOVE,
                                                                  "bpf_rbtree_left", "bpf_rbtree_right"})}
#: argument struct → ``enum kfunc_ptr_arg_type`` value (kfuncs.py numbering)
GRAPH_ARG_STRUCTS = {"bpf_list_head": 5, "bpf_list_node": 6, "bpf_rb_root": 11, "bpf_rb_node": 12}
#: graph-root map types (``map_check_btf``): hash, array, LRU hash
GRAPH_MAP_TYPES = frozenset({1, 2, 9})


# -- records ---------------------------------------------------------------------------

class _Record:
    """``reg_btf_record``'s answer: the special fields of a map value or an object."""

    def __init__(self, fields: list[BtfField], spin_lock_off: int) -> None:
        self.fields = fields
        self.spin_lock_off = spin_lock_off

    def find(self, off: int, kind: str) -> BtfField | None:
        """``btf_record_find``."""
        return next((f for f in self.fields if f.offset == off and f.kind == kind), None)


def map_graph_roots(btf: Any, value_type_id: int) -> list[BtfField]:
    """The ``bpf_list_head`` / ``bpf_rb_root`` members of a map value type with their
    ``contains`` targets (``btf_parse_fields`` for the graph roots). A root whose tag is
    missing or wrong raises ``ValueError`` (Linux refuses the map with EINVAL)."""
    if btf is None:
        return []
    from pybpf.maps.btf_record import find_struct_fields

    parsed = btf.parsed() if callable(getattr(btf, "parsed", None)) else btf
    out: list[BtfField] = []
    for f in find_struct_fields(parsed.types, value_type_id, frozenset(NODE_OF_ROOT)):
        root = parse_graph_root(parsed, f.name, f.offset, _contains_tag(parsed, f.tag_holder, f.tag_idx))
        if root is None:
            raise ValueError(f"{f.name} without a valid contains tag")
        out.append(root)
    return out


def reg_btf_record(v: Verifier, reg: Reg) -> _Record | None:
    if reg.type == RegType.PTR_TO_MAP_VALUE:
        m = reg.map_ptr
        rec = v.map_record(m) or []
        lock = next((off for kind, off, _ in rec if kind == "spin_lock"), -1)
        return _Record(list(getattr(m, "graph_fields", {}).values()), lock)
    if reg.base == RegType.PTR_TO_BTF_ID and reg.type & MEM_ALLOC:
        meta = btf_find_struct_meta(reg.btf, reg.btf_id)
        if meta is None:
            return None
        lock = next((f.offset for f in meta.fields if f.kind == "bpf_spin_lock"), -1)
        return _Record(list(meta.fields), lock)
    return None


def check_reg_allocation_locked(v: Verifier, reg: Reg) -> bool:
    """Is the lock of the allocation ``reg`` points into held? (6.18: a lock reference of
    the same map / BTF and id)."""
    if reg.type == RegType.PTR_TO_MAP_VALUE:
        ptr: Any = reg.map_ptr
    else:
        ptr = reg.btf
    locks = [r for r in v.state.refs if r.kind == "lock"]
    if not locks:
        return False
    for r in locks:
        held = r.ptr[0] if isinstance(r.ptr, tuple) else r.ptr
        if r.id == reg.id and held is ptr:
            return True
    v.verbose("held lock and object are not in the same allocation\n")
    return False


# -- arguments ---------------------------------------------------------------------------

def graph_arg_kind(ref_t: Any) -> int | None:
    if isinstance(ref_t, BtfStruct):
        return GRAPH_ARG_STRUCTS.get(ref_t.name)
    return None


def _const_off(v: Verifier, reg: Reg, regno: int, what: str) -> int:
    if reg.var_off.mask:
        v.fail(errno.EINVAL, f"R{regno} doesn't have constant offset. {what} has to be at the constant offset\n")
    return int(reg.off + reg.var_off.value)


def process_graph_root(v: Verifier, meta: KfuncMeta, reg: Reg, regno: int, argno: int, what: str) -> None:
    """``KF_ARG_PTR_TO_LIST_HEAD`` / ``KF_ARG_PTR_TO_RB_ROOT``."""
    if reg.type != RegType.PTR_TO_MAP_VALUE and reg.type != RegType.PTR_TO_BTF_ID | MEM_ALLOC:
        v.fail(errno.EINVAL, f"arg#{argno} expected pointer to map value or allocated object\n")
    if reg.type == RegType.PTR_TO_BTF_ID | MEM_ALLOC and not reg.ref_obj_id:
        v.fail(errno.EINVAL, "allocated object must be referenced\n")
    off = _const_off(v, reg, regno, what)
    rec = reg_btf_record(v, reg)
    f = rec.find(off, what) if rec is not None else None
    if f is None or rec is None:
        v.fail(errno.EINVAL, f"{what} not found at offset={off}\n")
    assert f is not None and rec is not None
    if not check_reg_allocation_locked(v, reg):
        v.fail(errno.EINVAL, f"bpf_spin_lock at off={rec.spin_lock_off} must be held for {what}\n")
    meta.graph_root = f


def process_graph_node(v: Verifier, meta: KfuncMeta, reg: Reg, regno: int, argno: int, what: str) -> None:
    """``KF_ARG_PTR_TO_LIST_NODE`` / ``KF_ARG_PTR_TO_RB_NODE``."""
    if what == "bpf_rb_node" and meta.name != RBTREE_ADD:
        if not reg.type & NON_OWN_REF and not reg.ref_obj_id:
            v.fail(errno.EINVAL, f"{meta.name} can only take non-owning or refcounted bpf_rb_node pointer\n")
        if in_rbtree_lock_required_cb(v):
            v.fail(errno.EINVAL, f"{meta.name} not allowed in rbtree cb\n")
    else:
        if reg.type != RegType.PTR_TO_BTF_ID | MEM_ALLOC:
            v.fail(errno.EINVAL, f"arg#{argno} expected pointer to allocated object\n")
        if not reg.ref_obj_id:
            v.fail(errno.EINVAL, "allocated object must be referenced\n")
    node_off = _const_off(v, reg, regno, what)
    rec = reg_btf_record(v, reg)
    if rec is None or rec.find(node_off, what) is None:
        v.fail(errno.EINVAL, f"{what} not found at offset={node_off}\n")
    root: BtfField | None = meta.graph_root
    assert root is not None
    root_name = root.contains[0] if root.contains else ""
    rname = reg.btf.types[reg.btf_id].name if reg.btf is not None else ""
    if not _same_type(reg.btf, reg.btf_id, root.root_btf, root.value_btf_id):
        head = "bpf_list_head" if what == "bpf_list_node" else "bpf_rb_root"
        v.fail(errno.EINVAL, f"operation on {head} expects arg#1 {what} at offset={root.node_offset} in "
                             f"struct {root_name}, but arg is at offset={node_off} in struct {rname}\n")
    meta.arg_btf, meta.arg_btf_id = reg.btf, reg.btf_id
    if node_off != root.node_offset:
        v.fail(errno.EINVAL, f"arg#1 offset={node_off}, but expected {what} at offset={root.node_offset} "
                             f"in struct {root_name}\n")


def _same_type(btf1: Any, id1: int, btf2: Any, id2: int) -> bool:
    """``btf_struct_ids_match(..., strict)`` for two program-BTF views: the map's BTF and
    the program's may be separate parses of the same blob."""
    if btf1 is None or btf2 is None:
        return False
    if btf1 is btf2:
        return id1 == id2
    try:
        t1, t2 = btf1.types[id1], btf2.types[id2]
    except IndexError:
        return False
    return id1 == id2 and t1.name == t2.name and getattr(t1, "size", 0) == getattr(t2, "size", 0)


# -- bpf_rbtree_add_impl's less() callback -------------------------------------------------

def in_rbtree_lock_required_cb(v: Verifier) -> bool:
    """Is the current frame a ``less`` callback of ``bpf_rbtree_add_impl``?"""
    for f in v.state.frames[1:]:
        if f.in_callback and 0 <= f.callsite < len(v.aux) and "rbtree_root" in v.aux[f.callsite]:
            return True
    return False


def set_rbtree_add_callback_state(v: Verifier, caller: Any, callee: Any, callsite: int) -> None:
    """``less(a, b)``: both arguments non-owning references to nodes of the root's type,
    R3–R5 unusable, R0 in [0, 1]."""
    from pybpf.verifier.regs import mark_not_init

    root = v.aux[callsite].get("rbtree_root")
    assert root is not None
    for regno in (1, 2):
        r = callee.regs[regno]
        mark_unknown(r)
        mark_known(r, 0)
        r.type = RegType.PTR_TO_BTF_ID | MEM_ALLOC
        r.btf, r.btf_id, r.off = root.root_btf, root.value_btf_id, root.node_offset
        r.btf_name = root.contains[0] if root.contains else ""
        ref_set_non_owning(r)
    for regno in (3, 4, 5):
        mark_not_init(callee.regs[regno])


def push_rbtree_less_callback(v: Verifier, meta: KfuncMeta) -> None:
    """``push_callback_call`` for ``bpf_rbtree_add_impl``: a path into ``less`` is queued
    with the caller's state; at its exit the call is visited again (the call site is a
    forced checkpoint, as for ``bpf_loop``)."""
    if meta.name != RBTREE_ADD or meta.subprogno is None:
        return
    sub = meta.subprogno
    v.aux[v.insn_idx]["rbtree_root"] = meta.graph_root
    v._check_callback_btf(sub)
    v.push_sync_cb(sub, set_rbtree_add_callback_state)


def is_sync_callback_kfunc_call(v: Verifier, ins: Any) -> bool:
    """``is_sync_callback_calling_kfunc``: a ``bpf_rbtree_add_impl`` call (for check_cfg:
    a forced checkpoint, and the callback bookkeeping of precision tracking)."""
    if ins.code != 0x85 or ins.src != 2 or not ins.imm:
        return False
    from pybpf.verifier.kfuncs import kfunc_name

    return kfunc_name(v, ins) == RBTREE_ADD


# -- after the arguments: ownership ------------------------------------------------------

def ref_set_non_owning(reg: Reg) -> None:
    reg.type |= NON_OWN_REF
    meta = btf_find_struct_meta(reg.btf, reg.btf_id)
    if meta is not None and meta.refcount_off >= 0:
        reg.type |= MEM_RCU


def graph_insert(v: Verifier, meta: KfuncMeta) -> None:
    """The push / add half of ``check_kfunc_call``: the node's registers become
    non-owning references, then the reference itself goes."""
    if meta.name not in LIST_PUSH and meta.name != RBTREE_ADD:
        return
    node = v.regs[2]
    rid = node.ref_obj_id
    aux = v.aux[v.insn_idx]
    aux["graph_insert"] = (node.off, btf_find_struct_meta(meta.arg_btf, meta.arg_btf_id))
    for reg in v.state.all_regs():
        if reg.ref_obj_id == rid:
            reg.ref_obj_id = 0
            ref_set_non_owning(reg)
    v.release_reference(rid)  # the node's registers are no longer tied to it: nothing cleared


def invalidate_non_owning_refs(v: Verifier) -> None:
    """At ``bpf_spin_unlock``: non-owning references are gone (``mark_reg_invalid``)."""
    for reg in v.state.all_regs():
        if reg.type & NON_OWN_REF:
            if v.allow_ptr_leaks:
                mark_unknown(reg)
            else:
                from pybpf.verifier.regs import mark_not_init

                mark_not_init(reg)


# -- the return value ---------------------------------------------------------------------

def set_graph_return(v: Verifier, meta: KfuncMeta, r0: Reg) -> None:
    """``mark_reg_graph_node``: R0 points at the node member of the root's value type; a
    peek (not ``KF_ACQUIRE``) makes it a non-owning reference."""
    from pybpf.helpers import kfuncs as K

    root: BtfField | None = meta.graph_root
    assert root is not None
    mark_unknown(r0)
    mark_known(r0, 0)
    r0.type = RegType.PTR_TO_BTF_ID | MEM_ALLOC
    r0.btf = root.root_btf
    r0.btf_id = root.value_btf_id
    r0.btf_name = root.contains[0] if root.contains else ""
    r0.off = root.node_offset
    if not meta.flags & K.KF_ACQUIRE:
        ref_set_non_owning(r0)


def fixup_graph_call(ins: Any, aux: dict[str, Any]) -> list[Any] | None:
    """``__fixup_collection_insert_kfunc``: ``r3 = struct meta`` and ``r4 = node offset``
    before a list push (``r4`` / ``r5`` for ``bpf_rbtree_add_impl``)."""
    from pybpf.isa.insn import Insn, ld_imm64

    info = aux.get("graph_insert")
    if info is None:
        return None
    off, smeta = info
    meta_reg, off_reg = (4, 5) if aux.get("kfunc", (0, ""))[1] == RBTREE_ADD else (3, 4)
    return [*ld_imm64(meta_reg, smeta.handle if smeta is not None else 0),
            Insn(0xB7, off_reg, 0, 0, off), ins]


__all__ = ["GRAPH_ARG_STRUCTS", "GRAPH_KFUNCS", "GRAPH_MAP_TYPES", "check_reg_allocation_locked",
           "fixup_graph_call", "graph_arg_kind", "graph_insert", "invalidate_non_owning_refs",
           "map_graph_roots", "process_graph_node", "process_graph_root", "set_graph_return"]
