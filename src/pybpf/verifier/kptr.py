"""Kernel pointers stored in map values (``kptr``), as Linux 6.18 checks them.

A map value's BTF may mark a pointer member with a type tag: ``kptr_untrusted`` (an
unreferenced kptr, ``BPF_KPTR_UNREF``), ``kptr`` (a referenced one, ``BPF_KPTR_REF``) or
``percpu_kptr``. The map's BTF record (``btf_record``: kind, offset, size) says where they
are; ``kptr_types`` names each field's pointee, a struct of vmlinux BTF or, when vmlinux
has none of that name, the program's own type (``kptr_fields``: its id in the map's BTF,
see :func:`pybpf.maps.btf_record.find_kptrs`). Then:

- loads (``BPF_LDX | BPF_MEM | BPF_DW`` only) give ``PTR_TO_BTF_ID`` of the pointee, maybe
  NULL, RCU-protected (``rcu_ptr_``) for referenced kptrs of RCU-safe types inside an RCU
  section, untrusted otherwise (``btf_ld_kptr_type``);
- stores of a register must be a pointer of the right type (``map_kptr_match_type``), and
  only into unreferenced fields; referenced ones change only through ``bpf_kptr_xchg``
  (``process_kptr_func``), which hands back the old pointer as a new reference.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybpf.btf.raw import BtfKind
from pybpf.verifier.regs import (
    MEM_ALLOC,
    MEM_PERCPU,
    MEM_RCU,
    NON_OWN_REF,
    PTR_MAYBE_NULL,
    PTR_TRUSTED,
    PTR_UNTRUSTED,
    Reg,
    RegType,
    reg_type_str,
)

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

KPTR_UNREF, KPTR_REF, KPTR_PERCPU = "kptr_untrusted", "kptr", "percpu_kptr"
BPF_MEM, BPF_LDX, BPF_ST, BPF_STX = 0x60, 0x01, 0x02, 0x03
#: ``rcu_protected_types``: kptrs of these stay usable (``rcu_ptr_``) inside RCU sections
RCU_PROTECTED_TYPES = frozenset({"prog_test_ref_kfunc", "cgroup", "bpf_cpumask", "task_struct",
                                 "bpf_crypto_ctx"})


@dataclass(frozen=True)
class KptrField:
    kind: str
    offset: int
    btf: Any
    btf_id: int
    local: bool = False  # a program type (MEM_ALLOC object), not a kernel struct

    @property
    def name(self) -> str:
        from pybpf.verifier.btf_access import btf_type_name
        return btf_type_name(self.btf, self.btf_id)


def resolve_kptr(v: Verifier, kind: str, off: int, name: str, local_btf: Any,
                 local_id: int) -> KptrField:
    """``btf_parse_kptr``'s pointee: the struct of that name in vmlinux BTF, else the
    program's own type (``bpf_obj_new`` objects) ``local_id`` of ``local_btf``."""
    from pybpf.verifier.btf_access import vmlinux_btf
    btf = vmlinux_btf(v)
    if not name:
        return KptrField(kind, off, None, 0)
    ids = btf.find_all(name, BtfKind.STRUCT) if btf is not None else []
    if ids:
        return KptrField(kind, off, btf, ids[0])
    if local_btf is not None and local_id:
        return KptrField(kind, off, local_btf, local_id, local=True)
    return KptrField(kind, off, btf, 0)


def _resolve(v: Verifier, m: Any, kind: str, off: int) -> KptrField:
    """The pointee of a map value's kptr field at ``off``."""
    name = (getattr(m, "kptr_types", None) or {}).get(off, "")
    info = (getattr(m, "kptr_fields", None) or {}).get(off)
    map_btf: Any = getattr(m, "btf", None)
    parsed = map_btf.parsed() if callable(getattr(map_btf, "parsed", None)) else map_btf
    return resolve_kptr(v, kind, off, name, parsed, info.type_id if info is not None else 0)


def find_alloc_obj_field(v: Verifier, reg: Reg, off: int) -> KptrField | bool | None:
    """``btf_record_find(rec, off, BPF_KPTR)`` in an allocated object's struct meta:
    False when the meta has no kptr at all, None when none is at ``off``."""
    from pybpf.verifier.alloc_obj import btf_find_struct_meta
    from pybpf.verifier.btf_access import btf_type_name

    meta = btf_find_struct_meta(reg.btf, reg.btf_id)
    kptrs = [f for f in (meta.fields if meta is not None else ()) if f.kptr_tag]
    if not kptrs:
        return False
    f = next((f for f in kptrs if f.offset == off), None)
    if f is None:
        return None
    return resolve_kptr(v, f.kptr_tag, off, btf_type_name(reg.btf, f.value_btf_id), reg.btf,
                        f.value_btf_id)


