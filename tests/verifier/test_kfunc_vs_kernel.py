"""kfunc calls are resolved and checked as in the live 6.18 kernel.

Every program here is loaded into the live kernel and into pybpf, and the verdict, the
first error message and the processed-instruction count must agree. The sweep calls every
kfunc vmlinux tags ``bpf_kfunc`` with zero arguments from several program types: it checks
the per-program-type kfunc sets (:mod:`pybpf.helpers.kfuncs`) and the first argument check
each kfunc's BTF prototype leads to. ``call kf:NAME`` in a program text is a call of
kfunc ``NAME``.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from pybpf.btf.raw import BtfDeclTag
from pybpf.errors import BpfError
from pybpf.isa.insn import Insn, encode
from pybpf.program import Program
from pybpf.testing.verifier_diff import kfunc_program, load_both, pybpf_instance
from pybpf.verifier.kfuncs import UNSUPPORTED

XDP, TC, SOCKET_FILTER, RAW_TP, TRACING, SYSCALL = 6, 3, 1, 17, 26, 31
BPF_F_SLEEPABLE = 1 << 4
BPF_TRACE_RAW_TP = 23


def _tp_btf() -> dict[str, int]:
    btf = pybpf_instance().vmlinux_btf.parsed()
    tid = next(t.id for t in btf.types if t.name == "btf_trace_sched_switch")
    return {"expected_attach_type": BPF_TRACE_RAW_TP, "attach_btf_id": tid}


def _attrs(prog_type: int) -> dict[str, int]:
    if prog_type == TRACING:
        return _tp_btf()
    if prog_type == SYSCALL:
        return {"prog_flags": BPF_F_SLEEPABLE}
    return {}


def both(kernel: Any, prog_type: int, insns: list[Insn], license: str = "GPL",
         **attrs: Any) -> tuple[tuple[bool, str, int], tuple[bool, str, int]]:
    """(kernel outcome, pybpf outcome) of one load."""
    want, got = load_both(kernel, pybpf_instance(), prog_type, insns, license=license, **attrs)
    return want.outcome, got.outcome


def _kfunc_names() -> list[str]:
    btf = pybpf_instance().vmlinux_btf.parsed()
    return sorted({btf.types[t.type].name for t in btf.types
                   if isinstance(t, BtfDeclTag) and t.name == "bpf_kfunc"})


@pytest.mark.parametrize("prog_type", [SOCKET_FILTER, TC, XDP, RAW_TP, TRACING, SYSCALL])
def test_sweep_zero_args(kernel: Any, prog_type: int) -> None:
    """r1..r5 = 0; call each tagged kfunc. pybpf refuses the kfuncs it does not model yet
    (``UNSUPPORTED``) with ENOTSUPP; every other outcome must be the kernel's."""
    ids = {t.name: t.id for t in pybpf_instance().vmlinux_btf.parsed().types if type(t).__name__ == "BtfFunc"}
    attrs = _attrs(prog_type)
    wrong = []
    compared = 0
    for name in _kfunc_names():
        insns = [Insn(0xB7, r) for r in range(1, 6)] + [Insn(0x85, 0, 2, 0, ids[name]), Insn(0xB7), Insn(0x95)]
        ko, po = both(kernel, prog_type, insns, **attrs)
        if not po[0] and po[1].startswith("pybpf:"):
            assert name in UNSUPPORTED or "not supported yet" in po[1]
            continue
        compared += 1
        if ko[:2] != po[:2]:
            wrong.append((name, ko[:2], po[:2]))
    assert not wrong
    assert compared >= 100


RCU_LOCK = "call kf:bpf_rcu_read_lock\n"
RCU_UNLOCK = "call kf:bpf_rcu_read_unlock\n"
P_OFF = "call kf:bpf_preempt_disable\n"
P_ON = "call kf:bpf_preempt_enable\n"
RET0 = "r0 = 0\nexit\n"

