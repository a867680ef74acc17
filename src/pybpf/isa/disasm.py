"""Disassemblers: the kernel's ``print_bpf_insn`` syntax and the bpf_conformance syntax.

**Kernel syntax** is what Linux 6.18 prints in verifier logs and what ``bpftool prog dump
xlated`` shows: ``(b7) r0 = 42``, ``(61) r0 = *(u32 *)(r1 +4)``, ``(25) if r1 > 0x5 goto
pc+2``. Users compare pybpf's logs with the kernel's line by line, so the text is the
kernel's to the character: the opcode column, ``%+d`` offsets with a space before them,
decimal ALU immediates, hexadecimal jump immediates, and the kernel's own spelling of
encodings it has no format for (``BUG_ldx_21``, ``(06) jmp32``). It is printed from the
instruction's bit fields, as the kernel does, so that even a rejected instruction reads as
it would in the kernel's log.

Where the kernel's line leaves a field out, the printed form cannot be assembled back to
the same bytes; those cases are:

- ``ld_imm64`` with a pseudo ``src`` (map fd, map value, BTF id, function, map index): the
  kernel prints only the 64-bit value (``(18) r1 = 0x3``). Pass ``pseudo_imm64`` — e.g.
  :func:`bpftool_imm64` for ``map[id:3]`` / ``map[id:3][0]+8`` / ``subprog[+4]`` as bpftool
  prints them, or :func:`lossless_imm64`, which the assembler reads back exactly.
- a kfunc call's ``off`` (the module BTF fd index) and the register of ``callx`` (which
  Linux rejects anyway) are not printed;
- reserved fields of any instruction (they are zero in every valid instruction).

**Conformance syntax** is the assembler language of bpf_conformance / ubpf
(``mov %r0, 1``, ``ldxdw %r0, [%r10-8]``, ``jne %r1, 5, +3``, ``call local +4``). Its
mnemonics come from :attr:`OpSpec.asm`. An instruction the language cannot express (a
pseudo ``ld_imm64``, non-zero reserved fields, an unknown opcode) is written as a raw
``.insn code, dst, src, off, imm`` line, which :mod:`pybpf.isa.asm` reads back, so
``assemble(disasm_conformance(x)) == x`` for any slots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pybpf.isa.insn import Insn, imm64
from pybpf.isa.opcodes import (
    BPF_ADDR_PERCPU,
    BPF_ADDR_SPACE_CAST,
    BPF_MAY_GOTO,
    KERNEL_ALU_OPS,
    KERNEL_ATOMIC_OPS,
    KERNEL_CLASS_NAMES,
    KERNEL_JMP_OPS,
    KERNEL_LDST_TYPES,
    KERNEL_LDSX_TYPES,
    KERNEL_SIGNED_ALU_OPS,
    SIZE_BYTES,
    AluOp,
    AtomicOp,
    CallKind,
    Cls,
    JmpOp,
    Kind,
    Mode,
    OpSpec,
    Pseudo,
    Size,
    Src,
    lookup,
)

HelperName = Callable[[int], "str | None"]
"""Name of a helper id (``1`` -> ``"bpf_map_lookup_elem"``), or ``None`` if unknown."""

PseudoImm64 = Callable[[Insn, Insn, int], "str | None"]
"""Text of an ``ld_imm64`` operand from its two slots and 64-bit value; ``None`` = default."""

CallTarget = Callable[[Insn], "str | None"]
"""The kernel's ``cb_call``: name of a call the helper table does not name, or ``None``."""

_BPF_FETCH = 0x01

# ---------------------------------------------------------------------------------------
# Helper names
# ---------------------------------------------------------------------------------------

_helper_names: dict[int, str] | None = None


def default_helper_names() -> dict[int, str]:
    """Helper id -> ``bpf_<name>``, from ``pybpf.uapi.BpfFuncId`` when it is importable.

    Imported lazily so that the ISA layer does not depend on the generated uapi module
    being present; without it every helper prints as the kernel prints an unknown one
    (``call unknown#<id>``).
    """
    global _helper_names
    if _helper_names is None:
        names: dict[int, str] = {}
        try:
            from pybpf.uapi import BpfFuncId
        except ImportError:
            return names  # not cached: the module may appear later in this process
        for member in BpfFuncId:
            name = member.name
            if name.startswith("BPF_FUNC_"):
                name = name[len("BPF_FUNC_"):]
            if name.startswith("__") or name.upper() == "MAX_ID":
                continue
            names[int(member.value)] = "bpf_" + name
        _helper_names = names
    return _helper_names


