# mypy: disable-error-code="misc"
"""Callback bodies of helpers (``push_callback_call`` and its ``set_*_callback_state``).

A helper that calls back into the program (``bpf_loop``, ``bpf_for_each_map_elem``,
``bpf_find_vma``) is verified as the kernel does: at the call site the verifier queues a
path that enters the callback subprogram in a new frame whose registers hold what the helper
will pass, and continues after the call on the current path. When the callback returns
(:meth:`CallbacksMixin.callback_exit`) R0 must be a scalar in the callback's return range,
and the path goes back to the *call site*, so the helper call is evaluated again with
whatever the callback left in the caller's stack: one more iteration. Iteration stops when
a call-site state is within the range of an earlier one still being explored
(``RANGE_WITHIN`` pruning in ``is_state_visited``), helped by widening the scalars that
changed but were never needed precise (``widen_imprecise_scalars``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.verifier.cfg import VerifyError
from pybpf.verifier.loop_inline import update_loop_inline_state
from pybpf.verifier.regs import (
    Reg,
    RegType,
    mark_known,
    mark_not_init,
    mark_unknown,
)
from pybpf.verifier.state import FuncState, VState

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

MAX_CALL_FRAMES = 8
FUNC_FOR_EACH_MAP_ELEM, FUNC_TIMER_SET_CALLBACK, FUNC_FIND_VMA, FUNC_LOOP, FUNC_USER_RINGBUF_DRAIN = \
    164, 170, 180, 181, 209
#: ``is_sync_callback_calling_function``: helpers whose callback runs before they return
SYNC_CALLBACK_HELPERS = frozenset({FUNC_FOR_EACH_MAP_ELEM, FUNC_FIND_VMA, FUNC_LOOP, FUNC_USER_RINGBUF_DRAIN})
SET_CALLBACK_HELPERS = SYNC_CALLBACK_HELPERS | {FUNC_TIMER_SET_CALLBACK}
#: map types with ``map_set_for_each_callback_args`` (array, hash and their variants)
FOR_EACH_MAP_TYPES = frozenset({1, 2, 5, 6, 9, 10})


def _known_zero_ptr(r: Reg, t: int, map_ptr: Any = None) -> None:
    mark_unknown(r)
    mark_known(r, 0)
    r.type = t
    r.map_ptr = map_ptr


def set_loop_callback_state(v: Verifier, caller: FuncState, callee: FuncState, callsite: int) -> None:
    """``callback_fn(u32 index, void *ctx)``: R1 an unknown scalar, R2 the caller's R3."""
    mark_unknown(callee.regs[1])
    callee.regs[2].assign(caller.regs[3])
    for r in (3, 4, 5):
        mark_not_init(callee.regs[r])


def set_map_elem_callback_state(v: Verifier, caller: FuncState, callee: FuncState, callsite: int) -> None:
    """``callback_fn(map, key, value, ctx)`` for the maps that support iteration."""
    m = caller.regs[1].map_ptr
    if getattr(m, "map_type", 0) not in FOR_EACH_MAP_TYPES:
        v.fail(524, "callback function not allowed for map\n")  # ENOTSUPP
    callee.regs[1].assign(caller.regs[1])
    _known_zero_ptr(callee.regs[2], RegType.PTR_TO_MAP_KEY, m)
    _known_zero_ptr(callee.regs[3], RegType.PTR_TO_MAP_VALUE, m)
    callee.regs[4].assign(caller.regs[3])
    mark_not_init(callee.regs[5])


def set_find_vma_callback_state(v: Verifier, caller: FuncState, callee: FuncState, callsite: int) -> None:
    """``callback_fn(task, vma, ctx)``."""
    callee.regs[1].assign(caller.regs[1])
    _known_zero_ptr(callee.regs[2], RegType.PTR_TO_BTF_ID)
    callee.regs[2].btf_name = "vm_area_struct"
    from pybpf.verifier.btf_access import helper_btf_id, vmlinux_btf  # btf_tracing_ids[VMA]
    callee.regs[2].btf, callee.regs[2].btf_id = vmlinux_btf(v), helper_btf_id(v, "vm_area_struct")
    callee.regs[3].assign(caller.regs[4])
    for r in (4, 5):
        mark_not_init(callee.regs[r])


def set_timer_callback_state(v: Verifier, caller: FuncState, callee: FuncState, callsite: int,
                             map_regno: int = 1) -> None:
    """``callback_fn(map, key, value)`` of ``bpf_timer_set_callback``: the timer's map (the
    caller's R1; other async callbacks name the map in another register)."""
    m = caller.regs[map_regno].map_ptr
    _known_zero_ptr(callee.regs[1], RegType.CONST_PTR_TO_MAP, m)
    _known_zero_ptr(callee.regs[2], RegType.PTR_TO_MAP_KEY, m)
    _known_zero_ptr(callee.regs[3], RegType.PTR_TO_MAP_VALUE, m)
    for r in (4, 5):
        mark_not_init(callee.regs[r])


