"""Flow dissector and SK_LOOKUP attachments to a network namespace vs the live kernel.

The same random sequence of PROG_ATTACH/PROG_DETACH (flow dissector), LINK_CREATE on a
namespace fd (both types; bad fds and flags too), LINK_UPDATE, LINK_DETACH and closes
runs in the live kernel — in a child process inside a fresh network namespace, so the
host's own namespace is never touched — and on a pybpf instance. Every step's errno and
the PROG_QUERY answer of both types after it must be equal.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_net import live_bpf, load_live

from pybpf.isa.asm import assemble
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.uapi import (
    BPF_FLOW_DISSECTOR,
    BPF_LINK_CREATE,
    BPF_LINK_DETACH,
    BPF_LINK_UPDATE,
    BPF_PROG_ATTACH,
    BPF_PROG_DETACH,
    BPF_PROG_QUERY,
    BPF_PROG_TYPE_FLOW_DISSECTOR,
    BPF_PROG_TYPE_SK_LOOKUP,
    BPF_SK_LOOKUP,
    bpf_attr,
    bpf_attr_prog_attach,
    bpf_attr_query,
)

CLONE_NEWNET = 0x40000000
PROGS = [(BPF_PROG_TYPE_FLOW_DISSECTOR, "r0 = 0\nexit"), (BPF_PROG_TYPE_FLOW_DISSECTOR, "r0 = 2\nexit"),
         (BPF_PROG_TYPE_SK_LOOKUP, "r0 = 1\nexit"), (BPF_PROG_TYPE_SK_LOOKUP, "r0 = 0\nexit")]
ATTACH_TYPE = {BPF_PROG_TYPE_FLOW_DISSECTOR: BPF_FLOW_DISSECTOR,
               BPF_PROG_TYPE_SK_LOOKUP: BPF_SK_LOOKUP}


def _eat(ptype: int) -> int:
    """SK_LOOKUP programs must be loaded for BPF_SK_LOOKUP."""
    return BPF_SK_LOOKUP if ptype == BPF_PROG_TYPE_SK_LOOKUP else 0


@dataclass
class Side:
    bpf: Callable[[int, Any], int]  # -> ret or -errno
    ns_fd: int
    prog_fds: list[int]
    prog_ids: list[int]
    close: Callable[[int], None]
    links: list[int | None] = field(default_factory=list)

    def target(self, kind: str) -> int:
        return {"ns": self.ns_fd, "zero": 0, "prog": self.prog_fds[0], "bad": 0x7FFF}[kind]

    def query(self, attach_type: int) -> list[Any]:
        ids = (ctypes.c_uint32 * 4)()
        q = bpf_attr_query(attach_type=attach_type, target_fd=self.ns_fd,
                           prog_ids=ctypes.addressof(ids), prog_cnt=4)
        ret = self.bpf(BPF_PROG_QUERY, q)
        return [min(ret, 0), q.prog_cnt,
                [self.prog_ids.index(i) if i in self.prog_ids else -1
                 for i in ids[:min(q.prog_cnt, 4)]]]


def apply(side: Side, op: list[Any]) -> int:
    kind = op[0]
    if kind in ("attach", "detach"):
        _, at, i, target, flags = op
        a = bpf_attr_prog_attach(attach_type=at, attach_bpf_fd=side.prog_fds[i],
                                 target_fd=side.target(target), attach_flags=flags)
        return min(side.bpf(BPF_PROG_ATTACH if kind == "attach" else BPF_PROG_DETACH, a), 0)
    if kind == "link":
        _, at, i, target, flags = op
        attr = bpf_attr()
        lc = attr.link_create
        lc.prog_fd, lc.target_fd, lc.attach_type, lc.flags = \
            side.prog_fds[i], side.target(target), at, flags
        ret = side.bpf(BPF_LINK_CREATE, attr)
        if ret >= 0:
            side.links.append(ret)
            return 0
        return ret
    _, j = op[0], op[1]
    fd = side.links[j] if j < len(side.links) else None
    if fd is None:
        return 0
    if kind == "update":
        _, _, i, old = op
        attr = bpf_attr()
        lu = attr.link_update
        lu.link_fd, lu.new_prog_fd = fd, side.prog_fds[i]
        if old is not None:
            lu.flags, lu.old_prog_fd = 1 << 2, side.prog_fds[old]
        return min(side.bpf(BPF_LINK_UPDATE, attr), 0)
    if kind == "link_detach":
        attr = bpf_attr()
        attr.link_detach.link_fd = fd
        return min(side.bpf(BPF_LINK_DETACH, attr), 0)
    side.close(fd)
    side.links[j] = None
    return 0


def run_sequence(side: Side, ops: list[list[Any]]) -> list[Any]:
    out = []
    for op in ops:
        out.append([apply(side, op), side.query(BPF_FLOW_DISSECTOR),
                    side.query(BPF_SK_LOOKUP)])
    return out


def _live(kernel: Any, ops: list[list[Any]]) -> list[Any]:
    """Run the sequence in a child process in a new network namespace."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            ns_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
            fds, ids = [], []
            for ptype, text in PROGS:
                fd, pid = load_live(kernel, ptype, text, 1, _eat(ptype))
                fds += fd
                ids += pid

            result: Any = run_sequence(Side(live_bpf(kernel), ns_fd, fds, ids, os.close), ops)
        except BaseException as e:
            result = {"error": repr(e)}
        os.write(wfd, json.dumps(result).encode())
        os._exit(0)
    os.close(wfd)
    chunks = []
    while chunk := os.read(rfd, 65536):
        chunks.append(chunk)
    os.close(rfd)
    os.waitpid(pid, 0)
    data = json.loads(b"".join(chunks) or b'{"error": "child died"}')
    if isinstance(data, dict):
        if "unshare" in data["error"]:
            pytest.skip(f"cannot create a network namespace here: {data['error']}")
        raise AssertionError(data["error"])
    return data


