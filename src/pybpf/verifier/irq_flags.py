"""IRQ flags on the stack: ``bpf_local_irq_save`` / ``bpf_local_irq_restore`` (6.18).

``bpf_local_irq_save(&flags)`` disables interrupts and keeps the previous state in an
8-byte stack slot (``__irq_flag``). The verifier types that slot ``STACK_IRQ_FLAG`` ("f"
in logs, ``fp-8=ffffffff``) and gives it a reference of kind IRQ, which becomes the
state's ``active_irq_id``. Restores must come in reverse order of the saves, from an
initialised flag slot; the program may not exit, sleep, tail-call or use ``LD_ABS`` while
a save is outstanding. The slot cannot be read; a write scrubs it (the reference stays,
and the restore then fails). The resilient-lock ``_irqsave`` kfuncs use the same slots,
marked with their own class: a flag saved by one family cannot be restored by the other.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pybpf.verifier.regs import Reg, RegType
from pybpf.verifier.stack_objects import mark_stack_slot_written, stack_slot_obj_get_spi
from pybpf.verifier.state import STACK_INVALID, STACK_IRQ_FLAG, RefState

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

BPF_REG_SIZE = 8
BPF_WRITE = 2
IRQ_NATIVE_KFUNC, IRQ_LOCK_KFUNC = 0, 1
IRQ_SAVE = {"bpf_local_irq_save": IRQ_NATIVE_KFUNC, "bpf_res_spin_lock_irqsave": IRQ_LOCK_KFUNC}
IRQ_RESTORE = {"bpf_local_irq_restore": IRQ_NATIVE_KFUNC,
               "bpf_res_spin_unlock_irqrestore": IRQ_LOCK_KFUNC}


def irq_flag_get_spi(v: Verifier, reg: Reg) -> int:
    """``irq_flag_get_spi``: the flag's slot, or a negative errno."""
    return stack_slot_obj_get_spi(v, reg, "irq_flag", 1)


def _valid_uninit(v: Verifier, reg: Reg) -> bool:
    spi = irq_flag_get_spi(v, reg)
    if spi == -errno.ERANGE:
        return True
    if spi < 0:
        return False
    return STACK_IRQ_FLAG not in v.state.frames[reg.frameno].stack[spi].types


def _valid_init(v: Verifier, reg: Reg) -> int:
    spi = irq_flag_get_spi(v, reg)
    if spi < 0:
        return -errno.EINVAL
    slot = v.state.frames[reg.frameno].stack[spi]
    if slot.irq is None or any(t != STACK_IRQ_FLAG for t in slot.types):
        return -errno.EINVAL
    return 0


def release_irq_state(v: Verifier, rid: int) -> int:
    """``release_irq_state``: only the innermost save may be restored (-EACCES)."""
    st = v.state
    if rid != st.active_irq_id:
        return -errno.EACCES
    prev = 0
    for i, r in enumerate(st.refs):
        if r.kind != "irq":
            continue
        if r.id == rid:
            del st.refs[i]
            st.active_irq_id = prev
            return 0
        prev = r.id
    return -errno.EINVAL


def process_irq_flag(v: Verifier, name: str, regno: int, argno: int) -> None:
    """The ``KF_ARG_PTR_TO_IRQ_FLAG`` argument of a save or a restore."""
    reg = v.regs[regno]
    if reg.type != RegType.PTR_TO_STACK:
        v.fail(errno.EINVAL, f"arg#{argno} doesn't point to an irq flag on stack\n")
    if name in IRQ_SAVE:
        if not _valid_uninit(v, reg):
            v.fail(errno.EINVAL, f"expected uninitialized irq flag as arg#{argno}\n")
        v.check_mem_access(regno, 0, 8, BPF_WRITE, -1)
        spi = irq_flag_get_spi(v, reg)
        if spi < 0:
            v.fail(-spi, "")
        v.id_gen += 1
        rid = v.id_gen
        v.state.refs.append(RefState(rid, v.insn_idx, "irq"))
        v.state.active_irq_id = rid
        frame = v.state.frames[reg.frameno]
        slot = frame.stack[spi]
        slot.spilled = None
        slot.iter = slot.dynptr = None
        slot.types = [STACK_IRQ_FLAG] * BPF_REG_SIZE
        slot.irq = (rid, IRQ_SAVE[name])
        mark_stack_slot_written(v, frame, spi)
        return
    err = _valid_init(v, reg)
    if err:
        v.fail(-err, f"expected an initialized irq flag as arg#{argno}\n")
    spi = irq_flag_get_spi(v, reg)
    frame = v.state.frames[reg.frameno]
    slot = frame.stack[spi]
    assert slot.irq is not None
    v.stack_live.mark_read(v.state, reg.frameno, v.insn_idx, 1 << spi)  # mark_irq_flag_read
    v.log.scratched_stack |= 1 << spi
    rid, kfunc_class = slot.irq
    if kfunc_class != IRQ_RESTORE[name]:
        held = "native" if kfunc_class == IRQ_NATIVE_KFUNC else "lock"
        used = "native" if IRQ_RESTORE[name] == IRQ_NATIVE_KFUNC else "lock"
        v.fail(errno.EINVAL, f"irq flag acquired by {held} kfuncs cannot be restored with "
                             f"{used} kfuncs\n")
    err = release_irq_state(v, rid)
    if err:
        at = next((r.insn_idx for r in v.state.refs if r.id == v.state.active_irq_id), 0)
        v.fail(-err, f"cannot restore irq state out of order, expected id="
                     f"{v.state.active_irq_id} acquired at insn_idx={at}\n")
    slot.irq = None
    slot.spilled = None
    slot.types = [STACK_INVALID] * BPF_REG_SIZE
    mark_stack_slot_written(v, frame, spi)
