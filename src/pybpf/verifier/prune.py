# mypy: disable-error-code="misc"
"""State pruning (``is_state_visited`` / ``states_equal``) and loop detection.

At a prune point the current state is compared with the checkpoints already stored there.
If a finished checkpoint is at least as general as the current state — every register
range of the old state contains the new one, stack slots match, same references — the
current path is safe and is cut. Checkpoints still being explored (``branches > 0``) lie
on the current path: an exact match there is an infinite loop.

pybpf does not track liveness or precision, so it treats every scalar as precise: a
stricter comparison than the kernel's, which only costs extra exploration.
"""

from __future__ import annotations

import errno
from operator import attrgetter
from typing import TYPE_CHECKING

from pybpf.verifier.log import format_state
from pybpf.verifier.regs import PTR_MAYBE_NULL, Reg, RegType
from pybpf.verifier.state import (
    STACK_INVALID,
    STACK_MISC,
    STACK_SPILL,
    STACK_ZERO,
    FuncState,
    VState,
)

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

_EXACT_FIELDS = ("type", "off", "var_off", "smin", "smax", "umin", "umax", "s32_min", "s32_max",
                 "u32_min", "u32_max", "map_ptr", "range", "mem_size", "frameno", "subprogno")


class _IdMap:
    def __init__(self) -> None:
        self.m: dict[int, int] = {}
        self.r: dict[int, int] = {}

    def check(self, old: int, cur: int) -> bool:
        if not old and not cur:
            return True
        if not old or not cur:
            return not old
        a = self.m.get(old)
        b = self.r.get(cur)
        if a is None and b is None:
            self.m[old] = cur
            self.r[cur] = old
            return True
        return a == cur and b == old


def _range_within(o: Reg, c: Reg) -> bool:
    return (o.umin <= c.umin and o.umax >= c.umax and o.smin <= c.smin and o.smax >= c.smax
            and o.u32_min <= c.u32_min and o.u32_max >= c.u32_max and o.s32_min <= c.s32_min
            and o.s32_max >= c.s32_max)


def regs_exact(o: Reg, c: Reg, ids: _IdMap) -> bool:
    for f in _EXACT_FIELDS:
        if getattr(o, f) != getattr(c, f):
            return False
    return ids.check(o.id, c.id) and ids.check(o.ref_obj_id, c.ref_obj_id)


def regsafe(o: Reg, c: Reg, ids: _IdMap, exact: bool) -> bool:
    if exact:
        return regs_exact(o, c, ids)
    if o.type == RegType.NOT_INIT:
        return True
    if o.type != c.type:
        return False
    b = o.type & 0xFF
    if b == RegType.SCALAR_VALUE:
        return ids.check(o.id, c.id) and _range_within(o, c) and o.var_off.contains(c.var_off)
    if b in (RegType.PTR_TO_MAP_KEY, RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_MEM, RegType.PTR_TO_BUF,
             RegType.PTR_TO_TP_BUFFER):
        return (o.off == c.off and o.map_ptr is c.map_ptr and o.mem_size == c.mem_size
                and _range_within(o, c) and o.var_off.contains(c.var_off)
                and ids.check(o.id, c.id) and ids.check(o.ref_obj_id, c.ref_obj_id))
    if b in (RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META):
        if o.range > c.range or o.off != c.off or not ids.check(o.id, c.id):
            return False
        return _range_within(o, c) and o.var_off.contains(c.var_off)
    if b == RegType.PTR_TO_STACK:
        return regs_exact(o, c, ids) and o.frameno == c.frameno
    return regs_exact(o, c, ids)


def _slot_byte(f: FuncState, spi: int, b: int) -> str:
    if spi >= len(f.stack):
        return STACK_INVALID
    return f.stack[spi].types[b]


def stacksafe(o: FuncState, c: FuncState, ids: _IdMap, exact: bool) -> bool:
    for spi in range(len(o.stack)):
        os_ = o.stack[spi]
        for b in range(8):
            ot = os_.types[b]
            ct = _slot_byte(c, spi, b)
            if exact:
                if ot != ct:
                    return False
                continue
            if ot == STACK_INVALID:
                continue
            if ot == STACK_MISC and ct not in (STACK_MISC, STACK_ZERO, STACK_SPILL) and True:
                if ct != STACK_INVALID or not True:
                    return False
                return False
            if ot == STACK_MISC and ct in (STACK_MISC, STACK_ZERO):
                continue
            if ot == STACK_ZERO and ct == STACK_ZERO:
                continue
            if ot == STACK_MISC and ct == STACK_SPILL:
                cs = c.stack[spi].spilled
                if cs is not None and cs.type == RegType.SCALAR_VALUE:
                    continue
                return False
            if ot != ct:
                return False
        if os_.is_spill() and os_.spilled is not None:
            cslot = c.stack[spi] if spi < len(c.stack) else None
            if cslot is None or not cslot.is_spill() or cslot.spilled is None:
                return False
            if not regsafe(os_.spilled, cslot.spilled, ids, exact):
                return False
    if exact and len(c.stack) > len(o.stack):
        for spi in range(len(o.stack), len(c.stack)):
            if any(t != STACK_INVALID for t in c.stack[spi].types):
                return False
    return True


