"""Helpers that take or return BTF-typed kernel pointers (``ARG_PTR_TO_BTF_ID``,
``RET_PTR_TO_BTF_ID``): their prototypes with the struct each pointer must be — the
kernel's ``arg<N>_btf_id`` / ``ret_btf_id`` (``BTF_ID(struct, task_struct)`` lists) — as
data, by struct name; the verifier resolves the names in vmlinux BTF
(:func:`pybpf.verifier.btf_access.helper_btf_id`).

``FuncProto.extra``: ``ret_btf`` (struct name of a returned pointer), ``arg_btf``
({argument index: struct name}). Prototypes already in :mod:`pybpf.helpers.protos` get
their BTF ids here (same types, same implementation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pybpf.helpers.proto import ArgFlag, ArgType, FuncProto, RetType
from pybpf.helpers.task import get_current_task
from pybpf.runtime.context import RunContext

M64 = (1 << 64) - 1
PTR_TRUSTED = 1 << 15  # regs.PTR_TRUSTED: RET_PTR_TO_BTF_ID_TRUSTED
PTR_MAYBE_NULL = 1 << 8
ENOENT, EINVAL = 2, 22

BTF_ID = int(ArgType.ARG_PTR_TO_BTF_ID)
SOCK_COMMON = int(ArgType.ARG_PTR_TO_BTF_ID_SOCK_COMMON)

#: the struct a BTF-id argument/return of an existing prototype is (kernel's *_btf_id)
BTF_IDS: dict[int, dict[str, Any]] = {
    127: {"arg_btf": {0: "seq_file"}},  # bpf_seq_write
    126: {"arg_btf": {0: "seq_file"}},  # bpf_seq_printf
    150: {"arg_btf": {0: "seq_file"}},  # bpf_seq_printf_btf
    141: {"arg_btf": {0: "task_struct"}},  # bpf_get_task_stack
    191: {"arg_btf": {3: "task_struct"}},  # bpf_copy_from_user_task
    147: {"arg_btf": {0: "path"}},  # bpf_d_path
    156: {"arg_btf": {1: "task_struct"}},  # bpf_task_storage_get
    157: {"arg_btf": {1: "task_struct"}},  # bpf_task_storage_delete
    210: {"arg_btf": {1: "cgroup"}},  # bpf_cgrp_storage_get
    211: {"arg_btf": {1: "cgroup"}},  # bpf_cgrp_storage_delete
    175: {"arg_btf": {0: "task_struct"}, "ret_btf": "pt_regs"},  # bpf_task_pt_regs
    136: {"ret_btf": "tcp6_sock"},
    137: {"ret_btf": "tcp_sock"},
    138: {"ret_btf": "tcp_timewait_sock"},
    139: {"ret_btf": "tcp_request_sock"},
    140: {"ret_btf": "udp6_sock"},
    178: {"ret_btf": "unix_sock"},
    196: {"ret_btf": "mptcp_sock"},
}


def find_vma(ctx: RunContext, task: int, addr: int, cb: int, cb_ctx: int, flags: int) -> int:
    """``bpf_find_vma``: a pybpf task has no address space, so no VMA is ever found
    (``-ENOENT``, the callback is not called); non-zero flags are ``-EINVAL``."""
    return (-EINVAL if flags else -ENOENT) & M64


def _skc_to(ctx: RunContext, sk: int, *_: int) -> int:
    """``bpf_skc_to_*``: pybpf's sockets are none of these kernel socket types: NULL."""
    return 0


