"""Tristate numbers (the kernel's ``kernel/bpf/tnum.c``): what is known bit by bit.

A :class:`Tnum` ``(value, mask)`` describes every u64 ``x`` with ``x & ~mask == value``:
bits set in ``mask`` are unknown, the others equal ``value``'s. The verifier keeps one per
scalar register (``var_off``) next to the numeric bounds; the two refine each other.
"""

from __future__ import annotations

from typing import NamedTuple

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1


class Tnum(NamedTuple):
    value: int
    mask: int

    # -- predicates ---------------------------------------------------------------------
    def is_const(self) -> bool:
        return self.mask == 0

    def is_unknown(self) -> bool:
        return self.mask == U64

    def equals_const(self, b: int) -> bool:
        return self.mask == 0 and self.value == b

    def is_aligned(self, size: int) -> bool:
        if not size:
            return True
        return ((self.value | self.mask) & (size - 1)) == 0

    def contains(self, other: Tnum) -> bool:
        """``other`` is a subset of ``self`` (``tnum_in``)."""
        if other.mask & ~self.mask & U64:
            return False
        return self.value == (other.value & ~self.mask & U64)

    def min(self) -> int:
        return self.value

    def max(self) -> int:
        return self.value | self.mask

    def __str__(self) -> str:  # tnum_strn
        return f"(0x{self.value:x}; 0x{self.mask:x})"


def const(v: int) -> Tnum:
    return Tnum(v & U64, 0)


UNKNOWN = Tnum(0, U64)


def tnum_range(lo: int, hi: int) -> Tnum:
    """The smallest tnum containing every value of ``[lo, hi]`` (unsigned)."""
    chi = lo ^ hi
    bits = chi.bit_length()
    if bits > 63:
        return UNKNOWN
    delta = (1 << bits) - 1
    return Tnum(lo & ~delta & U64, delta)


def lshift(a: Tnum, s: int) -> Tnum:
    return Tnum((a.value << s) & U64, (a.mask << s) & U64)


def rshift(a: Tnum, s: int) -> Tnum:
    return Tnum(a.value >> s, a.mask >> s)


def _sx(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def arshift(a: Tnum, s: int, bits: int) -> Tnum:
    """Arithmetic right shift of the low ``bits`` (32 or 64) bits."""
    m = (1 << bits) - 1
    return Tnum((_sx(a.value, bits) >> s) & m, (_sx(a.mask, bits) >> s) & m)


def add(a: Tnum, b: Tnum) -> Tnum:
    sm = (a.mask + b.mask) & U64
    sv = (a.value + b.value) & U64
    sigma = (sm + sv) & U64
    chi = sigma ^ sv
    mu = chi | a.mask | b.mask
    return Tnum(sv & ~mu & U64, mu & U64)


def sub(a: Tnum, b: Tnum) -> Tnum:
    dv = (a.value - b.value) & U64
    alpha = (dv + a.mask) & U64
    beta = (dv - b.mask) & U64
    chi = alpha ^ beta
    mu = chi | a.mask | b.mask
    return Tnum(dv & ~mu & U64, mu & U64)


def neg(a: Tnum) -> Tnum:
    return sub(Tnum(0, 0), a)


def and_(a: Tnum, b: Tnum) -> Tnum:
    alpha = a.value | a.mask
    beta = b.value | b.mask
    v = a.value & b.value
    return Tnum(v, alpha & beta & ~v & U64)


def or_(a: Tnum, b: Tnum) -> Tnum:
    v = a.value | b.value
    mu = a.mask | b.mask
    return Tnum(v, mu & ~v & U64)


def xor(a: Tnum, b: Tnum) -> Tnum:
    v = a.value ^ b.value
    mu = a.mask | b.mask
    return Tnum(v & ~mu & U64, mu)


def mul(a: Tnum, b: Tnum) -> Tnum:
    """Multiplication as the kernel's shift-and-add over ``a``'s bits."""
    acc_v = (a.value * b.value) & U64
    if a.mask == 0 and b.mask == 0:  # the loop below would only add zeros
        return Tnum(acc_v, 0)
    acc_m = Tnum(0, 0)
    while a.value or a.mask:
        if a.value & 1:
            acc_m = add(acc_m, Tnum(0, b.mask))
        elif a.mask & 1:
            acc_m = add(acc_m, Tnum(0, b.value | b.mask))
        a = rshift(a, 1)
        b = lshift(b, 1)
    return add(Tnum(acc_v, 0), acc_m)


def intersect(a: Tnum, b: Tnum) -> Tnum:
    v = a.value | b.value
    mu = a.mask & b.mask
    return Tnum(v & ~mu & U64, mu)


def union(a: Tnum, b: Tnum) -> Tnum:
    """Smallest tnum containing both (used when bounds are joined)."""
    v = a.value & b.value
    mu = a.mask | b.mask | (a.value ^ b.value)
    return Tnum(v & ~mu & U64, mu & U64)


def cast(a: Tnum, size: int) -> Tnum:
    m = (1 << (size * 8)) - 1
    return Tnum(a.value & m, a.mask & m)


def subreg(a: Tnum) -> Tnum:
    return cast(a, 4)


def clear_subreg(a: Tnum) -> Tnum:
    return lshift(rshift(a, 32), 32)


def with_subreg(a: Tnum, sub_: Tnum) -> Tnum:
    return or_(clear_subreg(a), subreg(sub_))


def const_subreg(a: Tnum, v: int) -> Tnum:
    return with_subreg(a, const(v & U32))


def is_subreg_const(a: Tnum) -> bool:
    return (a.mask & U32) == 0
