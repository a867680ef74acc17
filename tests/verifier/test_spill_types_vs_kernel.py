"""Which pointer types survive a spill to the stack (``is_spillable_regtype``), against the
live 6.18 kernel's level-2 log.

A privileged program may store any pointer on the stack; only the spillable types keep
their state there. Storing another (``tp_buffer``, ``dynptr_ptr``) writes STACK_MISC, so
reading it back yields a scalar, and dereferencing that is refused.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.isa.asm import assemble
from pybpf.testing.verifier_diff import kernel_load, verifier_load

RAW_TP_WRITABLE, XDP, SOCKET_FILTER = 24, 6, 1

CASES = [
    # tp_buffer is not spillable: the fill gives a scalar
    ("tp_buffer", RAW_TP_WRITABLE,
     "r6 = *(u64 *)(r1 +0);*(u64 *)(r10 -8) = r6;r7 = *(u64 *)(r10 -8);"
     "r0 = *(u8 *)(r7 +0);exit"),
    # ctx and packet pointers are
    ("ctx", SOCKET_FILTER, "*(u64 *)(r10 -8) = r1;r2 = *(u64 *)(r10 -8);r0 = *(u32 *)(r2 +0);exit"),
    ("pkt", XDP,
     "r2 = *(u32 *)(r1 +0);r3 = *(u32 *)(r1 +4);*(u64 *)(r10 -8) = r2;*(u64 *)(r10 -16) = r3;"
     "r4 = *(u64 *)(r10 -8);r5 = *(u64 *)(r10 -16);r4 += 1;r0 = 0;if r4 > r5 goto +1;"
     "r0 = *(u8 *)(r2 +0);exit"),
    # a 4-byte store of a spillable pointer is refused
    ("ctx_narrow", SOCKET_FILTER, "*(u32 *)(r10 -8) = r1;r0 = 0;exit"),
]


@pytest.mark.parametrize("name,prog_type,text", CASES, ids=[c[0] for c in CASES])
def test_spill_log_matches_kernel(kernel: ModuleType, name: str, prog_type: int, text: str) -> None:
    insns = assemble(text.replace(";", "\n"))
    want = kernel_load(kernel, prog_type, insns, log_level=2)
    got = verifier_load(prog_type, insns, log_level=2)
    assert got.ok == want.ok
    assert got.log == want.log
