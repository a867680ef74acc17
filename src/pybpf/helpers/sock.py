"""Socket helpers over the host's sockets (:mod:`pybpf.net.sockets`), as ``net/core/filter.c``.

``bpf_sk_lookup_tcp``/``udp`` and ``bpf_skc_lookup_tcp`` read a ``struct bpf_sock_tuple``
(its length says IPv4 or IPv6), look the socket up in the caller's network namespace with
the caller's device as ``dif``, and return the address of the socket's ``struct sock``
(NULL when nothing matches, flags are non-zero, or ``netns_id`` names a namespace that
does not exist). ``bpf_sk_lookup_*`` return full sockets only (a time-wait match gives
NULL); ``bpf_skc_lookup_tcp`` returns whatever matched. Established TCP sockets are
reference-counted until ``bpf_sk_release``; listeners and UDP sockets (``SOCK_RCU_FREE``)
are not. The verifier already insists every acquired reference is released.

``bpf_get_socket_cookie`` has one implementation for the ctx kinds the kernel's protos
distinguish: an skb (its ``sk``), a socket ctx (cgroup/sock: the ctx *is* the socket) and
the sock_addr/sock_ops ctx (its ``sk``), found through the run's data.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from pybpf.net.sockets import HostSocket, SocketTable, parse_tuple, socket_table
from pybpf.runtime.context import RunContext

M64 = (1 << 64) - 1
LOOPBACK_IFINDEX = 1  # BPF_PROG_TEST_RUN runs skb/xdp programs on the loopback device


def _table(ctx: RunContext) -> SocketTable:
    return socket_table(ctx.kernel)


def caller_ifindex(ctx: RunContext) -> int:
    """The ``dif`` of a lookup: the device the packet is on (``skb->dev->ifindex``,
    ``xdp->rxq->dev->ifindex``); 0 for socket-level callers (no device)."""
    for key in ("skb", "xdp"):
        pkt = ctx.data.get(key)
        if pkt is None:
            continue
        for attr in ("ifindex", "dev_ifindex"):
            val = getattr(pkt, attr, None)
            if isinstance(val, int) and val > 0:
                return val
        dev = getattr(pkt, "dev", None)
        val = getattr(dev, "ifindex", None)
        if isinstance(val, int) and val > 0:
            return val
        return LOOPBACK_IFINDEX
    if "sk_lookup" in ctx.data or "sock_addr" in ctx.data:
        return 0
    return LOOPBACK_IFINDEX


def _lookup(ctx: RunContext, tuple_addr: int, size: int, netns_id: int, flags: int,
            proto: str) -> HostSocket | None:
    """``__bpf_skc_lookup``: checks, then the protocol's lookup."""
    if size not in (12, 36):
        return None
    if flags or not ((netns_id & 0xFFFFFFFF) >= 1 << 31 or netns_id <= 0x7FFFFFFF):
        return None
    if (netns_id & 0xFFFFFFFF) < 1 << 31:
        return None  # get_net_ns_by_id: the instance has no peer namespaces
    parsed = parse_tuple(ctx.mem.read(tuple_addr, size))
    if parsed is None:
        return None
    family, saddr, sport, daddr, dport = parsed
    table = _table(ctx)
    dif = caller_ifindex(ctx)
    if proto == "tcp":
        return table.lookup_tcp(family, saddr, sport, daddr, dport, dif)
    return table.lookup_udp(family, saddr, sport, daddr, dport, dif)


def _acquire(sock: HostSocket | None, *, full: bool) -> int:
    if sock is None:
        return 0
    if full and not sock.fullsock:
        return 0  # sk_to_full_sk of a time-wait socket is not a full socket
    sock.hold()
    return sock.addr


def sk_lookup_tcp(ctx: RunContext, _ctx: int, tup: int, size: int, netns: int, flags: int) -> int:
    return _acquire(_lookup(ctx, tup, size, netns, flags, "tcp"), full=True)


