"""BPF_PROG_TEST_RUN, differential against the live kernel (net/bpf/test_run.c).

Each case loads the same assembled program in the live kernel and in a pybpf Kernel, issues
the same ``bpf_attr.test`` to both, and compares errno, retval, data_out, data_size_out,
ctx_out and ctx_size_out. Programs read ``__sk_buff``/``xdp_md`` fields and packet bytes;
packets come from a table and from hypothesis.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.uapi import BpfCmd, bpf_attr_test, sk_buff

SOCKET_FILTER, SCHED_CLS, SCHED_ACT, XDP, CGROUP_SKB = 1, 3, 4, 6, 8
LWT_IN, LWT_OUT, LWT_XMIT, RAW_TP, SYSCALL = 10, 11, 12, 17, 31
SKB_TYPES = (SOCKET_FILTER, SCHED_CLS, SCHED_ACT, CGROUP_SKB, LWT_IN, LWT_OUT, LWT_XMIT)
BPF_F_SLEEPABLE = 1 << 4
ETH_IP = bytes(6) + bytes.fromhex("020000000001") + b"\x08\x00"


@dataclass
class Out:
    errno: int
    retval: int = 0
    data_out: bytes = b""
    data_size_out: int = 0
    ctx_out: bytes = b""
    ctx_size_out: int = 0


def _buf(data: bytes | None, size: int = 0) -> Any:
    if data is None and not size:
        return None
    return ctypes.create_string_buffer(data or b"", max(size, len(data or b""), 1))


def issue(side: Any, fd: int, *, data_in: bytes | None = None, data_size_out: int = 0,
          ctx_in: bytes | None = None, ctx_size_out: int = 0, repeat: int = 1,
          flags: int = 0, cpu: int = 0, batch_size: int = 0,
          data_out: bool | None = None, duration: int = 0,
          empty_data_ptr: bool = False) -> tuple[Out, Any]:
    """One BPF_PROG_TEST_RUN; ``side`` is the oracle module or a pybpf Kernel."""
    din = _buf(data_in)
    want_out = data_out if data_out is not None else bool(data_size_out)
    dout = ctypes.create_string_buffer(max(data_size_out, 1)) if want_out else None
    cin = _buf(ctx_in)
    cout = ctypes.create_string_buffer(ctx_size_out) if ctx_size_out else None
    a = bpf_attr_test()
    a.prog_fd, a.repeat, a.flags, a.cpu, a.batch_size = fd, repeat, flags, cpu, batch_size
    if empty_data_ptr:  # a data_in pointer with data_size_in 0
        din = ctypes.create_string_buffer(8)
    a.data_in = ctypes.addressof(din) if din is not None else 0
    a.data_size_in = len(data_in or b"")
    a.duration = duration
    a.data_out = ctypes.addressof(dout) if dout is not None else 0
    a.data_size_out = data_size_out
    a.ctx_in = ctypes.addressof(cin) if cin is not None else 0
    a.ctx_size_in = len(ctx_in or b"")
    a.ctx_out = ctypes.addressof(cout) if cout is not None else 0
    a.ctx_size_out = ctx_size_out
    if isinstance(side, Kernel):
        ret = side.bpf(BpfCmd.BPF_PROG_TEST_RUN, a)
        err = -ret if ret < 0 else 0
    else:
        _ret, err = side.sys_bpf(BpfCmd.BPF_PROG_TEST_RUN, a)
    dlen = min(a.data_size_out, data_size_out) if dout is not None else 0
    clen = min(a.ctx_size_out, ctx_size_out) if cout is not None else 0
    out = Out(err, a.retval, dout.raw[:dlen] if dout is not None else b"", a.data_size_out,
              cout.raw[:clen] if cout is not None else b"", a.ctx_size_out)
    return out, cin


class Pair:
    """The same program loaded in the live kernel and in pybpf."""

    def __init__(self, oracle: ModuleType, fds: Any, prog_type: int, text: str,
                 prog_flags: int = 0, expected_attach_type: int = 0) -> None:
        self.oracle = oracle
        self.text = text
        raw = encode(assemble(text))
        res = fds.prog_load(prog_type, raw, prog_flags=prog_flags,
                            expected_attach_type=expected_attach_type, log_level=1,
                            log_size=1 << 16)
        self.pk = Kernel()
        self.rejected = not res.ok
        if self.rejected:
            # The kernel refuses this program: pybpf must refuse it the same way.
            with pytest.raises(BpfError) as exc:
                Program.load(self.pk, prog_type, raw, prog_flags=prog_flags,
                             expected_attach_type=expected_attach_type)
            assert exc.value.errno == res.errno, (res.log, exc.value)
            return
        self.kfd = res.fd
        self.pprog = Program.load(self.pk, prog_type, raw, prog_flags=prog_flags,
                                  expected_attach_type=expected_attach_type)

    def both(self, **kw: Any) -> tuple[Out, Out]:
        k, _ = issue(self.oracle, self.kfd, **kw)
        p, _ = issue(self.pk, self.pprog.fd, **kw)
        return k, p

    def check(self, **kw: Any) -> Out:
        k, p = self.both(**kw)
        assert p == k, f"{kw}\n{self.text}"
        return k


# --------------------------------------------------------------------------- programs

def ret_field(off: int, size: str = "u32") -> str:
    return f"r0 = *({size} *)(r1 + {off})\nexit\n"


def for_type(ptype: int, text: str) -> str:
    """cgroup skb programs may return only 0/1: keep the low bit there."""
    if ptype != CGROUP_SKB:
        return text
    body = text.rstrip().rsplit("\n", 1)[0]
    return body + "\nr0 &= 1\nexit\n"


TC_PKT = """
r2 = *(u32 *)(r1 + 76)
r3 = *(u32 *)(r1 + 80)
r0 = r3
r0 -= r2
r4 = r2
r4 += 16
if r4 > r3 goto +6
r5 = *(u8 *)(r2 + 15)
r0 <<= 8
r0 |= r5
r5 ^= 0xff
*(u8 *)(r2 + 14) = r5
exit
exit
"""
"""tc: (data_end - data) << 8 | byte 15, and writes ~byte15 into byte 14."""

SKB_WRITER = """
r2 = 7
*(u32 *)(r1 + 8) = r2
r2 = 9
*(u32 *)(r1 + 32) = r2
r2 = 0x11223344
*(u32 *)(r1 + 48) = r2
*(u32 *)(r1 + 64) = r2
r0 = *(u32 *)(r1 + 0)
exit
"""

XDP_PKT = """
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r4 = *(u32 *)(r1 + 8)
r0 = r3
r0 -= r2
r5 = r2
r5 -= r4
r5 <<= 16
r0 |= r5
r5 = r2
r5 += 14
if r5 > r3 goto +4
r5 = *(u8 *)(r2 + 13)
r5 ^= 0x5a
*(u8 *)(r2 + 12) = r5
r0 += 0
exit
"""
"""xdp: (data - data_meta) << 16 | (data_end - data); rewrites byte 12."""

SKB_FIELDS = {  # __sk_buff fields a program may read, by type (offset, size)
    "len": (0, "u32"), "pkt_type": (4, "u32"), "mark": (8, "u32"),
    "queue_mapping": (12, "u32"), "protocol": (16, "u32"), "vlan_present": (20, "u32"),
    "vlan_tci": (24, "u32"), "vlan_proto": (28, "u32"), "priority": (32, "u32"),
    "ingress_ifindex": (36, "u32"), "ifindex": (40, "u32"), "tc_index": (44, "u32"),
    "cb0": (48, "u32"), "cb4": (64, "u32"), "hash": (68, "u32"), "tc_classid": (72, "u32"),
    "napi_id": (84, "u32"), "family": (88, "u32"), "remote_ip4": (92, "u32"),
    "local_ip4": (96, "u32"), "remote_ip6_0": (100, "u32"), "local_ip6_3": (128, "u32"),
    "remote_port": (132, "u32"), "local_port": (136, "u32"), "tstamp": (152, "u64"),
    "wire_len": (160, "u32"), "gso_segs": (164, "u32"), "gso_size": (176, "u32"),
    "hwtstamp": (184, "u64"),
}


def ipv4(proto: int = 17, payload: bytes = bytes(8), src: bytes = b"\x0a\0\0\x01",
         dst: bytes = b"\x0a\0\0\x02") -> bytes:
    total = 20 + len(payload)
    return ETH_IP + bytes([0x45, 0]) + total.to_bytes(2, "big") + bytes(4) + \
        bytes([64, proto]) + bytes(2) + src + dst + payload


def ipv6(payload: bytes = bytes(8)) -> bytes:
    return bytes(6) + bytes(6) + b"\x86\xdd" + b"\x60" + bytes(3) + \
        len(payload).to_bytes(2, "big") + bytes([17, 64]) + bytes(15) + b"\x01" + \
        bytes(15) + b"\x02" + payload


PACKETS = {
    "zeros64": bytes(64),
    "eth_only": ETH_IP,
    "ipv4_udp": ipv4(),
    "ipv4_short": ETH_IP + bytes(10),
    "ipv6_udp": ipv6(),
    "ipv6_short": ipv6()[:40],
    "broadcast": b"\xff" * 6 + bytes(6) + b"\x08\x06" + bytes(28),
    "multicast": b"\x01\x00\x5e\0\0\x01" + bytes(6) + b"\x08\x00" + ipv4()[14:],
    "otherhost": b"\x02\0\0\0\0\x01" + bytes(6) + b"\x08\x00" + ipv4()[14:],
    "llc_8023": bytes(12) + b"\x00\x40" + b"\xff\xff" + bytes(30),
    "llc_8022": bytes(12) + b"\x00\x40" + b"\xaa\xaa" + bytes(30),
    "max_skb": bytes(3712),
}

packets = st.one_of(
    st.binary(min_size=0, max_size=160),
    st.builds(lambda p, s, d, pl: ipv4(p, pl, s, d), st.integers(0, 255),
              st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4),
              st.binary(max_size=64)),
    st.builds(ipv6, st.binary(max_size=64)),
)

AGREE = settings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


# --------------------------------------------------------------------------- skb types

@pytest.mark.parametrize("ptype", SKB_TYPES)
@pytest.mark.parametrize("field", sorted(SKB_FIELDS))
def test_skb_field_values(kernel: ModuleType, kernel_fds: Any, ptype: int, field: str) -> None:
    off, size = SKB_FIELDS[field]
    text = ret_field(off, size)
    if ptype == CGROUP_SKB:  # returns only 0/1: report the field through cb[0] in ctx_out
        text = f"r2 = *({size} *)(r1 + {off})\n*(u32 *)(r1 + 48) = r2\nr0 = 1\nexit\n"
    pair = Pair(kernel, kernel_fds, ptype, text)
    if pair.rejected:
        return  # both refuse the program (asserted by Pair)
    for name, pkt in PACKETS.items():
        k, p = pair.both(data_in=pkt, data_size_out=4096)
        assert p == k, (name, field)
        k, p = pair.both(data_in=pkt, data_size_out=4096, ctx_size_out=192)
        assert p == k, (name, field, "ctx_out")
    ctx = bytearray(192)
    struct.pack_into("<III", ctx, 8, 5, 0, 0)  # mark
    struct.pack_into("<I", ctx, 32, 3)  # priority
    struct.pack_into("<II", ctx, 36, 1, 1)  # ingress_ifindex, ifindex
    struct.pack_into("<5I", ctx, 48, 1, 2, 3, 4, 5)
    struct.pack_into("<QIIQIxxxxQ", ctx, 152, 77, 100, 2, 0, 1400, 99)
    pair.check(data_in=PACKETS["ipv4_udp"], data_size_out=4096, ctx_in=bytes(ctx),
               ctx_size_out=192)


@pytest.mark.parametrize("ptype", SKB_TYPES)
def test_skb_writes_reach_ctx_out(kernel: ModuleType, kernel_fds: Any, ptype: int) -> None:
    pair = Pair(kernel, kernel_fds, ptype, for_type(ptype, SKB_WRITER))
    if pair.rejected:
        return  # both refuse the program (asserted by Pair)
    for pkt in (PACKETS["ipv4_udp"], PACKETS["zeros64"]):
        pair.check(data_in=pkt, data_size_out=4096, ctx_in=bytes(192), ctx_size_out=192)
        pair.check(data_in=pkt, data_size_out=4096, ctx_size_out=192, ctx_in=None)
        pair.check(data_in=pkt, data_size_out=4096, ctx_in=bytes(192), ctx_size_out=100)
        pair.check(data_in=pkt, data_size_out=20, ctx_in=bytes(192), ctx_size_out=192)


@pytest.mark.parametrize("ptype", (SCHED_CLS, SCHED_ACT, LWT_IN, LWT_OUT, LWT_XMIT))
def test_skb_direct_packet_access(kernel: ModuleType, kernel_fds: Any, ptype: int) -> None:
    pair = Pair(kernel, kernel_fds, ptype, TC_PKT)
    if pair.rejected:
        return  # both refuse the program (asserted by Pair)

    @given(packets)
    @AGREE
    def agree(pkt: bytes) -> None:
        k, p = pair.both(data_in=pkt, data_size_out=4096)
        assert p == k, pkt.hex()

    agree()
    for repeat in (0, 1, 3):
        pair.check(data_in=PACKETS["ipv4_udp"], data_size_out=4096, repeat=repeat)


SKB_BAD: dict[str, dict[str, Any]] = {
    "no data": {},
    "13 bytes": {"data_in": bytes(13)},
    "14 bytes": {"data_in": bytes(14)},
    "max size": {"data_in": bytes(3712)},
    "max size + 1": {"data_in": bytes(3713)},
    "flag on cpu": {"data_in": bytes(64), "flags": 1},
    "flag live frames": {"data_in": bytes(64), "flags": 2},
    "flag csum complete": {"data_in": PACKETS["ipv4_udp"], "flags": 4},
    "unknown flag": {"data_in": bytes(64), "flags": 8},
    "cpu": {"data_in": bytes(64), "cpu": 1},
    "batch": {"data_in": bytes(64), "batch_size": 1},
    "ctx len set": {"data_in": bytes(64), "ctx_in": b"\x01" + bytes(191)},
    "ctx protocol set": {"data_in": bytes(64), "ctx_in": bytes(16) + b"\x08" + bytes(175)},
    "ctx data set": {"data_in": bytes(64), "ctx_in": bytes(76) + b"\x01" + bytes(115)},
    "ctx hash set": {"data_in": bytes(64), "ctx_in": bytes(68) + b"\x01" + bytes(123)},
    "ctx tstamp_type": {"data_in": bytes(64), "ctx_in": bytes(180) + b"\x01" + bytes(11)},
    "ctx short": {"data_in": bytes(64), "ctx_in": bytes(12) + b"\x05", "ctx_size_out": 192},
    "ctx long zero tail": {"data_in": bytes(64), "ctx_in": bytes(256), "ctx_size_out": 256},
    "ctx long dirty tail": {"data_in": bytes(64), "ctx_in": bytes(255) + b"\x01"},
    "ctx ifindex 1": {"data_in": bytes(64), "ctx_in": bytes(40) + b"\x01" + bytes(151),
                      "ctx_size_out": 192},
    "ctx ifindex missing": {"data_in": bytes(64),
                            "ctx_in": bytes(40) + (99999).to_bytes(4, "little") + bytes(148)},
    "ctx wire_len short": {"data_in": bytes(64),
                           "ctx_in": bytes(160) + (10).to_bytes(4, "little") + bytes(28)},
    "ctx wire_len big": {"data_in": bytes(64),
                         "ctx_in": bytes(160) + (65537).to_bytes(4, "little") + bytes(28)},
    "ctx wire_len ok": {"data_in": bytes(64), "ctx_size_out": 192,
                        "ctx_in": bytes(160) + (1000).to_bytes(4, "little") + bytes(28)},
    "ctx gso_segs big": {"data_in": bytes(64),
                         "ctx_in": bytes(164) + (65536).to_bytes(4, "little") + bytes(24)},
    "ipv4 short": {"data_in": PACKETS["ipv4_short"]},
    "ipv6 short": {"data_in": PACKETS["ipv6_short"]},
    "data_out short": {"data_in": bytes(64), "data_size_out": 10},
    "data_out none": {"data_in": bytes(64), "data_out": False},
    "ctx_out short": {"data_in": bytes(64), "ctx_in": bytes(192), "ctx_size_out": 8},
}


@pytest.mark.parametrize("ptype", (SOCKET_FILTER, SCHED_CLS, CGROUP_SKB, LWT_XMIT))
@pytest.mark.parametrize("case", sorted(SKB_BAD))
def test_skb_attr_table(kernel: ModuleType, kernel_fds: Any, ptype: int, case: str) -> None:
    pair = Pair(kernel, kernel_fds, ptype, for_type(ptype, ret_field(0)))
    if pair.rejected:
        return  # both refuse the program (asserted by Pair)
    kw = {"data_size_out": 4096, **SKB_BAD[case]}
    pair.check(**kw)


# --------------------------------------------------------------------------- xdp

def xdp_md(data: int = 0, data_end: int = 0, meta: int = 0, ifindex: int = 0, rxq: int = 0,
           egress: int = 0) -> bytes:
    return struct.pack("<6I", data, data_end, meta, ifindex, rxq, egress)


def test_xdp_packets(kernel: ModuleType, kernel_fds: Any) -> None:
    pair = Pair(kernel, kernel_fds, XDP, XDP_PKT)
    if pair.rejected:
        return  # both refuse the program (asserted by Pair)

    @given(packets)
    @AGREE
    def agree(pkt: bytes) -> None:
        k, p = pair.both(data_in=pkt, data_size_out=8192)
        assert p == k, pkt.hex()

    agree()


@pytest.mark.parametrize("field", ["data_end-data", "ingress_ifindex", "rx_queue_index"])
def test_xdp_fields(kernel: ModuleType, kernel_fds: Any, field: str) -> None:
    text = {"data_end-data": "r2 = *(u32 *)(r1 + 0)\nr0 = *(u32 *)(r1 + 4)\nr0 -= r2\nexit\n",
            "ingress_ifindex": ret_field(12), "rx_queue_index": ret_field(16)}[field]
    pair = Pair(kernel, kernel_fds, XDP, text)
    if pair.rejected:
        return  # both refuse the program (asserted by Pair)
    for pkt in (bytes(64), PACKETS["ipv4_udp"], bytes(3520)):
        pair.check(data_in=pkt, data_size_out=8192)
    pair.check(data_in=bytes(64), data_size_out=8192, ctx_in=xdp_md(8, 64), ctx_size_out=24)
    pair.check(data_in=bytes(64), data_size_out=8192, ctx_in=xdp_md(0, 64, ifindex=1),
               ctx_size_out=24)


XDP_BAD: dict[str, dict[str, Any]] = {
    "no data": {},
    "13 bytes": {"data_in": bytes(13)},
    "linear max": {"data_in": bytes(3520)},
    "one frag": {"data_in": bytes(3521)},
    "frags": {"data_in": bytes(9000)},
    "frags data_out short": {"data_in": bytes(5000), "data_size_out": 4000},
    "frags data_out tiny": {"data_in": bytes(5000), "data_size_out": 100},
    "too many frags": {"data_in": bytes(3520 + 17 * 4096 + 1)},
    "flag on cpu": {"data_in": bytes(64), "flags": 1},
    "flag csum": {"data_in": bytes(64), "flags": 4},
    "cpu without flag": {"data_in": bytes(64), "cpu": 1},
    "batch without live": {"data_in": bytes(64), "batch_size": 4},
    "live": {"data_in": bytes(64), "flags": 2, "data_out": False, "data_size_out": 0},
    "live with data_out": {"data_in": bytes(64), "flags": 2, "ctx_in": xdp_md(0, 64)},
    "live batch too big": {"data_in": bytes(64), "flags": 2, "batch_size": 257,
                           "data_size_out": 0, "data_out": False},
    "live too big": {"data_in": bytes(3500), "flags": 2, "data_size_out": 0,
                     "data_out": False},
    "meta 4": {"data_in": bytes(64), "ctx_in": xdp_md(4, 64), "ctx_size_out": 24},
    "meta 3": {"data_in": bytes(64), "ctx_in": xdp_md(3, 64)},
    "meta 216": {"data_in": bytes(300), "ctx_in": xdp_md(216, 300), "ctx_size_out": 24},
    "meta 220": {"data_in": bytes(300), "ctx_in": xdp_md(220, 300)},
    "meta leaves 13": {"data_in": bytes(21), "ctx_in": xdp_md(8, 21)},
    "data_end short": {"data_in": bytes(64), "ctx_in": xdp_md(0, 40), "ctx_size_out": 24},
    "data_end past": {"data_in": bytes(64), "ctx_in": xdp_md(0, 65)},
    "data past end": {"data_in": bytes(64), "ctx_in": xdp_md(20, 10)},
    "data_meta set": {"data_in": bytes(64), "ctx_in": xdp_md(0, 64, meta=4)},
    "egress set": {"data_in": bytes(64), "ctx_in": xdp_md(0, 64, egress=1)},
    "rxq without dev": {"data_in": bytes(64), "ctx_in": xdp_md(0, 64, rxq=1)},
    "lo rxq 1": {"data_in": bytes(64), "ctx_in": xdp_md(0, 64, ifindex=1, rxq=1)},
    "missing dev": {"data_in": bytes(64), "ctx_in": xdp_md(0, 64, ifindex=99999)},
    "ctx long dirty": {"data_in": bytes(64), "ctx_in": xdp_md(0, 64) + b"\x01"},
    "ctx long clean": {"data_in": bytes(64), "ctx_in": xdp_md(0, 64) + bytes(8),
                       "ctx_size_out": 32},
    "ctx short": {"data_in": bytes(64), "ctx_in": bytes(4), "ctx_size_out": 24},
    "ctx_out only": {"data_in": bytes(64), "ctx_size_out": 24},
    "ctx_out short": {"data_in": bytes(64), "ctx_in": xdp_md(0, 64), "ctx_size_out": 8},
    "data_out short": {"data_in": bytes(64), "data_size_out": 10},
    "repeat": {"data_in": bytes(64), "repeat": 5},
}


@pytest.mark.parametrize("case", sorted(XDP_BAD))
def test_xdp_attr_table(kernel: ModuleType, kernel_fds: Any, case: str) -> None:
    pair = Pair(kernel, kernel_fds, XDP, XDP_PKT)
    if pair.rejected:
        return  # both refuse the program (asserted by Pair)
    kw = {"data_size_out": 80000, **XDP_BAD[case]}
    pair.check(**kw)


@pytest.mark.parametrize("attach", (33, 35, 37))  # BPF_XDP_DEVMAP, BPF_XDP_CPUMAP, BPF_XDP
def test_xdp_attach_types(kernel: ModuleType, kernel_fds: Any, attach: int) -> None:
    pair = Pair(kernel, kernel_fds, XDP, "r0 = 2\nexit\n", expected_attach_type=attach)
    if pair.rejected:
        return  # both refuse the program (asserted by Pair)
    pair.check(data_in=bytes(64), data_size_out=128)


# --------------------------------------------------------------------------- raw tp, syscall

RAW_TP_SUM = """
r2 = *(u64 *)(r1 + 0)
r0 = *(u64 *)(r1 + 8)
r0 += r2
exit
"""


RAW_TP_BAD: dict[str, dict[str, Any]] = {
    "args": {"ctx_in": struct.pack("<QQ", 40, 2)},
    "args long": {"ctx_in": struct.pack("<12Q", *range(12))},
    "args too long": {"ctx_in": bytes(104)},
    "args too short": {"ctx_in": bytes(8)},
    "no ctx": {},
    "repeat": {"ctx_in": bytes(16), "repeat": 1},
    "data_in": {"ctx_in": bytes(16), "data_in": bytes(16)},
    "data_out": {"ctx_in": bytes(16), "data_size_out": 16},
    "ctx_out": {"ctx_in": bytes(16), "ctx_size_out": 16},
    "batch": {"ctx_in": bytes(16), "batch_size": 1},
    "cpu without flag": {"ctx_in": bytes(16), "cpu": 1},
    "on cpu 0": {"ctx_in": struct.pack("<QQ", 1, 2), "flags": 1, "cpu": 0},
    "on cpu 1": {"ctx_in": struct.pack("<QQ", 1, 2), "flags": 1, "cpu": 1},
    "on bad cpu": {"ctx_in": bytes(16), "flags": 1, "cpu": 4096},
    "other flag": {"ctx_in": bytes(16), "flags": 4},
    "duration in": {"ctx_in": bytes(16), "duration": 7},
    "data_in pointer, size 0": {"ctx_in": bytes(16), "empty_data_ptr": True},
}


@pytest.mark.parametrize("case", sorted(RAW_TP_BAD))
def test_raw_tp_table(kernel: ModuleType, kernel_fds: Any, case: str) -> None:
    pair = Pair(kernel, kernel_fds, RAW_TP, RAW_TP_SUM)
    if pair.rejected:
        return  # both refuse the program (asserted by Pair)
    pair.check(**{"repeat": 0, **RAW_TP_BAD[case]})


def test_raw_tp_cpu_reads_smp_processor_id(kernel: ModuleType, kernel_fds: Any) -> None:
    pair = Pair(kernel, kernel_fds, RAW_TP, "call 8\nexit\n")
    if pair.rejected:
        return  # both refuse the program (asserted by Pair)
    for cpu in (0, 1):
        k = pair.check(repeat=0, flags=1, cpu=cpu)
        assert k.retval == cpu


SYSCALL_PROG = """
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r0 = r2
r0 += r3
*(u32 *)(r1 + 8) = r0
exit
"""

SYSCALL_BAD: dict[str, dict[str, Any]] = {
    "ctx": {"ctx_in": struct.pack("<III", 5, 6, 0)},
    "ctx long": {"ctx_in": struct.pack("<III", 5, 6, 0) + bytes(100)},
    "ctx short": {"ctx_in": bytes(4)},
    "no ctx": {},
    "repeat": {"ctx_in": bytes(12), "repeat": 1},
    "flags": {"ctx_in": bytes(12), "flags": 1},
    "cpu": {"ctx_in": struct.pack("<III", 1, 2, 0), "cpu": 1},
    "data_in": {"ctx_in": bytes(12), "data_in": bytes(16)},
    "ctx_out": {"ctx_in": bytes(12), "ctx_size_out": 12},
    "batch": {"ctx_in": bytes(12), "batch_size": 1},
    "duration in": {"ctx_in": bytes(12), "duration": 5},
    "data_in pointer, size 0": {"ctx_in": bytes(12), "empty_data_ptr": True},
}


@pytest.mark.parametrize("case", sorted(SYSCALL_BAD))
def test_syscall_table(kernel: ModuleType, kernel_fds: Any, case: str) -> None:
    pair = Pair(kernel, kernel_fds, SYSCALL, SYSCALL_PROG, prog_flags=BPF_F_SLEEPABLE)
    if pair.rejected:
        return  # both refuse the program (asserted by Pair)
    kw = {"repeat": 0, **SYSCALL_BAD[case]}
    k, kcin = issue(kernel, pair.kfd, **kw)
    p, pcin = issue(pair.pk, pair.pprog.fd, **kw)
    assert p == k
    if kcin is not None:  # the program's ctx is written back over ctx_in
        assert pcin.raw == kcin.raw


def test_sk_buff_layout_matches_uapi() -> None:
    assert ctypes.sizeof(sk_buff) == 192
