"""Shared machinery of the program-type modules (no type registers here).

A program type offers a set of helpers (``get_func_proto``), a ctx layout with access
rules (``is_valid_access``), says whether it may read/write packet data directly, and
what its programs may return. Concrete types subclass :class:`ProgTypeBase`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pybpf.helpers.proto import FuncProto

# helper sets, by kernel function (see net/core/filter.c, kernel/bpf/helpers.c, bpf_trace.c);
# bpf_base_func_proto as 6.18 has it (measured per capability on the live kernel: socket
# filters loaded without capabilities, with CAP_BPF, with CAP_BPF + CAP_PERFMON)
BASE = {1, 2, 3, 87, 88, 89, 195, 7, 8, 42, 12, 5, 125, 208, 130, 131, 132, 133, 134, 182, 105, 106,
        14, 120, 15}
# 6.18 offers bpf_current_task_under_cgroup (37), bpf_get_cgroup_classid (17) and the task
# storage helpers here too, beside the cgroup id helpers
BASE_BPF = {93, 94, 118, 153, 154, 169, 170, 171, 172, 194, 164, 181, 209, 198, 199, 200, 197, 201,
            202, 203, 210, 211, 80, 123, 37, 17, 156, 157}
# ... and bpf_copy_from_user{,_task} (148, 191), get_current_comm, perf event reads,
# send_signal, get_task_stack, get_branch_snapshot and find_vma here
BASE_PERFMON = {6, 35, 158, 112, 113, 114, 115, 149, 165, 175, 177, 148, 191, 16, 22, 55, 109, 117,
                141, 176, 180}
SK_BASE = {160}
SK_BASE_PERFMON = {136, 137, 138, 139, 140, 178, 196}  # the skc_to_* casts need CAP_PERFMON
TRACING = {1, 2, 3, 87, 88, 89, 195, 5, 125, 12, 35, 158, 175, 15, 16, 6, 8, 42, 22, 7, 36, 112, 113,
           114, 115, 4, 45, 210, 211, 37, 109, 117, 55, 130, 131, 132, 133, 134, 118, 141, 148, 191,
           149, 153, 154, 156, 157, 164, 165, 173, 176, 180, 177}
CGROUP_COMMON = {81, 186, 187}
# cgroup_common_func_proto: bpf_get_retval/bpf_set_retval are not offered to hooks without
# a syscall return value (ingress/egress, sock_ops, recvmsg, getpeername/getsockname)
_NO_RETVAL_ATTACH = frozenset({0, 1, 3, 19, 20, 51, 29, 30, 52, 31, 32, 53})
CGROUP_CURRENT = {15, 16, 17, 37}


def base_protos(bpf_capable: bool = True, perfmon: bool = True) -> set[int]:
    s = set(BASE)
    if bpf_capable:
        s |= BASE_BPF
    if perfmon:
        s |= BASE_PERFMON
    return s


class ProgTypeBase:
    """Defaults: no ctx access, base helpers, no direct packet access, any return value."""

    prog_type = 0
    name = "unspec"
    ctx_size = 0
    own_helpers: frozenset[int] = frozenset()
    inherit = "sk_base"  # sk_base | base | tracing | none
    pkt_read = False
    pkt_write = False
    ret_range: tuple[int, int] | None = None  # check_return_code's range, if any

    def allowed_helpers(self, prog: Any = None) -> set[int]:
        s = set(self.own_helpers)
        bpf_cap = bool(getattr(prog, "bpf_capable", True))
        perfmon = bool(getattr(prog, "perfmon_capable", True))
        if self.inherit == "sk_base":
            s |= SK_BASE | base_protos(bpf_cap, perfmon)
            if perfmon:
                s |= SK_BASE_PERFMON
        elif self.inherit == "base":
            s |= base_protos(bpf_cap, perfmon)
        elif self.inherit == "tracing":
            s |= TRACING | base_protos(bpf_cap, perfmon)
        if 186 in self.own_helpers and getattr(prog, "expected_attach_type", 0) in _NO_RETVAL_ATTACH:
            s -= {186, 187}
        return s

    def get_func_proto(self, func_id: int, prog: Any) -> FuncProto | None:
        if func_id not in self.allowed_helpers(prog):
            return None
        from pybpf.helpers.registry import all_protos
        return all_protos().get(func_id)

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any,
                        info: dict[str, Any]) -> bool:
        return False

    def may_access_direct_pkt_data(self, write: bool, prog: Any = None) -> bool:
        return self.pkt_write if write else self.pkt_read

    def return_range(self, prog: Any) -> tuple[int, int] | None:
        return self.ret_range

    #: ``(write, insn) -> (insns, target_size)`` for types whose conversion needs nothing
    #: of the program (most cgroup/socket types); ``None``: the ctx is read in place
    ctx_converter: Callable[[bool, Any], tuple[list[Any], int] | None] | None = None

    def convert_ctx_access(self, write: bool, insn: Any,
                           prog: Any) -> tuple[list[Any], int] | None:
        conv = type(self).ctx_converter
        return conv(write, insn) if conv is not None else None

    def test_run(self, prog: Any, kernel: Any, opts: Any) -> Any:
        raise NotImplementedError


def narrow_ok(size: int, default: int) -> bool:
    return size <= default and (size & (size - 1)) == 0


def bpf_noop_prologue(self: Any, direct_write: bool, prog: Any) -> list[Any]:
    """``bpf_noop_prologue``, as a type's ``gen_prologue``: direct packet writes are legal
    and need no preparation (the buffer is never shared)."""
    return []
