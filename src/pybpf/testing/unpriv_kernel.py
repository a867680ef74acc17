"""Loading programs in the live kernel as an unprivileged user (the Spectre oracle).

The kernel verifies a program loaded without CAP_BPF/CAP_PERFMON with the Spectre v1/v4
mitigations on (``bypass_spec_v1``/``v4`` false): speculative paths are simulated, pointer
arithmetic is masked through ``BPF_REG_AX`` and ``nospec`` barriers are inserted. To see
what it does we need such a load, and to see the result we need root again: an
unprivileged task gets ``xlated_prog_len = 0`` from ``BPF_OBJ_GET_INFO_BY_FD``.

So :func:`load_unprivileged` (root only) lowers ``kernel.unprivileged_bpf_disabled`` to 0
for the duration — restoring the old value whatever happens — forks a child that drops
every capability with ``capset(2)`` and loads each program, and the child hands each
loaded program's fd back over a ``SOCK_SEQPACKET`` pair (``SCM_RIGHTS``); the parent dumps
the xlated program and closes it. Map fds in the programs must be open in the caller: the
child inherits them.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SYSCTL = "/proc/sys/kernel/unprivileged_bpf_disabled"
_SYS_CAPSET = 126  # x86-64
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


@dataclass
class UnprivJob:
    """One program to load: type, raw instructions, flags, log level."""

    prog_type: int
    insns: bytes
    prog_flags: int = 0
    log_level: int = 1
    expected_attach_type: int = 0


@dataclass
class UnprivResult:
    ok: bool
    errno: int
    log: str
    xlated: list[Any] = field(default_factory=list)  # decoded Insns (root's dump)


def available() -> tuple[bool, str]:
    """Whether this process can run :func:`load_unprivileged`."""
    from pybpf.testing import kernel as K

    ok, why = K.available()
    if not ok:
        return False, why
    if os.geteuid() != 0 or not os.access(SYSCTL, os.W_OK):
        return False, "needs root to lower kernel.unprivileged_bpf_disabled"
    return True, ""


def _drop_caps() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    hdr = ctypes.create_string_buffer(struct.pack("<Ii", _LINUX_CAPABILITY_VERSION_3, 0), 8)
    data = ctypes.create_string_buffer(bytes(24), 24)
    if libc.syscall(_SYS_CAPSET, hdr, data) != 0:
        os._exit(99)


def _child(sock: socket.socket, jobs: Sequence[UnprivJob], log_size: int, out: str) -> None:
    from pybpf.testing import kernel as K

    _drop_caps()
    for job in jobs:
        r = K.prog_load(job.prog_type, job.insns, log_level=job.log_level,
                        log_size=log_size if job.log_level else 0, prog_flags=job.prog_flags,
                        expected_attach_type=job.expected_attach_type)
        # the log may outgrow a socket message: it goes through a file the parent reads
        with open(out, "w") as f:
            json.dump({"ok": r.fd >= 0, "errno": r.errno, "log": r.log}, f)
        if r.fd >= 0:
            socket.send_fds(sock, [b"r"], [r.fd])
            os.close(r.fd)
        else:
            sock.send(b"r")
        sock.recv(1)  # the parent has the program: next one


def load_unprivileged(jobs: Sequence[UnprivJob], log_size: int = 1 << 22) -> list[UnprivResult]:
    """Load every job without capabilities; verdict, errno, log and (root's) xlated dump."""
    from pybpf.testing import kernel as K

    with open(SYSCTL) as f:
        old = f.read().strip()
    out: list[UnprivResult] = []
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = -1
    tmp = tempfile.NamedTemporaryFile(suffix=".json", delete=False)  # noqa: SIM115
    tmp.close()  # the child keeps root's uid (its owner), only its capabilities go
    try:
        with open(SYSCTL, "w") as f:
            f.write("0")
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                parent.close()
                _child(child, jobs, log_size, tmp.name)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        child.close()
        for _ in jobs:
            msg, fds, _flags, _addr = socket.recv_fds(parent, 16, 1)
            if not msg:
                raise OSError("the capability-less child stopped early (capset refused?)")
            with open(tmp.name) as f:
                head = json.load(f)
            xl: list[Any] = []
            for fd in fds:
                try:
                    xl = K.prog_xlated(fd)
                finally:
                    os.close(fd)
            out.append(UnprivResult(bool(head["ok"]), int(head["errno"]), str(head["log"]), xl))
            parent.send(b"k")
    finally:
        parent.close()
        if pid > 0:
            os.waitpid(pid, 0)
        with open(SYSCTL, "w") as f:
            f.write(old)
        os.unlink(tmp.name)
    return out


__all__ = ["UnprivJob", "UnprivResult", "available", "load_unprivileged"]
