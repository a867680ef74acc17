"""Host perf events as file descriptors (``perf_event_open`` for pybpf's hooks).

In Linux a KPROBE, TRACEPOINT or PERF_EVENT program reaches its event through a perf
event fd: user space opens the event (``perf_event_open``) and links the program to it
with ``BPF_LINK_CREATE`` (attach type ``BPF_PERF_EVENT``, ``target_fd`` = the event).
pybpf's events are the host hooks — a declared tracepoint
(:mod:`pybpf.hooks.tracepoint`), a kprobe or kretprobe on a Python function
(:mod:`pybpf.hooks.kprobe`), a software cpu-clock timer (:mod:`pybpf.hooks.perf_timer`)
— and :func:`perf_event_open` gives any of them an fd in a task's fd table. A PERF_EVENT
program on a cpu-clock event runs, as in the kernel, on a ``bpf_perf_event_data_kern``
pointing at the sample's ``pt_regs`` and ``perf_sample_data``
(:class:`pybpf.hooks.perf_timer.PerfSample`; ``event_of(k, fd).hook.tick(addr=, regs=)``).

``bpf_perf_link_attach`` rules, as the live kernel answers them (tests/hooks/
test_perf_event_link.py compares): ``flags`` non-zero → EINVAL; ``target_fd`` not open or
not a perf event → EBADF; a program of the wrong type for the event (KPROBE only on
kprobes, TRACEPOINT only on tracepoints, PERF_EVENT only on software/hardware events) →
EINVAL; a second PERF_EVENT program on the same event → EEXIST (tracing events take
several programs, but not the same one twice: EEXIST). The link is a
``BPF_LINK_TYPE_PERF_EVENT`` link; ``bpf_link_info.perf_event`` describes the event.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pybpf.core.link import BpfLink
from pybpf.errors import BpfError
from pybpf.uapi import BpfAttachType, BpfLinkType, BpfPerfEventType, BpfProgType

P = BpfProgType
KIND_PERF_EVENT = "perf_event"
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_COUNT_SW_CPU_CLOCK = 0
#: 6.18 runs cpu-clock on a PMU of its own, registered with a dynamic type (the first one,
#: PERF_TYPE_MAX = 6): a cpu-clock event opened as SOFTWARE reports ``attr.type`` 6
#: afterwards (``bpf_link_info.perf_event.event.type``, checked against the live kernel).
PERF_TYPE_CPU_CLOCK_PMU = 6


@dataclass
class PerfEvent:
    """One opened event: its kind (a ``BPF_PERF_EVENT_*`` value), the hook it fires from,
    and what ``bpf_link_info`` reports about it."""

    kind: int
    hook: Any
    name: str = ""
    config: int = 0
    perf_type: int = 0
    addr: int = 0
    links: list[BpfLink] | None = None

    def __post_init__(self) -> None:
        self.links = []

    @property
    def is_tracing(self) -> bool:
        return self.kind != BpfPerfEventType.BPF_PERF_EVENT_EVENT

    def accepts(self, prog_type: int) -> bool:
        """``perf_event_set_bpf_prog``'s program-type check."""
        if self.kind == BpfPerfEventType.BPF_PERF_EVENT_EVENT:
            return prog_type == P.BPF_PROG_TYPE_PERF_EVENT
        if self.kind in (BpfPerfEventType.BPF_PERF_EVENT_KPROBE,
                         BpfPerfEventType.BPF_PERF_EVENT_KRETPROBE):
            return prog_type == P.BPF_PROG_TYPE_KPROBE
        return prog_type == P.BPF_PROG_TYPE_TRACEPOINT


