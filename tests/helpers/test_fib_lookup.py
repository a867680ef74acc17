"""``bpf_fib_lookup`` over a host routing table, against Linux 6.18's FIB.

The live kernel's side runs in a private network namespace (``unshare -n``): veth links,
addresses, routes, neighbours and per-link forwarding are configured with ``ip``/sysctl,
then a tc program calling ``bpf_fib_lookup`` is test-run once per case. pybpf is given
the same configuration through ``kernel.routes`` and runs the same program on the same
packets: return code and the ``struct bpf_fib_lookup`` written back (data_out) must agree.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import struct
import subprocess
import sys
from functools import cache
from typing import Any

import pytest

import pybpf
from pybpf.helpers.fib import (
    BPF_FIB_LKUP_RET_BLACKHOLE,
    BPF_FIB_LKUP_RET_FRAG_NEEDED,
    BPF_FIB_LKUP_RET_NO_NEIGH,
    BPF_FIB_LKUP_RET_SUCCESS,
    BPF_FIB_LOOKUP_DIRECT,
    BPF_FIB_LOOKUP_OUTPUT,
    BPF_FIB_LOOKUP_SKIP_NEIGH,
    BPF_FIB_LOOKUP_SRC,
    BPF_FIB_LOOKUP_TBID,
    FibParams,
)
from pybpf.isa.insn import Insn, encode
from pybpf.program import Program

SCHED_CLS, XDP = 3, 6
MAC0, MAC1 = "02:00:00:00:00:01", "02:00:00:00:00:02"
GW0_MAC, NB8_MAC = "02:00:00:00:00:11", "02:00:00:00:00:18"

# (ip commands run in the namespace) — mirrored by configure() below
NETNS_SETUP = f"""
ip link add v0 type veth peer name v0p
ip link add v1 type veth peer name v1p
for d in v0 v0p v1 v1p; do ip link set $d up; done
ip link set v0 address {MAC0}
ip link set v1 address {MAC1}
ip link set v1 mtu 1400
ip addr add 10.1.0.2/24 dev v0
ip addr add 10.2.0.2/24 dev v1
ip -6 addr add fd01::2/64 dev v0 nodad
ip route add default via 10.1.0.1
ip route add 10.3.0.0/16 via 10.2.0.1 metric 10
ip route add blackhole 10.4.0.0/16
ip route add unreachable 10.5.0.0/16
ip route add prohibit 10.6.0.0/16
ip route add 10.7.0.0/16 dev v1 table 100
ip route add 10.8.0.0/24 dev v0 mtu lock 1000
ip route add 10.9.0.0/24 dev v0 mtu 1000
ip -6 route add default via fd01::1 dev v0 metric 1024
ip neigh add 10.1.0.1 lladdr {GW0_MAC} dev v0 nud permanent
ip neigh add 10.8.0.5 lladdr {NB8_MAC} dev v0 nud permanent
ip -6 neigh add fd01::1 lladdr {GW0_MAC} dev v0 nud permanent
sysctl -qw net.ipv4.conf.v0.forwarding=1
sysctl -qw net.ipv4.conf.v1.forwarding=0
sysctl -qw net.ipv6.conf.v0.forwarding=1
"""


def configure(k: pybpf.Kernel, ifx: dict[str, int]) -> None:
    r = k.routes
    r.link("v0", ifindex=ifx["v0"], mac=MAC0, forwarding=True)
    r.link("v0p", ifindex=ifx["v0p"], forwarding=False)
    r.link("v1", ifindex=ifx["v1"], mac=MAC1, mtu=1400, forwarding=False)
    r.link("v1p", ifindex=ifx["v1p"], forwarding=False)
    r.addr("10.1.0.2/24", dev="v0")
    r.addr("10.2.0.2/24", dev="v1")
    r.addr("fd01::2/64", dev="v0")
    r.add("default", gw="10.1.0.1")
    r.add("10.3.0.0/16", gw="10.2.0.1", metric=10)
    r.add("10.4.0.0/16", type="blackhole")
    r.add("10.5.0.0/16", type="unreachable")
    r.add("10.6.0.0/16", type="prohibit")
    r.add("10.7.0.0/16", dev="v1", table=100)
    r.add("10.8.0.0/24", dev="v0", mtu=1000, mtu_lock=True, src="10.1.0.2")
    r.add("10.9.0.0/24", dev="v0", mtu=1000, src="10.1.0.2")
    r.add("default6", gw="fd01::1", dev="v0", metric=1024)
    r.neigh("10.1.0.1", GW0_MAC, dev="v0", state="permanent")
    r.neigh("10.8.0.5", NB8_MAC, dev="v0", state="permanent")
    r.neigh("fd01::1", GW0_MAC, dev="v0", state="permanent")


def fib_prog(xdp: bool = False) -> list[Insn]:
    """Load params (64 bytes) + flags (u32) from the packet after the Ethernet header,
    call bpf_fib_lookup, store params back, return its result (tc: skb_load/store_bytes;
    XDP: xdp_load/store_bytes, and the MTU is always checked)."""
    load, store = (189, 190) if xdp else (26, 9)
    return [
        Insn(0xBF, 6, 1),
        Insn(0xBF, 1, 6), Insn(0xB7, 2, 0, 0, 14), Insn(0xBF, 3, 10), Insn(0x07, 3, 0, 0, -72),
        Insn(0xB7, 4, 0, 0, 68), Insn(0x85, 0, 0, 0, load),
        Insn(0x61, 4, 10, -8),
        Insn(0xBF, 1, 6), Insn(0xBF, 2, 10), Insn(0x07, 2, 0, 0, -72), Insn(0xB7, 3, 0, 0, 64),
        Insn(0x85, 0, 0, 0, 69),
        Insn(0xBF, 7, 0),
        Insn(0xBF, 1, 6), Insn(0xB7, 2, 0, 0, 14), Insn(0xBF, 3, 10), Insn(0x07, 3, 0, 0, -72),
        Insn(0xB7, 4, 0, 0, 64), Insn(0xB7, 5, 0, 0, 0), Insn(0x85, 0, 0, 0, store),
        Insn(0xBF, 0, 7), Insn(0x95),
    ]


def packet(family: int, dst: str, ifname: str, flags: int = 0, *, tot_len: int = 0,
           tbid: int = 0, src: str | None = None, ifx: dict[str, int]) -> bytes:
    ifindex = ifx.get(ifname, 99)
    a = ipaddress.ip_address(dst)
    s = ipaddress.ip_address(src) if src else None
    p = FibParams(family=family, l4_protocol=6, sport=0x3412, dport=0x5000, tot_len=tot_len,
                  ifindex=ifindex, src=(s.packed if s else b"").ljust(16, b"\0"),
                  dst=a.packed.ljust(16, b"\0"), tbid=tbid)
    return bytes(12) + b"\x08\x00" + p.encode() + struct.pack("<I", flags)


#: id -> packet arguments
CASES: dict[str, tuple[Any, ...]] = {
    "gw": (2, "8.8.8.8", "v0", 0),
    "gw_src": (2, "8.8.8.8", "v0", BPF_FIB_LOOKUP_SRC),
    "no_neigh": (2, "10.3.1.1", "v0", 0),
    "skip_neigh": (2, "10.3.1.1", "v0", BPF_FIB_LOOKUP_SKIP_NEIGH),
    "skip_neigh_src": (2, "10.3.1.1", "v0", BPF_FIB_LOOKUP_SKIP_NEIGH | BPF_FIB_LOOKUP_SRC),
    "blackhole": (2, "10.4.0.1", "v0", 0),
    "unreachable": (2, "10.5.0.1", "v0", 0),
    "prohibit": (2, "10.6.0.1", "v0", 0),
    "local": (2, "10.1.0.2", "v0", 0),
    "broadcast": (2, "10.1.0.255", "v0", 0),
    "connected_no_neigh": (2, "10.1.0.9", "v0", 0),
    "fwd_disabled": (2, "8.8.8.8", "v1", 0),
    "enodev": (2, "8.8.8.8", "nodev", 0),
    "eafnosupport": (3, "8.8.8.8", "v0", 0),
    "bad_flag": (2, "8.8.8.8", "v0", 0x40),
    "tbid100": (2, "10.7.0.1", "v0",
                BPF_FIB_LOOKUP_DIRECT | BPF_FIB_LOOKUP_TBID | BPF_FIB_LOOKUP_SKIP_NEIGH, 0, 100),
    "tbid101": (2, "10.7.0.1", "v0", BPF_FIB_LOOKUP_DIRECT | BPF_FIB_LOOKUP_TBID, 0, 101),
    "direct_main": (2, "10.7.0.1", "v0", BPF_FIB_LOOKUP_DIRECT),
    "frag_needed": (2, "10.8.0.5", "v0", 0, 1500),
    "mtu_ok": (2, "10.8.0.5", "v0", 0, 900),
    "route_mtu_neigh": (2, "10.8.0.5", "v0", 0),
    "unlocked_mtu": (2, "10.9.0.5", "v0", BPF_FIB_LOOKUP_SKIP_NEIGH, 1200),
    "dev_mtu_exceeded": (2, "10.9.0.5", "v0", BPF_FIB_LOOKUP_SKIP_NEIGH, 1501),
    "v1_mtu": (2, "10.3.1.1", "v0", BPF_FIB_LOOKUP_SKIP_NEIGH, 1401),
    "output_filters_oif": (2, "10.3.1.1", "v0", BPF_FIB_LOOKUP_OUTPUT),
    "v6_gw": (10, "2001:db8::1", "v0", 0),
    "v6_link_local": (10, "fe80::1", "v0", 0),
    "v6_src": (10, "2001:db8::1", "v0", BPF_FIB_LOOKUP_SRC),
}


def random_cases(n: int = 150, seed: int = 7) -> dict[str, tuple[Any, ...]]:
    """Seeded random lookups over the configured prefixes, flags, devices and MTUs."""
    import random

    rnd = random.Random(seed)
    v4 = ["8.8.8.8", "10.1.0.1", "10.1.0.2", "10.1.0.9", "10.1.0.255", "10.2.0.1", "10.2.0.7",
          "10.3.4.5", "10.4.0.1", "10.5.1.1", "10.6.2.2", "10.7.0.1", "10.8.0.5", "10.8.0.6",
          "10.9.0.5", "127.0.0.1", "0.0.0.0", "255.255.255.255"]
    v6 = ["2001:db8::1", "fd01::1", "fd01::2", "fd01::9", "fe80::1", "ff02::1", "::1"]
    out = {}
    for i in range(n):
        fam = rnd.choice([2, 2, 2, 10, 0])
        dst = rnd.choice(v6 if fam == 10 else v4)
        flags = rnd.getrandbits(6) if rnd.random() < 0.95 else 0x40
        out[f"rnd{i}"] = (fam, dst, rnd.choice(["v0", "v0", "v1", "v0p", "nodev"]), flags,
                          rnd.choice([0, 0, 900, 1000, 1001, 1400, 1401, 1500, 1501, 65535]),
                          rnd.choice([0, 100, 101, 254, 255]))
    return out


CASES.update(random_cases())


def _packet(case: tuple[Any, ...], ifx: dict[str, int]) -> bytes:
    family, dst, ifname, flags, *rest = case
    tot_len = rest[0] if rest else 0
    tbid = rest[1] if len(rest) > 1 else 0
    return packet(family, dst, ifname, flags, tot_len=tot_len, tbid=tbid, ifx=ifx)


NETNS_RUNNER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pybpf.testing import kernel as K
from pybpf.isa.insn import Insn, encode
sys.path.insert(0, sys.argv[2])
import test_fib_lookup as T
import socket
ifx = {n: socket.if_nametoindex(n) for n in ("v0", "v0p", "v1", "v1p")}
from pybpf.net.routes import read_host
out = {"ifx": ifx, "runs": {}, "xdp": {}, "host": read_host()}
for ptype, key in ((T.SCHED_CLS, "runs"), (T.XDP, "xdp")):
    res = K.prog_load(ptype, encode(T.fib_prog(ptype == T.XDP)), log_level=1, log_size=1 << 16)
    assert res.ok, res.log
    for name, case in T.CASES.items():
        pkt = T._packet(case, ifx)
        r = K.prog_test_run(res.fd, pkt, len(pkt) + 64)
        out[key][name] = [r.errno, r.retval, r.data_out.hex()]
print(json.dumps(out))
"""


