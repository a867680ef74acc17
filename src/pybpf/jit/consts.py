"""Which registers hold a known ``ld_imm64`` constant at each helper call.

After verification a map is a constant in the program: ``r1 = <map header address> ll``
(the kernel's ``BPF_PSEUDO_MAP_FD`` after fixup). The JIT specialises map helpers on the
map behind that constant — its type, key and value sizes, table addresses — the way the
kernel's ``map_gen_lookup`` inlines array lookups. Clang usually loads the map right
before the call, but it may also keep the pointer in a callee-saved register
(``r6 = map ll`` … ``r1 = r6``) or load it before a branch. This is a forward dataflow
over the whole program that tracks only values produced by ``ld_imm64`` and copied by
64-bit ``mov``; anything else makes a register unknown. Function entries (the program's
and every bpf-to-bpf call target) start with nothing known.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from pybpf.isa.insn import Insn, imm64
from pybpf.isa.opcodes import AtomicOp, CallKind, Kind, OpSpec

Consts = dict[int, int]
"""Register → known 64-bit value."""

_NO_WRITE = (Kind.ST, Kind.STX, Kind.JA, Kind.JCOND, Kind.JMP, Kind.EXIT)


def _successors(pc: int, ins: Insn, spec: OpSpec) -> list[int]:
    from pybpf.jit.translate import jump_target

    nxt = pc + (2 if spec.is_wide else 1)
    if spec.kind is Kind.EXIT:
        return []
    if spec.kind is Kind.JA:
        return [jump_target(pc, ins, spec)]
    if spec.is_jump:
        return [jump_target(pc, ins, spec), nxt]
    return [nxt]


def _transfer(state: Consts, pc: int, ins: Insn, spec: OpSpec,
              insns: Sequence[Insn]) -> Consts:
    k = spec.kind
    out = dict(state)
    if k in _NO_WRITE:
        return out
    if k in (Kind.CALL, Kind.CALLX, Kind.LD_ABS, Kind.LD_IND):
        for r in range(6):
            out.pop(r, None)
        return out
    if k is Kind.ATOMIC:
        if spec.op == AtomicOp.LOAD_ACQ:
            out.pop(ins.dst, None)
        elif spec.op == AtomicOp.CMPXCHG:
            out.pop(0, None)
        elif spec.op & 1 or spec.op == AtomicOp.XCHG:
            out.pop(ins.src, None)
        return out
    if k is Kind.LD_IMM64:
        if pc + 1 < len(insns):
            out[ins.dst] = imm64(ins, insns[pc + 1])
        else:
            out.pop(ins.dst, None)
        return out
    if k is Kind.MOV and spec.is64 and spec.src_reg:
        if ins.src in state:
            out[ins.dst] = state[ins.src]
        else:
            out.pop(ins.dst, None)
        return out
    out.pop(ins.dst, None)
    return out


def call_site_consts(insns: Sequence[Insn], specs: Sequence[OpSpec | None],
                     sites: Collection[int]) -> dict[int, Consts]:
    """Known constants in r1–r5 just before each helper call in ``sites``."""
    n = len(insns)
    if not sites:
        return {}
    entries = {0}
    for pc, spec in enumerate(specs):
        if spec is not None and spec.kind is Kind.CALL and insns[pc].src == CallKind.PSEUDO_CALL:
            entries.add(pc + insns[pc].imm + 1)
    state_in: dict[int, Consts] = {}
    work: list[int] = []
    for e in entries:
        if 0 <= e < n:
            state_in[e] = {}
            work.append(e)
    while work:
        pc = work.pop()
        spec = specs[pc]
        if spec is None:
            continue
        out = _transfer(state_in[pc], pc, insns[pc], spec, insns)
        for succ in _successors(pc, insns[pc], spec):
            if not 0 <= succ < n or specs[succ] is None:
                continue
            old = state_in.get(succ)
            if old is None:
                state_in[succ] = dict(out)
                work.append(succ)
                continue
            merged = {r: v for r, v in old.items() if out.get(r) == v}
            if len(merged) != len(old):
                state_in[succ] = merged
                work.append(succ)
    result: dict[int, Consts] = {}
    for pc in sites:
        st = state_in.get(pc)
        if st is not None:
            result[pc] = {r: v for r, v in st.items() if 1 <= r <= 5}
    return result
