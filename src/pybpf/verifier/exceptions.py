"""BPF exceptions: ``bpf_throw`` and the exception callback.

``bpf_throw(cookie)`` ends the program from any depth: every frame is unwound and the
program returns what its *exception callback* returns for the cookie. A program names its
callback with the BTF decl tag ``exception_callback:<name>`` on its main function (a
global function taking one integer); without one, the kernel appends a hidden callback
``r0 = r1; exit`` — the cookie itself becomes the return value, so then it must be a valid
return value of the program type (``check_return_code`` on R1 at the throw).

The verifier ends the path at the throw (``process_bpf_exit_full`` with
``exception_exit``): no reference may be held, in any frame, and no lock. The callback is
verified like a global function, always (it is "called" by every throw), with the program
type's return rules. At run time ``bpf_throw`` raises :class:`BpfThrow`; the program's run
catches it and calls the callback (:func:`run_exception_callback`).

Kernel counterparts: ``bpf_find_exception_callback_insn_off``, ``mark_subprog_exc_cb``,
the ``KF_bpf_throw`` branch of ``check_kfunc_call``, ``process_bpf_exit_full``,
``do_check_common``'s ``in_exception_callback_fn`` and ``add_hidden_subprog`` in
``do_misc_fixups``; ``bpf_throw`` in ``kernel/bpf/helpers.c``.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.btf.raw import BtfDeclTag, BtfFunc
from pybpf.isa.insn import Insn
from pybpf.verifier.btf_info import BTF_FUNC_GLOBAL, prog_btf
from pybpf.verifier.cfg import SubprogInfo, VerifyError
from pybpf.verifier.fixups import register_fixup_pass

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier
    from pybpf.verifier.patch import ProgPatcher

M64 = (1 << 64) - 1
TAG = "exception_callback:"


class BpfThrow(Exception):
    """``bpf_throw`` at run time: unwinds every BPF frame up to the program's run."""

    def __init__(self, cookie: int) -> None:
        super().__init__(cookie)
        self.cookie = cookie & M64


def _fail(v: Verifier, err: int, msg: str) -> VerifyError:
    v.verbose(msg)
    return VerifyError(err, msg)


def find_exception_callback_insn_off(v: Verifier) -> int:
    """The first instruction of the callback the main function's decl tag names (0: none)."""
    btf = prog_btf(v)
    if btf is None or not v.func_info:
        return 0
    main = btf[v.func_info[0][1]]
    names = [t.name[len(TAG):] for t in btf.types
             if isinstance(t, BtfDeclTag) and t.type == main.id and t.component_idx == -1
             and t.name.startswith(TAG)]
    if not names:
        return 0
    if len(names) > 1:
        raise _fail(v, errno.EEXIST, "multiple exception callback tags for main subprog\n")
    name = names[0]
    ids = [t.id for t in btf.types if isinstance(t, BtfFunc) and t.name == name]
    if not ids:
        raise _fail(v, errno.ENOENT, f"exception callback '{name}' could not be found in BTF\n")
    func = btf[ids[0]]
    if func.linkage != BTF_FUNC_GLOBAL:
        raise _fail(v, errno.EINVAL, f"exception callback '{name}' must have global linkage\n")
    off = 0
    for insn_off, type_id in v.func_info:
        if type_id == func.id:
            off = insn_off
            if not off:
                raise _fail(v, errno.EINVAL, "invalid exception callback insn_off in func_info: 0\n")
    if not off:
        raise _fail(v, errno.EINVAL, "exception callback type id not found in func_info\n")
    return off


def add_exception_callback(v: Verifier, subs: list[SubprogInfo]) -> list[SubprogInfo]:
    """``add_subprog`` of the exception callback's start, marked as such."""
    off = find_exception_callback_insn_off(v)
    if not off:
        return subs
    if all(sp.start != off for sp in subs):
        subs = sorted([*subs, SubprogInfo(off)], key=lambda sp: sp.start)
    for sp in subs[1:]:
        if sp.start == off:  # mark_subprog_exc_cb: a callback, its own stack root too
            sp.is_exception_cb = sp.is_cb = sp.is_async_cb = True
    return subs


def exception_callback(v: Verifier) -> int:
    """Index of the exception callback subprogram (0: none)."""
    for i, sp in enumerate(v.cfg.subprogs):
        if i and sp.is_exception_cb:
            return i
    return 0


def check_bpf_throw(v: Verifier) -> None:
    """The ``bpf_throw`` branch of ``check_kfunc_call``: with the default callback the
    cookie becomes the return value, so it must be one."""
    v.seen_exception = True
    if not exception_callback(v):
        v.check_return_code(1, "R1")
    v.exception_exit = True


def check_exception_callback_args(v: Verifier, sub: int) -> None:
    """``exception cb only supports single integer argument``."""
    from pybpf.verifier.global_funcs import ARG_ANYTHING

    args = v.cfg.subprogs[sub].args or []
    if len(args) != 1 or args[0].kind != ARG_ANYTHING:
        raise _fail(v, errno.EINVAL, "exception cb only supports single integer argument\n")


# -- the default callback ------------------------------------------------------------------

def add_default_exception_callback(v: Verifier, p: ProgPatcher) -> None:
    """``add_hidden_subprog``: a program that throws without a callback of its own gets
    ``r0 = r1; exit`` appended as a subprogram with no BTF."""
    if not getattr(v, "seen_exception", False) or exception_callback(v):
        return
    start = len(p.insns)
    p.insns += [Insn(0xBF, 0, 1, 0, 0), Insn(0x95, 0, 0, 0, 0)]
    p.aux += [{"seen": True, "orig_idx": start}, {"seen": True, "orig_idx": start + 1}]
    if p.subprog_starts and p.subprog_starts[-1] == start:  # the fake exit subprog moves on
        p.subprog_starts[-1:] = [start, len(p.insns)]
        p.subprog_ids[-1:] = [-1, p.subprog_ids[-1]]  # hidden: no func_info record
    else:
        p.subprog_starts.append(start)
        p.subprog_ids.append(-1)
    v.exception_cb_start = start


register_fixup_pass(59, add_default_exception_callback)


# -- run time ------------------------------------------------------------------------------

def run_exception_callback(prog: Any, func: Any, throw: BpfThrow, ctx: Any, cpu: int) -> int:
    """What a thrown program returns: its exception callback's answer for the cookie."""
    start = (getattr(prog, "aux", None) or {}).get("exception_cb")
    if start is None:
        return throw.cookie
    from pybpf.runtime.context import RunContext

    if ctx is None:
        ctx = RunContext(mem=func.mem, cpu=cpu, prog=prog, kernel=getattr(prog, "kernel", None))
    ctx.depth = -1  # the callback runs as frame 0
    return int(func.call_subprog(ctx, int(start), throw.cookie))
