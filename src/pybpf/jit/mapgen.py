"""Native map operations: the JIT's ``map_gen_lookup`` and friends.

After verification a map is a constant in the program (``ld_imm64`` of its header
address, :mod:`pybpf.maps.core`). At a helper call whose map argument is such a constant
(:mod:`pybpf.jit.consts`), the JIT reads the map's native header — and for hash maps its
control block — and emits code specialised on it, against the layouts the maps modules
document:

- ARRAY / PERCPU_ARRAY lookups inline to a bounds check and ``data + index * stride``
  (per-CPU: ``data + (index * nr_cpus + cpu) * stride``, the CPU from the run context),
  as the kernel's ``array_map_gen_lookup``; updates are a bounds check and a copy;
- HASH / PERCPU_HASH / LRU_HASH / LRU_PERCPU_HASH lookups hash the key with the kernel's
  jhash (unrolled for the key size), walk the bucket's chain and compare keys — no lock,
  as the kernel's RCU lookup; LRU lookups set the element's reference bit;
- HASH / PERCPU_HASH updates and deletes run natively under the map's native mutex
  (:mod:`pybpf.jit.maplock`), with exactly the Python side's table surgery (free list,
  head-of-chain linking, ``count``, ``gen``); LRU_HASH / LRU_PERCPU_HASH updates and
  deletes too, with the LRU lists' fast paths native (:mod:`pybpf.jit.lrugen`);
- RINGBUF reserve / submit / discard / output call the shared native producer
  (:mod:`pybpf.jit.rtlib`).

Everything else — other map types, maps with spin locks or special fields,
map pointers that are not constants — keeps the Python helper. A specialisation is
described by a frozen spec; the specs of every map a program references are part of the
compile-cache key (:func:`map_fingerprint`), so native code is never reused for a
different map that happens to live at the same address.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import llvmlite.ir as ir

from pybpf.isa.insn import Insn, imm64
from pybpf.jit.translate import I8, I16, I32, I64, PTR, Emitter, Translator, _typed_callee
from pybpf.runtime.cpus import PCPU_UNIT_STRIDE

M64 = (1 << 64) - 1
MAX_INLINE_KEY = 128

# BPF_MAP_TYPE_* (uapi)
HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY = 1, 2, 5, 6
LRU_HASH, LRU_PERCPU_HASH, ARRAY_OF_MAPS, HASH_OF_MAPS, RINGBUF = 9, 10, 12, 13, 27
BPF_NOEXIST, BPF_EXIST = 1, 2
ENOTSUPP = 524

NATIVE_HTAB_WRITES = os.environ.get("PYBPF_JIT_NATIVE_HTAB_WRITES", "1") != "0"
"""Feature flag: hash-map updates and deletes in native code (needs the shared lock)."""
NATIVE_LRU_WRITES = os.environ.get("PYBPF_JIT_NATIVE_LRU_WRITES", "1") != "0"
"""Feature flag: LRU updates and deletes in native code (:mod:`pybpf.jit.lrugen`)."""

_HEADER = struct.Struct("<IIIIIIQQII")
_HTAB_CTL = struct.Struct("<IIIIIIIIQQQQIIIIQQQ")  # pybpf.maps.htab control block
CTL_COUNT, CTL_FREE_TOP, CTL_GEN = 24, 28, 32
HTAB_ELEM_HDR = 32
HTAB_ELEM_REF = 16  # the element's LRU ref word (pybpf.maps.htab)
HTAB_FREE, HTAB_USED = 0, 1
CTL_PERCPU, CTL_LRU, CTL_PERCPU_LRU, CTL_IN_PLACE = 1, 2, 4, 8


# --- specs: what native code is specialised on ------------------------------------------
@dataclass(frozen=True)
class ArraySpec:
    addr: int
    percpu: bool
    max_entries: int
    value_size: int
    stride: int
    data: int
    nr_cpus: int
    plain: bool  # no bpf_spin_lock in the value: updates are a plain copy


@dataclass(frozen=True)
class HtabSpec:
    addr: int
    percpu: bool
    lru: bool
    key_size: int
    value_size: int
    n_buckets: int
    hashrnd: int
    elem_size: int
    value_off: int
    n_elems: int
    ctl: int
    buckets: int
    elems: int
    pcpu: int
    nr_cpus: int
    vstride: int
    free_stack: int
    extra: int  # per-CPU spare elements (HASH)
    lock: int  # native mutex address, 0 when writes stay in Python
    lru_area: int = 0  # native LRU lists (pybpf.maps.bpf_lru), LRU types only
    lru_percpu: bool = False  # BPF_F_NO_COMMON_LRU: one LRU list per CPU
    of_maps: bool = False  # HASH_OF_MAPS: the value slot holds the inner map's address

    @property
    def writable(self) -> bool:
        return self.lock != 0


@dataclass(frozen=True)
class MapArraySpec:
    """ARRAY_OF_MAPS: ``max_entries`` u64 slots at ``data``, each an inner map's address."""

    addr: int
    max_entries: int
    data: int


@dataclass(frozen=True)
class RingSpec:
    addr: int
    desc: int
    data: int
    size: int
    meta: int = 0  # consumer_pos at +0, producer_pos at +PAGE_SIZE


MapSpec = ArraySpec | HtabSpec | RingSpec | MapArraySpec


def _header(bmap: Any) -> tuple[int, ...]:
    return _HEADER.unpack_from(ctypes.string_at(bmap.addr, _HEADER.size))


def _array_spec(bmap: Any, hdr: tuple[int, ...]) -> ArraySpec | None:
    map_type, key_size, value_size, max_entries, _flags, elem_size, data, *_ = hdr
    percpu = map_type == PERCPU_ARRAY
    if key_size != 4 or elem_size != (value_size + 7) & ~7 or not data:
        return None
    nr_cpus = 1
    if percpu:
        nr_cpus = int.from_bytes(ctypes.string_at(bmap.addr + 48, 4), "little")
        if nr_cpus < 1:
            return None
    plain = getattr(bmap, "spin_lock_off", -1) < 0
    return ArraySpec(bmap.addr, percpu, max_entries, value_size, elem_size, data, nr_cpus,
                     plain)


