"""Tracing helpers against the live kernel: ``bpf_probe_read*`` on bad addresses (errno and
zero fill) and the ``current`` task helpers, run by ``BPF_PROG_TEST_RUN`` of raw tracepoint
and syscall programs in both."""

from __future__ import annotations

import ctypes
import os
import struct
from types import ModuleType

import pytest

from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.kernel import Kernel, Task
from pybpf.program import Program
from pybpf.uapi.kernel_structs import KSTRUCTS

RAW_TP, SYSCALL = 17, 31
BPF_F_SLEEPABLE = 1 << 4
PROBE_HELPERS = {"probe_read": 4, "probe_read_str": 45, "probe_read_user": 112,
                 "probe_read_kernel": 113, "probe_read_user_str": 114,
                 "probe_read_kernel_str": 115}
USER_BUF = ctypes.create_string_buffer(b"hello\0world", 32)
ADDRESSES = {
    "null": 0, "page": 0x1000, "user": ctypes.addressof(USER_BUF),
    "user_unmapped": 0x100_0000_0000, "noncanonical": 0x8000_0000_0000_0000,
    "guard_hole": 0xFFFF_8000_0000_0000, "kernel_unmapped": 0xFFFF_C8FF_FF00_0000,
    "vsyscall": 0xFFFF_FFFF_FF60_0000, "top": 0xFFFF_FFFF_FFFF_FFF0,
}


def _ret_prog(fid: int, size: int) -> str:
    """helper(fp-64, size, ctx[0]); return its r0 as s32."""
    return f"""
        r3 = *(u64 *)(r1 + 0)
        r1 = r10
        r1 += -64
        r2 = {size}
        call {fid}
        exit"""


def _fill_prog(fid: int, size: int) -> str:
    """Pre-fill fp-8 with 0xff, helper(fp-8, size, ctx[0]); return the low half."""
    return f"""
        r3 = *(u64 *)(r1 + 0)
        r1 = -1
        *(u64 *)(r10 - 8) = r1
        r1 = r10
        r1 += -8
        r2 = {size}
        call {fid}
        r0 = *(u32 *)(r10 - 8)
        exit"""


def _kernel_raw_tp(kernel: ModuleType, text: str, args: bytes) -> int:
    r = kernel.prog_load(RAW_TP, encode(assemble(text, syntax="kernel")))
    assert r.errno == 0, r.log
    try:
        res = kernel.prog_test_run(r.fd, ctx_in=args, repeat=0)
        assert res.errno == 0
        return int(res.retval)
    finally:
        os.close(r.fd)


def _pybpf_raw_tp(k: Kernel, text: str, args: bytes, task: Task | None = None) -> int:
    prog = Program.load(k, RAW_TP, assemble(text, syntax="kernel"), task=task)
    try:
        return int(prog.test_run(ctx_in=args, repeat=0).retval)
    finally:
        prog.close()


@pytest.fixture(scope="module")
def k() -> Kernel:
    return Kernel()


@pytest.mark.parametrize("helper", sorted(PROBE_HELPERS))
def test_probe_read_errno_vs_kernel(kernel: ModuleType, k: Kernel, helper: str) -> None:
    fid = PROBE_HELPERS[helper]
    for size in (8, 3):
        for name, addr in ADDRESSES.items():
            args = struct.pack("<Q", addr)
            for text in (_ret_prog(fid, size), _fill_prog(fid, size)):
                want = _kernel_raw_tp(kernel, text, args)
                got = _pybpf_raw_tp(k, text, args)
                assert got == want, (helper, size, name, hex(got), hex(want))


def test_probe_read_kernel_reads_registered_memory(k: Kernel) -> None:
    """pybpf's kernel memory is the registry: probe_read_kernel reads it where the live
    kernel would refuse a user address (ERANGE)."""
    from pybpf.runtime.memory import REGISTRY

    region = REGISTRY.alloc(16, "test kernel object")
    try:
        region.mv[:11] = b"hello\0world"
        args = struct.pack("<Q", region.start)
        assert _pybpf_raw_tp(k, _fill_prog(113, 8), args) == int.from_bytes(b"hell", "little")
        assert _pybpf_raw_tp(k, _ret_prog(115, 16), args) == 6
        # a string running into unregistered memory faults as a whole and is zeroed
        region.mv[:] = b"x" * 16
        assert _pybpf_raw_tp(k, _ret_prog(115, 32), args) == (-14) & 0xFFFFFFFF
        assert _pybpf_raw_tp(k, _fill_prog(115, 8), args) == int.from_bytes(b"xxxx", "little")
    finally:
        REGISTRY.remove(region)


# ------------------------------------------------------------------------ current task
def _comm() -> str:
    with open("/proc/self/comm") as f:
        return f.read().strip()


CURRENT_PROGS = {
    "pid": "call 14\nexit",
    "tgid": "call 14\nr0 >>= 32\nexit",
    "uid": "call 15\nexit",
    "gid": "call 15\nr0 >>= 32\nexit",
    "comm": """
        r1 = r10
        r1 += -16
        r2 = 16
        call 16
        r0 = *(u32 *)(r10 - 16)
        exit""",
    "comm_short": """
        r1 = -1
        *(u64 *)(r10 - 8) = r1
        r1 = r10
        r1 += -8
        r2 = 3
        call 16
        r0 = *(u32 *)(r10 - 8)
        exit""",
    "task_pid": f"""
        call 35
        r3 = r0
        r3 += {KSTRUCTS["task_struct"].off("pid")}
        r1 = r10
        r1 += -8
        r2 = 4
        call 113
        r0 = *(u32 *)(r10 - 8)
        exit""",
    "task_comm": f"""
        call 35
        r3 = r0
        r3 += {KSTRUCTS["task_struct"].off("comm")}
        r1 = r10
        r1 += -16
        r2 = 16
        call 115
        r0 = *(u32 *)(r10 - 16)
        exit""",
}


@pytest.mark.parametrize("what", sorted(CURRENT_PROGS))
def test_current_task_helpers_vs_kernel(kernel: ModuleType, what: str) -> None:
    """The test run runs as its caller: this process in the kernel; in pybpf a task with
    this process's pid and comm (the instance's first task has the process's pid)."""
    if os.getpid() != os.gettid() if hasattr(os, "gettid") else False:
        pytest.skip("not on the main thread")
    k = Kernel()
    assert k.root.pid == os.getpid()
    k.root.comm = _comm()
    text = CURRENT_PROGS[what]
    assert _pybpf_raw_tp(k, text, bytes(8)) == _kernel_raw_tp(kernel, text, bytes(8))


def test_current_comm_in_syscall_program_vs_kernel(kernel: ModuleType) -> None:
    text = CURRENT_PROGS["comm"]
    r = kernel.prog_load(SYSCALL, encode(assemble(text, syntax="kernel")),
                         prog_flags=BPF_F_SLEEPABLE)
    assert r.errno == 0, r.log
    try:
        want = kernel.prog_test_run(r.fd, repeat=0).retval
    finally:
        os.close(r.fd)
    k = Kernel()
    k.root.comm = _comm()
    prog = Program.load(k, SYSCALL, assemble(text, syntax="kernel"), prog_flags=BPF_F_SLEEPABLE)
    assert prog.test_run(repeat=0).retval == want
