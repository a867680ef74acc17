"""Attachment commands: RAW_TRACEPOINT_OPEN, LINK_CREATE/UPDATE/DETACH, PROG_ATTACH/
DETACH/QUERY, ITER_CREATE, TASK_FD_QUERY, ENABLE_STATS, TOKEN_CREATE, PROG_STREAM_READ.

What pybpf has to attach to today: the instance's raw tracepoints
(:class:`pybpf.kernel.RawTracepoints`) — ``BPF_RAW_TRACEPOINT_OPEN`` and ``LINK_CREATE``
with ``BPF_TRACE_RAW_TP`` make real links there. Every other hook needs an object pybpf
does not model yet (cgroups, network devices, netns, perf events, sockmaps with sockets,
trampolines, iterators, struct_ops): those paths run the kernel's checks up to the target
lookup and then fail with the errno Linux gives when that target does not exist — never a
silent success. ``docs/syscall.md`` lists them under "Not yet supported".
"""

from __future__ import annotations

import errno
from typing import Any

from pybpf.core.link import BpfLink
from pybpf.core.map import KMap
from pybpf.core.prog import BpfProg
from pybpf.errors import BpfError
from pybpf.kernel import Cap
from pybpf.syscall.attr import OFF_TFQ_BUF_LEN, off_of
from pybpf.syscall.dispatch import ENOTSUPP, Call, command
from pybpf.syscall.fdtable import KIND_STATS, File
from pybpf.syscall.objects import (
    fdget,
    link_get_from_fd,
    link_new_fd,
    map_get,
    prog_get,
)
from pybpf.syscall.uaccess import UserFault, copy_to_user, strncpy_from_user
from pybpf.uapi import BpfAttachType, BpfCmd, BpfLinkType, BpfMapType, BpfProgType

P = BpfProgType
A = BpfAttachType

BPF_F_ALLOW_OVERRIDE = 1 << 0
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2
BPF_F_BEFORE = 1 << 3
BPF_F_AFTER = 1 << 4
BPF_F_ID = 1 << 5
BPF_F_LINK = 1 << 13
BPF_F_PREORDER = 1 << 6
BPF_F_QUERY_EFFECTIVE = 1 << 0
BPF_F_ATTACH_MASK_BASE = BPF_F_ALLOW_OVERRIDE | BPF_F_ALLOW_MULTI | BPF_F_REPLACE \
    | BPF_F_PREORDER
BPF_F_ATTACH_MASK_MPROG = BPF_F_REPLACE | BPF_F_BEFORE | BPF_F_AFTER | BPF_F_ID | BPF_F_LINK
BPF_STATS_RUN_TIME = 0
BPF_STREAM_STDOUT = 1
BPF_STREAM_STDERR = 2

_CGROUP_PROG_TYPES = frozenset({
    P.BPF_PROG_TYPE_CGROUP_DEVICE, P.BPF_PROG_TYPE_CGROUP_SKB, P.BPF_PROG_TYPE_CGROUP_SOCK,
    P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, P.BPF_PROG_TYPE_CGROUP_SOCKOPT,
    P.BPF_PROG_TYPE_CGROUP_SYSCTL, P.BPF_PROG_TYPE_SOCK_OPS,
})

