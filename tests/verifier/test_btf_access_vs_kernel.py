"""BTF-typed pointers vs the live 6.18 kernel: tp_btf and iterator programs, written as
raw instructions, loaded into both; verdict, first error message and the whole level-2
log (and the level-1 log) must be equal.

What is covered: ``btf_ctx_access`` (each 8-byte ctx slot typed from the tracepoint's or
iterator's prototype: ``trusted_ptr_<struct>``, ``__nullable`` and the raw_tp null-args
table, iterator ``ctx_arg_info`` incl. ``PTR_TO_BUF``, scalars, missing arguments, sizes,
offsets), ``btf_struct_walk`` through those pointers (members, nested structs, arrays,
unions, pointer members becoming ``ptr_``/``rcu_ptr_``/``rcu_ptr_or_null_``/``trusted_``
per the ``__safe_*`` allow-lists, pointers to non-structs becoming
``rdonly_untrusted_mem``), the refusals (negative, variable, beyond the struct, partial
pointer reads, writes, atomics, NULL-able dereference), and ``check_attach_btf_id``'s
messages. Member offsets come from the machine's vmlinux BTF (``{task_struct.pid}``).
fentry/fexit/LSM loads fail with EPERM in this kernel, so they are not compared here.
"""

from __future__ import annotations

import os
import re
import struct
from types import ModuleType

import pytest

from pybpf.btf.raw import Btf, BtfKind
from pybpf.isa.asm import assemble
from pybpf.kernel import Kernel
from pybpf.testing.verifier_diff import (
    callback_func_info,
    callback_slot,
    error_line,
    kernel_load,
    load_both,
    log_lines,
    pybpf_load,
)

TRACING = 26
TRACE_RAW_TP, TRACE_FENTRY, TRACE_ITER = 23, 24, 28
BPF_F_SLEEPABLE = 1 << 4
R0_EXIT = "r0 = 0\nexit"

