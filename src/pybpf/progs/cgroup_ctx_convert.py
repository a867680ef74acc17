"""ctx conversion of the cgroup socket-level program types onto the kernel's objects.

A ``cgroup/connect4`` program addresses ``struct bpf_sock_addr``; what the kernel hands it
is a ``struct bpf_sock_addr_kern`` (the socket, a pointer to the user's ``sockaddr``, …),
and after verification every field access is rewritten onto that object. These are the
kernel's converters, instruction for instruction, so pybpf's xlated program equals what
``bpftool prog dump xlated`` prints for the same program:

- :func:`sock_addr_convert_ctx_access` (``net/core/filter.c``) — ``bpf_sock_addr_kern``;
- :func:`cg_sockopt_convert_ctx_access` (``kernel/bpf/cgroup.c``) — ``bpf_sockopt_kern``,
  with ``retval`` living in the current task's ``bpf_cg_run_ctx``;
- :func:`sysctl_convert_ctx_access` (``kernel/bpf/cgroup.c``) — ``bpf_sysctl_kern``.

pybpf has no cgroups to run these programs from, so the conversion's job is xlated
fidelity (tests/verifier/test_ctx_convert_other.py compares with the live kernel).

Stores of fields behind a pointer need a third register the program may be using: the
kernel borrows R9 (or R8/R7 when the access uses R9/R8), parks it in the kern struct's
``tmp_reg`` slot and restores it afterwards (:func:`store_nested`).
"""

from __future__ import annotations

from pybpf.isa.insn import Insn
from pybpf.uapi.kernel_structs import KSTRUCTS

BPF_LDX, BPF_STX = 0x01, 0x03
BPF_MEM = 0x60
BPF_W, BPF_H, BPF_B, BPF_DW = 0x00, 0x08, 0x10, 0x18
SIZE_CODE = {1: BPF_B, 2: BPF_H, 4: BPF_W, 8: BPF_DW}
CODE_SIZE = {v: k for k, v in SIZE_CODE.items()}
BPF_REG_9 = 9

Converted = tuple[list[Insn], int]


def ldx(size: int, dst: int, src: int, off: int) -> Insn:
    """``BPF_LDX_MEM(size, dst, src, off)`` with ``size`` in bytes."""
    return Insn(BPF_LDX | BPF_MEM | SIZE_CODE[size], dst, src, off, 0)


def access_size(insn: Insn) -> int:
    """``BPF_LDST_BYTES``: the byte size the instruction moves."""
    return CODE_SIZE[insn.code & 0x18]


def store_like(insn: Insn, size: int, dst: int, off: int) -> Insn:
    """The program's own store (same class ST/STX, same source register or immediate),
    retargeted: ``BPF_RAW_INSN(size | BPF_MEM | BPF_CLASS(si->code), dst, si->src, off,
    si->imm)``."""
    return Insn((insn.code & 0x07) | BPF_MEM | SIZE_CODE[size], dst, insn.src, off, insn.imm)


def scratch_reg(insn: Insn) -> int:
    """R9, or the next lower register the access does not use (the kernel's ``treg``)."""
    reg = BPF_REG_9
    for _ in range(2):
        if reg in (insn.src, insn.dst):
            reg -= 1
    return reg


def spill_scratch(insn: Insn, reg: int, tmp_off: int) -> Insn:
    """``*(u64 *)(ctx + tmp_reg) = reg``: park the borrowed register in the kern struct."""
    return Insn(BPF_STX | BPF_MEM | BPF_DW, insn.dst, reg, tmp_off, 0)


def load_nested(insn: Insn, ptr_off: int, size: int, off: int) -> list[Insn]:
    """``dst = ctx->ptr; dst = *(size *)(dst + off)`` (``SOCK_ADDR_LOAD_NESTED_FIELD``)."""
    return [ldx(8, insn.dst, insn.src, ptr_off), ldx(size, insn.dst, insn.dst, off)]


def store_nested(insn: Insn, ptr_off: int, size: int, off: int, tmp_off: int) -> list[Insn]:
    """``ctx->ptr->field = src`` through a borrowed register
    (``SOCK_ADDR_STORE_NESTED_FIELD_OFF``)."""
    reg = scratch_reg(insn)
    return [spill_scratch(insn, reg, tmp_off),
            ldx(8, reg, insn.dst, ptr_off),
            store_like(insn, size, reg, off),
            ldx(8, reg, insn.dst, tmp_off)]


# ---------------------------------------------------------------- cgroup/sock_addr

_SA = KSTRUCTS["bpf_sock_addr_kern"]
_SOCK = KSTRUCTS["sock"]
_SOCKADDR, _SIN, _SIN6 = KSTRUCTS["sockaddr"], KSTRUCTS["sockaddr_in"], KSTRUCTS["sockaddr_in6"]
_IN_ADDR, _IN6_ADDR = KSTRUCTS["in_addr"], KSTRUCTS["in6_addr"]

# struct bpf_sock_addr (uapi) offsets
SA_USER_FAMILY, SA_USER_IP4, SA_USER_IP6, SA_USER_PORT = 0, 4, 8, 24
SA_FAMILY, SA_TYPE, SA_PROTOCOL, SA_MSG_SRC_IP4, SA_MSG_SRC_IP6, SA_SK = 28, 32, 36, 40, 44, 64

#: read-only fields of the socket behind ``sk``: uapi offset -> struct sock member
_SA_SOCK_FIELDS = {SA_FAMILY: "__sk_common.skc_family", SA_TYPE: "sk_type",
                   SA_PROTOCOL: "sk_protocol"}