# name -> (prog type, program text)
PROGRAMS: dict[str, tuple[int, str]] = {
    "rcu_pair": (XDP, RCU_LOCK + RCU_UNLOCK + RET0),
    "rcu_unmatched_unlock": (XDP, RCU_UNLOCK + RET0),
    "rcu_nested": (XDP, RCU_LOCK + RCU_LOCK + RCU_UNLOCK + RCU_UNLOCK + RET0),
    "rcu_exit_inside": (XDP, RCU_LOCK + RET0),
    "rcu_branch_unbalanced": (XDP, "r6 = r1\n" + RCU_LOCK + "r1 = *(u32 *)(r6 + 0)\nif r1 == 0 goto +1\n"
                              + RCU_UNLOCK + RET0),
    "rcu_sleepable_kfunc_inside": (SYSCALL, RCU_LOCK + "r1 = r10\nr1 += -16\nr2 = 8\nr3 = 0\nr4 = 0\n"
                                   "call kf:bpf_copy_from_user_str\n" + RCU_UNLOCK + RET0),
    "preempt_pair": (XDP, P_OFF + P_ON + RET0),
    "preempt_nested": (XDP, P_OFF + P_OFF + P_ON + P_ON + RET0),
    "preempt_unmatched": (XDP, P_ON + RET0),
    "preempt_exit_inside": (XDP, P_OFF + P_OFF + P_ON + RET0),
    "preempt_sleepable_inside": (SYSCALL, P_OFF + "r1 = r10\nr1 += -16\nr2 = 8\nr3 = 0\nr4 = 0\n"
                                 "call kf:bpf_copy_from_user_str\n" + P_ON + RET0),
    "sleepable_from_xdp": (XDP, "r1 = 0\nr2 = 0\nr3 = 0\nr4 = 0\ncall kf:bpf_copy_from_user_str\n" + RET0),
    "sleepable_ok": (SYSCALL, "r1 = r10\nr1 += -16\nr2 = 8\nr3 = 0\nr4 = 0\ncall kf:bpf_copy_from_user_str\n"
                     + RET0),
    "sleepable_bad_buf": (SYSCALL, "r1 = r10\nr1 += -16\nr2 = 32\nr3 = 0\nr4 = 0\n"
                          "call kf:bpf_copy_from_user_str\n" + RET0),
    "scalar_arg_is_pointer": (XDP, "r1 = r10\nr1 += -8\nr2 = r10\nr3 = 1\ncall kf:bpf_iter_num_new\n" + RET0),
    "uninit_scalar_args": (XDP, "r1 = r10\nr1 += -8\ncall kf:bpf_iter_num_new\n" + RET0),
    "uninit_pointer_arg": (XDP, "call kf:bpf_iter_num_destroy\n" + RET0),
    "strlen_ignored_arg": (XDP, "r1 = r10\ncall kf:bpf_strlen\n" + RET0),
    "caller_saved_clobbered": (XDP, "r1 = 1\n" + RCU_LOCK + RCU_UNLOCK + "r0 = r1\nexit\n"),
    "callee_saved_kept": (XDP, "r6 = 1\n" + RCU_LOCK + RCU_UNLOCK + "r0 = r6\nexit\n"),
    "void_return_r0": (XDP, RCU_LOCK + RCU_UNLOCK + "exit\n"),
    "cast_to_kern_ctx": (XDP, "call kf:bpf_cast_to_kern_ctx\nr0 = 0\nexit\n"),
    "cast_to_kern_ctx_not_ctx": (XDP, "r1 = r10\ncall kf:bpf_cast_to_kern_ctx\nr0 = 0\nexit\n"),
    # conntrack: memory + __sz pairs, acquire (ret null) and release
    "ct_lookup_release": (XDP, """
r2 = 0
*(u64 *)(r10 - 40) = r2
*(u64 *)(r10 - 32) = r2
*(u64 *)(r10 - 24) = r2
*(u64 *)(r10 - 16) = r2
*(u64 *)(r10 - 8) = r2
r2 = r10
r2 += -40
r3 = 12
r4 = r10
r4 += -16
r5 = 16
call kf:bpf_xdp_ct_lookup
if r0 == 0 goto +2
r1 = r0
call kf:bpf_ct_release
r0 = 0
exit
"""),
    "ct_lookup_leak": (XDP, """
r2 = 0
*(u64 *)(r10 - 40) = r2
*(u64 *)(r10 - 32) = r2
*(u64 *)(r10 - 24) = r2
*(u64 *)(r10 - 16) = r2
*(u64 *)(r10 - 8) = r2
r2 = r10
r2 += -40
r3 = 12
r4 = r10
r4 += -16
r5 = 16
call kf:bpf_xdp_ct_lookup
r0 = 0
exit
"""),
    "ct_release_unchecked": (XDP, """
r2 = 0
*(u64 *)(r10 - 40) = r2
*(u64 *)(r10 - 32) = r2
*(u64 *)(r10 - 24) = r2
*(u64 *)(r10 - 16) = r2
*(u64 *)(r10 - 8) = r2
r2 = r10
r2 += -40
r3 = 12
r4 = r10
r4 += -16
r5 = 16
call kf:bpf_xdp_ct_lookup
r1 = r0
call kf:bpf_ct_release
r0 = 0
exit
"""),
    "ct_release_twice": (XDP, """
r2 = 0
*(u64 *)(r10 - 40) = r2
*(u64 *)(r10 - 32) = r2
*(u64 *)(r10 - 24) = r2
*(u64 *)(r10 - 16) = r2
*(u64 *)(r10 - 8) = r2
r2 = r10
r2 += -40
r3 = 12
r4 = r10
r4 += -16
r5 = 16
call kf:bpf_xdp_ct_lookup
if r0 == 0 goto +4
r6 = r0
r1 = r0
call kf:bpf_ct_release
r1 = r6
call kf:bpf_ct_release
r0 = 0
exit
"""),
    "ct_uninit_tuple": (XDP, """
r2 = 0
*(u64 *)(r10 - 16) = r2
*(u64 *)(r10 - 8) = r2
r2 = r10
r2 += -40
r3 = 12
r4 = r10
r4 += -16
r5 = 16
call kf:bpf_xdp_ct_lookup
r0 = 0
exit
"""),
    "ct_size_past_stack": (XDP, """
r2 = 0
*(u64 *)(r10 - 16) = r2
*(u64 *)(r10 - 8) = r2
r2 = r10
r2 += -16
r3 = 37
r4 = r10
r4 += -16
r5 = 16
call kf:bpf_xdp_ct_lookup
r0 = 0
exit
"""),
    "ct_size_unknown": (XDP, """
r2 = 0
*(u64 *)(r10 - 16) = r2
*(u64 *)(r10 - 8) = r2
r3 = *(u32 *)(r1 + 0)
r2 = r10
r2 += -16
r4 = r10
r4 += -16
r5 = 16
call kf:bpf_xdp_ct_lookup
r0 = 0
exit
"""),
    "ct_release_stack_ptr": (XDP, "r1 = r10\nr1 += -8\ncall kf:bpf_ct_release\n" + RET0),
    "ct_release_scalar": (XDP, "r1 = 5\ncall kf:bpf_ct_release\n" + RET0),
}


