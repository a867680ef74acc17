"""Maps whose values are fds, through bpf(): prog arrays run tail calls, map-in-map resolves
inner maps from the caller's fd table — compared with the live kernel."""

from __future__ import annotations

from typing import Any

import pytest

from pybpf.isa.asm import assemble
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.uapi import (
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_ARRAY_OF_MAPS,
    BPF_MAP_TYPE_PROG_ARRAY,
    BPF_PROG_TYPE_SOCKET_FILTER,
)

TARGET = "r0 = 42\nexit\n"


def caller(prog_array_fd: int, index: int) -> str:
    return (f"r6 = r1\nr2 = 0x{prog_array_fd:x} ll\nr3 = {index}\n"
            "call bpf_tail_call#12\nr0 = 7\nexit\n")


def _fix_map_fd(insns: list[Any], fd: int) -> list[Any]:
    """Mark the ld_imm64 as BPF_PSEUDO_MAP_FD (src=1) with ``fd``."""
    out = list(insns)
    for i, ins in enumerate(out):
        if ins.code == 0x18:
            out[i] = ins._replace(src=1, imm=fd)
    return out


@pytest.mark.parametrize("index,expected", [(0, 42), (1, 7), (5, 7)])
def test_tail_call_through_a_prog_array(index: int, expected: int) -> None:
    k = Kernel(sysctls={"bpf_jit_enable": 0})
    parray = k.map_create(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4)
    target = Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, assemble(TARGET))
    parray.update((0).to_bytes(4, "little"), target.fd.to_bytes(4, "little"))
    main = Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER,
                        _fix_map_fd(assemble(caller(0, index)), parray.fd))
    assert _run(main) == expected


def _run(prog: Program) -> int:
    """Run the loaded program's runtime (what BPF_PROG_TEST_RUN calls) on a dummy ctx."""
    from pybpf.syscall.objects import prog_get

    kprog = prog_get(prog.task, prog.fd)
    try:
        return int(kprog.bpf_func.run(0))
    finally:
        kprog.put()


def test_tail_call_matches_the_kernel(kernel: Any) -> None:
    from pybpf.isa.insn import encode

    fds = []
    try:
        parray = kernel.map_create(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4)
        fds.append(parray)
        t = kernel.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, encode(assemble(TARGET)))
        fds.append(t.fd)
        kernel.map_update(parray, (0).to_bytes(4, "little"), t.fd.to_bytes(4, "little"))
        results = []
        for index in (0, 1):
            m = kernel.prog_load(BPF_PROG_TYPE_SOCKET_FILTER,
                                 encode(_fix_map_fd(assemble(caller(0, index)), parray)))
            assert m.fd >= 0, m.log
            fds.append(m.fd)
            results.append(kernel.prog_test_run(m.fd, data_in=bytes(64)).retval)
        assert results == [42, 7]
    finally:
        for fd in fds:
            kernel.close(fd)


def test_map_in_map_resolves_the_inner_map_fd_of_the_caller() -> None:
    k = Kernel()
    inner = k.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1)
    outer = k.map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 2, inner_map_fd=inner.fd)
    outer.update((1).to_bytes(4, "little"), inner.fd.to_bytes(4, "little"))
    inner_id = int.from_bytes(outer.lookup((1).to_bytes(4, "little")), "little")
    assert inner_id == inner.info().id
    from pybpf.errors import BpfError

    with pytest.raises(BpfError) as exc:
        outer.update((0).to_bytes(4, "little"), (999).to_bytes(4, "little"))
    assert exc.value.errno == 9  # EBADF, as __bpf_map_get
