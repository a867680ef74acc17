"""Linked scalars with constant deltas (``BPF_ADD_CONST64``/``BPF_ADD_CONST32``) and the
wrap-aware add/sub bounds, against the live 6.18 kernel's level-2 log.

``r1 = r0; r1 += c`` keeps r1 linked to r0 with the delta ``c`` (printed ``id=1+4``,
``id=1-4``): a branch on either refines the other, shifted by the delta — the pattern
compilers emit for loop counters and bounds checks. Only live registers are refined
(6.18 collects linked registers by ``live_regs_before``); 32-bit deltas zero-extend;
mixed 32/64-bit links do not propagate; ``rX += rX`` and a second delta break the link.
Verdicts depend on it: ``neg_delta_proves_safe`` divides by zero only on a path the link
proves dead.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.verifier.api import VerifierInput, bpf_check

SOCKET_FILTER = 1
PRANDOM = "call 7\n"

CASES = {
    "pos_delta": "r1 = r0\nr1 += 4\nif r1 < 10 goto +3\nr2 = r0\nr0 = 0\nexit\nr2 = r0\nr0 = 0\nexit",
    "neg_delta": "r1 = r0\nr1 += -4\nif r1 < 10 goto +3\nr2 = r0\nr0 = 0\nexit\nr2 = r0\nr0 = 0\nexit",
    "sub_delta": "r1 = r0\nr1 -= 4\nif r1 > 10 goto +2\nr2 = r0\nexit\nr2 = r0\nr0 = 0\nexit",
    "dead_reg_not_synced": "r1 = r0\nr1 += -4\nif r1 s>= 0 goto +2\nr0 = 0\nexit\nr0 = 0\nexit",
    "neg_delta_proves_safe": "r0 &= 0xff\nr1 = r0\nr1 += -4\nif r1 s< 0 goto +3\nif r0 >= 4 goto +2\n"
                             "r0 /= 0\nexit\nr0 = 0\nexit",
    "alu32_delta": "w6 = w0\nr7 = r6\nw7 += 1\nif r7 > 10 goto +2\nr0 = r6\nexit\nr0 = 0\nexit",
    "alu32_zext": "w6 = w0\nr7 = r6\nw7 += 1\nr8 = 0xFFFFffff ll\nif r6 < r8 goto +2\nr0 = r7\nexit\n"
                  "r0 = 0\nexit",
    "alu32_known_side": "w6 = w0\nr7 = r6\nw7 += 1\nif r7 != 0 goto +2\nr0 = r6\nexit\nr0 = 0\nexit",
    "alu32_upper_bits_break": "r6 = r0\nr7 = r6\nw7 += 1\nif r6 > 10 goto +2\nr0 = r7\nexit\nr0 = 0\nexit",
    "mixed_widths": "if r0 > 0xffffffff goto +8\nr6 = r0\nr7 = r6\nw7 += 1\nr8 = r6\nr8 += 2\n"
                    "if r7 < 0xffffff goto +2\nr0 = r8\nexit\nr0 = 0\nexit",
    "self_add_breaks": "r6 = r0\nr7 = r6\nr7 += r7\nif r6 > 10 goto +2\nr0 = r7\nexit\nr0 = 0\nexit",
    "second_delta_breaks": "r1 = r0\nr1 += 4\nr1 += 4\nif r1 > 10 goto +2\nr2 = r0\nexit\nr0 = 0\nexit",
    "copy_of_delta_restarts": "r1 = r0\nr1 += 4\nr2 = r1\nif r2 > 10 goto +2\nr3 = r0\nr0 = r1\nexit\n"
                              "r0 = 0\nexit",
    "big_delta": "r1 = r0\nr1 += 0x7fffffff\nif r1 > 10 goto +2\nr2 = r0\nexit\nr0 = 0\nexit",
    "delta_from_register": "r2 = 8\nr1 = r0\nr1 += r2\nif r1 < 100 goto +2\nr2 = r0\nexit\nr2 = r0\n"
                           "r0 = 0\nexit",
    "spilled_link": "r1 = r0\n*(u64 *)(r10 - 8) = r1\nr0 += 3\nif r0 > 10 goto +3\nr2 = *(u64 *)(r10 - 8)\n"
                    "r0 = 0\nexit\nr0 = 0\nexit",
    "pruning_across_deltas": "r6 = r0\nr7 = r6\nif r0 > 5 goto +2\nr7 += 1\ngoto +1\nr7 += 2\n"
                             "if r6 > 20 goto +2\nr0 = r7\nexit\nr0 = 0\nexit",
    # wrap-aware add/sub: both ends wrapping keep a contiguous range
    "add64_both_wrap": "if r0 < 11 goto +1\nr0 += -1\nr0 = 0\nexit",
    "add32_both_wrap": "w0 = w0\nif w0 < 11 goto +1\nw0 += -1\nr0 = 0\nexit",
    "sub64_both_wrap": "if r0 > 5 goto +2\nif r0 < 2 goto +1\nr0 -= 10\nr0 = 0\nexit",
    "sub32_both_wrap": "if w0 > 5 goto +2\nif w0 < 2 goto +1\nw0 -= 10\nr0 = 0\nexit",
    "add64_one_wraps": "if r0 < 11 goto +1\nr0 += 5\nr0 = 0\nexit",
}


@pytest.mark.parametrize("name", list(CASES))
def test_level2_log_matches_kernel(kernel: ModuleType, name: str) -> None:
    insns = assemble(PRANDOM + CASES[name])
    want = kernel.prog_load(SOCKET_FILTER, encode(insns), log_level=2, log_size=1 << 20)
    if want.fd >= 0:
        kernel.close(want.fd)
    got = bpf_check(VerifierInput(insns=insns, prog_type=SOCKET_FILTER, log_level=2))
    assert (got.errno == 0) == (want.fd >= 0), got.log
    assert got.log == want.log


def test_unprivileged_programs_do_not_link_deltas() -> None:
    """Without CAP_BPF the delta is not tracked (``env->bpf_capable``): the copy's id is
    dropped by the add."""
    insns = assemble(PRANDOM + "r1 = r0\nr1 += 4\nr0 = 0\nexit")
    got = bpf_check(VerifierInput(insns=insns, prog_type=SOCKET_FILTER, log_level=2,
                                  bpf_capable=False, perfmon_capable=False))
    assert "id=1+4" not in got.log
    priv = bpf_check(VerifierInput(insns=insns, prog_type=SOCKET_FILTER, log_level=2))
    assert "R1=scalar(id=1+4)" in priv.log
