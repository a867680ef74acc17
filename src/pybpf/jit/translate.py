"""BPF → LLVM IR: every instruction with the interpreter's exact semantics.

The translator reads the one opcode table (:mod:`pybpf.isa.opcodes`) and produces one
LLVM module per program:

- one internal function per entry point — instruction 0 and every ``call`` target
  (bpf-to-bpf calls). A function holds the blocks reachable from its entry; it takes the
  caller's r0–r9 and its call depth and returns r0–r5, which is exactly how the
  interpreter shares its register file with a callee (r6–r10 are the caller's again
  afterwards). Each function gets its own 512-byte frame;
- registers are ``alloca`` slots (LLVM's mem2reg turns them into SSA values);
- loads and stores are plain native accesses (JIT code trusts the verifier), or go
  through an inlined check of the memory registry's region table in sanitize mode;
- atomics are LLVM ``atomicrmw`` / ``cmpxchg`` (seq_cst) and acquire/release accesses;
- helper calls use a native implementation when :mod:`pybpf.jit.natives` has one, and
  otherwise call the Python bridge through the pointer in the run context; after each
  bridge call the native code checks ``status`` and unwinds if Python asked it to (an
  exception, a fault or a tail call);
- faults (bad jumps, unknown opcodes, call depth, budget, sanitizer) store pc, address,
  size and a reason index in the run context and unwind.

Debug line info maps every instruction to line ``pc + 1`` so the object file's line
table gives the native offset of each BPF instruction (``jited_line_info``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import llvmlite.ir as ir

from pybpf.helpers.internal import TIMED_MAY_GOTO
from pybpf.isa.insn import Insn, imm64
from pybpf.isa.opcodes import (
    MAX_BPF_STACK,
    MAX_CALL_FRAMES,
    AluOp,
    AtomicOp,
    CallKind,
    JmpOp,
    Kind,
    OpSpec,
)
from pybpf.jit.arenagen import emit_arena
from pybpf.jit.state import (
    BRIDGE_CALLX,
    BRIDGE_HELPER,
    BRIDGE_KFUNC,
    BRIDGE_LD_ABS,
    FIELD,
    FIXED_REASONS,
    REASON_READ,
    REASON_READ_ONLY,
    REASON_WRITE,
    Status,
)
from pybpf.runtime.cpus import PCPU_UNIT_STRIDE
from pybpf.runtime.interpreter import BPF_ADDR_PERCPU, insn_spec

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I16 = ir.IntType(16)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()
INT = {1: I8, 2: I16, 4: I32, 8: I64}
M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
RESULT = ir.LiteralStructType([I64] * 6)  # r0..r5 after a bpf-to-bpf call
SUB_FN = ir.FunctionType(RESULT, [PTR, I64] + [I64] * 10)  # jctx, depth, r0..r9
ENTRY_FN = ir.FunctionType(I64, [PTR] + [I64] * 5)
BRIDGE_FN = ir.FunctionType(I64, [PTR] + [I64] * 8)
LOOP_FN = ir.FunctionType(I64, [PTR, I64, I64, PTR])
CALLBACK_FN = ir.FunctionType(I64, [PTR, I64, I64] + [I64] * 5)  # jctx, depth, target, r1..r5
CHECK_FN = ir.FunctionType(I64, [PTR, I64, I64, I1])
FAULT_FN = ir.FunctionType(ir.VoidType(), [PTR, I64, I64, I64, I64])

_ICMP = {
    JmpOp.JEQ: ("==", False), JmpOp.JNE: ("!=", False),
    JmpOp.JGT: (">", False), JmpOp.JGE: (">=", False),
    JmpOp.JLT: ("<", False), JmpOp.JLE: ("<=", False),
    JmpOp.JSGT: (">", True), JmpOp.JSGE: (">=", True),
    JmpOp.JSLT: ("<", True), JmpOp.JSLE: ("<=", True),
}
_RMW = {AtomicOp.ADD: "add", AtomicOp.OR: "or", AtomicOp.AND: "and", AtomicOp.XOR: "xor"}
_SYMBOL_SEQ = itertools.count()


def _libc_address(name: str) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
    addr = ctypes.cast(getattr(libc, name), ctypes.c_void_p).value
    assert addr is not None
    return addr


CLOCK_GETTIME = _libc_address("clock_gettime")


@dataclass
class Translation:
    """A translated program: its IR text and what the loader needs to know about it."""

    ir: str
    entry: str  # u64 entry(jit_ctx *, r1..r5)
    loop: str  # u64 loop(jit_ctx *, r1, repeat, u64 *retval)
    functions: list[tuple[str, int]]  # (symbol, entry pc): main first, then subprograms
    reasons: list[str]  # fault reason texts by index
    stack_mode: str  # "frames" (registered per-thread frames) or "alloca" (native stack)
    uses_bridge: bool
    may_loop: bool  # has a backward jump, a bpf-to-bpf call or may_goto (budget matters)
    notes: dict[str, Any] = field(default_factory=dict)  # what native generators recorded
    callback: str = ""  # u64 callback(jit_ctx *, depth, target pc, r1..r5); "" if none
    callback_targets: tuple[int, ...] = ()


NativeGen = Callable[["Emitter", list[ir.Value]], ir.Value]
"""A native helper: emits IR computing r0 from r1–r5 (see :mod:`pybpf.jit.natives`).