@cache
def kernel_results() -> dict[str, Any]:
    """Run every case in the live kernel, in a private network namespace."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip for a private network namespace")
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    script = NETNS_SETUP + f'\n"{sys.executable}" -c \'{NETNS_RUNNER}\' "{src}" ' \
        f'"{os.path.dirname(os.path.abspath(__file__))}"\n'
    proc = subprocess.run(["unshare", "-n", "sh", "-ec", script], capture_output=True,
                          text=True, timeout=120)
    if proc.returncode:
        pytest.skip(f"network namespace setup failed: {proc.stderr.strip()[-300:]}")
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


@pytest.mark.parametrize("name", sorted(n for n in CASES if not n.startswith("rnd")))
def test_fib_lookup_vs_kernel(kernel: Any, name: str) -> None:
    kres = kernel_results()
    ifx = kres["ifx"]
    k = pybpf.Kernel()
    configure(k, ifx)
    prog = Program.load(k, SCHED_CLS, fib_prog())
    pkt = _packet(CASES[name], ifx)
    r = prog.test_run(pkt, data_size_out=len(pkt) + 64)
    kerr, kret, kdata = kres["runs"][name]
    assert kerr == 0
    got = FibParams.decode(r.data_out[14:78])
    want = FibParams.decode(bytes.fromhex(kdata)[14:78])
    assert (r.retval, got) == (kret, want)


def test_fib_lookup_random_vs_kernel(kernel: Any) -> None:
    kres = kernel_results()
    ifx = kres["ifx"]
    k = pybpf.Kernel()
    configure(k, ifx)
    prog = Program.load(k, SCHED_CLS, fib_prog())
    names = [n for n in CASES if n.startswith("rnd")]
    bad = []
    for name in names:
        pkt = _packet(CASES[name], ifx)
        r = prog.test_run(pkt, data_size_out=len(pkt) + 64)
        _kerr, kret, kdata = kres["runs"][name]
        if (r.retval, r.data_out[14:78]) != (kret, bytes.fromhex(kdata)[14:78]):
            bad.append((name, CASES[name], r.retval, kret))
    assert not bad, f"{len(bad)}/{len(names)} differ: {bad[:5]}"


def test_routes_imported_from_ip_vs_kernel(kernel: Any) -> None:
    """pybpf configured from the namespace's own ``ip -j`` dumps (``routes.from_host``)
    instead of by hand gives the kernel's answers too."""
    from pybpf.net.routes import from_host

    kres = kernel_results()
    ifx = kres["ifx"]
    k = pybpf.Kernel()
    from_host(k.routes, kres["host"])
    assert k.routes.dev("v1").mtu == 1400 and not k.routes.dev("v1").forwarding
    prog = Program.load(k, SCHED_CLS, fib_prog())
    bad = []
    for name, case in CASES.items():
        pkt = _packet(case, ifx)
        r = prog.test_run(pkt, data_size_out=len(pkt) + 64)
        _kerr, kret, kdata = kres["runs"][name]
        if (r.retval, r.data_out[14:78]) != (kret, bytes.fromhex(kdata)[14:78]):
            bad.append((name, r.retval, kret))
    assert not bad, f"{len(bad)}/{len(CASES)} differ: {bad[:5]}"


