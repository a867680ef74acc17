"""Two worlds for differential syscall tests: the live kernel and a pybpf ``Kernel``.

Each world creates the same set of objects (maps, programs, BTF, a raw tracepoint link, a
bpffs directory) and runs ``bpf(cmd, attr, size)`` returning the errno (0 on success, the
returned fd closed). Capability cases run in the live kernel in a forked child that drops
every capability with ``capset(2)`` (uid stays 0, like pybpf's ``task(uid=0, caps=())``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pybpf.kernel import Kernel
from pybpf.testing import kernel as oracle
from pybpf.uapi import (
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_HASH,
    BPF_PROG_TYPE_KPROBE,
    BPF_PROG_TYPE_RAW_TRACEPOINT,
    BPF_PROG_TYPE_SOCKET_FILTER,
    BPF_PROG_TYPE_XDP,
    BpfCmd,
    bpf_attr,
)

RET0 = bytes([0xB7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4


def mini_btf() -> bytes:
    """A valid BTF blob with one type: ``int`` (4 bytes, signed)."""
    strings = b"\0int\0"
    types = struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", (1 << 24) | 32)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


@dataclass
class World:
    """Objects and a ``bpf()`` of one world. ``fd[name]`` are fds valid in that world."""

    name: str
    fd: dict[str, int] = field(default_factory=dict)
    keep: list[Any] = field(default_factory=list)
    pin_dir: str = ""

    def buf(self, data: bytes | int) -> int:
        """Address of a buffer holding ``data`` (or ``data`` zero bytes), kept alive."""
        b = ctypes.create_string_buffer(data) if isinstance(data, int) else \
            ctypes.create_string_buffer(data, max(len(data), 1))
        self.keep.append(b)
        return ctypes.addressof(b)

    def cstr(self, text: str) -> int:
        return self.buf(text.encode() + b"\0")

    # implemented by subclasses
    def bpf(self, cmd: int, attr: Any, size: int | None = None) -> tuple[int, int]:
        raise NotImplementedError

    def bpf_unpriv(self, cmd: int, attr: Any, size: int | None = None) -> tuple[int, int]:
        raise NotImplementedError

    def close(self, fd: int) -> None:
        raise NotImplementedError

    def errno_of(self, cmd: int, attr: Any, size: int | None = None, *,
                 unpriv: bool = False) -> int:
        ret, err = (self.bpf_unpriv if unpriv else self.bpf)(cmd, attr, size)
        if err == 0 and ret > 2 and cmd in _FD_RETURNING:
            self.close(ret)
        return err

    # -- object setup (same calls in both worlds) --------------------------------------
    def setup(self, pin_dir: str) -> None:
        self.pin_dir = pin_dir
        self.fd["arr"] = self._map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 4)
        self.fd["arr_ro"] = self._map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 4, BPF_F_RDONLY)
        self.fd["arr_wo"] = self._map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 4, BPF_F_WRONLY)
        self.fd["frozen"] = self._map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 4)
        a = bpf_attr()
        a.map_fd = self.fd["frozen"]
        assert self.bpf(BpfCmd.BPF_MAP_FREEZE, a)[1] == 0
        self.fd["hash"] = self._map_create(BPF_MAP_TYPE_HASH, 4, 8, 16)
        self.fd["prog"] = self._prog_load(BPF_PROG_TYPE_SOCKET_FILTER)
        self.fd["xdp"] = self._prog_load(BPF_PROG_TYPE_XDP)
        self.fd["rawtp"] = self._prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT)
        self.fd["kprobe"] = self._prog_load(BPF_PROG_TYPE_KPROBE)
        data = mini_btf()
        a = bpf_attr()
        a.btf, a.btf_size = self.buf(data), len(data)
        ret, err = self.bpf(BpfCmd.BPF_BTF_LOAD, a)
        assert err == 0, err
        self.fd["btf"] = ret
        a = bpf_attr()
        a.raw_tracepoint.name = self.cstr("sys_enter")
        a.raw_tracepoint.prog_fd = self.fd["rawtp"]
        ret, err = self.bpf(BpfCmd.BPF_RAW_TRACEPOINT_OPEN, a)
        assert err == 0, err
        self.fd["link"] = ret
        self.mkdir(pin_dir)
        a = bpf_attr()
        a.pathname = self.cstr(f"{pin_dir}/taken")
        a.bpf_fd = self.fd["arr"]
        assert self.bpf(BpfCmd.BPF_OBJ_PIN, a)[1] == 0

    def _map_create(self, t: int, ks: int, vs: int, n: int, flags: int = 0) -> int:
        a = bpf_attr()
        a.map_type, a.key_size, a.value_size, a.max_entries, a.map_flags = t, ks, vs, n, flags
        ret, err = self.bpf(BpfCmd.BPF_MAP_CREATE, a)
        assert err == 0, (self.name, t, err)
        return ret

    def _prog_load(self, t: int) -> int:
        a = bpf_attr()
        a.prog_type, a.insn_cnt = t, 2
        a.insns, a.license = self.buf(RET0), self.cstr("GPL")
        ret, err = self.bpf(BpfCmd.BPF_PROG_LOAD, a)
        assert err == 0, (self.name, t, err)
        return ret

    def mkdir(self, path: str) -> None:
        raise NotImplementedError


_FD_RETURNING = {
    BpfCmd.BPF_MAP_CREATE, BpfCmd.BPF_PROG_LOAD, BpfCmd.BPF_OBJ_GET,
    BpfCmd.BPF_PROG_GET_FD_BY_ID, BpfCmd.BPF_MAP_GET_FD_BY_ID, BpfCmd.BPF_BTF_GET_FD_BY_ID,
    BpfCmd.BPF_LINK_GET_FD_BY_ID, BpfCmd.BPF_RAW_TRACEPOINT_OPEN, BpfCmd.BPF_BTF_LOAD,
    BpfCmd.BPF_LINK_CREATE, BpfCmd.BPF_ENABLE_STATS, BpfCmd.BPF_ITER_CREATE,
    BpfCmd.BPF_TOKEN_CREATE,
}


class PyWorld(World):
    def __init__(self) -> None:
        super().__init__("pybpf")
        self.kernel = Kernel(sysctls={"bpf_jit_enable": 0})
        self.unpriv = self.kernel.task(uid=0, caps=())
        # the unprivileged task shares the root task's fds, as a forked child does
        self.unpriv.fds = self.kernel.root.fds
        self.fd["nonbpf"] = 2
        self.fd["pid"] = self.kernel.root.pid

    def bpf(self, cmd: int, attr: Any, size: int | None = None) -> tuple[int, int]:
        ret = self.kernel.bpf(cmd, attr, size)
        return (ret, 0) if ret >= 0 else (-1, -ret)

    def bpf_unpriv(self, cmd: int, attr: Any, size: int | None = None) -> tuple[int, int]:
        ret = self.unpriv.bpf(cmd, attr, size)
        return (ret, 0) if ret >= 0 else (-1, -ret)

    def close(self, fd: int) -> None:
        self.kernel.close(fd)

    def mkdir(self, path: str) -> None:
        self.kernel.bpffs.mkdir(path)


_libc = ctypes.CDLL(None, use_errno=True)
_SYS_CAPSET = 126  # x86-64


def _drop_caps() -> None:
    hdr = struct.pack("<Ii", 0x20080522, 0)
    data = bytes(24)
    h = ctypes.create_string_buffer(hdr, 8)
    d = ctypes.create_string_buffer(data, 24)
    if _libc.syscall(_SYS_CAPSET, h, d) != 0:
        os._exit(99)


class LiveWorld(World):
    def __init__(self) -> None:
        super().__init__("kernel")
        self.fd["nonbpf"] = os.open("/dev/null", os.O_RDONLY)
        self.fd["pid"] = os.getpid()

    def bpf(self, cmd: int, attr: Any, size: int | None = None) -> tuple[int, int]:
        return oracle.sys_bpf(cmd, attr, size)

    def bpf_unpriv(self, cmd: int, attr: Any, size: int | None = None) -> tuple[int, int]:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: drop every capability, make the call, report errno
            try:
                os.close(r)
                _drop_caps()
                _ret, err = oracle.sys_bpf(cmd, attr, size)
                os.write(w, struct.pack("<i", err))
            finally:
                os._exit(0)
        os.close(w)
        data = os.read(r, 4)
        os.close(r)
        os.waitpid(pid, 0)
        if len(data) != 4:
            return -1, -1
        err = struct.unpack("<i", data)[0]
        return (0 if err == 0 else -1), err

    def close(self, fd: int) -> None:
        oracle.close(fd)

    def mkdir(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def teardown(self) -> None:
        for fd in self.fd.values():
            if fd > 2 and fd != self.fd["pid"]:
                oracle.close(fd)
        if self.pin_dir and os.path.isdir(self.pin_dir):
            shutil.rmtree(self.pin_dir, ignore_errors=True)


Builder = Callable[[World], tuple[Any, "int | None"]]


@dataclass
class Case:
    """One bad (or boundary) attribute: ``build(world) -> (attr, size)``."""

    name: str
    cmd: int
    build: Builder
    unpriv: bool = False
    expect: int | None = None  # documented errno, checked against both worlds when given

    def run(self, world: World) -> int:
        attr, size = self.build(world)
        return world.errno_of(self.cmd, attr, size, unpriv=self.unpriv)


def errname(err: int) -> str:
    return errno.errorcode.get(err, str(err))
