"""tcx attach semantics vs the live kernel: the same random sequence of PROG_ATTACH,
PROG_DETACH, LINK_CREATE, LINK_DETACH and fd closes (with BEFORE/AFTER/REPLACE/ID flags,
relative fds and ids, expected revisions) on a real veth and on a pybpf device gives the
same errno at every step and the same PROG_QUERY answer (programs, links, revision)."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_net import close_all, live_bpf, load_live, veth

from pybpf.isa.asm import assemble
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.uapi import (
    BPF_LINK_CREATE,
    BPF_LINK_DETACH,
    BPF_PROG_ATTACH,
    BPF_PROG_DETACH,
    BPF_PROG_QUERY,
    BPF_PROG_TYPE_SCHED_CLS,
    BPF_TCX_EGRESS,
    BPF_TCX_INGRESS,
    bpf_attr,
    bpf_attr_prog_attach,
    bpf_attr_query,
)

F_REPLACE, F_BEFORE, F_AFTER, F_ID, F_LINK = 1 << 2, 1 << 3, 1 << 4, 1 << 5, 1 << 13
NPROGS = 4


@dataclass
class Side:
    """One implementation: a bpf() entry point, a device, programs, open link fds."""

    bpf: Callable[[int, Any], int]  # -> ret or -errno
    ifindex: int
    prog_fds: list[int]
    prog_ids: list[int]
    close: Callable[[int], None]
    links: list[int | None] = field(default_factory=list)
    link_ids: list[int] = field(default_factory=list)

    def query(self, attach_type: int) -> tuple[int, int, list[int], list[int]]:
        ids = (ctypes.c_uint32 * 8)()
        lids = (ctypes.c_uint32 * 8)()
        q = bpf_attr_query(attach_type=attach_type, target_ifindex=self.ifindex,
                           prog_ids=ctypes.addressof(ids), link_ids=ctypes.addressof(lids),
                           count=8)
        ret = self.bpf(BPF_PROG_QUERY, q)
        if ret < 0:
            return ret, 0, [], []
        progs = [self.prog_ids.index(i) if i in self.prog_ids else -1 for i in ids[:q.count]]
        links = [self.link_ids.index(i) if i in self.link_ids else -1 for i in lids[:q.count]]
        return 0, q.revision, progs, links


def _fd_or_id(side: Side, rel: tuple[str, int] | None, flags: int) -> int:
    """The ``relative_fd``/``relative_id`` value for a drawn reference: an ID when the
    flags say BPF_F_ID (ids differ between the two sides, so they follow the flag), else
    an fd (a closed link's slot gives an fd number that is open on neither side)."""
    if rel is None:
        return 0
    kind, j = rel
    if kind == "prog":
        return side.prog_ids[j] if flags & F_ID else side.prog_fds[j]
    if flags & F_ID:
        return side.link_ids[j] if j < len(side.link_ids) else 0x7FFFFFF
    fd = side.links[j] if j < len(side.links) else None
    return fd if fd is not None else 0x7FFF


def _apply(side: Side, op: tuple[Any, ...]) -> int:
    kind = op[0]
    if kind in ("attach", "detach"):
        _, at, i, flags, rel, rev, repl = op
        a = bpf_attr_prog_attach(attach_type=at, attach_flags=flags,
                                 target_ifindex=side.ifindex,
                                 relative_fd=_fd_or_id(side, rel, flags),
                                 expected_revision=rev,
                                 attach_bpf_fd=side.prog_fds[i] if i is not None else 0,
                                 replace_bpf_fd=side.prog_fds[repl] if repl is not None else 0)
        ret = side.bpf(BPF_PROG_ATTACH if kind == "attach" else BPF_PROG_DETACH, a)
        return min(ret, 0)
    if kind == "link":
        _, at, i, flags, rel, rev = op
        attr = bpf_attr()
        lc = attr.link_create
        lc.prog_fd, lc.target_ifindex, lc.attach_type, lc.flags = \
            side.prog_fds[i], side.ifindex, at, flags
        lc.tcx.relative_fd = _fd_or_id(side, rel, flags)
        lc.tcx.expected_revision = rev
        ret = side.bpf(BPF_LINK_CREATE, attr)
        if ret >= 0:
            side.links.append(ret)
            info = _link_id(side, ret)
            side.link_ids.append(info)
            return 0
        return ret
    _, j = op  # link_detach / link_close
    fd = side.links[j] if j < len(side.links) else None
    if fd is None:
        return 0
    if kind == "link_close":
        side.close(fd)
        side.links[j] = None
        return 0
    attr = bpf_attr()
    attr.link_detach.link_fd = fd
    return min(side.bpf(BPF_LINK_DETACH, attr), 0)


def _link_id(side: Side, fd: int) -> int:
    from pybpf.uapi import BPF_OBJ_GET_INFO_BY_FD, bpf_link_info

    info = bpf_link_info()
    attr = bpf_attr()
    attr.info.bpf_fd, attr.info.info_len, attr.info.info = \
        fd, ctypes.sizeof(info), ctypes.addressof(info)
    assert side.bpf(BPF_OBJ_GET_INFO_BY_FD, attr) == 0
    return int(info.id)


_AT = st.sampled_from([BPF_TCX_INGRESS, BPF_TCX_EGRESS])
_prog = st.integers(0, NPROGS - 1)
_flags = st.sampled_from([0, F_BEFORE, F_AFTER, F_REPLACE, F_BEFORE | F_ID, F_AFTER | F_ID,
                          F_BEFORE | F_LINK, F_AFTER | F_LINK, F_BEFORE | F_AFTER, 1 << 1,
                          F_REPLACE | F_BEFORE])
_rel = st.one_of(st.none(), st.tuples(st.just("prog"), _prog),
                 st.tuples(st.just("link"), st.integers(0, 3)))
_rev = st.sampled_from([0, 0, 0, 1, 2, 3, 5])
_ops = st.lists(st.one_of(
    st.tuples(st.just("attach"), _AT, _prog, _flags, _rel, _rev, st.one_of(st.none(), _prog)),
    st.tuples(st.just("detach"), _AT, st.one_of(st.none(), _prog), _flags, _rel, _rev,
              st.none()),
    st.tuples(st.just("link"), _AT, _prog, _flags, _rel, _rev),
    st.tuples(st.sampled_from(["link_detach", "link_close"]), st.integers(0, 3)),
), min_size=1, max_size=12)

_PROG = "r0 = -1\nexit"


@contextlib.contextmanager
def _live_side(kernel: Any) -> Iterator[Side]:
    with veth("pbt") as (_name, _peer, ifindex):
        fds, ids = load_live(kernel, BPF_PROG_TYPE_SCHED_CLS, _PROG, NPROGS)
        side = Side(live_bpf(kernel), ifindex, fds, ids, os.close)
        try:
            yield side
        finally:
            close_all([*fds, *side.links])


def _pybpf_side() -> Side:
    k = Kernel()
    dev = k.netdev("veth0", peer="veth1")
    progs = [Program.load(k, BPF_PROG_TYPE_SCHED_CLS, assemble(_PROG, syntax="kernel"))
             for _ in range(NPROGS)]
    task = progs[0].task
    return Side(k.bpf, dev.ifindex, [p.fd for p in progs], [p.id for p in progs],
                lambda fd: task.close(fd))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_tcx_sequences_match_the_kernel(kernel: Any, ops: list[tuple[Any, ...]]) -> None:
    with _live_side(kernel) as live:
        mine = _pybpf_side()
        for step, op in enumerate(ops):
            want, got = _apply(live, op), _apply(mine, op)
            assert got == want, (step, op)
            for at in (BPF_TCX_INGRESS, BPF_TCX_EGRESS):
                assert mine.query(at) == live.query(at), (step, op, at)
