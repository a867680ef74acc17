# mypy: disable-error-code="misc"
"""State pruning (``is_state_visited`` / ``states_equal``) and loop detection.

At a prune point the current state is compared with the checkpoints already stored there.
If a finished checkpoint is at least as general as the current state — every register
range of the old state contains the new one, stack slots match, same references — the
current path is safe and is cut. Checkpoints still being explored (``branches > 0``) lie
on the current path: an exact match there is an infinite loop.

Two things make "at least as general" cheaper than comparing everything, as in 6.18:

* liveness: a finished checkpoint's dead registers (``compute_live_registers``) are
  cleared (:meth:`PruneMixin.clean_verifier_state`), so any current value matches them;
* precision: a scalar the old state's continuation never needed exactly (not ``precise``,
  see :mod:`.precision`) matches any scalar. After a prune, what the old state needed
  precise is made precise along the current path (``propagate_precision``).

Only finished checkpoints (``branches == 0``) are used for pruning, so every continuation
of the old state has been explored and its precision and liveness marks are complete; that
holds inside loops too (6.18 compares them ``NOT_EXACT`` unless an iterator or ``may_goto``
loop pruned against a state still being explored, which pybpf never does). Unprivileged
programs treat every scalar as precise (the kernel marks them all precise there).
The SCC visits of 6.18 (``maybe_enter_scc``/``maybe_exit_scc``) are tracked for the
level-2 log's ``SCC enter``/``SCC exit`` lines.
"""

from __future__ import annotations

import errno
import threading
from operator import attrgetter
from typing import TYPE_CHECKING

from pybpf.verifier import backedges
from pybpf.verifier.callbacks import force_loop_precision
from pybpf.verifier.dynptr import dynptr_slots_equal
from pybpf.verifier.iters import cur_iter_active, iter_active_depths_differ, iters_equal
from pybpf.verifier.log import format_state
from pybpf.verifier.regs import (
    BPF_ADD_CONST,
    PTR_MAYBE_NULL,
    Reg,
    RegType,
    mark_not_init,
    mark_unknown,
)
from pybpf.verifier.state import (
    STACK_DYNPTR,
    STACK_INVALID,
    STACK_IRQ_FLAG,
    STACK_ITER,
    STACK_MISC,
    STACK_SPILL,
    STACK_ZERO,
    FuncState,
    VState,
)

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

_EXACT_FIELDS = ("type", "off", "var_off", "smin", "smax", "umin", "umax", "s32_min", "s32_max",
                 "u32_min", "u32_max", "map_ptr", "range", "mem_size", "frameno", "subprogno",
                 "btf", "btf_id", "dynptr_id")


# ``enum exact_level``; LOOP: every scalar compared by range (all scalars precise, as for
# unprivileged programs), while a register the old state never had still matches anything.
NOT_EXACT, EXACT, LOOP = 0, 1, 2


class _IdMap:
    def __init__(self) -> None:
        self.m: dict[int, int] = {}
        self.r: dict[int, int] = {}
        self.tmp = 0

    def check_scalar(self, old: int, cur: int) -> bool:
        """``check_scalar_ids``: an old scalar without id constrains nothing; a current one
        without id gets a fresh id that must not alias a linked old register."""
        if not old:
            return True
        if not cur:
            self.tmp -= 1
            cur = self.tmp
        if not self.check(old, cur):
            return False
        # a delta-linked id and its base must map alike: old r3 = r2 + c must not match a
        # current r3 derived from some other register than the one r2 maps to
        return not old & BPF_ADD_CONST or self.check(old & ~BPF_ADD_CONST, cur & ~BPF_ADD_CONST)

    def check(self, old: int, cur: int) -> bool:
        if not old and not cur:
            return True
        if not old or not cur:
            return not old
        a = self.m.get(old)
        b = self.r.get(cur)
        if a is None and b is None:
            self.m[old] = cur
            self.r[cur] = old
            return True
        return a == cur and b == old


#: ``env->explore_alu_limits`` of the verification running in this thread: once a register
#: offset was masked, pruning compares scalars exactly (everything ``regsafe`` memcmps up
#: to ``id``), so every path's ``alu_limit`` is seen (``is_state_visited`` sets it)
_ALU_LIMITS = threading.local()
_ALU_LIMITS_FIELDS = ("type", "off", "var_off", "smin", "smax", "umin", "umax", "s32_min",
                      "s32_max", "u32_min", "u32_max")


