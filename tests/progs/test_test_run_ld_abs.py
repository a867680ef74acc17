"""Legacy packet loads (LD_ABS/LD_IND) with classic BPF's negative offsets, vs the kernel.

``SKF_NET_OFF + k`` counts from the network header and ``SKF_LL_OFF + k`` from the MAC
header; out-of-packet loads end the program with 0. Socket filters see the packet from the
network header, tc programs from the MAC header.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.uapi import BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_SOCKET_FILTER

SKF_NET_OFF = -0x100000
SKF_LL_OFF = -0x200000
FRAME = bytes(range(0x10, 0x10 + 60))  # 60-byte frame with distinct bytes


def _prog(code: int, imm: int, index: int | None) -> list[Insn]:
    """r6 = ctx; [r7 = index]; r0 = ld_abs/ld_ind; r0 += 0x1000 (so 0 means 'aborted')."""
    head = assemble("r6 = r1\n")
    if index is None:
        load = [Insn(code, 0, 0, 0, imm)]
    else:
        load = [Insn(0xB7, 7, 0, 0, index), Insn(code, 0, 7, 0, imm)]
    return [*head, *load, *assemble("r0 += 0x1000\nexit\n")]


CASES = [
    (0x30, 0, None), (0x28, 12, None), (0x20, 56, None), (0x20, 57, None),  # ABS b/h/w
    (0x30, SKF_NET_OFF, None), (0x28, SKF_NET_OFF + 2, None),
    (0x30, SKF_LL_OFF, None), (0x20, SKF_LL_OFF + 12, None), (0x20, SKF_LL_OFF + 58, None),
    (0x30, SKF_LL_OFF - 1, None), (0x30, -1, None),
    (0x50, SKF_LL_OFF, 1), (0x40, SKF_NET_OFF, 4), (0x48, -4, 2), (0x50, 0, 59),
]


@pytest.mark.parametrize("prog_type", [BPF_PROG_TYPE_SOCKET_FILTER, BPF_PROG_TYPE_SCHED_CLS])
@pytest.mark.parametrize("code,imm,index", CASES)
def test_legacy_loads_match_the_kernel(kernel: ModuleType, kernel_fds: Any, prog_type: int,
                                       code: int, imm: int, index: int | None) -> None:
    insns = _prog(code, imm, index)
    res = kernel_fds.prog_load(prog_type, encode(insns), log_level=1, log_size=1 << 16)
    assert res.ok, res.log
    expected = kernel.prog_test_run(res.fd, data_in=FRAME).retval
    pk = Kernel(sysctls={"bpf_jit_enable": 0})
    got = Program.load(pk, prog_type, insns).test_run(FRAME).retval
    assert got == expected, f"{code:#x} {imm:#x} {index}: pybpf {got:#x}, kernel {expected:#x}"
