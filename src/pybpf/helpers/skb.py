"""skb helpers (``net/core/filter.c``): load/store bytes, change proto/type/head/tail,
adjust room, pull data, VLAN push/pop, hashes — on the running program's
:class:`pybpf.net.skbuff.SkBuff` (``RunContext.data["skb"]``), the native ``struct sk_buff``
its rewritten ctx accesses read.

Growing the packet past its buffer reallocates it as ``pskb_expand_head`` does
(:meth:`SkBuff.expand_head`); the size limits (``BPF_SKB_MAX_LEN``…) are the kernel's.
"""

from __future__ import annotations

from collections.abc import Callable

from pybpf.helpers.csum import skb_postpull_rcsum, skb_postpush_rcsum
from pybpf.net.skbuff import SkBuff, skb_from_ctx
from pybpf.runtime.context import RunContext

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1
EINVAL, EFAULT, ENOMEM, ENOTSUPP = 22, 14, 12, 524
INT_MAX = (1 << 31) - 1
ETH_HLEN = 14
PAGE_SIZE = 4096
SKB_SHARED_INFO_SIZE = 320
SKB_MAX_ALLOC = 4 * PAGE_SIZE - SKB_SHARED_INFO_SIZE  # BPF_SKB_MAX_LEN
BPF_F_RECOMPUTE_CSUM, BPF_F_INVALIDATE_HASH = 1, 2
PACKET_OTHERHOST = 3
ETH_P_IP_BE, ETH_P_IPV6_BE = 0x0008, 0xDD86  # htons() as skb->protocol holds it
ETH_P_8021Q_BE, ETH_P_8021AD_BE = 0x0081, 0xA888  # htons(0x8100), htons(0x88A8)
ETH_P_802_3_MIN = 0x0600
IPV4_HLEN, IPV6_HLEN = 20, 40
VLAN_HLEN = 4
BPF_HDR_START_MAC, BPF_HDR_START_NET = 0, 1
BPF_ADJ_ROOM_NET, BPF_ADJ_ROOM_MAC = 0, 1
BPF_F_ADJ_ROOM_FIXED_GSO = 1 << 0
BPF_F_ADJ_ROOM_NO_CSUM_RESET = 1 << 5
BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_DECAP_L3_IPV6 = 1 << 7, 1 << 8
BPF_F_ADJ_ROOM_DECAP_L3_MASK = BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_DECAP_L3_IPV6
BPF_F_ADJ_ROOM_MASK = (BPF_F_ADJ_ROOM_FIXED_GSO | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4)
                       | (1 << 6) | (0xFF << 56) | BPF_F_ADJ_ROOM_DECAP_L3_MASK)


def _neg(err: int) -> int:
    return (-err) & M64


def _s32(value: int) -> int:
    value &= M32
    return value - (1 << 32) if value >> 31 else value


def _set_headers(skb: SkBuff, mac: int) -> None:
    """MAC header at ``mac``, network header right after the Ethernet header."""
    skb.mac_header = mac
    skb.network_header = mac + ETH_HLEN


def _push(ctx: RunContext, skb: SkBuff, length: int) -> tuple[int, int]:
    """Make ``length`` bytes of headroom (reallocating if needed); the new bounds."""
    skb.cow_head(length)
    return skb.bounds()


# ------------------------------------------------------------------ bytes in and out

def skb_load_bytes(ctx: RunContext, _skb: int, off: int, to: int, length: int,
                   *_: int) -> int:
    """``bpf_skb_load_bytes``: ``length`` bytes at ``off`` from ``skb->data``; on failure
    the buffer is zeroed and -EFAULT returned."""
    skb = skb_from_ctx(ctx)
    off &= M32
    if skb is not None and off <= INT_MAX and off + length <= skb.len:
        ctx.mem.write(to, ctx.mem.read(skb.data + off, length))
        return 0
    if length:
        ctx.mem.write(to, bytes(length))
    return _neg(EFAULT)


