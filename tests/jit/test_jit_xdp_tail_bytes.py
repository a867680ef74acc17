"""Native ``bpf_xdp_adjust_tail`` / ``bpf_xdp_load_bytes`` / ``bpf_xdp_store_bytes``.

The JIT runs them natively on linear frames and calls the Python implementation
(:mod:`pybpf.helpers.xdp`) when ``xdp_buff.flags`` has ``XDP_FLAGS_HAS_FRAGS``. One XDP
program moves the tail by an offset read from an array map, loads 8 and 3 bytes, stores
8 bytes, moves the tail again, and records every result. For generated frames (linear
and fragmented), offsets and lengths — errors included — ``BPF_PROG_TEST_RUN`` on the
interpreter and on the JIT must agree on retval, ``data_out`` and the recorded results,
and with the live kernel where it is available. Counting wrappers show which tier of
the helper ran: native for linear frames, Python for fragmented ones.
"""

from __future__ import annotations

from collections import Counter
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.helpers import xdp as xdp_helpers
from pybpf.isa.insn import Insn, encode, ld_imm64
from pybpf.jit.natives import native_equivalent
from pybpf.kernel import Kernel
from pybpf.net.xdp_buff import XDP_FLAGS_HAS_FRAGS, XdpBuff
from pybpf.program import Program

pytest.importorskip("llvmlite")

XDP, ARRAY = 6, 2
BPF_F_XDP_HAS_FRAGS = 1 << 5
EXIT = Insn(0x95, 0, 0, 0, 0)
ADJUST_TAIL, LOAD, STORE = 65, 189, 190
ARGS = 24  # {s32 tail1; u32 off8, off3, store_off; s32 tail2; u32 pad}
VALUE = ARGS + 56  # + {s64 tail1, r8, r3, rs, tail2; u64 got8, got3}
LINEAR_MAX = 4096 - 256 - 320  # test_run's linear part: the rest becomes fragments
OUT_ROOM = 8192  # data_out room beyond the input: a grown tail always fits


def prog(map_fd: int) -> list[Insn]:
    def call(fid: int, slot: int) -> list[Insn]:
        return [Insn(0x85, 0, 0, 0, fid), Insn(0x7B, 7, 0, ARGS + 8 * slot, 0)]

    return [
        Insn(0xBF, 6, 1, 0, 0),
        Insn(0x62, 10, 0, -4, 0),
        *ld_imm64(1, map_fd, 1), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
        Insn(0x85, 0, 0, 0, 1), Insn(0x55, 0, 0, 2, 0), Insn(0xB7, 0, 0, 0, 1), EXIT,
        Insn(0xBF, 7, 0, 0, 0),
        Insn(0x7A, 10, 0, -16, 0x5A5A5A5A),              # *(u64 *)(r10 - 16) = pattern
        Insn(0x7A, 10, 0, -24, 0x11111111),
        # adjust_tail(ctx, tail1)
        Insn(0xBF, 1, 6, 0, 0), Insn(0x61, 2, 7, 0, 0), *call(ADJUST_TAIL, 0),
        # load_bytes(ctx, off8, r10 - 16, 8)
        Insn(0xBF, 1, 6, 0, 0), Insn(0x61, 2, 7, 4, 0), Insn(0xBF, 3, 10, 0, 0),
        Insn(0x07, 3, 0, 0, -16), Insn(0xB7, 4, 0, 0, 8), *call(LOAD, 1),
        Insn(0x79, 1, 10, -16, 0), Insn(0x7B, 7, 1, ARGS + 40, 0),
        # load_bytes(ctx, off3, r10 - 24, 3)
        Insn(0xBF, 1, 6, 0, 0), Insn(0x61, 2, 7, 8, 0), Insn(0xBF, 3, 10, 0, 0),
        Insn(0x07, 3, 0, 0, -24), Insn(0xB7, 4, 0, 0, 3), *call(LOAD, 2),
        Insn(0x79, 1, 10, -24, 0), Insn(0x7B, 7, 1, ARGS + 48, 0),
        # store_bytes(ctx, store_off, r10 - 16, 8)
        Insn(0xBF, 1, 6, 0, 0), Insn(0x61, 2, 7, 12, 0), Insn(0xBF, 3, 10, 0, 0),
        Insn(0x07, 3, 0, 0, -16), Insn(0xB7, 4, 0, 0, 8), *call(STORE, 3),
        # adjust_tail(ctx, tail2)
        Insn(0xBF, 1, 6, 0, 0), Insn(0x61, 2, 7, 16, 0), *call(ADJUST_TAIL, 4),
        Insn(0xB7, 0, 0, 0, 2), EXIT,
    ]


