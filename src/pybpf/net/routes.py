"""The host's routing: links (ifindex, MTU, MAC, forwarding), addresses, FIB tables and
neighbours of one :class:`~pybpf.Kernel` — what ``bpf_fib_lookup`` consults.

The host configures it as it would with ``ip``::

    r = kernel.routes
    r.link("eth0", ifindex=4, mtu=1400, mac="02:fc:00:00:00:01")
    r.addr("192.0.2.2/24", dev="eth0")            # also the connected and local routes
    r.add("default", gw="192.0.2.1", dev="eth0")
    r.add("10.9.0.0/16", type="blackhole")
    r.neigh("192.0.2.1", "02:fc:00:00:00:05", dev="eth0")

Lookups follow the kernel's: ``local`` (255) and ``main`` (254) form one trie (Linux merges
them while there are no policy rules), then ``default`` (253), unless a direct lookup names
one table; longest prefix, then lowest metric; an
egress lookup (``oif``) only takes routes through that device. A result is a
:class:`FibResult` whose type says unicast / local / broadcast / blackhole /
unreachable / prohibit, as ``fib_lookup``'s ``res.type`` (or its errno) does.

Links default to forwarding enabled (a configured router), unlike a fresh Linux host; the
loopback (ifindex 1, MTU 65536) always exists and does not forward.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pybpf.kernel import Kernel

RT_TABLE_DEFAULT, RT_TABLE_MAIN, RT_TABLE_LOCAL = 253, 254, 255
TABLE_NAMES = {"default": RT_TABLE_DEFAULT, "main": RT_TABLE_MAIN, "local": RT_TABLE_LOCAL}
ROUTE_TYPES = ("unicast", "local", "broadcast", "blackhole", "unreachable", "prohibit",
               "throw", "anycast", "multicast")
#: neighbour states with a usable link-layer address (``NUD_VALID``)
NUD_VALID = frozenset({"reachable", "stale", "delay", "probe", "permanent", "noarp"})
NUD_STATES = NUD_VALID | {"incomplete", "failed", "none"}
LOOPBACK_IFINDEX = 1

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


def _mac(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 6:
            raise ValueError("a MAC address is 6 bytes")
        return bytes(value)
    parts = str(value).replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC address {value!r}")
    return bytes(int(p, 16) for p in parts)


def _net(prefix: Any) -> Net:
    if prefix in ("default", "0/0"):
        return ipaddress.IPv4Network("0.0.0.0/0")
    if prefix == "default6":
        return ipaddress.IPv6Network("::/0")
    return ipaddress.ip_network(str(prefix), strict=False)


def _table_id(table: int | str) -> int:
    if isinstance(table, str):
        try:
            return TABLE_NAMES[table]
        except KeyError:
            return int(table)
    if not 0 < int(table) <= 0xFFFFFFFF:
        raise ValueError(f"routing table id {table} out of range")
    return int(table)


@dataclass
class Link:
    """A device as routing sees it (``struct net_device``/``in_device`` fields)."""

    name: str
    ifindex: int
    mtu: int = 1500
    mac: bytes = bytes(6)
    forwarding: bool = True
    up: bool = True
    hard_header_len: int = 14
    forwarding6: bool | None = None  # IPv6 forwarding when it differs from IPv4's
    addrs: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = field(default_factory=list)


@dataclass(frozen=True)
class Route:
    """One FIB entry (``fib_alias`` + ``fib_info`` + one nexthop)."""

    dst: Net
    type: str = "unicast"
    table: int = RT_TABLE_MAIN
    ifindex: int = 0
    gw: IpAddr | None = None
    src: IpAddr | None = None
    metric: int = 0
    mtu: int = 0  # the route's MTU metric (``mtu lock N``: ``mtu_lock``)
    mtu_lock: bool = False


@dataclass(frozen=True)
class Neighbour:
    addr: IpAddr
    ifindex: int
    mac: bytes
    state: str = "reachable"


@dataclass(frozen=True)
class FibResult:
    """``struct fib_result`` reduced to what ``bpf_fib_lookup`` reads."""

    route: Route
    ifindex: int

    @property
    def type(self) -> str:
        return self.route.type


class RouteTable:
    """Links, addresses, routes and neighbours of one instance."""

    def __init__(self, kernel: Kernel | None = None) -> None:
        self.kernel = kernel
        self._lock = threading.Lock()
        self.links: dict[int, Link] = {}
        self.routes: list[Route] = []
        self.neighbours: dict[tuple[int, IpAddr], Neighbour] = {}
        #: a Python stand-in for the whole helper: ``fn(params, flags, ctx) -> rc``
        #: (``params`` a :class:`pybpf.helpers.fib.FibParams` to modify); None: the table
        self.mock: Callable[..., int] | None = None
        #: ``net.ipv4.ip_forward_use_pmtu``: forwarding honours unlocked route MTUs too
        self.ip_forward_use_pmtu = False
        self.link("lo", ifindex=LOOPBACK_IFINDEX, mtu=65536, forwarding=False)

    # -- configuration (``ip link`` / ``ip addr`` / ``ip route`` / ``ip neigh``) ----------
    def link(self, name: str, *, ifindex: int | None = None, mtu: int | None = None,
             mac: Any = None, forwarding: bool | None = None, up: bool | None = None,
             forwarding6: bool | None = None) -> Link:
        """Declare or update a link. Its ifindex is the instance's netdev of that name
        (created if needed) unless ``ifindex`` is given."""
        with self._lock:
            cur = self.by_name(name)
            if cur is None:
                if ifindex is None:
                    ifindex = self._netdev_ifindex(name)
                if ifindex <= 0:
                    raise ValueError(f"ifindex must be positive, not {ifindex}")
                if ifindex in self.links:
                    raise ValueError(f"ifindex {ifindex} is already {self.links[ifindex].name}")
                cur = self.links[ifindex] = Link(name, ifindex)
            if mtu is not None:
                if not 68 <= int(mtu) <= 0xFFFFFF:
                    raise ValueError(f"MTU {mtu} out of range")
                cur.mtu = int(mtu)
            if mac is not None:
                cur.mac = _mac(mac)
            if forwarding is not None:
                cur.forwarding = bool(forwarding)
            if up is not None:
                cur.up = bool(up)
            if forwarding6 is not None:
                cur.forwarding6 = bool(forwarding6)
            return cur

    def _netdev_ifindex(self, name: str) -> int:
        devs = getattr(self.kernel, "netdevs", None) if self.kernel is not None else None
        if devs is not None:
            dev = devs.by_name(name) or devs.create(name)
            return int(dev.ifindex)
        return max(self.links, default=LOOPBACK_IFINDEX) + 1

    def by_name(self, name: str) -> Link | None:
        return next((lk for lk in self.links.values() if lk.name == name), None)

    def dev(self, dev: str | int) -> Link:
        link = self.links.get(dev) if isinstance(dev, int) else self.by_name(dev)
        if link is None:
            raise ValueError(f"no such device {dev!r} (declare it with routes.link())")
        return link

    def addr(self, iface: str, *, dev: str | int) -> None:
        """``ip addr add``: the address, its local route (table local) and, for a prefix
        shorter than the host, the connected route (table main)."""
        ifa = ipaddress.ip_interface(iface)
        link = self.dev(dev)
        link.addrs.append(ifa)
        self.add(str(ifa.ip), type="local", dev=link.ifindex, table=RT_TABLE_LOCAL, src=ifa.ip)
        if ifa.network.prefixlen < ifa.max_prefixlen:
            metric = 0 if ifa.version == 4 else 256
            self.add(str(ifa.network), dev=link.ifindex, src=ifa.ip, metric=metric)
        if ifa.version == 4 and ifa.network.prefixlen < 31:
            self.add(str(ifa.network.broadcast_address), type="broadcast", dev=link.ifindex,
                     table=RT_TABLE_LOCAL, src=ifa.ip)

    def add(self, prefix: str, *, dev: str | int | None = None, gw: Any = None,
            type: str = "unicast", table: int | str = RT_TABLE_MAIN, metric: int = 0,
            src: Any = None, mtu: int = 0, mtu_lock: bool = False) -> Route:
        """``ip route add``. A unicast route needs ``dev`` or a ``gw`` reachable through a
        connected route (its device is then that route's)."""
        if type not in ROUTE_TYPES:
            raise ValueError(f"route type must be one of {', '.join(ROUTE_TYPES)}")
        dst = _net(prefix)
        gwa = ipaddress.ip_address(str(gw)) if gw is not None else None
        ifindex = self.dev(dev).ifindex if dev is not None else 0
        if type in ("unicast", "local", "broadcast") and not ifindex:
            if gwa is None:
                raise ValueError("a unicast route needs dev= or gw=")
            via = self.lookup(gwa, table=RT_TABLE_MAIN)
            if via is None or via.route.type != "unicast" or via.route.gw is not None:
                raise ValueError(f"gateway {gwa} is not on a connected network")
            ifindex = via.ifindex
        if gwa is not None and gwa.version != dst.version:
            raise ValueError("a gateway of another family is not supported")
        route = Route(dst, type, _table_id(table), ifindex, gwa,
                      ipaddress.ip_address(str(src)) if src is not None else None,
                      int(metric), int(mtu), bool(mtu_lock))
        with self._lock:
            self.routes.append(route)
        return route

    def delete(self, prefix: str, *, table: int | str = RT_TABLE_MAIN) -> None:
        dst, tid = _net(prefix), _table_id(table)
        with self._lock:
            before = len(self.routes)
            self.routes = [r for r in self.routes if not (r.dst == dst and r.table == tid)]
            if len(self.routes) == before:
                raise KeyError(f"no route {prefix} in table {tid}")

    def neigh(self, addr: Any, mac: Any = None, *, dev: str | int,
              state: str = "reachable") -> Neighbour:
        """``ip neigh replace``: ``addr`` is at ``mac`` on ``dev``."""
        if state not in NUD_STATES:
            raise ValueError(f"neighbour state must be one of {', '.join(sorted(NUD_STATES))}")
        link = self.dev(dev)
        n = Neighbour(ipaddress.ip_address(str(addr)), link.ifindex,
                      _mac(mac) if mac is not None else bytes(6), state)
        with self._lock:
            self.neighbours[(link.ifindex, n.addr)] = n
        return n

    def __iter__(self) -> Iterator[Route]:
        return iter(list(self.routes))

    # -- lookups ------------------------------------------------------------------------
    def lookup(self, daddr: IpAddr, *, table: int | None = None, oif: int = 0) -> FibResult | None:
        """``fib_lookup`` (``table`` None) or ``fib_table_lookup`` of one table; None when
        nothing matches (``-ENETUNREACH``).

        Without policy rules Linux keeps ``local`` and ``main`` in one trie (the tables are
        "merged"): a lookup in either sees both, and a full lookup is that trie, then the
        ``default`` table. A ``throw`` route ends a table's lookup without a result.
        """
        merged = (RT_TABLE_MAIN, RT_TABLE_LOCAL)
        if table is None:
            passes: list[tuple[int, ...]] = [merged, (RT_TABLE_DEFAULT,)]
        elif table in merged:
            passes = [merged]
        else:
            passes = [(table,)]
        routes = list(self.routes)
        for tids in passes:
            best: Route | None = None
            for r in routes:
                if r.table not in tids or r.dst.version != daddr.version or daddr not in r.dst:
                    continue
                if oif and r.ifindex and r.ifindex != oif and r.type == "unicast":
                    continue
                if best is None or (r.dst.prefixlen, -r.metric) > (best.dst.prefixlen, -best.metric):
                    best = r
            if best is not None and best.type != "throw":
                return FibResult(best, best.ifindex)
        return None

    def path_mtu(self, res: FibResult) -> int:
        """``ip_mtu_from_fib_result``: a route's MTU only when locked (or with
        ``ip_forward_use_pmtu``), else the output device's."""
        r = res.route
        if r.mtu and (r.mtu_lock or self.ip_forward_use_pmtu):
            return r.mtu
        link = self.links.get(res.ifindex)
        return min(link.mtu, 0xFFFF) if link is not None else 0

    def has_table(self, tid: int) -> bool:
        return tid in (RT_TABLE_MAIN, RT_TABLE_LOCAL) or any(r.table == tid for r in self.routes)

    def neighbour(self, ifindex: int, addr: IpAddr) -> Neighbour | None:
        return self.neighbours.get((ifindex, addr))

    def prefsrc(self, res: FibResult, dst: IpAddr) -> IpAddr | None:
        """``fib_result_prefsrc``: the route's ``src``, else an address of the output
        device (one on the destination's network first)."""
        if res.route.src is not None:
            return res.route.src
        link = self.links.get(res.ifindex)
        if link is None:
            return None
        target = res.route.gw or dst
        same = [a.ip for a in link.addrs if a.version == dst.version and target in a.network]
        anyv = [a.ip for a in link.addrs if a.version == dst.version]
        for cands in (same, anyv):
            if cands:
                return cands[0]
        return None


def import_ip_json(table: RouteTable, links: list[dict[str, Any]],
                   routes: list[dict[str, Any]], neighbours: list[dict[str, Any]], *,
                   forwarding: dict[str, tuple[bool, bool]] | None = None,
                   locked_mtu: frozenset[str] = frozenset()) -> None:
    """Configure ``table`` from ``ip -j addr`` (links with their addresses), ``ip -j route
    show table all`` and ``ip -j neigh`` output. ``forwarding``: name -> (IPv4, IPv6)
    forwarding (``/proc/sys/net/ipv{4,6}/conf/NAME/forwarding``; default on);
    ``locked_mtu``: destinations whose route MTU is locked (``ip`` JSON does not say)."""
    fwd = forwarding or {}
    for lk in links:
        name = str(lk["ifname"])
        f4, f6 = fwd.get(name, (True, True))
        existing = table.links.get(int(lk["ifindex"]))
        if existing is not None and existing.name != name:
            del table.links[existing.ifindex]
        link = table.link(name, ifindex=int(lk["ifindex"]), mtu=int(lk.get("mtu", 1500)),
                          mac=lk.get("address") if len(str(lk.get("address", ""))) == 17
                          else None, up="UP" in lk.get("flags", []), forwarding=f4,
                          forwarding6=f6)
        for a in lk.get("addr_info", []):
            if a.get("family") in ("inet", "inet6"):
                link.addrs.append(ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}"))
    for r in routes:
        rtype = str(r.get("type", "unicast"))
        if rtype not in ROUTE_TYPES:
            continue
        dst = str(r.get("dst", "default"))
        gw = r.get("gateway")
        v6 = ":" in dst or (gw is not None and ":" in str(gw))
        if dst == "default":
            dst = "::/0" if v6 else "0.0.0.0/0"
        mtu = 0
        for m in r.get("metrics", []):
            if isinstance(m, dict) and isinstance(m.get("mtu"), int):
                mtu = int(m["mtu"])
        dev = r.get("dev")
        table.add(dst, dev=dev if dev in {lk.name for lk in table.links.values()} else None,
                  gw=gw if rtype == "unicast" else None, type=rtype,
                  table=r.get("table", RT_TABLE_MAIN), metric=int(r.get("metric", 0)),
                  src=r.get("prefsrc"), mtu=mtu, mtu_lock=dst in locked_mtu)
    for n in neighbours:
        if "lladdr" not in n or "dst" not in n:
            continue
        state = str((n.get("state") or ["none"])[0]).lower()
        table.neigh(n["dst"], n["lladdr"], dev=n["dev"],
                    state=state if state in NUD_STATES else "none")


def read_host() -> dict[str, Any]:
    """The running host's routing state as :func:`import_ip_json` takes it (``ip -j addr``,
    ``ip -j route show table all``, ``ip -j neigh``, per-link forwarding sysctls, locked
    route MTUs from the text dump). Raises ``OSError`` without ``ip``."""
    import json
    import subprocess

    def ip(*args: str) -> Any:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True)
        return json.loads(out.stdout or "[]")

    links = ip("addr")
    fwd: dict[str, tuple[bool, bool]] = {}
    for lk in links:
        vals = []
        for fam in ("ipv4", "ipv6"):
            try:
                with open(f"/proc/sys/net/{fam}/conf/{lk['ifname']}/forwarding") as f:
                    vals.append(f.read().strip() == "1")
            except OSError:
                vals.append(False)
        fwd[str(lk["ifname"])] = (vals[0], vals[1])
    text = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True,
                          text=True, check=True).stdout
    locked = sorted({line.split()[0] for line in text.splitlines() if " mtu lock " in line})
    return {"links": links, "routes": ip("route", "show", "table", "all"),
            "neighbours": ip("neigh"), "forwarding": fwd, "locked_mtu": locked}


def from_host(table: RouteTable, state: dict[str, Any] | None = None) -> None:
    """Copy the host's links, addresses, routes and neighbours into ``table`` (``state``:
    a :func:`read_host` result, e.g. saved as JSON elsewhere) — so ``bpf_fib_lookup`` in
    pybpf sees what it would see on that machine."""
    st = dict(state if state is not None else read_host())
    fwd = {k: (bool(v[0]), bool(v[1])) for k, v in dict(st.get("forwarding", {})).items()}
    import_ip_json(table, st["links"], st["routes"], st["neighbours"], forwarding=fwd,
                   locked_mtu=frozenset(st.get("locked_mtu", ())))


def route_table(kernel: Any) -> RouteTable:
    """``kernel.routes``, created on first use."""
    return kernel.subsystem("_routes", RouteTable)
