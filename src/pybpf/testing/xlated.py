"""Comparing xlated programs, pybpf's with the live kernel's, in tests.

Two things legitimately differ between the two: the 64-bit value an ``ld_imm64`` holds
after map resolution (a kernel address there, a pybpf one here) and the immediate of a
helper call (relative to ``__bpf_call_base`` there, a helper id or internal target id
here). :func:`comparable` leaves them out; everything else must be equal.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from typing import Any

from pybpf.isa.insn import Insn, decode

LD_IMM64, CALL = 0x18, 0x85


def comparable(insns: Iterable[Insn], helper_imms: bool = False,
               kfunc_imms: bool = True) -> list[tuple[int, ...]]:
    """The instructions as tuples without ``ld_imm64`` values (and, unless
    ``helper_imms`` / ``kfunc_imms``, without the immediates of helper / kfunc calls: the
    kernel's are addresses relative to ``__bpf_call_base``, pybpf's ids)."""
    out: list[tuple[int, ...]] = []
    skip = False
    for ins in insns:
        if skip:
            skip = False
        elif ins.code == LD_IMM64:
            out.append((ins.code, ins.dst))
            skip = True
        elif ins.code == CALL and ins.src == 0 and not helper_imms:
            out.append((ins.code,))
        elif ins.code == CALL and ins.src == 2 and not kfunc_imms:
            out.append((ins.code, ins.src))
        else:
            out.append((ins.code, ins.dst, ins.src, ins.off, ins.imm))
    return out


def verified_with_map(bmap: Any, insns: list[Insn], prog_type: int, fd: int) -> list[Insn]:
    """pybpf's xlated program of ``insns`` whose ``ld_imm64`` map fd ``fd`` is ``bmap``
    (asserting the verifier accepts it)."""
    from pybpf.verifier.api import VerifierInput, bpf_check

    res = bpf_check(VerifierInput(insns=insns, prog_type=prog_type, map_by_fd={fd: bmap}.get))
    assert res.errno == 0, res.log
    return list(res.insns)


__all__ = ["comparable", "verified_with_map"]


def pybpf_xlated(task: Any, fd: int) -> list[Insn]:
    """A pybpf program's xlated instructions as ``BPF_OBJ_GET_INFO_BY_FD`` hands them to
    user space (what ``bpftool prog dump xlated`` prints): ``task`` is a pybpf task
    (``kernel.root``), ``fd`` the program's fd there."""
    from pybpf.syscall.info import get_info
    from pybpf.uapi import BpfCmd, bpf_attr, bpf_prog_info

    n = get_info(task, fd).xlated_prog_len
    buf = ctypes.create_string_buffer(n)
    info = bpf_prog_info()
    info.xlated_prog_len, info.xlated_prog_insns = n, ctypes.addressof(buf)
    attr = bpf_attr()
    attr.info.bpf_fd, attr.info.info_len = fd, ctypes.sizeof(info)
    attr.info.info = ctypes.addressof(info)
    if task.bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, attr) != 0:
        raise OSError(f"BPF_OBJ_GET_INFO_BY_FD failed for fd {fd}")
    return decode(buf.raw[:n])


def object_xlated(path: str | Any, name: str, world: Any) -> list[Insn]:
    """The xlated program of program ``name`` of the clang-built object ``path``, loaded on
    its own by pybpf's loader into ``world``: ``"live"`` (the host's ``bpf()``) or a pybpf
    ``Kernel``."""
    import pybpf.skel as skel
    from pybpf.testing import kernel as oracle

    o = skel.open(str(path), kernel=world)
    for p in o.progs:
        p.autoload = p.name == name
    o.load()
    try:
        fd = getattr(o.progs, name).fd
        return oracle.prog_xlated(fd) if world == "live" else pybpf_xlated(o._task(), fd)
    finally:
        o.close()
