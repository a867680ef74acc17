"""``process_spin_lock``: taking and releasing a ``bpf_spin_lock`` or a ``bpf_res_spin_lock``.

One routine serves the ``bpf_spin_lock`` / ``bpf_spin_unlock`` helpers and the resilient
lock kfuncs (verifier/res_lock.py), as in Linux 6.18. The lock lives in one of two kinds
of allocation, each with its own record of special fields (``reg_btf_record``):

- a map value — an element of a map with BTF, or a global variable of a ``.data.*`` /
  ``.bss.*`` section (the map's value type is then the section's DATASEC); the lock's
  owner is the map;
- an object of the program's own BTF from ``bpf_obj_new`` (``PTR_TO_BTF_ID | MEM_ALLOC``);
  the owner is the program's BTF.

The argument must point at the record's lock at a constant offset. A held lock is a
reference of kind ``lock`` (``res_lock``, ``res_lock_irq``) whose ``ptr`` is
``(owner, offset)`` and whose id is the register's: two elements of one map are told apart
by the id their lookup gave them (a global variable's id is 0), two objects by their
allocation's id. Only one ``bpf_spin_lock`` may be held; resilient locks nest and are
released in reverse order (``... cannot be out of order``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.verifier.alloc_obj import btf_find_struct_meta, type_is_ptr_alloc_obj
from pybpf.verifier.async_work import map_name_str
from pybpf.verifier.regs import Reg, RegType
from pybpf.verifier.state import RefState

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

LOCK_KINDS = frozenset({"lock", "res_lock", "res_lock_irq"})
#: the record field kind of each lock flavour (maps' ``btf_record`` tuples and struct metas)
_MAP_FIELD = {False: "spin_lock", True: "res_spin_lock"}
_META_FIELD = {False: "bpf_spin_lock", True: "bpf_res_spin_lock"}


def lock_owner(reg: Reg) -> Any:
    """The lock reference's ``ptr`` owner for ``reg``: the map, or the object's BTF."""
    return reg.map_ptr if reg.type == RegType.PTR_TO_MAP_VALUE else reg.btf


def record_lock_off(reg: Reg, res: bool) -> int:
    """Offset of the (resilient) lock in the record of the allocation ``reg`` points into,
    or -1 when that record holds none."""
    if reg.type == RegType.PTR_TO_MAP_VALUE:
        kind = _MAP_FIELD[res]
        return next((off for k, off, _ in getattr(reg.map_ptr, "btf_record", None) or ()
                     if k == kind), -1)
    if type_is_ptr_alloc_obj(reg):
        meta = btf_find_struct_meta(reg.btf, reg.btf_id)
        f = meta.field(_META_FIELD[res]) if meta is not None else None
        return f.offset if f is not None else -1
    return -1


def reg_may_point_to_spin_lock(reg: Reg) -> bool:
    """Whether the allocation behind ``reg`` holds a lock: such registers keep their id
    once known not NULL, since the id tells which lock a later call takes."""
    return record_lock_off(reg, False) >= 0 or record_lock_off(reg, True) >= 0


def update_active_lock(st: Any) -> None:
    """``active_lock``: the innermost held lock as (owner or id, offset), or None."""
    held = [r for r in st.refs if r.kind in LOCK_KINDS]
    if not held:
        st.active_lock = None
        return
    last = held[-1]
    owner, off = last.ptr if last.ptr is not None else (None, 0)
    st.active_lock = (owner if last.id == 0 else last.id, off)


def process_spin_lock(v: Verifier, regno: int, is_lock: bool, res: bool = False,
                      irq: bool = False) -> None:
    """Check the lock argument in ``regno`` and take or release the lock."""
    reg = v.regs[regno]
    lock_str = "bpf_res_spin" if res else "bpf_spin"
    if reg.var_off.mask:
        v.fail(errno.EINVAL, f"R{regno} doesn't have constant offset. {lock_str}_lock has to be "
                             "at the constant offset\n")
    is_map = reg.type == RegType.PTR_TO_MAP_VALUE
    # ``!map->btf`` (a corpus stand-in map with a record but no BTF object counts as having one)
    if is_map and getattr(reg.map_ptr, "btf", None) is None and not getattr(reg.map_ptr, "btf_record", None):
        v.fail(errno.EINVAL, f"map '{map_name_str(reg.map_ptr)}' has to have BTF in order to use "
                             f"{lock_str}_lock\n")
    off = record_lock_off(reg, res)
    if off < 0:
        where = f"map '{map_name_str(reg.map_ptr)}'" if is_map else "local 'kptr'"
        v.fail(errno.EINVAL, f"{where} has no valid {lock_str}_lock\n")
    val = reg.var_off.value + reg.off
    if val != off:
        v.fail(errno.EINVAL, f"off {val} doesn't point to 'struct {lock_str}_lock' that is at {off}\n")
    st = v.state
    owner = lock_owner(reg)
    kind = "res_lock_irq" if irq else "res_lock" if res else "lock"
    held = [r for r in st.refs if r.kind in LOCK_KINDS]
    if is_lock:
        if held and not res and any(r.kind == "lock" for r in held):
            v.fail(errno.EINVAL, "Locking two bpf_spin_locks are not allowed\n")
        if held and res and any(r.kind != "lock" and r.id == reg.id and r.ptr[0] is owner
                                for r in held):
            v.fail(errno.EINVAL, "Acquiring the same lock again, AA deadlock detected\n")
        st.refs.append(RefState(reg.id, v.insn_idx, kind, (owner, val)))
        update_active_lock(st)
        return
    if not held:
        v.fail(errno.EINVAL, f"{lock_str}_unlock without taking a lock\n")
    mine = next((r for r in held if r.kind == kind and r.id == reg.id and r.ptr[0] is owner), None)
    if mine is None:
        v.fail(errno.EINVAL, f"{lock_str}_unlock of different lock\n")
    assert mine is not None
    if held[-1] is not mine:
        v.fail(errno.EINVAL, f"{lock_str}_unlock cannot be out of order\n")
    st.refs.remove(mine)
    update_active_lock(st)
    from pybpf.verifier.graph import invalidate_non_owning_refs

    invalidate_non_owning_refs(v)
