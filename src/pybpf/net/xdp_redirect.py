"""``xdp_do_redirect`` for redirects through maps: where an ``XDP_REDIRECT`` frame goes.

``bpf_redirect_map`` (:func:`pybpf.helpers.xdp.redirect_map`) only records the target
(the kernel's per-CPU ``bpf_redirect_info``: map, index, flags, the entry found) on the
running :class:`~pybpf.net.xdp_buff.XdpBuff`; the device's receive path acts on it once
the program has returned ``XDP_REDIRECT``, as ``xdp_do_redirect`` does:

- a devmap entry (``dev_map_enqueue``): the entry's own XDP program
  (``BPF_XDP_DEVMAP``), if any, runs on the frame with ``egress_ifindex`` set; on
  ``XDP_PASS`` the frame is transmitted by the entry's device, anything else drops it;
- ``BPF_F_BROADCAST`` (``dev_map_enqueue_multi``): a copy to every device in the map,
  but the ingress device with ``BPF_F_EXCLUDE_INGRESS``.

The devmap program's frame is a fresh buffer with the standard headroom (the kernel keeps
the original headroom minus the ``xdp_frame``; metadata is not carried over).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

from pybpf.errors import BpfError, BpfFault
from pybpf.net.xdp_buff import XdpBuff
from pybpf.runtime.context import RunContext

BPF_F_BROADCAST, BPF_F_EXCLUDE_INGRESS = 1 << 3, 1 << 4
XDP_PASS = 2
DEVMAP_TYPES = (14, 25)  # BPF_MAP_TYPE_DEVMAP, BPF_MAP_TYPE_DEVMAP_HASH


@dataclass
class XdpRedirect:
    """``struct bpf_redirect_info`` after a successful ``bpf_redirect_map``."""

    bmap: Any
    index: int
    flags: int
    entry: Any  # the devmap entry (None for a broadcast)
    token: tuple[int, int]  # what the helper put in RunContext.data["redirect"]


_EGRESS: weakref.WeakKeyDictionary[Any, dict[int, XdpBuff]] = weakref.WeakKeyDictionary()


def _egress_buff(dev: Any) -> XdpBuff:
    """The buffer devmap programs of ``dev`` run on (one per device and thread)."""
    per_thread = _EGRESS.setdefault(dev, {})
    key = threading.get_ident()
    buff = per_thread.get(key)
    if buff is None:
        buff = per_thread[key] = XdpBuff(f"{getattr(dev, 'name', 'dev')} devmap")
        weakref.finalize(dev, buff.close)
    return buff


def _run_devmap_prog(entry: Any, rx_dev: Any, frame: bytes) -> bytes | None:
    """``dev_map_bpf_prog_run_skb``/``_elem``: the frame to send, or None when dropped."""
    prog = entry.prog
    if prog is None:
        return frame
    buff = _egress_buff(entry.dev)
    buff.load(frame, ifindex=int(getattr(rx_dev, "ifindex", 0)), egress_ifindex=entry.ifindex)
    rc = RunContext(kernel=getattr(rx_dev, "kernel", None), prog=prog,
                    cpu=int(getattr(rx_dev, "cpu", 0)))
    rc.data["xdp"] = buff
    try:
        act = int(prog.run(buff.addr, ctx=rc, cpu=rc.cpu)) & 0xFFFFFFFF
    except (BpfFault, BpfError):
        return None
    return buff.packet() if act == XDP_PASS else None


def _send(entry: Any, rx_dev: Any, frame: bytes) -> bool:
    out = _run_devmap_prog(entry, rx_dev, frame)
    xmit = getattr(entry.dev, "_xmit", None)
    if out is None or not callable(xmit):
        return False
    xmit(out)
    return True


def xdp_do_redirect(rx_dev: Any, xdp: XdpBuff, redirect: Any) -> str | None:
    """Act on a map redirect recorded on ``xdp``; None when the program's last redirect
    was not through a map (``bpf_redirect``: the caller's plain ifindex path)."""
    info = xdp.redirect_info
    if not isinstance(info, XdpRedirect) or info.token is not redirect:
        return None
    if info.bmap.map_type not in DEVMAP_TYPES:
        # cpu_map_enqueue / __xsk_map_redirect: CPUs and AF_XDP sockets are not modelled
        return f"xdp:redirect-failed:map type {info.bmap.map_type} not modelled"
    frame = xdp.packet()
    if info.flags & BPF_F_BROADCAST:
        ingress = int(getattr(rx_dev, "ifindex", 0))
        sent = 0
        for entry in info.bmap.ops.all_entries(info.bmap):
            if info.flags & BPF_F_EXCLUDE_INGRESS and entry.ifindex == ingress:
                continue
            sent += _send(entry, rx_dev, frame)
        return f"xdp:broadcast:{sent}"
    if not _send(info.entry, rx_dev, frame):
        return "xdp:redirect-failed"
    return f"xdp:redirect:{getattr(info.entry.dev, 'name', info.entry.ifindex)}"
