"""Sockets the host declares on a :class:`~pybpf.Kernel`, laid out as Linux 6.18's ``struct sock``.

Why native memory at the kernel's offsets: after verification a program's reads of
``struct bpf_sock`` / ``bpf_tcp_sock`` fields through a looked-up socket are rewritten
(``bpf_sock_convert_ctx_access``, :mod:`pybpf.progs.sock_convert`) into loads at
``offsetof(struct sock, …)``. So a :class:`HostSocket` is a ``struct tcp_sock`` (TCP) or
``struct udp_sock`` (UDP) in registered memory whose ``sock_common`` fields (addresses,
ports, family, state, bound device, cookie, netns pointer) and ``sock`` fields (protocol,
type, mark, priority) hold what the host configured; the pointer ``bpf_sk_lookup_tcp``
returns is that memory's address, exactly what the program then dereferences.

The lookups (:meth:`SocketTable.lookup_tcp`, :meth:`SocketTable.lookup_udp`) follow
``__inet_lookup`` (established sockets first, then the best-scoring listener) and
``__udp4_lib_lookup``/``__udp6_lib_lookup`` (scored match over bound/connected fields).

Every instance has one network namespace (``init_net``): a ``struct net`` region whose
``net_cookie`` :func:`bpf_get_netns_cookie` reads, and which every socket's ``skc_net``
points to. Socket cookies are generated on first use (``sock_gen_cookie``).

Programs hook the table as they hook the kernel's sockets: SK_LOOKUP programs
(:meth:`SocketTable.attach_sk_lookup`) run on listener/unconnected lookups — the host's
own (:meth:`SocketTable.lookup`) and the BPF helpers' alike — and may select or refuse a
socket; CGROUP_SOCK programs (:meth:`SocketTable.attach_sock`) run when a socket is
declared, with the socket itself as their ctx.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybpf.runtime.memory import REGISTRY, Region
from pybpf.uapi.kernel_structs import KSTRUCTS

if TYPE_CHECKING:
    from pybpf.kernel import Kernel

AF_INET, AF_INET6 = 2, 10
SOCK_STREAM, SOCK_DGRAM = 1, 2
IPPROTO_TCP, IPPROTO_UDP = 6, 17
NO_QUEUE_MAPPING = 0xFFFF
BPF_PROG_TYPE_SK_LOOKUP, BPF_PROG_TYPE_CGROUP_SOCK = 30, 9
INET_SOCK_CREATE, INET4_POST_BIND, INET6_POST_BIND = 2, 12, 13  # enum bpf_attach_type

#: ``enum`` of TCP states (``include/net/tcp_states.h``); UDP sockets use CLOSE/ESTABLISHED
TCP_STATES = {
    "established": 1, "syn_sent": 2, "syn_recv": 3, "fin_wait1": 4, "fin_wait2": 5,
    "time_wait": 6, "close": 7, "close_wait": 8, "last_ack": 9, "listen": 10, "closing": 11,
    "new_syn_recv": 12,
}
TCP_ESTABLISHED, TCP_TIME_WAIT, TCP_CLOSE, TCP_LISTEN, TCP_NEW_SYN_RECV = 1, 6, 7, 10, 12

_SK = KSTRUCTS["sock"]
_C = "__sk_common."


def _off(path: str) -> int:
    return _SK.off(path)


OFF_DADDR = _off(_C + "skc_daddr")
OFF_RCV_SADDR = _off(_C + "skc_rcv_saddr")
OFF_DPORT = _off(_C + "skc_dport")
OFF_NUM = _off(_C + "skc_num")
OFF_FAMILY = _off(_C + "skc_family")
OFF_STATE = _off(_C + "skc_state")
OFF_REUSE = _off(_C + "skc_reuse")  # byte holding skc_reuse:4, skc_reuseport:1, ipv6only:1
OFF_BOUND_DEV_IF = _off(_C + "skc_bound_dev_if")
OFF_NET = _off(_C + "skc_net")
OFF_V6_DADDR = _off(_C + "skc_v6_daddr")
OFF_V6_RCV_SADDR = _off(_C + "skc_v6_rcv_saddr")
OFF_COOKIE = _off(_C + "skc_cookie")
OFF_RX_QUEUE_MAPPING = _off(_C + "skc_rx_queue_mapping")
OFF_REFCNT = _off(_C + "skc_refcnt")
OFF_PROTOCOL = _off("sk_protocol")
OFF_TYPE = _off("sk_type")
OFF_MARK = _off("sk_mark")
OFF_PRIORITY = _off("sk_priority")
_REUSEPORT_BIT = 1 << (_SK.members[_C + "skc_reuseport"].bit_offset % 8)
_IPV6ONLY_BIT = 1 << (_SK.members[_C + "skc_ipv6only"].bit_offset % 8)

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


def _addr(value: Any, family: int | None = None) -> Addr:
    """``"10.0.0.1"``, ``"::1"``, bytes or an ipaddress object → an address object."""
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        a: Addr = value
    elif isinstance(value, (bytes, bytearray)):
        a = ipaddress.ip_address(bytes(value))
    else:
        a = ipaddress.ip_address(str(value) if value not in (None, "") else
                                 ("::" if family == AF_INET6 else "0.0.0.0"))
    if family == AF_INET6 and a.version == 4:
        a = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + a.packed)  # v4-mapped
    return a


LOOPBACK4_IPV6 = bytes([127, 0, 0, 6])


def _v4_equivalent(a: Addr) -> bytes:
    packed = a.packed
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        return packed[12:]
    return bytes(4) if a.is_unspecified else LOOPBACK4_IPV6


def _endpoint(ep: Any, family: int | None) -> tuple[Addr, int]:
    if ep is None:
        return _addr(None, family), 0
    if isinstance(ep, int):
        return _addr(None, family), ep
    host, port = ep
    if not 0 <= int(port) <= 0xFFFF:
        raise ValueError(f"port {port} out of range 0..65535")
    return _addr(host, family), int(port)


@dataclass(frozen=True)
class NetNs:
    """A network namespace: its ``struct net`` memory (``net_cookie`` at its offset)."""

    cookie: int
    region: Region

    @property
    def addr(self) -> int:
        return self.region.start


class HostSocket:
    """One socket of the host, as native ``struct tcp_sock``/``struct udp_sock`` memory.

    Attributes mirror the configuration; the memory is what programs read. Change a
    field with :meth:`set` (``state``, ``mark``, ``priority``, ``bound_dev_if``) so both
    stay in step. ``close()`` removes it from lookups and frees the memory.
    """

    def __init__(self, table: SocketTable, *, proto: str, family: int, local: tuple[Addr, int],
                 remote: tuple[Addr, int] | None, state: int, bound_dev_if: int, mark: int,
                 priority: int, reuseport: bool, ipv6only: bool) -> None:
        self.table = table
        self.proto = proto
        self.protocol = IPPROTO_TCP if proto == "tcp" else IPPROTO_UDP
        self.type = SOCK_STREAM if proto == "tcp" else SOCK_DGRAM
        self.family = family
        self.local = local
        self.remote = remote
        self.reuseport = reuseport
        self.ipv6only = ipv6only
        kstruct = KSTRUCTS["tcp_sock" if proto == "tcp" else "udp_sock"]
        self.region = REGISTRY.alloc(kstruct.size, f"{proto} sock {local[0]}:{local[1]}",
                                     owner=self)
        self.closed = False
        mv = self.region.mv
        struct.pack_into("<H", mv, OFF_FAMILY, family)
        struct.pack_into("<H", mv, OFF_NUM, local[1])
        struct.pack_into(">H", mv, OFF_DPORT, remote[1] if remote else 0)
        if family == AF_INET:
            mv[OFF_RCV_SADDR:OFF_RCV_SADDR + 4] = local[0].packed
            if remote:
                mv[OFF_DADDR:OFF_DADDR + 4] = remote[0].packed
        else:
            mv[OFF_V6_RCV_SADDR:OFF_V6_RCV_SADDR + 16] = local[0].packed
            if remote:
                mv[OFF_V6_DADDR:OFF_V6_DADDR + 16] = remote[0].packed
            # the IPv4 fields of an IPv6 socket: a v4-mapped address's IPv4 part, 0 for the
            # wildcard, else LOOPBACK4_IPV6 ("no IPv4 equivalent"), as inet6_bind sets them
            mv[OFF_RCV_SADDR:OFF_RCV_SADDR + 4] = _v4_equivalent(local[0])
            if remote:
                mv[OFF_DADDR:OFF_DADDR + 4] = _v4_equivalent(remote[0])
        mv[OFF_REUSE] = (_REUSEPORT_BIT if reuseport else 0) | (_IPV6ONLY_BIT if ipv6only else 0)
        struct.pack_into("<Q", mv, OFF_NET, table.netns.addr)
        struct.pack_into("<H", mv, OFF_PROTOCOL, self.protocol)
        struct.pack_into("<H", mv, OFF_TYPE, self.type)
        struct.pack_into("<H", mv, OFF_RX_QUEUE_MAPPING, NO_QUEUE_MAPPING)
        struct.pack_into("<I", mv, OFF_REFCNT, 1)
        self.set(state=state, bound_dev_if=bound_dev_if, mark=mark, priority=priority)

    # -- configuration --------------------------------------------------------------------
    def set(self, *, state: int | str | None = None, bound_dev_if: int | None = None,
            mark: int | None = None, priority: int | None = None) -> None:
        mv = self.region.mv
        if state is not None:
            self.state = _state(state)
            mv[OFF_STATE] = self.state
        if bound_dev_if is not None:
            self.bound_dev_if = int(bound_dev_if)
            struct.pack_into("<i", mv, OFF_BOUND_DEV_IF, self.bound_dev_if)
        if mark is not None:
            self.mark = int(mark) & 0xFFFFFFFF
            struct.pack_into("<I", mv, OFF_MARK, self.mark)
        if priority is not None:
            self.priority = int(priority) & 0xFFFFFFFF
            struct.pack_into("<I", mv, OFF_PRIORITY, self.priority)

    @property
    def addr(self) -> int:
        """The address of the ``struct sock`` (what lookups return to programs)."""
        return self.region.start

    @property
    def cookie(self) -> int:
        """``sock_gen_cookie``: the socket's cookie, generated on first use."""
        return self.table.gen_cookie(self)

    @property
    def refcnt(self) -> int:
        return int(struct.unpack_from("<I", self.region.mv, OFF_REFCNT)[0])

    @property
    def fullsock(self) -> bool:
        """``sk_fullsock``: not a time-wait or request socket."""
        return self.state not in (TCP_TIME_WAIT, TCP_NEW_SYN_RECV)

    @property
    def rcu_free(self) -> bool:
        """``SOCK_RCU_FREE``: listeners and UDP sockets are not reference-counted by lookups."""
        return self.proto == "udp" or self.state == TCP_LISTEN

    def hold(self) -> None:
        if not self.rcu_free:
            struct.pack_into("<I", self.region.mv, OFF_REFCNT, self.refcnt + 1)

    def put(self) -> None:
        if not self.rcu_free and self.refcnt > 1:
            struct.pack_into("<I", self.region.mv, OFF_REFCNT, self.refcnt - 1)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.table._forget(self)
            REGISTRY.remove(self.region)

    def __repr__(self) -> str:
        rem = f" -> {self.remote[0]}:{self.remote[1]}" if self.remote else ""
        return (f"HostSocket({self.proto}, {self.local[0]}:{self.local[1]}{rem}, "
                f"state={self.state})")


