"""Bounds of scalar ALU results (``adjust_scalar_min_max_vals`` and its helpers).

Each operation updates the tnum and the four ranges of ``dst`` from ``src``; where a
result could overflow a range, the range becomes unbounded rather than wrong. 32-bit ops
work on the subregister bounds and then zero-extend.
"""

from __future__ import annotations

from pybpf.isa.opcodes import AluOp
from pybpf.verifier import tnum as tn
from pybpf.verifier.regs import (
    S32_MAX,
    S32_MIN,
    S64_MAX,
    S64_MIN,
    Reg,
    mark_known,
    mark_reg32_known,
    mark_reg32_unbounded,
    mark_reg64_unbounded,
    mark_unknown,
    reg_bounds_sync,
    update_reg_bounds,
    zext_32_to_64,
)
from pybpf.verifier.tnum import U32, U64


def _add32(d: Reg, s: Reg) -> None:
    a, b = d.s32_min + s.s32_min, d.s32_max + s.s32_max
    if a < S32_MIN or a > S32_MAX or b < S32_MIN or b > S32_MAX:
        d.s32_min, d.s32_max = S32_MIN, S32_MAX
    else:
        d.s32_min, d.s32_max = a, b
    # unsigned: when both ends wrap (or neither), the range stays contiguous modulo 2^32
    a, b = d.u32_min + s.u32_min, d.u32_max + s.u32_max
    if a <= U32 < b:
        d.u32_min, d.u32_max = 0, U32
    else:
        d.u32_min, d.u32_max = a & U32, b & U32


def _add64(d: Reg, s: Reg) -> None:
    a, b = d.smin + s.smin, d.smax + s.smax
    if a < S64_MIN or a > S64_MAX or b < S64_MIN or b > S64_MAX:
        d.smin, d.smax = S64_MIN, S64_MAX
    else:
        d.smin, d.smax = a, b
    a, b = d.umin + s.umin, d.umax + s.umax
    if a <= U64 < b:
        d.umin, d.umax = 0, U64
    else:
        d.umin, d.umax = a & U64, b & U64


def _sub32(d: Reg, s: Reg) -> None:
    a, b = d.s32_min - s.s32_max, d.s32_max - s.s32_min
    if a < S32_MIN or a > S32_MAX or b < S32_MIN or b > S32_MAX:
        d.s32_min, d.s32_max = S32_MIN, S32_MAX
    else:
        d.s32_min, d.s32_max = a, b
    # unsigned: when both ends wrap below zero (or neither), the range stays contiguous
    a, b = d.u32_min - s.u32_max, d.u32_max - s.u32_min
    if a < 0 <= b:
        d.u32_min, d.u32_max = 0, U32
    else:
        d.u32_min, d.u32_max = a & U32, b & U32


def _sub64(d: Reg, s: Reg) -> None:
    a, b = d.smin - s.smax, d.smax - s.smin
    if a < S64_MIN or a > S64_MAX or b < S64_MIN or b > S64_MAX:
        d.smin, d.smax = S64_MIN, S64_MAX
    else:
        d.smin, d.smax = a, b
    a, b = d.umin - s.umax, d.umax - s.umin
    if a < 0 <= b:
        d.umin, d.umax = 0, U64
    else:
        d.umin, d.umax = a & U64, b & U64


def _mul32(d: Reg, s: Reg) -> None:
    lo, hi = d.u32_min * s.u32_min, d.u32_max * s.u32_max
    if hi > U32:
        d.u32_min, d.u32_max = 0, U32
    else:
        d.u32_min, d.u32_max = lo, hi
    prods = [d.s32_min * s.s32_min, d.s32_min * s.s32_max, d.s32_max * s.s32_min,
             d.s32_max * s.s32_max]
    if any(p < S32_MIN or p > S32_MAX for p in prods):
        d.s32_min, d.s32_max = S32_MIN, S32_MAX
    else:
        d.s32_min, d.s32_max = min(prods), max(prods)


def _mul64(d: Reg, s: Reg) -> None:
    lo, hi = d.umin * s.umin, d.umax * s.umax
    if hi > U64:
        d.umin, d.umax = 0, U64
    else:
        d.umin, d.umax = lo, hi
    prods = [d.smin * s.smin, d.smin * s.smax, d.smax * s.smin, d.smax * s.smax]
    if any(p < S64_MIN or p > S64_MAX for p in prods):
        d.smin, d.smax = S64_MIN, S64_MAX
    else:
        d.smin, d.smax = min(prods), max(prods)


