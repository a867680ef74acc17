"""Perf event fds for host hooks and ``BPF_LINK_CREATE`` with ``BPF_PERF_EVENT``.

The errnos of the syscall path are compared with the live kernel, whose software
cpu-clock event (``perf_event_open``) plays the part of pybpf's timer event."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from pybpf.errors import BpfError
from pybpf.hooks.perf_event import event_of
from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.uapi import BpfCmd, BpfLinkType, BpfPerfEventType, bpf_attr, bpf_link_info

KPROBE, TRACEPOINT, PERF_EVENT, RAW_TP = 2, 5, 7, 17
BPF_PERF_EVENT = 41
NR_PERF_EVENT_OPEN = 298  # x86-64


def _load(k: Kernel, ptype: int, text: str = "r0 = 0\nexit") -> Program:
    return Program.load(k, ptype, assemble(text, syntax="kernel"))


def _link_create(bpf: object, prog_fd: int, target_fd: int, attach_type: int = BPF_PERF_EVENT,
                 flags: int = 0, cookie: int = 0) -> bpf_attr:
    attr = bpf_attr()
    lc = attr.link_create
    lc.prog_fd, lc.target_fd, lc.attach_type, lc.flags = prog_fd, target_fd, attach_type, flags
    lc.perf_event.bpf_cookie = cookie
    return attr


def _pybpf_errno(k: Kernel, *args: int, **kw: int) -> tuple[int, int]:
    ret = k.bpf(BpfCmd.BPF_LINK_CREATE, _link_create(k, *args, **kw))
    return (ret, 0) if ret >= 0 else (-1, -ret)


def _link_info(bpf: object, fd: int, sys: bool = False) -> bpf_link_info:
    info = bpf_link_info()
    attr = bpf_attr()
    attr.info.bpf_fd, attr.info.info_len = fd, ctypes.sizeof(info)
    attr.info.info = ctypes.addressof(info)
    if sys:
        _, err = bpf.sys_bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, attr)  # type: ignore[attr-defined]
    else:
        err = -bpf.bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, attr)  # type: ignore[attr-defined]
    assert err == 0
    return info


@pytest.fixture
def sw_event() -> Iterator[int]:
    """A real software cpu-clock perf event on this thread."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = bytearray(128)
    struct.pack_into("<IIQQ", attr, 0, 1, 128, 0, 1_000_000)  # SOFTWARE, CPU_CLOCK, period
    buf = (ctypes.c_char * 128).from_buffer(attr)
    fd = libc.syscall(NR_PERF_EVENT_OPEN, buf, 0, -1, -1, 0)
    if fd < 0:
        pytest.skip(f"perf_event_open failed: {os.strerror(ctypes.get_errno())}")
    yield fd
    os.close(fd)


def test_link_create_errnos_vs_kernel(kernel: ModuleType, sw_event: int) -> None:
    k = Kernel()
    pfd = k.perf_event_open(freq=1000)
    kmap = kernel.map_create(2, 4, 4, 1)
    pmap = k.map_create(2, 4, 4, 1).fd
    kfds: list[int] = [kmap]
    try:
        for ptype in (KPROBE, TRACEPOINT, PERF_EVENT):
            kprog = kernel.prog_load(ptype, encode(assemble("r0 = 0\nexit", syntax="kernel")))
            assert kprog.errno == 0
            kfds.append(kprog.fd)
            pprog = _load(k, ptype)
            cases = {
                "attach_type 0": ((sw_event, 0), (pfd, 0)),
                "flags": ((sw_event, BPF_PERF_EVENT, 1), (pfd, BPF_PERF_EVENT, 1)),
                "map fd": ((kmap,), (pmap,)),
                "closed fd": ((999,), (999,)),
                "event": ((sw_event,), (pfd,)),
            }
            for name, (kargs, pargs) in cases.items():
                kret, kerr = kernel.sys_bpf(BpfCmd.BPF_LINK_CREATE,
                                            _link_create(kernel, kprog.fd, *kargs))
                if kret >= 0:
                    kfds.append(kret)
                _pret, perr = _pybpf_errno(k, pprog.fd, *pargs)
                assert perr == kerr, (ptype, name)
        # a second PERF_EVENT program on the same event: EEXIST in both
        kprog2 = kernel.prog_load(PERF_EVENT, encode(assemble("r0 = 1\nexit", syntax="kernel")))
        kfds.append(kprog2.fd)
        _, kerr = kernel.sys_bpf(BpfCmd.BPF_LINK_CREATE, _link_create(kernel, kprog2.fd,
                                                                      sw_event))
        _, perr = _pybpf_errno(k, _load(k, PERF_EVENT, "r0 = 1\nexit").fd, pfd)
        assert perr == kerr == errno.EEXIST
    finally:
        for fd in kfds:
            os.close(fd)


