"""``BPF_PROG_TYPE_XDP``: ``struct xdp_md`` ctx, direct packet read/write."""

from __future__ import annotations

from typing import Any

from pybpf.progs.ops import register_prog_type
from pybpf.progs.type_base import ProgTypeBase
from pybpf.verifier.regs import RegType

BPF_XDP_DEVMAP = 38


class Xdp(ProgTypeBase):
    prog_type = 6
    name = "xdp"
    ctx_size = 24
    pkt_read = pkt_write = True
    own_helpers = frozenset({25, 8, 28, 44, 54, 23, 51, 65, 188, 189, 190, 69, 163, 85, 84, 86, 99,
                             100, 110, 183, 184, 185, 186})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if off == 20 and getattr(prog, "expected_attach_type", 0) != BPF_XDP_DEVMAP:
            return False
        if write:
            return False
        if off in (0, 4, 8) and info.get("is_ldsx"):
            return False
        if off == 0:
            info["reg_type"] = RegType.PTR_TO_PACKET
        elif off == 8:
            info["reg_type"] = RegType.PTR_TO_PACKET_META
        elif off == 4:
            info["reg_type"] = RegType.PTR_TO_PACKET_END
        return 0 <= off < 24 and off % size == 0 and size == 4


register_prog_type(Xdp())