# ---------------------------------------------------------------------------------------
# Kernel syntax
# ---------------------------------------------------------------------------------------


def _reg(is32: bool, n: int) -> str:
    return f"{'w' if is32 else 'r'}{n}"


def _mem(reg: int, off: int) -> str:
    return f"(r{reg} {off:+d})"


def _ldst(code: int) -> str:
    return KERNEL_LDST_TYPES[SIZE_BYTES[code & 0x18]]


def _kernel_alu(ins: Insn) -> str:
    """``print_bpf_insn`` for the ALU and ALU64 classes."""
    code = ins.code
    is32 = code & 0x07 == Cls.ALU
    op = code & 0xF0
    if op == AluOp.END:
        if not is32:
            return f"({code:02x}) r{ins.dst} = bswap{ins.imm} r{ins.dst}"
        kind = "be" if code & Src.X else "le"
        return f"({code:02x}) r{ins.dst} = {kind}{ins.imm} r{ins.dst}"
    d = _reg(is32, ins.dst)
    if op == AluOp.NEG:
        return f"({code:02x}) {d} = -{d}"
    if code == Cls.ALU64 | Src.X | AluOp.MOV:
        if ins.off == BPF_ADDR_SPACE_CAST:
            hi, lo = (ins.imm & 0xFFFFFFFF) >> 16, ins.imm & 0xFFFF
            return f"({code:02x}) r{ins.dst} = addr_space_cast(r{ins.src}, {hi}, {lo})"
        if ins.off == BPF_ADDR_PERCPU:
            return f"({code:02x}) r{ins.dst} = &(void __percpu *)(r{ins.src})"
    if op in KERNEL_SIGNED_ALU_OPS and ins.off == 1:
        sym = KERNEL_SIGNED_ALU_OPS[op]
    else:
        sym = KERNEL_ALU_OPS.get(op, "(null)")
    if code & Src.X:
        cast = ""
        if op == AluOp.MOV and ins.off in (8, 16, 32):
            cast = f"(s{ins.off})"
        return f"({code:02x}) {d} {sym} {cast}{_reg(is32, ins.src)}"
    return f"({code:02x}) {d} {sym} {ins.imm}"


def _kernel_atomic(ins: Insn) -> str:
    """``print_bpf_insn`` for ``BPF_STX | BPF_ATOMIC``."""
    code, imm = ins.code, ins.imm
    t = _ldst(code)
    mem = _mem(ins.dst, ins.off)
    w = "64" if code & 0x18 == Size.DW else ""
    if imm in KERNEL_ATOMIC_OPS:
        return f"({code:02x}) lock *({t} *){mem} {KERNEL_ALU_OPS[imm]} r{ins.src}"
    if imm & _BPF_FETCH and (imm & ~_BPF_FETCH) in KERNEL_ATOMIC_OPS:
        name = KERNEL_ATOMIC_OPS[imm & ~_BPF_FETCH]
        return f"({code:02x}) r{ins.src} = atomic{w}_fetch_{name}(({t} *){mem}, r{ins.src})"
    if imm == AtomicOp.CMPXCHG:
        return f"({code:02x}) r0 = atomic{w}_cmpxchg(({t} *){mem}, r0, r{ins.src})"
    if imm == AtomicOp.XCHG:
        return f"({code:02x}) r{ins.src} = atomic{w}_xchg(({t} *){mem}, r{ins.src})"
    if imm == AtomicOp.LOAD_ACQ:
        return f"({code:02x}) r{ins.dst} = load_acquire(({t} *){_mem(ins.src, ins.off)})"
    if imm == AtomicOp.STORE_REL:
        return f"({code:02x}) store_release(({t} *){mem}, r{ins.src})"
    return f"BUG_{code:02x}"


def _kernel_call(ins: Insn, helper_name: HelperName | None, call_target: CallTarget | None,
                 ) -> str:
    """``call``: the kernel names helpers first, then asks ``cb_call``, then falls back."""
    name: str | None = None
    if ins.src == CallKind.HELPER and ins.imm >= 0:
        name = (helper_name or default_helper_names().get)(ins.imm)
    if name is None and call_target is not None:
        name = call_target(ins)
    if name is None:
        if ins.src == CallKind.PSEUDO_CALL:
            name = f"{ins.imm:+d}"
        elif ins.src == CallKind.KFUNC:
            name = "kernel-function"
        else:
            name = "unknown"
    if ins.src == CallKind.PSEUDO_CALL:
        return f"({ins.code:02x}) call pc{name}"
    return f"({ins.code:02x}) call {name}#{ins.imm}"


