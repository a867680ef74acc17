"""Live-kernel pieces the attach differential tests share: a throwaway veth pair, the
real ``bpf()`` returning ``-errno`` like pybpf's, and loading programs with their ids."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode


@contextlib.contextmanager
def veth(prefix: str, *, up: bool = False) -> Iterator[tuple[str, str, int]]:
    """A veth pair ``(name, peer, ifindex of name)``, deleted afterwards; skips visibly
    where links cannot be created (no CAP_NET_ADMIN)."""
    name = prefix + uuid.uuid4().hex[:8]
    peer = name + "p"
    r = subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot create a veth here: {r.stderr.strip()}")
    try:
        if up:
            for n in (name, peer):
                subprocess.run(["ip", "link", "set", n, "up"], check=True, capture_output=True)
        with open(f"/sys/class/net/{name}/ifindex") as f:
            ifindex = int(f.read())
        yield name, peer, ifindex
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def live_bpf(kernel: Any) -> Callable[[int, Any], int]:
    """The live ``bpf(cmd, attr)`` with pybpf's convention: the result or ``-errno``."""

    def call(cmd: int, attr: Any) -> int:
        ret, err = kernel.sys_bpf(cmd, attr)
        return -err if err else ret

    return call


def load_live(kernel: Any, prog_type: int, text: str, n: int,
              expected_attach_type: int = 0) -> tuple[list[int], list[int]]:
    """``n`` copies of an assembled program in the live kernel: (fds, ids)."""
    fds, ids = [], []
    for _ in range(n):
        res = kernel.prog_load(prog_type, encode(assemble(text, syntax="kernel")),
                               expected_attach_type=expected_attach_type)
        assert res.fd >= 0, res.log
        fds.append(res.fd)
        ids.append(kernel.prog_info(res.fd).id)
    return fds, ids


def close_all(fds: list[int | None]) -> None:
    for fd in fds:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
