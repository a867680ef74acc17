"""Open-coded iterators: ``bpf_iter_<type>_{new,next,destroy}`` state on the stack.

An iterator is a ``struct bpf_iter_<type>`` the program keeps on its own stack (8-byte
multiples). The verifier types those slots ``STACK_ITER`` (``i`` in logs) and remembers,
in the first slot, the iterator's type, its reference id, its state and its depth
(:class:`IterState`): ``_new`` needs uninitialised slots and acquires a reference that
``_destroy`` releases; every other iterator kfunc needs an initialised iterator of the
same type.

``_next`` is what lets a 6.x program loop without ``bpf_loop``: the verifier cannot know
how many elements remain, so at each ``_next`` call it forks (``process_iter_next_call``).
The current path continues with the iterator DRAINED and R0 = NULL (the loop's exit); a
queued path continues with the iterator ACTIVE, one level deeper, and R0 non-NULL (one
more iteration). Since every ``_next`` call is a forced checkpoint, the next visit of the
call with an ACTIVE iterator is compared with the state of the previous iteration
(``RANGE_WITHIN``, :mod:`.prune`); once the loop body no longer widens any register the
visit is pruned and the loop has converged. Exact values that differ between iterations
and were never needed precise are widened to unknown first
(``widen_imprecise_scalars``), which is what makes convergence quick.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from pybpf.verifier.regs import (
    MEM_RCU,
    PTR_MAYBE_NULL,
    PTR_UNTRUSTED,
    Reg,
    RegType,
    mark_known,
    mark_unknown,
)
from pybpf.verifier.stack_objects import mark_stack_slot_written, stack_slot_obj_get_spi
from pybpf.verifier.state import STACK_INVALID, STACK_ITER, StackSlot, VState

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier
    from pybpf.verifier.kfuncs import KfuncMeta

BPF_REG_SIZE = 8

# ``enum bpf_iter_state``
BPF_ITER_STATE_INVALID = 0
BPF_ITER_STATE_ACTIVE = 1
BPF_ITER_STATE_DRAINED = 2

ITER_STATE_STR = {BPF_ITER_STATE_INVALID: "<invalid>", BPF_ITER_STATE_ACTIVE: "active",
                  BPF_ITER_STATE_DRAINED: "drained"}


class IterState(NamedTuple):
    """What the kernel keeps in ``spilled_ptr.iter`` (+ ``ref_obj_id``, type flags) of an
    iterator's first stack slot. Immutable: states share it when they fork."""

    btf_id: int  # struct bpf_iter_<type> in the kfunc's BTF
    type_name: str  # "<type>" of bpf_iter_<type>, as logs print it
    state: int  # BPF_ITER_STATE_*
    depth: int  # iterations unrolled on this path (only for loop detection)
    ref_obj_id: int  # 0 in every slot but the first
    type_flags: int  # MEM_RCU / PTR_UNTRUSTED for KF_RCU_PROTECTED iterators


def slot_iter(slot: StackSlot) -> IterState | None:
    return getattr(slot, "iter", None)


def set_slot_iter(slot: StackSlot, it: IterState | None) -> None:
    slot.iter = it


def format_iter_slot(off: int, it: IterState) -> str:
    """The log's ``fp-8=iter_num(ref_id=1,state=active,depth=0)``."""
    return (f" fp{off}=iter_{it.type_name}(ref_id={it.ref_obj_id},state={ITER_STATE_STR[it.state]},"
            f"depth={it.depth})")


def iter_get_spi(v: Verifier, reg: Reg, nr_slots: int) -> int:
    """``iter_get_spi``: slot index of the iterator ``reg`` points to, or a negative errno."""
    return stack_slot_obj_get_spi(v, reg, "iter", nr_slots)


def _s64(x: int) -> int:
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >> 63 else x


def is_iter_reg_valid_uninit(v: Verifier, reg: Reg, nr_slots: int) -> bool:
    spi = iter_get_spi(v, reg, nr_slots)
    if spi == -errno.ERANGE:
        return True
    if spi < 0:
        return False
    frame = v.state.frames[reg.frameno]
    return not any(STACK_ITER in frame.stack[spi - i].types for i in range(nr_slots))


def is_iter_reg_valid_init(v: Verifier, reg: Reg, btf_id: int, nr_slots: int) -> int:
    """0, or -EINVAL (not an initialised iterator of this type) / -EPROTO (an RCU-protected
    iterator used outside the RCU section it was created in)."""
    spi = iter_get_spi(v, reg, nr_slots)
    if spi < 0:
        return -errno.EINVAL
    frame = v.state.frames[reg.frameno]
    for i in range(nr_slots):
        slot = frame.stack[spi - i]
        it = slot_iter(slot)
        if it is None or any(t != STACK_ITER for t in slot.types):
            return -errno.EINVAL
        if it.type_flags & PTR_UNTRUSTED:
            return -errno.EPROTO
        if (i == 0) != bool(it.ref_obj_id):
            return -errno.EINVAL
        if it.btf_id != btf_id:
            return -errno.EINVAL
    return 0


