"""SCC back-edges: loops pruned against a state still being explored (6.18).

When an iterator loop converges, the current path is pruned against a checkpoint of the
same loop whose exploration is not finished (``branches > 0``): its precision marks are
not final yet. 6.18 keeps a copy of the pruned state (a *back-edge*, ``add_scc_backedge``)
in the loop's SCC visit and, when the SCC is left (``maybe_exit_scc``), propagates what the
checkpoint ended up needing precise into the back-edge's path, repeatedly until nothing
changes (``propagate_backedges``). While back-edges are pending, checkpoints of that SCC
are compared ``RANGE_WITHIN`` (``incomplete_read_marks``). Back-edge copies count in
``peak_states``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybpf.verifier.regs import RegType
from pybpf.verifier.state import STACK_SPILL, VState

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

CallChain = tuple[tuple[int, ...], int]
MAX_BACKEDGE_ITERS = 64


def _pending(v: Verifier) -> dict[CallChain, list[VState]]:
    return v.__dict__.setdefault("scc_backedges", {})


def num_backedges(v: Verifier) -> int:
    return sum(len(x) for x in _pending(v).values())


def incomplete_read_marks(v: Verifier, st: VState) -> CallChain | None:
    """The SCC call chain of ``st`` if that SCC's current visit has back-edges, else None."""
    pending = v.__dict__.get("scc_backedges")
    if not pending:
        return None
    cc = v.scc_callchain(st)
    return cc if cc is not None and pending.get(cc) else None


def add_scc_backedge(v: Verifier, cc: CallChain, old: VState, idx: int) -> None:
    """Remember the current state, pruned at ``idx`` against ``old``."""
    if v.log.enabled and v.log.level & 2:
        v.log(f"SCC backedge {v._fmt_scc(cc)}\n")
    edge = v.state.copy()
    edge.insn_idx = idx
    edge.equal_state = old  # type: ignore[attr-defined]
    _pending(v).setdefault(cc, []).append(edge)
    n = v.explored_size + v.free_list_size + num_backedges(v)
    if n > v.peak_states:
        v.peak_states = n


def _precise_marks(st: VState | None) -> int:
    """Precise scalars in ``st``'s checkpoints (what propagation may change)."""
    n = 0
    while st is not None:
        for f in st.frames:
            n += sum(1 for r in f.regs if r.type == RegType.SCALAR_VALUE and r.precise)
            n += sum(1 for s in f.stack if s.types[7] == STACK_SPILL and s.spilled is not None
                     and s.spilled.type == RegType.SCALAR_VALUE and s.spilled.precise)
        st = st.parent
    return n


def exit_scc(v: Verifier, cc: CallChain) -> None:
    """``maybe_exit_scc`` after ``SCC exit``: ``propagate_backedges`` of the visit."""
    edges = _pending(v).pop(cc, None)
    if not edges:
        return
    saved_state, saved_idx = v.state, v.insn_idx
    try:
        for _ in range(MAX_BACKEDGE_ITERS + 1):
            changed = False
            for edge in reversed(edges):  # the visit's list: newest first
                v.state, v.insn_idx = edge, edge.insn_idx
                before = _precise_marks(edge.parent)
                v.propagate_precision(edge.equal_state)  # type: ignore[attr-defined]
                changed |= _precise_marks(edge.parent) != before
            if not changed:
                return
        if v.log.enabled and v.log.level & 2:
            v.log("propagate_backedges: too many iterations\n")
        for edge in edges:
            v.mark_all_scalars_precise(edge)
    finally:
        v.state, v.insn_idx = saved_state, saved_idx


__all__ = ["add_scc_backedge", "exit_scc", "incomplete_read_marks", "num_backedges"]
