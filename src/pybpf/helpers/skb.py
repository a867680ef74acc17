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
from pybpf.net.skbuff import SkBuff, TunnelInfo, skb_from_ctx
from pybpf.runtime.context import RunContext

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1
EINVAL, EFAULT, ENOMEM, ERANGE, ENOTSUPP = 22, 14, 12, 34, 524
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


IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_UDPLITE = 6, 17, 132, 136
_PORT_PROTOS = frozenset({IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_UDPLITE})
#: ``hashrnd``: the kernel seeds flow hashes with a per-boot random value; pybpf's is fixed
#: (an instance may set ``kernel.flow_hash_seed``) so runs are reproducible.
FLOW_HASH_SEED = 0x5EED_F10E


def _flow_keys(ctx: RunContext, skb: SkBuff) -> tuple[bytes, bool]:
    """The dissected flow (addresses and, when the transport has them, ports) in the
    direction-independent order ``__flow_hash_consistentify`` gives, and whether ports
    were found (``l4_hash``)."""
    net, end = skb.network_header, skb.tail
    proto = skb.protocol
    if proto == ETH_P_IP_BE and net + IPV4_HLEN <= end:
        hdr = ctx.mem.read(net, IPV4_HLEN)
        ihl = (hdr[0] & 0xF) * 4
        ip_proto, src, dst = hdr[9], hdr[12:16], hdr[16:20]
        fragment = int.from_bytes(hdr[6:8], "big") & 0x3FFF
        l4 = net + ihl if not fragment else None
    elif proto == ETH_P_IPV6_BE and net + IPV6_HLEN <= end:
        hdr = ctx.mem.read(net, IPV6_HLEN)
        ip_proto, src, dst = hdr[6], hdr[8:24], hdr[24:40]
        l4 = net + IPV6_HLEN
    else:  # no addresses: the protocol alone is hashed
        return proto.to_bytes(2, "little"), False
    ports = b""
    if l4 is not None and ip_proto in _PORT_PROTOS and l4 + 4 <= end:
        ports = ctx.mem.read(l4, 4)
    sport, dport = ports[:2], ports[2:]
    if (dst, dport) < (src, sport):
        src, dst, sport, dport = dst, src, dport, sport
    return bytes([ip_proto]) + src + dst + sport + dport, bool(ports)


def get_hash_recalc(ctx: RunContext, _skb: int, *_: int) -> int:
    """``bpf_get_hash_recalc`` (``skb_get_hash``): a hash already set (``set_hash``, or
    one computed before) is returned; otherwise the flow is dissected and hashed — the
    same for both directions, never 0, stored in ``skb->hash`` with ``l4_hash`` when ports
    took part, as the kernel does. The kernel keys the hash with a per-boot random value,
    so the numbers differ from its own; their properties do not."""
    import zlib

    skb = skb_from_ctx(ctx)
    if skb is None:
        return 0
    if skb.hash_valid:
        return skb.u("hash")
    keys = _flow_keys(ctx, skb)
    seed = int(getattr(ctx.kernel, "flow_hash_seed", FLOW_HASH_SEED)) & M32
    value = zlib.crc32(keys[0], seed) or 1
    skb.set_hash(value, l4=keys[1])
    return value


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


# ------------------------------------------------------------------ tunnel metadata

BPF_F_TUNINFO_IPV6, BPF_F_ZERO_CSUM_TX, BPF_F_DONT_FRAGMENT, BPF_F_SEQ_NUMBER = 1, 2, 4, 8
BPF_F_NO_TUNNEL_KEY = BPF_F_TUNINFO_FLAGS = 1 << 4
# struct bpf_tunnel_key (tunnel_label sits before local_ipv4/ipv6)
TK_ID, TK_REMOTE, TK_TOS, TK_TTL, TK_EXT, TK_LABEL, TK_LOCAL, TK_SIZE = \
    0, 4, 20, 21, 22, 24, 28, 44
TK_COMPAT_SIZES = (TK_LOCAL, TK_LABEL, TK_EXT, TK_REMOTE + 4)
# IP_TUNNEL_*_BIT
TUN_CSUM, TUN_KEY, TUN_SEQ, TUN_DONT_FRAGMENT, TUN_NOCACHE = 0, 2, 3, 8, 13
IPV6_FLOWLABEL_MASK = 0x000FFFFF
EPROTO = 71


