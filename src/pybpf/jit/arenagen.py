"""Native code for arena instructions: ``BPF_PROBE_MEM32`` loads and stores,
``BPF_PROBE_ATOMIC`` and ``addr_space_cast`` (the x86-64 JIT's arena code, in LLVM IR).

Linux addresses an arena access as ``kern_vm_start + reg + off`` and lets the exception
table absorb a fault on a page nobody allocated: the load gives 0, the store and the
atomic do nothing. pybpf's kernel window (:class:`~pybpf.maps.type_arena.ArenaMap`) is
real memory of this process too, but an unmapped page there would kill it, so the code
checks first: the access must lie inside the 4 GiB window, on one page, and that page
must be marked in the arena's resident table (one byte per window page). The window's
base, the table and the upper half of ``user_vm_start`` come from the run context
(``JitCtx.arena_*``, set by :class:`~pybpf.jit.program.JitProgram` from the program's
arena), so compiled code does not depend on which arena it runs with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import llvmlite.ir as ir

from pybpf.isa.insn import Insn
from pybpf.isa.opcodes import AtomicOp, Kind, OpSpec
from pybpf.jit.state import FIELD

if TYPE_CHECKING:
    from pybpf.jit.translate import Translator, _FuncState

I8, I64 = ir.IntType(8), ir.IntType(64)
INT = {1: I8, 2: ir.IntType(16), 4: ir.IntType(32), 8: I64}
PTR = ir.PointerType()
M32 = 0xFFFFFFFF
SZ_4G = 1 << 32
PAGE_SHIFT, PAGE_MASK = 12, 0xFFF
_RMW = {AtomicOp.ADD: "add", AtomicOp.OR: "or", AtomicOp.AND: "and", AtomicOp.XOR: "xor"}


def _field(b: ir.IRBuilder, jctx: ir.Value, name: str) -> ir.Value:
    return b.load(b.gep(jctx, [ir.Constant(I64, FIELD[name])], source_etype=I64), typ=I64)


def _guarded(b: ir.IRBuilder, jctx: ir.Value, pc: int, off: ir.Value, size: int
             ) -> tuple[ir.Block, ir.Block, ir.Block, ir.Value]:
    """Branch on whether ``size`` bytes at window offset ``off`` are on a resident page.

    Returns the block that looks the page up, the block where the access may happen
    (the builder is positioned there), the join block and the native address. The
    paths that skip the access reach the join block from the current block and from
    the look-up block."""
    fits = b.icmp_unsigned("<=", off, ir.Constant(I64, SZ_4G - size))
    in_page = b.icmp_unsigned("<=", b.add(b.and_(off, ir.Constant(I64, PAGE_MASK)),
                                          ir.Constant(I64, size)),
                              ir.Constant(I64, PAGE_MASK + 1))
    table = _field(b, jctx, "arena_table")
    ok_shape = b.and_(b.and_(fits, in_page),
                      b.icmp_unsigned("!=", table, ir.Constant(I64, 0)))
    look = b.append_basic_block(f"arena_pg{pc}")
    do = b.append_basic_block(f"arena_ok{pc}")
    join = b.append_basic_block(f"arena_done{pc}")
    b.cbranch(ok_shape, look, join)
    b.position_at_end(look)
    slot = b.gep(b.inttoptr(table, PTR), [b.lshr(off, ir.Constant(I64, PAGE_SHIFT))],
                 source_etype=I8)
    present = b.icmp_unsigned("!=", b.load(slot, typ=I8), ir.Constant(I8, 0))
    b.cbranch(present, do, join)
    b.position_at_end(do)
    addr = b.inttoptr(b.add(_field(b, jctx, "arena_base"), off), PTR)
    return look, do, join, addr


def emit_arena(tr: Translator, b: ir.IRBuilder, st: _FuncState, pc: int, ins: Insn,
               spec: OpSpec) -> None:
    """Emit one arena instruction (``spec.arena``, or ``addr_space_cast``)."""
    k = spec.kind
    if k is Kind.ADDR_SPACE_CAST:
        lo = b.and_(tr._get(b, st, ins.src), ir.Constant(I64, M32))
        if ins.imm == 1:  # to the kernel view: the low 32 bits
            tr._set(b, st, ins.dst, lo)
            return
        # to user space: 0 stays 0, else the upper half of user_vm_start
        user = b.or_(_field(b, st.jctx, "arena_user_hi"), lo)
        tr._set(b, st, ins.dst, b.select(b.icmp_unsigned("==", lo, ir.Constant(I64, 0)),
                                         ir.Constant(I64, 0), user))
        return
    size, ty = spec.size, INT[spec.size]
    if k is Kind.LDX or k is Kind.LDXSX or (k is Kind.ATOMIC and spec.op == AtomicOp.LOAD_ACQ):
        off = b.add(tr._get(b, st, ins.src), ir.Constant(I64, ins.off & (2**64 - 1)))
        pre = b.block
        look, do, join, addr = _guarded(b, st.jctx, pc, off, size)
        v = b.load(addr, typ=ty, align=1)
        if size < 8:
            v = b.sext(v, I64) if k is Kind.LDXSX else b.zext(v, I64)
        b.branch(join)
        b.position_at_end(join)
        phi = b.phi(I64)
        phi.add_incoming(v, do)
        phi.add_incoming(ir.Constant(I64, 0), pre)
        phi.add_incoming(ir.Constant(I64, 0), look)
        tr._set(b, st, ins.dst, phi)
        return
    off = b.add(tr._get(b, st, ins.dst), ir.Constant(I64, ins.off & (2**64 - 1)))
    if k is Kind.ST:
        val: ir.Value = ir.Constant(ty, ins.imm & ((1 << 8 * size) - 1))
    else:
        src = tr._get(b, st, ins.src)
        val = b.trunc(src, ty) if size < 8 else src
    if k is Kind.ST or k is Kind.STX or spec.op == AtomicOp.STORE_REL:
        look, do, join, addr = _guarded(b, st.jctx, pc, off, size)
        b.store(val, addr, align=1)
        b.branch(join)
        b.position_at_end(join)
        return
    # a read-modify-write: the register that receives the old value keeps its own when
    # the page is not there (r0 for cmpxchg, else src)
    op = spec.op
    keep_reg = 0 if op == AtomicOp.CMPXCHG else ins.src
    keep = tr._get(b, st, keep_reg)
    pre = b.block
    look, do, join, addr = _guarded(b, st.jctx, pc, off, size)
    if op == AtomicOp.CMPXCHG:
        expected = b.trunc(keep, ty) if size < 8 else keep
        old = b.extract_value(b.cmpxchg(addr, expected, val, "seq_cst", "seq_cst"), 0)
    else:
        name = "xchg" if op == AtomicOp.XCHG else _RMW[AtomicOp(op & ~1)]
        old = b.atomic_rmw(name, addr, val, "seq_cst")
    old64 = b.zext(old, I64) if size < 8 else old
    b.branch(join)
    b.position_at_end(join)
    if op == AtomicOp.CMPXCHG or op & 1:  # cmpxchg, the fetch forms and xchg
        phi = b.phi(I64)
        phi.add_incoming(old64, do)
        phi.add_incoming(keep, pre)
        phi.add_incoming(keep, look)
        tr._set(b, st, keep_reg, phi)

