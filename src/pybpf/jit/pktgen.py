"""Native packet and checksum helpers.

A helper runs natively only when everything it touches is native memory the program can
address. ``bpf_csum_diff`` works on two buffers and a seed, so it is native here, with
the Python implementation's exact arithmetic (:func:`pybpf.helpers.impls.csum_diff`):
sizes must be multiples of 4 (else -EINVAL); the result is the seed plus the
ones'-complement of every ``from`` word plus every ``to`` word, folded to 32 bits.

The skb helpers (``skb_load_bytes``, ``skb_store_bytes``, ``l3/l4_csum_replace``,
``csum_update``) and the XDP ones (``xdp_adjust_head/tail``, ``xdp_load/store_bytes``)
keep their Python callbacks: their state — the socket buffer's payload and headroom,
the XDP buffer's bounds — lives in Python objects of the program-type modules, not in
native memory the JIT could address (see the JIT engineer's report for the layout that
would make them native).
"""

from __future__ import annotations

import errno

import llvmlite.ir as ir

from pybpf.jit.translate import I32, I64, PTR, Emitter, Translator

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


def register() -> None:
    from pybpf.jit.natives import native

    native("csum_diff")(gen_csum_diff)
