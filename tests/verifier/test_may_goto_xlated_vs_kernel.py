"""The timed ``may_goto`` rewrite, live kernel vs pybpf: the same xlated program (the
counter pair in two stack slots below each using subprogram, set by its first two
instructions; ``call arch_bpf_timed_may_goto`` on refill), the same ``stack depth`` and
verified instruction count; a loop that ends by itself returns the same value, an endless
one ends after pybpf's deterministic budget on both tiers."""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.helpers.internal import BPF_MAX_TIMED_LOOPS, TIMED_MAY_GOTO_REFILLS
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.testing.xlated import comparable
from pybpf.verifier.api import VerifierInput, bpf_check

SOCKET_FILTER = 1
EXIT = Insn(0x95, 0, 0, 0, 0)
LOOP = [Insn(0xB7, 0, 0, 0, 0), Insn(0xE5, 0, 0, 2, 0), Insn(0x07, 0, 0, 0, 1),
        Insn(0x05, 0, 0, -3, 0), EXIT]
PROGRAMS = {
    "endless": LOOP,
    "below the stack": [Insn(0x7A, 10, 0, -8, 5), *LOOP[:-1], Insn(0x79, 1, 10, -8, 0),
                        Insn(0x0F, 0, 1, 0, 0), EXIT],
    "forward": [Insn(0xB7, 0, 0, 0, 1), Insn(0xE5, 0, 0, 1, 0), Insn(0xB7, 0, 0, 0, 2), EXIT],
    "in a subprogram": [Insn(0x85, 0, 1, 0, 1), EXIT, *LOOP],
    "counted": [Insn(0xB7, 0, 0, 0, 0), Insn(0xE5, 0, 0, 3, 0), Insn(0x07, 0, 0, 0, 1),
                Insn(0x25, 0, 0, 1, 9), Insn(0x05, 0, 0, -4, 0), EXIT],
}
BUDGET = BPF_MAX_TIMED_LOOPS * (TIMED_MAY_GOTO_REFILLS + 1)


def _xlated(insns: list[Insn]) -> list[tuple[int, ...]]:
    """Comparable, with bpf-to-bpf calls' ``off`` (the JIT's subprogram index) cleared."""
    return comparable(i._replace(off=0) if i.code == 0x85 and i.src == 1 else i for i in insns)


def _stack_line(log: str) -> str:
    return next(ln for ln in log.splitlines() if ln.startswith("stack depth"))


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_timed_may_goto_as_kernel(kernel: ModuleType, kernel_fds: object, name: str) -> None:
    prog = PROGRAMS[name]
    live = kernel_fds.prog_load(SOCKET_FILTER, encode(prog), log_level=4,  # type: ignore[attr-defined]
                                log_size=1 << 16)
    assert live.ok, live.log
    ours = bpf_check(VerifierInput(insns=prog, prog_type=SOCKET_FILTER, log_level=4))
    assert ours.errno == 0, ours.log
    assert _xlated(ours.insns) == _xlated(kernel.prog_xlated(live.fd))
    assert _stack_line(ours.log) == _stack_line(live.log)
    assert ours.verified_insns == kernel.prog_info(live.fd).verified_insns
    if name in ("forward", "counted"):  # ends by itself: the same result
        want = kernel.prog_test_run(live.fd, data_in=bytes(64)).retval
        assert Program.load(Kernel(), SOCKET_FILTER, prog).test_run(bytes(64)).retval == want


def test_endless_loop_ends_after_the_budget() -> None:
    """The kernel stops after 250 ms; pybpf after a fixed number of refills (both tiers run
    this file)."""
    got = Program.load(Kernel(), SOCKET_FILTER, LOOP).test_run(bytes(64)).retval
    assert got == BUDGET & 0xFFFFFFFF
