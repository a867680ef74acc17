# mypy: disable-error-code="misc"
"""Dynptrs in the verifier (``kernel/bpf/verifier.c``: ``process_dynptr_func`` and friends).

A ``struct bpf_dynptr`` lives in two 8-byte stack slots (``BPF_DYNPTR_NR_SLOTS``) whose
bytes are all ``STACK_DYNPTR`` ("d" in logs). The higher slot (``spi``, the one at the
struct's start) is the *first slot*; both carry a :class:`DynptrSlot` with the dynptr's
type, its id (slices of it remember that id) and, for ring buffer dynptrs, the reference
``bpf_ringbuf_reserve_dynptr`` acquired: it must be released by submit/discard before the
program exits ("Unreleased reference"), and such a dynptr cannot be overwritten.

Helpers see a dynptr through ``ARG_PTR_TO_DYNPTR`` arguments: with ``MEM_UNINIT`` the
helper initialises one (the slots must not hold a live referenced dynptr; an unreferenced
one is destroyed first), with ``OBJ_RELEASE`` it releases one, otherwise it uses an
initialised one, of the ``DYNPTR_TYPE_*`` type the prototype names, if any. A callback of
``bpf_user_ringbuf_drain`` receives a ``CONST_PTR_TO_DYNPTR`` instead: a register pointing
to a dynptr the helper owns, usable read-only and never releasable.

Any ordinary write that touches a dynptr's slots destroys the whole dynptr (and makes its
slices unknown scalars); reading its bytes as memory is refused like any non-data slot.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybpf.helpers.dynptr import (
    DYNPTR_TYPE_FLAG_MASK,
    DYNPTR_TYPE_FLAG_TO_TYPE,
    DynptrType,
)
from pybpf.helpers.proto import ArgFlag
from pybpf.verifier.regs import (
    PTR_MAYBE_NULL,
    Reg,
    RegType,
    mark_known,
    mark_not_init,
    mark_unknown,
)
from pybpf.verifier.stack_objects import stack_slot_obj_get_spi
from pybpf.verifier.state import STACK_DYNPTR, STACK_INVALID, STACK_SPILL, FuncState

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

BPF_DYNPTR_NR_SLOTS = 2
BPF_DYNPTR_SIZE = 16
BPF_REG_SIZE = 8
BPF_WRITE = 2
ERANGE = errno.ERANGE

_MEM_UNINIT = int(ArgFlag.MEM_UNINIT)
_MEM_RDONLY = int(ArgFlag.MEM_RDONLY)
_SLICE_TYPES = (RegType.PTR_TO_MEM, RegType.PTR_TO_MEM | PTR_MAYBE_NULL)


@dataclass(frozen=True)
class DynptrSlot:
    """What the kernel keeps in a dynptr slot's ``spilled_ptr`` (``reg->dynptr``, ``id``,
    ``ref_obj_id``). Immutable: states share it when they fork."""

    type: int
    first_slot: bool
    id: int
    ref_obj_id: int = 0


DYNPTR_TYPE_STR = {
    DynptrType.BPF_DYNPTR_TYPE_LOCAL: "local",
    DynptrType.BPF_DYNPTR_TYPE_RINGBUF: "ringbuf",
    DynptrType.BPF_DYNPTR_TYPE_SKB: "skb",
    DynptrType.BPF_DYNPTR_TYPE_XDP: "xdp",
    DynptrType.BPF_DYNPTR_TYPE_SKB_META: "skb_meta",
    DynptrType.BPF_DYNPTR_TYPE_INVALID: "<invalid>",
}


def dynptr_type_str(t: int) -> str:
    return DYNPTR_TYPE_STR.get(DynptrType(t), "<unknown>") if t in DYNPTR_TYPE_STR else "<unknown>"


def arg_to_dynptr_type(arg_type: int) -> int:
    """``arg_to_dynptr_type``: the ``DYNPTR_TYPE_*`` flag of an argument type, as a type."""
    return DYNPTR_TYPE_FLAG_TO_TYPE.get(arg_type & DYNPTR_TYPE_FLAG_MASK, DynptrType.BPF_DYNPTR_TYPE_INVALID)


def dynptr_type_refcounted(t: int) -> bool:
    return t == DynptrType.BPF_DYNPTR_TYPE_RINGBUF


def slot_dynptr(f: FuncState, spi: int) -> DynptrSlot | None:
    """The dynptr in slot ``spi`` of ``f``, if its bytes are STACK_DYNPTR."""
    if 0 <= spi < len(f.stack):
        st = f.stack[spi]
        if st.types[0] == STACK_DYNPTR and st.dynptr is not None:
            return st.dynptr
    return None


# -- locating the dynptr an argument points to ----------------------------------------------
def dynptr_get_spi(v: Verifier, reg: Reg) -> int:
    """``dynptr_get_spi``: the dynptr's first slot, or a negative errno."""
    return stack_slot_obj_get_spi(v, reg, "dynptr", BPF_DYNPTR_NR_SLOTS)