def args_value(*fields: int) -> bytes:
    return b"".join((v & 0xFFFFFFFF).to_bytes(4, "little") for v in fields) + bytes(
        VALUE - 4 * len(fields))


def packet_of(size: int) -> bytes:
    return bytes((i * 13 + 5) & 0xFF for i in range(size))


def counting(calls: Counter[str], name: str) -> Any:
    """The standard implementation, counted; marked equivalent so the JIT stays native."""
    impl = getattr(xdp_helpers, name)

    @native_equivalent(name)
    def wrapper(ctx: Any, *regs: int) -> int:
        calls[name] += 1
        return int(impl(ctx, *regs))

    return wrapper


class Tier:
    def __init__(self, jit: int) -> None:
        self.k = Kernel(sysctls={"bpf_jit_enable": jit})
        self.calls: Counter[str] = Counter()
        for fid, name in ((ADJUST_TAIL, "xdp_adjust_tail"), (LOAD, "xdp_load_bytes"),
                          (STORE, "xdp_store_bytes")):
            self.k.helpers.override(fid, counting(self.calls, name))
        self.args = self.k.map_create(ARRAY, 4, VALUE, 1)
        self.prog = Program.load(self.k, XDP, prog(self.args.fd),
                                 prog_flags=BPF_F_XDP_HAS_FRAGS)
        assert self.k.progs()[-1].jited == bool(jit)

    def run(self, fields: tuple[int, ...], packet: bytes) -> tuple[Any, ...]:
        self.args.update(bytes(4), args_value(*fields))
        res = self.prog.test_run(packet, data_size_out=len(packet) + OUT_ROOM)
        return res.retval, res.data_out, self.args.lookup(bytes(4))[ARGS:]


@pytest.fixture(scope="module")
def tiers() -> tuple[Tier, Tier]:
    return Tier(0), Tier(1)


def test_the_jit_emits_them_natively(tiers: tuple[Tier, Tier]) -> None:
    tr = tiers[1].k.progs()[-1].bpf_func.code.translation
    for name in ("_xdp_adjust_tail", "_xdp_load_bytes", "_xdp_store_bytes"):
        assert name in tr.ir
    assert tr.uses_bridge  # the fragmented frames' slow path


def test_linear_frames_never_enter_python(tiers: tuple[Tier, Tier]) -> None:
    jit = tiers[1]
    jit.calls.clear()
    retval, data_out, _ = jit.run((4, 0, 10, 20, -4, 0), packet_of(64))
    assert retval == 2 and len(data_out) == 64
    assert not jit.calls


def test_fragmented_frames_take_the_python_helpers(tiers: tuple[Tier, Tier]) -> None:
    jit = tiers[1]
    jit.calls.clear()
    jit.run((0, LINEAR_MAX - 4, 0, LINEAR_MAX + 10, 0, 0), packet_of(LINEAR_MAX + 100))
    assert jit.calls == Counter(xdp_adjust_tail=2, xdp_load_bytes=2, xdp_store_bytes=1)


