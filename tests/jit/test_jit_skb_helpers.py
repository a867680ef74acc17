"""Native ``bpf_skb_load_bytes`` / ``bpf_skb_store_bytes``: identical results on both tiers.

A tc program loads 8 and 3 bytes at offsets read from an array map, then stores 8 bytes
at another offset with the given flags (``flags == 0`` runs natively; other flags take
the Python implementation from the same call site), and records every result. For
generated offsets, flags and packet lengths, ``BPF_PROG_TEST_RUN`` on the interpreter
and on the JIT must agree on retval, ``data_out`` and the recorded results — and with the
live kernel where it is available.
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

SCHED_CLS, ARRAY = 3, 2
EXIT = Insn(0x95, 0, 0, 0, 0)
LOAD, STORE = 26, 9
VALUE = 56  # {u32 off8, off3, store_off, flags; s64 r8, r3, rs; u64 got8, got3}


def prog(map_fd: int) -> list[Insn]:
    return [
        Insn(0xBF, 6, 1, 0, 0),
        Insn(0x62, 10, 0, -4, 0),
        *ld_imm64(1, map_fd, 1), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
        Insn(0x85, 0, 0, 0, 1), Insn(0x55, 0, 0, 2, 0), Insn(0xB7, 0, 0, 0, 1), EXIT,
        Insn(0xBF, 7, 0, 0, 0),
        Insn(0x7A, 10, 0, -16, 0x5A5A5A5A),              # *(u64 *)(r10 - 16) = pattern
        Insn(0x7A, 10, 0, -24, 0x11111111),
        # r0 = skb_load_bytes(ctx, off8, r10 - 16, 8)
        Insn(0xBF, 1, 6, 0, 0), Insn(0x61, 2, 7, 0, 0), Insn(0xBF, 3, 10, 0, 0),
        Insn(0x07, 3, 0, 0, -16), Insn(0xB7, 4, 0, 0, 8), Insn(0x85, 0, 0, 0, LOAD),
        Insn(0x7B, 7, 0, 16, 0), Insn(0x79, 1, 10, -16, 0), Insn(0x7B, 7, 1, 40, 0),
        # r0 = skb_load_bytes(ctx, off3, r10 - 24, 3)
        Insn(0xBF, 1, 6, 0, 0), Insn(0x61, 2, 7, 4, 0), Insn(0xBF, 3, 10, 0, 0),
        Insn(0x07, 3, 0, 0, -24), Insn(0xB7, 4, 0, 0, 3), Insn(0x85, 0, 0, 0, LOAD),
        Insn(0x7B, 7, 0, 24, 0), Insn(0x79, 1, 10, -24, 0), Insn(0x7B, 7, 1, 48, 0),
        # r0 = skb_store_bytes(ctx, store_off, r10 - 16, 8, flags)
        Insn(0xBF, 1, 6, 0, 0), Insn(0x61, 2, 7, 8, 0), Insn(0xBF, 3, 10, 0, 0),
        Insn(0x07, 3, 0, 0, -16), Insn(0xB7, 4, 0, 0, 8), Insn(0x61, 5, 7, 12, 0),
        Insn(0x85, 0, 0, 0, STORE), Insn(0x7B, 7, 0, 32, 0),
        Insn(0xB7, 0, 0, 0, 0), EXIT,
    ]


def args_value(*fields: int) -> bytes:
    return b"".join((v & 0xFFFFFFFF).to_bytes(4, "little") for v in fields) + bytes(VALUE - 16)


class Tier:
    def __init__(self, jit: int) -> None:
        self.k = Kernel(sysctls={"bpf_jit_enable": jit})
        self.args = self.k.map_create(ARRAY, 4, VALUE, 1)
        self.prog = Program.load(self.k, SCHED_CLS, prog(self.args.fd))
        assert self.k.progs()[-1].jited == bool(jit)

    def run(self, off8: int, off3: int, store: int, flags: int, packet: bytes
            ) -> tuple[Any, ...]:
        self.args.update(bytes(4), args_value(off8, off3, store, flags))
        res = self.prog.test_run(packet)
        return res.retval, res.data_out, self.args.lookup(bytes(4))[16:]


@pytest.fixture(scope="module")
def tiers() -> tuple[Tier, Tier]:
    return Tier(0), Tier(1)


OFFSETS = st.one_of(st.integers(-4, 140), st.sampled_from([-(1 << 31), (1 << 31) - 1,
                                                           (1 << 31) - 4]))


def test_the_jit_runs_them_natively(tiers: tuple[Tier, Tier]) -> None:
    tr = tiers[1].k.progs()[-1].bpf_func.code.translation
    assert tr.uses_bridge  # the store's slow path (flags != 0)
    assert "_skb_load_bytes" in tr.ir and "skb_store_copy" in tr.ir


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(off8=OFFSETS, off3=OFFSETS, store=OFFSETS,
       flags=st.sampled_from([0, 0, 0, 1, 2, 3, 4]), size=st.integers(14, 128))
def test_load_and_store_bytes_agree_on_both_tiers(tiers: tuple[Tier, Tier], off8: int,
                                                  off3: int, store: int, flags: int,
                                                  size: int) -> None:
    packet = bytes((i * 13 + 5) & 0xFF for i in range(size))
    interp, jit = (t.run(off8, off3, store, flags, packet) for t in tiers)
    assert jit == interp


@pytest.mark.parametrize(("off8", "off3", "store", "flags"),
                         [(0, 0, 0, 0), (56, 61, 20, 0), (57, 62, 57, 0), (-1, 0, -1, 0),
                          (10, 10, 30, 2), (0, 0, 0, 4), (60, 1 << 31, 56, 0)])
def test_load_and_store_bytes_match_the_kernel(kernel: ModuleType, tiers: tuple[Tier, Tier],
                                               off8: int, off3: int, store: int,
                                               flags: int) -> None:
    packet = bytes(range(64))
    fd = kernel.map_create(ARRAY, 4, VALUE, 1)
    res = kernel.prog_load(SCHED_CLS, encode(prog(fd)))
    assert res.ok, res.log
    try:
        kernel.map_update(fd, bytes(4), args_value(off8, off3, store, flags))
        run = kernel.prog_test_run(res.fd, data_in=packet, data_size_out=1024)
        theirs = (run.retval, run.data_out, kernel.map_lookup(fd, bytes(4), VALUE)[16:])
    finally:
        kernel.close(res.fd)
        kernel.close(fd)
    assert tiers[1].run(off8, off3, store, flags, packet) == theirs


CSUM_VALUE = 40  # {u32 off3, off4, from, to, flags3, flags4; s64 r3, r4}


def csum_prog(map_fd: int) -> list[Insn]:
    """r = l3_csum_replace(ctx, off3, from, to, flags3); l4_csum_replace(... off4 ...)."""
    return [
        Insn(0xBF, 6, 1, 0, 0), Insn(0x62, 10, 0, -4, 0),
        *ld_imm64(1, map_fd, 1), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
        Insn(0x85, 0, 0, 0, 1), Insn(0x55, 0, 0, 2, 0), Insn(0xB7, 0, 0, 0, 1), EXIT,
        Insn(0xBF, 7, 0, 0, 0),
        Insn(0xBF, 1, 6, 0, 0), Insn(0x61, 2, 7, 0, 0), Insn(0x61, 3, 7, 8, 0),
        Insn(0x61, 4, 7, 12, 0), Insn(0x61, 5, 7, 16, 0), Insn(0x85, 0, 0, 0, 10),
        Insn(0x7B, 7, 0, 24, 0),
        Insn(0xBF, 1, 6, 0, 0), Insn(0x61, 2, 7, 4, 0), Insn(0x61, 3, 7, 8, 0),
        Insn(0x61, 4, 7, 12, 0), Insn(0x61, 5, 7, 20, 0), Insn(0x85, 0, 0, 0, 11),
        Insn(0x7B, 7, 0, 32, 0),
        Insn(0xB7, 0, 0, 0, 0), EXIT,
    ]


class CsumTier:
    def __init__(self, jit: int) -> None:
        self.k = Kernel(sysctls={"bpf_jit_enable": jit})
        self.args = self.k.map_create(ARRAY, 4, CSUM_VALUE, 1)
        self.prog = Program.load(self.k, SCHED_CLS, csum_prog(self.args.fd))

    def run(self, fields: tuple[int, ...], packet: bytes) -> tuple[Any, ...]:
        self.args.update(bytes(4), b"".join((v & 0xFFFFFFFF).to_bytes(4, "little")
                                            for v in fields) + bytes(16))
        res = self.prog.test_run(packet)
        return res.retval, res.data_out, self.args.lookup(bytes(4))[24:]


@pytest.fixture(scope="module")
def csum_tiers() -> tuple[CsumTier, CsumTier]:
    return CsumTier(0), CsumTier(1)


def test_csum_replace_is_native(csum_tiers: tuple[CsumTier, CsumTier]) -> None:
    tr = csum_tiers[1].k.progs()[-1].bpf_func.code.translation
    assert tr.ir.count("csum_write") >= 2


CSUM_FLAGS = st.sampled_from([2, 4, 2, 4, 0, 1, 3, 0x10 | 2, 0x10 | 4, 0x20 | 4, 0x30 | 2,
                              0x40 | 4, 0x100])
CSUM_OFFSETS = st.one_of(st.integers(-2, 80), st.sampled_from([0xFFFF, 0x10000, 1 << 31]))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(off3=CSUM_OFFSETS, off4=CSUM_OFFSETS, frm=st.integers(0, (1 << 32) - 1),
       to=st.integers(0, (1 << 32) - 1), flags3=CSUM_FLAGS, flags4=CSUM_FLAGS,
       size=st.integers(14, 96))
def test_csum_replace_agrees_on_both_tiers(csum_tiers: tuple[CsumTier, CsumTier], off3: int,
                                           off4: int, frm: int, to: int, flags3: int,
                                           flags4: int, size: int) -> None:
    packet = bytes((i * 29 + 1) & 0xFF for i in range(size))
    fields = (off3, off4, frm, to, flags3, flags4)
    interp, jit = (t.run(fields, packet) for t in csum_tiers)
    assert jit == interp


@pytest.mark.parametrize("fields", [(24, 50, 0x0A000001, 0xC0A80001, 4, 4),
                                    (24, 40, 0x1234, 0xFFFF, 2, 2),
                                    (25, 63, 1, 2, 2, 4), (0, 62, 0xFFFFFFFF, 0, 4, 2)])
def test_csum_replace_matches_the_kernel(kernel: ModuleType,
                                         csum_tiers: tuple[CsumTier, CsumTier],
                                         fields: tuple[int, ...]) -> None:
    packet = bytes((i * 29 + 1) & 0xFF for i in range(64))
    fd = kernel.map_create(ARRAY, 4, CSUM_VALUE, 1)
    res = kernel.prog_load(SCHED_CLS, encode(csum_prog(fd)))
    assert res.ok, res.log
    try:
        kernel.map_update(fd, bytes(4), b"".join((v & 0xFFFFFFFF).to_bytes(4, "little")
                                                 for v in fields) + bytes(16))
        run = kernel.prog_test_run(res.fd, data_in=packet, data_size_out=1024)
        theirs = (run.retval, run.data_out, kernel.map_lookup(fd, bytes(4), CSUM_VALUE)[24:])
    finally:
        kernel.close(res.fd)
        kernel.close(fd)
    assert csum_tiers[1].run(fields, packet) == theirs


def test_csum_update_is_native_and_agrees_on_a_checksum_complete_skb() -> None:
    """``bpf_csum_update`` on skbs with and without ``CHECKSUM_COMPLETE`` (test_run's skbs
    never have it, so the skb is built directly), both tiers on twin skbs."""
    from pybpf.helpers.csum import csum_update
    from pybpf.jit import compile_program
    from pybpf.net.skbuff import CHECKSUM_COMPLETE, CHECKSUM_NONE, SkBuff
    from pybpf.runtime.context import RunContext
    from pybpf.runtime.interpreter import CompiledProgram

    insns = [Insn(0x85, 0, 0, 0, 40), EXIT]  # r0 = csum_update(r1, r2)
    interp = CompiledProgram(insns, helpers={40: csum_update})
    jit = compile_program(insns, helpers={40: csum_update})
    assert not jit.code.translation.uses_bridge
    skbs = [SkBuff(f"csum_update {t}", 512) for t in ("interp", "jit")]
    try:
        for summed in (CHECKSUM_COMPLETE, CHECKSUM_NONE, 1, 3):
            for seed, addend in ((0, 0), (0xFFFFFFFF, 1), (0x1234, 0xFFFF0000),
                                 (0x80000000, 0x80000000), (7, (1 << 40) | 5)):
                got = []
                for skb, runner in zip(skbs, (interp, jit), strict=True):
                    skb.reset(64)
                    skb.put(bytes(range(40)))
                    skb.ip_summed = summed
                    skb.u("csum", seed)
                    ctx = RunContext()
                    ctx.data["skb"] = skb
                    got.append((runner.run(skb.addr, addend, ctx=ctx), skb.u("csum"),
                                skb.ip_summed))
                assert got[1] == got[0], (summed, seed, addend)
    finally:
        for skb in skbs:
            skb.close()
