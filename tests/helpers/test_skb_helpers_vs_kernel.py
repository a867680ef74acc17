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


def _tunnel_prog(set_flags: int | None, set_size: int, get_flags: int, get_size: int,
                 label: int) -> str:
    """set_tunnel_key (unless None) then get_tunnel_key; the key read is stored in the
    packet at offset 14 (data_out shows it), r0 = set's and get's low result bytes."""
    words = [0x11223344, 0x0A000001, 2, 3, 4, 0x4010, label, 0xC0A80001, 5, 6, 7]
    lines = ["r6 = r1"]
    for i, w in enumerate(words):
        lines += [f"r1 = {w} ll", f"*(u32 *)(r10 - {48 - 4 * i}) = r1"]
    lines += ["r1 = 0"] + [f"*(u64 *)(r10 - {96 - 8 * i}) = r1" for i in range(6)]
    if set_flags is None:
        lines += ["r7 = 0"]
    else:
        lines += ["r1 = r6", "r2 = r10", "r2 += -48", f"r3 = {set_size}",
                  f"r4 = {set_flags}", "call 21", "r7 = r0"]
    lines += ["r1 = r6", "r2 = r10", "r2 += -96", f"r3 = {get_size}", f"r4 = {get_flags}",
              "call 20", "r8 = r0",
              "r1 = r6", "r2 = 14", "r3 = r10", "r3 += -96", "r4 = 44", "r5 = 0", "call 9",
              "r0 = r8", "r0 &= 0xff", "r0 <<= 8", "r7 &= 0xff", "r0 |= r7", "exit"]
    return "\n".join(lines) + "\n"


TUNNEL_CASES = [
    (None, 44, 0, 44, 0),            # no metadata: -EINVAL, zeroed key
    (0, 44, 0, 44, 0), (0, 44, 0x10, 44, 0), (0, 44, 1, 44, 0),   # v4; flags; -EPROTO
    (1, 44, 1, 44, 0x12345), (1, 44, 0x11, 44, 0xFFF12345),      # v6 with label
    (0, 44, 0, 44, 7),               # v4 with a label: set refuses
    (0x1E, 44, 0x10, 44, 0), (0x2, 44, 0x10, 44, 0), (0x20, 44, 0, 44, 0),
    (0, 24, 0, 24, 0), (0, 28, 0, 28, 0), (1, 28, 1, 28, 9), (0, 22, 0, 22, 0),
    (0, 8, 0, 8, 0), (1, 8, 1, 8, 0), (0, 12, 0, 44, 0), (0, 44, 0, 12, 0),
    (0, 44, 0x20, 44, 0), (0, 40, 0, 44, 0),
]


@pytest.mark.parametrize(("set_flags", "set_size", "get_flags", "get_size", "label"),
                         TUNNEL_CASES)
def test_tunnel_key_set_then_get(kernel: ModuleType, kernel_fds: Any, set_flags: int | None,
                                 set_size: int, get_flags: int, get_size: int,
                                 label: int) -> None:
    """The key comes back with remote/local swapped (the metadata's dst is the remote),
    the flow label masked, the tunnel flags as __be16 with BPF_F_TUNINFO_FLAGS."""
    text = _tunnel_prog(set_flags, set_size, get_flags, get_size, label)
    Pair(kernel_fds, SCHED_CLS, text).check(kernel, PKT)


CLONE = """
r6 = r1
r2 = {ifindex} ll
r3 = {flags} ll
call 13
exit
"""


@pytest.mark.parametrize(("ifindex", "flags"), [(1, 0), (1, 1), (1, 2), (999, 0),
                                                (1, 1 << 32)])
def test_clone_redirect(kernel: ModuleType, kernel_fds: Any, ifindex: int,
                        flags: int) -> None:
    Pair(kernel_fds, SCHED_CLS, CLONE.format(ifindex=ifindex, flags=flags)).check(kernel, PKT)


RECALC = """
r6 = r1
call 34
r7 = r0
r8 = *(u32 *)(r6 + 68)
r1 = r6
call 34
r0 = 0
if r7 == 0 goto +1
r0 |= 1
if r7 != r8 goto +1
r0 |= 2
exit
"""

RECALC_VALUE = """
r6 = r1
call 34
exit
"""


def _reverse(pkt: bytes) -> bytes:
    """The same TCP/IPv4 flow in the other direction (addresses and ports swapped)."""
    ip = bytearray(pkt[14:34])
    ip[12:16], ip[16:20] = pkt[30:34], pkt[26:30]
    tcp = bytearray(pkt[34:])
    tcp[0:2], tcp[2:4] = pkt[36:38], pkt[34:36]
    return pkt[:14] + bytes(ip) + bytes(tcp)


OTHER_FLOW = PKT[:34] + bytes.fromhex("a0c90050") + PKT[38:]


def test_get_hash_recalc_properties(kernel: ModuleType, kernel_fds: Any) -> None:
    """The flow hash is keyed by a random per-boot secret in the kernel, so its value is
    not comparable; what is: non-zero, stored in __sk_buff.hash, symmetric in direction,
    different for another flow."""
    for pkt in (PKT, _reverse(PKT), OTHER_FLOW):
        assert Pair(kernel_fds, SCHED_CLS, RECALC).check(kernel, pkt)[1] == 3
    kfd = Pair(kernel_fds, SCHED_CLS, RECALC_VALUE)
    mine = Program.load(Kernel(), SCHED_CLS, encode(assemble(RECALC_VALUE)))
    k = [kernel.prog_test_run(kfd.kfd, data_in=p, data_size_out=200).retval
         for p in (PKT, _reverse(PKT), OTHER_FLOW)]
    ours = [mine.test_run(p).retval for p in (PKT, _reverse(PKT), OTHER_FLOW)]
    assert (k[0] == k[1], k[0] == k[2]) == (ours[0] == ours[1], ours[0] == ours[2]) \
        == (True, False)