def _kernel_jmp(ins: Insn, helper_name: HelperName | None, call_target: CallTarget | None,
                ) -> str:
    """``print_bpf_insn`` for the JMP and JMP32 classes."""
    code = ins.code
    op = code & 0xF0
    if op == JmpOp.CALL:
        return _kernel_call(ins, helper_name, call_target)
    if code == Cls.JMP | JmpOp.JA:
        return f"({code:02x}) goto pc{ins.off:+d}"
    if code == Cls.JMP | JmpOp.JCOND and ins.src == BPF_MAY_GOTO:
        return f"({code:02x}) may_goto pc{ins.off:+d}"
    if code == Cls.JMP32 | JmpOp.JA:
        return f"({code:02x}) gotol pc{ins.imm:+d}"
    if code == Cls.JMP | JmpOp.EXIT:
        return f"({code:02x}) exit"
    is32 = code & 0x07 == Cls.JMP32
    sym = KERNEL_JMP_OPS.get(op, "(null)")
    d = _reg(is32, ins.dst)
    if code & Src.X:
        return f"({code:02x}) if {d} {sym} {_reg(is32, ins.src)} goto pc{ins.off:+d}"
    return f"({code:02x}) if {d} {sym} 0x{ins.imm & 0xFFFFFFFF:x} goto pc{ins.off:+d}"


def _kernel_ld(insns: Sequence[Insn], i: int, pseudo_imm64: PseudoImm64 | None,
               allow_ptr_leaks: bool) -> str:
    """``print_bpf_insn`` for the LD class (packet loads and ``ld_imm64``)."""
    ins = insns[i]
    code = ins.code
    mode = code & 0xE0
    if mode == Mode.ABS:
        return f"({code:02x}) r0 = *({_ldst(code)} *)skb[{ins.imm}]"
    if mode == Mode.IND:
        return f"({code:02x}) r0 = *({_ldst(code)} *)skb[r{ins.src} + {ins.imm}]"
    if mode == Mode.IMM and code & 0x18 == Size.DW:
        second = insns[i + 1] if i + 1 < len(insns) else Insn(0)
        value = imm64(ins, second)
        if not allow_ptr_leaks and ins.src in _POINTER_PSEUDOS:
            value = 0
        text = pseudo_imm64(ins, second, value) if pseudo_imm64 is not None else None
        return f"({code:02x}) r{ins.dst} = {text if text is not None else hex(value)}"
    return f"BUG_ld_{code:02x}"


_POINTER_PSEUDOS = frozenset({Pseudo.MAP_FD, Pseudo.MAP_VALUE, Pseudo.MAP_IDX,
                              Pseudo.MAP_IDX_VALUE, Pseudo.BTF_ID})


def format_insn_kernel(insns: Sequence[Insn], i: int, *, helper_name: HelperName | None = None,
                       pseudo_imm64: PseudoImm64 | None = None,
                       call_target: CallTarget | None = None,
                       allow_ptr_leaks: bool = True) -> str:
    """One instruction as Linux 6.18's ``print_bpf_insn`` prints it (no index, no newline).

    ``insns`` is the whole program so that an ``ld_imm64`` can read its second slot.
    ``helper_name`` names helper ids (default: :func:`default_helper_names`);
    ``call_target`` plays the kernel's ``cb_call`` for calls the helper table does not name
    (bpf-to-bpf calls, kfuncs); ``pseudo_imm64`` plays ``cb_imm`` for ``ld_imm64``
    operands; ``allow_ptr_leaks=False`` zeroes pointer immediates as the kernel does for
    unprivileged logs.
    """
    ins = insns[i]
    cls = ins.code & 0x07
    code = ins.code
    if cls in (Cls.ALU, Cls.ALU64):
        return _kernel_alu(ins)
    if cls == Cls.STX:
        mode = code & 0xE0
        if mode == Mode.MEM:
            return f"({code:02x}) *({_ldst(code)} *){_mem(ins.dst, ins.off)} = r{ins.src}"
        if mode == Mode.ATOMIC:
            return _kernel_atomic(ins)
        return f"BUG_{code:02x}"
    if cls == Cls.ST:
        mode = code & 0xE0
        if mode == Mode.MEM:
            return f"({code:02x}) *({_ldst(code)} *){_mem(ins.dst, ins.off)} = {ins.imm}"
        if mode == 0xC0:  # BPF_NOSPEC: kernel-internal, printed for completeness
            return f"({code:02x}) nospec"
        return f"BUG_st_{code:02x}"
    if cls == Cls.LDX:
        mode = code & 0xE0
        if mode == Mode.MEM:
            t = _ldst(code)
        elif mode == Mode.MEMSX:
            t = KERNEL_LDSX_TYPES.get(SIZE_BYTES[code & 0x18], "(null)")
        else:
            return f"BUG_ldx_{code:02x}"
        return f"({code:02x}) r{ins.dst} = *({t} *){_mem(ins.src, ins.off)}"
    if cls == Cls.LD:
        return _kernel_ld(insns, i, pseudo_imm64, allow_ptr_leaks)
    if cls in (Cls.JMP, Cls.JMP32):
        return _kernel_jmp(ins, helper_name, call_target)
    return f"({code:02x}) {KERNEL_CLASS_NAMES[cls]}"  # pragma: no cover - all 8 handled