def mark_stack_slots_iter(v: Verifier, meta: KfuncMeta, reg: Reg, btf_id: int, type_name: str,
                          nr_slots: int) -> None:
    """``mark_stack_slots_iter``: the slots become an ACTIVE iterator holding a new reference."""
    from pybpf.helpers.kfuncs import KF_RCU_PROTECTED

    spi = iter_get_spi(v, reg, nr_slots)
    if spi < 0:
        v.fail(-spi, "")
    rid = v.acquire_reference()
    flags = 0
    if meta.flags & KF_RCU_PROTECTED:
        from pybpf.verifier.btf_access import in_rcu_cs

        flags = MEM_RCU if in_rcu_cs(v) else PTR_UNTRUSTED
    frame = v.state.frames[reg.frameno]
    for i in range(nr_slots):
        slot = frame.stack[spi - i]
        slot.spilled = None
        slot.types = [STACK_ITER] * BPF_REG_SIZE
        set_slot_iter(slot, IterState(btf_id, type_name, BPF_ITER_STATE_ACTIVE, 0,
                                      rid if i == 0 else 0, flags))
        mark_stack_slot_written(v, frame, spi - i)


def unmark_stack_slots_iter(v: Verifier, reg: Reg, nr_slots: int) -> None:
    """``unmark_stack_slots_iter`` (``_destroy``): release the reference, slots invalid."""
    spi = iter_get_spi(v, reg, nr_slots)
    if spi < 0:
        v.fail(-spi, "")
    frame = v.state.frames[reg.frameno]
    for i in range(nr_slots):
        slot = frame.stack[spi - i]
        it = slot_iter(slot)
        if i == 0 and it is not None:
            v.release_reference(it.ref_obj_id)
        slot.spilled = None
        slot.types = [STACK_INVALID] * BPF_REG_SIZE
        set_slot_iter(slot, None)
        mark_stack_slot_written(v, frame, spi - i)


def mark_iter_read(v: Verifier, reg: Reg, spi: int, nr_slots: int) -> None:
    """The iterator kfunc reads the iterator's slots (stack liveness)."""
    mask = 0
    for i in range(nr_slots):
        mask |= 1 << (spi - i)
    v.stack_live.mark_read(v.state, reg.frameno, v.insn_idx, mask)
    v.log.scratched_stack |= mask


def process_iter_arg(v: Verifier, regno: int, meta: KfuncMeta) -> None:
    """``process_iter_arg``: argument ``regno`` must point to an iterator on the stack —
    uninitialised for ``_new`` (which initialises it), initialised for the others."""
    from pybpf.helpers.kfuncs import KF_ITER_DESTROY, KF_ITER_NEW
    from pybpf.verifier.mem import BPF_WRITE

    reg = v.regs[regno]
    argno = regno - 1
    if reg.type != RegType.PTR_TO_STACK:
        v.fail(errno.EINVAL, f"arg#{argno} expected pointer to an iterator on stack\n")
    found = meta.iter_arg_type(argno)
    if found is None:
        v.fail(errno.EINVAL, f"expected valid iter pointer as arg #{argno}\n")
    assert found is not None
    btf_id, type_name, size = found
    nr_slots = size // BPF_REG_SIZE
    if meta.flags & KF_ITER_NEW:
        if not is_iter_reg_valid_uninit(v, reg, nr_slots):
            v.fail(errno.EINVAL, f"expected uninitialized iter_{type_name} as arg #{argno}\n")
        for i in range(0, nr_slots * 8, BPF_REG_SIZE):
            v.check_mem_access(regno, i, 8, BPF_WRITE, -1)
        mark_stack_slots_iter(v, meta, reg, btf_id, type_name, nr_slots)
        return
    err = is_iter_reg_valid_init(v, reg, btf_id, nr_slots)
    if err == -errno.EINVAL:
        v.fail(errno.EINVAL, f"expected an initialized iter_{type_name} as arg #{argno}\n")
    if err == -errno.EPROTO:
        v.fail(errno.EPROTO, f"expected an RCU CS when using {meta.name}\n")
    spi = iter_get_spi(v, reg, nr_slots)
    mark_iter_read(v, reg, spi, nr_slots)
    frame = v.state.frames[reg.frameno]
    it = slot_iter(frame.stack[spi])
    assert it is not None
    meta.iter_spi = spi
    meta.iter_frameno = reg.frameno
    meta.ref_obj_id = it.ref_obj_id
    if meta.flags & KF_ITER_DESTROY:
        unmark_stack_slots_iter(v, reg, nr_slots)


