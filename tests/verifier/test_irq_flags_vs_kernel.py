"""IRQ flags (``bpf_local_irq_save`` / ``bpf_local_irq_restore``) against the live kernel:
hand-written syscall programs loaded in both worlds, whole level-2 logs compared — the
``STACK_IRQ_FLAG`` slot (``fp-8=ffffffff``), its reference, restores out of order,
leaving, sleeping or reading the flag inside the region, loops and pruning — and the
test-run results of the accepted ones on both tiers."""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.isa.insn import encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.testing.verifier_diff import kfunc_program, load_both, pybpf_instance

SYSCALL, BPF_F_SLEEPABLE = 31, 1 << 4


def save(off: int) -> str:
    return f"r1 = r10\nr1 += {off}\ncall kf:bpf_local_irq_save\n"


def restore(off: int) -> str:
    return f"r1 = r10\nr1 += {off}\ncall kf:bpf_local_irq_restore\n"


RET = "r0 = 0\nexit\n"
PROGRAMS = {
    "ok": save(-8) + restore(-8) + RET,
    "exit_inside": save(-8) + RET,
    "restore_twice": save(-8) + restore(-8) + restore(-8) + RET,
    "out_of_order": save(-8) + save(-16) + restore(-8) + restore(-16) + RET,
    "nested": save(-8) + save(-16) + restore(-16) + restore(-8) + RET,
    "read_flag": save(-8) + "r0 = *(u64 *)(r10 - 8)\n" + restore(-8) + RET,
    "overwrite_flag": save(-8) + "*(u64 *)(r10 - 8) = 0\n" + restore(-8) + RET,
    "overwrite_half": save(-8) + "*(u32 *)(r10 - 4) = 0\n" + restore(-8) + RET,
    "null_flag": "r1 = 0\ncall kf:bpf_local_irq_save\n" + RET,
    "misaligned": save(-12) + restore(-12) + RET,
    "save_twice": save(-8) + save(-8) + RET,
    "restore_unsaved": restore(-8) + RET,
    "sleepable_kfunc": save(-8) + "r1 = r10\nr1 += -32\nr2 = 8\nr3 = 0\nr4 = 0\n"
                       "call kf:bpf_copy_from_user_str\n" + restore(-8) + RET,
    "sleepable_helper": save(-8) + "r1 = r10\nr1 += -32\nr2 = 8\nr3 = 0\ncall 148\n"
                        + restore(-8) + RET,
    "tail_call": save(-8) + "r2 = 0\nr3 = 0\ncall 12\n" + restore(-8) + RET,
    "rcu_inside": save(-8) + "call kf:bpf_rcu_read_lock\ncall kf:bpf_rcu_read_unlock\n"
                  + restore(-8) + RET,
    "dead_branch": "r6 = 1\n" + save(-8) + "if r6 == 0 goto +3\n" + restore(-8) + RET,
    "branches_differ": "call 7\nr6 = r0\n" + save(-8) + "if r6 > 5 goto +3\n" + save(-16)
                       + restore(-16) + restore(-8) + RET,
    "loop": "r6 = 0\n" + save(-8) + restore(-8) + "r6 += 1\nif r6 < 10 goto -8\n" + RET,
    "loop_may_goto": "r6 = 0\n" + save(-8) + restore(-8) + "r6 += 1\nmay_goto +1\ngoto -9\n"
                     + RET,
    "loop_inside": save(-8) + "r6 = 0\nr6 += 1\nmay_goto +1\ngoto -3\n" + restore(-8) + RET,
    "loop_nested_saves": "r6 = 0\n" + save(-8) + save(-16) + restore(-16) + restore(-8)
                         + "r6 += 1\nif r6 < 4 goto -14\n" + RET,
    "static_call": save(-8) + "call pc+5\n" + restore(-8) + RET + RET,
    "restore_in_static_call": save(-8) + "r1 = r10\nr1 += -8\ncall pc+2\n" + RET
                              + "call kf:bpf_local_irq_restore\n" + RET,
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_irq_flags_log_as_kernel(kernel: ModuleType, name: str) -> None:
    prog = kfunc_program(PROGRAMS[name])
    want, got = load_both(kernel, pybpf_instance(), SYSCALL, prog, log_level=2,
                          prog_flags=BPF_F_SLEEPABLE)
    assert (got.ok, got.errno) == (want.ok, want.errno), got.log
    assert got.log == want.log


@pytest.mark.parametrize("jit", [1, 0], ids=["jit", "interpreter"])
@pytest.mark.parametrize("name", ["ok", "nested", "loop", "restore_in_static_call"])
def test_irq_flag_programs_run(kernel: ModuleType, jit: int, name: str) -> None:
    prog = kfunc_program(PROGRAMS[name].replace(RET, "r0 = 7\nexit\n", 1)
                         if name == "ok" else PROGRAMS[name])
    res = kernel.prog_load(SYSCALL, encode(prog), prog_flags=BPF_F_SLEEPABLE)
    assert res.fd >= 0
    want = kernel.prog_test_run(res.fd, repeat=0).retval
    kernel.close(res.fd)
    k = Kernel()
    k.sysctl["bpf_jit_enable"] = jit
    p = Program.load(k, SYSCALL, prog, prog_flags=BPF_F_SLEEPABLE)
    assert p.test_run(repeat=0).retval == want

