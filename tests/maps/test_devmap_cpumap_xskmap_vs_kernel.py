"""CPUMAP and XSKMAP (the other XDP redirect maps), differential against the live kernel.

Creation rules (sizes, flags, the NR_CPUS limit), element operations (qsize limits,
impossible CPUs, programs that are not ``BPF_XDP_CPUMAP``, fds that are no AF_XDP
socket), lookups, deletes, iteration, and ``bpf_redirect_map``'s verdicts on them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from redirect_maps_oracle import Side, make_sides

import pybpf.uapi as U
from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.program import Program

CPUMAP, XSKMAP = U.BPF_MAP_TYPE_CPUMAP, U.BPF_MAP_TYPE_XSKMAP
XDP, BPF_XDP_CPUMAP = 6, 35
C = U.BpfCmd

CREATE = [
    (CPUMAP, 4, 4, 2, 0), (CPUMAP, 4, 8, 4, 0), (CPUMAP, 4, 12, 4, 0), (CPUMAP, 4, 0, 4, 0),
    (CPUMAP, 8, 4, 4, 0), (CPUMAP, 4, 4, 0, 0), (CPUMAP, 4, 4, 256, 0), (CPUMAP, 4, 4, 257, 0),
    (CPUMAP, 4, 4, 4, U.BPF_F_RDONLY), (CPUMAP, 4, 4, 4, U.BPF_F_NUMA_NODE),
    (CPUMAP, 4, 4, 4, U.BPF_F_RDONLY_PROG),
    (XSKMAP, 4, 4, 4, 0), (XSKMAP, 4, 8, 4, 0), (XSKMAP, 8, 4, 4, 0), (XSKMAP, 4, 4, 0, 0),
    (XSKMAP, 4, 4, 4, U.BPF_F_RDONLY), (XSKMAP, 4, 4, 4, U.BPF_F_WRONLY),
    (XSKMAP, 4, 4, 4, U.BPF_F_RDONLY_PROG), (XSKMAP, 4, 4, 4, U.BPF_F_NO_PREALLOC),
    (XSKMAP, 4, 4, 100000, 0),
]


@pytest.fixture
def sides(kernel: ModuleType) -> Iterator[tuple[Side, Side]]:
    yield from make_sides(kernel)


@pytest.mark.parametrize("case", CREATE)
def test_create_rules(sides: Any, case: tuple[int, ...]) -> None:
    live, mine = sides
    kfd, kerr = live.create(*case)
    pfd, perr = mine.create(*case)
    assert perr == kerr, case
    if kfd >= 0:
        ki, pi = live.info(kfd), mine.info(pfd)
        for f in ("type", "key_size", "value_size", "max_entries", "map_flags"):
            assert getattr(pi, f) == getattr(ki, f), (case, f)


def _ops(side: Side, fd: int, vs: int, progs: dict[str, int], ops: list[tuple[Any, ...]]
         ) -> list[Any]:
    out: list[Any] = []
    for op in ops:
        key = struct.pack("<I", op[1])
        if op[0] == "update":
            fdv = progs.get(op[3], op[3]) if isinstance(op[3], str) else op[3]
            value = struct.pack("<Ii", op[2], fdv)[:vs]
            out.append(side.elem(C.BPF_MAP_UPDATE_ELEM, fd, key, value, flags=op[4])[0])
        elif op[0] == "lookup":
            err, raw = side.elem(C.BPF_MAP_LOOKUP_ELEM, fd, key, out=vs)
            out.append((err, raw[:4]))  # program ids differ between the worlds
        elif op[0] == "delete":
            out.append(side.elem(C.BPF_MAP_DELETE_ELEM, fd, key)[0])
        else:
            out.append(side.elem(C.BPF_MAP_GET_NEXT_KEY, fd, key, out=4))
    return out


CPU_OPS = [
    ("update", 0, 16, 0, 0), ("lookup", 0), ("update", 1, 0, 0, 0), ("lookup", 1),
    ("update", 1, 64, 0, 2), ("lookup", 1), ("update", 0, 16, 0, 1), ("update", 0, 16, 0, 4),
    ("update", 3, 16, 0, 0), ("update", 9, 16, 0, 0), ("update", 0, 16385, 0, 0),
    ("update", 0, 16384, 0, 0), ("update", 0, 8, 9999, 0), ("update", 0, 8, "cpuprog", 0),
    ("update", 1, 8, "plain", 0), ("update", 1, 8, "map", 0), ("update", 1, 8, -1, 0),
    ("lookup", 0), ("lookup", 1), ("lookup", 3), ("delete", 0), ("delete", 3), ("delete", 4),
    ("lookup", 0), ("next", 0), ("next", 3), ("next", 77), ("update", 0, 0, 0, 0),
]


@pytest.mark.parametrize("vs", [4, 8])
def test_cpumap_elements(sides: Any, vs: int) -> None:
    live, mine = sides
    results = []
    for side in (live, mine):
        fd, err = side.create(CPUMAP, 4, vs, 4)
        assert err == 0
        side.load("cpuprog", XDP, BPF_XDP_CPUMAP, "r0 = 2\nexit\n")
        side.load("plain", XDP, 0, "r0 = 2\nexit\n")
        progs = dict(side.progs)
        progs["map"] = fd
        results.append(_ops(side, fd, vs, progs, CPU_OPS))
    assert results[1] == results[0]


def test_xskmap_elements(sides: Any) -> None:
    """No fd is an AF_XDP socket: EBADF when not open, ENOTSOCK for a map fd."""
    live, mine = sides
    results = []
    for side in (live, mine):
        fd, err = side.create(XSKMAP, 4, 4, 4)
        assert err == 0
        out: list[Any] = []
        for key, sock, flags in ((0, 9999, 0), (0, fd, 0), (9, fd, 0), (0, fd, 5), (0, -1, 0)):
            out.append(side.elem(C.BPF_MAP_UPDATE_ELEM, fd, struct.pack("<I", key),
                                 struct.pack("<i", sock), flags=flags)[0])
        out += _ops(side, fd, 4, {}, [("lookup", 0), ("lookup", 9), ("delete", 0),
                                      ("delete", 3), ("delete", 4), ("next", 3), ("next", 2),
                                      ("next", 9)])
        results.append(out)
    assert results[1] == results[0]


@pytest.mark.parametrize("mt", [CPUMAP, XSKMAP])
@pytest.mark.parametrize("key,flags", [(0, 0), (0, 2), (1, 3), (3, 1), (0, 8), (0, 16),
                                       (0, 4)])
def test_redirect_verdicts(kernel: ModuleType, sides: Any, mt: int, key: int,
                           flags: int) -> None:
    live, mine = sides
    results = []
    for side in (live, mine):
        fd, err = side.create(mt, 4, 4, 4)
        assert err == 0
        if mt == CPUMAP:
            assert side.elem(C.BPF_MAP_UPDATE_ELEM, fd, struct.pack("<I", 0),
                             struct.pack("<I", 16))[0] == 0
        insns = assemble(f"r2 = {key}\nr3 = {flags}\nr1 = 0 ll\ncall 51\nexit\n")
        raw = encode([i._replace(src=1, imm=fd) if i.code == 0x18 else i for i in insns])
        if side.oracle is not None:
            res = side.oracle.prog_load(XDP, raw)
            assert res.ok, res.log
            side.fds.append(res.fd)
            results.append(side.oracle.prog_test_run(res.fd, bytes(64)).retval)
        else:
            results.append(Program.load(side.pk, XDP, raw).test_run(bytes(64)).retval)
    assert results[1] == results[0]
