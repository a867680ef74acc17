"""Dynptr arguments of kfuncs (``KF_ARG_PTR_TO_DYNPTR``) and dynptr slices.

A ``struct bpf_dynptr *`` argument is checked as a helper's ``ARG_PTR_TO_DYNPTR`` is
(:mod:`pybpf.verifier.dynptr`): a ``__uninit`` one is initialised by the kfunc
(``bpf_dynptr_from_skb`` makes an skb dynptr, ``bpf_dynptr_from_xdp`` an xdp one, a clone
the type of its parent and shares its reference), any other one must be initialised; a
``CONST_PTR_TO_DYNPTR`` (a callback's) is accepted read-only. What the argument is
pointing to is remembered (``meta->initialized_dynptr``) for the return value:
``bpf_dynptr_slice(_rdwr)`` returns memory of the constant buffer size that belongs to
that dynptr (``dynptr_id``) and may be NULL.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pybpf.helpers.dynptr import (
    DYNPTR_TYPE_FLAG_TO_TYPE,
    DYNPTR_TYPE_SKB,
    DYNPTR_TYPE_XDP,
    DynptrType,
)
from pybpf.helpers.proto import ArgFlag, ArgType
from pybpf.verifier.regs import MEM_RDONLY, Reg, RegType

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier
    from pybpf.verifier.kfuncs import KfuncMeta

_TYPE_TO_FLAG = {t: f for f, t in DYNPTR_TYPE_FLAG_TO_TYPE.items()}


def _has_suffix(name: str, suffix: str) -> bool:
    return len(name) > len(suffix) and name.endswith(suffix)


def process_kf_arg_dynptr(v: Verifier, meta: KfuncMeta, regno: int, pname: str) -> None:
    """The ``KF_ARG_PTR_TO_DYNPTR`` case of ``check_kfunc_args``."""
    from pybpf.verifier import dynptr as D

    reg = v.regs[regno]
    at = int(ArgType.ARG_PTR_TO_DYNPTR)
    if reg.type == RegType.CONST_PTR_TO_DYNPTR:
        at |= int(ArgFlag.MEM_RDONLY)
    uninit = _has_suffix(pname, "__uninit")
    if uninit:
        at |= int(ArgFlag.MEM_UNINIT)
    clone_ref = 0
    if meta.name == "bpf_dynptr_from_skb":
        at |= DYNPTR_TYPE_SKB
    elif meta.name == "bpf_dynptr_from_xdp":
        at |= DYNPTR_TYPE_XDP
    elif meta.name == "bpf_dynptr_clone" and uninit:
        if meta.dynptr_type == DynptrType.BPF_DYNPTR_TYPE_INVALID:
            v.fail(errno.EFAULT, "verifier internal error: no dynptr type for parent of clone\n")
        at |= _TYPE_TO_FLAG[DynptrType(meta.dynptr_type)]
        clone_ref = meta.dynptr_ref_obj_id
    if uninit and clone_ref:
        _init_clone(v, regno, at, clone_ref)
    else:
        D.process_dynptr_func(v, regno, at)
    if not uninit:
        meta.dynptr_id, meta.dynptr_ref_obj_id = D.dynptr_id_and_ref(v, reg)
        meta.dynptr_type = D.dynptr_arg_type(v, reg)


def _init_clone(v: Verifier, regno: int, at: int, clone_ref: int) -> None:
    """``process_dynptr_func`` with ``MEM_UNINIT`` for a clone of a referenced dynptr:
    the clone holds its parent's reference."""
    from pybpf.verifier import dynptr as D
    from pybpf.verifier.mem import BPF_WRITE

    reg = v.regs[regno]
    if reg.type not in (RegType.PTR_TO_STACK, RegType.CONST_PTR_TO_DYNPTR):
        v.fail(errno.EINVAL, f"arg#{regno - 1} expected pointer to stack or const struct bpf_dynptr\n")
    if not D.is_dynptr_reg_valid_uninit(v, reg):
        v.fail(errno.EINVAL, "Dynptr has to be an uninitialized dynptr\n")
    for off in range(0, D.BPF_DYNPTR_SIZE, D.BPF_REG_SIZE):
        v.check_mem_access(regno, off, D.BPF_REG_SIZE, BPF_WRITE, -1)
    D.mark_stack_slots_dynptr(v, reg, at, clone_ref)


def set_slice_return(v: Verifier, meta: KfuncMeta, r0: Reg) -> None:
    """R0 of ``bpf_dynptr_slice(_rdwr)``: memory of the constant buffer size, part of the
    dynptr (``PTR_MAYBE_NULL`` is added with the other ``KF_RET_NULL`` returns)."""
    from pybpf.verifier.regs import mark_known, mark_unknown

    mark_unknown(r0)
    mark_known(r0, 0)
    if meta.arg_constant is None:
        v.fail(errno.EFAULT, "verifier internal error: bpf_dynptr_slice(_rdwr) no constant size\n")
    r0.mem_size = meta.arg_constant or 0
    r0.type = RegType.PTR_TO_MEM
    if meta.name == "bpf_dynptr_slice":
        r0.type |= MEM_RDONLY
    else:
        from pybpf.verifier.mem import BPF_WRITE

        if not v.may_access_direct_pkt_data(BPF_WRITE):
            v.fail(errno.EINVAL, "the prog does not allow writes to packet data\n")
        v.seen_direct_write = True
    if not meta.dynptr_id:
        v.fail(errno.EFAULT, "verifier internal error: no dynptr id\n")
    r0.dynptr_id = meta.dynptr_id
    if meta.dynptr_type in (DynptrType.BPF_DYNPTR_TYPE_SKB, DynptrType.BPF_DYNPTR_TYPE_XDP):
        # reg_is_dynptr_slice_pkt: packet-changing calls invalidate it (clear_all_pkt_pointers)
        v.__dict__.setdefault("pkt_dynptr_ids", set()).add(meta.dynptr_id)


__all__ = ["process_kf_arg_dynptr", "set_slice_return"]
