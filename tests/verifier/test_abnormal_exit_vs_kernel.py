"""Subprograms with a hidden exit (``tests/verifier/abnormal/``), against the live kernel.

A ``bpf_tail_call`` that succeeds leaves the subprog, so the caller continues with an
unknown R0 — and, since a tail-called program may change the packet, without its packet
pointers; an ``ld_abs``/``ld_ind`` whose load fails leaves the subprog with R0 = 0. Linux
6.18 verifies both ways out (``visit_abnormal_return_insn``): whole level-2 logs must be
the kernel's, and the ``ld_abs`` programs must return what the kernel's do on both tiers,
for packets long enough and too short for the load."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from pybpf.kernel import Kernel
from pybpf.testing.object_logs import log_mismatches, program_logs
from pybpf.testing.verifier_diff import pybpf_instance

OBJ = Path(__file__).parent / "abnormal" / "abnormal_exit.o"


@pytest.mark.parametrize("level", [1, 2])
def test_logs_as_kernel(kernel: ModuleType, level: int) -> None:
    names, bad = log_mismatches(OBJ, Kernel(), level)
    assert len(names) == 4 and not bad, bad


def test_tail_call_result_is_unknown() -> None:
    """pybpf alone: the caller may not use the packet pointers it held across the call."""
    logs = program_logs(OBJ, Kernel(), 1)
    assert logs["tail_in_subprog"].errno == 0
    assert logs["tail_result_use"].errno == 13
    assert "R6 invalid mem access 'scalar'" in logs["tail_result_use"].log


def _runs(world: object, jit: int | None = None) -> list[int]:
    import pybpf.skel as skel

    o = skel.open(str(OBJ), kernel=world)
    for p in o.progs:
        p.autoload = p.name in ("ld_abs_in_subprog", "ld_abs_zero_path")
    o.load()
    try:
        pkt = bytes(14 + 12) + b"\x01\x02" + bytes(50)  # Ethernet header, then the loads
        return [getattr(o.progs, name).test_run(data_in=data).retval
                for name in ("ld_abs_in_subprog", "ld_abs_zero_path") for data in (pkt, pkt[:27])]
    finally:
        o.close()


@pytest.mark.parametrize("jit", [0, 1])
def test_ld_abs_in_subprog_runs_as_kernel(kernel: ModuleType, jit: int) -> None:
    want = _runs("live")
    assert _runs(pybpf_instance(jit)) == want
    assert want[2:] == [1000 // 0x103, 0]  # the failed load left the subprog with 0