def set_user_ringbuf_callback_state(v: Verifier, caller: FuncState, callee: FuncState, callsite: int) -> None:
    """``callback_fn(const struct bpf_dynptr *dynptr, void *ctx)`` of
    ``bpf_user_ringbuf_drain``: R1 a CONST_PTR_TO_DYNPTR to a LOCAL dynptr over the record."""
    from pybpf.helpers.dynptr import DynptrType
    from pybpf.verifier.dynptr import mark_dynptr_cb_reg

    mark_not_init(callee.regs[0])
    mark_dynptr_cb_reg(v, callee.regs[1], DynptrType.BPF_DYNPTR_TYPE_LOCAL)
    callee.regs[2].assign(caller.regs[3])
    for r in (3, 4, 5):
        mark_not_init(callee.regs[r])


SET_CALLEE_STATE = {
    FUNC_LOOP: set_loop_callback_state,
    FUNC_USER_RINGBUF_DRAIN: set_user_ringbuf_callback_state,
    FUNC_FOR_EACH_MAP_ELEM: set_map_elem_callback_state,
    FUNC_FIND_VMA: set_find_vma_callback_state,
}


def _maybe_widen_reg(old: Reg, cur: Reg) -> None:
    from pybpf.verifier.prune import _IdMap, regs_exact

    if old.type != RegType.SCALAR_VALUE or cur.type != old.type:
        return
    if old.precise or cur.precise or regs_exact(old, cur, _IdMap()):
        return
    mark_unknown(cur)


def widen_imprecise_scalars(old: VState, cur: VState) -> None:
    """Forget the exact value of scalars that differ from the previous iteration's and
    were never needed precise, so the next call-site visit can be pruned."""
    for fr in range(min(old.curframe, cur.curframe), -1, -1):
        fo, fc = old.frames[fr], cur.frames[fr]
        for i in range(11):
            _maybe_widen_reg(fo.regs[i], fc.regs[i])
        for i in range(min(len(fo.stack), len(fc.stack))):
            so, sc = fo.stack[i], fc.stack[i]
            if so.is_spill() and sc.is_spill() and so.spilled is not None and sc.spilled is not None:
                _maybe_widen_reg(so.spilled, sc.spilled)


def force_loop_precision(old: VState, cur: VState) -> None:
    """After pruning a callback iteration against ``old`` (a call-site checkpoint still being
    explored), the checkpoints after ``old`` down to ``cur`` may lack precision marks that
    ``old``'s unfinished continuation will need. 6.18 records such back-edges and propagates
    precision along them when the loop's SCC is left; pybpf, more conservatively, makes
    every scalar of those checkpoints precise, so nothing is pruned against them on a
    guess."""
    p = cur.parent
    while p is not None and p is not old:  # old's own marks come from its own continuation
        for f in p.frames:
            for r in f.regs:
                if r.type == RegType.SCALAR_VALUE:
                    r.precise = True
            for slot in f.stack:
                if slot.is_spill() and slot.spilled is not None and slot.spilled.type == RegType.SCALAR_VALUE:
                    slot.spilled.precise = True
        p = p.parent


def _same_callsites(a: VState, b: VState) -> bool:
    if a.curframe != b.curframe:
        return False
    return all(fa.callsite == fb.callsite for fa, fb in zip(a.frames, b.frames))