def is_dynptr_reg_valid_uninit(v: Verifier, reg: Reg) -> bool:
    if reg.type == RegType.CONST_PTR_TO_DYNPTR:
        return False
    spi = dynptr_get_spi(v, reg)
    return not (spi < 0 and spi != -ERANGE)


def is_dynptr_reg_valid_init(v: Verifier, reg: Reg) -> bool:
    if reg.type == RegType.CONST_PTR_TO_DYNPTR:
        return True
    spi = dynptr_get_spi(v, reg)
    if spi < 0:
        return False
    f = v.frame_of(reg)
    d = f.stack[spi].dynptr
    if d is None or not d.first_slot:
        return False
    return all(t == STACK_DYNPTR for t in f.stack[spi].types + f.stack[spi - 1].types)


def is_dynptr_type_expected(v: Verifier, reg: Reg, arg_type: int) -> bool:
    if not arg_type & DYNPTR_TYPE_FLAG_MASK:
        return True  # a plain ARG_PTR_TO_DYNPTR takes any dynptr
    want = arg_to_dynptr_type(arg_type)
    if reg.type == RegType.CONST_PTR_TO_DYNPTR:
        return reg.mem_size == want  # reg->dynptr.type shares mem_size's place
    spi = dynptr_get_spi(v, reg)
    if spi < 0:
        return False
    d = v.frame_of(reg).stack[spi].dynptr
    return d is not None and d.type == want


# -- creating, using, destroying ------------------------------------------------------------
def _mark_slots_written(v: Verifier, f: FuncState, spi: int) -> None:
    v.stack_live.mark_write(f.frameno, (1 << (spi - 1)) | (1 << spi))


def _clear_slots(f: FuncState, spi: int) -> None:
    for s in (f.stack[spi], f.stack[spi - 1]):
        s.types = [STACK_INVALID] * BPF_REG_SIZE
        s.dynptr = None
        s.spilled = None


def mark_reg_invalid(v: Verifier, reg: Reg) -> None:
    """``mark_reg_invalid``: an unknown scalar for privileged programs, else NOT_INIT."""
    if v.allow_ptr_leaks:
        mark_unknown(reg)
    else:
        mark_not_init(reg)