def test_xdp_fib_lookup_vs_kernel(kernel: Any) -> None:
    """bpf_xdp_fib_lookup: same cases from an XDP program (the MTU is always checked)."""
    kres = kernel_results()
    ifx = kres["ifx"]
    k = pybpf.Kernel()
    configure(k, ifx)
    prog = Program.load(k, XDP, fib_prog(xdp=True))
    bad = []
    for name, case in CASES.items():
        pkt = _packet(case, ifx)
        r = prog.test_run(pkt, data_size_out=len(pkt) + 64)
        kerr, kret, kdata = kres["xdp"][name]
        assert kerr == 0
        if (r.retval, r.data_out[14:78]) != (kret, bytes.fromhex(kdata)[14:78]):
            bad.append((name, r.retval, kret))
    assert not bad, f"{len(bad)}/{len(CASES)} differ: {bad[:5]}"


# ------------------------------------------------------------ pybpf-only (no kernel)


def _run(k: pybpf.Kernel, case: tuple[Any, ...], ifx: dict[str, int]) -> tuple[int, FibParams]:
    prog = Program.load(k, SCHED_CLS, fib_prog())
    pkt = _packet(case, ifx)
    r = prog.test_run(pkt)
    return r.retval, FibParams.decode(r.data_out[14:78])