class CallbacksMixin:
    def push_callback(self: Verifier, ins: Any, meta: dict[str, Any], fid: int) -> None:
        """``push_callback_call`` for the synchronous callback helpers."""
        setup = SET_CALLEE_STATE.get(fid)
        sub = meta.get("subprogno")
        if sub is None:
            return
        if fid == FUNC_LOOP:  # may the call be inlined (optimize_bpf_loop)?
            update_loop_inline_state(self, sub)
        caller = self.state.cur
        if fid == FUNC_TIMER_SET_CALLBACK:
            self._check_callback_btf(sub)
            self.push_async_cb(sub, caller)
            return
        if setup is None:
            return
        if fid == FUNC_LOOP and caller.callback_depth >= self.regs[1].umax:
            caller.callback_depth = 0
            if self.log.level & 2:
                self.log(f"frame{self.state.curframe} bpf_loop iteration limit reached\n")
            return
        self._check_callback_btf(sub)
        self.push_sync_cb(sub, setup)

    def push_sync_cb(self: Verifier, sub: int, setup: Any) -> None:
        """The synchronous half of ``push_callback_call``: queue a path that enters the
        callback on top of the caller's frames (``setup`` fills its R1–R5), to return to
        the call site, which is visited again (a forced checkpoint)."""
        caller = self.state.cur
        self.cfg.subprogs[sub].is_cb = True
        cb_state = self.push_stack(self.cfg.subprogs[sub].start, self.insn_idx)
        if cb_state.curframe + 1 >= MAX_CALL_FRAMES:
            self.fail(errno.E2BIG, f"the call stack of {cb_state.curframe + 2} frames is too deep\n")
        cb_caller = cb_state.cur
        callee = FuncState(cb_state.curframe + 1, sub, self.insn_idx)
        self.log.mark_all_scratched()  # init_func_state
        setup(self, cb_caller, callee, self.insn_idx)
        callee.in_callback = True
        callee.callback_ret_range = (0, 1)
        cb_state.frames.append(callee)
        cb_state.callback_unroll_depth += 1
        cb_caller.callback_depth += 1
        caller.callback_depth = 0

    def _check_callback_btf(self: Verifier, sub: int) -> None:
        """``push_callback_call`` first checks the caller's registers against the callback's
        BTF prototype: only a verifier bug stops it, a mismatch marks the BTF unreliable."""
        from pybpf.verifier.global_funcs import btf_check_subprog_call

        if btf_check_subprog_call(self, sub) == errno.EFAULT:
            raise VerifyError(errno.EFAULT)

    def push_async_cb(self: Verifier, sub: int, caller: FuncState,
                      setup: Any = set_timer_callback_state, ret_range: tuple[int, int] = (0, 0),
                      sleepable: bool = False) -> None:
        """``push_async_cb``: an asynchronous callback (a timer's, a task work's) runs later,
        on its own: queue a path that starts fresh in the callback (frame 0, nothing of the
        caller's state, ``setup`` fills R1–R5) and is checked once; at its exit R0 must lie
        in ``ret_range`` (0 for timers, ``check_return_code``). A ``sleepable`` callback
        may call what sleeps even in a program that does not."""
        from pybpf.verifier.core import BPF_COMPLEXITY_LIMIT_JMP_SEQ

        info = self.cfg.subprogs[sub]
        info.is_cb = info.is_async_cb = True
        frame = FuncState(0, sub, -1)
        self.log.mark_all_scratched()  # init_func_state
        setup(self, caller, frame, self.insn_idx)
        frame.in_async_callback = True
        frame.callback_ret_range = ret_range
        st = VState([frame])
        st.in_sleepable = sleepable
        st.branches = 1
        st.first_insn_idx = 0  # the kernel's zeroed stack element: mark_precise says first_idx 0
        self.stack.append((st, info.start, self.insn_idx))
        self.log_positions.append(self.log.size)
        if len(self.stack) > BPF_COMPLEXITY_LIMIT_JMP_SEQ:
            self.fail(errno.E2BIG, f"The sequence of {len(self.stack)} jumps is too complex for async cb.\n")

    def callback_exit(self: Verifier) -> None:
        """``prepare_func_exit`` of a callback frame: check R0, go back to the call site."""
        from pybpf.verifier.calls import invalid_scalar_text

        st = self.state
        callee = st.cur
        r0 = callee.regs[0]
        if r0.type != RegType.SCALAR_VALUE:
            self.fail(errno.EACCES, "R0 not a scalar value\n")
        self.mark_chain_precision(0)
        lo, hi = callee.callback_ret_range
        if not (lo <= r0.smin and r0.smax <= hi):
            self.fail(errno.EINVAL, invalid_scalar_text(r0, lo, hi, "At callback return", "R0"))
        self.insn_idx = callee.callsite
        if self.log.enabled:
            from pybpf.verifier.log import format_state
            refs = [r.id for r in st.refs]
            self.verbose("returning from callee:\n" + format_state(callee, refs) + "\n")
            self.verbose(f"to caller at {self.insn_idx}:\n" + format_state(st.frames[-2], refs) + "\n")
            self.log.mark_clean()
        st.frames.pop()
        prev = self.find_prev_entry(st, self.insn_idx)
        if prev is not None:
            widen_imprecise_scalars(prev, st)

    def find_prev_entry(self: Verifier, cur: VState, idx: int) -> VState | None:
        """The checkpoint at ``idx`` on the current path (a previous iteration's call site)."""
        p = cur.parent
        while p is not None:
            if p.insn_idx == idx and p.branches and _same_callsites(p, cur):
                return p
            p = p.parent
        return None
