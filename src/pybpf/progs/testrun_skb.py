"""``BPF_PROG_TEST_RUN`` for ``__sk_buff`` programs: ``bpf_prog_test_run_skb``.

Socket filters, tc (cls/act), cgroup skb and the lwt types run on an skb built as the
kernel builds it: ``data_in`` copied after ``NET_SKB_PAD + NET_IP_ALIGN`` bytes of
headroom, ``eth_type_trans`` against the loopback device (or ``__sk_buff.ifindex``) for
``protocol`` and ``pkt_type``, the network header right after the Ethernet header. tc
programs see the packet from the MAC header, the others from the network header; after
the run the others get 14 zeroed bytes pushed in front, so ``data_out`` always starts
with an Ethernet-sized header.

pybpf does not rewrite ctx accesses yet, so the program reads the user-visible
``struct __sk_buff`` itself: :class:`TestSkb` lays it out in native memory with the
values the kernel's ``convert_ctx_access`` would produce (``data``/``data_end`` are real
addresses below 4 GiB, see :mod:`pybpf.net.lowmem`; ``data_end``/``data_meta`` are 0 for
the types whose test run does not compute them, as in the kernel).
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from pybpf.net.ctx import SKB_SIZE, SkbCtx
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


def _csum(data: bytes) -> int:
    """Ones'-complement sum of 16-bit words (odd tail padded), carries folded, no final
    complement: equal for two buffers exactly when ``csum_fold`` of their
    ``skb_checksum`` is."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"<{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


class TestSkb(SkbCtx):
    """A test-run skb: the frame and ``__sk_buff`` of :class:`pybpf.net.ctx.SkbCtx`, with
    the packet bounds kept here (``head``/``tail``) rather than read from the struct, whose
    ``data_end`` is 0 for types without direct packet access."""

    __test__ = False

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.head = self.tail = self.data_start

    def bounds(self) -> tuple[int, int]:
        return self.head, self.tail

    def put_u32(self, name: str, value: int) -> None:
        _U32.pack_into(self.ctx.mv, _off(name), value & 0xFFFFFFFF)

    def put_u64(self, name: str, value: int) -> None:
        _U64.pack_into(self.ctx.mv, _off(name), value & 0xFFFFFFFFFFFFFFFF)

    def get_u32(self, name: str) -> int:
        return int(_U32.unpack_from(self.ctx.mv, _off(name))[0])

    def get_u64(self, name: str) -> int:
        return int(_U64.unpack_from(self.ctx.mv, _off(name))[0])

    def field_bytes(self, name: str) -> bytes:
        return bytes(self.ctx.mv[_off(name):_end(name)])


def _check_ctx_in(ctx: bytearray) -> None:
    if any(b for i, b in enumerate(ctx[:SKB_SIZE]) if b and i not in _ALLOWED_BYTES):
        raise TestRunError(errno.EINVAL, "__sk_buff field not settable by test_run")


def test_run_skb(prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
    """``bpf_prog_test_run_skb``."""
    try:
        return _run(prog, kernel, opts)
    except TestRunError as exc:
        return TestRunResult(errno=exc.errno)


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
    protocol, pkt_type = eth_type_trans(data, *_dev_addrs(dev, ifindex))
    net = data[ETH_HLEN:]
    family = AF_UNSPEC
    local_ip = remote_ip = b""
    if protocol == 0x0008:  # htons(ETH_P_IP)
        if len(net) < 20:
            raise TestRunError(errno.EINVAL, "IPv4 packet shorter than its header")
        family, local_ip, remote_ip = AF_INET, net[12:16], net[16:20]
    elif protocol == 0xDD86:  # htons(ETH_P_IPV6)
        if len(net) < 40:
            raise TestRunError(errno.EINVAL, "IPv6 packet shorter than its header")
        family, local_ip, remote_ip = AF_INET6, net[8:24], net[24:40]

    skb = TestSkb(f"test_run {getattr(prog, 'name_str', 'prog')}")
    try:
        frame = skb.frame.mv
        base = skb.data_start
        frame[NET_SKB_PAD:NET_SKB_PAD + size] = data
        skb.head = base if is_l2 else base + ETH_HLEN
        skb.tail = base + size
        length = skb.tail - skb.head

        # convert___skb_to_skb (without a ctx, nothing is set: qdisc_skb_cb.pkt_len is 0)
        wire_len = length if ctx is not None else 0
        gso_segs = gso_size = hwtstamp = tstamp = mark = priority = skb_iif = 0
        cb = bytes(20)
        if ctx is not None:
            _check_ctx_in(ctx)
            mark = _U32.unpack_from(ctx, _off("mark"))[0]
            priority = _U32.unpack_from(ctx, _off("priority"))[0]
            skb_iif = _U32.unpack_from(ctx, _off("ingress_ifindex"))[0]
            tstamp = _U64.unpack_from(ctx, _off("tstamp"))[0]
            cb = bytes(ctx[_off("cb"):_end("cb")])
            requested_wire = _U32.unpack_from(ctx, _off("wire_len"))[0]
            if requested_wire:
                if requested_wire < length or requested_wire > GSO_LEGACY_MAX_SIZE:
                    raise TestRunError(errno.EINVAL, "wire_len out of range")
                wire_len = requested_wire
            gso_segs = _U32.unpack_from(ctx, _off("gso_segs"))[0]
            if gso_segs > GSO_MAX_SEGS:
                raise TestRunError(errno.EINVAL, "gso_segs out of range")
            gso_size = _U32.unpack_from(ctx, _off("gso_size"))[0]
            hwtstamp = _U64.unpack_from(ctx, _off("hwtstamp"))[0]

        skb.ctx.zero()
        skb.put_u32("len", length)
        skb.put_u32("pkt_type", pkt_type)
        skb.put_u32("mark", mark)
        skb.put_u32("protocol", protocol)
        skb.put_u32("priority", priority)
        skb.put_u32("ingress_ifindex", skb_iif)
        skb.put_u32("ifindex", ifindex)
        skb.ctx.mv[_off("cb"):_end("cb")] = cb
        skb.put_u32("data", skb.head)
        if ptype in DIRECT_PKT_TYPES:  # bpf_compute_data_pointers
            skb.put_u32("data_end", skb.tail)
            skb.put_u32("data_meta", skb.head)
        skb.put_u32("family", family)
        if family == AF_INET:
            skb.ctx.mv[_off("local_ip4"):_end("local_ip4")] = local_ip
            skb.ctx.mv[_off("remote_ip4"):_end("remote_ip4")] = remote_ip
        elif family == AF_INET6:
            skb.ctx.mv[_off("local_ip6"):_end("local_ip6")] = local_ip
            skb.ctx.mv[_off("remote_ip6"):_end("remote_ip6")] = remote_ip
        skb.put_u64("tstamp", tstamp)
        skb.put_u32("wire_len", wire_len)
        skb.put_u32("gso_segs", gso_segs)
        skb.put_u32("gso_size", gso_size)
        skb.put_u64("hwtstamp", hwtstamp)

        net_start = base + ETH_HLEN - skb.frame.start
        csum_before = 0
        if opts.flags & BPF_F_TEST_SKB_CHECKSUM_COMPLETE:
            csum_before = _csum(bytes(frame[net_start:skb.tail - skb.frame.start]))

        retval, duration = run_repeat(prog, kernel, skb.addr, opts.repeat, cpu=current_cpu(),
                                      data={"skb": skb})

        lo, hi = skb.head - skb.frame.start, skb.tail - skb.frame.start
        out = bytes(frame[lo:hi]) if 0 <= lo <= hi <= skb.frame.size else b""
        if not is_l2:
            out = bytes(ETH_HLEN) + out
        if opts.flags & BPF_F_TEST_SKB_CHECKSUM_COMPLETE \
                and _csum(out[ETH_HLEN:]) != csum_before:
            raise TestRunError(errno.EBADMSG, "packet changed without a checksum update")

        ctx_out = None
        if ctx is not None:  # convert_skb_to___skb
            for name in ("mark", "priority"):
                ctx[_off(name):_end(name)] = skb.field_bytes(name)
            _U32.pack_into(ctx, _off("ingress_ifindex"), skb_iif)
            _U32.pack_into(ctx, _off("ifindex"), ifindex)
            for name in ("tstamp", "cb"):
                ctx[_off(name):_end(name)] = skb.field_bytes(name)
            _U32.pack_into(ctx, _off("wire_len"), wire_len)
            _U32.pack_into(ctx, _off("gso_segs"), gso_segs)
            _U64.pack_into(ctx, _off("hwtstamp"), hwtstamp)
            ctx_out = bytes(ctx)
        return TestRunResult(retval=retval, data_out=out, ctx_out=ctx_out, duration=duration)
    finally:
        skb.close()


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
    pkt = ctx.data.get("skb")
    if pkt is None:
        return None
    k = off & 0xFFFFFFFF
    k = k - (1 << 32) if k >> 31 else k
    mac = pkt.data_start
    if k >= 0:
        ptr, low = pkt.head + k, pkt.head
    elif k >= SKF_NET_OFF:
        ptr, low = mac + ETH_HLEN + k - SKF_NET_OFF, pkt.frame.start
    elif k >= SKF_LL_OFF:
        ptr, low = mac + k - SKF_LL_OFF, pkt.frame.start
    else:
        return None
    if ptr < low or ptr + size > pkt.tail:
        return None
    return int.from_bytes(ctx.mem.read(ptr, size), "big")
