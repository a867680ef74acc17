"""bpffs: the namespace where BPF objects are pinned (``kernel/bpf/inode.c``).

A pin is an inode in a bpffs mount that holds a reference to a program, map or link, so
the object outlives every fd. Paths are absolute strings in the instance's own namespace:
a pybpf ``Kernel`` mounts its bpffs at ``/sys/fs/bpf`` by default, independent of the host.

Errnos follow the kernel's path walk (``user_path_create`` / ``user_path_at``):
``ENOENT`` (missing parent or object, empty path), ``ENOTDIR`` (a component is not a
directory), ``EEXIST`` (the name is taken), ``ENAMETOOLONG``, and ``EPERM`` when the
parent directory exists but is not on a bpffs. Paths outside every pybpf mount are
resolved against the host filesystem so those errnos match the kernel's as well (a pin
into ``/tmp`` is ``EPERM``, an ``OBJ_GET`` of a regular file is ``EACCES``).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pybpf.errors import BpfError

if TYPE_CHECKING:
    from pybpf.kernel import Kernel, Task

NAME_MAX = 255
PATH_MAX = 4096

# The bpf_type of an inode (``enum bpf_type``).
BPF_TYPE_PROG = "prog"
BPF_TYPE_MAP = "map"
BPF_TYPE_LINK = "link"


@dataclass(eq=False)
class Inode:
    """A bpffs inode: a directory (``children``) or a pinned object (``obj``)."""

    mode: int
    uid: int = 0
    gid: int = 0
    obj_type: str = ""
    obj: Any = None
    children: dict[str, Inode] | None = None
    parent: Inode | None = None
    nlink: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_dir(self) -> bool:
        return self.children is not None


def _err(code: int, what: str) -> BpfError:
    return BpfError(code, f"{what}: {os.strerror(code)}")


class BpfFs:
    """The bpffs mounts of one :class:`~pybpf.kernel.Kernel`."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.mounts: dict[str, Inode] = {}

    # -- mounts ------------------------------------------------------------------------
    def mount(self, path: str, mode: int = 0o1777) -> Inode:
        """Mount a fresh bpffs at ``path`` (an absolute path)."""
        path = posixpath.normpath(path)
        if not path.startswith("/"):
            raise _err(errno.EINVAL, f"mount point {path!r} is not absolute")
        root = Inode(stat.S_IFDIR | mode, children={})
        self.mounts[path] = root
        return root

    def umount(self, path: str) -> None:
        root = self.mounts.pop(posixpath.normpath(path), None)
        if root is None:
            raise _err(errno.EINVAL, f"{path!r} is not a bpffs mount")
        self._drop_tree(root)

    def _drop_tree(self, inode: Inode) -> None:
        if inode.children is not None:
            for child in list(inode.children.values()):
                self._drop_tree(child)
            inode.children.clear()
        elif inode.obj is not None:
            _put_obj(inode)

    # -- path walk ---------------------------------------------------------------------
    def _split(self, task: Task | None, path: str) -> tuple[str, Inode, list[str]] | None:
        """(mount point, mount root, components below it) for the deepest mount, or None."""
        if not path:
            raise _err(errno.ENOENT, "empty path")
        if len(path) >= PATH_MAX:
            raise _err(errno.ENAMETOOLONG, "path")
        if not path.startswith("/"):
            cwd = task.cwd if task is not None and task.cwd else os.getcwd()
            path = posixpath.join(cwd, path)
        parts = [p for p in path.split("/") if p]
        for p in parts:
            if len(p.encode()) > NAME_MAX:
                raise _err(errno.ENAMETOOLONG, p)
        norm: list[str] = []
        for p in parts:
            if p == ".":
                continue
            if p == "..":
                if norm:
                    norm.pop()
                continue
            norm.append(p)
        best: tuple[str, Inode, list[str]] | None = None
        for mnt, root in self.mounts.items():
            mparts = [p for p in mnt.split("/") if p]
            if norm[:len(mparts)] == mparts and (best is None or len(mparts) > len(
                    [p for p in best[0].split("/") if p])):
                best = (mnt, root, norm[len(mparts):])
        return best

    def _walk_dir(self, root: Inode, parts: list[str]) -> Inode:
        node = root
        for p in parts:
            if node.children is None:
                raise _err(errno.ENOTDIR, p)
            child = node.children.get(p)
            if child is None:
                raise _err(errno.ENOENT, p)
            node = child
        if node.children is None:
            raise _err(errno.ENOTDIR, "/".join(parts))
        return node

    def lookup(self, task: Task | None, path: str) -> Inode:
        """The inode at ``path`` (``ENOENT``/``ENOTDIR``); host paths raise ``EACCES``."""
        where = self._split(task, path)
        if where is None:
            _host_lookup(path)
            raise _err(errno.EACCES, f"{path} is not a BPF object")
        _mnt, root, parts = where
        if not parts:
            return root
        parent = self._walk_dir(root, parts[:-1])
        assert parent.children is not None
        node = parent.children.get(parts[-1])
        if node is None:
            raise _err(errno.ENOENT, path)
        if path.endswith("/") and not node.is_dir:
            raise _err(errno.ENOTDIR, path)
        return node

    def _create_at(self, task: Task | None, path: str) -> tuple[Inode, str]:
        """``user_path_create``: the parent directory and the new name (checks EEXIST)."""
        where = self._split(task, path)
        if where is None:
            _host_create_check(path)
            raise _err(errno.EPERM, f"{path}: not on a bpffs")
        _mnt, root, parts = where
        if not parts:
            raise _err(errno.EEXIST, path)
        parent = self._walk_dir(root, parts[:-1])
        assert parent.children is not None
        if parts[-1] in parent.children:
            raise _err(errno.EEXIST, path)
        if path.endswith("/"):
            raise _err(errno.ENOENT, path)
        return parent, parts[-1]

    # -- operations --------------------------------------------------------------------
    def pin(self, task: Task | None, path: str, obj_type: str, obj: Any) -> Inode:
        """Create the pin; the caller's reference on ``obj`` moves into the inode."""
        parent, name = self._create_at(task, path)
        umask = task.umask if task is not None else 0o022
        uid = task.cred.uid if task is not None else 0
        inode = Inode(stat.S_IFREG | (0o600 & ~umask), uid=uid, gid=uid, obj_type=obj_type,
                      obj=obj, parent=parent)
        assert parent.children is not None
        parent.children[name] = inode
        return inode

    def mkdir(self, path: str, mode: int = 0o755, task: Task | None = None) -> None:
        parent, name = self._create_at(task, path.rstrip("/") or "/")
        uid = task.cred.uid if task is not None else 0
        assert parent.children is not None
        parent.children[name] = Inode(stat.S_IFDIR | (mode & 0o7777), uid=uid, gid=uid,
                                      children={}, parent=parent)

    def unlink(self, path: str, task: Task | None = None) -> None:
        """Remove a pin (dropping its reference) or an empty directory (``rmdir``)."""
        parent, name, node = self._existing(task, path)
        if node.children is not None:
            if node.children:
                raise _err(errno.ENOTEMPTY, path)
        elif node.obj is not None:
            _put_obj(node)
        assert parent.children is not None
        del parent.children[name]

    rmdir = unlink

    def rename(self, old: str, new: str, task: Task | None = None) -> None:
        """``rename(2)`` within one bpffs mount (``EXDEV`` across mounts)."""
        oparent, oname, node = self._existing(task, old)
        wo = self._split(task, old)
        wn = self._split(task, new)
        if wn is None or wo is None or wo[0] != wn[0]:
            raise _err(errno.EXDEV, f"{old} -> {new}")
        _mnt, root, parts = wn
        if not parts:
            raise _err(errno.EBUSY, new)
        nparent = self._walk_dir(root, parts[:-1])
        assert nparent.children is not None and oparent.children is not None
        target = nparent.children.get(parts[-1])
        if target is node:
            return
        anc: Inode | None = nparent
        while anc is not None:
            if anc is node:
                raise _err(errno.EINVAL, f"cannot move {old} into itself")
            anc = anc.parent
        if target is not None:
            if target.is_dir != node.is_dir:
                raise _err(errno.EISDIR if target.is_dir else errno.ENOTDIR, new)
            if target.children:
                raise _err(errno.ENOTEMPTY, new)
            if target.obj is not None:
                _put_obj(target)
        del oparent.children[oname]
        nparent.children[parts[-1]] = node
        node.parent = nparent

    def _existing(self, task: Task | None, path: str) -> tuple[Inode, str, Inode]:
        where = self._split(task, path)
        if where is None:
            raise _err(errno.ENOENT, f"{path}: not on a pybpf bpffs")
        _mnt, root, parts = where
        if not parts:
            raise _err(errno.EBUSY, path)
        parent = self._walk_dir(root, parts[:-1])
        assert parent.children is not None
        node = parent.children.get(parts[-1])
        if node is None:
            raise _err(errno.ENOENT, path)
        return parent, parts[-1], node

    def listdir(self, path: str, task: Task | None = None) -> list[str]:
        node = self.lookup(task, path)
        if node.children is None:
            raise _err(errno.ENOTDIR, path)
        return sorted(node.children)

    def walk(self) -> list[tuple[str, Inode]]:
        """Every pinned object as (absolute path, inode)."""
        out: list[tuple[str, Inode]] = []

        def rec(prefix: str, node: Inode) -> None:
            for name, child in sorted((node.children or {}).items()):
                p = f"{prefix.rstrip('/')}/{name}"
                if child.children is not None:
                    rec(p, child)
                else:
                    out.append((p, child))

        for mnt, root in sorted(self.mounts.items()):
            rec(mnt, root)
        return out

    def paths_of(self, obj: Any) -> list[str]:
        return [p for p, inode in self.walk() if inode.obj is obj]


