"""``BPF_PROG_TYPE_FLOW_DISSECTOR``: a ``struct __sk_buff`` view of a packet being dissected.

A flow dissector program may read only three ``__sk_buff`` fields: ``data`` and
``data_end`` (packet pointers) and ``flow_keys`` (a pointer to the ``struct
bpf_flow_keys`` it fills in). ``r1`` is really a ``struct bpf_flow_dissector``, and the
verifier rewrites those three reads onto it (``flow_dissector_convert_ctx_access``):
:class:`FlowDissectorCtx` lays that struct out as Linux 6.18 does. The program writes its
results straight into the flow keys, which are not a ctx access and need no rewrite.
"""

from __future__ import annotations

from typing import Any

from pybpf.helpers.flow_dissector import flow_dissector_load_bytes
from pybpf.isa.insn import Insn
from pybpf.progs.ops import TestRunOpts, TestRunResult, register_prog_type
from pybpf.progs.type_base import ProgTypeBase
from pybpf.uapi.kernel_structs import KSTRUCTS
from pybpf.verifier.regs import RegType

FLOW_DISSECTOR = 22
SKB_SIZE = 192  # sizeof(struct __sk_buff)
# struct __sk_buff offsets a flow dissector may read
SKB_DATA, SKB_DATA_END, SKB_FLOW_KEYS = 76, 80, 144

_FD = KSTRUCTS["bpf_flow_dissector"]
FD_FLOW_KEYS, FD_SKB, FD_DATA, FD_DATA_END = (
    _FD.off("flow_keys"), _FD.off("skb"), _FD.off("data"), _FD.off("data_end"))
FD_SIZE = _FD.size
_LDX_DW = 0x79  # BPF_LDX | BPF_MEM | BPF_DW: every field of bpf_flow_dissector is a pointer


class FlowDissector(ProgTypeBase):
    prog_type = FLOW_DISSECTOR
    name = "flow_dissector"
    ctx_size = SKB_SIZE
    pkt_read = True
    own_helpers = frozenset({26})  # bpf_flow_dissector_load_bytes, under skb_load_bytes' id
    helper_impls = {26: flow_dissector_load_bytes}

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any,
                        info: dict[str, Any]) -> bool:
        """``flow_dissector_is_valid_access``: aligned reads of the three fields only."""
        if off < 0 or off >= SKB_SIZE or off % size or write:
            return False
        if SKB_DATA <= off < SKB_DATA + 4:
            if info.get("is_ldsx") or size != 4:
                return False
            info["reg_type"] = RegType.PTR_TO_PACKET
            return True
        if SKB_DATA_END <= off < SKB_DATA_END + 4:
            if info.get("is_ldsx") or size != 4:
                return False
            info["reg_type"] = RegType.PTR_TO_PACKET_END
            return True
        if SKB_FLOW_KEYS <= off < SKB_FLOW_KEYS + 8:
            if size != 8:
                return False
            info["reg_type"] = RegType.PTR_TO_FLOW_KEYS
            return True
        return False

    def convert_ctx_access(self, write: bool, insn: Any, prog: Any) -> tuple[list[Any], int] | None:
        """``flow_dissector_convert_ctx_access``: 64-bit loads of ``bpf_flow_dissector``."""
        target = {SKB_DATA: FD_DATA, SKB_DATA_END: FD_DATA_END, SKB_FLOW_KEYS: FD_FLOW_KEYS}
        off = target.get(insn.off)
        if off is None:
            return None
        return [Insn(_LDX_DW, insn.dst, insn.src, off, 0)], 8

    def test_run(self, prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
        from pybpf.progs.testrun_flow_dissector import test_run_flow_dissector

        return test_run_flow_dissector(prog, kernel, opts)


register_prog_type(FlowDissector())
