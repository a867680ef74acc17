"""XDP links vs the live kernel: the same random sequence of LINK_CREATE (mode flags),
LINK_UPDATE (with and without BPF_F_REPLACE), LINK_DETACH and fd closes on a real veth and
on a pybpf device gives the same errno at every step, the same link info (program,
ifindex) for every open link, and the same program attached to the device."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
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
    BPF_LINK_UPDATE,
    BPF_OBJ_GET_INFO_BY_FD,
    BPF_PROG_TYPE_XDP,
    BPF_XDP,
    bpf_attr,
    bpf_link_info,
)

NPROGS = 3
XDP_FLAGS_UPDATE_IF_NOEXIST, XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE, XDP_FLAGS_HW_MODE = 1, 2, 4, 8
XDP_FLAGS_REPLACE = 16
BPF_F_REPLACE = 1 << 2
_PROG = "r0 = 2\nexit"


@dataclass
class Side:
    bpf: Callable[[int, Any], int]  # -> ret or -errno
    ifindex: int
    prog_fds: list[int]
    prog_ids: list[int]
    close: Callable[[int], None]
    attached: Callable[[], dict[str, int]]  # mode -> prog id
    links: list[int | None] = field(default_factory=list)

    def prog_index(self, prog_id: int) -> int:
        return self.prog_ids.index(prog_id) if prog_id in self.prog_ids else -1

    def snapshot(self) -> tuple[Any, ...]:
        infos = []
        for fd in self.links:
            if fd is None:
                infos.append(None)
                continue
            info = bpf_link_info()
            attr = bpf_attr()
            attr.info.bpf_fd, attr.info.info_len, attr.info.info = \
                fd, ctypes.sizeof(info), ctypes.addressof(info)
            assert self.bpf(BPF_OBJ_GET_INFO_BY_FD, attr) == 0
            infos.append((self.prog_index(info.prog_id), info.xdp.ifindex == self.ifindex,
                          info.xdp.ifindex == 0))
        attached = {m: self.prog_index(i) for m, i in self.attached().items()}
        return tuple(infos), attached


def _apply(side: Side, op: tuple[Any, ...]) -> int:
    kind = op[0]
    if kind == "create":
        _, i, flags = op
        attr = bpf_attr()
        lc = attr.link_create
        lc.prog_fd, lc.target_ifindex, lc.attach_type, lc.flags = \
            side.prog_fds[i], side.ifindex, BPF_XDP, flags
        ret = side.bpf(BPF_LINK_CREATE, attr)
        if ret >= 0:
            side.links.append(ret)
            return 0
        return ret
    j = op[1]
    fd = side.links[j] if j < len(side.links) else None
    if fd is None:
        return 0
    if kind == "update":
        _, _, i, old, flags = op
        attr = bpf_attr()
        lu = attr.link_update
        lu.link_fd, lu.new_prog_fd, lu.flags = fd, side.prog_fds[i], flags
        lu.old_prog_fd = side.prog_fds[old] if old is not None else 0
        return min(side.bpf(BPF_LINK_UPDATE, attr), 0)
    if kind == "detach":
        attr = bpf_attr()
        attr.link_detach.link_fd = fd
        return min(side.bpf(BPF_LINK_DETACH, attr), 0)
    side.close(fd)
    side.links[j] = None
    return 0


_modes = st.sampled_from([0, XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE, XDP_FLAGS_HW_MODE,
                          XDP_FLAGS_SKB_MODE | XDP_FLAGS_DRV_MODE, XDP_FLAGS_UPDATE_IF_NOEXIST,
                          XDP_FLAGS_REPLACE, 1 << 5])
_prog = st.integers(0, NPROGS - 1)
_link = st.integers(0, 3)
_ops = st.lists(st.one_of(
    st.tuples(st.just("create"), _prog, _modes),
    st.tuples(st.just("update"), _link, _prog, st.one_of(st.none(), _prog),
              st.sampled_from([0, BPF_F_REPLACE, 1])),
    st.tuples(st.sampled_from(["detach", "close"]), _link),
), min_size=1, max_size=8)


def _ip_attached(name: str) -> dict[str, int]:
    out = subprocess.run(["ip", "-j", "-d", "link", "show", "dev", name], capture_output=True,
                         text=True, check=True).stdout
    xdp = json.loads(out)[0].get("xdp") or {}
    progs: dict[str, int] = {}
    for att in xdp.get("attached", []) or []:
        mode = {1: "drv", 2: "skb", 3: "hw"}.get(att.get("mode"), str(att.get("mode")))
        progs[mode] = att["prog"]["id"]
    if not progs and "prog" in xdp:
        progs[{1: "drv", 2: "skb", 3: "hw"}.get(xdp.get("mode"), "?")] = xdp["prog"]["id"]
    return progs


@contextlib.contextmanager
def _live_side(kernel: Any) -> Iterator[Side]:
    with veth("pbx") as (name, _peer, ifindex):
        fds, ids = load_live(kernel, BPF_PROG_TYPE_XDP, _PROG, NPROGS)
        side = Side(live_bpf(kernel), ifindex, fds, ids, os.close, lambda: _ip_attached(name))
        try:
            yield side
        finally:
            close_all([*fds, *side.links])


def _pybpf_side() -> Side:
    k = Kernel()
    dev = k.netdev("veth0", peer="veth1")
    progs = [Program.load(k, BPF_PROG_TYPE_XDP, assemble(_PROG, syntax="kernel"))
             for _ in range(NPROGS)]
    task = progs[0].task

    def attached() -> dict[str, int]:
        return dev.xdp_attached()

    return Side(k.bpf, dev.ifindex, [p.fd for p in progs], [p.id for p in progs],
                lambda fd: task.close(fd), attached)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_xdp_link_sequences_match_the_kernel(kernel: Any, ops: list[tuple[Any, ...]]) -> None:
    with _live_side(kernel) as live:
        mine = _pybpf_side()
        for step, op in enumerate(ops):
            want, got = _apply(live, op), _apply(mine, op)
            assert got == want, (step, op)
            assert mine.snapshot() == live.snapshot(), (step, op)