#: name -> (target, program, prog_flags). Targets: ``tp:<tracepoint>``, ``iter:<target>``
#: or ``<attach type>:<kind>:<name>`` / ``<attach type>:<id>`` for the attach errors.
CASES: dict[str, tuple[str, str, int]] = {
    # -- tp_btf ctx slots (sched_switch: bool preempt, prev, next, unsigned prev_state)
    "tp_scalar_arg": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 0)\n" + R0_EXIT, 0),
    "tp_scalar_arg_narrow": ("tp:sched_switch", "r2 = *(u32 *)(r1 + 0)\n" + R0_EXIT, 0),
    "tp_ptr_arg": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\nr0 = *(u32 *)(r2 + {task_struct.pid})\n"
                   + R0_EXIT, 0),
    "tp_ptr_arg_narrow": ("tp:sched_switch", "r2 = *(u32 *)(r1 + 8)\n" + R0_EXIT, 0),
    "tp_last_arg": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 24)\n" + R0_EXIT, 0),
    "tp_past_args": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 32)\n" + R0_EXIT, 0),
    "tp_far_past_args": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 40)\n" + R0_EXIT, 0),
    "tp_unaligned_slot": ("tp:sched_switch", "r2 = *(u32 *)(r1 + 4)\n" + R0_EXIT, 0),
    "tp_ctx_write": ("tp:sched_switch", "r2 = 1\n*(u64 *)(r1 + 8) = r2\n" + R0_EXIT, 0),
    "tp_return_pointer": ("tp:sched_switch", "r0 = *(u64 *)(r1 + 8)\nexit", 0),
    "tp_pt_regs": ("tp:sys_enter", "r2 = *(u64 *)(r1 + 0)\nr0 = *(u64 *)(r2 + 8)\n" + R0_EXIT, 0),
    "tp_nullable_suffix": ("tp:tcp_send_reset", "r2 = *(u64 *)(r1 + 8)\nr0 = *(u32 *)(r2 + 0)\n"
                           + R0_EXIT, 0),
    "tp_nullable_checked": ("tp:tcp_send_reset", "r2 = *(u64 *)(r1 + 8)\nif r2 == 0 goto +1\n"
                            "r0 = *(u32 *)(r2 + 0)\n" + R0_EXIT, 0),
    "tp_null_args_table": ("tp:sched_pi_setprio", "r2 = *(u64 *)(r1 + 8)\nr3 = *(u64 *)(r1 + 0)\n"
                           + R0_EXIT, 0),
    "tp_null_args_kfree_skb": ("tp:kfree_skb", "r2 = *(u64 *)(r1 + 0)\nr3 = *(u64 *)(r1 + 24)\n"
                               + R0_EXIT, 0),
    # -- the seq_file helpers exist for iterators only
    "tp_seq_write_refused": ("tp:sched_switch", "r1 = 0\nr2 = 0\nr3 = 0\ncall 127\n" + R0_EXIT, 0),
    "iter_seq_write": ("iter:task", "r2 = *(u64 *)(r1 + 0)\nr1 = *(u64 *)(r2 + 0)\n"
                       "*(u64 *)(r10 - 8) = r1\nr2 = r10\nr2 += -8\nr3 = 8\ncall 127\n" + R0_EXIT, 0),
    "iter_seq_printf": ("iter:task", "r2 = *(u64 *)(r1 + 0)\nr1 = *(u64 *)(r2 + 0)\n"
                        "r2 = 0x0a7825 ll\n*(u64 *)(r10 - 8) = r2\nr2 = r10\nr2 += -8\nr3 = 4\n"
                        "*(u64 *)(r10 - 16) = r3\nr4 = r10\nr4 += -16\nr5 = 8\ncall 126\n" + R0_EXIT, 0),
    # -- reads through PTR_TO_BTF_ID
    "walk_u8_in_array": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                         "r0 = *(u8 *)(r2 + {task_struct.comm+3})\n" + R0_EXIT, 0),
    "walk_u64_in_char_array": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                               "r0 = *(u64 *)(r2 + {task_struct.comm+8})\n" + R0_EXIT, 0),
    "walk_past_member_end": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                             "r0 = *(u64 *)(r2 + {task_struct.comm+12})\n" + R0_EXIT, 0),
    "walk_nested_struct": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                           "r0 = *(u64 *)(r2 + {task_struct.se.vruntime})\n" + R0_EXIT, 0),
    "walk_nested_pointer": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                            "r3 = *(u64 *)(r2 + {task_struct.se.parent})\nr0 = *(u64 *)(r3 + 0)\n"
                            + R0_EXIT, 0),
    "walk_rcu_safe": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                      "r3 = *(u64 *)(r2 + {task_struct.real_parent})\n"
                      "r4 = *(u64 *)(r3 + {task_struct.parent})\nr5 = *(u64 *)(r4 + 0)\n" + R0_EXIT, 0),
    "walk_rcu_css_set": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                         "r3 = *(u64 *)(r2 + {task_struct.cgroups})\nr4 = *(u64 *)(r3 + 0)\n"
                         + R0_EXIT, 0),
    "walk_untagged_pointer": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                              "r3 = *(u64 *)(r2 + {task_struct.group_leader})\n"
                              "r4 = *(u64 *)(r3 + {task_struct.files})\n" + R0_EXIT, 0),
    "walk_plain_pointer_null_check": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                                      "r3 = *(u64 *)(r2 + {task_struct.mm})\nif r3 == 0 goto +1\n"
                                      "r4 = *(u64 *)(r3 + 0)\n" + R0_EXIT, 0),
    "walk_anon_struct_too_small": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                                   "r3 = *(u64 *)(r2 + {task_struct.mm})\nr0 = *(u64 *)(r3 + 0)\n"
                                   + R0_EXIT, 0),
    "walk_void_pointer_member": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                                 "r3 = *(u64 *)(r2 + {task_struct.stack})\nr0 = *(u8 *)(r3 + 100)\n"
                                 "r3 += 8\nr0 = *(u32 *)(r3 + 0)\n" + R0_EXIT, 0),
    "walk_untrusted_mem_write": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                                 "r3 = *(u64 *)(r2 + {task_struct.stack})\n*(u8 *)(r3 + 0) = 1\n"
                                 + R0_EXIT, 0),
    "walk_partial_pointer": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                             "r3 = *(u32 *)(r2 + {task_struct.real_parent})\n" + R0_EXIT, 0),
    "walk_negative": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\nr0 = *(u32 *)(r2 - 8)\n" + R0_EXIT, 0),
    "walk_beyond_struct": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\nr0 = *(u64 *)(r2 + 30000)\n"
                           + R0_EXIT, 0),
    "walk_const_offset": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\nr2 += 8\nr0 = *(u32 *)(r2 + 0)\n"
                          + R0_EXIT, 0),
    "walk_sub_offset": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\nr2 -= 8\nr0 = *(u32 *)(r2 + 8)\n"
                        + R0_EXIT, 0),
    "walk_variable_offset": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\nr3 = *(u32 *)(r2 + 0)\n"
                             "r3 &= 8\nr2 += r3\nr0 = *(u32 *)(r2 + 0)\n" + R0_EXIT, 0),
    "walk_spilled_pointer": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n*(u64 *)(r10 - 8) = r2\n"
                             "r3 = *(u64 *)(r10 - 8)\nr0 = *(u32 *)(r3 + 0)\n" + R0_EXIT, 0),
    "pointer_compare": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\nr3 = *(u64 *)(r1 + 16)\n"
                        "if r2 == r3 goto +1\nr0 = 0\n" + R0_EXIT, 0),
    "pointer_multiply": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\nr2 *= 2\n" + R0_EXIT, 0),
    "store_to_btf_pointer": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\nr3 = 1\n"
                             "*(u32 *)(r2 + 0) = r3\n" + R0_EXIT, 0),
    "st_to_btf_pointer": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n*(u32 *)(r2 + 0) = 1\n"
                          + R0_EXIT, 0),
    "atomic_on_btf_pointer": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\nr3 = 1\n"
                              "lock *(u64 *)(r2 + 0) += r3\n" + R0_EXIT, 0),
    # -- iterators: ctx_arg_info types, meta, return range
    "iter_task_null_deref": ("iter:task", "r2 = *(u64 *)(r1 + 8)\nr0 = *(u32 *)(r2 + 0)\n" + R0_EXIT, 0),
    "iter_task_checked": ("iter:task", "r2 = *(u64 *)(r1 + 8)\nif r2 == 0 goto +1\n"
                          "r0 = *(u32 *)(r2 + {task_struct.pid})\n" + R0_EXIT, 0),
    "iter_task_meta_seq": ("iter:task", "r2 = *(u64 *)(r1 + 0)\nr3 = *(u64 *)(r2 + 0)\n"
                           "r0 = *(u64 *)(r3 + 0)\n" + R0_EXIT, 0),
    "iter_task_ret_2": ("iter:task", "r0 = 2\nexit", 0),
    "iter_task_sleepable": ("iter:task", R0_EXIT, BPF_F_SLEEPABLE),
    "iter_task_no_third_arg": ("iter:task", "r2 = *(u64 *)(r1 + 16)\n" + R0_EXIT, 0),
    "iter_task_file_args": ("iter:task_file", "r2 = *(u64 *)(r1 + 8)\nr3 = *(u64 *)(r1 + 16)\n"
                            "r4 = *(u64 *)(r1 + 24)\n" + R0_EXIT, 0),
    "iter_task_file_walk": ("iter:task_file", "r2 = *(u64 *)(r1 + 24)\nif r2 == 0 goto +2\n"
                            "r3 = *(u64 *)(r2 + 0)\nr0 = *(u64 *)(r3 + 0)\n" + R0_EXIT, 0),
    "iter_task_vma": ("iter:task_vma", "r2 = *(u64 *)(r1 + 8)\nr3 = *(u64 *)(r1 + 16)\n" + R0_EXIT, 0),
    "iter_bpf_map": ("iter:bpf_map", "r2 = *(u64 *)(r1 + 8)\n" + R0_EXIT, 0),
    "iter_bpf_map_elem_bufs": ("iter:bpf_map_elem", "r2 = *(u64 *)(r1 + 16)\nr3 = *(u64 *)(r1 + 24)\n"
                               + R0_EXIT, 0),
    "iter_bpf_prog": ("iter:bpf_prog", "r2 = *(u64 *)(r1 + 8)\n" + R0_EXIT, 0),
    "iter_bpf_link": ("iter:bpf_link", "r2 = *(u64 *)(r1 + 8)\n" + R0_EXIT, 0),
    "iter_cgroup": ("iter:cgroup", "r2 = *(u64 *)(r1 + 8)\n" + R0_EXIT, 0),
    "iter_sockmap": ("iter:sockmap", "r2 = *(u64 *)(r1 + 16)\nr3 = *(u64 *)(r1 + 24)\n" + R0_EXIT, 0),
    "iter_tcp": ("iter:tcp", "r2 = *(u64 *)(r1 + 8)\nr3 = *(u64 *)(r1 + 16)\n" + R0_EXIT, 0),
    "iter_udp": ("iter:udp", "r2 = *(u64 *)(r1 + 8)\n" + R0_EXIT, 0),
    "iter_unix": ("iter:unix", "r2 = *(u64 *)(r1 + 8)\n" + R0_EXIT, 0),
    "iter_netlink": ("iter:netlink", "r2 = *(u64 *)(r1 + 8)\n" + R0_EXIT, 0),
    "iter_ipv6_route": ("iter:ipv6_route", "r2 = *(u64 *)(r1 + 8)\n" + R0_EXIT, 0),
    "iter_ksym": ("iter:ksym", "r2 = *(u64 *)(r1 + 8)\n" + R0_EXIT, 0),
    "iter_kmem_cache": ("iter:kmem_cache", "r2 = *(u64 *)(r1 + 8)\n" + R0_EXIT, 0),
    "iter_bpf_sk_storage_map": ("iter:bpf_sk_storage_map", "r2 = *(u64 *)(r1 + 16)\n"
                                "r3 = *(u64 *)(r1 + 24)\n" + R0_EXIT, 0),
    "iter_map_elem_key_read": ("iter:bpf_map_elem", "r2 = *(u64 *)(r1 + 16)\nif r2 == 0 goto +1\n"
                               "r0 = *(u32 *)(r2 + 0)\n" + R0_EXIT, 0),
    "iter_map_elem_value_write": ("iter:bpf_map_elem", "r2 = *(u64 *)(r1 + 24)\nif r2 == 0 goto +1\n"
                                  "*(u32 *)(r2 + 4) = 1\n" + R0_EXIT, 0),
    "iter_map_elem_key_write": ("iter:bpf_map_elem", "r2 = *(u64 *)(r1 + 16)\nif r2 == 0 goto +1\n"
                                "*(u32 *)(r2 + 0) = 1\n" + R0_EXIT, 0),
    "iter_map_elem_key_negative": ("iter:bpf_map_elem", "r2 = *(u64 *)(r1 + 16)\nif r2 == 0 goto +1\n"
                                   "r0 = *(u32 *)(r2 - 4)\n" + R0_EXIT, 0),
    "iter_map_elem_key_unchecked": ("iter:bpf_map_elem", "r2 = *(u64 *)(r1 + 16)\n"
                                    "r0 = *(u32 *)(r2 + 0)\n" + R0_EXIT, 0),
    # -- pruning with BTF pointers (regsafe: same type and BTF id, or not)
    "prune_same_pointer": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\nr3 = *(u64 *)(r1 + 24)\n"
                           "if r3 > 5 goto +1\nr4 = 1\nr0 = *(u32 *)(r2 + 0)\n" + R0_EXIT, 0),
    "prune_other_struct": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\nr3 = *(u64 *)(r1 + 24)\n"
                           "if r3 > 5 goto +1\nr2 = *(u64 *)(r2 + {task_struct.mm})\n"
                           "r0 = *(u8 *)(r2 + 0)\n" + R0_EXIT, 0),
    "prune_prev_or_next": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\nr3 = *(u64 *)(r1 + 24)\n"
                           "if r3 > 5 goto +1\nr2 = *(u64 *)(r1 + 16)\nr0 = *(u32 *)(r2 + 0)\n"
                           + R0_EXIT, 0),
    # -- helpers taking and returning BTF pointers
    "helper_rcu_pointer_arg": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                               "r1 = *(u64 *)(r2 + {task_struct.real_parent})\nr2 = r10\nr2 += -64\n"
                               "r3 = 64\nr4 = 0\ncall 141\n" + R0_EXIT, 0),
    "helper_rcu_or_null_pointer_arg": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                                       "r1 = *(u64 *)(r2 + {task_struct.parent})\nr2 = r10\n"
                                       "r2 += -64\nr3 = 64\nr4 = 0\ncall 141\n" + R0_EXIT, 0),
    "helper_untrusted_mem_arg": ("tp:sched_switch", "r2 = *(u64 *)(r1 + 8)\n"
                                 "r1 = *(u64 *)(r2 + {task_struct.stack})\nr2 = 8\ncall 6\n" + R0_EXIT, 0),
    "helper_current_task_btf": ("tp:sched_switch", "call 158\nr0 = *(u32 *)(r0 + {task_struct.pid})\n"
                                + R0_EXIT, 0),
    "helper_task_stack_of_current": ("tp:sched_switch", "call 158\nr1 = r0\nr2 = r10\nr2 += -64\n"
                                     "r3 = 64\nr4 = 0\ncall 141\n" + R0_EXIT, 0),
    "helper_task_stack_of_prev": ("tp:sched_switch", "r1 = *(u64 *)(r1 + 8)\nr2 = r10\nr2 += -64\n"
                                  "r3 = 64\nr4 = 0\ncall 141\n" + R0_EXIT, 0),
    "helper_task_stack_wrong_struct": ("tp:sched_switch", "r1 = *(u64 *)(r1 + 8)\n"
                                       "r1 = *(u64 *)(r1 + {task_struct.mm})\nr2 = r10\nr2 += -64\n"
                                       "r3 = 64\nr4 = 0\ncall 141\n" + R0_EXIT, 0),
    "helper_task_stack_scalar": ("tp:sched_switch", "r1 = 0\nr2 = r10\nr2 += -64\nr3 = 64\nr4 = 0\n"
                                 "call 141\n" + R0_EXIT, 0),
    "helper_task_stack_inner_offset": ("tp:sched_switch", "r1 = *(u64 *)(r1 + 8)\nr1 += 8\n"
                                       "r2 = r10\nr2 += -64\nr3 = 64\nr4 = 0\ncall 141\n" + R0_EXIT, 0),
    "helper_task_stack_negative_offset": ("tp:sched_switch", "r1 = *(u64 *)(r1 + 8)\nr1 += -8\n"
                                          "r2 = r10\nr2 += -64\nr3 = 64\nr4 = 0\ncall 141\n" + R0_EXIT, 0),
    "helper_task_stack_nullable": ("iter:task", "r1 = *(u64 *)(r1 + 8)\nr2 = r10\nr2 += -64\n"
                                   "r3 = 64\nr4 = 0\ncall 141\n" + R0_EXIT, 0),
    "helper_skc_to_tcp_sock_of_task": ("tp:sched_switch", "r1 = *(u64 *)(r1 + 8)\ncall 137\n" + R0_EXIT, 0),
    "helper_btf_pointer_as_memory": ("tp:sched_switch", "call 158\nr1 = r0\nr2 = 8\ncall 6\n" + R0_EXIT, 0),
    "helper_probe_read_from_task": ("tp:sched_switch", "call 158\nr3 = r0\nr1 = r10\nr1 += -8\n"
                                    "r2 = 8\ncall 113\n" + R0_EXIT, 0),
    "helper_seq_write": ("iter:task", "r2 = *(u64 *)(r1 + 0)\nr1 = *(u64 *)(r2 + 0)\nr2 = r10\n"
                         "r2 += -8\n*(u64 *)(r10 - 8) = r2\nr3 = 8\ncall 127\n" + R0_EXIT, 0),
    "helper_seq_write_wrong_struct": ("iter:task", "r2 = *(u64 *)(r1 + 0)\nr1 = r2\nr2 = r10\n"
                                      "r2 += -8\n*(u64 *)(r10 - 8) = r2\nr3 = 8\ncall 127\n" + R0_EXIT, 0),
    # -- check_attach_btf_id
    "attach_tp_to_struct": ("23:struct:task_struct", R0_EXIT, 0),
    "attach_tp_to_other_typedef": ("23:typedef:u32", R0_EXIT, 0),
    "attach_tp_to_func": ("23:func:schedule", R0_EXIT, 0),
    "attach_tp_without_btf_id": ("23:0", R0_EXIT, 0),
    "attach_tp_invalid_id": ("23:past_last", R0_EXIT, 0),
    "attach_tp_sleepable": ("tp:sched_switch", R0_EXIT, BPF_F_SLEEPABLE),
    "attach_iter_to_struct": ("28:struct:task_struct", R0_EXIT, 0),
    "attach_iter_to_other_func": ("28:func:schedule", R0_EXIT, 0),
    "attach_iter_without_btf_id": ("28:0", R0_EXIT, 0),
}


