"""``XDP_REDIRECT`` through DEVMAP/DEVMAP_HASH on pybpf's virtual devices.

An XDP program on device ``a`` redirects with ``bpf_redirect_map``: the frame leaves by the
entry's device; an entry's own program (``BPF_XDP_DEVMAP``) sees ``egress_ifindex`` and
may rewrite or drop the frame; ``BPF_F_BROADCAST`` copies it to every device of the map
(but the ingress one with ``BPF_F_EXCLUDE_INGRESS``); a missing entry takes the fallback
action from the flags.
"""

from __future__ import annotations

import ctypes
import struct

import pytest

import pybpf.uapi as U
from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.kernel import Kernel
from pybpf.program import Program

XDP, BPF_XDP_DEVMAP = 6, 33
BROADCAST, EXCLUDE_INGRESS = 1 << 3, 1 << 4
FRAME = bytes(range(64))

# egress program: byte 0 := egress_ifindex, byte 1 := ingress_ifindex; XDP_PASS
STAMP = """
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r4 = r2
r4 += 2
if r4 > r3 goto +6
r5 = *(u32 *)(r1 + 20)
*(u8 *)(r2 + 0) = r5
r5 = *(u32 *)(r1 + 12)
*(u8 *)(r2 + 1) = r5
r0 = 2
exit
r0 = 1
exit
"""


class World:
    def __init__(self, map_type: int, value_size: int = 8) -> None:
        self.k = Kernel()
        self.devs = {n: self.k.netdev(n) for n in "abc"}
        self.sent: dict[str, list[bytes]] = {n: [] for n in "abc"}
        for name, dev in self.devs.items():
            dev.on_transmit = self.sent[name].append
        a = U.bpf_attr_map_create()
        a.map_type, a.key_size, a.value_size, a.max_entries = map_type, 4, value_size, 8
        self.map_fd = self.k.bpf(U.BpfCmd.BPF_MAP_CREATE, a)
        assert self.map_fd >= 0
        self.value_size = value_size

    def put(self, key: int, dev: str, prog_fd: int = 0) -> int:
        kb = ctypes.create_string_buffer(struct.pack("<I", key))
        vb = ctypes.create_string_buffer(
            struct.pack("<Ii", self.devs[dev].ifindex, prog_fd)[:self.value_size])
        a = U.bpf_attr_map_elem()
        a.map_fd, a.key, a.value = self.map_fd, ctypes.addressof(kb), ctypes.addressof(vb)
        return int(self.k.bpf(U.BpfCmd.BPF_MAP_UPDATE_ELEM, a))

    def prog(self, text: str, attach: int = 0) -> Program:
        insns = assemble(text)
        insns = [i._replace(src=1, imm=self.map_fd) if i.code == 0x18 else i for i in insns]
        return Program.load(self.k, XDP, encode(insns), expected_attach_type=attach)

    def redirector(self, key: int, flags: int) -> None:
        prog = self.prog(f"r2 = {key}\nr3 = {flags}\nr1 = 0 ll\ncall 51\nexit\n")
        self.devs["a"].attach_xdp(prog.fd)


@pytest.mark.parametrize("mt", [U.BPF_MAP_TYPE_DEVMAP, U.BPF_MAP_TYPE_DEVMAP_HASH])
def test_unicast_redirect_moves_the_frame(mt: int) -> None:
    w = World(mt)
    assert w.put(3, "b") == 0
    w.redirector(3, 0)
    assert w.devs["a"].receive(FRAME) == "xdp:redirect:b"
    assert w.sent == {"a": [], "b": [FRAME], "c": []}
    assert w.devs["b"].stats.tx_packets == 1 and w.devs["a"].stats.xdp["XDP_REDIRECT"] == 1


@pytest.mark.parametrize("fallback,outcome", [(0, "xdp:drop"), (1, "xdp:drop"), (2, "pass"),
                                              (3, "xdp:tx")])
def test_missing_entry_takes_the_fallback_action(fallback: int, outcome: str) -> None:
    w = World(U.BPF_MAP_TYPE_DEVMAP)
    w.redirector(5, fallback)
    assert w.devs["a"].receive(FRAME) == outcome
    assert w.sent["b"] == w.sent["c"] == []


