"""``bpf_fastcall``: spills and fills around calls that clobber few registers.

Clang compiles a call to a ``bpf_fastcall`` function as if it kept r0–r5 alive, wrapping it
in spills and fills of the registers the program still needs::

    *(u64 *)(r10 - 16) = r1        ; a spill per live register, offsets descending
    *(u64 *)(r10 - 8) = r2
    call bpf_get_smp_processor_id
    r2 = *(u64 *)(r10 - 8)
    r1 = *(u64 *)(r10 - 16)

Linux 6.18 (``mark_fastcall_patterns``, before verification) marks such patterns around the
calls it inlines so that they clobber only R0 and their arguments: the helper
``bpf_get_smp_processor_id`` and the kfuncs ``bpf_cast_to_kern_ctx`` / ``bpf_rdonly_cast``.
The spill slots must sit at the bottom of the subprog's stack (below every other spill)
and be touched by nothing else (``check_fastcall_stack_contract``, during verification:
any other access there cancels the rewrite for the subprog). After verification
(``remove_fastcall_spills_fills``) the spills and fills become NOPs — removed from the
xlated program with the other NOPs — and the subprog's stack depth shrinks to what lies
above the fastcall slots, before the combined stack depth is checked. Patterns around
calls that are not inlined are kept, and keep the subprog's whole stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pybpf.isa.insn import Insn

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

STX_DW, LDX_DW, CALL = 0x7B, 0x79, 0x85
BPF_PSEUDO_KFUNC_CALL = 2
ALL_CALLER_SAVED = 0x3F  # r0-r5
S16_MIN = -(1 << 15)
NOP = Insn(0x05, 0, 0, 0, 0)
#: helpers whose calls the verifier (x86-64) replaces by code that honours the contract
INLINED_FASTCALL_HELPERS = frozenset({8})  # bpf_get_smp_processor_id
FASTCALL_KFUNCS = frozenset({"bpf_cast_to_kern_ctx", "bpf_rdonly_cast"})


def _helper_clobbers(v: Verifier, ins: Insn) -> tuple[int, bool]:
    """(registers the call may clobber, whether it is inlined) of a helper call."""
    fn = v.get_helper_proto(ins.imm)
    if fn is None:
        return ALL_CALLER_SAVED, False
    from pybpf.helpers.proto import ArgType, RetType

    mask = 0 if int(fn.ret_type) & 0xFF == int(RetType.RET_VOID) else 1
    for i, at in enumerate(fn.arg_types[:5]):
        if at != ArgType.ARG_DONTCARE:
            mask |= 1 << (i + 1)
    return mask, ins.imm in INLINED_FASTCALL_HELPERS


def _kfunc_clobbers(v: Verifier, ins: Insn) -> tuple[int, bool]:
    from pybpf.btf.raw import BtfFunc, BtfFuncProto
    from pybpf.verifier.btf_access import vmlinux_btf

    btf = vmlinux_btf(v)
    if btf is None or ins.off or not 0 < ins.imm < len(btf.types):
        return ALL_CALLER_SAVED, False
    func = btf.types[ins.imm]
    proto = btf.types[func.type] if isinstance(func, BtfFunc) else None
    if not isinstance(proto, BtfFuncProto):
        return ALL_CALLER_SAVED, False
    mask = 1 if proto.type else 0
    for i in range(len(proto.params)):
        mask |= 1 << (i + 1)
    return mask, func.name in FASTCALL_KFUNCS


def jump_targets(insns: list[Insn]) -> set[int]:
    """``insn_aux_data[].jump_target``: where a branch, a jump, or a call of a subprog or
    callback lands (not the instruction after a call)."""
    out: set[int] = set()
    for i, ins in enumerate(insns):
        cls, op = ins.code & 7, ins.code & 0xF0
        if ins.code == 0x18 and ins.src == 4:  # ld_imm64 of a callback
            out.add(i + ins.imm + 1)
        elif cls in (5, 6) and op == 0x80:
            if ins.src == 1:
                out.add(i + ins.imm + 1)
        elif cls in (5, 6) and op != 0x90:
            out.add(i + (ins.imm if cls == 6 and op == 0x00 else ins.off) + 1)
    return out


def _mark_call(v: Verifier, sub: Any, idx: int, lowest_off: int, targets: set[int]) -> None:
    """``mark_fastcall_pattern_for_call``."""
    insns = v.insns
    call = insns[idx]
    if call.src == 0:
        clobbered, inlined = _helper_clobbers(v, call)
    elif call.src == BPF_PSEUDO_KFUNC_CALL:
        clobbered, inlined = _kfunc_clobbers(v, call)
    else:
        return
    if clobbered == ALL_CALLER_SAVED:
        return
    expected = ~clobbered & ALL_CALLER_SAVED
    i, off = 1, lowest_off
    while i <= 6:
        if idx - i < 0 or idx + i >= len(insns):
            break
        if idx - i + 1 in targets or idx + i in targets:
            break
        stx, ldx = insns[idx - i], insns[idx + i]
        if stx.code != STX_DW or ldx.code != LDX_DW or stx.dst != 10 or ldx.src != 10:
            break
        if stx.src != ldx.dst or not (1 << stx.src) & expected:
            break
        if stx.off != off or ldx.off != off:
            break
        expected &= ~(1 << stx.src)
        v.aux[idx - i]["fastcall_pattern"] = True
        v.aux[idx + i]["fastcall_pattern"] = True
        i += 1
        off += 8
    if i == 1:
        return
    if inlined:
        v.aux[idx]["fastcall_spills_num"] = i - 1
    else:
        sub.keep_fastcall_stack = True
    sub.fastcall_stack_off = min(sub.fastcall_stack_off, off)


def mark_fastcall_patterns(v: Verifier) -> None:
    """Find the patterns of every subprog, below its lowest other spill."""
    subs = v.cfg.subprogs
    insns = v.insns
    targets = jump_targets(insns)
    for s, sub in enumerate(subs):
        end = subs[s + 1].start if s + 1 < len(subs) else len(insns)
        sub.fastcall_stack_off, sub.keep_fastcall_stack = 0, False
        lowest = min((ins.off for ins in insns[sub.start:end] if ins.code == STX_DW and ins.dst == 10),
                     default=0)
        for i in range(sub.start, end):
            if insns[i].code == CALL:
                _mark_call(v, sub, i, lowest, targets)


def check_fastcall_stack_contract(v: Verifier, subprogno: int, off: int) -> None:
    """A stack access at ``off`` in the fastcall area by anything but a pattern's spill or
    fill cancels the subprog's rewrites."""
    subs = v.cfg.subprogs
    sub = subs[subprogno]
    if sub.fastcall_stack_off <= off or v.aux[v.insn_idx].get("fastcall_pattern"):
        return
    sub.fastcall_stack_off = S16_MIN
    end = subs[subprogno + 1].start if subprogno + 1 < len(subs) else len(v.insns)
    for i in range(sub.start, end):
        v.aux[i].pop("fastcall_spills_num", None)
        v.aux[i].pop("fastcall_pattern", None)


def remove_fastcall_spills_fills(v: Verifier) -> None:
    """Turn the spills and fills of inlined calls into NOPs; a subprog whose patterns all
    went keeps only the stack above them."""
    subs = v.cfg.subprogs
    for s, sub in enumerate(subs):
        end = subs[s + 1].start if s + 1 < len(subs) else len(v.insns)
        modified = False
        for i in range(sub.start, end):
            n = v.aux[i].get("fastcall_spills_num", 0)
            for j in range(1, n + 1):
                v.insns[i - j] = v.insns[i + j] = NOP
            modified = modified or n > 0
        if modified and not sub.keep_fastcall_stack:
            v.max_stack[s] = -sub.fastcall_stack_off


__all__ = ["check_fastcall_stack_contract", "mark_fastcall_patterns", "remove_fastcall_spills_fills"]
