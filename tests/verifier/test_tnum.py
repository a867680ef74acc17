"""tnum operations are sound: every concrete result lies in the abstract result."""

from __future__ import annotations

import itertools
import random

from pybpf.verifier import tnum as tn
from pybpf.verifier.regs import Reg, mark_known, mark_unknown, reg_bounds_sync

M = tn.U64


def _members(t: tn.Tnum, limit: int = 64) -> list[int]:
    bits = [i for i in range(64) if (t.mask >> i) & 1][:6]
    out = []
    for combo in itertools.product([0, 1], repeat=len(bits)):
        v = t.value
        for b, on in zip(bits, combo):
            v |= on << b
        out.append(v)
    return out[:limit]


def _rand_tnum(rng: random.Random) -> tn.Tnum:
    mask = rng.getrandbits(8) << rng.randrange(0, 56)
    return tn.Tnum(rng.getrandbits(64) & ~mask & M, mask)


def test_binary_ops_are_sound() -> None:
    rng = random.Random(1)
    ops = {tn.add: lambda a, b: (a + b) & M, tn.sub: lambda a, b: (a - b) & M,
           tn.and_: lambda a, b: a & b, tn.or_: lambda a, b: a | b, tn.xor: lambda a, b: a ^ b,
           tn.mul: lambda a, b: (a * b) & M}
    for _ in range(150):
        a, b = _rand_tnum(rng), _rand_tnum(rng)
        for f, conc in ops.items():
            r = f(a, b)
            for x in _members(a, 8):
                for y in _members(b, 8):
                    assert r.contains(tn.const(conc(x, y))), (f.__name__, a, b, x, y)


def test_range_and_shifts() -> None:
    assert tn.tnum_range(0, 7) == tn.Tnum(0, 7)
    assert tn.tnum_range(5, 5) == tn.const(5)
    assert tn.tnum_range(0, M).is_unknown()
    assert tn.lshift(tn.Tnum(1, 2), 4) == tn.Tnum(16, 32)
    assert tn.arshift(tn.const(M), 4, 64) == tn.const(M)
    assert tn.arshift(tn.const(0x80000000), 31, 32) == tn.const(0xFFFFFFFF)
    assert str(tn.Tnum(0, 0xFC)) == "(0x0; 0xfc)"


def test_bounds_sync_keeps_constants_consistent() -> None:
    r = Reg()
    mark_unknown(r)
    mark_known(r, 42)
    reg_bounds_sync(r)
    assert (r.umin, r.umax, r.smin, r.smax, r.u32_min, r.s32_max) == (42, 42, 42, 42, 42, 42)
    u = Reg()
    mark_unknown(u)
    u.var_off = tn.Tnum(0, 0xFF)
    reg_bounds_sync(u)
    assert (u.umin, u.umax, u.smin, u.smax) == (0, 255, 0, 255)
