"""Attaching programs to pybpf's network devices: XDP and tcx, by link or by PROG_ATTACH.

The kernel's counterparts: ``dev_xdp_attach``/``bpf_xdp_link_attach`` (net/core/dev.c),
``tcx_prog_attach``/``tcx_prog_detach``/``tcx_prog_query``/``tcx_link_attach``
(kernel/bpf/tcx.c) over :mod:`pybpf.hooks.mprog`. The syscall layer
(:mod:`pybpf.syscall.link_cmds`) calls these for ``target_ifindex`` targets.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.core.link import BpfLink
from pybpf.errors import BpfError
from pybpf.hooks.mprog import BPF_F_ID, BPF_F_LINK, BPF_F_REPLACE, MprogEntry, Tuple
from pybpf.net.device import XDP_FLAGS_MODES, NetDevice
from pybpf.uapi import BpfAttachType, BpfLinkType

if TYPE_CHECKING:
    from pybpf.core.prog import BpfProg
    from pybpf.syscall.dispatch import Call

A = BpfAttachType
XDP_FLAGS_UPDATE_IF_NOEXIST = 1
PROG_TYPE_XDP, PROG_TYPE_SCHED_CLS = 6, 3


def netdevs(kernel: Any) -> Any:
    return kernel.netdevs


def dev_by_index(kernel: Any, ifindex: int) -> NetDevice | None:
    return netdevs(kernel).by_ifindex(ifindex)


# ------------------------------------------------------------------------------ XDP
XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE, XDP_FLAGS_HW_MODE, XDP_FLAGS_REPLACE = 2, 4, 8, 16
XDP_MODE_SKB, XDP_MODE_DRV, XDP_MODE_HW = 0, 1, 2
BPF_XDP_DEVMAP, BPF_XDP_CPUMAP = 40, 41  # expected attach types refused on a device


def dev_xdp_mode(dev: NetDevice, flags: int) -> int:
    """``dev_xdp_mode``: the mode flag, else native (pybpf devices have ``ndo_bpf``)."""
    if flags & XDP_FLAGS_HW_MODE:
        return XDP_MODE_HW
    if flags & XDP_FLAGS_DRV_MODE:
        return XDP_MODE_DRV
    if flags & XDP_FLAGS_SKB_MODE:
        return XDP_MODE_SKB
    return XDP_MODE_DRV


def _xdp_install(dev: NetDevice, mode: int, prog: BpfProg | None) -> None:
    """``dev_xdp_install`` + the driver's ``ndo_bpf``: checks only, state is set after."""
    if prog is not None:
        other = XDP_MODE_DRV if mode == XDP_MODE_SKB else XDP_MODE_SKB
        if mode != XDP_MODE_HW and dev.xdp_state[other].prog is not None:
            raise BpfError(errno.EEXIST, "Native and generic XDP can't be active at the same time")
        if prog.expected_attach_type in (BPF_XDP_DEVMAP, BPF_XDP_CPUMAP):
            raise BpfError(errno.EINVAL, "devmap/cpumap programs can not be attached to a device")
    if mode == XDP_MODE_HW:  # like veth: XDP_SETUP_PROG_HW is not a command it knows
        raise BpfError(errno.EINVAL, "the device does not offload XDP")