def destroy_if_dynptr_stack_slot(v: Verifier, f: FuncState, spi: int) -> None:
    """A write is about to touch slot ``spi``: if it holds half of a dynptr, the whole
    dynptr goes (refused for a referenced one) and so do the slices taken from it."""
    if not 0 <= spi < len(f.stack):
        return
    st = f.stack[spi]
    if st.types[0] != STACK_DYNPTR or st.dynptr is None:
        return
    if not st.dynptr.first_slot:
        spi += 1
    # the first slot's info; gone (type INVALID, id 0) if liveness cleaned that slot alone
    first = slot_dynptr(f, spi) or DynptrSlot(DynptrType.BPF_DYNPTR_TYPE_INVALID, False, 0)
    if dynptr_type_refcounted(first.type):
        v.fail(errno.EINVAL, "cannot overwrite referenced dynptr\n")
    v.log.scratched_stack |= (1 << spi) | (1 << (spi - 1))
    if spi < len(f.stack):
        _clear_slots(f, spi)
    for reg in v.state.all_regs():
        if reg.type in _SLICE_TYPES and reg.dynptr_id == first.id:
            mark_reg_invalid(v, reg)
    _mark_slots_written(v, f, spi)


def mark_stack_slots_dynptr(v: Verifier, reg: Reg, arg_type: int, clone_ref_obj_id: int = 0) -> None:
    """A helper initialised the dynptr at ``reg``: both slots become STACK_DYNPTR with a
    fresh id, plus a fresh reference for a ring buffer dynptr."""
    f = v.frame_of(reg)
    spi = dynptr_get_spi(v, reg)
    if spi < 0:
        v.fail(-spi, "")
    destroy_if_dynptr_stack_slot(v, f, spi)
    destroy_if_dynptr_stack_slot(v, f, spi - 1)
    dtype = arg_to_dynptr_type(arg_type)
    if dtype == DynptrType.BPF_DYNPTR_TYPE_INVALID:
        v.fail(errno.EINVAL, "")
    v.id_gen += 1
    did = v.id_gen
    ref = 0
    if dynptr_type_refcounted(dtype):
        ref = clone_ref_obj_id or v.acquire_reference()
    for s, first in ((f.stack[spi], True), (f.stack[spi - 1], False)):
        s.types = [STACK_DYNPTR] * BPF_REG_SIZE
        s.spilled = None
        s.dynptr = DynptrSlot(dtype, first, did, ref)
    _mark_slots_written(v, f, spi)


def mark_dynptr_read(v: Verifier, reg: Reg) -> None:
    """``mark_dynptr_read`` (``mark_stack_slot_obj_read``): both slots are read."""
    if reg.type == RegType.CONST_PTR_TO_DYNPTR:
        return
    spi = dynptr_get_spi(v, reg)
    if spi < 0:
        v.fail(-spi, "")
    for s in (spi, spi - 1):
        v.stack_live.mark_read(v.state, reg.frameno, v.insn_idx, 1 << s)
        v.log.scratched_stack |= 1 << s


def invalidate_dynptr(v: Verifier, f: FuncState, spi: int) -> None:
    _clear_slots(f, spi)
    _mark_slots_written(v, f, spi)


def unmark_stack_slots_dynptr(v: Verifier, reg: Reg) -> None:
    """A helper released the dynptr at ``reg`` (``bpf_ringbuf_submit_dynptr``…): its
    reference goes, with the slices and every clone holding that reference."""
    f = v.frame_of(reg)
    spi = dynptr_get_spi(v, reg)
    if spi < 0:
        v.fail(-spi, "")
    d = f.stack[spi].dynptr
    if d is None or not dynptr_type_refcounted(d.type):
        invalidate_dynptr(v, f, spi)
        return
    ref = d.ref_obj_id
    v.release_reference(ref)
    for i in range(1, len(f.stack)):
        o = f.stack[i].dynptr
        if o is not None and f.stack[i].types[0] == STACK_DYNPTR and o.ref_obj_id == ref and o.first_slot:
            invalidate_dynptr(v, f, i)