IFX = {"v0": 2, "v0p": 3, "v1": 4, "v1p": 5}


@pytest.fixture
def router() -> pybpf.Kernel:
    k = pybpf.Kernel()
    configure(k, IFX)
    return k


@pytest.mark.parametrize(("name", "rc"), [
    ("gw", BPF_FIB_LKUP_RET_SUCCESS), ("blackhole", BPF_FIB_LKUP_RET_BLACKHOLE),
    ("no_neigh", BPF_FIB_LKUP_RET_NO_NEIGH), ("frag_needed", BPF_FIB_LKUP_RET_FRAG_NEEDED),
])
def test_table_driven(router: pybpf.Kernel, name: str, rc: int) -> None:
    got, p = _run(router, CASES[name], IFX)
    assert got == rc
    if name == "gw":
        assert (p.ifindex, p.dst[:4], p.dmac, p.smac) == (
            2, bytes([10, 1, 0, 1]), bytes.fromhex("020000000011"), bytes.fromhex("020000000001"))
    if name == "frag_needed":
        assert p.mtu_result == 1000


def test_mock_from_python(router: pybpf.Kernel) -> None:
    seen: list[tuple[int, int]] = []

    def mock(p: FibParams, flags: int, ctx: Any) -> int:
        seen.append((p.ifindex, flags))
        p.ifindex, p.dmac = 42, b"\xaa" * 6
        return BPF_FIB_LKUP_RET_SUCCESS

    router.routes.mock = mock
    got, p = _run(router, CASES["blackhole"], IFX)
    assert got == 0 and p.ifindex == 42 and p.dmac == b"\xaa" * 6 and seen == [(2, 0)]


