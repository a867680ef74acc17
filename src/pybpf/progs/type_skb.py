"""``struct __sk_buff`` program types: socket filter, tc (cls/act), cgroup skb, lwt, sk_skb.

The common access rules are ``bpf_skb_is_valid_access``; each type narrows which fields it
may read or write and whether ``data``/``data_end`` become packet pointers.
"""

from __future__ import annotations

from typing import Any

from pybpf.isa.insn import Insn
from pybpf.net.skbuff import (
    CB,
    CB_DATA,
    CB_DATA_END,
    CB_DATA_META,
    CB_PKT_LEN,
    CB_TC_CLASSID,
    CLONED_MASK,
    CLONED_OFFSET,
    MONO_TC_OFFSET,
    PKT_TYPE_MAX,
    PKT_TYPE_OFFSET,
    TC_AT_INGRESS_MASK,
    TSTAMP_TYPE_MASK,
)
from pybpf.progs.ops import register_prog_type
from pybpf.progs.type_base import CGROUP_COMMON, CGROUP_CURRENT, ProgTypeBase, narrow_ok
from pybpf.uapi.kernel_structs import KSTRUCTS
from pybpf.verifier.regs import PTR_MAYBE_NULL, RegType

SKB_SIZE = 192
# __sk_buff offsets
LEN, PKT_TYPE, MARK, QUEUE_MAPPING, PROTOCOL = 0, 4, 8, 12, 16
PRIORITY, TC_INDEX, CB0, CB_END, HASH, TC_CLASSID = 32, 44, 48, 68, 68, 72
DATA, DATA_END, NAPI_ID, FAMILY, REMOTE_IP4, LOCAL_IP4 = 76, 80, 84, 88, 92, 96
REMOTE_IP6, LOCAL_IP6, REMOTE_PORT, LOCAL_PORT, DATA_META = 100, 116, 132, 136, 140
FLOW_KEYS, TSTAMP, WIRE_LEN, GSO_SEGS, SK, GSO_SIZE, TSTAMP_TYPE, HWTSTAMP = 144, 152, 160, 164, 168, 176, 180, 184
VLAN_PRESENT, VLAN_TCI, VLAN_PROTO, INGRESS_IFINDEX, IFINDEX = 20, 24, 28, 36, 40

def _note_tstamp_type_read(prog: Any) -> None:
    """``prog->tstamp_type_access``: set by ``is_valid_access`` when a tc program reads
    ``__sk_buff.tstamp_type``; ``convert_ctx_access`` (same prog object) then converts
    ``tstamp`` reads differently."""
    if prog is not None:
        prog.tstamp_type_access = True


def _tstamp_type_access(prog: Any) -> bool:
    return bool(getattr(prog, "tstamp_type_access", False))


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



# ------------------------------------------------------------------ convert_ctx_access
#
# After verification every __sk_buff access becomes loads/stores of pybpf's native
# struct sk_buff (pybpf.net.skbuff), field by field as net/core/filter.c's
# bpf_convert_ctx_access does, so the xlated program equals the kernel's.

_LDX, _STX, _ST = 0x61, 0x63, 0x62  # | size
_W, _H, _B, _DW = 0x00, 0x08, 0x10, 0x18
_JEQ_K, _JGE_K, _JA, _JSET32_K = 0x15, 0x35, 0x05, 0x46
_AND32_K, _MOV32_K, _LSH32_K = 0x54, 0xB4, 0x64
_ADD64_X, _SUB64_X, _MOV64_X, _MOV64_K, _XOR64_X = 0x0F, 0x1F, 0xBF, 0xB7, 0xAF
_CALL, _EXIT = 0x85, 0x95
REG_AX = 11
NO_QUEUE_MAPPING = 0xFFFF
MIN_NAPI_ID = 0x101  # NR_CPUS + 1 on the reference kernel
BPF_FUNC_skb_pull_data = 39
TC_ACT_SHOT, SK_DROP = 2, 0
_SKB = KSTRUCTS["sk_buff"]
_SOCK = KSTRUCTS["sock"]
_SHINFO = KSTRUCTS["skb_shared_info"]
_NETDEV = KSTRUCTS["net_device"]
SK_SKB_CB_TEMP_REG = 40  # offsetof(struct sk_skb_cb, temp_reg)