def _signed_from_unsigned32(d: Reg) -> None:
    if d.u32_min <= S32_MAX >= d.u32_max and d.u32_max <= S32_MAX:
        d.s32_min, d.s32_max = d.u32_min, d.u32_max
    else:
        d.s32_min, d.s32_max = S32_MIN, S32_MAX


def _signed_from_unsigned64(d: Reg) -> None:
    if d.umax <= S64_MAX:
        d.smin, d.smax = d.umin, d.umax
    else:
        d.smin, d.smax = S64_MIN, S64_MAX


def _and32(d: Reg, s: Reg) -> None:
    v = tn.subreg(d.var_off)
    if tn.is_subreg_const(s.var_off) and tn.is_subreg_const(d.var_off):
        mark_reg32_known(d, v.value)
        return
    d.u32_min = v.value
    d.u32_max = min(d.u32_max, s.u32_max)
    _signed_from_unsigned32(d)


def _and64(d: Reg, s: Reg) -> None:
    if s.var_off.is_const() and d.var_off.is_const():
        mark_known(d, d.var_off.value)
        return
    d.umin = d.var_off.value
    d.umax = min(d.umax, s.umax)
    _signed_from_unsigned64(d)
    update_reg_bounds(d)


def _or32(d: Reg, s: Reg) -> None:
    v = tn.subreg(d.var_off)
    if tn.is_subreg_const(s.var_off) and tn.is_subreg_const(d.var_off):
        mark_reg32_known(d, v.value)
        return
    d.u32_min = max(d.u32_min, s.u32_min)
    d.u32_max = (v.value | v.mask) & U32
    _signed_from_unsigned32(d)


def _or64(d: Reg, s: Reg) -> None:
    if s.var_off.is_const() and d.var_off.is_const():
        mark_known(d, d.var_off.value)
        return
    d.umin = max(d.umin, s.umin)
    d.umax = d.var_off.value | d.var_off.mask
    _signed_from_unsigned64(d)
    update_reg_bounds(d)


def _xor32(d: Reg, s: Reg) -> None:
    v = tn.subreg(d.var_off)
    if tn.is_subreg_const(s.var_off) and tn.is_subreg_const(d.var_off):
        mark_reg32_known(d, v.value)
        return
    d.u32_min = v.value
    d.u32_max = (v.value | v.mask) & U32
    _signed_from_unsigned32(d)


def _xor64(d: Reg, s: Reg) -> None:
    if s.var_off.is_const() and d.var_off.is_const():
        mark_known(d, d.var_off.value)
        return
    d.umin = d.var_off.value
    d.umax = d.var_off.value | d.var_off.mask
    _signed_from_unsigned64(d)
    update_reg_bounds(d)


def _lsh32_bounds(d: Reg, umin_val: int, umax_val: int) -> None:
    d.s32_min, d.s32_max = S32_MIN, S32_MAX
    if umax_val > 31 or d.u32_max > (1 << (31 - umax_val)):
        d.u32_min, d.u32_max = 0, U32
    else:
        d.u32_min <<= umin_val
        d.u32_max <<= umax_val


def _lsh32(d: Reg, s: Reg) -> None:
    _lsh32_bounds(d, s.u32_min, s.u32_max)
    d.var_off = tn.subreg(tn.lshift(d.var_off, s.u32_min))
    mark_reg64_unbounded(d)
    update_reg_bounds(d)


def _lsh64(d: Reg, s: Reg) -> None:
    umin_val, umax_val = s.umin, s.umax
    # ``<<32`` then ``s>>32`` is how compilers sign-extend a subregister: the 64-bit
    # signed range is the unshifted s32 range moved up (no sign flip is possible), so
    # it must be taken before the 32-bit bounds are shifted
    if umin_val == 32 and umax_val == 32:
        d.smin, d.smax = d.s32_min << 32, d.s32_max << 32
    else:
        d.smin, d.smax = S64_MIN, S64_MAX
    _lsh32_bounds(d, umin_val, umax_val)
    if d.umax > (1 << (63 - umax_val)):
        d.umin, d.umax = 0, U64
    else:
        d.umin <<= umin_val
        d.umax <<= umax_val
    d.var_off = tn.lshift(d.var_off, umin_val)
    update_reg_bounds(d)


def _rsh32(d: Reg, s: Reg) -> None:
    umin_val, umax_val = s.u32_min, s.u32_max
    sub = tn.subreg(d.var_off)
    d.s32_min, d.s32_max = S32_MIN, S32_MAX
    sub = tn.rshift(sub, umin_val)
    d.u32_min >>= umax_val
    d.u32_max >>= umin_val
    d.var_off = tn.with_subreg(d.var_off, sub)
    mark_reg64_unbounded(d)
    update_reg_bounds(d)


