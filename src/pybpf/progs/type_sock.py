"""Socket-level program types: cgroup sock / sock_addr / sockopt / sysctl / device, sock_ops,
sk_msg and sk_reuseport, each with its own ctx struct and rules (``net/core/filter.c``,
``kernel/bpf/cgroup.c``). sk_lookup has its own module, :mod:`pybpf.progs.type_sk_lookup`.

After verification each type's ctx accesses are rewritten onto the kernel's internal
object (``bpf_sock_addr_kern``, ``bpf_sock_ops_kern``, ``sk_msg``, ``sk_reuseport_kern``,
``bpf_sysctl_kern``, ``bpf_sockopt_kern``; a cgroup/sock ctx is the ``struct sock``
itself; cgroup/device has no conversion) by the converters in
:mod:`pybpf.progs.cgroup_ctx_convert`, :mod:`pybpf.progs.sockmap_ctx_convert` and
:mod:`pybpf.progs.sock_ops_convert`, so ``prog dump xlated`` equals bpftool's."""

from __future__ import annotations

from typing import Any

from pybpf.progs.cgroup_ctx_convert import (
    cg_sockopt_convert_ctx_access,
    sock_addr_convert_ctx_access,
    sysctl_convert_ctx_access,
)
from pybpf.progs.ops import register_prog_type
from pybpf.progs.sock_ops_convert import sock_ops_convert_ctx_access
from pybpf.progs.sockmap_ctx_convert import (
    sk_msg_convert_ctx_access,
    sk_reuseport_convert_ctx_access,
)
from pybpf.progs.type_base import (
    CGROUP_COMMON,
    CGROUP_CURRENT,
    ProgTypeBase,
    bpf_noop_prologue,
    narrow_ok,
)
from pybpf.verifier.regs import PTR_MAYBE_NULL, RegType
from pybpf.verifier.sock_access import sock_is_valid

# enum bpf_attach_type values used below
INET_SOCK_CREATE, INET4_BIND, INET6_BIND, INET4_CONNECT, INET6_CONNECT = 2, 8, 9, 10, 11
INET4_POST_BIND, INET6_POST_BIND, UDP4_SENDMSG, UDP6_SENDMSG = 12, 13, 14, 15
UDP4_RECVMSG, UDP6_RECVMSG = 19, 20
INET4_GETPEERNAME, INET6_GETPEERNAME, INET4_GETSOCKNAME, INET6_GETSOCKNAME = 29, 30, 31, 32
INET_SOCK_RELEASE = 34
CGROUP_GETSOCKOPT, CGROUP_SETSOCKOPT = 21, 22


def _wide_ok(off: int, size: int, start: int, end: int) -> bool:
    return size == 8 and off >= start and off + 8 <= end and off % 8 == 0


class CgroupSock(ProgTypeBase):
    prog_type = 9
    name = "cgroup_sock"
    inherit = "base"
    own_helpers = frozenset({46, 122, 25, 107, 160} | CGROUP_COMMON | CGROUP_CURRENT)
    ret_range = (0, 1)

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if not sock_is_valid(off, size):
            return False
        # bpf_prog_load_fixup_attach_type: 0 means BPF_CGROUP_INET_SOCK_CREATE
        att = getattr(prog, "expected_attach_type", 0) or INET_SOCK_CREATE
        if off in (0, 16, 20):
            return att in (INET_SOCK_CREATE, INET_SOCK_RELEASE)
        if 24 <= off < 28:
            return att == INET4_POST_BIND and not write
        if 28 <= off < 44:
            return att == INET6_POST_BIND and not write
        if off == 44:
            return att in (INET4_POST_BIND, INET6_POST_BIND) and not write
        return not write

    def convert_ctx_access(self, write: bool, insn: Any, prog: Any) -> tuple[list[Any], int] | None:
        """The ctx of a cgroup/sock program is the ``struct sock`` itself."""
        from pybpf.progs.sock_convert import bpf_sock_convert_ctx_access

        return bpf_sock_convert_ctx_access(write, insn, prog)


