"""``BPF_PROG_TEST_RUN`` for programs whose ctx is plain memory: raw tracepoints
(``bpf_prog_test_run_raw_tp``: ctx_in is the u64 argument array, optionally on another
CPU) and syscall programs (``bpf_prog_test_run_syscall``: ctx_in is any struct the
program reads and writes; the kernel copies it back *into ctx_in*).

Neither reports data_out, ctx_out nor duration, and neither repeats.
"""

from __future__ import annotations

import errno
from typing import Any

from pybpf.isa.opcodes import Cls, Mode, Src
from pybpf.progs.ops import TestRunOpts, TestRunResult
from pybpf.progs.testrun_common import (
    BPF_F_TEST_RUN_ON_CPU,
    cpu_online,
    current_cpu,
    run_repeat,
)
from pybpf.runtime.memory import REGISTRY

RAW_TRACEPOINT, SYSCALL = 17, 31
MAX_BPF_FUNC_ARGS = 12
U16_MAX = 0xFFFF
_SIZE_BYTES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}  # BPF_W, BPF_H, BPF_B, BPF_DW


def max_ctx_offset(prog: Any) -> int:
    """``prog->aux->max_ctx_offset``: the end of the furthest ctx byte the program reads.

    The verifier records it; until pybpf's does (``prog.aux["max_ctx_offset"]``) a scan of
    the main program follows copies of R1 along the instruction stream (calls clobber
    R1-R5) and takes every load through one of them — enough for compiled programs, which
    load their arguments up front.
    """
    known = getattr(prog, "aux", {}).get("max_ctx_offset")
    if known is not None:
        return int(known)
    insns = list(getattr(prog, "insns", []) or [])
    ctx_regs = {1}
    best = 0
    for insn in insns:
        code = insn.code
        cls = code & 0x07
        if cls == Cls.LDX and code & 0xE0 in (Mode.MEM, Mode.MEMSX):
            if insn.src in ctx_regs:
                best = max(best, insn.off + _SIZE_BYTES[code & 0x18])
            ctx_regs.discard(insn.dst)
        elif cls in (Cls.ALU64, Cls.ALU) and code & 0xF0 == 0xB0:  # mov
            if cls == Cls.ALU64 and code & 0x08 == Src.X and insn.src in ctx_regs \
                    and insn.off == 0:
                ctx_regs.add(insn.dst)
            else:
                ctx_regs.discard(insn.dst)
        elif cls in (Cls.ALU64, Cls.ALU, Cls.LD):
            ctx_regs.discard(insn.dst)
        elif cls == Cls.JMP and code & 0xF0 == 0x80:  # call
            ctx_regs -= {0, 1, 2, 3, 4, 5}
        elif cls == Cls.JMP and code & 0xF0 == 0x90:  # exit: the main program ends here
            break
    return best


def _run_on_ctx(prog: Any, kernel: Any, ctx: bytes, cpu: int) -> tuple[int, bytes]:
    """Run once with R1 pointing at a copy of ``ctx`` (NULL when empty)."""
    if not ctx:
        retval, _ = run_repeat(prog, kernel, 0, 1, cpu=cpu)
        return retval, b""
    region = REGISTRY.alloc(len(ctx), "test_run ctx")
    try:
        region.mv[:] = ctx
        retval, _ = run_repeat(prog, kernel, region.start, 1, cpu=cpu)
        return retval, bytes(region.mv)
    finally:
        REGISTRY.remove(region)


def test_run_raw_tp(prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
    """``bpf_prog_test_run_raw_tp``."""
    if opts.has_data_in or opts.data_size_in or opts.has_data_out or opts.has_ctx_out \
            or opts.duration or opts.repeat or opts.batch_size:
        return TestRunResult(errno=errno.EINVAL)
    size = opts.ctx_size_in
    if size < max_ctx_offset(prog) or size > MAX_BPF_FUNC_ARGS * 8:
        return TestRunResult(errno=errno.EINVAL)
    on_cpu = bool(opts.flags & BPF_F_TEST_RUN_ON_CPU)
    if not on_cpu and opts.cpu:
        return TestRunResult(errno=errno.EINVAL)
    ctx = (opts.ctx_in or b"") if size else b""
    here = current_cpu()
    cpu = opts.cpu if on_cpu else here
    if on_cpu and cpu != here and not cpu_online(cpu):
        return TestRunResult(errno=errno.ENXIO)
    retval, _ = _run_on_ctx(prog, kernel, ctx, cpu)
    return TestRunResult(retval=retval, write_duration=False)


def test_run_syscall(prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
    """``bpf_prog_test_run_syscall``: the ctx the program leaves goes back to ctx_in."""
    if opts.has_data_in or opts.data_size_in or opts.has_data_out or opts.has_ctx_out \
            or opts.duration or opts.repeat or opts.flags or opts.batch_size:
        return TestRunResult(errno=errno.EINVAL)
    size = opts.ctx_size_in
    if size < max_ctx_offset(prog) or size > U16_MAX:
        return TestRunResult(errno=errno.EINVAL)
    addr = opts.ctx_in_addr  # before the lazy reader is replaced by the bytes it read
    ctx = (opts.ctx_in or b"") if size else b""
    retval, after = _run_on_ctx(prog, kernel, ctx, current_cpu())
    if size and addr:
        err = _copy_to_user(addr, after)
        if err:
            return TestRunResult(errno=err)
    return TestRunResult(retval=retval, write_duration=False)


def _copy_to_user(addr: int, data: bytes) -> int:
    """``copy_to_user``: 0 or EFAULT."""
    from pybpf.errors import BpfError
    from pybpf.syscall.uaccess import copy_to_user

    try:
        copy_to_user(addr, data)
    except BpfError as exc:
        return int(exc.errno or 14)
    return 0
