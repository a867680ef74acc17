"""Packet helpers, differential against the live kernel (net/core/filter.c).

Each case assembles one small program calling the helper, loads it in the live kernel and
in a pybpf Kernel, runs BPF_PROG_TEST_RUN on the same packet in both and compares errno,
retval and data_out (which shows every move of ``data``/``data_meta``/``data_end``).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.kernel import Kernel
from pybpf.program import Program

SCHED_CLS, XDP = 3, 6
BPF_F_XDP_HAS_FRAGS = 1 << 5

ETH = bytes(6) + bytes.fromhex("020000000001") + b"\x08\x00"
IP_HDR = bytes.fromhex("4500003c1c4640004006b1e6ac100a63ac100a0c")  # valid checksum
TCP_HDR = bytes.fromhex("a0c80050a1b2c3d400000000a00272101234000002040"
                        "5b40402080a000000000000000001030307")
PKT = ETH + IP_HDR + TCP_HDR
PKT_ZERO_L4 = ETH + IP_HDR + TCP_HDR[:16] + b"\0\0" + TCP_HDR[18:]


def _outcome(prog: Any, data: bytes, size_out: int) -> tuple[int, int, bytes]:
    try:
        run = prog.test_run(data, data_size_out=size_out)
    except BpfError as exc:
        return exc.errno, 0, b""
    return 0, int(run.retval), bytes(run.data_out)


def _oracle_run(kernel: ModuleType, fd: int, data: bytes, size_out: int) -> tuple[int, int, bytes]:
    res = kernel.prog_test_run(fd, data_in=data, data_size_out=size_out)
    if res.errno:
        return res.errno, 0, b""
    return 0, int(res.retval), bytes(res.data_out)


class Pair:
    """One program in the live kernel and in pybpf."""

    def __init__(self, fds: Any, prog_type: int, text: str, prog_flags: int = 0,
                 kernel_: Kernel | None = None) -> None:
        self.text = text
        raw = encode(assemble(text))
        res = fds.prog_load(prog_type, raw, prog_flags=prog_flags, log_level=1,
                            log_size=1 << 16)
        assert res.ok, res.log
        self.kfd = res.fd
        self.pk = kernel_ or Kernel()
        self.pprog = Program.load(self.pk, prog_type, raw, prog_flags=prog_flags)

    def check(self, oracle: ModuleType, data: bytes, size_out: int | None = None) -> tuple:
        size_out = size_out if size_out is not None else len(data) + 4096
        want = _oracle_run(oracle, self.kfd, data, size_out)
        got = _outcome(self.pprog, data, size_out)
        assert got == want, f"{self.text}\npacket {len(data)} bytes"
        return want


def _call(fid: int, *args: int) -> str:
    """r1 = ctx (saved in r6), r2.. = args, call, return r0."""
    lines = ["r6 = r1"]
    for i, a in enumerate(args, start=2):
        lines.append(f"r{i} = {a} ll")
    lines += [f"call {fid}", "exit"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- XDP moves

HEAD_OFFSETS = [0, 1, -1, -14, -100, -216, -217, -256, 14, 40, len(PKT) - 14, len(PKT) - 13,
                0x7FFFFFFF, 0xFFFFFFFF, 0x1_0000_0004, -(1 << 31)]


@pytest.mark.parametrize("off", HEAD_OFFSETS)
def test_xdp_adjust_head(kernel: ModuleType, kernel_fds: Any, off: int) -> None:
    Pair(kernel_fds, XDP, _call(44, off)).check(kernel, PKT)


META_OFFSETS = [0, -4, -8, -32, -36, -252, -256, -260, -3, 4, -216, -220, 0xFFFFFFFC]


@pytest.mark.parametrize("off", META_OFFSETS)
def test_xdp_adjust_meta(kernel: ModuleType, kernel_fds: Any, off: int) -> None:
    Pair(kernel_fds, XDP, _call(54, off)).check(kernel, PKT)


TAIL_OFFSETS = [0, 1, 100, -1, -(len(PKT) - 14), -(len(PKT) - 13), 3520 - len(PKT),
                3521 - len(PKT), 4096, -4096, 0x7FFFFFFF]


@pytest.mark.parametrize("off", TAIL_OFFSETS)
def test_xdp_adjust_tail(kernel: ModuleType, kernel_fds: Any, off: int) -> None:
    Pair(kernel_fds, XDP, _call(65, off)).check(kernel, PKT)


COMBOS = [
    # meta then head: the metadata travels with data
    "r6 = r1\nr2 = -8\ncall 54\nr1 = r6\nr2 = -20\ncall 44\nr7 = r0\nr1 = r6\nr2 = 6\n"
    "call 65\nr0 <<= 8\nr0 |= r7\nexit\n",
    # head forward, meta as large as allowed, tail shrink
    "r6 = r1\nr2 = 10\ncall 44\nr1 = r6\nr2 = -252\ncall 54\nr7 = r0\nr1 = r6\nr2 = -5\n"
    "call 65\nr0 <<= 8\nr0 |= r7\nexit\n",
    # head back into the frame area once meta exists
    "r6 = r1\nr2 = -32\ncall 54\nr1 = r6\nr2 = -184\ncall 44\nr7 = r0\nr1 = r6\nr2 = -185\n"
    "call 44\nr0 <<= 8\nr0 |= r7\nexit\n",
]


@pytest.mark.parametrize("text", COMBOS)
def test_xdp_moves_combined(kernel: ModuleType, kernel_fds: Any, text: str) -> None:
    pair = Pair(kernel_fds, XDP, text)
    for pkt in (PKT, PKT[:14], PKT + bytes(300)):
        pair.check(kernel, pkt)


# ----------------------------------------------------------------------------- XDP bytes

def _xdp_load(off: int, length: int) -> str:
    """Load ``length`` bytes at ``off`` onto the stack; return err or the first u32."""
    return (f"r6 = r1\nr1 = 0\n*(u64 *)(r10 - 8) = r1\n*(u64 *)(r10 - 16) = r1\n"
            f"*(u64 *)(r10 - 24) = r1\n*(u64 *)(r10 - 32) = r1\n"
            f"r1 = r6\nr2 = {off} ll\nr3 = r10\nr3 += -32\nr4 = {length}\ncall 189\n"
            f"if r0 != 0 goto +3\nr0 = *(u32 *)(r10 - 32)\nr1 = *(u32 *)(r10 - 4)\nr0 ^= r1\n"
            f"exit\n")


def _xdp_store(off: int, length: int) -> str:
    return (f"r6 = r1\nr1 = 0x0102030405060708 ll\n*(u64 *)(r10 - 8) = r1\n"
            f"*(u64 *)(r10 - 16) = r1\n*(u64 *)(r10 - 24) = r1\n*(u64 *)(r10 - 32) = r1\n"
            f"r1 = r6\nr2 = {off} ll\nr3 = r10\nr3 += -32\nr4 = {length}\ncall 190\nexit\n")


BYTE_CASES = [(0, 4), (10, 32), (len(PKT) - 4, 4), (len(PKT) - 3, 4), (len(PKT), 1),
              (0xFFFF, 1), (0x10000, 1), (0xFFFFFFFF, 4), (3000, 32)]


@pytest.mark.parametrize(("off", "length"), BYTE_CASES)
def test_xdp_load_store_bytes(kernel: ModuleType, kernel_fds: Any, off: int,
                              length: int) -> None:
    for text in (_xdp_load(off, length), _xdp_store(off, length)):
        pair = Pair(kernel_fds, XDP, text)
        pair.check(kernel, PKT)
        pair.check(kernel, PKT + bytes(3000))


FRAG_PKT = PKT + bytes(range(256)) * 20  # beyond one page: fragments


@pytest.mark.parametrize("text", [
    _xdp_load(3500, 32), _xdp_load(4000, 8), _xdp_load(len(FRAG_PKT) - 8, 8),
    _xdp_load(len(FRAG_PKT) - 7, 8), _xdp_store(3510, 32), _xdp_store(len(FRAG_PKT) - 8, 8),
    _call(65, -10), _call(65, -2000), _call(65, -(len(FRAG_PKT) - 14)),
    _call(65, -(len(FRAG_PKT) - 13)), _call(65, 100), _call(65, 4096),
])
def test_xdp_frags(kernel: ModuleType, kernel_fds: Any, text: str) -> None:
    Pair(kernel_fds, XDP, text, prog_flags=BPF_F_XDP_HAS_FRAGS).check(kernel, FRAG_PKT)


# ----------------------------------------------------------------------------- skb writes

def _skb_store(off: int, length: int, flags: int) -> str:
    return (f"r6 = r1\nr1 = 0x1112131415161718 ll\n*(u64 *)(r10 - 8) = r1\n"
            f"*(u64 *)(r10 - 16) = r1\nr1 = r6\nr2 = {off} ll\nr3 = r10\nr3 += -16\n"
            f"r4 = {length}\nr5 = {flags}\ncall 9\nexit\n")


@pytest.mark.parametrize(("off", "length", "flags"), [
    (0, 4, 0), (14, 16, 1), (20, 2, 2), (20, 2, 3), (0, 4, 4), (len(PKT) - 4, 4, 0),
    (len(PKT) - 3, 4, 0), (0x7FFFFFFF, 1, 0), (0x80000000, 1, 0), (0xFFFFFFFF, 2, 0),
    (0x1_0000_0002, 4, 0),
])
def test_skb_store_bytes(kernel: ModuleType, kernel_fds: Any, off: int, length: int,
                         flags: int) -> None:
    Pair(kernel_fds, SCHED_CLS, _skb_store(off, length, flags)).check(kernel, PKT)


IP_CSUM, TCP_CSUM = 24, 50
CSUM_CASES = [
    # (helper, offset, from, to, flags)
    (10, IP_CSUM, 0x3C00, 0x4000, 2),
    (10, IP_CSUM, 0x630A10AC, 0x010A10AC, 4),
    (10, IP_CSUM, 0, 0x12345678, 0),
    (10, IP_CSUM, 1, 0x12345678, 0),
    (10, IP_CSUM, 0, 0, 3),
    (10, IP_CSUM, 0, 0, 0x10),
    (10, IP_CSUM + 1, 0, 1, 0),
    (10, 0x10000, 0, 1, 0),
    (10, len(PKT) - 1, 0, 1, 0),
    (10, len(PKT) - 2, 0xFFFF, 0, 2),
    (11, TCP_CSUM, 0x5000, 0xBB01, 2),
    (11, TCP_CSUM, 0x630A10AC, 0x010A10AC, 4 | 0x10),
    (11, TCP_CSUM, 0, 0xFFFF0000, 0x10),
    (11, TCP_CSUM, 0x1234, 0x1234, 2 | 0x20),
    (11, TCP_CSUM, 0x1234, 0x1234, 2 | 0x20 | 0x40),
    (11, TCP_CSUM, 0, 0, 0x80),
    (11, TCP_CSUM, 0, 0, 0x100),
    (11, TCP_CSUM, 5, 0, 0),
    (11, TCP_CSUM + 1, 0, 0, 0),
    (11, TCP_CSUM, 0, 0, 8),
]


@pytest.mark.parametrize(("fid", "off", "frm", "to", "flags"), CSUM_CASES)
def test_csum_replace(kernel: ModuleType, kernel_fds: Any, fid: int, off: int, frm: int,
                      to: int, flags: int) -> None:
    pair = Pair(kernel_fds, SCHED_CLS, _call(fid, off, frm, to, flags))
    pair.check(kernel, PKT)
    pair.check(kernel, PKT_ZERO_L4)


def test_csum_replace_mangled_zero_result(kernel: ModuleType, kernel_fds: Any) -> None:
    """A replacement that lands on 0 is written as CSUM_MANGLED_0 with the flag."""
    old = int.from_bytes(PKT[TCP_CSUM:TCP_CSUM + 2], "little")
    # replacing word w by w' with the checksum becoming 0 (~0xffff): pick to so that
    # csum_replace2 gives 0: ~(~old + ~from + to) == 0  ->  to = ~(~old + ~from)
    frm = 0x0001
    s = (~old & 0xFFFF) + (~frm & 0xFFFF)
    s = (s & 0xFFFF) + (s >> 16)
    to = ~s & 0xFFFF
    for flags in (2, 2 | 0x20):
        Pair(kernel_fds, SCHED_CLS, _call(11, TCP_CSUM, frm, to, flags)).check(kernel, PKT)


# ----------------------------------------------------------------------------- skb shape

IP6_PKT = (bytes(6) + bytes.fromhex("020000000001") + b"\x86\xdd"
           + bytes.fromhex("6000000000140640") + bytes(range(32)) + TCP_HDR[:20])
SKB_LEN, SKB_PKT_TYPE, SKB_PROTOCOL, SKB_HASH = 0, 4, 16, 68


def _skb_call(fid: int, args: tuple[int, ...], field: int) -> str:
    """Call the helper, then return (r0 & 0xff) | (ctx field << 8)."""
    lines = ["r6 = r1"] + [f"r{i} = {a} ll" for i, a in enumerate(args, start=2)]
    lines += [f"call {fid}", "r7 = r0", "r7 &= 0xff", f"r0 = *(u32 *)(r6 + {field})",
              "r0 <<= 8", "r0 |= r7", "exit"]
    return "\n".join(lines) + "\n"


SHAPE_CASES = [
    (32, (0,), SKB_PKT_TYPE), (32, (3,), SKB_PKT_TYPE), (32, (4,), SKB_PKT_TYPE),
    (32, (0x1_0000_0001,), SKB_PKT_TYPE),
    (39, (0,), SKB_LEN), (39, (len(PKT),), SKB_LEN), (39, (len(PKT) + 1,), SKB_LEN),
    (39, (0x1_0000_0000,), SKB_LEN),
    (48, (0xABCD,), SKB_HASH), (48, (0x1234_5678_9ABC,), SKB_HASH),
    (31, (0xDD86, 0), SKB_PROTOCOL), (31, (0xDD86, 1), SKB_PROTOCOL),
    (31, (0x0008, 0), SKB_PROTOCOL), (31, (0x1234, 0), SKB_PROTOCOL),
    (31, (0xDD86, 0), SKB_LEN),
    (38, (len(PKT),), SKB_LEN), (38, (20,), SKB_LEN), (38, (14,), SKB_LEN),
    (38, (13,), SKB_LEN), (38, (len(PKT) + 7,), SKB_LEN), (38, (len(PKT), 1), SKB_LEN),
    (38, (0xFFFFFFFF,), SKB_LEN), (38, (4000,), SKB_LEN), (38, (9000,), SKB_LEN), (38, (16065,), SKB_LEN),
    (43, (0,), SKB_LEN), (43, (14,), SKB_LEN), (43, (40,), SKB_LEN), (43, (1, 1), SKB_LEN),
    (43, (0xFFFFFFFF,), SKB_LEN),
]


@pytest.mark.parametrize(("fid", "args", "field"), SHAPE_CASES)
def test_skb_shape(kernel: ModuleType, kernel_fds: Any, fid: int, args: tuple[int, ...],
                   field: int) -> None:
    if fid == 38 and len(args) == 1:
        args = (*args, 0)
    if fid == 43 and len(args) == 1:
        args = (*args, 0)
    pair = Pair(kernel_fds, SCHED_CLS, _skb_call(fid, args, field))
    pair.check(kernel, PKT)
    pair.check(kernel, IP6_PKT)


def test_set_hash_then_recalc_and_invalidate(kernel: ModuleType, kernel_fds: Any) -> None:
    """get_hash_recalc returns what set_hash stored; store_bytes(INVALIDATE_HASH) clears
    the hash field."""
    text = ("r6 = r1\nr2 = 0x5a5a\ncall 48\nr1 = r6\ncall 34\nr8 = r0\n"
            "r1 = 0\n*(u64 *)(r10 - 8) = r1\nr1 = r6\nr2 = 0\nr3 = r10\nr3 += -8\nr4 = 2\n"
            "r5 = 2\ncall 9\nr0 = *(u32 *)(r6 + 68)\nr0 <<= 16\nr0 |= r8\nexit\n")
    Pair(kernel_fds, SCHED_CLS, text).check(kernel, PKT)


# ----------------------------------------------------------------------------- VLAN

VLAN_PKT = bytes(6) + bytes.fromhex("020000000001") + b"\x81\x00\x00\x07\x08\x00" + PKT[14:]
QINQ_PKT = (bytes(6) + bytes.fromhex("020000000001") + b"\x88\xa8\x00\x03\x81\x00\x00\x07"
            + b"\x08\x00" + PKT[14:])
SKB_VLAN_PRESENT, SKB_VLAN_TCI, SKB_VLAN_PROTO = 20, 24, 28

PUSH = "r1 = r6\nr2 = {proto}\nr3 = {tci}\ncall 18\nr9 |= r0\n"
POP = "r1 = r6\ncall 19\nr9 |= r0\n"


def _vlan_prog(steps: str) -> str:
    """Run the steps (OR-ing their results into r9), then return
    (r9 & 0xff) | tci << 8 | present << 24 | (protocol != vlan_proto) << 25 |
    (protocol is 802.1Q) << 26."""
    return ("r6 = r1\nr9 = 0\n" + steps
            + "r9 &= 0xff\nr0 = *(u32 *)(r6 + 24)\nr0 &= 0xffff\nr0 <<= 8\nr0 |= r9\n"
              "r1 = *(u32 *)(r6 + 20)\nr1 <<= 24\nr0 |= r1\n"
              "r1 = *(u32 *)(r6 + 16)\nr2 = *(u32 *)(r6 + 28)\n"
              "if r1 == r2 goto +3\nr3 = 1\nr3 <<= 25\nr0 |= r3\n"
              "if r1 != 0x81 goto +3\nr3 = 1\nr3 <<= 26\nr0 |= r3\nexit\n")


VLAN_CASES = [
    PUSH.format(proto=0x81, tci=5),
    PUSH.format(proto=0xA888, tci=0xFFFF),
    PUSH.format(proto=0x1234, tci=0x12345),
    PUSH.format(proto=0x81, tci=5) + PUSH.format(proto=0xA888, tci=9),
    PUSH.format(proto=0x81, tci=5) + PUSH.format(proto=0x81, tci=6)
    + PUSH.format(proto=0x81, tci=7),
    POP,
    POP + POP,
    PUSH.format(proto=0x81, tci=5) + POP,
    PUSH.format(proto=0x81, tci=5) + PUSH.format(proto=0x81, tci=6) + POP,
    PUSH.format(proto=0x81, tci=5) + PUSH.format(proto=0x81, tci=6) + POP + POP,
]


@pytest.mark.parametrize("steps", VLAN_CASES)
def test_skb_vlan_push_pop(kernel: ModuleType, kernel_fds: Any, steps: str) -> None:
    pair = Pair(kernel_fds, SCHED_CLS, _vlan_prog(steps))
    for pkt in (PKT, VLAN_PKT, QINQ_PKT, VLAN_PKT[:16]):
        pair.check(kernel, pkt)


# ----------------------------------------------------------------------------- relative loads

def _load_rel(off: int, length: int, hdr: int) -> str:
    """bpf_skb_load_bytes_relative into a 16-byte stack buffer preset to 0xaa..;
    return (r0 & 0xff) | first-u32 xor last-u32 of the buffer << 8."""
    return (f"r6 = r1\nr1 = 0xaaaaaaaaaaaaaaaa ll\n*(u64 *)(r10 - 8) = r1\n"
            f"*(u64 *)(r10 - 16) = r1\nr1 = r6\nr2 = {off} ll\nr3 = r10\nr3 += -16\n"
            f"r4 = {length}\nr5 = {hdr} ll\ncall 68\nr0 &= 0xff\nr1 = *(u32 *)(r10 - 16)\n"
            f"r2 = *(u32 *)(r10 - 4)\nr1 ^= r2\nr1 <<= 8\nr0 |= r1\nexit\n")


@pytest.mark.parametrize("ptype", [SCHED_CLS, 1])
@pytest.mark.parametrize(("off", "length", "hdr"), [
    (0, 16, 0), (0, 16, 1), (12, 4, 0), (len(PKT) - 16, 16, 0), (len(PKT) - 15, 16, 0),
    (len(PKT) - 30, 16, 1), (len(PKT) - 29, 16, 1), (0, 4, 2), (0x10000, 1, 0),
    (0, 4, 0x1_0000_0001),
])
def test_skb_load_bytes_relative(kernel: ModuleType, kernel_fds: Any, ptype: int, off: int,
                                 length: int, hdr: int) -> None:
    pair = Pair(kernel_fds, ptype, _load_rel(off, length, hdr))
    pair.check(kernel, PKT)


# ----------------------------------------------------------------------------- adjust_room

@pytest.mark.parametrize(("diff", "mode", "flags"), [
    (8, 0, 0), (8, 1, 0), (-8, 0, 0), (-8, 1, 0), (0, 0, 0), (4, 2, 0), (0x1000, 0, 0),
    (48, 0, 0), (-20, 1, 0), (-(len(PKT) - 14 - 20), 0, 0), (-(len(PKT) - 14 - 19), 0, 0),
    (16, 0, 1 << 5), (-4, 0, 1 << 7), (4, 0, 1 << 7), (-4, 0, 3 << 7), (-4, 0, 1 << 8),
    (-4, 0, 1 << 1), (8, 0, 1 << 9), (8, 0, 1), (-8, 0, 1), (0xFFFFFFF8, 0, 0),
])
def test_skb_adjust_room(kernel: ModuleType, kernel_fds: Any, diff: int, mode: int,
                         flags: int) -> None:
    pair = Pair(kernel_fds, SCHED_CLS, _skb_call(50, (diff, mode, flags), SKB_LEN))
    for pkt in (PKT, IP6_PKT, VLAN_PKT):
        pair.check(kernel, pkt)
