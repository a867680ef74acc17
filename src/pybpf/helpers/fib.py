"""``bpf_fib_lookup`` over the host's routing table (:mod:`pybpf.net.routes`).

The program passes a ``struct bpf_fib_lookup`` (:class:`FibParams`): family, addresses,
ingress/egress ifindex, ``tot_len`` for the MTU check, ``tbid`` for a direct lookup in a
given table. The helper follows ``bpf_ipv4_fib_lookup``/``bpf_ipv6_fib_lookup`` and the
skb/xdp wrappers of ``net/core/filter.c``: checks (``-EINVAL`` for a short struct or an
unknown flag, ``-EAFNOSUPPORT``, ``-ENODEV``), forwarding enabled on the ingress device
(``BPF_FIB_LKUP_RET_FWD_DISABLED``), the FIB lookup and its route type (blackhole,
unreachable, prohibit, not forwarded), the MTU check (``FRAG_NEEDED`` with
``mtu_result``), then the outputs written back into the struct: ``ifindex``,
``rt_metric``, the gateway as ``ipv4_dst``/``ipv6_dst``, the source address
(``BPF_FIB_LOOKUP_SRC``), and the neighbour's MAC and the device's (unless
``BPF_FIB_LOOKUP_SKIP_NEIGH``; no usable neighbour: ``NO_NEIGH``).

Mock it from Python: ``kernel.routes.mock = fn`` with ``fn(params: FibParams, flags, ctx)
-> rc`` (modify ``params`` in place; it is written back), or replace the helper entirely
with ``kernel.helpers.override(BPF_FUNC_fib_lookup, impl)``.
"""

from __future__ import annotations

import errno
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pybpf.net.routes import LOOPBACK_IFINDEX, RT_TABLE_MAIN, RouteTable, route_table
from pybpf.runtime.context import RunContext

M64 = (1 << 64) - 1
AF_INET, AF_INET6 = 2, 10
BPF_FUNC_FIB_LOOKUP = 69

BPF_FIB_LOOKUP_DIRECT = 1 << 0
BPF_FIB_LOOKUP_OUTPUT = 1 << 1
BPF_FIB_LOOKUP_SKIP_NEIGH = 1 << 2
BPF_FIB_LOOKUP_TBID = 1 << 3
BPF_FIB_LOOKUP_SRC = 1 << 4
BPF_FIB_LOOKUP_MARK = 1 << 5
BPF_FIB_LOOKUP_MASK = 0x3F

(BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LKUP_RET_BLACKHOLE, BPF_FIB_LKUP_RET_UNREACHABLE,
 BPF_FIB_LKUP_RET_PROHIBIT, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_FWD_DISABLED,
 BPF_FIB_LKUP_RET_UNSUPP_LWT, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_FRAG_NEEDED,
 BPF_FIB_LKUP_RET_NO_SRC_ADDR) = range(10)

FIB_LOOKUP_SIZE = 64
VLAN_HLEN = 4
_LAYOUT = struct.Struct("<BBHHHII16s16sI6s6s")  # see FibParams
assert _LAYOUT.size == FIB_LOOKUP_SIZE