def _state(state: int | str) -> int:
    if isinstance(state, str):
        try:
            return TCP_STATES[state.lower()]
        except KeyError:
            raise ValueError(f"unknown socket state {state!r} "
                             f"(one of {', '.join(TCP_STATES)})") from None
    if not 0 <= int(state) <= 0xFF:
        raise ValueError(f"socket state {state} out of range")
    return int(state)


class SocketTable:
    """The sockets of one :class:`~pybpf.Kernel` and the lookups helpers perform on them."""

    def __init__(self, kernel: Kernel | None = None) -> None:
        self.kernel = kernel
        self._lock = threading.Lock()
        self._socks: list[HostSocket] = []
        self._by_addr: dict[int, HostSocket] = {}
        self._cookies = itertools.count(1)
        self.sk_lookup_progs: list[Any] = []
        self.sock_progs: list[Any] = []
        net = KSTRUCTS["net"]
        region = REGISTRY.alloc(net.size, "struct net (init_net)", writable=False)
        self.netns = NetNs(1, region)
        struct.pack_into("<Q", region.mv, net.off("net_cookie"), self.netns.cookie)
        struct.pack_into("<i", region.mv, net.off("ifindex"), 1)

    def socket(self, proto: str = "tcp", local: Any = None, remote: Any = None, *,
               state: int | str | None = None, family: int | None = None,
               bound_dev_if: int = 0, mark: int = 0, priority: int = 0,
               reuseport: bool = False, ipv6only: bool = False) -> HostSocket:
        """Declare a socket. ``local``/``remote``: ``(address, port)`` (``remote`` None:
        unconnected). TCP defaults to LISTEN unconnected, ESTABLISHED connected; UDP to
        CLOSE unconnected, ESTABLISHED connected (as ``connect()`` leaves them)."""
        proto = str(proto).lower()
        if proto not in ("tcp", "udp"):
            raise ValueError(f"proto must be 'tcp' or 'udp', not {proto!r}")
        if family is None:
            hint = local[0] if isinstance(local, tuple) else None
            family = AF_INET6 if hint is not None and _addr(hint).version == 6 else AF_INET
        if family not in (AF_INET, AF_INET6):
            raise ValueError(f"family must be AF_INET (2) or AF_INET6 (10), not {family}")
        loc = _endpoint(local, family)
        rem = _endpoint(remote, family) if remote is not None else None
        for a in (loc[0], rem[0] if rem else None):
            if a is not None and family == AF_INET and a.version != 4:
                raise ValueError(f"{a} is not an IPv4 address")
        if state is None:
            state = (TCP_ESTABLISHED if rem else (TCP_LISTEN if proto == "tcp" else TCP_CLOSE))
        sock = HostSocket(self, proto=proto, family=family, local=loc, remote=rem,
                          state=_state(state), bound_dev_if=bound_dev_if, mark=mark,
                          priority=priority, reuseport=reuseport, ipv6only=ipv6only)
        with self._lock:
            self._socks.append(sock)
            self._by_addr[sock.addr] = sock
        try:
            self._run_sock_progs(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    # -- cgroup/sock programs (BPF_CGROUP_INET_SOCK_CREATE, INET4/6_POST_BIND) --------------
    def attach_sock(self, prog: Any) -> Callable[[], None]:
        """Run a ``BPF_PROG_TYPE_CGROUP_SOCK`` program on every socket declared from now on
        (its ``expected_attach_type`` says when: creation, or after an IPv4/IPv6 bind), as
        one attached to the root cgroup would. Its ctx is the socket's ``struct sock``: it
        may set ``mark``/``priority``/``bound_dev_if``, and returning 0 refuses the socket
        (``EPERM``). Returns the detach function."""
        core = getattr(prog, "obj", prog)
        if getattr(core, "type", None) != BPF_PROG_TYPE_CGROUP_SOCK:
            raise ValueError("attach_sock needs a BPF_PROG_TYPE_CGROUP_SOCK program")
        with self._lock:
            self.sock_progs.append(core)

        def detach() -> None:
            with self._lock:
                if core in self.sock_progs:
                    self.sock_progs.remove(core)
        return detach

    def _run_sock_progs(self, sock: HostSocket) -> None:
        from pybpf.errors import BpfError
        from pybpf.runtime.context import RunContext

        post_bind = INET4_POST_BIND if sock.family == AF_INET else INET6_POST_BIND
        for when in (INET_SOCK_CREATE, post_bind):
            for prog in list(self.sock_progs):
                att = getattr(prog, "expected_attach_type", 0) or INET_SOCK_CREATE
                if att != when:
                    continue
                rctx = RunContext(cpu=0, prog=prog, kernel=self.kernel)
                rctx.data["sock"] = sock
                if not int(prog.run(sock.addr, ctx=rctx, cpu=0)) & 1:
                    raise BpfError(errno.EPERM, f"socket refused by cgroup/sock program "
                                   f"{getattr(prog, 'name_str', '') or ''}".rstrip())
        mv = sock.region.mv  # the programs may have set these: keep the attributes in step
        sock.mark = int(struct.unpack_from("<I", mv, OFF_MARK)[0])
        sock.priority = int(struct.unpack_from("<I", mv, OFF_PRIORITY)[0])
        sock.bound_dev_if = int(struct.unpack_from("<i", mv, OFF_BOUND_DEV_IF)[0])

    def __iter__(self) -> Any:
        return iter(list(self._socks))

    def __len__(self) -> int:
        return len(self._socks)

    def _forget(self, sock: HostSocket) -> None:
        with self._lock:
            self._socks = [s for s in self._socks if s is not sock]
            self._by_addr.pop(sock.addr, None)

    def by_addr(self, addr: int) -> HostSocket | None:
        """The socket whose ``struct sock`` starts at ``addr`` (a helper's argument)."""
        return self._by_addr.get(addr)

    def by_cookie(self, cookie: int) -> HostSocket | None:
        for s in self._socks:
            if struct.unpack_from("<Q", s.region.mv, OFF_COOKIE)[0] == cookie:
                return s
        return None

    def gen_cookie(self, sock: HostSocket) -> int:
        with self._lock:
            cur = int(struct.unpack_from("<Q", sock.region.mv, OFF_COOKIE)[0])
            if not cur:
                cur = next(self._cookies)
                struct.pack_into("<Q", sock.region.mv, OFF_COOKIE, cur)
            return cur

    # -- sk_lookup programs (BPF_SK_LOOKUP attached to the namespace) --------------------
    def attach_sk_lookup(self, prog: Any) -> Callable[[], None]:
        """Run ``prog`` (an SK_LOOKUP :class:`pybpf.program.Program` or core prog) on every
        listener/unconnected lookup, in attach order, as ``BPF_LINK_CREATE`` with
        ``BPF_SK_LOOKUP`` on a netns does. Returns the detach function."""
        core = getattr(prog, "obj", prog)
        if getattr(core, "type", None) != BPF_PROG_TYPE_SK_LOOKUP:
            raise ValueError("attach_sk_lookup needs a BPF_PROG_TYPE_SK_LOOKUP program")
        with self._lock:
            self.sk_lookup_progs.append(core)

        def detach() -> None:
            with self._lock:
                if core in self.sk_lookup_progs:
                    self.sk_lookup_progs.remove(core)
        return detach

    def _run_sk_lookup(self, proto: int, family: int, saddr: Addr, sport: int, daddr: Addr,
                       dport: int, dif: int) -> HostSocket | bool | None:
        """``bpf_sk_lookup_run_v4/v6``: the selected socket, ``False`` when a program
        dropped the lookup (``-ECONNREFUSED``), ``None`` to go on with the normal lookup."""
        progs = list(self.sk_lookup_progs)
        if not progs:
            return None
        from pybpf.progs.testrun_sk_lookup import SkLookupKern, run_sk_lookup_array

        kctx = SkLookupKern(family=family, protocol=proto, saddr=saddr.packed,
                            sport_be=int.from_bytes(sport.to_bytes(2, "big"), "little"),
                            daddr=daddr.packed, dport=dport, ingress_ifindex=dif)
        try:
            verdict = run_sk_lookup_array(progs, self.kernel, kctx)
            if not verdict:
                return False
            return self.by_addr(kctx.selected_sk) if kctx.selected_sk else None
        finally:
            kctx.free()

    def lookup(self, proto: str, remote: Any, local: Any, *, dif: int = 0) -> HostSocket | None:
        """The socket a packet from ``remote`` to ``local`` (``(address, port)``) is
        delivered to, sk_lookup programs included — what the host's stack would pick."""
        ra, rp = _endpoint(remote, None)
        la, lp = _endpoint(local, None)
        family = AF_INET6 if la.version == 6 else AF_INET
        if proto == "tcp":
            return self.lookup_tcp(family, ra, rp, la, lp, dif)
        if proto == "udp":
            return self.lookup_udp(family, ra, rp, la, lp, dif)
        raise ValueError(f"proto must be 'tcp' or 'udp', not {proto!r}")

    # -- lookups ------------------------------------------------------------------------
    def lookup_tcp(self, family: int, saddr: Addr, sport: int, daddr: Addr, dport: int,
                   dif: int = 0) -> HostSocket | None:
        """``__inet_lookup``: the established socket of this 4-tuple (``saddr``/``sport``
        is the remote end), else what sk_lookup programs select (or refuse), else the best
        listener on ``daddr``/``dport``."""
        for s in self._socks:
            if (s.proto == "tcp" and s.family == family and s.state != TCP_LISTEN
                    and s.remote is not None and s.remote == (saddr, sport)
                    and s.local == (daddr, dport) and s.bound_dev_if in (0, dif)):
                return s
        picked = self._run_sk_lookup(IPPROTO_TCP, family, saddr, sport, daddr, dport, dif)
        if picked is False:
            return None
        if picked is not None:
            return picked  # type: ignore[return-value]
        return self._best(self._listeners(family, daddr, dport, dif))

    def _listeners(self, family: int, daddr: Addr, dport: int,
                   dif: int) -> list[tuple[int, HostSocket]]:
        out = []
        for s in self._socks:
            if s.proto != "tcp" or s.state != TCP_LISTEN or s.local[1] != dport:
                continue
            score = _addr_score(s, family, daddr)
            if score < 0:
                continue
            if s.bound_dev_if:
                if s.bound_dev_if != dif:
                    continue
                score += 2
            out.append((score, s))
        return out

    def lookup_udp(self, family: int, saddr: Addr, sport: int, daddr: Addr, dport: int,
                   dif: int = 0) -> HostSocket | None:
        """``__udp4_lib_lookup``/``__udp6_lib_lookup``: a connected socket of this 4-tuple,
        else what sk_lookup programs select (or refuse), else the best-scoring socket
        bound to ``dport`` (a connected one must match the remote end)."""
        best = self._udp_scored(family, saddr, sport, daddr, dport, dif)
        if best is not None and best.state == TCP_ESTABLISHED:
            return best
        picked = self._run_sk_lookup(IPPROTO_UDP, family, saddr, sport, daddr, dport, dif)
        if picked is False:
            return None
        if picked is not None:
            return picked  # type: ignore[return-value]
        return best

    def _udp_scored(self, family: int, saddr: Addr, sport: int, daddr: Addr, dport: int,
                    dif: int) -> HostSocket | None:
        cands = []
        for s in self._socks:
            if s.proto != "udp" or s.local[1] != dport:
                continue
            score = _addr_score(s, family, daddr)
            if score < 0:
                continue
            if s.remote is not None:
                if s.remote[0] != saddr and not s.remote[0].is_unspecified:
                    continue
                if not s.remote[0].is_unspecified:
                    score += 4
                if s.remote[1]:
                    if s.remote[1] != sport:
                        continue
                    score += 4
            if s.bound_dev_if:
                if s.bound_dev_if != dif:
                    continue
                score += 4
            cands.append((score, s))
        return self._best(cands)

    @staticmethod
    def _best(cands: list[tuple[int, HostSocket]]) -> HostSocket | None:
        best: HostSocket | None = None
        top = -1
        for score, s in cands:  # first declared wins a tie, like a hash chain walk
            if score > top:
                best, top = s, score
        return best

    def close(self) -> None:
        for s in list(self._socks):
            s.close()


def _addr_score(s: HostSocket, family: int, daddr: Addr) -> int:
    """How well ``s``'s local address matches ``daddr`` (-1: not at all): an exact address
    beats a wildcard, an AF_INET socket beats a dual-stack AF_INET6 one for IPv4."""
    local = s.local[0]
    if family == AF_INET:
        if s.family == AF_INET:
            if local.is_unspecified:
                return 2
            return 8 if local == daddr else -1
        if s.ipv6only:
            return -1
        if local.is_unspecified:
            return 1
        mapped = local.packed[:12] == b"\0" * 10 + b"\xff\xff"
        return 8 if mapped and local.packed[12:] == daddr.packed else -1
    if s.family != AF_INET6:
        return -1
    if local.is_unspecified:
        return 2
    return 8 if local == daddr else -1


def parse_tuple(mem: bytes) -> tuple[int, Addr, int, Addr, int] | None:
    """``struct bpf_sock_tuple`` by its length (12: ipv4, 36: ipv6) → (family, saddr,
    sport, daddr, dport) with host-order ports; ``None`` for any other length."""
    if len(mem) == 12:
        return (AF_INET, ipaddress.IPv4Address(mem[0:4]), int.from_bytes(mem[8:10], "big"),
                ipaddress.IPv4Address(mem[4:8]), int.from_bytes(mem[10:12], "big"))
    if len(mem) == 36:
        return (AF_INET6, ipaddress.IPv6Address(mem[0:16]), int.from_bytes(mem[32:34], "big"),
                ipaddress.IPv6Address(mem[16:32]), int.from_bytes(mem[34:36], "big"))
    return None


def socket_table(kernel: Any) -> SocketTable:
    """``kernel.sockets``, created on first use (also for kernels without the property)."""
    if kernel is None:
        from pybpf.kernel import default_kernel

        kernel = default_kernel()
    return kernel.subsystem("_sockets", SocketTable)