def disasm_kernel(insns: Sequence[Insn], *, helper_name: HelperName | None = None,
                  pseudo_imm64: PseudoImm64 | None = None,
                  call_target: CallTarget | None = None, allow_ptr_leaks: bool = True,
                  numbered: bool = False) -> list[str]:
    """The program in kernel syntax, one line per instruction (``ld_imm64`` = one line).

    ``numbered=True`` prefixes each line with its slot index as the verifier log does
    (``3: (b7) r0 = 0``), so jump offsets can be followed by eye.
    """
    out: list[str] = []
    i = 0
    n = len(insns)
    while i < n:
        text = format_insn_kernel(insns, i, helper_name=helper_name, pseudo_imm64=pseudo_imm64,
                                  call_target=call_target, allow_ptr_leaks=allow_ptr_leaks)
        out.append(f"{i}: {text}" if numbered else text)
        i += 2 if insns[i].code == _LD_IMM64 else 1
    return out


_LD_IMM64 = Cls.LD | Mode.IMM | Size.DW


def bpftool_imm64(first: Insn, second: Insn, value: int) -> str | None:
    """``ld_imm64`` operand as ``bpftool prog dump xlated`` prints it.

    bpftool shows map references by map id (the kernel's dump replaces the map pointer by
    the id, keeping ``src``): ``map[id:3]``, ``map[id:3][0]+8``, ``map[idx:2]+0``,
    ``subprog[+4]``; anything else is the plain value.
    """
    lo, hi = first.imm & 0xFFFFFFFF, second.imm & 0xFFFFFFFF
    if first.src == Pseudo.MAP_FD:
        return f"map[id:{lo}]"
    if first.src == Pseudo.MAP_VALUE:
        return f"map[id:{lo}][0]+{hi}"
    if first.src == Pseudo.MAP_IDX_VALUE:
        return f"map[idx:{lo}]+{hi}"
    if first.src == Pseudo.FUNC:
        return f"subprog[{first.imm:+d}]"
    return None


def lossless_imm64(first: Insn, second: Insn, value: int) -> str | None:
    """``ld_imm64`` operand that names every pseudo kind without losing a bit.

    Uses bpftool's spelling where bpftool's is exact, and ``pseudo[<src>]:0x<value>``
    elsewhere (BTF ids, map indexes, and the rare encodings with stray high words).
    :func:`pybpf.isa.asm.assemble` reads all of these forms back.
    """
    src = first.src
    if src == Pseudo.NONE:
        return None
    hi = second.imm & 0xFFFFFFFF
    if src in (Pseudo.MAP_VALUE, Pseudo.MAP_IDX_VALUE) or (
            src in (Pseudo.MAP_FD, Pseudo.FUNC) and hi == 0):
        return bpftool_imm64(first, second, value)
    return f"pseudo[{src}]:{value:#x}"


# ---------------------------------------------------------------------------------------
# Conformance syntax
# ---------------------------------------------------------------------------------------


def _cimm(v: int) -> str:
    """An immediate as bpf_conformance writes it: small or negative in decimal, else hex."""
    if -10 <= v <= 10 or (v < 0 and v != -0x80000000):
        return str(v)
    return f"0x{v & 0xFFFFFFFF:x}"


def _cmem(reg: int, off: int) -> str:
    return f"[%r{reg}]" if off == 0 else f"[%r{reg}{off:+d}]"


def _raw(ins: Insn) -> str:
    return f".insn 0x{ins.code:02x}, {ins.dst}, {ins.src}, {ins.off}, {ins.imm}"