def _range_within(o: Reg, c: Reg) -> bool:
    return (o.umin <= c.umin and o.umax >= c.umax and o.smin <= c.smin and o.smax >= c.smax
            and o.u32_min <= c.u32_min and o.u32_max >= c.u32_max and o.s32_min <= c.s32_min
            and o.s32_max >= c.s32_max)


def regs_exact(o: Reg, c: Reg, ids: _IdMap) -> bool:
    for f in _EXACT_FIELDS:
        if getattr(o, f) != getattr(c, f):
            return False
    return ids.check(o.id, c.id) and ids.check(o.ref_obj_id, c.ref_obj_id)


def regsafe(o: Reg, c: Reg, ids: _IdMap, exact: int) -> bool:
    """True if the old register being safe implies the current one is."""
    if exact == EXACT:
        return regs_exact(o, c, ids)
    if o.type == RegType.NOT_INIT:
        return True
    if o.type != c.type:
        return False
    b = o.type & 0xFF
    if b == RegType.SCALAR_VALUE:
        if getattr(_ALU_LIMITS, "on", False):  # explore_alu_limits (verifier/spectre.py): scalars must be equal
            return all(getattr(o, f) == getattr(c, f) for f in _ALU_LIMITS_FIELDS) \
                and ids.check_scalar(o.id, c.id)
        if not o.precise and exact == NOT_EXACT:
            return True
        # linked scalars: the same kind of link (none, 64- or 32-bit delta), the same delta
        if o.id and (o.id & BPF_ADD_CONST) != (c.id & BPF_ADD_CONST):
            return False
        if o.id & BPF_ADD_CONST and o.off != c.off:
            return False
        return ids.check_scalar(o.id, c.id) and _range_within(o, c) and o.var_off.contains(c.var_off)
    if b in (RegType.PTR_TO_MAP_KEY, RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_MEM, RegType.PTR_TO_BUF,
             RegType.PTR_TO_TP_BUFFER):
        return (o.off == c.off and o.map_ptr is c.map_ptr and o.mem_size == c.mem_size
                and o.dynptr_id == c.dynptr_id
                and _range_within(o, c) and o.var_off.contains(c.var_off)
                and ids.check(o.id, c.id) and ids.check(o.ref_obj_id, c.ref_obj_id))
    if b in (RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META):
        if o.range > c.range or o.off != c.off or not ids.check(o.id, c.id):
            return False
        return _range_within(o, c) and o.var_off.contains(c.var_off)
    if b == RegType.PTR_TO_STACK:
        return regs_exact(o, c, ids) and o.frameno == c.frameno
    if b == RegType.PTR_TO_ARENA:  # any arena address is as safe as any other
        return True
    return regs_exact(o, c, ids)


_INVALID_SLOT = [STACK_INVALID] * 8
_UNBOUND = Reg()
mark_unknown(_UNBOUND)


def _scalar_reg_for_stack(slot, allow_uninit: bool) -> Reg | None:
    """``scalar_reg_for_stack``: a 64-bit scalar spill, or all-MISC bytes read as an
    unbounded scalar, so spill and MISC slots compare (with ids) like registers."""
    if slot is None:
        return None
    if all(t == STACK_SPILL for t in slot.types) and slot.spilled is not None and \
            slot.spilled.type == RegType.SCALAR_VALUE:
        return slot.spilled
    if all(t == STACK_MISC or (t == STACK_INVALID and allow_uninit) for t in slot.types):
        return _UNBOUND
    return None


