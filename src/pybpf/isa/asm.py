"""Assembler for both syntaxes pybpf prints: kernel pseudo-C and bpf_conformance.

Tests, examples and bug reports are easier to write and read as text than as
``Insn(...)`` lists, and the two syntaxes are the two texts people already have: verifier
logs / ``bpftool prog dump xlated`` / ``llvm-objdump`` output (kernel syntax) and the
bpf_conformance suite (conformance syntax). Both are accepted, chosen per line
(``syntax="auto"``) or forced (``"kernel"`` / ``"conformance"``), and may share labels.

Kernel syntax accepts what :func:`pybpf.isa.disasm.disasm_kernel` prints — with or without
the leading ``N:`` index and ``(xx)`` opcode column (when present the column must agree
with the encoding, and it decides ``(18) r1 = 5`` vs ``(b7) r1 = 5``) — plus the common
LLVM spellings: ``r1 = 0x1122334455667788 ll``, ``(r10 - 0x8)`` offsets, ``w`` registers
in loads and stores, ``goto +2``, ``callx r2``, ``xchg_64(r1 + 8, r2)``, ``cmpxchg_64(...)``,
labels as jump and call targets. Whole ``llvm-objdump -d`` and ``bpftool prog dump
xlated`` listings assemble as they are: symbol headers (``0000000000000028 <LBB0_2>:``)
define labels, and a raw-bytes column, when present, must agree with the encoding. Without a
column, ``rN = <value>`` is a ``mov`` when the value fits a sign-extended 32-bit immediate
and an ``ld_imm64`` otherwise (or with ``ll``). ``ld_imm64`` operands may be bpftool's
``map[id:N]``, ``map[id:N][0]+M``, ``map[idx:N]+M``, ``subprog[+N]`` / ``subprog[label]``,
the lossless ``pseudo[<src>]:0x<value>``, or anything a caller's ``pseudo_resolver`` knows.

Conformance syntax is bpf_conformance's grammar: ``mov %r0, 1``, ``ldxdw %r0, [%r10-8]``,
``lock fetch add32 [%r10-8], %r1``, ``jne %r0, 15, +3`` or ``jne %r0, 15, label``,
``call 5``, ``call local func``, ``call %r2`` (callx), ``exit``; ``swapNN`` is accepted for
``bswapNN``; a jump to the undefined label ``exit`` goes to the first ``exit``, as in
bpf_conformance. Hex immediates are 32-bit patterns (``0xffffffff`` is -1), decimal ones
must fit in ``s32``.

Both syntaxes: ``#``, ``;`` and ``//`` start comments, ``name:`` defines a label (alone or
before an instruction), and ``.insn code, dst, src, off, imm`` writes one raw slot.
Registers ``r11``-``r15`` are encodable (for negative tests; Linux rejects them). Every
problem raises :class:`~pybpf.errors.AsmError` naming the line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pybpf.errors import AsmError
from pybpf.isa.disasm import canonical, default_helper_names
from pybpf.isa.insn import Insn, encode, ld_imm64
from pybpf.isa.opcodes import (
    BPF_ADDR_PERCPU,
    BPF_ADDR_SPACE_CAST,
    BY_NAME,
    KERNEL_ALU_OPS,
    KERNEL_ATOMIC_OPS,
    KERNEL_JMP_OPS,
    KERNEL_LDST_TYPES,
    KERNEL_LDSX_TYPES,
    KERNEL_SIGNED_ALU_OPS,
    OPCODES,
    AtomicOp,
    CallKind,
    Kind,
    OpSpec,
    Pseudo,
    rows_by_asm,
)

PseudoResolver = Callable[[str], "tuple[int, int] | None"]
"""Text of an ``ld_imm64`` operand -> ``(src, 64-bit value)``, or ``None`` if not known."""

SYNTAXES = ("auto", "kernel", "conformance")

_NUM = r"[-+]?(?:0[xX][0-9a-fA-F]+|\d+)"
_NUM_RE = re.compile(rf"^{_NUM}$")
_LABEL_RE = re.compile(r"^[A-Za-z_.$][\w.$]*$")
_LABEL_DEF_RE = re.compile(r"^([A-Za-z_.$][\w.$]*)\s*:(?!=)\s*(.*)$")
_INDEX_RE = re.compile(r"^\d+\s*:\s*")
_COLUMN_RE = re.compile(r"^\(([0-9a-fA-F]{2})\)\s*")
_BPFTOOL_HEADER_RE = re.compile(r"^[^:;#]*\)\s*:$")
_RAW_BYTES_RE = re.compile(r"^((?:[0-9a-fA-F]{2}\s+){7}[0-9a-fA-F]{2}"
                           r"(?:(?:\s+[0-9a-fA-F]{2}){8})?)\s+(?=\S)")
_OBJDUMP_SYMBOL_RE = re.compile(r"^[0-9a-fA-F]+\s+<([^>]+)>:$")
_OBJDUMP_NOISE_RE = re.compile(r"^(?:\S+:\s+file format |Disassembly of section )")

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF


def _s32(v: int) -> int:
    v &= _U32
    return v - (1 << 32) if v & 0x80000000 else v


def _s16(v: int) -> int:
    v &= 0xFFFF
    return v - (1 << 16) if v & 0x8000 else v


# ---------------------------------------------------------------------------------------
# Numbers and registers
# ---------------------------------------------------------------------------------------


def _parse_int(text: str, line: int) -> int:
    t = text.strip().replace(" ", "")
    if not _NUM_RE.match(t):
        raise AsmError(f"expected a number, got {text.strip()!r}", line)
    neg = t.startswith("-")
    body = t.lstrip("+-")
    v = int(body, 16) if body[:2] in ("0x", "0X") else int(body, 10)
    return -v if neg else v


def _is_hex(text: str) -> bool:
    return "0x" in text or "0X" in text


def _imm32(text: str, line: int) -> int:
    """A 32-bit immediate: hex is a bit pattern up to 0xffffffff, decimal must fit s32."""
    v = _parse_int(text, line)
    if _is_hex(text) and -0x80000000 <= v <= _U32:
        return _s32(v)
    if -0x80000000 <= v <= 0x7FFFFFFF:
        return v
    raise AsmError(f"immediate out of range (32 bits): {text.strip()}", line)


def _off16(text: str, line: int) -> int:
    """A 16-bit offset: hex is a bit pattern up to 0xffff, decimal must fit s16."""
    v = _parse_int(text, line)
    if _is_hex(text) and -0x8000 <= v <= 0xFFFF:
        return _s16(v)
    if -0x8000 <= v <= 0x7FFF:
        return v
    raise AsmError(f"offset out of range (16 bits): {text.strip()}", line)


def _imm64(text: str, line: int) -> int:
    v = _parse_int(text, line)
    if -(1 << 63) <= v <= _U64:
        return v & _U64
    raise AsmError(f"immediate out of range (64 bits): {text.strip()}", line)


_KREG_RE = re.compile(r"^([rw])(\d+)$")
_CREG_RE = re.compile(r"^%r(\d+)$")


def _regno(num: str, text: str, line: int) -> int:
    n = int(num)
    if n > 15:
        raise AsmError(f"bad register {text!r} (r0-r10; r11-r15 only for negative tests)", line)
    return n


def _kreg(text: str, line: int) -> tuple[int, bool]:
    """A kernel-syntax register: ``(number, is_32bit)``."""
    m = _KREG_RE.match(text.strip())
    if not m:
        raise AsmError(f"bad register {text.strip()!r}", line)
    return _regno(m.group(2), text.strip(), line), m.group(1) == "w"


def _creg(text: str, line: int) -> int:
    m = _CREG_RE.match(text.strip())
    if not m:
        raise AsmError(f"bad register {text.strip()!r}", line)
    return _regno(m.group(1), text.strip(), line)


# ---------------------------------------------------------------------------------------
# Parsed items
# ---------------------------------------------------------------------------------------


@dataclass
class _Item:
    """One instruction (1 or 2 slots) awaiting label resolution."""

    line: int
    slots: list[Insn]
    fixup: str | None = None  # "off" | "imm" | "call" | "func": which field the label fills
    label: str | None = None
    column: int | None = None  # the (xx) opcode column, to cross-check
    raw: bytes | None = None  # the raw-bytes column of objdump listings, to cross-check
    pc: int = 0


@dataclass
class _Ctx:
    helper_ids: Mapping[str, int]
    helper_names_known: bool
    pseudo_resolver: PseudoResolver | None
    items: list[_Item] = field(default_factory=list)


def _spec(name: str) -> OpSpec:
    return BY_NAME[name]


# Lookups derived from the one table.
_ROWS_BY_ASM: dict[str, list[OpSpec]] = rows_by_asm()
_CONF_ALIASES: dict[str, str] = {f"swap{b}": f"bswap{b}" for b in (16, 32, 64)}
_ALU_BY_SYM: dict[str, int] = {v: k for k, v in KERNEL_ALU_OPS.items()
                               if k not in (0x80, 0xB0, 0xD0)}
_SALU_BY_SYM: dict[str, int] = {v: k for k, v in KERNEL_SIGNED_ALU_OPS.items()}
_JMP_BY_SYM: dict[str, int] = {v: k for k, v in KERNEL_JMP_OPS.items()
                               if k not in (0x00, 0x80, 0x90)}
_ATOMIC_BY_NAME: dict[str, int] = {v: k for k, v in KERNEL_ATOMIC_OPS.items()}
_ATOMIC_BY_SYM: dict[str, int] = {KERNEL_ALU_OPS[k]: k for k in KERNEL_ATOMIC_OPS}
_TYPE_BYTES: dict[str, tuple[int, bool]] = {
    **{t: (n, False) for n, t in KERNEL_LDST_TYPES.items()},
    **{t: (n, True) for n, t in KERNEL_LDSX_TYPES.items()},
}


def _find(pred: Callable[[OpSpec], bool]) -> OpSpec:
    for s in OPCODES:
        if pred(s):
            return s
    raise KeyError("no such row")  # pragma: no cover - table invariant


def _alu_row(op: int, is64: bool, reg: bool, signed: bool = False) -> OpSpec:
    kind_ok = (Kind.SDIV, Kind.SMOD) if signed else (Kind.ALU, Kind.MOV)
    return _find(lambda s: s.op == op and s.is64 == is64 and s.src_reg == reg
                 and s.kind in kind_ok)


def _jmp_row(op: int, is64: bool, reg: bool) -> OpSpec:
    return _find(lambda s: s.kind == Kind.JMP and s.op == op and s.is64 == is64
                 and s.src_reg == reg)


def _mem_row(kind: Kind, nbytes: int) -> OpSpec | None:
    for s in OPCODES:
        if s.kind == kind and s.size == nbytes:
            return s
    return None


def _atomic_row(imm: int, nbytes: int) -> OpSpec | None:
    for s in OPCODES:
        if s.kind == Kind.ATOMIC and s.size == nbytes and s.variant == imm:
            return s
    return None


# ---------------------------------------------------------------------------------------
# Jump / call targets
# ---------------------------------------------------------------------------------------


def _target(text: str, line: int, *, wide: bool = False) -> tuple[int, str | None]:
    """A jump target: ``pc+N`` / ``+N`` / ``-N`` / ``N`` -> (offset, None); a name -> (0, name)."""
    t = text.strip()
    t = re.sub(r"\s*<[^>]*>$", "", t)  # llvm-objdump's "<LBB0_3>" annotation
    if t.startswith("pc"):
        t = t[2:]
    t = t.replace(" ", "")
    if _NUM_RE.match(t):
        return (_imm32(t, line) if wide else _off16(t, line)), None
    if _LABEL_RE.match(t):
        return 0, t
    raise AsmError(f"bad jump target {text.strip()!r}", line)


# ---------------------------------------------------------------------------------------
# Kernel syntax
# ---------------------------------------------------------------------------------------

_R = r"([rw]\d+)"
_MEM = r"\(\s*r(\d+)\s*(?:([-+])\s*(0[xX][0-9a-fA-F]+|\d+))?\s*\)"
_TYPE = r"\*\s*\(\s*([us]\d+)\s*\*\s*\)"
_PTR = r"\(\s*([us]\d+)\s*\*\s*\)"

_K_IF = re.compile(rf"^if\s+{_R}\s*(s>=|s<=|s>|s<|==|!=|>=|<=|>|<|&)\s*(\S+)\s+goto\s+(.+)$")
_K_GOTO = re.compile(r"^(goto|gotol|may_goto)\s+(.+)$")
_K_LOCK = re.compile(rf"^lock\s+{_TYPE}\s*{_MEM}\s*(\+=|&=|\|=|\^=)\s*{_R}$")
_K_STORE = re.compile(rf"^{_TYPE}\s*{_MEM}\s*=\s*(.+)$")
_K_STREL = re.compile(rf"^store_release\(\s*{_PTR}\s*{_MEM}\s*,\s*{_R}\s*\)$")
_K_ASSIGN = re.compile(rf"^{_R}\s*=\s*(.+)$")
_K_ALU = re.compile(rf"^{_R}\s*(s>>=|s/=|s%=|<<=|>>=|\+=|-=|\*=|/=|\|=|&=|%=|\^=)\s*(.+)$")
_K_LOAD = re.compile(rf"^{_TYPE}\s*{_MEM}$")
_K_SKB = re.compile(rf"^{_TYPE}\s*skb\[\s*(?:r(\d+)\s*(?:\+\s*({_NUM}))?|({_NUM}))\s*\]$")
_K_FETCH = re.compile(rf"^atomic(?:64)?_fetch_(add|and|or|xor)\(\s*{_PTR}\s*{_MEM}\s*,\s*{_R}\s*\)$")
_K_XCHG = re.compile(rf"^atomic(?:64)?_xchg\(\s*{_PTR}\s*{_MEM}\s*,\s*{_R}\s*\)$")
_K_CMPXCHG = re.compile(
    rf"^atomic(?:64)?_cmpxchg\(\s*{_PTR}\s*{_MEM}\s*,\s*{_R}\s*,\s*{_R}\s*\)$")
_K_LDACQ = re.compile(rf"^load_acquire\(\s*{_PTR}\s*{_MEM}\s*\)$")
_LLVM_ADDR = r"r(\d+)\s*(?:([-+])\s*(0[xX][0-9a-fA-F]+|\d+))?"
_LLVM_XCHG = re.compile(rf"^xchg(32)?_(32|64)\(\s*{_LLVM_ADDR}\s*,\s*{_R}\s*\)$")
_LLVM_CMPXCHG = re.compile(
    rf"^cmpxchg(32)?_(32|64)\(\s*{_LLVM_ADDR}\s*,\s*{_R}\s*,\s*{_R}\s*\)$")
_K_MOVSX = re.compile(rf"^\(s(8|16|32)\)\s*{_R}$")
_K_END = re.compile(rf"^(be|le|bswap)(\d+)\s+{_R}$")
_K_ASC = re.compile(rf"^addr_space_cast\(\s*{_R}\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\)$")
_K_PERCPU = re.compile(rf"^&\(\s*void\s+__percpu\s*\*\s*\)\s*\(\s*{_R}\s*\)$")
_K_VALUE = re.compile(rf"^({_NUM})(\s+ll)?$")
_K_CALL_PC = re.compile(r"^pc\s*([-+]?\s*(?:0[xX][0-9a-fA-F]+|\d+))(?:#.*)?$")
_K_CALL_HASH = re.compile(rf"^(\S*)#({_NUM})$")

_MAP_ID = re.compile(rf"^map\[id:({_NUM})\]$")
_MAP_VALUE = re.compile(rf"^map\[id:({_NUM})\]\[0\]\+({_NUM})$")
_MAP_IDX_VALUE = re.compile(rf"^map\[idx:({_NUM})\]\+({_NUM})$")
_SUBPROG = re.compile(r"^subprog\[\s*([^\]]+?)\s*\]$")
_PSEUDO = re.compile(rf"^pseudo\[(\d+)\]:({_NUM})$")


def _mem_off(sign: str | None, mag: str | None, line: int) -> int:
    if mag is None:
        return 0
    return _off16(("-" if sign == "-" else "") + mag, line)


def _kernel_type(t: str, line: int) -> tuple[int, bool]:
    got = _TYPE_BYTES.get(t)
    if got is None:
        raise AsmError(f"bad memory type {t!r}", line)
    return got


def _k_ldst_size(t: str, line: int) -> int:
    nbytes, signed = _kernel_type(t, line)
    if signed:
        raise AsmError(f"signed type {t!r} is only valid for loads", line)
    return nbytes


class _Kernel:
    """Parser of one kernel-syntax instruction (without index, column and comments)."""

    def __init__(self, ctx: _Ctx, line: int, column: int | None) -> None:
        self.ctx = ctx
        self.line = line
        self.column = column

    def item(self, slots: list[Insn], fixup: str | None = None,
             label: str | None = None) -> _Item:
        return _Item(self.line, slots, fixup, label, self.column)

    def err(self, msg: str) -> AsmError:
        return AsmError(msg, self.line)

    def parse(self, text: str) -> _Item:
        if text == "exit":
            return self.item([canonical(_spec("exit"))])
        head = text.split(None, 1)[0]
        if head == "if":
            return self.cond_jump(text)
        if head in ("goto", "gotol", "may_goto"):
            return self.goto(text)
        if head in ("call", "callx"):
            return self.call(head, text[len(head):].strip())
        if head == "lock":
            return self.lock(text)
        if text.startswith("*"):
            return self.store(text)
        if text.startswith("store_release"):
            return self.store_release(text)
        m = _K_ALU.match(text)
        if m:
            return self.alu(m.group(1), m.group(2), m.group(3).strip())
        m = _K_ASSIGN.match(text)
        if m:
            return self.assign(m.group(1), m.group(2).strip())
        if head == "exit":
            raise self.err("exit takes no operands")
        if "=" not in text and not _KREG_RE.match(head):
            raise self.err(f"unknown mnemonic {head!r}")
        raise self.err(f"cannot parse {text!r}")

    # -- jumps and calls -----------------------------------------------------------------

    def cond_jump(self, text: str) -> _Item:
        m = _K_IF.match(text)
        if not m:
            raise self.err(f"bad conditional jump {text!r}")
        dst, d32 = _kreg(m.group(1), self.line)
        op = _JMP_BY_SYM[m.group(2)]
        rhs = m.group(3)
        off, label = _target(m.group(4), self.line)
        if _KREG_RE.match(rhs):
            src, s32 = _kreg(rhs, self.line)
            if s32 != d32:
                raise self.err("mixed r and w registers in comparison")
            ins = canonical(_jmp_row(op, not d32, True), dst, src, off)
        else:
            ins = canonical(_jmp_row(op, not d32, False), dst, off=off,
                            imm=_imm32(rhs, self.line))
        return self.item([ins], "off" if label else None, label)

    def goto(self, text: str) -> _Item:
        m = _K_GOTO.match(text)
        if m is None:
            raise self.err(f"{text.split()[0]} needs a target")
        kw = m.group(1)
        if kw == "gotol":
            imm, label = _target(m.group(2), self.line, wide=True)
            return self.item([canonical(_spec("ja32"), imm=imm)], "imm" if label else None,
                             label)
        off, label = _target(m.group(2), self.line)
        spec = _spec("ja" if kw == "goto" else "may_goto")
        return self.item([canonical(spec, off=off)], "off" if label else None, label)

    def call(self, head: str, arg: str) -> _Item:
        call = _spec("call")
        if head == "callx":
            reg, _ = _kreg(arg, self.line)
            return self.item([canonical(_spec("callx"), reg)])
        m = _K_CALL_PC.match(arg)
        if m:
            imm = _imm32(m.group(1).replace(" ", ""), self.line)
            return self.item([canonical(call, src=CallKind.PSEUDO_CALL, imm=imm)])
        m = _K_CALL_HASH.match(arg)
        if m:
            return self.item([self.call_hash(m.group(1), _imm32(m.group(2), self.line))])
        if _NUM_RE.match(arg):
            return self.item([canonical(call, imm=_imm32(arg, self.line))])
        if _LABEL_RE.match(arg):
            return self.item([canonical(call)], "call", arg)
        raise self.err(f"bad call target {arg!r}")

    def call_hash(self, name: str, imm: int) -> Insn:
        """``name#id``: the id is authoritative; the name tells helper from kfunc."""
        call = _spec("call")
        if name == "kernel-function":
            return canonical(call, src=CallKind.KFUNC, imm=imm)
        if name in ("unknown", "") or not self.ctx.helper_names_known:
            return canonical(call, imm=imm)
        if name in self.ctx.helper_ids or f"bpf_{name}" in self.ctx.helper_ids:
            return canonical(call, imm=imm)
        return canonical(call, src=CallKind.KFUNC, imm=imm)

    # -- memory ----------------------------------------------------------------------------

    def lock(self, text: str) -> _Item:
        m = _K_LOCK.match(text)
        if not m:
            raise self.err(f"bad atomic instruction {text!r}")
        nbytes = _k_ldst_size(m.group(1), self.line)
        dst = int(m.group(2))
        src, _ = _kreg(m.group(6), self.line)
        spec = _atomic_row(_ATOMIC_BY_SYM[m.group(5)], nbytes)
        if spec is None:
            raise self.err(f"no {m.group(1)} atomic {m.group(5)} instruction")
        return self.item([canonical(spec, _chk(dst, self.line), src,
                                    _mem_off(m.group(3), m.group(4), self.line))])

    def store(self, text: str) -> _Item:
        m = _K_STORE.match(text)
        if not m:
            raise self.err(f"bad store {text!r}")
        nbytes = _k_ldst_size(m.group(1), self.line)
        dst = _chk(int(m.group(2)), self.line)
        off = _mem_off(m.group(3), m.group(4), self.line)
        rhs = m.group(5).strip()
        if _KREG_RE.match(rhs):
            src, _ = _kreg(rhs, self.line)
            spec = _mem_row(Kind.STX, nbytes)
            assert spec is not None
            return self.item([canonical(spec, dst, src, off)])
        spec = _mem_row(Kind.ST, nbytes)
        assert spec is not None
        return self.item([canonical(spec, dst, off=off, imm=_imm32(rhs, self.line))])

    def store_release(self, text: str) -> _Item:
        m = _K_STREL.match(text)
        if not m:
            raise self.err(f"bad store_release {text!r}")
        nbytes = _k_ldst_size(m.group(1), self.line)
        spec = _atomic_row(AtomicOp.STORE_REL, nbytes)
        assert spec is not None
        src, _ = _kreg(m.group(5), self.line)
        return self.item([canonical(spec, _chk(int(m.group(2)), self.line), src,
                                    _mem_off(m.group(3), m.group(4), self.line))])

    # -- ALU -------------------------------------------------------------------------------

    def alu(self, dst_t: str, sym: str, rhs: str) -> _Item:
        dst, d32 = _kreg(dst_t, self.line)
        signed = sym in _SALU_BY_SYM
        op = _SALU_BY_SYM[sym] if signed else _ALU_BY_SYM[sym]
        if _KREG_RE.match(rhs):
            src, s32 = _kreg(rhs, self.line)
            if s32 != d32:
                raise self.err("mixed r and w registers")
            return self.item([canonical(_alu_row(op, not d32, True, signed), dst, src)])
        spec = _alu_row(op, not d32, False, signed)
        return self.item([canonical(spec, dst, imm=_imm32(rhs, self.line))])

    def assign(self, dst_t: str, rhs: str) -> _Item:
        """Everything of the form ``rN = ...``."""
        dst, d32 = _kreg(dst_t, self.line)
        first = rhs[:1]
        if first == "*":
            return self.load(dst, rhs)
        if first == "-":
            m = re.match(rf"^-\s*{_R}$", rhs)
            if m:
                return self.neg(dst, d32, m.group(1))
        if first == "(":
            m = _K_MOVSX.match(rhs)
            if m:
                return self.movsx(dst, d32, int(m.group(1)), m.group(2))
        if rhs.startswith(("atomic", "load_acquire")):
            return self.atomic_value(dst, rhs)
        if rhs.startswith(("xchg", "cmpxchg")):
            return self.llvm_xchg(dst, rhs)
        m = _K_END.match(rhs)
        if m:
            return self.endian(dst, m.group(1), int(m.group(2)), m.group(3))
        if rhs.startswith("addr_space_cast"):
            return self.addr_space_cast(dst, rhs)
        if rhs.startswith("&"):
            m = _K_PERCPU.match(rhs)
            if not m:
                raise self.err(f"cannot parse {rhs!r}")
            src, _ = _kreg(m.group(1), self.line)
            return self.item([Insn(_spec("mov64_reg").code, dst, src, BPF_ADDR_PERCPU)])
        if _KREG_RE.match(rhs):
            src, s32 = _kreg(rhs, self.line)
            if s32 != d32:
                raise self.err("mixed r and w registers")
            return self.item([canonical(_alu_row(0xB0, not d32, True), dst, src)])
        return self.value(dst, d32, rhs)

    def neg(self, dst: int, d32: bool, src_t: str) -> _Item:
        src, s32 = _kreg(src_t, self.line)
        if src != dst or s32 != d32:
            raise self.err("neg must negate its destination register")
        return self.item([canonical(_spec("neg32" if d32 else "neg64"), dst)])

    def movsx(self, dst: int, d32: bool, bits: int, src_t: str) -> _Item:
        src, s32 = _kreg(src_t, self.line)
        if s32 != d32:
            raise self.err("mixed r and w registers")
        name = f"movsx{bits}{'32' if d32 else '64'}"
        if name not in BY_NAME:
            raise self.err(f"no sign-extending move from {bits} bits to {dst}")
        return self.item([canonical(_spec(name), dst, src)])

    def endian(self, dst: int, kind: str, bits: int, src_t: str) -> _Item:
        src, _ = _kreg(src_t, self.line)
        if src != dst:
            raise self.err("byte swap must operate on its destination register")
        name = f"{kind}{bits}"
        if name not in BY_NAME:
            raise self.err(f"bad byte swap width {bits}")
        return self.item([canonical(_spec(name), dst)])

    def addr_space_cast(self, dst: int, rhs: str) -> _Item:
        m = _K_ASC.match(rhs)
        if not m:
            raise self.err(f"bad addr_space_cast {rhs!r}")
        src, _ = _kreg(m.group(1), self.line)
        hi = _parse_int(m.group(2), self.line) & 0xFFFF
        lo = _parse_int(m.group(3), self.line) & 0xFFFF
        return self.item([Insn(_spec("mov64_reg").code, dst, src, BPF_ADDR_SPACE_CAST,
                               _s32((hi << 16) | lo))])

    def load(self, dst: int, rhs: str) -> _Item:
        m = _K_LOAD.match(rhs)
        if m:
            nbytes, signed = _kernel_type(m.group(1), self.line)
            spec = _mem_row(Kind.LDXSX if signed else Kind.LDX, nbytes)
            if spec is None:
                raise self.err(f"no {m.group(1)} load")
            return self.item([canonical(spec, dst, _chk(int(m.group(2)), self.line),
                                        _mem_off(m.group(3), m.group(4), self.line))])
        m = _K_SKB.match(rhs)
        if m:
            return self.packet_load(dst, m)
        raise self.err(f"bad load {rhs!r}")

    def packet_load(self, dst: int, m: re.Match[str]) -> _Item:
        if dst != 0:
            raise self.err("packet loads (LD_ABS/LD_IND) always write r0")
        nbytes = _k_ldst_size(m.group(1), self.line)
        if m.group(2) is not None:
            spec = _mem_row(Kind.LD_IND, nbytes)
            imm = _imm32(m.group(3), self.line) if m.group(3) else 0
            src = _chk(int(m.group(2)), self.line)
        else:
            spec = _mem_row(Kind.LD_ABS, nbytes)
            imm, src = _imm32(m.group(4), self.line), 0
        if spec is None:
            raise self.err(f"no {nbytes}-byte packet load")
        return self.item([canonical(spec, src=src, imm=imm)])

    def atomic_value(self, dst: int, rhs: str) -> _Item:
        """``rN = atomic..._fetch_op(...)``, ``xchg``, ``cmpxchg``, ``load_acquire``."""
        m = _K_FETCH.match(rhs)
        if m:
            src, _ = _kreg(m.group(6), self.line)
            self.same(dst, src)
            imm = _ATOMIC_BY_NAME[m.group(1)] | 0x01
            return self.atomic(imm, m.group(2), m.group(3), m.group(4), m.group(5), src)
        m = _K_XCHG.match(rhs)
        if m:
            src, _ = _kreg(m.group(5), self.line)
            self.same(dst, src)
            return self.atomic(AtomicOp.XCHG, m.group(1), m.group(2), m.group(3), m.group(4),
                               src)
        m = _K_CMPXCHG.match(rhs)
        if m:
            r0, _ = _kreg(m.group(5), self.line)
            src, _ = _kreg(m.group(6), self.line)
            if dst != 0 or r0 != 0:
                raise self.err("cmpxchg compares and returns in r0: r0 = ...(ptr, r0, rN)")
            return self.atomic(AtomicOp.CMPXCHG, m.group(1), m.group(2), m.group(3),
                               m.group(4), src)
        m = _K_LDACQ.match(rhs)
        if m:
            nbytes = _k_ldst_size(m.group(1), self.line)
            spec = _atomic_row(AtomicOp.LOAD_ACQ, nbytes)
            assert spec is not None
            return self.item([canonical(spec, dst, _chk(int(m.group(2)), self.line),
                                        _mem_off(m.group(3), m.group(4), self.line))])
        raise self.err(f"bad atomic instruction {rhs!r}")

    def llvm_xchg(self, dst: int, rhs: str) -> _Item:
        """LLVM's spelling: ``r1 = xchg_64(r10 - 8, r1)``, ``w0 = cmpxchg32_32(r1 + 0, w0, w2)``."""
        t_of = {"32": "u32", "64": "u64"}
        m = _LLVM_XCHG.match(rhs)
        if m:
            src, _ = _kreg(m.group(6), self.line)
            self.same(dst, src)
            return self.atomic(AtomicOp.XCHG, t_of[m.group(2)], m.group(3), m.group(4),
                               m.group(5), src)
        m = _LLVM_CMPXCHG.match(rhs)
        if m:
            r0, _ = _kreg(m.group(6), self.line)
            src, _ = _kreg(m.group(7), self.line)
            if dst != 0 or r0 != 0:
                raise self.err("cmpxchg compares and returns in r0: r0 = ...(ptr, r0, rN)")
            return self.atomic(AtomicOp.CMPXCHG, t_of[m.group(2)], m.group(3), m.group(4),
                               m.group(5), src)
        raise self.err(f"bad atomic instruction {rhs!r}")

    def same(self, a: int, b: int) -> None:
        if a != b:
            raise self.err("an atomic fetch returns into its source register: "
                           "rN = atomic_...((ptr), rN)")

    def atomic(self, imm: int, t: str, base: str, sign: str | None, mag: str | None,
               src: int) -> _Item:
        nbytes = _k_ldst_size(t, self.line)
        spec = _atomic_row(imm, nbytes)
        if spec is None:
            raise self.err(f"no {t} atomic instruction of that kind")
        return self.item([canonical(spec, _chk(int(base), self.line), src,
                                    _mem_off(sign, mag, self.line))])

    def value(self, dst: int, d32: bool, rhs: str) -> _Item:
        """``rN = <number>`` (mov or ld_imm64) or ``rN = <pseudo operand>`` (ld_imm64)."""
        m = _K_VALUE.match(rhs)
        if m:
            text, ll = m.group(1), m.group(2)
            if d32:
                if ll:
                    raise self.err("ld_imm64 needs a 64-bit register")
                return self.item([canonical(_spec("mov32_imm"), dst,
                                            imm=_imm32(text, self.line))])
            v = _imm64(text, self.line)
            fits = (_s32(v) & _U64) == v
            wide = bool(ll) or self.column == 0x18 or (self.column is None and not fits)
            if wide:
                return self.item(list(ld_imm64(dst, v)))
            if not fits:
                raise self.err(f"immediate out of range (32 bits): {text}")
            return self.item([canonical(_spec("mov64_imm"), dst, imm=_s32(v))])
        if d32:
            raise self.err(f"cannot parse {rhs!r}")
        return self.pseudo(dst, rhs)

    def pseudo(self, dst: int, rhs: str) -> _Item:
        resolver = self.ctx.pseudo_resolver
        if resolver is not None:
            got = resolver(rhs)
            if got is not None:
                src, v = got
                return self.item(list(ld_imm64(dst, v, src)))
        m = _SUBPROG.match(rhs)
        if m:
            arg = m.group(1)
            if _LABEL_RE.match(arg):
                return self.item(list(ld_imm64(dst, 0, Pseudo.FUNC)), "func", arg)
            rel = _imm32(arg, self.line) & _U32  # the high word of a function ref is 0
            return self.item(list(ld_imm64(dst, rel, Pseudo.FUNC)))
        m = _MAP_ID.match(rhs)
        if m:
            return self.item(list(ld_imm64(dst, self.u32(m.group(1)), Pseudo.MAP_FD)))
        m = _MAP_VALUE.match(rhs)
        if m:
            v = self.u32(m.group(1)) | self.u32(m.group(2)) << 32
            return self.item(list(ld_imm64(dst, v, Pseudo.MAP_VALUE)))
        m = _MAP_IDX_VALUE.match(rhs)
        if m:
            v = self.u32(m.group(1)) | self.u32(m.group(2)) << 32
            return self.item(list(ld_imm64(dst, v, Pseudo.MAP_IDX_VALUE)))
        m = _PSEUDO.match(rhs)
        if m:
            src = int(m.group(1))
            if src > 15:
                raise self.err(f"pseudo source {src} does not fit the src field")
            return self.item(list(ld_imm64(dst, _imm64(m.group(2), self.line), src)))
        raise self.err(f"cannot parse operand {rhs!r}")

    def u32(self, text: str) -> int:
        v = _parse_int(text, self.line)
        if not -0x80000000 <= v <= _U32:
            raise self.err(f"value out of range (32 bits): {text}")
        return v & _U32


