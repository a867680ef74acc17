"""Helper calls ``do_misc_fixups`` replaces by their body (Linux 6.18, x86-64).

Three helpers are inlined for every program type when the program is JIT-ed (pybpf
programs always are: ``prog->jit_requested``), as the live kernel's xlated dump shows:

``bpf_jiffies64``
    ``r0 = &jiffies`` (``ld_imm64``), ``r0 = *(u64 *)(r0 +0)``.
``bpf_get_smp_processor_id`` (``verifier_inlines_helper_call``: x86-64, SMP, a JIT with
per-CPU instructions)
    ``r0 = (u32)&cpu_number`` (``BPF_MOV64_IMM``), the per-CPU mov
    ``r0 = &(void __percpu *)(r0)``, ``r0 = *(u32 *)(r0 +0)``.
``bpf_kptr_xchg`` (``bpf_jit_supports_ptr_xchg``)
    ``r0 = r2``, ``r0 = atomic64_xchg((u64 *)(r1 +0), r0)``.

The variables are :mod:`pybpf.runtime.kvars`'s; where ``cpu_number`` cannot be placed
below 2 GiB the call stays a call, as a kernel that does not inline it would leave it.
The ``bpf_get_func_*`` family is inlined for every ``BPF_PROG_TYPE_TRACING`` program
(:func:`inline_tracing_call`): below the ctx the trampoline keeps the traced function's
address (``ctx - 16``) and its argument count (``ctx - 8``; pybpf's trampolines build
the same frame, hooks/trampoline.py), so the helpers become loads from it. ``LSM``
programs keep the calls.
"""

from __future__ import annotations

from pybpf.isa.insn import Insn, ld_imm64

BPF_FUNC_get_smp_processor_id = 8
BPF_FUNC_jiffies64 = 118
BPF_FUNC_kptr_xchg = 194


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _gen_jiffies64() -> list[Insn] | None:
    from pybpf.runtime.kvars import jiffies_addr

    return [*ld_imm64(0, jiffies_addr(), 0), Insn(0x79, 0, 0, 0, 0)]


def _gen_smp_processor_id() -> list[Insn] | None:
    from pybpf.runtime.interpreter import BPF_ADDR_PERCPU
    from pybpf.runtime.kvars import cpu_number_addr

    addr = cpu_number_addr()
    if addr is None or addr >= 1 << 31:
        return None
    return [Insn(0xB7, 0, 0, 0, _s32(addr)),  # r0 = (u32)&cpu_number
            Insn(0xBF, 0, 0, BPF_ADDR_PERCPU, 0),  # r0 = this CPU's copy
            Insn(0x61, 0, 0, 0, 0)]  # r0 = *(u32 *)(r0 + 0)


def _gen_kptr_xchg() -> list[Insn] | None:
    return [Insn(0xBF, 0, 2, 0, 0),  # r0 = r2
            Insn(0xDB, 1, 0, 0, 0xE1)]  # r0 = atomic64_xchg((u64 *)(r1 + 0), r0)


#: helper id -> generator of its inline body (``None``: keep the call)
INLINE_HELPERS = {
    BPF_FUNC_jiffies64: _gen_jiffies64,
    BPF_FUNC_get_smp_processor_id: _gen_smp_processor_id,
    BPF_FUNC_kptr_xchg: _gen_kptr_xchg,
}


BPF_FUNC_get_func_ip = 173
BPF_FUNC_get_func_arg = 183
BPF_FUNC_get_func_ret = 184
BPF_FUNC_get_func_arg_cnt = 185
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_FEXIT, BPF_MODIFY_RETURN = 25, 26
EINVAL, EOPNOTSUPP = 22, 95
_LDX_DW, _STX_DW, _MOV_K, _LSH_K, _ADD_X, _JGE32_X, _JA = 0x79, 0x7B, 0xB7, 0x67, 0x0F, 0x3E, 0x05


def inline_tracing_call(ins: Insn, prog_type: int, eatype: int) -> list[Insn] | None:
    """``do_misc_fixups``' trampoline-frame bodies of the ``bpf_get_func_*`` helpers, for
    ``BPF_PROG_TYPE_TRACING`` programs (``None``: not one of them)."""
    if prog_type != BPF_PROG_TYPE_TRACING:
        return None
    nr_args = Insn(_LDX_DW, 0, 1, -8, 0)  # r0 = *(u64 *)(r1 - 8)
    if ins.imm == BPF_FUNC_get_func_arg:
        return [nr_args,
                Insn(_JGE32_X, 2, 0, 6, 0),  # if w2 >= w0 goto -EINVAL
                Insn(_LSH_K, 2, 0, 0, 3),  # r2 <<= 3
                Insn(_ADD_X, 2, 1, 0, 0),  # r2 += r1
                Insn(_LDX_DW, 0, 2, 0, 0),  # r0 = *(u64 *)(r2 + 0)
                Insn(_STX_DW, 3, 0, 0, 0),  # *(u64 *)(r3 + 0) = r0
                Insn(_MOV_K, 0, 0, 0, 0),
                Insn(_JA, 0, 0, 1, 0),
                Insn(_MOV_K, 0, 0, 0, -EINVAL)]
    if ins.imm == BPF_FUNC_get_func_ret:
        if eatype not in (BPF_TRACE_FEXIT, BPF_MODIFY_RETURN):
            return [Insn(_MOV_K, 0, 0, 0, -EOPNOTSUPP)]
        return [nr_args,
                Insn(_LSH_K, 0, 0, 0, 3),  # r0 <<= 3
                Insn(_ADD_X, 0, 1, 0, 0),  # r0 += r1: the return slot
                Insn(_LDX_DW, 3, 0, 0, 0),  # r3 = *(u64 *)(r0 + 0)
                Insn(_STX_DW, 2, 3, 0, 0),  # *(u64 *)(r2 + 0) = r3
                Insn(_MOV_K, 0, 0, 0, 0)]
    if ins.imm == BPF_FUNC_get_func_arg_cnt:
        return [nr_args]
    if ins.imm == BPF_FUNC_get_func_ip:
        return [Insn(_LDX_DW, 0, 1, -16, 0)]  # r0 = *(u64 *)(r1 - 16)
    return None


def inline_helper_call(ins: Insn, jit_requested: bool = True) -> list[Insn] | None:
    """The instructions replacing helper call ``ins``, or ``None`` to keep the call."""
    gen = INLINE_HELPERS.get(ins.imm)
    if gen is None or not jit_requested:
        return None
    return gen()