def skb_set_tunnel_key(ctx: RunContext, _skb: int, frm: int, size: int, flags: int,
                       *_: int) -> int:
    """``bpf_skb_set_tunnel_key``: attach tunnel metadata (the per-CPU metadata dst) for
    a collect-metadata tunnel device; older, shorter ``bpf_tunnel_key`` layouts are
    zero-extended."""
    allowed = (BPF_F_TUNINFO_IPV6 | BPF_F_ZERO_CSUM_TX | BPF_F_DONT_FRAGMENT
               | BPF_F_SEQ_NUMBER | BPF_F_NO_TUNNEL_KEY)
    if flags & ~allowed:
        return _neg(EINVAL)
    size &= M32
    if size != TK_SIZE and size not in TK_COMPAT_SIZES:
        return _neg(EINVAL)
    key = ctx.mem.read(frm, size) + bytes(TK_SIZE - size)
    ipv6 = bool(flags & BPF_F_TUNINFO_IPV6)
    label = int.from_bytes(key[TK_LABEL:TK_LABEL + 4], "little")
    if (not ipv6 and label) or int.from_bytes(key[TK_EXT:TK_EXT + 2], "little"):
        return _neg(EINVAL)
    skb = skb_from_ctx(ctx)
    if skb is None:
        return _neg(EINVAL)
    bits = {TUN_NOCACHE}
    if flags & BPF_F_DONT_FRAGMENT:
        bits.add(TUN_DONT_FRAGMENT)
    if not flags & BPF_F_ZERO_CSUM_TX:
        bits.add(TUN_CSUM)
    if flags & BPF_F_SEQ_NUMBER:
        bits.add(TUN_SEQ)
    if not flags & BPF_F_NO_TUNNEL_KEY:
        bits.add(TUN_KEY)
    remote, local = key[TK_REMOTE:TK_REMOTE + 16], key[TK_LOCAL:TK_LOCAL + 16]
    if not ipv6:  # host-order u32 in the key, network order in the metadata
        remote, local = remote[3::-1], local[3::-1]
    skb.tunnel_info = TunnelInfo(
        ipv6=ipv6, tun_id=int.from_bytes(key[TK_ID:TK_ID + 4], "little"), tos=key[TK_TOS],
        ttl=key[TK_TTL], flag_bits=bits, dst=remote, src=local,
        label=label & IPV6_FLOWLABEL_MASK if ipv6 else 0)
    return 0


def skb_get_tunnel_key(ctx: RunContext, _skb: int, to: int, size: int, flags: int,
                       *_: int) -> int:
    """``bpf_skb_get_tunnel_key``: the skb's tunnel metadata as a ``bpf_tunnel_key``
    (remote = the metadata's source); -EINVAL without metadata, -EPROTO for the other
    address family; the buffer is zeroed on failure."""
    size &= M32
    skb = skb_from_ctx(ctx)
    info = skb.tunnel_info if skb is not None else None

    def fail(err: int) -> int:
        if size:
            ctx.mem.write(to, bytes(size))
        return _neg(err)

    if info is None or flags & ~(BPF_F_TUNINFO_IPV6 | BPF_F_TUNINFO_FLAGS):
        return fail(EINVAL)
    if info.ipv6 != bool(flags & BPF_F_TUNINFO_IPV6):
        return fail(EPROTO)
    if size != TK_SIZE and (size not in TK_COMPAT_SIZES
                            or (size == TK_REMOTE + 4 and info.ipv6)):
        return fail(EINVAL)
    out = bytearray(TK_SIZE)
    out[TK_ID:TK_ID + 4] = (info.tun_id & M32).to_bytes(4, "little")
    out[TK_TOS], out[TK_TTL] = info.tos, info.ttl
    if flags & BPF_F_TUNINFO_FLAGS:  # ip_tunnel_flags_to_be16
        be16 = sum(1 << b for b in info.flag_bits if b < 16)
        out[TK_EXT:TK_EXT + 2] = be16.to_bytes(2, "big")
    if info.ipv6:
        out[TK_REMOTE:TK_REMOTE + 16] = info.src
        out[TK_LOCAL:TK_LOCAL + 16] = info.dst
        out[TK_LABEL:TK_LABEL + 4] = info.label.to_bytes(4, "little")
    else:
        out[TK_REMOTE:TK_REMOTE + 4] = info.src[3::-1]
        out[TK_LOCAL:TK_LOCAL + 4] = info.dst[3::-1]
    ctx.mem.write(to, bytes(out[:size]))
    return 0


# ------------------------------------------------------------------ redirect

BPF_F_INGRESS = 1


def clone_redirect(ctx: RunContext, _skb: int, ifindex: int, flags: int, *_: int) -> int:
    """``bpf_clone_redirect``: a copy of the packet leaves through (or, with
    ``BPF_F_INGRESS``, arrives at) device ``ifindex`` now; the program goes on with the
    original. A pybpf device runs its own hooks on the copy; the loopback of a bare
    instance swallows it."""
    from pybpf.progs.testrun_common import dev_get_by_index

    skb = skb_from_ctx(ctx)
    if skb is None or flags & ~BPF_F_INGRESS:
        return _neg(EINVAL)
    if skb.shinfo_field("gso_size") and not skb.shinfo_field("gso_type"):
        return _neg(EINVAL)  # type-less GSO packets (test_run can make them) are refused
    dev = dev_get_by_index(ctx.kernel, ifindex & M32)
    if dev is None:
        return _neg(EINVAL)
    if skb.mac_header >= skb.network_header or skb.len == 0:
        return _neg(ERANGE)  # no link-layer header to transmit
    frame = skb.packet()
    if skb.data > skb.mac_header:  # bpf_push_mac_rcsum: the clone starts at the MAC
        frame = ctx.mem.read(skb.mac_header, skb.data - skb.mac_header) + frame
    deliver = getattr(dev, "receive" if flags & BPF_F_INGRESS else "transmit", None)
    if callable(deliver):
        deliver(frame)
    return 0


IMPLS: dict[int, Callable[..., int]] = {
    20: skb_get_tunnel_key,
    21: skb_set_tunnel_key,
    13: clone_redirect,
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
