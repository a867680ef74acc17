"""FLOW_DISSECTOR programs, differential against the live kernel.

- ``BPF_PROG_TEST_RUN`` (``bpf_prog_test_run_flow_dissector``) of the shipped
  ``examples/flow_dissector.o`` on generated packets (hypothesis + scapy): retval, the flow
  keys in data_out, and the example's counters;
- the attribute rules: short/long data_in, flags/cpu/batch_size, ctx_in as
  ``struct bpf_flow_keys`` (only ``flags`` settable), ctx_out, data_out truncation, repeat;
- the post-run clamping of ``nhoff``/``thoff``;
- ``flow_dissector_is_valid_access`` verdicts and the xlated code of
  ``flow_dissector_convert_ctx_access``.
"""

from __future__ import annotations

import ctypes
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybpf.skel as skel
from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.uapi import BpfCmd, bpf_attr_test

FLOW_DISSECTOR = 22
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
F_PARSE_1ST_FRAG, F_STOP_AT_FLOW_LABEL, F_STOP_AT_ENCAP = 1, 2, 4
KEYS_SIZE = 56
FLAGS_OFF = 48
AGREE = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def keys_with_flags(flags: int) -> bytes:
    return bytes(FLAGS_OFF) + struct.pack("<I", flags) + bytes(KEYS_SIZE - FLAGS_OFF - 4)


# --------------------------------------------------------------------------- packets

def _scapy_packets() -> st.SearchStrategy[bytes]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

    def build(vlans: int, v6: bool, l4: str, frag: int, flow: int, sport: int, dport: int,
              pay: bytes, cut: int) -> bytes:
        pkt: Any = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        if vlans >= 2:
            pkt = pkt / Dot1AD(vlan=5)
        if vlans >= 1:
            pkt = pkt / Dot1Q(vlan=7)
        if v6:
            pkt = pkt / IPv6(src="2001:db8::1", dst="2001:db8::2", fl=flow)
        else:
            pkt = pkt / IP(src="10.0.0.1", dst="192.168.1.7", flags=frag >> 13,
                           frag=frag & 0x1FFF)
        if l4 == "tcp":
            pkt = pkt / TCP(sport=sport, dport=dport)
        elif l4 == "udp":
            pkt = pkt / UDP(sport=sport, dport=dport)
        else:
            pkt = pkt / ICMP()
        raw = bytes(pkt / pay)
        return raw[:max(14, len(raw) - cut)]

    return st.builds(build, st.integers(0, 2), st.booleans(),
                     st.sampled_from(["tcp", "udp", "icmp"]),
                     st.sampled_from([0, 0x2000, 0x2005, 0x0003]), st.sampled_from([0, 0x12345]),
                     st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=16),
                     st.sampled_from([0, 0, 0, 4, 10, 30]))


def packets() -> st.SearchStrategy[bytes]:
    raw = st.binary(min_size=14, max_size=96)
    try:
        return st.one_of(raw, _scapy_packets())
    except ImportError:  # scapy is optional: random frames only
        return raw


# --------------------------------------------------------------------------- the example

def test_example_agrees(kernel: ModuleType) -> None:
    path = EXAMPLES / "flow_dissector.o"
    mine, live = skel.load(str(path)), skel.load(str(path), kernel="live")
    compared = 0

    @given(packets(), st.sampled_from([0, F_PARSE_1ST_FRAG, F_STOP_AT_FLOW_LABEL,
                                       F_PARSE_1ST_FRAG | F_STOP_AT_FLOW_LABEL]))
    @AGREE
    def agree(pkt: bytes, flags: int) -> None:
        nonlocal compared
        ctx = keys_with_flags(flags) if flags else None
        a = mine.progs.dissect.test_run(data_in=pkt, data_size_out=64, ctx_in=ctx)
        b = live.progs.dissect.test_run(data_in=pkt, data_size_out=64, ctx_in=ctx)
        assert (a.retval, a.data_out) == (b.retval, b.data_out), pkt.hex()
        compared += 1

    agree()
    assert compared > 0
    for key in range(5):
        theirs = struct.unpack("<Q", kernel.map_lookup(live.maps.seen.fd,
                                                       struct.pack("<I", key), 8))[0]
        assert mine.maps.seen[key] == theirs, key


# --------------------------------------------------------------------------- attr rules