def _ldx(size: int, dst: int, src: int, off: int) -> Insn:
    return Insn(_LDX | size, dst, src, off, 0)


def _store(si: Insn, size: int, off: int) -> Insn:
    """``BPF_EMIT_STORE``: the program's ST/STX with the internal offset and size."""
    return Insn((si.code & 0x07) | size | 0x60, si.dst, si.src, off, si.imm)


def _rw(write: bool, si: Insn, size: int, off: int) -> Insn:
    return _store(si, size, off) if write else _ldx(size, si.dst, si.src, off)


def _sk(si: Insn, size: int, member: str, extra: int = 0) -> list[Insn]:
    """``dst = skb->sk; dst = *(size *)(dst + offsetof(struct sock, member))``."""
    return [_ldx(_DW, si.dst, si.src, _SKB.off("sk")),
            _ldx(size, si.dst, si.dst, _SOCK.off(f"__sk_common.{member}") + extra)]


def _shinfo(si: Insn) -> list[Insn]:
    """``dst = skb_shinfo(skb)`` = ``skb->head + skb->end`` (end is an offset)."""
    return [_ldx(_W, REG_AX, si.src, _SKB.off("end")),
            _ldx(_DW, si.dst, si.src, _SKB.off("head")),
            Insn(_ADD64_X, si.dst, REG_AX, 0, 0)]


def _tstamp_read(si: Insn, type_access: bool) -> list[Insn]:
    out = []
    if not type_access:  # at tc ingress, a delivery time (tstamp_type != 0) reads as 0
        out += [_ldx(_B, REG_AX, si.src, MONO_TC_OFFSET),
                Insn(_JSET32_K, REG_AX, 0, 1, TC_AT_INGRESS_MASK),
                Insn(_JA, 0, 0, 4, 0),
                Insn(_JSET32_K, REG_AX, 0, 1, TSTAMP_TYPE_MASK),
                Insn(_JA, 0, 0, 2, 0),
                Insn(_MOV64_K, si.dst, 0, 0, 0),
                Insn(_JA, 0, 0, 1, 0)]
    return [*out, _ldx(_DW, si.dst, si.src, _SKB.off("tstamp"))]


def _tstamp_write(si: Insn, type_access: bool) -> list[Insn]:
    out = []
    if not type_access:  # writing at ingress clears tstamp_type
        out += [_ldx(_B, REG_AX, si.dst, MONO_TC_OFFSET),
                Insn(_JSET32_K, REG_AX, 0, 1, TC_AT_INGRESS_MASK),
                Insn(_JA, 0, 0, 2, 0),
                Insn(_AND32_K, REG_AX, 0, 0, ~TSTAMP_TYPE_MASK),
                Insn(_STX | _B, si.dst, REG_AX, MONO_TC_OFFSET, 0)]
    return [*out, _store(si, _DW, _SKB.off("tstamp"))]