def dev_xdp_attach(dev: NetDevice, prog: BpfProg | None, link: BpfLink | None, flags: int,
                   expected_old: BpfProg | None = None) -> None:
    """``dev_xdp_attach`` (net/core/dev.c): one program or link per mode, native and
    generic exclusive, links never replaced, ``XDP_FLAGS_REPLACE`` naming the expected
    current program, ``XDP_FLAGS_UPDATE_IF_NOEXIST`` refusing to replace."""
    if prog is not None and prog.type != PROG_TYPE_XDP:
        raise BpfError(errno.EINVAL, "not an XDP program")
    modes = flags & XDP_FLAGS_MODES
    if link is not None and (prog is not None or expected_old is not None):
        raise BpfError(errno.EINVAL, "either a link or a program")
    if link is not None and flags & ~XDP_FLAGS_MODES:
        raise BpfError(errno.EINVAL, "Invalid XDP flags for BPF link attachment")
    if bin(modes).count("1") > 1:
        raise BpfError(errno.EINVAL, "Only one XDP mode flag can be set")
    if not modes and sum(s.prog is not None for s in dev.xdp_state) > 1:
        raise BpfError(errno.EINVAL, "More than one program loaded, unset mode is ambiguous")
    if expected_old is not None and not flags & XDP_FLAGS_REPLACE:
        raise BpfError(errno.EINVAL, "XDP_FLAGS_REPLACE is not specified")
    mode = dev_xdp_mode(dev, flags)
    slot = dev.xdp_state[mode]
    if slot.link is not None:
        raise BpfError(errno.EBUSY, "Can't replace active BPF XDP link")
    cur = slot.prog
    if link is not None and cur is not None:
        raise BpfError(errno.EBUSY, "Can't replace active XDP program with BPF link")
    if flags & XDP_FLAGS_REPLACE and cur is not expected_old:
        raise BpfError(errno.EEXIST, "Active program does not match expected")
    new = link.prog if link is not None else prog
    if new is not None and flags & XDP_FLAGS_UPDATE_IF_NOEXIST and cur is not None:
        raise BpfError(errno.EBUSY, "XDP program already attached")
    if new is not cur:
        _xdp_install(dev, mode, new)
    if link is not None:
        slot.link, slot.prog = link, new
    else:
        slot.prog = new.get() if new is not None else None
    slot.flags = flags
    if cur is not None and link is None:
        cur.put()


def _xdp_link_slot(dev: NetDevice, link: BpfLink) -> Any:
    return dev.xdp_state[dev_xdp_mode(dev, link.flags)]


class XdpLinkOps:
    """``bpf_xdp_link_lops``."""

    def detach(self, link: BpfLink) -> None:
        link.detach()

    def release(self, link: BpfLink) -> None:
        dev = link.extra.get("dev")
        if dev is not None:
            slot = _xdp_link_slot(dev, link)
            if slot.link is link:  # dev_xdp_detach_link
                slot.prog = slot.link = None
                slot.flags = 0
        link.extra["dev"] = None

    def update_prog(self, link: BpfLink, new: BpfProg, old: BpfProg | None) -> None:
        """``bpf_xdp_link_update``."""
        dev = link.extra.get("dev")
        if dev is None:
            raise BpfError(errno.ENOLINK, "link is detached")
        if old is not None and old is not link.prog:
            raise BpfError(errno.EPERM, "old program does not match")
        cur = link.prog
        if cur is None or cur.type != new.type or \
                cur.expected_attach_type != new.expected_attach_type:
            raise BpfError(errno.EINVAL, "program type differs")
        if new is cur:
            new.put()  # no-op, the extra reference goes
            return
        mode = dev_xdp_mode(dev, link.flags)
        _xdp_install(dev, mode, new)
        dev.xdp_state[mode].prog = new
        link.prog = new
        cur.put()

    def fill_link_info(self, link: BpfLink, info: Any, task: Any) -> None:
        dev = link.extra.get("dev")
        info.xdp.ifindex = dev.ifindex if dev is not None else 0


XDP_LINK_OPS = XdpLinkOps()


def xdp_link_attach(call: Call, prog: BpfProg, lc: Any) -> int:
    from pybpf.syscall.link_cmds import _settle

    dev = dev_by_index(call.kernel, lc.target_ifindex)
    if dev is None:
        raise BpfError(errno.EINVAL, f"no network device {lc.target_ifindex}")
    link = BpfLink(call.kernel, BpfLinkType.BPF_LINK_TYPE_XDP, XDP_LINK_OPS, prog, A.BPF_XDP)
    link.flags = lc.flags
    link.extra["dev"] = dev
    return int(_settle(call, link, lambda: dev_xdp_attach(dev, None, link, lc.flags)))


