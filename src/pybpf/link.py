"""``Link``: a BPF link as a Python object (``BPF_RAW_TRACEPOINT_OPEN``/``LINK_*`` commands).

Closing the link's last fd (and removing its pins) detaches the program, as in the kernel.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

from pybpf.errors import BpfError
from pybpf.fdobject import FdObject
from pybpf.uapi import BpfCmd, bpf_attr

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
