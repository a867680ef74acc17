"""Per-packet program contexts for the device hooks: ``xdp_md`` and ``__sk_buff``.

The kernel's receive path hands XDP programs an ``xdp_buff`` and tc/socket-filter programs
an ``sk_buff``; the verifier has rewritten their ctx accesses to reach those. pybpf's
program types do not rewrite ctx accesses yet (no ``convert_ctx_access``), so a program
reads the *user-visible* struct: these adapters lay out ``struct xdp_md`` /
``struct __sk_buff`` in native memory with ``data``/``data_end`` holding the real 32-bit
addresses of a packet buffer allocated below 4 GiB (:mod:`pybpf.net.lowmem`).

When a program-type module grows its own ctx builder (``ops.hook_ctx(kind, ...)``, the
request in the hooks report), :func:`ctx_for` will prefer it; the device code only talks to
the small :class:`PacketCtx` interface below.
"""

from __future__ import annotations

import struct
from typing import Any

from pybpf.net.lowmem import alloc_low
from pybpf.runtime.memory import REGISTRY, Region

XDP_PACKET_HEADROOM = 256
NET_SKB_PAD = 64  # headroom an skb built by the receive path has before its MAC header
MAX_FRAME = 9216  # jumbo frame; larger packets are refused by the device (rx_length_errors)
TAILROOM = 320  # skb_shared_info, as the kernel reserves it after the data

# struct xdp_md
XDP_DATA, XDP_DATA_END, XDP_DATA_META, XDP_INGRESS_IFINDEX, XDP_RX_QUEUE, XDP_EGRESS_IFINDEX = \
    0, 4, 8, 12, 16, 20
XDP_MD_SIZE = 24

# struct __sk_buff (offsets also in pybpf.progs.type_skb)
SKB_LEN, SKB_PKT_TYPE, SKB_MARK, SKB_QUEUE_MAPPING, SKB_PROTOCOL = 0, 4, 8, 12, 16
SKB_VLAN_PRESENT, SKB_VLAN_TCI, SKB_VLAN_PROTO, SKB_PRIORITY = 20, 24, 28, 32
SKB_INGRESS_IFINDEX, SKB_IFINDEX, SKB_TC_INDEX, SKB_CB, SKB_HASH, SKB_TC_CLASSID = \
    36, 40, 44, 48, 68, 72
SKB_DATA, SKB_DATA_END, SKB_NAPI_ID, SKB_DATA_META, SKB_WIRE_LEN = 76, 80, 84, 140, 160
SKB_SIZE = 192

_U32 = struct.Struct("<I")


class PacketCtx:
    """A packet buffer plus the ctx struct a program receives for it.

    One instance per (device, hook) is reused for every packet: registering memory is the
    expensive part, copying a packet in is cheap.
    """

    kind = ""
    ctx_size = 0
    headroom = 0

    def __init__(self, name: str) -> None:
        self.frame: Region = alloc_low(self.headroom + MAX_FRAME + TAILROOM, f"{name} frame")
        self.ctx: Region = REGISTRY.alloc(self.ctx_size, f"{name} {self.kind} ctx")
        self.data_start = self.frame.start + self.headroom

    @property
    def addr(self) -> int:
        """What the program receives in r1."""
        return self.ctx.start

    def _u32(self, off: int) -> int:
        return int(_U32.unpack_from(self.ctx.mv, off)[0])

    def _set_u32(self, off: int, value: int) -> None:
        _U32.pack_into(self.ctx.mv, off, value & 0xFFFFFFFF)

    def _place(self, data: bytes) -> None:
        if len(data) > MAX_FRAME:
            raise ValueError(f"packet of {len(data)} bytes exceeds the {MAX_FRAME}-byte frame")
        off = self.headroom
        self.frame.mv[off:off + len(data)] = data

    # Views of the packet as the program left it (helpers may move data/data_end).
    def bounds(self) -> tuple[int, int]:
        raise NotImplementedError

    def packet(self) -> bytes:
        start, end = self.bounds()
        lo = start - self.frame.start
        hi = end - self.frame.start
        if not 0 <= lo <= hi <= self.frame.size:
            return b""
        return bytes(self.frame.mv[lo:hi])

    @property
    def payload(self) -> bytes:
        """The current packet bytes (what ``bpf_skb_load_bytes`` reads)."""
        return self.packet()

    def close(self) -> None:
        REGISTRY.remove(self.frame)
        REGISTRY.remove(self.ctx)


