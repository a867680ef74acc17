"""The cgroup helpers against the live kernel: which program types may call them, and
what they return under ``BPF_PROG_TEST_RUN`` (the calling process's cgroup; an empty
``BPF_MAP_TYPE_CGROUP_ARRAY`` slot)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.verifier.api import VerifierInput, bpf_check

SOCKET_FILTER, SCHED_CLS, XDP, TRACEPOINT, KPROBE = 1, 3, 6, 5, 2
BPF_MAP_TYPE_CGROUP_ARRAY = 8
PKT = bytes(64)


def _call(fid: int, *setup: Insn) -> list[Insn]:
    return [*setup, Insn(0x85, 0, 0, 0, fid), Insn(0x95, 0, 0, 0, 0)]


def _with_map(fd: int, fid: int, idx: int, skb: bool = False) -> list[Insn]:
    """``r0 = helper([skb,] map, idx)``; ``fd`` patched into the ld_imm64."""
    regs = (2, 3) if skb else (1, 2)
    return [Insn(0x18, regs[0], 1, 0, fd), Insn(0, 0, 0, 0, 0), Insn(0xB7, regs[1], 0, 0, idx),
            Insn(0x85, 0, 0, 0, fid), Insn(0x95, 0, 0, 0, 0)]


CASES = {
    "get_current_cgroup_id": _call(80),
    "ancestor level 0": _call(123, Insn(0xB7, 1, 0, 0, 0)),
    "ancestor level 1": _call(123, Insn(0xB7, 1, 0, 0, 1)),
    "ancestor level 100": _call(123, Insn(0xB7, 1, 0, 0, 100)),
}


@pytest.mark.parametrize("ptype", [SOCKET_FILTER, SCHED_CLS, XDP, TRACEPOINT, KPROBE])
@pytest.mark.parametrize("fid", [33, 37, 80, 123, 148, 191])
def test_cgroup_helper_availability_as_kernel(kernel: ModuleType, ptype: int, fid: int) -> None:
    """Verdict and first error line of a bare call (arguments left as they are)."""
    prog = _call(fid)
    live = kernel.prog_load(ptype, encode(prog), log_level=1, log_size=1 << 16)
    if live.fd >= 0:
        kernel.close(live.fd)
    ours = bpf_check(VerifierInput(insns=prog, prog_type=ptype, log_level=1))
    want = [ln for ln in live.log.strip().splitlines() if ln][-2:-1]
    assert (ours.errno, [ours.extra.get("error_line", "")] if ours.errno else []) == \
        (live.errno, want if live.errno else [])


@pytest.mark.parametrize("name", list(CASES))
def test_cgroup_id_helpers_return_as_kernel(kernel: ModuleType, kernel_fds: Any, name: str) -> None:
    raw = encode(CASES[name])
    res = kernel_fds.prog_load(SOCKET_FILTER, raw, log_level=1, log_size=1 << 16)
    assert res.ok, res.log
    want = kernel.prog_test_run(res.fd, data_in=PKT)
    got = Program.load(Kernel(), SOCKET_FILTER, raw).test_run(PKT)
    assert got.retval == want.retval


@pytest.mark.parametrize(("fid", "ptype", "idx"), [(37, SOCKET_FILTER, 0), (37, SOCKET_FILTER, 9),
                                                   (33, SCHED_CLS, 0), (33, SCHED_CLS, 9)])
def test_under_cgroup_empty_array_as_kernel(kernel: ModuleType, kernel_fds: Any, fid: int,
                                            ptype: int, idx: int) -> None:
    live_fd = kernel_fds.map_create(BPF_MAP_TYPE_CGROUP_ARRAY, 4, 4, 4)
    res = kernel_fds.prog_load(ptype, encode(_with_map(live_fd, fid, idx, fid == 33)),
                               log_level=1, log_size=1 << 16)
    assert res.ok, res.log
    want = kernel.prog_test_run(res.fd, data_in=PKT)
    k = Kernel()
    m = k.map_create(BPF_MAP_TYPE_CGROUP_ARRAY, 4, 4, 4)
    got = Program.load(k, ptype, _with_map(m.fd, fid, idx, fid == 33)).test_run(PKT)
    assert got.retval == want.retval
