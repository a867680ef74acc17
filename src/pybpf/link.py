"""``Link``: a BPF link as a Python object (``BPF_RAW_TRACEPOINT_OPEN``/``LINK_*`` commands).

Closing the link's last fd (and removing its pins) detaches the program, as in the kernel.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

from pybpf.errors import BpfError
from pybpf.fdobject import FdObject
from pybpf.uapi import BpfAttachType, BpfCmd, bpf_attr

if TYPE_CHECKING:
    from pybpf.program import Program


class Link(FdObject):
    """A link fd in a task."""

    GET_FD_BY_ID = BpfCmd.BPF_LINK_GET_FD_BY_ID
    ID_FIELD = "link_id"
    KIND = "link"

    @classmethod
    def raw_tracepoint(cls, prog: Program, name: str, cookie: int = 0) -> Link:
        buf = ctypes.create_string_buffer(name.encode())
        attr = bpf_attr()
        attr.raw_tracepoint.name = ctypes.addressof(buf)
        attr.raw_tracepoint.prog_fd = prog.fd
        attr.raw_tracepoint.cookie = cookie
        ret = prog.task.bpf(BpfCmd.BPF_RAW_TRACEPOINT_OPEN, attr)
        if ret < 0:
            raise BpfError(-ret, f"BPF_RAW_TRACEPOINT_OPEN {name}")
        return cls(prog.task, ret)

    @classmethod
    def tcx(cls, prog: Program, ifindex: int, *, ingress: bool = True) -> Link:
        """libbpf's ``bpf_program__attach_tcx``: a tcx link on device ``ifindex``."""
        at = BpfAttachType.BPF_TCX_INGRESS if ingress else BpfAttachType.BPF_TCX_EGRESS
        return cls.create(prog, int(at), ifindex)  # target_ifindex shares target_fd's slot

    @classmethod
    def xdp(cls, prog: Program, ifindex: int, flags: int = 0) -> Link:
        """libbpf's ``bpf_program__attach_xdp``: an XDP link on device ``ifindex``."""
        return cls.create(prog, int(BpfAttachType.BPF_XDP), ifindex, flags=flags)

    @classmethod
    def create(cls, prog: Program, attach_type: int, target_fd: int = 0, *, flags: int = 0,
               cookie: int = 0) -> Link:
        """``BPF_LINK_CREATE``: ``target_fd`` is the target fd or ifindex (one slot in
        ``bpf_attr``); ``cookie`` goes where the attach type keeps it (perf events and
        trampolines: what ``bpf_get_attach_cookie`` returns)."""
        attr = bpf_attr()
        lc = attr.link_create
        lc.prog_fd, lc.target_fd, lc.attach_type, lc.flags = prog.fd, target_fd, \
            attach_type, flags
        if attach_type == BpfAttachType.BPF_PERF_EVENT:
            lc.perf_event.bpf_cookie = cookie
        elif cookie:
            lc.tracing.cookie = cookie
        ret = prog.task.bpf(BpfCmd.BPF_LINK_CREATE, attr)
        if ret < 0:
            raise BpfError(-ret, f"BPF_LINK_CREATE (attach type {attach_type})")
        return cls(prog.task, ret)

    @classmethod
    def perf_event(cls, prog: Program, perf_fd: int, cookie: int = 0) -> Link:
        """``BPF_LINK_CREATE`` with ``BPF_PERF_EVENT`` on the perf event ``perf_fd``."""
        return cls.create(prog, int(BpfAttachType.BPF_PERF_EVENT), perf_fd, cookie=cookie)

    @classmethod
    def trace(cls, prog: Program, attach_type: int, cookie: int = 0) -> Link:
        """``BPF_LINK_CREATE`` of an fentry/fexit/fmod_ret program on its trampoline."""
        return cls.create(prog, attach_type, cookie=cookie)

    def update(self, new_prog: Program, old_prog: Program | None = None) -> None:
        attr = bpf_attr()
        attr.link_update.link_fd = self.fd
        attr.link_update.new_prog_fd = new_prog.fd
        if old_prog is not None:
            attr.link_update.flags = 1 << 2  # BPF_F_REPLACE
            attr.link_update.old_prog_fd = old_prog.fd
        ret = self.task.bpf(BpfCmd.BPF_LINK_UPDATE, attr)
        if ret < 0:
            raise BpfError(-ret, "BPF_LINK_UPDATE")

    def detach(self) -> None:
        attr = bpf_attr()
        attr.link_detach.link_fd = self.fd
        ret = self.task.bpf(BpfCmd.BPF_LINK_DETACH, attr)
        if ret < 0:
            raise BpfError(-ret, "BPF_LINK_DETACH")
