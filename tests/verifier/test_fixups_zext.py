"""The zero extension after a 32-bit ``cmpxchg`` (``opt_subreg_zext_lo32_rnd_hi32``).

On x86-64 the kernel inserts ``w0 = w0`` (``BPF_ZEXT_REG``, ``imm = 1``) after a
``BPF_W`` ``cmpxchg`` exactly when some path reads all 64 bits of the ``r0`` it defined
(``subreg_def`` / ``zext_dst``). pybpf's xlated program must agree with the live
kernel's on which programs get one, and the rewritten program must run on both tiers
to the kernel's test_run result.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.helpers.impls import ktime_get_ns
from pybpf.isa.insn import Insn, encode
from pybpf.jit import compile_program
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.verifier.api import VerifierInput, bpf_check
from pybpf.verifier.zext import is_reg64, zext_ins

SOCKET_FILTER = 1
EXIT = Insn(0x95, 0, 0, 0, 0)
ZEXT = zext_ins(0)


def cas(size: int = 0x00) -> Insn:
    """``r0 = atomic_cmpxchg((u32 or u64 *)(r10 - 8), r0, r1)``."""
    return Insn(0xC3 | size, 10, 1, -8, 0xF1)


#: ``*(u64 *)(fp - 8) = bpf_ktime_get_ns()`` (unknown to the verifier), ``r0 = -1``,
#: ``r1 = 9``: the compare fails, ``r0`` gets the old low 32 bits, its upper half zero
PRE = [Insn(0x85, 0, 0, 0, 5), Insn(0x7B, 10, 0, -8, 0), Insn(0xB7, 0, 0, 0, -1),
       Insn(0xB7, 1, 0, 0, 9)]
RSH32 = Insn(0x77, 0, 0, 0, 32)

#: name -> (program, expects a zext after the cmpxchg); every result is deterministic
PROGRAMS: dict[str, tuple[list[Insn], bool]] = {
    "exit_reads_r0": ([*PRE, cas(), RSH32, EXIT], True),
    "r0_64bit_jump": ([*PRE, cas(), Insn(0x15, 0, 0, 1, 0), Insn(0xB7, 0, 0, 0, 2), EXIT],
                      True),
    "r0_32bit_only": ([*PRE, cas(), Insn(0x54, 0, 0, 0, 0), EXIT], False),  # w0 &= 0
    "r0_overwritten": ([*PRE, cas(), Insn(0xB7, 0, 0, 0, 3), EXIT], False),
    "copied_32bit": ([*PRE, cas(), Insn(0xBC, 3, 0, 0, 0), Insn(0xBF, 0, 3, 0, 0), RSH32,
                      EXIT], False),
    "copied_64bit": ([*PRE, cas(), Insn(0xBF, 3, 0, 0, 0), Insn(0xBF, 0, 3, 0, 0), RSH32,
                      EXIT], True),
    "cmpxchg_64": ([*PRE, cas(0x18), Insn(0x77, 0, 0, 0, 63), EXIT], False),
    "one_branch_reads": ([*PRE, cas(), Insn(0x16, 0, 0, 2, 0), RSH32, EXIT,
                          Insn(0xB4, 0, 0, 0, 1), EXIT], True),
}


def xlated(insns: list[Insn]) -> list[Insn]:
    res = bpf_check(VerifierInput(insns=insns, prog_type=SOCKET_FILTER))
    assert res.errno == 0, res.log
    return list(res.insns)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_zext_where_the_kernel_puts_it(name: str) -> None:
    insns, zext = PROGRAMS[name]
    ours = xlated(insns)
    i = next(k for k, ins in enumerate(ours) if ins.imm == 0xF1 and ins.code & 0x07 == 3)
    assert (ours[i + 1] == ZEXT) is zext
    assert len(ours) == len(insns) + int(zext)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_xlated_and_retval_equal_kernel(kernel: ModuleType, name: str) -> None:
    insns, _ = PROGRAMS[name]
    with kernel.KernelFds() as fds:
        res = fds.prog_load(SOCKET_FILTER, encode(insns))
        assert res.ok, res.log
        theirs = kernel.prog_xlated(res.fd)
        run = kernel.prog_test_run(res.fd, bytes(64))
        assert run.errno == 0
    ours = xlated(insns)
    # helper call immediates are kernel addresses there, helper ids here
    assert [i._replace(imm=0) if i.code == 0x85 else i for i in ours] == \
        [i._replace(imm=0) if i.code == 0x85 else i for i in theirs]
    helpers = {5: ktime_get_ns}
    for prog in (CompiledProgram(ours, helpers=helpers), compile_program(ours, helpers=helpers)):
        assert int(prog.run()) & 0xFFFFFFFF == run.retval


def test_is_reg64_follows_the_kernel() -> None:
    assert is_reg64(Insn(0x95, 0, 0, 0, 0), 0, None, True)  # exit
    assert not is_reg64(Insn(0xBC, 1, 0, 0, 0), 0, None, True)  # w1 = w0
    assert is_reg64(Insn(0xBF, 1, 0, 0, 0), 0, None, True)  # r1 = r0
    assert not is_reg64(Insn(0x16, 0, 0, 1, 5), 0, None, True)  # jmp32
    assert not is_reg64(Insn(0x61, 0, 1, 0, 0), 0, None, False)  # 32-bit load defines 32
    assert is_reg64(Insn(0x79, 0, 1, 0, 0), 0, None, False)
    assert not is_reg64(cas(), 0, None, False)
    assert is_reg64(cas(0x18), 0, None, False)
    assert not is_reg64(Insn(0x85, 0, 0, 0, 1), 0, None, False)  # helper clobber
    assert is_reg64(Insn(0x85, 0, 0, 0, 1), 1, None, True)  # helper argument