A generator may carry an ``applies(translator, consts) -> bool`` attribute: then it is
used only at call sites where that returns True (``consts`` are the registers r1–r5
known to hold an ``ld_imm64`` constant there, see :mod:`pybpf.jit.consts`); other call
sites go through the Python bridge."""


def jump_target(pc: int, ins: Insn, spec: OpSpec) -> int:
    """Where a jump goes: ``gotol``/``ja32`` carry the offset in ``imm``."""
    if spec.kind is Kind.JA and not spec.is64:
        return pc + ins.imm + 1
    return pc + ins.off + 1


def decode_specs(insns: Sequence[Insn]) -> list[OpSpec | None]:
    """The spec of each slot (``None`` for unknown opcodes and ld_imm64 second slots)."""
    specs: list[OpSpec | None] = []
    skip = False
    for ins in insns:
        if skip:
            specs.append(None)
            skip = False
            continue
        spec = insn_spec(ins)
        specs.append(spec)
        skip = spec is not None and spec.is_wide
    return specs


def second_slots(specs: Sequence[OpSpec | None]) -> set[int]:
    return {pc + 1 for pc, s in enumerate(specs) if s is not None and s.is_wide}


def _reads_fp_outside_memory_base(insns: Sequence[Insn], specs: Sequence[OpSpec | None]) -> bool:
    """Whether r10 is ever read other than as the base of a memory access (or written)."""
    for ins, spec in zip(insns, specs, strict=True):
        if spec is None:
            continue
        k = spec.kind
        if k is Kind.LDX or k is Kind.LDXSX:
            if ins.dst == 10:
                return True
            continue
        if k is Kind.ST:
            continue
        if k is Kind.STX:
            if ins.src == 10:
                return True
            continue
        if k is Kind.ATOMIC:
            if ins.src == 10 or (spec.op == AtomicOp.LOAD_ACQ and ins.dst == 10):
                return True
            continue
        if k in (Kind.EXIT, Kind.JA, Kind.JCOND, Kind.CALL, Kind.LD_ABS):
            continue
        if ins.dst == 10 or ins.src == 10:
            return True
    return False


class Emitter:
    """What a native helper generator may use while emitting into a program's function."""

    def __init__(self, tr: Translator, builder: ir.IRBuilder, jctx: ir.Value, pc: int,
                 func: _FuncState) -> None:
        self.tr = tr
        self.b = builder
        self.jctx = jctx
        self.pc = pc
        self._func = func
        self.consts: dict[int, int] = tr.call_consts.get(pc, {})
        """Registers r1–r5 known to hold an ``ld_imm64`` constant at this call."""

    def const(self, reg: int, value: ir.Value | None = None) -> int | None:
        """The known value of ``reg`` at this call (an IR constant or the dataflow's)."""
        if isinstance(value, ir.Constant) and isinstance(value.constant, int):
            return int(value.constant) & M64
        return self.consts.get(reg)

    @property
    def module(self) -> ir.Module:
        return self.tr.module

    def field_ptr(self, name: str, index: int = 0) -> ir.Value:
        """Pointer to a 64-bit field of the run context."""
        return self.b.gep(self.jctx, [ir.Constant(I64, FIELD[name] + index)], source_etype=I64)

    def call_address(self, addr: int, fnty: ir.FunctionType, args: Sequence[ir.Value]) -> ir.Value:
        """Call a native function by absolute address (libc, or our own helpers)."""
        fp = self.b.inttoptr(ir.Constant(I64, addr), PTR)
        return self.b.call(_typed_callee(fp, fnty), list(args))

    def intrinsic(self, name: str, fnty: ir.FunctionType) -> ir.Function:
        return self.tr.declare(name, fnty)

    def fault(self, addr: ir.Value, size: int, reason: str) -> None:
        """Branch to a fault of this instruction (the current block ends)."""
        self.tr.emit_fault(self.b, self.jctx, self.pc, addr, ir.Constant(I64, size),
                           self.tr.reason(reason))
        self.b.branch(self._func.bail)

    def new_block(self, name: str) -> ir.Block:
        return self.b.append_basic_block(name)

    def call_python(self, func_id: int, args: list[ir.Value]) -> ir.Value:
        """The helper's Python implementation through the bridge: the slow path of a
        native generator, which must carry ``slow_path = True`` (the program then keeps
        its stack in registered frames the Python side can read)."""
        r0 = self.tr._bridge(self.b, self._func, self.pc, BRIDGE_HELPER,
                             ir.Constant(I64, func_id & M64), args)
        self.tr._status_check(self.b, self._func, self.pc)
        return r0


class _FnPtrType(ir.PointerType):
    """An opaque ``ptr`` that remembers the function type it points to.

    llvmlite derives a callee's signature from its pointer type's pointee; LLVM 15+ IR
    has only opaque pointers, so the pointee lives on the Python side only.
    """

    def __init__(self, fnty: ir.FunctionType) -> None:
        super().__init__()
        self.pointee = fnty

    def _to_string(self) -> str:
        return "ptr"


def _typed_callee(fp: ir.Value, fnty: ir.FunctionType) -> ir.Value:
    """Make an opaque pointer value callable with the signature ``fnty``."""
    fp.type = _FnPtrType(fnty)
    return fp


@dataclass
class _FuncState:
    fn: ir.Function
    entry_pc: int
    jctx: ir.Value
    depth: ir.Value
    regs: list[ir.Value]
    fp_ptr: ir.Value  # pointer to the frame top (r10's value as a pointer)
    bail: ir.Block
    blocks: dict[int, ir.Block] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)
    sp: Any = None  # DISubprogram
    locs: dict[int, Any] = field(default_factory=dict)
    cache: dict[int, ir.Value] = field(default_factory=dict)  # register values in this block
    dirty: set[int] = field(default_factory=set)  # registers not yet stored to their slot


