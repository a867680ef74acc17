"""Per-packet program contexts for the device hooks.

The kernel's receive path hands XDP programs an ``xdp_buff`` and tc/socket-filter programs
an ``sk_buff``; the verifier has rewritten their ctx accesses to reach those
(``convert_ctx_access``). pybpf does the same: tc and socket filters run on
:class:`SkbCtx`, a :class:`pybpf.net.skbuff.SkBuff` (native ``struct sk_buff``); XDP runs
on :class:`pybpf.net.xdp_buff.XdpBuff`.

A program type may publish its own builder (``ops.hook_ctx(kind, name)``);
:func:`ctx_for` prefers it.
"""

from __future__ import annotations

from typing import Any

from pybpf.net.skbuff import (
    CB_TC_CLASSID,
    MONO_TC_OFFSET,
    QDISC_CB_PRIV_LEN,
    TC_AT_INGRESS_MASK,
    NetDeviceStruct,
    SkBuff,
)

NET_SKB_PAD = 64  # headroom an skb built by the receive path has before its MAC header
MAX_FRAME = 9216  # jumbo frame; larger packets are refused by the device (rx_length_errors)
ETH_HLEN = 14


class SkbCtx(SkBuff):
    """The skb a device hook hands tc and socket-filter programs: a native
    ``struct sk_buff`` (:class:`pybpf.net.skbuff.SkBuff`) over a frame with
    ``NET_SKB_PAD`` bytes of headroom, ``skb->dev`` pointing at the device's
    ``net_device``.

    ``mark``, ``priority``, ``tc_index``, ``cb`` and the hash a program writes stay with the
    packet while it travels tc ingress -> socket filters, as on the skb.
    """

    kind = "skb"
    headroom = NET_SKB_PAD

    def __init__(self, name: str) -> None:
        super().__init__(name, NET_SKB_PAD + MAX_FRAME)
        self.netdev = NetDeviceStruct(0, name.split()[0] if name else "")
        self.attach_dev(self.netdev)

    @property
    def data_start(self) -> int:
        return self.frame.start + NET_SKB_PAD

    def load(self, data: bytes, *, ifindex: int, ingress_ifindex: int = 0, pkt_type: int = 0,
             meta: dict[str, int] | None = None, at_ingress: bool = False) -> None:
        """Put ``data`` on the skb as the receive/transmit path hands it to a hook;
        ``at_ingress`` sets ``skb->tc_at_ingress`` (tc ingress), which changes how a
        program's ``__sk_buff.tstamp`` accesses behave."""
        if len(data) > MAX_FRAME:
            raise ValueError(f"packet of {len(data)} bytes exceeds the {MAX_FRAME}-byte frame")
        self.netdev.ifindex = ifindex
        self.reset(NET_SKB_PAD)
        self.put(data)
        self.mac_header = self.data
        self.network_header = self.data + ETH_HLEN
        self.u("mac_len", ETH_HLEN)
        # skb->protocol is __be16: the network-order bytes read as a little-endian u16
        self.protocol = int.from_bytes(data[12:14], "little") if len(data) >= ETH_HLEN else 0
        self.pkt_type = pkt_type
        self.u("skb_iif", ingress_ifindex)
        self.pkt_len = len(data)
        if at_ingress:
            self.raw(MONO_TC_OFFSET, 1, self.raw(MONO_TC_OFFSET, 1) | TC_AT_INGRESS_MASK)
        self.compute_data_pointers()
        for name, value in (meta or {}).items():
            self._set_meta(name, value)

    _META = ("mark", "priority", "tc_index", "hash")

    def _set_meta(self, name: str, value: int) -> None:
        if name == "cb":
            self.cb_data = value.to_bytes(QDISC_CB_PRIV_LEN, "little")
        elif name == "tc_classid":
            self.raw(CB_TC_CLASSID, 2, value)
        else:
            self.u(name, value)

    def meta(self) -> dict[str, int]:
        """The fields a program may have written (carried to the next hook)."""
        out = {name: self.u(name) for name in self._META}
        out["tc_classid"] = self.tc_classid
        out["cb"] = int.from_bytes(self.cb_data, "little")
        return out

    def close(self) -> None:
        super().close()
        self.netdev.close()


def ctx_for(kind: str, name: str, prog_type: int | None = None) -> Any:
    """The ctx adapter for ``kind`` (``"xdp"`` or ``"skb"``): the program type's own
    builder if it publishes one (``hook_ctx``), else ours."""
    if prog_type is not None:
        from pybpf.progs.ops import find_prog_type

        ops = find_prog_type(prog_type)
        builder = getattr(ops, "hook_ctx", None)
        if callable(builder):
            return builder(kind, name)
    if kind == "xdp":
        from pybpf.net.xdp_buff import XdpBuff

        return XdpBuff(name)
    return SkbCtx(name)


def __getattr__(name: str) -> Any:
    """``XdpCtx``: the XDP ctx is :class:`pybpf.net.xdp_buff.XdpBuff` now (imported on
    first use: that module imports nothing from here, but this one must not import it at
    load time either, to keep the two free of cycles)."""
    if name == "XdpCtx":
        from pybpf.net.xdp_buff import XdpBuff

        return XdpBuff
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
