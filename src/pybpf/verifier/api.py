"""The contract between ``BPF_PROG_LOAD`` and the verifier (the kernel's ``bpf_check``).

The syscall layer builds a :class:`VerifierInput`, calls :func:`bpf_check`, and applies the
log-buffer rules (log_level / log_buf / log_size / ``ENOSPC`` / ``log_true_size``) to the
text in :attr:`VerifierResult.log` — the verifier itself only produces the full log.

The verifier owns ``ld_imm64`` map resolution (``resolve_pseudo_ldimm64``): it turns map
fds and map-value references into native addresses in :attr:`VerifierResult.insns` and
lists the maps in :attr:`VerifierResult.used_maps`.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pybpf.isa.insn import Insn


@dataclass
class VerifierInput:
    insns: list[Insn]
    prog_type: int
    expected_attach_type: int = 0
    prog_flags: int = 0
    log_level: int = 0
    # fd → BpfMap of the loading task; None when no such fd, an errno when it is no map
    map_by_fd: Callable[[int], Any] = lambda fd: None
    fd_array: list[int] | None = None
    gpl_compatible: bool = True
    bpf_capable: bool = True  # CAP_BPF (or CAP_SYS_ADMIN)
    perfmon_capable: bool = True  # CAP_PERFMON
    net_admin: bool = True
    attach_btf_id: int = 0
    attach_prog: Any = None
    prog_btf: Any = None
    func_info: list[Any] = field(default_factory=list)
    line_info: list[Any] = field(default_factory=list)
    kernel: Any = None  # the Kernel instance: helper table, sysctls, kernel BTF
    prog: Any = None  # the BpfProg being loaded (aux data the verifier may fill)
    # the raw ``func_info``/``line_info`` records as user space passed them (rec size, count,
    # bytes); made from ``func_info``/``line_info`` when only those are given
    func_info_cnt: int = 0
    func_info_rec_size: int = 0
    func_info_raw: bytes = b""
    line_info_cnt: int = 0
    line_info_rec_size: int = 0
    line_info_raw: bytes = b""

    def __post_init__(self) -> None:
        if self.func_info and not self.func_info_cnt:
            self.func_info_cnt, self.func_info_rec_size = len(self.func_info), 8
            self.func_info_raw = b"".join(_u32s(r) for r in self.func_info)
        if self.line_info and not self.line_info_cnt:
            self.line_info_cnt, self.line_info_rec_size = len(self.line_info), 16
            self.line_info_raw = b"".join(_u32s(r) for r in self.line_info)


def _exception_cb_start(v: Any, patcher: Any) -> int | None:
    """Where the exception callback starts in the xlated program (the program's own, or
    the hidden default one), for the run time of ``bpf_throw``; ``None`` if it never throws."""
    from pybpf.verifier.exceptions import exception_callback

    exc = exception_callback(v)
    want = exc if exc else (-1 if v.seen_exception else None)
    if want is None:
        return None
    for start, sid in zip(patcher.subprog_starts, patcher.subprog_ids, strict=False):
        if sid == want:
            return int(start)
    return None


def _stack_depth_line(v: Any) -> str:
    """The statistics' ``stack depth 8+0``: each subprogram's depth, rounded to 8."""
    n = (len(v.cfg.subprogs) or 1) + (v.exception_cb_start is not None)  # + a hidden callback
    return "stack depth " + "+".join(str((v.max_stack.get(i, 0) + 7) // 8 * 8)
                                     for i in range(n)) + "\n"


def _u32s(rec: Any) -> bytes:
    return b"".join((int(x) & 0xFFFFFFFF).to_bytes(4, "little") for x in rec)


@dataclass
class VerifierResult:
    errno: int = 0  # 0: accepted
    log: str = ""  # full log text the kernel would produce at this log_level
    insns: list[Insn] = field(default_factory=list)  # after fixups
    used_maps: list[Any] = field(default_factory=list)
    stack_depth: int = 0
    verified_insns: int = 0
    subprog_starts: list[int] = field(default_factory=lambda: [0])
    extra: dict[str, Any] = field(default_factory=dict)


def bpf_check(inp: VerifierInput) -> VerifierResult:
    """Verify a program as Linux 6.18's ``bpf_check`` does.

    Returns the verdict (``errno`` 0 = accepted), the log text for ``inp.log_level``, the
    rewritten instructions (map fds resolved to map addresses) and the maps used.
    ``extra["error_line"]`` is the last message the verifier printed when it rejected.
    """
    import time

    from pybpf.verifier.cfg import VerifyError
    from pybpf.verifier.core import Verifier
    from pybpf.verifier.fixups import apply_fixups, make_patcher
    from pybpf.verifier.log import BPF_LOG_STATS
    from pybpf.verifier.patch import PatchError
    from pybpf.verifier.regs import UNKNOWN_PRECISE

    t0 = time.perf_counter_ns()
    token = UNKNOWN_PRECISE.set(not inp.bpf_capable)
    try:
        v = Verifier(inp)
        err = 0
        try:
            if not inp.insns:
                raise VerifyError(errno.EINVAL)
            v.run()
        except VerifyError as e:
            err = e.errno
        except RecursionError:
            v.verbose("verifier internal error: recursion too deep\n")
            err = errno.EFAULT
    finally:
        UNKNOWN_PRECISE.reset(token)
    elapsed_us = (time.perf_counter_ns() - t0) // 1000
    log = v.log
    stats_at = len(log.parts)  # fixup errors print before the stats, as in bpf_check
    depth_at = -1
    if log.enabled or inp.log_level & BPF_LOG_STATS:
        stats = (f"processed {v.insn_processed} insns (limit 1000000) max_states_per_insn "
                 f"{v.max_states_per_insn} total_states {v.total_states} peak_states {v.peak_states} "
                 f"mark_read 0\n")
        if inp.log_level & BPF_LOG_STATS:
            log.parts.append(f"verification time {elapsed_us} usec\n")
            depth_at = len(log.parts)
            log.parts.append(_stack_depth_line(v))
        log.parts.append(stats)
    error_line = ""
    if err:
        lines = [ln for ln in "".join(v.errors).split("\n") if ln.strip()]
        error_line = lines[-1] if lines else ""
        return VerifierResult(err, log.text(), list(inp.insns), v.used_maps,
                              verified_insns=v.insn_processed,
                              extra={"error_line": error_line, "insn_processed": v.insn_processed,
                                     "time_us": elapsed_us,
                                     "func_info_rec_size": v.func_info_rec_size_hint,
                                     "line_info_rec_size": v.line_info_rec_size_hint})
    patcher = make_patcher(v)
    try:
        insns = apply_fixups(v, patcher)
    except PatchError as e:
        v.errors.append(e.message)
        if v.log.enabled:
            v.log.parts.insert(stats_at, e.message)
            v.log.size += len(e.message)
        return VerifierResult(e.errno, v.log.text(), list(inp.insns), v.used_maps,
                              verified_insns=v.insn_processed,
                              extra={"error_line": e.message.strip(),
                                     "insn_processed": v.insn_processed, "time_us": elapsed_us})
    exc_start = _exception_cb_start(v, patcher)
    if depth_at >= 0:  # the stack the fixups added (inlined bpf_loop spills) counts too
        log.parts[depth_at] = _stack_depth_line(v)
    depth = max(v.max_stack.values(), default=0)
    starts = patcher.subprog_starts[:-1] or [0]
    return VerifierResult(0, log.text(), insns, v.used_maps, stack_depth=(depth + 7) // 8 * 8,
                          verified_insns=v.insn_processed,
                          subprog_starts=starts,
                          extra={"insn_processed": v.insn_processed, "time_us": elapsed_us,
                                 "max_stack": dict(v.max_stack),
                                 "linfo_insn_offs": list(patcher.linfo_offs),
                                 "linfo_ids": list(patcher.linfo_ids),
                                 "subprog_ids": list(patcher.subprog_ids[:-1]),
                                 "exception_cb": exc_start,
                                 "insn_aux": patcher.aux})
