"""Verifier logs of every program of a BPF object, in the live kernel or in pybpf.

Differential tests load the same clang-built object twice with pybpf's loader — once
through the host's ``bpf()``, once through a pybpf instance — one program at a time (a
refused program must not hide the others), with a log buffer at a given level, and compare
errno and log. Map addresses printed in the log differ between the worlds;
:func:`normalize` blanks them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from dataclasses import dataclass
from typing import Any

from pybpf.btf.raw import Btf
from pybpf.btf.relo_core import CandidateIndex
from pybpf.errors import BpfError
from pybpf.loader.elf_object import open_object
from pybpf.loader.externs import KernelFacts
from pybpf.loader.load import LiveSyscalls, load_object

VMLINUX = "/sys/kernel/btf/vmlinux"
LOG_SIZE = 1 << 22
BPF_PROG_LOAD = 5
_ADDR = re.compile(r"0x[0-9a-f]{8,}")
_ADDR_PAD = re.compile(r"0x[0-9a-f]{8,} *(?= ;)")  # the state column aligns after the address
_TIME = re.compile(r"^verification time \d+ usec$", re.M)
_TARGET: list[CandidateIndex] = []


@dataclass(frozen=True)
class ProgLog:
    """What ``BPF_PROG_LOAD`` of one program answered."""

    errno: int
    log: str


class _Capture:
    """A ``Syscalls`` that gives every program load a log buffer and keeps the answer."""

    def __init__(self, inner: Any, level: int) -> None:
        self.inner, self.level = inner, level
        self.logs: dict[str, ProgLog] = {}

    def bpf(self, cmd: int, attr: Any, size: int | None = None) -> int:
        buf = None
        if cmd == BPF_PROG_LOAD:
            buf = ctypes.create_string_buffer(LOG_SIZE)
            attr.log_level, attr.log_size, attr.log_buf = self.level, LOG_SIZE, ctypes.addressof(buf)
        ret = int(self.inner.bpf(cmd, attr, size))
        if buf is not None:
            name = bytes(attr.prog_name).rstrip(b"\0").decode()
            self.logs[name] = ProgLog(-ret if ret < 0 else 0, buf.value.decode(errors="replace"))
        return ret

    def close(self, fd: int) -> Any:
        return self.inner.close(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def vmlinux_target() -> CandidateIndex | None:
    """The host's kernel BTF as a CO-RE/ksym target (``None`` without one)."""
    if not _TARGET:
        if not os.path.exists(VMLINUX):
            return None
        _TARGET.append(CandidateIndex(Btf.from_file(VMLINUX)))
    return _TARGET[0]


def program_logs(path: str | os.PathLike[str], world: Any, level: int) -> dict[str, ProgLog]:
    """Load each entry program of ``path`` on its own into ``world`` (a pybpf ``Kernel`` or
    ``"live"``) at log ``level``; the answer per program (by its 15-character name)."""
    sysc = LiveSyscalls() if world == "live" else world
    cap = _Capture(sysc, level)
    target = vmlinux_target()
    facts = KernelFacts.host(target.btf) if target is not None else None
    names = [p.name for p in open_object(path).programs if not p.is_subprog]
    for name in names:
        obj = open_object(path)
        for p in obj.programs:
            if not p.is_subprog:
                p.autoload = p.name == name
        with contextlib.suppress(BpfError):  # a refusal is in cap.logs
            load_object(obj, cap, log_level=level, target=target, facts=facts).close()
    return cap.logs


def normalize(log: str) -> str:
    """Blank what differs between worlds by nature: addresses, verification time."""
    log = _ADDR.sub("ADDR", _ADDR_PAD.sub("ADDR", log))
    return _TIME.sub("verification time N usec", log)


def log_mismatches(path: str | os.PathLike[str], world: Any, level: int) -> tuple[list[str], list[str]]:
    """Every entry program of ``path`` loaded in the live kernel and in ``world`` (a pybpf
    ``Kernel``) at log ``level``: (the kernel's program names, the names whose errno or
    normalized log differ, or that only one side loaded)."""
    live = program_logs(path, "live", level)
    ours = program_logs(path, world, level)
    bad = sorted(set(live) ^ set(ours))
    bad += [n for n, want in live.items() if n in ours
            and (ours[n].errno, normalize(ours[n].log)) != (want.errno, normalize(want.log))]
    return sorted(live), bad