def member_offset(btf: Btf, path: str) -> int:
    """``task_struct.se.vruntime`` → byte offset of that member in vmlinux."""
    parts = path.split(".")
    t = btf.types[btf.find(parts[0], BtfKind.STRUCT)]
    off = 0
    for name in parts[1:]:
        m = t.member(name)  # type: ignore[attr-defined]
        off += m.bit_offset // 8
        t = btf.resolve(m.type)
    return off


def render(btf: Btf, text: str) -> str:
    """Replace ``{struct.member[+N]}`` with the member's offset (plus N)."""
    def sub(m: re.Match[str]) -> str:
        return str(member_offset(btf, m.group(1)) + int(m.group(2) or 0))
    return re.sub(r"\{([\w.]+?)(?:\+(\d+))?\}", sub, text)


def attach(btf: Btf, spec: str) -> tuple[int, int]:
    """(expected_attach_type, attach_btf_id) of a case target."""
    if spec.startswith("tp:"):
        return TRACE_RAW_TP, btf.find("btf_trace_" + spec[3:], BtfKind.TYPEDEF)
    if spec.startswith("iter:"):
        return TRACE_ITER, btf.find("bpf_iter_" + spec[5:], BtfKind.FUNC)
    eat, _, rest = spec.partition(":")
    if rest == "past_last":
        return int(eat), len(btf.types) + 5
    if ":" not in rest:
        return int(eat), int(rest)
    kind, name = rest.split(":")
    return int(eat), btf.find(name, BtfKind[kind.upper()])


