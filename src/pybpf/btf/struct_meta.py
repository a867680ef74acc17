"""``btf_parse_struct_metas``: the special fields of a program BTF's structs, checked at
``BPF_BTF_LOAD``.

Every struct of a program's BTF with a member whose type is one of the program's own
``bpf_spin_lock``, ``bpf_res_spin_lock``, ``bpf_list_head``, ``bpf_list_node``,
``bpf_rb_root``, ``bpf_rb_node`` or ``bpf_refcount`` structs has its fields parsed when the
BTF is loaded (allocated objects are typed by them). A graph root must name what it holds
with a ``contains:<type>:<node member>`` decl tag: a malformed or missing tag, a member that
is not the right node type, or a root without a lock beside it, or both kinds of lock, is
EINVAL; a type or member that does not exist is ENOENT; a second lock of a kind is E2BIG;
a struct whose special members are all misplaced (no usable field) is EFAULT.
The kernel logs nothing particular for these.
"""

from __future__ import annotations

import errno

from pybpf.btf.raw import Btf, BtfDeclTag, BtfKind, BtfStruct
from pybpf.maps.btf_record import FIELD_STRUCTS

SPECIAL = ("bpf_spin_lock", "bpf_res_spin_lock", "bpf_list_head", "bpf_list_node",
           "bpf_rb_root", "bpf_rb_node", "bpf_refcount")
#: graph root -> the node type its ``contains:`` member must have
ROOT_NODE = {"bpf_list_head": "bpf_list_node", "bpf_rb_root": "bpf_rb_node"}
CONTAINS = "contains:"


def _struct_id(btf: Btf, name: str) -> int:
    for tid in btf.find_all(name, BtfKind.STRUCT):
        return tid
    return -1


def _graph_root_errno(btf: Btf, owner: int, idx: int, root: str) -> int:
    """``btf_find_graph_root``'s checks of member ``idx`` of struct ``owner``."""
    tag = next((t.name[len(CONTAINS):] for t in btf.types
                if isinstance(t, BtfDeclTag) and t.type == owner and t.component_idx == idx
                and t.name.startswith(CONTAINS)), None)
    if tag is None or ":" not in tag:
        return errno.EINVAL
    type_name, field = tag.split(":", 1)
    vid = _struct_id(btf, type_name)
    if vid < 0:
        return errno.ENOENT
    value = btf.types[vid]
    assert isinstance(value, BtfStruct)
    for m in value.members:
        if m.name != field:
            continue
        node = btf.types[m.type]
        if not isinstance(node, BtfStruct) or node.name != ROOT_NODE[root]:
            return errno.EINVAL
        return 0
    return errno.ENOENT


def check_struct_metas(btf: Btf) -> int:
    """The errno ``BPF_BTF_LOAD`` fails with for the structs' special fields, or 0."""
    special = {tid: name for name in SPECIAL if (tid := _struct_id(btf, name)) >= 0}
    if not special:
        return 0
    for sid, t in enumerate(btf.types):
        if not isinstance(t, BtfStruct) or not any(m.type in special for m in t.members):
            continue
        seen: dict[str, int] = {}
        for idx, m in enumerate(t.members):
            kind = special.get(m.type)
            if kind is None:
                continue
            if m.bit_offset % (8 * FIELD_STRUCTS[kind][1]):
                continue  # btf_find_field_one ignores a misplaced field
            if kind in ("bpf_spin_lock", "bpf_res_spin_lock", "bpf_refcount") and kind in seen:
                return errno.E2BIG
            seen[kind] = seen.get(kind, 0) + 1
            if kind in ROOT_NODE:
                err = _graph_root_errno(btf, sid, idx, kind)
                if err:
                    return err
        if not seen:  # special members, none of them usable: no record at all
            return errno.EFAULT
        if "bpf_spin_lock" in seen and "bpf_res_spin_lock" in seen:
            return errno.EINVAL
        if any(k in ROOT_NODE for k in seen) and "bpf_spin_lock" not in seen \
                and "bpf_res_spin_lock" not in seen:
            return errno.EINVAL
    return 0
