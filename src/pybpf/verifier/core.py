"""The path walk (``do_check``) and the verifier environment (``struct bpf_verifier_env``).

:class:`Verifier` explores every path from instruction 0 depth-first, one instruction at a
time, keeping the abstract state of registers and stack. Conditional jumps whose outcome is
unknown push the other branch for later; at prune points the current state is compared with
states already proven safe there (``is_state_visited``). The per-class checks live in the
mixins (:mod:`.alu`, :mod:`.mem`, :mod:`.jmp`, :mod:`.calls`).
"""

from __future__ import annotations

import errno
from typing import Any

from pybpf.isa.insn import Insn
from pybpf.verifier.alu import AluMixin
from pybpf.verifier.arena import BPF_MAP_TYPE_ARENA
from pybpf.verifier.btf_info import verbose_linfo
from pybpf.verifier.callbacks import SYNC_CALLBACK_HELPERS, CallbacksMixin
from pybpf.verifier.calls import CallsMixin
from pybpf.verifier.cfg import (
    CfgInfo,
    VerifyError,
    add_subprogs,
    check_cfg,
    check_subprogs,
)
from pybpf.verifier.graph import is_sync_callback_kfunc_call
from pybpf.verifier.jmp import JmpMixin
from pybpf.verifier.kfuncs import (
    SPIN_ALLOWED_KFUNCS,
    add_kfunc_calls,
    check_kfunc_call,
    is_iter_next_call,
    kfunc_name,
    kfunc_num_params,
)
from pybpf.verifier.liveness import compute_live_regs, compute_scc
from pybpf.verifier.log import VLog, format_state, live_regs_table, vlog_alignment
from pybpf.verifier.mem import MemMixin
from pybpf.verifier.precision import PrecisionMixin
from pybpf.verifier.prune import PruneMixin
from pybpf.verifier.regs import (
    PTR_MAYBE_NULL,
    RegType,
    mark_known,
    mark_not_init,
    mark_unknown,
)
from pybpf.verifier.stack_liveness import StackLiveness
from pybpf.verifier.state import FuncState, VState
from pybpf.verifier.zext import note_reg_arg

BPF_COMPLEXITY_LIMIT_INSNS = 1_000_000
BPF_COMPLEXITY_LIMIT_JMP_SEQ = 8192
BPF_F_STRICT_ALIGNMENT = 1 << 0
BPF_F_ANY_ALIGNMENT = 1 << 1
MAX_BPF_STACK = 512
BPF_FUNC_tail_call = 12
#: ``bpf_enable_priv_stack``: program types whose big frames may use a private stack
PRIV_STACK_PROG_TYPES = frozenset({2, 5, 7, 17})  # kprobe, tracepoint, perf_event, raw_tp
PRIV_STACK_MIN_SIZE = 64  # BPF_PRIV_STACK_MIN_SIZE


