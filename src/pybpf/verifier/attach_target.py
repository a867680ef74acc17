"""``check_attach_btf_id`` / ``bpf_check_attach_target``: what a TRACING, LSM or EXT
program attaches to, checked before the path walk.

A BTF-attached program names its target by ``attach_btf_id`` in the attach BTF (vmlinux
unless ``attach_btf_obj_fd`` said otherwise). The target fixes the program's context:
one 8-byte slot per argument of the target's prototype (:mod:`.btf_access`). This module
finds that prototype, with the kernel's refusals and messages, and records it as an
:class:`AttachTarget` on the verifier (``v.attach``) and on ``v.prog_info.attach`` (what
``Tracing.is_valid_access`` sees as ``prog->aux->attach_func_proto``/``_name``).

Not modelled: attaching to another BPF program (``attach_prog_fd``: freplace / fentry on
BPF) beyond the "no BTF" refusals, and the kallsyms address lookup of fentry targets
(pybpf's trampolines accept any kernel function named in BTF).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pybpf.btf.raw import Btf, BtfFunc, BtfFuncProto, BtfKind, BtfPtr, BtfTypedef
from pybpf.verifier.regs import (
    MEM_RDONLY,
    PTR_MAYBE_NULL,
    PTR_TRUSTED,
    RegType,
)

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

# enum bpf_prog_type / bpf_attach_type values used here
PROG_KPROBE, PROG_TRACING, PROG_STRUCT_OPS, PROG_EXT, PROG_LSM, PROG_SYSCALL = 2, 26, 27, 28, 29, 31
TRACE_RAW_TP, TRACE_FENTRY, TRACE_FEXIT, MODIFY_RETURN, LSM_MAC, TRACE_ITER = 23, 24, 25, 26, 27, 28
LSM_CGROUP = 43
BPF_F_SLEEPABLE = 1 << 4
MAX_BPF_FUNC_ARGS = 12
BTF_TRACE_PREFIX = "btf_trace_"
BPF_ITER_FUNC_PREFIX = "bpf_iter_"

_BTF_ID_OR_NULL = RegType.PTR_TO_BTF_ID | PTR_MAYBE_NULL
_BUF_OR_NULL = RegType.PTR_TO_BUF | PTR_MAYBE_NULL

#: ``struct bpf_iter_reg.ctx_arg_info`` of each iterator target 6.18 registers, as data:
#: target -> {argument index in ``bpf_iter_<target>``'s prototype: register type}. The
#: BTF id of a PTR_TO_BTF_ID argument is the struct the prototype's parameter points to.
#: Arguments not listed (``meta``) are typed by ``btf_ctx_access`` like any traced arg.
ITER_CTX_ARGS: dict[str, dict[int, int]] = {
    "task": {1: _BTF_ID_OR_NULL | PTR_TRUSTED},
    "task_file": {1: _BTF_ID_OR_NULL, 3: _BTF_ID_OR_NULL},
    "task_vma": {1: _BTF_ID_OR_NULL, 2: _BTF_ID_OR_NULL},
    "bpf_map": {1: _BTF_ID_OR_NULL | PTR_TRUSTED},
    "bpf_map_elem": {2: _BUF_OR_NULL | MEM_RDONLY, 3: _BUF_OR_NULL},
    "bpf_prog": {1: _BTF_ID_OR_NULL},
    "bpf_link": {1: _BTF_ID_OR_NULL},
    "cgroup": {1: _BTF_ID_OR_NULL | PTR_TRUSTED},
    "sockmap": {2: _BUF_OR_NULL | MEM_RDONLY, 3: _BTF_ID_OR_NULL},
    "bpf_sk_storage_map": {2: _BTF_ID_OR_NULL, 3: _BUF_OR_NULL},
    "tcp": {1: _BTF_ID_OR_NULL | PTR_TRUSTED},
    "udp": {1: _BTF_ID_OR_NULL | PTR_TRUSTED},
    "unix": {1: _BTF_ID_OR_NULL},
    "netlink": {1: _BTF_ID_OR_NULL},
    "ipv6_route": {1: _BTF_ID_OR_NULL},
    "ksym": {1: _BTF_ID_OR_NULL},
    "kmem_cache": {1: _BTF_ID_OR_NULL | PTR_TRUSTED},
    "dmabuf": {1: _BTF_ID_OR_NULL},
}


@dataclass
class CtxArg:
    """``struct bpf_ctx_arg_aux``: a ctx slot whose register type the target fixes."""

    offset: int
    reg_type: int
    btf_id: int = 0


@dataclass
class AttachTarget:
    """``prog->aux->attach_func_proto`` / ``attach_func_name`` / ``attach_btf_trace`` /
    ``ctx_arg_info`` and the attach BTF they live in."""

    btf: Btf
    btf_obj: Any
    tname: str
    proto: BtfFuncProto | None
    btf_trace: bool = False
    #: tp_btf: the tracepoint name (``btf_trace_`` stripped), for the null-args table
    raw_tp: str = ""
    ctx_arg_info: list[CtxArg] = field(default_factory=list)


class AttachError(Exception):
    def __init__(self, err: int, msg: str = "") -> None:
        super().__init__(msg)
        self.errno = err
        self.msg = msg


def _can_be_sleepable(prog_type: int, eat: int) -> bool:
    if prog_type == PROG_TRACING:
        return eat in (TRACE_FENTRY, TRACE_FEXIT, MODIFY_RETURN, TRACE_ITER)
    return prog_type in (PROG_LSM, PROG_KPROBE, PROG_STRUCT_OPS)


VMLINUX_PATH = "/sys/kernel/btf/vmlinux"


class _HostVmlinux:
    """The host's vmlinux BTF, for verifier inputs made without a pybpf instance (the
    corpus harness): what ``kernel.vmlinux_btf`` would be."""

    _parsed: Btf | None = None

    def parsed(self) -> Btf:
        if _HostVmlinux._parsed is None:
            _HostVmlinux._parsed = Btf.from_file(VMLINUX_PATH)
        return _HostVmlinux._parsed


def _attach_btf(inp: Any) -> tuple[Any, Btf | None]:
    """The attach BTF object (``prog->aux->attach_btf``) and its parsed form."""
    prog = getattr(inp, "prog", None)
    obj = getattr(prog, "attach_btf", None) if prog is not None else None
    if obj is None and inp.attach_btf_id and inp.attach_prog is None:
        kernel = getattr(inp, "kernel", None)
        obj = getattr(kernel, "vmlinux_btf", None) if kernel is not None else _HostVmlinux()
    if obj is None:
        return None, None
    try:
        return obj, obj.parsed()
    except (OSError, ValueError):
        return obj, None


def vmlinux_btf_id(name: str, attach_type: int) -> int:
    """libbpf's ``find_vmlinux_btf_id``: the FUNC (or ``btf_trace_`` TYPEDEF) an attach
    name means for ``attach_type`` in the host's vmlinux BTF; 0 when absent."""
    prefix, kind = {TRACE_RAW_TP: (BTF_TRACE_PREFIX, BtfKind.TYPEDEF),
                    TRACE_ITER: (BPF_ITER_FUNC_PREFIX, BtfKind.FUNC),
                    LSM_MAC: ("bpf_lsm_", BtfKind.FUNC),
                    LSM_CGROUP: ("bpf_lsm_", BtfKind.FUNC)}.get(attach_type, ("", BtfKind.FUNC))
    try:
        ids = _HostVmlinux().parsed().find_all(prefix + name, kind)
    except (OSError, ValueError):
        return 0
    return ids[0] if ids else 0