def _both(kernel: ModuleType, k: Kernel, vmlinux: Btf, name: str,
          level: int) -> tuple[tuple[int, str], tuple[int, str]]:
    spec, text, flags = CASES[name]
    eat, btf_id = attach(vmlinux, spec)
    insns = assemble(render(vmlinux, text), syntax="kernel")
    want, got = load_both(kernel, k, TRACING, insns, log_level=level, expected_attach_type=eat,
                          attach_btf_id=btf_id, prog_flags=flags)
    return (want.errno, want.log), (got.errno, got.log)


@pytest.mark.parametrize("name", list(CASES))
def test_level2_log_vs_kernel(kernel: ModuleType, k: Kernel, vmlinux: Btf, name: str) -> None:
    (kerr, klog), (perr, plog) = _both(kernel, k, vmlinux, name, 2)
    assert perr == kerr, f"errno: pybpf {perr}, kernel {kerr}\n{plog}\n--- kernel:\n{klog}"
    assert error_line(plog) == error_line(klog)
    assert log_lines(plog) == log_lines(klog)


REJECTED = [n for n in CASES if n.startswith(("walk_past", "walk_neg", "walk_beyond", "walk_var",
                                              "walk_partial", "store_", "iter_task_null",
                                              "tp_nullable_suffix", "attach_", "tp_past",
                                              "iter_map_elem_key_w", "iter_map_elem_key_n",
                                              "helper_task_stack_w", "helper_untrusted"))]