# tp_btf/sched_switch: ctx[1] is ``struct task_struct *prev``, a trusted pointer
ACQ_REL = "if r0 == 0 goto +2\nr1 = r0\ncall kf:bpf_task_release\nr0 = 0\nexit\n"
PREV = "r1 = *(u64 *)(r1 + 8)\n"
PROGRAMS.update({
    "task_acquire_release": (TRACING, PREV + "call kf:bpf_task_acquire\n" + ACQ_REL),
    "task_acquire_leak": (TRACING, PREV + "call kf:bpf_task_acquire\n" + RET0),
    "task_release_unreferenced": (TRACING, PREV + "call kf:bpf_task_release\n" + RET0),
    "task_release_maybe_null": (TRACING, PREV + "call kf:bpf_task_acquire\nr1 = r0\ncall kf:bpf_task_release\n"
                                + RET0),
    "task_use_after_release": (TRACING, PREV + "call kf:bpf_task_acquire\nif r0 == 0 goto +4\nr6 = r0\n"
                               "r1 = r0\ncall kf:bpf_task_release\nr0 = *(u32 *)(r6 + 0)\n" + RET0),
    "task_acquire_offset": (TRACING, PREV + "r1 += 8\ncall kf:bpf_task_acquire\n" + ACQ_REL),
    "task_from_pid": (TRACING, "r1 = 1\ncall kf:bpf_task_from_pid\n" + ACQ_REL),
    "task_walked_parent": (TRACING, PREV + "r1 = *(u64 *)(r1 + {real_parent})\ncall kf:bpf_task_acquire\n"
                           + ACQ_REL),
    "task_walked_parent_rcu": (TRACING, "r6 = *(u64 *)(r1 + 8)\n" + RCU_LOCK
                               + "r1 = *(u64 *)(r6 + {real_parent})\ncall kf:bpf_task_acquire\n"
                               "if r0 == 0 goto +2\nr1 = r0\ncall kf:bpf_task_release\n" + RCU_UNLOCK + RET0),
    "task_as_cgroup": (TRACING, PREV + "call kf:bpf_cgroup_acquire\nif r0 == 0 goto +2\nr1 = r0\n"
                       "call kf:bpf_cgroup_release\n" + RET0),
    "task_ctx_as_task": (TRACING, "call kf:bpf_task_acquire\n" + RET0),
})


