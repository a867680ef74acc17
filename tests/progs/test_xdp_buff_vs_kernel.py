"""XDP programs on pybpf's ``struct xdp_buff``, differential against the live kernel.

Generated programs call ``bpf_xdp_adjust_head``/``_meta``/``_tail`` with random offsets
(each helper moves the native ``data``/``data_meta``/``data_end`` the converted ctx loads
read next), then read every ``xdp_md`` field; they run by ``BPF_PROG_TEST_RUN`` on random
frames with and without an ``xdp_md`` ctx_in (metadata carved from the headroom). retval,
data_out and ctx_out must equal the kernel's.
"""

from __future__ import annotations

import struct
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.testing import kernel as oracle_mod

XDP = 6
ADJUST = {"head": 44, "meta": 54, "tail": 65}
CASES = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def program(ops: list[tuple[str, int]]) -> str:
    lines = ["r7 = 0", "r6 = r1"]
    for i, (helper, off) in enumerate(ops):
        lines += ["r1 = r6", f"r2 = {off}", f"call {ADJUST[helper]}", "if r0 != 0 goto +1",
                  f"r7 |= {1 << i}"]
    lines += [
        "r2 = *(u32 *)(r6 + 0)", "r3 = *(u32 *)(r6 + 4)", "r4 = *(u32 *)(r6 + 8)",
        "r0 = r3", "r0 -= r2", "r0 <<= 8", "r0 |= r7",
        "r5 = *(u32 *)(r6 + 12)", "r5 <<= 24", "r0 |= r5",
        "r5 = *(u32 *)(r6 + 16)", "r5 <<= 28", "r0 |= r5",
        # one packet byte, when there is one: shows the data pointer is the real one
        "r4 = r2", "r4 += 1", "if r4 > r3 goto +2", "r5 = *(u8 *)(r2 + 0)", "r0 ^= r5",
        "exit",
    ]
    return "\n".join(lines) + "\n"


offsets = st.one_of(st.integers(-300, 300), st.sampled_from([-256, -40, -4, 4, 8, 3, 1000,
                                                             -1000, 4096, -(1 << 31)]))
ops_st = st.lists(st.tuples(st.sampled_from(sorted(ADJUST)), offsets), max_size=3)


def xdp_md(meta: int, end: int) -> bytes:
    return struct.pack("<6I", meta, end, 0, 0, 0, 0)


def test_generated_programs_agree(kernel: ModuleType) -> None:
    compared = 0
    pk = Kernel()

    @given(ops_st, st.binary(min_size=14, max_size=300), st.sampled_from([None, 0, 4, 8, 32]),
           st.integers(0, 40))
    @CASES
    def agree(ops: list[tuple[str, int]], frame: bytes, meta: int | None, cut: int) -> None:
        nonlocal compared
        raw = encode(assemble(program(ops)))
        res = oracle_mod.prog_load(XDP, raw, log_level=1, log_size=1 << 16)
        assert res.ok, res.log
        try:
            prog = Program.load(pk, XDP, raw)
            ctx = None
            if meta is not None:
                frame = bytes(meta) + frame
                ctx = xdp_md(meta, max(meta + 14, len(frame) - cut))
            kw: dict[str, Any] = {"data_size_out": 1024}
            if ctx is not None:
                kw.update(ctx_in=ctx, ctx_size_out=24)
            theirs = oracle_mod.prog_test_run(res.fd, frame, **kw)
            try:
                run = prog.test_run(frame, **kw)
                ours = (0, run.retval, run.data_out, run.ctx_out)
            except BpfError as exc:  # e.g. ENOSPC: data_out too small for a grown tail
                ours = (exc.errno, 0, b"", b"")
            want = (theirs.errno, theirs.retval, theirs.data_out, theirs.ctx_out) \
                if not theirs.errno else (theirs.errno, 0, b"", b"")
            assert ours == want, (ops, frame.hex(), meta)
            compared += 1
        finally:
            oracle_mod.close(res.fd)

    agree()
    assert compared >= 30
