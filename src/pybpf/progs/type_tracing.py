"""Tracing program types: kprobe, tracepoint, perf_event, raw tracepoints, tracing, LSM, syscall.

Their ctx is read-only memory described by the attach point (``pt_regs``, the tracepoint
record, the raw arguments); none of them may touch packets.
"""

from __future__ import annotations

from typing import Any

from pybpf.helpers.proto import ArgType, FuncProto
from pybpf.isa.insn import Insn
from pybpf.progs.ops import register_prog_type
from pybpf.progs.type_base import ProgTypeBase, narrow_ok
from pybpf.verifier.regs import RegType

PT_REGS_SIZE = 168
PERF_MAX_TRACE_SIZE = 2048
_TRACE_ITER = 28
_ITER_ONLY_HELPERS = frozenset({126, 127, 150})  # bpf_seq_printf, seq_write, seq_printf_btf
#: bpf_get_func_arg, bpf_get_func_ret, bpf_get_func_arg_cnt: they read the trampoline frame
_TRAMPOLINE_HELPERS = frozenset({183, 184, 185})


class TracingProtos(ProgTypeBase):
    """The tracing types also offer the attach-point helpers of
    :mod:`pybpf.helpers.probe` (``bpf_get_func_ip``, ``bpf_get_attach_cookie``)."""

    def get_func_proto(self, func_id: int, prog: Any) -> FuncProto | None:
        proto = super().get_func_proto(func_id, prog)
        if proto is None and func_id in self.allowed_helpers(prog):
            from pybpf.helpers.probe import PROTOS_BY_ID

            proto = PROTOS_BY_ID.get(func_id)
        return proto


class Kprobe(TracingProtos):
    prog_type = 2
    name = "kprobe"
    ctx_size = PT_REGS_SIZE
    inherit = "tracing"
    own_helpers = frozenset({25, 27, 67, 58, 173, 174})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        return 0 <= off < PT_REGS_SIZE and not write and off % size == 0 and off + size <= PT_REGS_SIZE

    def return_range(self, prog: Any) -> tuple[int, int] | None:
        """``check_return_code``: a kprobe or uprobe session program returns 0 (run the
        return probe) or 1 (skip it); other kprobes return anything."""
        if getattr(prog, "expected_attach_type", 0) in (56, 57):  # BPF_TRACE_*PROBE_SESSION
            return 0, 1
        return None


class Tracepoint(TracingProtos):
    prog_type = 5
    name = "tracepoint"
    inherit = "tracing"
    own_helpers = frozenset({25, 27, 67, 174})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        return 8 <= off < PERF_MAX_TRACE_SIZE and not write and off % size == 0


#: ``struct bpf_perf_event_data`` (uapi): ``regs`` (a ``pt_regs``), then these two u64s
PE_SAMPLE_PERIOD, PE_ADDR = PT_REGS_SIZE, PT_REGS_SIZE + 8
BPF_LDX_MEM_DW = 0x01 | 0x60 | 0x18


class PerfEvent(TracingProtos):
    """The ctx a program sees is ``struct bpf_perf_event_data``; what it runs on is the
    kernel's ``struct bpf_perf_event_data_kern`` {``regs``, ``data``, ``event``} —
    :mod:`pybpf.hooks.perf_timer` builds one — so every field read goes through a pointer
    (:meth:`convert_ctx_access`)."""

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

    def convert_ctx_access(self, write: bool, insn: Insn,
                           prog: Any) -> tuple[list[Insn], int] | None:
        """``pe_prog_convert_ctx_access``: ``sample_period``/``addr`` are read from the
        ``perf_sample_data`` behind ``data``; anything else is a ``pt_regs`` slot behind
        ``regs``, read as a whole ``long``."""
        from pybpf.uapi.kernel_structs import KSTRUCTS

        kern, sample = KSTRUCTS["bpf_perf_event_data_kern"], KSTRUCTS["perf_sample_data"]
        dst, src = insn.dst, insn.src
        member = {PE_SAMPLE_PERIOD: "period", PE_ADDR: "addr"}.get(insn.off)
        if member is not None:
            return [Insn(BPF_LDX_MEM_DW, dst, src, kern.off("data"), 0),
                    Insn(BPF_LDX_MEM_DW, dst, dst, sample.off(member), 0)], 8
        return [Insn(BPF_LDX_MEM_DW, dst, src, kern.off("regs"), 0),
                Insn(BPF_LDX_MEM_DW, dst, dst, insn.off, 0)], 0


class RawTracepoint(TracingProtos):
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


