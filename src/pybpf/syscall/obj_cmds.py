"""Object commands: OBJ_PIN / OBJ_GET (bpffs), *_GET_NEXT_ID, *_GET_FD_BY_ID.

Pinning moves a new reference into a bpffs inode; ``OBJ_GET`` makes a new fd from a pin
(maps with the access ``file_flags`` asks for). IDs are walked in increasing order;
``GET_FD_BY_ID`` needs CAP_SYS_ADMIN and fails with ``ENOENT`` for an ID that is free or
whose object is already on its way out.
"""

from __future__ import annotations

import errno

from pybpf.core.link import BpfLink
from pybpf.core.map import KMap
from pybpf.core.prog import BpfProg
from pybpf.errors import BpfError
from pybpf.kernel import Cap
from pybpf.syscall.attr import OFF_NEXT_ID
from pybpf.syscall.bpffs import BPF_TYPE_LINK, BPF_TYPE_MAP, BPF_TYPE_PROG, PATH_MAX
from pybpf.syscall.dispatch import Call, command
from pybpf.syscall.fdtable import KIND_LINK, KIND_MAP, KIND_PROG, O_RDWR
from pybpf.syscall.idr import INT_MAX
from pybpf.syscall.objects import (
    BPF_F_RDONLY,
    BPF_F_WRONLY,
    bpf_get_file_flag,
    link_new_fd,
    map_new_fd,
    prog_new_fd,
)
from pybpf.syscall.uaccess import UserFault, strncpy_from_user
from pybpf.uapi import BpfCmd

BPF_F_PATH_FD = 1 << 14
BPF_OBJ_FLAG_MASK = BPF_F_RDONLY | BPF_F_WRONLY


def getname(addr: int) -> str:
    """``getname()``: the user's path string (EFAULT, ENOENT for "", ENAMETOOLONG)."""
    try:
        raw = strncpy_from_user(addr, PATH_MAX)
    except UserFault:
        raise BpfError(errno.EFAULT, "bad pathname pointer") from None
    if len(raw) >= PATH_MAX:
        raise BpfError(errno.ENAMETOOLONG, "pathname too long")
    if not raw:
        raise BpfError(errno.ENOENT, "empty pathname")
    return raw.decode("utf-8", "surrogateescape")


def _resolve_at(call: Call, path_fd_given: bool, path_fd: int, path: str) -> str:
    """openat() rules: an absolute path ignores ``path_fd``; a relative one needs a dir."""
    if path.startswith("/") or not path_fd_given:
        return path
    file = call.task.fds.get(path_fd)
    if file is None:
        raise BpfError(errno.EBADF, f"path_fd {path_fd} is not open")
    dirpath = file.extra.get("dirpath")
    if dirpath is None:
        raise BpfError(errno.ENOTDIR, f"path_fd {path_fd} is not a directory")
    return f"{dirpath.rstrip('/')}/{path}"


def fd_probe_obj(call: Call, fd: int) -> tuple[str, KMap | BpfProg | BpfLink]:
    """``bpf_fd_probe_obj``: a new reference to the map/program/link (else EINVAL)."""
    file = call.task.fds.get(fd)
    if file is not None:
        if file.kind == KIND_MAP and isinstance(file.obj, KMap):
            return BPF_TYPE_MAP, file.obj.get(uref=True)
        if file.kind == KIND_PROG and isinstance(file.obj, BpfProg):
            return BPF_TYPE_PROG, file.obj.get()
        if file.kind == KIND_LINK and isinstance(file.obj, BpfLink):
            return BPF_TYPE_LINK, file.obj.get()
    raise BpfError(errno.EINVAL, f"fd {fd} is not a pinnable BPF object")


@command(BpfCmd.BPF_OBJ_PIN)
def bpf_obj_pin(call: Call) -> int:
    a = call.attr
    call.check_attr()
    if a.file_flags & ~BPF_F_PATH_FD:
        raise BpfError(errno.EINVAL, "unknown file_flags")
    if not a.file_flags & BPF_F_PATH_FD and a.path_fd:
        raise BpfError(errno.EINVAL, "path_fd without BPF_F_PATH_FD")
    obj_type, obj = fd_probe_obj(call, a.bpf_fd)
    try:
        path = getname(a.pathname)
        path = _resolve_at(call, bool(a.file_flags & BPF_F_PATH_FD), a.path_fd, path)
        call.kernel.bpffs.pin(call.task, path, obj_type, obj)
    except BpfError:
        obj.put_pin()
        raise
    return 0