@pytest.mark.parametrize("name", REJECTED)
def test_level1_log_vs_kernel(kernel: ModuleType, k: Kernel, vmlinux: Btf, name: str) -> None:
    (kerr, klog), (perr, plog) = _both(kernel, k, vmlinux, name, 1)
    assert perr == kerr != 0
    assert log_lines(plog) == log_lines(klog)


def test_cases_cover_every_outcome(kernel: ModuleType, k: Kernel, vmlinux: Btf) -> None:
    """The table is not all accepts (or all rejects): both verdicts, several errnos, and
    without a log buffer too."""
    for name, want in (("tp_ptr_arg", 0), ("walk_negative", 13), ("attach_tp_to_struct", 22)):
        (kerr, _), (perr, _) = _both(kernel, k, vmlinux, name, 0)
        assert kerr == perr == want


def _btf_main_and_cb() -> bytes:
    """Raw BTF: ``int main(void)`` and ``int cb(void *a, void *b, void *c)`` (static), the
    func_info the kernel wants before it accepts a callback reference."""
    strings = b"\0int\0main\0cb\0a\0b\0c\0"
    s_int, s_main, s_cb, s_a, s_b, s_c = 1, 5, 10, 13, 15, 17
    types = b"".join([
        struct.pack("<IIII", s_int, 1 << 24, 4, (1 << 24) | 32),  # [1] INT int
        struct.pack("<III", 0, 13 << 24, 1),  # [2] FUNC_PROTO int(void)
        struct.pack("<III", s_main, 12 << 24, 2),  # [3] FUNC main
        struct.pack("<III", 0, (13 << 24) | 3, 1)
        + struct.pack("<IIIIII", s_a, 6, s_b, 6, s_c, 6),  # [4] FUNC_PROTO int(void *, ...)
        struct.pack("<III", s_cb, 12 << 24, 4),  # [5] FUNC cb
        struct.pack("<III", 0, 2 << 24, 0),  # [6] PTR void
    ])
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


