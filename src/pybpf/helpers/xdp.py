"""XDP helpers: ``bpf_xdp_adjust_head/meta/tail`` and ``bpf_xdp_load/store_bytes``.

They work on the program's own ``struct xdp_buff`` (``r1``, a
:class:`pybpf.net.xdp_buff.XdpBuff`): moving its native ``data``/``data_meta``/
``data_end`` fields is what the program sees on its next ctx read, as in the kernel
(``net/core/filter.c``). Fragments of a multi-buffer frame are the object's ``frags``;
whether there are any is ``XDP_FLAGS_HAS_FRAGS`` in the native ``xdp_buff.flags``
(``XdpBuff.has_frags``), which the helpers test as the kernel's do. These functions are
the reference the JIT's native versions (:mod:`pybpf.jit.pktgen`) follow on linear
frames and call for fragmented ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pybpf.net.xdp_buff import XdpBuff, xdp_buff_at
from pybpf.runtime.context import RunContext

M64 = (1 << 64) - 1
M32 = 0xFFFFFFFF
EINVAL, EFAULT, EACCES, ENOTSUPP = 22, 14, 13, 524
ETH_HLEN = 14
PAGE_SIZE = 4096
XDP_FRAME_SIZE = 40  # sizeof(struct xdp_frame): kept free at data_hard_start
META_MAX = 255  # type_max(skb_shared_info.meta_len), xdp_metalen_invalid
MAX_XDP_SPAN = 0xFFFF  # bpf_xdp_pointer refuses offsets/lengths beyond this


def _neg(err: int) -> int:
    return (-err) & M64


def _s32(value: int) -> int:
    value &= M32
    return value - (1 << 32) if value >> 31 else value


def _buff(ctx: RunContext, addr: int) -> XdpBuff | None:
    """The buffer ``r1`` points to (the running packet's, if the address is not one)."""
    found = xdp_buff_at(addr)
    if found is not None:
        return found
    fallback: Any = ctx.data.get("xdp")
    return fallback if isinstance(fallback, XdpBuff) else None


def xdp_adjust_head(ctx: RunContext, xdp: int, offset: int, *_: int) -> int:
    """``bpf_xdp_adjust_head``: move ``data`` (and the metadata with it) by ``offset``;
    the headroom never eats the ``xdp_frame`` area and at least ETH_HLEN bytes stay."""
    b = _buff(ctx, xdp)
    if b is None:
        return _neg(EINVAL)
    offset = _s32(offset)
    data, data_end, meta = b.data, b.data_end, b.data_meta
    metalen = data - meta if meta <= data else 0
    new = data + offset
    if new < b.data_hard_start + XDP_FRAME_SIZE + metalen or new > data_end - ETH_HLEN:
        return _neg(EINVAL)
    if metalen:
        ctx.mem.write(meta + offset, ctx.mem.read(meta, metalen))
    b.data_meta = meta + offset
    b.data = new
    return 0


def xdp_adjust_meta(ctx: RunContext, xdp: int, offset: int, *_: int) -> int:
    """``bpf_xdp_adjust_meta``: move ``data_meta``; metadata is u32-aligned, at most
    255 bytes, between the ``xdp_frame`` area and ``data``."""
    b = _buff(ctx, xdp)
    if b is None:
        return _neg(EINVAL)
    data, meta = b.data, b.data_meta
    if meta > data:  # xdp_data_meta_unsupported
        return _neg(ENOTSUPP)
    new = meta + _s32(offset)
    if new < b.data_hard_start + XDP_FRAME_SIZE or new > data:
        return _neg(EINVAL)
    metalen = data - new
    if metalen % 4 or metalen > META_MAX:
        return _neg(EACCES)
    b.data_meta = new
    return 0


def xdp_adjust_tail(ctx: RunContext, xdp: int, offset: int, *_: int) -> int:
    """``bpf_xdp_adjust_tail``: move ``data_end`` within the frame (grown bytes are
    zeroed); a fragmented buffer grows or shrinks its fragments instead."""
    b = _buff(ctx, xdp)
    if b is None:
        return _neg(EINVAL)
    offset = _s32(offset)
    data, data_end = b.data, b.data_end
    if b.has_frags:
        return _frags_adjust_tail(b, data_end - data, offset)
    new = data_end + offset
    if new > b.hard_end or new < data + ETH_HLEN:
        return _neg(EINVAL)
    if offset > 0:
        ctx.mem.write(data_end, bytes(offset))
    b.data_end = new
    return 0


def _frags_adjust_tail(b: XdpBuff, linear: int, offset: int) -> int:
    """``bpf_xdp_frags_shrink_tail`` / ``bpf_xdp_frags_increase_tail`` (page-sized
    fragments at offset 0, as BPF_PROG_TEST_RUN builds them)."""
    frags = b.frags
    if offset < 0:
        shrink = _s32(-offset)  # an int in the kernel: -INT_MIN stays negative, a no-op
        if shrink > linear + sum(map(len, frags)) - ETH_HLEN:
            return _neg(EINVAL)
        while frags and shrink > 0:
            cut = min(shrink, len(frags[-1]))
            shrink -= cut
            frags[-1] = frags[-1][:len(frags[-1]) - cut]
            if not frags[-1]:
                frags.pop()
        b.frags = frags  # the last fragment gone: xdp_buff_clear_frags_flag
        if not frags and shrink:
            b.data_end = b.data_end - shrink
        return 0
    if offset > PAGE_SIZE - len(frags[-1]):
        return _neg(EINVAL)
    frags[-1] = frags[-1] + bytes(offset)
    return 0


def _span_error(b: XdpBuff, offset: int, length: int) -> int:
    """``bpf_xdp_pointer``'s checks: 0 when ``[offset, offset+length)`` is in the buffer."""
    if offset > MAX_XDP_SPAN or length > MAX_XDP_SPAN:
        return EFAULT
    if offset + length > b.data_end - b.data + sum(map(len, b.frags)):
        return EINVAL
    return 0


def xdp_load_bytes(ctx: RunContext, xdp: int, offset: int, buf: int, length: int,
                   *_: int) -> int:
    """``bpf_xdp_load_bytes``: copy out of the linear part and the fragments."""
    b = _buff(ctx, xdp)
    if b is None:
        return _neg(EINVAL)
    offset, length = offset & M32, length & M32
    err = _span_error(b, offset, length)
    if err:
        return _neg(err)
    whole = ctx.mem.read(b.data, b.data_end - b.data) + b"".join(b.frags)
    ctx.mem.write(buf, whole[offset:offset + length])
    return 0


def xdp_store_bytes(ctx: RunContext, xdp: int, offset: int, buf: int, length: int,
                    *_: int) -> int:
    """``bpf_xdp_store_bytes``: copy into the linear part and the fragments."""
    b = _buff(ctx, xdp)
    if b is None:
        return _neg(EINVAL)
    offset, length = offset & M32, length & M32
    err = _span_error(b, offset, length)
    if err:
        return _neg(err)
    src = ctx.mem.read(buf, length)
    linear = b.data_end - b.data
    head = src[:max(0, linear - offset)]
    if head:
        ctx.mem.write(b.data + offset, head)
    rest, pos = src[len(head):], max(0, offset - linear)
    frags = b.frags
    for i, frag in enumerate(frags):
        if not rest:
            break
        if pos >= len(frag):
            pos -= len(frag)
            continue
        part = rest[:len(frag) - pos]
        frags[i] = frag[:pos] + part + frag[pos + len(part):]
        rest, pos = rest[len(part):], 0
    return 0


# ----------------------------------------------------------------------- redirect_map

XDP_ABORTED, XDP_REDIRECT = 0, 4
XDP_ACTION_MASK = 3  # XDP_ABORTED | XDP_DROP | XDP_PASS | XDP_TX: the miss verdict
BPF_F_BROADCAST, BPF_F_EXCLUDE_INGRESS = 1 << 3, 1 << 4


def redirect_map(ctx: RunContext, map_addr: int, index: int, flags: int, *_: int) -> int:
    """``bpf_redirect_map`` (XDP): the map type's ``map_redirect``.

    ``__bpf_xdp_redirect_map``: flags beyond the fallback action and the map type's own
    (``redirect_flags``: broadcast for devmaps) are XDP_ABORTED; a missing entry returns
    the low flag bits (the fallback action) unless broadcasting; a hit
    records the target for the device to act on after the program returns
    (:func:`pybpf.net.xdp_redirect.xdp_do_redirect`) and returns XDP_REDIRECT.
    """
    from pybpf.maps.core import map_from_addr
    from pybpf.net.xdp_redirect import XdpRedirect

    bmap: Any = map_from_addr(map_addr)
    lookup = getattr(getattr(bmap, "ops", None), "redirect_entry", None)
    if bmap is None or not callable(lookup):
        return XDP_ABORTED
    flags &= M64
    if flags & ~(XDP_ACTION_MASK | int(getattr(bmap.ops, "redirect_flags", 0))):
        return XDP_ABORTED
    entry = lookup(bmap, index & M32)
    broadcast = bool(flags & BPF_F_BROADCAST)
    if entry is None and not broadcast:
        ctx.data.pop("redirect", None)
        return flags & XDP_ACTION_MASK
    # devmap entries name a device; a CPU or socket target has no ifindex
    target = 0 if broadcast else int(getattr(entry, "ifindex", 0))
    token = (target, flags if broadcast else 0)
    ctx.data["redirect"] = token
    buff: Any = ctx.data.get("xdp")
    if isinstance(buff, XdpBuff):
        buff.redirect_info = XdpRedirect(bmap, index & M32, flags if broadcast else 0,
                                         None if broadcast else entry, token)
    return XDP_REDIRECT


IMPLS: dict[int, Callable[..., int]] = {
    51: redirect_map,
    44: xdp_adjust_head,
    54: xdp_adjust_meta,
    65: xdp_adjust_tail,
    189: xdp_load_bytes,
    190: xdp_store_bytes,
}
