"""Static facts about the instruction graph that state pruning relies on.

* :func:`compute_live_regs` — the kernel's ``compute_live_registers``: for every
  instruction, the registers some path from it reads before writing. A checkpoint's dead
  registers cannot influence what happens after it, so they are cleared before it is used
  for pruning (``clean_func_state``), and any value in the current state matches them.
* :func:`compute_scc` — the kernel's ``compute_scc``: every instruction on a cycle of the
  graph gets the id (from 1) of its strongly connected component, 0 otherwise. The
  level-2 log prints the ids in the live-registers table and ``SCC enter``/``SCC exit``
  when the verification path enters and leaves a loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_CALLER_SAVED = 0x3F


def insn_use_def(ins: Any, num_params: int | None) -> tuple[int, int]:
    """Registers an instruction reads and writes, as ``compute_insn_live_regs`` sees them
    (bitmasks; a conservative "uses everything" where the kernel keeps its defaults).
    ``num_params`` is the callee's parameter count for calls, ``None`` if unknown."""
    cls, code = ins.code & 7, ins.code & 0xF0
    src, dst = 1 << ins.src, 1 << ins.dst
    mode = ins.code & 0xE0
    if cls == 0:
        if mode == 0x00 and ins.code & 0x18 == 0x18:
            return 0, dst
        return 0xFFFF, 0
    if cls == 1:
        return (src, dst) if mode in (0x60, 0x80) else (0xFFFF, 0)
    if cls == 2:
        return (dst, 0) if mode == 0x60 else (0xFFFF, 0)
    if cls == 3:
        if mode == 0x60:
            return dst | src, 0
        if mode == 0xC0:
            if ins.imm == 0xF1:  # BPF_CMPXCHG
                return 1 | dst | src, 1
            if ins.imm == 0x100:  # BPF_LOAD_ACQ
                return src, dst
            if ins.imm == 0x110:  # BPF_STORE_REL
                return dst | src, 0
            return dst | src, (src if ins.imm & 1 else 0)
        return 0xFFFF, 0
    if cls in (4, 7):
        if code == 0xD0:  # BPF_END
            return dst, dst
        if code == 0xB0:  # BPF_MOV
            return (0 if not ins.code & 8 else src), dst
        return (dst if not ins.code & 8 else dst | src), dst
    # BPF_JMP / BPF_JMP32
    if code in (0x00, 0xE0):  # BPF_JA, BPF_JCOND
        return 0, 0
    if code == 0x90:  # BPF_EXIT
        return 1, 0
    if code == 0x80:  # BPF_CALL
        use = _CALLER_SAVED & ~1
        if num_params is not None:
            use = ((1 << (num_params + 1)) - 1) & ~1
        return use, _CALLER_SAVED
    return (dst if not ins.code & 8 else dst | src), 0


def insn_successors(insns: list[Any], i: int) -> list[int]:
    """Successors as ``compute_live_registers`` walks them (calls fall through)."""
    ins = insns[i]
    cls, code = ins.code & 7, ins.code & 0xF0
    if cls == 0 and ins.code == 0x18:
        return [i + 2]
    if cls in (5, 6):
        if code == 0x90:
            return []
        if code == 0x00:
            return [i + (ins.off if cls == 5 else ins.imm) + 1]
        if code not in (0x80, 0xE0):
            return [i + 1, i + ins.off + 1]
    return [i + 1]


def compute_live_regs(insns: list[Any], num_params: Callable[[Any], int | None]) -> list[int]:
    """Live registers before each instruction: the backward fixed point of
    ``use | (live_after & ~def)``."""
    n = len(insns)
    ud = [insn_use_def(insns[i], num_params(insns[i])) for i in range(n)]
    succ = [[s for s in insn_successors(insns, i) if 0 <= s < n] for i in range(n)]
    live = [0] * n
    changed = True
    while changed:
        changed = False
        for i in range(n - 1, -1, -1):
            after = 0
            for s in succ[i]:
                after |= live[s]
            use, defs = ud[i]
            new = use | (after & ~defs)
            if new != live[i]:
                live[i] = new
                changed = True
    return live


def _cfg_edges(insns: list[Any], i: int) -> list[int]:
    """Control-flow successors within a function (``may_goto`` has both edges)."""
    ins = insns[i]
    cls, code = ins.code & 7, ins.code & 0xF0
    if cls == 0 and ins.code == 0x18:
        return [i + 2]
    if cls in (5, 6):
        if code == 0x90:
            return []
        if code == 0x00:
            return [i + (ins.off if cls == 5 else ins.imm) + 1]
        if code == 0x80:
            return [i + 1]
        return [i + 1, i + ins.off + 1]
    return [i + 1]


def compute_scc(insns: list[Any]) -> list[int]:
    """SCC id of every instruction (iterative Tarjan from each unvisited instruction in
    order, successors fall-through first; ids in completion order, singletons without a
    self-loop get 0)."""
    n = len(insns)
    succ = [[s for s in _cfg_edges(insns, i) if 0 <= s < n] for i in range(n)]
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    scc = [0] * n
    next_id = 1
    counter = 0
    for root in range(n):
        if index[root] >= 0:
            continue
        work = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        while work:
            v, k = work[-1]
            if k < len(succ[v]):
                work[-1] = (v, k + 1)
                w = succ[v][k]
                if index[w] < 0:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, 0))
                elif on_stack[w]:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in succ[v]:
                    for w in comp:
                        scc[w] = next_id
                    next_id += 1
    return scc


__all__ = ["compute_live_regs", "compute_scc", "insn_successors", "insn_use_def"]