def perf_event_open(kernel: Any, *, tracepoint: tuple[str, str] | None = None,
                    kprobe: Any = None, retprobe: bool = False, freq: int | None = None,
                    cpus: tuple[int, ...] = (0,), timer: Any = None, task: Any = None) -> int:
    """Open a host event and return its fd in ``task`` (default: the root task).

    Exactly one of: ``tracepoint=(category, name)`` (a declared host tracepoint),
    ``kprobe=`` a :class:`~pybpf.hooks.kprobe.Kprobe` (``retprobe=True`` for its return),
    ``freq=`` samples per second of a new software cpu-clock event on ``cpus``, or
    ``timer=`` an existing :class:`~pybpf.hooks.perf_timer.PerfTimer` (its owner drives it).
    """
    from pybpf.syscall.fdtable import File

    chosen = [x is not None for x in (tracepoint, kprobe, freq, timer)]
    if sum(chosen) != 1:
        raise BpfError(errno.EINVAL, "give exactly one of tracepoint=, kprobe=, freq=, timer=")
    event: PerfEvent
    if tracepoint is not None:
        tp = kernel.host_tracepoints.get(*tracepoint)
        if tp is None:
            raise BpfError(errno.ENOENT, f"no host tracepoint {tracepoint[0]}:{tracepoint[1]}")
        event = PerfEvent(BpfPerfEventType.BPF_PERF_EVENT_TRACEPOINT, tp, tp.name,
                          perf_type=PERF_TYPE_TRACEPOINT, config=tp.id)
    elif kprobe is not None:
        from pybpf.hooks.kprobe import Kprobe, _Side

        if not isinstance(kprobe, Kprobe):
            raise BpfError(errno.EINVAL, "kprobe= takes a probed function (kernel.kprobe(f))")
        kind = BpfPerfEventType.BPF_PERF_EVENT_KRETPROBE if retprobe \
            else BpfPerfEventType.BPF_PERF_EVENT_KPROBE
        event = PerfEvent(kind, _Side(kprobe, retprobe), kprobe.name, addr=kprobe.ip)
    else:
        from pybpf.hooks.perf_timer import PerfTimer

        if timer is None:
            assert freq is not None
            timer = PerfTimer(kernel, freq, cpus=cpus)
        elif not isinstance(timer, PerfTimer):
            raise BpfError(errno.EINVAL, "timer= takes a kernel.perf_timer(...)")
        event = PerfEvent(BpfPerfEventType.BPF_PERF_EVENT_EVENT, timer,
                          perf_type=PERF_TYPE_CPU_CLOCK_PMU, config=PERF_COUNT_SW_CPU_CLOCK)
    task = task or kernel.root

    def release(_f: File) -> None:
        stop = getattr(event.hook, "stop", None)
        if callable(stop):
            stop()

    return int(task.fds.install(File(KIND_PERF_EVENT, event, release=release,
                                     name="[perf_event]")))


def perf_event_get(task: Any, fd: int) -> Any:
    """``perf_event_get``: the perf event's file (EBADF unless ``fd`` is one)."""
    file = task.fds.get(fd)
    if file is None or file.kind != KIND_PERF_EVENT or not isinstance(file.obj, PerfEvent):
        raise BpfError(errno.EBADF, f"fd {fd} is not a perf event")
    return file


class PerfLinkOps:
    """``bpf_perf_link_lops``: release takes the program off the event; no update."""

    def release(self, link: BpfLink) -> None:
        event: PerfEvent | None = link.extra.pop("event", None)
        if event is None:
            return
        if event.links is not None and link in event.links:
            event.links.remove(link)
        event.hook.unregister(link)
        perf_file = link.extra.pop("perf_file", None)
        if perf_file is not None:
            perf_file.put()  # the link held the event open

    def fill_link_info(self, link: BpfLink, info: Any, task: Any) -> None:
        from pybpf.syscall.link_cmds import bpf_copy_to_user

        event: PerfEvent | None = link.extra.get("event") or link.extra.get("event_info")
        if event is None:
            return
        pe = info.perf_event
        pe.type = event.kind
        cookie = link.extra.get("cookie", 0)
        u = pe._anon0
        if event.kind == BpfPerfEventType.BPF_PERF_EVENT_EVENT:
            u.event.config, u.event.type, u.event.cookie = event.config, event.perf_type, cookie
            return
        if event.kind == BpfPerfEventType.BPF_PERF_EVENT_TRACEPOINT:
            sub: Any = u.tracepoint
            ubuf, ulen = sub.tp_name, sub.name_len
        else:
            sub = u.kprobe
            ubuf, ulen = sub.func_name, sub.name_len
            sub.offset, sub.addr, sub.missed = 0, 0, 0
        if bool(ubuf) != bool(ulen):
            raise BpfError(errno.EINVAL, "name buffer and name_len go together")
        name = event.name.encode()
        sub.name_len = len(name) + 1
        sub.cookie = cookie
        if ubuf:
            bpf_copy_to_user(ubuf, name, ulen)


