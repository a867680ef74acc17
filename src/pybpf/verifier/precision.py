# mypy: disable-error-code="misc"
"""Precision tracking: which scalars' exact ranges a verified path depended on.

The kernel's ``mark_chain_precision`` / ``backtrack_insn`` (``kernel/bpf/verifier.c``).
State pruning may treat two scalars as equivalent whatever their ranges, unless the old
(checkpointed) state marks the register *precise*. A scalar becomes precise when its value
decides safety: a pointer offset, a helper's constant size, a branch whose outcome is
known, a return value checked against a range, a zero spill. The verifier then walks the
path back instruction by instruction (``backtrack_insn``) to find every register and stack
slot the value was computed from, and marks those precise in the checkpoints along the
path (``VState.parent`` chain). The walk uses each state's jump history (``VState.hist``):
straight-line code goes to ``idx - 1``; jumps, calls, exits and stack spills/fills are
recorded as they are verified.

The current state itself is never marked: only checkpoints take part in pruning, and a
checkpoint forgets inherited marks when it is created (``mark_all_scalars_imprecise``), so
a mark means "some continuation of this checkpoint needed it".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybpf.verifier.regs import BPF_ADD_CONST, RegType
from pybpf.verifier.state import STACK_SPILL, VState

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

# insn_hist flags (``INSN_F_*``): a stack slot accessed as a whole register (frame in the
# low 3 bits, slot index above) and jumps comparing against a stack pointer.
INSN_F_FRAMENO_MASK = 0x7
INSN_F_SPI_SHIFT = 3
INSN_F_SPI_MASK = 0x3F
INSN_F_STACK_ACCESS = 1 << 9
INSN_F_DST_REG_STACK = 1 << 10
INSN_F_SRC_REG_STACK = 1 << 11

MAX_CALL_FRAMES = 8
REGMASK_ARGS = 0x3E  # r1-r5


class BacktrackError(Exception):
    """``-ENOTSUPP`` from ``backtrack_insn``: fall back to marking every scalar precise."""


def stack_access_flags(frameno: int, spi: int) -> int:
    return INSN_F_STACK_ACCESS | (spi << INSN_F_SPI_SHIFT) | frameno


def fmt_reg_mask(mask: int) -> str:
    return ",".join(f"r{i}" for i in range(32) if mask >> i & 1)


def fmt_stack_mask(mask: int) -> str:
    return ",".join(str(-(i + 1) * 8) for i in range(64) if mask >> i & 1)


def is_spilled_scalar(slot) -> bool:
    return slot.types[7] == STACK_SPILL and slot.spilled is not None and \
        slot.spilled.type == RegType.SCALAR_VALUE


class BacktrackState:
    """``struct backtrack_state``: per-frame masks of registers and stack slots (8-byte
    slots, bit i = ``fp-8*(i+1)``) whose values still need a precise origin."""

    __slots__ = ("frame", "regs", "stack")

    def __init__(self, frame: int) -> None:
        self.frame = frame
        self.regs = [0] * MAX_CALL_FRAMES
        self.stack = [0] * MAX_CALL_FRAMES

    def empty(self) -> bool:
        regs, stack = self.regs, self.stack
        return not any(regs[i] or stack[i] for i in range(self.frame + 1))

    def is_reg(self, r: int, frame: int | None = None) -> bool:
        return bool(self.regs[self.frame if frame is None else frame] >> r & 1)

    def set_reg(self, r: int, frame: int | None = None) -> None:
        self.regs[self.frame if frame is None else frame] |= 1 << r

    def clear_reg(self, r: int, frame: int | None = None) -> None:
        self.regs[self.frame if frame is None else frame] &= ~(1 << r)

    def is_slot(self, spi: int, frame: int) -> bool:
        return bool(self.stack[frame] >> spi & 1)

    def set_slot(self, spi: int, frame: int) -> None:
        self.stack[frame] |= 1 << spi

    def clear_slot(self, spi: int, frame: int) -> None:
        self.stack[frame] &= ~(1 << spi)

    def subprog_enter(self) -> None:
        if self.frame == MAX_CALL_FRAMES - 1:
            raise BacktrackError("subprog enter")
        self.frame += 1

    def subprog_exit(self) -> None:
        if self.frame == 0:
            raise BacktrackError("subprog exit")
        self.frame -= 1

    def sync_linked_regs(self, linked: tuple) -> None:
        """``bt_sync_linked_regs``: registers that gained a range together at a branch
        need precision together."""
        if not linked:
            return
        if not any((self.is_reg(n, fr) if is_reg else self.is_slot(n, fr)) for fr, is_reg, n in linked):
            return
        for fr, is_reg, n in linked:
            if is_reg:
                self.set_reg(n, fr)
            else:
                self.set_slot(n, fr)


def _bits(mask: int) -> list[int]:
    """Indices of the set bits of ``mask``, lowest first."""
    out = []
    i = 0
    while mask:
        if mask & 1:
            out.append(i)
        mask >>= 1
        i += 1
    return out


def _prev_insn_idx(st: VState, idx: int, hist_end: int) -> tuple[int, int]:
    """``get_prev_insn_idx``: the instruction before ``idx`` on this state's path, or -1
    at the state's first instruction."""
    hist = st.hist
    if idx == st.first_insn_idx:
        if hist_end == 0:
            return -1, hist_end
        if hist_end == 1 and hist[0][0] == idx:
            return -1, hist_end
    if hist_end and hist[hist_end - 1][0] == idx:
        return hist[hist_end - 1][1], hist_end - 1
    return idx - 1, hist_end