def skb_convert_ctx_access(write: bool, si: Insn, prog: Any, *,
                           tstamp_type_access: bool = False) -> tuple[list[Insn], int]:
    """``bpf_convert_ctx_access``: ``(instructions, target_size)`` for one access."""
    off = si.off
    d, s = si.dst, si.src
    if off == LEN:
        return [_ldx(_W, d, s, _SKB.off("len"))], 4
    if off == PROTOCOL:
        return [_ldx(_H, d, s, _SKB.off("protocol"))], 2
    if off == VLAN_PROTO:
        return [_ldx(_H, d, s, _SKB.off("vlan_proto"))], 2
    if off == PRIORITY:
        return [_rw(write, si, _W, _SKB.off("priority"))], 4
    if off == INGRESS_IFINDEX:
        return [_ldx(_W, d, s, _SKB.off("skb_iif"))], 4
    if off == IFINDEX:
        return [_ldx(_DW, d, s, _SKB.off("dev")), Insn(_JEQ_K, d, 0, 1, 0),
                _ldx(_W, d, d, _NETDEV.off("ifindex"))], 4
    if off == HASH:
        return [_ldx(_W, d, s, _SKB.off("hash"))], 4
    if off == MARK:
        return [_rw(write, si, _W, _SKB.off("mark"))], 4
    if off == PKT_TYPE:
        return [_ldx(_B, d, s, PKT_TYPE_OFFSET), Insn(_AND32_K, d, 0, 0, PKT_TYPE_MAX)], 1
    if off == QUEUE_MAPPING:
        qoff = _SKB.off("queue_mapping")
        if not write:
            return [_ldx(_H, d, s, qoff)], 2
        if si.code & 0x07 == 0x02 and si.imm >= NO_QUEUE_MAPPING:
            return [Insn(_JA, 0, 0, 0, 0)], 2  # a no-op: the value is out of range
        out = [Insn(_JGE_K, s, 0, 1, NO_QUEUE_MAPPING)] if si.code & 0x07 == 0x03 else []
        return [*out, _store(si, _H, qoff)], 2
    if off == VLAN_PRESENT:
        return [_ldx(_W, d, s, _SKB.off("vlan_all")), Insn(_JEQ_K, d, 0, 1, 0),
                Insn(_MOV32_K, d, 0, 0, 1)], 4
    if off == VLAN_TCI:
        return [_ldx(_H, d, s, _SKB.off("vlan_tci"))], 2
    if CB0 <= off < CB_END:
        return [_rw(write, si, si.code & 0x18, CB_DATA + off - CB0)], 0
    if off == TC_CLASSID:
        return [_rw(write, si, _H, CB_TC_CLASSID)], 2
    if off == DATA:
        return [_ldx(_DW, d, s, _SKB.off("data"))], 0
    if off == DATA_META:
        return [_ldx(_DW, d, s, CB_DATA_META)], 0
    if off == DATA_END:
        return [_ldx(_DW, d, s, CB_DATA_END)], 0
    if off == TC_INDEX:
        return [_rw(write, si, _H, _SKB.off("tc_index"))], 2
    if off == NAPI_ID:
        return [_ldx(_W, d, s, _SKB.off("napi_id")), Insn(_JGE_K, d, 0, 1, MIN_NAPI_ID),
                Insn(_MOV64_K, d, 0, 0, 0)], 4
    if off == FAMILY:
        return _sk(si, _H, "skc_family"), 2
    if off == REMOTE_IP4:
        return _sk(si, _W, "skc_daddr"), 4
    if off == LOCAL_IP4:
        return _sk(si, _W, "skc_rcv_saddr"), 4
    if REMOTE_IP6 <= off < REMOTE_IP6 + 16:
        return _sk(si, _W, "skc_v6_daddr", off - REMOTE_IP6), 0
    if LOCAL_IP6 <= off < LOCAL_IP6 + 16:
        return _sk(si, _W, "skc_v6_rcv_saddr", off - LOCAL_IP6), 0
    if off == REMOTE_PORT:
        return [*_sk(si, _H, "skc_dport"), Insn(_LSH32_K, d, 0, 0, 16)], 2
    if off == LOCAL_PORT:
        return _sk(si, _H, "skc_num"), 2
    if off == TSTAMP:
        if write:
            return _tstamp_write(si, tstamp_type_access), 0
        return _tstamp_read(si, tstamp_type_access), 0
    if off == TSTAMP_TYPE:
        return [_ldx(_B, d, s, MONO_TC_OFFSET), Insn(_AND32_K, d, 0, 0, TSTAMP_TYPE_MASK)], 0
    if off == GSO_SEGS:
        return [*_shinfo(si), _ldx(_H, d, d, _SHINFO.off("gso_segs"))], 2
    if off == GSO_SIZE:
        return [*_shinfo(si), _ldx(_H, d, d, _SHINFO.off("gso_size"))], 2
    if off == WIRE_LEN:
        return [_ldx(_W, d, s, CB_PKT_LEN)], 4
    if off == SK:
        return [_ldx(_DW, d, s, _SKB.off("sk"))], 0
    if off == HWTSTAMP:
        return [*_shinfo(si), _ldx(_DW, d, d, _SHINFO.off("hwtstamps"))], 8
    raise ValueError(f"no conversion for __sk_buff offset {off}")