def test_the_native_flag_follows_the_fragments() -> None:
    buff = XdpBuff("flag test")
    try:
        buff.init_buff(frame_sz=4096, ifindex=1)
        assert not buff.has_frags and buff.flags == 0
        buff.frags = [b"x" * 10]
        assert buff.has_frags and buff.flags == XDP_FLAGS_HAS_FRAGS
        buff.frags = []
        assert not buff.has_frags
        buff.frags = [b"y"]
        buff.init_buff(frame_sz=4096, ifindex=1)
        assert buff.flags == 0 and buff.frags == []
    finally:
        buff.close()


SIZES = st.one_of(st.integers(14, 300), st.integers(LINEAR_MAX - 10, LINEAR_MAX + 200),
                  st.integers(2 * 4096 + 3400, 2 * 4096 + 3600))
BIG = st.sampled_from([0xFFFF, 0xFFF8, 0x10000, (1 << 32) - 1, 1 << 31, -(1 << 31)])


@st.composite
def cases(draw: Any) -> tuple[tuple[int, ...], int]:
    """A frame size and offsets around its edges: the linear end, the fragment start,
    the tailroom, ETH_HLEN, ``bpf_xdp_pointer``'s span — and anywhere."""
    size = draw(st.one_of(SIZES, SIZES, st.integers(14, 300)))
    linear = min(size, LINEAR_MAX)
    near = st.sampled_from([0, linear, size]).flatmap(
        lambda edge: st.integers(edge - 12, edge + 4))
    offset = st.one_of(near, near, st.integers(0, 300), BIG)
    tail = st.one_of(st.integers(-300, 300), st.integers(14 - linear - 2, 14 - linear + 2),
                     st.integers(3400 - linear, 3600 - linear), BIG)
    fields = (draw(tail), draw(offset), draw(offset), draw(offset), draw(tail), 0)
    return fields, size


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=cases())
def test_tail_and_bytes_agree_on_both_tiers(tiers: tuple[Tier, Tier],
                                            case: tuple[tuple[int, ...], int]) -> None:
    fields, size = case
    interp, jit = (t.run(fields, packet_of(size)) for t in tiers)
    assert jit == interp


@pytest.mark.parametrize(("fields", "size"), [
    ((0, 0, 0, 0, 0, 0), 64),
    ((-50, 6, 11, 20, 100, 0), 64),
    ((200, 250, 261, 255, -250, 0), 64),        # grown bytes are zero and readable
    ((-51, 0, 0, 0, 0, 0), 64),                 # fewer than ETH_HLEN left: -EINVAL
    ((3500, 0, 0, 0, 0, 0), 64),                # past the tailroom: -EINVAL
    ((0, 57, 62, 57, 0, 0), 64),                # load/store past data_end: -EINVAL
    ((0, 0x10000, 0xFFFF, 1 << 31, 0, 0), 64),  # beyond bpf_xdp_pointer's span: -EFAULT
    ((-8, LINEAR_MAX - 4, LINEAR_MAX + 1, LINEAR_MAX - 2, 16, 0), LINEAR_MAX + 300),
    ((-400, 10, LINEAR_MAX, 3000, 100, 0), LINEAR_MAX + 300),  # the last fragment goes
    ((4000, 0, 0, 0, 0, 0), LINEAR_MAX + 300),
])
def test_tail_and_bytes_match_the_kernel(kernel: ModuleType, tiers: tuple[Tier, Tier],
                                         fields: tuple[int, ...], size: int) -> None:
    packet = packet_of(size)
    fd = kernel.map_create(ARRAY, 4, VALUE, 1)
    res = kernel.prog_load(XDP, encode(prog(fd)), prog_flags=BPF_F_XDP_HAS_FRAGS)
    assert res.ok, res.log
    try:
        kernel.map_update(fd, bytes(4), args_value(*fields))
        run = kernel.prog_test_run(res.fd, data_in=packet, data_size_out=size + OUT_ROOM)
        theirs = (run.retval, run.data_out, kernel.map_lookup(fd, bytes(4), VALUE)[ARGS:])
    finally:
        kernel.close(res.fd)
        kernel.close(fd)
    for tier in tiers:
        assert tier.run(fields, packet) == theirs
