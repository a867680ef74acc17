"""BPF arenas in the verifier: ``PTR_TO_ARENA``, ``addr_space_cast`` and their fixups.

A program is associated with (at most) one arena, the ``BPF_MAP_TYPE_ARENA`` map one of
its ``ld_imm64`` instructions references (``prog->aux->arena``). Only then may it use
``addr_space_cast``:

- ``imm == 1`` casts from address space 1 (the arena as user space sees it) to 0: the
  result is ``PTR_TO_ARENA``, a 32-bit offset into the arena's kernel window; the fixup
  turns the instruction into ``wX = wY`` (a 32-bit move clears the upper half);
- ``imm == 1 << 16`` casts back to a user pointer (upper half from ``user_vm_start``,
  0 stays 0); it stays an ``addr_space_cast`` in xlated — the JIT does it — unless the
  arena has ``BPF_F_NO_USER_CONV``, where it is a 32-bit move too. The result is a scalar.

An ``__arena`` global is a ``BPF_PSEUDO_MAP_VALUE`` ``ld_imm64`` of the arena map: the
map's ``direct_value_addr`` makes it the variable's user address, which the program gets
as an unknown scalar (``check_ld_imm``) and casts before use; offsets past the arena's
user range are refused with ERANGE (``direct_value_errno``).

Any arithmetic with a ``PTR_TO_ARENA`` operand is allowed and yields ``PTR_TO_ARENA``;
64-bit operations are marked ``needs_zext`` and become 32-bit ones. Loads and stores
through it are not bounds-checked: ``convert_ctx_accesses`` makes them ``BPF_PROBE_MEM32``
(``verifier/ctx_convert.py``), whose faults read 0 and drop the store.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.isa.insn import Insn
from pybpf.verifier.regs import RegType, mark_unknown

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier
    from pybpf.verifier.patch import ProgPatcher

BPF_MAP_TYPE_ARENA = 33
BPF_ADDR_SPACE_CAST = 1
BPF_F_NO_USER_CONV = 1 << 18
_ALU64_MOV_X = 0xBF
_ALU_MOV_X = 0xBC


def prog_arena(v: Verifier) -> Any:
    """The program's arena map (``env->prog->aux->arena``), or ``None``."""
    return getattr(v, "_arena_map", None)


def check_arena_map(v: Verifier, m: Any) -> None:
    """The arena rules of ``check_map_prog_compatibility``."""
    cur = prog_arena(v)
    if cur is m:
        return
    if cur is not None:
        v.fail(errno.EBUSY, "Only one arena per program\n")
    v._arena_map = m  # type: ignore[attr-defined]
    if not getattr(m, "user_vm_start", 0):
        v.fail(errno.EINVAL, "arena's user address must be set via map_extra or mmap()\n")


def check_addr_space_cast_fields(v: Verifier, ins: Insn) -> None:
    """``check_alu_op``'s reserved-field checks of ``addr_space_cast``."""
    if ins.imm not in (1, 1 << 16):
        v.fail(errno.EINVAL, "addr_space_cast insn can only convert between address space 1 and 0\n")
    if prog_arena(v) is None:
        v.fail(errno.EINVAL, "addr_space_cast insn can only be used in a program that has an "
                             "associated arena\n")


def mark_addr_space_cast(v: Verifier, ins: Insn) -> None:
    """The destination of an ``addr_space_cast``: ``PTR_TO_ARENA`` (32-bit) or a scalar."""
    d = v.regs[ins.dst]
    mark_unknown(d)
    if ins.imm == 1:
        d.type = RegType.PTR_TO_ARENA
        d.subreg_def = v.insn_idx + 1


def adjust_arena_alu(v: Verifier, ins: Insn, is64: bool) -> bool:
    """``adjust_reg_min_max_vals`` with an arena operand: anything goes, the result is
    ``PTR_TO_ARENA``, 64-bit operations need a zero extension. True when handled."""
    d = v.regs[ins.dst]
    s = v.regs[ins.src] if ins.code & 0x08 else None
    if d.type != RegType.PTR_TO_ARENA and (s is None or s.type != RegType.PTR_TO_ARENA):
        return False
    if d.type != RegType.PTR_TO_ARENA:
        assert s is not None
        d.assign(s)
    d.subreg_def = v.insn_idx + 1
    if is64:
        v.aux[v.insn_idx]["needs_zext"] = True
    return True


def fixup_arena_insns(v: Verifier, p: ProgPatcher) -> None:
    """The arena part of ``do_misc_fixups``: ``addr_space_cast`` to kernel (and, with
    ``BPF_F_NO_USER_CONV``, to user) becomes ``wX = wY``; 64-bit ALU operations on arena
    pointers become 32-bit ones."""
    arena = prog_arena(v)
    if arena is None:
        return
    no_user_conv = bool(getattr(arena, "map_flags", 0) & BPF_F_NO_USER_CONV)
    for i, ins in enumerate(p.insns):
        if ins.code == _ALU64_MOV_X and ins.imm:
            if (ins.off == BPF_ADDR_SPACE_CAST and ins.imm == 1) or no_user_conv:
                p.insns[i] = ins._replace(code=_ALU_MOV_X, off=0, imm=0)
            continue
        if p.aux[i].get("needs_zext") and ins.code & 0x07 == 0x07:
            p.insns[i] = ins._replace(code=(ins.code & ~0x07) | 0x04)


def _register() -> None:
    from pybpf.verifier.fixups import register_fixup_pass

    register_fixup_pass(ARENA_FIXUP_ORDER, fixup_arena_insns)


#: after ``convert_ctx_accesses`` (50), where ``do_misc_fixups`` starts (in place: no index shifts)
ARENA_FIXUP_ORDER = 51

_register()