def has_kptr(v: Verifier, m: Any) -> bool:
    return any(f[0].startswith(("kptr", "percpu_kptr")) for f in v.map_record(m) or ())


def find_field(v: Verifier, m: Any, off: int) -> KptrField | None:
    """``btf_record_find(rec, off, BPF_KPTR)``. The kernel resolves a kptr's pointee once,
    when the map's ``btf_record`` is built; we resolve it on first use and keep it on the
    map (as ``hooks.attachments.btf_pointer_args`` keeps its answer on the program), so
    neither later accesses nor later loads using the same map look the type up again."""
    cache: dict[int, KptrField | None] | None = getattr(m, "_kptr_field_cache", None)
    if cache is None:
        cache = {}
        try:
            m._kptr_field_cache = cache
        except AttributeError:  # a map stand-in without attributes: cache per verifier
            cache = v.__dict__.setdefault("kptr_fields", {}).setdefault(id(m), {})
    if off not in cache:
        cache[off] = next((_resolve(v, m, kind, foff) for kind, foff, _size in v.map_record(m) or ()
                           if kind in (KPTR_UNREF, KPTR_REF, KPTR_PERCPU) and foff == off), None)
    return cache[off]


def btf_ld_kptr_type(v: Verifier, f: KptrField) -> int:
    from pybpf.verifier.btf_access import in_rcu_cs

    # rcu_safe_kptr: percpu kptrs, and referenced ones of RCU-freed kernel types or of the
    # program's own types (rcu_protected_object)
    rcu_safe = f.kind == KPTR_PERCPU or (f.kind == KPTR_REF and (f.local or f.name in RCU_PROTECTED_TYPES))
    if rcu_safe and in_rcu_cs(v):
        if f.kind == KPTR_PERCPU:
            return PTR_MAYBE_NULL | MEM_RCU | MEM_PERCPU
        return PTR_MAYBE_NULL | MEM_RCU | (MEM_ALLOC | _graph_node_flag(f) if f.local else 0)
    return PTR_MAYBE_NULL | PTR_UNTRUSTED


def _graph_node_flag(f: KptrField) -> int:
    """``NON_OWN_REF`` for a local kptr whose type is a list or rbtree node: a node may be
    in a collection too, so what the load gives is not the program's to free."""
    from pybpf.verifier.alloc_obj import btf_find_struct_meta

    meta = btf_find_struct_meta(f.btf, f.btf_id)
    if meta is not None and any(x.kind in ("bpf_list_node", "bpf_rb_node") for x in meta.fields):
        return NON_OWN_REF
    return 0


def map_kptr_match_type(v: Verifier, f: KptrField, reg: Reg, regno: int) -> None:
    """A pointer stored into (or exchanged with) a kptr field must be of its type."""
    from pybpf.verifier.btf_access import (
        btf_struct_ids_match,
        btf_type_name,
        is_kernel_btf,
        vmlinux_btf,
    )

    reg_name = ""
    ok = reg.base == RegType.PTR_TO_BTF_ID
    if ok:
        if reg.btf is None or reg.btf is vmlinux_btf(v) or is_kernel_btf(reg.btf, v):
            perm = PTR_MAYBE_NULL | PTR_TRUSTED | MEM_RCU | (PTR_UNTRUSTED if f.kind == KPTR_UNREF else 0)
        else:
            perm = PTR_MAYBE_NULL | MEM_ALLOC | (MEM_PERCPU if f.kind == KPTR_PERCPU else 0)
        flags = reg.type & ~0xFF
        ok = not flags & ~perm and (f.kind == KPTR_PERCPU) == bool(reg.type & MEM_PERCPU)
    if ok:
        reg_name = btf_type_name(reg.btf, reg.btf_id)
        if reg.var_off.mask or reg.var_off.value:  # __check_ptr_off_reg, a fixed offset is fine
            from pybpf.verifier.log import tnum_str
            v.fail(errno.EACCES, f"variable {reg_type_str(reg.type)} access var_off="
                                 f"{tnum_str(reg.var_off)} disallowed\n")
        ok = reg.btf is not None and btf_struct_ids_match(reg.btf, reg.btf_id, reg.off, f.btf, f.btf_id,
                                                          strict=f.kind != KPTR_UNREF)
    if ok:
        return
    text = (f"invalid kptr access, R{regno} type={reg_type_str(reg.type)}{reg_name} "
            f"expected={reg_type_str(RegType.PTR_TO_BTF_ID)}{f.name}")
    if f.kind == KPTR_UNREF:
        text += f" or {reg_type_str(RegType.PTR_TO_BTF_ID | PTR_UNTRUSTED)}{f.name}"
    v.fail(errno.EACCES, text + "\n")


