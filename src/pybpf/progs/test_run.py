"""``BPF_PROG_TEST_RUN`` per program type: the kernel's ``net/bpf/test_run.c``.

:data:`TEST_RUNNERS` maps a ``BPF_PROG_TYPE_*`` to its runner
``(prog, kernel, opts: TestRunOpts) -> TestRunResult``; the syscall layer
(:func:`pybpf.syscall.prog_cmds.bpf_prog_test_run`) looks a program's type up here first,
and does the common part around it (attr checks, copying data_out/ctx_out back with the
ENOSPC rule). Types missing here fail with ENOTSUPP, as in the kernel.

The runners live in ``testrun_*`` modules, one per ctx family:
:mod:`~pybpf.progs.testrun_skb` (``bpf_prog_test_run_skb``),
:mod:`~pybpf.progs.testrun_xdp` (``bpf_prog_test_run_xdp``),
:mod:`~pybpf.progs.testrun_flow_dissector` (``bpf_prog_test_run_flow_dissector``),
:mod:`~pybpf.progs.testrun_tracing` (``bpf_prog_test_run_raw_tp`` and
``bpf_prog_test_run_syscall``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pybpf.progs.ops import TestRunOpts, TestRunResult
from pybpf.progs.testrun_flow_dissector import test_run_flow_dissector
from pybpf.progs.testrun_skb import SKB_TYPES, test_run_skb
from pybpf.progs.testrun_tracing import RAW_TRACEPOINT, SYSCALL, test_run_raw_tp, test_run_syscall
from pybpf.progs.testrun_xdp import XDP, test_run_xdp
from pybpf.progs.type_flow_dissector import FLOW_DISSECTOR

TestRunner = Callable[[Any, Any, TestRunOpts], TestRunResult]

TEST_RUNNERS: dict[int, TestRunner] = {
    **dict.fromkeys(SKB_TYPES, test_run_skb),
    XDP: test_run_xdp,
    FLOW_DISSECTOR: test_run_flow_dissector,
    RAW_TRACEPOINT: test_run_raw_tp,
    SYSCALL: test_run_syscall,
}

__all__ = ["TEST_RUNNERS", "TestRunner"]