PERF_LINK_OPS = PerfLinkOps()


def perf_link_attach(kernel: Any, task: Any, prog: Any, target_fd: int, flags: int,
                     cookie: int, settle: Callable[[BpfLink, Callable[[], None]], int]) -> int:
    """``bpf_perf_link_attach``; ``settle`` is the syscall layer's prime/attach/settle."""
    if flags:
        raise BpfError(errno.EINVAL, "flags must be 0")
    perf_file = perf_event_get(task, target_fd)
    event: PerfEvent = perf_file.obj
    link = BpfLink(kernel, BpfLinkType.BPF_LINK_TYPE_PERF_EVENT, PERF_LINK_OPS, prog,
                   BpfAttachType.BPF_PERF_EVENT)
    link.extra["cookie"] = cookie
    link.extra["func_ip"] = event.addr

    def attach() -> None:
        if not event.accepts(prog.type):
            raise BpfError(errno.EINVAL, "program type does not fit the perf event")
        assert event.links is not None
        if any(lk.prog is prog for lk in event.links) or (
                not event.is_tracing and event.links):
            raise BpfError(errno.EEXIST, "perf event already has this program")
        event.links.append(link)
        link.extra["event"] = event
        link.extra["event_info"] = event
        link.extra["perf_file"] = perf_file.get()
        event.hook.register(link)

    return settle(link, attach)


def event_of(kernel: Any, fd: int, task: Any = None) -> PerfEvent:
    """The :class:`PerfEvent` behind ``fd`` (for hosts: ``.hook.tick()``/``.fire()``)."""
    return perf_event_get(task or kernel.root, fd).obj


def perf_event_query(file: Any) -> tuple[int, int, str, int, int] | None:
    """``bpf_get_perf_event_info`` for ``BPF_TASK_FD_QUERY`` on a perf event fd:
    ``(prog_id, fd_type, name, probe_offset, probe_addr)``; None when ``file`` is not a
    perf event. ENOENT without a program, EOPNOTSUPP for a PERF_EVENT program."""
    from pybpf.uapi import BpfTaskFdType

    if getattr(file, "kind", None) != KIND_PERF_EVENT or not isinstance(file.obj, PerfEvent):
        return None
    event: PerfEvent = file.obj
    prog = next((lk.prog for lk in event.links or () if lk.prog is not None), None)
    if prog is None:
        raise BpfError(errno.ENOENT, "no program on this perf event")
    if prog.type == P.BPF_PROG_TYPE_PERF_EVENT:
        raise BpfError(errno.EOPNOTSUPP, "perf_event programs are not reported")
    fd_types: dict[int, int] = {
        BpfPerfEventType.BPF_PERF_EVENT_KPROBE: BpfTaskFdType.BPF_FD_TYPE_KPROBE,
        BpfPerfEventType.BPF_PERF_EVENT_KRETPROBE: BpfTaskFdType.BPF_FD_TYPE_KRETPROBE}
    fd_type = fd_types.get(event.kind, BpfTaskFdType.BPF_FD_TYPE_TRACEPOINT)
    return int(prog.id), int(fd_type), event.name, 0, 0