def _htab_spec(bmap: Any, hdr: tuple[int, ...], *, writes: bool) -> HtabSpec | None:
    map_type, key_size, value_size, max_entries, _flags, elem_size, data, aux, *_ = hdr
    if not aux:
        return None
    (n_buckets, hashrnd, c_elem_size, c_key_size, value_off, n_elems, _count, _top,
     _gen, buckets, elems, pcpu, nr_cpus, vstride, c_max, flags, free_stack, extra, lru_area
     ) = _HTAB_CTL.unpack_from(ctypes.string_at(aux, _HTAB_CTL.size))
    percpu = map_type in (PERCPU_HASH, LRU_PERCPU_HASH)
    lru = map_type in (LRU_HASH, LRU_PERCPU_HASH)
    of_maps = map_type == HASH_OF_MAPS
    if of_maps:  # the element's value slot is the u64 address, whatever value_size says
        value_size = 8
        writes = False  # programs cannot update a map-in-map
    # Only the layout documented in pybpf.maps.htab; anything else keeps Python.
    if (c_elem_size != elem_size or c_key_size != key_size or elems != data
            or n_buckets & (n_buckets - 1) or not n_buckets or not buckets
            or value_off != HTAB_ELEM_HDR + ((key_size + 7) & ~7)
            or vstride != (value_size + 7) & ~7 or bool(flags & CTL_PERCPU) != percpu
            or bool(flags & CTL_LRU) != lru or (percpu and not pcpu) or nr_cpus < 1
            or c_max != max_entries):
        return None
    lock = 0
    in_place = bool(flags & CTL_IN_PLACE)
    lru_percpu = bool(flags & CTL_PERCPU_LRU)
    if lru:
        lists = getattr(bmap, "lru_lists", None)
        layout_ok = (NATIVE_LRU_WRITES and lru_area != 0 and lists is not None
                     and lists.n == n_elems and lists.nr_cpus == nr_cpus
                     and lists.percpu == lru_percpu)
    else:
        layout_ok = (free_stack != 0 and in_place == percpu
                     and (percpu or (extra != 0 and n_elems == max_entries + nr_cpus)))
    if writes and NATIVE_HTAB_WRITES and layout_ok \
            and getattr(bmap, "spin_lock_off", -1) < 0 \
            and not getattr(bmap, "has_record", False):
        from pybpf.jit.maplock import htab_lock_addr

        lock = htab_lock_addr(bmap)
    return HtabSpec(bmap.addr, percpu, lru, key_size, value_size, n_buckets, hashrnd,
                    elem_size, value_off, n_elems, aux, buckets, elems, pcpu, nr_cpus,
                    vstride, free_stack, extra, lock, lru_area if lru else 0, lru_percpu,
                    of_maps)


def _ring_spec(bmap: Any, hdr: tuple[int, ...]) -> RingSpec | None:
    from pybpf.jit.maplock import ringbuf_desc_addr

    _t, _k, _v, max_entries, _f, _es, data, _aux, *_ = hdr
    if not data or not hasattr(bmap, "spin"):
        return None
    meta = getattr(getattr(bmap, "meta", None), "start", 0)
    return RingSpec(bmap.addr, ringbuf_desc_addr(bmap), data, max_entries, int(meta))


def map_spec(addr: int, *, writes: bool = True) -> MapSpec | None:
    """The specialisation for the map whose header is at ``addr``, or None."""
    from pybpf.maps.core import map_from_addr

    bmap = map_from_addr(addr & M64)
    if bmap is None:
        return None
    hdr = _header(bmap)
    map_type = hdr[0]
    if map_type in (ARRAY, PERCPU_ARRAY):
        return _array_spec(bmap, hdr)
    if map_type in (HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH, HASH_OF_MAPS):
        return _htab_spec(bmap, hdr, writes=writes)
    if map_type == ARRAY_OF_MAPS:
        _t, key_size, _v, max_entries, _f, elem_size, data, *_ = hdr
        if key_size != 4 or elem_size != 8 or not data:
            return None
        return MapArraySpec(bmap.addr, max_entries, data)
    if map_type == RINGBUF:
        return _ring_spec(bmap, hdr)
    return None


def referenced_maps(insns: Sequence[Insn]) -> list[Any]:
    """The maps whose header addresses the program loads with ``ld_imm64``."""
    from pybpf.maps.core import map_from_addr

    out: list[Any] = []
    seen: set[int] = set()
    for pc, ins in enumerate(insns[:-1]):
        if ins.code == 0x18:
            value = imm64(ins, insns[pc + 1])
            if value in seen:
                continue
            bmap = map_from_addr(value)
            if bmap is not None:
                seen.add(value)
                out.append(bmap)
    return out


def map_fingerprint(insns: Sequence[Insn]) -> tuple[Any, ...]:
    """What native code specialised on these maps depends on (part of the cache key)."""
    out: list[Any] = []
    for bmap in referenced_maps(insns):
        out.append((bmap.addr, _header(bmap)[0], map_spec(bmap.addr)))
    return tuple(out)


def _spec_at(em_or_tr: Translator, consts: dict[int, int], reg: int = 1) -> MapSpec | None:
    value = consts.get(reg)
    if value is None:
        return None
    cache: dict[int, MapSpec | None] = em_or_tr.notes.setdefault("map_specs", {})
    if value not in cache:
        cache[value] = map_spec(value)
    return cache[value]


# --- IR utilities -----------------------------------------------------------------------
def _c(v: int, ty: ir.IntType = I64) -> ir.Constant:
    return ir.Constant(ty, v & ((1 << ty.width) - 1))


def _ptr(b: ir.IRBuilder, addr: ir.Value) -> ir.Value:
    return b.inttoptr(addr, PTR)


def _load(b: ir.IRBuilder, addr: ir.Value, ty: ir.IntType) -> ir.Value:
    return b.load(_ptr(b, addr), typ=ty, align=1)


def _store(b: ir.IRBuilder, addr: ir.Value, val: ir.Value) -> None:
    b.store(val, _ptr(b, addr), align=1)