def check_attach_btf_id(v: Verifier) -> None:
    """Run the kernel's attach checks; on success set ``v.attach`` (None when the program
    type has no BTF attach target)."""
    v.attach = v.prog_info.attach = None
    try:
        target = _check(v)
    except AttachError as e:
        if e.msg:
            v.fail(e.errno, e.msg)
        from pybpf.verifier.cfg import VerifyError
        raise VerifyError(e.errno, "") from None
    v.attach = v.prog_info.attach = target


def _check(v: Verifier) -> AttachTarget | None:
    inp = v.inp
    ptype, eat = inp.prog_type, inp.expected_attach_type
    sleepable = bool(inp.prog_flags & BPF_F_SLEEPABLE)
    if ptype == PROG_SYSCALL:
        if sleepable:
            return None
        raise AttachError(errno.EINVAL, "Syscall programs can only be sleepable\n")
    if sleepable and not _can_be_sleepable(ptype, eat):
        raise AttachError(errno.EINVAL, "Only fentry/fexit/fmod_ret, lsm, iter, uprobe, and "
                                        "struct_ops programs can be sleepable\n")
    if ptype not in (PROG_TRACING, PROG_LSM, PROG_EXT) or inp.attach_prog is not None:
        return None  # (a BPF program as target: not modelled, see the module docstring)
    target = bpf_check_attach_target(v, inp.attach_btf_id)
    if eat == TRACE_RAW_TP and ptype == PROG_TRACING:
        target.btf_trace = True
    elif eat == TRACE_ITER and ptype == PROG_TRACING:
        bpf_iter_prog_supported(target)
    elif ptype == PROG_LSM:
        bpf_lsm_verify_prog(v, target)
    elif ptype == PROG_TRACING and target.tname in BTF_ID_DENY:
        raise AttachError(errno.EINVAL)
    elif eat in (TRACE_FEXIT, MODIFY_RETURN) and target.tname in NORETURN_DENY:
        raise AttachError(errno.EINVAL, "Attaching fexit/fmod_ret to __noreturn functions is "
                                        "rejected.\n")
    return target


