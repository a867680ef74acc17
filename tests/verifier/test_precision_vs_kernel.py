"""Precision tracking, liveness and pruning against the live 6.18 kernel.

Each program is verified by the live kernel and by pybpf at ``log_level`` 2; the
statistics line (``processed N insns ... total_states ... peak_states``) must be equal —
it shows that both explored the same states — and for the programs listed in
``LOG_EXACT`` the whole log must be equal (``mark_precise`` backtracking lines, ``P``
marks, ``(0) frame 0 insn N +live -8`` stack liveness, ``SCC enter``). The programs aim at
what precision and liveness decide: loops, branches on scalars later used as offsets,
spills and fills of precise scalars, linked registers, dead registers and stack slots,
bpf-to-bpf calls. Soundness cases must be rejected by both.

The rest runs without the kernel: the backtracking and liveness building blocks, and
the pruning rules they feed (an imprecise scalar matches anything, a precise one must be
contained).
"""

from __future__ import annotations

import random
import re
from types import ModuleType

import pytest

from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn, encode
from pybpf.verifier.api import VerifierInput, bpf_check
from pybpf.verifier.gen import gen_program
from pybpf.verifier.liveness import compute_live_regs, compute_scc
from pybpf.verifier.precision import BacktrackState, fmt_reg_mask, fmt_stack_mask
from pybpf.verifier.prune import LOOP, NOT_EXACT, _IdMap, regsafe
from pybpf.verifier.regs import Reg, mark_known, mark_unknown
from pybpf.verifier.stack_liveness import compute_postorder

SOCKET_FILTER = 1
BPF_F_TEST_STATE_FREQ = 1 << 3

