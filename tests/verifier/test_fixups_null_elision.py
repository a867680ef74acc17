"""6.18's NULL-check elision for array lookups with a constant key (``verifier/map_key.py``).

A ``bpf_map_lookup_elem`` on an ARRAY / PERCPU_ARRAY whose key is a known constant below
``max_entries`` returns ``map_value``: a program may use it unchecked, and a NULL check
after it is dead code the xlated program no longer has. Verdict, first error message
and xlated program are compared with the live kernel, and the kept program runs on both
tiers.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.helpers.maps import MAP_HELPERS
from pybpf.isa.insn import Insn, encode, ld_imm64
from pybpf.jit import compile_program
from pybpf.maps.api import create_map
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.testing.xlated import comparable
from pybpf.verifier.api import VerifierInput, bpf_check

SOCKET_FILTER, HASH, ARRAY, PERCPU_ARRAY = 1, 1, 2, 6
EXIT = Insn(0x95, 0, 0, 0, 0)
FD = 100
HELPERS = {fid: proto.impl for fid, proto in MAP_HELPERS.items()}


def key_store(how: str, key: int) -> list[Insn]:
    """Put the key at ``r10 - 8`` (or ``- 4``) and point r2 at it."""
    if how == "st_aligned":  # a 32-bit ST at an 8-aligned slot: a spilled constant
        return [Insn(0x62, 10, 0, -8, key), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -8)]
    if how == "reg_spill":  # a 32-bit STX of a known register
        return [Insn(0xB7, 1, 0, 0, key), Insn(0x63, 10, 1, -8, 0), Insn(0xBF, 2, 10, 0, 0),
                Insn(0x07, 2, 0, 0, -8)]
    if how == "unaligned":  # at fp-4: STACK_MISC (or ZERO for 0), not a spill
        return [Insn(0x62, 10, 0, -4, key), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4)]
    raise ValueError(how)


def checked(fd: int, how: str, key: int) -> list[Insn]:
    """``v = lookup(map, &key); if (!v) return 7; return *(u32 *)v``."""
    return [*key_store(how, key), *ld_imm64(1, fd, 1), Insn(0x85, 0, 0, 0, 1),
            Insn(0x55, 0, 0, 2, 0), Insn(0xB7, 0, 0, 0, 7), EXIT,
            Insn(0x61, 0, 0, 0, 0), EXIT]


def unchecked(fd: int, how: str, key: int) -> list[Insn]:
    """``return *(u32 *)lookup(map, &key)``: valid only if the lookup cannot fail."""
    return [*key_store(how, key), *ld_imm64(1, fd, 1), Insn(0x85, 0, 0, 0, 1),
            Insn(0x61, 0, 0, 0, 0), EXIT]


def first_error(log: str) -> str:
    lines = [ln for ln in log.splitlines() if ln and not ln[0].isdigit()
             and not ln.startswith(("processed", "mark_precise", "func#", "Live", " "))]
    return lines[-1] if lines else ""


CASES = [(t, how, key) for t in (ARRAY, PERCPU_ARRAY, HASH)
         for how in ("st_aligned", "reg_spill", "unaligned") for key in (0, 3, 4)]


@pytest.mark.parametrize("map_type,how,key", CASES)
def test_verdict_and_xlated_equal_kernel(kernel: ModuleType, map_type: int, how: str,
                                         key: int) -> None:
    bmap = create_map(map_type, 4, 8, 4)
    for build in (checked, unchecked):
        ours = bpf_check(VerifierInput(insns=build(FD, how, key), prog_type=SOCKET_FILTER,
                                       map_by_fd={FD: bmap}.get, log_level=1))
        with kernel.KernelFds() as fds:
            fd = fds.add(kernel.map_create(map_type, 4, 8, 4))
            res = fds.prog_load(SOCKET_FILTER, encode(build(fd, how, key)), log_level=1,
                                log_size=1 << 16)
            assert (ours.errno == 0) == res.ok, (build.__name__, ours.log, res.log)
            if res.ok:
                assert comparable(list(ours.insns)) == comparable(kernel.prog_xlated(res.fd))
            else:
                assert first_error(ours.log) == first_error(res.log)


def test_elided_check_is_gone_and_the_program_runs() -> None:
    bmap = create_map(ARRAY, 4, 8, 4)
    bmap.ops.sys_update(bmap, (3).to_bytes(4, "little"), (42).to_bytes(8, "little"), 0)
    res = bpf_check(VerifierInput(insns=checked(FD, "st_aligned", 3), prog_type=SOCKET_FILTER,
                                  map_by_fd={FD: bmap}.get))
    assert res.errno == 0
    insns = list(res.insns)
    assert not any(i.code == 0x55 for i in insns)  # the NULL check went with its dead branch
    for prog in (CompiledProgram(insns, helpers=HELPERS), compile_program(insns, helpers=HELPERS)):
        assert prog.run() == 42