def _chk(reg: int, line: int) -> int:
    if reg > 15:
        raise AsmError(f"bad register r{reg}", line)
    return reg


# ---------------------------------------------------------------------------------------
# Conformance syntax
# ---------------------------------------------------------------------------------------

_C_MEM = re.compile(r"^\[\s*%r(\d+)\s*(?:([-+])\s*(0[xX][0-9a-fA-F]+|\d+))?\s*\]$")


def _cmem(text: str, line: int) -> tuple[int, int]:
    m = _C_MEM.match(text.strip())
    if not m:
        raise AsmError(f"bad memory operand {text.strip()!r} (expected [%rN+off])", line)
    return (_regno(m.group(1), text.strip(), line),
            _mem_off(m.group(2), m.group(3), line))


class _Conformance:
    """Parser of one bpf_conformance-syntax instruction."""

    def __init__(self, ctx: _Ctx, line: int) -> None:
        self.ctx = ctx
        self.line = line

    def err(self, msg: str) -> AsmError:
        return AsmError(msg, self.line)

    def item(self, slots: list[Insn], fixup: str | None = None,
             label: str | None = None) -> _Item:
        return _Item(self.line, slots, fixup, label)

    def parse(self, text: str) -> _Item:
        mnemonic, operands = _split_conformance(text)
        mnemonic = _CONF_ALIASES.get(mnemonic, mnemonic)
        if mnemonic == "call":
            return self.call(operands)
        rows = _ROWS_BY_ASM.get(mnemonic)
        if rows is None:
            raise self.err(f"unknown mnemonic {mnemonic!r}")
        return self.encode(mnemonic, rows, operands)

    def want(self, mnemonic: str, operands: list[str], n: int) -> None:
        if len(operands) != n:
            raise self.err(f"{mnemonic} takes {n} operand{'s' if n != 1 else ''}, "
                           f"got {len(operands)}")

    def encode(self, mn: str, rows: list[OpSpec], ops: list[str]) -> _Item:
        kind = rows[0].kind
        line = self.line
        if kind in (Kind.ALU, Kind.SDIV, Kind.SMOD, Kind.MOV):
            self.want(mn, ops, 2)
            dst = _creg(ops[0], line)
            reg = ops[1].strip().startswith("%")
            spec = next(s for s in rows if s.src_reg == reg)
            if reg:
                return self.item([canonical(spec, dst, _creg(ops[1], line))])
            return self.item([canonical(spec, dst, imm=_imm32(ops[1], line))])
        if kind in (Kind.NEG, Kind.END, Kind.BSWAP):
            self.want(mn, ops, 1)
            return self.item([canonical(rows[0], _creg(ops[0], line))])
        if kind == Kind.MOVSX:
            self.want(mn, ops, 2)
            return self.item([canonical(rows[0], _creg(ops[0], line), _creg(ops[1], line))])
        if kind == Kind.LD_IMM64:
            self.want(mn, ops, 2)
            return self.item(list(ld_imm64(_creg(ops[0], line), _imm64(ops[1], line))))
        if kind == Kind.LD_ABS:
            self.want(mn, ops, 1)
            return self.item([canonical(rows[0], imm=_imm32(ops[0], line))])
        if kind == Kind.LD_IND:
            self.want(mn, ops, 2)
            return self.item([canonical(rows[0], src=_creg(ops[0], line),
                                        imm=_imm32(ops[1], line))])
        return self.encode_mem_or_jump(mn, rows, ops)

    def encode_mem_or_jump(self, mn: str, rows: list[OpSpec], ops: list[str]) -> _Item:
        spec = rows[0]
        kind = spec.kind
        line = self.line
        if kind in (Kind.LDX, Kind.LDXSX) or (kind == Kind.ATOMIC
                                              and spec.op == AtomicOp.LOAD_ACQ):
            self.want(mn, ops, 2)
            base, off = _cmem(ops[1], line)
            return self.item([canonical(spec, _creg(ops[0], line), base, off)])
        if kind in (Kind.STX, Kind.ATOMIC):
            self.want(mn, ops, 2)
            base, off = _cmem(ops[0], line)
            return self.item([canonical(spec, base, _creg(ops[1], line), off)])
        if kind == Kind.ST:
            self.want(mn, ops, 2)
            base, off = _cmem(ops[0], line)
            return self.item([canonical(spec, base, off=off, imm=_imm32(ops[1], line))])
        if kind in (Kind.JA, Kind.JCOND):
            self.want(mn, ops, 1)
            wide = kind == Kind.JA and not spec.is64
            v, label = _target(ops[0], line, wide=wide)
            fix = ("imm" if wide else "off") if label else None
            ins = canonical(spec, imm=v) if wide else canonical(spec, off=v)
            return self.item([ins], fix, label)
        if kind == Kind.JMP:
            self.want(mn, ops, 3)
            dst = _creg(ops[0], line)
            off, label = _target(ops[2], line)
            reg = ops[1].strip().startswith("%")
            row = next(s for s in rows if s.src_reg == reg)
            if reg:
                ins = canonical(row, dst, _creg(ops[1], line), off)
            else:
                ins = canonical(row, dst, off=off, imm=_imm32(ops[1], line))
            return self.item([ins], "off" if label else None, label)
        if kind == Kind.EXIT:
            self.want(mn, ops, 0)
            return self.item([canonical(spec)])
        raise self.err(f"unknown mnemonic {mn!r}")  # pragma: no cover - table invariant

    def call(self, ops: list[str]) -> _Item:
        """``call N`` / ``call helper N`` / ``call local T`` / ``call runtime N`` / ``call %rN``."""
        words = ops[0].split() if len(ops) == 1 else []
        if len(ops) != 1 or not 1 <= len(words) <= 2:
            raise self.err("call takes one target: N, %rN, local <label>, runtime N")
        mode, target = (words if len(words) == 2 else ("helper", words[0]))
        if len(words) == 1 and target in ("local", "helper", "runtime"):
            raise self.err(f"call {target} needs a target")
        call = _spec("call")
        if mode == "helper":
            if target.startswith("%"):
                return self.item([canonical(_spec("callx"), _creg(target, self.line))])
            if _NUM_RE.match(target):
                return self.item([canonical(call, imm=_imm32(target, self.line))])
            ids = self.ctx.helper_ids
            name = target if target in ids else f"bpf_{target}"
            if name in ids:
                return self.item([canonical(call, imm=ids[name])])
            raise self.err(f"unknown helper {target!r}")
        if mode == "local":
            imm, label = _target(target, self.line, wide=True)
            ins = canonical(call, src=CallKind.PSEUDO_CALL, imm=imm)
            return self.item([ins], "imm" if label else None, label)
        if mode == "runtime":
            return self.item([canonical(call, src=CallKind.KFUNC,
                                        imm=_imm32(target, self.line))])
        raise self.err(f"bad call mode {mode!r} (helper, local or runtime)")