def sk_skb_data_end(si: Insn) -> list[Insn]:
    """``bpf_convert_data_end_access``: ``data + len - data_len`` (sk_skb keeps no
    data_end in cb); with dst == src a scratch register is saved in ``sk_skb_cb``."""
    temp = CB + SK_SKB_CB_TEMP_REG
    out: list[Insn] = []
    if si.src == si.dst:
        reg = 9
        for _ in range(2):
            if reg in (si.src, si.dst):
                reg -= 1
        out.append(Insn(_STX | _DW, si.src, reg, temp, 0))
    else:
        reg = si.dst
    out += [_ldx(_DW, reg, si.src, _SKB.off("data")),
            _ldx(_W, REG_AX, si.src, _SKB.off("len")),
            Insn(_ADD64_X, reg, REG_AX, 0, 0),
            _ldx(_W, REG_AX, si.src, _SKB.off("data_len")),
            Insn(_SUB64_X, reg, REG_AX, 0, 0)]
    if si.src == si.dst:
        out += [Insn(_MOV64_X, REG_AX, si.src, 0, 0), Insn(_MOV64_X, si.dst, reg, 0, 0),
                _ldx(_DW, reg, REG_AX, temp)]
    return out


def unclone_prologue(direct_write: bool, drop_verdict: int) -> list[Insn]:
    """``bpf_unclone_prologue``: before a program that writes packet data directly runs,
    make a cloned skb's data private (``bpf_skb_pull_data(skb, 0)``) or drop it."""
    if not direct_write:
        return []
    return [_ldx(_B, 6, 1, CLONED_OFFSET),
            Insn(_AND32_K, 6, 0, 0, CLONED_MASK),
            Insn(_JEQ_K, 6, 0, 7, 0),
            Insn(_MOV64_X, 6, 1, 0, 0),
            Insn(_XOR64_X, 2, 2, 0, 0),
            Insn(_CALL, 0, 0, 0, BPF_FUNC_skb_pull_data),
            Insn(_JEQ_K, 0, 0, 2, 0),
            Insn(_MOV32_K, 0, 0, 0, drop_verdict),
            Insn(_EXIT, 0, 0, 0, 0),
            Insn(_MOV64_X, 1, 6, 0, 0)]


class SkbProgType(ProgTypeBase):
    """What every __sk_buff type shares: ``bpf_convert_ctx_access``."""

    def convert_ctx_access(self, write: bool, insn: Insn, prog: Any) -> tuple[list[Insn], int]:
        return skb_convert_ctx_access(write, insn, prog,
                                      tstamp_type_access=_tstamp_type_access(prog))


class SocketFilter(SkbProgType):
    prog_type = 1
    name = "socket_filter"
    ctx_size = SKB_SIZE
    ld_abs = staticmethod(skb_ld_abs)
    own_helpers = frozenset({26, 68, 46, 47, 25, 122})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if _in(off, TC_CLASSID, 4) or _in(off, DATA, 4) or _in(off, DATA_META, 4) or _in(off, DATA_END, 4) \
                or FAMILY <= off < LOCAL_PORT + 4 or _in(off, TSTAMP, 8) or _in(off, WIRE_LEN, 4) \
                or _in(off, HWTSTAMP, 8):
            return False
        if write and not _in(off, CB0, 20):
            return False
        return skb_is_valid_access(off, size, write, info)