def sk_lookup_udp(ctx: RunContext, _ctx: int, tup: int, size: int, netns: int, flags: int) -> int:
    return _acquire(_lookup(ctx, tup, size, netns, flags, "udp"), full=True)


def skc_lookup_tcp(ctx: RunContext, _ctx: int, tup: int, size: int, netns: int, flags: int) -> int:
    return _acquire(_lookup(ctx, tup, size, netns, flags, "tcp"), full=False)


def sk_release(ctx: RunContext, sk: int, *_: int) -> int:
    """``bpf_sk_release``: drop the reference a lookup took (``sock_gen_put``)."""
    sock = _table(ctx).by_addr(sk)
    if sock is not None:
        sock.put()
    return 0


def sk_fullsock(ctx: RunContext, sk: int, *_: int) -> int:
    """``bpf_sk_fullsock``: the socket itself when it is a full socket, else NULL."""
    sock = _table(ctx).by_addr(sk)
    if sock is None:
        return sk  # a socket pybpf did not declare (a test skb's) is a full one
    return sk if sock.fullsock else 0


def tcp_sock(ctx: RunContext, sk: int, *_: int) -> int:
    """``bpf_tcp_sock``: a full TCP socket as ``struct tcp_sock``, else NULL."""
    sock = _table(ctx).by_addr(sk)
    if sock is None or not sock.fullsock or sock.proto != "tcp":
        return 0
    return sk


def _ctx_socket(ctx: RunContext, ctx_addr: int) -> HostSocket | None:
    """The socket a ctx stands for: the ctx itself (cgroup/sock programs), else the
    ``sk`` of the skb / sock_addr / sock_ops the run carries."""
    table = _table(ctx)
    sock = table.by_addr(ctx_addr)
    if sock is not None:
        return sock
    for key in ("skb", "sock_addr", "sock_ops", "sock"):
        obj = ctx.data.get(key)
        if obj is None:
            continue
        sk = obj if isinstance(obj, HostSocket) else getattr(obj, "sk", None)
        if isinstance(sk, HostSocket):
            return sk
        if isinstance(sk, int) and sk:
            return table.by_addr(sk)
    return None


def get_socket_cookie(ctx: RunContext, ctx_addr: int, *_: int) -> int:
    """``bpf_get_socket_cookie`` (skb, sock, sock_addr and sock_ops variants): the
    socket's cookie, generated on first use; 0 without a socket."""
    sock = _ctx_socket(ctx, ctx_addr)
    return sock.cookie if sock is not None else 0


def get_netns_cookie(ctx: RunContext, ctx_addr: int, *_: int) -> int:
    """``bpf_get_netns_cookie``: the instance has one namespace, so one cookie."""
    return _table(ctx).netns.cookie


def sk_assign(ctx: RunContext, _ctx: int, sk: int, flags: int, *_: int) -> int:
    """``bpf_sk_assign``: sk_lookup's ``bpf_sk_lookup_assign`` when the run is an
    sk_lookup one, else tc's, which needs an skb at tc ingress (a test skb is not)."""
    kctx = ctx.data.get("sk_lookup")
    if kctx is not None:
        from pybpf.progs.testrun_sk_lookup import sk_lookup_assign

        sock = _table(ctx).by_addr(sk) if sk else None
        return sk_lookup_assign(kctx, sock, sk, flags) & M64
    if not sk or flags:
        return -errno.EINVAL & M64
    return -errno.EOPNOTSUPP & M64


IMPLS: dict[int, Callable[..., int]] = {
    124: sk_assign,
    84: sk_lookup_tcp,
    85: sk_lookup_udp,
    86: sk_release,
    99: skc_lookup_tcp,
    95: sk_fullsock,
    96: tcp_sock,
    46: get_socket_cookie,
    122: get_netns_cookie,
}

__all__ = ["IMPLS", "caller_ifindex", "get_socket_cookie", "sk_lookup_tcp", "sk_release"]