class Verifier(AluMixin, MemMixin, JmpMixin, CallsMixin, CallbacksMixin, PruneMixin, PrecisionMixin):
    insn_idx: int
    prev_insn_idx: int
    insn_processed: int
    jmps_processed: int
    prev_jmps_processed: int
    prev_insn_processed: int
    cfg: CfgInfo
    id_gen: int
    state: VState
    attach: Any = None  # attach_target.AttachTarget of a BTF-attached program
    explore_alu_limits = False  # a register offset was masked: exact scalar pruning (spectre.py)

    def __init__(self, inp: Any) -> None:
        from pybpf.progs.ops import find_prog_type

        self.inp = inp
        self.insns: list[Insn] = list(inp.insns)
        self.prog_type = inp.prog_type
        self.prog_ops = find_prog_type(inp.prog_type)
        self.prog_info = _ProgInfo(inp)
        self.log = VLog(inp.log_level)
        self.errors: list[str] = []
        self.allow_ptr_leaks = bool(inp.perfmon_capable)
        self.allow_uninit_stack = bool(inp.perfmon_capable)
        self.bpf_capable = bool(inp.bpf_capable)
        self.strict_alignment = bool(inp.prog_flags & BPF_F_STRICT_ALIGNMENT)
        if inp.prog_flags & BPF_F_ANY_ALIGNMENT:
            self.strict_alignment = False
        self.aux: list[dict[str, Any]] = [{} for _ in self.insns]
        self.id_gen = 0
        self.insn_idx = 0
        self.prev_insn_idx = -1
        self.insn_processed = 0
        self.jmps_processed = 0
        self.prev_jmps_processed = 0
        self.prev_insn_processed = 0
        self.stack: list[tuple[VState, int, int]] = []
        self.log_positions: list[int] = []  # log end at each push_stack (for pop_log)
        self.state: VState = VState([FuncState(0, 0, -1)])
        self.cfg = CfgInfo([])
        self.used_maps: list[Any] = []
        self.map_by_insn: dict[int, Any] = {}
        self.nr_cpus = _nr_cpus()
        self.max_stack: dict[int, int] = {}
        self.scratched = 0
        self.calls_callback: set[int] = set()  # sync callback helper call sites
        # func_info / line_info (verifier/btf_info.py): (insn_off, type_id) per subprogram,
        # line records, and the last one the log printed (``env->prev_linfo``)
        self.func_info: list[tuple[int, int]] = []
        self.linfo: list[Any] = []
        self.linfo_offs: list[int] = []
        self.prev_linfo = -1
        self.func_info_rec_size_hint = 0
        # bpf_throw (verifier/exceptions.py): a throw was seen; the current one ends the path
        self.seen_exception = False
        self.exception_exit = False
        self.exception_cb_start: int | None = None
        self.line_info_rec_size_hint = 0
        self.init_prune()
        self.init_precision()

    # -- logging --------------------------------------------------------------------------
    def verbose(self, text: str) -> None:
        self.errors.append(text)
        self.log(text)

    def fail(self, err: int, msg: str) -> None:
        self.verbose(msg)
        raise VerifyError(err, msg)

    def error(self, msg: str) -> None:  # cfg.py's logger interface
        self.verbose(msg)

    @property
    def regs(self):
        return self.state.frames[-1].regs

    def print_insn_state(self) -> None:
        """``print_insn_state``: the scratched registers/slots, appended to the previous
        instruction's line when nothing was printed since (``; R0=...``)."""
        log = self.log
        if not log.enabled:
            return
        if log.prev_log_pos and log.prev_log_pos == log.size:
            log.reset(log.prev_log_pos - 1)
            log(" " * vlog_alignment(log.prev_insn_print_pos) + ";")
        else:
            log(f"{self.insn_idx}:")
        log(format_state(self.state.cur, [r.id for r in self.state.refs],
                         log.scratched_regs, log.scratched_stack) + "\n")
        log.mark_clean()

    # -- registers ------------------------------------------------------------------------
    def check_reg_arg(self, regno: int, src: bool, mark: bool = True) -> None:
        if regno >= 11:
            self.fail(errno.EINVAL, f"R{regno} is invalid\n")
        self.log.scratched_regs |= 1 << regno
        reg = self.regs[regno]
        if src:
            if reg.type == RegType.NOT_INIT:
                self.fail(errno.EACCES, f"R{regno} !read_ok\n")
            if reg.subreg_def:
                note_reg_arg(self, regno, reg, True)
            return
        if regno == 10:
            self.fail(errno.EACCES, "frame pointer is read only\n")
        note_reg_arg(self, regno, reg, False)
        if mark:
            mark_unknown(reg)

    # -- branch stack ---------------------------------------------------------------------
    def push_stack(self, insn_idx: int, prev_idx: int) -> VState:
        st = self.state.copy()
        st.parent = self.state.parent
        if st.parent is not None:
            st.parent.branches += 1
        st.branches = 1
        self.stack.append((st, insn_idx, prev_idx))
        self.log_positions.append(self.log.size)
        if len(self.stack) > BPF_COMPLEXITY_LIMIT_JMP_SEQ:
            self.fail(errno.E2BIG, f"The sequence of {len(self.stack)} jumps is too complex.\n")
        return st

    def pop_stack(self) -> bool:
        if not self.stack:
            return False
        st, idx, prev = self.stack.pop()
        log_pos = self.log_positions.pop()
        if self.log.pop_log:
            self.log.reset(log_pos)
        self.state = st
        self.insn_idx = idx
        self.prev_insn_idx = prev
        return True

    # -- stack depth ----------------------------------------------------------------------
    def note_stack_depth(self, frameno: int, depth: int) -> None:
        sub = self.state.frames[frameno].subprogno
        d = self.max_stack.get(sub, 0)
        if depth > d:
            self.max_stack[sub] = depth

    # -- main -----------------------------------------------------------------------------
    def run(self) -> None:
        from pybpf.verifier.btf_info import check_btf_info, check_btf_info_early

        inp = self.inp
        check_btf_info_early(self)
        subs = add_subprogs(self.insns, self, inp.bpf_capable)
        add_kfunc_calls(self)
        from pybpf.verifier.exceptions import add_exception_callback
        subs = add_exception_callback(self, subs)
        if self.log.level & 2:
            self.log("".join(f"func#{i} @{s.start}\n" for i, s in enumerate(subs)))
        self.cfg = CfgInfo(subs)
        check_subprogs(self.insns, subs, self)
        check_btf_info(self)
        self.resolve_pseudo_ldimm64()
        check_cfg(self.insns, self.cfg, self, inp.bpf_capable,
                  lambda i: (i.code == 0x85 and i.src == 0 and i.imm in SYNC_CALLBACK_HELPERS)
                  or is_iter_next_call(self, i) or is_sync_callback_kfunc_call(self, i))
        self.calls_callback = {i for i in self.cfg.force_checkpoints
                               if self.insns[i].code == 0x85 and ((self.insns[i].src == 0
                               and self.insns[i].imm in SYNC_CALLBACK_HELPERS)
                               or is_sync_callback_kfunc_call(self, self.insns[i]))}
        from pybpf.verifier.global_funcs import mark_subprog_effects
        mark_subprog_effects(self)
        from pybpf.verifier.attach_target import check_attach_btf_id
        check_attach_btf_id(self)
        self.scc = compute_scc(self.insns)
        if self.log.level & 2:
            self.log(live_regs_table(self.insns, self.format_insn, self._call_num_params, self.scc))
        self.stack_live = StackLiveness(self.insns, [sp.start for sp in subs], self.cfg.prune_points,
                                        self.log if self.log.level & 2 else None)
        self.live_regs = compute_live_regs(self.insns, self._call_num_params)
        from pybpf.verifier.fastcall import mark_fastcall_patterns, remove_fastcall_spills_fills
        mark_fastcall_patterns(self)
        self.do_check_common(0)
        self.do_check_subprogs()
        remove_fastcall_spills_fills(self)  # may shrink stack depths: before they are checked
        self.check_max_stack_depth()

    def do_check_common(self, sub: int) -> None:
        """Walk every path from the start of subprogram ``sub`` (0: the program; else a
        global function, from the registers its prototype gives), then drop the explored
        states: each global function is pruned against its own states only."""
        from pybpf.verifier import global_funcs

        self.prev_linfo = -1
        info = self.cfg.subprogs[sub]
        frame = FuncState(0, sub, -1)
        st = VState([frame])
        st.first_insn_idx = info.start
        self.state = st
        self.insn_idx = info.start
        self.prev_insn_idx = -1
        self.log.mark_all_scratched()  # init_func_state
        if sub:
            frame.in_exception_callback = info.is_exception_cb
            global_funcs.init_subprog_args(self, sub, frame.regs)
            if info.is_exception_cb:
                from pybpf.verifier.exceptions import check_exception_callback_args
                check_exception_callback_args(self, sub)
        else:
            global_funcs.check_main_prototype(self)
            r1 = frame.regs[1]
            mark_unknown(r1)
            mark_known(r1, 0)
            r1.type = RegType.PTR_TO_CTX
        self.do_check()
        if self.log.pop_log:  # log_level 1 keeps only the path to an error
            self.log.reset(0)
        self.free_states()

    def do_check_subprogs(self) -> None:
        """``do_check_subprogs``: verify each global function a verified path called, until
        no new one is called."""
        from pybpf.verifier import global_funcs
        from pybpf.verifier.exceptions import exception_callback

        if exc_cb := exception_callback(self):  # every throw may call it
            self.cfg.subprogs[exc_cb].called = True
        while todo := global_funcs.subprogs_to_verify(self):
            for sub in todo:
                self.do_check_common(sub)
                if self.log.enabled:
                    self.log(f"Func#{sub} ('{global_funcs.subprog_name(self, sub)}') is safe for any "
                             "args that match its prototype\n")
                self.cfg.subprogs[sub].verified = True

    def resolve_pseudo_ldimm64(self) -> None:
        insns = self.insns
        n = len(insns)
        i = 0
        while i < n:
            ins = insns[i]
            cls = ins.code & 7
            if cls == 1 and (((ins.code & 0xE0) not in (0x60, 0x80)) or ins.imm != 0):
                self.fail(errno.EINVAL, "BPF_LDX uses reserved fields\n")
            if ins.code == 0x18:
                if i == n - 1 or insns[i + 1].code != 0 or insns[i + 1].dst != 0 or insns[i + 1].src != 0 \
                        or insns[i + 1].off != 0:
                    self.fail(errno.EINVAL, "invalid bpf_ld_imm64 insn\n")
                src = ins.src
                if src == 3:  # typed ksym (verifier/ksyms.py)
                    from pybpf.verifier.ksyms import check_pseudo_btf_id
                    check_pseudo_btf_id(self, i)
                if src == 0 or src in (3, 4):
                    i += 2
                    continue
                if src in (2, 6):
                    pass
                elif src in (1, 5):
                    if insns[i + 1].imm != 0:
                        self.fail(errno.EINVAL, "unrecognized bpf_ld_imm64 insn\n")
                else:
                    self.fail(errno.EINVAL, "unrecognized bpf_ld_imm64 insn\n")
                if src in (5, 6):
                    fa = self.inp.fd_array
                    if fa is None:
                        self.fail(errno.EPROTO, "fd_idx without fd_array is invalid\n")
                    fd = fa[ins.imm] if 0 <= ins.imm < len(fa) else -1
                else:
                    fd = ins.imm
                m = self.inp.map_by_fd(fd)  # a map, None (no such fd) or an errno
                if m is None or isinstance(m, int):
                    self.fail(m or errno.EBADF, f"fd {fd} is not pointing to valid bpf_map\n")
                if m not in self.used_maps:
                    self.used_maps.append(m)
                self.check_map_prog_compatibility(m)
                self.map_by_insn[i] = m
                if src in (2, 6):
                    off = insns[i + 1].imm & 0xFFFFFFFF
                    if off >= (1 << 29):
                        self.fail(errno.EINVAL, f"direct value offset of {off} is not allowed\n")
                    dva = getattr(m, "direct_value_addr", None)
                    if dva is None:
                        self.fail(errno.EINVAL, "no direct value access support for this map type\n")
                    err = direct_value_errno(m, off)
                    if err:
                        self.fail(err, f"invalid access to map value pointer, value_size="
                                       f"{m.value_size} off={off}\n")
                    self.aux[i]["map_off"] = off
                i += 2
                continue
            if not _in_insntable(ins.code):
                self.fail(errno.EINVAL, f"unknown opcode {ins.code:02x}\n")
            i += 1

    def abnormal_subprog_exit(self, sl: Any) -> None:
        """The hidden exit of a subprog at a tail call or an ``ld_abs``/``ld_ind``
        (``visit_abnormal_return_insn``): return to the caller from here, R0 shown at the
        caller's next instruction."""
        self.prepare_func_exit()
        sl.commit_write_marks()
        self.log.scratched_regs |= 1

    def check_map_prog_compatibility(self, m: Any) -> None:
        rec = getattr(m, "btf_record", None) or []
        kinds = {f[0] for f in rec}
        if self.prog_type in (2, 5, 7, 17, 24):  # is_tracing_prog_type
            if "list_head" in kinds or "rb_root" in kinds:
                self.fail(errno.EINVAL, "tracing progs cannot use bpf_{list_head,rb_root} yet\n")
            if "spin_lock" in kinds or "res_spin_lock" in kinds:
                self.fail(errno.EINVAL, "tracing progs cannot use bpf_spin_lock yet\n")
            if "timer" in kinds:
                self.fail(errno.EINVAL, "tracing progs cannot use bpf_timer yet\n")
            if "wq" in kinds:
                self.fail(errno.EINVAL, "tracing progs cannot use bpf_wq yet\n")
        mt = getattr(m, "map_type", 0)
        if mt in (19, 21):
            key = ("cgroup_storage", mt)
            prev = self.aux_global.get(key) if hasattr(self, "aux_global") else None
            if not hasattr(self, "aux_global"):
                self.aux_global: dict[Any, Any] = {}
            if prev is not None and prev is not m:
                self.fail(errno.EBUSY, "only one cgroup storage of each type is allowed\n")
            self.aux_global[key] = m
        elif mt == BPF_MAP_TYPE_ARENA:  # prog->aux->arena (verifier/arena.py)
            from pybpf.verifier.arena import check_arena_map
            check_arena_map(self, m)

    def do_check(self) -> None:
        """The path walk; an error a speculative path can end in instead of the program
        (verifier/spectre.py) ends only that path."""
        from pybpf.verifier import spectre

        resume = False
        while True:
            try:
                self._do_check(resume)
                return
            except VerifyError as e:
                if not spectre.recover_with_nospec(self, e):
                    raise
                self.stack_live.commit_write_marks()
                if not self._process_exit():
                    return
                resume = True

    def _do_check(self, resume: bool) -> None:
        insns = self.insns
        n = len(insns)
        st = self.state
        if not resume:
            st.parent = None
            st.branches = 1
        do_print_state = resume
        log = self.log
        prune_points = self.cfg.prune_points
        jmp_points = self.cfg.jmp_points
        while True:
            if self.insn_idx >= n:
                self.fail(errno.EFAULT, f"invalid insn idx {self.insn_idx} insn_cnt {n}\n")
            ins = insns[self.insn_idx]
            cls = ins.code & 7
            self.insn_processed += 1
            if self.insn_processed > BPF_COMPLEXITY_LIMIT_INSNS:
                self.fail(errno.E2BIG, f"BPF program is too large. Processed {self.insn_processed} insn\n")
            pruned = False
            self.cur_hist_ent = False
            self.hist_prev_idx = self.state.last_insn_idx = self.prev_insn_idx
            if self.insn_idx in prune_points:
                pruned = self.is_state_visited(self.insn_idx)
            if pruned:
                if log.enabled:
                    if do_print_state:
                        log(f"\nfrom {self.prev_insn_idx} to {self.insn_idx}"
                            f"{' (speculative execution)' if self.state.speculative else ''}: safe\n")
                    else:
                        log(f"{self.insn_idx}: safe\n")
                if not self._process_exit():
                    return
                do_print_state = True
                continue
            if self.insn_idx in jmp_points:
                self.push_insn_history()
            if log.enabled:
                if do_print_state and log.level & 2:
                    log(f"\nfrom {self.prev_insn_idx} to {self.insn_idx}"
                        f"{' (speculative execution)' if self.state.speculative else ''}:"
                        + format_state(self.state.cur, [r.id for r in self.state.refs]) + "\n")
                    do_print_state = False
                if log.scratched_regs or log.scratched_stack:
                    self.print_insn_state()
                if self.linfo:
                    verbose_linfo(self, self.insn_idx, "; ")
                log.prev_log_pos = log.size
                log(f"{self.insn_idx}: " + self.format_insn(self.insn_idx) + "\n")
                log.prev_insn_print_pos = log.size - log.prev_log_pos
                log.prev_log_pos = log.size
            self.prev_insn_idx = self.insn_idx
            if not self.state.speculative:  # sanitize_mark_insn_seen
                self.aux[self.insn_idx]["seen"] = True  # insn_aux_data.seen, for the dead-code passes
            elif self.aux[self.insn_idx].get("nospec"):  # a barrier ends a speculative path
                if not self._process_exit():
                    return
                do_print_state = True
                continue
            sl = self.stack_live
            if sl.cur_instance is None or sl.any_write:
                sl.reset_write_marks(self.state, self.insn_idx)
            else:  # bpf_reset_stack_write_marks, inlined for the common case
                sl.write_insn_idx = self.insn_idx
            if cls in (4, 7):
                self.check_alu_op(ins)
            elif cls == 1:
                self.check_load(ins)
            elif cls == 3:
                if (ins.code & 0xE0) == 0xC0:
                    self.check_atomic(ins)
                    sl.commit_write_marks()
                    self.insn_idx += 1
                    continue
                if (ins.code & 0xE0) != 0x60 or ins.imm != 0:
                    self.fail(errno.EINVAL, "BPF_STX uses reserved fields\n")
                self.check_store(ins)
            elif cls == 2:
                if (ins.code & 0xE0) != 0x60 or ins.src != 0:
                    self.fail(errno.EINVAL, "BPF_ST uses reserved fields\n")
                self.check_st(ins)
            elif cls in (5, 6):
                op = ins.code & 0xF0
                self.jmps_processed += 1
                if op == 0x80:
                    if (ins.code & 0x08) or (ins.src != 2 and ins.off != 0) or ins.src not in (0, 1, 2) \
                            or ins.dst != 0 or cls == 6:
                        self.fail(errno.EINVAL, "BPF_CALL uses reserved fields\n")
                    if self.state.active_lock is not None and (
                            (ins.src == 0 and ins.imm != 94)
                            or (ins.src == 2 and (ins.off or kfunc_name(self, ins)
                                                  not in SPIN_ALLOWED_KFUNCS))):
                        self.fail(errno.EINVAL, "function calls are not allowed while holding a lock\n")
                    if ins.src == 1:
                        self.check_func_call(ins)
                    elif ins.src == 2:
                        self.check_kfunc_call(ins)
                        if self.exception_exit:  # bpf_throw: process_bpf_exit_full
                            self.exception_exit = False
                            self.check_resource_leak(True, True, "bpf_throw")  # at any depth
                            sl.commit_write_marks()
                            if not self._process_exit():
                                return
                            do_print_state = True
                            continue
                    else:
                        self.check_helper_call(ins)
                        self.log.scratched_regs |= 0x3F  # caller-saved R0-R5 (check_reg_arg)
                        if ins.src == 0 and ins.imm == BPF_FUNC_tail_call and self.state.curframe:
                            # a tail call that succeeds leaves the subprog: that path returns
                            # an unknown R0 to the caller, the failed call continues below
                            self.push_stack(self.insn_idx + 1, self.insn_idx)
                            mark_unknown(self.regs[0])
                            self.abnormal_subprog_exit(sl)
                            continue
                elif op == 0x00:
                    if (ins.code & 0x08) or ins.src != 0 or ins.dst != 0 or (cls == 5 and ins.imm != 0) or \
                            (cls == 6 and ins.off != 0):
                        self.fail(errno.EINVAL, "BPF_JA uses reserved fields\n")
                    sl.commit_write_marks()
                    self.insn_idx += (ins.off if cls == 5 else ins.imm) + 1
                    continue
                elif op == 0x90:
                    if (ins.code & 0x08) or ins.imm != 0 or ins.src != 0 or ins.dst != 0 or cls == 6:
                        self.fail(errno.EINVAL, "BPF_EXIT uses reserved fields\n")
                    st = self.state
                    if st.active_lock is not None and not st.curframe:
                        self.fail(errno.EINVAL, "BPF_EXIT instruction in main prog cannot be used inside "
                                                "bpf_spin_lock-ed region\n")
                    if not st.curframe:
                        self.check_resource_leak(False, True, "BPF_EXIT instruction in main prog")
                    if st.curframe:
                        self.prepare_func_exit()
                        sl.commit_write_marks()
                        do_print_state = True
                        continue
                    self.check_return_code()
                    sl.commit_write_marks()
                    if not self._process_exit():
                        return
                    do_print_state = True
                    continue
                else:
                    self.check_cond_jmp_op(ins)
            elif cls == 0:
                mode = ins.code & 0xE0
                if mode in (0x20, 0x40):
                    self.check_ld_abs(ins)
                    self.log.scratched_regs |= 0x3F  # caller-saved R0-R5 (check_reg_arg)
                    if self.state.curframe:
                        # a failed load leaves the subprog with R0 = 0 (bpf_gen_ld_abs's
                        # hidden exit); the loaded value continues below
                        self.push_stack(self.insn_idx + 1, self.insn_idx)
                        mark_known(self.regs[0], 0)
                        self.abnormal_subprog_exit(sl)
                        continue
                elif mode == 0x00 and (ins.code & 0x18) == 0x18:
                    self.check_ld_imm(ins)
                    self.insn_idx += 1
                else:
                    self.fail(errno.EINVAL, "invalid BPF_LD mode\n")
            else:
                self.fail(errno.EINVAL, f"unknown insn class {cls}\n")
            sl.commit_write_marks()
            if self.state.speculative and self.aux[self.insn_idx].get("nospec_result"):
                if not self._process_exit():  # the barrier after a Spectre v4 store
                    return
                do_print_state = True
                continue
            self.insn_idx += 1

    def _call_num_params(self, ins: Insn) -> int | None:
        """Parameter count of a helper call for the live-register table (``None``: unknown,
        e.g. a helper this program type may not call)."""
        if ins.code == 0x85 and ins.src == 2:
            return kfunc_num_params(self, ins)
        if ins.code != 0x85 or ins.src != 0:
            return None
        try:
            proto = self.get_helper_proto(ins.imm)
        except Exception:
            return None
        if proto is None:
            return None
        n = 0
        for t in proto.arg_types:
            if not t:
                break
            n += 1
        return n

    def _process_exit(self) -> bool:
        self.log.mark_all_scratched()
        self.state.insn_idx = self.insn_idx
        self.update_branch_counts(self.state)
        self.stack_live.update_live_stack(self.state)
        return self.pop_stack()

    def format_insn(self, idx: int) -> str:
        from pybpf.helpers.protos import func_id_name
        from pybpf.isa.disasm import format_insn_kernel

        def helper_name(fid: int) -> str | None:
            return f"{func_id_name(fid)}" if func_id_name(fid) != "unknown" else None

        def call_target(ins: Insn) -> str | None:
            if ins.src == 1:
                return f"{ins.imm:+d}"
            if ins.src == 2:  # BTF type 0 (imm 0) has the empty name: "call #0"
                return kfunc_name(self, ins) or ("" if ins.imm == 0 else None)
            return None

        m = self.map_by_insn.get(idx)
        if m is not None:  # resolved map ld_imm64: the kernel prints the pointer it now holds
            ins = self.insns[idx]
            addr: Any = getattr(m, "addr", None)
            if ins.src in (2, 6):
                dva = getattr(m, "direct_value_addr", None)
                addr = dva(self.aux[idx].get("map_off", 0)) if callable(dva) else None
            if isinstance(addr, int):
                if ins.src in (1, 2) and not self.allow_ptr_leaks:
                    addr = 0  # print_bpf_insn hides map pointers from unprivileged users
                return f"(18) r{ins.dst} = {addr:#x}"
        try:
            return format_insn_kernel(self.insns, idx, helper_name=helper_name, call_target=call_target)
        except Exception:
            i = self.insns[idx]
            return f"({i.code:02x}) ?"

    # -- ld_imm64, ld_abs, kfunc ----------------------------------------------------------
    def check_ld_imm(self, ins: Insn) -> None:
        if ins.off != 0:
            self.fail(errno.EINVAL, "BPF_LD_IMM64 uses reserved fields\n")
        self.check_reg_arg(ins.dst, src=False)
        d = self.regs[ins.dst]
        nxt = self.insns[self.insn_idx + 1]
        if ins.src == 0:
            mark_known(d, (ins.imm & 0xFFFFFFFF) | ((nxt.imm & 0xFFFFFFFF) << 32))
            return
        mark_unknown(d)
        mark_known(d, 0)
        if ins.src == 4:
            d.type = RegType.PTR_TO_FUNC
            d.subprogno = self.cfg.subprog_of(self.insn_idx + ins.imm + 1)
            return
        if ins.src == 3:  # typed ksym: aux->btf_var (verifier/ksyms.py)
            from pybpf.verifier.ksyms import mark_ksym_reg
            mark_ksym_reg(self, d, self.insn_idx)
            return
        m = self.map_by_insn[self.insn_idx]
        d.map_ptr = m
        if ins.src in (2, 6) and getattr(m, "map_type", 0) == BPF_MAP_TYPE_ARENA:
            mark_unknown(d)  # an __arena global: its user address, a plain number
            return
        if ins.src in (2, 6):
            d.type = RegType.PTR_TO_MAP_VALUE
            d.off = self.aux[self.insn_idx].get("map_off", 0)  # id 0: one value, one lock
        else:
            d.type = RegType.CONST_PTR_TO_MAP

    def check_ld_abs(self, ins: Insn) -> None:
        ops = self.prog_ops
        if ops is None or not getattr(ops, "may_access_skb", _may_access_skb(self.prog_type)):
            self.fail(errno.EINVAL, "BPF_LD_[ABS|IND] instructions not allowed for this program type\n")
        if ins.dst != 0 or ins.off != 0 or (ins.code & 0x18) == 0x18 or \
                ((ins.code & 0xE0) == 0x20 and ins.src != 0):
            self.fail(errno.EINVAL, "BPF_LD_[ABS|IND] uses reserved fields\n")
        self.check_reg_arg(6, src=True)
        self.check_resource_leak(False, True, "BPF_LD_[ABS|IND]")
        if self.regs[6].type != RegType.PTR_TO_CTX:
            self.fail(errno.EINVAL, "at least one arg reg is expected ctx\n")
        if (ins.code & 0xE0) == 0x40:
            self.check_reg_arg(ins.src, src=True)
        for r in (0, 1, 2, 3, 4, 5):
            mark_not_init(self.regs[r])
        mark_unknown(self.regs[0])

    def check_kfunc_call(self, ins: Insn) -> None:
        check_kfunc_call(self, ins)  # verifier/kfuncs.py

    def check_max_stack_depth(self) -> None:
        """Combined stack of the deepest call chain must fit in 512 bytes."""
        subs = self.cfg.subprogs
        insns = self.insns

        def depth_of(s: int) -> int:
            d = self.max_stack.get(s, 0)
            return (d + 15) // 16 * 16

        # private stacks (x86-64 JIT): in tracing-like programs without tail calls, a
        # function using 64 bytes or more runs on its own stack, out of the combined count
        priv_ok = self.prog_type in PRIV_STACK_PROG_TYPES or (
            self.prog_type == 26 and self.inp.expected_attach_type != 28)  # TRACING, not iter
        priv_ok = priv_ok and not any(sp.has_tail_call for sp in subs)
        private: dict[int, bool] = {}

        def walk(s: int, frame: int, total: int, in_cb: bool = False, priv: bool = False) -> None:
            in_cb = in_cb or subs[s].is_cb
            if subs[s].has_ld_abs and in_cb:
                self.fail(errno.EINVAL, "cannot use BPF_LD_[ABS|IND] within callback\n")
            depth = depth_of(s)
            if priv and s not in private and depth >= PRIV_STACK_MIN_SIZE:
                private[s] = True
            if private.get(s):
                if depth > MAX_BPF_STACK:
                    self.fail(errno.EACCES, f"stack size of subprog {s} is {depth}. Too large\n")
            else:
                total += depth
                if total > MAX_BPF_STACK:
                    self.fail(errno.EACCES, f"combined stack size of {frame + 1} calls is {total}. "
                                            "Too large\n")
            start = subs[s].start
            end = subs[s + 1].start if s + 1 < len(subs) else len(insns)
            for i in range(start, end):
                ins = insns[i]
                if in_cb and ins.code == 0x85 and ins.src == 2 and \
                        (self.aux[i].get("kfunc") or (0, ""))[1] == "bpf_throw":
                    self.fail(errno.EINVAL, f"bpf_throw kfunc (insn {i}) cannot be called from "
                                            f"callback subprog {s}\n")
                if (ins.code == 0x85 and ins.src == 1) or (ins.code == 0x18 and ins.src == 4):
                    t = self.cfg.subprog_of(i + ins.imm + 1)
                    # a callback referenced here runs on top of this frame, unless it is a
                    # timer callback: that one starts its own chain (below)
                    if ins.code == 0x18 and subs[t].is_async_cb:
                        continue
                    if frame + 1 >= 8:
                        self.fail(errno.E2BIG, f"the call stack of {frame + 1} frames is too deep !\n")
                    walk(t, frame + 1, total, in_cb, priv)

        for s in reversed(range(len(subs))):  # callbacks' own chains first, as the kernel
            if s == 0 or subs[s].is_async_cb:
                if s:
                    private[s] = False
                walk(s, 0, 0, priv=s == 0 and priv_ok)