class SchedCls(SkbProgType):
    prog_type = 3
    name = "sched_cls"
    ctx_size = SKB_SIZE
    ld_abs = staticmethod(skb_ld_abs)
    pkt_read = pkt_write = True
    own_helpers = frozenset({9, 26, 68, 39 + 0, 28, 40, 135, 10, 11, 13, 17, 18, 19, 31, 32, 50, 38,
                             43, 20, 21, 29, 30, 23, 152, 155, 24, 34, 48, 25, 8, 33, 46, 47, 69,
                             163, 95, 107, 108, 79, 83, 145, 84, 85, 86, 96, 98, 99, 100,
                             110, 124, 192, 183, 184, 185, 122, 41, 66, 97, 151, 204, 205, 206, 207})

    def convert_ctx_access(self, write: bool, insn: Insn, prog: Any) -> tuple[list[Insn], int]:
        """``tc_cls_act_convert_ctx_access``: tc skbs always have a device."""
        if insn.off == IFINDEX:
            return [_ldx(_DW, insn.dst, insn.src, _SKB.off("dev")),
                    _ldx(_W, insn.dst, insn.dst, _NETDEV.off("ifindex"))], 4
        return super().convert_ctx_access(write, insn, prog)

    def gen_prologue(self, direct_write: bool, prog: Any) -> list[Insn]:
        """``tc_cls_act_prologue``."""
        return unclone_prologue(direct_write, TC_ACT_SHOT)

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if not write and off == TSTAMP_TYPE:
            _note_tstamp_type_read(prog)
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


class CgroupSkb(SkbProgType):
    prog_type = 8
    name = "cgroup_skb"
    ctx_size = SKB_SIZE
    pkt_read = True
    own_helpers = frozenset({95, 107, 108, 25, 79, 83, 128, 129, 84, 85, 86, 99, 96, 98,
                             26, 68, 46, 47, 122, 97} | CGROUP_COMMON | CGROUP_CURRENT)
    ret_range = (0, 1)

    def return_range(self, prog: Any) -> tuple[int, int] | None:
        """``check_return_code``: egress programs may also return 2/3 (congestion notify)."""
        return (0, 3) if getattr(prog, "expected_attach_type", 0) == 1 else (0, 1)  # INET_EGRESS

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if _in(off, TC_CLASSID, 4) or _in(off, DATA_META, 4) or _in(off, WIRE_LEN, 4):
            return False
        bpf_cap = bool(getattr(prog, "bpf_capable", True))  # direct packet access: CAP_BPF
        if (_in(off, DATA, 4) or _in(off, DATA_END, 4)) and not bpf_cap:
            return False
        if write and not (_in(off, MARK, 4) or _in(off, PRIORITY, 4) or _in(off, CB0, 20)
                          or (_in(off, TSTAMP, 8) and bpf_cap)):
            return False
        _pkt_ptrs(off, info, meta=False)
        return skb_is_valid_access(off, size, write, info)


class LwtOut(SkbProgType):
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
    own_helpers = LwtOut.own_helpers | {20, 21, 29, 30, 23, 13, 38, 43, 9, 40, 135, 10, 11, 73, 41}

    def gen_prologue(self, direct_write: bool, prog: Any) -> list[Insn]:
        """lwt_xmit uses ``tc_cls_act_prologue``."""
        return unclone_prologue(direct_write, TC_ACT_SHOT)


class LwtSeg6Local(LwtOut):
    prog_type = 18
    name = "lwt_seg6local"


class SkSkb(SkbProgType):
    prog_type = 14
    name = "sk_skb"
    ctx_size = SKB_SIZE
    pkt_read = pkt_write = True
    own_helpers = frozenset({9, 26, 39, 38, 43, 50, 46, 47, 52, 72, 25, 84, 85, 86, 99})

    def convert_ctx_access(self, write: bool, insn: Insn, prog: Any) -> tuple[list[Insn], int]:
        """``sk_skb_convert_ctx_access``: data_end computed, cb in ``sk_skb_cb``."""
        if insn.off == DATA_END:
            return sk_skb_data_end(insn), 0
        if CB0 <= insn.off < CB_END:
            return [_rw(write, insn, insn.code & 0x18, CB + insn.off - CB0)], 0
        return super().convert_ctx_access(write, insn, prog)

    def gen_prologue(self, direct_write: bool, prog: Any) -> list[Insn]:
        """``sk_skb_prologue``."""
        return unclone_prologue(direct_write, SK_DROP)

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


# FLOW_DISSECTOR (also a __sk_buff view) lives in pybpf.progs.type_flow_dissector
for _t in (SocketFilter, SchedCls, SchedAct, CgroupSkb, LwtOut, LwtIn, LwtXmit, LwtSeg6Local, SkSkb):
    register_prog_type(_t())
