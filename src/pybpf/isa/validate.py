"""Instruction-level checks of the Linux 6.18 verifier, with its exact messages.

The kernel rejects malformed programs in two places, and a faithful verifier must report
the same first error, so both are mirrored here:

1. **Pre-passes** over the whole program, before any instruction is "executed"
   (:func:`check_program_structure`), in the kernel's order:

   ========================  =================================================================
   ``bpf_prog_load``         empty or too long -> ``E2BIG`` (no log line)
   ``add_subprog_and_kfunc`` bpf-to-bpf call / ``ld_imm64`` function targets:
                             ``call to invalid destination``, ``too many subprograms``,
                             the CAP_BPF message for unprivileged loaders
   ``check_subprogs``        ``jump out of range from insn %d to %d`` (a jump leaving its
                             subprogram), ``last insn is not an exit or jmp``
   ``resolve_pseudo_ldimm64`` per slot: ``BPF_LDX uses reserved fields``,
                             ``invalid bpf_ld_imm64 insn``, ``unrecognized bpf_ld_imm64 insn``
                             (map fds are resolved by a caller hook), ``unknown opcode %02x``
   ``check_cfg``             depth-first walk: ``jump out of range from insn %d to %d``,
                             ``back-edge from insn %d to %d`` (unprivileged only),
                             ``unreachable insn %d``, ``jump into the middle of ldimm64 insn %d``
   ========================  =================================================================

   (BTF-dependent passes — ``check_btf_info``, kfunc and ``BPF_PSEUDO_BTF_ID`` resolution —
   belong to the verifier proper, which has the BTF.)

2. **Per-instruction checks** made when ``do_check`` reaches an instruction
   (:func:`check_insn`). The kernel interleaves them with register-state checks; for
   each class the order is (``[read rX]`` / ``[write rX]`` = ``check_reg_arg``, which
   reports ``R%d is invalid`` for r11-r15 — included here — then ``R%d !read_ok`` or
   ``frame pointer is read only`` — the latter included here):

   - ALU NEG/END: reserved fields, [read dst], [write dst]
   - ALU MOV: reserved fields (and ``addr_space_cast`` checks), [read src], [write dst]
   - other ALU: reserved fields, [read src], [read dst], ``div by zero``,
     ``invalid shift %d``, [write dst]
   - LDX: (reserved fields already in the pre-pass) [read src], [write dst], memory
   - STX ATOMIC: ``BPF_ATOMIC uses invalid atomic opcode %02x``, ``invalid atomic operand
     size`` (read-modify-write on 1/2 bytes), [read src], [read dst], …
   - STX MEM / ST: reserved fields, [read src], [read dst], memory
   - CALL / JA / EXIT: reserved fields, then calls/exit semantics
   - conditional jumps: ``invalid may_goto imm %d`` for may_goto; else [read dst] *before*
     the reserved-field check, [read src]
   - LD_ABS/IND: program-type and callback checks (``BPF_LD_[ABS|IND] instructions not
     allowed for this program type``), reserved fields, [read r6], …
   - LD_IMM64: ``BPF_LD_IMM64 uses reserved fields``, [write dst]

   :func:`check_insn` returns the first of these that fails on the instruction alone,
   assuming every register read succeeds; :func:`check_insn_reserved` only the first
   gate, which precedes any register-state check except for conditional jumps (dst is
   read first) and LD_ABS/IND (the program-type check comes first).

Messages are the kernel's text without the trailing newline; errnos are the kernel's.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence

from pybpf.isa.insn import Insn
from pybpf.isa.opcodes import (
    BPF_ADDR_SPACE_CAST,
    BPF_COMPLEXITY_LIMIT_INSNS,
    BPF_MAX_SUBPROGS,
    BPF_MAXINSNS,
    BPF_MAY_GOTO,
    MAX_BPF_REG,
    AluOp,
    AtomicOp,
    CallKind,
    Cls,
    JmpOp,
    Mode,
    Pseudo,
    Size,
    Src,
    linux_accepts_code,
)

KfuncHook = Callable[[int, Insn], "tuple[int, str] | None"]
"""Resolves a kfunc call at slot ``i`` against kernel BTF (``add_kfunc_call``); returns the
kernel's ``(errno, message)`` on failure, e.g. ``kernel btf_id %u is not a function``.
Without a hook kfunc calls pass the pre-passes unchecked."""

LdImm64Hook = Callable[[int, Insn, Insn], "tuple[int, str] | None"]
"""Resolves a map-referencing ``ld_imm64`` at slot ``i`` (fd lookup, map compatibility);
returns the kernel's ``(errno, message)`` on failure. Called in ``resolve_pseudo_ldimm64``
order, for ``src`` 1, 2, 5 and 6 after the encoding checks passed."""

_LD_IMM64 = Cls.LD | Mode.IMM | Size.DW
_CALL = Cls.JMP | JmpOp.CALL
_EXIT = Cls.JMP | JmpOp.EXIT
_JA = Cls.JMP | JmpOp.JA
_JA32 = Cls.JMP32 | JmpOp.JA
_REG_FP = 10
_BPF_FETCH = 0x01

# insn_state values of the kernel's check_cfg DFS.
_DISCOVERED = 0x10
_EXPLORED = 0x20
_FALLTHROUGH = 1
_BRANCH = 2
_DONE = 0
_KEEP = 1


def _is_pseudo_call(ins: Insn) -> bool:
    return ins.code == _CALL and ins.src == CallKind.PSEUDO_CALL


def _is_pseudo_func(ins: Insn) -> bool:
    return ins.code == _LD_IMM64 and ins.src == Pseudo.FUNC


def _is_kfunc_call(ins: Insn) -> bool:
    return ins.code == _CALL and ins.src == CallKind.KFUNC


# ---------------------------------------------------------------------------------------
# Pre-passes
# ---------------------------------------------------------------------------------------


class _Err(Exception):
    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.err = err
        self.message = message


def subprog_starts(insns: Sequence[Insn]) -> list[int]:
    """Start slots of the subprograms, sorted (``add_subprog_and_kfunc``'s result).

    Raises nothing: targets out of range are skipped here; use
    :func:`check_program_structure` for the kernel's verdict.
    """
    n = len(insns)
    starts = {0}
    for i, ins in enumerate(insns):
        if _is_pseudo_call(ins) or _is_pseudo_func(ins):
            t = i + ins.imm + 1
            if 0 <= t < n:
                starts.add(t)
    return sorted(starts)


def _add_subprogs(insns: Sequence[Insn], bpf_capable: bool,
                  kfunc_hook: KfuncHook | None) -> list[int]:
    """Mirror of ``add_subprog_and_kfunc`` (kfunc resolution through ``kfunc_hook``)."""
    n = len(insns)
    starts = {0}
    for i, ins in enumerate(insns):
        if not (_is_pseudo_func(ins) or _is_pseudo_call(ins) or _is_kfunc_call(ins)):
            continue
        if not bpf_capable:
            raise _Err(errno.EPERM, "loading/calling other bpf or kernel functions are "
                                    "allowed for CAP_BPF and CAP_SYS_ADMIN")
        if _is_kfunc_call(ins):
            got = kfunc_hook(i, ins) if kfunc_hook is not None else None
            if got is not None:
                raise _Err(*got)
            continue
        t = i + ins.imm + 1
        if t >= n or t < 0:
            raise _Err(errno.EINVAL, "call to invalid destination")
        if t not in starts:
            if len(starts) >= BPF_MAX_SUBPROGS:
                raise _Err(errno.E2BIG, "too many subprograms")
            starts.add(t)
    return sorted(starts)


def _check_subprogs(insns: Sequence[Insn], starts: list[int]) -> None:
    """Mirror of ``check_subprogs``: jumps stay in their subprogram, which ends in exit/ja."""
    bounds = [*starts, len(insns)]
    cur = 0
    lo, hi = bounds[0], bounds[1]
    for i, ins in enumerate(insns):
        code = ins.code
        cls = code & 0x07
        op = code & 0xF0
        if cls in (Cls.JMP, Cls.JMP32) and op not in (JmpOp.EXIT, JmpOp.CALL):
            target = i + (ins.imm if code == _JA32 else ins.off) + 1
            if target < lo or target >= hi:
                raise _Err(errno.EINVAL, f"jump out of range from insn {i} to {target}")
        if i == hi - 1:
            if code not in (_EXIT, _JA32, _JA):
                raise _Err(errno.EINVAL, "last insn is not an exit or jmp")
            cur += 1
            lo = hi
            if cur + 1 < len(bounds):
                hi = bounds[cur + 1]


def _resolve_ldimm64(insns: Sequence[Insn], hook: LdImm64Hook | None) -> None:
    """Mirror of the encoding checks of ``resolve_pseudo_ldimm64``."""
    n = len(insns)
    i = 0
    while i < n:
        ins = insns[i]
        cls = ins.code & 0x07
        if cls == Cls.LDX and ((ins.code & 0xE0) not in (Mode.MEM, Mode.MEMSX) or ins.imm):
            raise _Err(errno.EINVAL, "BPF_LDX uses reserved fields")
        if ins.code == _LD_IMM64:
            nxt = insns[i + 1] if i + 1 < n else None
            if nxt is None or nxt.code or nxt.dst or nxt.src or nxt.off:
                raise _Err(errno.EINVAL, "invalid bpf_ld_imm64 insn")
            _check_pseudo(i, ins, nxt, hook)
            i += 2
            continue
        if not linux_accepts_code(ins.code):
            raise _Err(errno.EINVAL, f"unknown opcode {ins.code:02x}")
        i += 1


def _check_pseudo(i: int, ins: Insn, nxt: Insn, hook: LdImm64Hook | None) -> None:
    src = ins.src
    if src in (Pseudo.NONE, Pseudo.BTF_ID, Pseudo.FUNC):
        return  # BTF ids are resolved against kernel BTF by the verifier
    if src in (Pseudo.MAP_FD, Pseudo.MAP_IDX) and nxt.imm != 0:
        src = -1
    if src not in (Pseudo.MAP_FD, Pseudo.MAP_IDX, Pseudo.MAP_VALUE, Pseudo.MAP_IDX_VALUE):
        raise _Err(errno.EINVAL, "unrecognized bpf_ld_imm64 insn")
    if hook is not None:
        got = hook(i, ins, nxt)
        if got is not None:
            raise _Err(*got)


def _check_cfg(insns: Sequence[Insn], bpf_capable: bool) -> None:
    """Mirror of ``check_cfg``: the kernel's iterative DFS, edge by edge."""
    n = len(insns)
    state = [0] * n
    stack = [0]
    state[0] = _DISCOVERED

    def push(t: int, w: int, e: int) -> int:
        if e == _FALLTHROUGH and state[t] >= _DISCOVERED | _FALLTHROUGH:
            return _DONE
        if e == _BRANCH and state[t] >= _DISCOVERED | _BRANCH:
            return _DONE
        if w < 0 or w >= n:
            raise _Err(errno.EINVAL, f"jump out of range from insn {t} to {w}")
        if state[w] == 0:
            state[t] = _DISCOVERED | e
            state[w] = _DISCOVERED
            if len(stack) >= n:
                raise _Err(errno.E2BIG, "")
            stack.append(w)
            return _KEEP
        if state[w] & 0xF0 == _DISCOVERED:
            if bpf_capable:
                return _DONE
            raise _Err(errno.EINVAL, f"back-edge from insn {t} to {w}")
        if state[w] == _EXPLORED:
            state[t] = _DISCOVERED | e
        return _DONE

    def visit(t: int) -> int:
        ins = insns[t]
        code = ins.code
        if _is_pseudo_func(ins):
            return _visit_call(t, 2, True, ins)
        cls = code & 0x07
        if cls not in (Cls.JMP, Cls.JMP32):
            return push(t, t + (2 if code == _LD_IMM64 else 1), _FALLTHROUGH)
        op = code & 0xF0
        if op == JmpOp.EXIT:
            return _DONE
        if op == JmpOp.CALL:
            return _visit_call(t, 1, ins.src == CallKind.PSEUDO_CALL, ins)
        if op == JmpOp.JA:
            if code & Src.X:
                raise _Err(errno.EINVAL, "")
            off = ins.off if cls == Cls.JMP else ins.imm
            return push(t, t + off + 1, _FALLTHROUGH)
        ret = push(t, t + 1, _FALLTHROUGH)
        if ret:
            return ret
        return push(t, t + ins.off + 1, _BRANCH)

    def _visit_call(t: int, size: int, callee: bool, ins: Insn) -> int:
        ret = push(t, t + size, _FALLTHROUGH)
        if ret or not callee:
            return ret
        return push(t, t + ins.imm + 1, _BRANCH)

    while stack:
        t = stack[-1]
        if visit(t) == _DONE:
            state[t] = _EXPLORED
            stack.pop()
    i = 0
    while i < n:
        if state[i] != _EXPLORED:
            raise _Err(errno.EINVAL, f"unreachable insn {i}")
        if insns[i].code == _LD_IMM64:
            if i + 1 < n and state[i + 1] != 0:
                raise _Err(errno.EINVAL, f"jump into the middle of ldimm64 insn {i}")
            i += 1
        i += 1


def check_program_structure(insns: Sequence[Insn], *, bpf_capable: bool = True,
                            ld_imm64_hook: LdImm64Hook | None = None,
                            kfunc_hook: KfuncHook | None = None,
                            ) -> tuple[int, str] | None:
    """The first error of the kernel's pre-passes, as ``(errno, message)``, or ``None``.

    ``bpf_capable=False`` applies the unprivileged limits (4096 instructions, no
    bpf-to-bpf calls, no back-edges). ``message`` is ``""`` where the kernel logs nothing
    (``E2BIG`` for an empty or oversized program). ``kfunc_hook`` and ``ld_imm64_hook``
    let the caller, who has the kernel BTF and the fd table, report kfunc and map-fd
    errors at the point of the pre-passes where the kernel reports them.
    """
    n = len(insns)
    limit = BPF_COMPLEXITY_LIMIT_INSNS if bpf_capable else BPF_MAXINSNS
    if n == 0 or n > limit:
        return errno.E2BIG, ""
    try:
        starts = _add_subprogs(insns, bpf_capable, kfunc_hook)
        _check_subprogs(insns, starts)
        _resolve_ldimm64(insns, ld_imm64_hook)
        _check_cfg(insns, bpf_capable)
    except _Err as e:
        return e.err, e.message
    return None


# ---------------------------------------------------------------------------------------
# Per-instruction checks (do_check)
# ---------------------------------------------------------------------------------------


def _alu_reserved(ins: Insn, has_arena: bool) -> str | None:
    """Reserved-field checks of ``check_alu_op``."""
    code = ins.code
    op = code & 0xF0
    x = bool(code & Src.X)
    is64 = code & 0x07 == Cls.ALU64
    if op == AluOp.NEG:
        if x or ins.src or ins.off or ins.imm:
            return "BPF_NEG uses reserved fields"
        return None
    if op == AluOp.END:
        if ins.src or ins.off or ins.imm not in (16, 32, 64) or (is64 and x):
            return "BPF_END uses reserved fields"
        return None
    if op == AluOp.MOV:
        return _mov_reserved(ins, x, is64, has_arena)
    if op > AluOp.END:
        return f"invalid BPF_ALU opcode {op:x}"
    divmod_ = op in (AluOp.DIV, AluOp.MOD)
    bad_off = ins.off not in (0, 1) or (ins.off == 1 and not divmod_)
    if (x and (ins.imm or bad_off)) or (not x and (ins.src or bad_off)):
        return "BPF_ALU uses reserved fields"
    return None


def _mov_reserved(ins: Insn, x: bool, is64: bool, has_arena: bool) -> str | None:
    if not x:
        return "BPF_MOV uses reserved fields" if ins.src or ins.off else None
    if not is64:
        ok = ins.off in (0, 8, 16) and not ins.imm
        return None if ok else "BPF_MOV uses reserved fields"
    if ins.off == BPF_ADDR_SPACE_CAST:
        if ins.imm not in (1, 1 << 16):
            return "addr_space_cast insn can only convert between address space 1 and 0"
        if not has_arena:
            return ("addr_space_cast insn can only be used in a program that has an "
                    "associated arena")
        return None
    ok = ins.off in (0, 8, 16, 32) and not ins.imm
    return None if ok else "BPF_MOV uses reserved fields"


def _alu_operands(ins: Insn) -> str | None:
    """The checks ``check_alu_op`` makes after reading dst: zero divisor, shift range."""
    op = ins.code & 0xF0
    if ins.code & Src.X or op in (AluOp.NEG, AluOp.END, AluOp.MOV):
        return None
    if op in (AluOp.DIV, AluOp.MOD) and ins.imm == 0:
        return "div by zero"
    if op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
        width = 64 if ins.code & 0x07 == Cls.ALU64 else 32
        if not 0 <= ins.imm < width:
            return f"invalid shift {ins.imm}"
    return None


def _atomic_check(ins: Insn) -> str | None:
    """``check_atomic``: known operation, then the read-modify-write operand size."""
    imm = ins.imm
    rmw = {AtomicOp.ADD, AtomicOp.AND, AtomicOp.OR, AtomicOp.XOR, AtomicOp.FETCH_ADD,
           AtomicOp.FETCH_AND, AtomicOp.FETCH_OR, AtomicOp.FETCH_XOR, AtomicOp.XCHG,
           AtomicOp.CMPXCHG}
    if imm in rmw:
        if ins.code & 0x18 not in (Size.W, Size.DW):
            return "invalid atomic operand size"
        return None
    if imm in (AtomicOp.LOAD_ACQ, AtomicOp.STORE_REL):
        return None
    return f"BPF_ATOMIC uses invalid atomic opcode {imm & 0xFFFFFFFF:02x}"


def _jmp_reserved(ins: Insn) -> str | None:
    code = ins.code
    cls = code & 0x07
    op = code & 0xF0
    x = bool(code & Src.X)
    if op == JmpOp.CALL:
        bad = (x or (ins.src != CallKind.KFUNC and ins.off)
               or ins.src not in (CallKind.HELPER, CallKind.PSEUDO_CALL, CallKind.KFUNC)
               or ins.dst or cls == Cls.JMP32)
        return "BPF_CALL uses reserved fields" if bad else None
    if op == JmpOp.JA:
        bad = (x or ins.src or ins.dst or (cls == Cls.JMP and ins.imm)
               or (cls == Cls.JMP32 and ins.off))
        return "BPF_JA uses reserved fields" if bad else None
    if op == JmpOp.EXIT:
        bad = x or ins.imm or ins.src or ins.dst or cls == Cls.JMP32
        return "BPF_EXIT uses reserved fields" if bad else None
    if op == JmpOp.JCOND:
        if code != Cls.JMP | JmpOp.JCOND or ins.src != BPF_MAY_GOTO or ins.dst or ins.imm:
            return f"invalid may_goto imm {ins.imm}"
        return None
    if op > JmpOp.JCOND:
        return f"invalid BPF_JMP/JMP32 opcode {op:x}"
    if (x and ins.imm) or (not x and ins.src):
        return "BPF_JMP/JMP32 uses reserved fields"
    return None


def check_insn_reserved(insns: Sequence[Insn], idx: int, *, has_arena: bool = False,
                        ) -> str | None:
    """The reserved-field gate ``do_check`` applies first when it reaches ``insns[idx]``.

    For conditional jumps the kernel reads ``dst`` (``R%d !read_ok``) before this gate.
    Mirrors: ``check_alu_op``, ``check_atomic``, the STX/ST/CALL/JA/EXIT branches of
    ``do_check``, ``check_cond_jmp_op``, ``check_ld_abs`` and ``check_ld_imm``.
    """
    ins = insns[idx]
    code = ins.code
    cls = code & 0x07
    if cls in (Cls.ALU, Cls.ALU64):
        return _alu_reserved(ins, has_arena)
    if cls == Cls.STX:
        if code & 0xE0 == Mode.ATOMIC:
            return _atomic_check(ins)
        if code & 0xE0 != Mode.MEM or ins.imm:
            return "BPF_STX uses reserved fields"
        return None
    if cls == Cls.ST:
        return "BPF_ST uses reserved fields" if code & 0xE0 != Mode.MEM or ins.src else None
    if cls in (Cls.JMP, Cls.JMP32):
        return _jmp_reserved(ins)
    if cls == Cls.LD:
        return _ld_reserved(ins)
    if cls == Cls.LDX:
        mode_ok = code & 0xE0 in (Mode.MEM, Mode.MEMSX)
        return None if mode_ok and not ins.imm else "BPF_LDX uses reserved fields"
    return None  # pragma: no cover - all eight classes handled


def _ld_reserved(ins: Insn) -> str | None:
    mode = ins.code & 0xE0
    if mode in (Mode.ABS, Mode.IND):
        if (ins.dst or ins.off or ins.code & 0x18 == Size.DW
                or (mode == Mode.ABS and ins.src)):
            return "BPF_LD_[ABS|IND] uses reserved fields"
        return None
    if mode == Mode.IMM:
        if ins.code & 0x18 != Size.DW:
            return "invalid BPF_LD_IMM insn"
        return "BPF_LD_IMM64 uses reserved fields" if ins.off else None
    return "invalid BPF_LD mode"


def _is_cond_jump(ins: Insn) -> bool:
    return (ins.code & 0x07 in (Cls.JMP, Cls.JMP32)
            and ins.code & 0xF0 not in (JmpOp.CALL, JmpOp.JA, JmpOp.EXIT, JmpOp.JCOND))


def _reg_steps(ins: Insn) -> list[tuple[str, int]]:
    """The ``check_reg_arg`` calls ``do_check`` makes for ``ins``, in order."""
    code = ins.code
    cls = code & 0x07
    op = code & 0xF0
    x = bool(code & Src.X)
    if cls in (Cls.ALU, Cls.ALU64):
        if op in (AluOp.NEG, AluOp.END):
            return [("read", ins.dst), ("write", ins.dst)]
        if op == AluOp.MOV:
            return ([("read", ins.src)] if x else []) + [("write", ins.dst)]
        return ([("read", ins.src)] if x else []) + [("read", ins.dst), ("operands", 0),
                                                     ("write", ins.dst)]
    if cls == Cls.LDX:
        return [("read", ins.src), ("write", ins.dst)]
    if cls == Cls.STX:
        if code & 0xE0 != Mode.ATOMIC:
            return [("read", ins.src), ("read", ins.dst)]
        if ins.imm == AtomicOp.LOAD_ACQ:
            return [("read", ins.src), ("write", ins.dst)]
        if ins.imm == AtomicOp.CMPXCHG:
            return [("read", ins.src), ("read", ins.dst), ("read", 0), ("write", 0)]
        if ins.imm & _BPF_FETCH and ins.imm != AtomicOp.STORE_REL:
            # the fetched value lands in src, after the memory checks
            return [("read", ins.src), ("read", ins.dst), ("write", ins.src)]
        return [("read", ins.src), ("read", ins.dst)]
    if cls == Cls.ST:
        return [("read", ins.dst)]
    if _is_cond_jump(ins):
        return [("read", ins.src)] if x else []
    if cls == Cls.LD:
        mode = code & 0xE0
        if mode == Mode.IND:
            return [("read", 6), ("read", ins.src)]
        if mode == Mode.ABS:
            return [("read", 6)]
        return [("write", ins.dst)]
    return []


def check_insn(insns: Sequence[Insn], idx: int, *, has_arena: bool = False) -> str | None:
    """The first error ``do_check`` reports at ``insns[idx]`` from the instruction alone.

    Register-state checks are assumed to pass, except those decided by the encoding:
    ``R%d is invalid`` (r11-r15) and ``frame pointer is read only`` (writing r10), which
    the kernel reports from the same ``check_reg_arg`` calls, at the same point.
    For conditional jumps ``R%d is invalid`` on ``dst`` precedes the reserved-field gate.
    """
    ins = insns[idx]
    if _is_cond_jump(ins) and ins.dst >= MAX_BPF_REG:
        return f"R{ins.dst} is invalid"
    msg = check_insn_reserved(insns, idx, has_arena=has_arena)
    if msg is not None:
        return msg
    for step, reg in _reg_steps(ins):
        if step == "operands":
            msg = _alu_operands(ins)
            if msg is not None:
                return msg
            continue
        if reg >= MAX_BPF_REG:
            return f"R{reg} is invalid"
        if step == "write" and reg == _REG_FP:
            return "frame pointer is read only"
    return None


def check_insn_errno(insns: Sequence[Insn], idx: int, *, has_arena: bool = False,
                     ) -> tuple[int, str] | None:
    """:func:`check_insn` with the errno the kernel returns (``EACCES`` for r10 writes)."""
    msg = check_insn(insns, idx, has_arena=has_arena)
    if msg is None:
        return None
    return (errno.EACCES if msg == "frame pointer is read only" else errno.EINVAL), msg
