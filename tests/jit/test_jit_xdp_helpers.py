"""Native ``bpf_xdp_adjust_head`` / ``bpf_xdp_adjust_meta``: identical results on both tiers.

One XDP program, loaded into an interpreter instance and a JIT instance, adjusts the
metadata and then the head by offsets read from an array map, records both helpers'
results, reads a byte at the new ``data`` and one of the metadata, and returns XDP_PASS.
For every generated pair of offsets and packet length, ``BPF_PROG_TEST_RUN`` on both tiers
must give the same retval, ``data_out`` (the packet as the program left it) and
recorded results; the live kernel gives them too where it is available.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.isa.insn import Insn, encode, ld_imm64
from pybpf.kernel import Kernel
from pybpf.program import Program

pytest.importorskip("llvmlite")

XDP, ARRAY = 6, 2
EXIT = Insn(0x95, 0, 0, 0, 0)
XDP_ADJUST_HEAD, XDP_ADJUST_META = 44, 54
VALUE = 32  # {s32 meta_off; s32 head_off; s64 meta_ret; s64 head_ret; u64 byte}


def prog(map_fd: int) -> list[Insn]:
    return [
        Insn(0xBF, 6, 1, 0, 0),                          # r6 = ctx
        Insn(0x62, 10, 0, -4, 0),                        # *(u32 *)(r10 - 4) = 0
        *ld_imm64(1, map_fd, 1), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
        Insn(0x85, 0, 0, 0, 1),                          # r0 = lookup(args, &0)
        Insn(0x55, 0, 0, 2, 0), Insn(0xB7, 0, 0, 0, 1), EXIT,
        Insn(0xBF, 7, 0, 0, 0),                          # r7 = args
        Insn(0x61, 2, 7, 0, 0), Insn(0xBF, 1, 6, 0, 0),
        Insn(0x85, 0, 0, 0, XDP_ADJUST_META), Insn(0x7B, 7, 0, 8, 0),
        Insn(0x61, 2, 7, 4, 0), Insn(0xBF, 1, 6, 0, 0),
        Insn(0x85, 0, 0, 0, XDP_ADJUST_HEAD), Insn(0x7B, 7, 0, 16, 0),
        # r0 = first packet byte (if any) | first metadata byte << 8 (if any)
        Insn(0xB7, 0, 0, 0, 0),
        Insn(0x61, 2, 6, 0, 0), Insn(0x61, 3, 6, 4, 0),  # r2 = data, r3 = data_end
        Insn(0xBF, 4, 2, 0, 0), Insn(0x07, 4, 0, 0, 1),
        Insn(0x2D, 4, 3, 1, 0),                          # if r4 > r3 skip
        Insn(0x71, 0, 2, 0, 0),
        Insn(0x61, 4, 6, 8, 0),                          # r4 = data_meta
        Insn(0xBF, 5, 4, 0, 0), Insn(0x07, 5, 0, 0, 1),
        Insn(0x2D, 5, 2, 3, 0),                          # if meta + 1 > data skip
        Insn(0x71, 5, 4, 0, 0), Insn(0x67, 5, 0, 0, 8), Insn(0x4F, 0, 5, 0, 0),
        Insn(0x7B, 7, 0, 24, 0),
        Insn(0xB7, 0, 0, 0, 2), EXIT,
    ]


class Tier:
    def __init__(self, jit: int) -> None:
        self.k = Kernel(sysctls={"bpf_jit_enable": jit})
        self.args = self.k.map_create(ARRAY, 4, VALUE, 1)
        self.prog = Program.load(self.k, XDP, prog(self.args.fd))
        assert self.k.progs()[-1].jited == bool(jit)

    def run(self, meta_off: int, head_off: int, packet: bytes) -> tuple[Any, ...]:
        self.args.update(bytes(4), meta_off.to_bytes(4, "little", signed=True) +
                         head_off.to_bytes(4, "little", signed=True) + bytes(VALUE - 8))
        res = self.prog.test_run(packet)  # no ctx: a zeroed ctx_out would set data_end 0
        return res.retval, res.data_out, self.args.lookup(bytes(4))[8:]


@pytest.fixture(scope="module")
def tiers() -> tuple[Tier, Tier]:
    return Tier(0), Tier(1)


OFFSETS = st.one_of(st.integers(-300, 300), st.sampled_from([-(1 << 31), (1 << 31) - 1, -256,
                                                             -4, 4, -8, 14, -14]))


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(meta=OFFSETS.map(lambda v: v if v % 3 else v - v % 4), head=OFFSETS,
       size=st.integers(14, 200))
def test_adjust_head_and_meta_agree_on_both_tiers(tiers: tuple[Tier, Tier], meta: int,
                                                  head: int, size: int) -> None:
    packet = bytes((i * 7 + 3) & 0xFF for i in range(size))
    interp, jit = (t.run(meta, head, packet) for t in tiers)
    assert jit == interp


def test_native_helpers_leave_no_bridge_call(tiers: tuple[Tier, Tier]) -> None:
    runner = tiers[1].k.progs()[-1].bpf_func
    assert not runner.code.translation.uses_bridge


@pytest.mark.parametrize(("meta", "head"), [(0, 0), (-8, 0), (-8, -16), (-4, 10), (-3, 0),
                                            (0, -300), (-256, 0), (-16, 100), (4, 0)])
def test_adjust_head_and_meta_match_the_kernel(kernel: ModuleType, tiers: tuple[Tier, Tier],
                                               meta: int, head: int) -> None:
    packet = bytes(range(64))
    fd = kernel.map_create(ARRAY, 4, VALUE, 1)
    res = kernel.prog_load(XDP, encode(prog(fd)))
    assert res.ok, res.log
    try:
        kernel.map_update(fd, bytes(4), meta.to_bytes(4, "little", signed=True) +
                          head.to_bytes(4, "little", signed=True) + bytes(VALUE - 8))
        run = kernel.prog_test_run(res.fd, data_in=packet, data_size_out=1024)
        theirs = (run.retval, run.data_out, kernel.map_lookup(fd, bytes(4), VALUE)[8:])
    finally:
        kernel.close(res.fd)
        kernel.close(fd)
    assert tiers[1].run(meta, head, packet) == theirs
