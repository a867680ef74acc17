"""Inlined lookups of ``BPF_F_MMAPABLE`` arrays (``array_map_gen_lookup``).

The kernel's mmap-able ``bpf_array`` ends on the page below its page-aligned values, so
``r1 += 312`` from the map pointer reaches them; pybpf maps its header into an anonymous
page right below the memfd pages the values live in. The rewritten program must equal
the kernel's, run on both tiers, and share its values with a user-space ``mmap``.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.helpers.maps import MAP_HELPERS
from pybpf.isa.insn import Insn, encode, ld_imm64
from pybpf.jit import compile_program
from pybpf.maps.api import create_map
from pybpf.maps.type_array import ARRAY_VALUE_OFF
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.testing.xlated import comparable, verified_with_map

SOCKET_FILTER, ARRAY = 1, 2
BPF_F_MMAPABLE = 1 << 10
EXIT = Insn(0x95, 0, 0, 0, 0)
HELPERS = {fid: proto.impl for fid, proto in MAP_HELPERS.items()}
FD = 100


def prog_bump(fd: int, key: int) -> list[Insn]:
    """``v = lookup(map, &key); if (!v) return -1; return ++*(u32 *)v`` (key at fp-4)."""
    return [Insn(0x62, 10, 0, -4, key), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
            *ld_imm64(1, fd, 1), Insn(0x85, 0, 0, 0, 1), Insn(0x15, 0, 0, 5, 0),
            Insn(0x61, 1, 0, 0, 0), Insn(0x07, 1, 0, 0, 1), Insn(0x63, 0, 1, 0, 0),
            Insn(0xBC, 0, 1, 0, 0), EXIT, Insn(0xB7, 0, 0, 0, -1), EXIT]


def xlated_(bmap: object, insns: list[Insn]) -> list[Insn]:
    return verified_with_map(bmap, insns, SOCKET_FILTER, FD)


@pytest.mark.parametrize("value_size,max_entries,key", [(4, 5, 2), (12, 3, 1), (8, 1, 0),
                                                        (4, 600, 599), (4, 4, 4)])
def test_mmapable_lookup_equals_kernel(kernel: ModuleType, value_size: int,
                                       max_entries: int, key: int) -> None:
    with kernel.KernelFds() as fds:
        fd = fds.add(kernel.map_create(ARRAY, 4, value_size, max_entries, BPF_F_MMAPABLE))
        res = fds.prog_load(SOCKET_FILTER, encode(prog_bump(fd, key)))
        assert res.ok, res.log
        theirs = kernel.prog_xlated(res.fd)
        retval = kernel.prog_test_run(res.fd, bytes(64)).retval
    m = create_map(ARRAY, 4, value_size, max_entries, BPF_F_MMAPABLE)
    assert m.values_follow_header  # type: ignore[attr-defined]
    ours = xlated_(m, prog_bump(FD, key))
    assert comparable(ours, helper_imms=True) == comparable(theirs, helper_imms=True)
    assert not any(i.code == 0x85 for i in ours)
    assert CompiledProgram(ours, helpers=HELPERS).run() & 0xFFFFFFFF == retval


@pytest.mark.parametrize("tier", ["interp", "jit"])
def test_program_and_mmap_share_the_values(tier: str) -> None:
    m = create_map(ARRAY, 4, 4, 8, BPF_F_MMAPABLE)
    assert m.values.start == m.addr + ARRAY_VALUE_OFF  # type: ignore[attr-defined]
    insns = xlated_(m, prog_bump(FD, 3))
    prog = (CompiledProgram(insns, helpers=HELPERS) if tier == "interp"
            else compile_program(insns, helpers=HELPERS))
    view = m.mmap()  # type: ignore[attr-defined]
    try:
        view[24:28] = (40).to_bytes(4, "little")
        assert prog.run() == 41
        assert prog.run() == 42
        assert int.from_bytes(view[24:28], "little") == 42
        assert m.ops.sys_lookup(m, (3).to_bytes(4, "little"), 0) == (42).to_bytes(4, "little")
    finally:
        view.close()