def _sa_nested(write: bool, insn: Insn, ptr: str, off: int, size: int) -> list[Insn]:
    if write:
        return store_nested(insn, _SA.off(ptr), size, off, _SA.off("tmp_reg"))
    return load_nested(insn, _SA.off(ptr), size, off)


def sock_addr_convert_ctx_access(write: bool, insn: Insn) -> Converted:
    """``sock_addr_convert_ctx_access``: addresses and port through ``uaddr`` (a
    ``sockaddr_in``/``sockaddr_in6``), the sendmsg source address through ``t_ctx``, the
    socket's family/type/protocol through ``sk``."""
    off, size = insn.off, access_size(insn)
    if off == SA_USER_FAMILY:
        return load_nested(insn, _SA.off("uaddr"), 2, _SOCKADDR.off("sa_family")), 2
    if off == SA_USER_IP4:
        return _sa_nested(write, insn, "uaddr", _SIN.off("sin_addr"), size), 4
    if SA_USER_IP6 <= off < SA_USER_IP6 + 16:
        at = _SIN6.off("sin6_addr") + off - SA_USER_IP6
        return _sa_nested(write, insn, "uaddr", at, size), 4
    if off == SA_USER_PORT:
        # sin_port and sin6_port share offset and size; a 4-byte access moves 2 bytes
        return _sa_nested(write, insn, "uaddr", _SIN6.off("sin6_port"), min(2, size)), 2
    if off in _SA_SOCK_FIELDS:
        member = _SA_SOCK_FIELDS[off]
        return load_nested(insn, _SA.off("sk"), 2, _SOCK.off(member)), _SOCK.sizeof(member)
    if off == SA_MSG_SRC_IP4:
        return _sa_nested(write, insn, "t_ctx", _IN_ADDR.off("s_addr"), size), 4
    if SA_MSG_SRC_IP6 <= off < SA_MSG_SRC_IP6 + 16:
        at = _IN6_ADDR.off("in6_u") + off - SA_MSG_SRC_IP6
        return _sa_nested(write, insn, "t_ctx", at, size), 4
    if off == SA_SK:
        return [ldx(8, insn.dst, insn.src, _SA.off("sk"))], 0
    return [], 0


# ---------------------------------------------------------------- cgroup/sockopt

_SO = KSTRUCTS["bpf_sockopt_kern"]
_TASK = KSTRUCTS["task_struct"]
_CG_RUN_CTX = KSTRUCTS["bpf_cg_run_ctx"]

# struct bpf_sockopt (uapi) offsets
SO_SK, SO_OPTVAL, SO_OPTVAL_END, SO_LEVEL, SO_OPTNAME, SO_OPTLEN, SO_RETVAL = (
    0, 8, 16, 24, 28, 32, 36)
_SO_FIELDS = {SO_SK: "sk", SO_OPTVAL: "optval", SO_OPTVAL_END: "optval_end",
              SO_LEVEL: "level", SO_OPTNAME: "optname", SO_OPTLEN: "optlen"}


def cg_sockopt_convert_ctx_access(write: bool, insn: Insn) -> Converted:
    """``cg_sockopt_convert_ctx_access``: the plain fields are ``bpf_sockopt_kern``
    members; ``retval`` is the ``bpf_cg_run_ctx`` of the task running the hook
    (``current_task->bpf_ctx``)."""
    off, dst, src = insn.off, insn.dst, insn.src
    if off in _SO_FIELDS:
        member = _SO_FIELDS[off]
        at, size = _SO.off(member), _SO.sizeof(member)
        return [store_like(insn, size, dst, at) if write else ldx(size, dst, src, at)], 0
    if off == SO_RETVAL:
        task, bpf_ctx = _SO.off("current_task"), _TASK.off("bpf_ctx")
        retval, size = _CG_RUN_CTX.off("retval"), _CG_RUN_CTX.sizeof("retval")
        if write:
            reg, tmp = scratch_reg(insn), _SO.off("tmp_reg")
            return [spill_scratch(insn, reg, tmp), ldx(8, reg, dst, task),
                    ldx(8, reg, reg, bpf_ctx), store_like(insn, size, reg, retval),
                    ldx(8, reg, dst, tmp)], 0
        return [ldx(8, dst, src, task), ldx(8, dst, dst, bpf_ctx),
                ldx(size, dst, dst, retval)], 0
    return [], 0


# ---------------------------------------------------------------- cgroup/sysctl

_SYSCTL = KSTRUCTS["bpf_sysctl_kern"]
SYSCTL_WRITE, SYSCTL_FILE_POS = 0, 4


def sysctl_convert_ctx_access(write: bool, insn: Insn) -> Converted:
    """``sysctl_convert_ctx_access``: ``write`` is a member; ``file_pos`` is the low
    32 bits of the ``loff_t`` behind ``ppos``."""
    off, dst, src, size = insn.off, insn.dst, insn.src, access_size(insn)
    if off == SYSCTL_WRITE:
        return [ldx(size, dst, src, _SYSCTL.off("write"))], _SYSCTL.sizeof("write")
    if off == SYSCTL_FILE_POS:
        ppos = _SYSCTL.off("ppos")
        if write:
            reg, tmp = scratch_reg(insn), _SYSCTL.off("tmp_reg")
            return [spill_scratch(insn, reg, tmp), ldx(8, reg, dst, ppos),
                    store_like(insn, 4, reg, 0), ldx(8, reg, dst, tmp)], 4
        return [ldx(8, dst, src, ppos), ldx(size, dst, dst, 0)], 4
    return [], 0
