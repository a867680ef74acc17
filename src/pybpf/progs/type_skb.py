"""``struct __sk_buff`` program types: socket filter, tc (cls/act), cgroup skb, lwt, sk_skb.

The common access rules are ``bpf_skb_is_valid_access``; each type narrows which fields it
may read or write and whether ``data``/``data_end`` become packet pointers.
"""

from __future__ import annotations

from typing import Any

from pybpf.progs.ops import register_prog_type
from pybpf.progs.type_base import CGROUP_COMMON, CGROUP_CURRENT, ProgTypeBase, narrow_ok
from pybpf.verifier.regs import PTR_MAYBE_NULL, RegType

SKB_SIZE = 192
# __sk_buff offsets
LEN, PKT_TYPE, MARK, QUEUE_MAPPING, PROTOCOL = 0, 4, 8, 12, 16
PRIORITY, TC_INDEX, CB0, CB_END, HASH, TC_CLASSID = 32, 44, 48, 68, 68, 72
DATA, DATA_END, NAPI_ID, FAMILY, REMOTE_IP4, LOCAL_IP4 = 76, 80, 84, 88, 92, 96
REMOTE_IP6, LOCAL_IP6, REMOTE_PORT, LOCAL_PORT, DATA_META = 100, 116, 132, 136, 140
FLOW_KEYS, TSTAMP, WIRE_LEN, GSO_SEGS, SK, GSO_SIZE, TSTAMP_TYPE, HWTSTAMP = 144, 152, 160, 164, 168, 176, 180, 184


def _in(off: int, start: int, size: int) -> bool:
    return start <= off < start + size


def skb_is_valid_access(off: int, size: int, write: bool, info: dict[str, Any]) -> bool:
    if off < 0 or off >= SKB_SIZE or off % size:
        return False
    if _in(off, CB0, 20):
        return off + size <= CB_END
    if _in(off, DATA, 4) or _in(off, DATA_META, 4) or _in(off, DATA_END, 4):
        return not info.get("is_ldsx") and size == 4
    if _in(off, REMOTE_IP6, 16) or _in(off, LOCAL_IP6, 16) or _in(off, REMOTE_IP4, 4) or _in(off, LOCAL_IP4, 4):
        return size == 4
    if _in(off, FLOW_KEYS, 8):
        return False
    if _in(off, HWTSTAMP, 8):
        return not write and size == 8
    if _in(off, TSTAMP, 8):
        return size == 8
    if _in(off, SK, 8):
        if write or size != 8:
            return False
        info["reg_type"] = RegType.PTR_TO_SOCK_COMMON | PTR_MAYBE_NULL
        return True
    if off == TSTAMP_TYPE:
        return False
    if TSTAMP_TYPE + 1 <= off < HWTSTAMP:
        return False
    if write:
        return size == 4
    info["ctx_field_size"] = 4
    return narrow_ok(size, 4)


def _pkt_ptrs(off: int, info: dict[str, Any], meta: bool = True) -> None:
    if _in(off, DATA, 4):
        info["reg_type"] = RegType.PTR_TO_PACKET
    elif meta and _in(off, DATA_META, 4):
        info["reg_type"] = RegType.PTR_TO_PACKET_META
    elif _in(off, DATA_END, 4):
        info["reg_type"] = RegType.PTR_TO_PACKET_END


def skb_ld_abs(ctx: Any, skb_addr: int, off: int, size: int) -> int | None:
    """The ``ld_abs`` hook (legacy packet loads) of the skb types that allow them."""
    from pybpf.progs.testrun_skb import skb_ld_abs as load

    return load(ctx, skb_addr, off, size)


class SocketFilter(ProgTypeBase):
    prog_type = 1
    name = "socket_filter"
    ctx_size = SKB_SIZE
    ld_abs = staticmethod(skb_ld_abs)
    own_helpers = frozenset({26, 68, 46, 47, 25})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if _in(off, TC_CLASSID, 4) or _in(off, DATA, 4) or _in(off, DATA_META, 4) or _in(off, DATA_END, 4) \
                or FAMILY <= off < LOCAL_PORT + 4 or _in(off, TSTAMP, 8) or _in(off, WIRE_LEN, 4) \
                or _in(off, HWTSTAMP, 8):
            return False
        if write and not _in(off, CB0, 20):
            return False
        return skb_is_valid_access(off, size, write, info)


