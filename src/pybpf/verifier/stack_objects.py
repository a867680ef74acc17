"""Objects that live in stack slots — dynptrs, open-coded iterators, IRQ flags — and how a
kfunc argument finds their slot (``stack_slot_obj_get_spi``)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pybpf.verifier.regs import Reg, s64

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier
    from pybpf.verifier.state import FuncState

BPF_REG_SIZE = 8


def get_spi(off: int) -> int:
    """``__get_spi``: the slot of frame offset ``off`` (C division: truncates toward 0)."""
    n = -off - 1
    return n // BPF_REG_SIZE if n >= 0 else -((-n) // BPF_REG_SIZE)


def mark_stack_slot_written(v: Verifier, frame: FuncState, spi: int) -> None:
    """A kfunc (re)initialised slot ``spi``: scratched for the log, written for stack
    liveness."""
    v.log.scratched_stack |= 1 << spi
    v.stack_live.mark_write(frame.frameno, 1 << spi)


def stack_slot_obj_get_spi(v: Verifier, reg: Reg, obj_kind: str, nr_slots: int) -> int:
    """The object's first (highest) slot; a message and -EINVAL for a bad offset, -ERANGE
    (silently) when the slots are not allocated yet."""
    if reg.var_off.mask:
        v.verbose(f"{obj_kind} has to be at a constant offset\n")
        return -errno.EINVAL
    off = reg.off + s64(reg.var_off.value)
    if off % BPF_REG_SIZE:
        v.verbose(f"cannot pass in {obj_kind} at an offset={off}\n")
        return -errno.EINVAL
    spi = get_spi(off)
    if spi + 1 < nr_slots:
        v.verbose(f"cannot pass in {obj_kind} at an offset={off}\n")
        return -errno.EINVAL
    if not (spi - nr_slots + 1 >= 0 and spi < len(v.state.frames[reg.frameno].stack)):
        return -errno.ERANGE
    return spi