def skb_store_bytes(ctx: RunContext, _skb: int, offset: int, frm: int, length: int,
                    flags: int) -> int:
    """``bpf_skb_store_bytes``; ``BPF_F_RECOMPUTE_CSUM`` keeps a ``CHECKSUM_COMPLETE``
    skb's ``csum`` in step, ``BPF_F_INVALIDATE_HASH`` clears the hash."""
    if flags & ~(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH):
        return _neg(EINVAL)
    offset &= M32
    if offset > INT_MAX:
        return _neg(EFAULT)
    skb = skb_from_ctx(ctx)
    if skb is None or (offset + length) & M32 > skb.len:  # bpf_try_make_writable
        return _neg(EFAULT)
    addr = skb.data + offset
    data = ctx.mem.read(frm, length)
    if flags & BPF_F_RECOMPUTE_CSUM:
        skb_postpull_rcsum(skb, ctx.mem.read(addr, length), offset)
    ctx.mem.write(addr, data)
    if flags & BPF_F_RECOMPUTE_CSUM:
        skb_postpush_rcsum(skb, data, offset)
    if flags & BPF_F_INVALIDATE_HASH:
        skb.clear_hash()
    return 0


def skb_load_bytes_relative(ctx: RunContext, _skb: int, offset: int, to: int, length: int,
                            start_header: int) -> int:
    """``bpf_skb_load_bytes_relative``: copy from the MAC or network header up to the
    tail; on any failure the buffer is zeroed and -EFAULT returned."""
    skb = skb_from_ctx(ctx)
    offset &= M32
    start_header &= M32
    if skb is not None and offset <= 0xFFFF and start_header in (BPF_HDR_START_MAC,
                                                                  BPF_HDR_START_NET):
        base = skb.mac_header if start_header == BPF_HDR_START_MAC else skb.network_header
        _start, end = skb.bounds()
        if base + offset + length <= end:
            ctx.mem.write(to, ctx.mem.read(base + offset, length))
            return 0
    if length:
        ctx.mem.write(to, bytes(length))
    return _neg(EFAULT)


def skb_pull_data(ctx: RunContext, _skb: int, length: int, *_: int) -> int:
    """``bpf_skb_pull_data``: make ``len`` bytes (0: the linear part) direct-accessible;
    pybpf's packets are linear, so only a length beyond the packet fails (-ENOMEM)."""
    skb = skb_from_ctx(ctx)
    if skb is None:
        return _neg(EINVAL)
    length &= M32
    return _neg(ENOMEM) if length > skb.len else 0


# ------------------------------------------------------------------ metadata

def skb_change_type(ctx: RunContext, _skb: int, pkt_type: int, *_: int) -> int:
    """``bpf_skb_change_type``: only PACKET_HOST..PACKET_OTHERHOST, from and to."""
    skb = skb_from_ctx(ctx)
    if skb is None:
        return _neg(EINVAL)
    pkt_type &= M32
    if skb.pkt_type > PACKET_OTHERHOST or pkt_type > PACKET_OTHERHOST:
        return _neg(EINVAL)
    skb.pkt_type = pkt_type
    return 0


def set_hash(ctx: RunContext, _skb: int, value: int, *_: int) -> int:
    """``bpf_set_hash``: a software hash (``__skb_set_sw_hash``), valid until cleared."""
    skb = skb_from_ctx(ctx)
    if skb is not None:
        skb.set_hash(value & M32, sw=True)
    return 0


def get_hash_recalc(ctx: RunContext, _skb: int, *_: int) -> int:
    """``bpf_get_hash_recalc``: ``skb_get_hash``. A hash already set (by ``set_hash``, or
    an L4/software hash) is returned; otherwise the kernel dissects the flow and hashes it
    with a per-boot random key — not reproducible, so pybpf reports the zero an unhashed
    packet's field holds."""
    skb = skb_from_ctx(ctx)
    if skb is None or not skb.hash_valid:
        return 0
    return skb.u("hash")


# ------------------------------------------------------------------ shape

def skb_change_proto(ctx: RunContext, _skb: int, proto: int, flags: int, *_: int) -> int:
    """``bpf_skb_change_proto``: IPv4 <-> IPv6 by inserting/removing 20 zero bytes after
    the MAC header; the program rewrites the headers itself."""
    skb = skb_from_ctx(ctx)
    if skb is None or flags:
        return _neg(EINVAL)
    frm, to = skb.protocol, proto & 0xFFFF
    off = ETH_HLEN  # skb_mac_header_len: tc sees the packet from the MAC header
    diff = IPV6_HLEN - IPV4_HLEN
    if frm == ETH_P_IP_BE and to == ETH_P_IPV6_BE:
        start, end = _push(ctx, skb, diff)
        mac = ctx.mem.read(start, off)
        ctx.mem.write(start - diff, mac + bytes(diff))
        skb.set_bounds(start - diff, end)
        _set_headers(skb, start - diff)
    elif frm == ETH_P_IPV6_BE and to == ETH_P_IP_BE:
        start, end = skb.bounds()
        if off + diff > end - start:
            return _neg(ENOMEM)
        mac = ctx.mem.read(start, off)
        ctx.mem.write(start + diff, mac)
        skb.set_bounds(start + diff, end)
        _set_headers(skb, start + diff)
    else:
        return _neg(ENOTSUPP)
    skb.protocol = to
    return 0


