"""``fixup_kfunc_call``: the post-verification rewrite of kfunc calls.

The kernel replaces a kfunc call's BTF id with the function's ``__bpf_call_base``-relative
address, so the JIT emits a direct call, and inlines the two casts: ``bpf_cast_to_kern_ctx``
and ``bpf_rdonly_cast`` become ``r0 = r1`` (they only change the verifier's view of the
pointer). A kfunc with a ``__prog`` argument gets ``ld_imm64`` of the program's aux into
that register before the call. A kfunc call with ``imm`` 0 that dead-code removal did not drop is refused here.

pybpf's call "addresses" are its own ids, as for helpers: a kfunc keeps its vmlinux BTF id
in ``imm`` (``src_reg`` stays ``BPF_PSEUDO_KFUNC_CALL``), which the interpreter and the
JIT resolve through :func:`pybpf.helpers.kfunc_impls.kfunc_impls_for`.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pybpf.isa.insn import Insn, ld_imm64
from pybpf.verifier.fixups import register_fixup_pass
from pybpf.verifier.patch import PatchError, ProgPatcher

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

CALL = 0x85
BPF_PSEUDO_KFUNC_CALL = 2
MOV64_X = 0xBF

#: kfuncs whose call is replaced by ``r0 = r1``.
INLINED_AS_MOV = frozenset({"bpf_cast_to_kern_ctx", "bpf_rdonly_cast"})


def fixup_kfunc_calls(v: Verifier, p: ProgPatcher) -> None:
    from pybpf.verifier.alloc_obj import fixup_alloc_call
    from pybpf.verifier.graph import fixup_graph_call
    from pybpf.verifier.kfuncs import kfunc_name

    i = 0
    while i < len(p.insns):
        ins = p.insns[i]
        if ins.code != CALL or ins.src != BPF_PSEUDO_KFUNC_CALL:
            i += 1
            continue
        if not ins.imm:
            raise PatchError(errno.EINVAL, "invalid kernel function call not eliminated in verifier pass\n")
        if kfunc_name(v, ins) in INLINED_AS_MOV:
            p.insns[i] = Insn(MOV64_X, 0, 1, 0, 0)
        alloc = fixup_alloc_call(ins, p.aux[i]) or fixup_graph_call(ins, p.aux[i])  # alloc_obj.py, graph.py
        if alloc is not None:
            p.patch(i, alloc)
            i += len(alloc)
            continue
        regno = p.aux[i].get("arg_prog")
        if regno:
            # a ``__prog`` argument: ``rN = prog->aux`` right before the call. pybpf's
            # kfuncs find their program through the run context, so the address is 0:
            # the instruction is the kernel's, the value is not.
            new = [*ld_imm64(regno, 0), ins]
            p.patch(i, new)
            i += len(new)
            continue
        i += 1


# after dead-code removal (20) and ctx conversion (50), within do_misc_fixups' place
register_fixup_pass(55, fixup_kfunc_calls)



def xlated_kfunc_name(kernel: object, ins: Insn) -> str | None:
    """The name ``bpftool prog dump xlated`` shows for a kfunc call of a pybpf program
    (its ``imm`` is the vmlinux BTF id), for the dumpers."""
    obj = getattr(kernel, "vmlinux_btf", None)
    if obj is None or ins.off:
        return None
    btf = obj.parsed()
    if not 0 < ins.imm < len(btf.types):
        return None
    name = btf.types[ins.imm].name
    return name or None


__all__ = ["INLINED_AS_MOV", "fixup_kfunc_calls", "xlated_kfunc_name"]