def test_perf_link_info_detach_update_vs_kernel(kernel: ModuleType, sw_event: int) -> None:
    kprog = kernel.prog_load(PERF_EVENT, encode(assemble("r0 = 0\nexit", syntax="kernel")))
    klink, err = kernel.sys_bpf(BpfCmd.BPF_LINK_CREATE,
                                _link_create(kernel, kprog.fd, sw_event, cookie=77))
    assert err == 0
    k = Kernel()
    pprog = _load(k, PERF_EVENT)
    plink = pprog.attach_perf_event(k.perf_event_open(freq=1000), cookie=77)
    try:
        ki = _link_info(kernel, klink, sys=True)
        pi = _link_info(k, plink.fd)
        for info in (ki, pi):
            assert info.type == BpfLinkType.BPF_LINK_TYPE_PERF_EVENT
        assert pi.perf_event.type == ki.perf_event.type == BpfPerfEventType.BPF_PERF_EVENT_EVENT
        kev, pev = ki.perf_event._anon0.event, pi.perf_event._anon0.event
        assert (pev.config, pev.type, pev.cookie) == (kev.config, kev.type, kev.cookie)
        # LINK_DETACH and LINK_UPDATE
        for cmd, fill in ((BpfCmd.BPF_LINK_DETACH, "link_detach"),
                          (BpfCmd.BPF_LINK_UPDATE, "link_update")):
            ka, pa = bpf_attr(), bpf_attr()
            getattr(ka, fill).link_fd, getattr(pa, fill).link_fd = klink, plink.fd
            if fill == "link_update":
                ka.link_update.new_prog_fd, pa.link_update.new_prog_fd = kprog.fd, pprog.fd
            _, kerr = kernel.sys_bpf(cmd, ka)
            assert -k.bpf(cmd, pa) == kerr, fill
    finally:
        os.close(klink)
        os.close(kprog.fd)
        plink.close()


def test_timer_event_runs_with_cookie() -> None:
    k = Kernel()
    timer = k.perf_timer(freq=100)
    prog = _load(k, PERF_EVENT, "call 174\nexit")  # bpf_get_attach_cookie
    link = prog.attach_perf_event(timer=timer, cookie=0xABC)
    assert timer.tick(2) == [0xABC, 0xABC]
    link.close()
    assert timer.tick(1) == []


def test_tracepoint_event_and_program_type_rules() -> None:
    k = Kernel()
    tp = k.tracepoint("myapp", "req", fields=[("u32", "status")])
    prog = _load(k, TRACEPOINT, "r0 = *(u32 *)(r1 + 8)\nexit")
    link = prog.attach_tracepoint("myapp", "req")
    assert tp.fire(status=404) == [404]
    info = _link_info(k, link.fd)
    assert info.perf_event.type == BpfPerfEventType.BPF_PERF_EVENT_TRACEPOINT
    name = ctypes.create_string_buffer(16)
    info2 = bpf_link_info()
    info2.perf_event._anon0.tracepoint.tp_name = ctypes.addressof(name)
    info2.perf_event._anon0.tracepoint.name_len = 16
    attr = bpf_attr()
    attr.info.bpf_fd, attr.info.info_len = link.fd, ctypes.sizeof(info2)
    attr.info.info = ctypes.addressof(info2)
    assert k.bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, attr) == 0
    assert name.value == b"req" and info2.perf_event._anon0.tracepoint.name_len == 4
    # a second event on the tracepoint takes several programs, the same one once (EEXIST);
    # other program types: EINVAL
    fd = k.perf_event_open(tracepoint=("myapp", "req"))
    for ptype in (KPROBE, PERF_EVENT):
        assert _pybpf_errno(k, _load(k, ptype).fd, fd)[1] == errno.EINVAL
    second = _load(k, TRACEPOINT, "r0 = 9\nexit").attach_perf_event(fd)
    third = prog.attach_perf_event(fd)
    assert _pybpf_errno(k, prog.fd, fd)[1] == errno.EEXIST
    assert tp.fire(status=1) == [1, 9, 1]
    link.close()
    second.close()
    third.close()
    assert tp.fire(status=1) == []
    with pytest.raises(BpfError) as exc:
        k.perf_event_open(tracepoint=("myapp", "nope"))
    assert exc.value.errno == errno.ENOENT


def test_kprobe_event_func_ip_and_retprobe() -> None:
    k = Kernel()

    @k.kprobe
    def handler(x: int) -> int:
        return x * 3

    entry = _load(k, KPROBE, "call 173\nexit")  # bpf_get_func_ip
    ret = _load(k, KPROBE, "r0 = *(u64 *)(r1 + 80)\nexit")  # regs->ax
    seen: list[int] = []
    for p in (entry, ret):
        orig = p.obj.run
        p.obj.run = (lambda o: lambda *a, **kw: seen.append(o(*a, **kw)) or seen[-1])(orig)  # type: ignore[method-assign]
    l1 = entry.attach_kprobe(handler)
    l2 = ret.attach_kprobe(handler, retprobe=True)
    assert handler(5) == 15
    assert seen == [handler.ip, 15]
    info = _link_info(k, l2.fd)
    assert info.perf_event.type == BpfPerfEventType.BPF_PERF_EVENT_KRETPROBE
    fd = k.perf_event_open(kprobe=handler)
    assert _pybpf_errno(k, _load(k, TRACEPOINT).fd, fd)[1] == errno.EINVAL
    l1.close()
    l2.close()
    handler(1)
    assert len(seen) == 2