def skb_change_tail(ctx: RunContext, _skb: int, new_len: int, flags: int, *_: int) -> int:
    """``bpf_skb_change_tail``: trim or grow (zero-filled) the packet to ``new_len``,
    never below the network header."""
    skb = skb_from_ctx(ctx)
    if skb is None:
        return _neg(EINVAL)
    start, end = skb.bounds()
    new_len &= M32
    min_len = max(0, skb.network_header - start)  # skb_network_offset
    if flags or new_len > SKB_MAX_ALLOC or new_len < min_len:
        return _neg(EINVAL)
    if new_len > end - start:
        skb.grow_tail(new_len - (end - start))
        start, end = skb.bounds()
        ctx.mem.write(end, bytes(new_len - (end - start)))
    skb.set_bounds(start, start + new_len)
    return 0


def skb_change_head(ctx: RunContext, _skb: int, head_room: int, flags: int, *_: int) -> int:
    """``bpf_skb_change_head``: push ``head_room`` zero bytes in front of the packet."""
    skb = skb_from_ctx(ctx)
    if skb is None:
        return _neg(EINVAL)
    head_room &= M32
    if flags or skb.len + head_room > SKB_MAX_ALLOC:
        return _neg(EINVAL)
    start, end = _push(ctx, skb, head_room)
    ctx.mem.write(start - head_room, bytes(head_room))
    skb.set_bounds(start - head_room, end)
    skb.mac_header = start - head_room  # skb_reset_mac_header; the network header stays
    return 0


def skb_adjust_room(ctx: RunContext, _skb: int, len_diff: int, mode: int, flags: int,
                    *_: int) -> int:
    """``bpf_skb_adjust_room``: insert (zeroed) or remove ``len_diff`` bytes after the
    MAC header (BPF_ADJ_ROOM_MAC) or after the base L3 header (BPF_ADJ_ROOM_NET).

    Growing with the ENCAP flags inserts the room like the plain case; the kernel's extra
    tunnel-header bookkeeping (inner headers, GSO type) has no pybpf counterpart."""
    skb = skb_from_ctx(ctx)
    if skb is None:
        return _neg(EINVAL)
    diff = _s32(len_diff)
    shrink, absdiff = diff < 0, abs(diff)
    mode &= M32
    if flags & ~(BPF_F_ADJ_ROOM_MASK | BPF_F_ADJ_ROOM_NO_CSUM_RESET):
        return _neg(EINVAL)
    if absdiff > 0xFFF:
        return _neg(EFAULT)
    proto = skb.protocol
    if proto not in (ETH_P_IP_BE, ETH_P_IPV6_BE):
        return _neg(ENOTSUPP)
    base_len = IPV4_HLEN if proto == ETH_P_IP_BE else IPV6_HLEN
    start, end = skb.bounds()
    mac, net = skb.mac_header, skb.network_header
    off = net - mac
    if mode == BPF_ADJ_ROOM_NET:
        off += base_len
    elif mode != BPF_ADJ_ROOM_MAC:
        return _neg(ENOTSUPP)
    len_min = base_len
    decap = flags & BPF_F_ADJ_ROOM_DECAP_L3_MASK
    if decap:
        if not shrink:
            return _neg(EINVAL)
        if decap == BPF_F_ADJ_ROOM_DECAP_L3_IPV4:
            len_min = IPV4_HLEN
        elif decap == BPF_F_ADJ_ROOM_DECAP_L3_IPV6:
            len_min = IPV6_HLEN
        else:
            return _neg(EINVAL)
    len_cur = end - net
    if shrink and (absdiff >= len_cur or len_cur - absdiff < len_min):
        return _neg(ENOTSUPP)
    if not shrink and end - start + absdiff > SKB_MAX_ALLOC:
        return _neg(ENOTSUPP)
    if shrink:
        if flags & ~(BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_DECAP_L3_MASK
                     | BPF_F_ADJ_ROOM_NO_CSUM_RESET):
            return _neg(EINVAL)
        if off + absdiff > end - start:
            return _neg(ENOMEM)
        ctx.mem.write(start + absdiff, ctx.mem.read(start, off))
        skb.set_bounds(start + absdiff, end)
        _set_headers(skb, start + absdiff)
        if decap:
            skb.protocol = ETH_P_IP_BE if decap == BPF_F_ADJ_ROOM_DECAP_L3_IPV4 \
                else ETH_P_IPV6_BE
        return 0
    start, end = _push(ctx, skb, absdiff)
    ctx.mem.write(start - absdiff, ctx.mem.read(start, off) + bytes(absdiff))
    skb.set_bounds(start - absdiff, end)
    _set_headers(skb, start - absdiff)
    return 0


