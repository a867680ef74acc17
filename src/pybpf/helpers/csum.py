"""Checksum helpers: ``bpf_csum_diff``, ``bpf_csum_update``, ``bpf_l3_csum_replace``,
``bpf_l4_csum_replace`` (``net/core/filter.c``) and the ones'-complement arithmetic of
``include/net/checksum.h`` they rest on.

``skb->csum`` matters when the skb is ``CHECKSUM_COMPLETE`` (``BPF_PROG_TEST_RUN`` with
``BPF_F_TEST_SKB_CHECKSUM_COMPLETE``): then ``csum_update`` adds to it and the L4 helpers
with ``BPF_F_PSEUDO_HDR`` keep it in step, as the kernel does, and test_run checks it
against the packet after the run (``EBADMSG``).
"""

from __future__ import annotations

from collections.abc import Callable

from pybpf.net.skbuff import CHECKSUM_COMPLETE, SkBuff, skb_from_ctx
from pybpf.runtime.context import RunContext

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1
EINVAL, EFAULT, ENOTSUPP = 22, 14, 524
BPF_F_HDR_FIELD_MASK, BPF_F_PSEUDO_HDR, BPF_F_MARK_MANGLED_0, BPF_F_MARK_ENFORCE, BPF_F_IPV6 = \
    0xF, 0x10, 0x20, 0x40, 0x80
CSUM_MANGLED_0 = 0xFFFF


def _neg(err: int) -> int:
    return (-err) & M64


# ------------------------------------------------------------------ ones'-complement math

def csum_add(a: int, b: int) -> int:
    """32-bit ones'-complement add (``csum_add``)."""
    res = (a + b) & M32
    return (res + (res < (b & M32))) & M32


def csum_sub(a: int, b: int) -> int:
    return csum_add(a, ~b & M32)


def csum_fold(csum: int) -> int:
    """``csum_fold``: fold 32 bits to 16 and complement."""
    s = (csum & 0xFFFF) + (csum >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def csum_partial(data: bytes, seed: int = 0) -> int:
    """``csum_partial``: the 32-bit ones'-complement sum of the little-endian 32-bit
    words of ``data`` (zero-padded), added to ``seed`` — the value x86-64 computes."""
    if len(data) % 4:
        data = data + bytes(4 - len(data) % 4)
    total = seed & M32
    total += sum(int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4))
    while total >> 32:
        total = (total & M32) + (total >> 32)
    return total


def csum_block_add(csum: int, csum2: int, offset: int) -> int:
    """``csum_block_add``: a block's sum added at ``offset`` (odd offsets swap bytes)."""
    if offset & 1:
        csum2 = ((csum2 >> 8) | (csum2 << 24)) & M32
    return csum_add(csum, csum2)


def csum_block_sub(csum: int, csum2: int, offset: int) -> int:
    return csum_block_add(csum, ~csum2 & M32, offset)


def _csum16_add(c: int, addend: int) -> int:
    res = (c + addend) & 0xFFFF
    return (res + (res < addend)) & 0xFFFF


def csum_replace(ptr_val: int, size: int, frm: int, to: int) -> int:
    """The new 16-bit checksum for ``csum_replace_by_diff`` (size 0), ``csum_replace2``
    (2) and ``csum_replace4`` (4)."""
    if size == 0:
        return csum_fold(csum_add(to & M32, ~ptr_val & M32))
    if size == 2:
        frm, to = frm & 0xFFFF, to & 0xFFFF
        return ~_csum16_add(_csum16_add(~ptr_val & 0xFFFF, ~frm & 0xFFFF), to) & 0xFFFF
    tmp = csum_add(~ptr_val & M32, ~frm & M32)
    return csum_fold(csum_add(tmp, to & M32))


def skb_postpull_rcsum(skb: SkBuff, data: bytes, offset: int) -> None:
    """``__skb_postpull_rcsum``: bytes about to change leave ``skb->csum``."""
    if skb.ip_summed == CHECKSUM_COMPLETE:
        skb.u("csum", csum_block_sub(skb.u("csum"), csum_partial(data), offset))


def skb_postpush_rcsum(skb: SkBuff, data: bytes, offset: int) -> None:
    """``__skb_postpush_rcsum``: bytes just written enter ``skb->csum``."""
    if skb.ip_summed == CHECKSUM_COMPLETE:
        skb.u("csum", csum_block_add(skb.u("csum"), csum_partial(data), offset))


# ------------------------------------------------------------------ helpers

