"""``FdObject``: what every fd-level object of the Python API shares.

A program, a link (and later a BTF object) is an fd in a task of a kernel instance; they
are found by ID (``BPF_*_GET_FD_BY_ID``) or by pin (``BPF_OBJ_GET``), report their info
(``BPF_OBJ_GET_INFO_BY_FD``), can be pinned, and release their fd on ``close()`` or at the
end of a ``with`` block. Subclasses name their ``GET_FD_BY_ID`` command and ID field.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pybpf.errors import BpfError
from pybpf.uapi import bpf_attr

if TYPE_CHECKING:
    from pybpf.kernel import Kernel, Task

T = TypeVar("T", bound="FdObject")


class FdObject:
    """An object fd in a task; subclasses set ``GET_FD_BY_ID``/``ID_FIELD``/``KIND``."""

    GET_FD_BY_ID: ClassVar[int]
    ID_FIELD: ClassVar[str]  # the bpf_attr field holding the id ("prog_id", "link_id")
    KIND: ClassVar[str]  # for messages: "program", "link"

    def __init__(self, task: Task, fd: int) -> None:
        self.task = task
        self.fd = fd

    @classmethod
    def from_id(cls: type[T], kernel: Kernel, obj_id: int, task: Task | None = None) -> T:
        """``BPF_*_GET_FD_BY_ID``: a new fd for the object with this ID."""
        task = task or kernel.root
        attr = bpf_attr()
        setattr(attr, cls.ID_FIELD, obj_id)
        ret = task.bpf(cls.GET_FD_BY_ID, attr)
        if ret < 0:
            raise BpfError(-ret, f"no {cls.KIND} with id {obj_id}")
        return cls(task, ret)

    @classmethod
    def pinned(cls: type[T], kernel: Kernel, path: str, task: Task | None = None) -> T:
        """``BPF_OBJ_GET``: a new fd for the object pinned at ``path`` in the bpffs."""
        from pybpf.syscall.info import obj_get

        task = task or kernel.root
        return cls(task, obj_get(task, path))

    def info(self) -> Any:
        """``BPF_OBJ_GET_INFO_BY_FD``: the info struct (ctypes, from :mod:`pybpf.uapi`)."""
        from pybpf.syscall.info import get_info

        return get_info(self.task, self.fd)

    @property
    def id(self) -> int:
        return int(self.info().id)

    def pin(self, path: str) -> None:
        """``BPF_OBJ_PIN`` at ``path`` in the instance's bpffs."""
        from pybpf.syscall.info import obj_pin

        obj_pin(self.task, self.fd, path)

    def close(self) -> None:
        """Close the fd (the object lives on while pins or other references hold it)."""
        if self.fd >= 0:
            if self.task.close(self.fd) < 0:
                raise BpfError(errno.EBADF, f"fd {self.fd} was not open")
            self.fd = -1

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fd={self.fd})"
