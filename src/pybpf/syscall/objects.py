"""fd ↔ object: ``__bpf_map_get``, ``bpf_prog_get``, ``btf_get_by_fd``, ``*_new_fd``.

Getting an object from an fd fails with ``EBADF`` when the fd is not open and ``EINVAL``
when it is open but refers to something else — exactly the kernel's split, which the
differential tests rely on. A new fd takes over one reference; closing the last fd of the
file drops it (maps also drop their *user* reference, see :mod:`pybpf.core.map`).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pybpf.core.btf import BtfObject
from pybpf.core.link import BpfLink
from pybpf.core.map import KMap
from pybpf.core.prog import BpfProg
from pybpf.errors import BpfError
from pybpf.syscall.fdtable import (
    FMODE_READ,
    FMODE_WRITE,
    KIND_BTF,
    KIND_LINK,
    KIND_MAP,
    KIND_PROG,
    O_RDONLY,
    O_RDWR,
    O_WRONLY,
    File,
    open_fmode,
)

if TYPE_CHECKING:
    from pybpf.kernel import Task

BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
ENOTSUPP = 524


def fdget(task: Task, fd: int) -> File:
    file = task.fds.get(fd)
    if file is None:
        raise BpfError(errno.EBADF, f"fd {fd} is not open")
    return file


def bpf_get_file_flag(flags: int) -> int:
    """``bpf_get_file_flag``: BPF_F_RDONLY/WRONLY to O_* (both: ``EINVAL``)."""
    if flags & BPF_F_RDONLY and flags & BPF_F_WRONLY:
        raise BpfError(errno.EINVAL, "BPF_F_RDONLY and BPF_F_WRONLY together")
    if flags & BPF_F_RDONLY:
        return O_RDONLY
    if flags & BPF_F_WRONLY:
        return O_WRONLY
    return O_RDWR


# -- maps ----------------------------------------------------------------------------------
def map_get(task: Task, fd: int) -> tuple[KMap, File]:
    """``__bpf_map_get`` (no new reference: the fd keeps the map alive during the call)."""
    file = fdget(task, fd)
    if file.kind != KIND_MAP or not isinstance(file.obj, KMap):
        raise BpfError(errno.EINVAL, f"fd {fd} is not a map")
    return file.obj, file


def map_sys_perms(kmap: KMap, file: File) -> int:
    """``map_get_sys_perms``: the fd's mode, minus write once the map is frozen."""
    mode = file.f_mode
    if kmap.frozen:
        mode &= ~FMODE_WRITE
    return mode


def can_read(kmap: KMap, file: File) -> bool:
    return bool(map_sys_perms(kmap, file) & FMODE_READ)


def can_write(kmap: KMap, file: File) -> bool:
    return bool(map_sys_perms(kmap, file) & FMODE_WRITE)


def map_new_fd(task: Task, kmap: KMap, f_flags: int) -> int:
    """``bpf_map_new_fd``: the caller's reference (with uref) moves into the new fd."""
    fmode = open_fmode(f_flags)
    task.kernel.security.check("bpf_map", task, kmap, fmode)
    file = File(KIND_MAP, kmap, fmode, release=lambda f: kmap.put_with_uref(),
                name="bpf-map", cred=task.cred)
    return task.fds.install(file)


def fd_resolver(task: Task) -> Callable[[int, str], Any]:
    """``resolve(fd, kind)`` over ``task``'s fd table, for maps whose values are fds.

    Map-in-map values resolve to the inner map (``__bpf_map_get``), prog-array values to
    the program with a new reference the map keeps (``bpf_prog_get``), as the kernel's
    ``map_fd_get_ptr`` callbacks do.
    """
    def resolve(fd: int, kind: str) -> Any:
        if kind == "map":
            kmap, _file = map_get(task, fd)
            return kmap.bmap
        if kind == "prog":
            return prog_get(task, fd)
        raise BpfError(errno.EOPNOTSUPP, f"{kind} fds are not modelled")
    return resolve


# -- programs ------------------------------------------------------------------------------
def prog_get(task: Task, fd: int, prog_type: int | None = None) -> BpfProg:
    """``bpf_prog_get`` / ``bpf_prog_get_type``: a new reference (caller must ``put``)."""
    file = fdget(task, fd)
    if file.kind != KIND_PROG or not isinstance(file.obj, BpfProg):
        raise BpfError(errno.EINVAL, f"fd {fd} is not a program")
    prog = file.obj
    if prog_type is not None and prog.type != prog_type:
        raise BpfError(errno.EINVAL, f"program type {prog.type} is not {prog_type}")
    return prog.get()


def prog_new_fd(task: Task, prog: BpfProg) -> int:
    task.kernel.security.check("bpf_prog", task, prog)
    file = File(KIND_PROG, prog, FMODE_READ | FMODE_WRITE, release=lambda f: prog.put(),
                name="bpf-prog", cred=task.cred)
    return task.fds.install(file)


# -- BTF -----------------------------------------------------------------------------------
def btf_get_by_fd(task: Task, fd: int) -> BtfObject:
    """A new reference to the BTF object behind ``fd`` (EBADF / EINVAL)."""
    file = fdget(task, fd)
    if file.kind != KIND_BTF or not isinstance(file.obj, BtfObject):
        raise BpfError(errno.EINVAL, f"fd {fd} is not BTF")
    return file.obj.get()


def btf_new_fd(task: Task, btf: BtfObject) -> int:
    file = File(KIND_BTF, btf, FMODE_READ | FMODE_WRITE, release=lambda f: btf.put(),
                name="btf", cred=task.cred)
    return task.fds.install(file)


# -- links ---------------------------------------------------------------------------------
def link_get_from_fd(task: Task, fd: int) -> BpfLink:
    file = fdget(task, fd)
    if file.kind != KIND_LINK or not isinstance(file.obj, BpfLink):
        raise BpfError(errno.EINVAL, f"fd {fd} is not a link")
    return file.obj.get()


def link_new_fd(task: Task, link: BpfLink) -> int:
    file = File(KIND_LINK, link, FMODE_READ | FMODE_WRITE, release=lambda f: link.put(),
                name="bpf_link", cred=task.cred)
    return task.fds.install(file)
