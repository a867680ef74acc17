"""Loads from a frozen read-only map are constants (``bpf_map_direct_read``).

A ``BPF_F_RDONLY_PROG`` single-entry array that is frozen (global ``.rodata``) gives the
verifier known values, so a branch on one is decided and the dead side leaves the xlated
program, as in the live kernel's. A map that is not frozen, or not read-only, keeps both.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.isa.insn import Insn, encode
from pybpf.maps.api import create_map
from pybpf.testing.xlated import comparable
from pybpf.verifier.api import VerifierInput, bpf_check

SOCKET_FILTER, ARRAY = 1, 2
BPF_F_RDONLY_PROG = 1 << 7
EXIT = Insn(0x95, 0, 0, 0, 0)
FD = 100


def prog(fd: int, size: int, off: int) -> list[Insn]:
    """``if (rodata[off] (of size) == 0) return 1; return 2``."""
    ldx = {1: 0x71, 2: 0x69, 4: 0x61, 8: 0x79}[size]
    return [Insn(0x18, 1, 2, 0, fd), Insn(0, 0, 0, 0, off),  # r1 = &map[0] + off
            Insn(ldx, 1, 1, 0, 0), Insn(0x55, 1, 0, 2, 0),
            Insn(0xB7, 0, 0, 0, 1), EXIT, Insn(0xB7, 0, 0, 0, 2), EXIT]


@pytest.mark.parametrize("flags,frozen", [(BPF_F_RDONLY_PROG, True), (BPF_F_RDONLY_PROG, False),
                                          (0, True)])
@pytest.mark.parametrize("size,off,value", [(1, 3, 0), (1, 3, 5), (4, 4, 0), (8, 8, 1 << 40),
                                            (2, 14, 0)])
def test_rodata_branch_xlated_equals_kernel(kernel: ModuleType, flags: int, frozen: bool,
                                            size: int, off: int, value: int) -> None:
    data = bytearray(16)
    data[off:off + size] = value.to_bytes(size, "little")
    bmap = create_map(ARRAY, 4, 16, 1, flags)
    bmap.ops.sys_update(bmap, bytes(4), bytes(data), 0)
    if frozen:
        bmap.freeze()
    ours = bpf_check(VerifierInput(insns=prog(FD, size, off), prog_type=SOCKET_FILTER,
                                   map_by_fd={FD: bmap}.get))
    assert ours.errno == 0, ours.log
    with kernel.KernelFds() as fds:
        fd = fds.add(kernel.map_create(ARRAY, 4, 16, 1, flags))
        kernel.map_update(fd, bytes(4), bytes(data))
        if frozen:
            kernel.map_freeze(fd)
        res = fds.prog_load(SOCKET_FILTER, encode(prog(fd, size, off)))
        assert res.ok, res.log
        theirs = kernel.prog_xlated(res.fd)
    assert comparable(list(ours.insns), helper_imms=True) == comparable(theirs, helper_imms=True)
    assert (len(theirs) < 8) is bool(flags and frozen)