def get_iter_from_state(st: VState, meta: KfuncMeta) -> StackSlot:
    return st.frames[meta.iter_frameno].stack[meta.iter_spi]


def process_iter_next_call(v: Verifier, meta: KfuncMeta) -> None:
    """``process_iter_next_call``: fork at ``_next``. An ACTIVE iterator queues one more
    iteration (ACTIVE, depth + 1, R0 not NULL) after widening what changed since the
    previous iteration; the current path goes on DRAINED with R0 = 0."""
    from pybpf.verifier.callbacks import widen_imprecise_scalars

    cur = v.state
    slot = get_iter_from_state(cur, meta)
    it = slot_iter(slot)
    if it is None or it.state not in (BPF_ITER_STATE_ACTIVE, BPF_ITER_STATE_DRAINED):
        v.fail(errno.EFAULT, "verifier internal error: unexpected iterator state\n")
    assert it is not None
    idx = v.insn_idx
    if it.state == BPF_ITER_STATE_ACTIVE:
        parent = cur.parent
        if parent is None or parent.insn_idx != idx:
            v.fail(errno.EFAULT, "bug: bad parent state for iter next call")
        assert parent is not None
        prev = v.find_prev_entry(parent, idx)
        queued = v.push_stack(idx + 1, idx)
        qslot = get_iter_from_state(queued, meta)
        set_slot_iter(qslot, it._replace(state=BPF_ITER_STATE_ACTIVE, depth=it.depth + 1))
        if prev is not None:
            widen_imprecise_scalars(prev, queued)
        r0 = queued.cur.regs[0]
        r0.type &= ~PTR_MAYBE_NULL
    set_slot_iter(slot, it._replace(state=BPF_ITER_STATE_DRAINED))
    r0 = cur.cur.regs[0]
    mark_unknown(r0)
    mark_known(r0, 0)


def untrust_rcu_iters(st: VState) -> None:
    """``bpf_rcu_read_unlock``: RCU-protected iterators of the section become untrusted
    (using them again is "expected an RCU CS")."""
    for f in st.frames:
        for slot in f.stack:
            it = slot_iter(slot)
            if it is not None and it.type_flags & MEM_RCU:
                set_slot_iter(slot, it._replace(type_flags=(it.type_flags & ~MEM_RCU) | PTR_UNTRUSTED))


def iter_active_depths_differ(old: VState, cur: VState) -> bool:
    """``iter_active_depths_differ``: an ACTIVE iterator one level deeper is progress, not an
    infinite loop."""
    for fo, fc in zip(old.frames, cur.frames):
        for so, sc in zip(fo.stack, fc.stack):
            a = slot_iter(so)
            if a is None or a.state != BPF_ITER_STATE_ACTIVE:
                continue
            b = slot_iter(sc)
            if b is None or a.depth != b.depth:
                return True
    return False


def cur_iter_active(v: Verifier) -> bool:
    """At an ``_next`` call (a checkpoint): is the iterator R1 points to ACTIVE?"""
    reg = v.regs[1]
    if reg.type != RegType.PTR_TO_STACK or reg.var_off.mask:
        return False
    spi = (-(reg.off + _s64(reg.var_off.value)) - 1) // BPF_REG_SIZE
    frame = v.state.frames[reg.frameno] if reg.frameno < len(v.state.frames) else None
    if frame is None or not 0 <= spi < len(frame.stack):
        return False
    it = slot_iter(frame.stack[spi])
    return it is not None and it.state == BPF_ITER_STATE_ACTIVE


def iters_equal(o: IterState | None, c: IterState | None, check_ids: Callable[[int, int], bool]) -> bool:
    """``stacksafe`` for STACK_ITER: same type and state, equivalent reference ids; the
    depth is ignored (it only feeds loop detection)."""
    if o is None or c is None:
        return o is c
    return (o.btf_id == c.btf_id and o.state == c.state and o.type_flags == c.type_flags
            and check_ids(o.ref_obj_id, c.ref_obj_id))


__all__ = [
    "BPF_ITER_STATE_ACTIVE", "BPF_ITER_STATE_DRAINED", "IterState", "cur_iter_active",
    "format_iter_slot", "iter_active_depths_differ", "iters_equal", "process_iter_arg",
    "process_iter_next_call", "slot_iter",
]
