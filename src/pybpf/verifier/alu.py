# mypy: disable-error-code="misc"
"""ALU instructions (``check_alu_op``, ``adjust_reg_min_max_vals``, ``adjust_ptr_min_max_vals``)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pybpf.isa.insn import Insn
from pybpf.isa.opcodes import AluOp
from pybpf.verifier import spectre
from pybpf.verifier import tnum as tn
from pybpf.verifier.cfg import VerifyError
from pybpf.verifier.log import tnum_str
from pybpf.verifier.regs import (
    BPF_ADD_CONST,
    BPF_ADD_CONST32,
    BPF_ADD_CONST64,
    PTR_MAYBE_NULL,
    PTR_UNTRUSTED,
    S32_MAX,
    S32_MIN,
    S64_MAX,
    S64_MIN,
    Reg,
    RegType,
    coerce_reg_to_size_sx,
    coerce_subreg_to_size_sx,
    mark_known,
    mark_reg32_known,
    mark_reg32_unbounded,
    mark_scalar_known,
    mark_unbounded,
    mark_unknown,
    reg_bounds_sync,
    reg_type_str,
    s32,
    zext_32_to_64,
)
from pybpf.verifier.scalar_alu import adjust_scalar, fork_candidate
from pybpf.verifier.tnum import U32, U64

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

BPF_MAX_VAR_OFF = 1 << 29
_ALU_STR = {0x00: "+=", 0x10: "-=", 0x20: "*=", 0x30: "/=", 0x40: "|=", 0x50: "&=", 0x60: "<<=",
            0x70: ">>=", 0x80: "neg", 0x90: "%=", 0xA0: "^=", 0xB0: "=", 0xC0: "s>>=", 0xD0: "endian"}

_PTR_ARITH_OK = {RegType.PTR_TO_CTX, RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_MAP_KEY,
                 RegType.PTR_TO_STACK, RegType.PTR_TO_PACKET_META, RegType.PTR_TO_PACKET,
                 RegType.PTR_TO_TP_BUFFER, RegType.PTR_TO_BTF_ID, RegType.PTR_TO_MEM,
                 RegType.PTR_TO_BUF, RegType.PTR_TO_FUNC, RegType.CONST_PTR_TO_DYNPTR}


def reg_width(r: Reg) -> int:
    return (r.var_off.value | r.var_off.mask).bit_length()


class AluMixin:
    _imm_regs: dict[int, Reg]  # see _imm_reg(); created on first use

    def check_alu_op(self: Verifier, ins: Insn) -> None:
        regs = self.regs
        op = ins.code & 0xF0
        cls = ins.code & 7
        is64 = cls == 7
        src_x = bool(ins.code & 0x08)
        if op == 0xD0 or op == 0x80:  # AluOp.END, AluOp.NEG (int literals: hot path)
            if op == AluOp.NEG:
                if src_x or ins.src != 0 or ins.off != 0 or ins.imm != 0:
                    self.fail(errno.EINVAL, "BPF_NEG uses reserved fields\n")
            elif (ins.src != 0 or ins.off != 0 or ins.imm not in (16, 32, 64)
                  or (is64 and src_x)):
                self.fail(errno.EINVAL, "BPF_END uses reserved fields\n")
            self.check_reg_arg(ins.dst, src=True)
            if not self.allow_ptr_leaks and regs[ins.dst].type != RegType.SCALAR_VALUE:
                self.fail(errno.EACCES, f"R{ins.dst} pointer arithmetic prohibited\n")
            # a scalar keeps its value for the computation (DST_OP_NO_MARK), anything else
            # becomes an unknown scalar
            self.check_reg_arg(ins.dst, src=False, mark=regs[ins.dst].type != RegType.SCALAR_VALUE)
            d = regs[ins.dst]
            if op == AluOp.NEG:
                if d.type == RegType.SCALAR_VALUE:
                    zero = Reg()
                    mark_scalar_known(zero, 0)
                    zero.precise = d.precise  # __mark_reg_known(dst, 0) keeps the mark
                    old = d.copy()
                    d.assign(zero)
                    adjust_scalar(AluOp.SUB, d, old, not is64)
                else:
                    mark_unknown(d)
            else:
                self._bswap(d, ins, is64)
            return
        if op == 0xB0:  # AluOp.MOV
            self._check_mov(ins, is64, src_x)
            return
        if op > 0xD0:  # AluOp.END
            self.fail(errno.EINVAL, f"invalid BPF_ALU opcode {op >> 4:x}\n")
        off = ins.off
        if src_x:
            if ins.imm != 0 or (off != 0 and (off != 1 or (op != 0x90 and op != 0x30))):
                self.fail(errno.EINVAL, "BPF_ALU uses reserved fields\n")
            self.check_reg_arg(ins.src, src=True)
        else:
            if ins.src != 0 or (off != 0 and (off != 1 or (op != 0x90 and op != 0x30))):
                self.fail(errno.EINVAL, "BPF_ALU uses reserved fields\n")
        self.check_reg_arg(ins.dst, src=True)
        if (op == 0x90 or op == 0x30) and not src_x and ins.imm == 0:  # MOD, DIV
            self.fail(errno.EINVAL, "div by zero\n")
        if (op == 0x60 or op == 0x70 or op == 0xC0) and not src_x:  # LSH, RSH, ARSH
            size = 64 if is64 else 32
            if ins.imm < 0 or ins.imm >= size:
                self.fail(errno.EINVAL, f"invalid shift {ins.imm}\n")
        self.check_reg_arg(ins.dst, src=False, mark=False)
        self._adjust_reg_min_max_vals(ins, is64, src_x)

    # -- endianness -----------------------------------------------------------------------
    def _bswap(self: Verifier, d: Reg, ins: Insn, is64: bool) -> None:
        """``scalar_byte_swap``: swaps (``bswap``, ``be`` on this little-endian host) move
        the known bits with the bytes; ``le`` only truncates. The result is a new value:
        it is linked to no other register."""
        if d.type != RegType.SCALAR_VALUE:
            mark_unknown(d)
            return
        size = ins.imm
        to_be = bool(ins.code & 0x08)
        d.id = 0
        if is64 or to_be:
            nbytes = size // 8
            def swap(v: int) -> int:
                return int.from_bytes((v & ((1 << size) - 1)).to_bytes(nbytes, "little"), "big")
            t = d.var_off
            d.var_off = tn.Tnum(swap(t.value), swap(t.mask))
            mark_unbounded(d)
            reg_bounds_sync(d)
            return
        if size == 64:
            return
        from pybpf.verifier.regs import coerce_reg_to_size
        coerce_reg_to_size(d, size // 8)

    # -- mov ------------------------------------------------------------------------------
    def _check_mov(self: Verifier, ins: Insn, is64: bool, src_x: bool) -> None:
        regs = self.regs
        if src_x:
            if not is64:
                if ins.off not in (0, 8, 16) or ins.imm:
                    self.fail(errno.EINVAL, "BPF_MOV uses reserved fields\n")
            elif ins.off == 1:  # BPF_ADDR_SPACE_CAST (verifier/arena.py)
                from pybpf.verifier import arena
                arena.check_addr_space_cast_fields(self, ins)
            elif ins.off not in (0, 8, 16, 32) or ins.imm:
                self.fail(errno.EINVAL, "BPF_MOV uses reserved fields\n")
            self.check_reg_arg(ins.src, src=True)
        elif ins.src != 0 or ins.off != 0:
            self.fail(errno.EINVAL, "BPF_MOV uses reserved fields\n")
        self.check_reg_arg(ins.dst, src=False, mark=False)
        d = regs[ins.dst]
        if src_x and is64 and ins.imm:  # addr_space_cast
            from pybpf.verifier import arena
            arena.mark_addr_space_cast(self, ins)
            return
        if src_x:
            s = regs[ins.src]
            if is64:
                if ins.off == 0:
                    self.assign_scalar_id_before_mov(s)
                    d.assign(s)
                elif s.type == RegType.SCALAR_VALUE:
                    no_sext = s.umax < (1 << (ins.off - 1))
                    if no_sext:
                        self.assign_scalar_id_before_mov(s)
                    d.assign(s)
                    if not no_sext:
                        d.id = 0
                    coerce_reg_to_size_sx(d, ins.off >> 3)
                elif s.is_pointer() and not self.allow_ptr_leaks:
                    self.fail(errno.EACCES, f"R{ins.src} sign-extension part of pointer\n")
                else:
                    mark_unknown(d)
            else:
                if s.is_pointer() and not self.allow_ptr_leaks:
                    self.fail(errno.EACCES, f"R{ins.src} partial copy of pointer\n")
                if s.type == RegType.SCALAR_VALUE:
                    if ins.off == 0:
                        is_u32 = reg_width(s) <= 32
                        if is_u32:
                            self.assign_scalar_id_before_mov(s)
                        d.assign(s)
                        if not is_u32:
                            d.id = 0
                    else:
                        no_sext = s.umax < (1 << (ins.off - 1))
                        if no_sext:
                            self.assign_scalar_id_before_mov(s)
                        d.assign(s)
                        if not no_sext:
                            d.id = 0
                        coerce_subreg_to_size_sx(d, ins.off >> 3)
                else:
                    mark_unknown(d)
                zext_32_to_64(d)
                reg_bounds_sync(d)
        else:
            mark_unknown(d)
            if is64:
                mark_known(d, ins.imm & U64)
            else:
                mark_known(d, ins.imm & U32)

    def assign_scalar_id_before_mov(self: Verifier, s: Reg) -> None:
        """``assign_scalar_id_before_mov``: the copy shares the source's id (a fresh one if
        it has none); a source already carrying a delta starts over, as deltas do not
        accumulate."""
        if s.type != RegType.SCALAR_VALUE:
            return
        if s.id & BPF_ADD_CONST:
            s.id = 0
            s.off = 0
        if not s.id and s.var_off.mask != 0:
            self.id_gen += 1
            s.id = self.id_gen

    # -- arithmetic -----------------------------------------------------------------------
    def _imm_reg(self: Verifier, value: int) -> Reg:
        """The constant scalar register for an immediate source operand, built once per
        value per verification: ``adjust_scalar`` only reads its source."""
        try:
            cache = self._imm_regs
        except AttributeError:
            cache = {}
            self._imm_regs = cache
        r = cache.get(value)
        if r is None:
            r = cache[value] = Reg()
            mark_scalar_known(r, value)
        return r

    def _adjust_reg_min_max_vals(self: Verifier, ins: Insn, is64: bool, src_x: bool) -> None:
        regs = self.regs
        op = ins.code & 0xF0
        d = regs[ins.dst]
        if d.type == RegType.PTR_TO_ARENA or (src_x and regs[ins.src].type == RegType.PTR_TO_ARENA):
            from pybpf.verifier import arena
            if arena.adjust_arena_alu(self, ins, is64):
                return
        ptr_reg = d if d.type != RegType.SCALAR_VALUE else None
        if src_x:
            s = regs[ins.src]
            if s.type != RegType.SCALAR_VALUE:
                if d.type != RegType.SCALAR_VALUE:
                    if op == AluOp.SUB and self.allow_ptr_leaks:
                        mark_unknown(d)
                        return
                    self.fail(errno.EACCES, f"R{ins.dst} pointer {_ALU_STR[op]} pointer prohibited\n")
                self.mark_chain_precision(ins.dst)  # scalar += pointer
                off_reg = d.copy()
                self._adjust_ptr(ins, s.copy(), off_reg, is64, ptr_is_dst=False)
                return
            if ptr_reg is not None:
                self.mark_chain_precision(ins.src)  # pointer += scalar
                self._adjust_ptr(ins, d.copy(), s, is64)
                return
            if d.precise:  # a precise result needs a precise operand
                self.mark_chain_precision(ins.src)
        elif ptr_reg is not None:
            s = Reg()
            mark_scalar_known(s, ins.imm & U64)
            self._adjust_ptr(ins, d.copy(), s, is64)
            return
        else:
            s = self._imm_reg(ins.imm & U64)
        if (op == 0x50 or op == 0x40) and s.var_off.mask == 0:  # AND, OR
            alu32 = fork_candidate(d)
            if alu32 is not None:
                other = self.push_stack(self.insn_idx, self.insn_idx)
                oreg = other.cur.regs[ins.dst]
                if alu32:
                    mark_reg32_known(oreg, 0)
                    mark_reg32_known(d, U32)
                else:
                    mark_known(oreg, 0)
                    mark_known(d, U64)
        if op in (AluOp.ADD, AluOp.SUB):  # sanitize_needed
            spectre.sanitize_val_alu(self, ins)
        dst_umax = d.umax
        # A register source is copied (it may be d itself); the immediate's Reg is ours.
        adjust_scalar(op, d, s.copy() if src_x else s, not is64)
        self._link_const_delta(ins, op, d, s, is64, src_x, dst_umax)

    def _link_const_delta(self: Verifier, ins: Insn, op: int, d: Reg, s: Reg, is64: bool,
                          src_x: bool, dst_umax: int) -> None:
        """``rX = rY; rX += c`` keeps rX linked to rY with the delta ``c`` in ``rX.off``
        (``BPF_ADD_CONST64``/``32`` in its id), so a branch on either refines both
        (sync_linked_regs); any other result breaks the link. One delta only, within s32;
        a 32-bit add links only a register whose upper half was already zero."""
        alu32 = not is64
        const = (s.var_off.mask & U32) == 0 if alu32 else s.var_off.mask == 0
        if self.bpf_capable and op in (AluOp.ADD, AluOp.SUB) and d.id and const \
                and not (src_x and ins.src == ins.dst):
            val = s.var_off.value & (U32 if alu32 else U64)
            off = val - (1 << 32) if alu32 and val >> 31 else (val - (1 << 64) if val >> 63 else val)
            ok = (alu32 and dst_umax <= U32) or (not alu32 and S32_MIN <= off <= S32_MAX)
            if op == AluOp.SUB:
                ok = ok and off != S32_MIN
                off = -off
            if ok and not d.id & BPF_ADD_CONST:
                d.id |= BPF_ADD_CONST32 if alu32 else BPF_ADD_CONST64
                d.off = off
                return
        d.id = 0
        d.off = 0

    def _check_reg_sane_offset(self: Verifier, r: Reg, ptype: int) -> None:
        known = r.var_off.mask == 0
        val = r.var_off.value
        sval = val - (1 << 64) if val >> 63 else val
        name = reg_type_str(ptype)
        if known and (sval >= BPF_MAX_VAR_OFF or sval <= -BPF_MAX_VAR_OFF):
            self.fail(errno.EINVAL, f"math between {name} pointer and {sval} is not allowed\n")
        if r.off >= BPF_MAX_VAR_OFF or r.off <= -BPF_MAX_VAR_OFF:
            self.fail(errno.EINVAL, f"{name} pointer offset {r.off} is not allowed\n")
        if r.smin == S64_MIN:
            self.fail(errno.EINVAL,
                      f"math between {name} pointer and register with unbounded min value is not allowed\n")
        if r.smin >= BPF_MAX_VAR_OFF or r.smin <= -BPF_MAX_VAR_OFF:
            self.fail(errno.EINVAL, f"value {r.smin} makes {name} pointer be out of bounds\n")

    def _adjust_ptr(self: Verifier, ins: Insn, ptr: Reg, off: Reg, is64: bool,
                    ptr_is_dst: bool = True) -> None:
        regs = self.regs
        dst = ins.dst
        d = regs[dst]
        op = ins.code & 0xF0
        known = off.var_off.mask == 0
        if (known and (off.smin != off.smax or off.umin != off.umax)) or off.smin > off.smax \
                or off.umin > off.umax:
            mark_unknown(d)
            return
        if not is64:
            if op == AluOp.SUB and self.allow_ptr_leaks:
                mark_unknown(d)
                return
            self.fail(errno.EACCES, f"R{dst} 32-bit pointer arithmetic prohibited\n")
        if ptr.type & PTR_MAYBE_NULL:
            self.fail(errno.EACCES, f"R{dst} pointer arithmetic on {reg_type_str(ptr.type)} prohibited, "
                                    "null-check it first\n")
        if ptr.base == RegType.PTR_TO_MEM and ptr.type & PTR_UNTRUSTED:
            return  # read through BPF_PROBE_MEM: its offsets are not tracked
        base = ptr.base
        ok = base in _PTR_ARITH_OK
        if not ok and base == RegType.PTR_TO_FLOW_KEYS and known:
            ok = True
        if not ok and base in (RegType.PTR_TO_FLOW_KEYS, RegType.CONST_PTR_TO_MAP) and known \
                and off.smin == 0 and op == AluOp.ADD:
            ok = True
        if not ok:
            self.fail(errno.EACCES, f"R{dst} pointer arithmetic on {reg_type_str(ptr.type)} prohibited\n")
        d.type = ptr.type
        d.id = ptr.id
        self._check_reg_sane_offset(off, ptr.type)
        self._check_reg_sane_offset(ptr, ptr.type)
        mark_reg32_unbounded(d)
        info = spectre.SanitizeInfo()
        if op in (AluOp.ADD, AluOp.SUB):  # sanitize_needed
            spectre.sanitize_ptr_alu(self, ins, ptr, off, info, ptr_is_dst, False)
        if op == AluOp.ADD:
            if known and -(1 << 31) <= ptr.off + off.smin < (1 << 31):
                d.assign(ptr)
                mark_reg32_unbounded(d)
                d.off = ptr.off + off.smin
            else:
                d.assign(ptr)
                mark_reg32_unbounded(d)
                a, b = ptr.smin + off.smin, ptr.smax + off.smax
                if a < S64_MIN or b > S64_MAX or a > S64_MAX or b < S64_MIN:
                    d.smin, d.smax = S64_MIN, S64_MAX
                else:
                    d.smin, d.smax = a, b
                a, b = ptr.umin + off.umin, ptr.umax + off.umax
                if a > U64 or b > U64:
                    d.umin, d.umax = 0, U64
                else:
                    d.umin, d.umax = a, b
                d.var_off = tn.add(ptr.var_off, off.var_off)
                if ptr.is_pkt_pointer():
                    self.id_gen += 1
                    d.id = self.id_gen
                    d.range = 0
        elif op == AluOp.SUB:
            if not ptr_is_dst:
                self.fail(errno.EACCES, f"R{dst} tried to subtract pointer from scalar\n")
            if ptr.type == RegType.PTR_TO_STACK:
                self.fail(errno.EACCES, f"R{dst} subtraction from stack pointer prohibited\n")
            if known and -(1 << 31) <= ptr.off - off.smin < (1 << 31):
                d.assign(ptr)
                mark_reg32_unbounded(d)
                d.off = ptr.off - off.smin
            else:
                d.assign(ptr)
                mark_reg32_unbounded(d)
                a, b = ptr.smin - off.smax, ptr.smax - off.smin
                if a < S64_MIN or b > S64_MAX or a > S64_MAX or b < S64_MIN:
                    d.smin, d.smax = S64_MIN, S64_MAX
                else:
                    d.smin, d.smax = a, b
                if ptr.umin < off.umax:
                    d.umin, d.umax = 0, U64
                else:
                    d.umin, d.umax = ptr.umin - off.umax, ptr.umax - off.umin
                d.var_off = tn.sub(ptr.var_off, off.var_off)
                if ptr.is_pkt_pointer():
                    self.id_gen += 1
                    d.id = self.id_gen
                    if off.smin < 0:
                        d.range = 0
        elif op in (AluOp.AND, AluOp.OR, AluOp.XOR):
            self.fail(errno.EACCES, f"R{dst} bitwise operator {_ALU_STR[op]} on pointer prohibited\n")
        else:
            self.fail(errno.EACCES, f"R{dst} pointer arithmetic with {_ALU_STR[op]} operator prohibited\n")
        self._check_reg_sane_offset(d, ptr.type)
        reg_bounds_sync(d)
        if not self.allow_ptr_leaks:
            self._sanitize_check_bounds(dst, d)
        if op in (AluOp.ADD, AluOp.SUB):
            spectre.sanitize_ptr_alu(self, ins, d, off, info, ptr_is_dst, True)

    # -- unprivileged (Spectre v1) restrictions ---------------------------------------------
    # sanitize_ptr_alu / sanitize_val_alu and the masking they record: verifier/spectre.py
    def _sanitize_check_bounds(self: Verifier, dst: int, d: Reg) -> None:
        """``sanitize_check_bounds``: without CAP_PERFMON a stack or map-value pointer must
        stay in bounds after the arithmetic, so its later uses can be masked."""
        if d.type == RegType.PTR_TO_STACK:
            off = s32(d.off + d.var_off.value)  # the kernel's int parameter
            if d.var_off.mask:
                self.fail(errno.EACCES, f"R{dst} variable stack access prohibited for !root, "
                                        f"var_off={tnum_str(d.var_off)} off={off}\n")
            if off >= 0 or off < -512:
                self.fail(errno.EACCES, f"R{dst} stack pointer arithmetic goes out of range, "
                                        f"prohibited for !root; off={off}\n")
        elif d.type == RegType.PTR_TO_MAP_VALUE and d.map_ptr is not None:
            try:  # check_map_access(dst, off, 1, ACCESS_HELPER), its own message logged first
                self.check_map_access(dst, d.off, 1, False, True)
            except VerifyError:
                self.fail(errno.EACCES, f"R{dst} pointer arithmetic of map value goes out of "
                                        "range, prohibited for !root\n")


def var_off_str(r: Reg) -> str:
    return tnum_str(r.var_off)


__all__ = ["AluMixin", "VerifyError"]
