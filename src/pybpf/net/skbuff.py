"""pybpf's socket buffer: a native ``struct sk_buff`` laid out as Linux 6.18 lays it out.

Why: ``__sk_buff`` is only the ABI a program is written against. After verification the
program type's ``convert_ctx_access`` rewrites every ``__sk_buff`` access into loads and
stores of the kernel's ``struct sk_buff`` (``skb->len`` at offset 112, ``data_end`` in
``skb->cb``, ``ifindex`` through ``skb->dev``…), so ``r1`` must point at a real
``sk_buff``: this one. The packet buffer, the ``skb_shared_info`` after it, the
``net_device`` and the ``sock`` it points to are registered native regions too, so the
pointers the rewritten program follows are real addresses the checked interpreter can
verify (no 32-bit packet addresses needed any more).

One definition serves ``BPF_PROG_TEST_RUN`` (:mod:`pybpf.progs.testrun_skb`), the virtual
devices (:mod:`pybpf.net.ctx`) and the skb helpers, which use the Python accessors below.

Encodings follow 64-bit Linux (``NET_SKBUFF_DATA_USES_OFFSET``): ``head`` and ``data`` are
pointers, ``tail``/``end``/``mac_header``/``network_header``/``transport_header`` are
offsets from ``head``; ``skb_shinfo(skb)`` is ``head + end``.
"""

from __future__ import annotations

import struct
from typing import Any

from pybpf.runtime.memory import REGISTRY, MemoryRegistry, Region
from pybpf.uapi.kernel_structs import KSTRUCTS

SK_BUFF = KSTRUCTS["sk_buff"]
SHINFO = KSTRUCTS["skb_shared_info"]
QDISC_CB = KSTRUCTS["qdisc_skb_cb"]
DATA_END_CB = KSTRUCTS["bpf_skb_data_end"]
NET_DEVICE = KSTRUCTS["net_device"]
SOCK = KSTRUCTS["sock"]

SKB_SHARED_INFO_SIZE = 320  # SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
CB = SK_BUFF.off("cb")
#: offsets inside struct sk_buff of what lives in skb->cb for BPF (qdisc_skb_cb + data_end)
CB_PKT_LEN = CB + QDISC_CB.off("pkt_len")
CB_TC_CLASSID = CB + QDISC_CB.off("tc_classid")
CB_DATA = CB + QDISC_CB.off("data")
CB_DATA_META = CB + DATA_END_CB.off("data_meta")
CB_DATA_END = CB + DATA_END_CB.off("data_end")
QDISC_CB_PRIV_LEN = 20

# bit fields: (byte offset, mask) as the kernel's convert_ctx_access reads them
PKT_TYPE_OFFSET = SK_BUFF.off("__pkt_type_offset")
PKT_TYPE_MAX = 7
CLONED_OFFSET = SK_BUFF.off("__cloned_offset")
CLONED_MASK = 1
MONO_TC_OFFSET = SK_BUFF.off("__mono_tc_offset")
TSTAMP_TYPE_MASK = 3
TC_AT_INGRESS_MASK = 1 << 2
HASH_BITS_OFFSET = SK_BUFF.members["l4_hash"].offset
L4_HASH_BIT = 1 << (SK_BUFF.members["l4_hash"].bit_offset - 8 * HASH_BITS_OFFSET)
SW_HASH_BIT = 1 << (SK_BUFF.members["sw_hash"].bit_offset - 8 * HASH_BITS_OFFSET)
IP_SUMMED_SHIFT = SK_BUFF.members["ip_summed"].bit_offset - 8 * PKT_TYPE_OFFSET
CHECKSUM_NONE, CHECKSUM_UNNECESSARY, CHECKSUM_COMPLETE, CHECKSUM_PARTIAL = 0, 1, 2, 3

_FMT = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


def _put(mv: memoryview, off: int, size: int, value: int) -> None:
    struct.pack_into(_FMT[size], mv, off, value & ((1 << (8 * size)) - 1))


def _get(mv: memoryview, off: int, size: int) -> int:
    return int(struct.unpack_from(_FMT[size], mv, off)[0])


class NetDeviceStruct:
    """A native ``struct net_device`` (only ``ifindex`` and ``name`` are filled): what
    ``skb->dev`` points to, so ``__sk_buff.ifindex`` reads ``skb->dev->ifindex``."""

    def __init__(self, ifindex: int, name: str = "", *, mem: MemoryRegistry = REGISTRY) -> None:
        self.mem = mem
        self.region: Region = mem.alloc(NET_DEVICE.size, f"net_device {name or ifindex}")
        self.ifindex = ifindex
        raw = name.encode()[:15]
        off = NET_DEVICE.off("name")
        self.region.mv[off:off + len(raw)] = raw

    @property
    def addr(self) -> int:
        return self.region.start

    @property
    def ifindex(self) -> int:
        return _get(self.region.mv, NET_DEVICE.off("ifindex"), 4)

    @ifindex.setter
    def ifindex(self, value: int) -> None:
        _put(self.region.mv, NET_DEVICE.off("ifindex"), 4, value)

    def close(self) -> None:
        self.mem.remove(self.region)


