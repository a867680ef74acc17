"""``Link``: a BPF link as a Python object (``BPF_RAW_TRACEPOINT_OPEN``/``LINK_*`` commands).

Closing the link's last fd (and removing its pins) detaches the program, as in the kernel.
"""

from __future__ import annotations

import ctypes
import errno
from typing import TYPE_CHECKING, Any

from pybpf.errors import BpfError
from pybpf.uapi import BpfCmd, bpf_attr

if TYPE_CHECKING:
    from pybpf.kernel import Kernel, Task
    from pybpf.program import Program


class Link:
    """A link fd in a task."""

    def __init__(self, task: Task, fd: int) -> None:
        self.task = task
        self.fd = fd

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
    def from_id(cls, kernel: Kernel, link_id: int, task: Task | None = None) -> Link:
        task = task or kernel.root
        attr = bpf_attr()
        attr.link_id = link_id
        ret = task.bpf(BpfCmd.BPF_LINK_GET_FD_BY_ID, attr)
        if ret < 0:
            raise BpfError(-ret, f"no link with id {link_id}")
        return cls(task, ret)

    @classmethod
    def pinned(cls, kernel: Kernel, path: str, task: Task | None = None) -> Link:
        from pybpf.syscall.info import obj_get

        task = task or kernel.root
        return cls(task, obj_get(task, path))

    def info(self) -> Any:
        from pybpf.syscall.info import get_info

        return get_info(self.task, self.fd)

    @property
    def id(self) -> int:
        return int(self.info().id)

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

    def pin(self, path: str) -> None:
        from pybpf.syscall.info import obj_pin

        obj_pin(self.task, self.fd, path)

    def close(self) -> None:
        if self.fd >= 0:
            if self.task.close(self.fd) < 0:
                raise BpfError(errno.EBADF, f"fd {self.fd}")
            self.fd = -1

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Link(fd={self.fd})"