def _split_conformance(text: str) -> tuple[str, list[str]]:
    """``lock fetch add32 [%r1], %r2`` -> (``"lock fetch add32"``, operands)."""
    words = text.split(None, 1)
    mnemonic = words[0]
    rest = words[1] if len(words) > 1 else ""
    if mnemonic == "lock":
        parts = rest.split()
        k = 0
        while k < len(parts) and not parts[k].startswith(("%", "[")):
            k += 1
        mnemonic = " ".join(["lock", *parts[:k]])
        rest = " ".join(parts[k:])
    if mnemonic == "call":
        return mnemonic, [rest.strip()] if rest.strip() else []
    operands = [o.strip() for o in rest.split(",")] if rest.strip() else []
    return mnemonic, operands


# ---------------------------------------------------------------------------------------
# Lines, labels, driver
# ---------------------------------------------------------------------------------------


def _strip_comment(raw: str) -> str:
    """Drop ``;`` / ``//`` comments and ``#`` comments (``#`` not glued to a word)."""
    s = raw
    for mark in (";", "//"):
        k = s.find(mark)
        if k >= 0:
            s = s[:k]
    k = s.find("#")
    while k >= 0:
        if k == 0 or s[k - 1].isspace():
            s = s[:k]
            break
        k = s.find("#", k + 1)
    return s.strip()


