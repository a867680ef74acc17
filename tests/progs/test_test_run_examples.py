"""BPF_PROG_TEST_RUN of the shipped example objects, differential against the live kernel.

Each example is loaded twice (``pybpf.skel.load`` into a pybpf Kernel and with
``kernel="live"``) and fed the same packets; retval, data_out and the maps' contents must
agree. Also the README's promise: ``pybpf.load(...).progs.xdp_count.test_run(...)``.
"""

from __future__ import annotations

import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybpf
import pybpf.skel as skel
from pybpf.errors import BpfError
from pybpf.progs.ops import find_prog_type

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ETH_IP = bytes(6) + bytes.fromhex("020000000001") + b"\x08\x00"


def ipv4(proto: int, payload: bytes, src: bytes = b"\x0a\0\0\x01",
         dst: bytes = b"\x0a\0\0\x02", ttl: int = 64) -> bytes:
    total = 20 + len(payload)
    return ETH_IP + bytes([0x45, 0]) + total.to_bytes(2, "big") + bytes(4) + \
        bytes([ttl, proto]) + bytes(2) + src + dst + payload


def udp(dport: int, payload: bytes = b"hello") -> bytes:
    return struct.pack(">HHHH", 1234, dport, 8 + len(payload), 0) + payload


def tcp(dport: int) -> bytes:
    return struct.pack(">HHIIBBHHH", 4321, dport, 1, 0, 0x50, 0x02, 512, 0, 0)


packets = st.one_of(
    st.binary(min_size=14, max_size=120),
    st.builds(ipv4, st.sampled_from([1, 6, 17, 47]), st.binary(max_size=40),
              st.sampled_from([b"\x0a\0\0\x01", b"\xc0\xa8\x01\x07", b"\x08\x08\x08\x08"])),
    st.builds(lambda p: ipv4(17, udp(p)), st.sampled_from([53, 80, 5353])),
    st.builds(lambda p: ipv4(6, tcp(p)), st.sampled_from([22, 80, 443])),
)
AGREE = settings(max_examples=30, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def _pair(kernel: ModuleType, name: str) -> tuple[Any, Any]:
    path = EXAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} not built")
    return skel.load(str(path)), skel.load(str(path), kernel="live")


def _outcome(prog: Any, pkt: bytes) -> tuple[Any, ...]:
    """retval and data_out, or the errno (a packet shorter than its L3 header is EINVAL)."""
    try:
        r = prog.test_run(data_in=pkt, data_size_out=len(pkt) + 256)
    except BpfError as e:
        return ("errno", e.errno)
    return (r.retval, r.data_out)


def _agree(mine: Any, live: Any, pkt: bytes) -> None:
    assert _outcome(mine, pkt) == _outcome(live, pkt), pkt.hex()


def _live_percpu_sum(kernel: ModuleType, fd: int, key: bytes, value_size: int) -> list[int]:
    ncpu = pybpf.maps.core.num_possible_cpus()
    stride = (value_size + 7) // 8 * 8
    raw = kernel.map_lookup(fd, key, stride * ncpu)
    words = value_size // 8
    return [sum(struct.unpack_from("<Q", raw, c * stride + 8 * w)[0] for c in range(ncpu))
            for w in range(words)]


def test_readme_promise() -> None:
    obj = pybpf.load(str(EXAMPLES / "xdp_counter.o"))
    assert obj.progs.xdp_count.test_run(data_in=bytes(64)).retval == 2  # XDP_PASS


def test_xdp_counter(kernel: ModuleType) -> None:
    mine, live = _pair(kernel, "xdp_counter.o")
    sent: list[bytes] = []

    @given(packets)
    @AGREE
    def agree(pkt: bytes) -> None:
        sent.append(pkt)
        _agree(mine.progs.xdp_count, live.progs.xdp_count, pkt)

    agree()
    stats = mine.maps.proto_stats
    for key in (0, 1, 6, 17, 47):
        ours = stats[key]
        totals = [sum(v["packets"] for v in ours), sum(v["bytes"] for v in ours)]
        theirs = _live_percpu_sum(kernel, live.maps.proto_stats.fd, struct.pack("<I", key), 16)
        assert totals == theirs, key


def test_xdp_firewall(kernel: ModuleType) -> None:
    mine, live = _pair(kernel, "xdp_firewall.o")
    rule_key = {"prefixlen": 32, "addr": int.from_bytes(b"\xc0\xa8\x01\x07", "little")}
    mine.maps.deny_v4[rule_key] = 7
    kernel.map_update(live.maps.deny_v4.fd, struct.pack("<II", 32, rule_key["addr"]),
                      struct.pack("<I", 7))

    @given(packets)
    @AGREE
    def agree(pkt: bytes) -> None:
        _agree(mine.progs.xdp_firewall, live.progs.xdp_firewall, pkt)

    agree()
    _agree(mine.progs.xdp_firewall, live.progs.xdp_firewall, ipv4(17, udp(53), b"\xc0\xa8\x01\x07"))
    err, raw = kernel.map_lookup_raw(live.maps.drops.fd, struct.pack("<I", 7), 8)
    theirs = struct.unpack("<Q", raw)[0] if err == 0 else None
    assert mine.maps.drops.get(7) == theirs


def test_tc_rewrite(kernel: ModuleType) -> None:
    mine, live = _pair(kernel, "tc_rewrite.o")

    @given(packets)
    @AGREE
    def agree(pkt: bytes) -> None:
        _agree(mine.progs.tc_rewrite, live.progs.tc_rewrite, pkt)

    agree()
    _agree(mine.progs.tc_rewrite, live.progs.tc_rewrite, ipv4(17, udp(53)))


def test_socket_filter(kernel: ModuleType) -> None:
    ops = find_prog_type(1)
    if getattr(ops, "ld_abs", None) is None:
        pytest.skip("socket_filter.o uses LD_ABS: the SOCKET_FILTER program type has no "
                    "ld_abs hook yet (pybpf.progs.testrun_skb.skb_ld_abs is ready for it)")
    mine, live = _pair(kernel, "socket_filter.o")

    @given(packets)
    @AGREE
    def agree(pkt: bytes) -> None:
        _agree(mine.progs.tcp_port_filter, live.progs.tcp_port_filter, pkt)

    agree()


def test_socket_filter_without_ld_abs_reaching_it(kernel: ModuleType) -> None:
    """Non-IP packets return before the LD_ABS loads: those agree today."""
    mine, live = _pair(kernel, "socket_filter.o")
    for pkt in (bytes(64), b"\xff" * 12 + b"\x86\xdd" + bytes(60)):
        _agree(mine.progs.tcp_port_filter, live.progs.tcp_port_filter, pkt)


def test_tc_counter(kernel: ModuleType) -> None:
    """The tc counter example: retval/data_out per packet and its hash map's contents."""
    mine, live = _pair(kernel, "tc_counter.o")

    @given(packets)
    @AGREE
    def agree(pkt: bytes) -> None:
        _agree(mine.progs.tc_count, live.progs.tc_count, pkt)

    agree()
    fd = live.maps.tc_stats.fd
    theirs = {}
    for kb in kernel.map_keys(fd, 4):
        eth_proto, ip_proto, pkt_type = struct.unpack("<HBB", kb)
        theirs[(eth_proto, ip_proto, pkt_type)] = struct.unpack("<QQ", kernel.map_lookup(fd, kb, 16))
    ours = {(k["eth_proto"], k["ip_proto"], k["pkt_type"]): (v["packets"], v["bytes"])
            for k, v in mine.maps.tc_stats.items()}
    assert ours == theirs and ours
