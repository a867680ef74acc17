"""``do_misc_fixups``: the rewrites after ``convert_ctx_accesses`` that change xlated code.

What the kernel does here and pybpf does too, most common first:

- division and modulo by a register get their exceptions defined away
  (``[R,W]x div 0 -> 0``, ``mod 0 -> dst``, ``sdiv -1 -> neg``, ``smod -1 -> 0``), and
  ``sdiv``/``smod`` by the constant -1 become ``neg`` / ``w = 0``;
- ``LD_ABS``/``LD_IND`` become calls of ``bpf_skb_load_helper_*_no_cache``
  (``bpf_gen_ld_abs``), for the program types that have legacy packet loads;
- map helpers whose map is known at the call site become calls of the map type's own
  function (``call htab_map_update_elem``), and ``bpf_map_lookup_elem`` on a hash map
  becomes the type's ``map_gen_lookup`` sequence::

      call __htab_map_lookup_elem
      if r0 == 0x0 goto pc+1
      r0 += offsetof(struct htab_elem, key) + round_up(key_size, 8)

The kernel-internal functions these calls reach are in :mod:`pybpf.helpers.internal`
(ids from ``INTERNAL_BASE``), so the interpreter and the JIT's Python bridge run them.

- ``bpf_map_lookup_elem`` on a plain array becomes ``array_map_gen_lookup``'s bounds
  check and address arithmetic (no call at all).

- ``bpf_map_lookup_elem`` on a per-CPU array becomes ``percpu_array_map_gen_lookup``'s
  ``pptrs`` load and per-CPU mov (``BPF_MOV64_PERCPU_REG``, run by both tiers).

- ``bpf_map_lookup_elem`` on LRU_HASH, ARRAY_OF_MAPS, HASH_OF_MAPS and XSKMAP becomes
  their ``map_gen_lookup`` (LRU: the ref byte store; map-in-map: the inner map pointer
  load; xskmap: the socket table at ``map + 304``).

- ``bpf_timer_set_callback`` gets ``r3 = prog->aux`` (an ``ld_imm64``) before it;

- ``bpf_jiffies64`` and ``bpf_get_smp_processor_id`` are inlined
  (:mod:`pybpf.verifier.inline_helpers`).

Not done (documented in docs/xlated.md): ``BPF_TAIL_CALL``
opcode rewrite (the dump shows the call either way), inlined ``get_func_arg`` and friends.
``bpf_loop`` inlining is :mod:`pybpf.verifier.loop_inline` (it runs before this pass).

The call-site map (``insn_aux_data.map_ptr_state``) is what the verifier's
``record_func_map`` leaves in ``aux["map_ptr"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pybpf.isa.insn import Insn, ld_imm64
from pybpf.verifier.calls import MAP_PTR_POISON
from pybpf.verifier.fixups import register_fixup_pass
from pybpf.verifier.inline_helpers import inline_helper_call, inline_tracing_call
from pybpf.verifier.patch import ProgPatcher
from pybpf.verifier.spectre import ptr_alu_patch

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = 0x04, 0x05, 0x06, 0x07
BPF_DIV, BPF_MOD, BPF_XOR, BPF_MOV, BPF_NEG, BPF_ADD = 0x30, 0x90, 0xA0, 0xB0, 0x80, 0x00
BPF_JEQ, BPF_JNE, BPF_JGT, BPF_JA = 0x10, 0x50, 0x20, 0x00
BPF_K, BPF_X = 0x00, 0x08
CALL = 0x85
REG_AX = 11

FUNC_map_lookup_elem, FUNC_map_update_elem, FUNC_map_delete_elem = 1, 2, 3
FUNC_map_push_elem, FUNC_map_pop_elem, FUNC_map_peek_elem = 87, 88, 89
FUNC_for_each_map_elem, FUNC_map_lookup_percpu_elem = 164, 195
FUNC_timer_set_callback = 170
MAP_FUNCS = frozenset({FUNC_map_lookup_elem, FUNC_map_update_elem, FUNC_map_delete_elem,
                       FUNC_map_push_elem, FUNC_map_pop_elem, FUNC_map_peek_elem,
                       FUNC_for_each_map_elem, FUNC_map_lookup_percpu_elem, 51})


# ------------------------------------------------------------------- div / mod


def _div_mod_patch(ins: Insn) -> list[Insn] | None:
    """The guard sequence for one div/mod instruction, or ``None``."""
    cls, op, src = ins.code & 0x07, ins.code & 0xF0, ins.code & 0x08
    if cls not in (BPF_ALU, BPF_ALU64) or op not in (BPF_DIV, BPF_MOD):
        return None
    is64 = cls == BPF_ALU64
    isdiv = op == BPF_DIV
    signed = ins.off == 1
    jmp = BPF_JMP if is64 else BPF_JMP32
    alu = BPF_ALU64 if is64 else BPF_ALU
    d = ins.dst
    if src == BPF_K:
        if not (signed and ins.imm == -1):
            return None
        if isdiv:
            return [Insn(alu | BPF_NEG | BPF_K, d, 0, 0, 0)]
        return [Insn(BPF_ALU | BPF_MOV | BPF_K, d, 0, 0, 0)]
    s = ins.src
    if signed and isdiv:
        return [Insn(BPF_ALU64 | BPF_MOV | BPF_X, REG_AX, s, 0, 0),
                Insn(alu | BPF_ADD | BPF_K, REG_AX, 0, 0, 1),
                Insn(jmp | BPF_JGT | BPF_K, REG_AX, 0, 4, 1),
                Insn(jmp | BPF_JEQ | BPF_K, REG_AX, 0, 1, 0),
                Insn(alu | BPF_MOV | BPF_K, d, 0, 0, 0),
                Insn(alu | BPF_NEG | BPF_K, d, 0, 0, 0),
                Insn(BPF_JMP | BPF_JA, 0, 0, 1, 0),
                ins]
    if signed:
        seq = [Insn(BPF_ALU64 | BPF_MOV | BPF_X, REG_AX, s, 0, 0),
               Insn(alu | BPF_ADD | BPF_K, REG_AX, 0, 0, 1),
               Insn(jmp | BPF_JGT | BPF_K, REG_AX, 0, 3, 1),
               Insn(jmp | BPF_JEQ | BPF_K, REG_AX, 0, 3 + (0 if is64 else 1), 1),
               Insn(BPF_ALU | BPF_MOV | BPF_K, d, 0, 0, 0),
               Insn(BPF_JMP | BPF_JA, 0, 0, 1, 0),
               ins,
               Insn(BPF_JMP | BPF_JA, 0, 0, 1, 0),
               Insn(BPF_ALU | BPF_MOV | BPF_X, d, d, 0, 0)]
        return seq[:-2] if is64 else seq
    if isdiv:
        return [Insn(jmp | BPF_JNE | BPF_K, s, 0, 2, 0),
                Insn(BPF_ALU | BPF_XOR | BPF_X, d, d, 0, 0),
                Insn(BPF_JMP | BPF_JA, 0, 0, 1, 0),
                ins]
    seq = [Insn(jmp | BPF_JEQ | BPF_K, s, 0, 1 + (0 if is64 else 1), 0),
           ins,
           Insn(BPF_JMP | BPF_JA, 0, 0, 1, 0),
           Insn(BPF_ALU | BPF_MOV | BPF_X, d, d, 0, 0)]
    return seq[:-2] if is64 else seq


# ------------------------------------------------------------------- map helpers


def _htab_gen_lookup(m: Any) -> list[Insn]:
    """``htab_map_gen_lookup``: call the table walk, step from element to value."""
    from pybpf.helpers.internal import HTAB_MAP_LOOKUP_ELEM, htab_elem_value_off

    return [Insn(CALL, 0, 0, 0, HTAB_MAP_LOOKUP_ELEM),
            Insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1, 0),
            Insn(BPF_ALU64 | BPF_ADD | BPF_K, 0, 0, 0, htab_elem_value_off(m.key_size))]


def _htab_lru_gen_lookup(m: Any) -> list[Insn]:
    """``htab_lru_map_gen_lookup``: the table walk, then set the element's LRU ref byte
    (``lru_node.ref``, element + 35) if it is clear, then step to the value.

    The ref byte lands in the ref word of pybpf's element (:mod:`pybpf.maps.htab`: its
    layout puts byte 19 of the element there, which is element + 35 counted from where
    ``__htab_map_lookup_elem`` says the kernel-shaped element starts).
    """
    from pybpf.helpers.internal import HTAB_MAP_LOOKUP_ELEM, LRU_REF_OFF, htab_elem_value_off

    return [Insn(CALL, 0, 0, 0, HTAB_MAP_LOOKUP_ELEM),
            Insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 4, 0),
            Insn(0x71, 1, 0, LRU_REF_OFF, 0),  # r1 = *(u8 *)(r0 + 35)
            Insn(BPF_JMP | BPF_JNE | BPF_K, 1, 0, 1, 0),
            Insn(0x72, 0, 0, LRU_REF_OFF, 1),  # *(u8 *)(r0 + 35) = 1
            Insn(BPF_ALU64 | BPF_ADD | BPF_K, 0, 0, 0, htab_elem_value_off(m.key_size))]


BPF_F_INNER_MAP = 1 << 12


def _array_gen_lookup(m: Any) -> list[Insn] | None:
    """``array_map_gen_lookup``: bounds check and index arithmetic, no call.

    The map must keep its values at ``map + offsetof(struct bpf_array, value)``
    (``values_follow_header``: plain and mmap-able arrays, :mod:`pybpf.maps.type_array`); maps made
    for ``inner_map_fd`` templates are not inlined (``-EOPNOTSUPP``). pybpf maps are
    created privileged (``bypass_spec_v1``): no index masking.
    """
    from pybpf.maps.type_array import ARRAY_VALUE_OFF

    if not getattr(m, "values_follow_header", False) or m.map_flags & BPF_F_INNER_MAP:
        return None
    elem = (int(m.value_size) + 7) & ~7
    scale = (Insn(BPF_ALU64 | 0x60 | BPF_K, 0, 0, 0, elem.bit_length() - 1)
             if elem & (elem - 1) == 0 else Insn(BPF_ALU64 | 0x20 | BPF_K, 0, 0, 0, elem))
    return [Insn(BPF_ALU64 | BPF_ADD | BPF_K, 1, 0, 0, ARRAY_VALUE_OFF),
            Insn(0x61, 0, 2, 0, 0),  # r0 = *(u32 *)(r2 + 0): the index
            Insn(BPF_JMP | 0x30 | BPF_K, 0, 0, 3, _s32(int(m.max_entries))),  # >= max
            scale,
            Insn(BPF_ALU64 | BPF_ADD | BPF_X, 0, 1, 0, 0),
            Insn(BPF_JMP | BPF_JA, 0, 0, 1, 0),
            Insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0)]


def _percpu_array_gen_lookup(m: Any) -> list[Insn] | None:
    """``percpu_array_map_gen_lookup``: index the ``pptrs`` table, then step to this
    CPU's copy with the per-CPU mov (``BPF_MOV64_PERCPU_REG``, ``off = -1``).

    The map must keep a ``pptrs`` table at ``map + offsetof(struct bpf_array, pptrs)`` and
    its copies one per-CPU stride apart (:mod:`pybpf.maps.type_percpu_array`).
    """
    from pybpf.maps.type_percpu_array import ARRAY_PPTRS_OFF
    from pybpf.runtime.interpreter import BPF_ADDR_PERCPU

    if getattr(m, "pptrs", None) is None or m.map_flags & BPF_F_INNER_MAP:
        return None
    return [Insn(BPF_ALU64 | BPF_ADD | BPF_K, 1, 0, 0, ARRAY_PPTRS_OFF),
            Insn(0x61, 0, 2, 0, 0),  # r0 = *(u32 *)(r2 + 0): the index
            Insn(BPF_JMP | 0x30 | BPF_K, 0, 0, 5, _s32(int(m.max_entries))),  # >= max
            Insn(BPF_ALU64 | 0x60 | BPF_K, 0, 0, 0, 3),  # r0 <<= 3
            Insn(BPF_ALU64 | BPF_ADD | BPF_X, 0, 1, 0, 0),
            Insn(0x79, 0, 0, 0, 0),  # r0 = *(u64 *)(r0 + 0): pptrs[index]
            Insn(BPF_ALU64 | BPF_MOV | BPF_X, 0, 0, BPF_ADDR_PERCPU, 0),
            Insn(BPF_JMP | BPF_JA, 0, 0, 1, 0),
            Insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0)]


def _array_of_map_gen_lookup(m: Any) -> list[Insn] | None:
    """``array_of_map_gen_lookup``: index the slots, load the inner map pointer.

    The map keeps its slots where ``struct bpf_array`` keeps ``ptrs``
    (:data:`pybpf.maps.fdarray.FD_ARRAY_PTRS_OFF`); ``elem_size`` is 8 (a pointer).
    """
    from pybpf.maps.fdarray import FD_ARRAY_PTRS_OFF

    slots = getattr(m, "slots", None)
    if slots is None or slots.start != m.addr + FD_ARRAY_PTRS_OFF:
        return None
    return [Insn(BPF_ALU64 | BPF_ADD | BPF_K, 1, 0, 0, FD_ARRAY_PTRS_OFF),
            Insn(0x61, 0, 2, 0, 0),  # r0 = *(u32 *)(r2 + 0): the index
            Insn(BPF_JMP | 0x30 | BPF_K, 0, 0, 5, _s32(int(m.max_entries))),  # >= max
            Insn(BPF_ALU64 | 0x60 | BPF_K, 0, 0, 0, 3),  # r0 <<= ilog2(8)
            Insn(BPF_ALU64 | BPF_ADD | BPF_X, 0, 1, 0, 0),
            Insn(0x79, 0, 0, 0, 0),  # r0 = *(u64 *)(r0 + 0): the inner map
            Insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1, 0),
            Insn(BPF_JMP | BPF_JA, 0, 0, 1, 0),
            Insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0)]


def _htab_of_map_gen_lookup(m: Any) -> list[Insn]:
    """``htab_of_map_gen_lookup``: find the element, load the inner map from its value."""
    from pybpf.helpers.internal import HTAB_OF_MAPS_LOOKUP_ELEM, htab_elem_value_off

    return [Insn(CALL, 0, 0, 0, HTAB_OF_MAPS_LOOKUP_ELEM),
            Insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2, 0),
            Insn(BPF_ALU64 | BPF_ADD | BPF_K, 0, 0, 0, htab_elem_value_off(m.key_size)),
            Insn(0x79, 0, 0, 0, 0)]  # r0 = *(u64 *)(r0 + 0): the inner map


def _xsk_map_gen_lookup(m: Any) -> list[Insn] | None:
    """``xsk_map_gen_lookup``: index the socket table at ``map + 304`` (all NULL in
    pybpf, which has no AF_XDP sockets)."""
    from pybpf.maps.type_xskmap import XSK_MAP_PTRS_OFF

    table = getattr(m, "xsk_ptrs", None)
    if table is None or table.start != m.addr + XSK_MAP_PTRS_OFF:
        return None
    return [Insn(0x61, 0, 2, 0, 0),  # r0 = *(u32 *)(r2 + 0): the index
            Insn(BPF_JMP | 0x30 | BPF_K, 0, 0, 5, _s32(int(m.max_entries))),  # >= max
            Insn(BPF_ALU64 | 0x60 | BPF_K, 0, 0, 0, 3),  # r0 <<= ilog2(8)
            Insn(BPF_ALU64 | BPF_ADD | BPF_K, 1, 0, 0, XSK_MAP_PTRS_OFF),
            Insn(BPF_ALU64 | BPF_ADD | BPF_X, 0, 1, 0, 0),
            Insn(0x79, 0, 0, 0, 0),  # r0 = *(u64 *)(r0 + 0): the socket
            Insn(BPF_JMP | BPF_JA, 0, 0, 1, 0),
            Insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0)]


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


#: map type -> ``map_gen_lookup`` (the types pybpf inlines as the kernel does); ``None``
#: from one is the kernel's ``-EOPNOTSUPP``: call the type's lookup instead.
GEN_LOOKUP: dict[int, Callable[[Any], list[Insn] | None]] = {
    1: _htab_gen_lookup,  # BPF_MAP_TYPE_HASH
    2: _array_gen_lookup,  # BPF_MAP_TYPE_ARRAY
    6: _percpu_array_gen_lookup,  # BPF_MAP_TYPE_PERCPU_ARRAY
    9: _htab_lru_gen_lookup,  # BPF_MAP_TYPE_LRU_HASH
    12: _array_of_map_gen_lookup,  # BPF_MAP_TYPE_ARRAY_OF_MAPS
    13: _htab_of_map_gen_lookup,  # BPF_MAP_TYPE_HASH_OF_MAPS
    17: _xsk_map_gen_lookup,  # BPF_MAP_TYPE_XSKMAP
}


def _map_call(v: Verifier, p: ProgPatcher, i: int) -> int:
    """Rewrite the map helper call at ``i``; returns how many slots it now takes."""
    from pybpf.helpers.internal import map_op_call_id

    ins = p.insns[i]
    m = p.aux[i].get("map_ptr")
    if m is None or m is MAP_PTR_POISON:
        return 1
    mtype = int(getattr(m, "map_type", -1))
    if ins.imm == FUNC_map_lookup_elem and mtype in GEN_LOOKUP:
        new = GEN_LOOKUP[mtype](m)
        if new is not None:
            p.patch(i, new)
            return len(new)
    fid = map_op_call_id(mtype, ins.imm)
    if fid is not None:
        p.insns[i] = ins._replace(imm=fid)
    return 1


# ------------------------------------------------------------------- the pass


BPF_LD, BPF_ABS, BPF_IND, BPF_JSGE = 0x00, 0x20, 0x40, 0x70
_LD_SIZE = {0x10: 1, 0x08: 2, 0x00: 4}


def _gen_ld_abs(ins: Insn) -> list[Insn]:
    """``bpf_gen_ld_abs``: a legacy packet load becomes a call of the load helper; a
    failed load ends the program with 0, as the original instruction did."""
    from pybpf.helpers.internal import SKB_LOAD_HELPER

    out = []
    if ins.code & 0xE0 == BPF_IND:
        out.append(Insn(BPF_ALU64 | BPF_MOV | BPF_X, 2, ins.src, 0, 0))
        if ins.imm:
            out.append(Insn(BPF_ALU64 | BPF_ADD | BPF_K, 2, 0, 0, ins.imm))
    else:
        out.append(Insn(BPF_ALU64 | BPF_MOV | BPF_K, 2, 0, 0, ins.imm))
    out += [Insn(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0),  # ctx is in r6
            Insn(CALL, 0, 0, 0, SKB_LOAD_HELPER[_LD_SIZE[ins.code & 0x18]]),
            Insn(BPF_JMP | BPF_JSGE | BPF_K, 0, 0, 2, 0),
            Insn(BPF_ALU | BPF_XOR | BPF_X, 0, 0, 0, 0),
            Insn(BPF_JMP | 0x90, 0, 0, 0, 0)]
    return out


def _is_ld_abs(ins: Insn) -> bool:
    return ins.code & 0x07 == BPF_LD and ins.code & 0xE0 in (BPF_ABS, BPF_IND) \
        and ins.code & 0x18 in _LD_SIZE


def misc_fixups(v: Verifier, p: ProgPatcher) -> None:
    """One walk over the program, as ``do_misc_fixups``."""
    gen_ld_abs = getattr(v.prog_ops, "ld_abs", None) is not None
    jit_requested = True  # pybpf programs are always JIT-able (``prog->jit_requested``)
    i = 0
    while i < len(p.insns):
        ins = p.insns[i]
        if ins.code == 0x18:
            i += 2
            continue
        new = _div_mod_patch(ins)
        if new is None and gen_ld_abs and _is_ld_abs(ins):
            new = _gen_ld_abs(ins)
        if new is None and ins.code in (0x0F, 0x1F):  # sanitized pointer arithmetic
            new = ptr_alu_patch(ins, p.aux[i])
        if new is not None:
            p.patch(i, new)
            i += len(new)
            continue
        if ins.code == CALL and ins.src == 0 and ins.imm in MAP_FUNCS and jit_requested:
            i += _map_call(v, p, i)
            continue
        if ins.code == CALL and ins.src == 0 and ins.imm == FUNC_timer_set_callback:
            # ``r3 = prog->aux`` before the call: the kernel's helper learns which program
            # the callback belongs to. pybpf's finds it through the run context
            # (helpers/timer.py), so the immediate is 0: the instruction is the kernel's,
            # the address is not.
            new = [*ld_imm64(3, 0), ins]
            p.patch(i, new)
            i += len(new)
            continue
        if ins.code == CALL and ins.src == 0 and p.aux[i].get("call_with_percpu_alloc_ptr"):
            # bpf_{this,per}_cpu_ptr of a bpf_percpu_obj_new object: the register holds
            # where the per-CPU pointer is kept; ``r1 = *(u64 *)(r1 + 0)`` fetches it
            new = [Insn(0x79, 1, 1, 0, 0), ins]  # BPF_LDX | BPF_MEM | BPF_DW
            p.patch(i, new)
            i += len(new)
            continue
        if ins.code == CALL and ins.src == 0:
            new = inline_tracing_call(ins, v.prog_type, v.inp.expected_attach_type) \
                or inline_helper_call(ins, jit_requested)
            if new is not None:
                p.patch(i, new)
                i += len(new)
                continue
        i += 1


register_fixup_pass(60, misc_fixups)