def process_dynptr_func(v: Verifier, regno: int, arg_type: int) -> None:
    """``process_dynptr_func``: an ARG_PTR_TO_DYNPTR argument of a helper."""
    reg = v.regs[regno]
    if reg.type not in (RegType.PTR_TO_STACK, RegType.CONST_PTR_TO_DYNPTR):
        v.fail(errno.EINVAL, f"arg#{regno - 1} expected pointer to stack or const struct bpf_dynptr\n")
    if arg_type & _MEM_UNINIT:
        if not is_dynptr_reg_valid_uninit(v, reg):
            v.fail(errno.EINVAL, "Dynptr has to be an uninitialized dynptr\n")
        for off in range(0, BPF_DYNPTR_SIZE, BPF_REG_SIZE):  # the helper writes it 8 bytes at a time
            v.check_mem_access(regno, off, BPF_REG_SIZE, BPF_WRITE, -1)
        mark_stack_slots_dynptr(v, reg, arg_type)
        return
    if reg.type == RegType.CONST_PTR_TO_DYNPTR and not arg_type & _MEM_RDONLY:
        v.fail(errno.EINVAL, "cannot pass pointer to const bpf_dynptr, the helper mutates it\n")
    if not is_dynptr_reg_valid_init(v, reg):
        v.fail(errno.EINVAL, f"Expected an initialized dynptr as arg #{regno - 1}\n")
    if not is_dynptr_type_expected(v, reg, arg_type & ~_MEM_RDONLY):
        v.fail(errno.EINVAL, f"Expected a dynptr of type {dynptr_type_str(arg_to_dynptr_type(arg_type))} "
                             f"as arg #{regno - 1}\n")
    mark_dynptr_read(v, reg)


def check_release_dynptr_arg(v: Verifier, reg: Reg, regno: int) -> None:
    """The OBJ_RELEASE check of a dynptr argument: only a dynptr on the stack holding a
    reference can be released."""
    if reg.type != RegType.PTR_TO_STACK:
        v.fail(errno.EINVAL, "cannot release unowned const bpf_dynptr\n")
    spi = dynptr_get_spi(v, reg)
    ref = 0
    if spi >= 0:
        st = v.frame_of(reg).stack[spi]
        if st.types[0] == STACK_DYNPTR and st.dynptr is not None:
            ref = st.dynptr.ref_obj_id
        elif st.types[7] == STACK_SPILL and st.spilled is not None:
            ref = st.spilled.ref_obj_id
    if spi < 0 or not ref:
        v.fail(errno.EINVAL, f"arg {regno} is an unacquired reference\n")


def dynptr_id_and_ref(v: Verifier, reg: Reg) -> tuple[int, int]:
    """``dynptr_id``/``dynptr_ref_obj_id`` of an initialised dynptr argument."""
    if reg.type == RegType.CONST_PTR_TO_DYNPTR:
        return reg.id, reg.ref_obj_id
    spi = dynptr_get_spi(v, reg)
    d = v.frame_of(reg).stack[spi].dynptr if spi >= 0 else None
    return (d.id, d.ref_obj_id) if d is not None else (0, 0)


def dynptr_arg_type(v: Verifier, reg: Reg) -> int:
    """``dynptr_get_type``."""
    if reg.type == RegType.CONST_PTR_TO_DYNPTR:
        return reg.mem_size
    spi = dynptr_get_spi(v, reg)
    d = v.frame_of(reg).stack[spi].dynptr if spi >= 0 else None
    return d.type if d is not None else DynptrType.BPF_DYNPTR_TYPE_INVALID


def mark_dynptr_cb_reg(v: Verifier, reg: Reg, dtype: int) -> None:
    """``mark_dynptr_cb_reg``: a callback argument pointing to a helper-owned dynptr."""
    mark_unknown(reg)
    mark_known(reg, 0)
    reg.type = RegType.CONST_PTR_TO_DYNPTR
    v.id_gen += 1
    reg.id = v.id_gen
    reg.mem_size = dtype  # reg->dynptr.type
    reg.dynptr_id = 1  # reg->dynptr.first_slot shares dynptr_id's place, as in the kernel