def stacksafe(o: FuncState, c: FuncState, ids: _IdMap, exact: int, allow_uninit: bool = True) -> bool:
    """``stacksafe``: every slot byte the old state has must be at least as initialised and
    as typed in the current one (MISC accepts ZERO, a 64-bit scalar spill and all-MISC
    bytes compare as scalars)."""
    nc = len(c.stack)
    for spi, os_ in enumerate(o.stack):
        cs = c.stack[spi] if spi < nc else None
        otypes = os_.types
        if exact == EXACT:
            if otypes != (cs.types if cs is not None else _INVALID_SLOT):
                return False
            if cs is None:
                continue
        b = 0
        while b < 8:
            ot = otypes[b]
            if ot == STACK_INVALID:
                b += 1
                continue
            if allow_uninit and ot == STACK_MISC:
                b += 1
                continue
            if cs is None:
                return False
            oreg = _scalar_reg_for_stack(os_, allow_uninit)
            creg = _scalar_reg_for_stack(cs, allow_uninit)
            if oreg is not None and creg is not None:
                if not regsafe(oreg, creg, ids, exact):
                    return False
                break
            ct = cs.types[b]
            if ot == STACK_MISC and ct == STACK_ZERO:
                b += 1
                continue
            if ot != ct:
                return False
            if b == 7 and ot == STACK_ITER and not iters_equal(os_.iter, cs.iter, ids.check):
                return False
            if b == 7 and ot == STACK_DYNPTR and not dynptr_slots_equal(os_.dynptr, cs.dynptr, ids.check):
                return False
            if b == 7 and ot == STACK_IRQ_FLAG and (
                    os_.irq is None or cs.irq is None or os_.irq[1] != cs.irq[1]
                    or not ids.check(os_.irq[0], cs.irq[0])):
                return False
            if b == 7 and ot == STACK_SPILL:
                if os_.spilled is None or cs.spilled is None:
                    return False
                if not regsafe(os_.spilled, cs.spilled, ids, exact):
                    return False
            b += 1
    if exact == EXACT and nc > len(o.stack):
        for spi in range(len(o.stack), nc):
            if any(t != STACK_INVALID for t in c.stack[spi].types):
                return False
    return True


def func_states_equal(o: FuncState, c: FuncState, ids: _IdMap, exact: int, allow_uninit: bool = True,
                      live: int = 0xFFFF) -> bool:
    if o.callsite != c.callsite or o.callback_depth > c.callback_depth:
        return False
    for i in range(11):
        if live >> i & 1 and not regsafe(o.regs[i], c.regs[i], ids, exact):
            return False
    return stacksafe(o, c, ids, exact, allow_uninit)


def states_equal(o: VState, c: VState, exact: int, allow_uninit: bool = True,
                 live: list[int] | None = None) -> bool:
    """``live`` (per frame: registers live at the frame's instruction) limits the register
    comparison as 6.18's ``func_states_equal`` does with ``live_regs_before``; without it
    every register is compared (checkpoints are cleaned of dead registers instead)."""
    if len(o.frames) != len(c.frames):
        return False
    if o.speculative and not c.speculative:  # speculation never prunes a real path
        return False
    ids = _IdMap()
    if len(o.refs) != len(c.refs):
        return False
    for a, b in zip(o.refs, c.refs):
        if not ids.check(a.id, b.id) or a.kind != b.kind:
            return False
        if a.kind in ("lock", "res_lock", "res_lock_irq") and a.ptr != b.ptr:
            return False
    if (o.active_lock is None) != (c.active_lock is None):
        return False
    if o.active_lock is not None and c.active_lock is not None and o.active_lock[1] != c.active_lock[1]:
        return False
    if o.active_rcu != c.active_rcu or o.active_preempt_locks != c.active_preempt_locks \
            or o.in_sleepable != c.in_sleepable \
            or bool(o.active_irq_id) != bool(c.active_irq_id) \
            or not ids.check(o.active_irq_id, c.active_irq_id):
        return False
    if live is not None:
        return all(func_states_equal(fo, fc, ids, exact, allow_uninit, m)
                   for fo, fc, m in zip(o.frames, c.frames, live))
    return all(func_states_equal(fo, fc, ids, exact, allow_uninit) for fo, fc in zip(o.frames, c.frames))


_REG_SIG = attrgetter("type", "off", "var_off", "smin", "smax", "umin", "umax", "s32_min",
                      "s32_max", "u32_min", "u32_max", "range")


def reg_signature(f: FuncState) -> tuple:
    """Cheap summary of a frame's registers (ids left out) to reject non-loops quickly."""
    return tuple(map(_REG_SIG, f.regs))


def states_maybe_looping(o: VState, c: VState, sig: tuple | None = None) -> bool:
    if len(o.frames) != len(c.frames):
        return False
    ids = _IdMap()
    fo, fc = o.frames[-1], c.frames[-1]
    return all(regs_exact(fo.regs[i], fc.regs[i], ids) for i in range(11))