_CONF_WORDS = frozenset({*(a.split()[0] for a in _ROWS_BY_ASM), *_CONF_ALIASES})


def _looks_conformance(text: str) -> bool:
    """Per-line syntax detection for ``syntax="auto"``."""
    head, _, rest = text.partition(" ")
    rest = rest.strip()
    if head == "lock":
        return not rest.startswith("*")
    if head == "call":
        return rest.startswith("%") or rest.split(" ", 1)[0] in ("local", "helper", "runtime")
    if head in ("exit", "callx"):
        return False
    return head in _CONF_WORDS and "=" not in text


def _raw_insn(text: str, line: int) -> _Item:
    parts = [p.strip() for p in text[len(".insn"):].split(",")]
    if len(parts) != 5:
        raise AsmError(".insn takes 5 fields: code, dst, src, off, imm", line)
    code = _parse_int(parts[0], line)
    dst = _parse_int(parts[1], line)
    src = _parse_int(parts[2], line)
    if not 0 <= code <= 0xFF:
        raise AsmError(f"opcode out of range: {parts[0]}", line)
    if not (0 <= dst <= 15 and 0 <= src <= 15):
        raise AsmError("register fields are 4 bits (0-15)", line)
    return _Item(line, [Insn(code, dst, src, _off16(parts[3], line), _imm32(parts[4], line))])


