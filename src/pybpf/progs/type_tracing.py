"""Tracing program types: kprobe, tracepoint, perf_event, raw tracepoints, tracing, LSM, syscall.

Their ctx is read-only memory described by the attach point (``pt_regs``, the tracepoint
record, the raw arguments); none of them may touch packets.
"""

from __future__ import annotations

from typing import Any

from pybpf.progs.ops import register_prog_type
from pybpf.progs.type_base import ProgTypeBase, narrow_ok
from pybpf.verifier.regs import RegType

PT_REGS_SIZE = 168
PERF_MAX_TRACE_SIZE = 2048


class Kprobe(ProgTypeBase):
    prog_type = 2
    name = "kprobe"
    ctx_size = PT_REGS_SIZE
    inherit = "tracing"
    own_helpers = frozenset({25, 27, 67, 58, 173, 174})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        return 0 <= off < PT_REGS_SIZE and not write and off % size == 0 and off + size <= PT_REGS_SIZE


class Tracepoint(ProgTypeBase):
    prog_type = 5
    name = "tracepoint"
    inherit = "tracing"
    own_helpers = frozenset({25, 27, 67, 174})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        return 8 <= off < PERF_MAX_TRACE_SIZE and not write and off % size == 0


class PerfEvent(ProgTypeBase):
    prog_type = 7
    name = "perf_event"
    ctx_size = PT_REGS_SIZE + 16
    inherit = "tracing"
    own_helpers = frozenset({25, 27, 67, 56, 119, 174})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if off < 0 or off >= self.ctx_size or write or off % size:
            return False
        if PT_REGS_SIZE <= off < PT_REGS_SIZE + 16:
            info["ctx_field_size"] = 8
            return narrow_ok(size, 8)
        return size == 8


class RawTracepoint(ProgTypeBase):
    prog_type = 17
    name = "raw_tracepoint"
    inherit = "tracing"
    own_helpers = frozenset({25, 27, 67, 174})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        return 0 <= off < 8 * 12 and not write and off % size == 0


class RawTracepointWritable(RawTracepoint):
    prog_type = 24
    name = "raw_tracepoint_writable"

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        if off == 0:
            if size != 8 or write:
                return False
            info["reg_type"] = RegType.PTR_TO_TP_BUFFER
        return super().is_valid_access(off, size, write, prog, info)


class Tracing(RawTracepoint):
    prog_type = 26
    name = "tracing"
    own_helpers = frozenset({25, 27, 67, 174, 111, 121, 136, 137, 138, 139, 140, 178, 180, 107, 108,
                             162, 46, 188, 126, 127, 150, 147, 183, 184, 185})


class Lsm(Tracing):
    prog_type = 29
    name = "lsm"


class Syscall(ProgTypeBase):
    prog_type = 31
    name = "syscall"
    inherit = "base"

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        return 0 <= off < 65536 and off % size == 0


for _t in (Kprobe, Tracepoint, PerfEvent, RawTracepoint, RawTracepointWritable, Tracing, Lsm, Syscall):
    register_prog_type(_t())