def test_devmap_program_sees_egress_and_may_drop() -> None:
    w = World(U.BPF_MAP_TYPE_DEVMAP_HASH)
    stamp = w.prog(STAMP, BPF_XDP_DEVMAP)
    drop = w.prog("r0 = 1\nexit\n", BPF_XDP_DEVMAP)
    assert w.put(1, "b", stamp.fd) == 0
    assert w.put(2, "c", drop.fd) == 0
    w.redirector(1, 0)
    assert w.devs["a"].receive(FRAME) == "xdp:redirect:b"
    b, a = w.devs["b"].ifindex, w.devs["a"].ifindex
    assert w.sent["b"] == [bytes([b, a]) + FRAME[2:]]
    w.devs["a"].detach_xdp()
    w.redirector(2, 0)
    assert w.devs["a"].receive(FRAME) == "xdp:redirect-failed"
    assert w.sent["c"] == []


def test_plain_xdp_program_is_refused_as_devmap_program() -> None:
    w = World(U.BPF_MAP_TYPE_DEVMAP)
    plain = w.prog("r0 = 2\nexit\n")
    assert w.put(0, "b", plain.fd) == -22


@pytest.mark.parametrize("mt", [U.BPF_MAP_TYPE_DEVMAP, U.BPF_MAP_TYPE_DEVMAP_HASH])
@pytest.mark.parametrize("flags,receivers", [(BROADCAST, "abc"),
                                             (BROADCAST | EXCLUDE_INGRESS, "bc")])
def test_broadcast(mt: int, flags: int, receivers: str) -> None:
    w = World(mt, value_size=4)
    for key, dev in ((0, "a"), (4, "b"), (7, "c")):
        assert w.put(key, dev) == 0
    w.redirector(99, flags)  # no entry 99: a broadcast does not need one
    assert w.devs["a"].receive(FRAME) == f"xdp:broadcast:{len(receivers)}"
    assert {n: len(v) for n, v in w.sent.items()} == {n: int(n in receivers) for n in "abc"}


def test_redirect_after_map_redirect_wins() -> None:
    """The last redirect helper call decides (``bpf_redirect`` after ``bpf_redirect_map``)."""
    w = World(U.BPF_MAP_TYPE_DEVMAP)
    assert w.put(0, "b") == 0
    c = w.devs["c"].ifindex
    prog = w.prog(f"r2 = 0\nr3 = 0\nr1 = 0 ll\ncall 51\nr1 = {c}\nr2 = 0\ncall 23\nexit\n")
    w.devs["a"].attach_xdp(prog.fd)
    assert w.devs["a"].receive(FRAME) == "xdp:redirect:c"
    assert w.sent["c"] == [FRAME] and w.sent["b"] == []


def test_stale_entries_removed() -> None:
    w = World(U.BPF_MAP_TYPE_DEVMAP)
    assert w.put(0, "b") == 0
    w.redirector(0, 2)
    assert w.devs["a"].receive(FRAME) == "xdp:redirect:b"
    kb = ctypes.create_string_buffer(struct.pack("<I", 0))
    a = U.bpf_attr_map_elem()
    a.map_fd, a.key = w.map_fd, ctypes.addressof(kb)
    assert w.k.bpf(U.BpfCmd.BPF_MAP_DELETE_ELEM, a) == 0
    assert w.devs["a"].receive(FRAME) == "pass"  # fallback XDP_PASS now


def test_program_reads_devmap_value() -> None:
    """``bpf_map_lookup_elem`` on a devmap gives the read-only ``{ifindex, prog id}``."""
    w = World(U.BPF_MAP_TYPE_DEVMAP)
    assert w.put(2, "c") == 0
    text = """
r1 = 2
*(u32 *)(r10 - 4) = r1
r2 = r10
r2 += -4
r1 = 0 ll
call 1
if r0 == 0 goto +2
r0 = *(u32 *)(r0 + 0)
exit
r0 = 99
exit
"""
    assert w.prog(text).test_run(bytes(64)).retval == w.devs["c"].ifindex



def test_live_frames_are_redirected_and_transmitted() -> None:
    """``BPF_F_TEST_XDP_LIVE_FRAMES``: every repetition's frame goes where the program
    sent it — a devmap entry's device, or (XDP_TX) back out of the ingress device."""
    live_frames = 1 << 1
    w = World(U.BPF_MAP_TYPE_DEVMAP)
    assert w.put(0, "c") == 0
    redirect = w.prog("r2 = 0\nr3 = 0\nr1 = 0 ll\ncall 51\nexit\n")
    out = redirect.test_run(FRAME, data_size_out=0, repeat=3, flags=live_frames)
    assert out.retval == 0 and w.sent["c"] == [FRAME] * 3
    tx = w.prog("r0 = 3\nexit\n")
    md = struct.pack("<6I", 0, len(FRAME), 0, w.devs["b"].ifindex, 0, 0)
    tx.test_run(FRAME, data_size_out=0, ctx_in=md, repeat=2, flags=live_frames)
    assert w.sent["b"] == [FRAME] * 2 and w.sent["a"] == []
