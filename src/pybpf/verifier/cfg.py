"""Control-flow checks before the path walk (``add_subprog``, ``check_subprogs``, ``check_cfg``).

Subprograms start at instruction 0 and at every target of a bpf-to-bpf call or of a
``ld_imm64`` function reference; no jump may leave its subprogram and every subprogram
must end in ``exit`` or ``ja``. ``check_cfg`` walks the graph depth-first, rejecting jumps
out of range, unreachable instructions and (unprivileged) back-edges, and records the
prune points where the path walk may compare states.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

from pybpf.isa.insn import Insn

BPF_JMP = 0x05
BPF_JMP32 = 0x06
BPF_CALL_CODE = 0x85
BPF_EXIT_CODE = 0x95
BPF_JA_CODE = 0x05
BPF_JA32_CODE = 0x06
LD_IMM64 = 0x18
PSEUDO_CALL = 1
PSEUDO_KFUNC_CALL = 2
PSEUDO_FUNC = 4
BPF_FUNC_tail_call = 12
BPF_MAX_SUBPROGS = 256


class VerifyError(Exception):
    """A verdict: reject with ``errno`` (the message is already in the log)."""

    def __init__(self, err: int, msg: str = "") -> None:
        super().__init__(msg)
        self.errno = err
        self.msg = msg


@dataclass
class SubprogInfo:
    start: int
    stack_depth: int = 0
    has_tail_call: bool = False
    has_ld_abs: bool = False
    is_cb: bool = False
    is_async_cb: bool = False  # a timer callback: verified as its own path, its own stack root
    changes_pkt_data: bool = False
    might_sleep: bool = False  # calls (directly or through its callees) a sleepable helper/kfunc
    is_exception_cb: bool = False  # the program's exception callback (verifier/exceptions.py)
    fastcall_stack_off: int = 0  # where bpf_fastcall spill slots begin (verifier/fastcall.py)
    keep_fastcall_stack: bool = False  # a pattern around a call that is not inlined
    # from ``func_info`` (``bpf_func_info_aux``, verifier/btf_info.py, global_funcs.py)
    linkage: int = 0  # BTF_FUNC_STATIC / BTF_FUNC_GLOBAL
    btf_id: int = 0
    name: str = ""
    called: bool = False  # a global function some verified path calls
    verified: bool = False
    unreliable: bool = False  # the prototype does not describe what callers pass
    args: list[Any] | None = None  # btf_prepare_func_args, cached


@dataclass
class CfgInfo:
    subprogs: list[SubprogInfo]
    prune_points: set[int] = field(default_factory=set)
    force_checkpoints: set[int] = field(default_factory=set)
    jmp_points: set[int] = field(default_factory=set)

    def subprog_of(self, idx: int) -> int:
        lo = 0
        for i, sp in enumerate(self.subprogs):
            if sp.start <= idx:
                lo = i
        return lo


def is_pseudo_call(ins: Insn) -> bool:
    return ins.code == BPF_CALL_CODE and ins.src == PSEUDO_CALL


def is_pseudo_func(ins: Insn) -> bool:
    return ins.code == LD_IMM64 and ins.src == PSEUDO_FUNC


def add_subprogs(insns: list[Insn], log, bpf_capable: bool = True) -> list[SubprogInfo]:
    """``add_subprog_and_kfunc``: collect subprogram starts, sorted."""
    n = len(insns)
    starts = {0}
    for i, ins in enumerate(insns):
        if not (is_pseudo_func(ins) or is_pseudo_call(ins)
                or (ins.code == BPF_CALL_CODE and ins.src == PSEUDO_KFUNC_CALL)):
            continue
        if not bpf_capable:
            log.error("loading/calling other bpf or kernel functions are allowed for CAP_BPF and CAP_SYS_ADMIN\n")
            raise VerifyError(errno.EPERM)
        if ins.code == BPF_CALL_CODE and ins.src == PSEUDO_KFUNC_CALL:
            continue
        t = i + ins.imm + 1
        if t < 0 or t >= n:
            log.error("call to invalid destination\n")
            raise VerifyError(errno.EINVAL)
        starts.add(t)
        if len(starts) > BPF_MAX_SUBPROGS:
            log.error("too many subprograms\n")
            raise VerifyError(errno.E2BIG)
    return [SubprogInfo(s) for s in sorted(starts)]


def check_subprogs(insns: list[Insn], subprogs: list[SubprogInfo], log) -> None:
    n = len(insns)
    bounds = [sp.start for sp in subprogs] + [n]
    cur = 0
    start, end = bounds[0], bounds[1]
    for i, ins in enumerate(insns):
        code = ins.code
        cls = code & 7
        if code == BPF_CALL_CODE and ins.src == 0 and ins.imm == BPF_FUNC_tail_call:
            subprogs[cur].has_tail_call = True
        if cls == 0 and (code & 0xE0) in (0x20, 0x40):
            subprogs[cur].has_ld_abs = True
        if cls in (BPF_JMP, BPF_JMP32) and (code & 0xF0) not in (0x90, 0x80):
            off = i + (ins.imm if code == BPF_JA32_CODE else ins.off) + 1
            if off < start or off >= end:
                log.error(f"jump out of range from insn {i} to {off}\n")
                raise VerifyError(errno.EINVAL)
        if i == end - 1:
            if code not in (BPF_EXIT_CODE, BPF_JA32_CODE, BPF_JA_CODE):
                log.error("last insn is not an exit or jmp\n")
                raise VerifyError(errno.EINVAL)
            start = end
            cur += 1
            if cur < len(subprogs):
                end = bounds[cur + 1]


_DISCOVERED = 0x10
_EXPLORED = 0x20
_FALLTHROUGH = 1
_BRANCH = 2


def check_cfg(insns: list[Insn], info: CfgInfo, log, bpf_capable: bool = True,
              is_sync_cb_call=None) -> None:
    """Depth-first walk: jumps in range, everything reachable, prune points marked."""
    n = len(insns)
    state = [0] * n
    stack = [0]
    state[0] = _DISCOVERED
    prune = info.prune_points
    force = info.force_checkpoints
    jmp = info.jmp_points

    def push(t: int, w: int, e: int) -> int:
        if e == _FALLTHROUGH and state[t] >= (_DISCOVERED | _FALLTHROUGH):
            return 0
        if e == _BRANCH and state[t] >= (_DISCOVERED | _BRANCH):
            return 0
        if w < 0 or w >= n:
            log.error(f"jump out of range from insn {t} to {w}\n")
            raise VerifyError(errno.EINVAL)
        if e == _BRANCH:
            prune.add(w)
            jmp.add(w)
        if state[w] == 0:
            state[t] = _DISCOVERED | e
            state[w] = _DISCOVERED
            stack.append(w)
            return 1
        if (state[w] & 0xF0) == _DISCOVERED:
            if bpf_capable:
                return 0
            log.error(f"back-edge from insn {t} to {w}\n")
            raise VerifyError(errno.EINVAL)
        state[t] = _DISCOVERED | e
        return 0

    def visit_call(t: int, visit_callee: bool) -> int:
        sz = 2 if insns[t].code == LD_IMM64 else 1
        r = push(t, t + sz, _FALLTHROUGH)
        if r:
            return r
        prune.add(t + sz)
        jmp.add(t + sz)
        if visit_callee:
            prune.add(t)
            return push(t, t + insns[t].imm + 1, _BRANCH)
        return r

    def visit(t: int) -> int:
        ins = insns[t]
        if is_pseudo_func(ins):
            return visit_call(t, True)
        cls = ins.code & 7
        if cls not in (BPF_JMP, BPF_JMP32):
            return push(t, t + (2 if ins.code == LD_IMM64 else 1), _FALLTHROUGH)
        op = ins.code & 0xF0
        if op == 0x90:
            return 0
        if op == 0x80:
            if is_sync_cb_call is not None and is_sync_cb_call(ins):
                force.add(t)
                prune.add(t)
                jmp.add(t)
            return visit_call(t, ins.src == PSEUDO_CALL)
        if op == 0x00:
            if ins.code & 0x08:
                raise VerifyError(errno.EINVAL)
            off = ins.off if cls == BPF_JMP else ins.imm
            r = push(t, t + off + 1, _FALLTHROUGH)
            if r:
                return r
            prune.add(t + off + 1)
            jmp.add(t + off + 1)
            return r
        prune.add(t)
        if op == 0xE0 and cls == BPF_JMP:  # may_goto
            force.add(t)
        r = push(t, t + 1, _FALLTHROUGH)
        if r:
            return r
        return push(t, t + ins.off + 1, _BRANCH)

    # the exception callback is reached by every bpf_throw, not by a call: a second root
    roots = [sp.start for sp in info.subprogs[1:] if sp.is_exception_cb and state[sp.start] == 0]
    while True:
        while stack:
            t = stack[-1]
            r = visit(t)
            if r == 0:
                state[t] = _EXPLORED
                stack.pop()
        if not roots:
            break
        root = roots.pop()
        state[root] = _DISCOVERED
        stack.append(root)
    i = 0
    while i < n:
        if state[i] != _EXPLORED:
            log.error(f"unreachable insn {i}\n")
            raise VerifyError(errno.EINVAL)
        if insns[i].code == LD_IMM64:
            if i + 1 < n and state[i + 1] != 0:
                log.error(f"jump into the middle of ldimm64 insn {i}\n")
                raise VerifyError(errno.EINVAL)
            i += 1
        i += 1
