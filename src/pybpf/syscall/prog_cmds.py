"""BPF_PROG_LOAD, BPF_PROG_TEST_RUN and BPF_PROG_BIND_MAP.

``bpf_prog_load`` runs in the kernel's order (6.18 ``kernel/bpf/syscall.c``), because the
order decides which errno a bad attribute gets when several are bad:

1. ``CHECK_ATTR``; unknown ``prog_flags`` → EINVAL; default expected attach types;
2. token fd (pybpf has no tokens: EBADF/EINVAL); ``unprivileged_bpf_disabled`` → EPERM;
3. ``insn_cnt`` 0 or above the limit (4096 without CAP_BPF, 1 000 000 with) → E2BIG;
4. capabilities: CAP_BPF for all but socket filters and cgroup skb, CAP_NET_ADMIN for
   networking types, CAP_PERFMON for tracing types → EPERM;
5. attach target: ``attach_prog_fd`` (a program, else a kernel BTF object) or vmlinux BTF
   for ``attach_btf_id``; ``bpf_prog_load_check_attach`` → EINVAL;
6. copy the instructions (EFAULT) and the license (``strncpy_from_user``, 127 bytes);
   GPL compatibility from the kernel's exact list;
7. device binding (``prog_ifindex``), program type (EINVAL), name (EINVAL);
8. ``security_bpf_prog_load``; the verifier with the log rules of :mod:`.log`;
9. runtime selection (JIT per ``bpf_jit_enable`` when available, else the interpreter),
   ID, fd.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable
from typing import Any

from pybpf.core.map import KMap
from pybpf.core.prog import (
    BpfProg,
    bpf_obj_name_cpy,
    bpf_prog_calc_tag,
    bpf_prog_pages,
    license_is_gpl_compatible,
)
from pybpf.errors import BpfError
from pybpf.isa.insn import decode
from pybpf.kernel import Cap, boottime_ns
from pybpf.progs.ops import TestRunOpts, TestRunResult, find_prog_type
from pybpf.syscall.attr import (
    END_LOG_TRUE_SIZE,
    OFF_FUNC_INFO_REC_SIZE,
    OFF_LINE_INFO_REC_SIZE,
    OFF_LOG_TRUE_SIZE,
    OFF_TEST_CTX_SIZE_OUT,
    OFF_TEST_DATA_SIZE_OUT,
    OFF_TEST_DURATION,
    OFF_TEST_RETVAL,
)
from pybpf.syscall.dispatch import ENOTSUPP, Call, command
from pybpf.syscall.log import VerifierLog
from pybpf.syscall.map_cmds import token_get
from pybpf.syscall.objects import btf_get_by_fd, map_get, prog_get, prog_new_fd
from pybpf.syscall.uaccess import UserFault, copy_from_user, copy_to_user, strncpy_from_user
from pybpf.uapi import BpfAttachType, BpfCmd, BpfProgType, bpf_line_info

P = BpfProgType
A = BpfAttachType

BPF_F_STRICT_ALIGNMENT = 1 << 0
BPF_F_ANY_ALIGNMENT = 1 << 1
BPF_F_TEST_RND_HI32 = 1 << 2
BPF_F_TEST_STATE_FREQ = 1 << 3
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5
BPF_F_XDP_DEV_BOUND_ONLY = 1 << 6
BPF_F_TEST_REG_INVARIANTS = 1 << 7
BPF_F_TOKEN_FD = 1 << 16
PROG_LOAD_FLAGS = (BPF_F_STRICT_ALIGNMENT | BPF_F_ANY_ALIGNMENT | BPF_F_TEST_STATE_FREQ
                   | BPF_F_SLEEPABLE | BPF_F_TEST_RND_HI32 | BPF_F_XDP_HAS_FRAGS
                   | BPF_F_XDP_DEV_BOUND_ONLY | BPF_F_TEST_REG_INVARIANTS | BPF_F_TOKEN_FD)

BPF_MAXINSNS = 4096
BPF_COMPLEXITY_LIMIT_INSNS = 1_000_000
BTF_MAX_TYPE = 0x000FFFFF
LICENSE_LEN = 128
SHA256_DIGEST_SIZE = 32

#: Program types whose ops the reference kernel was built without (find_prog_type: EINVAL).
PROG_TYPES_NOT_BUILT = frozenset({P.BPF_PROG_TYPE_LIRC_MODE2})
KNOWN_PROG_TYPES = frozenset(int(t) for t in P if t != P.BPF_PROG_TYPE_UNSPEC) \
    - PROG_TYPES_NOT_BUILT

NET_ADMIN_PROG_TYPES = frozenset({
    P.BPF_PROG_TYPE_SCHED_CLS, P.BPF_PROG_TYPE_SCHED_ACT, P.BPF_PROG_TYPE_XDP,
    P.BPF_PROG_TYPE_LWT_IN, P.BPF_PROG_TYPE_LWT_OUT, P.BPF_PROG_TYPE_LWT_XMIT,
    P.BPF_PROG_TYPE_LWT_SEG6LOCAL, P.BPF_PROG_TYPE_SK_SKB, P.BPF_PROG_TYPE_SK_MSG,
    P.BPF_PROG_TYPE_FLOW_DISSECTOR, P.BPF_PROG_TYPE_CGROUP_DEVICE, P.BPF_PROG_TYPE_CGROUP_SOCK,
    P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, P.BPF_PROG_TYPE_CGROUP_SOCKOPT,
    P.BPF_PROG_TYPE_CGROUP_SYSCTL, P.BPF_PROG_TYPE_SOCK_OPS, P.BPF_PROG_TYPE_EXT,
    P.BPF_PROG_TYPE_NETFILTER,
})
PERFMON_PROG_TYPES = frozenset({
    P.BPF_PROG_TYPE_KPROBE, P.BPF_PROG_TYPE_TRACEPOINT, P.BPF_PROG_TYPE_PERF_EVENT,
    P.BPF_PROG_TYPE_RAW_TRACEPOINT, P.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE,
    P.BPF_PROG_TYPE_TRACING, P.BPF_PROG_TYPE_LSM, P.BPF_PROG_TYPE_STRUCT_OPS,
    P.BPF_PROG_TYPE_EXT,
})

#: Expected attach types each program type accepts (``bpf_prog_load_check_attach``).
_ATTACH_TYPES: dict[int, frozenset[int]] = {
    P.BPF_PROG_TYPE_CGROUP_SOCK: frozenset({
        A.BPF_CGROUP_INET_SOCK_CREATE, A.BPF_CGROUP_INET_SOCK_RELEASE,
        A.BPF_CGROUP_INET4_POST_BIND, A.BPF_CGROUP_INET6_POST_BIND}),
    P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR: frozenset({
        A.BPF_CGROUP_INET4_BIND, A.BPF_CGROUP_INET6_BIND, A.BPF_CGROUP_INET4_CONNECT,
        A.BPF_CGROUP_INET6_CONNECT, A.BPF_CGROUP_UNIX_CONNECT,
        A.BPF_CGROUP_INET4_GETPEERNAME, A.BPF_CGROUP_INET6_GETPEERNAME,
        A.BPF_CGROUP_UNIX_GETPEERNAME, A.BPF_CGROUP_INET4_GETSOCKNAME,
        A.BPF_CGROUP_INET6_GETSOCKNAME, A.BPF_CGROUP_UNIX_GETSOCKNAME,
        A.BPF_CGROUP_UDP4_SENDMSG, A.BPF_CGROUP_UDP6_SENDMSG, A.BPF_CGROUP_UNIX_SENDMSG,
        A.BPF_CGROUP_UDP4_RECVMSG, A.BPF_CGROUP_UDP6_RECVMSG, A.BPF_CGROUP_UNIX_RECVMSG}),
    P.BPF_PROG_TYPE_CGROUP_SKB: frozenset({A.BPF_CGROUP_INET_INGRESS, A.BPF_CGROUP_INET_EGRESS}),
    P.BPF_PROG_TYPE_CGROUP_SOCKOPT: frozenset({A.BPF_CGROUP_SETSOCKOPT,
                                               A.BPF_CGROUP_GETSOCKOPT}),
    P.BPF_PROG_TYPE_SK_LOOKUP: frozenset({A.BPF_SK_LOOKUP}),
    P.BPF_PROG_TYPE_SK_REUSEPORT: frozenset({A.BPF_SK_REUSEPORT_SELECT,
                                             A.BPF_SK_REUSEPORT_SELECT_OR_MIGRATE}),
    P.BPF_PROG_TYPE_NETFILTER: frozenset({A.BPF_NETFILTER}),
}


def bpf_prog_load_check_attach(prog_type: int, expected: int, attach_btf: Any,
                               btf_id: int, dst_prog: BpfProg | None) -> bool:
    """True when the attach attributes are acceptable for the program type."""
    if btf_id:
        if btf_id > BTF_MAX_TYPE:
            return False
        if attach_btf is None and dst_prog is None:
            return False
        if prog_type not in (P.BPF_PROG_TYPE_TRACING, P.BPF_PROG_TYPE_LSM,
                             P.BPF_PROG_TYPE_STRUCT_OPS, P.BPF_PROG_TYPE_EXT):
            return False
    if attach_btf is not None and (not btf_id or dst_prog is not None):
        return False
    if dst_prog is not None and prog_type not in (P.BPF_PROG_TYPE_TRACING,
                                                  P.BPF_PROG_TYPE_EXT):
        return False
    allowed = _ATTACH_TYPES.get(prog_type)
    if allowed is not None:
        return expected in allowed
    if prog_type in (P.BPF_PROG_TYPE_SYSCALL, P.BPF_PROG_TYPE_EXT):
        return expected == 0
    return True


# ------------------------------------------------------------------------------- runtime


def select_runtime(prog: BpfProg, insns: list[Any]) -> None:
    """``bpf_prog_select_runtime``: the JIT when enabled and present, else the interpreter.

    The choice, constant blinding (``bpf_jit_harden``) and the jited info
    (``bpf_prog_fill_jited_linfo``) are :func:`pybpf.jit.select_runtime`'s; without the
    JIT package the interpreter runs the program.
    """
    kernel = prog.kernel
    ops = find_prog_type(prog.type)
    ld_abs = getattr(ops, "ld_abs", None) if ops is not None else None
    helpers = kernel.helpers.impls()
    # a type's own implementation of an id (the kernel's per-type bpf_func_proto: the flow
    # dissector's load_bytes is not skb_load_bytes), unless the host overrode the helper
    for fid, impl in (getattr(ops, "helper_impls", None) or {}).items():
        if not kernel.helpers.overridden(fid):
            helpers[fid] = impl
    name = prog.name_str or "prog"
    from pybpf.helpers.kfunc_impls import kfunc_impls_for
    from pybpf.jit import select_runtime as jit_select_runtime  # falls back to the interpreter
    from pybpf.maps.type_arena import prog_arena

    sel = jit_select_runtime(
        insns, jit_enable=kernel.sysctl["bpf_jit_enable"], harden=kernel.sysctl["bpf_jit_harden"],
        privileged=bool(prog.aux.get("bpf_capable", True)), helpers=helpers, ld_abs=ld_abs,
        kfuncs=kfunc_impls_for(kernel, insns), name=name, linfo_insn_offs=_linfo_insn_offs(prog),
        arena=prog_arena(prog))
    prog.bpf_func, prog.jited = sel.runner, sel.jited
    prog.jited_len = sel.info.jited_prog_len if sel.info is not None else 0
    prog.aux["jited_info"] = sel.info
    if sel.info is not None:
        prog.jited_linfo = list(sel.info.jited_line_info)


def _adjust_btf_offsets(prog: BpfProg, starts: list[int], extra: dict[str, Any]) -> None:
    """After the fixups grew or shrank the program, ``func_info``/``line_info`` describe
    the xlated program, as the kernel's ``aux->linfo``/``func_info`` do: offsets moved,
    records of removed instructions and removed subprograms dropped."""
    linfo_offs = extra.get("linfo_insn_offs")
    linfo_ids = extra.get("linfo_ids")
    rec = prog.line_info_rec_size
    if linfo_offs is not None and prog.line_info and rec >= 16:
        old = bytes(prog.line_info)
        ids = linfo_ids if linfo_ids is not None else list(range(len(linfo_offs)))
        out = bytearray()
        for rid, off in zip(ids, linfo_offs, strict=True):
            r = bytearray(old[rid * rec:(rid + 1) * rec])
            r[0:4] = (off & 0xFFFFFFFF).to_bytes(4, "little")
            out += r
        prog.line_info, prog.nr_linfo = bytes(out), len(ids)
    frec = prog.func_info_rec_size
    sub_ids = extra.get("subprog_ids")
    if prog.func_info and frec >= 8:
        old = bytes(prog.func_info)
        ids = sub_ids if sub_ids is not None else list(range(len(starts)))
        if len(ids) != len(starts):
            return
        # hidden subprograms (the default exception callback, id -1) have no record
        starts = [off for sid, off in zip(ids, starts, strict=True) if sid >= 0]
        ids = [sid for sid in ids if sid >= 0]
        if max(ids, default=-1) >= prog.func_info_cnt:
            return
        out = bytearray()
        for sid, off in zip(ids, starts, strict=True):
            r = bytearray(old[sid * frec:(sid + 1) * frec])
            r[0:4] = (off & 0xFFFFFFFF).to_bytes(4, "little")
            out += r
        prog.func_info, prog.func_info_cnt = bytes(out), len(ids)


def _linfo_insn_offs(prog: BpfProg) -> list[int]:
    """``insn_off`` of each ``struct bpf_line_info`` record (16 bytes, ``insn_off`` first,
    then ``file_name_off``, ``line_off``, ``line_col``)."""
    raw = bytes(prog.line_info or b"")
    size = ctypes.sizeof(bpf_line_info)
    return [int.from_bytes(raw[i:i + 4], "little")
            for i in range(0, size * prog.nr_linfo, size)]


# ------------------------------------------------------------------------------- PROG_LOAD


def _fixup_attach_type(prog_type: int, expected: int) -> int:
    if not expected:
        if prog_type == P.BPF_PROG_TYPE_CGROUP_SOCK:
            return int(A.BPF_CGROUP_INET_SOCK_CREATE)
        if prog_type == P.BPF_PROG_TYPE_SK_REUSEPORT:
            return int(A.BPF_SK_REUSEPORT_SELECT)
    return expected


@command(BpfCmd.BPF_PROG_LOAD)
def bpf_prog_load(call: Call) -> int:
    call.check_attr()
    a = call.attr
    kernel, cred = call.kernel, call.cred
    ptype = a.prog_type
    if a.prog_flags & ~PROG_LOAD_FLAGS:
        raise BpfError(errno.EINVAL, "unknown prog_flags")
    expected = _fixup_attach_type(ptype, a.expected_attach_type)
    if a.prog_flags & BPF_F_TOKEN_FD:
        token_get(call, a.prog_token_fd)
    bpf_cap = cred.bpf_capable()
    if kernel.sysctl["unprivileged_bpf_disabled"] and not bpf_cap:
        raise BpfError(errno.EPERM, "unprivileged BPF is disabled")
    limit = BPF_COMPLEXITY_LIMIT_INSNS if bpf_cap else BPF_MAXINSNS
    if a.insn_cnt == 0 or a.insn_cnt > limit:
        raise BpfError(errno.E2BIG, f"insn_cnt {a.insn_cnt} not in [1, {limit}]")
    if ptype not in (P.BPF_PROG_TYPE_SOCKET_FILTER, P.BPF_PROG_TYPE_CGROUP_SKB) and not bpf_cap:
        raise BpfError(errno.EPERM, "program type needs CAP_BPF")
    if ptype in NET_ADMIN_PROG_TYPES and not cred.bpf_ns_capable(Cap.CAP_NET_ADMIN):
        raise BpfError(errno.EPERM, "program type needs CAP_NET_ADMIN")
    if ptype in PERFMON_PROG_TYPES and not cred.bpf_ns_capable(Cap.CAP_PERFMON):
        raise BpfError(errno.EPERM, "program type needs CAP_PERFMON")

    dst_prog: BpfProg | None = None
    attach_btf: Any = None
    if a.attach_prog_fd:
        try:
            dst_prog = prog_get(call.task, a.attach_prog_fd)
        except BpfError:
            try:
                attach_btf = btf_get_by_fd(call.task, a.attach_btf_obj_fd)
            except BpfError:
                raise BpfError(errno.EINVAL, "attach_prog_fd is neither a program nor BTF") \
                    from None
            if not attach_btf.kernel_btf:
                attach_btf.put()
                raise BpfError(ENOTSUPP, "attaching to a program's BTF") from None
    elif a.attach_btf_id:
        attach_btf = kernel.vmlinux_btf
        if attach_btf is None:
            raise BpfError(errno.EINVAL, "no vmlinux BTF")
        attach_btf.get()
    if not bpf_prog_load_check_attach(ptype, expected, attach_btf, a.attach_btf_id, dst_prog):
        if dst_prog is not None:
            dst_prog.put()
        if attach_btf is not None:
            attach_btf.put()
        raise BpfError(errno.EINVAL, "bad attach attributes")

    prog = BpfProg(kernel, ptype, [], expected_attach_type=expected, prog_flags=a.prog_flags,
                   sleepable=bool(a.prog_flags & BPF_F_SLEEPABLE), uid=cred.uid,
                   prog_ifindex=a.prog_ifindex)
    prog.attach_btf, prog.attach_btf_id, prog.dst_prog = attach_btf, a.attach_btf_id, dst_prog
    try:
        return _load_rest(call, prog)
    except BpfError:
        if not prog.freed:
            prog.refcnt = 0
            prog._free()
        raise


def _load_rest(call: Call, prog: BpfProg) -> int:
    a = call.attr
    kernel = call.kernel
    try:
        raw = copy_from_user(a.insns, a.insn_cnt * 8)
        license = strncpy_from_user(a.license, LICENSE_LEN - 1)
    except UserFault:
        raise BpfError(errno.EFAULT, "bad insns or license pointer") from None
    prog.insns = decode(raw)
    prog.license = license.decode("latin-1")
    prog.gpl_compatible = license_is_gpl_compatible(license)
    prog.pages = bpf_prog_pages(a.insn_cnt)
    prog.aux["bpf_capable"] = call.cred.bpf_capable()
    if a.signature:
        # The reference kernel is built without program signature verification.
        raise BpfError(errno.EOPNOTSUPP, "signed programs are not supported")
    if a.prog_ifindex:
        _dev_bound_init(a)
    if prog.type not in KNOWN_PROG_TYPES:
        raise BpfError(errno.EINVAL, f"unknown program type {prog.type}")
    prog.load_time = boottime_ns()
    name = bpf_obj_name_cpy(bytes(a.prog_name))
    if name is None:
        raise BpfError(errno.EINVAL, "invalid program name")
    prog.name = name
    kernel.security.check("bpf_prog_load", call.task, prog, a)
    prog.tag = bpf_prog_calc_tag(raw)
    _bpf_check(call, prog)
    prog.id = kernel.prog_idr.alloc_cyclic(prog)
    try:
        return prog_new_fd(call.task, prog)
    except BpfError:
        prog.put()
        raise


def _dev_bound_init(a: Any) -> None:
    """``bpf_prog_dev_bound_init``: pybpf has no network devices, so binding fails."""
    if a.prog_type not in (P.BPF_PROG_TYPE_SCHED_CLS, P.BPF_PROG_TYPE_XDP):
        raise BpfError(errno.EINVAL, "only XDP and tc programs bind to a device")
    if a.prog_flags & ~(BPF_F_XDP_DEV_BOUND_ONLY | BPF_F_XDP_HAS_FRAGS):
        raise BpfError(errno.EINVAL, "prog_flags with prog_ifindex")
    if a.prog_flags & BPF_F_XDP_HAS_FRAGS and not a.prog_flags & BPF_F_XDP_DEV_BOUND_ONLY:
        raise BpfError(errno.EINVAL, "frags need BPF_F_XDP_DEV_BOUND_ONLY")
    if a.prog_type == P.BPF_PROG_TYPE_SCHED_CLS and a.prog_flags & BPF_F_XDP_DEV_BOUND_ONLY:
        raise BpfError(errno.EINVAL, "tc programs cannot be dev-bound-only")
    raise BpfError(errno.EINVAL, f"no device with ifindex {a.prog_ifindex}")


def _fd_array(a: Any, insns: list[Any]) -> list[int] | None:
    """The ``fd_array`` entries the program can refer to (read like the verifier does)."""
    if not a.fd_array:
        return None
    count = a.fd_array_cnt
    if not count:
        # Without fd_array_cnt the verifier reads entries on demand: read as far as the
        # largest index any BPF_PSEUDO_MAP_IDX / kfunc module reference uses.
        need = 0
        for i, ins in enumerate(insns):
            if ins.code == 0x18 and ins.src in (5, 6):
                need = max(need, ins.imm + 1)
            elif ins.code == 0x85 and ins.src == 2 and ins.off > 0:
                need = max(need, ins.off + 1)
            del i
        count = need
    out: list[int] = []
    for i in range(count):
        try:
            out.append(int.from_bytes(copy_from_user(a.fd_array + 4 * i, 4), "little",
                                      signed=True))
        except UserFault:
            if a.fd_array_cnt:
                raise BpfError(errno.EFAULT, "fd_array") from None
            break
    return out


def _read_records(addr: int, rec_size: int, cnt: int) -> bytes:
    if not addr or not cnt or not rec_size:
        return b""
    try:
        return copy_from_user(addr, rec_size * cnt)
    except UserFault:
        return b""


def _bpf_check(call: Call, prog: BpfProg) -> None:
    """The verifier step of ``bpf_check``: log init, verify, finalize the log."""
    from pybpf.verifier.api import VerifierInput, bpf_check

    a = call.attr
    task, kernel, cred = call.task, call.kernel, call.cred
    log = VerifierLog.init(a.log_level, a.log_buf, a.log_size)

    def map_by_fd(fd: int) -> Any:
        try:
            kmap, _file = map_get(task, fd)
        except BpfError as e:  # EBADF: no such fd; EINVAL: not a map
            return e.errno
        return kmap.bmap

    prog.func_info_rec_size = a.func_info_rec_size
    prog.func_info_cnt = a.func_info_cnt
    prog.func_info = _read_records(a.func_info, a.func_info_rec_size, a.func_info_cnt)
    prog.line_info_rec_size = a.line_info_rec_size
    prog.nr_linfo = a.line_info_cnt
    prog.line_info = _read_records(a.line_info, a.line_info_rec_size, a.line_info_cnt)
    prog_btf = None
    if a.func_info_cnt or a.line_info_cnt:
        prog_btf = btf_get_by_fd(task, a.prog_btf_fd)
        if prog_btf.kernel_btf:
            prog_btf.put()
            raise BpfError(errno.EACCES, "prog BTF must not be kernel BTF")
        prog.btf = prog_btf
    func_info = [tuple(int.from_bytes(prog.func_info[i + j: i + j + 4], "little")
                       for j in (0, 4))
                 for i in range(0, len(prog.func_info), max(prog.func_info_rec_size, 1))
                 if prog.func_info_rec_size >= 8]
    line_info = [tuple(int.from_bytes(prog.line_info[i + j: i + j + 4], "little")
                       for j in (0, 4, 8, 12))
                 for i in range(0, len(prog.line_info), max(prog.line_info_rec_size, 1))
                 if prog.line_info_rec_size >= 16]
    aux = prog.aux
    aux["core_relo_cnt"] = a.core_relo_cnt
    aux["core_relos"] = a.core_relos
    aux["core_relo_rec_size"] = a.core_relo_rec_size
    aux["fd_array_cnt"] = a.fd_array_cnt
    inp = VerifierInput(
        insns=list(prog.insns), prog_type=prog.type,
        expected_attach_type=prog.expected_attach_type, prog_flags=a.prog_flags,
        log_level=a.log_level, map_by_fd=map_by_fd, fd_array=_fd_array(a, prog.insns),
        gpl_compatible=prog.gpl_compatible, bpf_capable=cred.bpf_capable(),
        perfmon_capable=cred.perfmon_capable(), net_admin=cred.net_capable(),
        attach_btf_id=prog.attach_btf_id, attach_prog=prog.dst_prog, prog_btf=prog_btf,
        func_info=func_info, line_info=line_info, kernel=kernel, prog=prog,
        func_info_cnt=a.func_info_cnt if prog_btf is not None else 0,
        func_info_rec_size=a.func_info_rec_size, func_info_raw=prog.func_info,
        line_info_cnt=a.line_info_cnt if prog_btf is not None else 0,
        line_info_rec_size=a.line_info_rec_size, line_info_raw=prog.line_info)
    res = bpf_check(inp)
    for key, off in (("func_info_rec_size", OFF_FUNC_INFO_REC_SIZE),
                     ("line_info_rec_size", OFF_LINE_INFO_REC_SIZE)):
        if res.extra.get(key):  # "nonzero tailing record": the size the kernel expects
            call.put_u32(off, res.extra[key])
    err, true_size = log.finalize(res.log if log.level else "",
                                  res.extra.get("log_len_max") if log.level else None)
    if err == 0:
        err = res.errno
    if call.size >= END_LOG_TRUE_SIZE:
        call.put_u32(OFF_LOG_TRUE_SIZE, true_size)
    if err:
        raise BpfError(err, "verification failed", res.log)
    xlated = list(res.insns) if res.insns else list(prog.insns)
    prog.xlated = xlated
    prog.verified_insns = res.verified_insns
    prog.stack_depth = res.stack_depth
    starts = list(res.subprog_starts or [0])
    # func_cnt leaves hidden subprograms (the default exception callback, id -1) out
    visible = [sid for sid in res.extra.get("subprog_ids", range(len(starts))) if sid >= 0]
    prog.func_cnt = len(visible) if len(starts) > 1 else 0
    _adjust_btf_offsets(prog, starts, res.extra)
    if res.extra.get("exception_cb") is not None:  # where bpf_throw lands (verifier/exceptions.py)
        prog.aux["exception_cb"] = res.extra["exception_cb"]
    for bmap in res.used_maps:
        kmap = kernel.kmap_of(bmap)
        if kmap is not None and kmap not in prog.used_maps:
            prog.used_maps.append(kmap.get())
    select_runtime(prog, xlated)


# ------------------------------------------------------------------------------- TEST_RUN


@command(BpfCmd.BPF_PROG_TEST_RUN)
def bpf_prog_test_run(call: Call) -> int:
    call.check_attr()
    t = call.attr.test
    if bool(t.ctx_size_in) != bool(t.ctx_in):
        raise BpfError(errno.EINVAL, "ctx_in and ctx_size_in go together")
    if bool(t.ctx_size_out) != bool(t.ctx_out):
        raise BpfError(errno.EINVAL, "ctx_out and ctx_size_out go together")
    prog = prog_get(call.task, t.prog_fd)
    try:
        test_run = _test_runner(prog.type)
        if not callable(test_run):
            raise BpfError(ENOTSUPP, "test_run not supported for this program type")
        data_in_addr, data_size_in = t.data_in, t.data_size_in
        ctx_in_addr, ctx_size_in = t.ctx_in, t.ctx_size_in
        opts = TestRunOpts(
            data_in=(lambda: copy_from_user(data_in_addr, data_size_in)) if data_size_in
            else b"",
            data_size_in=data_size_in, data_size_out=t.data_size_out,
            has_data_out=bool(t.data_out),
            ctx_in=(lambda: copy_from_user(ctx_in_addr, ctx_size_in)) if ctx_in_addr else None,
            ctx_size_in=ctx_size_in, ctx_size_out=t.ctx_size_out, has_ctx_out=bool(t.ctx_out),
            repeat=t.repeat, flags=t.flags, cpu=t.cpu, batch_size=t.batch_size,
            task=call.task, kernel=call.kernel, has_data_in=bool(t.data_in),
            duration=t.duration, ctx_in_addr=ctx_in_addr)
        try:
            res = test_run(prog, call.kernel, opts)
        except NotImplementedError:
            raise BpfError(ENOTSUPP, "test_run not supported for this program type") from None
        return _test_finish(call, t, res)
    finally:
        prog.put()


def _test_runner(prog_type: int) -> Callable[..., TestRunResult] | None:
    """The ``test_run`` of a program type: :mod:`pybpf.progs.test_run`'s runner for it (the
    kernel's ``net/bpf/test_run.c``), else the type's own ``ProgTypeOps.test_run``."""
    try:
        from pybpf.progs.test_run import TEST_RUNNERS
    except ImportError:
        TEST_RUNNERS = {}
    runner = TEST_RUNNERS.get(int(prog_type))
    if runner is not None:
        return runner
    ops = find_prog_type(prog_type)
    return getattr(ops, "test_run", None) if ops is not None else None


def _test_finish(call: Call, t: Any, res: TestRunResult) -> int:
    """``bpf_test_finish`` + ``bpf_ctx_finish``."""
    if res.errno:
        raise BpfError(res.errno, "test_run failed")
    ret = 0
    if res.data_out is not None:
        size = len(res.data_out)
        copy_size = size
        if t.data_size_out and copy_size > t.data_size_out:
            copy_size = t.data_size_out
            ret = -errno.ENOSPC
        if t.data_out:
            copy_to_user(t.data_out, res.data_out[:copy_size])
        call.put_u32(OFF_TEST_DATA_SIZE_OUT, size)
        call.put_u32(OFF_TEST_RETVAL, res.retval)
        call.put_u32(OFF_TEST_DURATION, res.duration)
    else:
        call.put_u32(OFF_TEST_RETVAL, res.retval)
        if res.write_duration:
            call.put_u32(OFF_TEST_DURATION, res.duration)
    if ret == 0 and res.ctx_out is not None and t.ctx_out:
        size = len(res.ctx_out)
        copy_size = size
        if copy_size > t.ctx_size_out:
            copy_size = t.ctx_size_out
            ret = -errno.ENOSPC
        copy_to_user(t.ctx_out, res.ctx_out[:copy_size])
        call.put_u32(OFF_TEST_CTX_SIZE_OUT, size)
    return ret


# ------------------------------------------------------------------------------- BIND_MAP


@command(BpfCmd.BPF_PROG_BIND_MAP)
def bpf_prog_bind_map(call: Call) -> int:
    call.check_attr()
    b = call.attr.prog_bind_map
    if b.flags:
        raise BpfError(errno.EINVAL, "flags must be 0")
    prog = prog_get(call.task, b.prog_fd)
    try:
        kmap, _file = map_get(call.task, b.map_fd)
        if kmap in prog.used_maps:
            return 0
        prog.used_maps.append(kmap.get())
        return 0
    finally:
        prog.put()


__all__ = ["KMap", "bpf_prog_load", "bpf_prog_test_run", "select_runtime"]
