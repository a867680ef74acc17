"""BPF_PROG_LOAD picks the runtime by bpf_jit_enable and prog info reports the JIT's output."""

from __future__ import annotations

import pytest

from pybpf.isa.asm import assemble
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.uapi import BPF_PROG_TYPE_SOCKET_FILTER

PROG = assemble("r0 = 1\nr1 = 2\ncall pc+2\nr0 += 1\nexit\nr0 = r1\nexit\n")


@pytest.mark.parametrize("jit_enable", [0, 1])
def test_runtime_follows_bpf_jit_enable(jit_enable: int) -> None:
    pytest.importorskip("llvmlite")
    k = Kernel(sysctls={"bpf_jit_enable": jit_enable})
    prog = Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, PROG)
    info = prog.info()
    if jit_enable:
        assert info.jited_prog_len > 0
    else:
        assert info.jited_prog_len == 0
    kprog = k.progs()[0]
    assert kprog.jited == bool(jit_enable)
    assert kprog.bpf_func.run(0) == 3  # r0 = r1 (2) in the subprogram, + 1


def test_jited_ksyms_and_func_lens_describe_each_function() -> None:
    pytest.importorskip("llvmlite")
    k = Kernel(sysctls={"bpf_jit_enable": 1})
    Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, PROG)
    kprog = k.progs()[0]
    jinfo = kprog.aux["jited_info"]
    assert len(jinfo.jited_ksyms) == len(jinfo.jited_func_lens) >= 1
    assert all(addr != 0 for addr in jinfo.jited_ksyms)
    assert sum(jinfo.jited_func_lens) <= jinfo.jited_prog_len