def direct_value_errno(m: Any, off: int) -> int:
    """The errno of ``map_direct_value_addr(map, off)`` failing, or 0: the map type's own
    rule (``direct_value_errno``), else the array one (one element, ``off`` inside it)."""
    check = getattr(m, "direct_value_errno", None)
    if callable(check):
        return int(check(off))
    return errno.EINVAL if getattr(m, "max_entries", 1) != 1 or off >= m.value_size else 0


def _may_access_skb(prog_type: int) -> bool:
    return prog_type in (1, 3, 4)


_INSNTABLE: set[int] | None = None


def _in_insntable(code: int) -> bool:
    global _INSNTABLE
    if _INSNTABLE is None:
        from pybpf.isa.opcodes import OPCODES
        _INSNTABLE = {getattr(s, "code", -1) for s in (OPCODES.values() if isinstance(OPCODES, dict) else OPCODES)}
    return code in _INSNTABLE and code != 0x8D  # callx is not in the kernel's table


def _nr_cpus() -> int:
    try:
        from pybpf.maps.core import num_possible_cpus
        return num_possible_cpus()
    except ImportError:  # pragma: no cover
        return 1


class _ProgInfo:
    """What a program type's callbacks may look at (``struct bpf_prog`` fields)."""

    def __init__(self, inp: Any) -> None:
        self.prog_type = inp.prog_type
        self.expected_attach_type = inp.expected_attach_type
        self.attach_btf_id = inp.attach_btf_id
        self.bpf_capable = inp.bpf_capable
        self.perfmon_capable = inp.perfmon_capable
        self.gpl_compatible = inp.gpl_compatible
        self.sleepable = bool(inp.prog_flags & (1 << 4))  # BPF_F_SLEEPABLE
        self.attach: Any = None  # attach_target.AttachTarget (check_attach_btf_id)


__all__ = ["PTR_MAYBE_NULL", "Verifier", "VerifyError"]