def _mine(ops: list[list[Any]]) -> list[Any]:
    k = Kernel()
    progs = [Program.load(k, ptype, assemble(text, syntax="kernel"),
                          expected_attach_type=_eat(ptype)) for ptype, text in PROGS]
    task = progs[0].task
    side = Side(k.bpf, k.netns_fd(task), [p.fd for p in progs], [p.id for p in progs],
                lambda fd: task.close(fd))
    return json.loads(json.dumps(run_sequence(side, ops)))


_at = st.sampled_from([BPF_FLOW_DISSECTOR, BPF_SK_LOOKUP])
_prog = st.integers(0, len(PROGS) - 1)
_target = st.sampled_from(["ns", "ns", "ns", "zero", "prog", "bad"])
_flags = st.sampled_from([0, 0, 0, 1])
_ops = st.lists(st.one_of(
    st.tuples(st.sampled_from(["attach", "detach"]), _at, _prog, st.sampled_from(["zero", "zero", "ns"]),
              _flags),
    st.tuples(st.just("link"), _at, _prog, _target, _flags),
    st.tuples(st.just("update"), st.integers(0, 3), _prog, st.one_of(st.none(), _prog)),
    st.tuples(st.sampled_from(["link_detach", "close"]), st.integers(0, 3)),
).map(list), min_size=1, max_size=10)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_netns_attach_sequences_match_the_kernel(kernel: Any, ops: list[list[Any]]) -> None:
    want = _live(kernel, ops)
    got = _mine(ops)
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, (step, ops[step])


def test_sk_lookup_links_run_on_host_lookups() -> None:
    """A namespace SK_LOOKUP link takes part in the host's socket lookups, in link order,
    and leaves with its link."""
    k = Kernel()
    drop = Program.load(k, BPF_PROG_TYPE_SK_LOOKUP, assemble("r0 = 0\nexit", syntax="kernel"),
                        expected_attach_type=BPF_SK_LOOKUP)
    attr = bpf_attr()
    lc = attr.link_create
    lc.prog_fd, lc.target_fd, lc.attach_type = drop.fd, k.netns_fd(drop.task), BPF_SK_LOOKUP
    link_fd = k.bpf(BPF_LINK_CREATE, attr)
    assert link_fd >= 0
    assert k.sockets.sk_lookup_progs == [drop.obj]
    drop.task.close(link_fd)
    assert k.sockets.sk_lookup_progs == []
