"""A pcap of mixed traffic through an XDP firewall on a pybpf device gives the counts the
kernel's BPF_PROG_TEST_RUN gives packet by packet; tcx ordering/revisions via the syscalls."""

from __future__ import annotations

import ctypes
import struct
from collections import Counter
from pathlib import Path

import pytest

import pybpf.skel as skel
from pybpf.kernel import Kernel
from pybpf.net import packets as P
from pybpf.net.pcap import PcapWriter, read_pcap
from pybpf.uapi import BPF_MAP_UPDATE_ELEM, bpf_attr_map_elem

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DENY = ["10.0.0.66", "192.168.7.7"]


def _traffic() -> list[bytes]:
    pkts = []
    for i in range(60):
        src = DENY[i % 2] if i % 5 == 0 else f"10.1.{i}.{i + 1}"
        proto = (P.IPPROTO_TCP, P.IPPROTO_UDP, P.IPPROTO_ICMP)[i % 3]
        pkts.append(P.ipv4(src, "10.0.0.1", proto, 1000 + i, 53 if i % 4 else 80, b"x" * i))
        if i % 6 == 0:
            pkts.append(P.ipv6("2001:db8::1", "2001:db8::2", (6, 17, 58)[i % 3], 7, 8))
    pkts += [P.arp_request(), b"\x00" * 10]
    return pkts


def _deny(sysbpf, fd: int) -> None:  # type: ignore[no-untyped-def]
    for rule, ip in enumerate(DENY):
        kb = ctypes.create_string_buffer(struct.pack("<I4s", 32, P.ipv4_addr(ip)))
        vb = ctypes.create_string_buffer(struct.pack("<I", rule + 1))
        a = bpf_attr_map_elem(map_fd=fd, key=ctypes.addressof(kb), value=ctypes.addressof(vb))
        assert sysbpf(BPF_MAP_UPDATE_ELEM, a) == 0


def test_pcap_roundtrip(tmp_path: Path) -> None:
    pkts = _traffic()
    with PcapWriter(tmp_path / "t.pcap") as w:
        for i, p in enumerate(pkts):
            w.write(p, i * 1000)
    back = list(read_pcap(tmp_path / "t.pcap"))
    assert [p.data for p in back] == pkts and back[3].ts_ns == 3000
    (tmp_path / "bad.pcap").write_bytes(b"\x01\x02\x03\x04" * 8)
    with pytest.raises(ValueError, match="not a pcap"):
        list(read_pcap(tmp_path / "bad.pcap"))


def test_xdp_firewall_pcap_matches_kernel_test_run(tmp_path: Path) -> None:
    from pybpf.testing import kernel as live

    ok, why = live.available()
    if not ok:
        pytest.skip(f"live kernel unavailable: {why}")
    pkts = _traffic()
    path = tmp_path / "mixed.pcap"
    with PcapWriter(path) as w:
        for p in pkts:
            w.write(p)
    # pybpf: a device fed from the pcap
    k = Kernel()
    fw = skel.load(EXAMPLES / "xdp_firewall.o", kernel=k)
    _deny(k.bpf, fw.maps.deny_v4.fd)
    dev = k.netdev("veth0", peer="veth1")
    dev.attach_xdp(fw.progs.xdp_firewall)
    dev.feed_pcap(str(path), progress=False)
    assert dev.stats.faults == 0, dev.last_fault
    # live kernel: test_run per packet
    kfw = skel.load(EXAMPLES / "xdp_firewall.o", kernel="live")
    try:
        def live_bpf(cmd: int, attr: object) -> int:
            ret, err = live.sys_bpf(cmd, attr)
            return -err if err else ret

        _deny(live_bpf, kfw.maps.deny_v4.fd)
        names = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS"}
        want: Counter[str] = Counter()
        runts = 0
        for p in pkts:
            res = live.prog_test_run(kfw.progs.xdp_firewall.fd, p, data_size_out=4096)
            if res.errno:  # test_run refuses runts (EINVAL); a device drops them
                assert res.errno == 22 and len(p) < 14
                runts += 1
                continue
            want[names.get(res.retval, str(res.retval))] += 1
    finally:
        kfw.close()
    assert dict(dev.stats.xdp) == dict(want)
    assert dev.stats.rx_packets == len(pkts)
    assert runts == 1 and dev.stats.rx_dropped == want["XDP_DROP"] + runts
    assert len(dev.delivered) == want["XDP_PASS"]


def test_tcx_prog_attach_order_and_query() -> None:
    from pybpf.isa.asm import assemble
    from pybpf.program import Program
    from pybpf.uapi import (
        BPF_PROG_ATTACH,
        BPF_PROG_DETACH,
        BPF_PROG_QUERY,
        BPF_TCX_INGRESS,
        bpf_attr_prog_attach,
        bpf_attr_query,
    )

    k = Kernel()
    dev = k.netdev("eth0")
    progs = [Program.load(k, 3, assemble(f"r0 = {v}\nexit", syntax="kernel"))
             for v in (-1, -1, 2)]

    def attach(p: Program, flags: int = 0, rel: int = 0, rev: int = 0) -> int:
        a = bpf_attr_prog_attach(attach_bpf_fd=p.fd, attach_type=BPF_TCX_INGRESS,
                                 attach_flags=flags, target_ifindex=dev.ifindex,
                                 relative_fd=rel, expected_revision=rev)
        return k.bpf(BPF_PROG_ATTACH, a)

    def query() -> tuple[int, list[int], int]:
        ids = (ctypes.c_uint32 * 8)()
        q = bpf_attr_query(attach_type=BPF_TCX_INGRESS, target_ifindex=dev.ifindex,
                           prog_ids=ctypes.addressof(ids), count=8)
        assert k.bpf(BPF_PROG_QUERY, q) == 0
        return q.revision, list(ids[:q.count]), q.count

    assert query() == (1, [], 0)
    assert attach(progs[0]) == 0
    assert attach(progs[0]) == -17  # EEXIST
    assert attach(progs[1], rev=99) == -116  # ESTALE
    assert attach(progs[1], flags=1 << 3, rel=progs[0].fd) == 0  # BEFORE p0
    assert attach(progs[2], flags=1 << 4) == 0  # AFTER (last)
    rev, ids, n = query()
    assert rev == 4 and ids == [progs[1].id, progs[0].id, progs[2].id] and n == 3
    assert attach(progs[2], rel=progs[0].fd) == -17
    # packets: prog1 NEXT, prog0 NEXT, prog2 SHOT
    assert dev.receive(P.ipv4("1.1.1.1", "2.2.2.2", 17)) == "tc:drop"
    d = bpf_attr_prog_attach(attach_bpf_fd=progs[2].fd, attach_type=BPF_TCX_INGRESS,
                             target_ifindex=dev.ifindex)
    assert k.bpf(BPF_PROG_DETACH, d) == 0
    assert dev.receive(P.ipv4("1.1.1.1", "2.2.2.2", 17)) == "pass"
    assert query()[0] == 5
    bad = bpf_attr_prog_attach(attach_bpf_fd=progs[0].fd, attach_type=BPF_TCX_INGRESS,
                               target_ifindex=999)
    assert k.bpf(BPF_PROG_ATTACH, bad) == -19  # ENODEV
