"""Helper implementations the host hooks need, used only where pybpf has none yet.

The program-type/helper modules (``pybpf.helpers``) own helper semantics; while some
helpers there are prototypes without an implementation, a program attached to a host hook
would fault on them. :func:`fill_missing` (called when a ``Kernel`` builds its helper table)
adds the implementations below for those ids only — an implementation published by
``pybpf.helpers`` always wins.

State they share with the hooks lives in ``RunContext.data``:

- ``"skb"`` / ``"xdp"``: the :class:`pybpf.net.ctx.PacketCtx` of the running packet;
- ``"redirect"``: ``(ifindex, flags)`` set by ``bpf_redirect`` — the kernel's per-CPU
  ``bpf_redirect_info`` — read by the device after the program returns.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from pybpf.errors import BpfFault
from pybpf.runtime.context import RunContext

M64 = (1 << 64) - 1
BPF_F_INGRESS = 1
BPF_F_RECOMPUTE_CSUM = 1
BPF_F_INVALIDATE_HASH = 2
BPF_F_HDR_FIELD_MASK = 0xF
BPF_F_PSEUDO_HDR = 0x10
BPF_F_MARK_MANGLED_0 = 0x20
BPF_F_MARK_ENFORCE = 0x40
XDP_ABORTED, XDP_REDIRECT = 0, 4
TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7
PROG_TYPE_XDP = 6


def _neg(err: int) -> int:
    return (-err) & M64


def redirect(ctx: RunContext, ifindex: int, flags: int, *_: int) -> int:
    """``bpf_redirect`` (tc) / ``bpf_xdp_redirect`` (XDP): remember the target."""
    xdp = getattr(ctx.prog, "type", 0) == PROG_TYPE_XDP
    if xdp:
        if flags:
            return XDP_ABORTED
    elif flags & ~BPF_F_INGRESS:
        return TC_ACT_SHOT
    ctx.data["redirect"] = (ifindex & 0xFFFFFFFF, flags)
    return XDP_REDIRECT if xdp else TC_ACT_REDIRECT


def redirect_map(ctx: RunContext, map_addr: int, key: int, flags: int, *_: int) -> int:
    """``bpf_redirect_map``: a DEVMAP/DEVMAP_HASH value is the target ifindex (first u32);
    a missing key returns the action in the low bits of ``flags``."""
    from pybpf.maps.core import map_from_addr

    m: Any = map_from_addr(map_addr)
    fallback = flags & 0x3
    lookup = getattr(m, "redirect_target", None)
    target = lookup(key & 0xFFFFFFFF) if callable(lookup) else None
    if target is None:
        return fallback
    ctx.data["redirect"] = (int(target), 0)
    return XDP_REDIRECT


def _pkt(ctx: RunContext) -> Any:
    return ctx.data.get("skb") or ctx.data.get("xdp")


def skb_store_bytes(ctx: RunContext, _skb: int, off: int, frm: int, length: int,
                    flags: int) -> int:
    if flags & ~(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH):
        return _neg(errno.EINVAL)
    pkt = _pkt(ctx)
    off &= 0xFFFFFFFF
    if pkt is None or off > 0xFFFF:
        return _neg(errno.EFAULT)
    start, end = pkt.bounds()
    if off + length > end - start:
        return _neg(errno.EFAULT)
    ctx.mem.write(start + off, ctx.mem.read(frm, length))
    return 0


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _words(value: int, size: int) -> list[int]:
    return [(value >> s) & 0xFFFF for s in range(0, size * 8, 16)]


def _csum_replace(ctx: RunContext, off: int, frm: int, to: int, size: int,
                  mangled0: bool) -> int:
    pkt = _pkt(ctx)
    off &= 0xFFFFFFFF
    if pkt is None:
        return _neg(errno.EFAULT)
    start, end = pkt.bounds()
    if off + 2 > end - start:
        return _neg(errno.EFAULT)
    addr = start + off
    old = int.from_bytes(ctx.mem.read(addr, 2), "little")
    if mangled0 and old == 0:
        return 0
    if size == 0:  # frm/to unused, `to` is a csum_diff result
        total = (~old & 0xFFFF) + (to & 0xFFFF) + ((to >> 16) & 0xFFFF)
    else:
        total = ~old & 0xFFFF
        for w in _words(frm, size):
            total += ~w & 0xFFFF
        for w in _words(to, size):
            total += w
    new = ~_fold(total) & 0xFFFF
    if mangled0 and new == 0:
        new = 0xFFFF
    ctx.mem.write(addr, new.to_bytes(2, "little"))
    return 0


def l3_csum_replace(ctx: RunContext, _skb: int, off: int, frm: int, to: int, flags: int) -> int:
    if flags & ~BPF_F_HDR_FIELD_MASK or (flags & BPF_F_HDR_FIELD_MASK) not in (0, 2, 4):
        return _neg(errno.EINVAL)
    return _csum_replace(ctx, off, frm, to, flags & BPF_F_HDR_FIELD_MASK, False)


def l4_csum_replace(ctx: RunContext, _skb: int, off: int, frm: int, to: int, flags: int) -> int:
    allowed = BPF_F_MARK_MANGLED_0 | BPF_F_MARK_ENFORCE | BPF_F_PSEUDO_HDR | BPF_F_HDR_FIELD_MASK
    if flags & ~allowed or (flags & BPF_F_HDR_FIELD_MASK) not in (0, 2, 4):
        return _neg(errno.EINVAL)
    return _csum_replace(ctx, off, frm, to, flags & BPF_F_HDR_FIELD_MASK,
                         bool(flags & BPF_F_MARK_MANGLED_0))


def probe_read(ctx: RunContext, dst: int, size: int, src: int, *_: int) -> int:
    """``bpf_probe_read_{kernel,user}``: copy from registered host memory, or zero + EFAULT."""
    try:
        data = ctx.mem.read(src, size)
    except BpfFault:
        if size:
            ctx.mem.write(dst, bytes(size))
        return _neg(errno.EFAULT)
    ctx.mem.write(dst, data)
    return 0


def probe_read_str(ctx: RunContext, dst: int, size: int, src: int, *_: int) -> int:
    """``bpf_probe_read_{kernel,user}_str``: NUL-terminated copy; length incl. the NUL."""
    if size == 0:
        return 0
    out = bytearray()
    try:
        while len(out) < size - 1:
            b = ctx.mem.read(src + len(out), 1)
            if b == b"\0":
                break
            out += b
    except BpfFault:
        if not out:
            ctx.mem.write(dst, bytes(size))
            return _neg(errno.EFAULT)
    ctx.mem.write(dst, bytes(out) + b"\0")
    return len(out) + 1


FALLBACK_IMPLS: dict[int, Callable[..., int]] = {
    4: probe_read, 45: probe_read_str, 112: probe_read, 113: probe_read, 114: probe_read_str,
    115: probe_read_str, 9: skb_store_bytes, 10: l3_csum_replace, 11: l4_csum_replace,
    23: redirect, 51: redirect_map,
}


def fill_missing(table: Any) -> None:
    """Give every prototype in ``table`` (a HelperTable) without an implementation ours."""
    for fid, impl in FALLBACK_IMPLS.items():
        proto = table.get(fid)
        if proto is not None and proto.impl is None:
            table.override(fid, impl)