def _new_protos() -> list[FuncProto]:
    skc = [(136, "skc_to_tcp6_sock"), (138, "skc_to_tcp_timewait_sock"),
           (140, "skc_to_udp6_sock"), (178, "skc_to_unix_sock")]
    out = [
        FuncProto(158, "get_current_task_btf", get_current_task, int(RetType.RET_PTR_TO_BTF_ID),
                  (), ret_flags=PTR_TRUSTED, extra={"ret_btf": "task_struct"}),
        FuncProto(180, "find_vma", find_vma, int(RetType.RET_INTEGER),
                  (BTF_ID, int(ArgType.ARG_ANYTHING), int(ArgType.ARG_PTR_TO_FUNC),
                   int(ArgType.ARG_PTR_TO_STACK) | int(ArgFlag.PTR_MAYBE_NULL),
                   int(ArgType.ARG_ANYTHING)),
                  extra={"arg_btf": {0: "task_struct"}}),
    ]
    out += [FuncProto(fid, name, _skc_to, int(RetType.RET_PTR_TO_BTF_ID), (SOCK_COMMON,),
                      ret_flags=PTR_MAYBE_NULL, extra=dict(BTF_IDS[fid])) for fid, name in skc]
    ro_mem = int(ArgType.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_RDONLY)
    size0 = int(ArgType.ARG_CONST_SIZE_OR_ZERO)
    anything = int(ArgType.ARG_ANYTHING)
    map_ptr = int(ArgType.ARG_CONST_MAP_PTR)
    out += [  # tracing only: perf output of a kernel skb/xdp_buff, a file's socket
        FuncProto(111, "skb_output", None, int(RetType.RET_INTEGER),
                  (BTF_ID, map_ptr, anything, ro_mem, size0), gpl_only=True,
                  extra={"arg_btf": {0: "sk_buff"}}),
        FuncProto(121, "xdp_output", None, int(RetType.RET_INTEGER),
                  (BTF_ID, map_ptr, anything, ro_mem, size0), gpl_only=True,
                  extra={"arg_btf": {0: "xdp_buff"}}),
        FuncProto(162, "sock_from_file", None, int(RetType.RET_PTR_TO_BTF_ID), (BTF_ID,),
                  ret_flags=PTR_MAYBE_NULL, extra={"arg_btf": {0: "file"}, "ret_btf": "socket"}),
    ]
    # bpf_skc_to_mptcp_sock takes a socket register, not a BTF pointer (ARG_PTR_TO_SOCK_COMMON)
    out.append(FuncProto(196, "skc_to_mptcp_sock", _skc_to, int(RetType.RET_PTR_TO_BTF_ID),
                         (int(ArgType.ARG_PTR_TO_SOCK_COMMON),), ret_flags=PTR_MAYBE_NULL,
                         extra=dict(BTF_IDS[196])))
    return out


PROTOS: list[FuncProto] = _new_protos()


def protos_with_btf_ids(existing: dict[int, FuncProto]) -> dict[int, FuncProto]:
    """The prototypes of this module, plus those in ``existing`` that take or return BTF
    pointers, with their ``arg_btf``/``ret_btf`` filled in."""
    out: dict[int, FuncProto] = {p.func_id: p for p in PROTOS}
    for fid, ids in BTF_IDS.items():
        proto = existing.get(fid)
        if proto is not None and fid not in out:
            out[fid] = dataclasses.replace(proto, extra={**proto.extra, **ids})
    return out


def per_cpu_ptr(ctx: RunContext, ptr: int, cpu: int, *_: int) -> int:
    """``bpf_per_cpu_ptr``: CPU ``cpu``'s copy of a per-CPU object (a typed ksym, see
    :mod:`pybpf.verifier.ksyms`), NULL for a CPU id at or past ``nr_cpu_ids``."""
    from pybpf.runtime.cpus import num_possible_cpus, this_cpu_off

    cpu &= 0xFFFFFFFF
    if cpu >= num_possible_cpus():
        return 0
    return (ptr + this_cpu_off(cpu)) & M64


def this_cpu_ptr(ctx: RunContext, ptr: int, *_: int) -> int:
    """``bpf_this_cpu_ptr``: the running CPU's copy of a per-CPU object."""
    from pybpf.runtime.cpus import this_cpu_off

    return (ptr + this_cpu_off(ctx.cpu)) & M64


IMPLS: dict[int, Callable[..., int]] = {p.func_id: p.impl for p in PROTOS if p.impl is not None}
IMPLS.update({153: per_cpu_ptr, 154: this_cpu_ptr})
