"""ctx conversion of the remaining program types against the live kernel's xlated code.

PERF_EVENT (``pe_prog_convert_ctx_access``) and the socket/cgroup types pybpf can load
but not run here (``sock_addr_convert_ctx_access``, ``cg_sockopt_convert_ctx_access``,
``sysctl_convert_ctx_access``…): each case is loaded in the live kernel and in pybpf with
the same ``expected_attach_type``; the verdict and errno must agree and accepted programs
must have instruction-for-instruction equal xlated code (helper-call immediates, which
are kernel addresses, normalised away).
"""

from __future__ import annotations

import ctypes
from types import ModuleType
from typing import Any

import pytest

from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn, decode, encode
from pybpf.kernel import Kernel
from pybpf.program import Program

PERF_EVENT = 7
_CALL = 0x85
SIZES = {8: "u64", 4: "u32", 2: "u16", 1: "u8"}


def kernel_xlated(kernel: ModuleType, fd: int) -> list[Insn]:
    from pybpf.uapi import bpf_prog_info

    info = bpf_prog_info()
    assert kernel.obj_get_info_by_fd(fd, info) == 0
    n = info.xlated_prog_len
    buf = ctypes.create_string_buffer(n)
    info2 = bpf_prog_info()
    info2.xlated_prog_len = n
    info2.xlated_prog_insns = ctypes.addressof(buf)
    assert kernel.obj_get_info_by_fd(fd, info2) == 0
    return decode(buf.raw[:n])


def normalise(insns: list[Insn]) -> list[Insn]:
    return [i._replace(imm=0) if i.code == _CALL and i.src == 0 else i for i in insns]


def compare(kernel: ModuleType, fds: Any, prog_type: int, text: str, attach: int = 0) -> bool:
    """Load ``text`` in both; same verdict and errno; equal xlated code when accepted.
    Returns whether the kernel accepted it."""
    raw = encode(assemble(text))
    res = fds.prog_load(prog_type, raw, expected_attach_type=attach, log_level=1,
                        log_size=1 << 16)
    pk = Kernel()
    if not res.ok:
        with pytest.raises(BpfError) as exc:
            Program.load(pk, prog_type, raw, expected_attach_type=attach)
        assert exc.value.errno == res.errno, (text, res.log)
        return False
    ours = Program.load(pk, prog_type, raw, expected_attach_type=attach).obj.xlated
    theirs = kernel_xlated(kernel, res.fd)
    assert normalise(ours) == normalise(theirs), (text, ours, theirs)
    return True


def read_prog(off: int, size: int, *, sx: bool = False, src: int = 1, dst: int = 0) -> str:
    """``dst = *(size *)(src + off)`` (``src`` a copy of the ctx), then exit 0."""
    kind = ("s" if sx else "u") + SIZES[size][1:]
    lines = [] if src == 1 else [f"r{src} = r1"]
    lines += [f"r{dst} = *({kind} *)(r{src} + {off})", "r0 = 0", "exit"]
    return "\n".join(lines) + "\n"


def write_prog(off: int, size: int, *, reg: bool = True) -> str:
    if reg:
        return f"r2 = 7\n*({SIZES[size]} *)(r1 + {off}) = r2\nr0 = 1\nexit\n"
    return f"*({SIZES[size]} *)(r1 + {off}) = 7\nr0 = 1\nexit\n"


def sweep(kernel: ModuleType, fds: Any, prog_type: int, ctx_size: int, attach: int = 0,
          writes: bool = False, sx: bool = False) -> tuple[int, int]:
    """Every aligned (offset, size) of the ctx, read (and written with STX/ST when
    ``writes``): ``(accepted by the kernel, compared)``."""
    accepted = total = 0
    for size in (8, 4, 2, 1):
        for off in range(0, ctx_size + 8, size):
            progs = [read_prog(off, size)]
            if sx and size < 8:
                progs.append(read_prog(off, size, sx=True))
            if writes:
                progs += [write_prog(off, size), write_prog(off, size, reg=False)]
            for text in progs:
                total += 1
                accepted += compare(kernel, fds, prog_type, text, attach)
    return accepted, total


# ---------------------------------------------------------------- PERF_EVENT


def test_perf_event_every_field(kernel: ModuleType, kernel_fds: Any) -> None:
    """All of ``struct bpf_perf_event_data``: the 21 ``pt_regs`` slots (8 bytes only),
    ``sample_period`` and ``addr`` whole and narrow, and what lies past the end."""
    accepted, total = sweep(kernel, kernel_fds, PERF_EVENT, 184, sx=True)
    # reads: 21 + 2 * (1 + 2 + 4 + 8); sign-extending narrow reads: 2 * (2 + 4 + 8)
    assert (accepted, total) == (79, 696)


@pytest.mark.parametrize("off", [0, 128, 160, 168, 172, 174, 176, 183])
def test_perf_event_other_registers(kernel: ModuleType, kernel_fds: Any, off: int) -> None:
    """The conversion keeps the program's own registers (dst != src, src not r1)."""
    size = 8 if off % 8 == 0 else 1 << (off & -off).bit_length() - 1
    assert compare(kernel, kernel_fds, PERF_EVENT, read_prog(off, size, src=6, dst=3))
    assert compare(kernel, kernel_fds, PERF_EVENT, read_prog(off, size, src=2, dst=2))


def test_perf_event_writes_refused(kernel: ModuleType, kernel_fds: Any) -> None:
    for off in (0, 168, 176):
        assert not compare(kernel, kernel_fds, PERF_EVENT, write_prog(off, 8))
        assert not compare(kernel, kernel_fds, PERF_EVENT, write_prog(off, 8, reg=False))
