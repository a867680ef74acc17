"""Virtual network devices of a ``Kernel``: the receive and transmit paths BPF hooks into.

``kernel.netdev("veth0", peer="veth1")`` makes a device (and its veth peer); each has an
ifindex in the instance's table (``kernel.netdevs``), which is what ``xdp_md.ingress_ifindex``,
``__sk_buff.ifindex``, ``bpf_redirect(ifindex)`` and the attach commands' ``target_ifindex``
name. The paths are the kernel's:

- receive (``dev.receive(pkt)``, a pcap, or a real interface): XDP (one program, attached
  through a link or the netlink-like :meth:`NetDevice.attach_xdp`) → tcx ingress (ordered
  programs, :mod:`pybpf.hooks.mprog`) → the socket filters of sockets bound to the device
  → the host stack (``dev.delivered``);
- transmit (``dev.transmit(pkt)``): tcx egress → the wire: the veth peer's receive path,
  or ``dev.wire`` (frames that left the host) when there is no peer.

``XDP_TX`` sends the frame back out of the device it came in on, ``XDP_REDIRECT`` out of
the target device; tc's ``TC_ACT_REDIRECT`` goes to the target's egress, or to its ingress
with ``BPF_F_INGRESS``. Per-device counters (:class:`DevStats`) count packets, bytes, drops
and each hook's verdicts.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pybpf.errors import BpfError, BpfFault
from pybpf.hooks.mprog import MprogEntry
from pybpf.net.ctx import SkbCtx, XdpCtx, ctx_for
from pybpf.net.packets import to_bytes
from pybpf.runtime.context import RunContext

if TYPE_CHECKING:
    from pybpf.kernel import Kernel

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
XDP_VERDICTS = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}
TCX_NEXT, TCX_PASS, TCX_DROP, TCX_REDIRECT = -1, 0, 2, 7
TC_VERDICTS = {-1: "TC_ACT_UNSPEC", 0: "TC_ACT_OK", 1: "TC_ACT_RECLASSIFY", 2: "TC_ACT_SHOT",
               3: "TC_ACT_PIPE", 4: "TC_ACT_STOLEN", 5: "TC_ACT_QUEUED", 6: "TC_ACT_REPEAT",
               7: "TC_ACT_REDIRECT", 8: "TC_ACT_TRAP"}
BPF_F_INGRESS = 1
ETH_HLEN = 14
XMIT_RECURSION_LIMIT = 8
XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE, XDP_FLAGS_HW_MODE = 2, 4, 8
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST, PACKET_OUTGOING = 0, 1, 2, 3, 4
XDP_FLAGS_MODES = XDP_FLAGS_SKB_MODE | XDP_FLAGS_DRV_MODE | XDP_FLAGS_HW_MODE


@dataclass
class DevStats:
    """``rtnl_link_stats64`` subset plus per-hook verdict counts."""

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    faults: int = 0
    xdp: Counter[str] = field(default_factory=Counter)
    tc_ingress: Counter[str] = field(default_factory=Counter)
    tc_egress: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items()}


@dataclass
class XdpSlot:
    """What ``dev->xdp_state[mode]`` holds: a program, the link owning it (or None), flags."""

    prog: Any = None
    link: Any = None
    flags: int = 0


class PacketSocket:
    """A packet socket bound to a device, with an optional BPF socket filter.

    The filter's return value is how many bytes of the packet to keep (0: drop), as for
    ``SO_ATTACH_BPF``; kept packets queue in :attr:`queue`.
    """

    def __init__(self, dev: NetDevice) -> None:
        self.dev = dev
        self.filter: Any = None
        self.queue: list[bytes] = []
        self.drops = 0

    def attach_filter(self, prog: Any) -> None:
        """``setsockopt(SO_ATTACH_BPF)``: a SOCKET_FILTER program (EINVAL otherwise)."""
        bprog = self.dev.devices.resolve_prog(prog)
        if bprog.type != 1:
            raise BpfError(22, "SO_ATTACH_BPF needs a BPF_PROG_TYPE_SOCKET_FILTER program")
        old, self.filter = self.filter, bprog.get()
        if old is not None:
            old.put()

    def detach_filter(self) -> None:
        old, self.filter = self.filter, None
        if old is not None:
            old.put()

    def close(self) -> None:
        self.detach_filter()
        with contextlib.suppress(ValueError):
            self.dev.sockets.remove(self)


class NetDevice:
    """One device. See the module docstring."""

    def __init__(self, devices: NetDevices, name: str, ifindex: int) -> None:
        self.devices = devices
        self.kernel = devices.kernel
        self.name = name
        self.ifindex = ifindex
        self.peer: NetDevice | None = None
        self.mac = bytes(6)  # set by NetDevices.create
        self.broadcast = b"\xff" * 6
        self.stats = DevStats()
        # dev->xdp_state[XDP_MODE_SKB/DRV/HW]: generic, native (the default: pybpf devices
        # have a driver hook, as veth does) and offloaded (not supported by the "driver")
        self.xdp_state = [XdpSlot(), XdpSlot(), XdpSlot()]
        self.tcx_ingress = MprogEntry()
        self.tcx_egress = MprogEntry()
        self.sockets: list[PacketSocket] = []
        self.delivered: list[bytes] = []  # what reached the host stack
        self.wire: list[bytes] = []  # what left the host (no peer)
        self.keep_packets = True  # False: count only (long pcaps)
        self.on_transmit: Callable[[bytes], None] | None = None
        self.last_fault: BaseException | None = None
        self.cpu = 0
        self._lock = threading.RLock()
        self._ctx: dict[str, Any] = {}
        self._depth = 0

    def __repr__(self) -> str:
        return f"NetDevice({self.name!r}, ifindex={self.ifindex})"

    @property
    def xdp(self) -> XdpSlot:
        """The XDP slot whose program runs on receive: native, else generic (the kernel
        refuses to have both)."""
        drv = self.xdp_state[1]
        return drv if drv.prog is not None else self.xdp_state[0]

    def xdp_attached(self) -> dict[str, int]:
        """``{mode: prog id}`` as ``ip link show`` lists attached XDP programs."""
        return {name: slot.prog.id for name, slot in zip(("skb", "drv", "hw"), self.xdp_state)
                if slot.prog is not None}

    # -- attach (Python API; the syscall paths are in pybpf.hooks.netattach) ---------------
    def attach_xdp(self, prog: Any, flags: int = 0) -> None:
        """Attach without a link, as ``ip link set dev NAME xdp`` (netlink) does."""
        from pybpf.hooks.netattach import dev_xdp_attach

        dev_xdp_attach(self, self.devices.resolve_prog(prog), None, flags)

    def detach_xdp(self) -> None:
        from pybpf.hooks.netattach import dev_xdp_attach

        dev_xdp_attach(self, None, None, 0)

    def socket(self, filter: Any = None) -> PacketSocket:
        """A packet socket bound to this device, optionally with a socket filter."""
        sock = PacketSocket(self)
        if filter is not None:
            sock.attach_filter(filter)
        self.sockets.append(sock)
        return sock

    # -- running programs ----------------------------------------------------------------
    def _pctx(self, kind: str, prog_type: int) -> Any:
        key = f"{kind}:{threading.get_ident()}"
        pctx = self._ctx.get(key)
        if pctx is None:
            pctx = self._ctx[key] = ctx_for(kind, f"{self.name} {kind}", prog_type)
        return pctx

    def _run(self, prog: Any, pctx: Any, kind: str) -> tuple[int, tuple[int, int] | None]:
        rc = RunContext(kernel=self.kernel, prog=prog, cpu=self.cpu)
        rc.data[kind] = pctx
        ret = prog.run(pctx.addr, ctx=rc, cpu=self.cpu)
        return int(ret) & 0xFFFFFFFF, rc.data.get("redirect")

    def _fault(self, exc: BaseException) -> None:
        self.stats.faults += 1
        self.last_fault = exc

    # -- receive path --------------------------------------------------------------------
    def receive(self, pkt: Any) -> str:
        """Run the receive path on one frame; returns what became of it."""
        data = to_bytes(pkt)
        with self._lock:
            self._depth += 1
            try:
                if self._depth > XMIT_RECURSION_LIMIT:
                    self.stats.rx_dropped += 1
                    return "dropped:recursion"
                return self._receive(data)
            finally:
                self._depth -= 1

    def _receive(self, data: bytes) -> str:
        st = self.stats
        st.rx_packets += 1
        st.rx_bytes += len(data)
        if len(data) < ETH_HLEN:  # a runt frame never reaches the hooks
            st.rx_dropped += 1
            return "dropped:runt"
        prog = self.xdp.prog
        if prog is not None:
            xctx: XdpCtx = self._pctx("xdp", prog.type)
            try:
                xctx.load(data, ifindex=self.ifindex)
                ret, redir = self._run(prog, xctx, "xdp")
            except (BpfFault, BpfError) as exc:
                self._fault(exc)
                ret, redir = XDP_ABORTED, None
            st.xdp[XDP_VERDICTS.get(ret, f"XDP_{ret}")] += 1
            if ret == XDP_PASS:
                data = xctx.packet()
            elif ret == XDP_TX:
                self._xmit(xctx.packet())
                return "xdp:tx"
            elif ret == XDP_REDIRECT and redir is not None:
                from pybpf.net.xdp_redirect import xdp_do_redirect  # devmap targets

                via_map = xdp_do_redirect(self, xctx, redir)
                if via_map is not None:
                    if via_map.startswith("xdp:redirect-failed"):
                        st.rx_dropped += 1
                    return via_map
                target = self.devices.by_ifindex(redir[0])
                if target is None:
                    st.rx_dropped += 1
                    return "xdp:redirect-failed"
                target._xmit(xctx.packet())
                return f"xdp:redirect:{target.name}"
            else:
                st.rx_dropped += 1
                return "xdp:drop"
        meta: dict[str, int] = {}
        if len(self.tcx_ingress):
            verdict, data, meta, redir = self._tcx(self.tcx_ingress, data, ingress=True)
            st.tc_ingress[TC_VERDICTS.get(verdict, str(verdict))] += 1
            if verdict == TCX_DROP:
                st.rx_dropped += 1
                return "tc:drop"
            if verdict == TCX_REDIRECT:
                return self._tc_redirect(data, redir)
        for sock in list(self.sockets):
            self._sock_deliver(sock, data, meta)
        if self.keep_packets:
            self.delivered.append(data)
        return "pass"

    def _tcx(self, entry: MprogEntry, data: bytes, *, ingress: bool
             ) -> tuple[int, bytes, dict[str, int], tuple[int, int] | None]:
        """``tcx_run``: programs in order until one returns something but TCX_NEXT."""
        progs = entry.progs()
        sctx: SkbCtx = self._pctx("skb", progs[0].type)
        sctx.load(data, ifindex=self.ifindex, ingress_ifindex=self.ifindex if ingress else 0,
                  pkt_type=eth_type_trans_pkt_type(data, self) if ingress
                  else PACKET_OUTGOING, at_ingress=ingress)
        ret, redir = TCX_NEXT, None
        for prog in progs:
            try:
                raw, redir = self._run(prog, sctx, "skb")
            except (BpfFault, BpfError) as exc:
                self._fault(exc)
                raw, redir = TCX_DROP, None
            ret = raw - (1 << 32) if raw & 0x80000000 else raw
            if ret != TCX_NEXT:
                break
        if ret not in (TCX_PASS, TCX_DROP, TCX_REDIRECT):
            ret = TCX_NEXT if ret == TCX_NEXT else ret
        return ret, sctx.packet(), sctx.meta(), redir

    def _tc_redirect(self, data: bytes, redir: tuple[int, int] | None) -> str:
        target = self.devices.by_ifindex(redir[0]) if redir else None
        if target is None:
            self.stats.rx_dropped += 1
            return "tc:redirect-failed"
        if redir is not None and redir[1] & BPF_F_INGRESS:
            target.receive(data)
            return f"tc:redirect-ingress:{target.name}"
        target.transmit(data)
        return f"tc:redirect:{target.name}"

    def _sock_deliver(self, sock: PacketSocket, data: bytes, meta: dict[str, int]) -> None:
        prog = sock.filter
        keep = len(data)
        if prog is not None:
            sctx: SkbCtx = self._pctx("skb", prog.type)
            try:
                sctx.load(data, ifindex=self.ifindex, ingress_ifindex=self.ifindex, meta=meta,
                          pkt_type=eth_type_trans_pkt_type(data, self))
                ret, _r = self._run(prog, sctx, "skb")
            except (BpfFault, BpfError) as exc:
                self._fault(exc)
                ret = 0
            keep = min(ret, len(data))
        if keep == 0:
            sock.drops += 1
            return
        sock.queue.append(data[:keep])

    # -- transmit path -------------------------------------------------------------------
    def transmit(self, pkt: Any) -> str:
        """The host sends a frame out of this device: tcx egress, then the wire."""
        data = to_bytes(pkt)
        with self._lock:
            self._depth += 1
            try:
                if self._depth > XMIT_RECURSION_LIMIT:
                    self.stats.tx_dropped += 1
                    return "dropped:recursion"
                if len(self.tcx_egress):
                    verdict, data, _m, redir = self._tcx(self.tcx_egress, data, ingress=False)
                    self.stats.tc_egress[TC_VERDICTS.get(verdict, str(verdict))] += 1
                    if verdict == TCX_DROP:
                        self.stats.tx_dropped += 1
                        return "tc:drop"
                    if verdict == TCX_REDIRECT:
                        return self._tc_redirect(data, redir)
                self._xmit(data)
                return "sent"
            finally:
                self._depth -= 1

    def _xmit(self, data: bytes) -> None:
        """``ndo_start_xmit``: count, then hand to the peer or the wire."""
        self.stats.tx_packets += 1
        self.stats.tx_bytes += len(data)
        if self.on_transmit is not None:
            self.on_transmit(data)
        if self.peer is not None:
            self.peer.receive(data)
        elif self.keep_packets:
            self.wire.append(data)

    # -- feeding -------------------------------------------------------------------------
    def feed(self, packets: Iterable[Any]) -> Counter[str]:
        """Receive every packet; returns how many ended each way."""
        out: Counter[str] = Counter()
        for pkt in packets:
            out[self.receive(pkt)] += 1
        return out

    def feed_pcap(self, path: str, *, progress: bool | None = None,
                  limit: int | None = None) -> Counter[str]:
        """Receive the Ethernet frames of a pcap/pcapng file (a rich progress bar for big
        files: ``progress=None`` shows one above 10 MB on a terminal)."""
        import os
        import sys

        from pybpf.net.pcap import LINKTYPE_ETHERNET, read_pcap

        size = os.path.getsize(path)
        if progress is None:
            progress = size > 10_000_000 and sys.stderr.isatty()
        out: Counter[str] = Counter()

        def frames() -> Iterator[bytes]:
            for i, p in enumerate(read_pcap(path)):
                if limit is not None and i >= limit:
                    return
                if p.linktype != LINKTYPE_ETHERNET:
                    out["skipped:linktype"] += 1
                    continue
                yield p.data

        if not progress:
            out.update(self.feed(frames()))
            return out
        from rich.progress import Progress

        with open(path, "rb") as fh, Progress(transient=True) as bar:
            del fh
            task = bar.add_task(f"{self.name} ← {os.path.basename(path)}", total=None)
            for data in frames():
                out[self.receive(data)] += 1
                bar.advance(task)
        return out

    def capture_from(self, ifname: str, count: int = 1, timeout: float = 1.0) -> int:
        """Receive up to ``count`` frames from a real interface (AF_PACKET; root only).
        Returns frames received; raises ``PermissionError``/``OSError`` where unavailable."""
        import socket

        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        try:
            s.bind((ifname, 0))
            s.settimeout(timeout)
            n = 0
            while n < count:
                try:
                    data = s.recv(65535)
                except TimeoutError:
                    break
                self.receive(data)
                n += 1
            return n
        finally:
            s.close()


def parse_mac(mac: str | bytes) -> bytes:
    """``"aa:bb:cc:dd:ee:ff"`` (or 6 bytes) as 6 bytes; ``ValueError`` otherwise."""
    raw = bytes.fromhex(mac.replace(":", "").replace("-", "")) if isinstance(mac, str) else mac
    if len(raw) != 6:
        raise ValueError(f"a MAC address has 6 bytes, not {len(raw)}: {mac!r}")
    return bytes(raw)


def _default_mac(ifindex: int, name: str) -> bytes:
    if name == "lo":
        return bytes(6)
    return bytes([0x02, 0, 0, 0, (ifindex >> 8) & 0xFF, ifindex & 0xFF])


def eth_type_trans_pkt_type(frame: bytes, dev: NetDevice) -> int:
    """``eth_type_trans``'s ``skb->pkt_type`` for a received frame: to this device
    (host), its broadcast address, another group address (multicast), another host."""
    dst = frame[:6]
    if dst == dev.mac:
        return PACKET_HOST
    if dst[0] & 1:
        return PACKET_BROADCAST if dst == dev.broadcast else PACKET_MULTICAST
    return PACKET_OTHERHOST


class NetDevices:
    """The instance's device table (``dev_get_by_index`` / ``dev_get_by_name``).

    ifindex 1 is the loopback device, as in every network namespace.
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._by_index: dict[int, NetDevice] = {}
        self._by_name: dict[str, NetDevice] = {}
        self._next = 1
        self._lock = threading.Lock()
        self.create("lo")

    def create(self, name: str, *, peer: str | None = None, mac: str | bytes | None = None,
               broadcast: str | bytes | None = None) -> NetDevice:
        """The device ``name`` (created if new); with ``peer``, a veth pair; ``mac`` its
        address (``"02:00:00:00:00:01"`` or 6 bytes; default: a locally administered
        address derived from the ifindex) and ``broadcast`` its broadcast address (default
        ff:ff:ff:ff:ff:ff); the loopback's are both all zeros, as on Linux."""
        with self._lock:
            dev = self._by_name.get(name)
            if dev is None:
                dev = NetDevice(self, name, self._next)
                dev.mac = _default_mac(dev.ifindex, name)
                dev.broadcast = bytes(6) if name == "lo" else b"\xff" * 6
                self._next += 1
                self._by_index[dev.ifindex] = dev
                self._by_name[name] = dev
        if mac is not None:
            dev.mac = parse_mac(mac)
        if broadcast is not None:
            dev.broadcast = parse_mac(broadcast)
        if peer is not None:
            other = self.create(peer)
            dev.peer, other.peer = other, dev
        return dev

    def by_ifindex(self, ifindex: int) -> NetDevice | None:
        return self._by_index.get(ifindex)

    def by_name(self, name: str) -> NetDevice | None:
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[NetDevice]:
        return iter(list(self._by_index.values()))

    def __len__(self) -> int:
        return len(self._by_index)

    def resolve_prog(self, prog: Any) -> Any:
        """A :class:`~pybpf.core.prog.BpfProg` from itself, a root-task fd, or a skeleton
        program (``.fd``)."""
        from pybpf.core.prog import BpfProg

        if isinstance(prog, BpfProg):
            return prog
        fd = prog if isinstance(prog, int) else getattr(prog, "fd", None)
        if isinstance(fd, int):
            f = self.kernel.root.file(fd)
            obj = getattr(f, "obj", None)
            if isinstance(obj, BpfProg):
                return obj
        raise BpfError(9, f"{prog!r} is not a program of this kernel")