class SockAddr(ProgTypeBase):
    prog_type = 18
    name = "cgroup_sock_addr"
    own_helpers = frozenset({64, 46, 122, 25, 84, 85, 86, 99, 107, 108, 49, 57} | CGROUP_COMMON | CGROUP_CURRENT)

    def allowed_helpers(self, prog: Any = None) -> set[int]:
        s = super().allowed_helpers(prog)
        att = getattr(prog, "expected_attach_type", 0)
        if att not in (INET4_CONNECT, INET6_CONNECT):  # bpf_bind: connect hooks only
            s.discard(64)
        if att not in (INET4_CONNECT, INET6_CONNECT, UDP4_SENDMSG, UDP6_SENDMSG, UDP4_RECVMSG,
                       UDP6_RECVMSG, INET4_GETPEERNAME, INET6_GETPEERNAME, INET4_GETSOCKNAME,
                       INET6_GETSOCKNAME, INET4_BIND, INET6_BIND):
            s -= {49, 57}
        return s

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if off < 0 or off >= 72 or off % size:
            return False
        att = getattr(prog, "expected_attach_type", 0)
        if 4 <= off < 8 and att not in (INET4_BIND, INET4_CONNECT, INET4_GETPEERNAME, INET4_GETSOCKNAME,
                                        UDP4_SENDMSG, UDP4_RECVMSG):
            return False
        if 8 <= off < 24 and att not in (INET6_BIND, INET6_CONNECT, INET6_GETPEERNAME, INET6_GETSOCKNAME,
                                         UDP6_SENDMSG, UDP6_RECVMSG):
            return False
        if 40 <= off < 44 and att != UDP4_SENDMSG:
            return False
        if 44 <= off < 60 and att != UDP6_SENDMSG:
            return False
        if 4 <= off < 28 or 40 <= off < 60:
            if _wide_ok(off, size, 8, 24) or _wide_ok(off, size, 44, 60):
                return True
            if not write:
                info["ctx_field_size"] = 4
                return narrow_ok(size, 4)
            return size == 4
        if off == 64:
            if write or size != 8:
                return False
            info["reg_type"] = RegType.PTR_TO_SOCKET
            return True
        # user_family, family, type, protocol: whole reads only (nothing else is a field)
        return off in (0, 28, 32, 36) and not write and size == 4

    ctx_converter = staticmethod(sock_addr_convert_ctx_access)  # onto struct bpf_sock_addr_kern

    def return_range(self, prog: Any) -> tuple[int, int] | None:
        att = getattr(prog, "expected_attach_type", 0)
        if att in (UDP4_RECVMSG, UDP6_RECVMSG, INET4_GETPEERNAME, INET6_GETPEERNAME, INET4_GETSOCKNAME,
                   INET6_GETSOCKNAME, 44, 45, 46):
            return (1, 1)
        if att in (INET4_BIND, INET6_BIND):
            return (0, 3)
        return (0, 1)