class XdpCtx(PacketCtx):
    """``struct xdp_md`` over a frame with ``XDP_PACKET_HEADROOM`` bytes of headroom."""

    kind = "xdp"
    ctx_size = XDP_MD_SIZE
    headroom = XDP_PACKET_HEADROOM

    def load(self, data: bytes, *, ifindex: int, rx_queue: int = 0) -> None:
        self._place(data)
        self.ctx.zero()
        start = self.data_start
        self._set_u32(XDP_DATA, start)
        self._set_u32(XDP_DATA_END, start + len(data))
        self._set_u32(XDP_DATA_META, start)
        self._set_u32(XDP_INGRESS_IFINDEX, ifindex)
        self._set_u32(XDP_RX_QUEUE, rx_queue)

    def bounds(self) -> tuple[int, int]:
        return self._u32(XDP_DATA), self._u32(XDP_DATA_END)


class SkbCtx(PacketCtx):
    """``struct __sk_buff`` over a frame with ``NET_SKB_PAD`` bytes of headroom.

    ``mark``, ``priority``, ``tc_index``, ``cb`` and the hash a program writes stay with the
    packet while it travels tc ingress → socket filters, as on the skb.
    """

    kind = "skb"
    ctx_size = SKB_SIZE
    headroom = NET_SKB_PAD

    def load(self, data: bytes, *, ifindex: int, ingress_ifindex: int = 0, pkt_type: int = 0,
             meta: dict[int, int] | None = None) -> None:
        self._place(data)
        self.ctx.zero()
        start = self.data_start
        proto = int.from_bytes(data[12:14], "little") if len(data) >= 14 else 0
        self._set_u32(SKB_LEN, len(data))
        self._set_u32(SKB_PKT_TYPE, pkt_type)
        self._set_u32(SKB_PROTOCOL, proto)
        self._set_u32(SKB_INGRESS_IFINDEX, ingress_ifindex)
        self._set_u32(SKB_IFINDEX, ifindex)
        self._set_u32(SKB_DATA, start)
        self._set_u32(SKB_DATA_END, start + len(data))
        self._set_u32(SKB_DATA_META, start)
        self._set_u32(SKB_WIRE_LEN, len(data))
        for off, value in (meta or {}).items():
            self._set_u32(off, value)

    def bounds(self) -> tuple[int, int]:
        return self._u32(SKB_DATA), self._u32(SKB_DATA_END)

    def meta(self) -> dict[int, int]:
        """The fields a program may have written (carried to the next hook)."""
        offs = (SKB_MARK, SKB_PRIORITY, SKB_TC_INDEX, SKB_HASH, SKB_TC_CLASSID,
                *range(SKB_CB, SKB_CB + 20, 4))
        return {off: self._u32(off) for off in offs}


def ctx_for(kind: str, name: str, prog_type: int | None = None) -> Any:
    """The ctx adapter for ``kind`` (``"xdp"`` or ``"skb"``): the program type's own
    builder if it publishes one (``hook_ctx``), else ours."""
    if prog_type is not None:
        from pybpf.progs.ops import find_prog_type

        ops = find_prog_type(prog_type)
        builder = getattr(ops, "hook_ctx", None)
        if callable(builder):
            return builder(kind, name)
    return XdpCtx(name) if kind == "xdp" else SkbCtx(name)
