"""Feeding a pybpf device from outside: pcapng files written by another tool (scapy) and a
real interface through AF_PACKET (a veth pair created for the test; root only)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from live_net import veth

import pybpf.skel as skel
from pybpf.kernel import Kernel
from pybpf.net import packets as P
from pybpf.net.pcap import read_pcap

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _frames() -> list[bytes]:
    return [P.ipv4("10.0.0.2", "10.0.0.1", (P.IPPROTO_TCP, P.IPPROTO_UDP)[i % 2], 1000 + i, 80,
                   b"p" * i) for i in range(12)] + [P.arp_request()]


def test_pcapng_from_scapy_feeds_a_device(tmp_path: Path) -> None:
    utils = pytest.importorskip("scapy.utils", reason="scapy (the 'net' extra) not installed")
    l2 = pytest.importorskip("scapy.layers.l2")
    frames = _frames()
    path = tmp_path / "t.pcapng"
    with utils.PcapNgWriter(str(path)) as w:
        for i, f in enumerate(frames):
            pkt = l2.Ether(f)
            pkt.time = 1_700_000_000 + i / 1000
            w.write(pkt)
    back = list(read_pcap(path))
    assert [p.data for p in back] == frames
    k = Kernel()
    cnt = skel.load(EXAMPLES / "xdp_counter.o", kernel=k)
    dev = k.netdev("eth0")
    dev.attach_xdp(cnt.progs.xdp_count)
    dev.feed_pcap(str(path), progress=False)
    assert dev.stats.rx_packets == len(frames) and dev.stats.faults == 0
    per_proto = {key: sum(r["packets"] for r in v) for key, v in cnt.maps.proto_stats.items()
                 if sum(r["packets"] for r in v)}
    assert per_proto == {0: 1, P.IPPROTO_TCP: 6, P.IPPROTO_UDP: 6}


def test_capture_from_a_real_interface_runs_the_device_hooks() -> None:
    frames = _frames()
    with veth("pbc", up=True) as (a, b, _ifindex):
        k = Kernel()
        cnt = skel.load(EXAMPLES / "xdp_counter.o", kernel=k)
        dev = k.netdev("veth0")
        dev.attach_xdp(cnt.progs.xdp_count)
        got: list[int] = []
        # until the link is quiet for a second (IPv6 neighbour discovery may add frames)
        t = threading.Thread(target=lambda: got.append(dev.capture_from(b, count=1000,
                                                                        timeout=1.0)))
        t.start()
        time.sleep(0.3)  # the AF_PACKET socket is bound
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        try:
            tx.bind((a, 0))
            for f in frames:
                tx.send(f)
        finally:
            tx.close()
        t.join(10)
    # IPv6 router solicitations etc. may arrive on a fresh link: count ours only
    assert got and got[0] >= len(frames)
    assert dev.stats.xdp["XDP_PASS"] == got[0] and dev.stats.faults == 0
    stats = {key: sum(r["packets"] for r in v) for key, v in cnt.maps.proto_stats.items()}
    assert stats[P.IPPROTO_TCP] == 6 and stats[P.IPPROTO_UDP] == 6


@pytest.mark.parametrize("cut", [3, 9, 20, 27, 30, 47, 60, 80, 100])
def test_truncated_or_corrupt_pcapng_is_a_clear_error(tmp_path: Path, cut: int) -> None:
    from pybpf.net.pcap import PcapError

    utils = pytest.importorskip("scapy.utils", reason="scapy (the 'net' extra) not installed")
    l2 = pytest.importorskip("scapy.layers.l2")
    good = tmp_path / "g.pcapng"
    with utils.PcapNgWriter(str(good)) as w:
        w.write(l2.Ether(_frames()[0]))
    raw = good.read_bytes()
    bad = tmp_path / "b.pcapng"
    bad.write_bytes(raw[:cut])
    try:
        list(read_pcap(bad))
    except (PcapError, ValueError) as e:
        assert str(e)
    corrupt = bytearray(raw)
    corrupt[32:36] = (7).to_bytes(4, "little")  # the IDB's block length
    bad.write_bytes(bytes(corrupt))
    with pytest.raises((PcapError, ValueError)):
        list(read_pcap(bad))
