"""``BPF_PROBE_MEM``/``BPF_PROBE_MEMSX`` loads — what the verifier turns a load through a
BTF pointer into — on both execution tiers: a readable address loads as usual, an
unreadable one (unregistered, NULL, wrapped around) reads 0 instead of faulting, as the
kernel's exception table makes it. Plain loads from the same addresses still fault."""

from __future__ import annotations

import ctypes
import struct

import pytest

from pybpf.errors import BpfFault
from pybpf.isa.insn import Insn
from pybpf.isa.opcodes import PROBE_MEM, PROBE_MEMSX, lookup
from pybpf.jit import compile_program
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.runtime.memory import REGISTRY

LDX, MEM, MEMSX = 0x01, 0x60, 0x80
SIZES = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}
EXIT = Insn(0x95)


def _load(mode: int, size: int, off: int = 0) -> list[Insn]:
    """r0 = *(size *)(r1 + off); exit"""
    return [Insn(LDX | mode | SIZES[size], 0, 1, off, 0), EXIT]


@pytest.fixture(scope="module")
def obj() -> object:
    buf = (ctypes.c_uint8 * 32)(*struct.pack("<QQqQ", 0x1122334455667788, 0xF0, -2, 7))
    region = REGISTRY.wrap(buf, "btf test object")
    yield region
    REGISTRY.remove(region)


def _both(insns: list[Insn], r1: int, unsanitized: bool = True) -> tuple[str, int]:
    """The interpreter's outcome; the JIT's (sanitizing, and — for code that must not
    fault, as the verifier vouches — unsanitized) must be the same."""
    results = []
    progs = [CompiledProgram(insns), compile_program(insns, sanitize=True)]
    if unsanitized:
        progs.append(compile_program(insns, sanitize=False))
    for prog in progs:
        try:
            results.append(("r0", prog.run(r1)))
        except BpfFault:
            results.append(("fault", 0))
    assert all(r == results[0] for r in results), results
    return results[0]


def test_the_probe_rows_are_kernel_internal() -> None:
    for mode, sizes in ((PROBE_MEM, (1, 2, 4, 8)), (PROBE_MEMSX, (1, 2, 4))):
        for size in sizes:
            spec = lookup(LDX | mode | SIZES[size])
            assert spec is not None and spec.probe and not spec.linux and spec.size == size
    assert lookup(LDX | PROBE_MEMSX | SIZES[8]) is None


@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_probe_load_reads_mapped_memory(obj: object, size: int) -> None:
    addr = obj.start  # type: ignore[attr-defined]
    want = 0x1122334455667788 & ((1 << (8 * size)) - 1)
    assert _both(_load(PROBE_MEM, size), addr) == ("r0", want)
    assert _both(_load(MEM, size), addr) == ("r0", want)


@pytest.mark.parametrize("size", [1, 2, 4])
def test_probe_memsx_sign_extends(obj: object, size: int) -> None:
    addr = obj.start + 16  # type: ignore[attr-defined]  # holds -2
    assert _both(_load(PROBE_MEMSX, size), addr) == ("r0", (1 << 64) - 2)
    assert _both(_load(MEMSX, size), addr) == ("r0", (1 << 64) - 2)


@pytest.mark.parametrize("addr", [0, 8, 0xDEAD0000, (1 << 64) - 8])
@pytest.mark.parametrize(("mode", "size"), [(PROBE_MEM, 8), (PROBE_MEM, 4), (PROBE_MEMSX, 2)])
def test_probe_load_from_unmapped_memory_reads_zero(addr: int, mode: int, size: int) -> None:
    assert _both(_load(mode, size), addr) == ("r0", 0)
    plain = MEM if mode == PROBE_MEM else MEMSX
    assert _both(_load(plain, size), addr, unsanitized=False)[0] == "fault"


def test_probe_load_straddling_the_end_reads_zero(obj: object) -> None:
    end = obj.start + 32  # type: ignore[attr-defined]
    assert _both(_load(PROBE_MEM, 8, -4), end) == ("r0", 0)
    assert _both(_load(PROBE_MEM, 4, -4), end) == ("r0", 0)  # the high half of the 7