class PruneMixin:
    def init_prune(self: Verifier) -> None:
        # checkpoints per explored_bucket(), oldest first (searched newest first); one with
        # branches == 0 is finished and can prune
        self.explored: dict[int, list[VState]] = {}
        self.by_sig: dict[int, dict[tuple, list[VState]]] = {}  # same, by register signature
        self.explored_size = 0
        self.free_list_size = 0
        self.uncleaned = 0  # finished checkpoints not cleaned yet
        # BPF_F_TEST_STATE_FREQ: a checkpoint at every prune point (selftests use it);
        # honoured for privileged loads only
        self.test_state_freq = bool(self.inp.prog_flags & (1 << 3)) and bool(self.inp.bpf_capable)
        self.total_states = 0
        self.peak_states = 0
        self.max_states_per_insn = 0
        self.live_regs: list[int] | None = None  # compute_live_registers, set by run()
        self.scc: list[int] = []  # compute_scc, set by run()
        self.scc_entry: dict[tuple[tuple[int, ...], int], VState | None] = {}

    def free_states(self: Verifier) -> None:
        """``free_states``: forget every checkpoint (and loop bookkeeping) once a
        ``do_check_common`` pass is over; the counters behind the statistics line go on."""
        self.explored = {}
        self.by_sig = {}
        self.uncleaned = 0
        self.scc_entry = {}

    def update_branch_counts(self: Verifier, st: VState | None) -> None:
        while st is not None:
            st.branches -= 1
            if st.branches > 0:
                break
            if self.scc_entry:
                self.maybe_exit_scc(st)
            if getattr(st, "checkpoint", False):
                if st.in_free_list:  # type: ignore[attr-defined]
                    self.free_list_size -= 1  # an evicted checkpoint is finished: free it
                else:
                    self.uncleaned += 1  # finished: clean_live_states may clean it
            st = st.parent

    def clean_verifier_state(self: Verifier, st: VState) -> None:
        """``clean_verifier_state``: registers dead at the state's position (per frame: the
        current instruction, or the call a caller frame waits at) become NOT_INIT, and
        stack slots no continuation reads become invalid."""
        st.cleaned = True  # type: ignore[attr-defined]
        self.uncleaned -= 1
        live = self.live_regs
        if live is None:
            return
        sl = self.stack_live
        sl.query_init(st)
        last = len(st.frames) - 1
        for i, func in enumerate(st.frames):
            ip = st.insn_idx if i == last else st.frames[i + 1].callsite
            mask = live[ip] if 0 <= ip < len(live) else 0xFFFF
            for r in range(10):
                if not mask >> r & 1 and func.regs[r].type != RegType.NOT_INIT:
                    mark_not_init(func.regs[r])
            for spi, slot in enumerate(func.stack):
                if not sl.slot_alive(func.frameno, spi):
                    slot.spilled = None
                    slot.dynptr = None
                    slot.types = [STACK_INVALID] * 8

    def clean_live_states(self: Verifier, idx: int, cur: VState, lst: list[VState]) -> None:
        """``clean_live_states``: clean the finished checkpoints here, once, when a state
        with the same call sites arrives (their liveness marks are complete by then)."""
        for old in lst:
            if old.insn_idx != idx or old.branches or old.cleaned:  # type: ignore[attr-defined]
                continue
            if backedges.incomplete_read_marks(self, old):
                continue
            if len(old.frames) != len(cur.frames):
                continue
            if any(a.callsite != b.callsite for a, b in zip(old.frames, cur.frames)):
                continue
            self.clean_verifier_state(old)

    # -- SCC visits (log only) ---------------------------------------------------------------
    def scc_callchain(self: Verifier, st: VState) -> tuple[tuple[int, ...], int] | None:
        """``compute_scc_callchain``: the call sites down to the topmost frame whose
        position lies in a loop, and that loop's id; None outside loops."""
        scc = self.scc
        sites: list[int] = []
        last = len(st.frames) - 1
        for i in range(last + 1):
            ip = st.insn_idx if i == last else st.frames[i + 1].callsite
            k = scc[ip] if 0 <= ip < len(scc) else 0
            if k:
                return tuple(sites), k
            if i == last:
                return None
            sites.append(ip)
        return None

    @staticmethod
    def _fmt_scc(cc: tuple[tuple[int, ...], int]) -> str:
        text = "("
        for c in cc[0]:
            if not c:
                break
            text += f"{c},"
        return text + f"{cc[1]})"

    def maybe_enter_scc(self: Verifier, st: VState) -> None:
        cc = self.scc_callchain(st)
        if cc is None:
            return
        if self.scc_entry.get(cc) is None:
            self.scc_entry[cc] = st
            if self.log.enabled and self.log.level & 2:
                self.log(f"SCC enter {self._fmt_scc(cc)}\n")

    def maybe_exit_scc(self: Verifier, st: VState) -> None:
        cc = self.scc_callchain(st)
        if cc is None or self.scc_entry.get(cc) is not st:
            return
        if self.log.enabled and self.log.level & 2:
            self.log(f"SCC exit {self._fmt_scc(cc)}\n")
        self.scc_entry[cc] = None
        backedges.exit_scc(self, cc)  # precision along the loop's back-edges

    def _loop_converged(self: Verifier, old: VState, idx: int) -> bool:
        """A loop iteration (iterator ``_next``, ``may_goto``) pruned against an earlier
        one still on the path: the hit, its precision, and the SCC back-edge along which
        precision is propagated when the loop is left (:mod:`.backedges`)."""
        old.hit_cnt += 1  # type: ignore[attr-defined]
        if idx in self.cfg.jmp_points:
            self.push_insn_history()
        self.propagate_precision(old)
        cc = self.scc_callchain(old)
        if cc is not None:
            backedges.add_scc_backedge(self, cc, old, idx)
        return True

    def is_state_visited(self: Verifier, idx: int) -> bool:
        """``is_state_visited``: prune the current path if a finished checkpoint here is at
        least as general; detect an infinite loop against one still being explored;
        otherwise maybe store the current state as a new checkpoint.

        Checkpoints are tried newest first, as the kernel keeps them; one that keeps missing
        is evicted (``miss_cnt > hit_cnt * n + n``) and stays counted in ``peak_states``
        until its exploration finishes."""
        _ALU_LIMITS.on = getattr(self, "explore_alu_limits", False)
        cur = self.state
        force = self.test_state_freq or idx in self.cfg.force_checkpoints or len(cur.hist) > 40
        add_new = force or (self.jmps_processed - self.prev_jmps_processed >= 2
                            and self.insn_processed - self.prev_insn_processed >= 8)
        bucket = self.explored_bucket(idx)
        lst = self.explored.get(bucket)
        states_cnt = 0
        sig = None
        if lst:
            cur.insn_idx = idx
            if self.uncleaned:
                self.clean_live_states(idx, cur, lst)
            sigmap = self.by_sig.get(idx)
            looping: set[int] | None = None
            if sigmap:
                sig = reg_signature(cur.cur)
                same_sig = sigmap.get(sig)
                if same_sig:
                    looping = {id(x) for x in same_sig}
            quiet = not force and self.jmps_processed - self.prev_jmps_processed < 20 and \
                self.insn_processed - self.prev_insn_processed < 100
            mode = NOT_EXACT if self.bpf_capable else LOOP
            n = len(lst)
            i = n - 1
            while i >= 0:
                old = lst[i]
                states_cnt += 1
                if old.insn_idx != idx:  # another instruction hashed to the same list
                    i -= 1
                    continue
                if self.insns[idx].code == 0xE5 and old.may_goto_depth != cur.may_goto_depth \
                        and states_equal(old, cur, LOOP, live=self.frame_live_regs(old)):
                    # may_goto: another iteration within the ranges of an earlier one
                    # (RANGE_WITHIN) has converged
                    return self._loop_converged(old, idx)
                if old.branches and self.is_iter_next_insn(idx):
                    # an iterator's _next on the current path (verifier/iters.py): one more
                    # iteration within the ranges of the previous one, iterator still
                    # ACTIVE, has converged (RANGE_WITHIN)
                    if states_equal(old, cur, LOOP, live=self.frame_live_regs(old)) and cur_iter_active(self):
                        return self._loop_converged(old, idx)
                    if quiet:
                        add_new = False
                elif old.branches and idx in self.calls_callback:
                    # a callback call site on the current path: the next iteration is
                    # safe if it stays within the ranges of this one (RANGE_WITHIN)
                    if states_equal(old, cur, LOOP):
                        old.hit_cnt += 1  # type: ignore[attr-defined]
                        if idx in self.cfg.jmp_points:
                            self.push_insn_history()
                        self.propagate_precision(old)
                        force_loop_precision(old, cur)
                        return True
                    if quiet:
                        add_new = False
                elif old.branches:
                    if looping is not None and id(old) in looping and states_maybe_looping(old, cur) and \
                            old.may_goto_depth == cur.may_goto_depth and \
                            old.callback_unroll_depth == cur.callback_unroll_depth and \
                            states_equal(old, cur, EXACT) and not iter_active_depths_differ(old, cur):
                        self.verbose(f"infinite loop detected at insn {idx}\n")
                        self.verbose("cur state:" + format_state(cur.cur) + "\n")
                        self.verbose("old state:" + format_state(old.frames[cur.curframe]) + "\n")
                        from pybpf.verifier.cfg import VerifyError
                        raise VerifyError(errno.EINVAL, "infinite loop")
                    if quiet:
                        add_new = False
                elif ((loop := backedges.incomplete_read_marks(self, old)) is not None
                      and states_equal(old, cur, LOOP, self.allow_uninit_stack, self.frame_live_regs(old))) \
                        or (loop is None and states_equal(old, cur, mode, self.allow_uninit_stack)):
                    old.hit_cnt += 1  # type: ignore[attr-defined]
                    if idx in self.cfg.jmp_points:
                        self.push_insn_history()
                    self.propagate_precision(old)
                    if loop:
                        backedges.add_scc_backedge(self, loop, old, idx)
                    return True
                # miss
                if add_new:
                    old.miss_cnt += 1  # type: ignore[attr-defined]
                    k = 64 if old.branches and idx in self.cfg.force_checkpoints else 3
                    if old.miss_cnt > old.hit_cnt * k + k:  # type: ignore[attr-defined]
                        self.evict_state(bucket, i, old)
                i -= 1
        if states_cnt > self.max_states_per_insn:
            self.max_states_per_insn = states_cnt
        if not add_new:
            return False
        self.total_states += 1
        self.explored_size += 1
        if self.explored_size + self.free_list_size > self.peak_states:
            self.peak_states = self.explored_size + self.free_list_size
        self.prev_jmps_processed = self.jmps_processed
        self.prev_insn_processed = self.insn_processed
        if self.bpf_capable:  # forget inherited precision: see precision.py
            self.mark_all_scalars_imprecise(cur)
        new = cur.copy()
        new.branches = 1
        new.parent = cur.parent
        new.insn_idx = idx
        new.checkpoint = True  # type: ignore[attr-defined]
        new.hit_cnt = 0  # type: ignore[attr-defined]
        new.miss_cnt = 0  # type: ignore[attr-defined]
        new.in_free_list = False  # type: ignore[attr-defined]
        new.cleaned = False  # type: ignore[attr-defined]
        cur.parent = new
        cur.branches = 1
        cur.first_insn_idx = idx
        cur.hist = []
        self.explored.setdefault(bucket, []).append(new)
        self.maybe_enter_scc(new)
        if sig is None:
            sig = reg_signature(cur.cur)
        new.sig = sig  # type: ignore[attr-defined]
        self.by_sig.setdefault(idx, {}).setdefault(sig, []).append(new)
        return False

    def frame_live_regs(self: Verifier, st: VState) -> list[int]:
        """Registers live at each frame's instruction (``frame_insn_idx``)."""
        live = self.live_regs
        last = len(st.frames) - 1
        out = []
        for i in range(last + 1):
            ip = st.insn_idx if i == last else st.frames[i + 1].callsite
            out.append(live[ip] if live is not None and 0 <= ip < len(live) else 0xFFFF)
        return out

    def is_iter_next_insn(self: Verifier, idx: int) -> bool:
        """``is_iter_next_insn``: a forced checkpoint that is an iterator ``_next`` call."""
        if idx not in self.cfg.force_checkpoints:
            return False
        from pybpf.verifier.kfuncs import is_iter_next_call

        return is_iter_next_call(self, self.insns[idx])

    def explored_bucket(self: Verifier, idx: int) -> int:
        """``explored_state``: checkpoints live in ``prog->len`` lists hashed by instruction
        and call site; ``max_states_per_insn`` counts a whole list, collisions included."""
        return ((idx ^ self.state.cur.callsite) & 0xFFFFFFFF) % len(self.insns)

    def evict_state(self: Verifier, bucket: int, pos: int, st: VState) -> None:
        """Drop a checkpoint that keeps missing from the list of candidates; it is freed
        (leaves ``peak_states``) once its own exploration is finished."""
        del self.explored[bucket][pos]
        sigmap = self.by_sig.get(st.insn_idx, {})
        same_sig = sigmap.get(st.sig, [])  # type: ignore[attr-defined]
        for j, x in enumerate(same_sig):
            if x is st:  # identity: VState's dataclass == compares contents
                del same_sig[j]
                break
        if not same_sig:
            sigmap.pop(st.sig, None)  # type: ignore[attr-defined]
        self.explored_size -= 1
        st.in_free_list = True  # type: ignore[attr-defined]
        self.free_list_size += 1
        if st.branches == 0:
            self.free_list_size -= 1
            if not st.cleaned:  # type: ignore[attr-defined]
                self.uncleaned -= 1


__all__ = ["EXACT", "LOOP", "NOT_EXACT", "PTR_MAYBE_NULL", "PruneMixin", "states_equal"]