def canonical(spec: OpSpec, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> Insn:
    """The slot of ``spec`` with the given operands and every other field as the row fixes it.

    Shared by the assembler (to build instructions) and the conformance disassembler (to
    detect slots whose extra fields its text would drop).
    """
    if spec.variant_field == "off":
        off = spec.variant if spec.variant is not None else off
    elif spec.variant_field == "imm":
        imm = spec.variant if spec.variant is not None else imm
    return Insn(spec.code, dst, src, off, imm)


def _conformance_text(spec: OpSpec, ins: Insn) -> tuple[str, Insn] | None:
    """Text of one single-slot instruction and the slot that text stands for."""
    k = spec.kind
    a = spec.asm
    d, s = ins.dst, ins.src
    if k in (Kind.ALU, Kind.SDIV, Kind.SMOD, Kind.MOV):
        if spec.src_reg:
            return f"{a} %r{d}, %r{s}", canonical(spec, d, s)
        return f"{a} %r{d}, {_cimm(ins.imm)}", canonical(spec, d, imm=ins.imm)
    if k in (Kind.NEG, Kind.END, Kind.BSWAP):
        return f"{a} %r{d}", canonical(spec, d)
    if k == Kind.MOVSX:
        return f"{a} %r{d}, %r{s}", canonical(spec, d, s)
    if k == Kind.LD_ABS:
        return f"{a} {_cimm(ins.imm)}", canonical(spec, imm=ins.imm)
    if k == Kind.LD_IND:
        return f"{a} %r{s}, {_cimm(ins.imm)}", canonical(spec, src=s, imm=ins.imm)
    if k in (Kind.LDX, Kind.LDXSX):
        return f"{a} %r{d}, {_cmem(s, ins.off)}", canonical(spec, d, s, ins.off)
    if k == Kind.ST:
        return (f"{a} {_cmem(d, ins.off)}, {_cimm(ins.imm)}",
                canonical(spec, d, off=ins.off, imm=ins.imm))
    if k == Kind.STX:
        return f"{a} {_cmem(d, ins.off)}, %r{s}", canonical(spec, d, s, ins.off)
    if k == Kind.ATOMIC:
        if spec.op == AtomicOp.LOAD_ACQ:
            return f"{a} %r{d}, {_cmem(s, ins.off)}", canonical(spec, d, s, ins.off)
        return f"{a} {_cmem(d, ins.off)}, %r{s}", canonical(spec, d, s, ins.off)
    if k == Kind.JA:
        if spec.is64:
            return f"{a} {ins.off:+d}", canonical(spec, off=ins.off)
        return f"{a} {ins.imm:+d}", canonical(spec, imm=ins.imm)
    if k == Kind.JCOND:
        return f"{a} {ins.off:+d}", canonical(spec, off=ins.off)
    if k == Kind.JMP:
        if spec.src_reg:
            return f"{a} %r{d}, %r{s}, {ins.off:+d}", canonical(spec, d, s, ins.off)
        return (f"{a} %r{d}, {_cimm(ins.imm)}, {ins.off:+d}",
                canonical(spec, d, off=ins.off, imm=ins.imm))
    if k == Kind.CALL:
        if s == CallKind.HELPER:
            return f"call {ins.imm}", canonical(spec, imm=ins.imm)
        if s == CallKind.PSEUDO_CALL:
            return f"call local {ins.imm:+d}", canonical(spec, src=s, imm=ins.imm)
        if s == CallKind.KFUNC:
            return f"call runtime {ins.imm}", canonical(spec, src=s, imm=ins.imm)
        return None
    if k == Kind.CALLX:
        return f"call %r{d}", canonical(spec, d)
    if k == Kind.EXIT:
        return "exit", canonical(spec)
    return None


def format_insn_conformance(insns: Sequence[Insn], i: int) -> str:
    """One instruction in bpf_conformance syntax (``.insn`` raw form where it has none)."""
    ins = insns[i]
    spec = lookup(ins.code, ins.off, ins.imm)
    if spec is None:
        return _raw(ins)
    if spec.kind == Kind.LD_IMM64:
        second = insns[i + 1] if i + 1 < len(insns) else None
        if (second is not None and ins.src == 0 and ins.off == 0 and second == Insn(0, imm=second.imm)):
            return f"lddw %r{ins.dst}, {imm64(ins, second):#x}"
        return _raw(ins)
    got = _conformance_text(spec, ins)
    if got is None or got[1] != ins:
        return _raw(ins)
    return got[0]


def disasm_conformance(insns: Sequence[Insn]) -> list[str]:
    """The program in bpf_conformance syntax, one line per instruction.

    A well-formed ``ld_imm64`` is one ``lddw`` line; any slot the syntax cannot express is
    an ``.insn`` line of its own, so the output always assembles back to the same slots.
    """
    out: list[str] = []
    i = 0
    n = len(insns)
    while i < n:
        line = format_insn_conformance(insns, i)
        out.append(line)
        i += 2 if line.startswith("lddw ") else 1
    return out