class PrecisionMixin:
    """Jump history and precision backtracking for :class:`~pybpf.verifier.core.Verifier`."""

    def init_precision(self: Verifier) -> None:
        self.cur_hist_ent = False  # an entry for the current instruction exists
        self.hist_prev_idx = -1  # the instruction verified before the current one

    # -- jump history --------------------------------------------------------------------
    def push_insn_history(self: Verifier, flags: int = 0, linked: tuple = (), st: VState | None = None) -> None:
        """``push_insn_history``: record a non-linear step (or stack access) at the current
        instruction; a second record for the same instruction merges into the first."""
        st = self.state if st is None else st
        if self.cur_hist_ent and st.hist and st.hist[-1][0] == self.insn_idx:
            idx, prev, f, lk = st.hist[-1]
            st.hist[-1] = (idx, prev, f | flags, linked or lk)
            return
        st.hist.append((self.insn_idx, self.hist_prev_idx, flags, linked))
        self.cur_hist_ent = True

    # -- marking ---------------------------------------------------------------------------
    def mark_chain_precision(self: Verifier, regno: int) -> None:
        """Make the current value of scalar ``regno`` precise along the whole path."""
        if not self.bpf_capable or regno < 0:
            return
        bt = BacktrackState(self.state.curframe)
        if self.state.cur.regs[regno].type != RegType.SCALAR_VALUE:
            return
        bt.set_reg(regno)
        self._mark_chain_precision(bt)

    def mark_chain_precision_stack(self: Verifier, frameno: int, spi: int) -> None:
        if not self.bpf_capable:
            return
        bt = BacktrackState(self.state.curframe)
        bt.set_slot(spi, frameno)
        self._mark_chain_precision(bt)

    def _mark_chain_precision(self: Verifier, bt: BacktrackState) -> None:
        """``__mark_chain_precision``: backtrack through the current state and then each
        parent checkpoint until every requested register/slot has found its origin.
        Unprivileged checks have every scalar precise already: nothing to do."""
        if bt.empty() or not self.bpf_capable:
            return
        log = self.log
        lvl2 = bool(log.enabled and log.level & 2)
        st: VState | None = self.state
        assert st is not None
        first_idx = st.first_insn_idx
        last_idx = self.insn_idx
        subseq_idx = -1
        skip_first = True
        n = len(self.insns)
        try:
            while True:
                if lvl2:
                    log(f"mark_precise: frame{bt.frame}: last_idx {last_idx} first_idx {first_idx} "
                        f"subseq_idx {subseq_idx} \n")
                if last_idx < 0:
                    # entry of a subprogram verified on its own (global function): r1-r5 are its
                    # arguments, anything else is a bug
                    if st.curframe == 0 and st.frames[0].subprogno > 0 and bt.stack[bt.frame] == 0 \
                            and not bt.regs[bt.frame] & ~REGMASK_ARGS:
                        for i in range(32):
                            if bt.is_reg(i):
                                r = st.frames[0].regs[i]
                                bt.clear_reg(i)
                                if r.type == RegType.SCALAR_VALUE:
                                    r.precise = True
                        return
                    raise BacktrackError("func entry")
                hist_end = len(st.hist)
                i = last_idx
                while True:
                    if skip_first:
                        skip_first = False
                    else:
                        h = st.hist[hist_end - 1] if hist_end and st.hist[hist_end - 1][0] == i else None
                        self.backtrack_insn(i, subseq_idx, h, bt)
                    if bt.empty():
                        return
                    subseq_idx = i
                    i, hist_end = _prev_insn_idx(st, i, hist_end)
                    if i < 0:
                        break
                    if i >= n:
                        raise BacktrackError(f"idx {i}")
                st = st.parent
                if st is None:
                    break
                for fr in range(bt.frame, -1, -1):
                    if fr >= len(st.frames):
                        continue
                    func = st.frames[fr]
                    for regno in _bits(bt.regs[fr]):
                        reg = func.regs[regno]
                        if reg.type != RegType.SCALAR_VALUE or reg.precise:
                            bt.clear_reg(regno, fr)
                        else:
                            reg.precise = True
                    for spi in _bits(bt.stack[fr]):
                        if spi >= len(func.stack):
                            raise BacktrackError("stack slot out of bounds")
                        slot = func.stack[spi]
                        if not is_spilled_scalar(slot):
                            bt.clear_slot(spi, fr)
                            continue
                        assert slot.spilled is not None
                        if slot.spilled.precise:
                            bt.clear_slot(spi, fr)
                        else:
                            slot.spilled.precise = True
                    if lvl2:
                        from pybpf.verifier.log import format_state
                        log(f"mark_precise: frame{fr}: parent state regs={fmt_reg_mask(bt.regs[fr])} "
                            f"stack={fmt_stack_mask(bt.stack[fr])}: "
                            + format_state(func, [r.id for r in st.refs]) + "\n")
                if bt.empty():
                    return
                subseq_idx = first_idx
                last_idx = st.last_insn_idx
                first_idx = st.first_insn_idx
        except BacktrackError:
            self.mark_all_scalars_precise(self.state)
            return
        if not bt.empty():
            self.mark_all_scalars_precise(self.state)

    def mark_all_scalars_precise(self: Verifier, st: VState) -> None:
        """The fallback when backtracking cannot follow the value (e.g. a stack access
        through another pointer): every scalar of every parent checkpoint becomes precise."""
        log = self.log
        lvl2 = bool(log.enabled and log.level & 2)
        if lvl2:
            log(f"mark_precise: frame{st.curframe}: falling back to forcing all scalars precise\n")
        p = st.parent
        while p is not None:
            for i, func in enumerate(p.frames):
                for j in range(10):
                    r = func.regs[j]
                    if r.type != RegType.SCALAR_VALUE or r.precise:
                        continue
                    r.precise = True
                    if lvl2:
                        log(f"force_precise: frame{i}: forcing r{j} to be precise\n")
                for j, slot in enumerate(func.stack):
                    if slot.types[7] != STACK_SPILL or slot.spilled is None:
                        continue
                    r = slot.spilled
                    if r.type != RegType.SCALAR_VALUE or r.precise:
                        continue
                    r.precise = True
                    if lvl2:
                        log(f"force_precise: frame{i}: forcing fp{-(j + 1) * 8} to be precise\n")
            p = p.parent

    @staticmethod
    def mark_all_scalars_imprecise(st: VState) -> None:
        for func in st.frames:
            for r in func.regs:
                if r.type == RegType.SCALAR_VALUE:
                    r.precise = False
            for slot in func.stack:
                if slot.types[7] == STACK_SPILL and slot.spilled is not None and \
                        slot.spilled.type == RegType.SCALAR_VALUE:
                    slot.spilled.precise = False

    def propagate_precision(self: Verifier, old: VState) -> None:
        """After pruning against ``old``: what ``old``'s continuation needed precise, the
        current path needs too."""
        bt = BacktrackState(self.state.curframe)
        log = self.log
        lvl2 = bool(log.enabled and log.level & 2)
        for fr in range(old.curframe, -1, -1):
            func = old.frames[fr]
            first = True
            text = ""
            for i in range(10):
                r = func.regs[i]
                if r.type != RegType.SCALAR_VALUE or not r.precise:
                    continue
                text += (f"frame {fr}: propagating r{i}" if first else f",r{i}")
                bt.set_reg(i, fr)
                first = False
            for i, slot in enumerate(func.stack):
                if slot.types[7] != STACK_SPILL or slot.spilled is None:
                    continue
                r = slot.spilled
                if r.type != RegType.SCALAR_VALUE or not r.precise:
                    continue
                text += (f"frame {fr}: propagating fp{(-i - 1) * 8}" if first else f",fp{(-i - 1) * 8}")
                bt.set_slot(i, fr)
                first = False
            if not first and lvl2:
                log(text + "\n")
        self._mark_chain_precision(bt)

    # -- one instruction backwards ---------------------------------------------------------
    def backtrack_insn(self: Verifier, idx: int, subseq_idx: int, hist: tuple | None,
                       bt: BacktrackState) -> None:
        """``backtrack_insn``: turn "needed precise after ``idx``" into "needed before"."""
        ins = self.insns[idx]
        if ins.code == 0:
            return
        log = self.log
        if log.enabled and log.level & 2:
            log(f"mark_precise: frame{bt.frame}: regs={fmt_reg_mask(bt.regs[bt.frame])} "
                f"stack={fmt_stack_mask(bt.stack[bt.frame])} before {idx}: {self.format_insn(idx)}\n")
        linked = hist[3] if hist is not None else ()
        flags = hist[2] if hist is not None else 0
        bt.sync_linked_regs(linked)
        cls = ins.code & 7
        op = ins.code & 0xF0
        mode = ins.code & 0xE0
        dreg, sreg = ins.dst, ins.src
        x = bool(ins.code & 0x08)
        if cls in (4, 7):
            if not bt.is_reg(dreg):
                return
            if op in (0xD0, 0x80):  # BPF_END, BPF_NEG
                return
            if op == 0xB0:  # MOV
                bt.clear_reg(dreg)
                if x and sreg != 10:
                    bt.set_reg(sreg)
            elif x and sreg != 10:
                bt.set_reg(sreg)
        # An atomic fetch loads the old memory value into sreg (r0 for cmpxchg): like a fill,
        # its precision comes from the stack slot. 6.18 still treats it as a store here (its
        # log then backtracks the register's previous value); later kernels fixed that, and
        # pybpf keeps the sound rule.
        elif cls == 1 or (cls == 3 and mode == 0xC0 and (ins.imm & 1)):
            load_reg = dreg
            if cls == 3:
                load_reg = 0 if ins.imm == 0xF1 else sreg
            if not bt.is_reg(load_reg):
                return
            bt.clear_reg(load_reg)
            if not flags & INSN_F_STACK_ACCESS:
                return
            spi = (flags >> INSN_F_SPI_SHIFT) & INSN_F_SPI_MASK
            bt.set_slot(spi, flags & INSN_F_FRAMENO_MASK)
        elif cls in (2, 3):
            if bt.is_reg(dreg):
                raise BacktrackError("stx with scalar dst")
            if not flags & INSN_F_STACK_ACCESS:
                return
            spi = (flags >> INSN_F_SPI_SHIFT) & INSN_F_SPI_MASK
            fr = flags & INSN_F_FRAMENO_MASK
            if not bt.is_slot(spi, fr):
                return
            bt.clear_slot(spi, fr)
            if cls == 3:
                bt.set_reg(sreg)
        elif cls in (5, 6):
            if op == 0x80 and ins.src == 1 and self.cfg.subprogs[
                    self.cfg.subprog_of(idx + ins.imm + 1)].linkage == 1:
                # a global function: verified apart, it only sets R0 and clobbers R1-R5
                if bt.regs[bt.frame] & REGMASK_ARGS:
                    raise BacktrackError("global call")
                bt.clear_reg(0)
                return
            if op == 0x80 and ins.src == 1:  # bpf-to-bpf call: leaving the callee backwards
                if bt.regs[bt.frame] & ~REGMASK_ARGS or bt.stack[bt.frame]:
                    raise BacktrackError("call")
                for i in range(1, 6):
                    if bt.is_reg(i):
                        bt.clear_reg(i)
                        bt.set_reg(i, bt.frame - 1)
                bt.subprog_exit()
            elif op == 0x80 and ins.src != 1 and idx in self.calls_callback and idx != subseq_idx - 1:
                # leaving a callback backwards to the helper that invoked it: R1-R5 of the
                # callback were set by the helper, not passed from the caller's registers
                if bt.regs[bt.frame] & ~REGMASK_ARGS or bt.stack[bt.frame]:
                    raise BacktrackError("callback entry")
                for i in range(1, 6):
                    bt.clear_reg(i)
                bt.subprog_exit()
            elif op == 0x80:
                if ins.src == 2 and ins.imm == 0:
                    raise BacktrackError("kfunc")
                bt.clear_reg(0)
                if bt.regs[bt.frame] & REGMASK_ARGS:
                    raise BacktrackError("helper args")
            elif op == 0x90:  # exit: entering the callee backwards
                if subseq_idx >= 0 and subseq_idx in self.calls_callback:
                    for i in range(1, 6):  # a callback's caller registers are not its results
                        bt.clear_reg(i)
                from_call = subseq_idx - 1 >= 0 and self.insns[subseq_idx - 1].code == 0x85 and \
                    self.insns[subseq_idx - 1].src == 1
                r0 = from_call and bt.is_reg(0)
                if from_call and bt.regs[bt.frame] & REGMASK_ARGS:
                    raise BacktrackError("exit")
                bt.clear_reg(0)
                bt.subprog_enter()
                if r0:
                    bt.set_reg(0)
            elif x:
                if not bt.is_reg(dreg) and not bt.is_reg(sreg):
                    return
                if not flags & INSN_F_SRC_REG_STACK:
                    bt.set_reg(sreg)
                if not flags & INSN_F_DST_REG_STACK:
                    bt.set_reg(dreg)
        elif cls == 0:
            if mode == 0x00:  # ld_imm64
                bt.clear_reg(dreg)
                return
            if mode in (0x20, 0x40):
                if bt.is_reg(dreg):
                    raise BacktrackError("ld_abs")
                if subseq_idx != idx + 1:
                    bt.subprog_enter()
                return
        bt.sync_linked_regs(linked)


def collect_linked_regs(st: VState, rid: int, out: list[tuple[int, bool, int]],
                        live: list[int] | None = None) -> None:
    """``collect_linked_regs``: every scalar register or spilled scalar sharing ``rid``
    (whatever constant delta it carries); with ``live`` (per frame, the registers live at
    that frame's instruction) only live registers, as 6.18 collects them."""
    rid &= ~BPF_ADD_CONST
    for fr, func in enumerate(st.frames):
        for i in range(10):
            if live is not None and not live[fr] >> i & 1:
                continue
            r = func.regs[i]
            if r.type == RegType.SCALAR_VALUE and r.id and (r.id & ~BPF_ADD_CONST) == rid:
                e = (fr, True, i)
                if e not in out and len(out) < 6:
                    out.append(e)
        for spi, slot in enumerate(func.stack):
            if slot.types[7] != STACK_SPILL or slot.spilled is None:
                continue
            r = slot.spilled
            if r.type == RegType.SCALAR_VALUE and r.id and (r.id & ~BPF_ADD_CONST) == rid:
                e = (fr, False, spi)
                if e not in out and len(out) < 6:
                    out.append(e)


__all__ = ["BacktrackState", "PrecisionMixin", "collect_linked_regs", "stack_access_flags"]
