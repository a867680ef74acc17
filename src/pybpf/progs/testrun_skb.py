"""``BPF_PROG_TEST_RUN`` for ``__sk_buff`` programs: ``bpf_prog_test_run_skb``.

Socket filters, tc (cls/act), cgroup skb and the lwt types run on a
:class:`pybpf.net.skbuff.SkBuff` -- a native ``struct sk_buff`` -- built as the kernel
builds it: ``data_in`` copied after ``NET_SKB_PAD + NET_IP_ALIGN`` bytes of headroom,
``eth_type_trans`` against the loopback device (or ``__sk_buff.ifindex``) for ``protocol``,
``pkt_type`` and ``skb->dev``, the network header right after the Ethernet header, a
dummy ``sock`` with the packet's addresses in ``skb->sk``. tc programs see the packet from
the MAC header, the others from the network header; after the run the others get 14
zeroed bytes pushed in front, so ``data_out`` always starts with an Ethernet-sized header.

The program's ``__sk_buff`` accesses were rewritten by ``convert_ctx_access``
(:mod:`pybpf.progs.type_skb`), so r1 is the address of the internal skb;
``convert___skb_to_skb``/``convert_skb_to___skb`` move ``ctx_in``/``ctx_out`` in and out.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from pybpf.helpers.csum import csum_fold, csum_partial
from pybpf.net.skbuff import (
    CHECKSUM_COMPLETE,
    NetDeviceStruct,
    SkBuff,
    SockStruct,
    skb_from_ctx,
)
from pybpf.progs.ops import TestRunOpts, TestRunResult
from pybpf.progs.testrun_common import (
    BPF_F_TEST_SKB_CHECKSUM_COMPLETE,
    ETH_HLEN,
    LOOPBACK_IFINDEX,
    NET_IP_ALIGN,
    NET_SKB_PAD,
    PAGE_SIZE,
    SKB_SHARED_INFO_SIZE,
    TestRunError,
    ctx_init,
    current_cpu,
    dev_get_by_index,
    run_repeat,
)
from pybpf.uapi import sk_buff

SKB_SIZE = 192  # sizeof(struct __sk_buff)
SOCKET_FILTER, SCHED_CLS, SCHED_ACT, CGROUP_SKB, LWT_IN, LWT_OUT, LWT_XMIT = \
    1, 3, 4, 8, 10, 11, 12
L2_TYPES = frozenset({SCHED_CLS, SCHED_ACT})  # see the packet from the MAC header
DIRECT_PKT_TYPES = frozenset({SCHED_CLS, SCHED_ACT, LWT_IN, LWT_OUT, LWT_XMIT})
SKB_TYPES = (SOCKET_FILTER, SCHED_CLS, SCHED_ACT, CGROUP_SKB, LWT_IN, LWT_OUT, LWT_XMIT)

MAX_DATA = PAGE_SIZE - NET_SKB_PAD - NET_IP_ALIGN - SKB_SHARED_INFO_SIZE
GSO_MAX_SEGS = 65535
GSO_LEGACY_MAX_SIZE = 65536
ETH_P_802_3_MIN, ETH_P_802_3, ETH_P_802_2 = 0x0600, 0x0001, 0x0004
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST = 0, 1, 2, 3

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _off(name: str) -> int:
    return int(getattr(sk_buff, name).offset)


def _end(name: str) -> int:
    field = getattr(sk_buff, name)
    return int(field.offset + field.size)


# convert___skb_to_skb: the __sk_buff fields a caller may set; every other byte must be 0.
CTX_IN_ALLOWED = ("mark", "priority", "ingress_ifindex", "ifindex", "cb", "tstamp",
                  "wire_len", "gso_segs", "gso_size", "hwtstamp")
_ALLOWED_BYTES = frozenset(i for name in CTX_IN_ALLOWED for i in range(_off(name), _end(name)))


def eth_type_trans(frame: bytes, dev_addr: bytes, broadcast: bytes) -> tuple[int, int]:
    """``(protocol as the __sk_buff field reads it, pkt_type)`` for an Ethernet frame."""
    dest = frame[0:6]
    if dest[0] & 1:
        pkt_type = PACKET_BROADCAST if dest == broadcast else PACKET_MULTICAST
    elif dest != dev_addr:
        pkt_type = PACKET_OTHERHOST
    else:
        pkt_type = PACKET_HOST
    proto = int.from_bytes(frame[12:14], "big")
    if proto < ETH_P_802_3_MIN:
        proto = ETH_P_802_3 if frame[14:16] == b"\xff\xff" else ETH_P_802_2
    # skb->protocol is __be16: the field holds the network-order bytes read as a u16
    return int.from_bytes(proto.to_bytes(2, "big"), "little"), pkt_type


def _dev_addrs(dev: Any, ifindex: int) -> tuple[bytes, bytes]:
    """``(dev_addr, broadcast)`` of a device (the loopback has all-zero addresses)."""
    if ifindex == LOOPBACK_IFINDEX:
        return bytes(6), bytes(6)
    addr = getattr(dev, "dev_addr", None) or getattr(dev, "mac", None) or bytes(6)
    return bytes(addr), b"\xff" * 6


SKB_BUF_SIZE = 4 * PAGE_SIZE  # room for helpers to grow the packet (the kernel reallocates)


def _check_ctx_in(ctx: bytearray) -> None:
    if any(b for i, b in enumerate(ctx[:SKB_SIZE]) if b and i not in _ALLOWED_BYTES):
        raise TestRunError(errno.EINVAL, "__sk_buff field not settable by test_run")


def test_run_skb(prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
    """``bpf_prog_test_run_skb``."""
    try:
        return _run(prog, kernel, opts)
    except TestRunError as exc:
        return TestRunResult(errno=exc.errno)


def _u32(ctx: bytearray, name: str) -> int:
    return int(_U32.unpack_from(ctx, _off(name))[0])


def _u64(ctx: bytearray, name: str) -> int:
    return int(_U64.unpack_from(ctx, _off(name))[0])


def convert___skb_to_skb(skb: SkBuff, ctx: bytearray | None) -> None:
    """The ``ctx_in`` fields test_run lets a caller set (EINVAL for any other byte)."""
    if ctx is None:
        return
    _check_ctx_in(ctx)
    skb.u("mark", _u32(ctx, "mark"))
    skb.u("priority", _u32(ctx, "priority"))
    skb.u("skb_iif", _u32(ctx, "ingress_ifindex"))
    skb.u("tstamp", _u64(ctx, "tstamp"))
    skb.cb_data = bytes(ctx[_off("cb"):_end("cb")])
    wire_len = _u32(ctx, "wire_len")
    if wire_len == 0:
        skb.pkt_len = skb.len
    else:
        if wire_len < skb.len or wire_len > GSO_LEGACY_MAX_SIZE:
            raise TestRunError(errno.EINVAL, "wire_len out of range")
        skb.pkt_len = wire_len
    gso_segs = _u32(ctx, "gso_segs")
    if gso_segs > GSO_MAX_SEGS:
        raise TestRunError(errno.EINVAL, "gso_segs out of range")
    skb.shinfo_field("gso_segs", gso_segs)
    skb.shinfo_field("gso_size", _u32(ctx, "gso_size"))
    skb.shinfo_field("hwtstamps", _u64(ctx, "hwtstamp"))


def convert_skb_to___skb(skb: SkBuff, ctx: bytearray) -> None:
    """What ``ctx_out`` reports after the run."""
    _U32.pack_into(ctx, _off("mark"), skb.u("mark"))
    _U32.pack_into(ctx, _off("priority"), skb.u("priority"))
    _U32.pack_into(ctx, _off("ingress_ifindex"), skb.u("skb_iif"))
    _U32.pack_into(ctx, _off("ifindex"), skb.dev.ifindex if skb.dev is not None else 0)
    _U64.pack_into(ctx, _off("tstamp"), skb.u("tstamp"))
    ctx[_off("cb"):_end("cb")] = skb.cb_data
    _U32.pack_into(ctx, _off("wire_len"), skb.pkt_len)
    _U32.pack_into(ctx, _off("gso_segs"), skb.shinfo_field("gso_segs"))
    _U64.pack_into(ctx, _off("hwtstamp"), skb.shinfo_field("hwtstamps"))


def _run(prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
    if opts.flags & ~BPF_F_TEST_SKB_CHECKSUM_COMPLETE or opts.cpu or opts.batch_size:
        raise TestRunError(errno.EINVAL)
    size = opts.data_size_in
    if size < ETH_HLEN or size > MAX_DATA:
        raise TestRunError(errno.EINVAL)
    data = opts.data_in  # EFAULT here, as bpf_test_init's copy_from_user
    ctx = ctx_init(opts, SKB_SIZE)
    ptype = int(prog.type)
    is_l2 = ptype in L2_TYPES

    ifindex = LOOPBACK_IFINDEX
    if ctx is not None:
        requested = _U32.unpack_from(ctx, _off("ifindex"))[0]
        if requested > 1:
            ifindex = requested
    dev = dev_get_by_index(kernel, ifindex)
    if dev is None:
        raise TestRunError(errno.ENODEV)

    skb = SkBuff(f"test_run {getattr(prog, 'name_str', 'prog')}", SKB_BUF_SIZE)
    netdev = NetDeviceStruct(ifindex, str(getattr(dev, "name", "lo")))
    sock = SockStruct()
    try:
        skb.attach_dev(netdev)
        skb.attach_sock(sock)
        skb.reset(NET_SKB_PAD + NET_IP_ALIGN)
        skb.put(data)
        # eth_type_trans: MAC header at data, protocol/pkt_type from it, then pulled
        skb.mac_header = skb.data
        protocol, pkt_type = eth_type_trans(data, *_dev_addrs(dev, ifindex))
        skb.set_bounds(skb.data + ETH_HLEN, skb.tail)
        skb.u("mac_len", ETH_HLEN)
        skb.protocol = protocol
        skb.pkt_type = pkt_type
        skb.network_header = skb.data  # skb_reset_network_header
        net = data[ETH_HLEN:]
        if protocol == 0x0008:  # htons(ETH_P_IP)
            if len(net) < 20:
                raise TestRunError(errno.EINVAL, "IPv4 packet shorter than its header")
            sock.set_family(AF_INET)
            sock.set_addrs(net[12:16], net[16:20])
        elif protocol == 0xDD86:  # htons(ETH_P_IPV6)
            if len(net) < 40:
                raise TestRunError(errno.EINVAL, "IPv6 packet shorter than its header")
            sock.set_family(AF_INET6)
            sock.set_addrs(net[8:24], net[24:40])
        if is_l2:
            skb.set_bounds(skb.data - ETH_HLEN, skb.tail)  # __skb_push
        if ptype in DIRECT_PKT_TYPES:
            skb.compute_data_pointers()
        convert___skb_to_skb(skb, ctx)

        if opts.flags & BPF_F_TEST_SKB_CHECKSUM_COMPLETE:
            skb.u("csum", csum_partial(_net_bytes(skb)))
            skb.ip_summed = CHECKSUM_COMPLETE

        retval, duration = run_repeat(prog, kernel, skb.addr, opts.repeat, cpu=current_cpu(),
                                      data={"skb": skb})

        out = skb.packet()
        if not is_l2:
            out = bytes(ETH_HLEN) + out
        if opts.flags & BPF_F_TEST_SKB_CHECKSUM_COMPLETE \
                and csum_fold(csum_partial(_net_bytes(skb))) != csum_fold(skb.u("csum")):
            raise TestRunError(errno.EBADMSG, "packet changed without a checksum update")

        ctx_out = None
        if ctx is not None:
            convert_skb_to___skb(skb, ctx)
            ctx_out = bytes(ctx)
        return TestRunResult(retval=retval, data_out=out, ctx_out=ctx_out, duration=duration)
    finally:
        skb.close()
        netdev.close()
        sock.close()


def _net_bytes(skb: SkBuff) -> bytes:
    """From the network header to the tail (``skb_checksum`` from the network offset)."""
    start = max(skb.network_header, skb.data)
    lo, hi = start - skb.head, skb.tail - skb.head
    return bytes(skb.frame.mv[lo:hi]) if 0 <= lo <= hi <= skb.frame.size else b""


SKF_NET_OFF = -0x100000  # classic BPF: offsets relative to the network header
SKF_LL_OFF = -0x200000  # classic BPF: offsets relative to the link-layer (MAC) header


def skb_ld_abs(ctx: Any, skb_addr: int, off: int, size: int) -> int | None:
    """``LD_ABS``/``LD_IND`` on the running skb (``bpf_skb_load_helper_*``): the bytes at
    ``off`` in network order, or None (the program ends returning 0) when they are not in
    the packet. For the program types' ``ld_abs`` hook.

    The offset is a signed 32-bit value: non-negative ones count from ``skb->data``;
    classic BPF's negative ones count from the network header (``SKF_NET_OFF + k``) or
    the MAC header (``SKF_LL_OFF + k``), which may lie before ``skb->data``, as long as
    the bytes stay between ``skb->head`` and the tail (``bpf_internal_load_pointer_neg_helper``).
    """
    skb = skb_from_ctx(ctx)
    if skb is None:
        return None
    k = off & 0xFFFFFFFF
    k = k - (1 << 32) if k >> 31 else k
    data, end = skb.bounds()
    if k >= 0:
        ptr, low = data + k, data
    elif k >= SKF_NET_OFF:
        ptr, low = skb.network_header + k - SKF_NET_OFF, skb.head
    elif k >= SKF_LL_OFF:
        ptr, low = skb.mac_header + k - SKF_LL_OFF, skb.head
    else:
        return None
    if ptr < low or ptr + size > end:
        return None
    return int.from_bytes(ctx.mem.read(ptr, size), "big")
