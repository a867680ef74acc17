"""``BPF_PROG_TYPE_XDP``: ``struct xdp_md`` ctx, direct packet read/write.

Accesses to ``xdp_md`` are checked as ``xdp_is_valid_access`` does (whole 4-byte reads
only; ``egress_ifindex`` for devmap programs only) and rewritten as
``xdp_convert_ctx_access`` rewrites them: onto pybpf's internal ``struct xdp_buff``
(:mod:`pybpf.net.xdp_buff`), which is what ``r1`` points to when an XDP program runs.
"""

from __future__ import annotations

from typing import Any

from pybpf.isa.insn import Insn
from pybpf.net.xdp_buff import (
    DEV_IFINDEX,
    RXQ_DEV,
    RXQ_QUEUE_INDEX,
    TXQ_DEV,
    XB_DATA,
    XB_DATA_END,
    XB_DATA_META,
    XB_RXQ,
    XB_TXQ,
)
from pybpf.progs.ops import register_prog_type
from pybpf.progs.type_base import ProgTypeBase, bpf_noop_prologue
from pybpf.verifier.regs import RegType

BPF_XDP_DEVMAP = 33  # enum bpf_attach_type
XDP_MD_SIZE = 24
# struct xdp_md
MD_DATA, MD_DATA_END, MD_DATA_META, MD_INGRESS_IFINDEX, MD_RX_QUEUE_INDEX, MD_EGRESS_IFINDEX = \
    0, 4, 8, 12, 16, 20

_LDX_DW, _LDX_W = 0x79, 0x61  # BPF_LDX | BPF_MEM | BPF_DW / BPF_W


def _ldx(code: int, dst: int, src: int, off: int) -> Insn:
    return Insn(code, dst, src, off, 0)


class Xdp(ProgTypeBase):
    prog_type = 6
    name = "xdp"
    ctx_size = XDP_MD_SIZE
    pkt_read = pkt_write = True
    own_helpers = frozenset({25, 8, 28, 44, 54, 23, 51, 65, 188, 189, 190, 69, 163, 85, 84, 86, 99,
                             100, 110, 183, 184, 185, 204, 205, 206, 207})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if off == MD_EGRESS_IFINDEX and getattr(prog, "expected_attach_type", 0) != BPF_XDP_DEVMAP:
            return False
        if write:
            return False
        if off in (MD_DATA, MD_DATA_END, MD_DATA_META) and info.get("is_ldsx"):
            return False
        if off == MD_DATA:
            info["reg_type"] = RegType.PTR_TO_PACKET
        elif off == MD_DATA_META:
            info["reg_type"] = RegType.PTR_TO_PACKET_META
        elif off == MD_DATA_END:
            info["reg_type"] = RegType.PTR_TO_PACKET_END
        return 0 <= off < XDP_MD_SIZE and off % size == 0 and size == 4

    def convert_ctx_access(self, write: bool, insn: Any, prog: Any) -> tuple[list[Any], int] | None:
        """``xdp_convert_ctx_access``: packet pointers are 64-bit fields of ``xdp_buff``;
        the ifindexes and queue index are reached through ``rxq``/``txq``."""
        dst, src = insn.dst, insn.src
        off = insn.off
        out: list[Insn]
        if off == MD_DATA:
            out = [_ldx(_LDX_DW, dst, src, XB_DATA)]
        elif off == MD_DATA_META:
            out = [_ldx(_LDX_DW, dst, src, XB_DATA_META)]
        elif off == MD_DATA_END:
            out = [_ldx(_LDX_DW, dst, src, XB_DATA_END)]
        elif off == MD_INGRESS_IFINDEX:
            out = [_ldx(_LDX_DW, dst, src, XB_RXQ), _ldx(_LDX_DW, dst, dst, RXQ_DEV),
                   _ldx(_LDX_W, dst, dst, DEV_IFINDEX)]
        elif off == MD_RX_QUEUE_INDEX:
            out = [_ldx(_LDX_DW, dst, src, XB_RXQ), _ldx(_LDX_W, dst, dst, RXQ_QUEUE_INDEX)]
        elif off == MD_EGRESS_IFINDEX:
            out = [_ldx(_LDX_DW, dst, src, XB_TXQ), _ldx(_LDX_DW, dst, dst, TXQ_DEV),
                   _ldx(_LDX_W, dst, dst, DEV_IFINDEX)]
        else:
            return None
        return out, 4

    gen_prologue = bpf_noop_prologue  # an xdp_buff is never shared

    def hook_ctx(self, kind: str, name: str) -> Any:
        """The per-packet object the device receive path runs XDP programs on."""
        from pybpf.net.xdp_buff import XdpBuff

        if kind != "xdp":
            raise ValueError(f"XDP programs run on xdp buffers, not on {kind!r} contexts")
        return XdpBuff(name)


register_prog_type(Xdp())
