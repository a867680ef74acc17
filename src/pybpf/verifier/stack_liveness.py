"""Which stack slots a checkpoint's continuation may still read (6.18's ``liveness.c``).

While the verifier walks paths it records, per *function instance* (the call chain that
led into a subprogram) and per instruction, which 8-byte stack slots the instruction may
read and which it always writes whole (``bpf_mark_stack_read`` / ``bpf_mark_stack_write``;
reads accumulate as a union, "must write" as an intersection over visits). At every exit
(``bpf_update_live_stack``) the instance's marks are propagated backwards to a fixed
point, the textbook live-variable analysis::

    live_before[i] = (union of live_before[s] for successors s) - must_write[i] | may_read[i]

and a callee's entry marks flow into its caller's call instruction. A finished checkpoint
then forgets slots that are dead at its position (``clean_verifier_state``), so pruning
ignores them. The analysis is path-insensitive but only ever sees instructions that were
actually verified, so a finished state's continuation has all its reads recorded.

At log level 2 the propagation prints what changed, as the kernel does:
``(0) frame 0 insn 9 +live -16`` and ``(0) live stack update done in 2 iterations``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pybpf.verifier.precision import fmt_stack_mask

U64 = (1 << 64) - 1


def insn_successors(insns: list[Any], idx: int) -> list[int]:
    """``bpf_insn_successors``: fall-through and/or jump target (calls fall through)."""
    ins = insns[idx]
    cls, op = ins.code & 7, ins.code & 0xF0
    size = 2 if ins.code == 0x18 else 1
    if cls in (5, 6):
        if op == 0x90:
            return []
        off = ins.imm if (cls == 6 and op == 0x00) else ins.off
        if op == 0x00:
            return [idx + off + 1]
        if op != 0x80:
            return [idx + size, idx + off + 1]
    return [idx + size]


def compute_postorder(insns: list[Any], starts: list[int]) -> tuple[list[int], list[int]]:
    """``compute_postorder``: per subprogram, a DFS from its first instruction pushing all
    undiscovered successors at once; returns the order and each subprogram's start in it."""
    n = len(insns)
    state = [0] * n
    order: list[int] = []
    po_starts: list[int] = []
    for s in starts:
        po_starts.append(len(order))
        stack = [s]
        while stack:
            top = stack[-1]
            state[top] |= 1
            if state[top] & 2:
                order.append(top)
                stack.pop()
                continue
            for w in insn_successors(insns, top):
                if 0 <= w < n and not state[w]:
                    stack.append(w)
                    state[w] |= 1
            state[top] |= 2
    po_starts.append(len(order))
    return order, po_starts


class FrameMasks:
    """``per_frame_masks`` for every instruction of one function instance."""

    __slots__ = ("live_before", "may_read", "must_write", "must_write_acc")

    def __init__(self, n: int) -> None:
        self.may_read = [0] * n
        self.must_write = [0] * n
        self.must_write_acc = [0] * n
        self.live_before = [0] * n


class FuncInstance:
    """``func_instance``: marks for one call chain ``(callsite0, ..., subprog_start)``."""

    def __init__(self, callchain: tuple[int, ...], sp_index: int, start: int, size: int) -> None:
        self.callchain = callchain
        self.curframe = len(callchain) - 1
        self.sp_index = sp_index
        self.start = start
        self.size = size
        self.updated = False
        self.must_write_dropped = False
        self.frames: dict[int, FrameMasks] = {}
        self.must_write_set = [False] * size
        self.mw_nonzero: set[int] = set()  # instructions with a non-empty must_write

    def masks(self, frame: int, create: bool = False) -> FrameMasks | None:
        m = self.frames.get(frame)
        if m is None and create:
            m = self.frames[frame] = FrameMasks(self.size)
        return m

    def fmt(self) -> str:
        return "(" + ",".join(str(c) for c in self.callchain) + ")"