# the two casts (inlined as r0 = r1 by fixup_kfunc_call)
KERN_CTX = "call kf:bpf_cast_to_kern_ctx\n"
PROGRAMS.update({
    "kern_ctx_xdp": (XDP, KERN_CTX + "r1 = *(u64 *)(r0 + 0)\n" + RET0),
    "kern_ctx_tc": (TC, KERN_CTX + "r1 = *(u32 *)(r0 + 112)\n" + RET0),
    "kern_ctx_socket_filter": (SOCKET_FILTER, KERN_CTX + "r1 = *(u32 *)(r0 + 112)\n" + RET0),
    "kern_ctx_write": (XDP, KERN_CTX + "r1 = 0\n*(u64 *)(r0 + 0) = r1\n" + RET0),
    "rdonly_cast_struct": (XDP, "r1 = 0\nr2 = {sk_buff}\ncall kf:bpf_rdonly_cast\nr1 = *(u32 *)(r0 + 112)\n" + RET0),
    "rdonly_cast_void": (XDP, "r1 = 0\nr2 = 0\ncall kf:bpf_rdonly_cast\nr1 = *(u32 *)(r0 + 0)\n" + RET0),
    "rdonly_cast_int": (XDP, "r1 = 0\nr2 = {int}\ncall kf:bpf_rdonly_cast\n" + RET0),
    "rdonly_cast_unknown_id": (XDP, "r1 = 0\nr2 = 999999999\ncall kf:bpf_rdonly_cast\n" + RET0),
    "rdonly_cast_write": (XDP, "r1 = 0\nr2 = {sk_buff}\ncall kf:bpf_rdonly_cast\nr1 = 0\n"
                          "*(u32 *)(r0 + 112) = r1\n" + RET0),
})