class SockStruct:
    """A native ``struct sock`` with the ``sock_common`` addressing fields, like the dummy
    socket ``bpf_prog_test_run_skb`` attaches to its skb (``skb->sk``)."""

    def __init__(self, *, mem: MemoryRegistry = REGISTRY) -> None:
        self.mem = mem
        self.region: Region = mem.alloc(SOCK.size, "sock")

    @property
    def addr(self) -> int:
        return self.region.start

    def set_family(self, family: int) -> None:
        _put(self.region.mv, SOCK.off("__sk_common.skc_family"), 2, family)

    def set_addrs(self, local: bytes, remote: bytes) -> None:
        """IPv4 (4 bytes) or IPv6 (16 bytes) local/remote addresses, network order."""
        if len(local) == 4:
            lo, ro = SOCK.off("__sk_common.skc_rcv_saddr"), SOCK.off("__sk_common.skc_daddr")
        else:
            lo, ro = (SOCK.off("__sk_common.skc_v6_rcv_saddr"),
                      SOCK.off("__sk_common.skc_v6_daddr"))
        self.region.mv[lo:lo + len(local)] = local
        self.region.mv[ro:ro + len(remote)] = remote

    def zero(self) -> None:
        self.region.zero()

    def close(self) -> None:
        self.mem.remove(self.region)


class TunnelInfo:
    """``struct ip_tunnel_info`` of a metadata dst: what a tunnel device would use to
    encapsulate (``mode`` IPv6 or not, key id, tos/ttl, flag bits, addresses, label).
    Addresses are network-order bytes; ``src``/``dst`` as seen by the encapsulation."""

    __slots__ = ("dst", "flag_bits", "ipv6", "label", "src", "tos", "ttl", "tun_id")

    def __init__(self, *, ipv6: bool, tun_id: int, tos: int, ttl: int, flag_bits: set[int],
                 src: bytes, dst: bytes, label: int = 0) -> None:
        self.ipv6, self.tun_id, self.tos, self.ttl = ipv6, tun_id, tos, ttl
        self.flag_bits, self.src, self.dst, self.label = flag_bits, src, dst, label