def func_states_equal(o: FuncState, c: FuncState, ids: _IdMap, exact: bool) -> bool:
    if o.callsite != c.callsite:
        return False
    for i in range(11):
        if not regsafe(o.regs[i], c.regs[i], ids, exact):
            return False
    return stacksafe(o, c, ids, exact)


def states_equal(o: VState, c: VState, exact: bool) -> bool:
    if len(o.frames) != len(c.frames):
        return False
    ids = _IdMap()
    if len(o.refs) != len(c.refs):
        return False
    for a, b in zip(o.refs, c.refs):
        if not ids.check(a.id, b.id):
            return False
    if (o.active_lock is None) != (c.active_lock is None):
        return False
    if o.active_lock is not None and c.active_lock is not None and o.active_lock[1] != c.active_lock[1]:
        return False
    return all(func_states_equal(fo, fc, ids, exact) for fo, fc in zip(o.frames, c.frames))


_REG_SIG = attrgetter("type", "off", "var_off", "smin", "smax", "umin", "umax", "s32_min",
                      "s32_max", "u32_min", "u32_max", "range")


def reg_signature(f: FuncState) -> tuple:
    """Cheap summary of a frame's registers (ids left out) to reject non-loops quickly."""
    return tuple(map(_REG_SIG, f.regs))


def states_maybe_looping(o: VState, c: VState, sig: tuple | None = None) -> bool:
    if len(o.frames) != len(c.frames):
        return False
    ids = _IdMap()
    fo, fc = o.frames[-1], c.frames[-1]
    return all(regs_exact(fo.regs[i], fc.regs[i], ids) and fo.regs[i].precise == fc.regs[i].precise
               for i in range(11))


class PruneMixin:
    def init_prune(self: Verifier) -> None:
        self.explored: dict[int, list[VState]] = {}  # every checkpoint, per instruction
        self.done_states: dict[int, list[VState]] = {}  # fully explored: usable for pruning
        self.live_count: dict[int, int] = {}  # checkpoints still on the DFS path
        self.by_sig: dict[int, dict[tuple, list[VState]]] = {}
        self.total_states = 0
        self.peak_states = 0
        self.max_states_per_insn = 0

    def update_branch_counts(self: Verifier, st: VState | None) -> None:
        while st is not None:
            st.branches -= 1
            if st.branches > 0:
                break
            if getattr(st, "checkpoint", False):
                idx = st.insn_idx
                self.live_count[idx] -= 1
                self.done_states.setdefault(idx, []).append(st)
            st = st.parent

    def is_state_visited(self: Verifier, idx: int) -> bool:
        cur = self.state
        add_new = False
        if self.jmps_processed - self.prev_jmps_processed >= 2 and \
                self.insn_processed - self.prev_insn_processed >= 8:
            add_new = True
        force = idx in self.cfg.force_checkpoints
        if force:
            add_new = True
        sigmap = self.by_sig.setdefault(idx, {})
        # The signature is only needed when a checkpoint exists here or one is added below
        # (nothing between here and there changes the registers).
        sig = reg_signature(cur.cur) if sigmap else None
        for old in sigmap.get(sig, ()) if sig is not None else ():
            if old.branches > 0 and states_maybe_looping(old, cur) and states_equal(old, cur, True):
                self.verbose(f"infinite loop detected at insn {idx}\n")
                self.verbose("cur state:" + format_state(cur.cur) + "\n")
                self.verbose("old state:" + format_state(old.frames[cur.curframe]) + "\n")
                from pybpf.verifier.cfg import VerifyError
                raise VerifyError(errno.EINVAL, "infinite loop")
        for old in self.done_states.get(idx, ()):
            if states_equal(old, cur, False):
                return True
        lst = self.explored.setdefault(idx, [])
        if self.live_count.get(idx, 0) > 0 and not force and \
                self.jmps_processed - self.prev_jmps_processed < 20 and \
                self.insn_processed - self.prev_insn_processed < 100:
            add_new = False
        if len(lst) > self.max_states_per_insn:
            self.max_states_per_insn = len(lst)
        if not add_new:
            return False
        self.total_states += 1
        self.peak_states += 1
        self.prev_jmps_processed = self.jmps_processed
        self.prev_insn_processed = self.insn_processed
        new = cur.copy()
        new.branches = 1
        new.parent = cur.parent
        new.insn_idx = idx
        new.checkpoint = True  # type: ignore[attr-defined]
        cur.parent = new
        cur.branches = 1
        lst.append(new)
        if sig is None:
            sig = reg_signature(cur.cur)
        sigmap.setdefault(sig, []).append(new)
        self.live_count[idx] = self.live_count.get(idx, 0) + 1
        return False


__all__ = ["PTR_MAYBE_NULL", "PruneMixin", "states_equal"]