# dynptr kfuncs (the dynptrs of verifier/dynptr.py): skb / xdp dynptrs, slices, clones
FROM_XDP = "r6 = r1\nr2 = 0\nr3 = r10\nr3 += -16\ncall kf:bpf_dynptr_from_xdp\n"
FROM_SKB = "r6 = r1\nr2 = 0\nr3 = r10\nr3 += -16\ncall kf:bpf_dynptr_from_skb\n"
DP = "r1 = r10\nr1 += -16\n"
PROGRAMS.update({
 'xdp_size': (XDP, FROM_XDP + DP + "call kf:bpf_dynptr_size\nexit\n"),
 'xdp_is_null_rdonly': (XDP, FROM_XDP + DP + "call kf:bpf_dynptr_is_null\nr7 = r0\n" + DP + "call kf:bpf_dynptr_is_rdonly\nr0 += r7\nexit\n"),
 'xdp_slice_read': (XDP, FROM_XDP + DP + "r2 = 0\nr3 = 0\nr4 = 4\ncall kf:bpf_dynptr_slice\nif r0 == 0 goto +2\nr0 = *(u8 *)(r0 + 3)\nexit\nr0 = 1\nexit\n"),
 'xdp_slice_unchecked': (XDP, FROM_XDP + DP + "r2 = 0\nr3 = 0\nr4 = 4\ncall kf:bpf_dynptr_slice\nr0 = *(u8 *)(r0 + 3)\nexit\n"),
 'xdp_slice_oob': (XDP, FROM_XDP + DP + "r2 = 0\nr3 = 0\nr4 = 4\ncall kf:bpf_dynptr_slice\nif r0 == 0 goto +2\nr0 = *(u8 *)(r0 + 4)\nexit\nr0 = 1\nexit\n"),
 'xdp_slice_write_rdonly': (XDP, FROM_XDP + DP + "r2 = 0\nr3 = 0\nr4 = 4\ncall kf:bpf_dynptr_slice\nif r0 == 0 goto +2\n*(u8 *)(r0 + 0) = 1\nr0 = 2\nexit\n"),
 'xdp_slice_rdwr_write': (XDP, FROM_XDP + DP + "r2 = 0\nr3 = 0\nr4 = 4\ncall kf:bpf_dynptr_slice_rdwr\nif r0 == 0 goto +2\n*(u8 *)(r0 + 0) = 1\nr0 = 2\nexit\n"),
 'xdp_slice_nonconst_size': (XDP, FROM_XDP + DP + "r2 = 0\nr3 = 0\nr4 = *(u32 *)(r6 + 0)\ncall kf:bpf_dynptr_slice\nr0 = 2\nexit\n"),
 'xdp_slice_buffer': (XDP, FROM_XDP + "r1 = 0\n*(u64 *)(r10 - 24) = r1\n" + DP + "r2 = 0\nr3 = r10\nr3 += -24\nr4 = 8\ncall kf:bpf_dynptr_slice\nif r0 == 0 goto +2\nr0 = *(u8 *)(r0 + 7)\nexit\nr0 = 1\nexit\n"),
 'xdp_slice_buffer_small': (XDP, FROM_XDP + "r1 = 0\n*(u64 *)(r10 - 24) = r1\n" + DP + "r2 = 0\nr3 = r10\nr3 += -24\nr4 = 16\ncall kf:bpf_dynptr_slice\nr0 = 2\nexit\n"),
 'xdp_adjust': (XDP, FROM_XDP + DP + "r2 = 1\nr3 = 5\ncall kf:bpf_dynptr_adjust\nr7 = r0\n" + DP + "call kf:bpf_dynptr_size\nr0 += r7\nexit\n"),
 'xdp_clone': (XDP, FROM_XDP + DP + "r2 = r10\nr2 += -32\ncall kf:bpf_dynptr_clone\nr1 = r10\nr1 += -32\ncall kf:bpf_dynptr_size\nexit\n"),
 'xdp_clone_into_init': (XDP, FROM_XDP + DP + "r2 = r10\nr2 += -16\ncall kf:bpf_dynptr_clone\nr0 = 0\nexit\n"),
 'size_uninit': (XDP, DP + "call kf:bpf_dynptr_size\nexit\n"),
 'from_xdp_twice': (XDP, FROM_XDP + "r1 = r6\n" + "r2 = 0\nr3 = r10\nr3 += -16\ncall kf:bpf_dynptr_from_xdp\nr0 = 0\nexit\n"),
 'from_xdp_misaligned': (XDP, "r2 = 0\nr3 = r10\nr3 += -20\ncall kf:bpf_dynptr_from_xdp\nr0 = 0\nexit\n"),
 'from_xdp_not_stack': (XDP, "r2 = 0\nr3 = 0\ncall kf:bpf_dynptr_from_xdp\nr0 = 0\nexit\n"),
 'skb_slice': (TC, FROM_SKB + DP + "r2 = 0\nr3 = 0\nr4 = 2\ncall kf:bpf_dynptr_slice\nif r0 == 0 goto +2\nr0 = *(u16 *)(r0 + 0)\nexit\nr0 = 1\nexit\n"),
 'skb_slice_rdwr': (TC, FROM_SKB + DP + "r2 = 0\nr3 = 0\nr4 = 2\ncall kf:bpf_dynptr_slice_rdwr\nif r0 == 0 goto +2\n*(u8 *)(r0 + 0) = 1\nr0 = 0\nexit\n"),
 'skb_slice_rdwr_socket_filter': (1, FROM_SKB + DP + "r2 = 0\nr3 = 0\nr4 = 2\ncall kf:bpf_dynptr_slice_rdwr\nr0 = 0\nexit\n"),
 'skb_write_after_overwrite': (TC, FROM_SKB + "r1 = 0\n*(u64 *)(r10 - 16) = r1\n" + DP + "call kf:bpf_dynptr_size\nexit\n"),
 'xdp_memset': (XDP, FROM_XDP + DP + "r2 = 0\nr3 = 4\nr4 = 0\ncall kf:bpf_dynptr_memset\nexit\n"),
 'xdp_copy': (XDP, FROM_XDP + DP + "r2 = 0\nr3 = r10\nr3 += -16\nr4 = 8\nr5 = 4\ncall kf:bpf_dynptr_copy\nexit\n"),
 'xdp_slice_after_pkt_change': (XDP, FROM_XDP + DP + "r2 = 0\nr3 = 0\nr4 = 4\ncall kf:bpf_dynptr_slice\nif r0 == 0 goto +6\nr7 = r0\nr1 = r6\nr2 = 0\ncall 44\nr0 = *(u8 *)(r7 + 0)\nexit\nr0 = 1\nexit\n"),
 'xdp_pull_data_invalidates': (XDP, "r6 = r1\nr2 = *(u32 *)(r6 + 0)\nr3 = *(u32 *)(r6 + 4)\nr1 = r2\nr1 += 4\nif r1 > r3 goto +6\nr7 = r2\nr1 = r6\nr2 = 8\ncall kf:bpf_xdp_pull_data\nr0 = *(u8 *)(r7 + 0)\nexit\nr0 = 1\nexit\n"),
 'xdp_pull_data_ok': (XDP, "r6 = r1\nr1 = r6\nr2 = 8\ncall kf:bpf_xdp_pull_data\nexit\n"),
})