class Translator:
    """Translate one program. ``natives`` maps helper ids to IR generators."""

    def __init__(self, insns: Sequence[Insn], *, name: str = "prog", sanitize: bool = False,
                 budgeted: bool = False, natives: Mapping[int, NativeGen] | None = None,
                 stack_mode: str | None = None, debug_info: bool = False,
                 aux_reg: bool = False) -> None:
        self.insns = list(insns)
        # r11 is BPF_REG_AX, which only constant blinding and the verifier's timed
        # may_goto rewrite use
        self.max_reg = 11 if aux_reg or any(ins.dst == 11 or ins.src == 11 for ins in insns) else 10
        self.n = len(self.insns)
        self.name = name
        self.sanitize = sanitize
        self.budgeted = budgeted
        self.natives = dict(natives or {})
        self.debug_info = debug_info
        self.specs = decode_specs(self.insns)
        self.second = second_slots(self.specs)
        self.leaders = self._leaders()
        self.fp_escapes = _reads_fp_outside_memory_base(self.insns, self.specs)
        self.fp_fixed = not any(
            s is not None and not s.is_jump and s.kind not in (
                Kind.ST, Kind.STX, Kind.EXIT, Kind.CALL, Kind.JMP) and ins.dst == 10
            and s.kind is not Kind.ATOMIC
            for ins, s in zip(self.insns, self.specs, strict=True))
        self.notes: dict[str, Any] = {}
        self.call_consts = self._call_consts()
        self.uses_bridge = self._needs_bridge()
        if stack_mode is None:
            stack_mode = "frames" if (sanitize or self.uses_bridge) else "alloca"
        self.stack_mode = stack_mode
        self.zero_bytes = self._stack_zero_bytes()
        self.prefix = f"bpf{next(_SYMBOL_SEQ)}_{_safe(name)}"
        self.module = ir.Module(name=self.prefix)
        self.reasons: list[str] = list(FIXED_REASONS)
        self._reason_idx: dict[str, int] = {r: i for i, r in enumerate(self.reasons)}
        self._decls: dict[str, ir.Function] = {}
        self.funcs: dict[int, ir.Function] = {}
        self._func_queue: list[int] = []
        self._fault_fn: ir.Function | None = None
        self._check_fn: ir.Function | None = None
        self._di_file: Any = None
        self._di_cu: Any = None

    # -- analysis -------------------------------------------------------------------------
    def _leaders(self) -> set[int]:
        lead = {0}
        for pc, spec in enumerate(self.specs):
            if spec is None:
                continue
            ins = self.insns[pc]
            nxt = pc + (2 if spec.is_wide else 1)
            if spec.is_jump:
                lead.add(jump_target(pc, ins, spec))
                lead.add(nxt)
            elif spec.kind in (Kind.EXIT, Kind.CALLX, Kind.LD_ABS, Kind.LD_IND):
                lead.add(nxt)
            elif spec.kind is Kind.CALL:
                lead.add(nxt)
                if ins.src == CallKind.PSEUDO_CALL:
                    lead.add(pc + ins.imm + 1)
        return {pc for pc in lead if 0 <= pc < self.n and pc not in self.second}

    def _call_consts(self) -> dict[int, dict[int, int]]:
        from pybpf.jit.consts import call_site_consts

        sites = [pc for pc, (ins, spec) in enumerate(zip(self.insns, self.specs, strict=True))
                 if spec is not None and spec.kind is Kind.CALL and ins.src == CallKind.HELPER
                 and hasattr(self.natives.get(ins.imm), "applies")]
        return call_site_consts(self.insns, self.specs, sites)

    def native_at(self, pc: int, func_id: int) -> NativeGen | None:
        """The native generator for the helper call at ``pc``, if one applies there."""
        gen = self.natives.get(func_id)
        if gen is None:
            return None
        applies = getattr(gen, "applies", None)
        if applies is not None and not applies(self, self.call_consts.get(pc, {})):
            return None
        return gen

    def _needs_bridge(self) -> bool:
        for pc, (ins, spec) in enumerate(zip(self.insns, self.specs, strict=True)):
            if spec is None:
                continue
            if spec.kind in (Kind.CALLX, Kind.LD_ABS, Kind.LD_IND):
                return True
            if spec.kind is Kind.CALL and ins.src != CallKind.PSEUDO_CALL:
                gen = self.native_at(pc, ins.imm) if ins.src == CallKind.HELPER else None
                if gen is None or getattr(gen, "slow_path", False):
                    return True
        return False

    def _stack_zero_bytes(self) -> tuple[int, int]:
        """Frame bytes ``[lo, hi)`` (relative to r10) that must be zeroed on entry.

        The interpreter zeroes every frame. When r10 is only ever a memory base with a
        constant offset, only the bytes those accesses reach can be observed. Otherwise,
        in sanitize mode, the whole frame; without it (code the verifier vouched for) the
        frame down to the lowest constant offset of any pointer derived from r10.
        """
        if self.fp_escapes or not self.fp_fixed:
            if self.sanitize:
                return (-MAX_BPF_STACK, 0)
            return (max(self._lowest_fp_offset(), -MAX_BPF_STACK), 0)
        lo, hi = 0, -MAX_BPF_STACK
        for ins, spec in zip(self.insns, self.specs, strict=True):
            if spec is None or spec.kind not in (Kind.LDX, Kind.LDXSX, Kind.ST, Kind.STX,
                                                 Kind.ATOMIC):
                continue
            base = ins.src if spec.kind in (Kind.LDX, Kind.LDXSX) or (
                spec.kind is Kind.ATOMIC and spec.op == AtomicOp.LOAD_ACQ) else ins.dst
            if base != 10:
                continue
            lo = min(lo, ins.off)
            hi = max(hi, ins.off + spec.size)
        lo = max(lo, -MAX_BPF_STACK)
        hi = min(hi, 0)
        return (lo, hi) if lo < hi else (0, 0)

    def _lowest_fp_offset(self) -> int:
        """A lower bound of the stack offsets reached through registers copied from r10."""
        derived = {10}
        changed = True
        while changed:
            changed = False
            for ins, spec in zip(self.insns, self.specs, strict=True):
                if spec is not None and spec.kind is Kind.MOV and spec.is64 and spec.src_reg \
                        and ins.src in derived and ins.dst not in derived:
                    derived.add(ins.dst)
                    changed = True
        add_lo = 0
        off_lo = 0
        for ins, spec in zip(self.insns, self.specs, strict=True):
            if spec is None:
                continue
            if spec.kind is Kind.ALU and spec.is64 and not spec.src_reg and \
                    spec.op in (AluOp.ADD, AluOp.SUB) and ins.dst in derived:
                add_lo += min(ins.imm if spec.op == AluOp.ADD else -ins.imm, 0)
            elif (spec.kind in (Kind.LDX, Kind.LDXSX) and ins.src in derived) or (spec.kind in (Kind.ST, Kind.STX, Kind.ATOMIC) and ins.dst in derived):
                off_lo = min(off_lo, ins.off)
        return add_lo + off_lo

    # -- module-level pieces ------------------------------------------------------------
    def reason(self, text: str) -> int:
        idx = self._reason_idx.get(text)
        if idx is None:
            idx = self._reason_idx[text] = len(self.reasons)
            self.reasons.append(text)
        return idx

    def declare(self, name: str, fnty: ir.FunctionType) -> ir.Function:
        fn = self._decls.get(name)
        if fn is None:
            fn = self._decls[name] = ir.Function(self.module, fnty, name=name)
        return fn

    def _fault(self) -> ir.Function:
        if self._fault_fn is None:
            fn = ir.Function(self.module, FAULT_FN, name=f"{self.prefix}_fault")
            fn.attributes.add("nounwind")  # no .eh_frame: nothing unwinds BPF code
            fn.linkage = "internal"
            fn.attributes.add("cold")
            fn.attributes.add("noinline")
            b = ir.IRBuilder(fn.append_basic_block())
            jctx, pc, addr, size, reason = fn.args
            for fname, val in (("fault_pc", pc), ("fault_addr", addr), ("fault_size", size),
                               ("fault_reason", reason),
                               ("status", ir.Constant(I64, Status.FAULT))):
                b.store(val, b.gep(jctx, [ir.Constant(I64, FIELD[fname])], source_etype=I64))
            b.ret_void()
            self._fault_fn = fn
        return self._fault_fn

    def emit_fault(self, b: ir.IRBuilder, jctx: ir.Value, pc: int, addr: ir.Value,
                   size: ir.Value, reason: int) -> None:
        b.call(self._fault(), [jctx, ir.Constant(I64, pc), addr, size, ir.Constant(I64, reason)])

    def _check(self) -> ir.Function:
        """``i64 check(jctx, addr, size, write)``: 0 ok, 1 no region, 2 read-only.

        A binary search of the sorted region table ``(start, end, writable)`` the run
        context points at — the registry's ``find`` in native code.
        """
        if self._check_fn is not None:
            return self._check_fn
        fn = ir.Function(self.module, CHECK_FN, name=f"{self.prefix}_check")
        fn.attributes.add("nounwind")  # no .eh_frame: nothing unwinds BPF code
        fn.linkage = "internal"
        jctx, addr, size, write = fn.args
        entry = fn.append_basic_block("entry")
        loop = fn.append_basic_block("loop")
        body = fn.append_basic_block("body")
        done = fn.append_basic_block("done")
        found = fn.append_basic_block("found")
        inside = fn.append_basic_block("inside")
        bad = fn.append_basic_block("bad")
        b = ir.IRBuilder(entry)
        table_i = b.load(b.gep(jctx, [ir.Constant(I64, FIELD["regions"])], source_etype=I64),
                         typ=I64)
        table = b.inttoptr(table_i, PTR)
        n = b.load(b.gep(jctx, [ir.Constant(I64, FIELD["nregions"])], source_etype=I64), typ=I64)
        b.branch(loop)
        b.position_at_end(loop)
        lo = b.phi(I64)
        hi = b.phi(I64)
        lo.add_incoming(ir.Constant(I64, 0), entry)
        hi.add_incoming(n, entry)
        b.cbranch(b.icmp_unsigned("<", lo, hi), body, done)
        b.position_at_end(body)
        mid = b.lshr(b.add(lo, hi), ir.Constant(I64, 1))
        start = b.load(b.gep(table, [b.mul(mid, ir.Constant(I64, 3))], source_etype=I64), typ=I64)
        le = b.icmp_unsigned("<=", start, addr)
        lo.add_incoming(b.select(le, b.add(mid, ir.Constant(I64, 1)), lo), body)
        hi.add_incoming(b.select(le, hi, mid), body)
        b.branch(loop)
        b.position_at_end(done)
        b.cbranch(b.icmp_unsigned("==", lo, ir.Constant(I64, 0)), bad, found)
        b.position_at_end(found)
        base = b.mul(b.sub(lo, ir.Constant(I64, 1)), ir.Constant(I64, 3))
        end = b.load(b.gep(table, [b.add(base, ir.Constant(I64, 1))], source_etype=I64), typ=I64)
        wr = b.load(b.gep(table, [b.add(base, ir.Constant(I64, 2))], source_etype=I64), typ=I64)
        fits = b.and_(b.icmp_unsigned("<=", addr, end),
                      b.icmp_unsigned("<=", size, b.sub(end, addr)))
        b.cbranch(fits, inside, bad)
        b.position_at_end(inside)
        ro = b.and_(write, b.icmp_unsigned("==", wr, ir.Constant(I64, 0)))
        b.ret(b.select(ro, ir.Constant(I64, 2), ir.Constant(I64, 0)))
        b.position_at_end(bad)
        b.ret(ir.Constant(I64, 1))
        self._check_fn = fn
        return fn

    def _debug_setup(self) -> None:
        m = self.module
        self._di_file = m.add_debug_info("DIFile", {"filename": f"{self.name}.bpf",
                                                    "directory": "/"})
        self._di_cu = m.add_debug_info("DICompileUnit", {
            "language": ir.DIToken("DW_LANG_C99"), "file": self._di_file,
            "producer": "pybpf jit", "runtimeVersion": 0, "isOptimized": True,
            "emissionKind": ir.DIToken("LineTablesOnly")}, is_distinct=True)
        m.add_named_metadata("llvm.dbg.cu", self._di_cu)
        m.add_named_metadata("llvm.module.flags", [I32(2), "Debug Info Version", I32(3)])
        m.add_named_metadata("llvm.module.flags", [I32(2), "Dwarf Version", I32(4)])
        self._di_type = m.add_debug_info("DISubroutineType", {"types": m.add_metadata([])})

    def _subprogram(self, fn: ir.Function, line: int) -> Any:
        if not self.debug_info:
            return None
        sp = self.module.add_debug_info("DISubprogram", {
            "name": fn.name, "file": self._di_file, "line": line, "type": self._di_type,
            "unit": self._di_cu, "scopeLine": line,
            "spFlags": ir.DIToken("DISPFlagDefinition | DISPFlagOptimized")}, is_distinct=True)
        fn.set_metadata("dbg", sp)
        return sp

    # -- driver ---------------------------------------------------------------------------
    def translate(self) -> Translation:
        self.module.triple = ""
        if self.debug_info:
            self._debug_setup()
        main = self._function_for(0)
        targets = self._callback_targets()
        for pc in targets:
            self._function_for(pc)
        while self._func_queue:
            self._emit_function(self._func_queue.pop())
        entry = self._emit_entry(main)
        loop = self._emit_loop(entry)
        callback = self._emit_callback(targets) if targets else None
        functions = [(main.name, 0), *sorted(((f.name, pc) for pc, f in self.funcs.items() if pc != 0), key=lambda t: t[1])]
        return Translation(str(self.module), entry.name, loop.name, functions, self.reasons,
                           self.stack_mode, self.uses_bridge, self._may_loop(), self.notes,
                           callback.name if callback is not None else "", tuple(targets))

    def _callback_targets(self) -> list[int]:
        """Subprograms a helper may call back (``bpf_loop``, ``for_each_map_elem``, timers):
        the instruction a ``BPF_PSEUDO_FUNC`` ld_imm64 names — its value after the loader
        resolved it (an instruction index), or its relative form."""
        if not self.uses_bridge:
            return []
        out: set[int] = set()
        for pc, (ins, spec) in enumerate(zip(self.insns, self.specs, strict=True)):
            if spec is None or spec.kind is not Kind.LD_IMM64 or ins.src != 4 \
                    or pc + 1 >= self.n:
                continue
            for target in (imm64(ins, self.insns[pc + 1]), pc + ins.imm + 1):
                if 0 <= target < self.n and target not in self.second \
                        and self.specs[target] is not None:
                    out.add(target)
        return sorted(out)

    def _emit_callback(self, targets: Sequence[int]) -> ir.Function:
        """``u64 callback(jctx, depth, target, r1..r5)``: run subprogram ``target`` with
        fresh registers in frame ``depth`` (what ``call_subprog`` needs)."""
        fn = ir.Function(self.module, CALLBACK_FN, name=f"{self.prefix}_callback")
        fn.attributes.add("nounwind")
        jctx, depth, target, *args = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        miss = fn.append_basic_block("unknown")
        switch = b.switch(target, miss)
        zero = ir.Constant(I64, 0)
        for pc in targets:
            blk = fn.append_basic_block(f"cb{pc}")
            switch.add_case(ir.Constant(I64, pc), blk)
            bb = ir.IRBuilder(blk)
            res = bb.call(self.funcs[pc], [jctx, depth, zero, *args, zero, zero, zero, zero])
            bb.ret(bb.extract_value(res, 0))
        bm = ir.IRBuilder(miss)
        self.emit_fault(bm, jctx, 0, target, zero, self.reason("callback target out of range"))
        bm.ret(zero)
        return fn

    def _may_loop(self) -> bool:
        """Whether a run can execute more instructions than the program has."""
        for pc, (ins, spec) in enumerate(zip(self.insns, self.specs, strict=True)):
            if spec is None:
                continue
            if spec.kind in (Kind.JCOND, Kind.CALLX) or (
                    spec.kind is Kind.CALL and ins.src == CallKind.PSEUDO_CALL):
                return True
            if spec.is_jump and jump_target(pc, ins, spec) <= pc:
                return True
        return False

    def _function_for(self, pc: int) -> ir.Function:
        fn = self.funcs.get(pc)
        if fn is None:
            fn = ir.Function(self.module, SUB_FN, name=f"{self.prefix}_f{pc}")
            fn.attributes.add("nounwind")  # no .eh_frame: nothing unwinds BPF code
            fn.linkage = "internal"
            if pc != 0:
                # one native function per subprogram, as the kernel's JIT emits
                # (jited_ksyms / jited_func_lens have an entry each); a subprogram
                # whose calls LLVM folds away anyway is kept by compile_ir(keep=...)
                fn.attributes.add("noinline")
            self.funcs[pc] = fn
            self._func_queue.append(pc)
        return fn

    def _emit_entry(self, main: ir.Function) -> ir.Function:
        fn = ir.Function(self.module, ENTRY_FN, name=f"{self.prefix}_main")
        fn.attributes.add("nounwind")  # no .eh_frame: nothing unwinds BPF code
        sp = self._subprogram(fn, 1)
        b = ir.IRBuilder(fn.append_basic_block())
        if sp is not None:
            b.debug_metadata = self.module.add_debug_info(
                "DILocation", {"line": 1, "column": 0, "scope": sp})
        jctx = fn.args[0]
        zero = ir.Constant(I64, 0)
        res = b.call(main, [jctx, zero, zero, *fn.args[1:], zero, zero, zero, zero])
        b.ret(b.extract_value(res, 0))
        return fn

    def _emit_loop(self, entry: ir.Function) -> ir.Function:
        """``BPF_PROG_TEST_RUN``'s repeat loop in native code, timed with CLOCK_MONOTONIC.

        The program is called through the pointer in the run context's ``loop_target``
        (set by ``JitProgram.test_run``), so LLVM can neither inline it nor hoist a pure
        program out of the loop: every iteration runs the program, as the kernel's does.
        """
        del entry
        fn = ir.Function(self.module, LOOP_FN, name=f"{self.prefix}_loop")
        fn.attributes.add("nounwind")  # no .eh_frame: nothing unwinds BPF code
        jctx, r1, repeat, retval = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        ts = b.alloca(ir.ArrayType(I64, 2))
        ts.type = PTR
        clock_ty = ir.FunctionType(I32, [I32, PTR])
        clock = _typed_callee(b.inttoptr(ir.Constant(I64, CLOCK_GETTIME), PTR), clock_ty)

        def now() -> ir.Value:
            b.call(clock, [ir.Constant(I32, 1), ts])  # CLOCK_MONOTONIC
            sec = b.load(b.gep(ts, [ir.Constant(I64, 0)], source_etype=I64), typ=I64)
            nsec = b.load(b.gep(ts, [ir.Constant(I64, 1)], source_etype=I64), typ=I64)
            return b.add(b.mul(sec, ir.Constant(I64, 1_000_000_000)), nsec)

        t0 = now()
        head = fn.append_basic_block("head")
        body = fn.append_basic_block("body")
        out = fn.append_basic_block("out")
        pre = b.block
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64)
        i.add_incoming(ir.Constant(I64, 0), pre)
        b.cbranch(b.icmp_unsigned("<", i, repeat), body, out)
        b.position_at_end(body)
        target = b.inttoptr(b.load(b.gep(jctx, [ir.Constant(I64, FIELD["loop_target"])],
                                         source_etype=I64), typ=I64), PTR)
        r0 = b.call(_typed_callee(target, ENTRY_FN), [jctx, r1, *[ir.Constant(I64, 0)] * 4])
        b.store(r0, retval)
        status = b.load(b.gep(jctx, [ir.Constant(I64, FIELD["status"])], source_etype=I64),
                        typ=I64)
        nxt = b.add(i, ir.Constant(I64, 1))
        i.add_incoming(nxt, body)
        b.cbranch(b.icmp_unsigned("==", status, ir.Constant(I64, 0)), head, out)
        b.position_at_end(out)
        b.ret(b.sub(now(), t0))
        return fn

    # -- functions ------------------------------------------------------------------------
    def _emit_function(self, entry_pc: int) -> None:
        fn = self.funcs[entry_pc]
        sp = self._subprogram(fn, entry_pc + 1)
        jctx, depth = fn.args[0], fn.args[1]
        entry = fn.append_basic_block("entry")
        b = ir.IRBuilder(entry)
        if sp is not None:
            b.debug_metadata = self.module.add_debug_info(
                "DILocation", {"line": entry_pc + 1, "column": 0, "scope": sp})
        regs = [b.alloca(I64, name=f"r{i}") for i in range(self.max_reg + 1)]
        for i in range(10):
            b.store(fn.args[2 + i], regs[i])
        if self.stack_mode == "alloca":
            frame = b.alloca(ir.ArrayType(I64, MAX_BPF_STACK // 8), name="frame")
            frame.type = PTR  # address it bytewise, as BPF does
            fp_ptr = b.gep(frame, [ir.Constant(I64, MAX_BPF_STACK)], source_etype=I8)
        else:
            top = b.load(b.gep(jctx, [b.add(depth, ir.Constant(I64, FIELD["frames"]))],
                               source_etype=I64), typ=I64)
            fp_ptr = b.inttoptr(top, PTR)
        lo, hi = self.zero_bytes
        if hi > lo:
            memset = self.declare("llvm.memset.p0.i64",
                                  ir.FunctionType(ir.VoidType(), [PTR, I8, I64, I1]))
            b.call(memset, [b.gep(fp_ptr, [ir.Constant(I64, lo)], source_etype=I8),
                            ir.Constant(I8, 0), ir.Constant(I64, hi - lo), ir.Constant(I1, 0)])
        b.store(b.ptrtoint(fp_ptr, I64), regs[10])
        bail = fn.append_basic_block("bail")
        st = _FuncState(fn, entry_pc, jctx, depth, regs, fp_ptr, bail, sp=sp)
        bb = ir.IRBuilder(bail)
        bb.ret(ir.Constant(RESULT, None))
        if entry_pc in self.second:
            # A call into the middle of ld_imm64: the callee faults at once.
            self.emit_fault(b, jctx, entry_pc, ir.Constant(I64, 0), ir.Constant(I64, 0),
                            self.reason("jump into the middle of an instruction"))
            b.branch(bail)
            return
        b.branch(self._block(st, entry_pc))
        while st.pending:
            pc = st.pending.pop()
            self._emit_block(st, pc)

    def _block(self, st: _FuncState, pc: int) -> ir.Block:
        blk = st.blocks.get(pc)
        if blk is None:
            blk = st.blocks[pc] = st.fn.append_basic_block(f"pc{pc}")
            st.pending.append(pc)
        return blk

    def _target(self, st: _FuncState, from_pc: int, target: int) -> ir.Block:
        """The block of a jump target, or a block that faults as the interpreter does."""
        if 0 <= target < self.n and target not in self.second:
            return self._block(st, target)
        blk = st.fn.append_basic_block(f"bad{from_pc}")
        b = ir.IRBuilder(blk)
        if 0 <= target < self.n:
            self.emit_fault(b, st.jctx, target, ir.Constant(I64, 0), ir.Constant(I64, 0),
                            self.reason("jump into the middle of an instruction"))
        else:
            self.emit_fault(b, st.jctx, from_pc, ir.Constant(I64, 0), ir.Constant(I64, 0),
                            self.reason(f"jump out of range to {target}"))
        b.branch(st.bail)
        return blk

    def _loc(self, st: _FuncState, pc: int) -> Any:
        if st.sp is None:
            return None
        loc = st.locs.get(pc)
        if loc is None:
            # Module.add_debug_info sorts and de-duplicates; these are unique by
            # construction, so build the node directly (it is most of the IR-building time).
            m = self.module
            loc = st.locs[pc] = ir.values.DIValue(
                m, False, "DILocation", (("column", 0), ("line", pc + 1), ("scope", st.sp)),
                name=str(len(m.metadata)))
        return loc

    def _emit_block(self, st: _FuncState, start: int) -> None:
        b = ir.IRBuilder(st.blocks[start])
        st.cache = {}
        st.dirty = set()
        b.debug_metadata = self._loc(st, start)
        if self.budgeted:
            count = 0
            pc = start
            while pc < self.n:
                spec = self.specs[pc]
                count += 1
                if spec is None or spec.is_jump or spec.kind in (
                        Kind.EXIT, Kind.CALL, Kind.CALLX, Kind.LD_ABS, Kind.LD_IND):
                    break
                pc += 2 if spec.is_wide else 1
                if pc in self.leaders:
                    break
            ptr = b.gep(st.jctx, [ir.Constant(I64, FIELD["steps"])], source_etype=I64)
            left = b.sub(b.load(ptr, typ=I64), ir.Constant(I64, count))
            b.store(left, ptr)
            ok = b.append_basic_block(f"budget{start}")
            over = b.append_basic_block(f"over{start}")
            b.cbranch(b.icmp_signed("<", left, ir.Constant(I64, 0)), over, ok)
            b.position_at_end(over)
            self.emit_fault(b, st.jctx, start, ir.Constant(I64, 0), ir.Constant(I64, 0),
                            self.reason("instruction budget exhausted"))
            b.branch(st.bail)
            b.position_at_end(ok)
        pc = start
        while True:
            if pc >= self.n:
                self.emit_fault(b, st.jctx, max(self.n - 1, 0), ir.Constant(I64, 0),
                                ir.Constant(I64, 0), self.reason("fell off the end of the program"))
                b.branch(st.bail)
                return
            if pc != start and pc in self.leaders:
                self._flush(b, st)
                b.branch(self._block(st, pc))
                return
            b.debug_metadata = self._loc(st, pc)
            spec = self.specs[pc]
            ins = self.insns[pc]
            if spec is None:
                self._fault_here(b, st, pc, f"unknown opcode {ins.code:02x}")
                return
            if ins.dst > self.max_reg or ins.src > self.max_reg:
                self._fault_here(b, st, pc, "invalid register")
                return
            if self._emit_insn(b, st, pc, ins, spec):
                return
            pc += 2 if spec.is_wide else 1

    def _fault_here(self, b: ir.IRBuilder, st: _FuncState, pc: int, reason: str) -> None:
        self.emit_fault(b, st.jctx, pc, ir.Constant(I64, 0), ir.Constant(I64, 0),
                        self.reason(reason))
        b.branch(st.bail)

    # -- registers ------------------------------------------------------------------------
    # Within one BPF block registers live as SSA values; their slots are written only when
    # control leaves for another BPF block (blocks added inside one BPF block, for checks
    # and calls, are dominated by it, so the cached values stay valid there).
    @staticmethod
    def _get(b: ir.IRBuilder, st: _FuncState, r: int) -> ir.Value:
        v = st.cache.get(r)
        if v is None:
            v = st.cache[r] = b.load(st.regs[r], typ=I64)
        return v

    @staticmethod
    def _set(b: ir.IRBuilder, st: _FuncState, r: int, v: ir.Value) -> None:
        st.cache[r] = v
        st.dirty.add(r)

    @staticmethod
    def _flush(b: ir.IRBuilder, st: _FuncState) -> None:
        for r in sorted(st.dirty):
            b.store(st.cache[r], st.regs[r])
        st.dirty.clear()

    def _status_check(self, b: ir.IRBuilder, st: _FuncState, pc: int) -> None:
        status = b.load(b.gep(st.jctx, [ir.Constant(I64, FIELD["status"])], source_etype=I64),
                        typ=I64)
        cont = b.append_basic_block(f"ok{pc}")
        b.cbranch(b.icmp_unsigned("!=", status, ir.Constant(I64, 0)), st.bail, cont)
        b.position_at_end(cont)

    def _ret(self, b: ir.IRBuilder, st: _FuncState, r0: ir.Value | None = None) -> None:
        res: ir.Value = ir.Constant(RESULT, None)
        for i in range(6):
            if i == 0 and r0 is not None:
                v = r0
            elif r0 is not None:  # a side exit: read without caching a load it dominates
                v = st.cache.get(i) or b.load(st.regs[i], typ=I64)
            else:
                v = self._get(b, st, i)
            res = b.insert_value(res, v, i)
        b.ret(res)

    # -- instructions ---------------------------------------------------------------------
    def _emit_insn(self, b: ir.IRBuilder, st: _FuncState, pc: int, ins: Insn,
                   spec: OpSpec) -> bool:
        """Emit one instruction; True when it ended the block."""
        k = spec.kind
        if k in (Kind.ALU, Kind.SDIV, Kind.SMOD, Kind.NEG, Kind.MOV, Kind.MOVSX):
            self._set(b, st, ins.dst, self._alu(b, st, ins, spec))
            return False
        if k is Kind.END or k is Kind.BSWAP:
            bits = spec.size
            v = b.trunc(self._get(b, st, ins.dst), ir.IntType(bits)) if bits < 64 else \
                self._get(b, st, ins.dst)
            if not (k is Kind.END and not spec.src_reg):
                v = b.call(self.declare(f"llvm.bswap.i{bits}",
                                        ir.FunctionType(ir.IntType(bits), [ir.IntType(bits)])),
                           [v])
            self._set(b, st, ins.dst, b.zext(v, I64) if bits < 64 else v)
            return False
        if k is Kind.LD_IMM64:
            if pc + 1 >= self.n:
                self._fault_here(b, st, pc, "incomplete ld_imm64")
                return True
            self._set(b, st, ins.dst, ir.Constant(I64, imm64(ins, self.insns[pc + 1])))
            return False
        if spec.arena or k is Kind.ADDR_SPACE_CAST:
            emit_arena(self, b, st, pc, ins, spec)
            return False
        if (k is Kind.LDX or k is Kind.LDXSX) and spec.probe:
            self._probe_load(b, st, pc, ins, spec)
            return False
        if k is Kind.LDX or k is Kind.LDXSX:
            ptr = self._addr(b, st, pc, ins.src, ins.off, spec.size, write=False)
            v = b.load(ptr, typ=INT[spec.size], align=1)
            if spec.size < 8:
                v = b.sext(v, I64) if k is Kind.LDXSX else b.zext(v, I64)
            self._set(b, st, ins.dst, v)
            return False
        if k is Kind.ST or k is Kind.STX:
            ptr = self._addr(b, st, pc, ins.dst, ins.off, spec.size, write=True)
            if k is Kind.ST:
                val: ir.Value = ir.Constant(INT[spec.size], ins.imm & ((1 << 8 * spec.size) - 1))
            else:
                val = self._get(b, st, ins.src)
                if spec.size < 8:
                    val = b.trunc(val, INT[spec.size])
            b.store(val, ptr, align=1)
            return False
        if k is Kind.ATOMIC:
            self._atomic(b, st, pc, ins, spec)
            return False
        if k is Kind.JA:
            self._flush(b, st)
            b.branch(self._target(st, pc, jump_target(pc, ins, spec)))
            return True
        if k is Kind.JCOND:
            ptr = b.gep(st.jctx, [ir.Constant(I64, FIELD["loops"])], source_etype=I64)
            loops = b.load(ptr, typ=I64)
            self._flush(b, st)
            cont = b.append_basic_block(f"mg{pc}")
            b.cbranch(b.icmp_signed("<=", loops, ir.Constant(I64, 0)),
                      self._target(st, pc, pc + ins.off + 1), cont)
            b.position_at_end(cont)
            b.store(b.sub(loops, ir.Constant(I64, 1)), ptr)
            b.branch(self._target(st, pc, pc + 1))
            return True
        if k is Kind.JMP:
            cond = self._cond(b, st, ins, spec)
            self._flush(b, st)
            b.cbranch(cond, self._target(st, pc, jump_target(pc, ins, spec)),
                      self._target(st, pc, pc + 1))
            return True
        if k is Kind.EXIT:
            self._ret(b, st)
            return True
        if k is Kind.CALL:
            return self._call(b, st, pc, ins)
        if k is Kind.CALLX:
            r0 = self._bridge(b, st, pc, BRIDGE_CALLX, self._get(b, st, ins.dst),
                              [self._get(b, st, r) for r in range(1, 6)])
            self._set(b, st, 0, r0)
            self._status_check(b, st, pc)
            self._flush(b, st)
            b.branch(self._target(st, pc, pc + 1))
            return True
        if k is Kind.LD_ABS or k is Kind.LD_IND:
            off: ir.Value = ir.Constant(I64, ins.imm & M64)
            if k is Kind.LD_IND:
                off = b.add(self._get(b, st, ins.src), off)
            zero = ir.Constant(I64, 0)
            r0 = self._bridge(b, st, pc, BRIDGE_LD_ABS, ir.Constant(I64, spec.size),
                              [self._get(b, st, 6), off, zero, zero, zero])
            self._set(b, st, 0, r0)
            sptr = b.gep(st.jctx, [ir.Constant(I64, FIELD["status"])], source_etype=I64)
            status = b.load(sptr, typ=I64)
            abort = b.append_basic_block(f"ldabs_abort{pc}")
            other = b.append_basic_block(f"ldabs_st{pc}")
            b.cbranch(b.icmp_unsigned("==", status, ir.Constant(I64, Status.LD_ABS_ABORT)),
                      abort, other)
            b.position_at_end(abort)
            b.store(zero, sptr)
            self._ret(b, st, r0=zero)  # leaves the register cache alone: a side exit
            b.position_at_end(other)
            cont = b.append_basic_block(f"ldabs_ok{pc}")
            b.cbranch(b.icmp_unsigned("!=", status, zero), st.bail, cont)
            b.position_at_end(cont)
            self._flush(b, st)
            b.branch(self._target(st, pc, pc + 1))
            return True
        self._fault_here(b, st, pc, "unsupported instruction")
        return True

    def _imm(self, ins: Insn, spec: OpSpec) -> ir.Constant:
        if spec.is64:
            return ir.Constant(I64, ins.imm & M64)
        return ir.Constant(I32, ins.imm & M32)

    def _operands(self, b: ir.IRBuilder, st: _FuncState, ins: Insn, spec: OpSpec
                  ) -> tuple[ir.Value, ir.Value]:
        """dst and src at the operation's width (i64 or i32)."""
        d = self._get(b, st, ins.dst)
        if spec.src_reg:
            s: ir.Value = self._get(b, st, ins.src)
            if not spec.is64:
                s = b.trunc(s, I32)
        else:
            s = self._imm(ins, spec)
        if not spec.is64:
            d = b.trunc(d, I32)
        return d, s

    def _alu(self, b: ir.IRBuilder, st: _FuncState, ins: Insn, spec: OpSpec) -> ir.Value:
        k = spec.kind
        ty = I64 if spec.is64 else I32
        bits = 64 if spec.is64 else 32

        def widen(v: ir.Value) -> ir.Value:
            return v if spec.is64 else b.zext(v, I64)

        if k is Kind.MOV and spec.variant == BPF_ADDR_PERCPU:  # this CPU's copy
            cpu = b.load(b.gep(st.jctx, [ir.Constant(I64, FIELD["cpu"])], source_etype=I64),
                         typ=I64)
            return b.add(self._get(b, st, ins.src), b.mul(cpu, ir.Constant(I64, PCPU_UNIT_STRIDE)))
        if k is Kind.MOV:
            if spec.src_reg:
                s = self._get(b, st, ins.src)
                return s if spec.is64 else b.zext(b.trunc(s, I32), I64)
            return ir.Constant(I64, (ins.imm & M64) if spec.is64 else (ins.imm & M32))
        if k is Kind.MOVSX:
            narrow = b.trunc(self._get(b, st, ins.src), ir.IntType(spec.size))
            return b.sext(narrow, I64) if spec.is64 else b.zext(b.sext(narrow, I32), I64)
        d, s = self._operands(b, st, ins, spec)
        zero = ir.Constant(ty, 0)
        one = ir.Constant(ty, 1)
        if k is Kind.NEG:
            return widen(b.sub(zero, d))
        if k is Kind.SDIV or k is Kind.SMOD:
            minus1 = ir.Constant(ty, M64 if spec.is64 else M32)
            is_zero = b.icmp_unsigned("==", s, zero)
            is_m1 = b.icmp_unsigned("==", s, minus1)
            safe = b.select(b.or_(is_zero, is_m1), one, s)
            if k is Kind.SDIV:
                q = b.select(is_m1, b.sub(zero, d), b.sdiv(d, safe))
                return widen(b.select(is_zero, zero, q))
            r = b.select(is_m1, zero, b.srem(d, safe))
            return widen(b.select(is_zero, d, r))
        op = spec.op
        if op == AluOp.ADD:
            return widen(b.add(d, s))
        if op == AluOp.SUB:
            return widen(b.sub(d, s))
        if op == AluOp.MUL:
            return widen(b.mul(d, s))
        if op == AluOp.OR:
            return widen(b.or_(d, s))
        if op == AluOp.AND:
            return widen(b.and_(d, s))
        if op == AluOp.XOR:
            return widen(b.xor(d, s))
        if op in (AluOp.LSH, AluOp.RSH, AluOp.ARSH):
            if spec.src_reg:
                sh: ir.Value = b.and_(s, ir.Constant(ty, bits - 1))
            else:
                sh = ir.Constant(ty, (ins.imm & M64) & (bits - 1))
            if op == AluOp.LSH:
                return widen(b.shl(d, sh))
            if op == AluOp.RSH:
                return widen(b.lshr(d, sh))
            return widen(b.ashr(d, sh))
        if op in (AluOp.DIV, AluOp.MOD):
            if not spec.src_reg:
                divisor = ins.imm & (M64 if spec.is64 else M32)
                if divisor == 0:
                    return widen(zero if op == AluOp.DIV else d)
                return widen(b.udiv(d, s) if op == AluOp.DIV else b.urem(d, s))
            is_zero = b.icmp_unsigned("==", s, zero)
            safe = b.select(is_zero, one, s)
            if op == AluOp.DIV:
                return widen(b.select(is_zero, zero, b.udiv(d, safe)))
            return widen(b.select(is_zero, d, b.urem(d, safe)))
        raise AssertionError(f"unhandled ALU op {op:#x}")  # the table has no other rows

    def _cond(self, b: ir.IRBuilder, st: _FuncState, ins: Insn, spec: OpSpec) -> ir.Value:
        d, s = self._operands(b, st, ins, spec)
        if spec.op == JmpOp.JSET:
            return b.icmp_unsigned("!=", b.and_(d, s), ir.Constant(d.type, 0))
        pred, signed = _ICMP[JmpOp(spec.op)]
        return b.icmp_signed(pred, d, s) if signed else b.icmp_unsigned(pred, d, s)

    # -- memory ---------------------------------------------------------------------------
    def _addr(self, b: ir.IRBuilder, st: _FuncState, pc: int, base: int, off: int, size: int,
              *, write: bool, check_read_too: bool = False) -> ir.Value:
        """A pointer to ``base + off``, checked against the region table when sanitizing."""
        if base == 10 and self.fp_fixed and not self.sanitize:
            return b.gep(st.fp_ptr, [ir.Constant(I64, off)], source_etype=I8)
        addr = b.add(self._get(b, st, base), ir.Constant(I64, off & M64))
        if self.sanitize:
            if check_read_too:
                self._checked(b, st, pc, addr, size, write=False)
            self._checked(b, st, pc, addr, size, write=write)
        return b.inttoptr(addr, PTR)

    def _probe_load(self, b: ir.IRBuilder, st: _FuncState, pc: int, ins: Insn,
                    spec: OpSpec) -> None:
        """``BPF_PROBE_MEM``/``BPF_PROBE_MEMSX``: load only from a registered region;
        anything else reads as 0, as the kernel's exception table makes a faulting load
        (always checked, sanitizing or not: BTF pointers are not proven in bounds)."""
        self.notes["probe_loads"] = True  # the run needs the region table (program.py)
        addr = b.add(self._get(b, st, ins.src), ir.Constant(I64, ins.off & M64))
        res = b.call(self._check(), [st.jctx, addr, ir.Constant(I64, spec.size),
                                     ir.Constant(I1, 0)])
        pre = b.block
        ok = b.append_basic_block(f"probe{pc}")
        join = b.append_basic_block(f"probed{pc}")
        b.cbranch(b.icmp_unsigned("==", res, ir.Constant(I64, 0)), ok, join)
        b.position_at_end(ok)
        v = b.load(b.inttoptr(addr, PTR), typ=INT[spec.size], align=1)
        if spec.size < 8:
            v = b.sext(v, I64) if spec.kind is Kind.LDXSX else b.zext(v, I64)
        b.branch(join)
        b.position_at_end(join)
        phi = b.phi(I64)
        phi.add_incoming(v, ok)
        phi.add_incoming(ir.Constant(I64, 0), pre)
        self._set(b, st, ins.dst, phi)

    def _checked(self, b: ir.IRBuilder, st: _FuncState, pc: int, addr: ir.Value, size: int,
                 *, write: bool) -> None:
        res = b.call(self._check(), [st.jctx, addr, ir.Constant(I64, size),
                                     ir.Constant(I1, int(write))])
        cont = b.append_basic_block(f"chk{pc}")
        bad = b.append_basic_block(f"oob{pc}")
        b.cbranch(b.icmp_unsigned("==", res, ir.Constant(I64, 0)), cont, bad)
        b.position_at_end(bad)
        reason = b.select(b.icmp_unsigned("==", res, ir.Constant(I64, 2)),
                          ir.Constant(I64, REASON_READ_ONLY),
                          ir.Constant(I64, REASON_WRITE if write else REASON_READ))
        b.call(self._fault(), [st.jctx, ir.Constant(I64, pc), addr, ir.Constant(I64, size),
                               reason])
        b.branch(st.bail)
        b.position_at_end(cont)

    def _atomic(self, b: ir.IRBuilder, st: _FuncState, pc: int, ins: Insn, spec: OpSpec) -> None:
        size = spec.size
        ty = INT[size]
        op = spec.op
        if op == AtomicOp.LOAD_ACQ:
            ptr = self._addr(b, st, pc, ins.src, ins.off, size, write=False)
            v = b.load_atomic(ptr, "acquire", size, typ=ty)
            self._set(b, st, ins.dst, b.zext(v, I64) if size < 8 else v)
            return
        src = self._get(b, st, ins.src)
        val = b.trunc(src, ty) if size < 8 else src
        if op == AtomicOp.STORE_REL:
            ptr = self._addr(b, st, pc, ins.dst, ins.off, size, write=True)
            # IRBuilder.store_atomic insists on typed pointers; build the instruction.
            b._insert(ir.instructions.StoreAtomicInstr(b.block, val, ptr, "release", size))
            return
        ptr = self._addr(b, st, pc, ins.dst, ins.off, size, write=True, check_read_too=True)
        if op == AtomicOp.CMPXCHG:
            r0 = self._get(b, st, 0)
            expected = b.trunc(r0, ty) if size < 8 else r0
            pair = b.cmpxchg(ptr, expected, val, "seq_cst", "seq_cst")
            old = b.extract_value(pair, 0)
            self._set(b, st, 0, b.zext(old, I64) if size < 8 else old)
            return
        name = "xchg" if op == AtomicOp.XCHG else _RMW[AtomicOp(op & ~1)]
        old = b.atomic_rmw(name, ptr, val, "seq_cst")
        if op & 1:
            self._set(b, st, ins.src, b.zext(old, I64) if size < 8 else old)

    # -- calls ----------------------------------------------------------------------------
    def _bridge(self, b: ir.IRBuilder, st: _FuncState, pc: int, kind: int, ident: ir.Value,
                args: list[ir.Value]) -> ir.Value:
        # The bridge needs the call depth: a helper that calls back into the program
        # (bpf_loop, for_each_map_elem) runs the callback in the next frame.
        b.store(st.depth, b.gep(st.jctx, [ir.Constant(I64, FIELD["depth"])], source_etype=I64))
        fptr = b.inttoptr(b.load(b.gep(st.jctx, [ir.Constant(I64, FIELD["bridge"])],
                                       source_etype=I64), typ=I64), PTR)
        return b.call(_typed_callee(fptr, BRIDGE_FN),
                      [st.jctx, ir.Constant(I64, kind), ident, *args, ir.Constant(I64, pc)])

    def _call(self, b: ir.IRBuilder, st: _FuncState, pc: int, ins: Insn) -> bool:
        args = [self._get(b, st, r) for r in range(1, 6)]
        if ins.src == CallKind.PSEUDO_CALL:
            target = pc + ins.imm + 1
            if not 0 <= target < self.n:
                self._fault_here(b, st, pc, f"jump out of range to {target}")
                return True
            depth = b.add(st.depth, ir.Constant(I64, 1))
            ok = b.append_basic_block(f"call{pc}")
            deep = b.append_basic_block(f"deep{pc}")
            b.cbranch(b.icmp_unsigned(">=", depth, ir.Constant(I64, MAX_CALL_FRAMES)), deep, ok)
            b.position_at_end(deep)
            self._fault_here(b, st, pc, f"call depth exceeds {MAX_CALL_FRAMES} frames")
            b.position_at_end(ok)
            callee = self._function_for(target)
            res = b.call(callee, [st.jctx, depth, *[self._get(b, st, r) for r in range(10)]])
            self._status_check(b, st, pc)
            for i in range(6):
                self._set(b, st, i, b.extract_value(res, i))
            self._flush(b, st)
            b.branch(self._target(st, pc, pc + 1))
            return True
        if ins.src == CallKind.KFUNC:
            r0 = self._bridge(b, st, pc, BRIDGE_KFUNC, ir.Constant(I64, ins.imm & M64), args)
            self._set(b, st, 0, r0)
            self._status_check(b, st, pc)
            return False
        if ins.src != CallKind.HELPER:
            self._fault_here(b, st, pc, "invalid call")
            return True
        if ins.imm == TIMED_MAY_GOTO:  # AX in (fp offset), AX out, R0-R5 kept
            fp_ax = b.add(self._get(b, st, 10), self._get(b, st, 11))
            zero = ir.Constant(I64, 0)
            ax = self._bridge(b, st, pc, BRIDGE_HELPER, ir.Constant(I64, ins.imm & M64),
                              [fp_ax, zero, zero, zero, zero])
            self._set(b, st, 11, ax)
            self._status_check(b, st, pc)
            return False
        gen = self.native_at(pc, ins.imm)
        if gen is not None:
            em = Emitter(self, b, st.jctx, pc, st)
            r0 = gen(em, args)
            em.b.debug_metadata = self._loc(st, pc)
            self._set(em.b, st, 0, r0)
            return False
        r0 = self._bridge(b, st, pc, BRIDGE_HELPER, ir.Constant(I64, ins.imm & M64), args)
        self._set(b, st, 0, r0)
        self._status_check(b, st, pc)
        return False


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)[:32] or "prog"
