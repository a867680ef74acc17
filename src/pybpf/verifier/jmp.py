# mypy: disable-error-code="misc"
"""Conditional jumps: ``is_branch_taken``, ``reg_set_min_max``, null checks, packet ranges."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pybpf.isa.insn import Insn
from pybpf.isa.opcodes import JmpOp
from pybpf.verifier import spectre
from pybpf.verifier import tnum as tn
from pybpf.verifier.precision import INSN_F_DST_REG_STACK, INSN_F_SRC_REG_STACK, collect_linked_regs
from pybpf.verifier.regs import (
    BPF_ADD_CONST,
    BPF_ADD_CONST32,
    PTR_MAYBE_NULL,
    Reg,
    RegType,
    mark_scalar_known,
    reg_bounds_sync,
    s32,
    s64,
    zext_32_to_64,
)
from pybpf.verifier.scalar_alu import add_scalar_bounds
from pybpf.verifier.spin_lock import reg_may_point_to_spin_lock
from pybpf.verifier.state import VState
from pybpf.verifier.tnum import U32, U64

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

JSET_X = 0x48  # rev_opcode(JSET): the kernel's "BPF_JSET | BPF_X" marker
MAX_PACKET_OFF = 0xFFFF
AT_PKT_END = -1
BEYOND_PKT_END = -2

_FLIP: dict[int, int] = {JmpOp.JGT: JmpOp.JLT, JmpOp.JLT: JmpOp.JGT, JmpOp.JGE: JmpOp.JLE, JmpOp.JLE: JmpOp.JGE,
         JmpOp.JSGT: JmpOp.JSLT, JmpOp.JSLT: JmpOp.JSGT, JmpOp.JSGE: JmpOp.JSLE,
         JmpOp.JSLE: JmpOp.JSGE, JmpOp.JEQ: JmpOp.JEQ, JmpOp.JNE: JmpOp.JNE, JmpOp.JSET: JmpOp.JSET}
_REV: dict[int, int] = {JmpOp.JEQ: JmpOp.JNE, JmpOp.JNE: JmpOp.JEQ, JmpOp.JGT: JmpOp.JLE, JmpOp.JLE: JmpOp.JGT,
        JmpOp.JGE: JmpOp.JLT, JmpOp.JLT: JmpOp.JGE, JmpOp.JSGT: JmpOp.JSLE, JmpOp.JSLE: JmpOp.JSGT,
        JmpOp.JSGE: JmpOp.JSLT, JmpOp.JSLT: JmpOp.JSGE, JmpOp.JSET: JSET_X}


def _is_reg_const(r: Reg, is32: bool) -> bool:
    if r.type != RegType.SCALAR_VALUE:
        return False
    return tn.is_subreg_const(r.var_off) if is32 else r.var_off.mask == 0


def _const_val(r: Reg, is32: bool) -> int:
    return r.var_off.value & U32 if is32 else r.var_off.value


#: pointer types whose base is never NULL (``reg_not_null``); BTF pointers only when trusted
_NOT_NULL = frozenset({RegType.PTR_TO_SOCKET, RegType.PTR_TO_TCP_SOCK, RegType.PTR_TO_XDP_SOCK,
                       RegType.PTR_TO_BUF, RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_MAP_KEY,
                       RegType.PTR_TO_SOCK_COMMON, RegType.PTR_TO_MEM, RegType.CONST_PTR_TO_MAP})
BPF_MAX_VAR_OFF = 1 << 29


def reg_not_null(r: Reg) -> bool:
    """``reg_not_null``: a pointer known non-NULL — unless a huge variable offset could
    wrap it to zero. An ``rcu_ptr_`` (or untrusted one) read from a struct may be NULL."""
    t = r.type
    if t & PTR_MAYBE_NULL:
        return False
    if r.smin <= -BPF_MAX_VAR_OFF or r.smax >= BPF_MAX_VAR_OFF:
        return False
    b = t & 0xFF
    if b == RegType.PTR_TO_BTF_ID:
        from pybpf.verifier.btf_access import is_trusted_reg
        return is_trusted_reg(r)
    return b in _NOT_NULL


def _pkt_any(r: Reg) -> bool:
    return r.type in (RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META, RegType.PTR_TO_PACKET_END)


def is_pkt_ptr_branch_taken(d: Reg, s: Reg, op: int) -> int:
    if s.type == RegType.PTR_TO_PACKET_END:
        pkt = d
    elif d.type == RegType.PTR_TO_PACKET_END:
        pkt = s
        op = _FLIP[op]
    else:
        return -1
    if pkt.range >= 0:
        return -1
    if op in (JmpOp.JLE, JmpOp.JGT) and pkt.range == BEYOND_PKT_END:
        return int(op == JmpOp.JGT)
    if op in (JmpOp.JLT, JmpOp.JGE) and pkt.range in (BEYOND_PKT_END, AT_PKT_END):
        return int(op == JmpOp.JGE)
    return -1


def _bounds(r: Reg, is32: bool) -> tuple[int, int, int, int]:
    if is32:
        return r.u32_min, r.u32_max, r.s32_min, r.s32_max
    return r.umin, r.umax, r.smin, r.smax


def is_scalar_branch_taken(r1: Reg, r2: Reg, op: int, is32: bool) -> int:
    t1 = tn.subreg(r1.var_off) if is32 else r1.var_off
    t2 = tn.subreg(r2.var_off) if is32 else r2.var_off
    umin1, umax1, smin1, smax1 = _bounds(r1, is32)
    umin2, umax2, smin2, smax2 = _bounds(r2, is32)
    if op == JmpOp.JEQ or op == JmpOp.JNE:
        eq = op == JmpOp.JEQ
        if t1.mask == 0 and t2.mask == 0:
            return int((t1.value == t2.value) == eq)
        if umin1 > umax2 or umax1 < umin2 or smin1 > smax2 or smax1 < smin2:
            return 0 if eq else 1
        if not is32 and (r1.u32_min > r2.u32_max or r1.u32_max < r2.u32_min
                         or r1.s32_min > r2.s32_max or r1.s32_max < r2.s32_min):
            return 0 if eq else 1
        if (t1.value ^ t2.value) & ~(t1.mask | t2.mask) & (U32 if is32 else U64):
            return 0 if eq else 1
    elif op == JmpOp.JSET:
        if not _is_reg_const(r2, is32):
            r1, r2 = r2, r1
            t1, t2 = t2, t1
        if not _is_reg_const(r2, is32):
            return -1
        if (~t1.mask & t1.value) & t2.value:
            return 1
        if not ((t1.mask | t1.value) & t2.value):
            return 0
    elif op == JmpOp.JGT:
        if umin1 > umax2:
            return 1
        if umax1 <= umin2:
            return 0
    elif op == JmpOp.JSGT:
        if smin1 > smax2:
            return 1
        if smax1 <= smin2:
            return 0
    elif op == JmpOp.JLT:
        if umax1 < umin2:
            return 1
        if umin1 >= umax2:
            return 0
    elif op == JmpOp.JSLT:
        if smax1 < smin2:
            return 1
        if smin1 >= smax2:
            return 0
    elif op == JmpOp.JGE:
        if umin1 >= umax2:
            return 1
        if umax1 < umin2:
            return 0
    elif op == JmpOp.JSGE:
        if smin1 >= smax2:
            return 1
        if smax1 < smin2:
            return 0
    elif op == JmpOp.JLE:
        if umax1 <= umin2:
            return 1
        if umin1 > umax2:
            return 0
    elif op == JmpOp.JSLE:
        if smax1 <= smin2:
            return 1
        if smin1 > smax2:
            return 0
    return -1


def is_branch_taken(r1: Reg, r2: Reg, op: int, is32: bool) -> int:
    if _pkt_any(r1) and _pkt_any(r2) and not is32:
        return is_pkt_ptr_branch_taken(r1, r2, op)
    if r1.is_pointer() or r2.is_pointer():
        if not _is_reg_const(r2, is32):
            op = _FLIP[op]
            r1, r2 = r2, r1
        if not _is_reg_const(r2, is32):
            return -1
        if not reg_not_null(r1):
            return -1
        if _const_val(r2, is32) != 0:
            return -1
        if op == JmpOp.JEQ:
            return 0
        if op == JmpOp.JNE:
            return 1
        return -1
    return is_scalar_branch_taken(r1, r2, op, is32)


def regs_refine_cond_op(r1: Reg, r2: Reg, op: int, is32: bool) -> None:
    if op == JmpOp.JEQ:
        if is32:
            r1.u32_min = max(r1.u32_min, r2.u32_min)
            r1.u32_max = min(r1.u32_max, r2.u32_max)
            r1.s32_min = max(r1.s32_min, r2.s32_min)
            r1.s32_max = min(r1.s32_max, r2.s32_max)
            r2.u32_min, r2.u32_max, r2.s32_min, r2.s32_max = r1.u32_min, r1.u32_max, r1.s32_min, r1.s32_max
            t = tn.intersect(tn.subreg(r1.var_off), tn.subreg(r2.var_off))
            r1.var_off = tn.with_subreg(r1.var_off, t)
            r2.var_off = tn.with_subreg(r2.var_off, t)
        else:
            r1.umin = max(r1.umin, r2.umin)
            r1.umax = min(r1.umax, r2.umax)
            r1.smin = max(r1.smin, r2.smin)
            r1.smax = min(r1.smax, r2.smax)
            r2.umin, r2.umax, r2.smin, r2.smax = r1.umin, r1.umax, r1.smin, r1.smax
            r1.var_off = tn.intersect(r1.var_off, r2.var_off)
            r2.var_off = r1.var_off
    elif op == JmpOp.JNE:
        if not _is_reg_const(r2, is32):
            r1, r2 = r2, r1
        if not _is_reg_const(r2, is32):
            return
        val = _const_val(r2, is32)
        if is32:
            if r1.u32_min == val:
                r1.u32_min += 1
            if r1.u32_max == val:
                r1.u32_max -= 1
            if r1.s32_min == s32(val):
                r1.s32_min += 1
            if r1.s32_max == s32(val):
                r1.s32_max -= 1
        else:
            if r1.umin == val:
                r1.umin += 1
            if r1.umax == val:
                r1.umax -= 1
            if r1.smin == s64(val):
                r1.smin += 1
            if r1.smax == s64(val):
                r1.smax -= 1
    elif op == JmpOp.JSET:
        if not _is_reg_const(r2, is32):
            r1, r2 = r2, r1
        if not _is_reg_const(r2, is32):
            return
        val = _const_val(r2, is32)
        if val and not (val & (val - 1)):
            if is32:
                r1.var_off = tn.with_subreg(r1.var_off, tn.or_(tn.subreg(r1.var_off), tn.const(val)))
            else:
                r1.var_off = tn.or_(r1.var_off, tn.const(val))
    elif op == JSET_X:
        if not _is_reg_const(r2, is32):
            r1, r2 = r2, r1
        if not _is_reg_const(r2, is32):
            return
        val = _const_val(r2, is32)
        if is32:
            r1.var_off = tn.with_subreg(r1.var_off, tn.and_(tn.subreg(r1.var_off), tn.const(~val & U32)))
        else:
            r1.var_off = tn.and_(r1.var_off, tn.const(~val & U64))
    elif op == JmpOp.JLE:
        if is32:
            r1.u32_max = min(r1.u32_max, r2.u32_max)
            r2.u32_min = max(r1.u32_min, r2.u32_min)
        else:
            r1.umax = min(r1.umax, r2.umax)
            r2.umin = max(r1.umin, r2.umin)
    elif op == JmpOp.JLT:
        if is32:
            r1.u32_max = min(r1.u32_max, (r2.u32_max - 1) & U32)
            r2.u32_min = max((r1.u32_min + 1) & U32, r2.u32_min)
        else:
            r1.umax = min(r1.umax, (r2.umax - 1) & U64)
            r2.umin = max((r1.umin + 1) & U64, r2.umin)
    elif op == JmpOp.JSLE:
        if is32:
            r1.s32_max = min(r1.s32_max, r2.s32_max)
            r2.s32_min = max(r1.s32_min, r2.s32_min)
        else:
            r1.smax = min(r1.smax, r2.smax)
            r2.smin = max(r1.smin, r2.smin)
    elif op == JmpOp.JSLT:
        if is32:
            r1.s32_max = min(r1.s32_max, s32(r2.s32_max - 1))
            r2.s32_min = max(s32(r1.s32_min + 1), r2.s32_min)
        else:
            r1.smax = min(r1.smax, s64(r2.smax - 1))
            r2.smin = max(s64(r1.smin + 1), r2.smin)
    elif op in (JmpOp.JGE, JmpOp.JGT, JmpOp.JSGE, JmpOp.JSGT):
        regs_refine_cond_op(r2, r1, _FLIP[op], is32)


def reg_set_min_max(t1: Reg, t2: Reg, f1: Reg, f2: Reg, op: int, is32: bool) -> None:
    if f1.type != RegType.SCALAR_VALUE or f2.type != RegType.SCALAR_VALUE:
        return
    regs_refine_cond_op(f1, f2, _REV[op], is32)
    reg_bounds_sync(f1)
    reg_bounds_sync(f2)
    regs_refine_cond_op(t1, t2, op, is32)
    reg_bounds_sync(t1)
    reg_bounds_sync(t2)


def find_good_pkt_pointers(vs: VState, d: Reg, typ: int, right_open: bool) -> None:
    if d.off < 0 or (d.off == 0 and right_open):
        return
    if d.umax > MAX_PACKET_OFF or d.umax + d.off > MAX_PACKET_OFF:
        return
    new_range = d.off + (1 if right_open else 0)
    did = d.id
    for r in vs.all_regs():
        if r.type == typ and r.id == did:
            r.range = max(r.range, new_range)


def mark_pkt_end(vs: VState, regno: int, range_open: bool) -> None:
    r = vs.cur.regs[regno]
    if r.type != RegType.PTR_TO_PACKET:
        return
    r.range = BEYOND_PKT_END if range_open else AT_PKT_END


def _init_pkt(r: Reg, typ: int) -> bool:
    return r.type == typ and r.off == 0 and r.var_off.mask == 0 and r.var_off.value == 0



# ``pkt OP pkt_end`` (try_match_pkt_pointers): which branch state learns the packet range
# (True: the one where the jump is taken, ``this``) and whether the bound is strict; the
# other state's pkt_end register is marked with the opposite strictness.
_PKT_CMP_RULES: dict[int, tuple[bool, bool]] = {
    JmpOp.JGT: (True, False),
    JmpOp.JLT: (False, True),
    JmpOp.JGE: (True, True),
    JmpOp.JLE: (False, False),
}


def try_match_pkt_pointers(ins: Insn, d: Reg, s: Reg, this: VState, other: VState) -> bool:
    if not ins.code & 0x08 or (ins.code & 7) == 6:
        return False
    op = ins.code & 0xF0
    P, E, M = RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_END, RegType.PTR_TO_PACKET_META
    left = (d.type == P and s.type == E) or (d.type == M and _init_pkt(s, P))
    right = (d.type == E and s.type == P) or (_init_pkt(d, P) and s.type == M)
    rule = _PKT_CMP_RULES.get(op)
    if rule is None or not (left or right):
        return False
    in_this, strict = rule
    reg, regno = d, ins.dst
    if not left:  # `end OP pkt` is `pkt OP' end` with the branches swapped
        in_this, strict, reg, regno = not in_this, not strict, s, ins.src
    ranged, marked = (this, other) if in_this else (other, this)
    find_good_pkt_pointers(ranged, reg, reg.type, strict)
    mark_pkt_end(marked, regno, not strict)
    return True


def sync_linked_regs(vs: VState, known: Reg, linked: list[tuple[int, bool, int]]) -> None:
    """``sync_linked_regs``: every scalar linked to ``known`` (``linked``: the live ones
    :func:`collect_linked_regs` found before the branch) learns its new range — the same
    one, or shifted by the difference of their constant deltas (zero-extended when a
    32-bit add made either link). Links of mixed widths are left alone."""
    kid = known.id & ~BPF_ADD_CONST
    for fr, is_reg, n in linked:
        func = vs.frames[fr]
        r = func.regs[n] if is_reg else func.stack[n].spilled
        if r is None or r is known or r.type != RegType.SCALAR_VALUE \
                or (r.id & ~BPF_ADD_CONST) != kid:
            continue
        if (r.id ^ known.id) & BPF_ADD_CONST == BPF_ADD_CONST:
            continue
        if not (r.id | known.id) & BPF_ADD_CONST or r.off == known.off:
            r.assign(known)
            continue
        off, rid = r.off, r.id
        delta = Reg()
        mark_scalar_known(delta, (r.off - known.off) & U64)
        r.assign(known)
        r.off, r.id = off, rid
        add_scalar_bounds(r, delta)
        if (rid | known.id) & BPF_ADD_CONST32:
            zext_32_to_64(r)
        reg_bounds_sync(r)


class JmpMixin:
    def check_may_goto(self: Verifier, ins: Insn) -> None:
        """``may_goto``: take the jump now, explore the fall-through (one more iteration) later."""
        if ins.code != 0xE5 or ins.src != 0 or ins.dst or ins.imm or ins.off == 0:
            self.fail(errno.EINVAL, f"invalid may_goto off {ins.off} imm {ins.imm}\n")
        idx = self.insn_idx
        queued = self.push_stack(idx + 1, idx)
        queued.may_goto_depth += 1
        # the next iteration starts from what changed since the previous one, widened
        # where it was never needed precise: that is what lets the loop converge
        parent = self.state.parent
        prev = self.find_prev_entry(parent, idx) if parent is not None and parent.insn_idx == idx else None
        if prev is not None:
            from pybpf.verifier.callbacks import widen_imprecise_scalars
            widen_imprecise_scalars(prev, queued)
        self.insn_idx += ins.off

    def check_cond_jmp_op(self: Verifier, ins: Insn) -> None:
        op = ins.code & 0xF0
        cls = ins.code & 7
        if op == JmpOp.JA or op > 0xE0:
            self.fail(errno.EINVAL, f"invalid BPF_JMP/JMP32 opcode {op >> 4:x}\n")
        if op == 0xE0:
            self.check_may_goto(ins)
            return
        self.check_reg_arg(ins.dst, src=True)
        regs = self.regs
        d = regs[ins.dst]
        if ins.code & 0x08:
            if ins.imm != 0:
                self.fail(errno.EINVAL, "BPF_JMP/JMP32 uses reserved fields\n")
            self.check_reg_arg(ins.src, src=True)
            s = regs[ins.src]
            if not (d.is_pkt_pointer() or d.type == RegType.PTR_TO_PACKET_END) and s.is_pointer() \
                    and not self.allow_ptr_leaks:
                self.fail(errno.EACCES, f"R{ins.src} pointer comparison prohibited\n")
        else:
            if ins.src != 0:
                self.fail(errno.EINVAL, "BPF_JMP/JMP32 uses reserved fields\n")
            s = Reg()
            mark_scalar_known(s, ins.imm & U64)
        flags = 0
        if ins.code & 0x08 and s.type == RegType.PTR_TO_STACK:
            flags |= INSN_F_SRC_REG_STACK
        if d.type == RegType.PTR_TO_STACK:
            flags |= INSN_F_DST_REG_STACK
        if flags:
            self.push_insn_history(flags)
        is32 = cls == 6
        pred = is_branch_taken(d, s, op, is32)
        if pred >= 0:  # the outcome depends on the exact values: they must stay precise
            if d.type == RegType.SCALAR_VALUE:
                self.mark_chain_precision(ins.dst)
            if ins.code & 0x08 and s.type == RegType.SCALAR_VALUE:
                self.mark_chain_precision(ins.src)
        if pred == 1:
            spectre.push_speculative_branch(self, ins, self.insn_idx + 1)
            self.print_insn_state()
            self.insn_idx += ins.off
            return
        if pred == 0:
            spectre.push_speculative_branch(self, ins, self.insn_idx + ins.off + 1)
            self.print_insn_state()
            return
        linked: list[tuple[int, bool, int]] = []
        live = self.frame_live_regs(self.state)
        live[-1] = self.live_regs[self.insn_idx] if self.live_regs is not None else 0xFFFF
        if ins.code & 0x08 and s.type == RegType.SCALAR_VALUE and s.id:
            collect_linked_regs(self.state, s.id, linked, live)
        if d.type == RegType.SCALAR_VALUE and d.id:
            collect_linked_regs(self.state, d.id, linked, live)
        if len(linked) > 1:  # before the fork, so both branches share the record
            self.push_insn_history(0, tuple(linked))
        target = self.insn_idx + ins.off + 1
        other = self.push_stack(target, self.insn_idx)
        oregs = other.cur.regs
        if ins.code & 0x08:
            reg_set_min_max(oregs[ins.dst], oregs[ins.src], d, s, op, is32)
        else:
            s2 = s.copy()
            reg_set_min_max(oregs[ins.dst], s, d, s2, op, is32)
        if ins.code & 0x08 and s.type == RegType.SCALAR_VALUE and s.id:
            sync_linked_regs(self.state, s, linked)
            sync_linked_regs(other, oregs[ins.src], linked)
        if d.type == RegType.SCALAR_VALUE and d.id:
            sync_linked_regs(self.state, d, linked)
            sync_linked_regs(other, oregs[ins.dst], linked)
        if not is32 and ins.code & 0x08 and op in (JmpOp.JEQ, JmpOp.JNE) and d.is_pointer() \
                and s.is_pointer() and bool(s.type & PTR_MAYBE_NULL) != bool(d.type & PTR_MAYBE_NULL) \
                and RegType.PTR_TO_BTF_ID not in (s.base, d.base):
            # a maybe-NULL pointer equal to a non-NULL one is not NULL where they are equal
            eq_regs = oregs if op == JmpOp.JEQ else self.regs
            self.mark_ptr_not_null_reg(eq_regs[ins.src if s.type & PTR_MAYBE_NULL else ins.dst], False)
        if not is32 and not ins.code & 0x08 and ins.imm == 0 and op in (JmpOp.JEQ, JmpOp.JNE) \
                and d.type & PTR_MAYBE_NULL:
            self.mark_ptr_or_null_regs(self.state, ins.dst, op == JmpOp.JNE)
            self.mark_ptr_or_null_regs(other, ins.dst, op == JmpOp.JEQ)
        elif not try_match_pkt_pointers(ins, d, regs[ins.src], self.state, other) and d.is_pointer() \
                and not self.allow_ptr_leaks:
            self.fail(errno.EACCES, f"R{ins.dst} pointer comparison prohibited\n")
        self.print_insn_state()

    def mark_ptr_or_null_regs(self: Verifier, vs: VState, regno: int, is_null: bool) -> None:
        r = vs.cur.regs[regno]
        ref = r.ref_obj_id
        rid = r.id
        if ref and ref == rid and is_null:
            vs.refs = [x for x in vs.refs if x.id != rid]
        for reg in vs.all_regs():
            if reg.type & PTR_MAYBE_NULL and reg.id == rid and rid:
                if is_null:
                    reg.type = RegType.SCALAR_VALUE
                    reg.id = 0
                    reg.ref_obj_id = 0
                    reg.map_ptr = None
                    reg.off = 0
                    continue
                self.mark_ptr_not_null_reg(reg)

    def mark_ptr_not_null_reg(self: Verifier, reg: Reg, reset_id: bool = True) -> None:
        """Drop ``PTR_MAYBE_NULL`` (a map-in-map lookup becomes the inner map); with
        ``reset_id`` (a NULL check, ``mark_ptr_or_null_reg``) the id goes too unless a lock
        may need it."""
        if reg.base == RegType.PTR_TO_MAP_VALUE:
            m = reg.map_ptr
            inner = getattr(m, "inner_map_meta", None) if m is not None else None
            if m is not None and getattr(m, "map_type", 0) in (12, 13):  # ARRAY_OF_MAPS, HASH_OF_MAPS
                reg.type = RegType.CONST_PTR_TO_MAP
                reg.map_ptr = inner if inner is not None else getattr(m, "inner_map", m)
                if reset_id:
                    reg.id = 0
                return
            mt = getattr(m, "map_type", 0) if m is not None else 0
            if mt == 17:  # XSKMAP
                reg.type = RegType.PTR_TO_XDP_SOCK
            elif mt in (15, 18):  # SOCKMAP, SOCKHASH
                reg.type = RegType.PTR_TO_SOCKET
            else:
                reg.type &= ~PTR_MAYBE_NULL
            if reset_id and not reg_may_point_to_spin_lock(reg):
                reg.id = 0
            return
        reg.type &= ~PTR_MAYBE_NULL
        if reset_id and not reg_may_point_to_spin_lock(reg):  # an object holding a lock keeps its id
            reg.id = 0
