"""The instance's network namespace and what BPF attaches to it (kernel/bpf/net_namespace.c).

Two program types attach to a network namespace rather than to a device: the flow
dissector (one program, by ``PROG_ATTACH`` or by one link) and ``SK_LOOKUP`` (up to 64
links, run in link order on every listener lookup). A pybpf instance has one namespace,
its ``init_net``; user space names it with an fd, as with ``open("/proc/self/ns/net")``:
:func:`netns_fd` installs one in a task.

Rules, as ``netns_bpf_prog_attach``/``_detach``/``_query`` and ``netns_bpf_link_create``:
a program attached directly and links exclude each other (``EEXIST`` both ways, detach of
a linked type ``EINVAL``); the same program twice ``EINVAL``; past the per-type maximum
``E2BIG``; link updates keep the link's place in the run array; a detached link reports
``netns_ino`` 0.
"""

from __future__ import annotations

import errno
import threading
from typing import TYPE_CHECKING, Any

from pybpf.core.link import BpfLink
from pybpf.errors import BpfError
from pybpf.uapi import BpfAttachType, BpfLinkType

if TYPE_CHECKING:
    from pybpf.core.prog import BpfProg
    from pybpf.syscall.dispatch import Call

A = BpfAttachType
KIND_NETNS = "net"  # the nsfs file kind
PROC_NET_INIT_INO = 0xEFFFFFF9  # init_net's fixed nsfs inode number (readlink /proc/1/ns/net)
NETNS_FLOW_DISSECTOR, NETNS_SK_LOOKUP = 0, 1
MAX_PROGS = {NETNS_FLOW_DISSECTOR: 1, NETNS_SK_LOOKUP: 64}


def to_netns_type(attach_type: int) -> int:
    """``to_netns_bpf_attach_type``: -1 for attach types that are not per-namespace."""
    if attach_type == A.BPF_FLOW_DISSECTOR:
        return NETNS_FLOW_DISSECTOR
    if attach_type == A.BPF_SK_LOOKUP:
        return NETNS_SK_LOOKUP
    return -1


class NetNs:
    """``struct net``'s BPF part: directly attached programs and links per type."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.inum = PROC_NET_INIT_INO
        self.progs: dict[int, BpfProg | None] = {NETNS_FLOW_DISSECTOR: None,
                                                 NETNS_SK_LOOKUP: None}
        self.links: dict[int, list[BpfLink]] = {NETNS_FLOW_DISSECTOR: [], NETNS_SK_LOOKUP: []}
        self.lock = threading.Lock()

    def run_array(self, ntype: int) -> list[BpfProg]:
        """The programs that run for ``ntype``, in order (``net->bpf.run_array``)."""
        prog = self.progs[ntype]
        if prog is not None:
            return [prog]
        return [link.prog for link in self.links[ntype] if link.prog is not None]

    def flow_dissector(self) -> BpfProg | None:
        progs = self.run_array(NETNS_FLOW_DISSECTOR)
        return progs[0] if progs else None

    def _sync_sk_lookup(self) -> None:
        """The host's socket lookups run the namespace's SK_LOOKUP programs."""
        table = getattr(self.kernel, "sockets", None)
        if table is None:
            return
        mine = self.__dict__.setdefault("_published", [])
        current = self.run_array(NETNS_SK_LOOKUP)
        with table._lock:
            keep = [p for p in table.sk_lookup_progs if p not in mine]
            table.sk_lookup_progs[:] = keep + current
        mine[:] = current


def init_net(kernel: Any) -> NetNs:
    """The instance's namespace (created on first use)."""
    return kernel.subsystem("_init_net", NetNs)


def netns_fd(kernel: Any, task: Any = None) -> int:
    """An fd naming the instance's namespace in ``task`` (default: the root task), what
    ``open("/proc/self/ns/net", O_RDONLY)`` gives a process."""
    from pybpf.syscall.fdtable import File

    task = task if task is not None else kernel.root
    return int(task.fds.install(File(KIND_NETNS, init_net(kernel), name="net")))


def get_net_ns_by_fd(call: Call, fd: int) -> NetNs:
    from pybpf.syscall.objects import fdget

    file = fdget(call.task, fd)
    if file.kind != KIND_NETNS or not isinstance(file.obj, NetNs):
        raise BpfError(errno.EINVAL, f"fd {fd} is not a network namespace")
    return file.obj


def _attach_check(ns: NetNs, ntype: int, prog: BpfProg) -> None:
    """``flow_dissector_bpf_prog_attach_check``: with one namespace, nothing conflicts."""
    return None


