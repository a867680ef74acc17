"""Helper implementations the host hooks need, used only where pybpf has none yet.

The program-type/helper modules (``pybpf.helpers``) own helper semantics; while some
helpers there are prototypes without an implementation, a program attached to a host hook
would fault on them. :func:`fill_missing` (called when a ``Kernel`` builds its helper table)
adds the implementations below for those ids only — an implementation published by
``pybpf.helpers`` always wins.

State they share with the hooks lives in ``RunContext.data``:

- ``"skb"`` / ``"xdp"``: the running packet (:class:`pybpf.net.skbuff.SkBuff` /
  :class:`pybpf.net.xdp_buff.XdpBuff`);
- ``"redirect"``: ``(ifindex, flags)`` set by ``bpf_redirect`` — the kernel's per-CPU
  ``bpf_redirect_info`` — read by the device after the program returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pybpf.runtime.context import RunContext

M64 = (1 << 64) - 1
BPF_F_INGRESS = 1
XDP_ABORTED, XDP_REDIRECT = 0, 4
TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7
PROG_TYPE_XDP = 6


def _neg(err: int) -> int:
    return (-err) & M64


def redirect(ctx: RunContext, ifindex: int, flags: int, *_: int) -> int:
    """``bpf_redirect`` (tc) / ``bpf_xdp_redirect`` (XDP): remember the target."""
    xdp = getattr(ctx.prog, "type", 0) == PROG_TYPE_XDP
    if xdp:
        if flags:
            return XDP_ABORTED
    elif flags & ~BPF_F_INGRESS:
        return TC_ACT_SHOT
    ctx.data["redirect"] = (ifindex & 0xFFFFFFFF, flags)
    return XDP_REDIRECT if xdp else TC_ACT_REDIRECT


FALLBACK_IMPLS: dict[int, Callable[..., int]] = {
    23: redirect,  # bpf_redirect_map (51) is pybpf.helpers.xdp's
}


def fill_missing(table: Any) -> None:
    """Give every prototype in ``table`` (a HelperTable) without an implementation ours."""
    for fid, impl in FALLBACK_IMPLS.items():
        proto = table.get(fid)
        if proto is not None and proto.impl is None:
            table.override(fid, impl)