def check_map_kptr_access(v: Verifier, value_regno: int, f: KptrField, ins: Any) -> None:
    """``check_map_kptr_access`` (bounds, offset and size were checked by the caller)."""
    from pybpf.verifier.btf_access import mark_btf_ld_reg

    cls = ins.code & 0x07
    if ins.code & 0xE0 != BPF_MEM:
        v.fail(errno.EACCES, "kptr in map can only be accessed using BPF_MEM instruction mode\n")
    if cls != BPF_LDX and f.kind in (KPTR_REF, KPTR_PERCPU):
        v.fail(errno.EACCES, "store to referenced kptr disallowed\n")
    if cls == BPF_LDX:
        mark_btf_ld_reg(v, v.regs[value_regno], RegType.PTR_TO_BTF_ID, f.btf, f.btf_id,
                        btf_ld_kptr_type(v, f))
    elif cls == BPF_STX:
        val = v.regs[value_regno]
        if val.type == RegType.SCALAR_VALUE and val.var_off.mask == 0 and val.var_off.value == 0:
            return  # storing NULL clears the field (6.18 does not mark it precise)
        map_kptr_match_type(v, f, val, value_regno)
    elif cls == BPF_ST:
        if ins.imm:
            v.fail(errno.EACCES, f"BPF_ST imm must be 0 when storing to kptr at off={f.offset}\n")
    else:
        v.fail(errno.EACCES, "kptr in map can only be accessed using BPF_LDX/BPF_STX/BPF_ST\n")


def process_kptr_func(v: Verifier, regno: int, meta: dict[str, Any]) -> None:
    """``process_kptr_func``: ``bpf_kptr_xchg``'s destination is a referenced kptr field of
    a map value or of an allocated object."""
    reg = v.regs[regno]
    if reg.base == RegType.PTR_TO_BTF_ID and reg.type & MEM_ALLOC:
        if reg.var_off.mask != 0:
            v.fail(errno.EINVAL, f"R{regno} doesn't have constant offset. kptr has to be at the "
                                 "constant offset\n")
        off = reg.off + reg.var_off.value
        found = find_alloc_obj_field(v, reg, off)
        if found is False:
            v.fail(errno.EINVAL, f"R{regno} has no valid kptr\n")
        _set_kptr_field(v, found if isinstance(found, KptrField) else None, off, meta)
        return
    m = reg.map_ptr
    # ``!map_ptr->btf`` (a map stand-in without BTF but with a record counts as having one)
    if reg.base == RegType.PTR_TO_MAP_VALUE and getattr(m, "btf", None) is None and not v.map_record(m):
        name = getattr(m, "name", b"") or b""
        name = name.split(b"\0")[0].decode(errors="replace") if isinstance(name, bytes) else name
        v.fail(errno.EINVAL, f"map '{name}' has to have BTF in order to use bpf_kptr_xchg\n")
    if reg.var_off.mask != 0:
        v.fail(errno.EINVAL, f"R{regno} doesn't have constant offset. kptr has to be at the constant offset\n")
    if m is None or not has_kptr(v, m):
        v.fail(errno.EINVAL, f"R{regno} has no valid kptr\n")
    off = reg.off + reg.var_off.value
    _set_kptr_field(v, find_field(v, m, off), off, meta)


def _set_kptr_field(v: Verifier, f: KptrField | None, off: int, meta: dict[str, Any]) -> None:
    if f is None:
        v.fail(errno.EACCES, f"off={off} doesn't point to kptr\n")
    assert f is not None
    if f.kind not in (KPTR_REF, KPTR_PERCPU):
        v.fail(errno.EACCES, f"off={off} kptr isn't referenced kptr\n")
    meta["kptr_field"] = f


__all__ = ["KptrField", "btf_ld_kptr_type", "check_map_kptr_access", "find_field",
           "map_kptr_match_type", "process_kptr_func"]