# ------------------------------------------------------------------ VLAN

def _eth_type_vlan(proto_le: int) -> bool:
    return proto_le in (ETH_P_8021Q_BE, ETH_P_8021AD_BE)


def _vlan_pop_from_packet(ctx: RunContext, skb: SkBuff) -> int | tuple[int, int]:
    """``__skb_vlan_pop``: remove the tag after the MAC addresses; (0, tci) or -errno."""
    start, end = skb.bounds()
    if start != skb.mac_header:  # skb->data must be at the MAC header
        return -EINVAL
    if end - start < ETH_HLEN + VLAN_HLEN:
        return -ENOMEM
    tci = int.from_bytes(ctx.mem.read(start + ETH_HLEN, 2), "big")
    encap = ctx.mem.read(start + ETH_HLEN + 2, 2)
    macs = ctx.mem.read(start, 2 * 6)
    ctx.mem.write(start + VLAN_HLEN, macs)
    skb.set_bounds(start + VLAN_HLEN, end)
    _set_headers(skb, start + VLAN_HLEN)
    if int.from_bytes(encap, "big") >= ETH_P_802_3_MIN:  # vlan_set_encap_proto
        skb.protocol = int.from_bytes(encap, "little")
    return 0, tci


def skb_vlan_push(ctx: RunContext, _skb: int, vlan_proto: int, vlan_tci: int,
                  *_: int) -> int:
    """``bpf_skb_vlan_push``: a present tag goes into the packet, the new one into the
    metadata (``skb->vlan_proto``/``vlan_tci``); unknown protocols become 802.1Q."""
    skb = skb_from_ctx(ctx)
    if skb is None:
        return _neg(EINVAL)
    proto = vlan_proto & 0xFFFF
    if not _eth_type_vlan(proto):
        proto = ETH_P_8021Q_BE
    if skb.vlan_present:
        start, _end = skb.bounds()
        if start != skb.mac_header:
            return _neg(EINVAL)
        start, end = _push(ctx, skb, VLAN_HLEN)
        old_proto, old_tci = skb.u("vlan_proto"), skb.u("vlan_tci")
        macs = ctx.mem.read(start, 2 * 6)
        new = start - VLAN_HLEN
        ctx.mem.write(new, macs + old_proto.to_bytes(2, "little")
                      + old_tci.to_bytes(2, "big"))
        skb.set_bounds(new, end)
        _set_headers(skb, new)
        skb.protocol = old_proto
    skb.vlan_set(proto, vlan_tci & 0xFFFF)
    return 0


def skb_vlan_pop(ctx: RunContext, _skb: int, *_: int) -> int:
    """``bpf_skb_vlan_pop``: drop the metadata tag (or the packet's outer tag), then move
    the next tag in the packet, if any, into the metadata."""
    skb = skb_from_ctx(ctx)
    if skb is None:
        return _neg(EINVAL)
    if skb.vlan_present:
        skb.vlan_clear()
    else:
        if not _eth_type_vlan(skb.protocol):
            return 0
        got = _vlan_pop_from_packet(ctx, skb)
        if isinstance(got, int):
            return got & M64
    proto = skb.protocol
    if not _eth_type_vlan(proto):
        return 0
    got = _vlan_pop_from_packet(ctx, skb)
    if isinstance(got, int):
        return got & M64
    skb.vlan_set(proto, got[1])
    return 0


IMPLS: dict[int, Callable[..., int]] = {
    26: skb_load_bytes,
    9: skb_store_bytes,
    68: skb_load_bytes_relative,
    39: skb_pull_data,
    32: skb_change_type,
    48: set_hash,
    34: get_hash_recalc,
    31: skb_change_proto,
    38: skb_change_tail,
    43: skb_change_head,
    50: skb_adjust_room,
    18: skb_vlan_push,
    19: skb_vlan_pop,
}
