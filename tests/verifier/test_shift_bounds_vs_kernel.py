"""Shift bounds against the live 6.18 kernel's level-2 log, above all the ``<<32 s>>32``
sign extension compilers emit for a 32-bit value used as a 64-bit one: the 64-bit signed
range after ``<<= 32`` is the unshifted s32 range moved up, negative or not (corpus case
190, ``bpf_get_stack``'s return value used as an offset, depends on it)."""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.verifier.api import VerifierInput, bpf_check

SOCKET_FILTER = 1
PRANDOM = "call 7\n"

CASES = {
    "sext_negative_range": "r0 &= 0xfff\nr0 -= 4095\nr0 += 24\nr8 = r0\nr8 <<= 32\nr8 s>>= 32\nr0 = 0\nexit",
    "sext_positive_range": "r0 &= 0xff\nr8 = r0\nr8 <<= 32\nr8 s>>= 32\nr0 = 0\nexit",
    "sext_unknown": "r8 = r0\nr8 <<= 32\nr8 s>>= 32\nr0 = 0\nexit",
    "lsh_small": "r0 &= 0xff\nr0 <<= 4\nexit",
    "lsh_31": "r0 &= 0xff\nr0 <<= 31\nr0 = 0\nexit",
    "lsh_variable": "r1 = r0\nr1 &= 3\nr0 &= 0xff\nr0 <<= r1\nexit",
    "lsh32": "w0 &= 0xff\nw0 <<= 8\nexit",
    "arsh_negative": "r0 |= -256\nr0 s>>= 4\nr0 = 0\nexit",
    "sext_guarding_map_offset": "r0 &= 0xfff\nr0 -= 4095\nr0 += 24\nr8 = r0\nr8 <<= 32\nr8 s>>= 32\n"
                                "r1 = 0\nif r1 s> r8 goto +2\nif r8 > 24 goto +1\nr0 = r8\nr0 = 0\nexit",
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