#: bpf_find_vma(task, addr, cb, ctx, flags): the callback gets (task, vma, ctx), vma being
#: a ``ptr_vm_area_struct``
FIND_VMA = {
    "find_vma_reads_vma": ("call 158\nr1 = r0\nr2 = 0\nr3 = subprog[cb]\nr4 = 0\nr5 = 0\n"
                           "call 180\nr0 = 0\nexit\ncb:\nr0 = *(u64 *)(r2 + 0)\nr0 = 0\nexit"),
    "find_vma_writes_vma": ("call 158\nr1 = r0\nr2 = 0\nr3 = subprog[cb]\nr4 = 0\nr5 = 0\n"
                            "call 180\nr0 = 0\nexit\ncb:\n*(u64 *)(r2 + 0) = 1\nr0 = 0\nexit"),
    "find_vma_not_a_task": ("r1 = *(u64 *)(r1 + 0)\nr2 = 0\nr3 = subprog[cb]\nr4 = 0\nr5 = 0\n"
                            "call 180\nr0 = 0\nexit\ncb:\nr0 = 0\nexit"),
    "find_vma_vma_past_end": ("call 158\nr1 = r0\nr2 = 0\nr3 = subprog[cb]\nr4 = 0\nr5 = 0\n"
                              "call 180\nr0 = 0\nexit\ncb:\nr0 = *(u64 *)(r2 + 4096)\nr0 = 0\n"
                              "exit"),
}