class StackLiveness:
    """``struct bpf_liveness``: all function instances of one verification."""

    def __init__(self, insns: list[Any], starts: list[int], prune_points: set[int],
                 log: Callable[[str], None] | None) -> None:
        self.insns = insns
        self.starts = starts
        self.ends = [*starts[1:], len(insns)]
        self.prune_points = prune_points
        self.log = log  # set only at log level 2
        self.postorder, self.po_starts = compute_postorder(insns, starts)
        self.instances: dict[tuple[int, ...], FuncInstance] = {}
        self.cur_instance: FuncInstance | None = None
        self.write_masks_acc = [0] * 8
        self.any_write = False
        self.write_insn_idx = 0
        self.query: list[FuncInstance] = []
        self.query_idx = 0

    # -- call chains -------------------------------------------------------------------------
    def _subprog_index(self, start: int) -> int:
        return self.starts.index(start)

    def callchain(self, st: Any, frameno: int) -> tuple[int, ...]:
        """``compute_callchain``: call sites of the frames below ``frameno``, then the
        start of ``frameno``'s subprogram."""
        out = [st.frames[i + 1].callsite for i in range(frameno)]
        out.append(self.starts[st.frames[frameno].subprogno])
        return tuple(out)

    def _lookup(self, cc: tuple[int, ...]) -> FuncInstance:
        inst = self.instances.get(cc)
        if inst is None:
            sp = self._subprog_index(cc[-1])
            inst = FuncInstance(cc, sp, cc[-1], self.ends[sp] - cc[-1])
            self.instances[cc] = inst
        return inst

    def lookup(self, st: Any, frameno: int) -> FuncInstance:
        return self._lookup(self.callchain(st, frameno))

    def reset_callchain(self) -> None:
        """``bpf_reset_live_stack_callchain``: the current state's call stack changed."""
        self.cur_instance = None

    def _ensure_cur(self, st: Any) -> FuncInstance:
        if self.cur_instance is None:
            self.cur_instance = self.lookup(st, st.curframe)
        return self.cur_instance

    # -- accumulation ------------------------------------------------------------------------
    def _mark_read(self, inst: FuncInstance, frame: int, insn_idx: int, mask: int) -> None:
        m = inst.masks(frame, True)
        assert m is not None
        i = insn_idx - inst.start
        new = m.may_read[i] | mask
        if new != m.may_read[i] and (new | m.live_before[i]) != m.live_before[i]:
            inst.updated = True
        m.may_read[i] = new

    def mark_read(self, st: Any, frame: int, insn_idx: int, mask: int) -> None:
        """``bpf_mark_stack_read``: the instruction may read these slots of ``frame``."""
        self._mark_read(self._ensure_cur(st), frame, insn_idx, mask)

    def reset_write_marks(self, st: Any, insn_idx: int) -> None:
        """``bpf_reset_stack_write_marks``: start collecting the writes of one instruction
        (called for every instruction, so the common no-write case stays cheap)."""
        if self.cur_instance is None:
            self._ensure_cur(st)
        self.write_insn_idx = insn_idx
        if self.any_write:
            self.write_masks_acc = [0] * 8
            self.any_write = False

    def _reset_writes(self, inst: FuncInstance, insn_idx: int) -> None:
        self.write_insn_idx = insn_idx
        self.write_masks_acc = [0] * 8
        self.any_write = False

    def mark_write(self, frame: int, mask: int) -> None:
        """``bpf_mark_stack_write``: the instruction writes these whole slots of ``frame``."""
        self.write_masks_acc[frame] |= mask
        self.any_write = True

    def commit_write_marks(self) -> None:
        inst = self.cur_instance
        if inst is None:
            return
        if not self.any_write:  # fast path: the instruction wrote no whole slot
            i = self.write_insn_idx - inst.start
            if not inst.must_write_set[i]:
                inst.must_write_set[i] = True
            elif i in inst.mw_nonzero:  # a "must write" seen before is dropped now
                self._commit(inst)
            return
        self._commit(inst)

    def _commit(self, inst: FuncInstance | None) -> None:
        if inst is None:
            return
        i = self.write_insn_idx - inst.start
        for frame in range(inst.curframe + 1):
            mask = self.write_masks_acc[frame]
            if mask == 0 and not inst.must_write_set[i]:
                continue
            m = inst.masks(frame, True)
            assert m is not None
            old = m.must_write[i]
            if inst.must_write_set[i]:
                mask &= old
            if old != mask:
                m.must_write[i] = mask
                inst.updated = True
            if old & ~mask:
                inst.must_write_dropped = True
        if any(m.must_write[i] for m in inst.frames.values()):
            inst.mw_nonzero.add(i)
        else:
            inst.mw_nonzero.discard(i)
        inst.must_write_set[i] = True
        self.write_insn_idx = 0

    # -- propagation -------------------------------------------------------------------------
    def _log_change(self, inst: FuncInstance, pfx: str, frame: int, idx: int, old: int, new: int) -> None:
        changed = old ^ new
        if not changed or self.log is None:
            return
        ones, zeros = new & changed, ~new & changed & U64
        text = f"{inst.fmt()} frame {frame} insn {idx} "
        if ones:
            text += f"+{pfx} {fmt_stack_mask(ones)} "
        if zeros:
            text += f"-{pfx} {fmt_stack_mask(zeros)}"
        self.log(text + "\n")

    def _update_insn(self, inst: FuncInstance, frame: int, m: FrameMasks, idx: int) -> bool:
        succ = insn_successors(self.insns, idx)
        if not succ:
            return False
        base = inst.start
        i = idx - base
        after = 0
        acc = U64
        for s in succ:
            after |= m.live_before[s - base]
            acc &= m.must_write_acc[s - base]
        acc |= m.must_write[i]
        before = (after & ~m.must_write[i]) | m.may_read[i]
        changed = before != m.live_before[i] or acc != m.must_write_acc[i]
        if self.log is not None and (m.may_read[i] or m.must_write[i] or idx == base
                                     or idx in self.prune_points):
            self._log_change(inst, "live", frame, idx, m.live_before[i], before)
            self._log_change(inst, "written", frame, idx, m.must_write_acc[i], acc)
        m.live_before[i] = before
        m.must_write_acc[i] = acc
        return changed

    def _update_instance(self, inst: FuncInstance) -> None:
        if inst.must_write_dropped:
            for m in inst.frames.values():
                m.must_write_acc = [0] * inst.size
        order = self.postorder[self.po_starts[inst.sp_index]:self.po_starts[inst.sp_index + 1]]
        cnt = 0
        while True:
            cnt += 1
            changed = False
            for frame in range(inst.curframe + 1):
                fm = inst.frames.get(frame)
                if fm is None:
                    continue
                for idx in order:
                    changed |= self._update_insn(inst, frame, fm, idx)
            if not changed:
                break
        if self.log is not None:
            self.log(f"{inst.fmt()} live stack update done in {cnt} iterations\n")
        if inst.curframe > 0:
            self._propagate_to_outer(inst)

    def _propagate_to_outer(self, inst: FuncInstance) -> None:
        """A callee's entry marks become its call instruction's marks in the caller."""
        outer = self._lookup((*inst.callchain[:-2], self.starts[self._caller_subprog(inst)]))
        callsite = inst.callchain[-2]
        self._reset_writes(outer, callsite)
        for frame in range(inst.curframe):
            m = inst.frames.get(frame)
            if m is None:
                continue
            self.mark_write(frame, m.must_write_acc[0])
            self._mark_read(outer, frame, callsite, m.live_before[0])
        self._commit(outer)

    def _caller_subprog(self, inst: FuncInstance) -> int:
        callsite = inst.callchain[-2]
        for k in range(len(self.starts) - 1, -1, -1):
            if self.starts[k] <= callsite:
                return k
        return 0

    def update_live_stack(self, st: Any) -> None:
        """``bpf_update_live_stack``: bring every instance of ``st``'s call stack (callee
        first) to its fixed point, so finished states can be queried."""
        self.reset_callchain()
        for frame in range(st.curframe, -1, -1):
            inst = self.lookup(st, frame)
            if inst.updated:
                self._update_instance(inst)
                inst.updated = False
                inst.must_write_dropped = False

    # -- queries -----------------------------------------------------------------------------
    def query_init(self, st: Any) -> None:
        self.query = [self.lookup(st, f) for f in range(st.curframe + 1)]
        self.query_idx = st.insn_idx

    @staticmethod
    def _live_before(inst: FuncInstance, idx: int, frame: int, spi: int) -> bool:
        m = inst.frames.get(frame)
        if m is None:
            return False
        i = idx - inst.start
        if not 0 <= i < inst.size:
            return False
        return bool(m.live_before[i] >> spi & 1)

    def slot_alive(self, frameno: int, spi: int) -> bool:
        """``bpf_stack_slot_alive``: read at or after the queried position in its own
        function, or after the return of some caller frame's call."""
        q = self.query
        cur = q[-1]
        if self._live_before(cur, self.query_idx, frameno, spi):
            return True
        for i in range(frameno, len(q) - 1):
            callsite = cur.callchain[i]
            if self._live_before(q[i], callsite + 1, frameno, spi):
                return True
        return False


__all__ = ["StackLiveness", "compute_postorder", "insn_successors"]
