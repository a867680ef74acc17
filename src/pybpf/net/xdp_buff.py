"""pybpf's ``struct xdp_buff``: the object an XDP program's ``r1`` points to.

Why: a program addresses the user-visible ``struct xdp_md`` (32-bit ``data``,
``data_end``, ``ingress_ifindex``…), but after verification the kernel rewrites those
accesses (``xdp_convert_ctx_access``) into 64-bit loads of the pointers in its internal
``struct xdp_buff`` and loads through ``xdp_buff.rxq->dev->ifindex`` and friends.
pybpf's XDP program type does the same rewrite, so the program must run on an object
laid out as Linux 6.18 lays out ``struct xdp_buff``, ``struct xdp_rxq_info``,
``struct xdp_txq_info`` and (the ``ifindex`` of) ``struct net_device``. The offsets come
from :mod:`pybpf.uapi.kernel_structs` (generated from the kernel's BTF).

One definition serves every place an XDP program runs: ``BPF_PROG_TEST_RUN``
(:mod:`pybpf.progs.testrun_xdp`), the virtual device's receive path
(:mod:`pybpf.net.device`) and the XDP helpers (:mod:`pybpf.helpers.xdp`), which move the
same native ``data``/``data_end``/``data_meta`` fields the program reads.

The frame is ordinary registered memory: with 64-bit pointers in ``xdp_buff`` the packet
no longer has to live below 4 GiB. Fragments of a multi-buffer frame (test runs with more
data than one page holds) are kept as a Python list of byte strings on the object, where
the kernel keeps them in ``skb_shared_info``; programs reach them only through helpers.
Whether there are any is also in native memory, as in the kernel: assigning ``frags``
sets or clears ``XDP_FLAGS_HAS_FRAGS`` in ``xdp_buff.flags``, so the JIT's native XDP
helpers (:mod:`pybpf.jit.pktgen`) take the linear path without asking Python and call
the Python helpers only for a fragmented frame.
"""

from __future__ import annotations

import struct
import weakref

from pybpf.net.skbuff import NetDeviceStruct
from pybpf.runtime.memory import REGISTRY, Region
from pybpf.uapi.kernel_structs import KSTRUCTS

XDP_PACKET_HEADROOM = 256
ETH_HLEN = 14
#: largest frame the device path accepts (a jumbo frame) and the skb_shared_info tailroom
MAX_FRAME = 9216
TAILROOM = 320
#: ``enum xdp_buff_flags`` (include/net/xdp.h): the buffer has fragments
XDP_FLAGS_HAS_FRAGS = 1 << 0

_XB = KSTRUCTS["xdp_buff"]
_RXQ = KSTRUCTS["xdp_rxq_info"]
_TXQ = KSTRUCTS["xdp_txq_info"]

XB_DATA, XB_DATA_END, XB_DATA_META = _XB.off("data"), _XB.off("data_end"), _XB.off("data_meta")
XB_HARD_START, XB_RXQ, XB_TXQ = _XB.off("data_hard_start"), _XB.off("rxq"), _XB.off("txq")
XB_FRAME_SZ, XB_FLAGS = _XB.off("frame_sz"), _XB.off("flags")
RXQ_DEV, RXQ_QUEUE_INDEX = _RXQ.off("dev"), _RXQ.off("queue_index")
TXQ_DEV = _TXQ.off("dev")
DEV_IFINDEX = KSTRUCTS["net_device"].off("ifindex")

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")

#: ``xdp_buff`` address -> object, so helpers can find the buffer from their ``r1``
_BY_ADDR: weakref.WeakValueDictionary[int, XdpBuff] = weakref.WeakValueDictionary()


def xdp_buff_at(addr: int) -> XdpBuff | None:
    """The live :class:`XdpBuff` whose ``struct xdp_buff`` starts at ``addr``."""
    return _BY_ADDR.get(addr)