def _offsets() -> dict[str, int]:
    """Struct offsets and type ids of this kernel's BTF the program texts refer to."""
    btf = pybpf_instance().vmlinux_btf.parsed()
    task = btf.types[btf.find("task_struct")]
    return {"real_parent": task.member("real_parent").byte_offset, "sk_buff": btf.find("sk_buff"),
            "int": next(t.id for t in btf.types if type(t).__name__ == "BtfInt" and t.name == "int")}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_program(kernel: Any, name: str) -> None:
    prog_type, text = PROGRAMS[name]
    if "{" in text:
        text = text.format(**_offsets())
    ko, po = both(kernel, prog_type, kfunc_program(text), **_attrs(prog_type))
    assert po == ko


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_level2_log(kernel: Any, name: str) -> None:
    """The whole level-2 log (states, precision, liveness, messages) equals the kernel's."""
    prog_type, text = PROGRAMS[name]
    if "{" in text:
        text = text.format(**_offsets())
    want, got = load_both(kernel, pybpf_instance(), prog_type, kfunc_program(text), log_level=2,
                          **_attrs(prog_type))
    assert got.log == want.log


def test_not_a_function(kernel: Any) -> None:
    """An id that names a type but not a FUNC, and one past the end of vmlinux BTF."""
    btf = pybpf_instance().vmlinux_btf.parsed()
    int_id = next(t.id for t in btf.types if type(t).__name__ == "BtfInt")
    for imm in (int_id, len(btf.types) + 10):
        ko, po = both(kernel, XDP, [Insn(0x85, 0, 2, 0, imm), Insn(0xB7), Insn(0x95)])
        assert po == ko