def _store_release(b: ir.IRBuilder, addr: ir.Value, val: ir.Value) -> None:
    b._insert(ir.instructions.StoreAtomicInstr(b.block, val, _ptr(b, addr), "release",
                                               val.type.width // 8))


def _load_acquire(b: ir.IRBuilder, addr: ir.Value, ty: ir.IntType) -> ir.Value:
    return b.load_atomic(_ptr(b, addr), "acquire", ty.width // 8, typ=ty)


def _memcpy(tr: Translator, b: ir.IRBuilder, dst: ir.Value, src: ir.Value, n: ir.Value | int
            ) -> None:
    fn = tr.declare("llvm.memcpy.p0.p0.i64",
                    ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, ir.IntType(1)]))
    size = n if isinstance(n, ir.Value) else _c(n)
    b.call(fn, [_ptr(b, dst), _ptr(b, src), size, ir.Constant(ir.IntType(1), 0)])


def _memset0(tr: Translator, b: ir.IRBuilder, dst: ir.Value, n: int) -> None:
    fn = tr.declare("llvm.memset.p0.i64",
                    ir.FunctionType(ir.VoidType(), [PTR, I8, I64, ir.IntType(1)]))
    b.call(fn, [_ptr(b, dst), ir.Constant(I8, 0), _c(n), ir.Constant(ir.IntType(1), 0)])


def _call_addr(b: ir.IRBuilder, addr: int, fnty: ir.FunctionType, args: list[ir.Value]
               ) -> ir.Value:
    return b.call(_typed_callee(b.inttoptr(_c(addr), PTR), fnty), args)


# --- jhash (include/linux/jhash.h), unrolled for a known key size -------------------------
JHASH_INITVAL = 0xDEADBEEF


def _rol(b: ir.IRBuilder, x: ir.Value, k: int) -> ir.Value:
    return b.or_(b.shl(x, _c(k, I32)), b.lshr(x, _c(32 - k, I32)))


def _mix(b: ir.IRBuilder, a: ir.Value, bb: ir.Value, c: ir.Value
         ) -> tuple[ir.Value, ir.Value, ir.Value]:
    for x, y, z, k in (("a", "c", "b", 4), ("b", "a", "c", 6), ("c", "b", "a", 8),
                       ("a", "c", "b", 16), ("b", "a", "c", 19), ("c", "b", "a", 4)):
        regs = {"a": a, "b": bb, "c": c}
        vx = b.sub(regs[x], regs[y])
        vx = b.xor(vx, _rol(b, regs[y], k))
        vy = b.add(regs[y], regs[z])
        regs[x], regs[y] = vx, vy
        a, bb, c = regs["a"], regs["b"], regs["c"]
    return a, bb, c


def _final(b: ir.IRBuilder, a: ir.Value, bb: ir.Value, c: ir.Value) -> ir.Value:
    for x, y, k in (("c", "b", 14), ("a", "c", 11), ("b", "a", 25), ("c", "b", 16),
                    ("a", "c", 4), ("b", "a", 14), ("c", "b", 24)):
        regs = {"a": a, "b": bb, "c": c}
        v = b.xor(regs[x], regs[y])
        regs[x] = b.sub(v, _rol(b, regs[y], k))
        a, bb, c = regs["a"], regs["b"], regs["c"]
    return c


def _word(b: ir.IRBuilder, key: ir.Value, off: int, avail: int) -> ir.Value:
    """The little-endian u32 at ``key + off`` with bytes past ``avail`` taken as zero."""
    if avail >= 4:
        return _load(b, b.add(key, _c(off)), I32)
    v: ir.Value = _c(0, I32)
    for i in range(max(avail, 0)):
        byte = b.zext(_load(b, b.add(key, _c(off + i)), I8), I32)
        v = b.or_(v, b.shl(byte, _c(8 * i, I32))) if i else b.or_(v, byte)
    return v


def jhash_ir(b: ir.IRBuilder, key: ir.Value, key_size: int, initval: int) -> ir.Value:
    """``htab_map_hash(key, key_size, initval)`` as IR (``key`` an i64 address)."""
    if key_size % 4 == 0:
        n = key_size // 4
        init = _c(JHASH_INITVAL + (n << 2) + initval, I32)
        a = bb = c = init
        k = 0
        while n > 3:
            a = b.add(a, _word(b, key, k, 4))
            bb = b.add(bb, _word(b, key, k + 4, 4))
            c = b.add(c, _word(b, key, k + 8, 4))
            a, bb, c = _mix(b, a, bb, c)
            n -= 3
            k += 12
        if n == 0:
            return c
        a = b.add(a, _word(b, key, k, 4))
        if n > 1:
            bb = b.add(bb, _word(b, key, k + 4, 4))
        if n > 2:
            c = b.add(c, _word(b, key, k + 8, 4))
        return _final(b, a, bb, c)
    length = key_size
    init = _c(JHASH_INITVAL + length + initval, I32)
    a = bb = c = init
    k = 0
    while length > 12:
        a = b.add(a, _word(b, key, k, 4))
        bb = b.add(bb, _word(b, key, k + 4, 4))
        c = b.add(c, _word(b, key, k + 8, 4))
        a, bb, c = _mix(b, a, bb, c)
        length -= 12
        k += 12
    a = b.add(a, _word(b, key, k, length))
    bb = b.add(bb, _word(b, key, k + 4, length - 4))
    c = b.add(c, _word(b, key, k + 8, length - 8))
    return _final(b, a, bb, c)


def _keys_equal(tr: Translator, b: ir.IRBuilder, p: ir.Value, q: ir.Value, size: int
                ) -> ir.Value:
    if size > MAX_INLINE_KEY:
        memcmp = tr.declare("memcmp", ir.FunctionType(ir.IntType(32), [PTR, PTR, I64]))
        r = b.call(memcmp, [_ptr(b, p), _ptr(b, q), _c(size)])
        return b.icmp_signed("==", r, _c(0, I32))
    diff: ir.Value = _c(0)
    off = 0
    for width, ty in ((8, I64), (4, I32), (2, I16), (1, I8)):
        while size - off >= width:
            x = b.xor(_load(b, b.add(p, _c(off)), ty), _load(b, b.add(q, _c(off)), ty))
            diff = b.or_(diff, b.zext(x, I64) if width < 8 else x)
            off += width
    return b.icmp_unsigned("==", diff, _c(0))


# --- hash-table functions, one set per map per program -----------------------------------
class _Htab:
    """IR functions of one hash map: find, lookup, update, delete."""

    def __init__(self, tr: Translator, spec: HtabSpec) -> None:
        self.tr = tr
        self.s = spec
        self.tag = f"{tr.prefix}_h{len(tr.notes.setdefault('htabs', {}))}"
        tr.notes["htabs"][spec.addr] = self
        self._find: ir.Function | None = None
        self._lookup: ir.Function | None = None
        self._update: ir.Function | None = None
        self._delete: ir.Function | None = None
        self._lru: Any = None

    def lru_ops(self) -> Any:
        """The LRU list operations of this (LRU) map (:class:`pybpf.jit.lrugen.LruOps`)."""
        if self._lru is None:
            from pybpf.jit.lrugen import LruOps

            self._lru = LruOps(self)
        return self._lru

    def _fn(self, name: str, fnty: ir.FunctionType) -> tuple[ir.Function, ir.IRBuilder]:
        fn = ir.Function(self.tr.module, fnty, name=f"{self.tag}_{name}")
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        return fn, ir.IRBuilder(fn.append_basic_block("entry"))

    def elem(self, b: ir.IRBuilder, idx: ir.Value) -> ir.Value:
        return b.add(_c(self.s.elems), b.mul(idx, _c(self.s.elem_size)))

    def value_addr(self, b: ir.IRBuilder, idx: ir.Value, cpu: ir.Value) -> ir.Value:
        s = self.s
        if s.percpu:
            slot = b.add(b.mul(idx, _c(s.nr_cpus)), cpu)
            return b.add(_c(s.pcpu), b.mul(slot, _c(s.vstride)))
        return b.add(self.elem(b, idx), _c(s.value_off))

    def bucket_addr(self, b: ir.IRBuilder, h: ir.Value) -> ir.Value:
        bucket = b.zext(b.and_(h, _c(self.s.n_buckets - 1, I32)), I64)
        return b.add(_c(self.s.buckets), b.shl(bucket, _c(2)))

    def find(self) -> ir.Function:
        """``i64 find(i64 key, i32 hash)``: element index + 1, or 0."""
        if self._find is not None:
            return self._find
        s = self.s
        fn, b = self._fn("find", ir.FunctionType(I64, [I64, I32]))
        key, h = fn.args
        loop = fn.append_basic_block("loop")
        body = fn.append_basic_block("body")
        cmp_key = fn.append_basic_block("cmp_key")
        nxt_blk = fn.append_basic_block("next")
        miss = fn.append_basic_block("miss")
        hit = fn.append_basic_block("hit")
        head = b.zext(_load_acquire(b, self.bucket_addr(b, h), I32), I64)
        entry = b.block
        b.branch(loop)
        b.position_at_end(loop)
        cur = b.phi(I64)
        steps = b.phi(I64)
        cur.add_incoming(head, entry)
        steps.add_incoming(_c(0), entry)
        # a bounded walk: a chain rewritten under a lock-free reader cannot loop forever
        end = b.or_(b.icmp_unsigned("==", cur, _c(0)),
                    b.icmp_unsigned(">", steps, _c(s.n_elems)))
        b.cbranch(end, miss, body)
        b.position_at_end(body)
        e = self.elem(b, b.sub(cur, _c(1)))
        same_hash = b.icmp_unsigned("==", _load(b, b.add(e, _c(4)), I32), h)
        b.cbranch(same_hash, cmp_key, nxt_blk)
        b.position_at_end(cmp_key)
        eq = _keys_equal(self.tr, b, b.add(e, _c(HTAB_ELEM_HDR)), key, s.key_size)
        b.cbranch(eq, hit, nxt_blk)
        b.position_at_end(nxt_blk)
        e2 = self.elem(b, b.sub(cur, _c(1)))
        nxt = b.zext(_load_acquire(b, e2, I32), I64)
        cur.add_incoming(nxt, nxt_blk)
        steps.add_incoming(b.add(steps, _c(1)), nxt_blk)
        b.branch(loop)
        b.position_at_end(miss)
        b.ret(_c(0))
        b.position_at_end(hit)
        b.ret(cur)
        self._find = fn
        return fn

    def lookup(self) -> ir.Function:
        """``i64 lookup(i64 key, i64 cpu)``: value address or 0 (LRU: sets the ref bit)."""
        if self._lookup is not None:
            return self._lookup
        fn, b = self._fn("lookup", ir.FunctionType(I64, [I64, I64]))
        key, cpu = fn.args
        h = jhash_ir(b, key, self.s.key_size, self.s.hashrnd)
        found = b.call(self.find(), [key, h])
        hit = fn.append_basic_block("hit")
        miss = fn.append_basic_block("miss")
        b.cbranch(b.icmp_unsigned("==", found, _c(0)), miss, hit)
        b.position_at_end(miss)
        b.ret(_c(0))
        b.position_at_end(hit)
        idx = b.sub(found, _c(1))
        if self.s.lru:
            _store(b, b.add(self.elem(b, idx), _c(HTAB_ELEM_REF)), _c(1, I32))
        b.ret(self.value_addr(b, idx, cpu))
        self._lookup = fn
        return fn

    # control-block fields
    def _ctl(self, off: int) -> ir.Value:
        return _c(self.s.ctl + off)

    def _lock(self, b: ir.IRBuilder) -> None:
        from pybpf.jit.maplock import PTHREAD_MUTEX_LOCK

        _call_addr(b, PTHREAD_MUTEX_LOCK, ir.FunctionType(I32, [PTR]),
                   [_ptr(b, _c(self.s.lock))])

    def _unlock(self, b: ir.IRBuilder) -> None:
        from pybpf.jit.maplock import PTHREAD_MUTEX_UNLOCK

        _call_addr(b, PTHREAD_MUTEX_UNLOCK, ir.FunctionType(I32, [PTR]),
                   [_ptr(b, _c(self.s.lock))])

    def _bump_gen(self, b: ir.IRBuilder) -> None:
        gen = self._ctl(CTL_GEN)
        _store_release(b, gen, b.add(_load(b, gen, I64), _c(1)))

    def _ret_unlocked(self, b: ir.IRBuilder, value: int) -> None:
        self._unlock(b)
        b.ret(_c(value))

    def update(self) -> ir.Function:
        """``i64 update(i64 key, i64 value, i64 flags, i64 cpu)``: 0 or -errno.

        HASH (``htab_map_update_elem``): the new value goes into a fresh element — the
        free stack's top for a new key, the CPU's spare element for an existing one,
        which then becomes the spare — linked at the head of the chain, so a reader
        holding the old value never sees a half-written one. PERCPU_HASH
        (``htab_map_update_elem_in_place``): the CPU's slot of an existing element is
        overwritten; a new key takes the free stack's top with the other CPUs' slots
        zeroed.
        """
        if self._update is not None:
            return self._update
        s = self.s
        if s.lru:
            from pybpf.jit.lrugen import lru_update

            self._update = lru_update(self)
            return self._update
        fn, b = self._fn("update", ir.FunctionType(I64, [I64, I64, I64, I64]))
        key, value, flags, cpu = fn.args
        bad = fn.append_basic_block("einval")
        go = fn.append_basic_block("go")
        # (flags & ~BPF_F_LOCK) > BPF_EXIST, or BPF_F_LOCK without a spin lock: EINVAL
        b.cbranch(b.icmp_unsigned(">", flags, _c(BPF_EXIST)), bad, go)
        b.position_at_end(bad)
        b.ret(_c(-errno.EINVAL))
        b.position_at_end(go)
        h = jhash_ir(b, key, s.key_size, s.hashrnd)
        self._lock(b)
        old = b.call(self.find(), [key, h])
        exists = b.icmp_unsigned("!=", old, _c(0))
        eexist = fn.append_basic_block("eexist")
        chk2 = fn.append_basic_block("chk2")
        noent = fn.append_basic_block("noent")
        have = fn.append_basic_block("have")
        new = fn.append_basic_block("new")
        b.cbranch(b.and_(exists, b.icmp_unsigned("==", flags, _c(BPF_NOEXIST))), eexist, chk2)
        b.position_at_end(eexist)
        self._ret_unlocked(b, -errno.EEXIST)
        b.position_at_end(chk2)
        missing_ok = fn.append_basic_block("missing_ok")
        b.cbranch(exists, have, missing_ok)
        b.position_at_end(missing_ok)
        b.cbranch(b.icmp_unsigned("==", flags, _c(BPF_EXIST)), noent, new)
        b.position_at_end(noent)
        self._ret_unlocked(b, -errno.ENOENT)
        if s.percpu:
            b.position_at_end(have)
            _memcpy(self.tr, b, self.value_addr(b, b.sub(old, _c(1)), cpu), value,
                    s.value_size)
            self._ret_unlocked(b, 0)
            b.position_at_end(new)
            idx = self._pop_free(fn, b)
            block = s.nr_cpus * s.vstride
            _memset0(self.tr, b, b.add(_c(s.pcpu), b.mul(idx, _c(block))), block)
            _memcpy(self.tr, b, self.value_addr(b, idx, cpu), value, s.value_size)
            self._link_new(b, idx, h, key, None)
            count = self._ctl(CTL_COUNT)
            _store(b, count, b.add(_load(b, count, I32), _c(1, I32)))
            self._bump_gen(b)
            self._ret_unlocked(b, 0)
            self._update = fn
            return fn
        # HASH: an existing key's new value goes into this CPU's spare element
        b.position_at_end(have)
        cpu_slot = b.urem(cpu, _c(s.nr_cpus))
        spare_ptr = b.add(_c(s.extra), b.shl(cpu_slot, _c(2)))
        spare = b.zext(_load(b, spare_ptr, I32), I64)
        _store(b, spare_ptr, b.trunc(b.sub(old, _c(1)), I32))
        have_end = b.block
        link = fn.append_basic_block("link")
        b.branch(link)
        b.position_at_end(new)
        fresh = self._pop_free(fn, b)
        count = self._ctl(CTL_COUNT)
        _store(b, count, b.add(_load(b, count, I32), _c(1, I32)))
        new_end = b.block
        b.branch(link)
        b.position_at_end(link)
        idx = b.phi(I64)
        idx.add_incoming(spare, have_end)
        idx.add_incoming(fresh, new_end)
        is_old = b.phi(ir.IntType(1))
        is_old.add_incoming(ir.Constant(ir.IntType(1), 1), have_end)
        is_old.add_incoming(ir.Constant(ir.IntType(1), 0), new_end)
        head = self._link_new(b, idx, h, key, value)
        unlink = fn.append_basic_block("unlink_old")
        done = fn.append_basic_block("done")
        b.cbranch(is_old, unlink, done)
        b.position_at_end(unlink)
        # the old element now follows the new head somewhere in the chain
        pre = b.block
        walk = fn.append_basic_block("walk")
        found = fn.append_basic_block("found")
        b.branch(walk)
        b.position_at_end(walk)
        prev = b.phi(I64)
        cur = b.phi(I64)
        prev.add_incoming(idx, pre)
        cur.add_incoming(head, pre)
        step = fn.append_basic_block("step")
        b.cbranch(b.icmp_unsigned("==", cur, old), found, step)
        b.position_at_end(step)
        nprev = b.sub(cur, _c(1))
        prev.add_incoming(nprev, step)
        cur.add_incoming(b.zext(_load(b, self.elem(b, nprev), I32), I64), step)
        b.branch(walk)
        b.position_at_end(found)
        old_e = self.elem(b, b.sub(old, _c(1)))
        _store_release(b, self.elem(b, prev), _load(b, old_e, I32))
        _store(b, b.add(old_e, _c(8)), _c(HTAB_FREE, I32))
        b.branch(done)
        b.position_at_end(done)
        self._bump_gen(b)
        self._ret_unlocked(b, 0)
        self._update = fn
        return fn

    def _pop_free(self, fn: ir.Function, b: ir.IRBuilder) -> ir.Value:
        """Pop the free stack (E2BIG when empty); the builder continues on success."""
        top_ptr = self._ctl(CTL_FREE_TOP)
        top = _load(b, top_ptr, I32)
        full = fn.append_basic_block("full")
        take = fn.append_basic_block("take")
        b.cbranch(b.icmp_unsigned("==", top, _c(0, I32)), full, take)
        b.position_at_end(full)
        self._ret_unlocked(b, -errno.E2BIG)
        b.position_at_end(take)
        top = b.sub(top, _c(1, I32))
        _store(b, top_ptr, top)
        slot = b.add(_c(self.s.free_stack), b.shl(b.zext(top, I64), _c(2)))
        return b.zext(_load(b, slot, I32), I64)

    def _link_new(self, b: ir.IRBuilder, idx: ir.Value, h: ir.Value, key: ir.Value,
                  value: ir.Value | None) -> ir.Value:
        """Fill element ``idx`` and publish it at the head of its bucket; the old head."""
        s = self.s
        e = self.elem(b, idx)
        baddr = self.bucket_addr(b, h)
        head = b.zext(_load(b, baddr, I32), I64)
        _store(b, e, b.trunc(head, I32))
        _store(b, b.add(e, _c(4)), h)
        _store(b, b.add(e, _c(8)), _c(HTAB_USED, I32))
        _store(b, b.add(e, _c(HTAB_ELEM_REF)), _c(0, I32))
        _memcpy(self.tr, b, b.add(e, _c(HTAB_ELEM_HDR)), key, s.key_size)
        if value is not None:
            _memcpy(self.tr, b, b.add(e, _c(s.value_off)), value, s.value_size)
        _store_release(b, baddr, b.trunc(b.add(idx, _c(1)), I32))
        return head

    def _unlink_fn(self) -> ir.Function:
        """``void unlink(i64 target, i64 bucket_addr)``: take element ``target`` (index + 1)
        out of its chain (the lock is held)."""
        fn = self.tr.notes.setdefault("htab_unlink", {}).get(self.s.addr)
        if fn is not None:
            return fn
        s = self.s
        fn, b = self._fn("unlink", ir.FunctionType(ir.VoidType(), [I64, I64]))
        self.tr.notes["htab_unlink"][s.addr] = fn
        target, baddr = fn.args
        t_next = _load(b, self.elem(b, b.sub(target, _c(1))), I32)
        head = b.zext(_load(b, baddr, I32), I64)
        is_head = fn.append_basic_block("is_head")
        walk_pre = fn.append_basic_block("walk_pre")
        loop = fn.append_basic_block("loop")
        body = fn.append_basic_block("body")
        step = fn.append_basic_block("step")
        fix = fn.append_basic_block("fix")
        done = fn.append_basic_block("done")
        b.cbranch(b.icmp_unsigned("==", head, target), is_head, walk_pre)
        b.position_at_end(is_head)
        _store_release(b, baddr, t_next)
        b.ret_void()
        b.position_at_end(walk_pre)
        b.branch(loop)
        b.position_at_end(loop)
        cur = b.phi(I64)
        steps = b.phi(I64)
        cur.add_incoming(head, walk_pre)
        steps.add_incoming(_c(0), walk_pre)
        end = b.or_(b.icmp_unsigned("==", cur, _c(0)),
                    b.icmp_unsigned(">", steps, _c(s.n_elems)))
        b.cbranch(end, done, body)
        b.position_at_end(body)
        cur_e = self.elem(b, b.sub(cur, _c(1)))
        nxt = b.zext(_load(b, cur_e, I32), I64)
        b.cbranch(b.icmp_unsigned("==", nxt, target), fix, step)
        b.position_at_end(step)
        cur.add_incoming(nxt, step)
        steps.add_incoming(b.add(steps, _c(1)), step)
        b.branch(loop)
        b.position_at_end(fix)
        _store_release(b, cur_e, t_next)
        b.ret_void()
        b.position_at_end(done)
        b.ret_void()
        return fn

    def _unlink(self, fn: ir.Function, b: ir.IRBuilder, target: ir.Value, baddr: ir.Value
                ) -> None:
        b.call(self._unlink_fn(), [target, baddr])

    def delete(self) -> ir.Function:
        """``i64 delete(i64 key)``: 0 or -ENOENT."""
        if self._delete is not None:
            return self._delete
        s = self.s
        if s.lru:
            from pybpf.jit.lrugen import lru_delete

            self._delete = lru_delete(self)
            return self._delete
        fn, b = self._fn("delete", ir.FunctionType(I64, [I64]))
        (key,) = fn.args
        h = jhash_ir(b, key, s.key_size, s.hashrnd)
        self._lock(b)
        old = b.call(self.find(), [key, h])
        missing = fn.append_basic_block("missing")
        found = fn.append_basic_block("found")
        b.cbranch(b.icmp_unsigned("==", old, _c(0)), missing, found)
        b.position_at_end(missing)
        self._ret_unlocked(b, -errno.ENOENT)
        b.position_at_end(found)
        self._unlink(fn, b, old, self.bucket_addr(b, h))
        e = self.elem(b, b.sub(old, _c(1)))
        _store(b, b.add(e, _c(8)), _c(HTAB_FREE, I32))
        _store(b, b.add(e, _c(HTAB_ELEM_REF)), _c(0, I32))
        top_ptr = self._ctl(CTL_FREE_TOP)
        top = _load(b, top_ptr, I32)
        slot = b.add(_c(s.free_stack), b.shl(b.zext(top, I64), _c(2)))
        _store(b, slot, b.trunc(b.sub(old, _c(1)), I32))
        _store(b, top_ptr, b.add(top, _c(1, I32)))
        count = self._ctl(CTL_COUNT)
        _store(b, count, b.sub(_load(b, count, I32), _c(1, I32)))
        self._bump_gen(b)
        self._ret_unlocked(b, 0)
        self._delete = fn
        return fn


def htab_fns(tr: Translator, spec: HtabSpec) -> _Htab:
    found: _Htab | None = tr.notes.setdefault("htabs", {}).get(spec.addr)
    return found if found is not None else _Htab(tr, spec)


# --- helper rows --------------------------------------------------------------------------
def _cpu(em: Emitter) -> ir.Value:
    return em.b.load(em.field_ptr("cpu"), typ=I64)


def _array_slot(b: ir.IRBuilder, spec: ArraySpec, idx: ir.Value, cpu: ir.Value) -> ir.Value:
    slot = b.add(_c(spec.data), b.mul(idx, _c(spec.stride)))
    if spec.percpu:  # CPU ``cpu``'s copy: one per-CPU stride per CPU (maps/type_percpu_array)
        slot = b.add(slot, b.mul(cpu, _c(PCPU_UNIT_STRIDE)))
    return slot


def _array_lookup(em: Emitter, spec: ArraySpec, key: ir.Value, cpu: ir.Value) -> ir.Value:
    """``array_map_gen_lookup``: NULL past ``max_entries``, else the element's address."""
    b = em.b
    idx = b.zext(_load(b, key, I32), I64)
    inside = b.icmp_unsigned("<", idx, _c(spec.max_entries))
    return b.select(inside, _array_slot(b, spec, idx, cpu), _c(0))


def _array_update(em: Emitter, spec: ArraySpec, key: ir.Value, value: ir.Value,
                  flags: ir.Value) -> ir.Value:
    b = em.b
    if spec.percpu:
        einval = b.icmp_unsigned(">", flags, _c(BPF_EXIST))
        eexist = b.icmp_unsigned("==", flags, _c(BPF_NOEXIST))
    else:
        einval = b.icmp_unsigned(">", b.and_(flags, _c(~4)), _c(BPF_EXIST))
        eexist = b.icmp_unsigned("!=", b.and_(flags, _c(BPF_NOEXIST)), _c(0))
    idx = b.zext(_load(b, key, I32), I64)
    e2big = b.icmp_unsigned(">=", idx, _c(spec.max_entries))
    fail = b.or_(einval, b.or_(e2big, eexist))
    err = b.select(einval, _c(-errno.EINVAL),
                   b.select(e2big, _c(-errno.E2BIG), _c(-errno.EEXIST)))
    store = em.new_block("array_store")
    done = em.new_block("array_done")
    pre = b.block
    b.cbranch(fail, done, store)
    b.position_at_end(store)
    _memcpy(em.tr, b, _array_slot(b, spec, idx, _cpu(em)), value, spec.value_size)
    b.branch(done)
    b.position_at_end(done)
    r0 = b.phi(I64)
    r0.add_incoming(err, pre)
    r0.add_incoming(_c(0), store)
    return r0


def _lookup_applies(tr: Translator, consts: dict[int, int]) -> bool:
    spec = _spec_at(tr, consts)
    return not tr.sanitize and isinstance(spec, (ArraySpec, HtabSpec, MapArraySpec))


def _percpu_lookup_applies(tr: Translator, consts: dict[int, int]) -> bool:
    spec = _spec_at(tr, consts)
    return not tr.sanitize and isinstance(spec, (ArraySpec, HtabSpec)) and not (
        isinstance(spec, HtabSpec) and spec.of_maps)


def _update_applies(tr: Translator, consts: dict[int, int]) -> bool:
    spec = _spec_at(tr, consts)
    if tr.sanitize:
        return False
    return (isinstance(spec, ArraySpec) and spec.plain) or (
        isinstance(spec, HtabSpec) and spec.writable)


def _delete_applies(tr: Translator, consts: dict[int, int]) -> bool:
    spec = _spec_at(tr, consts)
    if tr.sanitize:
        return False
    return isinstance(spec, ArraySpec) or (isinstance(spec, HtabSpec) and spec.writable)


def _ring_applies(tr: Translator, consts: dict[int, int]) -> bool:
    return not tr.sanitize and isinstance(_spec_at(tr, consts), RingSpec)


def program_rings(tr: Translator) -> list[RingSpec] | None:
    """Ring buffers the program references; None when a sample could come from elsewhere
    (a map-in-map could hold a ring the program never names)."""
    if "rings" not in tr.notes:
        rings: list[RingSpec] | None = []
        for bmap in referenced_maps(tr.insns):
            map_type = _header(bmap)[0]
            if map_type in (ARRAY_OF_MAPS, HASH_OF_MAPS):
                rings = None
                break
            if map_type == RINGBUF:
                spec = map_spec(bmap.addr)
                if not isinstance(spec, RingSpec):
                    rings = None
                    break
                assert rings is not None
                rings.append(spec)
        tr.notes["rings"] = rings
    found: list[RingSpec] | None = tr.notes["rings"]
    return found


def _commit_applies(tr: Translator, consts: dict[int, int]) -> bool:
    return not tr.sanitize and bool(program_rings(tr))


def _gen_lookup(em: Emitter, args: list[ir.Value]) -> ir.Value:
    spec = _spec_at(em.tr, em.consts)
    if isinstance(spec, ArraySpec):
        return _array_lookup(em, spec, args[1], _cpu(em))
    if isinstance(spec, MapArraySpec):
        return _map_array_lookup(em, spec, args[1])
    assert isinstance(spec, HtabSpec)
    slot = em.b.call(htab_fns(em.tr, spec).lookup(), [args[1], _cpu(em)])
    if not spec.of_maps:
        return slot
    return _inner_map_at(em, slot)


def _map_array_lookup(em: Emitter, spec: MapArraySpec, key: ir.Value) -> ir.Value:
    """``array_of_map_gen_lookup``: NULL past ``max_entries``, else the slot's inner map
    (NULL for an empty slot)."""
    b = em.b
    idx = b.zext(_load(b, key, I32), I64)
    inside = b.icmp_unsigned("<", idx, _c(spec.max_entries))
    slot = b.select(inside, b.add(_c(spec.data), b.shl(idx, _c(3))), _c(0))
    return _inner_map_at(em, slot)


def _inner_map_at(em: Emitter, slot: ir.Value) -> ir.Value:
    """``*(struct bpf_map **)slot`` or NULL for a NULL slot (the slot may be replaced by
    a concurrent update: one 8-byte acquire load)."""
    b = em.b
    load = em.new_block("inner_load")
    done = em.new_block("inner_done")
    pre = b.block
    b.cbranch(b.icmp_unsigned("==", slot, _c(0)), done, load)
    b.position_at_end(load)
    inner = _load_acquire(b, slot, I64)
    b.branch(done)
    b.position_at_end(done)
    out = b.phi(I64)
    out.add_incoming(_c(0), pre)
    out.add_incoming(inner, load)
    return out


def _gen_update(em: Emitter, args: list[ir.Value]) -> ir.Value:
    spec = _spec_at(em.tr, em.consts)
    if isinstance(spec, ArraySpec):
        return _array_update(em, spec, args[1], args[2], args[3])
    assert isinstance(spec, HtabSpec)
    return em.b.call(htab_fns(em.tr, spec).update(), [args[1], args[2], args[3], _cpu(em)])


def _gen_delete(em: Emitter, args: list[ir.Value]) -> ir.Value:
    spec = _spec_at(em.tr, em.consts)
    if isinstance(spec, ArraySpec):
        return _c(-errno.EINVAL)
    assert isinstance(spec, HtabSpec)
    return em.b.call(htab_fns(em.tr, spec).delete(), [args[1]])


def _gen_lookup_percpu(em: Emitter, args: list[ir.Value]) -> ir.Value:
    spec = _spec_at(em.tr, em.consts)
    b = em.b
    if not getattr(spec, "percpu", False):
        return _c(0)
    assert isinstance(spec, (ArraySpec, HtabSpec))
    cpu = b.and_(args[2], _c(0xFFFFFFFF))
    valid = b.icmp_unsigned("<", cpu, _c(spec.nr_cpus))
    safe_cpu = b.select(valid, cpu, _c(0))
    if isinstance(spec, ArraySpec):
        addr = _array_lookup(em, spec, args[1], safe_cpu)
    else:
        addr = em.b.call(htab_fns(em.tr, spec).lookup(), [args[1], safe_cpu])
    return b.select(valid, addr, _c(0))


def _rt() -> Any:
    from pybpf.jit.rtlib import runtime_library

    return runtime_library()


def _gen_ringbuf_reserve(em: Emitter, args: list[ir.Value]) -> ir.Value:
    from pybpf.jit.rtlib import RESERVE_FN

    spec = _spec_at(em.tr, em.consts)
    assert isinstance(spec, RingSpec)
    b = em.b
    sample = _call_addr(b, _rt().rb_reserve, RESERVE_FN, [_ptr(b, _c(spec.desc)), args[1]])
    return b.select(b.icmp_unsigned("!=", args[2], _c(0)), _c(0), sample)


def _gen_ringbuf_output(em: Emitter, args: list[ir.Value]) -> ir.Value:
    from pybpf.jit.rtlib import COMMIT_FN, RESERVE_FN

    spec = _spec_at(em.tr, em.consts)
    assert isinstance(spec, RingSpec)
    b = em.b
    data, size, flags = args[1], args[2], args[3]
    desc = _ptr(b, _c(spec.desc))
    go = em.new_block("rb_out_go")
    got = em.new_block("rb_out_got")
    done = em.new_block("rb_out_done")
    pre = b.block
    bad_flags = b.icmp_unsigned("!=", b.and_(flags, _c(~3)), _c(0))
    b.cbranch(bad_flags, done, go)
    b.position_at_end(go)
    sample = _call_addr(b, _rt().rb_reserve, RESERVE_FN, [desc, size])
    b.cbranch(b.icmp_unsigned("==", sample, _c(0)), done, got)
    b.position_at_end(got)
    _memcpy(em.tr, b, sample, data, size)
    _call_addr(b, _rt().rb_commit, COMMIT_FN, [desc, sample, flags, _c(0)])
    b.branch(done)
    b.position_at_end(done)
    r0 = b.phi(I64)
    r0.add_incoming(_c(-errno.EINVAL), pre)
    r0.add_incoming(_c(-errno.EAGAIN), go)
    r0.add_incoming(_c(0), got)
    return r0


RB_AVAIL_DATA, RB_RING_SIZE, RB_CONS_POS, RB_PROD_POS = 0, 1, 2, 3


def _query_applies(tr: Translator, consts: dict[int, int]) -> bool:
    spec = _spec_at(tr, consts)
    return not tr.sanitize and isinstance(spec, RingSpec) and spec.meta != 0


def _gen_ringbuf_query(em: Emitter, args: list[ir.Value]) -> ir.Value:
    """``bpf_ringbuf_query``: available data, ring size, consumer or producer position
    (acquire loads, as the kernel's ``smp_load_acquire``); 0 for an unknown flag."""
    from pybpf.jit.rtlib import PAGE_SIZE

    spec = _spec_at(em.tr, em.consts)
    assert isinstance(spec, RingSpec)
    b = em.b
    flags = args[1]
    cons = _load_acquire(b, _c(spec.meta), I64)
    prod = _load_acquire(b, _c(spec.meta + PAGE_SIZE), I64)
    out: ir.Value = _c(0)
    for flag, value in ((RB_PROD_POS, prod), (RB_CONS_POS, cons),
                        (RB_RING_SIZE, _c(spec.size)), (RB_AVAIL_DATA, b.sub(prod, cons))):
        out = b.select(b.icmp_unsigned("==", flags, _c(flag)), value, out)
    return out


def _gen_internal_htab_lookup(em: Emitter, args: list[ir.Value]) -> ir.Value:
    """``__htab_map_lookup_elem`` as the fixups call it (:mod:`pybpf.helpers.internal`):
    the lookup's result moved back by the offset the rewritten program adds again
    (``htab_elem_value_off(key_size)``), 0 for a miss — natively, so the rewritten
    ``map_lookup_elem`` costs what the original did."""
    from pybpf.helpers.internal import htab_elem_value_off

    value = _gen_lookup(em, args)
    value_addr = em.consts.get(1)
    assert value_addr is not None
    from pybpf.maps.core import map_from_addr

    bmap = map_from_addr(value_addr & M64)
    off = htab_elem_value_off(_header(bmap)[1] if bmap is not None else 0)
    b = em.b
    return b.select(b.icmp_unsigned("==", value, _c(0)), _c(0), b.sub(value, _c(off)))


def _commit_gen(discard: bool) -> Any:
    def gen(em: Emitter, args: list[ir.Value]) -> ir.Value:
        from pybpf.jit.rtlib import COMMIT_FN, HDR_SZ

        rings = program_rings(em.tr)
        assert rings
        b = em.b
        sample, flags = args[0], args[1]
        hdr = b.sub(sample, _c(HDR_SZ))
        done = em.new_block("rb_commit_done")
        for ring in rings:
            hit = em.new_block("rb_commit_hit")
            miss = em.new_block("rb_commit_miss")
            inside = b.icmp_unsigned("<", b.sub(hdr, _c(ring.data)), _c(ring.size))
            b.cbranch(inside, hit, miss)
            b.position_at_end(hit)
            _call_addr(b, _rt().rb_commit, COMMIT_FN,
                       [_ptr(b, _c(ring.desc)), sample, flags, _c(int(discard))])
            b.branch(done)
            b.position_at_end(miss)
        em.fault(sample, 0, "not a ring buffer sample")
        b.position_at_end(done)
        return _c(0)

    return gen


def _with(applies: Any, gen: Any) -> Any:
    gen.applies = applies
    return gen


def register() -> None:
    from pybpf.jit.natives import native

    native("map_lookup_elem")(_with(_lookup_applies, _gen_lookup))
    native("map_update_elem")(_with(_update_applies, _gen_update))
    native("map_delete_elem")(_with(_delete_applies, _gen_delete))
    native("map_lookup_percpu_elem")(_with(_percpu_lookup_applies, _gen_lookup_percpu))
    native("ringbuf_reserve")(_with(_ring_applies, _gen_ringbuf_reserve))
    native("ringbuf_output")(_with(_ring_applies, _gen_ringbuf_output))
    native("ringbuf_query")(_with(_query_applies, _gen_ringbuf_query))
    native("ringbuf_submit")(_with(_commit_applies, _commit_gen(False)))
    native("ringbuf_discard")(_with(_commit_applies, _commit_gen(True)))
    try:
        from pybpf.helpers import internal
    except ImportError:  # no kernel-internal call targets in this tree
        return
    from pybpf.jit.natives import native_internal

    fid = getattr(internal, "HTAB_MAP_LOOKUP_ELEM", None)
    if fid is not None:
        native_internal(fid, "_htab_map_lookup_elem", generic=1)(
            _with(_lookup_applies, _gen_internal_htab_lookup))
    _register_map_ops(internal)


def _register_map_ops(internal: Any) -> None:
    """The fixups call a map type's own function (``call htab_map_update_elem``) where the
    program called the generic helper; that function *is* the generic helper for the
    type (:func:`pybpf.helpers.internal.map_op_call_id`), so it gets the generic
    helper's native code, specialised on the map constant in r1 as before."""
    from pybpf.jit.natives import NATIVE_HELPERS, native_internal

    names = getattr(internal, "MAP_OPS_NAMES", {})
    op_id = getattr(internal, "map_op_call_id", None)
    if op_id is None:
        return
    for map_type, helper in names:
        row = NATIVE_HELPERS.get(helper)
        internal_id = op_id(map_type, helper)
        if row is not None and internal_id is not None:
            native_internal(internal_id, f"map_op_{helper}", generic=helper)(row.gen)