@command(BpfCmd.BPF_OBJ_GET)
def bpf_obj_get(call: Call) -> int:
    a = call.attr
    call.check_attr()
    if a.bpf_fd != 0 or a.file_flags & ~(BPF_OBJ_FLAG_MASK | BPF_F_PATH_FD):
        raise BpfError(errno.EINVAL, "bad bpf_fd or file_flags")
    if not a.file_flags & BPF_F_PATH_FD and a.path_fd:
        raise BpfError(errno.EINVAL, "path_fd without BPF_F_PATH_FD")
    f_flags = bpf_get_file_flag(a.file_flags)
    path = getname(a.pathname)
    path = _resolve_at(call, bool(a.file_flags & BPF_F_PATH_FD), a.path_fd, path)
    inode = call.kernel.bpffs.lookup(call.task, path)
    cred = call.cred
    if cred.uid != 0 and not cred.capable(Cap.CAP_DAC_OVERRIDE) and inode.uid != cred.uid:
        # path_permission(): pins are 0600 by default
        want = {0: 0o4, 1: 0o2, 2: 0o6}[f_flags & 3]
        other = inode.mode & 0o7
        if other & want != want:
            raise BpfError(errno.EACCES, "permission denied")
    if inode.is_dir or inode.obj is None:
        raise BpfError(errno.EACCES, f"{path} is not a BPF object")
    obj = inode.obj
    if inode.obj_type == BPF_TYPE_PROG:
        obj.get()
        try:
            return prog_new_fd(call.task, obj)
        except BpfError:
            obj.put()
            raise
    if inode.obj_type == BPF_TYPE_MAP:
        obj.get(uref=True)
        try:
            return map_new_fd(call.task, obj, f_flags)
        except BpfError:
            obj.put_with_uref()
            raise
    if inode.obj_type == BPF_TYPE_LINK:
        if f_flags != O_RDWR:
            raise BpfError(errno.EINVAL, "links are opened read-write")
        obj.get()
        try:
            return link_new_fd(call.task, obj)
        except BpfError:
            obj.put()
            raise
    raise BpfError(errno.ENOENT, path)


# --------------------------------------------------------------------------- IDs
def _get_next_id(call: Call, idr: object) -> int:
    call.check_attr()
    start = call.attr.start_id
    if start >= INT_MAX:
        raise BpfError(errno.EINVAL, "start_id too large")
    if not call.cred.capable(Cap.CAP_SYS_ADMIN):
        raise BpfError(errno.EPERM, "GET_NEXT_ID needs CAP_SYS_ADMIN")
    found = idr.get_next(start + 1)  # type: ignore[attr-defined]
    if found is None:
        raise BpfError(errno.ENOENT, "no more IDs")
    call.put_u32(OFF_NEXT_ID, found[0])
    return 0


@command(BpfCmd.BPF_PROG_GET_NEXT_ID)
def prog_get_next_id(call: Call) -> int:
    return _get_next_id(call, call.kernel.prog_idr)


@command(BpfCmd.BPF_MAP_GET_NEXT_ID)
def map_get_next_id(call: Call) -> int:
    return _get_next_id(call, call.kernel.map_idr)


@command(BpfCmd.BPF_BTF_GET_NEXT_ID)
def btf_get_next_id(call: Call) -> int:
    return _get_next_id(call, call.kernel.btf_idr)


@command(BpfCmd.BPF_LINK_GET_NEXT_ID)
def link_get_next_id(call: Call) -> int:
    return _get_next_id(call, call.kernel.link_idr)


@command(BpfCmd.BPF_PROG_GET_FD_BY_ID)
def prog_get_fd_by_id(call: Call) -> int:
    call.check_attr()
    if not call.cred.capable(Cap.CAP_SYS_ADMIN):
        raise BpfError(errno.EPERM, "GET_FD_BY_ID needs CAP_SYS_ADMIN")
    ident = call.attr.prog_id
    prog = call.kernel.prog_idr.find(ident) if ident else None
    if prog is None or prog.refcnt <= 0:
        raise BpfError(errno.ENOENT, f"no program with id {ident}")
    prog.get()
    try:
        return prog_new_fd(call.task, prog)
    except BpfError:
        prog.put()
        raise


@command(BpfCmd.BPF_MAP_GET_FD_BY_ID)
def map_get_fd_by_id(call: Call) -> int:
    call.check_attr()
    a = call.attr
    if a.open_flags & ~BPF_OBJ_FLAG_MASK:
        raise BpfError(errno.EINVAL, "unknown open_flags")
    if not call.cred.capable(Cap.CAP_SYS_ADMIN):
        raise BpfError(errno.EPERM, "GET_FD_BY_ID needs CAP_SYS_ADMIN")
    f_flags = bpf_get_file_flag(a.open_flags)
    kmap = call.kernel.map_idr.find(a.map_id)
    if kmap is None or kmap.refcnt <= 0:
        raise BpfError(errno.ENOENT, f"no map with id {a.map_id}")
    kmap.get(uref=True)
    try:
        return map_new_fd(call.task, kmap, f_flags)
    except BpfError:
        kmap.put_with_uref()
        raise


@command(BpfCmd.BPF_LINK_GET_FD_BY_ID)
def link_get_fd_by_id(call: Call) -> int:
    call.check_attr()
    if not call.cred.capable(Cap.CAP_SYS_ADMIN):
        raise BpfError(errno.EPERM, "GET_FD_BY_ID needs CAP_SYS_ADMIN")
    ident = call.attr.link_id
    link = call.kernel.link_idr.find(ident) if ident else None
    if link is None or link.refcnt <= 0:
        raise BpfError(errno.ENOENT, f"no link with id {ident}")
    if not link.id:
        raise BpfError(errno.EAGAIN, "link not settled yet")
    link.get()
    try:
        return link_new_fd(call.task, link)
    except BpfError:
        link.put()
        raise