def test_not_a_kfunc(kernel: Any) -> None:
    """A kernel function vmlinux BTF knows but no kfunc set lists."""
    ko, po = both(kernel, XDP, kfunc_program("call vfs_read#{}\nr0 = 0\nexit\n".format(
        pybpf_instance().vmlinux_btf.parsed().find("vfs_read"))))
    assert not ko[0] and "is not allowed" in ko[1]
    assert po == ko


@pytest.mark.parametrize(("off", "fd_array"), [(1, None), (-1, None), (1, [0, 9999])])
def test_module_btf_offset(kernel: Any, off: int, fd_array: list[int] | None) -> None:
    """``off`` selects a module BTF through ``fd_array``: errno and whole log as the kernel's."""
    fid = pybpf_instance().vmlinux_btf.parsed().find("bpf_rcu_read_lock")
    insns = [Insn(0x85, 0, 2, off, fid), Insn(0xB7), Insn(0x95)]
    res = kernel.prog_load(XDP, encode(insns), log_level=1, log_size=1 << 16, fd_array=fd_array)
    try:
        Program.load(pybpf_instance(), XDP, insns, log_level=1, log_size=1 << 16,
                     **({"fd_array": _fd_array_addr(fd_array)} if fd_array else {}))
        got: tuple[int, str] = (0, "")
    except BpfError as e:
        got = (e.errno, e.log)
    assert got == (res.errno, str(res.log))


_KEEP: list[Any] = []


def _fd_array_addr(fds: list[int]) -> int:
    import ctypes

    arr = (ctypes.c_int32 * len(fds))(*fds)
    _KEEP.append(arr)
    return ctypes.addressof(arr)


def test_non_gpl(kernel: Any) -> None:
    ko, po = both(kernel, XDP, kfunc_program(RCU_LOCK + RCU_UNLOCK + RET0), license="MIT")
    assert po == ko


@pytest.mark.parametrize("reachable", [True, False])
def test_zero_imm(kernel: Any, reachable: bool) -> None:
    """``imm`` 0 is only an error if the call survives dead-code removal."""
    jump = [] if reachable else [Insn(0x05, 0, 0, 1)]
    ko, po = both(kernel, XDP, [*jump, Insn(0x85, 0, 2, 0, 0), Insn(0xB7), Insn(0x95)])
    assert po[:2] == ko[:2]


def _bpftool_xlated(prog_id: int) -> list[str]:
    out = subprocess.run(["bpftool", "prog", "dump", "xlated", "id", str(prog_id)],
                         capture_output=True, text=True, check=True).stdout
    return [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ":" in ln]


@pytest.mark.parametrize("text", [RCU_LOCK + RCU_UNLOCK + RET0,
                                  "call kf:bpf_cast_to_kern_ctx\nr0 = 0\nexit\n",
                                  "r1 = r10\nr1 += -8\nr2 = 0\nr3 = 3\ncall kf:bpf_iter_num_new\n"
                                  "r1 = r10\nr1 += -8\ncall kf:bpf_iter_num_destroy\nr0 = 0\nexit\n"])
