"""Native functions JIT code calls by address (compiled once per process).

Some native helpers are not worth specialising per program: the ring buffer's producer
side (``bpf_ringbuf_reserve`` and the commit of ``submit``/``discard``) works on a
per-ring descriptor (:class:`pybpf.jit.maplock.RingDesc`) and is shared by JIT code and
by the Python side (the ring's ``reserve`` method calls the same function), so both
serialise on one spin lock and keep one ``pending_pos`` — the kernel's
``__bpf_ringbuf_reserve`` / ``bpf_ringbuf_commit``, with the record format of
:mod:`pybpf.maps.type_ringbuf`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import llvmlite.ir as ir

from pybpf.jit.engine import compile_ir, triple
from pybpf.jit.translate import I32, I64, PTR, _libc_address, _typed_callee

PAGE_SIZE = 4096
BUSY = 1 << 31
DISCARD = 1 << 30
HDR_SZ = 8
MAX_RECORD = 0xFFFFFFFF // 4
RB_NO_WAKEUP = 1
RB_FORCE_WAKEUP = 2

RESERVE_FN = ir.FunctionType(I64, [PTR, I64])  # (desc, size) -> sample address or 0
COMMIT_FN = ir.FunctionType(ir.VoidType(), [PTR, I64, I64, I64])  # (desc, sample, flags, discard)
SCHED_YIELD = _libc_address("sched_yield")
WRITE = _libc_address("write")


@dataclass(frozen=True)
class RuntimeLibrary:
    rb_reserve: int
    rb_commit: int


_LIB: RuntimeLibrary | None = None
_LOCK = threading.Lock()


def _c(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


def _field(b: ir.IRBuilder, desc: ir.Value, index: int) -> ir.Value:
    return b.gep(desc, [_c(index)], source_etype=I64)


def _at(b: ir.IRBuilder, addr: ir.Value) -> ir.Value:
    return b.inttoptr(addr, PTR)


def spin_lock(b: ir.IRBuilder, fn: ir.Function, word: ir.Value) -> None:
    """Take a u32 spin lock (yield to the OS while another thread holds it)."""
    head = fn.append_basic_block("lock")
    wait = fn.append_basic_block("lock_wait")
    got = fn.append_basic_block("locked")
    b.branch(head)
    b.position_at_end(head)
    pair = b.cmpxchg(word, ir.Constant(I32, 0), ir.Constant(I32, 1), "acquire", "monotonic")
    b.cbranch(b.extract_value(pair, 1), got, wait)
    b.position_at_end(wait)
    b.call(_typed_callee(b.inttoptr(_c(SCHED_YIELD), PTR), ir.FunctionType(I32, [])), [])
    b.branch(head)
    b.position_at_end(got)


def spin_unlock(b: ir.IRBuilder, word: ir.Value) -> None:
    b._insert(ir.instructions.StoreAtomicInstr(b.block, ir.Constant(I32, 0), word, "release", 4))


def _reserve(module: ir.Module) -> ir.Function:
    fn = ir.Function(module, RESERVE_FN, name="pybpf_rb_reserve")
    fn.attributes.add("nounwind")
    desc, size = fn.args
    entry = fn.append_basic_block("entry")
    fail = fn.append_basic_block("fail")
    b = ir.IRBuilder(fail)
    b.ret(_c(0))
    b = ir.IRBuilder(entry)
    mask = b.load(_field(b, desc, 4), typ=I64)
    data = b.load(_field(b, desc, 3), typ=I64)
    meta = b.load(_field(b, desc, 2), typ=I64)
    length = b.and_(b.add(size, _c(HDR_SZ + 7)), _c(~7 & (2**64 - 1)))
    ok1 = fn.append_basic_block("size_ok")
    too_big = b.or_(b.icmp_unsigned(">", size, _c(MAX_RECORD)),
                    b.icmp_unsigned(">", length, b.add(mask, _c(1))))
    b.cbranch(too_big, fail, ok1)
    b.position_at_end(ok1)
    cons_ptr = _at(b, meta)
    prod_ptr = _at(b, b.add(meta, _c(PAGE_SIZE)))
    cons = b.load_atomic(cons_ptr, "acquire", 8, typ=I64)
    word = _field(b, desc, 0)
    spin_lock(b, fn, word)
    pend0 = b.load(_field(b, desc, 1), typ=I64)
    prod = b.load(prod_ptr, typ=I64)
    new_prod = b.add(prod, length)
    # skip committed records: pending_pos walks up to the oldest busy one
    walk = fn.append_basic_block("walk")
    step = fn.append_basic_block("step")
    walked = fn.append_basic_block("walked")
    pre = b.block
    b.branch(walk)
    b.position_at_end(walk)
    pend = b.phi(I64)
    pend.add_incoming(pend0, pre)
    more = b.icmp_signed(">", b.sub(prod, pend), _c(0))
    hdr_addr = b.add(data, b.and_(pend, mask))
    b.cbranch(more, step, walked)
    b.position_at_end(step)
    hdr = b.load_atomic(_at(b, hdr_addr), "acquire", 4, typ=I32)
    busy = b.icmp_unsigned("!=", b.and_(hdr, ir.Constant(I32, BUSY)), ir.Constant(I32, 0))
    adv = fn.append_basic_block("advance")
    b.cbranch(busy, walked, adv)
    b.position_at_end(adv)
    rec = b.zext(b.and_(hdr, ir.Constant(I32, ~DISCARD & 0xFFFFFFFF)), I64)
    nxt = b.add(pend, b.and_(b.add(rec, _c(HDR_SZ + 7)), _c(~7 & (2**64 - 1))))
    pend.add_incoming(nxt, adv)
    b.branch(walk)
    b.position_at_end(walked)
    final = b.phi(I64)
    final.add_incoming(pend, walk)
    final.add_incoming(pend, step)
    b.store(final, _field(b, desc, 1))
    full = b.or_(b.icmp_unsigned(">", b.sub(new_prod, cons), mask),
                 b.icmp_unsigned(">", b.sub(new_prod, final), mask))
    full_blk = fn.append_basic_block("full")
    room = fn.append_basic_block("room")
    b.cbranch(full, full_blk, room)
    b.position_at_end(full_blk)
    spin_unlock(b, word)
    b.branch(fail)
    b.position_at_end(room)
    off = b.and_(prod, mask)
    rec_ptr = _at(b, b.add(data, off))
    b.store(b.or_(b.trunc(size, I32), ir.Constant(I32, BUSY)), rec_ptr)
    # Linux: the record header page offset counts the 3 meta pages before the data
    pg_off = b.trunc(b.lshr(b.add(off, _c(3 * PAGE_SIZE)), _c(12)), I32)
    b.store(pg_off, _at(b, b.add(data, b.add(off, _c(4)))))
    b._insert(ir.instructions.StoreAtomicInstr(b.block, new_prod, prod_ptr, "release", 8))
    spin_unlock(b, word)
    b.ret(b.add(data, b.add(off, _c(HDR_SZ))))
    return fn


def _commit(module: ir.Module) -> ir.Function:
    fn = ir.Function(module, COMMIT_FN, name="pybpf_rb_commit")
    fn.attributes.add("nounwind")
    desc, sample, flags, discard = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    mask = b.load(_field(b, desc, 4), typ=I64)
    data = b.load(_field(b, desc, 3), typ=I64)
    meta = b.load(_field(b, desc, 2), typ=I64)
    hdr_addr = b.sub(sample, _c(HDR_SZ))
    off = b.and_(b.sub(hdr_addr, data), mask)
    hdr_ptr = _at(b, hdr_addr)
    old = b.load(hdr_ptr, typ=I32)
    new = b.xor(old, ir.Constant(I32, BUSY))
    new = b.select(b.icmp_unsigned("!=", discard, _c(0)),
                   b.or_(new, ir.Constant(I32, DISCARD)), new)
    b._insert(ir.instructions.StoreAtomicInstr(b.block, new, hdr_ptr, "release", 4))
    cons = b.and_(b.load_atomic(_at(b, meta), "acquire", 8, typ=I64), mask)
    force = b.icmp_unsigned("!=", b.and_(flags, _c(RB_FORCE_WAKEUP)), _c(0))
    due = b.and_(b.icmp_unsigned("==", cons, off),
                 b.icmp_unsigned("==", b.and_(flags, _c(RB_NO_WAKEUP)), _c(0)))
    wake = fn.append_basic_block("wake")
    done = fn.append_basic_block("done")
    b.cbranch(b.or_(force, due), wake, done)
    b.position_at_end(wake)
    one = b.alloca(I64)
    one.type = PTR
    b.store(_c(1), one)
    fd = b.trunc(b.load(_field(b, desc, 5), typ=I64), I32)
    write_ty = ir.FunctionType(I64, [I32, PTR, I64])
    b.call(_typed_callee(b.inttoptr(_c(WRITE), PTR), write_ty), [fd, one, _c(8)])
    b.branch(done)
    b.position_at_end(done)
    b.ret_void()
    return fn


def runtime_library() -> RuntimeLibrary:
    """Compile (once) and return the addresses of the runtime functions."""
    global _LIB
    with _LOCK:
        if _LIB is None:
            module = ir.Module(name="pybpf_rtlib")
            module.triple = triple()
            reserve = _reserve(module)
            commit = _commit(module)
            native = compile_ir(str(module), [reserve.name, commit.name])
            _LIB = RuntimeLibrary(native.addresses[reserve.name], native.addresses[commit.name])
        return _LIB
