# mypy: disable-error-code="misc"
"""Memory accesses: ``check_mem_access`` and everything it dispatches to.

Stack (slot types, spills and fills), ctx (the program type's ``is_valid_access``), map
values (bounds against ``value_size``, read-only/write-only maps), packets (range proven
by ``data_end`` comparisons), sockets and helper memory arguments — with the kernel's
messages and in the kernel's order of checks.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.isa.insn import Insn
from pybpf.verifier import dynptr, spectre
from pybpf.verifier.fastcall import check_fastcall_stack_contract
from pybpf.verifier.log import tnum_str
from pybpf.verifier.precision import stack_access_flags
from pybpf.verifier.regs import (
    MEM_RDONLY,
    PTR_MAYBE_NULL,
    PTR_UNTRUSTED,
    S64_MIN,
    Reg,
    RegType,
    base_type,
    coerce_reg_to_size,
    coerce_reg_to_size_sx,
    mark_known,
    mark_unknown,
    reg_type_str,
)
from pybpf.verifier.state import (
    STACK_DYNPTR,
    STACK_INVALID,
    STACK_IRQ_FLAG,
    STACK_ITER,
    STACK_MISC,
    STACK_SPILL,
    STACK_ZERO,
    FuncState,
    StackSlot,
)
from pybpf.verifier.tnum import U64

ENOTSUPP = 524
#: each map type's ``map_ops->map_btf_id``: the kernel struct a map pointer reads as
MAP_BTF_STRUCT = {
    1: "bpf_htab", 2: "bpf_array", 3: "bpf_array", 4: "bpf_array", 5: "bpf_htab",
    6: "bpf_array", 7: "bpf_stack_map", 8: "bpf_array", 9: "bpf_htab", 10: "bpf_htab",
    11: "lpm_trie", 12: "bpf_array", 13: "bpf_htab", 14: "bpf_dtab", 15: "bpf_stab",
    16: "bpf_cpu_map", 17: "xsk_map", 18: "bpf_shtab", 19: "bpf_cgroup_storage_map",
    20: "reuseport_array", 21: "bpf_cgroup_storage_map", 22: "bpf_queue_stack",
    23: "bpf_queue_stack", 24: "bpf_local_storage_map", 25: "bpf_dtab",
    26: "bpf_struct_ops_map", 27: "bpf_ringbuf_map", 28: "bpf_local_storage_map",
    29: "bpf_local_storage_map", 30: "bpf_bloom_filter", 31: "bpf_ringbuf_map",
    32: "bpf_local_storage_map", 33: "bpf_arena",
}

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

BPF_READ = 1
BPF_WRITE = 2
MAX_BPF_STACK = 512
BPF_MAX_VAR_OFF = 1 << 29
BPF_MAX_VAR_SIZ = 1 << 29
MAX_PACKET_OFF = 0xFFFF
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
SIZE_BYTES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}

_ALIGN_DESC: dict[int, str] = {
    RegType.PTR_TO_FLOW_KEYS: "flow keys ", RegType.PTR_TO_MAP_KEY: "key ",
    RegType.PTR_TO_MAP_VALUE: "value ", RegType.PTR_TO_CTX: "context ",
    RegType.PTR_TO_STACK: "stack ", RegType.PTR_TO_SOCKET: "sock ",
    RegType.PTR_TO_SOCK_COMMON: "sock_common ", RegType.PTR_TO_TCP_SOCK: "tcp_sock ",
    RegType.PTR_TO_XDP_SOCK: "xdp_sock ",
}

_SPILLABLE = {RegType.PTR_TO_MAP_VALUE, RegType.PTR_TO_STACK, RegType.PTR_TO_CTX,
              RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META, RegType.PTR_TO_PACKET_END,
              RegType.PTR_TO_FLOW_KEYS, RegType.CONST_PTR_TO_MAP, RegType.PTR_TO_SOCKET,
              RegType.PTR_TO_SOCK_COMMON, RegType.PTR_TO_TCP_SOCK, RegType.PTR_TO_XDP_SOCK,
              RegType.PTR_TO_BTF_ID, RegType.PTR_TO_BUF,
              RegType.PTR_TO_MEM, RegType.PTR_TO_FUNC, RegType.PTR_TO_MAP_KEY,
              RegType.PTR_TO_ARENA}  # not CONST_PTR_TO_DYNPTR: spilling one stores STACK_MISC

#: atomics x86's JIT cannot do on an arena (``bpf_jit_supports_insn``): and/or/xor with fetch
_ARENA_NO_JIT_ATOMICS = frozenset({0x51, 0x41, 0xA1})

_SK_TYPES = (RegType.PTR_TO_SOCKET, RegType.PTR_TO_SOCK_COMMON, RegType.PTR_TO_TCP_SOCK,
             RegType.PTR_TO_XDP_SOCK)


def _s(v: int) -> int:
    v &= U64
    return v - (1 << 64) if v >> 63 else v


class MemMixin:
    # -- alignment ------------------------------------------------------------------------
    def check_ptr_alignment(self: Verifier, reg: Reg, off: int, size: int, strict_once: bool) -> None:
        strict = self.strict_alignment or strict_once
        t = reg.type
        if t in (RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META):
            if not strict or size == 1:
                return
            from pybpf.verifier import tnum as tn
            v = tn.add(reg.var_off, tn.const(2 + reg.off + off))
            if not v.is_aligned(size):
                self.fail(errno.EACCES, f"misaligned packet access off 2+{tnum_str(reg.var_off)}+"
                                        f"{reg.off}+{off} size {size}\n")
            return
        if t == RegType.PTR_TO_ARENA:
            return
        desc = _ALIGN_DESC.get(t, "")
        if t == RegType.PTR_TO_STACK:
            strict = True
        if not strict or size == 1:
            return
        from pybpf.verifier import tnum as tn
        v = tn.add(reg.var_off, tn.const(reg.off + off))
        if not v.is_aligned(size):
            self.fail(errno.EACCES, f"misaligned {desc}access off {tnum_str(reg.var_off)}+{reg.off}+{off} "
                                    f"size {size}\n")

    # -- generic region checks ------------------------------------------------------------
    def _check_mem_access_range(self: Verifier, regno: int, off: int, size: int, mem_size: int,
                                zero_ok: bool) -> bool:
        size_ok = size > 0 or (size == 0 and zero_ok)
        if size_ok and off >= 0 and size <= mem_size and off <= mem_size - size:
            return True
        reg = self.regs[regno]
        b = reg.base
        if b == RegType.PTR_TO_MAP_KEY:
            self.verbose(f"invalid access to map key, key_size={mem_size} off={off} size={size}\n")
        elif b == RegType.PTR_TO_MAP_VALUE:
            self.verbose(f"invalid access to map value, value_size={mem_size} off={off} size={size}\n")
        elif b in (RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META, RegType.PTR_TO_PACKET_END):
            self.verbose(f"invalid access to packet, off={off} size={size}, "
                         f"R{regno}(id={reg.id},off={off},r={mem_size})\n")
        else:
            self.verbose(f"invalid access to memory, mem_size={mem_size} off={off} size={size}\n")
        return False

    def check_mem_region_access(self: Verifier, regno: int, off: int, size: int, mem_size: int,
                                zero_ok: bool) -> None:
        reg = self.regs[regno]
        if reg.smin < 0 and (reg.smin == S64_MIN or not (-(1 << 31) <= off + reg.smin < (1 << 31))
                             or reg.smin + off < 0):
            self.fail(errno.EACCES, f"R{regno} min value is negative, either use unsigned index or do a "
                                    "if (index >=0) check.\n")
        if not self._check_mem_access_range(regno, reg.smin + off, size, mem_size, zero_ok):
            self.fail(errno.EACCES, f"R{regno} min value is outside of the allowed memory range\n")
        if reg.umax >= BPF_MAX_VAR_OFF:
            self.fail(errno.EACCES, f"R{regno} unbounded memory access, make sure to bounds check any "
                                    "such access\n")
        if not self._check_mem_access_range(regno, reg.umax + off, size, mem_size, zero_ok):
            self.fail(errno.EACCES, f"R{regno} max value is outside of the allowed memory range\n")

    # -- maps -----------------------------------------------------------------------------
    def check_map_access_type(self: Verifier, regno: int, off: int, size: int, t: int) -> None:
        m = self.regs[regno].map_ptr
        flags = getattr(m, "map_flags", 0)
        if t == BPF_WRITE and flags & BPF_F_RDONLY_PROG:
            self.fail(errno.EACCES, f"write into map forbidden, value_size={m.value_size} off={off} "
                                    f"size={size}\n")
        if t == BPF_READ and flags & BPF_F_WRONLY_PROG:
            self.fail(errno.EACCES, f"read from map forbidden, value_size={m.value_size} off={off} "
                                    f"size={size}\n")

    def check_map_access(self: Verifier, regno: int, off: int, size: int, zero_ok: bool,
                         helper: bool) -> None:
        reg = self.regs[regno]
        m = reg.map_ptr
        self.check_mem_region_access(regno, off, size, m.value_size, zero_ok)
        rec = self.map_record(m)
        if rec is None:
            return
        lo = reg.smin + off
        hi = reg.umax + off + size
        for kind, foff, fsize in rec:
            if hi <= foff or lo >= foff + fsize:
                continue
            if kind == "spin_lock":
                self.fail(errno.EACCES, "bpf_spin_lock cannot be accessed directly by load/store\n")
            if kind in ("timer", "task_work", "wq", "res_spin_lock", "list_head", "rb_root"):  # btf_field_type_name
                self.fail(errno.EACCES, f"bpf_{kind} cannot be accessed directly by load/store\n")
            if kind.startswith(("kptr", "percpu_kptr")):
                name = "percpu_kptr" if kind == "percpu_kptr" else "kptr"  # btf_field_type_name
                if helper:
                    self.fail(errno.EACCES, f"{name} cannot be accessed indirectly by helper\n")
                if reg.var_off.mask != 0:
                    self.fail(errno.EACCES, f"{name} access cannot have variable offset\n")
                if off + reg.var_off.value != foff:
                    self.fail(errno.EACCES, f"{name} access misaligned expected={foff} off={off + reg.var_off.value}\n")
                if size != 8:
                    self.fail(errno.EACCES, f"{name} access size must be BPF_DW\n")

    def map_record(self, m: Any) -> list[tuple[str, int, int]] | None:
        return getattr(m, "btf_record", None)

    # -- packet ---------------------------------------------------------------------------
    def check_packet_access(self: Verifier, regno: int, off: int, size: int, zero_ok: bool) -> None:
        reg = self.regs[regno]
        if reg.smin < 0:
            self.fail(errno.EACCES, f"R{regno} min value is negative, either use unsigned index or do a "
                                    "if (index >=0) check.\n")
        ok = reg.range >= 0 and self._check_mem_access_range(regno, off, size, reg.range, zero_ok)
        if not ok:  # a range known to end beyond (or at) the packet end is EINVAL
            self.fail(errno.EACCES if reg.range >= 0 else errno.EINVAL,
                      f"R{regno} offset is outside of the packet\n")

    def may_access_direct_pkt_data(self: Verifier, t: int, meta: Any = None) -> bool:
        ops = self.prog_ops
        if ops is None or not getattr(ops, "pkt_read", False):
            return False
        if t == BPF_WRITE and not getattr(ops, "pkt_write", False):
            return False
        if meta is not None:
            return bool(meta.get("pkt_access"))
        return True

    # -- ctx ------------------------------------------------------------------------------
    def check_ptr_off_reg(self: Verifier, reg: Reg, regno: int, fixed_off_ok: bool = False) -> None:
        name = reg_type_str(reg.type)
        if reg.off < 0:
            self.fail(errno.EACCES, f"negative offset {name} ptr R{regno} off={reg.off} disallowed\n")
        if not fixed_off_ok and reg.off:
            self.fail(errno.EACCES, f"dereference of modified {name} ptr R{regno} off={reg.off} disallowed\n")
        if reg.var_off.mask != 0 or reg.var_off.value:
            self.fail(errno.EACCES, f"variable {name} access var_off={tnum_str(reg.var_off)} disallowed\n")

    def check_ctx_access(self: Verifier, off: int, size: int, t: int, ldsx: bool) -> dict[str, Any]:
        info: dict[str, Any] = {"reg_type": RegType.SCALAR_VALUE, "ctx_field_size": 0, "is_ldsx": ldsx}
        ops = self.prog_ops
        ok = False
        if ops is not None:
            ok = ops.is_valid_access(off, size, t == BPF_WRITE, self.prog_info, info)
        for line in info.pop("log", ()):  # btf_ctx_access's bpf_log lines
            self.verbose(line)
        if ok:
            self.aux[self.insn_idx]["ctx_field_size"] = info.get("ctx_field_size", 0)
            return info
        self.fail(errno.EACCES, f"invalid bpf_context access off={off} size={size}\n")
        raise AssertionError

    # -- stack ----------------------------------------------------------------------------
    def frame_of(self: Verifier, reg: Reg) -> FuncState:
        return self.state.frames[reg.frameno]

    def check_stack_access_within_bounds(self: Verifier, regno: int, off: int, size: int, t: int,
                                         helper: bool = False) -> None:
        reg = self.regs[regno]
        extra = " read from" if t == BPF_READ else " write to"
        if reg.var_off.mask == 0:
            min_off = _s(reg.var_off.value) + off
            max_off = min_off + size
        else:
            if reg.smax >= BPF_MAX_VAR_OFF or reg.smin <= -BPF_MAX_VAR_OFF:
                self.fail(errno.EACCES, f"invalid unbounded variable-offset{extra} stack R{regno}\n")
            min_off = reg.smin + off
            max_off = reg.smax + off + size
        err = 0
        # check_stack_slot_within_bounds: without CAP_PERFMON a read must stay within the
        # stack written so far
        min_valid = -MAX_BPF_STACK if t == BPF_WRITE or self.allow_uninit_stack else \
            -self.frame_of(reg).allocated_stack
        if min_off < min_valid or min_off > -1:
            err = errno.EACCES
        elif max_off > 0:  # out of the stack into non-negative offsets
            err = errno.EINVAL
        elif size < 0:
            err = errno.EFAULT
        if err:
            if reg.var_off.mask == 0:
                self.fail(err, f"invalid{extra} stack R{regno} off={off} size={size}\n")
            self.fail(err, f"invalid variable-offset{extra} stack R{regno} "
                           f"var_off={tnum_str(reg.var_off)} off={off} size={size}\n")
        self.frame_of(reg).grow_stack(-min_off)
        self.note_stack_depth(reg.frameno, -min_off)

    def check_stack_write(self: Verifier, regno: int, off: int, size: int, value_regno: int,
                          ins: Insn) -> None:
        reg = self.regs[regno]
        f = self.frame_of(reg)
        if reg.var_off.mask == 0:
            self._stack_write_fixed(f, off + _s(reg.var_off.value), size, value_regno, ins)
        else:
            self._stack_write_var(f, reg, off, size, value_regno, ins)

    def _stack_write_fixed(self: Verifier, f: FuncState, off: int, size: int, value_regno: int,
                           ins: Insn) -> None:
        check_fastcall_stack_contract(self, f.subprogno, off)
        slot = -off - 1
        spi = slot // 8
        st = f.stack[spi]
        if not self.allow_ptr_leaks and st.is_spill() and st.spilled is not None \
                and st.spilled.type != RegType.SCALAR_VALUE and size != 8:
            self.fail(errno.EACCES, "attempt to corrupt spilled pointer on stack\n")
        spectre.note_stack_write(self, st.types, size,
                                 self.regs[value_regno] if value_regno >= 0 else None)
        if st.types[0] == STACK_DYNPTR:  # writing into a dynptr destroys it (verifier/dynptr.py)
            dynptr.destroy_if_dynptr_stack_slot(self, f, spi)
        if off % 8 == 0 and size == 8:  # only a whole-slot write screens off earlier reads
            self.stack_live.mark_write(f.frameno, 1 << spi)
        self.log.scratched_stack |= 1 << spi
        vreg = self.regs[value_regno] if value_regno >= 0 else None
        is_st_mem = (ins.code & 7) == 2
        spilled = True  # a register spill: recorded for precision backtracking
        if vreg is not None and off % 8 == 0 and vreg.type == RegType.SCALAR_VALUE and self.bpf_capable:
            fits = (vreg.var_off.value | vreg.var_off.mask).bit_length() <= 8 * size
            if fits:
                self.assign_scalar_id_before_mov(vreg)
            self._save_register_state(st, vreg, size)
            if not fits and st.spilled is not None:
                st.spilled.id = 0
        elif vreg is None and off % 8 == 0 and is_st_mem and self.bpf_capable:
            tmp = Reg()
            mark_unknown(tmp)
            mark_known(tmp, ins.imm & U64)
            self._save_register_state(st, tmp, size)
        elif vreg is not None and vreg.type != RegType.SCALAR_VALUE and vreg.type != RegType.NOT_INIT \
                and base_type(vreg.type) in _SPILLABLE:
            if size != 8:
                self.fail(errno.EACCES, "invalid size of register spill\n")
            if f is not self.state.cur and vreg.type == RegType.PTR_TO_STACK:
                self.fail(errno.EINVAL, "cannot spill pointers to stack into stack frame of the caller\n")
            self._save_register_state(st, vreg, size)
        else:
            spilled = False
            typ = STACK_MISC
            if st.is_spill() or any(t == STACK_SPILL for t in st.types):
                st.types = [STACK_MISC if t == STACK_SPILL else t for t in st.types]
            if st.types[7] == STACK_ITER:  # a write into an iterator scrubs it (verifier/iters.py)
                st.types = [STACK_MISC if t == STACK_ITER else t for t in st.types]
                st.iter = None
            if st.types[7] == STACK_IRQ_FLAG:  # and an irq flag (verifier/irq_flags.py)
                st.types = [STACK_MISC if t == STACK_IRQ_FLAG else t for t in st.types]
                st.irq = None
            st.spilled = None
            if (vreg is not None and vreg.is_const() and vreg.var_off.value == 0) or \
                    (vreg is None and is_st_mem and ins.imm == 0):
                # STACK_ZERO is only right while the stored register stays a known zero
                self.mark_chain_precision(value_regno)
                typ = STACK_ZERO
            for i in range(size):
                st.types[(slot - i) % 8] = typ
        if spilled:
            self.push_insn_history(stack_access_flags(f.frameno, spi))

    def _save_register_state(self, st: StackSlot, reg: Reg, size: int) -> None:
        st.spilled = reg.copy()
        for i in range(8, 8 - size, -1):
            st.types[i - 1] = STACK_SPILL
        for i in range(8 - size, 0, -1):
            if st.types[i - 1] not in (STACK_ZERO, STACK_INVALID):
                st.types[i - 1] = STACK_MISC

    def _stack_write_var(self: Verifier, f: FuncState, reg: Reg, off: int, size: int,
                         value_regno: int, ins: Insn) -> None:
        min_off = reg.smin + off
        check_fastcall_stack_contract(self, f.subprogno, min_off)
        max_off = reg.smax + off + size
        vreg = self.regs[value_regno] if value_regno >= 0 else None
        zero = (vreg is not None and vreg.is_const() and vreg.var_off.value == 0) or \
            (vreg is None and (ins.code & 7) == 2 and ins.imm == 0)
        zero_used = False
        for i in range(min_off, max_off):
            dynptr.destroy_if_dynptr_stack_slot(self, f, (-i - 1) // 8)
        for i in range(min_off, max_off):
            slot = -i - 1
            spi = slot // 8
            st = f.stack[spi]
            self.log.scratched_stack |= 1 << spi
            b = slot % 8
            if zero and st.types[b] == STACK_SPILL and st.is_spill() and st.spilled is not None and \
                    st.spilled.type == RegType.SCALAR_VALUE and st.spilled.is_const() and \
                    st.spilled.var_off.value == 0:
                zero_used = True  # writing 0 over a spilled 0 keeps the spill
                continue
            if st.is_spill():
                st.types = [STACK_MISC if t == STACK_SPILL else t for t in st.types]
                st.spilled = None
            if not zero or st.types[b] != STACK_ZERO:
                if st.types[b] == STACK_INVALID and not self.allow_uninit_stack:
                    self.fail(errno.EACCES, f"uninit stack in range of var-offset write prohibited for "
                                            f"!root; insn {self.insn_idx}, off: {i}\n")
                st.types[b] = STACK_MISC
            else:
                zero_used = True
        if zero_used:
            self.mark_chain_precision(value_regno)

    def check_stack_read(self: Verifier, regno: int, off: int, size: int, dst_regno: int) -> None:
        reg = self.regs[regno]
        f = self.frame_of(reg)
        if reg.var_off.mask == 0:
            self._stack_read_fixed(f, off + _s(reg.var_off.value), size, dst_regno)
        else:
            self._stack_read_var(f, reg, off, size, dst_regno)

    def _stack_read_fixed(self: Verifier, f: FuncState, off: int, size: int, dst_regno: int) -> None:
        check_fastcall_stack_contract(self, f.subprogno, off)
        slot = -off - 1
        spi = slot // 8
        st = f.stack[spi]
        self.log.scratched_stack |= 1 << spi
        self.stack_live.mark_read(self.state, f.frameno, self.insn_idx, 1 << spi)
        regs = self.regs
        if st.is_spill() and st.spilled is not None:
            sreg = st.spilled
            spill_size = 1
            i = 7
            while i > 0 and st.types[i - 1] == STACK_SPILL:
                spill_size += 1
                i -= 1
            if size != 8 or spill_size != 8:
                if sreg.type != RegType.SCALAR_VALUE:
                    self.fail(errno.EACCES, "invalid size of register fill\n")
                if dst_regno < 0:
                    return
                if size <= spill_size and off % 8 == 0:
                    d = regs[dst_regno]
                    d.assign(sreg)
                    if (sreg.var_off.value | sreg.var_off.mask).bit_length() > size * 8:
                        d.id = 0
                else:
                    spill_cnt = zero_cnt = 0
                    for i in range(size):
                        t = st.types[(slot - i) % 8]
                        if t == STACK_SPILL:
                            spill_cnt += 1
                        elif t == STACK_ZERO:
                            zero_cnt += 1
                        elif t == STACK_MISC or (t == STACK_INVALID and self.allow_uninit_stack):
                            pass
                        else:
                            self.fail(errno.EACCES, f"invalid read from stack off {off}+{i} size {size}\n")
                    d = regs[dst_regno]
                    if spill_cnt == size and sreg.is_const() and sreg.var_off.value == 0:
                        mark_unknown(d)
                        mark_known(d, 0)
                    else:
                        if zero_cnt == size:
                            mark_unknown(d)
                            mark_known(d, 0)
                        else:
                            mark_unknown(d)
                        return  # not the spilled register's own state: nothing to backtrack
            elif dst_regno >= 0:
                regs[dst_regno].assign(sreg)
            elif sreg.is_pointer() and not self.allow_ptr_leaks:
                self.fail(errno.EACCES, f"leaking pointer from stack off {off}\n")
            self.push_insn_history(stack_access_flags(f.frameno, spi))
            return
        zero = 0
        for i in range(size):
            t = st.types[(slot - i) % 8]
            if t == STACK_MISC:
                continue
            if t == STACK_ZERO:
                zero += 1
                continue
            if t == STACK_INVALID and self.allow_uninit_stack:
                continue
            self.fail(errno.EACCES, f"invalid read from stack off {off}+{i} size {size}\n")
        if dst_regno >= 0:
            d = regs[dst_regno]
            mark_unknown(d)
            if zero == size:
                mark_known(d, 0)

    def _stack_read_var(self: Verifier, f: FuncState, reg: Reg, off: int, size: int,
                        dst_regno: int) -> None:
        min_off = reg.smin + off
        check_fastcall_stack_contract(self, f.subprogno, min_off)
        max_off = reg.smax + off
        zeros = True
        sl = self.stack_live
        for i in range(min_off, max_off + size):
            slot = -i - 1
            spi = slot // 8
            st = f.stack[spi]
            sl.mark_read(self.state, f.frameno, self.insn_idx, 1 << spi)
            t = st.types[slot % 8]
            if t == STACK_MISC:
                zeros = False
                continue
            if t == STACK_ZERO:
                continue
            if st.is_spill() and st.spilled is not None and st.spilled.type == RegType.SCALAR_VALUE:
                zeros = False  # mark_reg_stack_read: only STACK_ZERO bytes make a known zero
                continue
            if t == STACK_INVALID and self.allow_uninit_stack:
                zeros = False
                continue
            self.fail(errno.EACCES, f"invalid variable-offset read from stack R{self._cur_ptr_regno} "
                                    f"var_off={tnum_str(reg.var_off)} off={off} size={size}\n")
        for i in range(min_off, max_off + size):  # mark_reg_stack_read's scratch marks
            slot = -i - 1
            self.log.scratched_stack |= 1 << (slot // 8)
            if f.stack[slot // 8].types[slot % 8] != STACK_ZERO:
                break
        if dst_regno >= 0:
            d = self.regs[dst_regno]
            mark_unknown(d)
            if zeros:
                mark_known(d, 0)

    # -- the dispatcher -------------------------------------------------------------------
    def check_mem_access(self: Verifier, regno: int, off: int, size: int, t: int, value_regno: int,
                         strict_once: bool = False, ldsx: bool = False, ins: Insn | None = None) -> None:
        regs = self.regs
        reg = regs[regno]
        self._cur_ptr_regno = regno
        self.check_ptr_alignment(reg, off, size, strict_once)
        off += reg.off
        b = reg.base
        if ins is None:
            ins = self.insns[self.insn_idx]
        if reg.type == RegType.PTR_TO_MAP_KEY:
            if t == BPF_WRITE:
                self.fail(errno.EACCES, f"write to change key R{regno} not allowed\n")
            self.check_mem_region_access(regno, off, size, reg.map_ptr.key_size, False)
            if value_regno >= 0:
                mark_unknown(regs[value_regno])
        elif reg.type == RegType.PTR_TO_MAP_VALUE:
            self.check_ptr_leak(t, value_regno, "map")
            self.check_map_access_type(regno, off, size, t)
            self.check_map_access(regno, off, size, False, False)
            from pybpf.verifier import kptr
            field = kptr.find_field(self, reg.map_ptr, off + reg.var_off.value) \
                if reg.var_off.mask == 0 else None
            if field is not None:
                kptr.check_map_kptr_access(self, value_regno, field, ins)
            elif t == BPF_READ and value_regno >= 0:
                self._map_value_read(reg, off, size, value_regno)
        elif b == RegType.PTR_TO_MEM:
            rdonly = bool(reg.type & MEM_RDONLY)
            if t == BPF_WRITE and rdonly:
                self.fail(errno.EACCES, f"R{regno} cannot write into {reg_type_str(reg.type)}\n")
            if reg.type & PTR_MAYBE_NULL:
                self.fail(errno.EACCES, f"R{regno} invalid mem access '{reg_type_str(reg.type)}'\n")
            self.check_ptr_leak(t, value_regno, "mem")
            # untrusted read-only memory (a walked pointer to a non-struct) is read through
            # BPF_PROBE_MEM: no bounds to check
            if not (rdonly and reg.type & PTR_UNTRUSTED):
                self.check_mem_region_access(regno, off, size, reg.mem_size, False)
            if t == BPF_READ and value_regno >= 0:
                mark_unknown(regs[value_regno])
        elif reg.type == RegType.PTR_TO_CTX:
            self.check_ptr_leak(t, value_regno, "ctx")
            self.check_ptr_off_reg(reg, regno)
            info = self.check_ctx_access(off, size, t, ldsx)
            if t == BPF_READ and value_regno >= 0:
                d = regs[value_regno]
                rt = info.get("reg_type", RegType.SCALAR_VALUE)
                if rt == RegType.SCALAR_VALUE:
                    mark_unknown(d)
                    if "range" in info:
                        lo, hi = info["range"]
                        d.umin, d.umax, d.smin, d.smax = lo, hi, lo, hi
                        from pybpf.verifier.regs import reg_bounds_sync
                        reg_bounds_sync(d)
                else:
                    mark_unknown(d)
                    mark_known(d, 0)
                    d.type = rt
                    d.btf_name = info.get("btf_name", "")
                    if base_type(rt) == RegType.PTR_TO_BTF_ID and info.get("btf") is not None:
                        d.btf, d.btf_id = info["btf"], info["btf_id"]
                        d.ref_obj_id = info.get("ref_obj_id", 0)
                        from pybpf.verifier.btf_access import btf_type_name
                        d.btf_name = btf_type_name(d.btf, d.btf_id)
                    if rt & PTR_MAYBE_NULL:
                        self.id_gen += 1
                        d.id = self.id_gen
        elif reg.type == RegType.PTR_TO_STACK:
            self.check_stack_access_within_bounds(regno, off, size, t)
            self._stack_rw(regno, off, size, value_regno, t, ins)
        elif reg.type in (RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META):
            if t == BPF_WRITE and not self.may_access_direct_pkt_data(t):
                self.fail(errno.EACCES, "cannot write into packet\n")
            self.check_ptr_leak(t, value_regno, "packet")
            if t == BPF_WRITE:
                self.seen_direct_write = True  # the type's gen_prologue runs (tc: unclone)
            self.check_packet_access(regno, off, size, False)
            if t == BPF_READ and value_regno >= 0:
                mark_unknown(regs[value_regno])
        elif reg.type == RegType.PTR_TO_FLOW_KEYS:
            if t == BPF_WRITE and value_regno >= 0 and regs[value_regno].is_pointer() and not self.allow_ptr_leaks:
                self.fail(errno.EACCES, f"R{value_regno} leaks addr into flow keys\n")
            self.check_mem_region_access(regno, off, size, 56, False)
            if t == BPF_READ and value_regno >= 0:
                mark_unknown(regs[value_regno])
        elif reg.type in _SK_TYPES:
            if t == BPF_WRITE:
                self.fail(errno.EACCES, f"R{regno} cannot write into {reg_type_str(reg.type)}\n")
            self.check_sock_access(regno, off, size, t)
            if value_regno >= 0:
                mark_unknown(regs[value_regno])
        elif reg.type == RegType.PTR_TO_TP_BUFFER:
            if off < 0:
                self.fail(errno.EACCES, f"R{regno} invalid tracepoint buffer access: off={off}, size={size}\n")
            if reg.var_off.mask != 0 or reg.var_off.value:
                self.fail(errno.EACCES, f"R{regno} invalid variable buffer offset: off={off}, "
                                        f"var_off={tnum_str(reg.var_off)}\n")
            if t == BPF_READ and value_regno >= 0:
                mark_unknown(regs[value_regno])
        elif reg.type == RegType.CONST_PTR_TO_MAP:
            self.check_ptr_to_map_access(regno, off, size, t, value_regno)
        elif reg.type == RegType.PTR_TO_ARENA:  # no bounds: BPF_PROBE_MEM32 absorbs faults
            if t == BPF_READ and value_regno >= 0:
                mark_unknown(regs[value_regno])
        elif b == RegType.PTR_TO_BUF and not reg.type & PTR_MAYBE_NULL:
            self.check_buffer_access(regno, off, size, t, value_regno)
        elif b == RegType.PTR_TO_BTF_ID and not reg.type & PTR_MAYBE_NULL and reg.btf is not None:
            from pybpf.verifier.btf_access import check_ptr_to_btf_access
            check_ptr_to_btf_access(self, regno, off, size, t, value_regno)
        else:
            self.fail(errno.EACCES, f"R{regno} invalid mem access '{reg_type_str(reg.type)}'\n")
        if size < 8 and value_regno >= 0 and t == BPF_READ and regs[value_regno].type == RegType.SCALAR_VALUE:
            if ldsx:
                coerce_reg_to_size_sx(regs[value_regno], size)
            else:
                coerce_reg_to_size(regs[value_regno], size)

    def check_ptr_leak(self: Verifier, t: int, value_regno: int, where: str) -> None:
        """Without CAP_PERFMON (``allow_ptr_leaks``) a pointer may not be stored where the
        program's user could read it back: ``R%d leaks addr into map/mem/ctx/packet``."""
        if t == BPF_WRITE and value_regno >= 0 and not self.allow_ptr_leaks \
                and self.regs[value_regno].type != RegType.SCALAR_VALUE:
            self.fail(errno.EACCES, f"R{value_regno} leaks addr into {where}\n")

    def _stack_rw(self: Verifier, regno: int, off: int, size: int, value_regno: int, t: int,
                  ins: Insn) -> None:
        reg = self.regs[regno]
        f = self.frame_of(reg)
        if reg.var_off.mask == 0:
            aoff = off + _s(reg.var_off.value)
            if t == BPF_READ:
                self._stack_read_fixed(f, aoff, size, value_regno)
            else:
                self._stack_write_fixed(f, aoff, size, value_regno, ins)
        else:
            if t == BPF_READ:
                self._stack_read_var(f, reg, off, size, value_regno)
            else:
                self._stack_write_var(f, reg, off, size, value_regno, ins)

    def _map_value_read(self: Verifier, reg: Reg, off: int, size: int, value_regno: int) -> None:
        d = self.regs[value_regno]
        m = reg.map_ptr
        if reg.var_off.mask == 0 and getattr(m, "map_flags", 0) & BPF_F_RDONLY_PROG and \
                getattr(m, "frozen", False) and hasattr(m, "read_const"):
            try:
                val = m.read_const(off + reg.var_off.value, size)
            except Exception:
                mark_unknown(d)
                return
            mark_unknown(d)
            mark_known(d, val)
            return
        mark_unknown(d)

    def check_buffer_access(self: Verifier, regno: int, off: int, size: int, t: int,
                            value_regno: int) -> None:
        """PTR_TO_BUF (an iterator's key/value buffers): read-only ones refuse writes;
        the largest offset reached is recorded for the attach-time size check
        (``max_rdonly_access``/``max_rdwr_access`` of the program)."""
        reg = self.regs[regno]
        rdonly = bool(reg.type & MEM_RDONLY)
        if rdonly and t == BPF_WRITE:
            self.fail(errno.EACCES, f"R{regno} cannot write into {reg_type_str(reg.type)}\n")
        info = "rdonly" if rdonly else "rdwr"
        if off < 0:
            self.fail(errno.EACCES, f"R{regno} invalid {info} buffer access: off={off}, size={size}\n")
        if reg.var_off.mask != 0 or reg.var_off.value:
            self.fail(errno.EACCES, f"R{regno} invalid variable buffer offset: off={off}, "
                                    f"var_off={tnum_str(reg.var_off)}\n")
        aux = getattr(getattr(self.inp, "prog", None), "aux", None)
        if isinstance(aux, dict):
            key = "max_rdonly_access" if rdonly else "max_rdwr_access"
            aux[key] = max(aux.get(key, 0), off + size)
        if value_regno >= 0 and (rdonly or t == BPF_READ):
            mark_unknown(self.regs[value_regno])

    def check_ptr_to_map_access(self: Verifier, regno: int, off: int, size: int, t: int,
                                value_regno: int) -> None:
        """``check_ptr_to_map_access``: a map pointer reads as the map type's kernel struct
        (``map_btf_id``: ``struct bpf_array``, ``struct bpf_htab``, ...), through
        ``btf_struct_access`` of vmlinux BTF; writes are refused."""
        from pybpf.verifier.btf_access import (
            helper_btf_id,
            logged_struct_access,
            mark_btf_ld_reg,
            vmlinux_btf,
        )
        from pybpf.verifier.regs import Reg as _Reg

        reg = self.regs[regno]
        m = reg.map_ptr
        mt = getattr(m, "map_type", 0)
        tname = MAP_BTF_STRUCT.get(mt)
        btf = vmlinux_btf(self)
        tid = helper_btf_id(self, tname) if tname and btf is not None else 0
        if not tid:
            self.fail(ENOTSUPP, f"map_ptr access not supported for map type {mt}\n")
        if not self.allow_ptr_leaks:
            self.fail(errno.EPERM, f"'struct {tname}' access is allowed only to CAP_PERFMON and "
                                   "CAP_SYS_ADMIN\n")
        if off < 0:
            self.fail(errno.EACCES, f"R{regno} is {tname} invalid negative access: off={off}\n")
        if t != BPF_READ:
            self.fail(errno.EACCES, f"only read from {tname} is supported\n")
        map_reg = _Reg()
        mark_btf_ld_reg(self, map_reg, RegType.PTR_TO_BTF_ID, btf, tid, 0)
        ret, w = logged_struct_access(self, map_reg, off, size)
        if value_regno >= 0:
            mark_btf_ld_reg(self, self.regs[value_regno], ret, btf, w.next_btf_id, w.flag)

    def check_sock_access(self: Verifier, regno: int, off: int, size: int, t: int) -> None:
        reg = self.regs[regno]
        if reg.smin < 0:
            self.fail(errno.EACCES, f"R{regno} min value is negative, either use unsigned index or do a "
                                    "if (index >=0) check.\n")
        from pybpf.verifier import sock_access
        if not sock_access.is_valid(reg.type, off, size, t == BPF_WRITE):
            self.fail(errno.EACCES, f"R{regno} invalid {reg_type_str(reg.type)} access off={off} size={size}\n")

    # -- helper memory arguments ----------------------------------------------------------
    def check_helper_mem_access(self: Verifier, regno: int, size: int, t: int, zero_ok: bool,
                                meta: Any) -> None:
        reg = self.regs[regno]
        b = reg.base
        if b in (RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META):
            self.check_packet_access(regno, reg.off, size, zero_ok)
            return
        if b == RegType.PTR_TO_MAP_KEY:
            if t == BPF_WRITE:
                self.fail(errno.EACCES, f"R{regno} cannot write into {reg_type_str(reg.type)}\n")
            self.check_mem_region_access(regno, reg.off, size, reg.map_ptr.key_size, False)
            return
        if b == RegType.PTR_TO_MAP_VALUE:
            self.check_map_access_type(regno, reg.off, size, t)
            self.check_map_access(regno, reg.off, size, zero_ok, True)
            return
        if b == RegType.PTR_TO_MEM:
            if reg.type & MEM_RDONLY and t == BPF_WRITE:
                self.fail(errno.EACCES, f"R{regno} cannot write into {reg_type_str(reg.type)}\n")
            self.check_mem_region_access(regno, reg.off, size, reg.mem_size, zero_ok)
            return
        if b == RegType.PTR_TO_STACK:
            self.check_stack_range_initialized(regno, reg.off, size, zero_ok, t, meta)
            return
        if b == RegType.PTR_TO_BUF:
            return
        if b == RegType.PTR_TO_BTF_ID:
            return
        if zero_ok and size == 0 and reg.is_const() and reg.var_off.value == 0:
            return
        self.fail(errno.EACCES, f"R{regno} type={reg_type_str(reg.type)} expected=fp\n")

    def check_stack_range_initialized(self: Verifier, regno: int, off: int, size: int, zero_ok: bool,
                                      t: int, meta: Any) -> None:
        reg = self.regs[regno]
        f = self.frame_of(reg)
        if size == 0 and not zero_ok:
            self.fail(errno.EACCES, "invalid zero-sized read\n")
        clobber = t == BPF_WRITE
        self.check_stack_access_within_bounds(regno, off, size, t, helper=True)
        if reg.var_off.mask == 0:
            min_off = max_off = _s(reg.var_off.value) + off
        else:
            if meta is not None and meta.get("raw_mode"):
                meta = None
            min_off = reg.smin + off
            max_off = reg.smax + off
        if meta is not None and meta.get("raw_mode"):
            bad = dynptr.potential_dynptr_write(f, min_off, max_off + size)
            if bad is not None:  # the helper's write could clobber a dynptr
                self.fail(errno.EACCES, f"potential write to dynptr at off={bad} disallowed\n")
            meta["access_size"] = size
            meta["regno"] = regno
            return
        sl = self.stack_live
        for i in range(min_off, max_off + size):
            slot = -i - 1
            spi = slot // 8
            st = f.stack[spi]
            sl.mark_read(self.state, f.frameno, self.insn_idx, 1 << spi)
            b = slot % 8
            ty = st.types[b]
            if ty == STACK_MISC:
                continue
            if ty == STACK_ZERO or (ty == STACK_INVALID and self.allow_uninit_stack):
                if clobber:
                    st.types[b] = STACK_MISC
                continue
            if st.is_spill() and st.spilled is not None and \
                    (st.spilled.type == RegType.SCALAR_VALUE or self.allow_ptr_leaks):
                if clobber:
                    mark_unknown(st.spilled)
                    st.types = [STACK_MISC if x == STACK_SPILL else x for x in st.types]
                    st.spilled = None
                continue
            if reg.var_off.mask == 0:
                self.fail(errno.EACCES, f"invalid read from stack R{regno} off {min_off}+"
                                        f"{i - min_off} size {size}\n")
            self.fail(errno.EACCES, f"invalid read from stack R{regno} var_off "
                                    f"{tnum_str(reg.var_off)}+{i - min_off} size {size}\n")

    # -- load / store / atomic instructions -----------------------------------------------
    def check_load(self: Verifier, ins: Insn) -> None:
        self.check_reg_arg(ins.src, src=True)
        self.check_reg_arg(ins.dst, src=False, mark=False)
        src_type = self.regs[ins.src].type
        ldsx = (ins.code & 0xE0) == 0x80
        self.check_mem_access(ins.src, ins.off, SIZE_BYTES[ins.code & 0x18], BPF_READ, ins.dst,
                              ldsx=ldsx, ins=ins)
        self.save_aux_ptr_type(src_type, allow_trust_mismatch=True)

    def check_store(self: Verifier, ins: Insn) -> None:
        self.check_reg_arg(ins.src, src=True)
        self.check_reg_arg(ins.dst, src=True)
        dst_type = self.regs[ins.dst].type
        self.check_mem_access(ins.dst, ins.off, SIZE_BYTES[ins.code & 0x18], BPF_WRITE, ins.src, ins=ins)
        self.save_aux_ptr_type(dst_type)

    def check_st(self: Verifier, ins: Insn) -> None:
        self.check_reg_arg(ins.dst, src=True)
        dst_type = self.regs[ins.dst].type
        self.check_mem_access(ins.dst, ins.off, SIZE_BYTES[ins.code & 0x18], BPF_WRITE, -1, ins=ins)
        self.save_aux_ptr_type(dst_type)

    def check_atomic(self: Verifier, ins: Insn) -> None:
        imm = ins.imm
        if imm in (0x100, 0x110):  # load-acquire / store-release forms
            self.check_atomic_ldst(ins)
            return
        if imm not in (0x00, 0x01, 0x50, 0x51, 0x40, 0x41, 0xA0, 0xA1, 0xE1, 0xF1):
            self.fail(errno.EINVAL, f"BPF_ATOMIC uses invalid atomic opcode {imm & 0xFF:02x}\n")
        size = ins.code & 0x18
        if size not in (0x00, 0x18):
            self.fail(errno.EINVAL, "invalid atomic operand size\n")
        self.check_reg_arg(ins.src, src=True)
        self.check_reg_arg(ins.dst, src=True)
        if imm == 0xF1:
            self.check_reg_arg(0, src=True)
            self.check_ptr_leak(BPF_WRITE, 0, "mem")  # the value cmpxchg compares with
        self.check_ptr_leak(BPF_WRITE, ins.src, "mem")
        d = self.regs[ins.dst]
        if d.type == RegType.PTR_TO_CTX or d.is_pkt_pointer() or d.type == RegType.PTR_TO_FLOW_KEYS \
                or d.type in _SK_TYPES \
                or (d.type == RegType.PTR_TO_ARENA and imm in _ARENA_NO_JIT_ATOMICS):
            self.fail(errno.EACCES, f"BPF_ATOMIC stores into R{ins.dst} {reg_type_str(d.type)} is not allowed\n")
        load_reg = -1
        if imm & 0x01:
            load_reg = 0 if imm == 0xF1 else ins.src
            self.check_reg_arg(load_reg, src=False)
        nbytes = SIZE_BYTES[size]
        dst_type = d.type
        self.check_mem_access(ins.dst, ins.off, nbytes, BPF_READ, -1, strict_once=True, ins=ins)
        if load_reg >= 0:
            self.check_mem_access(ins.dst, ins.off, nbytes, BPF_READ, load_reg, strict_once=True, ins=ins)
        self.check_mem_access(ins.dst, ins.off, nbytes, BPF_WRITE, -1, strict_once=True, ins=ins)
        self.save_aux_ptr_type(dst_type)

    def check_atomic_ldst(self: Verifier, ins: Insn) -> None:
        self.fail(errno.EINVAL, f"BPF_ATOMIC uses invalid atomic opcode {ins.imm & 0xFF:02x}\n")

    def save_aux_ptr_type(self: Verifier, t: int, allow_trust_mismatch: bool = False) -> None:
        aux = self.aux[self.insn_idx]
        prev = aux.get("ptr_type")
        if prev is None:
            aux["ptr_type"] = t
            return
        if prev != t and (not _mismatch_ok(t) or not _mismatch_ok(prev)):
            if allow_trust_mismatch and _mem_or_btf_id(t) and _mem_or_btf_id(prev):
                # a load seeing a trusted pointer on one path and an untrusted one on
                # another: keep the weaker type, so the load becomes BPF_PROBE_MEM
                merged = RegType.PTR_TO_MEM if RegType.PTR_TO_MEM in (base_type(t), base_type(prev)) \
                    else RegType.PTR_TO_BTF_ID
                merged |= (t | prev) & (PTR_UNTRUSTED | MEM_RDONLY)
                aux["ptr_type"] = merged
                return
            self.fail(errno.EINVAL, "same insn cannot be used with different pointers\n")


def _mem_or_btf_id(t: int) -> bool:
    return base_type(t) in (RegType.PTR_TO_MEM, RegType.PTR_TO_BTF_ID)


def _mismatch_ok(t: int) -> bool:
    return base_type(t) not in (RegType.PTR_TO_CTX, RegType.PTR_TO_SOCKET, RegType.PTR_TO_SOCK_COMMON,
                                RegType.PTR_TO_TCP_SOCK, RegType.PTR_TO_XDP_SOCK, RegType.PTR_TO_BTF_ID,
                                RegType.PTR_TO_ARENA)