#: ``btf_id_deny``: functions the BPF trampoline itself relies on (x86-64, PREEMPT_RCU)
BTF_ID_DENY = frozenset({"migrate_disable", "migrate_enable", "preempt_count_add",
                         "preempt_count_sub", "__rcu_read_lock", "__rcu_read_unlock"})
#: ``noreturn_deny``: fexit/fmod_ret would never run
NORETURN_DENY = frozenset({"__ia32_sys_exit", "__ia32_sys_exit_group", "__kunit_abort",
                           "kunit_try_catch_throw", "__module_put_and_kthread_exit",
                           "__x64_sys_exit", "__x64_sys_exit_group", "do_exit", "do_group_exit",
                           "kthread_complete_and_exit", "kthread_exit", "make_task_dead"})
#: ``bpf_lsm_disabled_hooks``: hooks whose return value BPF must not decide
LSM_DISABLED_HOOKS = frozenset({
    "bpf_lsm_vm_enough_memory", "bpf_lsm_inode_need_killpriv", "bpf_lsm_inode_getsecurity",
    "bpf_lsm_inode_listsecurity", "bpf_lsm_inode_copy_up_xattr", "bpf_lsm_getselfattr",
    "bpf_lsm_getprocattr", "bpf_lsm_setprocattr", "bpf_lsm_key_getsecurity",
    "bpf_lsm_audit_rule_match", "bpf_lsm_xfrm_decode_session", "bpf_lsm_ismaclabel"})
#: ``untrusted_lsm_hooks``: hooks whose object arguments are not trusted (being freed or
#: not yet set up)
UNTRUSTED_LSM_HOOKS = frozenset({
    "bpf_lsm_bpf_map_free", "bpf_lsm_bpf_prog_free", "bpf_lsm_file_alloc_security",
    "bpf_lsm_file_free_security", "bpf_lsm_sk_alloc_security", "bpf_lsm_sk_free_security",
    "bpf_lsm_task_free"})


