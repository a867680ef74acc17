"""The kernel-side life of a map: references, user references, ID, BTF (``struct bpf_map``).

The map's *storage and semantics* are a :class:`pybpf.maps.core.BpfMap` built by its
type's ``MapOps`` (the maps layer). :class:`KMap` is what ``kernel/bpf/syscall.c`` keeps
around it: ``refcnt`` (every holder: fds, pins, programs using it, inner-map slots),
``usercnt`` (holders reachable from userspace: fds and pins — when it drops to zero the
type's ``map_release_uref`` runs, e.g. a prog array empties itself), the ID in the
instance's map IDR, and the BTF object the map's key/value types come from.

:class:`MapHandle` is the thin Python face: an fd in a task plus the raw commands; the
rich ``MutableMapping`` ``Map`` class of the maps layer is built on it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import struct
import threading
from typing import TYPE_CHECKING, Any

from pybpf.errors import BpfError

if TYPE_CHECKING:
    from pybpf.core.btf import BtfObject
    from pybpf.kernel import Kernel, Task
    from pybpf.maps.core import BpfMap

_HEADER_ID_OFFSET = 40
_KERNEL_ID_OFFSET = 92  # maps/core.py: the kernel-layout copy of the id


class KMap:
    """Reference counting and identity of one map."""

    def __init__(self, kernel: Kernel, bmap: BpfMap) -> None:
        self.kernel = kernel
        self.bmap = bmap
        self.refcnt = 1
        self.usercnt = 1
        self.id = 0
        self.btf: BtfObject | None = None
        self.excl_prog_sha: bytes | None = None
        self.freed = False
        self._lock = threading.Lock()

    # -- identity ----------------------------------------------------------------------
    @property
    def ops(self) -> Any:
        return self.bmap.ops

    @property
    def map_type(self) -> int:
        return int(self.bmap.map_type)

    @property
    def name(self) -> bytes:
        name = self.bmap.name
        return name if isinstance(name, bytes) else str(name).encode()

    @property
    def frozen(self) -> bool:
        return bool(self.bmap.frozen)

    def set_id(self, ident: int) -> None:
        self.id = ident
        self.bmap.id = ident
        header = getattr(self.bmap, "header", None)
        if header is not None:
            struct.pack_into("<I", header.mv, _HEADER_ID_OFFSET, ident)
            struct.pack_into("<I", header.mv, _KERNEL_ID_OFFSET, ident)  # struct bpf_map's id

    def mem_usage(self) -> int:
        fn = getattr(self.bmap.ops, "mem_usage", None)
        try:
            return int(fn(self.bmap)) if fn is not None else 0
        except (BpfError, NotImplementedError, TypeError):
            return 0

    # -- references ----------------------------------------------------------------------
    def get(self, uref: bool = False) -> KMap:
        """``bpf_map_inc`` / ``bpf_map_inc_with_uref``."""
        with self._lock:
            self.refcnt += 1
            if uref:
                self.usercnt += 1
        return self

    def put_uref(self) -> None:
        with self._lock:
            self.usercnt -= 1
            last = self.usercnt == 0
        if last:
            release = getattr(self.bmap.ops, "map_release_uref", None)
            if callable(release):
                release(self.bmap)

    def put(self) -> None:
        """``bpf_map_put``: on the last reference free the ID first, then the storage."""
        with self._lock:
            self.refcnt -= 1
            last = self.refcnt == 0
        if last:
            self._free()

    def put_with_uref(self) -> None:
        self.put_uref()
        self.put()

    def put_pin(self) -> None:
        self.put_with_uref()

    def _free(self) -> None:
        if self.freed:
            return
        self.freed = True
        k = self.kernel
        if self.id:
            k.map_idr.remove(self.id)
            self.id = 0
            self.bmap.id = 0
        k.security.call("bpf_map_free", self)
        if self.btf is not None:
            btf, self.btf = self.btf, None
            btf.put()
        free = getattr(self.bmap.ops, "map_free", None)
        if callable(free):
            free(self.bmap)
        release = getattr(self.bmap, "release_header", None)
        if callable(release):
            with contextlib.suppress(KeyError, ValueError):
                release()
        k._untrack_map(self)

    def __repr__(self) -> str:
        return (f"KMap(id={self.id}, type={self.map_type}, name={self.name!r}, "
                f"refcnt={self.refcnt}, usercnt={self.usercnt})")


class MapHandle:
    """A map fd in a task, with the raw element commands as methods (raising ``BpfError``).

    ``kernel.map_create(...)`` returns one; ``pybpf.maps.api.Map`` wraps it with the
    ``MutableMapping`` interface, typed keys and values.
    """

    def __init__(self, task: Task, fd: int) -> None:
        self.task = task
        self.fd = fd

    @classmethod
    def create(cls, kernel: Kernel, map_type: int, key_size: int, value_size: int,
               max_entries: int, map_flags: int = 0, *, name: str | bytes = b"",
               task: Task | None = None, **fields: Any) -> MapHandle:
        from pybpf.uapi import BpfCmd, bpf_attr

        task = task or kernel.root
        attr = bpf_attr()
        attr.map_type, attr.key_size, attr.value_size = map_type, key_size, value_size
        attr.max_entries, attr.map_flags = max_entries, map_flags
        attr.map_name = name.encode() if isinstance(name, str) else name
        for key, value in fields.items():
            setattr(attr, key, value)
        fd = task.bpf(BpfCmd.BPF_MAP_CREATE, attr)
        if fd < 0:
            raise BpfError(-fd, f"BPF_MAP_CREATE: {errno.errorcode.get(-fd, -fd)}")
        return cls(task, fd)

    @property
    def kmap(self) -> KMap:
        file = self.task.fds.get(self.fd)
        if file is None or not isinstance(file.obj, KMap):
            raise BpfError(errno.EBADF, f"fd {self.fd} is not a map")
        return file.obj

    @property
    def id(self) -> int:
        return self.kmap.id

    @property
    def key_size(self) -> int:
        return int(self.kmap.bmap.key_size)

    @property
    def value_size(self) -> int:
        """Bytes of one value as the syscall sees it (per-CPU maps: all CPUs)."""
        bmap = self.kmap.bmap
        fn = getattr(bmap.ops, "sys_value_size", None)
        return int(fn(bmap)) if callable(fn) else int(bmap.value_size)

    def _elem(self, cmd: int, key: bytes | None, value: bytes | None, out: int,
              flags: int) -> bytes:
        from pybpf.uapi import bpf_attr

        kbuf = ctypes.create_string_buffer(key, len(key)) if key else None
        vbuf = ctypes.create_string_buffer(value, len(value)) if value is not None else (
            ctypes.create_string_buffer(out) if out else None)
        attr = bpf_attr()
        attr.map_fd = self.fd
        attr.key = ctypes.addressof(kbuf) if kbuf is not None else 0
        attr.value = ctypes.addressof(vbuf) if vbuf is not None else 0
        attr.flags = flags
        ret = self.task.bpf(cmd, attr)
        if ret < 0:
            raise BpfError(-ret)
        return vbuf.raw[:out] if (vbuf is not None and out) else b""

    def lookup(self, key: bytes, flags: int = 0) -> bytes:
        from pybpf.uapi import BpfCmd

        return self._elem(BpfCmd.BPF_MAP_LOOKUP_ELEM, key, None, self.value_size, flags)

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        from pybpf.uapi import BpfCmd

        self._elem(BpfCmd.BPF_MAP_UPDATE_ELEM, key, value, 0, flags)

    def delete(self, key: bytes) -> None:
        from pybpf.uapi import BpfCmd

        self._elem(BpfCmd.BPF_MAP_DELETE_ELEM, key, None, 0, 0)

    def get_next_key(self, key: bytes | None) -> bytes | None:
        """The key after ``key`` (the first for ``None``); ``None`` after the last."""
        from pybpf.uapi import BpfCmd

        try:
            return self._elem(BpfCmd.BPF_MAP_GET_NEXT_KEY, key, None, self.key_size, 0)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        from pybpf.uapi import BpfCmd

        return self._elem(BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM, key, None,
                          self.value_size, flags)

    def freeze(self) -> None:
        from pybpf.uapi import BpfCmd

        self._elem(BpfCmd.BPF_MAP_FREEZE, None, None, 0, 0)

    def keys(self) -> list[bytes]:
        out: list[bytes] = []
        key = self.get_next_key(None)
        while key is not None:
            out.append(key)
            key = self.get_next_key(key)
        return out

    def info(self) -> Any:
        from pybpf.syscall.info import get_info

        return get_info(self.task, self.fd)

    def pin(self, path: str) -> None:
        from pybpf.syscall.info import obj_pin

        obj_pin(self.task, self.fd, path)

    def close(self) -> None:
        if self.fd >= 0:
            self.task.close(self.fd)
            self.fd = -1

    def __enter__(self) -> MapHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MapHandle(fd={self.fd})"