@pytest.mark.parametrize("name", list(FIND_VMA))
def test_find_vma_vs_kernel(kernel: ModuleType, k: Kernel, vmlinux: Btf, name: str) -> None:
    """Verdict, first error and processed count (the kernel also needs func_info)."""
    text = FIND_VMA[name]
    eat, btf_id = attach(vmlinux, "tp:sched_switch")
    insns = assemble(text)
    btf = kernel.btf_load(_btf_main_and_cb())
    assert btf.ok, btf.log
    try:
        want = kernel_load(kernel, TRACING, insns, expected_attach_type=eat, attach_btf_id=btf_id,
                           **callback_func_info(btf.fd, callback_slot(text)))
    finally:
        os.close(btf.fd)
    got = pybpf_load(k, TRACING, insns, expected_attach_type=eat, attach_btf_id=btf_id)
    assert got.errno == want.errno
    assert error_line(got.log) == error_line(want.log)
    assert got.outcome[2] == want.outcome[2] != -1  # processed insns
    assert want.errno == FIND_VMA_ERRNO[name]


#: the kernel's verdicts (so the table keeps covering both)
FIND_VMA_ERRNO = {"find_vma_reads_vma": 0, "find_vma_writes_vma": 13, "find_vma_not_a_task": 13,
                  "find_vma_vma_past_end": 13}


@pytest.mark.parametrize(("prog_type", "flags"), [(17, BPF_F_SLEEPABLE), (31, 0), (31, BPF_F_SLEEPABLE),
                                                  (2, BPF_F_SLEEPABLE), (6, BPF_F_SLEEPABLE)])
def test_sleepable_and_syscall_rules_vs_kernel(kernel: ModuleType, k: Kernel, prog_type: int,
                                               flags: int) -> None:
    """``check_attach_btf_id``'s first checks: which types may be sleepable; syscall
    programs must be."""
    insns = assemble(R0_EXIT, syntax="kernel")
    want, got = load_both(kernel, k, prog_type, insns, prog_flags=flags)
    assert got.errno == want.errno
    assert error_line(got.log) == error_line(want.log)


def test_non_gpl_program_cannot_read_kernel_structs(kernel: ModuleType, k: Kernel,
                                                    vmlinux: Btf) -> None:
    eat, btf_id = attach(vmlinux, "tp:sched_switch")
    insns = assemble("r2 = *(u64 *)(r1 + 8)\nr0 = *(u32 *)(r2 + 0)\n" + R0_EXIT, syntax="kernel")
    want, got = load_both(kernel, k, TRACING, insns, expected_attach_type=eat,
                          attach_btf_id=btf_id, license="Proprietary")
    assert got.errno == want.errno == 22
    assert log_lines(got.log) == log_lines(want.log)
