"""Helper calls ``do_misc_fixups`` replaces by their body (Linux 6.18, x86-64).

Two helpers are inlined for every program type when the program is JIT-ed (pybpf
programs always are: ``prog->jit_requested``), as the live kernel's xlated dump shows:

``bpf_jiffies64``
    ``r0 = &jiffies`` (``ld_imm64``), ``r0 = *(u64 *)(r0 +0)``.
``bpf_get_smp_processor_id`` (``verifier_inlines_helper_call``: x86-64, SMP, a JIT with
per-CPU instructions)
    ``r0 = (u32)&cpu_number`` (``BPF_MOV64_IMM``), the per-CPU mov
    ``r0 = &(void __percpu *)(r0)``, ``r0 = *(u32 *)(r0 +0)``.

The variables are :mod:`pybpf.runtime.kvars`'s; where ``cpu_number`` cannot be placed
below 2 GiB the call stays a call, as a kernel that does not inline it would leave it.
The ``bpf_get_func_*`` family is inlined by the kernel only for programs with a
trampoline (``BPF_PROG_TYPE_TRACING``: it reads ``nr_args`` at ``ctx - 8`` and the IP at
``ctx - 16``); pybpf's tracing context has no trampoline frame yet, so they stay calls.
"""

from __future__ import annotations

from pybpf.isa.insn import Insn, ld_imm64

BPF_FUNC_get_smp_processor_id = 8
BPF_FUNC_jiffies64 = 118


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


#: helper id -> generator of its inline body (``None``: keep the call)
INLINE_HELPERS = {
    BPF_FUNC_jiffies64: _gen_jiffies64,
    BPF_FUNC_get_smp_processor_id: _gen_smp_processor_id,
}


def inline_helper_call(ins: Insn, jit_requested: bool = True) -> list[Insn] | None:
    """The instructions replacing helper call ``ins``, or ``None`` to keep the call."""
    gen = INLINE_HELPERS.get(ins.imm)
    if gen is None or not jit_requested:
        return None
    return gen()