# ------------------------------------------------------------------------ PROG_ATTACH & co
def netns_bpf_prog_attach(call: Call, prog: BpfProg, a: Any) -> int:
    """Only the flow dissector attaches directly; the entry takes the caller's reference."""
    if a.target_fd or a.attach_flags or a.replace_bpf_fd:
        raise BpfError(errno.EINVAL, "target_fd/attach_flags/replace_bpf_fd must be 0")
    ntype = to_netns_type(a.attach_type)
    if ntype < 0:
        raise BpfError(errno.EINVAL, "not a namespace attach type")
    ns = init_net(call.kernel)
    with ns.lock:
        if ns.links[ntype]:
            raise BpfError(errno.EEXIST, "links are attached")
        if ntype != NETNS_FLOW_DISSECTOR:
            raise BpfError(errno.EINVAL, "SK_LOOKUP attaches by link only")
        _attach_check(ns, ntype, prog)
        attached = ns.progs[ntype]
        if attached is prog:
            raise BpfError(errno.EINVAL, "the same program cannot be attached twice")
        ns.progs[ntype] = prog
    if attached is not None:
        attached.put()
    return 0


def netns_bpf_prog_detach(call: Call, prog: BpfProg, a: Any) -> int:
    """``netns_bpf_prog_detach`` (``prog`` is the caller's, released by the caller)."""
    ntype = to_netns_type(a.attach_type)
    ns = init_net(call.kernel)
    with ns.lock:
        if ns.links[ntype]:
            raise BpfError(errno.EINVAL, "programs attached by links cannot be detached")
        attached = ns.progs[ntype]
        if attached is None or attached is not prog:
            raise BpfError(errno.ENOENT, "program not attached")
        ns.progs[ntype] = None
    attached.put()
    return 0


def netns_bpf_prog_query(call: Call, q: Any) -> int:
    from pybpf.syscall.attr import off_of
    from pybpf.syscall.uaccess import copy_to_user
    from pybpf.uapi import bpf_attr_query as v

    if q.query_flags:
        raise BpfError(errno.EINVAL, "query_flags must be 0")
    ntype = to_netns_type(q.attach_type)
    if ntype < 0:
        raise BpfError(errno.EINVAL, "not a namespace attach type")
    ns = get_net_ns_by_fd(call, q.target_fd)
    with ns.lock:
        progs = ns.run_array(ntype)
    call.put_u32(off_of(v, "attach_flags"), 0)
    call.put_u32(off_of(v, "prog_cnt"), len(progs))
    if not q.prog_cnt or not q.prog_ids or not progs:
        return 0
    ret = 0
    if q.prog_cnt < len(progs):  # bpf_prog_array_copy_to_user
        progs = progs[:q.prog_cnt]
        ret = -errno.ENOSPC
    copy_to_user(q.prog_ids, b"".join(p.id.to_bytes(4, "little") for p in progs))
    return ret


# ------------------------------------------------------------------------ links
class NetnsLinkOps:
    """``bpf_netns_link_ops``."""

    def detach(self, link: BpfLink) -> None:
        link.detach()

    def release(self, link: BpfLink) -> None:
        ns: NetNs | None = link.extra.get("net")
        if ns is None:
            return
        ntype = link.extra["netns_type"]
        with ns.lock:
            if link in ns.links[ntype]:
                ns.links[ntype].remove(link)
        link.extra["net"] = None
        if ntype == NETNS_SK_LOOKUP:
            ns._sync_sk_lookup()

    def update_prog(self, link: BpfLink, new: BpfProg, old: BpfProg | None) -> None:
        if old is not None and old is not link.prog:
            raise BpfError(errno.EPERM, "old program does not match")
        if link.prog is None or new.type != link.prog.type:
            raise BpfError(errno.EINVAL, "program type differs")
        ns: NetNs | None = link.extra.get("net")
        if ns is None:
            raise BpfError(errno.ENOLINK, "link is detached")
        prev, link.prog = link.prog, new
        if link.extra["netns_type"] == NETNS_SK_LOOKUP:
            ns._sync_sk_lookup()
        if prev is not None:
            prev.put()

    def fill_link_info(self, link: BpfLink, info: Any, task: Any) -> None:
        ns: NetNs | None = link.extra.get("net")
        info.netns.netns_ino = ns.inum if ns is not None else 0
        info.netns.attach_type = link.attach_type


NETNS_LINK_OPS = NetnsLinkOps()


def netns_bpf_link_create(call: Call, prog: BpfProg, lc: Any) -> int:
    from pybpf.syscall.link_cmds import _settle

    if lc.flags:
        raise BpfError(errno.EINVAL, "flags must be 0")
    ntype = to_netns_type(lc.attach_type)
    if ntype < 0:
        raise BpfError(errno.EINVAL, "not a namespace attach type")
    ns = get_net_ns_by_fd(call, lc.target_fd)
    link = BpfLink(call.kernel, BpfLinkType.BPF_LINK_TYPE_NETNS, NETNS_LINK_OPS, prog,
                   lc.attach_type)
    link.extra["net"] = ns
    link.extra["netns_type"] = ntype

    def attach() -> None:
        with ns.lock:
            if len(ns.links[ntype]) >= MAX_PROGS[ntype]:
                raise BpfError(errno.E2BIG, "too many links")
            if ns.progs[ntype] is not None:
                raise BpfError(errno.EEXIST, "a program is attached directly")
            _attach_check(ns, ntype, prog)
            ns.links[ntype].append(link)
        if ntype == NETNS_SK_LOOKUP:
            ns._sync_sk_lookup()

    try:
        return int(_settle(call, link, attach))
    except BpfError:
        link.extra["net"] = None
        raise