def _parse_line(ctx: _Ctx, lineno: int, raw: str, syntax: str) -> tuple[list[str], _Item | None]:
    """Labels defined on the line and its instruction, if any."""
    text = _strip_comment(raw)
    labels: list[str] = []
    m = _OBJDUMP_SYMBOL_RE.match(text)  # llvm-objdump: "0000000000000028 <LBB0_2>:"
    if m:
        return [m.group(1)], None
    if _OBJDUMP_NOISE_RE.match(text):
        return labels, None
    while text:
        m = _LABEL_DEF_RE.match(text)
        if not m:
            break
        labels.append(m.group(1))
        text = m.group(2).strip()
    if not text or _BPFTOOL_HEADER_RE.match(text):
        return labels, None
    text = _INDEX_RE.sub("", text, count=1)
    raw_bytes: bytes | None = None
    m = _RAW_BYTES_RE.match(text)  # llvm-objdump / bpftool -d: the encoding before the text
    if m:
        raw_bytes = bytes.fromhex("".join(m.group(1).split()))
        text = text[m.end():]
    column: int | None = None
    m = _COLUMN_RE.match(text)
    if m:
        column = int(m.group(1), 16)
        text = text[m.end():]
    text = " ".join(text.split())
    if not text:
        raise AsmError("missing instruction after the opcode column", lineno)
    if text.startswith(".insn"):
        item = _raw_insn(text, lineno)
    elif syntax == "conformance" or (syntax == "auto" and column is None
                                      and _looks_conformance(text)):
        item = _Conformance(ctx, lineno).parse(text)
    else:
        item = _Kernel(ctx, lineno, column).parse(text)
    item.column = column
    item.raw = raw_bytes
    return labels, item


