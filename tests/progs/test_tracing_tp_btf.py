"""tp_btf programs (TRACING, ``BPF_TRACE_RAW_TP``): ctx access per the tracepoint's BTF
prototype and BPF_PROG_TEST_RUN vs the live kernel (which loads them here), and the link
to pybpf's raw tracepoint of the same name."""

from __future__ import annotations

import errno
import os
from types import ModuleType

import pytest

from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.uapi import BpfCmd, bpf_attr

TRACING, TRACE_RAW_TP = 26, 23


@pytest.fixture(scope="module")
def k() -> Kernel:
    return Kernel()


@pytest.fixture(scope="module")
def sys_enter_id(k: Kernel) -> int:
    if k.vmlinux_btf is None:
        pytest.skip("no vmlinux BTF")
    return next(t.id for t in k.vmlinux_btf.parsed().types
                if getattr(t, "name", None) == "btf_trace_sys_enter")


ACCESSES = [
    "r0 = *(u64 *)(r1 + 0)",   # struct pt_regs *regs
    "r0 = *(u64 *)(r1 + 8)",   # long id
    "r0 = *(u64 *)(r1 + 16)",  # no third argument
    "r0 = *(u32 *)(r1 + 12)",  # not a multiple of 8
    "*(u64 *)(r1 + 8) = r1",   # read-only
]


@pytest.mark.parametrize("access", ACCESSES)
def test_tp_btf_ctx_access_and_test_run_vs_kernel(kernel: ModuleType, k: Kernel,
                                                  sys_enter_id: int, access: str) -> None:
    text = f"{access}\nr0 = 0\nexit"
    r = kernel.prog_load(TRACING, encode(assemble(text, syntax="kernel")),
                         expected_attach_type=TRACE_RAW_TP, attach_btf_id=sys_enter_id)
    kernel_run = None
    if r.fd >= 0:
        kernel_run = kernel.prog_test_run(r.fd, repeat=0).errno
        os.close(r.fd)
    try:
        prog = Program.load(k, TRACING, assemble(text, syntax="kernel"),
                            expected_attach_type=TRACE_RAW_TP, attach_btf_id=sys_enter_id)
    except BpfError as exc:
        assert exc.errno == r.errno
        return
    assert r.errno == 0
    with pytest.raises(BpfError) as run:
        prog.test_run(repeat=0)
    assert run.value.errno == kernel_run == errno.EFAULT
    prog.close()


def test_tp_btf_link_runs_on_the_raw_tracepoint(k: Kernel, sys_enter_id: int) -> None:
    prog = Program.load(k, TRACING, assemble("r0 = *(u64 *)(r1 + 8)\nexit", syntax="kernel"),
                        expected_attach_type=TRACE_RAW_TP, attach_btf_id=sys_enter_id)
    # sys_enter(struct pt_regs *regs, long id): regs is trusted, so it must be real memory
    from pybpf.runtime.memory import REGISTRY

    regs = REGISTRY.alloc(168, "pt_regs", writable=False)
    try:
        with prog.attach_trace():
            assert k.tracepoints.fire("sys_enter", regs.start, 59) == [59]
        attr = bpf_attr()
        attr.raw_tracepoint.prog_fd = prog.fd
        fd = k.bpf(BpfCmd.BPF_RAW_TRACEPOINT_OPEN, attr)  # the older way, no name
        assert fd >= 0
        assert k.tracepoints.fire("sys_enter", regs.start, 1) == [1]
        with pytest.raises(BpfError) as exc:  # a NULL regs would be dereferenced unchecked
            k.tracepoints.fire("sys_enter", 0, 1)
        assert exc.value.errno == errno.EFAULT
        k.close(fd)
        assert k.tracepoints.fire("sys_enter", regs.start, 1) == []
    finally:
        REGISTRY.remove(regs)


def test_raw_tracepoint_args_are_a_pointer_to_u64s(k: Kernel) -> None:
    """RAW_TRACEPOINT programs read their arguments through R1 (never as registers)."""
    prog = Program.load(k, 17, assemble("r0 = *(u64 *)(r1 + 16)\nexit", syntax="kernel"))
    link = prog.attach_raw_tracepoint("sched_switch")
    try:
        assert k.tracepoints.fire("sched_switch", 1, 2, 3) == [3]
        with pytest.raises(BpfError) as exc:
            k.tracepoints.fire("sched_switch", *range(13))
        assert exc.value.errno == errno.E2BIG
    finally:
        link.close()