#: attach types whose tracing programs know their attach cookie (raw_tp, or a trampoline)
_COOKIE_ATTACH = frozenset({23, 24, 25, 26, 27, 43})
_BTF_ID = int(ArgType.ARG_PTR_TO_BTF_ID)
#: ``bpf_get_socket_ptr_cookie_proto``, ``bpf_xdp_get_buff_len_trace_proto``
_TRACING_VARIANTS: dict[int, tuple[tuple[int, ...], dict[int, str]]] = {
    46: ((int(ArgType.ARG_PTR_TO_BTF_ID_SOCK_COMMON),), {}),
    188: ((_BTF_ID,), {0: "xdp_buff"}),
}


class Tracing(RawTracepoint):
    prog_type = 26
    name = "tracing"
    own_helpers = frozenset({25, 27, 67, 173, 174, 111, 121, 136, 137, 138, 139, 140, 178, 180, 107, 108,
                             162, 46, 188, 126, 127, 150, 147, 183, 184, 185, 196})

    def get_func_proto(self, func_id: int, prog: Any) -> FuncProto | None:
        """``tracing_prog_func_proto``: the seq_file helpers only for iterators, the attach
        cookie only with a trampoline (or raw_tp), and BTF-pointer variants of the helpers
        that elsewhere take the context."""
        eat = getattr(prog, "expected_attach_type", 0)
        if func_id in _ITER_ONLY_HELPERS and eat != _TRACE_ITER:
            return None
        if func_id in _TRAMPOLINE_HELPERS and not self.has_trampoline(prog):
            return None
        if func_id == 174 and eat not in _COOKIE_ATTACH:
            return None
        proto = super().get_func_proto(func_id, prog)
        variant = _TRACING_VARIANTS.get(func_id)
        if proto is not None and variant is not None:
            import dataclasses

            args, arg_btf = variant
            proto = dataclasses.replace(proto, arg_types=args,
                                        extra={**proto.extra, "arg_btf": arg_btf})
        return proto

    def has_trampoline(self, prog: Any) -> bool:
        """``bpf_prog_has_trampoline``: fentry, fexit and fmod_ret programs run from one."""
        return getattr(prog, "expected_attach_type", 0) in (24, 25, 26)

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any,
                        info: dict[str, Any]) -> bool:
        """``tracing_prog_is_valid_access``: read-only, aligned, within the 12 argument
        slots; then ``btf_ctx_access`` types the slot from the attach target's prototype
        (tp_btf: the tracepoint's, without its leading ``__data``; fexit/fmod_ret: one
        more slot for the return value)."""
        if not super().is_valid_access(off, size, write, prog, info):
            return False
        from pybpf.verifier.btf_access import btf_ctx_access

        return btf_ctx_access(off, size, write, prog, info)

    def return_range(self, prog: Any) -> tuple[int, int] | None:
        """``check_return_code``: fentry/fexit return 0, iterators 0 or 1; tp_btf and
        fmod_ret return anything."""
        eat = getattr(prog, "expected_attach_type", 0)
        if eat in (24, 25):  # BPF_TRACE_FENTRY, BPF_TRACE_FEXIT
            return 0, 0
        if eat == 28:  # BPF_TRACE_ITER
            return 0, 1
        return None

    def test_run(self, prog: Any, kernel: Any, opts: Any) -> Any:
        """``bpf_prog_test_run_tracing`` (fentry/fexit/fmod_ret through the trampolines)."""
        from pybpf.progs.testrun_tracing import test_run_tracing

        return test_run_tracing(prog, kernel, opts)


class Lsm(Tracing):
    prog_type = 29
    name = "lsm"

    def has_trampoline(self, prog: Any) -> bool:
        """``BPF_LSM_MAC`` programs run from the LSM hook's trampoline."""
        return getattr(prog, "expected_attach_type", 0) == 27

    def test_run(self, prog: Any, kernel: Any, opts: Any) -> Any:
        """``lsm_prog_ops`` has no ``test_run``: ENOTSUPP."""
        raise NotImplementedError


class Syscall(TracingProtos):
    """``syscall_prog_func_proto``: bpf_sys_bpf, btf_find_by_name_kind, sys_close,
    kallsyms_lookup_name, then everything ``tracing_prog_func_proto`` offers."""

    prog_type = 31
    name = "syscall"
    inherit = "tracing"
    own_helpers = frozenset({166, 167, 168, 179})

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
        return 0 <= off < 65536 and off % size == 0


for _t in (Kprobe, Tracepoint, PerfEvent, RawTracepoint, RawTracepointWritable, Tracing, Lsm, Syscall):
    register_prog_type(_t())