@dataclass
class FibParams:
    """``struct bpf_fib_lookup``, decoded; the unions are exposed by every name.

    Byte order: ``sport``/``dport`` stay network order as in the struct (ints of the raw
    ``__be16``), addresses are 16-byte fields (IPv4 in the first 4 bytes).
    """

    family: int = 0
    l4_protocol: int = 0
    sport: int = 0
    dport: int = 0
    tot_len: int = 0  # union mtu_result
    ifindex: int = 0
    tos: int = 0  # union flowinfo, rt_metric (u32)
    src: bytes = bytes(16)  # union ipv4_src / ipv6_src
    dst: bytes = bytes(16)  # union ipv4_dst / ipv6_dst
    tbid: int = 0  # union h_vlan_proto (lo 16 bits), h_vlan_TCI (hi)
    smac: bytes = bytes(6)  # first 4 bytes: union mark
    dmac: bytes = bytes(6)

    @classmethod
    def decode(cls, raw: bytes) -> FibParams:
        return cls(*_LAYOUT.unpack(raw[:FIB_LOOKUP_SIZE]))

    def encode(self) -> bytes:
        return _LAYOUT.pack(self.family, self.l4_protocol, self.sport, self.dport,
                            self.tot_len & 0xFFFF, self.ifindex & 0xFFFFFFFF,
                            self.tos & 0xFFFFFFFF, self.src, self.dst,
                            self.tbid & 0xFFFFFFFF, self.smac, self.dmac)

    # named views of the unions
    @property
    def mtu_result(self) -> int:
        return self.tot_len

    @mtu_result.setter
    def mtu_result(self, v: int) -> None:
        self.tot_len = v & 0xFFFF

    @property
    def rt_metric(self) -> int:
        return self.tos

    @rt_metric.setter
    def rt_metric(self, v: int) -> None:
        self.tos = v & 0xFFFFFFFF

    @property
    def mark(self) -> int:
        return int.from_bytes(self.smac[:4], "little")

    def addr(self, which: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        raw = self.src if which == "src" else self.dst
        if self.family == AF_INET:
            return ipaddress.IPv4Address(raw[:4])
        return ipaddress.IPv6Address(raw)

    def set_addr(self, which: str, a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        raw = a.packed if a.version == 6 else a.packed + (self.src if which == "src"
                                                          else self.dst)[4:]
        if which == "src":
            self.src = raw
        else:
            self.dst = raw


def _link_local_or_mc(a: ipaddress.IPv6Address) -> bool:
    """``rt6_need_strict``: multicast, link-local or loopback addresses are never forwarded."""
    return a.is_multicast or a.is_link_local or a.is_loopback


def fib_lookup_params(table: RouteTable, p: FibParams, flags: int, check_mtu: bool) -> int:
    """``bpf_ipv4_fib_lookup``/``bpf_ipv6_fib_lookup`` on ``p`` (modified in place)."""
    v6 = p.family == AF_INET6
    dst, src = p.addr("dst"), p.addr("src")
    if v6 and (_link_local_or_mc(dst) or _link_local_or_mc(src)):  # type: ignore[arg-type]
        return BPF_FIB_LKUP_RET_NOT_FWDED
    link = table.links.get(p.ifindex)
    if link is None:
        return -errno.ENODEV
    forwards = link.forwarding6 if v6 and link.forwarding6 is not None else link.forwarding
    if not forwards:
        return BPF_FIB_LKUP_RET_FWD_DISABLED
    oif = p.ifindex if flags & BPF_FIB_LOOKUP_OUTPUT else 0
    if flags & BPF_FIB_LOOKUP_DIRECT:
        tbid = RT_TABLE_MAIN
        if flags & BPF_FIB_LOOKUP_TBID:
            tbid = p.tbid or RT_TABLE_MAIN  # fib_get_table: id 0 is the main table
            p.tbid = 0  # the union is the vlan output
        if not table.has_table(tbid):
            return BPF_FIB_LKUP_RET_NOT_FWDED
        res = table.lookup(dst, table=tbid, oif=oif)
    else:
        res = table.lookup(dst, oif=oif)
    if res is None:
        return BPF_FIB_LKUP_RET_NOT_FWDED
    rtype = {"blackhole": BPF_FIB_LKUP_RET_BLACKHOLE,
             "unreachable": BPF_FIB_LKUP_RET_UNREACHABLE,
             "prohibit": BPF_FIB_LKUP_RET_PROHIBIT}.get(res.type)
    if rtype is not None:
        return rtype
    if res.type != "unicast":
        return BPF_FIB_LKUP_RET_NOT_FWDED
    out = table.links.get(res.ifindex)
    if out is None:
        return BPF_FIB_LKUP_RET_NOT_FWDED
    mtu = 0
    if check_mtu:
        mtu = table.path_mtu(res)
        if p.tot_len > mtu:
            p.mtu_result = mtu
            return BPF_FIB_LKUP_RET_FRAG_NEEDED
    p.rt_metric = res.route.metric
    p.ifindex = res.ifindex
    if flags & BPF_FIB_LOOKUP_SRC:
        s = table.prefsrc(res, dst)
        if s is None and v6:
            return BPF_FIB_LKUP_RET_NO_SRC_ADDR
        p.set_addr("src", s if s is not None else ipaddress.IPv4Address(0))
    if res.route.gw is not None:
        p.set_addr("dst", res.route.gw)
    if not flags & BPF_FIB_LOOKUP_SKIP_NEIGH:
        from pybpf.net.routes import NUD_VALID

        neigh = table.neighbour(res.ifindex, p.addr("dst"))
        if neigh is None or neigh.state not in NUD_VALID:
            return BPF_FIB_LKUP_RET_NO_NEIGH
        p.dmac, p.smac = neigh.mac, out.mac
    p.tbid = 0  # h_vlan_proto = h_vlan_TCI = 0
    if mtu:
        p.mtu_result = mtu
    return BPF_FIB_LKUP_RET_SUCCESS


def _pkt_len(ctx: RunContext) -> int:
    skb = ctx.data.get("skb")
    for attr in ("len", "length"):
        v = getattr(skb, attr, None)
        if isinstance(v, int):
            return v
    payload = getattr(skb, "payload", None) or getattr(skb, "data", None)
    return len(payload) if isinstance(payload, (bytes, bytearray, memoryview)) else 0


def fib_lookup(ctx: RunContext, _ctx: int, params: int, plen: int, flags: int, *_: int) -> int:
    """``bpf_skb_fib_lookup`` / ``bpf_xdp_fib_lookup``."""
    if plen & 0x80000000 or plen < FIB_LOOKUP_SIZE:
        return -errno.EINVAL & M64
    if flags & ~BPF_FIB_LOOKUP_MASK & 0xFFFFFFFF:
        return -errno.EINVAL & M64
    p = FibParams.decode(ctx.mem.read(params, FIB_LOOKUP_SIZE))
    table = route_table(ctx.kernel) if ctx.kernel is not None else None
    if table is None:
        from pybpf.kernel import default_kernel

        table = route_table(default_kernel())
    xdp = "xdp" in ctx.data
    if table.mock is not None:
        rc = int(table.mock(p, flags & 0xFFFFFFFF, ctx))
    elif p.family not in (AF_INET, AF_INET6):
        return -errno.EAFNOSUPPORT & M64
    else:
        check_mtu = xdp or bool(p.tot_len)
        rc = fib_lookup_params(table, p, flags & 0xFFFFFFFF, check_mtu)
        if rc == BPF_FIB_LKUP_RET_SUCCESS and not check_mtu:
            # the skb itself against the output device's MTU (is_skb_forwardable)
            dev = table.links.get(p.ifindex)
            if dev is not None:
                limit = dev.mtu + dev.hard_header_len + VLAN_HLEN
                if not dev.up or _pkt_len(ctx) > limit:
                    rc = BPF_FIB_LKUP_RET_FRAG_NEEDED
                p.mtu_result = dev.mtu
    ctx.mem.write(params, p.encode())
    return rc & M64


IMPLS: dict[int, Callable[..., int]] = {BPF_FUNC_FIB_LOOKUP: fib_lookup}

__all__ = ["IMPLS", "LOOPBACK_IFINDEX", "FibParams", "fib_lookup", "fib_lookup_params"]