def _resolve(ctx: _Ctx, labels: dict[str, int], first_exit: int | None) -> list[Insn]:
    out: list[Insn] = []
    for item in ctx.items:
        if item.column is not None and item.slots[0].code != item.column:
            raise AsmError(f"opcode column ({item.column:02x}) does not match the "
                           f"instruction, which encodes as ({item.slots[0].code:02x})",
                           item.line)
        if item.fixup is not None:
            item.slots[0] = _fix(ctx, item, labels, first_exit)
        if item.raw is not None and encode(item.slots)[:len(item.raw)] != item.raw:
            raise AsmError(f"the bytes column ({item.raw.hex(' ')}) does not match the "
                           f"instruction, which encodes as {encode(item.slots).hex(' ')}",
                           item.line)
        out.extend(item.slots)
    return out


def _fix(ctx: _Ctx, item: _Item, labels: dict[str, int], first_exit: int | None) -> Insn:
    ins = item.slots[0]
    name = item.label
    assert name is not None
    target = labels.get(name)
    if target is None and name == "exit":
        target = first_exit
    if item.fixup == "call":
        if target is not None:
            return ins._replace(src=CallKind.PSEUDO_CALL, imm=target - item.pc - 1)
        ids = ctx.helper_ids
        key = name if name in ids else f"bpf_{name}"
        if key in ids:
            return ins._replace(imm=ids[key])
        raise AsmError(f"unknown helper or undefined label {name!r}", item.line)
    if target is None:
        raise AsmError(f"undefined label {name!r}", item.line)
    rel = target - item.pc - 1
    if item.fixup == "off":
        if not -0x8000 <= rel <= 0x7FFF:
            raise AsmError(f"jump to {name!r} out of range for a 16-bit offset ({rel})",
                           item.line)
        return ins._replace(off=rel)
    return ins._replace(imm=rel)  # "imm" (gotol, call local) and "func" (subprog[label])