def test_perf_event_open_bad_arguments() -> None:
    k = Kernel()
    for kw in ({}, {"freq": 10, "kprobe": object()}, {"kprobe": object()},
               {"timer": object()}):
        with pytest.raises(BpfError) as exc:
            k.perf_event_open(**kw)  # type: ignore[arg-type]
        assert exc.value.errno == errno.EINVAL
    fd = k.perf_event_open(freq=10)
    assert event_of(k, fd).kind == BpfPerfEventType.BPF_PERF_EVENT_EVENT
    assert k.close(fd) == 0
    with pytest.raises(BpfError):
        event_of(k, fd)


def _fd_query(call: Any, pid: int, fd: int, buflen: int = 64) -> tuple[int, int, bytes, int]:
    """TASK_FD_QUERY: (errno, fd_type, name, prog_id)."""
    buf = ctypes.create_string_buffer(buflen)
    attr = bpf_attr()
    q = attr.task_fd_query
    q.pid, q.fd, q.buf, q.buf_len = pid, fd, ctypes.addressof(buf), buflen
    err = call(attr)
    return err, q.fd_type, buf.value, q.prog_id


def test_task_fd_query_on_perf_events_vs_kernel(kernel: ModuleType, sw_event: int) -> None:
    def live(attr: bpf_attr) -> int:
        return int(kernel.sys_bpf(BpfCmd.BPF_TASK_FD_QUERY, attr)[1])

    k = Kernel()

    def mine(attr: bpf_attr) -> int:
        return -k.bpf(BpfCmd.BPF_TASK_FD_QUERY, attr)

    kprog = kernel.prog_load(PERF_EVENT, encode(assemble("r0 = 0\nexit", syntax="kernel")))
    kraw = kernel.prog_load(RAW_TP, encode(assemble("r0 = 0\nexit", syntax="kernel")))
    name = ctypes.create_string_buffer(b"sys_enter")
    attr = bpf_attr()
    attr.raw_tracepoint.prog_fd, attr.raw_tracepoint.name = kraw.fd, ctypes.addressof(name)
    kraw_link, err = kernel.sys_bpf(BpfCmd.BPF_RAW_TRACEPOINT_OPEN, attr)
    assert err == 0
    empty_fd = os.dup(sw_event)  # same event, no program yet
    kernel_fds = [kprog.fd, kraw.fd, kraw_link]
    try:
        pid = os.getpid()
        want_empty = _fd_query(live, pid, empty_fd)[0]
        klink, err = kernel.sys_bpf(BpfCmd.BPF_LINK_CREATE,
                                    _link_create(kernel, kprog.fd, sw_event))
        assert err == 0
        kernel_fds.append(klink)
        want = {"raw tp link": _fd_query(live, pid, kraw_link)[:3],
                "raw tp short": _fd_query(live, pid, kraw_link, 4)[:3],
                "perf fd with link": _fd_query(live, pid, sw_event)[:3],
                "perf link fd": _fd_query(live, pid, klink)[:3]}

        pfd_empty = k.perf_event_open(freq=1000)
        got_empty = _fd_query(mine, k.root.pid, pfd_empty)[0]
        pfd = k.perf_event_open(freq=1000)
        plink = _load(k, PERF_EVENT).attach_perf_event(pfd)
        praw_link = _load(k, RAW_TP).attach_raw_tracepoint("sys_enter")
        got = {"raw tp link": _fd_query(mine, k.root.pid, praw_link.fd)[:3],
               "raw tp short": _fd_query(mine, k.root.pid, praw_link.fd, 4)[:3],
               "perf fd with link": _fd_query(mine, k.root.pid, pfd)[:3],
               "perf link fd": _fd_query(mine, k.root.pid, plink.fd)[:3]}
        assert got_empty == want_empty == errno.ENOENT
        assert got == want
        assert want["raw tp link"] == (0, 0, b"sys_enter")
    finally:
        os.close(empty_fd)
        for fd in kernel_fds:
            os.close(fd)


def test_task_fd_query_on_host_tracepoint_and_kprobe_events() -> None:
    k = Kernel()
    k.tracepoint("app", "req", fields=[("u32", "status")])

    @k.kprobe(name="handler")
    def handler(x: int) -> int:
        return x

    def mine(attr: bpf_attr) -> int:
        return -k.bpf(BpfCmd.BPF_TASK_FD_QUERY, attr)

    tp_fd = k.perf_event_open(tracepoint=("app", "req"))
    tprog = _load(k, TRACEPOINT)
    tprog.attach_perf_event(tp_fd)
    kp_fd = k.perf_event_open(kprobe=handler, retprobe=True)
    kprog = _load(k, KPROBE)
    kprog.attach_perf_event(kp_fd)
    assert _fd_query(mine, k.root.pid, tp_fd) == (0, 1, b"req", tprog.id)
    assert _fd_query(mine, k.root.pid, kp_fd)[:3] == (0, 3, b"handler")
