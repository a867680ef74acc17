"""Accesses through socket pointers, rewritten onto pybpf's internal sockets.

A program reads ``struct bpf_sock`` / ``bpf_tcp_sock`` / ``bpf_xdp_sock`` fields through a
pointer the verifier types ``PTR_TO_SOCKET``/``PTR_TO_SOCK_COMMON``/``PTR_TO_TCP_SOCK``/
``PTR_TO_XDP_SOCK``; at run time that pointer is a ``struct sock`` (``tcp_sock``,
``xdp_sock``) — for pybpf a :class:`pybpf.net.sockets.HostSocket`'s memory, laid out at
Linux 6.18's offsets. These converters are the kernel's ``bpf_sock_convert_ctx_access``,
``bpf_tcp_sock_convert_ctx_access`` and ``bpf_xdp_sock_convert_ctx_access``
(``net/core/filter.c``): the same instructions, so the xlated program equals the kernel's.

Registered with :func:`pybpf.verifier.ctx_convert.register_ptr_converter` on import (the
ctx-conversion pass imports this module). ``bpf_sock_convert_ctx_access`` is also the
ctx conversion of cgroup/sock programs, whose ctx *is* a ``struct sock``
(:mod:`pybpf.progs.type_sock` uses :func:`bpf_sock_convert_ctx_access` directly).

Narrow loads: the pass widens them when the verifier recorded the field's size; when it
did not (an unwidened 1/2-byte read of a 4-byte field), the converter widens here and adds
the same shift and mask, so the result is identical either way.
"""

from __future__ import annotations

from typing import Any

from pybpf.isa.insn import Insn
from pybpf.uapi.kernel_structs import KSTRUCTS
from pybpf.verifier.ctx_convert import register_ptr_converter
from pybpf.verifier.regs import RegType

BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_ALU64 = 0x01, 0x02, 0x03, 0x04, 0x05, 0x07
BPF_MEM = 0x60
BPF_W, BPF_H, BPF_B, BPF_DW = 0x00, 0x08, 0x10, 0x18
BPF_K, BPF_MOV, BPF_RSH, BPF_AND, BPF_JNE = 0x00, 0xB0, 0x70, 0x50, 0x50
SIZE_CODE = {1: BPF_B, 2: BPF_H, 4: BPF_W, 8: BPF_DW}
CODE_SIZE = {v: k for k, v in SIZE_CODE.items()}
NO_QUEUE_MAPPING = 0xFFFF

_SK = KSTRUCTS["sock"]
_TCP = KSTRUCTS["tcp_sock"]
_XSK = KSTRUCTS["xdp_sock"]
_C = "__sk_common."

# struct bpf_sock (uapi) offsets
BOUND_DEV_IF, FAMILY, TYPE, PROTOCOL, MARK, PRIORITY = 0, 4, 8, 12, 16, 20
SRC_IP4, SRC_IP6, SRC_PORT, DST_PORT, DST_IP4, DST_IP6 = 24, 28, 44, 48, 52, 56
STATE, RX_QUEUE_MAPPING = 72, 76

#: bpf_sock field -> (struct sock member, load size or None for "the access's own size")
_SOCK_FIELDS: dict[int, tuple[str, int | None]] = {
    BOUND_DEV_IF: (_C + "skc_bound_dev_if", 4),
    MARK: ("sk_mark", 4),
    PRIORITY: ("sk_priority", 4),
    FAMILY: (_C + "skc_family", None),
    TYPE: ("sk_type", None),
    PROTOCOL: ("sk_protocol", None),
    SRC_PORT: (_C + "skc_num", None),
    DST_PORT: (_C + "skc_dport", None),
    STATE: (_C + "skc_state", None),
}

#: bpf_tcp_sock offsets -> tcp_sock member (uapi order)
_TCP_FIELDS = [
    "snd_cwnd", "srtt_us", "rtt_min", "snd_ssthresh", "rcv_nxt", "snd_nxt", "snd_una",
    "mss_cache", "ecn_flags", "rate_delivered", "rate_interval_us", "packets_out",
    "retrans_out", "total_retrans", "segs_in", "data_segs_in", "segs_out", "data_segs_out",
    "lost_out", "sacked_out", "bytes_received", "bytes_acked", "dsack_dups", "delivered",
    "delivered_ce", "inet_conn.icsk_retransmits",
]
_TCP_OFFS: dict[int, str] = {}
_o = 0
for _name in _TCP_FIELDS:
    _TCP_OFFS[_o] = _name
    _o += 8 if _name in ("bytes_received", "bytes_acked") else 4
MINMAX_SAMPLE_V = 4  # offsetof(struct minmax_sample, v)


def _ldx(size: int, dst: int, src: int, off: int) -> Insn:
    return Insn(BPF_LDX | BPF_MEM | SIZE_CODE[size], dst, src, off, 0)


