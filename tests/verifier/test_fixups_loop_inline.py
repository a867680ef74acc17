"""``bpf_loop`` inlining (``optimize_bpf_loop``, :mod:`pybpf.verifier.loop_inline`).

A call site that always passes the same callback and ``flags == 0`` becomes an inline
loop with a direct call of the callback and three spill slots below the subprogram's
stack. Each program is loaded into the live kernel (with the BTF func_info callbacks
need) and into pybpf: the xlated programs must be equal, and both pybpf tiers must run the
rewritten program to the kernel's test_run retval.
"""

from __future__ import annotations

import os
import struct
from types import ModuleType

import pytest

from pybpf.helpers.impls import IMPLS as BASE_IMPLS
from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn, encode
from pybpf.jit import compile_program
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.syscall.info import jit_subprog_calls
from pybpf.testing.verifier_cases import callback_btf
from pybpf.verifier.api import VerifierInput, bpf_check

XDP = 6
PKT = bytes(64)

HEAD = """
r1 = 0
*(u64 *)(r10 - 8) = r1
r1 = {nr}
r2 = subprog[cb]
r3 = r10
r3 += -8
r4 = {flags}
call 181
"""
SUM_CB = """
cb:
r3 = *(u64 *)(r2 + 0)
r3 += r1
*(u64 *)(r2 + 0) = r3
r0 = 0
exit
"""

#: name -> (program text, inlined?)
PROGRAMS: dict[str, tuple[str, bool]] = {
    "sum": (HEAD.format(nr=10, flags=0) + "r0 = *(u64 *)(r10 - 8)\nexit\n" + SUM_CB, True),
    "iterations": (HEAD.format(nr=10, flags=0) + "exit\n" + """
cb:
r0 = 0
if r1 != 3 goto out
r0 = 1
out:
exit
""", True),
    "zero_loops": (HEAD.format(nr=0, flags=0) + "exit\n" + SUM_CB, True),
    "flags_nonzero": (HEAD.format(nr=4, flags=1) + "exit\n" + SUM_CB, False),
    "odd_stack": ("""
r1 = 7
*(u32 *)(r10 - 20) = r1
""" + HEAD.format(nr=5, flags=0) + """
r1 = *(u32 *)(r10 - 20)
r0 = *(u64 *)(r10 - 8)
r0 += r1
r6 = r0
exit
""" + SUM_CB, True),
    "callee_saved_kept": ("""
r6 = 100
r7 = 20
r8 = 3
""" + HEAD.format(nr=6, flags=0) + """
r0 = *(u64 *)(r10 - 8)
r0 += r6
r0 += r7
r0 += r8
exit
""" + SUM_CB, True),
    "in_subprog": ("""
r1 = 3
call f
r0 += 1000
exit
f:
r6 = r1
""" + HEAD.format(nr=4, flags=0) + """
r0 = *(u64 *)(r10 - 8)
r0 += r6
exit
""" + SUM_CB, True),
    "two_callbacks": ("""
call 7
r2 = subprog[cb]
r0 &= 1
if r0 == 0 goto go
r2 = subprog[cb2]
go:
r1 = 0
*(u64 *)(r10 - 8) = r1
r1 = 5
r3 = r10
r3 += -8
r4 = 0
call 181
exit
""" + SUM_CB + """
cb2:
r3 = *(u64 *)(r2 + 0)
r3 += r1
*(u64 *)(r2 + 0) = r3
r0 = 0
exit
""", False),
}


#: the kernel never walks a callback ``nr_loops == 0`` cannot reach, and its dead-code pass
#: removes it (the inlined call then points past the program); pybpf keeps callback bodies
#: it did not walk (docs/xlated.md), so only these programs' runs are compared
KEEPS_UNWALKED_CALLBACK = {"zero_loops"}


def subprog_starts(insns: list[Insn]) -> list[int]:
    starts = {0}
    for i, ins in enumerate(insns):
        if (ins.code == 0x85 and ins.src == 1) or (ins.code == 0x18 and ins.src == 4):
            starts.add(i + ins.imm + 1)
    return sorted(starts)


def kernel_side(kernel: ModuleType, insns: list[Insn]) -> tuple[list[Insn], int]:
    starts = subprog_starts(insns)
    finfo = b"".join(struct.pack("<II", s, 3 if s == 0 else 5) for s in starts)
    btf = kernel.btf_load(callback_btf())
    assert btf.ok, btf.log
    with kernel.KernelFds() as fds:
        try:
            res = fds.prog_load(XDP, encode(insns), log_level=1, log_size=1 << 20,
                                prog_btf_fd=btf.fd, func_info=finfo, func_info_rec_size=8)
        finally:
            os.close(btf.fd)
        assert res.ok, res.log
        run = kernel.prog_test_run(res.fd, PKT)
        assert run.errno == 0
        return kernel.prog_xlated(res.fd), run.retval


def no_helper_imm(insns: list[Insn]) -> list[Insn]:
    """Helper call immediates left out (kernel addresses there, pybpf ids here)."""
    return [i._replace(imm=0) if i.code == 0x85 and i.src == 0 else i for i in insns]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_loop_inline_equals_kernel(kernel: ModuleType, name: str) -> None:
    text, inlined = PROGRAMS[name]
    insns = assemble(text)
    theirs, retval = kernel_side(kernel, insns)
    res = bpf_check(VerifierInput(insns=insns, prog_type=XDP))
    assert res.errno == 0, res.log
    ours = list(res.insns)
    # the kernel's dump holds bpf-to-bpf calls as jit_subprogs left them
    if name not in KEEPS_UNWALKED_CALLBACK:
        assert no_helper_imm(jit_subprog_calls(ours)) == no_helper_imm(theirs)
    assert (not any(i.code == 0x85 and i.src == 0 and i.imm == 181 for i in ours)) is inlined
    helpers = dict(BASE_IMPLS)
    helpers[7] = lambda ctx, *a: 0  # get_prandom_u32: the branch is the same either way
    for prog in (CompiledProgram(ours, helpers=helpers), compile_program(ours, helpers=helpers)):
        assert int(prog.run()) & 0xFFFFFFFF == retval, (name, type(prog).__name__)


def test_stack_depth_grows_by_the_spill_slots() -> None:
    """``odd_stack``: 20 bytes used, round-up 4 plus three slots: 48 bytes."""
    res = bpf_check(VerifierInput(insns=assemble(PROGRAMS["odd_stack"][0]), prog_type=XDP))
    assert res.errno == 0
    assert res.extra["max_stack"][0] == 20 + 4 + 24
    spills = [i for i in res.insns if i.code == 0x7B and i.dst == 10 and i.src in (6, 7, 8)]
    assert [i.off for i in spills] == [-48, -40, -32]


def test_deep_stack_keeps_the_call() -> None:
    """Past MAX_BPF_STACK the runtime's frames would not hold the slots: no inlining."""
    text = "r1 = 1\n*(u64 *)(r10 - 496) = r1\n" + PROGRAMS["sum"][0]
    res = bpf_check(VerifierInput(insns=assemble(text), prog_type=XDP))
    assert res.errno == 0
    assert any(i.code == 0x85 and i.src == 0 and i.imm == 181 for i in res.insns)
    for prog in (CompiledProgram(list(res.insns), helpers=BASE_IMPLS),
                 compile_program(list(res.insns), helpers=BASE_IMPLS)):
        assert prog.run() == 45
