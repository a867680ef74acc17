"""``convert_ctx_accesses``: rewrite ctx (and socket) field accesses onto internal objects.

A program addresses the *user-visible* context (``struct __sk_buff``, ``struct xdp_md``…),
which is an ABI, not where the data lives. After verification the kernel rewrites each
access the verifier recorded as a ctx access (``insn_aux_data.ptr_type``) into loads and
stores of the internal object (``struct sk_buff``, ``struct xdp_buff``…) through the
program type's ``convert_ctx_access``. pybpf does the same, so its xlated program reads
pybpf's internal objects and ``prog dump xlated`` shows what bpftool shows.

This module is the type-independent part, as in ``kernel/bpf/verifier.c``:

- the program type's prologue (``gen_prologue``, e.g. tc's unclone-before-direct-write);
- narrow loads: a 1/2-byte read of a 4-byte field becomes a full read, the converter
  rewrites that, then a shift and mask extract the bytes asked for;
- sign-extending ctx loads get a ``movsx`` after the conversion;
- socket pointers (``PTR_TO_SOCKET``…) use the converters registered in
  :data:`PTR_CONVERTERS`; BTF pointers become ``BPF_PROBE_MEM`` loads.

A program type takes part by defining ``convert_ctx_access(write, insn, prog)`` returning
``(insns, target_size)`` — or ``None`` when it has no conversion (the kernel's NULL op,
e.g. kprobe's ``pt_regs``, read in place).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pybpf.isa.insn import Insn
from pybpf.verifier.patch import PatchError, ProgPatcher
from pybpf.verifier.regs import MEM_ALLOC, MEM_RDONLY, PTR_UNTRUSTED, RegType

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

BPF_LDX, BPF_STX, BPF_ST = 0x01, 0x03, 0x02
BPF_ALU, BPF_ALU64 = 0x04, 0x07
BPF_MEM, BPF_MEMSX, BPF_ATOMIC = 0x60, 0x80, 0xC0
BPF_PROBE_MEM, BPF_PROBE_MEMSX, BPF_PROBE_MEM32, BPF_PROBE_ATOMIC = 0x20, 0x40, 0xA0, 0xE0
BPF_W, BPF_H, BPF_B, BPF_DW = 0x00, 0x08, 0x10, 0x18
BPF_RSH, BPF_AND, BPF_MOV = 0x70, 0x50, 0xB0
BPF_K, BPF_X = 0x00, 0x08
INSN_BUF_SIZE = 32  # the kernel's scratch buffer for one conversion
SIZE_BYTES = {BPF_W: 4, BPF_H: 2, BPF_B: 1, BPF_DW: 8}
BYTES_SIZE = {v: k for k, v in SIZE_BYTES.items()}
MACHINE_WORD = 8

#: ``(write, insn, prog) -> (insns, target_size)`` for pointer types that are not ctx.
Converter = Callable[[bool, Insn, Any], "tuple[list[Insn], int] | None"]
#: register base type -> converter (``bpf_sock_convert_ctx_access`` & co. register here)
PTR_CONVERTERS: dict[int, Converter] = {}


def register_ptr_converter(reg_type: int, fn: Converter) -> Converter:
    """Make ``fn`` rewrite accesses through pointers of ``reg_type`` (a ``RegType``)."""
    PTR_CONVERTERS[int(reg_type)] = fn
    return fn


def _load_ptr_converters() -> None:
    """Socket-pointer converters live with the socket code; import it if it is there."""
    import contextlib
    import importlib

    for name in ("pybpf.progs.sock_convert",):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _access_kind(ins: Insn) -> str | None:
    cls, mode = ins.code & 0x07, ins.code & 0xE0
    if cls == BPF_LDX and mode in (BPF_MEM, BPF_MEMSX):
        if mode == BPF_MEMSX and ins.code & 0x18 == BPF_DW:
            return None
        return "read"
    if cls in (BPF_STX, BPF_ST) and mode == BPF_MEM:
        return "write"
    if cls == BPF_STX and mode == BPF_ATOMIC and ins.code & 0x18 in (BPF_W, BPF_DW):
        return "atomic"
    return None


def ctx_off_adjust_machine(size: int) -> int:
    """``bpf_ctx_off_adjust_machine``: an 8-byte-multiple field is read a word at a time."""
    if size > MACHINE_WORD and size % MACHINE_WORD == 0:
        return MACHINE_WORD
    return size


def convert_ctx_accesses(v: Verifier, p: ProgPatcher) -> None:
    """Rewrite every ctx/socket access of ``p`` as ``convert_ctx_accesses`` does.

    Raises :class:`PatchError` with the kernel's message where the kernel fails.
    """
    if not PTR_CONVERTERS:
        _load_ptr_converters()
    ops = v.prog_ops
    # the object the type's is_valid_access saw, as the kernel passes one bpf_prog to both
    prog = getattr(v, "prog_info", None)
    convert = getattr(ops, "convert_ctx_access", None)
    gen_prologue = getattr(ops, "gen_prologue", None)
    direct_write = bool(getattr(v, "seen_direct_write", False))
    if gen_prologue is not None or direct_write:
        if gen_prologue is None:
            raise PatchError(errno.EINVAL, "bpf verifier is misconfigured\n")
        pro = list(gen_prologue(direct_write, prog) or [])
        if len(pro) >= INSN_BUF_SIZE:
            raise PatchError(errno.EINVAL, "bpf verifier is misconfigured\n")
        if pro:
            # the prologue runs first: the original first instruction follows it
            p.patch(0, [*pro, p.insns[0]])
            p.adjust_jmp_off(0, len(pro))

    i = 0
    while i < len(p.insns):
        ins = p.insns[i]
        kind = _access_kind(ins)
        aux = p.aux[i]
        ptr_type = aux.get("ptr_type")
        if kind is None or ptr_type is None:
            i += 1
            continue
        if kind == "atomic":
            if ptr_type & 0xFF == RegType.PTR_TO_ARENA:
                p.insns[i] = ins._replace(code=BPF_STX | BPF_PROBE_ATOMIC | (ins.code & 0x18))
            i += 1
            continue
        write = kind == "write"
        if write and (aux.get("nospec_result") or aux.get("sanitize_stack_spill")):
            p.patch(i, [ins, Insn(0xC2)])  # BPF_ST_NOSPEC after the spill
            i += 2
            continue
        base = ptr_type & 0xFF
        fn: Converter | None
        if ptr_type == RegType.PTR_TO_CTX:
            fn = convert
        elif ptr_type in (RegType.PTR_TO_SOCKET, RegType.PTR_TO_SOCK_COMMON,
                          RegType.PTR_TO_TCP_SOCK, RegType.PTR_TO_XDP_SOCK):
            fn = PTR_CONVERTERS.get(int(ptr_type))
        elif ptr_type in (RegType.PTR_TO_BTF_ID, RegType.PTR_TO_BTF_ID | PTR_UNTRUSTED,
                          RegType.PTR_TO_BTF_ID | MEM_ALLOC | PTR_UNTRUSTED,
                          RegType.PTR_TO_MEM | MEM_RDONLY | PTR_UNTRUSTED):
            if not write:
                mode = BPF_PROBE_MEM if ins.code & 0xE0 == BPF_MEM else BPF_PROBE_MEMSX
                p.insns[i] = ins._replace(code=BPF_LDX | mode | (ins.code & 0x18))
            i += 1
            continue
        elif base == RegType.PTR_TO_ARENA and ptr_type == RegType.PTR_TO_ARENA:
            # 6.18: sign-extending loads become BPF_PROBE_MEM32SX (0xc0), the rest PROBE_MEM32
            mode = 0xC0 if ins.code & 0xE0 == BPF_MEMSX else BPF_PROBE_MEM32
            p.insns[i] = ins._replace(code=(ins.code & 0x07) | mode | (ins.code & 0x18))
            i += 1
            continue
        else:
            fn = None
        if fn is None:
            i += 1
            continue
        new = _convert_one(fn, write, ins, aux, prog)
        if new is None:
            i += 1
            continue
        p.patch(i, new)
        i += len(new)


def _convert_one(fn: Converter, write: bool, ins: Insn, aux: dict[str, Any],
                 prog: Any) -> list[Insn] | None:
    ctx_field_size = int(aux.get("ctx_field_size", 0) or 0)
    size = SIZE_BYTES[ins.code & 0x18]
    mode = ins.code & 0xE0
    narrower = size < ctx_field_size
    size_default = ctx_off_adjust_machine(ctx_field_size)
    off = ins.off
    if narrower:
        if write:
            raise PatchError(errno.EINVAL, "bpf verifier narrow ctx access misconfigured\n")
        size_code = {4: BPF_W, 8: BPF_DW}.get(ctx_field_size, BPF_H)
        ins = ins._replace(off=off & ~(size_default - 1), code=BPF_LDX | BPF_MEM | size_code)
    res = fn(write, ins, prog)
    if res is None:
        return None
    buf, target_size = list(res[0]), int(res[1])
    if not buf or len(buf) >= INSN_BUF_SIZE or (ctx_field_size and not target_size):
        raise PatchError(errno.EINVAL, "bpf verifier is misconfigured\n")
    if narrower and size < target_size:
        shift = (off & (size_default - 1)) * 8
        if shift and len(buf) + 1 >= INSN_BUF_SIZE:
            raise PatchError(errno.EINVAL, "bpf verifier narrow ctx load misconfigured\n")
        mask = (1 << size * 8) - 1
        imm = mask if mask < 1 << 31 else mask - (1 << 32)
        if ctx_field_size <= 4:
            if shift:
                buf.append(Insn(BPF_ALU | BPF_RSH | BPF_K, ins.dst, 0, 0, shift))
        elif shift:
            buf.append(Insn(BPF_ALU64 | BPF_RSH | BPF_K, ins.dst, 0, 0, shift))
        buf.append(Insn(BPF_ALU | BPF_AND | BPF_K, ins.dst, 0, 0, imm))
    if mode == BPF_MEMSX:
        buf.append(Insn(BPF_ALU64 | BPF_MOV | BPF_X, ins.dst, ins.dst, size * 8, 0))
    return buf