class XdpBuff:
    """A frame plus its ``struct xdp_buff`` and the queue/device structs it points to.

    One instance is reused for every packet of a (device, hook) pair or for one test run:
    registering native memory is the expensive part, loading a packet is a copy.
    """

    kind = "xdp"
    headroom = XDP_PACKET_HEADROOM

    def __init__(self, name: str, frame_size: int | None = None) -> None:
        size = frame_size or self.headroom + MAX_FRAME + TAILROOM
        self.name = name
        self.frame: Region = REGISTRY.alloc(size, f"{name} frame")
        self.buff: Region = REGISTRY.alloc(_XB.size, f"{name} xdp_buff")
        self.rxq: Region = REGISTRY.alloc(_RXQ.size, f"{name} xdp_rxq_info")
        self.txq: Region = REGISTRY.alloc(_TXQ.size, f"{name} xdp_txq_info")
        # the devices rxq->dev / txq->dev point to (the skb's net_device definition)
        self.rx_dev = NetDeviceStruct(0, f"{name} rx")
        self.tx_dev = NetDeviceStruct(0, f"{name} tx")
        self._frags: list[bytes] = []
        #: what ``bpf_redirect_map`` recorded (:class:`pybpf.net.xdp_redirect.XdpRedirect`)
        self.redirect_info: object | None = None
        self.data_start = self.frame.start + self.headroom
        _U64.pack_into(self.rxq.mv, RXQ_DEV, self.rx_dev.addr)
        _U64.pack_into(self.txq.mv, TXQ_DEV, self.tx_dev.addr)
        _BY_ADDR[self.buff.start] = self

    # -- the native fields ------------------------------------------------------------
    @property
    def addr(self) -> int:
        """What the program receives in ``r1``: the ``struct xdp_buff``."""
        return self.buff.start

    def _get(self, off: int) -> int:
        return int(_U64.unpack_from(self.buff.mv, off)[0])

    def _put(self, off: int, value: int) -> None:
        _U64.pack_into(self.buff.mv, off, value & 0xFFFFFFFFFFFFFFFF)

    @property
    def data(self) -> int:
        return self._get(XB_DATA)

    @data.setter
    def data(self, value: int) -> None:
        self._put(XB_DATA, value)

    @property
    def data_end(self) -> int:
        return self._get(XB_DATA_END)

    @data_end.setter
    def data_end(self, value: int) -> None:
        self._put(XB_DATA_END, value)

    @property
    def data_meta(self) -> int:
        return self._get(XB_DATA_META)

    @data_meta.setter
    def data_meta(self, value: int) -> None:
        self._put(XB_DATA_META, value)

    @property
    def data_hard_start(self) -> int:
        return self._get(XB_HARD_START)

    @property
    def frame_sz(self) -> int:
        return int(_U32.unpack_from(self.buff.mv, XB_FRAME_SZ)[0])

    @property
    def hard_end(self) -> int:
        """``xdp_data_hard_end``: the ``skb_shared_info`` tailroom stays reserved."""
        return self.data_hard_start + self.frame_sz - TAILROOM

    @property
    def flags(self) -> int:
        """``xdp_buff.flags`` (``enum xdp_buff_flags``)."""
        return int(_U32.unpack_from(self.buff.mv, XB_FLAGS)[0])

    @property
    def has_frags(self) -> bool:
        """``xdp_buff_has_frags``: what the helpers (and the JIT's) test."""
        return bool(self.flags & XDP_FLAGS_HAS_FRAGS)

    @property
    def frags(self) -> list[bytes]:
        """The fragments, in order (a list the helpers edit in place; assign it again
        after removing the last one so the native flag follows)."""
        return self._frags

    @frags.setter
    def frags(self, value: list[bytes]) -> None:
        """``xdp_buff_set_frags_flag``/``xdp_buff_clear_frags_flag`` with the list."""
        self._frags = value
        flags = self.flags & ~XDP_FLAGS_HAS_FRAGS
        _U32.pack_into(self.buff.mv, XB_FLAGS, flags | (XDP_FLAGS_HAS_FRAGS if value else 0))

    @property
    def ingress_ifindex(self) -> int:
        return self.rx_dev.ifindex

    @property
    def rx_queue_index(self) -> int:
        return int(_U32.unpack_from(self.rxq.mv, RXQ_QUEUE_INDEX)[0])

    # -- setting a frame up -----------------------------------------------------------
    def init_buff(self, *, frame_sz: int, ifindex: int, rx_queue: int = 0,
                  egress_ifindex: int = 0) -> None:
        """``xdp_init_buff``: clear the buffer, point it at the frame and the queues.

        ``egress_ifindex`` is non-zero only for programs a devmap runs on transmit
        (``BPF_XDP_DEVMAP``); everywhere else ``xdp_buff.txq`` is NULL, as in the kernel.
        """
        self.buff.zero()
        self.frags = []
        self.redirect_info = None
        self._put(XB_HARD_START, self.frame.start)
        _U32.pack_into(self.buff.mv, XB_FRAME_SZ, frame_sz)
        self._put(XB_RXQ, self.rxq.start)
        _U32.pack_into(self.rxq.mv, RXQ_QUEUE_INDEX, rx_queue & 0xFFFFFFFF)
        self.rx_dev.ifindex = ifindex & 0xFFFFFFFF
        if egress_ifindex:
            self._put(XB_TXQ, self.txq.start)
            self.tx_dev.ifindex = egress_ifindex & 0xFFFFFFFF

    def prepare(self, headroom: int, data: bytes, meta_len: int = 0) -> None:
        """``xdp_prepare_buff`` with valid metadata: ``data`` placed ``headroom`` bytes
        into the frame, its first ``meta_len`` bytes being metadata."""
        self.frame.mv[headroom:headroom + len(data)] = data
        start = self.frame.start + headroom
        self.data_meta = start
        self.data = start + meta_len
        self.data_end = start + len(data)

    def load(self, data: bytes, *, ifindex: int, rx_queue: int = 0,
             egress_ifindex: int = 0) -> None:
        """A received frame (the device path): the whole frame region is ``frame_sz``."""
        if len(data) > self.frame.size - self.headroom - TAILROOM:
            raise ValueError(f"packet of {len(data)} bytes exceeds the "
                             f"{self.frame.size - self.headroom - TAILROOM}-byte frame")
        self.init_buff(frame_sz=self.frame.size, ifindex=ifindex, rx_queue=rx_queue,
                       egress_ifindex=egress_ifindex)
        self.prepare(self.headroom, data)

    # -- views of the frame as the program left it ------------------------------------
    def bounds(self) -> tuple[int, int]:
        return self.data, self.data_end

    def meta_bounds(self) -> tuple[int, int]:
        return self.data_meta, self.data_end

    def _slice(self, start: int, end: int) -> bytes:
        lo, hi = start - self.frame.start, end - self.frame.start
        if not 0 <= lo <= hi <= self.frame.size:
            return b""
        return bytes(self.frame.mv[lo:hi])

    def packet(self) -> bytes:
        """The linear packet bytes, ``data`` to ``data_end``."""
        return self._slice(self.data, self.data_end)

    @property
    def payload(self) -> bytes:
        return self.packet()

    def close(self) -> None:
        _BY_ADDR.pop(self.buff.start, None)
        for region in (self.frame, self.buff, self.rxq, self.txq):
            REGISTRY.remove(region)
        self.rx_dev.close()
        self.tx_dev.close()