# -- log and pruning --------------------------------------------------------------------------
def format_dynptr_slot(f: FuncState, spi: int) -> str:
    """`` fp-16=dynptr_ringbuf(id=1,ref_id=2,dynptr_id=1)``: ``print_verifier_state`` of
    the dynptr whose first slot is ``spi`` (``dynptr_id`` is the first-slot flag read
    through the union it shares, so 1 for a first slot)."""
    d = f.stack[spi].dynptr if spi < len(f.stack) else None
    out = f" fp{(-spi - 1) * BPF_REG_SIZE}=dynptr_{dynptr_type_str(d.type if d else 0)}("
    parts = []
    if d is not None:
        if d.id:
            parts.append(f"id={d.id}")
        if d.ref_obj_id:
            parts.append(f"ref_id={d.ref_obj_id}")
        if d.first_slot:
            parts.append("dynptr_id=1")
    return out + ",".join(parts) + ")"


def dynptr_slots_equal(old: Any, cur: Any, check_ids: Any) -> bool:
    """``stacksafe``'s STACK_DYNPTR case: same type and slot, same reference (by idmap)."""
    if old is None or cur is None:
        return old is cur
    return (old.type == cur.type and old.first_slot == cur.first_slot
            and bool(check_ids(old.ref_obj_id, cur.ref_obj_id)))


def potential_dynptr_write(f: FuncState, min_off: int, end_off: int) -> int | None:
    """The first stack offset in ``[min_off, end_off)`` that lies in a dynptr, if any
    (a helper's raw-mode write may not alias a dynptr)."""
    for i in range(min_off, end_off):
        slot = -i - 1
        if len(f.stack) * BPF_REG_SIZE <= slot:
            continue
        if f.stack[slot // BPF_REG_SIZE].types[slot % BPF_REG_SIZE] == STACK_DYNPTR:
            return i
    return None


# -- helper-specific checks (check_helper_call's switch) --------------------------------------
FUNC_DYNPTR_FROM_MEM, FUNC_DYNPTR_WRITE, FUNC_DYNPTR_DATA = 197, 202, 203


def _dynptr_arg_reg(v: Verifier, fn: Any) -> Reg:
    """``get_dynptr_arg_reg``: the register of the prototype's dynptr argument."""
    from pybpf.helpers.proto import ArgType

    for i, at in enumerate(fn.arg_types):
        if at & 0xFF == ArgType.ARG_PTR_TO_DYNPTR:
            return v.regs[i + 1]
    v.fail(errno.EFAULT, "verifier internal error: no dynptr arg found\n")
    raise AssertionError  # unreachable


def _check_dynptr_from_mem(v: Verifier, fn: Any, meta: dict[str, Any]) -> None:
    r1 = v.regs[1]
    if r1.type != RegType.PTR_TO_MAP_VALUE:
        from pybpf.verifier.regs import reg_type_str

        v.fail(errno.EACCES, f"Unsupported reg type {reg_type_str(r1.type)} for bpf_dynptr_from_mem data\n")


def _check_dynptr_data(v: Verifier, fn: Any, meta: dict[str, Any]) -> None:
    """The returned slice remembers its dynptr (invalidated with it) and its reference."""
    meta["dynptr_id"], meta["ref_obj_id"] = dynptr_id_and_ref(v, _dynptr_arg_reg(v, fn))


def _check_dynptr_write(v: Verifier, fn: Any, meta: dict[str, Any]) -> None:
    if dynptr_arg_type(v, _dynptr_arg_reg(v, fn)) == DynptrType.BPF_DYNPTR_TYPE_SKB:
        v.clear_all_pkt_pointers()  # writing through an skb dynptr may move the packet


HELPER_CALL_CHECKS = {
    FUNC_DYNPTR_FROM_MEM: _check_dynptr_from_mem,
    FUNC_DYNPTR_DATA: _check_dynptr_data,
    FUNC_DYNPTR_WRITE: _check_dynptr_write,
}