PROGRAMS: dict[str, str] = {
    # a branch decides a scalar that becomes a stack offset: backtracking through the
    # fork into the parent checkpoint (first_idx/subseq_idx, "parent state" lines)
    "offset_after_branch": """
        r2 = *(u32 *)(r1 +0)
        r0 = 0
        if r2 > 3 goto +1
        r0 = 1
        r3 = r10
        r3 += -16
        *(u64 *)(r10 -8) = r0
        *(u64 *)(r10 -16) = r0
        r3 += r0
        r0 = *(u8 *)(r3 +0)
        exit""",
    # the branch only refines r6, which is never used precisely: both paths merge at the
    # next prune point because r6 is imprecise
    "imprecise_merges": """
        r0 = 0
        r6 = *(u32 *)(r1 +0)
        if r6 > 100 goto +1
        r0 = 1
        r6 = *(u32 *)(r1 +4)
        if r6 > 200 goto +1
        r0 += 1
        r6 = *(u32 *)(r1 +8)
        if r6 > 300 goto +1
        r0 += 2
        r0 &= 0xff
        r0 = 0
        exit""",
    # a precise scalar spilled and filled back before its use as an offset: the
    # backtracking walks through the stack slot (stack=-8)
    "spill_fill_precise": """
        r6 = *(u32 *)(r1 +0)
        r0 = 4
        if r6 > 10 goto +1
        r0 = 2
        *(u64 *)(r10 -8) = r0
        r7 = *(u64 *)(r10 -8)
        r2 = r10
        r2 += -16
        *(u64 *)(r10 -16) = 0
        r2 += r7
        r0 = *(u8 *)(r2 +0)
        r0 = 0
        exit""",
    # linked registers: the bound learnt on r1 is the bound of r0 (same id)
    "linked_regs": """
        r0 = *(u32 *)(r1 +0)
        r1 = r0
        if r1 > 7 goto +6
        r2 = r10
        r2 += -8
        *(u64 *)(r10 -8) = 0
        r2 += r0
        r0 = *(u8 *)(r2 -7)
        r0 = 0
        exit""",
    # a bounded loop: the counter is precise, every iteration is explored, SCC lines
    "bounded_loop": """
        r0 = 0
        r1 = 0
        r0 += 1
        r1 += 2
        if r0 < 5 goto -3
        r0 = r1
        exit""",
    # a loop whose body writes and reads the stack
    "loop_stack": """
        r6 = 0
        *(u64 *)(r10 -8) = 0
        r1 = *(u64 *)(r10 -8)
        r1 += r6
        *(u64 *)(r10 -8) = r1
        r6 += 1
        if r6 < 3 goto -5
        r0 = *(u64 *)(r10 -8)
        exit""",
    # r3 differs between the paths (pointer vs scalar) but is dead after the join
    "dead_register": """
        r2 = *(u32 *)(r1 +0)
        r3 = r10
        if r2 > 5 goto +1
        r3 = 0
        r0 = 0
        r4 = *(u32 *)(r1 +4)
        if r4 > 5 goto +1
        r0 = 1
        exit""",
    # fp-16 differs between the paths but is never read again: dead stack slot
    "dead_stack_slot": """
        r2 = *(u32 *)(r1 +0)
        *(u64 *)(r10 -16) = r10
        if r2 > 5 goto +1
        *(u64 *)(r10 -16) = 0
        *(u64 *)(r10 -8) = 0
        r0 = *(u64 *)(r10 -8)
        r4 = *(u32 *)(r1 +4)
        if r4 > 5 goto +1
        r0 = 1
        exit""",
    # a callee uses its argument as an offset: precision crosses the call (frame1 -> 0)
    "call_arg_offset": """
        r6 = *(u32 *)(r1 +0)
        r1 = 1
        if r6 > 9 goto +1
        r1 = 3
        call pc+2
        r0 = 0
        exit
        r2 = r10
        r2 += -8
        *(u64 *)(r10 -8) = 0
        r2 += r1
        r0 = *(u8 *)(r2 -4)
        exit""",
    # a callee's return value used as an offset by the caller (r0 precise across exit)
    "call_return_offset": """
        r6 = *(u32 *)(r1 +0)
        call pc+7
        r2 = r10
        r2 += -8
        *(u64 *)(r10 -8) = 0
        r2 += r0
        r0 = *(u8 *)(r2 -4)
        r0 = 0
        exit
        r0 = 2
        if r6 > 4 goto +1
        r0 = 3
        exit""",
    # a callee writes into the caller's stack through a pointer argument
    "call_writes_caller_stack": """
        r2 = *(u32 *)(r1 +0)
        r1 = r10
        r1 += -8
        if r2 > 3 goto +1
        r2 = 0
        call pc+3
        r0 = *(u64 *)(r10 -8)
        r0 &= 1
        exit
        *(u64 *)(r1 +0) = 7
        r0 = 0
        exit""",
    # helper size argument: ARG_CONST_SIZE_OR_ZERO makes the size register precise
    "helper_size_precise": """
        r6 = *(u32 *)(r1 +0)
        r2 = 8
        if r6 > 3 goto +1
        r2 = 4
        *(u64 *)(r10 -8) = 0
        r1 = r10
        r1 += -8
        call bpf_get_prandom_u32
        r0 = 0
        exit""",
    # writing a zero through a variable offset keeps the STACK_ZERO / spilled-0 slots
    "var_off_zero_write": """
        r6 = *(u32 *)(r1 +0)
        *(u64 *)(r10 -8) = 0
        *(u64 *)(r10 -16) = 0
        r6 &= 7
        r6 += -16
        r6 += r10
        r7 = 0
        *(u8 *)(r6 +0) = r7
        r0 = *(u64 *)(r10 -16)
        if r0 != 0 goto +1
        r0 = 1
        exit""",
    # NEG and byte swaps of constants stay constants (and precise-able)
    "neg_bswap_const": """
        r3 = 0
        r3 = -r3
        r3 |= 32767
        if r3 s>= 0 goto +1
        exit
        r0 = 0x1234
        r0 = be16 r0
        r0 = 0
        exit""",
}

# programs whose whole level-2 log equals the kernel's
LOG_EXACT = set(PROGRAMS)


