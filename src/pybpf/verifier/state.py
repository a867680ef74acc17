"""Verifier states: stack slots, function frames and the whole-path state.

``bpf_stack_state`` / ``bpf_func_state`` / ``bpf_verifier_state`` in the kernel. A frame's
stack is a list of 8-byte slots (slot ``i`` covers ``fp-8*(i+1)`` … ``fp-8*i-1``); each
byte of a slot is one of ``STACK_INVALID``/``STACK_SPILL``/``STACK_MISC``/``STACK_ZERO``
(printed ``?``, ``r``, ``m``, ``0`` in logs), and a spilled register keeps its full state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pybpf.verifier.regs import Reg, RegType, mark_not_init

STACK_INVALID = "?"
STACK_SPILL = "r"
STACK_MISC = "m"
STACK_ZERO = "0"
STACK_ITER = "i"
STACK_DYNPTR = "d"
STACK_IRQ_FLAG = "f"

BPF_REG_FP = 10
MAX_BPF_REG = 11


class StackSlot:
    __slots__ = ("dynptr", "irq", "iter", "spilled", "types")

    def __init__(self) -> None:
        self.types = [STACK_INVALID] * 8
        self.spilled: Reg | None = None
        self.iter: Any = None  # open-coded iterator (STACK_ITER) info: verifier/iters.py IterState
        self.dynptr: Any = None  # STACK_DYNPTR info: verifier/dynptr.py DynptrSlot (immutable)
        self.irq: tuple[int, int] | None = None  # STACK_IRQ_FLAG: (ref_obj_id, kfunc class)

    def copy(self) -> StackSlot:
        s = StackSlot.__new__(StackSlot)
        s.types = list(self.types)
        s.spilled = self.spilled.copy() if self.spilled is not None else None
        s.iter = self.iter  # immutable
        s.dynptr = self.dynptr  # immutable
        s.irq = self.irq  # immutable
        return s

    def is_spill(self) -> bool:
        return self.types[7] == STACK_SPILL

    def is_full_spill(self) -> bool:
        return all(t == STACK_SPILL for t in self.types)


class FuncState:
    """One call frame: registers, stack, and where it was called from."""

    __slots__ = ("callback_depth", "callback_ret_range", "callsite", "frameno", "in_async_callback",
                 "in_callback", "in_exception_callback", "regs", "stack", "subprogno")

    def __init__(self, frameno: int = 0, subprogno: int = 0, callsite: int = -1) -> None:
        self.frameno = frameno
        self.subprogno = subprogno
        self.callsite = callsite
        self.regs = [Reg() for _ in range(MAX_BPF_REG)]
        self.stack: list[StackSlot] = []
        self.in_callback = False
        self.in_async_callback = False
        self.in_exception_callback = False
        self.callback_depth = 0  # callbacks of this frame's bpf_loop call unrolled so far
        self.callback_ret_range = (0, 0)
        for r in self.regs:
            mark_not_init(r)
        fp = self.regs[BPF_REG_FP]
        fp.type = RegType.PTR_TO_STACK
        from pybpf.verifier.regs import mark_known
        mark_known(fp, 0)
        fp.type = RegType.PTR_TO_STACK
        fp.frameno = frameno

    def copy(self) -> FuncState:
        f = FuncState.__new__(FuncState)
        f.frameno = self.frameno
        f.subprogno = self.subprogno
        f.callsite = self.callsite
        f.in_callback = self.in_callback
        f.in_async_callback = self.in_async_callback
        f.in_exception_callback = self.in_exception_callback
        f.callback_depth = self.callback_depth
        f.callback_ret_range = self.callback_ret_range
        f.regs = [r.copy() for r in self.regs]
        f.stack = [s.copy() for s in self.stack]
        return f

    @property
    def allocated_stack(self) -> int:
        return len(self.stack) * 8

    def grow_stack(self, size: int) -> None:
        """Make sure bytes down to ``fp-size`` exist (``grow_stack_state``)."""
        n = (size + 7) // 8
        while len(self.stack) < n:
            self.stack.append(StackSlot())

    def slot(self, off: int) -> tuple[StackSlot, int]:
        """Slot and byte index within it for the (negative) frame offset ``off``."""
        spi = (-off - 1) // 8
        return self.stack[spi], (-off - 1) % 8


@dataclass
class RefState:
    id: int
    insn_idx: int
    kind: str = "ptr"  # "ptr" (acquired resource), "lock", "res_lock", "res_lock_irq", "irq"
    ptr: Any = None  # a lock's (owner, offset): the map (or object) and where the lock sits


@dataclass
class VState:
    """The state of one path (``bpf_verifier_state``)."""

    frames: list[FuncState]
    refs: list[RefState] = field(default_factory=list)
    active_lock: tuple[object, int] | None = None  # (map or id, offset)
    active_rcu: bool = False
    branches: int = 0
    insn_idx: int = 0
    may_goto_depth: int = 0
    loop_entry: int = -1
    parent: VState | None = None
    # Precision backtracking (``first_insn_idx``/``last_insn_idx``/``insn_hist``): where this
    # state's own stretch of the path starts and (for a checkpoint) ends, and the
    # non-linear steps taken along it: ``(idx, prev_idx, flags, linked_regs)`` per jump
    # point, stack spill/fill and linked-register branch (see :mod:`.precision`).
    first_insn_idx: int = 0
    last_insn_idx: int = -1
    hist: list[tuple[int, int, int, tuple]] = field(default_factory=list)
    callback_unroll_depth: int = 0
    active_preempt_locks: int = 0  # bpf_preempt_disable depth (verifier/kfuncs.py)
    in_sleepable: bool = False  # a sleepable async callback's path (task_work, wq)
    active_irq_id: int = 0  # the innermost bpf_local_irq_save's reference (irq_flags.py)
    speculative: bool = False  # a path only the CPU's speculation takes (verifier/spectre.py)

    @property
    def cur(self) -> FuncState:
        return self.frames[-1]

    @property
    def curframe(self) -> int:
        return len(self.frames) - 1

    def copy(self) -> VState:
        return VState([f.copy() for f in self.frames], [RefState(r.id, r.insn_idx, r.kind, r.ptr) for r in self.refs],
                      self.active_lock, self.active_rcu, 0, self.insn_idx, self.may_goto_depth,
                      self.loop_entry, self.parent, self.first_insn_idx, self.last_insn_idx,
                      list(self.hist), self.callback_unroll_depth, self.active_preempt_locks,
                      self.in_sleepable, self.active_irq_id, self.speculative)

    def all_regs(self):
        """Every register of every frame, including spilled ones (``bpf_for_each_reg_in_vstate``)."""
        for f in self.frames:
            yield from f.regs
            for s in f.stack:
                if s.spilled is not None and s.is_spill():
                    yield s.spilled
