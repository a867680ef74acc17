"""ctx conversion of the remaining program types against the live kernel's xlated code.

PERF_EVENT (``pe_prog_convert_ctx_access``) and the socket/cgroup types pybpf can load
but not run here (``sock_addr_``, ``cg_sockopt_``, ``sysctl_``, ``sk_msg_``,
``sk_reuseport_``, ``sock_ops_convert_ctx_access``; CGROUP_DEVICE has none). Each type is
swept over every aligned (offset, size) of its ctx — reads, sign-extending reads, STX and
ST stores — for every attach type it may have; each case is loaded in the live kernel and
in pybpf, the verdict and errno must agree and accepted programs must have
instruction-for-instruction equal xlated code. The pairs asserted per sweep are
``(accepted by the kernel, cases)``, so a sweep that silently stops reaching the
converter fails too.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.program import Program

PERF_EVENT = 7
_CALL = 0x85
SIZES = {8: "u64", 4: "u32", 2: "u16", 1: "u8"}


def kernel_xlated(kernel: ModuleType, fd: int) -> list[Insn]:
    return kernel.prog_xlated(fd)


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
    """``dst = *(size *)(src + off)`` (``src`` a copy of the ctx), then exit 1."""
    kind = ("s" if sx else "u") + SIZES[size][1:]
    lines = [] if src == 1 else [f"r{src} = r1"]
    lines += [f"r{dst} = *({kind} *)(r{src} + {off})", "r0 = 1", "exit"]
    return "\n".join(lines) + "\n"


def write_prog(off: int, size: int, *, reg: bool = True, ctx: int = 1, val: int = 2) -> str:
    """``*(size *)(ctx + off) = val`` (STX; ST of an immediate when not ``reg``)."""
    lines = [] if ctx == 1 else [f"r{ctx} = r1"]
    if reg:
        lines += [f"r{val} = 7", f"*({SIZES[size]} *)(r{ctx} + {off}) = r{val}"]
    else:
        lines += [f"*({SIZES[size]} *)(r{ctx} + {off}) = 7"]
    return "\n".join([*lines, "r0 = 1", "exit"]) + "\n"


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


# ---------------------------------------------------------------- CGROUP_SOCK_ADDR

SOCK_ADDR = 18
#: every attach type a cgroup/sock_addr program may have in 6.18, with the accepted
#: reads + sign-extending reads + writes of a full sweep (measured on the live kernel)
SOCK_ADDR_ATTACH: dict[str, tuple[int, int]] = {
    "inet4_bind": (8, 41), "inet6_bind": (9, 95), "inet4_connect": (10, 41),
    "inet6_connect": (11, 95), "udp4_sendmsg": (14, 57), "udp6_sendmsg": (15, 162),
    "udp4_recvmsg": (19, 41), "udp6_recvmsg": (20, 95), "inet4_getpeername": (29, 41),
    "inet6_getpeername": (30, 95), "inet4_getsockname": (31, 41),
    "inet6_getsockname": (32, 95), "unix_connect": (49, 25), "unix_sendmsg": (50, 25),
    "unix_recvmsg": (51, 25), "unix_getpeername": (52, 25),
    "unix_getsockname": (53, 25), "no_attach_type": (0, 0),
}


@pytest.mark.parametrize("name", list(SOCK_ADDR_ATTACH))
def test_sock_addr_every_field(kernel: ModuleType, kernel_fds: Any, name: str) -> None:
    attach, want = SOCK_ADDR_ATTACH[name]
    assert sweep(kernel, kernel_fds, SOCK_ADDR, 72, attach, writes=True, sx=True) == (want, 590)


@pytest.mark.parametrize("attach", [10, 11, 15])
@pytest.mark.parametrize("ctx,val", [(9, 8), (8, 9), (7, 9), (9, 7), (1, 9), (2, 3)])
def test_sock_addr_store_scratch_register(kernel: ModuleType, kernel_fds: Any, attach: int,
                                          ctx: int, val: int) -> None:
    """Stores borrow R9, R8 or R7 — whichever the access leaves free — and restore it."""
    progs = [write_prog(off, 4, ctx=ctx, val=val) for off in (4, 8, 20, 24, 40, 44, 56)]
    progs += [write_prog(off, 8, ctx=ctx, val=val) for off in (8, 16, 48)]
    accepted = sum(compare(kernel, kernel_fds, SOCK_ADDR, text, attach) for text in progs)
    assert accepted == {10: 2, 11: 5, 15: 8}[attach]


# ---------------------------------------------------------------- CGROUP_SOCKOPT

SOCKOPT = 25
CGROUP_GETSOCKOPT, CGROUP_SETSOCKOPT = 21, 22


@pytest.mark.parametrize("attach,want", [(CGROUP_GETSOCKOPT, 15), (CGROUP_SETSOCKOPT, 15),
                                         (0, 0)])
def test_sockopt_every_field(kernel: ModuleType, kernel_fds: Any, attach: int,
                             want: int) -> None:
    """getsockopt: 3 pointers + level/optname/optlen/retval read (and ``ldsx``-ed),
    retval/optlen written (STX and ST); setsockopt: level/optname/optlen instead."""
    got = sweep(kernel, kernel_fds, SOCKOPT, 40, attach, writes=True, sx=True)
    assert got == (want, 354)


@pytest.mark.parametrize("attach", [CGROUP_GETSOCKOPT, CGROUP_SETSOCKOPT])
@pytest.mark.parametrize("ctx,val", [(9, 8), (8, 9), (7, 9), (9, 7), (1, 9), (2, 3)])
def test_sockopt_store_scratch_register(kernel: ModuleType, kernel_fds: Any, attach: int,
                                        ctx: int, val: int) -> None:
    progs = [write_prog(off, 4, ctx=ctx, val=val) for off in (24, 28, 32, 36)]
    progs.append(read_prog(36, 4, src=ctx, dst=val))
    accepted = sum(compare(kernel, kernel_fds, SOCKOPT, text, attach) for text in progs)
    assert accepted == 3


# ---------------------------------------------------------------- CGROUP_SYSCTL

SYSCTL, CGROUP_SYSCTL = 23, 18


def test_sysctl_every_field(kernel: ModuleType, kernel_fds: Any) -> None:
    """``write`` read whole/narrow, ``file_pos`` read whole/narrow and written whole."""
    got = sweep(kernel, kernel_fds, SYSCTL, 8, CGROUP_SYSCTL, writes=True, sx=True)
    assert got == (30, 118)


@pytest.mark.parametrize("ctx,val", [(9, 8), (8, 9), (7, 9), (9, 7), (1, 9), (2, 3)])
def test_sysctl_store_scratch_register(kernel: ModuleType, kernel_fds: Any, ctx: int,
                                       val: int) -> None:
    assert compare(kernel, kernel_fds, SYSCTL, write_prog(4, 4, ctx=ctx, val=val),
                   CGROUP_SYSCTL)
    assert compare(kernel, kernel_fds, SYSCTL, read_prog(4, 2, src=ctx, dst=val),
                   CGROUP_SYSCTL)


# ---------------------------------------------------------------- SK_MSG, SK_REUSEPORT

SK_MSG, SK_MSG_VERDICT = 16, 7
SK_REUSEPORT, REUSEPORT_SELECT, REUSEPORT_SELECT_OR_MIGRATE = 21, 39, 40


@pytest.mark.parametrize("attach", [SK_MSG_VERDICT, 0])
def test_sk_msg_every_field(kernel: ModuleType, kernel_fds: Any, attach: int) -> None:
    """data/data_end/sk, then 14 four-byte fields read (and ``ldsx``-ed); no writes."""
    assert sweep(kernel, kernel_fds, SK_MSG, 80, attach, writes=True, sx=True) == (31, 649)


@pytest.mark.parametrize("attach", [REUSEPORT_SELECT, REUSEPORT_SELECT_OR_MIGRATE, 0])
def test_sk_reuseport_every_field(kernel: ModuleType, kernel_fds: Any, attach: int) -> None:
    """Pointers, hash, and the narrowable len/eth_protocol/ip_protocol/bind_inany."""
    got = sweep(kernel, kernel_fds, SK_REUSEPORT, 56, attach, writes=True, sx=True)
    assert got == (54, 472)


@pytest.mark.parametrize("ptype,offs", [(SK_MSG, (16, 20, 28, 56, 60, 64, 68)),
                                        (SK_REUSEPORT, (16, 20, 24, 28, 32))])
def test_sockmap_types_other_registers(kernel: ModuleType, kernel_fds: Any, ptype: int,
                                       offs: tuple[int, ...]) -> None:
    for off in offs:
        assert compare(kernel, kernel_fds, ptype, read_prog(off, 4, src=6, dst=3))
        assert compare(kernel, kernel_fds, ptype, read_prog(off, 4, src=2, dst=2))


# ---------------------------------------------------------------- SOCK_OPS

SOCK_OPS, CGROUP_SOCK_OPS = 13, 3


@pytest.mark.parametrize("attach", [CGROUP_SOCK_OPS, 0])
def test_sock_ops_every_field(kernel: ModuleType, kernel_fds: Any, attach: int) -> None:
    """41 fields: reply/sk_txhash writable, 8-byte counters and pointers whole, the
    skb's tcp flags narrow, the rest whole u32s."""
    assert sweep(kernel, kernel_fds, SOCK_OPS, 224, attach, writes=True, sx=True) == (102, 1711)


