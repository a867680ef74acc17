"""Files and fd tables: what an fd returned by ``bpf()`` refers to.

In the kernel every BPF object reaches userspace as an anonymous-inode file whose
``f_op`` says what it is (``bpf_map_fops``, ``bpf_prog_fops``, ``btf_fops``,
``bpf_link_fops``…) and whose ``f_mode`` carries the access the fd grants
(``BPF_F_RDONLY`` / ``BPF_F_WRONLY`` map fds). :class:`File` is that: a kind, the object
(``private_data``), the mode, and a release callback run when the last fd referring to
it closes. A :class:`FdTable` hands out the lowest free fd, starting at 3 because 0-2
belong to stdio (which are non-BPF files here too, so using them as a map fd gives
``EINVAL`` exactly as in the kernel).
"""

from __future__ import annotations

import errno
import resource
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pybpf.errors import BpfError

FMODE_READ = 0x1
FMODE_WRITE = 0x2

O_RDONLY = 0
O_WRONLY = 1
O_RDWR = 2

# File kinds, named after the anon-inode names the kernel gives them.
KIND_MAP = "bpf-map"
KIND_PROG = "bpf-prog"
KIND_LINK = "bpf_link"
KIND_BTF = "btf"
KIND_STATS = "bpf-stats"
KIND_ITER = "bpf_iter"
KIND_OTHER = "other"


def open_fmode(f_flags: int) -> int:
    """``OPEN_FMODE``: ``O_RDONLY``/``O_WRONLY``/``O_RDWR`` to read/write mode bits."""
    acc = f_flags & 3
    return {O_RDONLY: FMODE_READ, O_WRONLY: FMODE_WRITE}.get(acc, FMODE_READ | FMODE_WRITE)


@dataclass(eq=False)
class File:
    """One open file description (``struct file``)."""

    kind: str
    obj: Any = None
    f_mode: int = FMODE_READ | FMODE_WRITE
    release: Callable[[File], None] | None = None
    name: str = ""
    count: int = 1  # fds (in any task) referring to this file
    cred: Any = None  # credentials of the opener (``file->f_cred``)
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self) -> File:
        self.count += 1
        return self

    def put(self) -> None:
        self.count -= 1
        if self.count == 0 and self.release is not None:
            release, self.release = self.release, None
            release(self)


def _nofile_limit() -> int:
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return soft if soft > 0 else 1024
    except (OSError, ValueError):
        return 1024


class FdTable:
    """A task's fds: lowest free number first, like ``get_unused_fd_flags``."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit if limit is not None else _nofile_limit()
        self._files: dict[int, File] = {}
        self._lock = threading.Lock()
        for fd in (0, 1, 2):
            self._files[fd] = File(KIND_OTHER, name=("stdin", "stdout", "stderr")[fd])

    def install(self, file: File) -> int:
        """Give ``file`` the lowest free fd (``EMFILE`` when the table is full)."""
        with self._lock:
            fd = 0
            while fd in self._files:
                fd += 1
            if fd >= self.limit:
                raise BpfError(errno.EMFILE, "too many open files")
            self._files[fd] = file
            return fd

    def get(self, fd: int) -> File | None:
        """The file behind ``fd`` (``fdget``), or ``None`` for a closed/invalid fd."""
        if fd < 0:
            return None
        return self._files.get(fd)

    def close(self, fd: int) -> None:
        """``close(fd)``: ``EBADF`` if it is not open; releases the file on its last fd."""
        with self._lock:
            file = self._files.pop(fd, None)
        if file is None:
            raise BpfError(errno.EBADF, f"fd {fd} is not open")
        file.put()

    def dup(self, fd: int) -> int:
        file = self.get(fd)
        if file is None:
            raise BpfError(errno.EBADF, f"fd {fd} is not open")
        return self.install(file.get())

    def fds(self) -> dict[int, File]:
        with self._lock:
            return dict(self._files)

    def close_all(self) -> None:
        for fd in sorted(self.fds()):
            if fd > 2:
                self.close(fd)