def _assemble(text: str) -> list[Insn]:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return assemble("\n".join(lines), syntax="kernel")


_TIME = re.compile(r"verification time \d+ usec")
_STATS = re.compile(r"^processed .*$", re.M)


def _kernel_log(oracle: ModuleType, insns: list[Insn], flags: int = 0) -> tuple[bool, str]:
    res = oracle.prog_load(SOCKET_FILTER, encode(insns), log_level=2, log_size=1 << 22, prog_flags=flags)
    if res.fd >= 0:
        oracle.close(res.fd)
    return res.fd >= 0, _TIME.sub("verification time N usec", res.log)


def _pybpf_log(insns: list[Insn], flags: int = 0) -> tuple[bool, str]:
    res = bpf_check(VerifierInput(insns=insns, prog_type=SOCKET_FILTER, log_level=2, prog_flags=flags))
    return res.errno == 0, _TIME.sub("verification time N usec", res.log)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_stats_and_log_match_kernel(kernel: ModuleType, name: str) -> None:
    insns = _assemble(PROGRAMS[name])
    k_ok, k_log = _kernel_log(kernel, insns)
    p_ok, p_log = _pybpf_log(insns)
    assert p_ok == k_ok
    assert _STATS.findall(p_log) == _STATS.findall(k_log)
    if name in LOG_EXACT:
        assert p_log == k_log


def test_state_freq_flag_matches_kernel(kernel: ModuleType) -> None:
    """BPF_F_TEST_STATE_FREQ: a checkpoint at every prune point."""
    insns = _assemble(PROGRAMS["offset_after_branch"])
    k_ok, k_log = _kernel_log(kernel, insns, BPF_F_TEST_STATE_FREQ)
    p_ok, p_log = _pybpf_log(insns, BPF_F_TEST_STATE_FREQ)
    assert (p_ok, p_log) == (k_ok, k_log)
    assert "total_states 0 " not in p_log


def test_generated_programs_explore_like_kernel(kernel: ModuleType) -> None:
    """Random programs with bounds checks, spills and variable stack offsets: same verdict
    and same statistics line (the same states were explored)."""
    rng = random.Random(2)
    bad = []
    for i in range(60):
        insns = gen_program(rng, rng.randrange(4, 40))
        k_ok, k_log = _kernel_log(kernel, insns)
        p_ok, p_log = _pybpf_log(insns)
        if k_ok != p_ok or _STATS.findall(k_log) != _STATS.findall(p_log):
            bad.append((i, _STATS.findall(k_log), _STATS.findall(p_log)))
    assert bad == []


# -- soundness: what precision must not let through ------------------------------------

UNSAFE: dict[str, str] = {
    # r9 = r6 & 8 is not r6: a branch on r9 must not bound r6 (the link dies with the ALU op)
    "alu_breaks_link": """
        r6 = *(u32 *)(r1 +0)
        *(u64 *)(r10 -8) = 0
        r9 = r6
        r9 &= 8
        if r9 > 4 goto +4
        r2 = r10
        r2 += -8
        r2 += r6
        r0 = *(u8 *)(r2 +0)
        r0 = 0
        exit""",
    # the first path spills 0 (a safe offset), the second an unbounded value; with a
    # checkpoint at every prune point the fill's use as an offset made the spilled scalar
    # precise in the checkpoint at insn 6, so the second path is not pruned there
    "precise_spill_not_pruned": """
        r6 = *(u32 *)(r1 +0)
        r0 = 0
        if r6 > 10 goto +2
        r0 = 0
        goto +1
        r0 = r6
        *(u64 *)(r10 -8) = r0
        r7 = *(u64 *)(r10 -8)
        r2 = r10
        r2 += -16
        *(u64 *)(r10 -16) = 0
        r2 += r7
        r0 = *(u8 *)(r2 +0)
        r0 = 0
        exit""",
}