def _put_obj(inode: Inode) -> None:
    obj, inode.obj = inode.obj, None
    if obj is not None:
        obj.put_pin()


def _host_lookup(path: str) -> None:
    """Raise the errno the host's path walk gives for ``path`` (ENOENT/ENOTDIR), if any."""
    try:
        os.stat(path)
    except FileNotFoundError:
        raise _err(errno.ENOENT, path) from None
    except NotADirectoryError:
        raise _err(errno.ENOTDIR, path) from None
    except OSError as exc:
        raise _err(exc.errno or errno.EACCES, path) from None


def _host_create_check(path: str) -> None:
    """``user_path_create`` on the host: ENOENT/ENOTDIR for the parent, EEXIST for the name."""
    parent = posixpath.dirname(path.rstrip("/")) or "/"
    try:
        st = os.stat(parent)
    except FileNotFoundError:
        raise _err(errno.ENOENT, parent) from None
    except NotADirectoryError:
        raise _err(errno.ENOTDIR, parent) from None
    except OSError as exc:
        raise _err(exc.errno or errno.EACCES, parent) from None
    if not stat.S_ISDIR(st.st_mode):
        raise _err(errno.ENOTDIR, parent)
    if os.path.lexists(path.rstrip("/")):
        raise _err(errno.EEXIST, path)