def test_helper_override(router: pybpf.Kernel) -> None:
    router.helpers.override(69, lambda ctx, *a: 7)
    assert _run(router, CASES["gw"], IFX)[0] == 7


def test_bad_configuration_is_a_clear_error() -> None:
    r = pybpf.Kernel().routes
    r.link("e0", ifindex=7)
    for call in (lambda: r.add("10.0.0.0/8"),                       # no dev, no gw
                 lambda: r.add("10.0.0.0/8", gw="10.9.9.9"),        # gw not connected
                 lambda: r.add("10.0.0.0/8", dev="nope"),
                 lambda: r.add("10.0.0.0/8", dev="e0", type="weird"),
                 lambda: r.link("e1", ifindex=7),
                 lambda: r.link("e0", mtu=10),
                 lambda: r.neigh("10.0.0.1", "zz", dev="e0"),
                 lambda: r.neigh("10.0.0.1", "02:00:00:00:00:01", dev="e0", state="odd"),
                 lambda: r.delete("10.0.0.0/8")):
        with pytest.raises((ValueError, KeyError)):
            call()


def test_links_follow_netdevs() -> None:
    k = pybpf.Kernel()
    dev = k.netdev("veth7")
    assert k.routes.link("veth7").ifindex == dev.ifindex
    assert k.routes.link("fresh").ifindex == k.netdevs.by_name("fresh").ifindex


def test_real_host_routes_vs_kernel(kernel: Any) -> None:
    """This machine's own routing (imported with ``routes.from_host``) against the live
    kernel's bpf_fib_lookup, over every link of the host."""
    from pybpf.net.routes import from_host, read_host

    if not shutil.which("ip"):
        pytest.skip("needs ip")
    state = read_host()
    ifx = {str(lk["ifname"]): int(lk["ifindex"]) for lk in state["links"]}
    k = pybpf.Kernel()
    from_host(k.routes, state)
    insns = fib_prog()
    res = kernel.prog_load(SCHED_CLS, encode(insns), log_level=1, log_size=1 << 16)
    assert res.ok, res.log
    prog = Program.load(k, SCHED_CLS, insns)
    cases = [(fam, dst, name, flags, tot)
             for name in [*ifx, "nodev"]
             for fam, dst in ((2, "8.8.8.8"), (2, "127.0.0.1"), (10, "2001:db8::1"))
             for flags in (0, BPF_FIB_LOOKUP_SKIP_NEIGH | BPF_FIB_LOOKUP_SRC, BPF_FIB_LOOKUP_OUTPUT)
             for tot in (0, 1500)]
    try:
        for case in cases:
            pkt = _packet(case, ifx)
            kr = kernel.prog_test_run(res.fd, pkt, len(pkt) + 64)
            r = prog.test_run(pkt, data_size_out=len(pkt) + 64)
            if case[2] != "nodev" and not _still_there(case[2], ifx[case[2]]):
                continue  # a transient link (another process's) came or went meanwhile
            assert (r.retval, r.data_out[14:78]) == (kr.retval, kr.data_out[14:78]), case
    finally:
        kernel.close(res.fd)


def _still_there(name: str, ifindex: int) -> bool:
    import socket

    try:
        return socket.if_nametoindex(name) == ifindex
    except OSError:
        return False