# ------------------------------------------------------------------------------ tcx
def tcx_entry(dev: NetDevice, attach_type: int) -> MprogEntry:
    return dev.tcx_ingress if attach_type == A.BPF_TCX_INGRESS else dev.tcx_egress


def _reset_if_empty(dev: NetDevice, attach_type: int) -> None:
    """The kernel frees an emptied tcx entry; the next one starts at revision 1 again."""
    if not len(tcx_entry(dev, attach_type)):
        if attach_type == A.BPF_TCX_INGRESS:
            dev.tcx_ingress = MprogEntry()
        else:
            dev.tcx_egress = MprogEntry()


def mprog_relative(call: Call, id_or_fd: int, flags: int, ptype: int) -> Tuple:
    """``bpf_mprog_tuple_relative``: the program/link named by fd or ID (or nothing)."""
    from pybpf.syscall.objects import link_get_from_fd, prog_get

    by_id = bool(flags & BPF_F_ID)
    kernel = call.kernel
    if flags & BPF_F_LINK:
        if by_id:
            link = kernel.link_idr.find(id_or_fd)
            if link is None:
                raise BpfError(errno.ENOENT, f"no link {id_or_fd}")
        elif id_or_fd:
            link = link_get_from_fd(call.task, id_or_fd)
            link.put()
        else:
            raise BpfError(errno.EINVAL, "BPF_F_LINK without a link")
        if link.prog is None or (ptype and link.prog.type != ptype):
            raise BpfError(errno.EINVAL, "relative link of another program type")
        return Tuple(link.prog, link)
    if not by_id and not id_or_fd:
        return Tuple()
    if by_id:
        prog = kernel.prog_idr.find(id_or_fd)
        if prog is None:
            raise BpfError(errno.ENOENT, f"no program {id_or_fd}")
    else:
        prog = prog_get(call.task, id_or_fd)
        prog.put()
    if ptype and prog.type != ptype:
        raise BpfError(errno.EINVAL, "relative program of another type")
    return Tuple(prog, None)


def tcx_prog_attach(call: Call, prog: BpfProg, a: Any) -> int:
    """PROG_ATTACH with BPF_TCX_INGRESS/EGRESS: the entry takes the caller's reference."""
    from pybpf.syscall.objects import prog_get

    dev = dev_by_index(call.kernel, a.target_ifindex)
    if dev is None:
        raise BpfError(errno.ENODEV, f"no network device {a.target_ifindex}")
    replace = None
    if a.attach_flags & BPF_F_REPLACE:
        replace = prog_get(call.task, a.replace_bpf_fd, prog.type)
    try:
        entry = tcx_entry(dev, a.attach_type)
        old = entry.attach(prog, None, replace, a.attach_flags,
                           lambda: mprog_relative(call, a.relative_fd,
                                                  a.attach_flags & ~BPF_F_REPLACE, prog.type),
                           a.expected_revision)
        if old is not None:
            old.put()
        return 0
    finally:
        if replace is not None:
            replace.put()


def tcx_prog_detach(call: Call, prog: BpfProg | None, a: Any) -> int:
    dev = dev_by_index(call.kernel, a.target_ifindex)
    if dev is None:
        raise BpfError(errno.ENODEV, f"no network device {a.target_ifindex}")
    entry = tcx_entry(dev, a.attach_type)
    if not len(entry):  # tcx_entry_fetch: an emptied entry is freed
        raise BpfError(errno.ENOENT, "nothing attached")
    taken = entry.detach(prog, None, a.attach_flags,
                         lambda: mprog_relative(call, a.relative_fd, a.attach_flags,
                                                prog.type if prog is not None else 0),
                         a.expected_revision)
    if taken.prog is not None:
        taken.prog.put()
    _reset_if_empty(dev, a.attach_type)
    return 0


