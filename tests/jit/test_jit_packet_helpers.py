"""Native checksum helpers: the same results as the Python implementations."""

from __future__ import annotations

import random

import pytest

from pybpf.helpers.impls import csum_diff
from pybpf.isa.insn import Insn
from pybpf.jit import compile_program
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.runtime.memory import REGISTRY

# r0 = csum_diff(r1, r2, r3, r4, r5)
PROG = [Insn(0x85, 0, 0, 0, 28), Insn(0x95, 0, 0, 0, 0)]


@pytest.fixture
def buffers() -> tuple[int, int]:
    a = REGISTRY.alloc(64, "csum from")
    b = REGISTRY.alloc(64, "csum to")
    rnd = random.Random(3)
    a.write(0, bytes(rnd.randrange(256) for _ in range(64)))
    b.write(0, bytes(rnd.randrange(256) for _ in range(64)))
    yield a.start, b.start
    REGISTRY.remove(a)
    REGISTRY.remove(b)


def test_csum_diff_is_native_and_matches_python(buffers: tuple[int, int]) -> None:
    frm, to = buffers
    interp = CompiledProgram(PROG, helpers={28: csum_diff})
    jit = compile_program(PROG, helpers={28: csum_diff})
    assert not jit.code.translation.uses_bridge
    rnd = random.Random(5)
    cases = [(0, 0, 0), (4, 0, 1), (0, 8, 0xFFFFFFFF), (64, 64, 0xFFFFFFFFFFFF),
             (3, 4, 0), (4, 6, 0), (60, 20, 12345)]
    cases += [(4 * rnd.randrange(17), 4 * rnd.randrange(17), rnd.randrange(1 << 64))
              for _ in range(60)]
    for fs, ts, seed in cases:
        args = (frm if fs else 0, fs, to if ts else 0, ts, seed)
        assert jit.run(*args) == interp.run(*args), args


def test_sanitize_mode_keeps_the_checked_python_csum_diff() -> None:
    jit = compile_program(PROG, helpers={28: csum_diff}, sanitize=True)
    assert jit.code.translation.uses_bridge