def test_xlated(kernel: Any, text: str) -> None:
    """The xlated program (``fixup_kfunc_call``): calls named as bpftool names them, the
    casts inlined as ``r0 = r1``; call immediates are addresses, compared by name only."""
    import re

    from pybpf.isa.disasm import disasm_kernel
    from pybpf.verifier.kfunc_fixup import xlated_kfunc_name

    insns = kfunc_program(text)
    res = kernel.prog_load(XDP, encode(insns), log_level=1, log_size=1 << 20)
    assert res.fd >= 0, res.log
    try:
        want = _bpftool_xlated(kernel.prog_info(res.fd).id)
    finally:
        kernel.close(res.fd)
    p = Program.load(pybpf_instance(), XDP, insns)
    xl = p.obj.xlated or p.obj.insns
    k = pybpf_instance()
    got = disasm_kernel(xl, call_target=lambda i: xlated_kfunc_name(k, i) if i.src == 2 else None)
    strip = re.compile(r"#-?\d+$")
    assert [strip.sub("", ln) for ln in got] == [strip.sub("", ln) for ln in want]


def _str_prog(fn: str, args: list[object]) -> str:
    """xdp program: strings of ``args`` on the stack (r1.. point to them), ints as is;
    returns ``fn``'s result."""
    text, off = "", 0
    regs = []
    for a in args:
        if isinstance(a, bytes):
            data = a + b"\0"
            off += (len(data) + 7) // 8 * 8
            for i, b in enumerate(data):
                text += f"*(u8 *)(r10 - {off - i}) = {b}\n"
            regs.append(f"r10\nr{len(regs) + 1} += -{off}")
        else:
            regs.append(str(a))
    for i, r in enumerate(regs):
        text += f"r{i + 1} = {r}\n"
    return text + f"call kf:{fn}\nexit\n"


STR_CASES = [
    ("bpf_strlen", [b"hello"]), ("bpf_strlen", [b""]), ("bpf_strlen", [0]),
    ("bpf_strnlen", [b"hello", 3]), ("bpf_strnlen", [b"hi", 10]),
    ("bpf_strcmp", [b"abc", b"abd"]), ("bpf_strcmp", [b"abc", b"abc"]), ("bpf_strcmp", [b"b", b"a"]),
    ("bpf_strcmp", [b"ab", b"abc"]), ("bpf_strcasecmp", [b"ABC", b"abc"]), ("bpf_strcasecmp", [b"A[", b"a{"]),
    ("bpf_strchr", [b"hello", ord("l")]), ("bpf_strchr", [b"hello", ord("z")]), ("bpf_strchr", [b"hello", 0]),
    ("bpf_strnchr", [b"hello", 2, ord("l")]), ("bpf_strnchr", [b"hello", 4, ord("l")]),
    ("bpf_strchrnul", [b"hello", ord("z")]), ("bpf_strchrnul", [b"hello", ord("e")]),
    ("bpf_strrchr", [b"hello", ord("l")]), ("bpf_strrchr", [b"hello", 0]), ("bpf_strrchr", [b"hello", ord("q")]),
    ("bpf_strspn", [b"aabbc", b"ab"]), ("bpf_strspn", [b"xyz", b"ab"]), ("bpf_strcspn", [b"hello", b"lo"]),
    ("bpf_strcspn", [b"hello", b""]),
    ("bpf_strstr", [b"hello world", b"o w"]), ("bpf_strstr", [b"hello", b""]), ("bpf_strstr", [b"hello", b"xyz"]),
    ("bpf_strstr", [b"", b"a"]), ("bpf_strnstr", [b"hello world", b"world", 8]),
    ("bpf_strnstr", [b"hello world", b"world", 11]), ("bpf_strnstr", [b"hello", b"lo", 5]),
]


@pytest.mark.parametrize("jit", [0, 1])
def test_string_kfuncs_run(kernel: Any, jit: int) -> None:
    """The string kfuncs return on pybpf's tiers what they return on Linux."""
    wrong = []
    for fn, args in STR_CASES:
        insns = kfunc_program(_str_prog(fn, args))
        res = kernel.prog_load(XDP, encode(insns), log_level=1, log_size=1 << 20)
        assert res.fd >= 0, res.log
        try:
            want = kernel.prog_test_run(res.fd, bytes(64)).retval
        finally:
            kernel.close(res.fd)
        got = Program.load(pybpf_instance(jit), XDP, insns).test_run(bytes(64)).retval
        if got != want:
            wrong.append((fn, args, want, got))
    assert not wrong
