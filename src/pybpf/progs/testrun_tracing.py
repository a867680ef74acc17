"""``BPF_PROG_TEST_RUN`` for programs whose ctx is plain memory: raw tracepoints
(``bpf_prog_test_run_raw_tp``: ctx_in is the u64 argument array, optionally on another
CPU) and syscall programs (``bpf_prog_test_run_syscall``: ctx_in is any struct the
program reads and writes; the kernel copies it back *into ctx_in*).

Neither reports data_out, ctx_out nor duration, and neither repeats.
"""

from __future__ import annotations

import errno
from typing import Any

from pybpf.helpers.task import running_as
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


def _run_on_ctx(prog: Any, kernel: Any, ctx: bytes, cpu: int,
                task: Any = None) -> tuple[int, bytes]:
    """Run once with R1 pointing at a copy of ``ctx`` (NULL when empty), with the calling
    ``task`` as ``current`` (what ``bpf_get_current_*`` report)."""
    with running_as(kernel, task):
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
    retval, _ = _run_on_ctx(prog, kernel, ctx, cpu, opts.task)
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
    retval, after = _run_on_ctx(prog, kernel, ctx, current_cpu(), opts.task)
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


FENTRY_TEST_CALLS: tuple[tuple[str, tuple[int, ...], int], ...] = (
    ("bpf_fentry_test1", (1,), 2),
    ("bpf_fentry_test2", (2, 3), 5),
    ("bpf_fentry_test3", (4, 5, 6), 15),
    ("bpf_fentry_test4", (7, 8, 9, 10), 34),
    ("bpf_fentry_test5", (11, 12, 13, 14, 15), 65),
    ("bpf_fentry_test6", (16, 17, 18, 19, 20, 21), 111),
    ("bpf_fentry_test7", (0,), 0),
)
"""``bpf_prog_test_run_tracing``'s calls for fentry/fexit: (function, args, expected)."""


def test_run_tracing(prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
    """``bpf_prog_test_run_tracing``: call the test functions through their trampolines.

    The program under test does not run by itself: whatever is *attached* to the called
    functions runs (this program if it is linked, and any other). fentry/fexit programs:
    the fentry test functions are called in order; one returning other than the kernel's
    value (an fmod_ret program attached to it) stops the run with EFAULT. fmod_ret
    programs: ``bpf_modify_return_test(1, &b)`` then ``bpf_modify_return_test2(1, &b, 3, 4,
    5, 6, 7)``; retval is ``side_effects << 16 | (u16)(sum of returns)`` where a side
    effect is a call whose body ran (it increments ``*b``). Other attach types: EFAULT.
    Only flags, cpu and batch_size are checked (EINVAL); data and ctx are ignored; no
    duration is reported.
    """
    from pybpf.hooks.trampoline import host_functions
    from pybpf.uapi import BpfAttachType as A

    if opts.flags or opts.cpu or opts.batch_size:
        return TestRunResult(errno=errno.EINVAL)
    funcs = host_functions(kernel)
    eat = int(prog.expected_attach_type)
    cpu = current_cpu()
    scratch = REGISTRY.alloc(16, "test_run tracing locals")  # arg, b, retval of the C code
    try:
        with running_as(kernel, opts.task):
            if eat in (A.BPF_TRACE_FENTRY, A.BPF_TRACE_FEXIT):
                for name, args, want in FENTRY_TEST_CALLS:
                    if funcs[name](*args, cpu=cpu) != want:
                        return TestRunResult(errno=errno.EFAULT)
                arg, retval = scratch.start, scratch.start + 8  # struct bpf_fentry_test_t, u32
                for name, ptr in (("bpf_fentry_test8", arg), ("bpf_fentry_test9", retval),
                                  ("bpf_fentry_test10", 0)):
                    if funcs[name](ptr, cpu=cpu) != 0:
                        return TestRunResult(errno=errno.EFAULT)
                return TestRunResult(retval=0, write_duration=False)
            if eat == A.BPF_MODIFY_RETURN:
                b = scratch.start
                side_effect = 0
                REGISTRY.store(b, 4, 2)
                ret = funcs["bpf_modify_return_test"](1, b, cpu=cpu) & 0xFFFF
                side_effect += REGISTRY.load(b, 4) != 2
                REGISTRY.store(b, 4, 2)
                ret = (ret + funcs["bpf_modify_return_test2"](1, b, 3, 4, 5, 6, 7, cpu=cpu)) \
                    & 0xFFFF
                side_effect += REGISTRY.load(b, 4) != 2
                return TestRunResult(retval=(side_effect << 16) | ret, write_duration=False)
            return TestRunResult(errno=errno.EFAULT)
    finally:
        REGISTRY.remove(scratch)
