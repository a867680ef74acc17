"""Invariants the verifier's speed work relies on: fast paths compute what the plain code does.

The hot paths were rewritten for speed (``reg_bounds_sync`` fused over locals with a
constant fast path, ``tnum.mul`` short-cut for two constants, ``reg_signature`` via
``attrgetter`` and computed only when needed, int literals in the ALU dispatch). These tests
pin that nothing observable moved:

- the fused ``reg_bounds_sync`` equals :func:`reg_bounds_sync_reference` (the kernel's
  composition of ``update_reg_bounds`` / ``reg_deduce_bounds`` ×3 / ``reg_bound_offset``)
  on random and edge-case registers, sane or not;
- ``tnum.mul`` of constants is the product; ``reg_signature`` is the plain tuple;
- verdicts, first error lines and the final ``processed … total_states … peak_states``
  line (which exposes pruning behaviour) of generated programs and of corpus cases are the
  values recorded from the code before the speed work;
- log levels 0 and 2 reach the same verdict after the same number of instructions (the log
  is formatted only when enabled).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.isa.insn import Insn
from pybpf.verifier import tnum as tn
from pybpf.verifier.api import VerifierInput, bpf_check
from pybpf.verifier.gen import gen_program
from pybpf.verifier.prune import reg_signature
from pybpf.verifier.regs import (
    U32,
    U64,
    Reg,
    RegType,
    mark_known,
    reg_bounds_sync,
    reg_bounds_sync_reference,
)
from pybpf.verifier.state import FuncState

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "verifier" / "tv61.json"
FIELDS = ("smin", "smax", "umin", "umax", "s32_min", "s32_max", "u32_min", "u32_max", "var_off")
EDGES64 = [0, 1, 2, 7, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 63) - 1, 1 << 63,
           U64, U64 - 1]


def _snapshot(r: Reg) -> tuple:
    return tuple(getattr(r, f) for f in FIELDS)


def _check_same(r: Reg) -> None:
    fast, ref = r.copy(), r.copy()
    reg_bounds_sync(fast)
    reg_bounds_sync_reference(ref)
    assert _snapshot(fast) == _snapshot(ref), _snapshot(r)


def _s(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


u64s = st.one_of(st.sampled_from(EDGES64), st.integers(0, U64), st.integers(0, 600))
s64s = u64s.map(lambda v: _s(v, 64))
u32s = u64s.map(lambda v: v & U32)
s32s = u32s.map(lambda v: _s(v, 32))


@settings(max_examples=400, deadline=None)
@given(value=u64s, mask=u64s, umin=u64s, umax=u64s, smin=s64s, smax=s64s, u32_min=u32s,
       u32_max=u32s, s32_min=s32s, s32_max=s32s, order=st.booleans())
def test_fused_reg_bounds_sync_equals_reference(value: int, mask: int, umin: int, umax: int,
                                                smin: int, smax: int, u32_min: int,
                                                u32_max: int, s32_min: int, s32_max: int,
                                                order: bool) -> None:
    r = Reg()
    r.type = RegType.SCALAR_VALUE
    r.var_off = tn.Tnum(value & ~mask & U64, mask)
    if order:  # mostly-sane ranges; unordered ones exercise the insane paths too
        umin, umax = sorted((umin, umax))
        smin, smax = sorted((smin, smax))
        u32_min, u32_max = sorted((u32_min, u32_max))
        s32_min, s32_max = sorted((s32_min, s32_max))
    r.umin, r.umax, r.smin, r.smax = umin, umax, smin, smax
    r.u32_min, r.u32_max, r.s32_min, r.s32_max = u32_min, u32_max, s32_min, s32_max
    _check_same(r)


def test_fused_reg_bounds_sync_random_and_constants() -> None:
    rng = random.Random(5)
    for _ in range(3000):
        r = Reg()
        r.type = RegType.SCALAR_VALUE
        mask = rng.choice([0, U64, 0xFF, 0xFFFFFFFF, rng.getrandbits(64), rng.getrandbits(12)])
        r.var_off = tn.Tnum(rng.getrandbits(64) & ~mask & U64, mask)
        lo, hi = sorted((rng.choice(EDGES64), rng.getrandbits(rng.choice([8, 32, 64]))))
        r.umin, r.umax = lo, hi
        _check_same(r)
    for v in EDGES64 + [rng.getrandbits(64) for _ in range(200)]:
        r = Reg()
        r.type = RegType.SCALAR_VALUE
        mark_known(r, v)  # the constant fast path
        _check_same(r)
        r.umax = U64  # a constant whose ranges lag behind: must take the full path
        _check_same(r)
        r.var_off = tn.Tnum(v, 0)
        r.s32_min = -5
        _check_same(r)


def test_tnum_mul_of_constants_is_the_product() -> None:
    rng = random.Random(9)
    for _ in range(500):
        a, b = rng.getrandbits(64), rng.choice([0, 1, 3, rng.getrandbits(64)])
        assert tn.mul(tn.const(a), tn.const(b)) == tn.Tnum((a * b) & U64, 0)
    # an unknown operand still goes through the bitwise algorithm and contains the products
    x = tn.Tnum(4, 3)
    m = tn.mul(x, tn.const(5))
    for v in (4, 5, 6, 7):
        assert m.contains(tn.const(v * 5))


def test_reg_signature_is_the_plain_tuple() -> None:
    f = FuncState(0, 0, -1)
    mark_known(f.regs[3], 42)
    f.regs[3].type = RegType.SCALAR_VALUE
    expect = tuple((r.type, r.off, r.var_off, r.smin, r.smax, r.umin, r.umax, r.s32_min,
                    r.s32_max, r.u32_min, r.u32_max, r.range) for r in f.regs)
    assert reg_signature(f) == expect


def _stats_line(log: str) -> str:
    return [ln for ln in log.splitlines() if ln.startswith("processed ")][-1]


# (errno, final stats line, first error line) recorded before the speed work
GEN_EXPECTED = {
    0: (13, 'processed 30 insns (limit 1000000) max_states_per_insn 0 total_states 2 peak_states 2 mark_read 0',
        'misaligned stack access off (0xfffffffffffffff0; 0xf)+0+0 size 4'),
    1: (13, 'processed 42 insns (limit 1000000) max_states_per_insn 0 total_states 2 peak_states 2 mark_read 0',
        'misaligned stack access off (0xfffffffffffffff0; 0x7)+0+0 size 4'),
    2: (13, 'processed 53 insns (limit 1000000) max_states_per_insn 0 total_states 3 peak_states 3 mark_read 0',
        'misaligned stack access off 0+-14+0 size 4'),
    3: (13, 'processed 82 insns (limit 1000000) max_states_per_insn 0 total_states 3 peak_states 3 mark_read 0',
        'misaligned stack access off (0xfffffffffffffff0; 0xf)+0+0 size 4'),
    4: (13, 'processed 13 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
        'misaligned stack access off (0xfffffffffffffff0; 0x7)+0+0 size 4'),
    5: (13, 'processed 22 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
        'misaligned stack access off (0xfffffffffffffff0; 0x7)+0+0 size 2'),
    6: (13, 'processed 31 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 0',
        'misaligned stack access off (0xfffffffffffffff0; 0xf)+0+0 size 2'),
    7: (13, 'processed 66 insns (limit 1000000) max_states_per_insn 0 total_states 3 peak_states 3 mark_read 0',
        'misaligned stack access off (0xfffffffffffffff0; 0x7)+0+0 size 4'),
    8: (13, 'processed 35 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 0',
        'misaligned stack access off 0+-15+0 size 2'),
    9: (13, 'processed 10 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
        'misaligned stack access off (0xfffffffffffffff0; 0x7)+0+0 size 4'),
    10: (13, 'processed 12 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
        'misaligned stack access off (0xfffffffffffffff0; 0x7)+0+0 size 4'),
    11: (13, 'processed 19 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
        'misaligned stack access off 0+-13+0 size 8'),}

CORPUS_EXPECTED = {
    120: (0, 'processed 5 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
        ''),
    # 276, 740: since precision tracking and liveness, the live 6.18 kernel's own figures
    276: (0, 'processed 81 insns (limit 1000000) max_states_per_insn 2 total_states 8 peak_states 8 mark_read 0',
        ''),
    316: (0, 'processed 7 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
        ''),
    329: (22, 'processed 3 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
        "get_local_storage() doesn't support non-zero flags"),
    349: (0, 'processed 108 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
        ''),
    393: (13, 'processed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
        'invalid bpf_context access off=116 size=4'),
    579: (22, 'processed 11 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
        'invalid write to stack R1 off=-64 size=65'),
    695: (0, 'processed 16 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 0',
        ''),
    717: (0, 'processed 13 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 0',
        ''),
    740: (0, 'processed 44 insns (limit 1000000) max_states_per_insn 0 total_states 4 peak_states 4 mark_read 0',
        ''),
    743: (0, 'processed 224 insns (limit 1000000) max_states_per_insn 0 total_states 23 peak_states 23 mark_read 0',
        ''),
    # the live kernel's figures: checkpoints that keep missing are evicted (max_states_per_insn)
    809: (0, 'processed 40004 insns (limit 1000000) max_states_per_insn 4 total_states 1431 peak_states 1431 mark_read 0',
        ''),
    1307: (22, 'processed 9 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 0',
        'R1 offset is outside of the packet'),}


def _alu_program(n: int) -> list[Insn]:
    ops = (0x07, 0x17, 0x27, 0x57, 0x47, 0xA7, 0x77, 0x67)
    prog = [Insn(0xB7, 0, 0, 0, 0)]
    prog += [Insn(ops[i % len(ops)], 0, 0, 0, (i % 5) + 1) for i in range(n - 2)]
    return [*prog, Insn(0x95, 0, 0, 0, 0)]


def _branchy_program(blocks: int) -> list[Insn]:
    prog = [Insn(0xB7, 0, 0, 0, 0), Insn(0xB7, 7, 0, 0, 1)]
    for i in range(blocks):
        prog += [Insn(0x61, 6, 1, 0, 0), Insn(0x25, 6, 0, 1, 100 + i), Insn(0xB7, 7, 0, 0, 1),
                 Insn(0x0F, 0, 7, 0, 0), Insn(0x57, 0, 0, 0, 0xFF)]
    return [*prog, Insn(0x07, 0, 0, 0, 1), Insn(0xB7, 0, 0, 0, 0), Insn(0x95, 0, 0, 0, 0)]


def _check(inp: VerifierInput, expected: tuple[int, str, str]) -> None:
    inp.log_level = 2
    r2 = bpf_check(inp)
    assert (r2.errno, _stats_line(r2.log), r2.extra.get("error_line", "")) == expected
    inp.log_level = 0
    r0 = bpf_check(inp)
    assert r0.log == ""
    assert (r0.errno, r0.verified_insns, r0.extra.get("error_line", "")) == \
        (r2.errno, r2.verified_insns, r2.extra.get("error_line", ""))


@pytest.mark.parametrize("seed", sorted(GEN_EXPECTED))
def test_generated_programs_unchanged(seed: int) -> None:
    prog = gen_program(random.Random(seed), 40)
    _check(VerifierInput(insns=prog, prog_type=1, prog_flags=2), GEN_EXPECTED[seed])


@pytest.mark.parametrize(("prog", "expected"), [
    (_alu_program(300), (0, "processed 300 insns (limit 1000000) max_states_per_insn 0 "
                            "total_states 0 peak_states 0 mark_read 0", "")),
    # the live 6.18 kernel's figures (r6 is imprecise, so the two paths of each block merge)
    (_branchy_program(39), (0, "processed 357 insns (limit 1000000) max_states_per_insn 0 "
                               "total_states 29 peak_states 29 mark_read 0", "")),
], ids=["alu-300", "branchy-200"])
def test_bench_programs_unchanged(prog: list[Insn], expected: tuple[int, str, str]) -> None:
    _check(VerifierInput(insns=prog, prog_type=1), expected)


@pytest.fixture(scope="module")
def corpus_cases() -> dict[int, dict]:
    if not CORPUS.exists():
        pytest.skip(f"shared verifier corpus not found at {CORPUS}")
    from pybpf.verifier import corpus
    return {c["index"]: c for c in corpus.load(CORPUS) if c["index"] in CORPUS_EXPECTED}


@pytest.mark.parametrize("index", sorted(CORPUS_EXPECTED))
def test_corpus_cases_unchanged(corpus_cases: dict[int, dict], index: int) -> None:
    from pybpf.verifier import corpus
    prep = corpus.prepare(corpus_cases[index])
    _check(prep.inp, CORPUS_EXPECTED[index])