def tcx_prog_query(call: Call, q: Any) -> int:
    """``bpf_mprog_query``: revision, count, prog/link IDs (ENOSPC when truncated)."""
    from pybpf.syscall.attr import off_of
    from pybpf.syscall.uaccess import copy_to_user
    from pybpf.uapi import bpf_attr_query as v

    dev = dev_by_index(call.kernel, q.target_ifindex)
    if dev is None:
        raise BpfError(errno.ENODEV, f"no network device {q.target_ifindex}")
    if q.query_flags or q.attach_flags:
        raise BpfError(errno.EINVAL, "query_flags/attach_flags must be 0")
    entry = tcx_entry(dev, q.attach_type)
    items = list(entry.items)
    call.put_u32(off_of(v, "attach_flags"), 0)
    call.put_u64(off_of(v, "revision"), entry.revision)
    call.put_u32(off_of(v, "count"), len(items))
    if q.count == 0 or not q.prog_ids or not items:
        return 0
    ret = 0
    if q.count < len(items):
        items = items[:q.count]
        ret = -errno.ENOSPC

    def u32s(values: list[int]) -> bytes:
        return b"".join(x.to_bytes(4, "little") for x in values)

    copy_to_user(q.prog_ids, u32s([it.prog.id for it in items]))
    if q.prog_attach_flags:
        copy_to_user(q.prog_attach_flags, u32s([0] * len(items)))
    if q.link_ids:
        copy_to_user(q.link_ids, u32s([it.link.id if it.link else 0 for it in items]))
    if q.link_attach_flags:
        copy_to_user(q.link_attach_flags, u32s([0] * len(items)))
    return ret


class TcxLinkOps:
    """``tcx_link_lops``."""

    def detach(self, link: BpfLink) -> None:
        link.detach()

    def release(self, link: BpfLink) -> None:
        dev = link.extra.get("dev")
        if dev is None:
            return
        entry = tcx_entry(dev, link.attach_type)
        if link.prog is not None and entry.exists(link.prog):
            entry.detach(link.prog, link, 0, Tuple(), 0)
            _reset_if_empty(dev, link.attach_type)
        link.extra["dev"] = None

    def update_prog(self, link: BpfLink, new: BpfProg, old: BpfProg | None) -> None:
        dev = link.extra.get("dev")
        if dev is None:
            raise BpfError(errno.ENOLINK, "link is detached")
        if old is not None and old is not link.prog:
            raise BpfError(errno.EPERM, "old program does not match")
        if new is link.prog:
            new.put()  # nothing changes; drop the extra reference
            return
        if link.prog is None or new.type != link.prog.type:
            raise BpfError(errno.EINVAL, "program type differs")
        entry = tcx_entry(dev, link.attach_type)
        entry.attach(new, link, link.prog, BPF_F_REPLACE, Tuple(), 0)
        prev, link.prog = link.prog, new
        if prev is not None:
            prev.put()

    def fill_link_info(self, link: BpfLink, info: Any, task: Any) -> None:
        dev = link.extra.get("dev")
        info.tcx.ifindex = dev.ifindex if dev is not None else 0
        info.tcx.attach_type = link.attach_type


TCX_LINK_OPS = TcxLinkOps()


def tcx_link_attach(call: Call, prog: BpfProg, lc: Any) -> int:
    from pybpf.syscall.link_cmds import _settle

    dev = dev_by_index(call.kernel, lc.target_ifindex)
    if dev is None:
        raise BpfError(errno.ENODEV, f"no network device {lc.target_ifindex}")
    link = BpfLink(call.kernel, BpfLinkType.BPF_LINK_TYPE_TCX, TCX_LINK_OPS, prog,
                   lc.attach_type)
    link.extra["dev"] = dev
    entry = tcx_entry(dev, lc.attach_type)
    rel_fd = lc.tcx.relative_fd
    flags = lc.flags

    def attach() -> None:
        entry.attach(prog, link, None, flags, lambda: mprog_relative(call, rel_fd, flags, prog.type),
                     lc.tcx.expected_revision)

    return int(_settle(call, link, attach))
