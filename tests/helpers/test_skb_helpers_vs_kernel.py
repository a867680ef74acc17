"""skb helpers on the native ``struct sk_buff``, differential against the live kernel.

What the ctx conversion made observable: ``skb->csum`` of a ``CHECKSUM_COMPLETE`` test skb
(``csum_update``'s return value, ``store_bytes(BPF_F_RECOMPUTE_CSUM)`` and
``l4_csum_replace(BPF_F_PSEUDO_HDR)`` keeping it in step, ``EBADMSG`` when they do not),
packet growth past the buffer's headroom/tailroom (reallocated as ``pskb_expand_head``
does, not ENOMEM), and ``__sk_buff`` fields read after a helper changed the skb.
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

SCHED_CLS, CGROUP_SKB = 3, 8
CHECKSUM_COMPLETE = 1 << 2  # BPF_F_TEST_SKB_CHECKSUM_COMPLETE

ETH = bytes(6) + bytes.fromhex("020000000001") + b"\x08\x00"
IP_HDR = bytes.fromhex("4500003c1c4640004006b1e6ac100a63ac100a0c")
TCP_HDR = bytes.fromhex("a0c80050a1b2c3d400000000a00272101234000002040"
                        "5b40402080a000000000000000001030307")
PKT = ETH + IP_HDR + TCP_HDR
ODD_PKT = PKT + b"\x55"


class Pair:
    def __init__(self, fds: Any, prog_type: int, text: str) -> None:
        self.text = text
        raw = encode(assemble(text))
        res = fds.prog_load(prog_type, raw, log_level=1, log_size=1 << 16)
        assert res.ok, res.log
        self.kfd = res.fd
        self.pprog = Program.load(Kernel(), prog_type, raw)

    def check(self, oracle: ModuleType, data: bytes, flags: int = 0) -> tuple[int, int, bytes]:
        size_out = len(data) + 4096
        res = oracle.prog_test_run(self.kfd, data_in=data, data_size_out=size_out, flags=flags)
        want = (res.errno, 0, b"") if res.errno else (0, res.retval, bytes(res.data_out))
        try:
            run = self.pprog.test_run(data, data_size_out=size_out, flags=flags)
            got = (0, int(run.retval), bytes(run.data_out))
        except BpfError as exc:
            got = (exc.errno, 0, b"")
        assert got == want, f"{self.text}\nflags {flags:#x}"
        return want


CSUM_UPDATE = """
r6 = r1
r2 = {value} ll
call 40
exit
"""


@pytest.mark.parametrize("value", [0, 1, 0x1234, 0xFFFF, 0xFFFF_FFFF, 0x8000_0000])
@pytest.mark.parametrize("flags", [0, CHECKSUM_COMPLETE])
@pytest.mark.parametrize("pkt", [PKT, ODD_PKT], ids=["even", "odd"])
def test_csum_update(kernel: ModuleType, kernel_fds: Any, value: int, flags: int,
                     pkt: bytes) -> None:
    """-ENOTSUPP unless CHECKSUM_COMPLETE; then skb->csum + value (and test_run's
    checksum check then fails unless value is 0, ±0 in ones' complement)."""
    Pair(kernel_fds, SCHED_CLS, CSUM_UPDATE.format(value=value)).check(kernel, pkt, flags)


STORE = """
r6 = r1
r1 = {word} ll
*(u32 *)(r10 - 8) = r1
r1 = r6
r2 = {off}
r3 = r10
r3 += -8
r4 = 4
r5 = {flags}
call 9
exit
"""


@pytest.mark.parametrize("off", [14 + 12, 14 + 13, 40, 41])
@pytest.mark.parametrize("hflags", [0, 1])  # BPF_F_RECOMPUTE_CSUM
def test_store_bytes_keeps_complete_csum(kernel: ModuleType, kernel_fds: Any, off: int,
                                         hflags: int) -> None:
    """With BPF_F_RECOMPUTE_CSUM skb->csum follows the bytes (odd offsets too), so the
    test_run check passes; without it, EBADMSG."""
    text = STORE.format(word=0xDEADBEEF, off=off, flags=hflags)
    Pair(kernel_fds, SCHED_CLS, text).check(kernel, PKT, CHECKSUM_COMPLETE)


L4 = """
r6 = r1
r2 = 50
r3 = {frm} ll
r4 = {to} ll
r5 = {flags}
call 11
exit
"""


@pytest.mark.parametrize(("frm", "to", "flags"), [
    (0xAC100A63, 0x0A000001, 0x14), (0xAC100A63, 0x0A000001, 0x04),
    (0x1234, 0x4321, 0x12), (0, 0x1234_5678, 0x10), (0, 0x1234_5678, 0x90),
])
def test_l4_csum_replace_pseudo_header(kernel: ModuleType, kernel_fds: Any, frm: int,
                                       to: int, flags: int) -> None:
    pair = Pair(kernel_fds, SCHED_CLS, L4.format(frm=frm, to=to, flags=flags))
    pair.check(kernel, PKT)
    pair.check(kernel, PKT, CHECKSUM_COMPLETE)


GROW = """
r6 = r1
r2 = {a} ll
r3 = {b} ll
{extra}
call {fid}
r7 = r0
r0 = *(u32 *)(r6 + 0)
r0 <<= 8
r7 &= 0xff
r0 |= r7
exit
"""


@pytest.mark.parametrize(("fid", "a", "b", "extra"), [
    (43, 64, 0, ""), (43, 65, 0, ""), (43, 100, 0, ""), (43, 1000, 0, ""),
    (43, 4000, 0, ""),
    (38, 3000, 0, ""), (38, 9000, 0, ""), (38, 16000, 0, ""),
    (50, 60, 1, "r4 = 0"), (50, 200, 1, "r4 = 0"), (50, 2000, 0, "r4 = 0"),
    (18, 0x0081, 7, ""),
])
def test_growth_past_the_buffer(kernel: ModuleType, kernel_fds: Any, fid: int, a: int,
                                b: int, extra: str) -> None:
    """change_head/change_tail/adjust_room/vlan_push beyond the headroom or tailroom
    succeed as in the kernel (which reallocates), with the same packet out."""
    text = GROW.format(fid=fid, a=a, b=b, extra=extra)
    Pair(kernel_fds, SCHED_CLS, text).check(kernel, PKT)


VLAN_TWICE = """
r6 = r1
r2 = 0x0081
r3 = 5
call 18
r1 = r6
r2 = 0x0081
r3 = 6
call 18
r1 = r6
r2 = 0xA888
r3 = 7
call 18
r0 = *(u32 *)(r6 + 24)
r1 = *(u32 *)(r6 + 0)
r1 <<= 16
r0 |= r1
exit
"""


def test_vlan_push_three_times_reads_fields(kernel: ModuleType, kernel_fds: Any) -> None:
    """Tags pushed into the packet in front of a 64-byte headroom; vlan_tci and len read
    through the converted ctx."""
    Pair(kernel_fds, SCHED_CLS, VLAN_TWICE).check(kernel, PKT)


HASH = """
r6 = r1
r2 = 0x1234567
call 48
r1 = r6
call 34
r7 = r0
r0 = *(u32 *)(r6 + 68)
r0 ^= r7
exit
"""


def test_set_hash_is_what_recalc_and_the_field_read(kernel: ModuleType,
                                                    kernel_fds: Any) -> None:
    assert Pair(kernel_fds, SCHED_CLS, HASH).check(kernel, PKT)[1] == 0
