"""``BPF_PROG_TYPE_SK_LOOKUP``: programs that pick the socket a new connection or datagram
goes to, before the kernel's own socket lookup (``net/core/filter.c`` sk_lookup ops).

The program sees ``struct bpf_sk_lookup`` (read-only); at run time its ctx is a
``struct bpf_sk_lookup_kern`` (:mod:`pybpf.progs.testrun_sk_lookup` builds one) and every
field access is rewritten onto it (:meth:`SkLookup.convert_ctx_access`), with the IPv6
addresses reached through the ``v6.saddr``/``v6.daddr`` pointers as in the kernel. The
program selects a socket with ``bpf_sk_assign`` (this type's own prototype: a socket or
NULL, not a BTF socket as tc's).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pybpf.helpers.proto import ArgFlag, ArgType, FuncProto
from pybpf.isa.insn import Insn
from pybpf.progs.ops import TestRunOpts, TestRunResult, register_prog_type
from pybpf.progs.type_base import ProgTypeBase, narrow_ok
from pybpf.uapi.kernel_structs import KSTRUCTS
from pybpf.verifier.regs import PTR_MAYBE_NULL, RegType

BPF_FUNC_SK_ASSIGN = 124
BPF_LDX, BPF_ALU, BPF_JMP, BPF_MEM = 0x01, 0x04, 0x05, 0x60
BPF_W, BPF_H, BPF_DW = 0x00, 0x08, 0x18
BPF_MOV, BPF_JEQ, BPF_K = 0xB0, 0x10, 0x00
_KERN = KSTRUCTS["bpf_sk_lookup_kern"]

# struct bpf_sk_lookup (uapi) offsets
SK, FAMILY, PROTOCOL, REMOTE_IP4, REMOTE_IP6, REMOTE_PORT = 0, 8, 12, 16, 20, 36
LOCAL_IP4, LOCAL_IP6, LOCAL_PORT, INGRESS_IFINDEX = 40, 44, 60, 64
BPF_SK_LOOKUP_SIZE = 72

#: uapi field -> (bpf_sk_lookup_kern member, load size)
_DIRECT: dict[int, tuple[str, int]] = {
    SK: ("selected_sk", 8),
    FAMILY: ("family", 2),
    PROTOCOL: ("protocol", 2),
    REMOTE_IP4: ("v4.saddr", 4),
    LOCAL_IP4: ("v4.daddr", 4),
    REMOTE_PORT: ("sport", 2),
    LOCAL_PORT: ("dport", 2),
    INGRESS_IFINDEX: ("ingress_ifindex", 4),
}
_SIZE_CODE = {2: BPF_H, 4: BPF_W, 8: BPF_DW}


def _ldx(size: int, dst: int, src: int, off: int) -> Insn:
    return Insn(BPF_LDX | BPF_MEM | _SIZE_CODE[size], dst, src, off, 0)


class SkLookup(ProgTypeBase):
    prog_type = 30
    name = "sk_lookup"
    ctx_size = BPF_SK_LOOKUP_SIZE
    own_helpers = frozenset({25, BPF_FUNC_SK_ASSIGN, 86})
    ret_range = (0, 1)

    def get_func_proto(self, func_id: int, prog: Any) -> FuncProto | None:
        proto = super().get_func_proto(func_id, prog)
        if func_id == BPF_FUNC_SK_ASSIGN and proto is not None:
            # bpf_sk_lookup_assign_proto: a socket (or NULL) from a lookup or a sockmap
            sock_or_null = int(ArgType.ARG_PTR_TO_SOCKET) | int(ArgFlag.PTR_MAYBE_NULL)
            args = (int(ArgType.ARG_PTR_TO_CTX), sock_or_null, int(ArgType.ARG_ANYTHING))
            return dataclasses.replace(proto, arg_types=args)
        return proto

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if off < 0 or off >= BPF_SK_LOOKUP_SIZE or off % size or write:
            return False
        if off == SK:
            info["reg_type"] = RegType.PTR_TO_SOCKET | PTR_MAYBE_NULL
            return size == 8
        if 8 <= off < 36 or 40 <= off < 68:
            info["ctx_field_size"] = 4
            return narrow_ok(size, 4)
        if 36 <= off < 38:
            if size == 4:  # 4-byte read of the 2-byte remote_port, kept for old programs
                return True
            info["ctx_field_size"] = 2
            return narrow_ok(size, 2)
        if 38 <= off < 40:  # the zero padding after remote_port
            info["ctx_field_size"] = 2
            return narrow_ok(size, 2)
        return False

    def convert_ctx_access(self, write: bool, insn: Insn,
                           prog: Any) -> tuple[list[Insn], int] | None:
        """``sk_lookup_convert_ctx_access``."""
        off, dst, src = insn.off, insn.dst, insn.src
        if off in _DIRECT:
            member, size = _DIRECT[off]
            return [_ldx(size, dst, src, _KERN.off(member))], 0 if off == SK else size
        for base, member in ((REMOTE_IP6, "v6.saddr"), (LOCAL_IP6, "v6.daddr")):
            if base <= off < base + 16:
                return [_ldx(8, dst, src, _KERN.off(member)),
                        Insn(BPF_JMP | BPF_JEQ | BPF_K, dst, 0, 1, 0),
                        _ldx(4, dst, dst, off - base)], 4
        if off == REMOTE_PORT + 2:
            return [Insn(BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, 0)], 2
        return [], 0

    def test_run(self, prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
        from pybpf.progs.testrun_sk_lookup import bpf_prog_test_run_sk_lookup

        return bpf_prog_test_run_sk_lookup(prog, kernel, opts)


register_prog_type(SkLookup())