def bpf_lsm_verify_prog(v: Verifier, target: AttachTarget) -> None:
    """``bpf_lsm_verify_prog``: GPL only; a ``bpf_lsm_<hook>`` function that is enabled."""
    btf_id, name = v.inp.attach_btf_id, target.tname
    if not v.inp.gpl_compatible:
        raise AttachError(errno.EINVAL, "LSM programs must have a GPL compatible license\n")
    if name in LSM_DISABLED_HOOKS:
        raise AttachError(errno.EINVAL, f"attach_btf_id {btf_id} points to disabled hook {name}\n")
    if not name.startswith("bpf_lsm_"):
        raise AttachError(errno.EINVAL, f"attach_btf_id {btf_id} points to wrong type name "
                                        f"{name}\n")


def bpf_check_attach_target(v: Verifier, btf_id: int) -> AttachTarget:
    inp = v.inp
    ptype, eat = inp.prog_type, inp.expected_attach_type
    if not btf_id:
        raise AttachError(errno.EINVAL, "Tracing programs must provide btf_id\n")
    obj, btf = _attach_btf(inp)
    if btf is None:
        raise AttachError(errno.EINVAL, "FENTRY/FEXIT program can only be attached to another "
                                        "program annotated with BTF\n")
    if not 0 < btf_id < len(btf.types):
        raise AttachError(errno.EINVAL, f"attach_btf_id {btf_id} is invalid\n")
    t = btf.types[btf_id]
    tname = t.name
    if ptype == PROG_EXT:
        raise AttachError(errno.EINVAL, "Cannot replace kernel functions\n")
    if eat == TRACE_RAW_TP:
        if not isinstance(t, BtfTypedef):
            raise AttachError(errno.EINVAL, f"attach_btf_id {btf_id} is not a typedef\n")
        if not tname.startswith(BTF_TRACE_PREFIX):
            raise AttachError(errno.EINVAL, f"attach_btf_id {btf_id} points to wrong type name "
                                            f"{tname}\n")
        tp = tname[len(BTF_TRACE_PREFIX):]
        proto = _raw_tp_proto(btf, t, tp)
        if proto is None:
            raise AttachError(errno.EINVAL)
        return AttachTarget(btf, obj, tp, proto, raw_tp=tp)
    if eat == TRACE_ITER:
        if not isinstance(t, BtfFunc):
            raise AttachError(errno.EINVAL, f"attach_btf_id {btf_id} is not a function\n")
        proto_t = btf.types[t.type]
        if not isinstance(proto_t, BtfFuncProto):
            raise AttachError(errno.EINVAL)
        btf_distill_func_proto(btf, proto_t, tname)
        return AttachTarget(btf, obj, tname, proto_t)
    if eat not in (MODIFY_RETURN, LSM_MAC, LSM_CGROUP, TRACE_FENTRY, TRACE_FEXIT):
        raise AttachError(errno.EINVAL)
    if not isinstance(t, BtfFunc):
        raise AttachError(errno.EINVAL, f"attach_btf_id {btf_id} is not a function\n")
    proto_t = btf.types[t.type]
    if not isinstance(proto_t, BtfFuncProto):
        raise AttachError(errno.EINVAL)
    ret_size = btf_distill_func_proto(btf, proto_t, tname)
    if ret_size > 8 and eat in (TRACE_FEXIT, MODIFY_RETURN, LSM_MAC, LSM_CGROUP):
        raise AttachError(errno.EOPNOTSUPP, f"Attach to function {tname} with a >8 byte return "
                                            "value is not supported for this attach type\n")
    return AttachTarget(btf, obj, tname, proto_t)


def _raw_tp_proto(btf: Btf, typedef: BtfTypedef, tp: str) -> BtfFuncProto | None:
    """The prototype of the tracepoint's ``__bpf_trace_<template>`` function (it names the
    arguments: ``__nullable`` suffixes matter), else the typedef's own (unnamed) one.

    The kernel finds the template through kallsyms of the tracepoint's ``bpf_func``;
    pybpf looks for ``__bpf_trace_<tp>`` and otherwise a template function whose
    parameter types are the typedef's."""
    ptr = btf.types[typedef.type]
    if not isinstance(ptr, BtfPtr):
        return None
    fallback = btf.types[ptr.type]
    if not isinstance(fallback, BtfFuncProto):
        return None
    for fid in btf.find_all("__bpf_trace_" + tp, BtfKind.FUNC):
        cand = btf.types[btf.types[fid].type]  # type: ignore[attr-defined]
        if isinstance(cand, BtfFuncProto):
            return cand
    want = [p.type for p in fallback.params]
    for cand_id in _template_index(btf).get(tuple(want), ()):
        return btf.types[cand_id]  # type: ignore[return-value]
    return fallback


