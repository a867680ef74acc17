"""Native packet and checksum helpers.

A helper runs natively only when everything it touches is native memory the program can
address. ``bpf_csum_diff`` works on two buffers and a seed, so it is native here, with
the Python implementation's exact arithmetic (:func:`pybpf.helpers.impls.csum_diff`):
sizes must be multiples of 4 (else -EINVAL); the result is the seed plus the
ones'-complement of every ``from`` word plus every ``to`` word, folded to 32 bits.

``bpf_xdp_adjust_head`` and ``bpf_xdp_adjust_meta`` are native too: they only move the
``data``/``data_meta`` pointers of the program's ``struct xdp_buff`` (``r1``, laid out as
Linux's, :mod:`pybpf.net.xdp_buff`) within the frame, with the Python implementation's
checks (:mod:`pybpf.helpers.xdp`). ``r1`` is the program's ctx — the verifier's
``ARG_PTR_TO_CTX`` guarantees it, as the kernel's helper relies on it.

``bpf_skb_load_bytes`` is native: bounds against ``skb->len`` and a copy from
``skb->data`` of the program's ``struct sk_buff`` (``r1``, :mod:`pybpf.net.skbuff`); a
failed load zeroes the buffer and returns -EFAULT, as the Python implementation
(:mod:`pybpf.helpers.skb`). ``bpf_skb_store_bytes`` is native for ``flags == 0``; with
``BPF_F_RECOMPUTE_CSUM``/``BPF_F_INVALIDATE_HASH`` (checksum and hash state the Python
side keeps) the same call site takes the Python implementation through the bridge.
``bpf_l3_csum_replace``/``bpf_l4_csum_replace`` of a 2- or 4-byte field (flags 2 or 4)
rewrite the 16-bit checksum natively (:func:`pybpf.helpers.csum.csum_replace`'s
arithmetic); other flags go through the bridge the same way. ``bpf_csum_update`` adds to
a ``CHECKSUM_COMPLETE`` skb's ``csum`` natively (``ip_summed`` is a bit field of the
native ``struct sk_buff``).

``bpf_xdp_adjust_tail``, ``bpf_xdp_load_bytes`` and ``bpf_xdp_store_bytes`` are native
for linear frames: ``xdp_buff.flags`` carries the kernel's ``XDP_FLAGS_HAS_FRAGS``
(:class:`pybpf.net.xdp_buff.XdpBuff` keeps it in step with its Python list of
fragments), so the native code tests the flag as the kernel's helper does and moves
``data_end`` (zeroing grown bytes) or copies within ``data``..``data_end`` with the
Python implementation's checks; a fragmented frame takes the Python implementation
(:mod:`pybpf.helpers.xdp`) through the bridge from the same call site.

The other skb helpers keep their Python callbacks: the checksum and hash state they
update live in :class:`pybpf.net.skbuff.SkBuff`, not in native memory the JIT could read.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import llvmlite.ir as ir

from pybpf.jit.translate import I32, I64, PTR, Emitter, NativeGen, Translator

CSUM_FN = ir.FunctionType(I64, [I64, I64, I64, I64, I64])


def _c(v: int) -> ir.Constant:
    return ir.Constant(I64, v & ((1 << 64) - 1))


def _sum_words(fn: ir.Function, b: ir.IRBuilder, base: ir.Value, size: ir.Value,
               total: ir.Value, invert: bool, tag: str) -> ir.Value:
    """``total + sum(u32 words of base[0:size])`` (each word complemented if ``invert``)."""
    pre = b.block
    loop = fn.append_basic_block(f"{tag}_loop")
    body = fn.append_basic_block(f"{tag}_body")
    done = fn.append_basic_block(f"{tag}_done")
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(I64)
    acc = b.phi(I64)
    i.add_incoming(_c(0), pre)
    acc.add_incoming(total, pre)
    b.cbranch(b.icmp_unsigned("<", i, size), body, done)
    b.position_at_end(body)
    word = b.load(b.inttoptr(b.add(base, i), PTR), typ=I32, align=1)
    if invert:
        word = b.xor(word, ir.Constant(I32, 0xFFFFFFFF))
    i.add_incoming(b.add(i, _c(4)), body)
    acc.add_incoming(b.add(acc, b.zext(word, I64)), body)
    b.branch(loop)
    b.position_at_end(done)
    return acc


def _csum_diff_fn(tr: Translator) -> ir.Function:
    fn: ir.Function | None = tr.notes.get("csum_diff_fn")
    if fn is not None:
        return fn
    fn = ir.Function(tr.module, CSUM_FN, name=f"{tr.prefix}_csum_diff")
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    tr.notes["csum_diff_fn"] = fn
    frm, from_size, to, to_size, seed = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    bad = fn.append_basic_block("einval")
    go = fn.append_basic_block("go")
    b.cbranch(b.icmp_unsigned("!=", b.and_(b.or_(from_size, to_size), _c(3)), _c(0)), bad, go)
    b.position_at_end(bad)
    b.ret(_c(-errno.EINVAL))
    b.position_at_end(go)
    total = b.and_(seed, _c(0xFFFFFFFF))
    total = _sum_words(fn, b, frm, from_size, total, True, "from")
    total = _sum_words(fn, b, to, to_size, total, False, "to")
    for _ in range(2):  # a sum of < 2^32 words folds in two steps
        total = b.add(b.and_(total, _c(0xFFFFFFFF)), b.lshr(total, _c(32)))
    b.ret(total)
    return fn


def _applies(tr: Translator, consts: dict[int, int]) -> bool:
    return not tr.sanitize  # sanitize mode keeps the checked Python reads


def gen_csum_diff(em: Emitter, args: list[ir.Value]) -> ir.Value:
    return em.b.call(_csum_diff_fn(em.tr), args[:5])


gen_csum_diff.applies = _applies  # type: ignore[attr-defined]


# --- XDP: moving data / data_meta of struct xdp_buff ---------------------------------------
XDP_FN = ir.FunctionType(I64, [I64, I64])


def _xdp_consts() -> tuple[int, int, int, int, int, int, int]:
    from pybpf.helpers.xdp import ETH_HLEN, META_MAX, XDP_FRAME_SIZE
    from pybpf.net.xdp_buff import XB_DATA, XB_DATA_END, XB_DATA_META, XB_HARD_START

    return (XB_DATA, XB_DATA_END, XB_DATA_META, XB_HARD_START, XDP_FRAME_SIZE, ETH_HLEN,
            META_MAX)


def _xdp_fn(tr: Translator, name: str) -> tuple[ir.Function, ir.IRBuilder, bool]:
    key = f"xdp_{name}_fn"
    fn: ir.Function | None = tr.notes.get(key)
    if fn is not None:
        return fn, ir.IRBuilder(), False
    fn = ir.Function(tr.module, XDP_FN, name=f"{tr.prefix}_xdp_{name}")
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    tr.notes[key] = fn
    return fn, ir.IRBuilder(fn.append_basic_block("entry")), True


def _field(b: ir.IRBuilder, xdp: ir.Value, off: int) -> ir.Value:
    return b.inttoptr(b.add(xdp, _c(off)), PTR)


def _fail(fn: ir.Function, b: ir.IRBuilder, cond: ir.Value, err: int, tag: str) -> None:
    """Return ``-err`` when ``cond``; the builder continues on the other path."""
    bad = fn.append_basic_block(f"{tag}_fail")
    ok = fn.append_basic_block(f"{tag}_ok")
    b.cbranch(cond, bad, ok)
    b.position_at_end(bad)
    b.ret(_c(-err))
    b.position_at_end(ok)


def _xdp_adjust_head_fn(tr: Translator) -> ir.Function:
    """``bpf_xdp_adjust_head``: move ``data`` and the metadata with it by ``offset``."""
    fn, b, fresh = _xdp_fn(tr, "adjust_head")
    if not fresh:
        return fn
    data_off, end_off, meta_off, hard_off, frame_sz, eth_hlen, _meta_max = _xdp_consts()
    xdp, off_in = fn.args
    offset = b.sext(b.trunc(off_in, I32), I64)
    data = b.load(_field(b, xdp, data_off), typ=I64)
    data_end = b.load(_field(b, xdp, end_off), typ=I64)
    meta = b.load(_field(b, xdp, meta_off), typ=I64)
    hard = b.load(_field(b, xdp, hard_off), typ=I64)
    metalen = b.select(b.icmp_unsigned("<=", meta, data), b.sub(data, meta), _c(0))
    new = b.add(data, offset)
    low = b.icmp_signed("<", new, b.add(b.add(hard, _c(frame_sz)), metalen))
    high = b.icmp_signed(">", new, b.sub(data_end, _c(eth_hlen)))
    _fail(fn, b, b.or_(low, high), errno.EINVAL, "bounds")
    memmove = tr.declare("llvm.memmove.p0.p0.i64",
                         ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, ir.IntType(1)]))
    b.call(memmove, [b.inttoptr(b.add(meta, offset), PTR), b.inttoptr(meta, PTR), metalen,
                     ir.Constant(ir.IntType(1), 0)])
    b.store(b.add(meta, offset), _field(b, xdp, meta_off))
    b.store(new, _field(b, xdp, data_off))
    b.ret(_c(0))
    return fn


def _xdp_adjust_meta_fn(tr: Translator) -> ir.Function:
    """``bpf_xdp_adjust_meta``: move ``data_meta``; u32-aligned, at most 255 bytes."""
    fn, b, fresh = _xdp_fn(tr, "adjust_meta")
    if not fresh:
        return fn
    data_off, _end_off, meta_off, hard_off, frame_sz, _eth_hlen, meta_max = _xdp_consts()
    xdp, off_in = fn.args
    data = b.load(_field(b, xdp, data_off), typ=I64)
    meta = b.load(_field(b, xdp, meta_off), typ=I64)
    hard = b.load(_field(b, xdp, hard_off), typ=I64)
    _fail(fn, b, b.icmp_unsigned(">", meta, data), ENOTSUPP, "unsupported")
    new = b.add(meta, b.sext(b.trunc(off_in, I32), I64))
    low = b.icmp_signed("<", new, b.add(hard, _c(frame_sz)))
    high = b.icmp_signed(">", new, data)
    _fail(fn, b, b.or_(low, high), errno.EINVAL, "bounds")
    metalen = b.sub(data, new)
    bad_len = b.or_(b.icmp_unsigned("!=", b.and_(metalen, _c(3)), _c(0)),
                    b.icmp_unsigned(">", metalen, _c(meta_max)))
    _fail(fn, b, bad_len, errno.EACCES, "len")
    b.store(new, _field(b, xdp, meta_off))
    b.ret(_c(0))
    return fn


ENOTSUPP = 524


def gen_xdp_adjust_head(em: Emitter, args: list[ir.Value]) -> ir.Value:
    return em.b.call(_xdp_adjust_head_fn(em.tr), args[:2])


def gen_xdp_adjust_meta(em: Emitter, args: list[ir.Value]) -> ir.Value:
    return em.b.call(_xdp_adjust_meta_fn(em.tr), args[:2])


def _layout_applies(layout: Callable[[], object]) -> Callable[[Translator, dict[int, int]], bool]:
    """An ``applies`` predicate: native when the buffer ``layout`` (the object's offsets)
    is importable and the program is not compiled in sanitize mode."""

    def applies(tr: Translator, consts: dict[int, int]) -> bool:
        if tr.sanitize:
            return False
        try:
            layout()
        except (ImportError, KeyError):
            return False
        return True

    return applies


_xdp_applies = _layout_applies(lambda: _xdp_consts())


gen_xdp_adjust_head.applies = _xdp_applies  # type: ignore[attr-defined]
gen_xdp_adjust_meta.applies = _xdp_applies  # type: ignore[attr-defined]


# --- XDP: the tail and bytes of a linear frame (fragments: the Python helpers) ----------
BPF_FUNC_XDP_ADJUST_TAIL, BPF_FUNC_XDP_LOAD_BYTES, BPF_FUNC_XDP_STORE_BYTES = 65, 189, 190
MAX_XDP_SPAN = 0xFFFF  # bpf_xdp_pointer: larger offsets or lengths are -EFAULT


def _xdp_linear_consts() -> tuple[int, int, int, int]:
    from pybpf.net.xdp_buff import TAILROOM, XB_FLAGS, XB_FRAME_SZ, XDP_FLAGS_HAS_FRAGS

    return XB_FLAGS, XDP_FLAGS_HAS_FRAGS, XB_FRAME_SZ, TAILROOM


def _xdp_adjust_tail_fn(tr: Translator) -> ir.Function:
    """``bpf_xdp_adjust_tail`` of a linear frame: ``data_end`` moves by ``offset``, no
    further than ``xdp_data_hard_end`` (the ``skb_shared_info`` tailroom stays) and
    keeping ETH_HLEN bytes; grown bytes are zeroed."""
    fn, b, fresh = _xdp_fn(tr, "adjust_tail")
    if not fresh:
        return fn
    data_off, end_off, _meta_off, hard_off, _frame, eth_hlen, _meta_max = _xdp_consts()
    _flags_off, _has_frags, frame_sz_off, tailroom = _xdp_linear_consts()
    xdp, off_in = fn.args
    offset = b.sext(b.trunc(off_in, I32), I64)
    data = b.load(_field(b, xdp, data_off), typ=I64)
    data_end = b.load(_field(b, xdp, end_off), typ=I64)
    hard = b.load(_field(b, xdp, hard_off), typ=I64)
    frame_sz = b.zext(b.load(_field(b, xdp, frame_sz_off), typ=I32), I64)
    new = b.add(data_end, offset)
    hard_end = b.sub(b.add(hard, frame_sz), _c(tailroom))
    bad = b.or_(b.icmp_signed(">", new, hard_end),
                b.icmp_signed("<", new, b.add(data, _c(eth_hlen))))
    _fail(fn, b, bad, errno.EINVAL, "bounds")
    grown = b.select(b.icmp_signed(">", offset, _c(0)), offset, _c(0))
    memset = _mem_intrinsic(tr, "llvm.memset.p0.i64", ir.IntType(8))
    b.call(memset, [b.inttoptr(data_end, PTR), ir.Constant(ir.IntType(8), 0), grown,
                    ir.Constant(ir.IntType(1), 0)])
    b.store(new, _field(b, xdp, end_off))
    b.ret(_c(0))
    return fn


def _xdp_copy_fn(tr: Translator, store: bool) -> ir.Function:
    """``i64 copy(xdp, offset, buf, len)`` within a linear frame: ``bpf_xdp_pointer``'s
    checks (-EFAULT beyond 0xffff, -EINVAL past ``data_end``), then a copy out of
    (load) or into (store) the packet. ``memmove``: ``buf`` may point into the packet,
    and the Python implementation reads the whole source before writing."""
    name = "store_bytes" if store else "load_bytes"
    key = f"xdp_{name}_fn"
    fn: ir.Function | None = tr.notes.get(key)
    if fn is not None:
        return fn
    fn = ir.Function(tr.module, ir.FunctionType(I64, [I64, I64, I64, I64]),
                     name=f"{tr.prefix}_xdp_{name}")
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    tr.notes[key] = fn
    data_off, end_off, *_rest = _xdp_consts()
    xdp, off_in, buf, len_in = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    offset, length = b.and_(off_in, _c(M32)), b.and_(len_in, _c(M32))
    _fail(fn, b, b.or_(b.icmp_unsigned(">", offset, _c(MAX_XDP_SPAN)),
                       b.icmp_unsigned(">", length, _c(MAX_XDP_SPAN))), errno.EFAULT, "span")
    data = b.load(_field(b, xdp, data_off), typ=I64)
    data_end = b.load(_field(b, xdp, end_off), typ=I64)
    _fail(fn, b, b.icmp_signed(">", b.add(offset, length), b.sub(data_end, data)),
          errno.EINVAL, "len")
    pkt = b.inttoptr(b.add(data, offset), PTR)
    other = b.inttoptr(buf, PTR)
    memmove = _mem_intrinsic(tr, "llvm.memmove.p0.p0.i64", PTR)
    dst, src = (pkt, other) if store else (other, pkt)
    b.call(memmove, [dst, src, length, ir.Constant(ir.IntType(1), 0)])
    b.ret(_c(0))
    return fn


def _xdp_linear_or_python(func_id: int, native_fn: Any, nargs: int, tag: str) -> NativeGen:
    """A call site that runs ``native_fn`` (r1..r``nargs``) when ``xdp_buff.flags`` has
    no ``XDP_FLAGS_HAS_FRAGS`` and the Python implementation otherwise."""

    def gen(em: Emitter, args: list[ir.Value]) -> ir.Value:
        b = em.b
        flags_off, has_frags, _frame_sz_off, _tailroom = _xdp_linear_consts()
        flags = b.load(_field(b, args[0], flags_off), typ=I32)
        frags = b.icmp_unsigned("!=", b.and_(flags, ir.Constant(I32, has_frags)),
                                ir.Constant(I32, 0))
        fast = em.new_block(f"{tag}_linear")
        slow = em.new_block(f"{tag}_frags")
        done = em.new_block(f"{tag}_done")
        b.cbranch(frags, slow, fast)
        b.position_at_end(fast)
        r0_fast = b.call(native_fn(em.tr), list(args[:nargs]))
        fast_end = b.block
        b.branch(done)
        b.position_at_end(slow)
        r0_slow = em.call_python(func_id, list(args[:5]))
        slow_end = b.block
        b.branch(done)
        b.position_at_end(done)
        r0 = b.phi(I64)
        r0.add_incoming(r0_fast, fast_end)
        r0.add_incoming(r0_slow, slow_end)
        return r0

    gen.applies = _xdp_linear_applies  # type: ignore[attr-defined]
    gen.slow_path = True  # type: ignore[attr-defined]
    return gen


def _xdp_linear_applies(tr: Translator, consts: dict[int, int]) -> bool:
    if not _xdp_applies(tr, consts):
        return False
    try:
        _xdp_linear_consts()
    except (ImportError, KeyError):
        return False
    return True


gen_xdp_adjust_tail = _xdp_linear_or_python(BPF_FUNC_XDP_ADJUST_TAIL, _xdp_adjust_tail_fn, 2,
                                            "xdp_tail")
gen_xdp_load_bytes = _xdp_linear_or_python(
    BPF_FUNC_XDP_LOAD_BYTES, lambda tr: _xdp_copy_fn(tr, False), 4, "xdp_load")
gen_xdp_store_bytes = _xdp_linear_or_python(
    BPF_FUNC_XDP_STORE_BYTES, lambda tr: _xdp_copy_fn(tr, True), 4, "xdp_store")


# --- skb: bytes in and out of struct sk_buff's linear data ---------------------------------
INT_MAX = (1 << 31) - 1
M32 = 0xFFFFFFFF
BPF_FUNC_SKB_STORE_BYTES = 9
BPF_FUNC_L3_CSUM_REPLACE, BPF_FUNC_L4_CSUM_REPLACE = 10, 11


def _skb_consts() -> tuple[int, int]:
    from pybpf.net.skbuff import SK_BUFF

    return SK_BUFF.off("data"), SK_BUFF.off("len")


def _skb_data_len(b: ir.IRBuilder, skb: ir.Value) -> tuple[ir.Value, ir.Value]:
    data_off, len_off = _skb_consts()
    data = b.load(b.inttoptr(b.add(skb, _c(data_off)), PTR), typ=I64)
    length = b.zext(b.load(b.inttoptr(b.add(skb, _c(len_off)), PTR), typ=I32), I64)
    return data, length


def _mem_intrinsic(tr: Translator, name: str, middle: ir.Type) -> ir.Function:
    return tr.declare(name, ir.FunctionType(ir.VoidType(), [PTR, middle, I64, ir.IntType(1)]))


def _skb_load_bytes_fn(tr: Translator) -> ir.Function:
    """``i64 load(skb, off, to, len)``: 0, or the buffer zeroed and -EFAULT."""
    fn: ir.Function | None = tr.notes.get("skb_load_bytes_fn")
    if fn is not None:
        return fn
    fn = ir.Function(tr.module, ir.FunctionType(I64, [I64, I64, I64, I64]),
                     name=f"{tr.prefix}_skb_load_bytes")
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    tr.notes["skb_load_bytes_fn"] = fn
    skb, off_in, to, size = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    data, skb_len = _skb_data_len(b, skb)
    off = b.and_(off_in, _c(M32))
    ok = b.and_(b.and_(b.icmp_unsigned("<=", off, _c(INT_MAX)),
                       b.icmp_unsigned("<=", size, skb_len)),
                b.icmp_unsigned("<=", b.add(off, size), skb_len))
    copy = fn.append_basic_block("copy")
    fail = fn.append_basic_block("efault")
    b.cbranch(ok, copy, fail)
    b.position_at_end(copy)
    memcpy = _mem_intrinsic(tr, "llvm.memcpy.p0.p0.i64", PTR)
    b.call(memcpy, [b.inttoptr(to, PTR), b.inttoptr(b.add(data, off), PTR), size,
                    ir.Constant(ir.IntType(1), 0)])
    b.ret(_c(0))
    b.position_at_end(fail)
    memset = _mem_intrinsic(tr, "llvm.memset.p0.i64", ir.IntType(8))
    b.call(memset, [b.inttoptr(to, PTR), ir.Constant(ir.IntType(8), 0), size,
                    ir.Constant(ir.IntType(1), 0)])
    b.ret(_c(-errno.EFAULT))
    return fn


def gen_skb_load_bytes(em: Emitter, args: list[ir.Value]) -> ir.Value:
    return em.b.call(_skb_load_bytes_fn(em.tr), args[:4])


def gen_skb_store_bytes(em: Emitter, args: list[ir.Value]) -> ir.Value:
    """``flags == 0`` (and a 32-bit length): bounds, then a copy into the linear data;
    any other call takes the Python implementation (checksum/hash updates, errors)."""
    b = em.b
    skb, offset_in, frm, size, flags = args[:5]
    fast = em.new_block("skb_store_fast")
    slow = em.new_block("skb_store_slow")
    done = em.new_block("skb_store_done")
    plain = b.and_(b.icmp_unsigned("==", flags, _c(0)), b.icmp_unsigned("<=", size, _c(M32)))
    b.cbranch(plain, fast, slow)
    b.position_at_end(fast)
    data, skb_len = _skb_data_len(b, skb)
    offset = b.and_(offset_in, _c(M32))
    bad = b.or_(b.icmp_unsigned(">", offset, _c(INT_MAX)),
                b.icmp_unsigned(">", b.and_(b.add(offset, size), _c(M32)), skb_len))
    copy = em.new_block("skb_store_copy")
    b.cbranch(bad, done, copy)
    b.position_at_end(copy)
    memmove = _mem_intrinsic(em.tr, "llvm.memmove.p0.p0.i64", PTR)
    b.call(memmove, [b.inttoptr(b.add(data, offset), PTR), b.inttoptr(frm, PTR), size,
                     ir.Constant(ir.IntType(1), 0)])
    b.branch(done)
    b.position_at_end(slow)
    r0_slow = em.call_python(BPF_FUNC_SKB_STORE_BYTES, list(args[:5]))
    slow_end = b.block
    b.branch(done)
    b.position_at_end(done)
    r0 = b.phi(I64)
    r0.add_incoming(_c(-errno.EFAULT), fast)
    r0.add_incoming(_c(0), copy)
    r0.add_incoming(r0_slow, slow_end)
    return r0


# --- skb: 16-bit header checksums (l3/l4_csum_replace of a 2- or 4-byte field) -----------
M16 = 0xFFFF


def _csum16_add(b: ir.IRBuilder, c: ir.Value, addend: ir.Value) -> ir.Value:
    res = b.and_(b.add(c, addend), _c(M16))
    return b.and_(b.add(res, b.zext(b.icmp_unsigned("<", res, addend), I64)), _c(M16))


def _csum_add32(b: ir.IRBuilder, a: ir.Value, addend: ir.Value) -> ir.Value:
    res = b.and_(b.add(a, addend), _c(M32))
    return b.and_(b.add(res, b.zext(b.icmp_unsigned("<", res, addend), I64)), _c(M32))


def _csum_replace(b: ir.IRBuilder, old: ir.Value, size: ir.Value, frm: ir.Value,
                  to: ir.Value) -> ir.Value:
    """The new checksum for a 2-byte (``csum_replace2``) or 4-byte (``csum_replace4``)
    field change, as :func:`pybpf.helpers.csum.csum_replace` computes it."""
    f16, t16 = b.and_(frm, _c(M16)), b.and_(to, _c(M16))
    two = b.and_(b.not_(_csum16_add(b, _csum16_add(b, b.xor(old, _c(M16)), b.xor(f16, _c(M16))),
                                    t16)), _c(M16))
    tmp = _csum_add32(b, b.xor(old, _c(M32)), b.xor(b.and_(frm, _c(M32)), _c(M32)))
    c = _csum_add32(b, tmp, b.and_(to, _c(M32)))
    s = b.add(b.and_(c, _c(M16)), b.lshr(c, _c(16)))
    s = b.add(b.and_(s, _c(M16)), b.lshr(s, _c(16)))
    four = b.and_(b.not_(s), _c(M16))
    return b.select(b.icmp_unsigned("==", size, _c(2)), two, four)


def _csum_replace_gen(func_id: int) -> NativeGen:
    def gen(em: Emitter, args: list[ir.Value]) -> ir.Value:
        """``flags`` 2 or 4 (a plain field size): the checksum at ``offset`` in the linear
        data is rewritten natively (-EFAULT outside it); other flags (pseudo-header,
        mangled-0, by-diff, errors) take the Python implementation."""
        b = em.b
        skb, offset_in, frm, to, flags = args[:5]
        fast = em.new_block("csum_fast")
        slow = em.new_block("csum_slow")
        write = em.new_block("csum_write")
        done = em.new_block("csum_done")
        plain = b.or_(b.icmp_unsigned("==", flags, _c(2)), b.icmp_unsigned("==", flags, _c(4)))
        b.cbranch(plain, fast, slow)
        b.position_at_end(fast)
        data, skb_len = _skb_data_len(b, skb)
        offset = b.and_(offset_in, _c(M32))
        bad = b.or_(b.or_(b.icmp_unsigned(">", offset, _c(M16)),
                          b.icmp_unsigned("!=", b.and_(offset, _c(1)), _c(0))),
                    b.icmp_unsigned(">", b.add(offset, _c(2)), skb_len))
        b.cbranch(bad, done, write)
        b.position_at_end(write)
        ptr = b.inttoptr(b.add(data, offset), PTR)
        old = b.zext(b.load(ptr, typ=ir.IntType(16), align=1), I64)
        new = _csum_replace(b, old, flags, frm, to)
        b.store(b.trunc(new, ir.IntType(16)), ptr, align=1)
        b.branch(done)
        b.position_at_end(slow)
        r0_slow = em.call_python(func_id, list(args[:5]))
        slow_end = b.block
        b.branch(done)
        b.position_at_end(done)
        r0 = b.phi(I64)
        r0.add_incoming(_c(-errno.EFAULT), fast)
        r0.add_incoming(_c(0), write)
        r0.add_incoming(r0_slow, slow_end)
        return r0

    gen.applies = _skb_applies  # type: ignore[attr-defined]
    gen.slow_path = True  # type: ignore[attr-defined]
    return gen


def gen_csum_update(em: Emitter, args: list[ir.Value]) -> ir.Value:
    """``bpf_csum_update``: a ``CHECKSUM_COMPLETE`` skb's ``csum`` plus ``csum`` (ones'-
    complement), stored and returned; any other skb: -ENOTSUPP."""
    from pybpf.net.skbuff import CHECKSUM_COMPLETE, IP_SUMMED_SHIFT, PKT_TYPE_OFFSET, SK_BUFF

    b = em.b
    skb, addend = args[0], args[1]
    flags = b.zext(b.load(b.inttoptr(b.add(skb, _c(PKT_TYPE_OFFSET)), PTR),
                          typ=ir.IntType(8)), I64)
    complete = b.icmp_unsigned("==", b.and_(b.lshr(flags, _c(IP_SUMMED_SHIFT)), _c(3)),
                               _c(CHECKSUM_COMPLETE))
    update = em.new_block("csum_update")
    done = em.new_block("csum_update_done")
    pre = b.block
    b.cbranch(complete, update, done)
    b.position_at_end(update)
    ptr = b.inttoptr(b.add(skb, _c(SK_BUFF.off("csum"))), PTR)
    new = _csum_add32(b, b.zext(b.load(ptr, typ=I32), I64), b.and_(addend, _c(M32)))
    b.store(b.trunc(new, I32), ptr)
    b.branch(done)
    b.position_at_end(done)
    r0 = b.phi(I64)
    r0.add_incoming(_c(-ENOTSUPP), pre)
    r0.add_incoming(new, update)
    return r0


_skb_applies = _layout_applies(lambda: _skb_consts())


gen_skb_load_bytes.applies = _skb_applies  # type: ignore[attr-defined]
gen_skb_store_bytes.applies = _skb_applies  # type: ignore[attr-defined]
gen_skb_store_bytes.slow_path = True  # type: ignore[attr-defined]
gen_csum_update.applies = _skb_applies  # type: ignore[attr-defined]


def register() -> None:
    from pybpf.jit.natives import native

    native("csum_diff")(gen_csum_diff)
    native("skb_load_bytes")(gen_skb_load_bytes)
    native("skb_store_bytes")(gen_skb_store_bytes)
    native("csum_update")(gen_csum_update)
    native("l3_csum_replace")(_csum_replace_gen(BPF_FUNC_L3_CSUM_REPLACE))
    native("l4_csum_replace")(_csum_replace_gen(BPF_FUNC_L4_CSUM_REPLACE))
    native("xdp_adjust_head")(gen_xdp_adjust_head)
    native("xdp_adjust_meta")(gen_xdp_adjust_meta)
    native("xdp_adjust_tail")(gen_xdp_adjust_tail)
    native("xdp_load_bytes")(gen_xdp_load_bytes)
    native("xdp_store_bytes")(gen_xdp_store_bytes)
