"""Random programs near the verifier's edges, for differential tests and the soundness fuzzer.

Programs are socket filters built from a small menu: scalar arithmetic on random constants
and ctx-derived unknowns, bounds checks, stack spills/fills at random offsets, and loads/stores
through ``r10`` with bounded-by-branch variable offsets. Each ends with ``r0 = <scalar>; exit``.
They come out either accepted or rejected; both kinds are useful.
"""

from __future__ import annotations

import random

from pybpf.isa.insn import Insn

ALU_OPS = [0x00, 0x10, 0x20, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xC0, 0x30, 0x90]
JMP_OPS = [0x10, 0x20, 0x30, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0, 0x40]


def gen_program(rng: random.Random, length: int = 12) -> list[Insn]:
    out: list[Insn] = []
    # unknown scalars: len (off 0) and mark (off 8) of the skb, plus a constant
    out.append(Insn(0x61, 6, 1, 0, 0))   # r6 = skb->len
    out.append(Insn(0x61, 7, 1, 8, 0))   # r7 = skb->mark
    out.append(Insn(0xB7, 8, 0, 0, rng.randrange(-64, 64)))
    out.append(Insn(0x7A, 10, 0, -8, 0))  # *(u64 *)(r10 -8) = 0
    out.append(Insn(0x7A, 10, 0, -16, 0))
    regs = [6, 7, 8]
    for _ in range(length):
        k = rng.random()
        d = rng.choice(regs)
        if k < 0.35:
            op = rng.choice(ALU_OPS)
            cls = rng.choice([0x07, 0x04])
            if op in (0x60, 0x70, 0xC0):
                out.append(Insn(cls | op, d, 0, 0, rng.randrange(0, 32 if cls == 4 else 64)))
            elif op in (0x30, 0x90):
                out.append(Insn(cls | op, d, 0, 0, rng.choice([1, 2, 3, 7, 16])))
            elif rng.random() < 0.5:
                out.append(Insn(cls | op, d, 0, 0, rng.randrange(-300, 300)))
            else:
                out.append(Insn(cls | op | 0x08, d, rng.choice(regs), 0, 0))
        elif k < 0.6:
            op = rng.choice(JMP_OPS)
            out.append(Insn(0x05 | op, d, 0, 1, rng.randrange(-20, 40)))
            out.append(Insn(0xB7, d, 0, 0, rng.randrange(0, 8)))
        elif k < 0.85:
            # variable-offset stack access: r9 = r10 - 16 + (d & 7)
            size_code, _size = rng.choice([(0x18, 8), (0x00, 4), (0x08, 2), (0x10, 1)])
            out.append(Insn(0xBF, 9, d, 0, 0))
            out.append(Insn(0x57, 9, 0, 0, rng.choice([7, 8, 15])))
            out.append(Insn(0x07, 9, 0, 0, -16))
            out.append(Insn(0x0F, 9, 10, 0, 0))
            if rng.random() < 0.5:
                out.append(Insn(0x61 | size_code, rng.choice(regs), 9, 0, 0))
            else:
                out.append(Insn(0x63 | size_code, 9, rng.choice(regs), 0, 0))
        else:
            off = -8 * rng.randrange(1, 3)
            if rng.random() < 0.5:
                out.append(Insn(0x7B, 10, d, off, 0))
            else:
                out.append(Insn(0x79, d, 10, off, 0))
    out.append(Insn(0xBF, 0, rng.choice(regs), 0, 0))
    out.append(Insn(0x95, 0, 0, 0, 0))
    return out