def assemble(text: str, *, syntax: str = "auto", helper_ids: Mapping[str, int] | None = None,
             pseudo_resolver: PseudoResolver | None = None) -> list[Insn]:
    """Assemble ``text`` into program slots (an ``ld_imm64`` gives two).

    ``syntax`` is ``"auto"`` (decided per line), ``"kernel"`` or ``"conformance"``.
    ``helper_ids`` maps helper names (``bpf_map_lookup_elem`` or ``map_lookup_elem``) to ids
    for ``call <name>``; by default the names of ``pybpf.uapi``. ``pseudo_resolver`` turns
    an ``ld_imm64`` operand the built-in forms do not know into ``(src, value)``.
    Raises :class:`AsmError` (with the 1-based line) on any problem.
    """
    if syntax not in SYNTAXES:
        raise AsmError(f"unknown syntax {syntax!r} (one of {', '.join(SYNTAXES)})")
    known = default_helper_names()
    ids: Mapping[str, int] = (helper_ids if helper_ids is not None
                              else {v: k for k, v in known.items()})
    ctx = _Ctx(ids, bool(ids), pseudo_resolver)
    labels: dict[str, int] = {}
    pc = 0
    first_exit: int | None = None
    exit_code = _spec("exit").code
    for lineno, raw in enumerate(text.splitlines(), 1):
        try:
            defs, item = _parse_line(ctx, lineno, raw, syntax)
        except AsmError:
            raise
        except Exception as exc:  # a parser bug must still name the line
            raise AsmError(f"cannot parse {raw.strip()!r}: {exc}", lineno) from exc
        for name in defs:
            if name in labels:
                raise AsmError(f"duplicate label {name!r}", lineno)
            labels[name] = pc
        if item is None:
            continue
        item.pc = pc
        if first_exit is None and item.slots[0].code == exit_code:
            first_exit = pc
        ctx.items.append(item)
        pc += len(item.slots)
    return _resolve(ctx, labels, first_exit)


def assemble_bytes(text: str, *, syntax: str = "auto",
                   helper_ids: Mapping[str, int] | None = None,
                   pseudo_resolver: PseudoResolver | None = None) -> bytes:
    """:func:`assemble`, encoded as the raw bytes ``BPF_PROG_LOAD`` takes."""
    return encode(assemble(text, syntax=syntax, helper_ids=helper_ids,
                           pseudo_resolver=pseudo_resolver))
