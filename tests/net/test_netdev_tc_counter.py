"""End to end: mixed traffic through an XDP firewall and a tc ingress counter on a pybpf
device leaves the counters the same two programs leave in the live kernel when each
packet is run through BPF_PROG_TEST_RUN (XDP first; tc only for what XDP passes)."""

from __future__ import annotations

import ctypes
import struct
from pathlib import Path

import pytest

import pybpf.skel as skel
from pybpf.kernel import Kernel
from pybpf.net import packets as P
from pybpf.net.pcap import PcapWriter
from pybpf.uapi import BPF_MAP_UPDATE_ELEM, bpf_attr_map_elem

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DENY = ["10.0.0.66", "192.168.7.7"]
XDP_PASS = 2


def _traffic() -> list[bytes]:
    pkts = []
    for i in range(48):
        src = DENY[i % 2] if i % 7 == 0 else f"10.2.{i}.{i + 3}"
        proto = (P.IPPROTO_TCP, P.IPPROTO_UDP, P.IPPROTO_ICMP)[i % 3]
        pkts.append(P.ipv4(src, "10.0.0.1", proto, 2000 + i, 443, b"y" * (i * 3)))
        if i % 5 == 0:
            pkts.append(P.ipv6("2001:db8::7", "2001:db8::8", (6, 17, 58)[i % 3], 9, 10, b"z" * i))
    broadcast = P.eth(0x0806, P.arp_request()[14:], dst=b"\xff" * 6)
    multicast = P.eth(0x0800, P.ipv4("10.9.9.9", "224.0.0.1", P.IPPROTO_UDP)[14:],
                      dst=bytes.fromhex("01005e000001"))
    return [*pkts, P.arp_request(), broadcast, multicast]


def _deny(sysbpf, fd: int) -> None:  # type: ignore[no-untyped-def]
    for rule, ip in enumerate(DENY):
        kb = ctypes.create_string_buffer(struct.pack("<I4s", 32, P.ipv4_addr(ip)))
        vb = ctypes.create_string_buffer(struct.pack("<I", rule + 1))
        a = bpf_attr_map_elem(map_fd=fd, key=ctypes.addressof(kb), value=ctypes.addressof(vb))
        assert sysbpf(BPF_MAP_UPDATE_ELEM, a) == 0


def _stats(m) -> dict[tuple[int, int, int], tuple[int, int]]:  # type: ignore[no-untyped-def]
    out = {}
    for k, v in m.items():  # BTF-typed: struct members by name
        out[(k["eth_proto"], k["ip_proto"], k["pkt_type"])] = (v["packets"], v["bytes"])
    return out


def test_xdp_firewall_then_tc_counter_match_the_kernel(tmp_path: Path) -> None:
    from pybpf.testing import kernel as live

    ok, why = live.available()
    if not ok:
        pytest.skip(f"live kernel unavailable: {why}")
    pkts = _traffic()
    path = tmp_path / "mixed.pcap"
    with PcapWriter(path) as w:
        for p in pkts:
            w.write(p)

    # pybpf: a device whose address is the loopback's (what test_run's skb is built on),
    # fed from the pcap, XDP firewall then a tcx ingress counter
    k = Kernel()
    fw = skel.load(EXAMPLES / "xdp_firewall.o", kernel=k)
    tc = skel.load(EXAMPLES / "tc_counter.o", kernel=k)
    _deny(k.bpf, fw.maps.deny_v4.fd)
    dev = k.netdev("veth0", peer="veth1", mac="00:00:00:00:00:00",
                   broadcast="00:00:00:00:00:00")
    dev.attach_xdp(fw.progs.xdp_firewall)
    link = tc.progs.tc_count.attach_tcx(dev)
    dev.feed_pcap(str(path), progress=False)
    assert dev.stats.faults == 0, dev.last_fault
    got = _stats(tc.maps.tc_stats)
    link.close()

    # the live kernel, packet by packet
    kfw = skel.load(EXAMPLES / "xdp_firewall.o", kernel="live")
    ktc = skel.load(EXAMPLES / "tc_counter.o", kernel="live")
    try:
        def live_bpf(cmd: int, attr: object) -> int:
            ret, err = live.sys_bpf(cmd, attr)
            return -err if err else ret

        _deny(live_bpf, kfw.maps.deny_v4.fd)
        passed = 0
        for p in pkts:
            res = live.prog_test_run(kfw.progs.xdp_firewall.fd, p, data_size_out=4096)
            assert res.errno == 0
            if res.retval != XDP_PASS:
                continue
            passed += 1
            res = live.prog_test_run(ktc.progs.tc_count.fd, p, data_size_out=4096)
            assert res.errno == 0 and res.retval == 0
        want = {}
        fd = ktc.maps.tc_stats.fd
        for kb in live.map_keys(fd, 4):
            vb = live.map_lookup(fd, kb, 16)
            eth_proto, ip_proto, pkt_type = struct.unpack("<HBB", kb)
            want[(eth_proto, ip_proto, pkt_type)] = struct.unpack("<QQ", vb)
    finally:
        kfw.close()
        ktc.close()
    assert got == want
    assert sum(v[0] for v in got.values()) == passed == dev.stats.xdp["XDP_PASS"]
