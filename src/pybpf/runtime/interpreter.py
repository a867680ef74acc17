"""The checked interpreter: the reference semantics of every instruction.

Programs are pre-decoded once: the instruction stream is split into basic blocks and each
block is translated into a small Python function whose registers are local variables.
The hot loop is then ``pc = blocks[pc](R, ctx)`` — no byte parsing, no per-instruction
dispatch — which is what lets a Python interpreter reach millions of instructions per
second. A block that jumps back to its own start runs as a ``while`` loop in place.

Semantics follow Linux 6.18 and RFC 9669: 32-bit results zero the upper half, division
by zero gives 0 and modulo by zero leaves the dividend (zero-extended in 32-bit forms),
``INT_MIN / -1`` wraps, shift amounts are masked, bpf-to-bpf calls get their own
512-byte frame and keep R6–R9, calls nest at most 8 deep. Every load, store and atomic
goes through the memory registry and a bad access raises :class:`BpfFault`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pybpf.errors import BpfFault
from pybpf.helpers.internal import TIMED_MAY_GOTO
from pybpf.isa.insn import Insn, imm64
from pybpf.isa.opcodes import (
    MAX_CALL_FRAMES,
    AluOp,
    AtomicOp,
    CallKind,
    JmpOp,
    Kind,
    OpSpec,
    lookup,
)
from pybpf.runtime.context import RunContext
from pybpf.runtime.cpus import PCPU_UNIT_STRIDE
from pybpf.runtime.memory import REGISTRY, MemoryRegistry

M64 = 0xFFFFFFFFFFFFFFFF
M32 = 0xFFFFFFFF
S64 = 1 << 63

def insn_spec(ins: Insn) -> OpSpec | None:
    """:func:`lookup`, plus the kernel-internal per-CPU mov the verifier's rewrites emit.

    ``BPF_MOV64_PERCPU_REG`` (``mov64`` with ``off = BPF_ADDR_PERCPU``) has no row of its
    own: no loaded program may contain it (the verifier refuses it as reserved fields).
    """
    spec = lookup(ins.code, ins.off, ins.imm)
    if spec is None and ins.code == _MOV64_X and ins.off == BPF_ADDR_PERCPU and not ins.imm:
        return MOV64_PERCPU
    if spec is None and ins.code == _NOSPEC and not (ins.dst or ins.src or ins.off or ins.imm):
        return NOSPEC  # the verifier's speculation barrier (verifier/spectre.py)
    if spec is None and ins.code & 0xE7 == _PROBE_ATOMIC_STX:
        # BPF_PROBE_ATOMIC (an atomic on an arena pointer): the atomic's row, arena-relative
        atomic = lookup(ins.code & ~0xE0 | 0xC0, ins.off, ins.imm)
        if atomic is not None:
            return replace(atomic, name=f"arena_{atomic.name}", linux=False, probe=True,
                           arena=True)
    return spec


_PROBE_ATOMIC_STX = 0xE3  # BPF_STX | BPF_PROBE_ATOMIC


_MOV64_X = 0xBF
BPF_ADDR_PERCPU = -1
_MOV64_REG = lookup(_MOV64_X, 0)
assert _MOV64_REG is not None
MOV64_PERCPU = replace(_MOV64_REG, name="mov64_percpu", variant=BPF_ADDR_PERCPU)
#: ``BPF_ST | BPF_NOSPEC``: a barrier against speculation, which neither tier performs; run
#: as ``r0 = r0`` (its register fields are all 0), a no-op that ends no block
_NOSPEC = 0xC2
NOSPEC = replace(_MOV64_REG, name="nospec", linux=False)
S32 = 1 << 31

HelperFn = Callable[..., int]
LdAbsFn = Callable[[RunContext, int, int, int], "int | None"]
"""``ld_abs(ctx, skb_ptr, offset, size)`` → value (host order), or None to end the run with 0."""


class TailCall(Exception):
    """Raised by the ``tail_call`` helper: continue in ``target`` with the same ctx."""

    def __init__(self, target: CompiledProgram) -> None:
        self.target = target
        super().__init__("tail call")


MAX_TAIL_CALL_CNT = 33


# --- arithmetic that does not fit in one expression ---------------------------------------
def _signed(v: int, bits: int) -> int:
    sign = 1 << (bits - 1)
    return (v ^ sign) - sign


def _sdiv(a: int, b: int, bits: int) -> int:
    mask = (1 << bits) - 1
    sa, sb = _signed(a & mask, bits), _signed(b & mask, bits)
    if sb == 0:
        return 0
    q = abs(sa) // abs(sb)
    if (sa < 0) != (sb < 0):
        q = -q
    return q & mask


def _smod(a: int, b: int, bits: int) -> int:
    mask = (1 << bits) - 1
    sa, sb = _signed(a & mask, bits), _signed(b & mask, bits)
    if sb == 0:
        return a & mask
    r = abs(sa) % abs(sb)
    if sa < 0:
        r = -r
    return r & mask


def _bswap(v: int, nbytes: int) -> int:
    return int.from_bytes((v & ((1 << (8 * nbytes)) - 1)).to_bytes(nbytes, "little"), "big")


_ATOMIC_LOCK = threading.Lock()


def _atomic_ops(load: Callable[[int, int, int], int],
                store: Callable[[int, int, int, int], None]) -> dict[str, Callable[..., int]]:
    """Read-modify-write primitives over checked memory, serialised by one lock."""
    mask = {4: M32, 8: M64}

    def rmw(addr: int, size: int, op: int, src: int, pc: int) -> int:
        with _ATOMIC_LOCK:
            old = load(addr, size, pc)
            base = op & ~1
            if base == AtomicOp.ADD:
                new = old + src
            elif base == AtomicOp.OR:
                new = old | src
            elif base == AtomicOp.AND:
                new = old & src
            elif base == AtomicOp.XOR:
                new = old ^ src
            else:  # xchg
                new = src
            store(addr, size, new & mask[size], pc)
            return old

    def cmpxchg(addr: int, size: int, expected: int, src: int, pc: int) -> int:
        with _ATOMIC_LOCK:
            old = load(addr, size, pc)
            if old == expected & mask[size]:
                store(addr, size, src & mask[size], pc)
            return old

    return {"_rmw": rmw, "_cmpxchg": cmpxchg}


@dataclass
class _Block:
    start: int
    end: int  # exclusive


_JMP_EXPR = {
    JmpOp.JEQ: "{d} == {s}",
    JmpOp.JNE: "{d} != {s}",
    JmpOp.JGT: "{d} > {s}",
    JmpOp.JGE: "{d} >= {s}",
    JmpOp.JLT: "{d} < {s}",
    JmpOp.JLE: "{d} <= {s}",
    JmpOp.JSET: "{d} & {s}",
    JmpOp.JSGT: "{d} > {s}",
    JmpOp.JSGE: "{d} >= {s}",
    JmpOp.JSLT: "{d} < {s}",
    JmpOp.JSLE: "{d} <= {s}",
}
_SIGNED_JMP = {JmpOp.JSGT, JmpOp.JSGE, JmpOp.JSLT, JmpOp.JSLE}


class CompiledProgram:
    """A pre-decoded program ready to run on the checked interpreter.

    ``helpers`` maps helper ids to implementations ``impl(ctx, r1..r5) -> r0``;
    ``kfuncs`` maps BTF ids likewise; ``ld_abs`` serves legacy packet loads.
    """

    def __init__(self, insns: Sequence[Insn], *, helpers: Mapping[int, HelperFn] | None = None,
                 kfuncs: Mapping[int, HelperFn] | None = None, ld_abs: LdAbsFn | None = None,
                 mem: MemoryRegistry = REGISTRY, budgeted: bool = False,
                 name: str = "prog") -> None:
        self.insns = list(insns)
        self.name = name
        self.mem = mem
        self.helpers = dict(helpers or {})
        self.kfuncs = dict(kfuncs or {})
        self.ld_abs = ld_abs
        self.budgeted = budgeted
        self.source = ""
        self._budgeted_twin: CompiledProgram | None = None
        self._blocks: list[Callable[[list[int], RunContext], int]] = self._compile()

    # -- public -------------------------------------------------------------------------
    def run(self, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0, r5: int = 0, *,
            ctx: RunContext | None = None, steps: int | None = None, cpu: int = 0,
            prog: Any = None, kernel: Any = None) -> int:
        """Run from instruction 0 with R1–R5 set; return R0 (unsigned 64-bit)."""
        if ctx is None:
            ctx = RunContext(mem=self.mem, cpu=cpu, prog=prog, kernel=kernel)
        if steps is not None:
            if not self.budgeted:
                return self.with_budget().run(r1, r2, r3, r4, r5, ctx=ctx, steps=steps)
            ctx.steps = steps
        R = [0, r1 & M64, r2 & M64, r3 & M64, r4 & M64, r5 & M64, 0, 0, 0, 0, 0, 0]
        ctx.depth = 0
        R[10] = ctx.stack.enter(0)
        blocks = self._blocks
        ctx.runner = self
        tail_calls = 0
        pc = 0
        while True:
            try:
                while pc >= 0:
                    pc = blocks[pc](R, ctx)
                return R[0]
            except TailCall as tc:
                tail_calls += 1
                if tail_calls > MAX_TAIL_CALL_CNT:
                    # The kernel makes an over-limit tail call fall through (helper returns).
                    R[0] = M64 & -1
                    return R[0]
                target = tc.target if not self.budgeted else tc.target.with_budget()
                blocks = target._blocks
                ctx.runner = target
                ctx.depth = 0
                pc = 0

    def with_budget(self) -> CompiledProgram:
        """The same program compiled with an instruction budget check in every block."""
        cached = self._budgeted_twin
        if self.budgeted:
            return self
        if cached is None:
            cached = CompiledProgram(self.insns, helpers=self.helpers, kfuncs=self.kfuncs,
                                     ld_abs=self.ld_abs, mem=self.mem, budgeted=True,
                                     name=self.name)
            self._budgeted_twin = cached
        return cached

    # -- compilation ----------------------------------------------------------------------
    def _specs(self) -> list[OpSpec | None]:
        specs: list[OpSpec | None] = []
        skip = False
        for ins in self.insns:
            if skip:
                specs.append(None)
                skip = False
                continue
            spec = insn_spec(ins)
            specs.append(spec)
            skip = spec is not None and spec.is_wide
        return specs

    def _leaders(self, specs: list[OpSpec | None]) -> list[bool]:
        n = len(self.insns)
        leader = [False] * (n + 1)
        leader[0] = True
        leader[n] = True
        second_slots = {pc + 1 for pc, spec in enumerate(specs) if spec is not None and spec.is_wide}
        for pc, spec in enumerate(specs):
            if spec is None:
                continue
            ins = self.insns[pc]
            nxt = pc + (2 if spec.is_wide else 1)
            if spec.is_jump:
                target = self._jump_target(pc, ins, spec)
                if 0 <= target < n:
                    leader[target] = True
                leader[min(nxt, n)] = True
            elif spec.kind in (Kind.EXIT, Kind.CALLX) or (
                    spec.kind is Kind.CALL and ins.src == CallKind.PSEUDO_CALL):
                leader[min(nxt, n)] = True
                if spec.kind is Kind.CALL:
                    target = pc + ins.imm + 1
                    if 0 <= target < n:
                        leader[target] = True
            elif spec.kind in (Kind.LD_ABS, Kind.LD_IND):
                leader[min(nxt, n)] = True
        for pc in second_slots:
            if pc < n:
                leader[pc] = False  # a jump there faults: "jump into the middle"
        return leader

    @staticmethod
    def _jump_target(pc: int, ins: Insn, spec: OpSpec) -> int:
        if spec.kind is Kind.JA and not spec.is64:  # gotol / ja32: offset in imm
            return pc + ins.imm + 1
        return pc + ins.off + 1

    def _compile(self) -> list[Callable[[list[int], RunContext], int]]:
        n = len(self.insns)
        specs = self._specs()
        leader = self._leaders(specs)
        load, store = self.mem.accessors()
        ns: dict[str, Any] = {
            "ld": load, "st": store, "BpfFault": BpfFault,
            "_sdiv": _sdiv, "_smod": _smod, "_bswap": _bswap,
            "_subcall": self._subcall, "_ldabs": self._ld_abs_call,
            "_callx": self._callx, "_helper": self._helper_call, "_kfunc": self._kfunc_call,
            "_jump_fault": _jump_fault,
        }
        ns["_probe_ld"] = _probe_loader(load)
        from pybpf.maps.type_arena import (
            run_arena_atomic,
            run_arena_cast_user,
            run_arena_load,
            run_arena_store,
        )
        ns.update(_arena_ld=run_arena_load, _arena_st=run_arena_store,
                  _arena_cast_user=run_arena_cast_user, _arena_atomic=run_arena_atomic)
        ns.update(_atomic_ops(load, store))
        src: list[str] = []
        starts = [pc for pc in range(n) if leader[pc]]
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else n
            src.extend(self._gen_block(_Block(start, end), specs))
        src.append(f"def b{n}(R, E):\n    raise BpfFault({max(n - 1, 0)}, 0, 0, "
                   f"'fell off the end of the program')\n")
        self.source = "\n".join(src)
        code = compile(self.source, f"<bpf {self.name}>", "exec")
        exec(code, ns)
        blocks: list[Any] = [None] * (n + 1)
        for pc in starts:
            blocks[pc] = ns[f"b{pc}"]
        blocks[n] = ns[f"b{n}"]
        # Jumps into the middle of a block or of ld_imm64: a fault, like jumping anywhere odd.
        for pc in range(n):
            if blocks[pc] is None:
                blocks[pc] = _bad_target(pc)
        return blocks

    # -- code generation -----------------------------------------------------------------
    def _gen_block(self, blk: _Block, specs: list[OpSpec | None]) -> list[str]:
        body: list[str] = []
        used: set[int] = set()
        written: set[int] = set()
        term: list[str] | None = None  # terminator lines (with {WB} placeholders)
        self_loop = False
        pc = blk.start
        count = 0
        end_pc = blk.end
        while pc < blk.end:
            ins = self.insns[pc]
            spec = specs[pc]
            count += 1
            if spec is None:
                body.append(f"raise BpfFault({pc}, 0, 0, 'unknown opcode {ins.code:02x}')")
                term = []
                end_pc = pc + 1
                break
            lines, t, u, w = self._gen_insn(pc, ins, spec)
            used |= u
            written |= w
            body.extend(lines)
            if t is not None:
                term = t
                if spec.is_jump and self._jump_target(pc, ins, spec) == blk.start:
                    self_loop = True
                end_pc = pc + 1
                break
            pc += 2 if spec.is_wide else 1
        if term is None:
            term = ["{WB}", f"return {min(end_pc, len(self.insns))}"]
        regs = sorted(used | written)
        head = [f"r{r} = R[{r}]" for r in regs]
        wb = "; ".join(f"R[{r}] = r{r}" for r in sorted(written)) or "pass"
        budget = [f"E.steps -= {count}",
                  f"if E.steps < 0: raise BpfFault({blk.start}, 0, 0, "
                  f"'instruction budget exhausted')"] if self.budgeted else []
        out = [f"def b{blk.start}(R, E):"]
        out += ["    " + h for h in head]
        if self_loop:
            # The block's jump back to its own start becomes `continue` of a local loop.
            loop_back = f"{{WB}}; return {blk.start}"
            out.append("    while True:")
            out += ["        " + b.replace("{WB}", wb) for b in budget + body]
            for line in term:
                if line == loop_back:
                    line = "continue"
                elif line.endswith(": " + loop_back):
                    line = line[: -len(loop_back)] + "continue"
                out.append("        " + line.replace("{WB}", wb))
        else:
            out += ["    " + b.replace("{WB}", wb) for b in budget + body]
            out += ["    " + line.replace("{WB}", wb) for line in term]
        return out

    def _gen_insn(self, pc: int, ins: Insn, spec: OpSpec
                  ) -> tuple[list[str], list[str] | None, set[int], set[int]]:
        """Python lines for one instruction, optional terminator, registers read/written."""
        k = spec.kind
        d = f"r{ins.dst}"
        s = f"r{ins.src}"
        if ins.dst > 11 or ins.src > 11:  # r11: BPF_REG_AX of the verifier's rewrites
            return ([f"raise BpfFault({pc}, 0, 0, 'invalid register')"], [], set(), set())
        if k in (Kind.ALU, Kind.SDIV, Kind.SMOD, Kind.NEG, Kind.MOV, Kind.MOVSX):
            return self._gen_alu(pc, ins, spec, d, s)
        if k is Kind.END or k is Kind.BSWAP:
            bits = spec.size
            if k is Kind.END and spec.src_reg is False:  # to little endian: truncate
                expr = f"{d} & {(1 << bits) - 1:#x}"
            else:
                expr = f"_bswap({d}, {bits // 8})"
            return [f"{d} = {expr}"], None, {ins.dst}, {ins.dst}
        if k is Kind.LD_IMM64:
            if pc + 1 >= len(self.insns):
                return [f"raise BpfFault({pc}, 0, 0, 'incomplete ld_imm64')"], [], set(), set()
            value = imm64(ins, self.insns[pc + 1])
            return [f"{d} = {value:#x}"], None, set(), {ins.dst}
        if spec.arena:  # BPF_PROBE_MEM32: the program's arena window (maps/type_arena.py)
            return self._gen_arena(pc, ins, spec, d, s)
        if k is Kind.ADDR_SPACE_CAST:
            return self._gen_arena(pc, ins, spec, d, s)
        if k is Kind.LDX or k is Kind.LDXSX:
            if spec.probe:  # BPF_PROBE_MEM: an unreadable address reads as 0
                expr = f"_probe_ld(({s} + {ins.off}) & {M64:#x}, {spec.size}, {pc})"
            else:
                expr = f"ld({s} + {ins.off}, {spec.size}, {pc})"
            if k is Kind.LDXSX:
                sign = 1 << (spec.size * 8 - 1)
                expr = f"((({expr}) ^ {sign:#x}) - {sign:#x}) & {M64:#x}"
            return [f"{d} = {expr}"], None, {ins.src}, {ins.dst}
        if k is Kind.ST:
            return ([f"st({d} + {ins.off}, {spec.size}, {ins.imm & M64:#x}, {pc})"], None,
                    {ins.dst}, set())
        if k is Kind.STX:
            return ([f"st({d} + {ins.off}, {spec.size}, {s}, {pc})"], None,
                    {ins.dst, ins.src}, set())
        if k is Kind.ATOMIC:
            return self._gen_atomic(pc, ins, spec, d, s)
        if k is Kind.JA:
            target = self._jump_target(pc, ins, spec)
            return [], [self._goto(pc, target)], set(), set()
        if k is Kind.JCOND:
            target = pc + ins.off + 1
            return ([], [f"if E.loops <= 0: {{WB}}; return {self._checked_target(pc, target)}",
                         "E.loops -= 1", "{WB}", f"return {pc + 1}"], set(), set())
        if k is Kind.JMP:
            return self._gen_jmp(pc, ins, spec, d, s)
        if k is Kind.EXIT:
            return [], ["{WB}", "R[0] = r0", "return -1"], {0}, set()
        if k is Kind.CALL:
            return self._gen_call(pc, ins)
        if k is Kind.CALLX:
            line = f"r0 = _callx(E, {d}, r1, r2, r3, r4, r5, {pc})"
            return [line], ["{WB}", f"return {pc + 1}"], {ins.dst, 1, 2, 3, 4, 5}, {0}
        if k in (Kind.LD_ABS, Kind.LD_IND):
            off = f"{s} + {ins.imm}" if k is Kind.LD_IND else f"{ins.imm}"
            regs = {6} | ({ins.src} if k is Kind.LD_IND else set())
            lines = [f"_v = _ldabs(E, r6, {off}, {spec.size}, {pc})",
                     "if _v is None: {WB}; R[0] = 0; return -1", "r0 = _v"]
            return lines, ["{WB}", "R[0] = r0", f"return {pc + 1}"], regs, {0}
        return [f"raise BpfFault({pc}, 0, 0, 'unsupported instruction')"], [], set(), set()

    @staticmethod
    def _gen_arena(pc: int, ins: Insn, spec: OpSpec, d: str, s: str
                   ) -> tuple[list[str], list[str] | None, set[int], set[int]]:
        """Arena instructions: ``BPF_PROBE_MEM32`` loads and stores (a fault reads 0 and
        drops the store) and ``addr_space_cast`` (32 bits kept; to user space with the
        upper half of ``user_vm_start``, 0 staying 0)."""
        if spec.kind is Kind.ATOMIC:
            addr, op = f"{d} + {ins.off}", spec.op
            if op == AtomicOp.LOAD_ACQ:
                return ([f"{d} = _arena_ld(E, {s} + {ins.off}, {spec.size})"], None, {ins.src},
                        {ins.dst})
            if op == AtomicOp.STORE_REL:
                return ([f"_arena_st(E, {addr}, {spec.size}, {s})"], None, {ins.dst, ins.src},
                        set())
            if op == AtomicOp.CMPXCHG:
                return ([f"r0 = _arena_atomic(E, {addr}, {spec.size}, {op}, {s}, r0)"], None,
                        {ins.dst, ins.src, 0}, {0})
            line = f"_arena_atomic(E, {addr}, {spec.size}, {op}, {s}, 0)"
            if op & 1:  # fetch forms and xchg write the old value to src
                return [f"{s} = {line}"], None, {ins.dst, ins.src}, {ins.src}
            return [line], None, {ins.dst, ins.src}, set()
        if spec.kind is Kind.ADDR_SPACE_CAST:
            if ins.imm == 1:
                return [f"{d} = {s} & 0xffffffff"], None, {ins.src}, {ins.dst}
            return [f"{d} = _arena_cast_user(E, {s})"], None, {ins.src}, {ins.dst}
        if spec.kind is Kind.LDX:
            return ([f"{d} = _arena_ld(E, {s} + {ins.off}, {spec.size})"], None, {ins.src},
                    {ins.dst})
        if spec.kind is Kind.LDXSX:
            sign = 1 << (spec.size * 8 - 1)
            return ([f"{d} = ((_arena_ld(E, {s} + {ins.off}, {spec.size}) ^ {sign:#x}) - "
                     f"{sign:#x}) & {M64:#x}"], None, {ins.src}, {ins.dst})
        if spec.kind is Kind.ST:
            return ([f"_arena_st(E, {d} + {ins.off}, {spec.size}, {ins.imm & M64:#x})"], None,
                    {ins.dst}, set())
        return ([f"_arena_st(E, {d} + {ins.off}, {spec.size}, {s})"], None,
                {ins.dst, ins.src}, set())

    def _gen_alu(self, pc: int, ins: Insn, spec: OpSpec, d: str, s: str
                 ) -> tuple[list[str], list[str] | None, set[int], set[int]]:
        is64 = spec.is64
        mask = M64 if is64 else M32
        bits = 64 if is64 else 32
        used = {ins.dst}
        if spec.src_reg:
            src = s
            used.add(ins.src)
        else:
            src = f"{(ins.imm & M64) if is64 else (ins.imm & M32):#x}"
        k = spec.kind
        if k is Kind.MOV and spec.variant == BPF_ADDR_PERCPU:
            expr = f"({src} + E.cpu * {PCPU_UNIT_STRIDE:#x}) & {M64:#x}"
            return [f"{d} = {expr}"], None, {ins.src}, {ins.dst}
        if k is Kind.MOV:
            expr = src if (is64 or not spec.src_reg) else f"{src} & {M32:#x}"
            return [f"{d} = {expr}"], None, {ins.src} if spec.src_reg else set(), {ins.dst}
        if k is Kind.MOVSX:
            w = spec.size
            sign = 1 << (w - 1)
            expr = f"((({s} & {(1 << w) - 1:#x}) ^ {sign:#x}) - {sign:#x}) & {mask:#x}"
            return [f"{d} = {expr}"], None, {ins.src}, {ins.dst}
        if k is Kind.NEG:
            return [f"{d} = (-{d}) & {mask:#x}"], None, {ins.dst}, {ins.dst}
        if k is Kind.SDIV:
            return [f"{d} = _sdiv({d}, {src}, {bits})"], None, used, {ins.dst}
        if k is Kind.SMOD:
            return [f"{d} = _smod({d}, {src}, {bits})"], None, used, {ins.dst}
        op = spec.op
        dm = d if is64 else f"({d} & {M32:#x})"
        if op == AluOp.ADD:
            expr = f"({d} + {src}) & {mask:#x}"
        elif op == AluOp.SUB:
            expr = f"({d} - {src}) & {mask:#x}"
        elif op == AluOp.MUL:
            expr = f"({d} * {src}) & {mask:#x}"
        elif op == AluOp.OR:
            expr = f"{d} | {src}" if is64 else f"({d} | {src}) & {M32:#x}"
        elif op == AluOp.AND:
            expr = f"{d} & {src}" if is64 else f"{d} & {src} & {M32:#x}"
        elif op == AluOp.XOR:
            expr = f"{d} ^ {src}" if is64 else f"({d} ^ {src}) & {M32:#x}"
        elif op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
            sh = f"({src} & {bits - 1})" if spec.src_reg else f"{int(src, 16) & (bits - 1)}"
            if op == AluOp.LSH:
                expr = f"({d} << {sh}) & {mask:#x}"
            elif op == AluOp.RSH:
                expr = f"{dm} >> {sh}"
            else:
                sign = 1 << (bits - 1)
                expr = f"((({dm} ^ {sign:#x}) - {sign:#x}) >> {sh}) & {mask:#x}"
        elif op in (AluOp.DIV, AluOp.MOD):
            sm = src if (is64 or not spec.src_reg) else f"({src} & {M32:#x})"
            if not spec.src_reg:
                divisor = int(src, 16)
                if divisor == 0:
                    expr = "0" if op == AluOp.DIV else dm
                else:
                    expr = f"{dm} // {sm}" if op == AluOp.DIV else f"{dm} % {sm}"
            else:
                expr = (f"({dm} // {sm} if {sm} else 0)" if op == AluOp.DIV
                        else f"({dm} % {sm} if {sm} else {dm})")
        else:
            return [f"raise BpfFault({pc}, 0, 0, 'invalid ALU op')"], [], set(), set()
        return [f"{d} = {expr}"], None, used, {ins.dst}

    def _gen_atomic(self, pc: int, ins: Insn, spec: OpSpec, d: str, s: str
                    ) -> tuple[list[str], list[str] | None, set[int], set[int]]:
        size = spec.size
        addr = f"{d} + {ins.off}"
        op = spec.op
        if op == AtomicOp.LOAD_ACQ:
            return [f"{d} = ld({s} + {ins.off}, {size}, {pc})"], None, {ins.src}, {ins.dst}
        if op == AtomicOp.STORE_REL:
            return [f"st({addr}, {size}, {s}, {pc})"], None, {ins.dst, ins.src}, set()
        if op == AtomicOp.CMPXCHG:
            return ([f"r0 = _cmpxchg({addr}, {size}, r0, {s}, {pc})"], None,
                    {ins.dst, ins.src, 0}, {0})
        if op & 1:  # fetch forms and xchg write the old value to src
            return ([f"{s} = _rmw({addr}, {size}, {op}, {s}, {pc})"], None,
                    {ins.dst, ins.src}, {ins.src})
        return [f"_rmw({addr}, {size}, {op}, {s}, {pc})"], None, {ins.dst, ins.src}, set()

    def _gen_jmp(self, pc: int, ins: Insn, spec: OpSpec, d: str, s: str
                 ) -> tuple[list[str], list[str] | None, set[int], set[int]]:
        target = self._checked_target(pc, self._jump_target(pc, ins, spec))
        is64 = spec.is64
        used = {ins.dst}
        signed = spec.op in _SIGNED_JMP
        if spec.src_reg:
            used.add(ins.src)
            sv = s if is64 else f"({s} & {M32:#x})"
            if signed:
                sv = f"({sv} ^ {S64 if is64 else S32:#x})"
        else:
            raw = (ins.imm & M64) if is64 else (ins.imm & M32)
            if signed:
                raw ^= S64 if is64 else S32
            sv = f"{raw:#x}"
        dv = d if is64 else f"({d} & {M32:#x})"
        if signed:
            dv = f"({dv} ^ {S64 if is64 else S32:#x})"
        cond = _JMP_EXPR[JmpOp(spec.op)].format(d=dv, s=sv)
        return [], [f"if {cond}: {{WB}}; return {target}", "{WB}",
                    f"return {pc + 1}"], used, set()

    def _gen_call(self, pc: int, ins: Insn
                  ) -> tuple[list[str], list[str] | None, set[int], set[int]]:
        args = "r1, r2, r3, r4, r5"
        if ins.src == CallKind.PSEUDO_CALL:
            target = self._checked_target(pc, pc + ins.imm + 1)
            return ([], ["{WB}", "R[1] = r1; R[2] = r2; R[3] = r3; R[4] = r4; R[5] = r5",
                         f"_subcall(E, R, {target}, {pc})", f"return {pc + 1}"],
                    {1, 2, 3, 4, 5}, set())
        if ins.src == CallKind.KFUNC:
            return [f"r0 = _kfunc(E, {ins.imm}, {args}, {pc})"], None, {1, 2, 3, 4, 5}, {0}
        if ins.src != CallKind.HELPER:
            return [f"raise BpfFault({pc}, 0, 0, 'invalid call')"], [], set(), set()
        if ins.imm == TIMED_MAY_GOTO:  # AX in, AX out, R0-R5 kept (helpers/internal.py)
            return ([f"r11 = _helper(E, {ins.imm}, (r10 + r11) & {M64}, 0, 0, 0, 0, {pc})"],
                    None, {10, 11}, {11})
        return [f"r0 = _helper(E, {ins.imm}, {args}, {pc})"], None, {1, 2, 3, 4, 5}, {0}

    def _checked_target(self, pc: int, target: int) -> int | str:
        if 0 <= target < len(self.insns):
            return target
        return f"_jump_fault({pc}, {target})"

    def _goto(self, pc: int, target: int) -> str:
        return "{WB}; return " + str(self._checked_target(pc, target))

    # -- runtime support called from generated code -----------------------------------
    def _helper_call(self, ctx: RunContext, func_id: int, r1: int, r2: int, r3: int, r4: int,
                     r5: int, pc: int) -> int:
        fn = self.helpers.get(func_id)
        if fn is None:
            raise BpfFault(pc, 0, 0, f"unknown helper {func_id}")
        return fn(ctx, r1, r2, r3, r4, r5) & M64

    def _kfunc_call(self, ctx: RunContext, btf_id: int, r1: int, r2: int, r3: int, r4: int,
                    r5: int, pc: int) -> int:
        fn = self.kfuncs.get(btf_id)
        if fn is None:
            raise BpfFault(pc, 0, 0, f"unknown kfunc {btf_id}")
        return fn(ctx, r1, r2, r3, r4, r5) & M64

    def _callx(self, ctx: RunContext, reg: int, r1: int, r2: int, r3: int, r4: int, r5: int,
               pc: int) -> int:
        return self._helper_call(ctx, reg, r1, r2, r3, r4, r5, pc)

    def _ld_abs_call(self, ctx: RunContext, skb: int, off: int, size: int, pc: int) -> int | None:
        if self.ld_abs is None:
            raise BpfFault(pc, 0, size, "LD_ABS/LD_IND needs a socket buffer context")
        return self.ld_abs(ctx, skb, off & M64, size)

    def call_subprog(self, ctx: RunContext, target: int, r1: int = 0, r2: int = 0, r3: int = 0,
                     r4: int = 0, r5: int = 0) -> int:
        """Call the subprogram at ``target`` from a helper: fresh registers, next frame."""
        depth = ctx.depth + 1
        if depth >= MAX_CALL_FRAMES:
            raise BpfFault(target, 0, 0, f"call depth exceeds {MAX_CALL_FRAMES} frames")
        if not 0 <= target < len(self.insns):
            raise BpfFault(target, 0, 0, f"callback target {target} out of range")
        R = [0, r1 & M64, r2 & M64, r3 & M64, r4 & M64, r5 & M64, 0, 0, 0, 0, 0, 0]
        ctx.depth = depth
        R[10] = ctx.stack.enter(depth)
        blocks = self._blocks
        try:
            p = target
            while p >= 0:
                p = blocks[p](R, ctx)
        finally:
            ctx.depth = depth - 1
        return R[0]

    def _subcall(self, ctx: RunContext, R: list[int], target: int, pc: int) -> None:
        depth = ctx.depth + 1
        if depth >= MAX_CALL_FRAMES:
            raise BpfFault(pc, 0, 0, f"call depth exceeds {MAX_CALL_FRAMES} frames")
        saved = R[6:11]
        ctx.depth = depth
        R[10] = ctx.stack.enter(depth)
        blocks = self._blocks
        p = target
        while p >= 0:
            p = blocks[p](R, ctx)
        ctx.depth = depth - 1
        R[6:11] = saved


def _bad_target(pc: int) -> Callable[[list[int], RunContext], int]:
    def fault(R: list[int], E: RunContext) -> int:
        raise BpfFault(pc, 0, 0, "jump into the middle of an instruction")
    return fault


def _probe_loader(load: Callable[[int, int, int], int]) -> Callable[[int, int, int], int]:
    """``BPF_PROBE_MEM``: the kernel's exception table turns a faulting load into 0."""
    def probe_ld(addr: int, size: int, pc: int) -> int:
        try:
            return load(addr, size, pc)
        except BpfFault:
            return 0
    return probe_ld


def _jump_fault(pc: int, target: int) -> int:
    raise BpfFault(pc, 0, 0, f"jump out of range to {target}")


def run(insns: Sequence[Insn], *args: int, **kwargs: Any) -> int:
    """Compile and run once: a convenience for tests and the CLI."""
    helpers = kwargs.pop("helpers", None)
    return CompiledProgram(insns, helpers=helpers).run(*args, **kwargs)