def _issue(side: Any, fd: int, *, data_in: bytes | None, data_size_out: int = 0,
           ctx_in: bytes | None = None, ctx_size_out: int = 0, repeat: int = 1,
           flags: int = 0, cpu: int = 0, batch_size: int = 0) -> tuple[int, int, bytes, int,
                                                                       bytes, int]:
    din = ctypes.create_string_buffer(data_in or b"", max(len(data_in or b""), 1))
    dout = ctypes.create_string_buffer(max(data_size_out, 1))
    cin = ctypes.create_string_buffer(ctx_in or b"", max(len(ctx_in or b""), 1))
    cout = ctypes.create_string_buffer(max(ctx_size_out, 1))
    a = bpf_attr_test()
    a.prog_fd, a.repeat, a.flags, a.cpu, a.batch_size = fd, repeat, flags, cpu, batch_size
    a.data_in = ctypes.addressof(din) if data_in is not None else 0
    a.data_size_in = len(data_in or b"")
    a.data_out = ctypes.addressof(dout) if data_size_out else 0
    a.data_size_out = data_size_out
    a.ctx_in = ctypes.addressof(cin) if ctx_in is not None else 0
    a.ctx_size_in = len(ctx_in or b"")
    a.ctx_out = ctypes.addressof(cout) if ctx_size_out else 0
    a.ctx_size_out = ctx_size_out
    if isinstance(side, Kernel):
        ret = side.bpf(BpfCmd.BPF_PROG_TEST_RUN, a)
        err = -ret if ret < 0 else 0
    else:
        _r, err = side.sys_bpf(BpfCmd.BPF_PROG_TEST_RUN, a)
    dlen = min(a.data_size_out, data_size_out)
    clen = min(a.ctx_size_out, ctx_size_out)
    return err, a.retval, dout.raw[:dlen], a.data_size_out, cout.raw[:clen], a.ctx_size_out


class Pair:
    """One assembled flow dissector loaded in the live kernel and in pybpf."""

    def __init__(self, kernel: ModuleType, fds: Any, text: str) -> None:
        raw = encode(assemble(text))
        res = fds.prog_load(FLOW_DISSECTOR, raw, log_level=1, log_size=1 << 16)
        assert res.ok, res.log
        self.kernel, self.kfd = kernel, res.fd
        self.pk = Kernel()
        self.prog = Program.load(self.pk, FLOW_DISSECTOR, raw)

    def check(self, **kw: Any) -> tuple[int, int, bytes, int, bytes, int]:
        theirs = _issue(self.kernel, self.kfd, **kw)
        ours = _issue(self.pk, self.prog.fd, **kw)
        assert ours == theirs, kw
        return theirs


# r0 = n_proto | nhoff << 16; writes sport = 0x1234 into the keys
KEYS_READER = """
r2 = *(u64 *)(r1 + 144)
r3 = *(u16 *)(r2 + 10)
r4 = *(u16 *)(r2 + 0)
r4 <<= 16
r0 = r3
r0 |= r4
r5 = 0x1234
*(u16 *)(r2 + 12) = r5
r5 = *(u32 *)(r2 + 48)
*(u32 *)(r2 + 52) = r5
exit
"""
PKT = bytes(12) + b"\x86\xdd" + bytes(50)

ATTR_CASES: list[dict[str, Any]] = [
    {"data_in": PKT, "data_size_out": 64},
    {"data_in": PKT, "data_size_out": 56},
    {"data_in": PKT, "data_size_out": 10},  # ENOSPC, partial keys
    {"data_in": PKT},  # no data_out buffer
    {"data_in": PKT[:14], "data_size_out": 64},
    {"data_in": PKT[:13], "data_size_out": 64},  # shorter than ETH_HLEN
    {"data_in": None, "data_size_out": 64},
    {"data_in": bytes(12) + b"\x08\x00" + bytes(4082), "data_size_out": 64},  # a page
    {"data_in": bytes(4097), "data_size_out": 64},  # more than a page
    {"data_in": PKT, "data_size_out": 64, "flags": 1},
    {"data_in": PKT, "data_size_out": 64, "cpu": 1},
    {"data_in": PKT, "data_size_out": 64, "batch_size": 1},
    {"data_in": PKT, "data_size_out": 64, "repeat": 5},
    {"data_in": PKT, "data_size_out": 64, "ctx_in": keys_with_flags(7), "ctx_size_out": 56},
    {"data_in": PKT, "data_size_out": 64, "ctx_in": keys_with_flags(0xFFFFFFFF)},
    {"data_in": PKT, "data_size_out": 64, "ctx_in": b"\x01" + bytes(55)},  # nhoff set
    {"data_in": PKT, "data_size_out": 64, "ctx_in": bytes(55) + b"\x01"},  # flow_label
    {"data_in": PKT, "data_size_out": 64, "ctx_in": keys_with_flags(2)[:52]},  # short ctx
    {"data_in": PKT, "data_size_out": 64, "ctx_in": keys_with_flags(2) + bytes(8)},
    {"data_in": PKT, "data_size_out": 64, "ctx_in": keys_with_flags(2) + b"\x01"},  # E2BIG
    {"data_in": PKT, "data_size_out": 64, "ctx_size_out": 56},  # ctx_out only
    {"data_in": PKT, "data_size_out": 64, "ctx_in": keys_with_flags(1), "ctx_size_out": 8},
]


