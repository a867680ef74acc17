"""The one opcode table of pybpf.

Every consumer — decoder, validator, disassembler, assembler, interpreter, JIT and
verifier — reads :data:`OPCODES` (or the lookup helpers below) instead of keeping its own
list of mnemonics. An entry is an :class:`OpSpec`: the opcode byte, the variant that
``off``/``imm`` select where the byte alone is ambiguous (``sdiv`` vs ``div``, ``movsx``
widths, ``END`` widths, atomic operations), the semantic kind, and the mnemonic of the
bpf_conformance assembler syntax.

Encoding facts follow RFC 9669 and Linux 6.18's ``include/uapi/linux/bpf.h``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


class Cls(IntEnum):
    """Instruction class: the low three bits of the opcode."""

    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07


class Src(IntEnum):
    """Operand source bit of ALU and JMP classes (``BPF_K`` immediate, ``BPF_X`` register)."""

    K = 0x00
    X = 0x08


class AluOp(IntEnum):
    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90
    XOR = 0xA0
    MOV = 0xB0
    ARSH = 0xC0
    END = 0xD0


class JmpOp(IntEnum):
    JA = 0x00
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0
    JCOND = 0xE0


class Size(IntEnum):
    W = 0x00
    H = 0x08
    B = 0x10
    DW = 0x18


SIZE_BYTES: dict[int, int] = {Size.W: 4, Size.H: 2, Size.B: 1, Size.DW: 8}
BYTES_SIZE: dict[int, int] = {v: k for k, v in SIZE_BYTES.items()}
SIZE_SUFFIX: dict[int, str] = {1: "b", 2: "h", 4: "w", 8: "dw"}


class Mode(IntEnum):
    IMM = 0x00
    ABS = 0x20
    IND = 0x40
    MEM = 0x60
    MEMSX = 0x80
    ATOMIC = 0xC0


#: kernel-internal LDX modes (``include/linux/filter.h``): loads that may fault
PROBE_MEM = 0x20
PROBE_MEMSX = 0x40
#: ``BPF_PROBE_MEM32``: an arena access (``PTR_TO_ARENA``) after ``convert_ctx_accesses``;
#: the address is the arena's kernel window base plus register plus offset
PROBE_MEM32 = 0xA0
PROBE_MEM32SX = 0xC0


class AtomicOp(IntEnum):
    """The ``imm`` of a ``BPF_ATOMIC`` instruction."""

    ADD = 0x00
    OR = 0x40
    AND = 0x50
    XOR = 0xA0
    FETCH_ADD = 0x01
    FETCH_OR = 0x41
    FETCH_AND = 0x51
    FETCH_XOR = 0xA1
    XCHG = 0xE1
    CMPXCHG = 0xF1
    LOAD_ACQ = 0x100
    STORE_REL = 0x110


BPF_FETCH = 0x01


class Pseudo(IntEnum):
    """``src_reg`` values of ``ld_imm64`` (``BPF_PSEUDO_*``)."""

    NONE = 0
    MAP_FD = 1
    MAP_VALUE = 2
    BTF_ID = 3
    FUNC = 4
    MAP_IDX = 5
    MAP_IDX_VALUE = 6


class CallKind(IntEnum):
    """``src_reg`` values of ``call``: helper, bpf-to-bpf (``BPF_PSEUDO_CALL``), kfunc."""

    HELPER = 0
    PSEUDO_CALL = 1
    KFUNC = 2


MAX_BPF_REG = 11  # r0..r10
BPF_REG_FP = 10
MAX_BPF_STACK = 512
MAX_CALL_FRAMES = 8


class Kind(Enum):
    """What an instruction does, independent of its encoding."""

    ALU = "alu"  # dst = dst <op> src/imm (incl. div/mod, shifts)
    SDIV = "sdiv"  # signed division (off == 1)
    SMOD = "smod"  # signed modulo (off == 1)
    NEG = "neg"
    MOV = "mov"
    MOVSX = "movsx"  # sign-extending move (off == 8/16/32)
    END = "end"  # to_le / to_be (ALU class)
    BSWAP = "bswap"  # unconditional byte swap (ALU64 class)
    LD_IMM64 = "ld_imm64"
    LD_ABS = "ld_abs"
    LD_IND = "ld_ind"
    LDX = "ldx"
    LDXSX = "ldxsx"
    ST = "st"
    STX = "stx"
    ATOMIC = "atomic"
    JA = "ja"
    JCOND = "jcond"  # may_goto
    JMP = "jmp"  # conditional jumps
    CALL = "call"
    CALLX = "callx"  # not accepted by Linux; used by the conformance suite
    EXIT = "exit"
    ADDR_SPACE_CAST = "addr_space_cast"  # arena pointer conversion (mov64 X, off == 1)


@dataclass(frozen=True)
class OpSpec:
    """One row of the opcode table.

    ``variant`` is the value of the field named by ``variant_field`` (``"off"`` or
    ``"imm"``) that selects this row when the opcode byte is shared by several rows;
    ``None`` when the opcode byte alone decides.
    """

    name: str
    code: int
    kind: Kind
    asm: str  # bpf_conformance mnemonic
    op: int = 0  # AluOp / JmpOp / AtomicOp
    is64: bool = True  # operates on 64-bit registers (ALU64/JMP/DW)
    src_reg: bool = False  # second operand is a register (BPF_X)
    size: int = 0  # memory access width in bytes; for END/BSWAP/MOVSX the bit width
    variant_field: str | None = None
    variant: int | None = None
    linux: bool = True  # False: Linux 6.18 rejects it ("unknown opcode"); conformance only
    #: ``BPF_PROBE_MEM``/``BPF_PROBE_MEMSX``: a load the verifier's rewrite made of one
    #: through a BTF pointer; an unreadable address yields 0 instead of a fault (the
    #: kernel's exception table). Never accepted from user space (``linux`` is False).
    probe: bool = False
    #: ``BPF_PROBE_MEM32`` (also ``probe``): relative to the program's arena window; a
    #: fault reads 0 and drops a store. Never accepted from user space (``linux`` is False).
    arena: bool = False

    @property
    def cls(self) -> int:
        return self.code & 0x07

    @property
    def mode(self) -> int:
        return self.code & 0xE0

    @property
    def is_jump(self) -> bool:
        return self.kind in (Kind.JA, Kind.JMP, Kind.JCOND)

    @property
    def is_wide(self) -> bool:
        """Takes two instruction slots (``ld_imm64``)."""
        return self.kind is Kind.LD_IMM64


_ALU_NAMES = {
    AluOp.ADD: "add",
    AluOp.SUB: "sub",
    AluOp.MUL: "mul",
    AluOp.DIV: "div",
    AluOp.OR: "or",
    AluOp.AND: "and",
    AluOp.LSH: "lsh",
    AluOp.RSH: "rsh",
    AluOp.MOD: "mod",
    AluOp.XOR: "xor",
    AluOp.ARSH: "arsh",
}

_JMP_NAMES = {
    JmpOp.JEQ: "jeq",
    JmpOp.JGT: "jgt",
    JmpOp.JGE: "jge",
    JmpOp.JSET: "jset",
    JmpOp.JNE: "jne",
    JmpOp.JSGT: "jsgt",
    JmpOp.JSGE: "jsge",
    JmpOp.JLT: "jlt",
    JmpOp.JLE: "jle",
    JmpOp.JSLT: "jslt",
    JmpOp.JSLE: "jsle",
}

_ATOMIC_NAMES = {
    AtomicOp.ADD: "add",
    AtomicOp.OR: "or",
    AtomicOp.AND: "and",
    AtomicOp.XOR: "xor",
    AtomicOp.FETCH_ADD: "fetch add",
    AtomicOp.FETCH_OR: "fetch or",
    AtomicOp.FETCH_AND: "fetch and",
    AtomicOp.FETCH_XOR: "fetch xor",
    AtomicOp.XCHG: "xchg",
    AtomicOp.CMPXCHG: "cmpxchg",
}


def _build() -> list[OpSpec]:
    specs: list[OpSpec] = []
    add = specs.append
    for cls, is64, sfx in ((Cls.ALU64, True, ""), (Cls.ALU, False, "32")):
        w = "64" if is64 else "32"
        for src, reg, tag in ((Src.K, False, "imm"), (Src.X, True, "reg")):
            for op, mn in _ALU_NAMES.items():
                code = cls | src | op
                if op in (AluOp.DIV, AluOp.MOD):
                    add(OpSpec(f"{mn}{w}_{tag}", code, Kind.ALU, mn + sfx, op, is64, reg,
                               variant_field="off", variant=0))
                    skind, smn = (Kind.SDIV, "sdiv") if op == AluOp.DIV else (Kind.SMOD, "smod")
                    add(OpSpec(f"{smn}{w}_{tag}", code, skind, smn + sfx, op, is64, reg,
                               variant_field="off", variant=1))
                else:
                    add(OpSpec(f"{mn}{w}_{tag}", code, Kind.ALU, mn + sfx, op, is64, reg))
            code = cls | src | AluOp.MOV
            add(OpSpec(f"mov{w}_{tag}", code, Kind.MOV, "mov" + sfx, AluOp.MOV, is64, reg,
                       variant_field="off", variant=0))
            if reg:
                widths = (8, 16, 32) if is64 else (8, 16)
                for bits in widths:
                    add(OpSpec(f"movsx{bits}{w}", code, Kind.MOVSX, f"movsx{bits}{w}",
                               AluOp.MOV, is64, True, bits, "off", bits))
                if is64:  # kernel-internal until an arena is attached (verifier/arena.py)
                    add(OpSpec("addr_space_cast", code, Kind.ADDR_SPACE_CAST, "addr_space_cast",
                               AluOp.MOV, True, True, 64, "off", 1, linux=False))
        add(OpSpec(f"neg{w}", cls | AluOp.NEG, Kind.NEG, "neg" + sfx, AluOp.NEG, is64))
    for bits in (16, 32, 64):
        add(OpSpec(f"le{bits}", Cls.ALU | Src.K | AluOp.END, Kind.END, f"le{bits}", AluOp.END,
                   False, False, bits, "imm", bits))
        add(OpSpec(f"be{bits}", Cls.ALU | Src.X | AluOp.END, Kind.END, f"be{bits}", AluOp.END,
                   False, True, bits, "imm", bits))
        add(OpSpec(f"bswap{bits}", Cls.ALU64 | Src.K | AluOp.END, Kind.BSWAP, f"bswap{bits}",
                   AluOp.END, True, False, bits, "imm", bits))

    add(OpSpec("lddw", Cls.LD | Mode.IMM | Size.DW, Kind.LD_IMM64, "lddw", size=8))
    for size, nbytes in ((Size.B, 1), (Size.H, 2), (Size.W, 4), (Size.DW, 8)):
        s = SIZE_SUFFIX[nbytes]
        if size != Size.DW:
            add(OpSpec(f"ldabs{s}", Cls.LD | Mode.ABS | size, Kind.LD_ABS, f"ldabs{s}", size=nbytes))
            add(OpSpec(f"ldind{s}", Cls.LD | Mode.IND | size, Kind.LD_IND, f"ldind{s}", size=nbytes))
            add(OpSpec(f"ldxs{s}", Cls.LDX | Mode.MEMSX | size, Kind.LDXSX, f"ldxs{s}",
                       size=nbytes))
        add(OpSpec(f"ldx{s}", Cls.LDX | Mode.MEM | size, Kind.LDX, f"ldx{s}", size=nbytes))
        add(OpSpec(f"probe_ldx{s}", Cls.LDX | PROBE_MEM | size, Kind.LDX, f"probe_ldx{s}",
                   size=nbytes, linux=False, probe=True))
        if size != Size.DW:
            add(OpSpec(f"probe_ldxs{s}", Cls.LDX | PROBE_MEMSX | size, Kind.LDXSX,
                       f"probe_ldxs{s}", size=nbytes, linux=False, probe=True))
        add(OpSpec(f"st{s}", Cls.ST | Mode.MEM | size, Kind.ST, f"st{s}", size=nbytes))
        add(OpSpec(f"stx{s}", Cls.STX | Mode.MEM | size, Kind.STX, f"stx{s}", size=nbytes))
        for cls, kind, mn in ((Cls.LDX, Kind.LDX, "ldx"), (Cls.ST, Kind.ST, "st"),
                              (Cls.STX, Kind.STX, "stx")):
            add(OpSpec(f"arena_{mn}{s}", cls | PROBE_MEM32 | size, kind, f"arena_{mn}{s}",
                       size=nbytes, linux=False, probe=True, arena=True))
        if size != Size.DW:  # BPF_PROBE_MEM32SX: a sign-extending load from an arena
            add(OpSpec(f"arena_ldxs{s}", Cls.LDX | PROBE_MEM32SX | size, Kind.LDXSX,
                       f"arena_ldxs{s}", size=nbytes, linux=False, probe=True, arena=True))
        if nbytes >= 4:
            sfx = "" if nbytes == 8 else "32"
            w = "64" if nbytes == 8 else "32"
            for aop, mn in _ATOMIC_NAMES.items():
                add(OpSpec(f"atomic{w}_{mn.replace(' ', '_')}", Cls.STX | Mode.ATOMIC | size,
                           Kind.ATOMIC, f"lock {mn}{sfx}", aop, nbytes == 8, True, nbytes,
                           "imm", aop))
        # Linux 6.15+: load-acquire / store-release, every width.
        add(OpSpec(f"load_acquire{nbytes * 8}", Cls.STX | Mode.ATOMIC | size, Kind.ATOMIC,
                   f"lock load_acquire{nbytes * 8}", AtomicOp.LOAD_ACQ, nbytes == 8, True,
                   nbytes, "imm", AtomicOp.LOAD_ACQ))
        add(OpSpec(f"store_release{nbytes * 8}", Cls.STX | Mode.ATOMIC | size, Kind.ATOMIC,
                   f"lock store_release{nbytes * 8}", AtomicOp.STORE_REL, nbytes == 8, True,
                   nbytes, "imm", AtomicOp.STORE_REL))

    for cls, is64, sfx in ((Cls.JMP, True, ""), (Cls.JMP32, False, "32")):
        w = "64" if is64 else "32"
        for src, reg, tag in ((Src.K, False, "imm"), (Src.X, True, "reg")):
            for jop, mn in _JMP_NAMES.items():
                add(OpSpec(f"{mn}{w}_{tag}", cls | src | jop, Kind.JMP, mn + sfx, jop, is64, reg))
    add(OpSpec("ja", Cls.JMP | JmpOp.JA, Kind.JA, "ja", JmpOp.JA))
    add(OpSpec("ja32", Cls.JMP32 | JmpOp.JA, Kind.JA, "ja32", JmpOp.JA, False))
    add(OpSpec("may_goto", Cls.JMP | JmpOp.JCOND, Kind.JCOND, "may_goto", JmpOp.JCOND))
    add(OpSpec("call", Cls.JMP | JmpOp.CALL, Kind.CALL, "call", JmpOp.CALL))
    # callx (``BPF_JMP | BPF_CALL | BPF_X``, 0x8d): the register holding the target is in
    # ``dst`` (bpf_conformance's assembler since its PR #202, GCC, and LLVM >= 19; LLVM <= 18
    # put the register number in ``imm``); ``src``, ``off`` and ``imm`` are zero. Its
    # conformance text is ``call %r2``. Linux 6.18 rejects it ("unknown opcode 8d").
    # For contrast, ``call local <target>`` is the plain 0x85 call with ``src = 1``
    # (BPF_PSEUDO_CALL) and ``imm = target - (pc + 1)``, the same encoding as the
    # kernel's bpf-to-bpf ``call pc+N``.
    add(OpSpec("callx", Cls.JMP | Src.X | JmpOp.CALL, Kind.CALLX, "callx", JmpOp.CALL,
               src_reg=True, linux=False))
    add(OpSpec("exit", Cls.JMP | JmpOp.EXIT, Kind.EXIT, "exit", JmpOp.EXIT))
    return specs


OPCODES: tuple[OpSpec, ...] = tuple(_build())
"""Every instruction pybpf knows, once."""

BY_NAME: dict[str, OpSpec] = {s.name: s for s in OPCODES}
BY_ASM: dict[str, OpSpec] = {}
for _s in OPCODES:
    BY_ASM.setdefault(_s.asm, _s)

_BY_CODE: dict[int, list[OpSpec]] = {}
for _s in OPCODES:
    _BY_CODE.setdefault(_s.code, []).append(_s)
_LOOKUP: dict[tuple[int, int | None], OpSpec] = {}
_VARIANT_FIELD: dict[int, str | None] = {}
for _code, _rows in _BY_CODE.items():
    _VARIANT_FIELD[_code] = _rows[0].variant_field
    for _s in _rows:
        assert _s.variant_field == _VARIANT_FIELD[_code], _s
        _LOOKUP[(_code, _s.variant)] = _s

assert len(BY_NAME) == len(OPCODES), "opcode names must be unique"


def known_code(code: int) -> bool:
    """Whether any row uses this opcode byte."""
    return code in _BY_CODE


def lookup(code: int, off: int = 0, imm: int = 0) -> OpSpec | None:
    """The row for an instruction, or ``None`` if pybpf does not know it.

    ``off`` and ``imm`` are the instruction's signed fields; they matter only where the
    opcode byte is shared (see :attr:`OpSpec.variant`).
    """
    field = _VARIANT_FIELD.get(code, "missing")
    if field == "missing":
        return None
    if field is None:
        return _LOOKUP.get((code, None))
    return _LOOKUP.get((code, off if field == "off" else imm))


def rows_for_code(code: int) -> list[OpSpec]:
    """All rows sharing one opcode byte (e.g. ``div``/``sdiv``)."""
    return list(_BY_CODE.get(code, ()))


# --- Kernel (``print_bpf_insn``) notation -------------------------------------------------
# The kernel's verifier log and ``bpftool prog dump xlated`` spell operations as C-like
# operators rather than mnemonics; the disassembler and assembler of the kernel syntax read
# these tables, keyed by the same enums as the rows above.

KERNEL_ALU_OPS: dict[int, str] = {
    AluOp.ADD: "+=",
    AluOp.SUB: "-=",
    AluOp.MUL: "*=",
    AluOp.DIV: "/=",
    AluOp.OR: "|=",
    AluOp.AND: "&=",
    AluOp.LSH: "<<=",
    AluOp.RSH: ">>=",
    AluOp.NEG: "neg",
    AluOp.MOD: "%=",
    AluOp.XOR: "^=",
    AluOp.MOV: "=",
    AluOp.ARSH: "s>>=",
    AluOp.END: "endian",
}
"""Operator of each ALU operation in the kernel syntax (``r1 += r2``)."""

KERNEL_SIGNED_ALU_OPS: dict[int, str] = {AluOp.DIV: "s/=", AluOp.MOD: "s%="}
"""Operator of the signed variants (``off == 1``) of DIV and MOD."""

KERNEL_JMP_OPS: dict[int, str] = {
    JmpOp.JA: "jmp",
    JmpOp.JEQ: "==",
    JmpOp.JGT: ">",
    JmpOp.JLT: "<",
    JmpOp.JGE: ">=",
    JmpOp.JLE: "<=",
    JmpOp.JSET: "&",
    JmpOp.JNE: "!=",
    JmpOp.JSGT: "s>",
    JmpOp.JSLT: "s<",
    JmpOp.JSGE: "s>=",
    JmpOp.JSLE: "s<=",
    JmpOp.CALL: "call",
    JmpOp.EXIT: "exit",
}
"""Comparison of each conditional jump in the kernel syntax (``if r1 > r2 goto pc+1``)."""

KERNEL_ATOMIC_OPS: dict[int, str] = {
    AtomicOp.ADD: "add",
    AtomicOp.AND: "and",
    AtomicOp.OR: "or",
    AtomicOp.XOR: "xor",
}
"""Name of the ALU part of an atomic read-modify-write (``atomic64_fetch_add``)."""

KERNEL_LDST_TYPES: dict[int, str] = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}
"""C type of a memory access of each width (``*(u32 *)(r1 +4)``)."""

KERNEL_LDSX_TYPES: dict[int, str] = {1: "s8", 2: "s16", 4: "s32"}
"""C type of a sign-extending load of each width (``*(s8 *)(r1 +0)``)."""

KERNEL_CLASS_NAMES: dict[int, str] = {
    Cls.LD: "ld",
    Cls.LDX: "ldx",
    Cls.ST: "st",
    Cls.STX: "stx",
    Cls.ALU: "alu",
    Cls.JMP: "jmp",
    Cls.JMP32: "jmp32",
    Cls.ALU64: "alu64",
}
"""Name of each class, printed by the kernel for encodings it has no format for."""

BPF_ADDR_SPACE_CAST = 1
"""``off`` of an ALU64 ``mov`` X that is an arena ``addr_space_cast`` (6.9+; needs an arena)."""

BPF_ADDR_PERCPU = -1
"""``off`` of the kernel-internal per-CPU address ``mov``; never accepted from user space."""

BPF_MAY_GOTO = 0
"""``src_reg`` of ``may_goto`` (the only ``BPF_JCOND`` condition)."""

BPF_MAX_SUBPROGS = 256
BPF_COMPLEXITY_LIMIT_INSNS = 1_000_000
BPF_MAXINSNS = 4096


def linux_accepts_code(code: int) -> bool:
    """Whether Linux 6.18 knows this opcode byte (``bpf_opcode_in_insntable``).

    Derived from the table: a byte is known when one of its rows is marked ``linux``.
    The kernel asks this per slot in ``resolve_pseudo_ldimm64``; a byte it does not know
    is rejected with ``unknown opcode %02x`` before verification starts.
    """
    return any(row.linux for row in _BY_CODE.get(code, ()))


def rows_by_asm() -> dict[str, list[OpSpec]]:
    """Rows grouped by conformance mnemonic (``add`` -> the imm and reg rows, …)."""
    out: dict[str, list[OpSpec]] = {}
    for spec in OPCODES:
        out.setdefault(spec.asm, []).append(spec)
    return out