@pytest.mark.parametrize("flags", [0, BPF_F_TEST_STATE_FREQ])
@pytest.mark.parametrize("name", sorted(UNSAFE))
def test_unsafe_programs_rejected(name: str, flags: int) -> None:
    ok, log = _pybpf_log(_assemble(UNSAFE[name]), flags)
    assert not ok, log


@pytest.mark.parametrize("flags", [0, BPF_F_TEST_STATE_FREQ])
@pytest.mark.parametrize("name", sorted(UNSAFE))
def test_unsafe_programs_rejected_like_kernel(kernel: ModuleType, name: str, flags: int) -> None:
    insns = _assemble(UNSAFE[name])
    k_ok, k_log = _kernel_log(kernel, insns, flags)
    p_ok, p_log = _pybpf_log(insns, flags)
    assert (p_ok, p_log.strip().splitlines()[-2]) == (k_ok, k_log.strip().splitlines()[-2])


# -- building blocks ---------------------------------------------------------------------

def test_mask_formatting() -> None:
    assert fmt_reg_mask(0b10101) == "r0,r2,r4"
    assert fmt_stack_mask(0b101) == "-8,-24"
    assert fmt_reg_mask(0) == "" and fmt_stack_mask(0) == ""


def test_backtrack_state_frames() -> None:
    bt = BacktrackState(1)
    assert bt.empty()
    bt.set_reg(2)
    bt.set_slot(3, 0)
    assert bt.is_reg(2) and not bt.is_reg(2, 0) and bt.is_slot(3, 0)
    bt.subprog_exit()
    assert bt.frame == 0 and not bt.empty()
    bt.clear_slot(3, 0)
    assert bt.empty()  # frame 1 is no longer looked at
    bt.sync_linked_regs(((0, True, 4), (0, False, 1)))
    assert bt.empty()  # none of the linked registers is wanted
    bt.set_reg(4)
    bt.sync_linked_regs(((0, True, 4), (0, False, 1)))
    assert bt.is_slot(1, 0)


def test_scc_ids() -> None:
    insns = _assemble(PROGRAMS["bounded_loop"])
    assert compute_scc(insns) == [0, 0, 1, 1, 1, 0, 0]
    assert set(compute_scc(_assemble(PROGRAMS["offset_after_branch"]))) == {0}


def test_live_regs() -> None:
    insns = _assemble("r1 = 1; r2 = 2; r0 = r1; exit".replace("; ", "\n"))
    live = compute_live_regs(insns, lambda ins: None)
    assert live == [0, 0b10, 0b10, 0b1]


def test_postorder_per_subprog() -> None:
    insns = _assemble(PROGRAMS["call_arg_offset"])
    order, starts = compute_postorder(insns, [0, 7])
    assert starts == [0, 7, len(insns)]
    assert order[:starts[1]][0] == 6 and order[-1] == 7  # exits first, entries last
    assert sorted(order) == list(range(len(insns)))


def _scalar(lo: int, hi: int, precise: bool) -> Reg:
    r = Reg()
    mark_unknown(r)
    r.umin, r.umax, r.smin, r.smax = lo, hi, lo, hi
    r.u32_min, r.u32_max, r.s32_min, r.s32_max = lo, hi, lo, hi
    r.precise = precise
    return r


def test_regsafe_precision_rules() -> None:
    wide_old, narrow = _scalar(0, 10, False), _scalar(0, 100, False)
    assert regsafe(wide_old, narrow, _IdMap(), NOT_EXACT)  # imprecise: anything goes
    assert not regsafe(_scalar(0, 10, True), narrow, _IdMap(), NOT_EXACT)  # precise: contained?
    assert regsafe(_scalar(0, 100, True), _scalar(5, 6, False), _IdMap(), NOT_EXACT)
    assert not regsafe(wide_old, narrow, _IdMap(), LOOP)  # all scalars precise
    const = Reg()
    mark_unknown(const)
    mark_known(const, 3)
    assert regsafe(Reg(), const, _IdMap(), NOT_EXACT)  # NOT_INIT old matches anything