class SkBuff:
    """A ``struct sk_buff`` in native memory over a linear packet buffer.

    ``frame`` is the whole kmalloc'd buffer: headroom, packet, tailroom, then
    ``skb_shared_info`` (``end`` points at it). ``addr`` is what a program gets in r1.
    """

    def __init__(self, name: str, buf_size: int, *, mem: MemoryRegistry = REGISTRY) -> None:
        self.mem = mem
        self.name = name
        self.region: Region = mem.alloc(SK_BUFF.size, f"{name} sk_buff")
        self.frame: Region = mem.alloc(buf_size + SKB_SHARED_INFO_SIZE, f"{name} frame")
        self.dev: NetDeviceStruct | None = None
        self.sock: SockStruct | None = None
        #: ``skb_tunnel_info(skb)``: the metadata dst ``bpf_skb_set_tunnel_key`` attached
        #: (a :class:`TunnelInfo`), None when the skb carries none
        self.tunnel_info: TunnelInfo | None = None
        self.reset(0)

    # -- layout -------------------------------------------------------------------------
    @property
    def addr(self) -> int:
        return self.region.start

    @property
    def head(self) -> int:
        """``skb->head``: start of the buffer."""
        return self.frame.start

    @property
    def end_off(self) -> int:
        return self.frame.size - SKB_SHARED_INFO_SIZE

    @property
    def shinfo(self) -> int:
        """``skb_shinfo(skb)``'s address."""
        return self.frame.start + self.end_off

    def u(self, name: str, value: int | None = None) -> int:
        """Read (or write, with ``value``) the plain member ``name`` of struct sk_buff."""
        m = SK_BUFF.members[name]
        if value is not None:
            _put(self.region.mv, m.offset, m.size, value)
            return value
        return _get(self.region.mv, m.offset, m.size)

    def raw(self, off: int, size: int, value: int | None = None) -> int:
        if value is not None:
            _put(self.region.mv, off, size, value)
            return value
        return _get(self.region.mv, off, size)

    def _shinfo_field(self, name: str, value: int | None = None) -> int:
        m = SHINFO.members[name]
        off = self.end_off + m.offset
        if value is not None:
            _put(self.frame.mv, off, m.size, value)
            return value
        return _get(self.frame.mv, off, m.size)

    def reset(self, headroom: int) -> None:
        """A fresh, empty skb with ``headroom`` reserved (``build_skb`` + ``skb_reserve``)."""
        self.region.zero()
        self.tunnel_info = None
        self.u("head", self.frame.start)
        self.u("end", self.end_off)
        self.frame.mv[self.end_off:] = bytes(SKB_SHARED_INFO_SIZE)
        self.u("users", 1)
        self.u("truesize", self.frame.size)
        self.u("data", self.frame.start + headroom)
        self.u("tail", headroom)
        self.u("mac_header", 0xFFFF)  # ~0U: not set
        self.u("transport_header", 0xFFFF)
        self.u("network_header", 0)
        if self.dev is not None:
            self.u("dev", self.dev.addr)
        if self.sock is not None:
            self.u("sk", self.sock.addr)

    def put(self, data: bytes) -> None:
        """``__skb_put`` + copy: append ``data`` at the tail."""
        tail = self.u("tail")
        if tail + len(data) > self.end_off:
            raise ValueError(f"packet of {len(data)} bytes exceeds the skb's tailroom")
        self.frame.mv[tail:tail + len(data)] = data
        self.u("tail", tail + len(data))
        self.u("len", self.u("len") + len(data))

    # -- data pointers -------------------------------------------------------------------
    @property
    def data(self) -> int:
        return self.u("data")

    @property
    def len(self) -> int:
        return self.u("len")

    @property
    def tail(self) -> int:
        """Address of the tail (``skb_tail_pointer``)."""
        return self.frame.start + self.u("tail")

    def bounds(self) -> tuple[int, int]:
        """``(skb->data, skb->data + skb->len)``: the packet the program sees."""
        data = self.data
        return data, data + self.len

    def set_bounds(self, start: int, end: int) -> None:
        """Move ``data`` and the tail (a helper pushed, pulled or trimmed the packet) and
        recompute the direct-access pointers if the type has them."""
        self.u("data", start)
        self.u("len", end - start)
        self.u("tail", end - self.frame.start)
        if self.direct_access:
            self.compute_data_pointers()

    direct_access = False

    def compute_data_pointers(self) -> None:
        """``bpf_compute_data_pointers``: ``data_meta``/``data_end`` in ``skb->cb``."""
        self.direct_access = True
        data = self.data
        self.raw(CB_DATA_META, 8, data)  # no metadata on pybpf's skbs
        self.raw(CB_DATA_END, 8, data + self.len - self.u("data_len"))

    def packet(self) -> bytes:
        start, end = self.bounds()
        lo, hi = start - self.frame.start, end - self.frame.start
        if not 0 <= lo <= hi <= self.frame.size:
            return b""
        return bytes(self.frame.mv[lo:hi])

    @property
    def payload(self) -> bytes:
        """The current packet bytes (what ``bpf_skb_load_bytes`` reads)."""
        return self.packet()

    # -- headers (absolute addresses) ----------------------------------------------------
    @property
    def mac_header(self) -> int:
        return self.frame.start + self.u("mac_header")

    @mac_header.setter
    def mac_header(self, addr: int) -> None:
        self.u("mac_header", addr - self.frame.start)

    @property
    def network_header(self) -> int:
        return self.frame.start + self.u("network_header")

    @network_header.setter
    def network_header(self, addr: int) -> None:
        self.u("network_header", addr - self.frame.start)

    # -- fields the helpers and test_run use ---------------------------------------------
    @property
    def pkt_type(self) -> int:
        return self.raw(PKT_TYPE_OFFSET, 1) & PKT_TYPE_MAX

    @pkt_type.setter
    def pkt_type(self, value: int) -> None:
        b = self.raw(PKT_TYPE_OFFSET, 1)
        self.raw(PKT_TYPE_OFFSET, 1, (b & ~PKT_TYPE_MAX) | (value & PKT_TYPE_MAX))

    @property
    def ip_summed(self) -> int:
        return (self.raw(PKT_TYPE_OFFSET, 1) >> IP_SUMMED_SHIFT) & 3

    @ip_summed.setter
    def ip_summed(self, value: int) -> None:
        b = self.raw(PKT_TYPE_OFFSET, 1) & ~(3 << IP_SUMMED_SHIFT)
        self.raw(PKT_TYPE_OFFSET, 1, b | ((value & 3) << IP_SUMMED_SHIFT))

    @property
    def protocol(self) -> int:
        """``skb->protocol`` as stored (__be16 read as a little-endian u16)."""
        return self.u("protocol")

    @protocol.setter
    def protocol(self, value: int) -> None:
        self.u("protocol", value)

    def set_hash(self, value: int, *, l4: bool = False, sw: bool = False) -> None:
        self.u("hash", value)
        b = self.raw(HASH_BITS_OFFSET, 1) & ~(L4_HASH_BIT | SW_HASH_BIT)
        b |= (L4_HASH_BIT if l4 else 0) | (SW_HASH_BIT if sw else 0)
        self.raw(HASH_BITS_OFFSET, 1, b)

    def clear_hash(self) -> None:
        """``skb_clear_hash``."""
        self.set_hash(0)

    @property
    def hash_valid(self) -> bool:
        """A hash was computed or set (``l4_hash``/``sw_hash``): ``skb_get_hash`` keeps it."""
        return bool(self.raw(HASH_BITS_OFFSET, 1) & (L4_HASH_BIT | SW_HASH_BIT))

    @property
    def vlan_present(self) -> bool:
        return self.u("vlan_all") != 0

    def vlan_set(self, proto: int, tci: int) -> None:
        self.u("vlan_proto", proto)
        self.u("vlan_tci", tci)

    def vlan_clear(self) -> None:
        self.u("vlan_all", 0)

    @property
    def cb_data(self) -> bytes:
        return bytes(self.region.mv[CB_DATA:CB_DATA + QDISC_CB_PRIV_LEN])

    @cb_data.setter
    def cb_data(self, value: bytes) -> None:
        self.region.mv[CB_DATA:CB_DATA + QDISC_CB_PRIV_LEN] = value[:QDISC_CB_PRIV_LEN]

    @property
    def pkt_len(self) -> int:
        """``qdisc_skb_cb(skb)->pkt_len`` (``__sk_buff.wire_len``)."""
        return self.raw(CB_PKT_LEN, 4)

    @pkt_len.setter
    def pkt_len(self, value: int) -> None:
        self.raw(CB_PKT_LEN, 4, value)

    @property
    def tc_classid(self) -> int:
        return self.raw(CB_TC_CLASSID, 2)

    def shinfo_field(self, name: str, value: int | None = None) -> int:
        """``skb_shinfo(skb)->name`` (gso_segs, gso_size, hwtstamps)."""
        return self._shinfo_field(name, value)

    def attach_dev(self, dev: NetDeviceStruct | None) -> None:
        self.dev = dev
        self.u("dev", dev.addr if dev is not None else 0)

    def attach_sock(self, sock: SockStruct | None) -> None:
        self.sock = sock
        self.u("sk", sock.addr if sock is not None else 0)

    # -- reallocation ----------------------------------------------------------------------
    def headroom_len(self) -> int:
        return self.data - self.frame.start

    def tailroom_len(self) -> int:
        return self.end_off - self.u("tail")

    def expand_head(self, nhead: int, ntail: int) -> None:
        """``pskb_expand_head``: a new buffer ``nhead`` bytes more headroom and ``ntail``
        more tailroom; data, headers and ``skb_shared_info`` move with it. Packet
        pointers a program held are stale afterwards, as in the kernel (the helpers that
        get here invalidate them in the verifier)."""
        old = self.frame
        new = self.mem.alloc(old.size + nhead + ntail, f"{self.name} frame")
        old_end = self.end_off
        new.mv[nhead:nhead + old_end] = old.mv[:old_end]
        new_end = new.size - SKB_SHARED_INFO_SIZE
        new.mv[new_end:] = old.mv[old_end:]
        data_off = self.data - old.start
        self.frame = new
        self.mem.remove(old)
        self.u("head", new.start)
        self.u("end", new_end)
        self.u("truesize", new.size)
        self.u("data", new.start + data_off + nhead)
        self.u("tail", self.u("tail") + nhead)
        for name in ("mac_header", "network_header", "transport_header"):
            if self.u(name) != 0xFFFF:
                self.u(name, self.u(name) + nhead)
        if self.direct_access:
            self.compute_data_pointers()

    def cow_head(self, headroom: int) -> None:
        """``skb_cow_head``: at least ``headroom`` bytes before ``data``."""
        delta = headroom - self.headroom_len()
        if delta > 0:
            pad = 64  # NET_SKB_PAD alignment
            self.expand_head((delta + pad - 1) // pad * pad, 0)

    def grow_tail(self, extra: int) -> None:
        """Make ``extra`` bytes of tailroom (``__skb_grow``)."""
        delta = extra - self.tailroom_len()
        if delta > 0:
            self.expand_head(0, delta)

    def close(self) -> None:
        self.mem.remove(self.region)
        self.mem.remove(self.frame)


def skb_from_ctx(ctx: Any) -> SkBuff | None:
    """The running program's skb (helpers: ``RunContext.data["skb"]``)."""
    skb = ctx.data.get("skb")
    return skb if isinstance(skb, SkBuff) else getattr(skb, "skb", None)
