"""Post-verification rewrites: the tail of the kernel's ``bpf_check``.

After ``do_check`` accepts a program the kernel rewrites it, in this order, before
choosing a runtime; pybpf runs the same passes over a :class:`ProgPatcher` so jumps,
subprogram starts, line info and aux data stay consistent through every patch:

1. ``ld_imm64`` map references become native addresses (``resolve_pseudo_ldimm64`` does
   this before ``do_check`` in the kernel; no instruction count changes, so doing it first
   here is equivalent): ``BPF_PSEUDO_MAP_FD`` → the map header, ``BPF_PSEUDO_MAP_VALUE`` →
   the value address;
2. ``convert_ctx_accesses`` (:mod:`pybpf.verifier.ctx_convert`): ctx and socket field
   accesses onto pybpf's internal objects;
3. further passes registered in :data:`LATE_PASSES` (``do_misc_fixups``, dead-code
   removal…) where their modules exist.

:func:`apply_fixups` returns the xlated program; the adjusted subprogram starts and
line-info offsets are left on the patcher for the caller.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from pybpf.verifier.ctx_convert import convert_ctx_accesses
from pybpf.verifier.patch import ProgPatcher

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

FixupPass = Callable[["Verifier", ProgPatcher], None]

#: Passes that run before ``convert_ctx_accesses`` (the kernel's ``optimize_bpf_loop`` and
#: the privileged dead-code passes) and after it (``do_misc_fixups``, zext, call args).
#: Modules append ``(order, pass)``; lower order runs first, ctx conversion is order 50.
LATE_PASSES: list[tuple[int, FixupPass]] = []
_OPTIONAL_PASS_MODULES = ("pybpf.verifier.dead_code", "pybpf.verifier.misc_fixups",
                          "pybpf.verifier.may_goto_fixup", "pybpf.verifier.exceptions")
_loaded = False


def register_fixup_pass(order: int, fn: FixupPass) -> FixupPass:
    """Run ``fn(verifier, patcher)`` at position ``order`` (ctx conversion is 50)."""
    LATE_PASSES.append((order, fn))
    LATE_PASSES.sort(key=lambda t: t[0])
    return fn


def _load_passes() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in _OPTIONAL_PASS_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def resolve_map_addresses(v: Verifier, p: ProgPatcher) -> None:
    """Map references of ``ld_imm64`` become the native addresses programs dereference."""
    for idx, m in v.map_by_insn.items():
        ins = p.insns[idx]
        if ins.src in (2, 6):
            off = p.insns[idx + 1].imm & 0xFFFFFFFF
            addr = m.direct_value_addr(off)
        else:
            addr = m.addr
        p.insns[idx] = ins._replace(src=0, imm=_s32(addr))
        p.insns[idx + 1] = p.insns[idx + 1]._replace(imm=_s32(addr >> 32))


def make_patcher(v: Verifier) -> ProgPatcher:
    """The verified program with its aux data, subprogram starts and line-info offsets."""
    starts = [s.start for s in v.cfg.subprogs] or [0]
    linfo = [int(rec[0]) for rec in (v.inp.line_info or [])]
    return ProgPatcher(v.insns, v.aux, [*starts, len(v.insns)], linfo)


def apply_fixups(v: Verifier, p: ProgPatcher | None = None) -> list:
    """Run every post-verification pass; returns the xlated instructions."""
    _load_passes()
    if p is None:
        p = make_patcher(v)
    resolve_map_addresses(v, p)
    passes = sorted([*LATE_PASSES, (50, convert_ctx_accesses)], key=lambda t: t[0])
    for _, fn in passes:
        fn(v, p)
    return p.insns