class SchedCls(ProgTypeBase):
    prog_type = 3
    name = "sched_cls"
    ctx_size = SKB_SIZE
    ld_abs = staticmethod(skb_ld_abs)
    pkt_read = pkt_write = True
    own_helpers = frozenset({9, 26, 68, 39 + 0, 28, 40, 135, 10, 11, 13, 17, 18, 19, 31, 32, 50, 38,
                             43, 20, 21, 29, 30, 23, 152, 155, 24, 34, 48, 49, 25, 8, 33, 46, 47, 69,
                             163, 95, 107, 108, 142, 79, 83, 145, 84, 85, 86, 96, 98, 99, 100, 101,
                             110, 124, 192, 183, 184, 185})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if write and not (_in(off, MARK, 4) or _in(off, TC_INDEX, 4) or _in(off, PRIORITY, 4)
                          or _in(off, TC_CLASSID, 4) or _in(off, CB0, 20) or _in(off, TSTAMP, 8)
                          or _in(off, QUEUE_MAPPING, 4)):
            return False
        _pkt_ptrs(off, info)
        if FAMILY <= off < LOCAL_PORT + 4:
            return False
        if off == TSTAMP_TYPE:
            return size == 1
        return skb_is_valid_access(off, size, write, info)

    def return_range(self, prog: Any) -> tuple[int, int] | None:
        return None


class SchedAct(SchedCls):
    prog_type = 4
    name = "sched_act"


class CgroupSkb(ProgTypeBase):
    prog_type = 8
    name = "cgroup_skb"
    ctx_size = SKB_SIZE
    pkt_read = True
    own_helpers = frozenset({95, 107, 108, 25, 79, 83, 128, 129, 84, 85, 86, 99, 96, 98, 110,
                             26, 68, 46, 47} | CGROUP_COMMON | CGROUP_CURRENT)
    ret_range = (0, 3)

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if _in(off, TC_CLASSID, 4) or _in(off, DATA_META, 4) or _in(off, WIRE_LEN, 4):
            return False
        if write and not (_in(off, MARK, 4) or _in(off, PRIORITY, 4) or _in(off, CB0, 20)
                          or _in(off, TSTAMP, 8)):
            return False
        _pkt_ptrs(off, info, meta=False)
        return skb_is_valid_access(off, size, write, info)


class LwtOut(ProgTypeBase):
    prog_type = 11
    name = "lwt_out"
    ctx_size = SKB_SIZE
    pkt_read = True
    own_helpers = frozenset({26, 39 + 0, 28, 17, 24, 34, 25, 8, 33})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if _in(off, TC_CLASSID, 4) or FAMILY <= off < LOCAL_PORT + 4 or _in(off, DATA_META, 4) \
                or _in(off, TSTAMP, 8) or _in(off, WIRE_LEN, 4) or _in(off, HWTSTAMP, 8):
            return False
        if write and not (_in(off, MARK, 4) or _in(off, PRIORITY, 4) or _in(off, CB0, 20)):
            return False
        _pkt_ptrs(off, info, meta=False)
        return skb_is_valid_access(off, size, write, info)


class LwtIn(LwtOut):
    prog_type = 10
    name = "lwt_in"
    own_helpers = LwtOut.own_helpers | {73}


class LwtXmit(LwtOut):
    prog_type = 12
    name = "lwt_xmit"
    pkt_write = True
    own_helpers = LwtOut.own_helpers | {20, 21, 29, 30, 23, 13, 38, 43, 9, 40, 135, 10, 11, 48, 73}


class LwtSeg6Local(LwtOut):
    prog_type = 18
    name = "lwt_seg6local"


class SkSkb(ProgTypeBase):
    prog_type = 14
    name = "sk_skb"
    ctx_size = SKB_SIZE
    pkt_read = pkt_write = True
    own_helpers = frozenset({9, 26, 39, 38, 43, 50, 46, 47, 52, 72, 25, 84, 85, 86, 99})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if _in(off, TC_CLASSID, 4) or _in(off, DATA_META, 4) or _in(off, TSTAMP, 8) \
                or _in(off, WIRE_LEN, 4) or _in(off, HWTSTAMP, 8):
            return False
        if write and not (_in(off, TC_INDEX, 4) or _in(off, PRIORITY, 4)):
            return False
        if _in(off, MARK, 4):
            return False
        _pkt_ptrs(off, info, meta=False)
        return skb_is_valid_access(off, size, write, info)


class FlowDissector(ProgTypeBase):
    prog_type = 22
    name = "flow_dissector"
    ctx_size = SKB_SIZE
    pkt_read = True
    own_helpers = frozenset({26})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if write:
            return False
        if _in(off, DATA, 4):
            info["reg_type"] = RegType.PTR_TO_PACKET
            return size == 4
        if _in(off, DATA_END, 4):
            info["reg_type"] = RegType.PTR_TO_PACKET_END
            return size == 4
        if _in(off, FLOW_KEYS, 8):
            info["reg_type"] = RegType.PTR_TO_FLOW_KEYS
            return size == 8
        return False


for _t in (SocketFilter, SchedCls, SchedAct, CgroupSkb, LwtOut, LwtIn, LwtXmit, LwtSeg6Local, SkSkb,
           FlowDissector):
    register_prog_type(_t())