def _rsh64(d: Reg, s: Reg) -> None:
    umin_val, umax_val = s.umin, s.umax
    d.smin, d.smax = S64_MIN, S64_MAX
    d.var_off = tn.rshift(d.var_off, umin_val)
    d.umin >>= umax_val
    d.umax >>= umin_val
    mark_reg32_unbounded(d)
    update_reg_bounds(d)


def _arsh32(d: Reg, s: Reg) -> None:
    umin_val = s.u32_min
    d.s32_min >>= umin_val
    d.s32_max >>= umin_val
    d.var_off = tn.subreg(tn.arshift(tn.subreg(d.var_off), umin_val, 32))
    d.u32_min, d.u32_max = 0, U32
    mark_reg64_unbounded(d)
    update_reg_bounds(d)


def _arsh64(d: Reg, s: Reg) -> None:
    umin_val = s.umin
    d.smin >>= umin_val
    d.smax >>= umin_val
    d.var_off = tn.arshift(d.var_off, umin_val, 64)
    d.umin, d.umax = 0, U64
    mark_reg32_unbounded(d)
    update_reg_bounds(d)


def _src_is_const(src: Reg, alu32: bool) -> bool:
    if alu32:
        return (tn.is_subreg_const(src.var_off) and src.s32_min == src.s32_max
                and src.u32_min == src.u32_max)
    return src.var_off.is_const() and src.smin == src.smax and src.umin == src.umax


_ALWAYS_SAFE = frozenset({AluOp.ADD, AluOp.SUB, AluOp.AND, AluOp.XOR, AluOp.OR, AluOp.MUL})
_SHIFTS = frozenset({AluOp.LSH, AluOp.RSH, AluOp.ARSH})


def safe_to_compute(op: int, src: Reg, alu32: bool) -> bool:
    if op in _ALWAYS_SAFE:
        return True
    if op in _SHIFTS:
        return _src_is_const(src, alu32) and src.umax < (32 if alu32 else 64)
    return False


def fork_candidate(d: Reg) -> bool | None:
    """``maybe_fork_scalars``: a register known to be 0 or -1 is split into both paths
    before AND/OR with a constant. Returns alu32 flag, or ``None`` for no fork."""
    if d.smin == -1 and d.smax == 0:
        return False
    if d.s32_min == -1 and d.s32_max == 0:
        return True
    return None


def add_scalar_bounds(d: Reg, s: Reg) -> None:
    """``d += s`` on the 32- and 64-bit ranges and the tnum, without the final sync (what
    ``sync_linked_regs`` applies for a linked register's delta)."""
    _add32(d, s)
    _add64(d, s)
    d.var_off = tn.add(d.var_off, s.var_off)


def adjust_scalar(op: int, d: Reg, s: Reg, alu32: bool) -> None:
    """Apply ``d op= s`` to the bounds of scalar ``d``."""
    if not safe_to_compute(op, s, alu32):
        # the kernel gives up entirely here (no zero-extension even for alu32): a 32-bit
        # div/mod or variable shift leaves a fully unknown 64-bit scalar
        mark_unknown(d)
        return
    if op == AluOp.ADD:
        add_scalar_bounds(d, s)
    elif op == AluOp.SUB:
        _sub32(d, s)
        _sub64(d, s)
        d.var_off = tn.sub(d.var_off, s.var_off)
    elif op == AluOp.MUL:
        d.var_off = tn.mul(d.var_off, s.var_off)
        _mul32(d, s)
        _mul64(d, s)
    elif op == AluOp.AND:
        d.var_off = tn.and_(d.var_off, s.var_off)
        _and32(d, s)
        _and64(d, s)
    elif op == AluOp.OR:
        d.var_off = tn.or_(d.var_off, s.var_off)
        _or32(d, s)
        _or64(d, s)
    elif op == AluOp.XOR:
        d.var_off = tn.xor(d.var_off, s.var_off)
        _xor32(d, s)
        _xor64(d, s)
    elif op == AluOp.LSH:
        (_lsh32 if alu32 else _lsh64)(d, s)
    elif op == AluOp.RSH:
        (_rsh32 if alu32 else _rsh64)(d, s)
    elif op == AluOp.ARSH:
        (_arsh32 if alu32 else _arsh64)(d, s)
    if alu32:
        zext_32_to_64(d)
    reg_bounds_sync(d)
