"""Two ``bpf()`` worlds for the redirect-map tests: the live kernel and a pybpf Kernel.

:class:`Side` issues raw commands (map create/update/lookup/delete/next, program loads,
info by fd) the same way on either; ``make_sides`` yields one of each.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pybpf.uapi as U
from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.kernel import Kernel
from pybpf.program import Program


class Side:
    """One ``bpf()`` world: the live kernel (``oracle``) or a pybpf :class:`Kernel`."""

    def __init__(self, oracle: ModuleType | None) -> None:
        self.oracle = oracle
        self.pk = None if oracle is not None else Kernel()
        self.fds: list[int] = []
        self.progs: dict[str, int] = {}

    def sys(self, cmd: int, attr: Any) -> tuple[int, int]:
        if self.oracle is not None:
            ret, err = self.oracle.sys_bpf(cmd, attr)
            return (ret if not err else -1), err
        assert self.pk is not None
        ret = self.pk.bpf(cmd, attr)
        return (ret, 0) if ret >= 0 else (-1, -ret)

    def create(self, mt: int, ks: int, vs: int, me: int, flags: int = 0) -> tuple[int, int]:
        a = U.bpf_attr_map_create()
        a.map_type, a.key_size, a.value_size, a.max_entries, a.map_flags = mt, ks, vs, me, flags
        fd, err = self.sys(U.BpfCmd.BPF_MAP_CREATE, a)
        if fd >= 0:
            self.fds.append(fd)
        return fd, err

    def elem(self, cmd: int, fd: int, key: bytes | None, value: bytes = b"", out: int = 0,
             flags: int = 0) -> tuple[int, bytes]:
        kbuf = ctypes.create_string_buffer(key or b"", max(len(key or b""), 1))
        vbuf = ctypes.create_string_buffer(value, max(len(value), out, 1))
        a = U.bpf_attr_map_elem()
        a.map_fd = fd
        a.key = ctypes.addressof(kbuf) if key is not None else 0
        a.value = ctypes.addressof(vbuf)
        a.flags = flags
        _r, err = self.sys(cmd, a)
        return err, vbuf.raw[:out] if not err else b""

    def info(self, fd: int) -> Any:
        info = U.bpf_map_info()
        a = U.bpf_attr_info()
        a.bpf_fd, a.info_len, a.info = fd, ctypes.sizeof(info), ctypes.addressof(info)
        _r, err = self.sys(U.BpfCmd.BPF_OBJ_GET_INFO_BY_FD, a)
        assert err == 0
        return info

    def load(self, name: str, prog_type: int, attach: int, text: str) -> int:
        raw = encode(assemble(text))
        if self.oracle is not None:
            res = self.oracle.prog_load(prog_type, raw, expected_attach_type=attach)
            assert res.ok, res.log
            fd = res.fd
        else:
            assert self.pk is not None
            fd = Program.load(self.pk, prog_type, raw, expected_attach_type=attach).fd
        self.fds.append(fd)
        self.progs[name] = fd
        return fd

    def prog_id(self, fd: int) -> int:
        info = U.bpf_prog_info()
        a = U.bpf_attr_info()
        a.bpf_fd, a.info_len, a.info = fd, ctypes.sizeof(info), ctypes.addressof(info)
        _r, err = self.sys(U.BpfCmd.BPF_OBJ_GET_INFO_BY_FD, a)
        assert err == 0
        return int(info.id)

    def close(self) -> None:
        import os

        for fd in self.fds:
            if self.oracle is not None:
                os.close(fd)
        self.fds.clear()


def make_sides(kernel: ModuleType) -> Iterator[tuple[Side, Side]]:
    """For a ``sides`` fixture: one live and one pybpf world, closed afterwards."""
    live, mine = Side(kernel), Side(None)
    yield live, mine
    live.close()
    mine.close()