_ATTACH_TO_PROG: dict[int, int] = {}
for _atype, _ptype in (
    ((A.BPF_CGROUP_INET_INGRESS, A.BPF_CGROUP_INET_EGRESS), P.BPF_PROG_TYPE_CGROUP_SKB),
    ((A.BPF_CGROUP_INET_SOCK_CREATE, A.BPF_CGROUP_INET_SOCK_RELEASE,
      A.BPF_CGROUP_INET4_POST_BIND, A.BPF_CGROUP_INET6_POST_BIND), P.BPF_PROG_TYPE_CGROUP_SOCK),
    ((A.BPF_CGROUP_INET4_BIND, A.BPF_CGROUP_INET6_BIND, A.BPF_CGROUP_INET4_CONNECT,
      A.BPF_CGROUP_INET6_CONNECT, A.BPF_CGROUP_UNIX_CONNECT, A.BPF_CGROUP_INET4_GETPEERNAME,
      A.BPF_CGROUP_INET6_GETPEERNAME, A.BPF_CGROUP_UNIX_GETPEERNAME,
      A.BPF_CGROUP_INET4_GETSOCKNAME, A.BPF_CGROUP_INET6_GETSOCKNAME,
      A.BPF_CGROUP_UNIX_GETSOCKNAME, A.BPF_CGROUP_UDP4_SENDMSG, A.BPF_CGROUP_UDP6_SENDMSG,
      A.BPF_CGROUP_UNIX_SENDMSG, A.BPF_CGROUP_UDP4_RECVMSG, A.BPF_CGROUP_UDP6_RECVMSG,
      A.BPF_CGROUP_UNIX_RECVMSG), P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
    ((A.BPF_CGROUP_SOCK_OPS,), P.BPF_PROG_TYPE_SOCK_OPS),
    ((A.BPF_CGROUP_DEVICE,), P.BPF_PROG_TYPE_CGROUP_DEVICE),
    ((A.BPF_SK_MSG_VERDICT,), P.BPF_PROG_TYPE_SK_MSG),
    ((A.BPF_SK_SKB_STREAM_PARSER, A.BPF_SK_SKB_STREAM_VERDICT, A.BPF_SK_SKB_VERDICT),
     P.BPF_PROG_TYPE_SK_SKB),
    ((A.BPF_LIRC_MODE2,), P.BPF_PROG_TYPE_LIRC_MODE2),
    ((A.BPF_FLOW_DISSECTOR,), P.BPF_PROG_TYPE_FLOW_DISSECTOR),
    ((A.BPF_CGROUP_SYSCTL,), P.BPF_PROG_TYPE_CGROUP_SYSCTL),
    ((A.BPF_CGROUP_GETSOCKOPT, A.BPF_CGROUP_SETSOCKOPT), P.BPF_PROG_TYPE_CGROUP_SOCKOPT),
    ((A.BPF_TRACE_ITER, A.BPF_TRACE_RAW_TP, A.BPF_TRACE_FENTRY, A.BPF_TRACE_FEXIT,
      A.BPF_MODIFY_RETURN), P.BPF_PROG_TYPE_TRACING),
    ((A.BPF_LSM_MAC, A.BPF_LSM_CGROUP), P.BPF_PROG_TYPE_LSM),
    ((A.BPF_SK_LOOKUP,), P.BPF_PROG_TYPE_SK_LOOKUP),
    ((A.BPF_XDP,), P.BPF_PROG_TYPE_XDP),
    ((A.BPF_TCX_INGRESS, A.BPF_TCX_EGRESS, A.BPF_NETKIT_PRIMARY, A.BPF_NETKIT_PEER),
     P.BPF_PROG_TYPE_SCHED_CLS),
):
    for _a in _atype:
        _ATTACH_TO_PROG[int(_a)] = int(_ptype)


def attach_type_to_prog_type(attach_type: int) -> int:
    return _ATTACH_TO_PROG.get(int(attach_type), int(P.BPF_PROG_TYPE_UNSPEC))


def _mprog_supported(ptype: int) -> bool:
    return ptype == P.BPF_PROG_TYPE_SCHED_CLS


def _is_cgroup_prog_type(ptype: int, atype: int, check_atype: bool) -> bool:
    if ptype in _CGROUP_PROG_TYPES:
        return True
    if ptype == P.BPF_PROG_TYPE_LSM:
        return atype == A.BPF_LSM_CGROUP if check_atype else True
    return False


def prog_attach_check_attach_type(call: Call, prog: BpfProg, atype: int) -> None:
    """``bpf_prog_attach_check_attach_type``: EINVAL (EPERM for unprivileged cgroup skb)."""
    t = prog.type
    bad = BpfError(errno.EINVAL, "attach type does not fit the program")
    if t in (P.BPF_PROG_TYPE_CGROUP_SOCK, P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
             P.BPF_PROG_TYPE_CGROUP_SOCKOPT, P.BPF_PROG_TYPE_SK_LOOKUP):
        if atype != prog.expected_attach_type:
            raise bad
    elif t == P.BPF_PROG_TYPE_CGROUP_SKB:
        if not call.cred.bpf_ns_capable(Cap.CAP_NET_ADMIN):
            raise BpfError(errno.EPERM, "cgroup skb attach needs CAP_NET_ADMIN")
        if attach_type_to_prog_type(atype) != t:
            raise bad
        if prog.aux.get("enforce_expected_attach_type") and prog.expected_attach_type != atype:
            raise bad
    elif t == P.BPF_PROG_TYPE_EXT:
        return
    elif t == P.BPF_PROG_TYPE_NETFILTER:
        if atype != A.BPF_NETFILTER:
            raise bad
    elif t in (P.BPF_PROG_TYPE_PERF_EVENT, P.BPF_PROG_TYPE_TRACEPOINT):
        if atype != A.BPF_PERF_EVENT:
            raise bad
    elif t == P.BPF_PROG_TYPE_KPROBE:
        for multi in (A.BPF_TRACE_KPROBE_MULTI, A.BPF_TRACE_KPROBE_SESSION,
                      A.BPF_TRACE_UPROBE_MULTI, A.BPF_TRACE_UPROBE_SESSION):
            if prog.expected_attach_type == multi and atype != multi:
                raise bad
        if atype not in (A.BPF_PERF_EVENT, A.BPF_TRACE_KPROBE_MULTI,
                         A.BPF_TRACE_KPROBE_SESSION, A.BPF_TRACE_UPROBE_MULTI,
                         A.BPF_TRACE_UPROBE_SESSION):
            raise bad
    elif t == P.BPF_PROG_TYPE_SCHED_CLS:
        if atype not in (A.BPF_TCX_INGRESS, A.BPF_TCX_EGRESS, A.BPF_NETKIT_PRIMARY,
                         A.BPF_NETKIT_PEER):
            raise bad
    else:
        ptype = attach_type_to_prog_type(atype)
        if ptype == P.BPF_PROG_TYPE_UNSPEC or ptype != t:
            raise bad


# ------------------------------------------------------------------------ missing targets
def _no_cgroup(call: Call, fd: int) -> BpfError:
    """``cgroup_get_from_fd``: pybpf has no cgroups, so no fd is a cgroup directory."""
    fdget(call.task, fd)
    return BpfError(errno.EBADF, f"fd {fd} is not a cgroup")


def _no_netdev(ifindex: int) -> BpfError:
    return BpfError(errno.ENODEV, f"no network device {ifindex}")


def _no_netns(call: Call, fd: int) -> BpfError:
    fdget(call.task, fd)
    return BpfError(errno.EINVAL, f"fd {fd} is not a network namespace")


def _sockmap_from_fd(call: Call, fd: int) -> BpfError:
    kmap, _f = map_get(call.task, fd)
    if kmap.map_type not in (BpfMapType.BPF_MAP_TYPE_SOCKMAP, BpfMapType.BPF_MAP_TYPE_SOCKHASH):
        return BpfError(errno.EINVAL, "target map is not a sockmap/sockhash")
    return BpfError(errno.EOPNOTSUPP, "sockmap program attachment is not supported yet")


# ------------------------------------------------------------------------ raw tracepoints
class RawTpLinkOps:
    """``bpf_raw_tp_link_lops``: release unregisters; no detach, no update."""

    def release(self, link: BpfLink) -> None:
        link.kernel.tracepoints.unregister(link.extra["tp_name"], link)

    def fill_link_info(self, link: BpfLink, info: Any, task: Any) -> None:
        rt = info.raw_tracepoint
        ubuf, ulen = rt.tp_name, rt.tp_name_len
        if bool(ubuf) != bool(ulen):
            raise BpfError(errno.EINVAL, "tp_name and tp_name_len go together")
        name = link.extra["tp_name"].encode()
        rt.tp_name_len = len(name) + 1
        rt.cookie = link.extra.get("cookie", 0)
        if ubuf:
            bpf_copy_to_user(ubuf, name, ulen)


RAW_TP_LINK_OPS = RawTpLinkOps()


def bpf_copy_to_user(ubuf: int, data: bytes, ulen: int) -> None:
    """``bpf_copy_to_user``: the string and its NUL, or a truncated one and ``ENOSPC``."""
    if ulen >= len(data) + 1:
        copy_to_user(ubuf, data + b"\0")
        return
    copy_to_user(ubuf, data[:ulen - 1] + b"\0")
    raise BpfError(errno.ENOSPC, "buffer too small")


def raw_tp_link_attach(call: Call, prog: BpfProg, user_tp_name: int, cookie: int,
                       attach_type: int) -> int:
    """``bpf_raw_tp_link_attach``; on success the link owns the caller's prog reference."""
    if prog.type in (P.BPF_PROG_TYPE_TRACING, P.BPF_PROG_TYPE_EXT, P.BPF_PROG_TYPE_LSM):
        if user_tp_name:
            raise BpfError(errno.EINVAL, "tracing programs name their target at load time")
        if prog.type == P.BPF_PROG_TYPE_TRACING and prog.expected_attach_type in (
                A.BPF_TRACE_FENTRY, A.BPF_TRACE_FEXIT, A.BPF_MODIFY_RETURN):
            return _tracing_attach(call, prog, cookie)
        if prog.type == P.BPF_PROG_TYPE_TRACING and \
                prog.expected_attach_type == A.BPF_TRACE_RAW_TP:
            return _tp_btf_attach(call, prog, cookie, attach_type)
        raise BpfError(errno.EOPNOTSUPP, "trampolines (lsm/ext/tp_btf) not supported yet")
    if prog.type not in (P.BPF_PROG_TYPE_RAW_TRACEPOINT, P.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE):
        raise BpfError(errno.EINVAL, "not a raw tracepoint program")
    try:
        raw = strncpy_from_user(user_tp_name, 127)
    except UserFault:
        raise BpfError(errno.EFAULT, "bad tracepoint name pointer") from None
    name = raw.decode("latin-1")
    tps = call.kernel.tracepoints
    if not tps.exists(name):
        raise BpfError(errno.ENOENT, f"no raw tracepoint {name!r}")
    link = BpfLink(call.kernel, BpfLinkType.BPF_LINK_TYPE_RAW_TRACEPOINT, RAW_TP_LINK_OPS,
                   prog, attach_type)
    link.extra["tp_name"] = name
    link.extra["cookie"] = cookie
    return _settle(call, link, lambda: tps.register(name, link))


def _tp_btf_attach(call: Call, prog: BpfProg, cookie: int, attach_type: int) -> int:
    """A tp_btf program on the raw tracepoint its ``btf_trace_<name>`` target names."""
    from pybpf.hooks.trampoline import attach_target_name

    target = attach_target_name(prog) or ""
    name = target.removeprefix("btf_trace_")
    tps = call.kernel.tracepoints
    if not target.startswith("btf_trace_") or not tps.exists(name):
        raise BpfError(errno.ENOENT, f"no raw tracepoint for {target!r}")
    link = BpfLink(call.kernel, BpfLinkType.BPF_LINK_TYPE_RAW_TRACEPOINT, RAW_TP_LINK_OPS,
                   prog, attach_type)
    link.extra["tp_name"] = name
    link.extra["cookie"] = cookie
    return _settle(call, link, lambda: tps.register(name, link))


def _tracing_attach(call: Call, prog: BpfProg, cookie: int) -> int:
    """``bpf_tracing_prog_attach``: a link on a host function's trampoline
    (:mod:`pybpf.hooks.trampoline`)."""
    from pybpf.hooks.trampoline import tracing_link_attach, trampoline_link

    link = tracing_link_attach(call.kernel, prog, cookie)
    return _settle(call, link, lambda: trampoline_link(link))


def _settle(call: Call, link: BpfLink, attach: Any) -> int:
    """``bpf_link_prime`` + attach + ``bpf_link_settle``: fd and ID only on success."""
    link.id = call.kernel.link_idr.alloc_cyclic(link)
    try:
        attach()
        return link_new_fd(call.task, link)
    except BpfError:
        call.kernel.link_idr.remove(link.id)
        link.id = 0
        link.prog = None  # the caller still owns (and drops) the program reference
        raise


@command(BpfCmd.BPF_RAW_TRACEPOINT_OPEN)
def bpf_raw_tracepoint_open(call: Call) -> int:
    call.check_attr()
    rt = call.attr.raw_tracepoint
    prog = prog_get(call.task, rt.prog_fd)
    try:
        return raw_tp_link_attach(call, prog, rt.name, rt.cookie, prog.expected_attach_type)
    except BpfError:
        prog.put()
        raise


# ------------------------------------------------------------------------ links
@command(BpfCmd.BPF_LINK_CREATE)
def link_create(call: Call) -> int:
    call.check_attr()
    lc = call.attr.link_create
    if lc.attach_type == A.BPF_STRUCT_OPS:
        kmap, _f = map_get(call.task, lc.map_fd)
        if kmap.map_type != BpfMapType.BPF_MAP_TYPE_STRUCT_OPS:
            raise BpfError(errno.EINVAL, "not a struct_ops map")
        raise BpfError(errno.EOPNOTSUPP, "struct_ops links not supported yet")
    prog = prog_get(call.task, lc.prog_fd)
    try:
        prog_attach_check_attach_type(call, prog, lc.attach_type)
        return _link_create_for(call, prog, lc)
    except BpfError:
        prog.put()
        raise


def _link_create_for(call: Call, prog: BpfProg, lc: Any) -> int:
    t = prog.type
    if t in _CGROUP_PROG_TYPES:
        raise _no_cgroup(call, lc.target_fd)
    if t == P.BPF_PROG_TYPE_EXT:
        raise BpfError(errno.EOPNOTSUPP, "freplace links not supported yet")
    if t in (P.BPF_PROG_TYPE_LSM, P.BPF_PROG_TYPE_TRACING):
        if lc.attach_type != prog.expected_attach_type:
            raise BpfError(errno.EINVAL, "attach_type must equal expected_attach_type")
        if prog.expected_attach_type == A.BPF_TRACE_ITER:
            raise BpfError(errno.ENOENT, "no BPF iterator targets yet")
        if prog.expected_attach_type == A.BPF_TRACE_RAW_TP:
            return _tp_btf_attach(call, prog, lc.tracing.cookie, lc.attach_type)
        if prog.expected_attach_type == A.BPF_LSM_CGROUP:
            raise _no_cgroup(call, lc.target_fd)
        if prog.expected_attach_type in (A.BPF_TRACE_FENTRY, A.BPF_TRACE_FEXIT,
                                         A.BPF_MODIFY_RETURN):
            if bool(lc.target_fd) != bool(lc.target_btf_id):
                raise BpfError(errno.EINVAL, "target_fd and target_btf_id go together")
            if lc.target_fd:
                raise BpfError(errno.EOPNOTSUPP, "re-attaching to another target not supported")
            return _tracing_attach(call, prog, lc.tracing.cookie)
        raise BpfError(errno.EOPNOTSUPP, "trampolines not supported yet")
    if t in (P.BPF_PROG_TYPE_FLOW_DISSECTOR, P.BPF_PROG_TYPE_SK_LOOKUP):
        from pybpf.net.netns import netns_bpf_link_create

        return netns_bpf_link_create(call, prog, lc)
    if t in (P.BPF_PROG_TYPE_SK_MSG, P.BPF_PROG_TYPE_SK_SKB):
        raise _sockmap_from_fd(call, lc.target_fd)
    if t == P.BPF_PROG_TYPE_XDP:
        from pybpf.hooks.netattach import xdp_link_attach  # pybpf's network devices

        return xdp_link_attach(call, prog, lc)
    if t == P.BPF_PROG_TYPE_SCHED_CLS:
        if lc.attach_type in (A.BPF_TCX_INGRESS, A.BPF_TCX_EGRESS):
            from pybpf.hooks.netattach import tcx_link_attach

            return tcx_link_attach(call, prog, lc)
        raise _no_netdev(lc.target_ifindex)
    if t == P.BPF_PROG_TYPE_NETFILTER:
        raise BpfError(errno.EOPNOTSUPP, "netfilter hooks not supported yet")
    if t in (P.BPF_PROG_TYPE_PERF_EVENT, P.BPF_PROG_TYPE_TRACEPOINT) or (
            t == P.BPF_PROG_TYPE_KPROBE and lc.attach_type == A.BPF_PERF_EVENT):
        from pybpf.hooks.perf_event import perf_link_attach  # the host's perf events

        return perf_link_attach(call.kernel, call.task, prog, lc.target_fd, lc.flags,
                                lc.perf_event.bpf_cookie,
                                lambda link, attach: _settle(call, link, attach))
    if t == P.BPF_PROG_TYPE_KPROBE:
        raise BpfError(errno.EOPNOTSUPP, "kprobe/uprobe multi links not supported yet")
    raise BpfError(errno.EINVAL, "program type cannot make links")


@command(BpfCmd.BPF_LINK_UPDATE)
def link_update(call: Call) -> int:
    call.check_attr()
    lu = call.attr.link_update
    if lu.flags & ~BPF_F_REPLACE:
        raise BpfError(errno.EINVAL, "unknown flags")
    link = link_get_from_fd(call.task, lu.link_fd)
    try:
        update_map = getattr(link.ops, "update_map", None)
        if callable(update_map):
            new_map, _f = map_get(call.task, lu.new_map_fd)
            old_map: KMap | None = None
            if lu.flags & BPF_F_REPLACE:
                old_map, _f2 = map_get(call.task, lu.old_map_fd)
            elif lu.old_map_fd:
                raise BpfError(errno.EINVAL, "old_map_fd without BPF_F_REPLACE")
            update_map(link, new_map, old_map)
            return 0
        new_prog = prog_get(call.task, lu.new_prog_fd)
        old_prog: BpfProg | None = None
        ok = False
        try:
            if lu.flags & BPF_F_REPLACE:
                old_prog = prog_get(call.task, lu.old_prog_fd)
            elif lu.old_prog_fd:
                raise BpfError(errno.EINVAL, "old_prog_fd without BPF_F_REPLACE")
            update_prog = getattr(link.ops, "update_prog", None)
            if not callable(update_prog):
                raise BpfError(errno.EINVAL, "link cannot change its program")
            update_prog(link, new_prog, old_prog)
            ok = True
            return 0
        finally:
            if old_prog is not None:
                old_prog.put()
            if not ok:
                new_prog.put()
    finally:
        link.put()


@command(BpfCmd.BPF_LINK_DETACH)
def link_detach(call: Call) -> int:
    call.check_attr()
    link = link_get_from_fd(call.task, call.attr.link_detach.link_fd)
    try:
        detach = getattr(link.ops, "detach", None)
        if not callable(detach):
            raise BpfError(errno.EOPNOTSUPP, "link cannot be detached")
        detach(link)
        return 0
    finally:
        link.put()


# ------------------------------------------------------------------------ PROG_ATTACH & co
@command(BpfCmd.BPF_PROG_ATTACH)
def bpf_prog_attach(call: Call) -> int:
    call.check_attr()
    a = call.attr
    ptype = attach_type_to_prog_type(a.attach_type)
    if ptype == P.BPF_PROG_TYPE_UNSPEC:
        raise BpfError(errno.EINVAL, "unknown attach type")
    if _mprog_supported(ptype):
        if a.attach_flags & ~BPF_F_ATTACH_MASK_MPROG:
            raise BpfError(errno.EINVAL, "attach_flags")
    elif _is_cgroup_prog_type(ptype, 0, False):
        if a.attach_flags & ~(BPF_F_ATTACH_MASK_BASE | BPF_F_ATTACH_MASK_MPROG):
            raise BpfError(errno.EINVAL, "attach_flags")
    else:
        if a.attach_flags & ~BPF_F_ATTACH_MASK_BASE:
            raise BpfError(errno.EINVAL, "attach_flags")
        if a.relative_fd or a.expected_revision:
            raise BpfError(errno.EINVAL, "relative_fd/expected_revision")
    prog = prog_get(call.task, a.attach_bpf_fd, ptype)
    try:
        try:
            prog_attach_check_attach_type(call, prog, a.attach_type)
        except BpfError:
            raise BpfError(errno.EINVAL, "attach type does not fit the program") from None
        if _is_cgroup_prog_type(ptype, prog.expected_attach_type, True):
            raise _no_cgroup(call, a.target_fd)
        if ptype in (P.BPF_PROG_TYPE_SK_SKB, P.BPF_PROG_TYPE_SK_MSG):
            raise _sockmap_from_fd(call, a.target_fd)
        if ptype == P.BPF_PROG_TYPE_LIRC_MODE2:
            raise BpfError(errno.EINVAL, "LIRC not built")
        if ptype == P.BPF_PROG_TYPE_FLOW_DISSECTOR:
            from pybpf.net.netns import netns_bpf_prog_attach

            return netns_bpf_prog_attach(call, prog, a)  # the namespace keeps the reference
        if ptype == P.BPF_PROG_TYPE_SCHED_CLS:
            if a.attach_type in (A.BPF_TCX_INGRESS, A.BPF_TCX_EGRESS):
                from pybpf.hooks.netattach import tcx_prog_attach

                return tcx_prog_attach(call, prog, a)  # the hook keeps the reference
            raise _no_netdev(a.target_ifindex)
        raise BpfError(errno.EINVAL, "program type cannot be attached")
    except BpfError:
        prog.put()
        raise


@command(BpfCmd.BPF_PROG_DETACH)
def bpf_prog_detach(call: Call) -> int:
    call.check_attr()
    a = call.attr
    ptype = attach_type_to_prog_type(a.attach_type)
    prog: BpfProg | None = None
    if _mprog_supported(ptype):
        if a.attach_flags & ~BPF_F_ATTACH_MASK_MPROG:
            raise BpfError(errno.EINVAL, "attach_flags")
        if a.attach_bpf_fd:
            prog = prog_get(call.task, a.attach_bpf_fd, ptype)
    elif _is_cgroup_prog_type(ptype, 0, False):
        if a.attach_flags or a.relative_fd:
            raise BpfError(errno.EINVAL, "attach_flags/relative_fd")
    elif a.attach_flags or a.relative_fd or a.expected_revision:
        raise BpfError(errno.EINVAL, "attach_flags/relative_fd/expected_revision")
    try:
        if ptype in (P.BPF_PROG_TYPE_SK_MSG, P.BPF_PROG_TYPE_SK_SKB):
            raise _sockmap_from_fd(call, a.target_fd)
        if ptype == P.BPF_PROG_TYPE_LIRC_MODE2:
            raise BpfError(errno.EINVAL, "LIRC not built")
        if ptype == P.BPF_PROG_TYPE_FLOW_DISSECTOR:
            from pybpf.net.netns import netns_bpf_prog_detach

            if a.target_fd:
                raise BpfError(errno.EINVAL, "target_fd must be 0")
            prog = prog_get(call.task, a.attach_bpf_fd, ptype)
            return netns_bpf_prog_detach(call, prog, a)
        if ptype in _CGROUP_PROG_TYPES or ptype == P.BPF_PROG_TYPE_LSM:
            raise _no_cgroup(call, a.target_fd)
        if ptype == P.BPF_PROG_TYPE_SCHED_CLS:
            if a.attach_type in (A.BPF_TCX_INGRESS, A.BPF_TCX_EGRESS):
                from pybpf.hooks.netattach import tcx_prog_detach

                return tcx_prog_detach(call, prog, a)
            raise _no_netdev(a.target_ifindex)
        raise BpfError(errno.EINVAL, "unknown attach type")
    finally:
        if prog is not None:
            prog.put()


@command(BpfCmd.BPF_PROG_QUERY)
def bpf_prog_query(call: Call) -> int:
    if not call.cred.net_capable():
        raise BpfError(errno.EPERM, "PROG_QUERY needs CAP_NET_ADMIN")
    call.check_attr()
    q = call.attr.query
    if q.query_flags & ~BPF_F_QUERY_EFFECTIVE:
        raise BpfError(errno.EINVAL, "unknown query_flags")
    atype = q.attach_type
    ptype = attach_type_to_prog_type(atype)
    if atype == A.BPF_LSM_CGROUP or ptype in _CGROUP_PROG_TYPES:
        raise _no_cgroup(call, q.target_fd)
    if atype == A.BPF_LIRC_MODE2:
        raise BpfError(errno.EINVAL, "LIRC not built")
    if atype in (A.BPF_FLOW_DISSECTOR, A.BPF_SK_LOOKUP):
        from pybpf.net.netns import netns_bpf_prog_query

        return netns_bpf_prog_query(call, q)
    if atype in (A.BPF_SK_SKB_STREAM_PARSER, A.BPF_SK_SKB_STREAM_VERDICT,
                 A.BPF_SK_MSG_VERDICT, A.BPF_SK_SKB_VERDICT):
        raise _sockmap_from_fd(call, q.target_fd)
    if atype in (A.BPF_TCX_INGRESS, A.BPF_TCX_EGRESS):
        from pybpf.hooks.netattach import tcx_prog_query

        return tcx_prog_query(call, q)
    if atype in (A.BPF_NETKIT_PRIMARY, A.BPF_NETKIT_PEER):
        raise _no_netdev(q.target_ifindex)
    raise BpfError(errno.EINVAL, "attach type cannot be queried")


# ------------------------------------------------------------------------ the rest
@command(BpfCmd.BPF_ITER_CREATE)
def bpf_iter_create(call: Call) -> int:
    call.check_attr()
    ic = call.attr.iter_create
    if ic.flags:
        raise BpfError(errno.EINVAL, "flags must be 0")
    link = link_get_from_fd(call.task, ic.link_fd)
    try:
        new_fd = getattr(link.ops, "iter_new_fd", None)
        if not callable(new_fd):
            raise BpfError(errno.EINVAL, "not an iterator link")
        return int(new_fd(link, call.task))
    finally:
        link.put()


@command(BpfCmd.BPF_TASK_FD_QUERY)
def bpf_task_fd_query(call: Call) -> int:
    call.check_attr()
    if not call.cred.capable(Cap.CAP_SYS_ADMIN):
        raise BpfError(errno.EPERM, "TASK_FD_QUERY needs CAP_SYS_ADMIN")
    q = call.attr.task_fd_query
    if q.flags:
        raise BpfError(errno.EINVAL, "flags must be 0")
    task = next((t for t in call.kernel._tasks if t.pid == q.pid), None)
    if task is None:
        raise BpfError(errno.ENOENT, f"no task {q.pid}")
    file = task.fds.get(q.fd)
    if file is None:
        raise BpfError(errno.EBADF, f"fd {q.fd} is not open in task {q.pid}")
    from pybpf.hooks.perf_event import perf_event_query

    perf = perf_event_query(file)
    link = file.obj if isinstance(file.obj, BpfLink) else None
    if perf is not None:
        prog_id, fd_type, text, probe_offset, probe_addr = perf
    elif link is None or link.ops is not RAW_TP_LINK_OPS:
        raise BpfError(ENOTSUPP, "fd is not a raw tracepoint link or perf event")
    else:
        prog_id = link.prog.id if link.prog is not None else 0
        fd_type, text, probe_offset, probe_addr = 0, link.extra["tp_name"], 0, 0
    name = text.encode()
    call.put_u32(OFF_TFQ_BUF_LEN, len(name))
    err = 0
    if q.buf_len and q.buf:
        try:
            bpf_copy_to_user(q.buf, name, q.buf_len)
        except BpfError as exc:
            if exc.errno == errno.EFAULT:
                raise
            err = exc.errno or 0
    base = call.attr.task_fd_query
    from pybpf.uapi import bpf_attr_task_fd_query as v

    call.put_u32(off_of(v, "prog_id"), prog_id)
    call.put_u32(off_of(v, "fd_type"), fd_type)  # BPF_FD_TYPE_*: RAW_TRACEPOINT is 0
    call.put_u64(off_of(v, "probe_offset"), probe_offset)
    call.put_u64(off_of(v, "probe_addr"), probe_addr)
    del base
    return -err if err else 0


@command(BpfCmd.BPF_ENABLE_STATS)
def bpf_enable_stats(call: Call) -> int:
    call.check_attr()
    if not call.cred.capable(Cap.CAP_SYS_ADMIN):
        raise BpfError(errno.EPERM, "ENABLE_STATS needs CAP_SYS_ADMIN")
    if call.attr.enable_stats.type != BPF_STATS_RUN_TIME:
        raise BpfError(errno.EINVAL, "unknown stats type")
    kernel = call.kernel

    def release(_f: File) -> None:
        kernel.stats_refcnt -= 1

    kernel.stats_refcnt += 1
    try:
        return call.task.fds.install(File(KIND_STATS, None, release=release, name="bpf-stats"))
    except BpfError:
        kernel.stats_refcnt -= 1
        raise


@command(BpfCmd.BPF_TOKEN_CREATE)
def token_create(call: Call) -> int:
    call.check_attr()
    tc = call.attr.token_create
    if tc.flags:
        raise BpfError(errno.EINVAL, "flags must be 0")
    fdget(call.task, tc.bpffs_fd)
    raise BpfError(errno.EINVAL, "BPF tokens need a delegating bpffs mount (not supported)")


@command(BpfCmd.BPF_PROG_STREAM_READ_BY_FD)
def prog_stream_read(call: Call) -> int:
    call.check_attr()
    sr = call.attr.prog_stream_read
    prog = prog_get(call.task, sr.prog_fd)
    try:
        if sr.stream_id not in (BPF_STREAM_STDOUT, BPF_STREAM_STDERR):
            raise BpfError(errno.ENOENT, "unknown stream")
        streams: dict[int, bytearray] = prog.aux.setdefault("streams", {})
        buf = streams.setdefault(sr.stream_id, bytearray())
        n = min(len(buf), sr.stream_buf_len)
        if n:
            copy_to_user(sr.stream_buf, bytes(buf[:n]))
            del buf[:n]
        return n
    finally:
        prog.put()
