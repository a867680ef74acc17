"""Pieces every ``BPF_PROG_TEST_RUN`` runner shares (``net/bpf/test_run.c``'s helpers).

- :func:`ctx_init` is ``bpf_ctx_init``: a zeroed ctx buffer of the type's size, filled from
  ``ctx_in`` after ``bpf_check_uarg_tail_zero`` (bytes past the struct must be zero: E2BIG);
- :func:`run_repeat` is ``bpf_test_run``: the program run ``repeat`` times (0 → 1) on one
  :class:`~pybpf.runtime.context.RunContext` with the packet object helpers expect in
  ``ctx.data``, timed as the mean per run;
- :func:`dev_get_by_index` finds a device of the instance (ifindex 1 is the loopback).

Sizes are those of x86-64 Linux 6.18 (the live kernel the differential tests compare with).
"""

from __future__ import annotations

import errno
import mmap
from typing import Any

from pybpf.progs.ops import TestRunOpts, TestRunResult, bpf_test_run_loop
from pybpf.runtime.context import RunContext
from pybpf.runtime.cpus import num_possible_cpus

PAGE_SIZE = mmap.PAGESIZE
ETH_HLEN = 14
NET_SKB_PAD = 64  # max(32, L1_CACHE_BYTES)
NET_IP_ALIGN = 0  # x86: unaligned access is cheap, no IP alignment shift
SKB_SHARED_INFO_SIZE = 320  # SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
LOOPBACK_IFINDEX = 1

BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BPF_F_TEST_SKB_CHECKSUM_COMPLETE = 1 << 2


class TestRunError(Exception):
    """A runner's early failure: the command fails with ``errno``, nothing is copied back."""

    __test__ = False

    def __init__(self, err: int, why: str = "") -> None:
        super().__init__(why or errno.errorcode.get(err, str(err)))
        self.errno = err


def fail(err: int) -> TestRunResult:
    return TestRunResult(errno=err)


def ctx_init(opts: TestRunOpts, max_size: int) -> bytearray | None:
    """``bpf_ctx_init``: None when neither ctx_in nor ctx_out was given."""
    if opts.ctx_in is None and not opts.has_ctx_out:
        return None
    buf = bytearray(max_size)
    if opts.ctx_in is not None:
        size = opts.ctx_size_in
        if size > PAGE_SIZE:
            raise TestRunError(errno.E2BIG, "ctx_in larger than a page")
        data = opts.ctx_in
        if size > max_size and any(data[max_size:size]):
            raise TestRunError(errno.E2BIG, "non-zero bytes past the end of the ctx struct")
        n = min(size, max_size)
        buf[:n] = data[:n]
    return buf


def dev_get_by_index(kernel: Any, ifindex: int) -> Any:
    """The instance's device with ``ifindex`` (None if there is none)."""
    devs = getattr(kernel, "netdevs", None)
    if devs is not None:
        try:
            return devs.by_ifindex(ifindex)
        except Exception:  # a device table still being built
            return None
    return object() if ifindex == LOOPBACK_IFINDEX else None


def current_cpu() -> int:
    """The CPU the caller "runs on" (pybpf pretends CPU 0, a possible CPU everywhere)."""
    return 0


def cpu_online(cpu: int) -> bool:
    return 0 <= cpu < num_possible_cpus()


def _native_repeat(prog: Any, kernel: Any, repeat: int) -> Any:
    """The JIT's native repeat loop, where it gives exactly what the Python loop gives: a
    jited program that never calls back into Python (so no helper reads ``data``, and no
    tail calls), run more than once, with run statistics off (the kernel counts every
    repetition)."""
    runner = getattr(prog, "bpf_func", None)
    loop = getattr(runner, "test_run", None)
    translation = getattr(getattr(runner, "code", None), "translation", None)
    if (repeat <= 1 or loop is None or translation is None
            or getattr(translation, "uses_bridge", True) or getattr(runner, "sanitize", True)
            or kernel is None or kernel.stats_enabled()):
        return None
    return loop


def run_repeat(prog: Any, kernel: Any, r1: int, repeat: int, *, cpu: int = 0,
               data: dict[str, Any] | None = None) -> tuple[int, int]:
    """``bpf_test_run``: run ``max(repeat, 1)`` times on the same ctx; ``(retval, ns/run)``.

    The packet and ctx are not reset between runs, as in the kernel: a program that moves
    ``data`` moves it again on every repetition.
    """
    native = _native_repeat(prog, kernel, repeat)
    if native is not None:
        retval, total_ns = native(r1, repeat, cpu=cpu)
        return int(retval) & 0xFFFFFFFF, min(total_ns // max(repeat, 1), 0xFFFFFFFF)
    rctx = RunContext(cpu=cpu, prog=prog, kernel=kernel)
    if data:
        rctx.data.update(data)

    def once() -> int:
        return int(prog.run(r1, ctx=rctx, cpu=cpu)) & 0xFFFFFFFF

    return bpf_test_run_loop(once, repeat)