@pytest.mark.parametrize("case", range(len(ATTR_CASES)))
def test_test_run_attr_rules(kernel: ModuleType, kernel_fds: Any, case: int) -> None:
    Pair(kernel, kernel_fds, KEYS_READER).check(**ATTR_CASES[case])


CLAMP = """
r2 = *(u64 *)(r1 + 144)
r3 = {nhoff}
*(u16 *)(r2 + 0) = r3
r3 = {thoff}
*(u16 *)(r2 + 2) = r3
r0 = {ret}
exit
"""


@pytest.mark.parametrize("nhoff,thoff", [(0, 0), (14, 14), (20, 10), (30, 40), (63, 64),
                                         (64, 70), (0xFFFF, 0xFFFF), (40, 0xFFFF), (0, 100)])
def test_offsets_clamped(kernel: ModuleType, kernel_fds: Any, nhoff: int, thoff: int) -> None:
    text = CLAMP.format(nhoff=nhoff, thoff=thoff, ret=2 if nhoff & 1 else 0)
    Pair(kernel, kernel_fds, text).check(data_in=PKT, data_size_out=64)


# --------------------------------------------------------------------------- verifier

def _kernel_xlated(kernel: ModuleType, fd: int) -> list[Insn]:
    return kernel.prog_xlated(fd)


def _norm(insns: list[Insn]) -> list[Insn]:
    return [i._replace(imm=0) if i.code == 0x85 and i.src == 0 else i for i in insns]


ACCESSES = [(off, size) for off in (0, 4, 8, 16, 76, 78, 80, 84, 140, 144, 148, 152, 188, 190)
            for size in ("u8", "u16", "u32", "u64") if off % {"u8": 1, "u16": 2, "u32": 4,
                                                            "u64": 8}[size] == 0]


@pytest.mark.parametrize("off,size", ACCESSES)
def test_ctx_access_and_xlated(kernel: ModuleType, kernel_fds: Any, off: int, size: str) -> None:
    for load in (f"r2 = *({size} *)(r1 + {off})", f"r2 = *(s32 *)(r1 + {off})",
                 f"*({size} *)(r1 + {off}) = r1"):
        if "s32" in load and size != "u32":
            continue
        raw = encode(assemble(f"{load}\nr0 = 0\nexit\n"))
        res = kernel_fds.prog_load(FLOW_DISSECTOR, raw, log_level=1, log_size=1 << 16)
        pk = Kernel()
        if not res.ok:
            with pytest.raises(BpfError) as exc:
                Program.load(pk, FLOW_DISSECTOR, raw)
            assert exc.value.errno == res.errno, (load, res.log)
            continue
        ours = Program.load(pk, FLOW_DISSECTOR, raw).obj.xlated
        assert _norm(ours) == _norm(_kernel_xlated(kernel, res.fd)), load


def test_example_xlated_prefix_equal(kernel: ModuleType) -> None:
    """The example's code up to its first helper call (the ctx reads of ``flow_keys``,
    ``data``, ``data_end``) is the kernel's xlated code. Further on the kernel inlines
    array lookups (a fixup outside ctx conversion), which shifts jumps."""
    path = EXAMPLES / "flow_dissector.o"
    mine, live = skel.load(str(path)), skel.load(str(path), kernel="live")
    theirs = _kernel_xlated(kernel, live.progs.dissect.fd)
    ours = mine.progs.dissect.obj.xlated
    cut = next(i for i, ins in enumerate(theirs) if ins.code == 0x85)
    assert cut > 5
    assert ours[:cut] == theirs[:cut]
    assert any(ins.code == 0x79 and ins.off in (16, 24) for ins in ours[:cut])


LOAD_BYTES = """
r2 = -1
*(u64 *)(r10 - 8) = r2
r2 = {off}
r3 = r10
r3 += -8
r4 = {size}
call 26
r6 = r0
r0 = *(u32 *)(r10 - 8)
r0 <<= 8
r0 ^= r6
exit
"""


@pytest.mark.parametrize("off,size", [(0, 4), (14, 8), (0x10000, 4), (50, 2)])
def test_load_bytes_fails_without_skb(kernel: ModuleType, kernel_fds: Any, off: int,
                                      size: int) -> None:
    """``bpf_flow_dissector_load_bytes`` has no skb in a test run: -EFAULT and a zeroed
    buffer, every time (repeated: a stale or misread skb would show)."""
    pair = Pair(kernel, kernel_fds, LOAD_BYTES.format(off=off, size=size))
    for _ in range(4):
        pair.check(data_in=PKT, data_size_out=64)
