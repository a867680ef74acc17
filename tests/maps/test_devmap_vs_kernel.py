"""DEVMAP / DEVMAP_HASH, differential against the live kernel (kernel/bpf/devmap.c).

Creation rules (sizes, flags, errnos, the ``BPF_F_RDONLY_PROG`` the kernel adds), element
operations with devices (ifindex 1 is the loopback on both sides; 0 and a missing ifindex
are refused) and programs (only XDP programs with expected attach type
``BPF_XDP_DEVMAP`` may be stored), iteration order, and ``bpf_redirect_map``'s verdicts in
an XDP program's test run.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redirect_maps_oracle import Side, make_sides

import pybpf.uapi as U
from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.program import Program

DEVMAP, DEVMAP_HASH = U.BPF_MAP_TYPE_DEVMAP, U.BPF_MAP_TYPE_DEVMAP_HASH
XDP, SOCKET_FILTER = 6, 1
BPF_XDP_DEVMAP = 33
LO = 1
MISSING_IFINDEX = 987654


@pytest.fixture
def sides(kernel: ModuleType) -> Iterator[tuple[Side, Side]]:
    yield from make_sides(kernel)


CREATE_CASES = [
    (DEVMAP, 4, 4, 4, 0), (DEVMAP, 4, 8, 4, 0), (DEVMAP_HASH, 4, 4, 4, 0),
    (DEVMAP_HASH, 4, 8, 3, 0), (DEVMAP, 4, 4, 0, 0), (DEVMAP, 8, 4, 4, 0), (DEVMAP, 4, 0, 4, 0),
    (DEVMAP, 4, 12, 4, 0), (DEVMAP, 4, 6, 4, 0), (DEVMAP, 2, 4, 4, 0),
    (DEVMAP, 4, 4, 4, U.BPF_F_RDONLY), (DEVMAP, 4, 4, 4, U.BPF_F_WRONLY),
    (DEVMAP, 4, 4, 4, U.BPF_F_RDONLY_PROG), (DEVMAP, 4, 4, 4, U.BPF_F_NO_PREALLOC),
    (DEVMAP_HASH, 4, 4, 4, U.BPF_F_ZERO_SEED), (DEVMAP, 4, 4, 4, U.BPF_F_RDONLY | U.BPF_F_WRONLY),
    (DEVMAP_HASH, 4, 4, 1, 0), (DEVMAP_HASH, 4, 4, 1000, 0), (DEVMAP, 4, 4, 100000, 0),
    (DEVMAP_HASH, 4, 4, (1 << 31) + 1, 0), (DEVMAP_HASH, 4, 4, 0, 0), (DEVMAP, 4, 4, 4, 1 << 30),
]


@pytest.mark.parametrize("case", CREATE_CASES)
def test_create_rules(sides: Any, case: tuple[int, ...]) -> None:
    live, mine = sides
    kfd, kerr = live.create(*case)
    pfd, perr = mine.create(*case)
    assert perr == kerr, case
    if kfd >= 0:
        ki, pi = live.info(kfd), mine.info(pfd)
        for f in ("type", "key_size", "value_size", "max_entries", "map_flags"):
            assert getattr(pi, f) == getattr(ki, f), (case, f)


def _progs(side: Side) -> None:
    side.load("devprog", XDP, BPF_XDP_DEVMAP, "r0 = 2\nexit\n")
    side.load("xdp", XDP, 0, "r0 = 2\nexit\n")
    side.load("filter", SOCKET_FILTER, 0, "r0 = 0\nexit\n")


PROGS = ["none", "devprog", "xdp", "filter", "bad_fd", "minus1"]
OPS = st.lists(st.one_of(
    st.tuples(st.just("update"), st.integers(0, 6),
              st.sampled_from([LO, LO, 0, MISSING_IFINDEX]), st.sampled_from(PROGS),
              st.sampled_from([0, 0, 1, 2, 3])),
    st.tuples(st.just("lookup"), st.integers(0, 6)),
    st.tuples(st.just("delete"), st.integers(0, 6)),
    st.tuples(st.just("walk")),
), min_size=1, max_size=14)
ELEM = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _value(side: Side, ifindex: int, prog: str, vs: int) -> bytes:
    fd = {"none": 0, "bad_fd": 9999, "minus1": -1}.get(prog)
    if fd is None:
        fd = side.progs[prog]
    return struct.pack("<Ii", ifindex, fd)[:vs]


def _walk(side: Side, fd: int) -> list[int]:
    keys, key = [], None
    for _ in range(20):
        err, nxt = side.elem(U.BpfCmd.BPF_MAP_GET_NEXT_KEY, fd, key, out=4)
        if err:
            keys.append(-err)
            break
        keys.append(struct.unpack("<I", nxt)[0])
        key = nxt
    return keys


def _run(side: Side, fd: int, vs: int, op: tuple[Any, ...], ids: dict[int, str]) -> Any:
    C = U.BpfCmd
    key = struct.pack("<I", op[1]) if len(op) > 1 else None
    if op[0] == "update":
        return side.elem(C.BPF_MAP_UPDATE_ELEM, fd, key, _value(side, op[2], op[3], vs),
                         flags=op[4])[0]
    if op[0] == "lookup":
        err, raw = side.elem(C.BPF_MAP_LOOKUP_ELEM, fd, key, out=vs)
        if err or vs == 4:
            return err, raw
        ifindex, pid = struct.unpack("<II", raw)
        return err, ifindex, ids.get(pid, pid)  # program ids differ between the worlds
    if op[0] == "delete":
        return side.elem(C.BPF_MAP_DELETE_ELEM, fd, key)[0]
    return _walk(side, fd)


@pytest.mark.parametrize("geo", [(DEVMAP, 4, 8, 5), (DEVMAP, 4, 4, 4),
                                 (DEVMAP_HASH, 4, 8, 3), (DEVMAP_HASH, 4, 4, 8)])
def test_element_ops_agree(sides: Any, geo: tuple[int, int, int, int]) -> None:
    live, mine = sides
    _progs(live)
    _progs(mine)
    ids = {s: {s.prog_id(fd): name for name, fd in s.progs.items()} for s in (live, mine)}
    compared = 0

    @given(OPS)
    @ELEM
    def agree(ops: list[tuple[Any, ...]]) -> None:
        nonlocal compared
        kfd, kerr = live.create(*geo)
        pfd, perr = mine.create(*geo)
        assert kerr == perr == 0
        for op in ops:
            theirs = _run(live, kfd, geo[2], op, ids[live])
            ours = _run(mine, pfd, geo[2], op, ids[mine])
            assert ours == theirs, op
            compared += 1
        assert _walk(mine, pfd) == _walk(live, kfd)

    agree()
    assert compared > 0


REDIRECT = """
r2 = {key}
r3 = {flags}
r1 = {{map}} ll
call 51
exit
"""


@pytest.mark.parametrize("mt", [DEVMAP, DEVMAP_HASH])
@pytest.mark.parametrize("key,flags", [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4),
                                       (0, 8), (2, 8), (0, 16), (0, 24), (2, 0x20),
                                       (0xFFFFFFFF, 2)])
def test_redirect_map_verdicts(kernel: ModuleType, sides: Any, mt: int, key: int,
                               flags: int) -> None:
    """``__bpf_xdp_redirect_map``: XDP_REDIRECT on a hit, the low flag bits on a miss,
    XDP_ABORTED for unknown flags; broadcast redirects even without an entry."""
    live, mine = sides
    results = []
    for side in (live, mine):
        fd, err = side.create(mt, 4, 4, 4)
        assert err == 0
        for k in (0, 1):
            assert side.elem(U.BpfCmd.BPF_MAP_UPDATE_ELEM, fd, struct.pack("<I", k),
                             struct.pack("<I", LO))[0] == 0
        text = REDIRECT.format(key=key if key < 1 << 31 else key - (1 << 32), flags=flags)
        insns = assemble(text.replace("{map}", "0"))
        insns = [i._replace(src=1, imm=fd) if i.code == 0x18 else i for i in insns]
        raw = encode(insns)
        if side.oracle is not None:
            res = side.oracle.prog_load(XDP, raw)
            assert res.ok, res.log
            pfd = res.fd
            side.fds.append(pfd)
            out = side.oracle.prog_test_run(pfd, bytes(64))
            results.append((out.errno, out.retval))
        else:
            prog = Program.load(side.pk, XDP, raw)
            r = prog.test_run(bytes(64))
            results.append((0, r.retval))
    assert results[1] == results[0]
