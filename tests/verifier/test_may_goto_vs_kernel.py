"""``may_goto`` loops against the live 6.18 kernel: verdict, first message and the whole
level-2 log.

``may_goto`` takes its jump first and queues the fall-through (one more iteration) with a
deeper ``may_goto_depth``; the queued state starts from what changed since the previous
iteration, widened where it was never needed precise (``widen_imprecise_scalars``), and an
iteration that stays within an earlier one's ranges (``RANGE_WITHIN``) has converged.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn
from pybpf.testing.verifier_diff import kernel_load, verifier_load

SOCKET_FILTER = 1


def may_goto(off: int) -> Insn:
    return Insn(0xE5, 0, 0, off, 0)


def prog(text_before: str, body: str, text_after: str) -> list[Insn]:
    """``before; loop: may_goto +len(body)+1; body; goto loop; after``."""
    head = assemble(text_before) if text_before else []
    loop = assemble(body)
    tail = assemble(text_after)
    n = len(loop)
    return [*head, may_goto(n + 1), *loop, Insn(0x05, 0, 0, -(n + 2), 0), *tail]


CASES = {
    "counter": ("r0 = 0", "r0 += 1", "exit"),
    "imprecise_sum": ("r6 = 0\nr7 = 3", "r6 += r7\nr7 += 1", "r0 = r6\nexit"),
    "stack_counter": ("r1 = 0\n*(u64 *)(r10 - 8) = r1",
                      "r1 = *(u64 *)(r10 - 8)\nr1 += 1\n*(u64 *)(r10 - 8) = r1",
                      "r0 = 0\nexit"),
    "bounded_index": ("r6 = 0",
                      "r6 += 1\nr6 &= 7\nr1 = r10\nr1 += -64\nr1 += r6\nr2 = 0\n*(u8 *)(r1 + 0) = r2",
                      "r0 = 0\nexit"),
    "unbounded_index": ("r6 = 0",
                        "r6 += 1\nr1 = r10\nr1 += -64\nr1 += r6\nr2 = 0\n*(u8 *)(r1 + 0) = r2",
                        "r0 = 0\nexit"),
    "branch_on_imprecise": ("r6 = 0\nr7 = 0\ncall 7\nr8 = r0",
                            "r7 += 2\nif r8 > 5 goto +1\nr7 += 1",
                            "r0 = 0\nexit"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_level2_log_matches_kernel(kernel: ModuleType, name: str) -> None:
    insns = prog(*CASES[name])
    want = kernel_load(kernel, SOCKET_FILTER, insns, log_level=2)
    got = verifier_load(SOCKET_FILTER, insns, log_level=2)
    assert got.ok == want.ok, got.log[-2000:]
    assert got.log == want.log


def test_reserved_fields_are_refused(kernel: ModuleType) -> None:
    insns = [Insn(0xB7, 0, 0, 0, 0), Insn(0xE5, 0, 0, 1, 1), Insn(0x95, 0, 0, 0, 0)]
    want = kernel_load(kernel, SOCKET_FILTER, insns, log_level=1, log_size=1 << 16)
    got = verifier_load(SOCKET_FILTER, insns, log_level=1)
    assert not want.ok and got.errno == want.errno
    assert got.log.splitlines()[-2:-1] == want.log.splitlines()[-2:-1]