_TEMPLATES: dict[int, dict[tuple[int, ...], list[int]]] = {}


def _template_index(btf: Btf) -> dict[tuple[int, ...], list[int]]:
    """``__bpf_trace_*`` prototypes by parameter types (built once per BTF)."""
    idx = _TEMPLATES.get(id(btf))
    if idx is None:
        idx = {}
        for t in btf.types:
            if isinstance(t, BtfFunc) and t.name.startswith("__bpf_trace_"):
                p = btf.types[t.type]
                if isinstance(p, BtfFuncProto):
                    idx.setdefault(tuple(x.type for x in p.params), []).append(p.id)
        _TEMPLATES.clear()
        _TEMPLATES[id(btf)] = idx
    return idx


def _get_type_size(btf: Btf, type_id: int) -> tuple[int, Any]:
    """``__get_type_size``: size of an argument/return type, or -1 (with the bad type)."""
    if not type_id:
        return 0, btf.types[0]
    t = btf.resolve(type_id)
    if isinstance(t, BtfPtr):
        return 8, t
    if t.kind in (BtfKind.INT, BtfKind.ENUM, BtfKind.ENUM64, BtfKind.STRUCT, BtfKind.UNION):
        return int(getattr(t, "size", 0)), t
    return -1, t


def btf_distill_func_proto(btf: Btf, proto: BtfFuncProto, tname: str) -> int:
    """``btf_distill_func_proto``'s refusals; returns the return value's size."""
    nargs = len(proto.params)
    if nargs > MAX_BPF_FUNC_ARGS:
        raise AttachError(errno.EINVAL, f"The function {tname} has {nargs} arguments. Too many.\n")
    ret, t = _get_type_size(btf, proto.type)
    if ret < 0 or t.kind in (BtfKind.STRUCT, BtfKind.UNION):
        raise AttachError(errno.EINVAL, f"The function {tname} return type {t.kind.name} is "
                                        "unsupported.\n")
    for i, p in enumerate(proto.params):
        if i == nargs - 1 and p.type == 0:
            raise AttachError(errno.EINVAL, f"The function {tname} with variable args is "
                                            "unsupported.\n")
        size, t = _get_type_size(btf, p.type)
        if size < 0 or size > 16:
            raise AttachError(errno.EINVAL, f"The function {tname} arg{i} type {t.kind.name} is "
                                            "unsupported.\n")
        if size == 0:
            raise AttachError(errno.EINVAL, f"The function {tname} has malformed void argument.\n")
    return ret


def bpf_iter_prog_supported(target: AttachTarget) -> None:
    """``bpf_iter_prog_supported``: the function must be ``bpf_iter_<registered target>``;
    its ``ctx_arg_info`` types the target's object arguments (no message on refusal)."""
    name = target.tname
    if not name.startswith(BPF_ITER_FUNC_PREFIX):
        raise AttachError(errno.EINVAL)
    info = ITER_CTX_ARGS.get(name[len(BPF_ITER_FUNC_PREFIX):])
    if info is None or target.proto is None:
        raise AttachError(errno.EINVAL)
    btf = target.btf
    params = target.proto.params
    for arg, reg_type in info.items():
        btf_id = 0
        if arg < len(params) and reg_type & 0xFF == RegType.PTR_TO_BTF_ID:
            ptr = btf.resolve(params[arg].type)
            if isinstance(ptr, BtfPtr):
                btf_id = btf.skip_mods_and_typedefs(ptr.type)
        target.ctx_arg_info.append(CtxArg(arg * 8, reg_type, btf_id))