def csum_diff(ctx: RunContext, frm: int, from_size: int, to: int, to_size: int,
              seed: int) -> int:
    """``bpf_csum_diff``: sum of ``to`` minus sum of ``from`` (4-byte multiples)."""
    if from_size % 4 or to_size % 4:
        return _neg(EINVAL)
    total = seed & M32
    for i in range(0, from_size, 4):
        total += ~int.from_bytes(ctx.mem.read(frm + i, 4), "little") & M32
    for i in range(0, to_size, 4):
        total += int.from_bytes(ctx.mem.read(to + i, 4), "little")
    while total >> 32:
        total = (total & M32) + (total >> 32)
    return total


def csum_update(ctx: RunContext, _skb: int, csum: int, *_: int) -> int:
    """``bpf_csum_update``: add ``csum`` to a ``CHECKSUM_COMPLETE`` skb's ``csum`` and
    return the result; other skbs have no full checksum to update (-ENOTSUPP)."""
    skb = skb_from_ctx(ctx)
    if skb is None or skb.ip_summed != CHECKSUM_COMPLETE:
        return _neg(ENOTSUPP)
    return skb.u("csum", csum_add(skb.u("csum"), csum & M32))


def _csum_at(ctx: RunContext, offset: int) -> tuple[SkBuff, int, int] | int:
    """``(skb, address, current value)`` of the 16-bit checksum at ``offset``, or an
    errno (``bpf_try_make_writable`` needs the field inside the linear data)."""
    offset &= M32
    skb = skb_from_ctx(ctx)
    if skb is None or offset > 0xFFFF or offset & 1 or offset + 2 > skb.len:
        return EFAULT
    addr = skb.data + offset
    return skb, addr, int.from_bytes(ctx.mem.read(addr, 2), "little")


def l3_csum_replace(ctx: RunContext, _skb: int, offset: int, frm: int, to: int,
                    flags: int) -> int:
    """``bpf_l3_csum_replace``: update an IP header checksum for a changed field."""
    if flags & ~BPF_F_HDR_FIELD_MASK:
        return _neg(EINVAL)
    at = _csum_at(ctx, offset)
    if isinstance(at, int):
        return _neg(at)
    _skb_obj, addr, old = at
    size = flags & BPF_F_HDR_FIELD_MASK
    if size not in (0, 2, 4) or (size == 0 and frm):
        return _neg(EINVAL)
    ctx.mem.write(addr, csum_replace(old, size, frm, to).to_bytes(2, "little"))
    return 0


def _pseudo_csum_diff(size: int, frm: int, to: int) -> int:
    """The 32-bit sum a pseudo-header change adds to ``skb->csum``
    (``inet_proto_csum_replace{2,4,_by_diff}``)."""
    if size == 0:
        return to & M32
    if size == 2:
        frm, to = frm & 0xFFFF, to & 0xFFFF
    diff = (~frm & M32).to_bytes(4, "little") + (to & M32).to_bytes(4, "little")
    return csum_partial(diff)


def l4_csum_replace(ctx: RunContext, _skb: int, offset: int, frm: int, to: int,
                    flags: int) -> int:
    """``bpf_l4_csum_replace``: update a TCP/UDP checksum; with ``BPF_F_PSEUDO_HDR`` on a
    ``CHECKSUM_COMPLETE`` skb, ``skb->csum`` follows the change (pybpf's skbs are never
    ``CHECKSUM_PARTIAL``, the kernel's other case)."""
    allowed = (BPF_F_MARK_MANGLED_0 | BPF_F_MARK_ENFORCE | BPF_F_PSEUDO_HDR
               | BPF_F_HDR_FIELD_MASK | BPF_F_IPV6)
    if flags & ~allowed:
        return _neg(EINVAL)
    at = _csum_at(ctx, offset)
    if isinstance(at, int):
        return _neg(at)
    skb, addr, old = at
    mangled0 = bool(flags & BPF_F_MARK_MANGLED_0)
    if mangled0 and not flags & BPF_F_MARK_ENFORCE and old == 0:
        return 0
    size = flags & BPF_F_HDR_FIELD_MASK
    if size not in (0, 2, 4) or (size == 0 and frm):
        return _neg(EINVAL)
    new = csum_replace(old, size, frm, to)
    if mangled0 and new == 0:
        new = CSUM_MANGLED_0
    ctx.mem.write(addr, new.to_bytes(2, "little"))
    if flags & BPF_F_PSEUDO_HDR and skb.ip_summed == CHECKSUM_COMPLETE \
            and not (size == 0 and flags & BPF_F_IPV6):
        diff = _pseudo_csum_diff(size, frm, to)
        skb.u("csum", ~csum_add(diff, ~skb.u("csum") & M32) & M32)
    return 0


IMPLS: dict[int, Callable[..., int]] = {
    28: csum_diff,
    40: csum_update,
    10: l3_csum_replace,
    11: l4_csum_replace,
}