@pytest.mark.parametrize("ctx,dst", [(1, 1), (9, 9), (8, 8), (1, 9), (9, 8), (2, 2)])
def test_sock_ops_guarded_fields_same_register(kernel: ModuleType, kernel_fds: Any, ctx: int,
                                               dst: int) -> None:
    """Guarded reads (tcp_sock fields, ``sk``) with the destination being the ctx
    register need a borrowed register and zero the destination on the unset path."""
    for off in (76, 84, 92, 112, 116, 164, 168, 184, 192, 208, 212, 216):
        size = 8 if off in (168, 184, 192, 216) else 4
        assert compare(kernel, kernel_fds, SOCK_OPS, read_prog(off, size, src=ctx, dst=dst))


@pytest.mark.parametrize("ctx,val", [(9, 8), (8, 9), (7, 9), (9, 7), (1, 9), (2, 3)])
def test_sock_ops_store_scratch_register(kernel: ModuleType, kernel_fds: Any, ctx: int,
                                         val: int) -> None:
    for off in (4, 164):
        assert compare(kernel, kernel_fds, SOCK_OPS, write_prog(off, 4, ctx=ctx, val=val))


# ---------------------------------------------------------------- CGROUP_DEVICE

CGROUP_DEVICE_TYPE, BPF_CGROUP_DEVICE = 15, 6


def test_cgroup_device_reads_in_place(kernel: ModuleType, kernel_fds: Any) -> None:
    """``cg_dev_verifier_ops`` has no ``convert_ctx_access``: ``struct
    bpf_cgroup_dev_ctx`` is what the program runs on, so reads stay as written."""
    got = sweep(kernel, kernel_fds, CGROUP_DEVICE_TYPE, 12, BPF_CGROUP_DEVICE, writes=True,
                sx=True)
    assert got == (18, 149)