class SockOps(ProgTypeBase):
    prog_type = 13
    name = "sock_ops"
    own_helpers = frozenset({49, 57, 59, 53, 70, 46, 25, 107, 108, 122, 142, 143, 144, 96, 81})
    ret_range = (0, 1)

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        """``sock_ops_is_valid_access``: ``reply`` and ``sk_txhash`` are the only writable
        fields; the 8-byte fields (byte counters, pointers, hwtstamp) are read whole, the
        skb's tcp flags may be read narrow, everything else is a whole u32."""
        if off < 0 or off >= 224 or off % size:
            return False
        if write:
            return off in (4, 164) and size == 4
        if 168 <= off < 184 or 216 <= off < 224:  # bytes_received/acked, skb_hwtstamp
            return size == 8
        if 184 <= off < 208:  # sk, skb_data, skb_data_end
            if size != 8:
                return False
            info["reg_type"] = (RegType.PTR_TO_SOCKET | PTR_MAYBE_NULL, RegType.PTR_TO_PACKET,
                                RegType.PTR_TO_PACKET_END)[(off - 184) // 8]
            return True
        if off == 212:  # skb_tcp_flags
            info["ctx_field_size"] = 4
            return narrow_ok(size, 4)
        return size == 4

    ctx_converter = staticmethod(sock_ops_convert_ctx_access)  # onto struct bpf_sock_ops_kern


class CgroupDevice(ProgTypeBase):
    prog_type = 15
    name = "cgroup_device"
    inherit = "base"
    own_helpers = frozenset({25} | CGROUP_COMMON | CGROUP_CURRENT)
    ret_range = (0, 1)

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if write or off < 0 or off + size > 12 or off % size:
            return False
        if off < 4:
            info["ctx_field_size"] = 4
            return narrow_ok(size, 4)
        return size == 4


class SkMsg(ProgTypeBase):
    prog_type = 16
    name = "sk_msg"
    pkt_read = pkt_write = True
    own_helpers = frozenset({60, 71, 61, 62, 63, 90, 91, 25, 15, 107, 108, 122, 17})

    gen_prologue = bpf_noop_prologue

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if write or off % size:
            return False
        if off == 0:
            info["reg_type"] = RegType.PTR_TO_PACKET
            return size == 8
        if off == 8:
            info["reg_type"] = RegType.PTR_TO_PACKET_END
            return size == 8
        if off == 72:
            info["reg_type"] = RegType.PTR_TO_SOCKET
            return size == 8
        if 16 <= off < 72:
            return size == 4
        return False

    ctx_converter = staticmethod(sk_msg_convert_ctx_access)  # onto struct sk_msg


class SkReuseport(ProgTypeBase):
    prog_type = 21
    name = "sk_reuseport"
    inherit = "base"
    pkt_read = True
    own_helpers = frozenset({82, 26, 68, 46, 160})

    def get_func_proto(self, func_id: int, prog: Any) -> Any:
        """``sk_reuseport_func_proto``: its bpf_get_socket_cookie takes a socket pointer
        (``bpf_get_socket_ptr_cookie_proto``), not the context."""
        proto = super().get_func_proto(func_id, prog)
        if func_id == 46 and proto is not None:
            import dataclasses

            from pybpf.helpers.proto import ArgType
            proto = dataclasses.replace(proto, arg_types=(int(ArgType.ARG_PTR_TO_BTF_ID_SOCK_COMMON),))
        return proto

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if off < 0 or off >= 56 or off % size or write:
            return False
        if off == 0:
            info["reg_type"] = RegType.PTR_TO_PACKET
            return size == 8
        if off == 8:
            info["reg_type"] = RegType.PTR_TO_PACKET_END
            return size == 8
        if off == 32:
            return size == 4
        if off == 40:
            info["reg_type"] = RegType.PTR_TO_SOCKET
            return size == 8
        if off == 48:
            info["reg_type"] = RegType.PTR_TO_SOCK_COMMON | PTR_MAYBE_NULL
            return size == 8
        if 20 <= off < 24 and size < 2:
            return False
        if 16 <= off < 32:
            info["ctx_field_size"] = 4
            return narrow_ok(size, 4)
        return False

    ctx_converter = staticmethod(sk_reuseport_convert_ctx_access)  # onto struct sk_reuseport_kern


class CgroupSysctl(ProgTypeBase):
    prog_type = 23
    name = "cgroup_sysctl"
    inherit = "base"
    own_helpers = frozenset({101, 102, 103, 104, 160, 25} | CGROUP_COMMON | CGROUP_CURRENT)
    ret_range = (0, 1)

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if off < 0 or off + size > 8 or off % size:
            return False
        if off < 4:
            if write:
                return False
            info["ctx_field_size"] = 4
            return narrow_ok(size, 4)
        if not write:
            info["ctx_field_size"] = 4
            return narrow_ok(size, 4)
        return size == 4

    ctx_converter = staticmethod(sysctl_convert_ctx_access)  # onto struct bpf_sysctl_kern


class CgroupSockopt(ProgTypeBase):
    prog_type = 25
    name = "cgroup_sockopt"
    inherit = "base"
    pkt_read = pkt_write = True
    own_helpers = frozenset({122, 107, 108, 49, 57, 96, 25} | CGROUP_COMMON | CGROUP_CURRENT)

    def allowed_helpers(self, prog: Any = None) -> set[int]:
        """``cg_sockopt_func_proto``: bpf_setsockopt/bpf_getsockopt from setsockopt hooks only."""
        s = super().allowed_helpers(prog)
        if getattr(prog, "expected_attach_type", 0) != CGROUP_SETSOCKOPT:
            s -= {49, 57}
        return s

    def get_func_proto(self, func_id: int, prog: Any) -> Any:
        """Here bpf_{set,get}sockopt are ``bpf_sk_{set,get}sockopt``: the socket comes as a
        BTF pointer (``ctx->sk``), not the context."""
        proto = super().get_func_proto(func_id, prog)
        if func_id in (49, 57) and proto is not None:
            import dataclasses

            from pybpf.helpers.proto import ArgType
            proto = dataclasses.replace(proto, arg_types=(
                int(ArgType.ARG_PTR_TO_BTF_ID_SOCK_COMMON), *proto.arg_types[1:]))
        return proto

    gen_prologue = bpf_noop_prologue
    ret_range = (0, 1)

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        """``cg_sockopt_is_valid_access``: ``retval`` belongs to getsockopt programs,
        ``level``/``optname`` may be rewritten by setsockopt programs, ``optlen`` by
        both; everything else is read-only."""
        if off < 0 or off >= 40 or off % size:
            return False
        att = getattr(prog, "expected_attach_type", 0)
        if write:
            if off == 36:
                return size == 4 and att == CGROUP_GETSOCKOPT
            if off in (24, 28):
                return size == 4 and att == CGROUP_SETSOCKOPT
            return off == 32 and size == 4
        if off < 24:  # the sk, optval, optval_end pointers: whole 8-byte reads only
            if size != 8:
                return False
            info["reg_type"] = (RegType.PTR_TO_SOCKET, RegType.PTR_TO_PACKET,
                                RegType.PTR_TO_PACKET_END)[off // 8]
            return True
        if off == 36:
            return size == 4 and att == CGROUP_GETSOCKOPT
        return size == 4

    ctx_converter = staticmethod(cg_sockopt_convert_ctx_access)  # onto struct bpf_sockopt_kern


for _t in (CgroupSock, SockAddr, SockOps, CgroupDevice, SkMsg, SkReuseport, CgroupSysctl,
           CgroupSockopt):
    register_prog_type(_t())
