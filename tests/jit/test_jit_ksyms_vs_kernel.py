"""One native function per subprogram: jited_ksyms / jited_func_lens as the live kernel reports.

The kernel's JIT emits every bpf-to-bpf subprogram as a function of its own, so prog info
of a multi-function program has one ``jited_ksyms`` entry and one ``jited_func_lens``
entry per subprogram — also when LLVM could have inlined or folded the call away.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.uapi import BPF_PROG_TYPE_SOCKET_FILTER

pytest.importorskip("llvmlite")

PROGS = {
    # a pure subprogram with a constant result (LLVM would fold the call away)
    "const_sub": "r0 = 1\nr1 = 2\ncall pc+2\nr0 += 1\nexit\nr0 = r1\nexit\n",
    # main -> f1 -> f2, and main -> f2 directly
    "nested": ("r1 = 3\ncall pc+5\nr6 = r0\nr1 = 5\ncall pc+5\nr0 += r6\nexit\n"
               "r1 += 1\ncall pc+1\nexit\n"
               "r0 = r1\nr0 *= 7\nexit\n"),
    # three leaf subprograms, each called once
    "three": ("r1 = 1\ncall pc+6\nr6 = r0\ncall pc+6\nr6 += r0\ncall pc+6\nr0 += r6\nexit\n"
              "r0 = 10\nexit\nr0 = 20\nexit\nr0 = 30\nexit\n"),
}


def _ours(src: str) -> tuple[int, int, int, int]:
    k = Kernel(sysctls={"bpf_jit_enable": 1})
    prog = Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, assemble(src))
    info = prog.info()
    run = k.progs()[0].bpf_func.run(0)
    return info.nr_jited_ksyms, info.nr_jited_func_lens, int(info.jited_prog_len > 0), run


@pytest.mark.parametrize("name", sorted(PROGS))
def test_one_native_function_per_subprogram_like_the_kernel(kernel: ModuleType,
                                                            name: str) -> None:
    src = PROGS[name]
    res = kernel.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, encode(assemble(src)))
    assert res.ok, res.log
    try:
        theirs = kernel.prog_info(res.fd)
        run = kernel.prog_test_run(res.fd, data_in=bytes(64))
    finally:
        kernel.close(res.fd)
    ksyms, lens, jited, r0 = _ours(src)
    assert (ksyms, lens, jited) == (theirs.nr_jited_ksyms, theirs.nr_jited_func_lens, 1)
    assert r0 == run.retval


def test_each_function_has_its_own_address_and_length() -> None:
    k = Kernel(sysctls={"bpf_jit_enable": 1})
    Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, assemble(PROGS["three"]))
    jinfo = k.progs()[0].aux["jited_info"]
    assert len(set(jinfo.jited_ksyms)) == len(jinfo.jited_ksyms) == 4
    assert all(n > 0 for n in jinfo.jited_func_lens)
    assert jinfo.jited_prog_len == sum(jinfo.jited_func_lens)
