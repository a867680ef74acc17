"""Post-verification rewrites (the kernel's fixup passes after ``do_check``).

Currently: ``ld_imm64`` map references become native addresses (``BPF_PSEUDO_MAP_FD`` → the
map header, ``BPF_PSEUDO_MAP_VALUE`` → the value address), as ``resolve_pseudo_ldimm64``
leaves them for the interpreter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybpf.isa.insn import Insn

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def apply_fixups(v: Verifier) -> list[Insn]:
    insns = list(v.insns)
    for idx, m in v.map_by_insn.items():
        ins = insns[idx]
        if ins.src in (2, 6):
            off = insns[idx + 1].imm & 0xFFFFFFFF
            addr = m.direct_value_addr(off)
        else:
            addr = m.addr
        insns[idx] = ins._replace(src=0, imm=_s32(addr))
        insns[idx + 1] = insns[idx + 1]._replace(imm=_s32(addr >> 32))
    return insns