def _field_size(off: int, size: int) -> int:
    """The size the verifier records for a ``bpf_sock`` field (``bpf_sock_is_valid_access``)."""
    if DST_PORT <= off < DST_PORT + 2:
        return 4 if size == 4 else 2
    return 4


def bpf_sock_convert_ctx_access(write: bool, insn: Insn, prog: Any) -> tuple[list[Insn], int]:
    """``bpf_sock_convert_ctx_access``: a ``struct bpf_sock`` access onto ``struct sock``."""
    size = CODE_SIZE[insn.code & 0x18]
    fsize = _field_size(insn.off, size)
    if not write and size < fsize:
        return _widened(insn, size, fsize)
    return _convert(write, insn, size)


def _widened(insn: Insn, size: int, fsize: int) -> tuple[list[Insn], int]:
    """A narrow read the verifier did not widen: widen, convert, then shift and mask
    exactly as ``convert_ctx_accesses`` does for a recorded narrow load."""
    base = insn.off & ~(fsize - 1)
    wide = Insn(BPF_LDX | BPF_MEM | SIZE_CODE[fsize], insn.dst, insn.src, base, 0)
    buf, target = _convert(False, wide, fsize)
    if size < target:
        shift = (insn.off & (fsize - 1)) * 8
        if shift:
            buf.append(Insn(BPF_ALU | BPF_RSH | BPF_K, insn.dst, 0, 0, shift))
        mask = (1 << size * 8) - 1
        buf.append(Insn(BPF_ALU | BPF_AND | BPF_K, insn.dst, 0, 0,
                        mask if mask < 1 << 31 else mask - (1 << 32)))
    return buf, target


def _convert(write: bool, insn: Insn, size: int) -> tuple[list[Insn], int]:
    off, dst, src = insn.off, insn.dst, insn.src
    if off in _SOCK_FIELDS:
        member, load = _SOCK_FIELDS[off]
        koff = _SK.off(member)
        if load == 4:  # bound_dev_if, mark, priority: read or written whole
            if write:
                cls = insn.code & 0x07
                return [Insn(cls | BPF_MEM | BPF_W, dst, src, koff, insn.imm)], 4
            return [_ldx(4, dst, src, koff)], 4
        ksize = _SK.sizeof(member)
        return [_ldx(ksize, dst, src, koff)], ksize
    if SRC_IP4 <= off < SRC_IP4 + 4:
        return [_ldx(size, dst, src, _SK.off(_C + "skc_rcv_saddr") + off - SRC_IP4)], 4
    if DST_IP4 <= off < DST_IP4 + 4:
        return [_ldx(size, dst, src, _SK.off(_C + "skc_daddr") + off - DST_IP4)], 4
    if SRC_IP6 <= off < SRC_IP6 + 16:
        return [_ldx(size, dst, src, _SK.off(_C + "skc_v6_rcv_saddr") + off - SRC_IP6)], 4
    if DST_IP6 <= off < DST_IP6 + 16:
        return [_ldx(size, dst, src, _SK.off(_C + "skc_v6_daddr") + off - DST_IP6)], 4
    if off == RX_QUEUE_MAPPING:
        member = _C + "skc_rx_queue_mapping"
        return [_ldx(_SK.sizeof(member), dst, src, _SK.off(member)),
                Insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, 1, NO_QUEUE_MAPPING),
                Insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, -1)], 4
    # the verifier admits no other field; reaching here is pybpf's bug, reported as the
    # kernel reports an empty conversion
    return [], 0


def bpf_tcp_sock_convert_ctx_access(write: bool, insn: Insn,
                                    prog: Any) -> tuple[list[Insn], int]:
    """``bpf_tcp_sock_convert_ctx_access``: ``struct bpf_tcp_sock`` onto ``tcp_sock``."""
    name = _TCP_OFFS.get(insn.off)
    if name is None:
        return [], 0
    if name == "rtt_min":
        return [_ldx(4, insn.dst, insn.src, _TCP.off("rtt_min") + MINMAX_SAMPLE_V)], 0
    return [_ldx(_TCP.sizeof(name), insn.dst, insn.src, _TCP.off(name))], 0


def bpf_xdp_sock_convert_ctx_access(write: bool, insn: Insn,
                                    prog: Any) -> tuple[list[Insn], int]:
    """``bpf_xdp_sock_convert_ctx_access``: ``bpf_xdp_sock.queue_id``."""
    if insn.off != 0:
        return [], 0
    return [_ldx(_XSK.sizeof("queue_id"), insn.dst, insn.src, _XSK.off("queue_id"))], 0


register_ptr_converter(RegType.PTR_TO_SOCKET, bpf_sock_convert_ctx_access)
register_ptr_converter(RegType.PTR_TO_SOCK_COMMON, bpf_sock_convert_ctx_access)
register_ptr_converter(RegType.PTR_TO_TCP_SOCK, bpf_tcp_sock_convert_ctx_access)
register_ptr_converter(RegType.PTR_TO_XDP_SOCK, bpf_xdp_sock_convert_ctx_access)
