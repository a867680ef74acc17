"""Global functions: verified once, on their own, against their BTF prototype.

A subprogram whose BTF ``FUNC`` has global linkage is not walked inside its callers as a
static one is. At a call site the verifier only checks that the caller's registers fit the
prototype (``btf_check_subprog_call``), logs ``Func#N ('name') is global and assumed
valid.``, clobbers R1-R5 and gives R0 an unknown scalar. After the main program,
``do_check_subprogs`` verifies each global function that some verified path called —
once, from a state built from its prototype alone (``btf_prepare_func_args``): scalars are
unknown, a context pointer is the context, any other pointer is memory of the pointee's
size that may be NULL, unless ``arg:`` decl tags (``__arg_ctx``, ``__arg_nonnull``,
``__arg_nullable``, ``__arg_trusted``, ``__arg_arena``) say otherwise. Static functions go
through the same prototype check too, silently: a mismatch only marks their BTF
*unreliable*, since the compiler may have dropped or changed their arguments.

Kernel counterparts: ``btf_prepare_func_args`` (btf.c), ``btf_check_func_arg_match``,
``btf_check_subprog_call``, the global branch of ``check_func_call``, ``do_check_common``'s
argument set-up and ``do_check_subprogs`` (verifier.c).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybpf.btf.raw import (
    BtfComposite,
    BtfDeclTag,
    BtfEnum,
    BtfFormatError,
    BtfFunc,
    BtfFuncProto,
    BtfFwd,
    BtfInt,
    BtfPtr,
    BtfStruct,
    BtfTypedef,
    BtfVoid,
)
from pybpf.verifier.btf_access import btf_type_str, is_modifier, vmlinux_btf
from pybpf.verifier.btf_info import BTF_FUNC_GLOBAL, prog_btf
from pybpf.verifier.cfg import VerifyError
from pybpf.verifier.regs import (
    MEM_RDONLY,
    PTR_MAYBE_NULL,
    PTR_TRUSTED,
    PTR_UNTRUSTED,
    Reg,
    RegType,
    mark_known,
    mark_unknown,
)

if TYPE_CHECKING:
    from pybpf.verifier.cfg import SubprogInfo
    from pybpf.verifier.core import Verifier

MAX_BPF_FUNC_REG_ARGS = 5

# ``enum bpf_arg_type`` kinds a global function's argument can have
ARG_ANYTHING = "anything"
ARG_PTR_TO_CTX = "ctx"
ARG_PTR_TO_MEM = "mem"
ARG_PTR_TO_DYNPTR = "dynptr"
ARG_PTR_TO_BTF_ID = "btf_id"
ARG_PTR_TO_ARENA = "arena"

ARG_TAG_CTX = 1 << 0
ARG_TAG_NONNULL = 1 << 1
ARG_TAG_TRUSTED = 1 << 2
ARG_TAG_NULLABLE = 1 << 3
ARG_TAG_ARENA = 1 << 4
_TAGS = {"ctx": ARG_TAG_CTX, "trusted": ARG_TAG_TRUSTED, "nonnull": ARG_TAG_NONNULL,
         "nullable": ARG_TAG_NULLABLE, "arena": ARG_TAG_ARENA}

#: ``bpf_ctx_convert``: the uapi context struct of each program type (``bpf_types.h``);
#: a typedef name maps to the struct it stands for.
_PROG_CTX_NAME: dict[int, str] = {
    1: "__sk_buff", 3: "__sk_buff", 4: "__sk_buff", 6: "xdp_md", 8: "__sk_buff", 9: "bpf_sock",
    10: "__sk_buff", 11: "__sk_buff", 12: "__sk_buff", 13: "bpf_sock_ops", 14: "__sk_buff",
    16: "sk_msg_md", 18: "bpf_sock_addr", 22: "__sk_buff", 23: "bpf_sysctl", 25: "bpf_sockopt",
    30: "bpf_sk_lookup", 32: "bpf_nf_ctx", 7: "bpf_perf_event_data", 15: "bpf_cgroup_dev_ctx",
    21: "sk_reuseport_md", 17: "bpf_raw_tracepoint_args", 24: "bpf_raw_tracepoint_args",
    2: "bpf_user_pt_regs_t",
}
#: typedef context names and the struct behind them (x86-64)
_CTX_TYPEDEF = {"bpf_user_pt_regs_t": "pt_regs"}
_PROJECTIONS = {("__sk_buff", "sk_buff"), ("xdp_md", "xdp_buff")}
PROG_KPROBE, PROG_TRACEPOINT, PROG_PERF_EVENT, PROG_TRACING = 2, 5, 7, 26
PROG_STRUCT_OPS, PROG_EXT, PROG_LSM, PROG_SYSCALL = 27, 28, 29, 31
BPF_TRACE_RAW_TP, BPF_TRACE_FENTRY, BPF_TRACE_FEXIT = 23, 24, 25
BPF_MODIFY_RETURN, BPF_TRACE_ITER = 26, 28
BPF_DYNPTR_TYPE_LOCAL = 1


@dataclass
class SubprogArg:
    """``struct bpf_subprog_arg_info``."""

    kind: str
    flags: int = 0  # PTR_MAYBE_NULL / PTR_TRUSTED / PTR_UNTRUSTED / MEM_RDONLY
    mem_size: int = 0
    btf_id: int = 0


class _PrepareError(Exception):
    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.errno = err


def subprog_is_global(v: Verifier, sub: int) -> bool:
    return v.cfg.subprogs[sub].linkage == BTF_FUNC_GLOBAL


def subprog_name(v: Verifier, sub: int) -> str:
    return v.cfg.subprogs[sub].name or "???"


# -- btf_prepare_func_args -------------------------------------------------------------------

def _skip_mods(btf: Any, tid: int) -> Any:
    t = btf[tid]
    for _ in range(32):
        if not is_modifier(t):
            break
        t = btf[t.type]
    return t


def _next_decl_tags(btf: Any, func: BtfFunc, idx: int) -> list[str]:
    """``btf_find_next_decl_tag`` over all ids: the ``arg:<tag>`` tags of parameter ``idx``."""
    out = []
    for t in btf.types:
        if isinstance(t, BtfDeclTag) and t.type == func.id and t.component_idx == idx \
                and t.name.startswith("arg:"):
            out.append(t.name[4:])
    return out


def _ctx_struct_matches(v: Verifier, tname: str) -> bool:
    """The name comparison of ``btf_is_prog_ctx_type`` (typedefs resolved, projections)."""
    ctx = _PROG_CTX_NAME.get(v.prog_type, "")
    while ctx:
        if (ctx, tname) in _PROJECTIONS or ctx == tname:
            return True
        ctx = _CTX_TYPEDEF.get(ctx, "")
    return False


def _pointee(btf: Any, ptr: BtfPtr, user_pt_regs_ok: bool) -> Any:
    """The pointee, typedefs and qualifiers skipped; ``None`` for kprobe/perf-event's own
    ``bpf_user_pt_regs_t`` typedef (always their context) when ``user_pt_regs_ok``."""
    t = btf[ptr.type]
    if user_pt_regs_ok:
        while is_modifier(t) and not isinstance(t, BtfTypedef):
            t = btf[t.type]
        if isinstance(t, BtfTypedef) and t.name == "bpf_user_pt_regs_t":
            return None
    while is_modifier(t) or isinstance(t, BtfTypedef):
        t = btf[t.type]
    return t


def btf_is_prog_ctx_type(v: Verifier, btf: Any, ptr: BtfPtr, arg: int) -> bool:
    t = _pointee(btf, ptr, v.prog_type == PROG_KPROBE)
    if t is None:
        return True
    if not isinstance(t, BtfComposite):
        return False
    if not t.name:
        v.verbose(f"arg#{arg} struct doesn't have a name\n")
        return False
    return _ctx_struct_matches(v, t.name)


def btf_validate_prog_ctx_type(v: Verifier, btf: Any, ptr: Any, arg: int) -> bool:
    """``__arg_ctx``: the pointee must be the program type's context (or ``void``)."""
    if not isinstance(ptr, BtfPtr):
        v.verbose(f"arg#{arg} type isn't a pointer\n")
        return False
    pt, eat = v.prog_type, v.inp.expected_attach_type
    t = _pointee(btf, ptr, pt in (PROG_KPROBE, PROG_PERF_EVENT))
    if t is None:
        return True
    if isinstance(t, BtfVoid):
        return True
    tname = t.name
    if not tname:
        v.verbose(f"arg#{arg} type doesn't have a name\n")
        return False
    is_struct = isinstance(t, BtfStruct)
    u64 = isinstance(t, BtfInt) and t.size == 8
    if pt == PROG_KPROBE and is_struct and tname == "pt_regs":
        return True
    if pt == PROG_PERF_EVENT and is_struct and tname == "pt_regs":
        return True
    if pt == PROG_TRACING:
        if eat == BPF_TRACE_RAW_TP and ((is_struct and tname == "bpf_raw_tracepoint_args") or u64):
            return True
        if eat == BPF_TRACE_ITER and is_struct and tname.startswith("bpf_iter__"):
            return True
        if eat in (BPF_TRACE_FENTRY, BPF_TRACE_FEXIT, BPF_MODIFY_RETURN) and u64:
            return True
    if pt in (PROG_LSM, PROG_STRUCT_OPS) and u64:
        return True
    if pt in (PROG_TRACEPOINT, PROG_SYSCALL, PROG_EXT):
        return True
    ctx = _PROG_CTX_NAME.get(pt, "")
    ctx = _CTX_TYPEDEF.get(ctx, ctx)
    if not ctx:
        v.verbose(f"arg#{arg} should be void pointer\n")
        return False
    if not is_struct or ctx != tname:
        v.verbose(f"arg#{arg} should be `struct {ctx} *`\n")
        return False
    return True


def _is_dynptr_ptr(btf: Any, ptr: BtfPtr) -> bool:
    t = _skip_mods(btf, ptr.type)
    if isinstance(t, BtfStruct) or (isinstance(t, BtfFwd) and not t.kind_flag):
        return bool(t.name == "bpf_dynptr")
    return False


def _kern_type_id(v: Verifier, btf: Any, ptr: BtfPtr, arg: int) -> int:
    """``btf_get_ptr_to_btf_id``: the one vmlinux type the pointee's name matches."""
    t = _skip_mods(btf, ptr.type)
    name = t.name.split("___")[0] if t.name else ""
    kbtf = vmlinux_btf(v)
    cands = [] if kbtf is None or not name else \
        [i for i in kbtf.find_all(name) if type(kbtf[i]) is type(t)]
    if len(cands) != 1:
        v.verbose(f"arg#{arg} reference type('{btf_type_str(t)} {t.name}') "
                  f"{'has no matches' if not cands else 'is ambiguous'}\n")
        raise _PrepareError(errno.ENOENT if not cands else errno.ESRCH)
    return cands[0]


def _resolve_mem_size(btf: Any, tid: int) -> int | None:
    """``btf_resolve_size`` of a pointee; ``None`` for a type without a size."""
    t = _skip_mods(btf, tid)
    if isinstance(t, BtfVoid | BtfFwd | BtfFunc | BtfFuncProto):
        return None
    try:
        return int(btf.resolve_size(t.id))
    except (BtfFormatError, KeyError, IndexError):
        return None


def btf_prepare_func_args(v: Verifier, sub: int) -> int:
    """Turn a subprogram's BTF prototype into argument kinds, cached on the subprogram.
    Returns 0 or a (positive) errno; a static function's problems are not logged."""
    sp = v.cfg.subprogs[sub]
    if sp.args is not None:
        return 0
    try:
        sp.args = _prepare(v, sub, sp)
    except _PrepareError as e:
        return e.errno
    return 0


def _prepare(v: Verifier, sub: int, sp: SubprogInfo) -> list[SubprogArg]:
    is_global = sp.linkage == BTF_FUNC_GLOBAL
    btf = prog_btf(v)
    if btf is None or not v.func_info:
        v.verbose("Verifier bug\n")
        raise _PrepareError(errno.EFAULT)
    btf_id = v.func_info[sub][1]
    fn = btf[btf_id]
    tname = fn.name
    if sp.unreliable:
        v.verbose(f"Verifier bug in function {tname}()\n")
        raise _PrepareError(errno.EFAULT)
    proto = btf[fn.type]
    nargs = len(proto.params)

    def refuse(err: int, msg: str) -> _PrepareError:
        v.verbose(msg)
        return _PrepareError(err)

    if nargs > MAX_BPF_FUNC_REG_ARGS:
        if not is_global:
            raise _PrepareError(errno.EINVAL)
        raise refuse(errno.EINVAL, f"Global function {tname}() with {nargs} > {MAX_BPF_FUNC_REG_ARGS} "
                                   "args. Buggy compiler.\n")
    ret = _skip_mods(btf, proto.type)
    if not isinstance(ret, BtfInt | BtfEnum):
        if not is_global:
            raise _PrepareError(errno.EINVAL)
        raise refuse(errno.EINVAL, f"Global function {tname}() doesn't return scalar. Only those are "
                                   "supported.\n")
    args: list[SubprogArg] = []
    for i, param in enumerate(proto.params):
        tags = 0
        for tag in _next_decl_tags(btf, fn, i):
            if not is_global:
                v.verbose(f"arg#{i} type tag is not supported in static functions\n")
                raise _PrepareError(errno.EOPNOTSUPP)
            if tag not in _TAGS:
                v.verbose(f"arg#{i} has unsupported set of tags\n")
                raise _PrepareError(errno.EOPNOTSUPP)
            tags |= _TAGS[tag]
        t = _skip_mods(btf, param.type)
        if isinstance(t, BtfPtr):
            if tags & ARG_TAG_CTX or btf_is_prog_ctx_type(v, btf, t, i):
                if tags & ~ARG_TAG_CTX:
                    raise refuse(errno.EINVAL, f"arg#{i} has invalid combination of tags\n")
                if tags & ARG_TAG_CTX and not btf_validate_prog_ctx_type(v, btf, t, i):
                    raise _PrepareError(errno.EINVAL)
                args.append(SubprogArg(ARG_PTR_TO_CTX))
                continue
            if _is_dynptr_ptr(btf, t):
                if tags:
                    raise refuse(errno.EINVAL, f"arg#{i} has invalid combination of tags\n")
                args.append(SubprogArg(ARG_PTR_TO_DYNPTR, MEM_RDONLY))
                continue
            if tags & ARG_TAG_TRUSTED:
                if tags & ARG_TAG_NONNULL:
                    raise refuse(errno.EINVAL, f"arg#{i} has invalid combination of tags\n")
                kid = _kern_type_id(v, btf, t, i)
                flags = PTR_TRUSTED | (PTR_MAYBE_NULL if tags & ARG_TAG_NULLABLE else 0)
                args.append(SubprogArg(ARG_PTR_TO_BTF_ID, flags, btf_id=kid))
                continue
            if tags & ARG_TAG_ARENA:
                if tags & ~ARG_TAG_ARENA:
                    raise refuse(errno.EINVAL, f"arg#{i} arena cannot be combined with any other tags\n")
                args.append(SubprogArg(ARG_PTR_TO_ARENA))
                continue
            if is_global:
                if tags & ARG_TAG_NULLABLE:
                    raise refuse(errno.EINVAL, f"arg#{i} has invalid combination of tags\n")
                pointee = _skip_mods(btf, t.type)
                size = _resolve_mem_size(btf, pointee.id)
                if size is None:
                    raise refuse(errno.EINVAL, f"arg#{i} reference type('{btf_type_str(pointee)} "
                                               f"{pointee.name}') size cannot be determined: -22\n")
                flags = 0 if tags & ARG_TAG_NONNULL else PTR_MAYBE_NULL
                args.append(SubprogArg(ARG_PTR_TO_MEM, flags, mem_size=size))
                continue
        if tags:
            raise refuse(errno.EINVAL, f"arg#{i} has pointer tag, but is not a pointer type\n")
        if isinstance(t, BtfInt | BtfEnum):
            args.append(SubprogArg(ARG_ANYTHING))
            continue
        if not is_global:
            raise _PrepareError(errno.EINVAL)
        raise refuse(errno.EINVAL, f"Arg#{i} type {btf_type_str(t)} in {tname}() is not supported yet.\n")
    return args


# -- btf_check_subprog_call ------------------------------------------------------------------

def _register_is_null(reg: Reg) -> bool:
    return reg.type == RegType.SCALAR_VALUE and reg.var_off.mask == 0 and reg.var_off.value == 0


def _check_arg(v: Verifier, i: int, arg: SubprogArg) -> int:
    """One argument of ``btf_check_func_arg_match``; 0 or a (positive) errno."""
    from pybpf.verifier import dynptr
    from pybpf.verifier.kfuncs import _check_mem_reg

    regno = i + 1
    reg = v.regs[regno]
    if arg.kind == ARG_ANYTHING:
        if reg.type != RegType.SCALAR_VALUE:
            v.verbose(f"R{regno} is not a scalar\n")
            return errno.EINVAL
    elif arg.kind == ARG_PTR_TO_CTX:
        v.check_func_arg_reg_off(reg, regno, 0)
        if reg.type != RegType.PTR_TO_CTX:
            v.verbose(f"arg#{i} expects pointer to ctx\n")
            return errno.EINVAL
    elif arg.kind == ARG_PTR_TO_MEM:
        v.check_func_arg_reg_off(reg, regno, 0)
        try:
            _check_mem_reg(v, reg, regno, arg.mem_size)
        except VerifyError:
            return errno.EINVAL
        if not arg.flags & PTR_MAYBE_NULL and reg.type & PTR_MAYBE_NULL:
            v.verbose(f"arg#{i} is expected to be non-NULL\n")
            return errno.EINVAL
    elif arg.kind == ARG_PTR_TO_ARENA:
        if reg.type not in (RegType.SCALAR_VALUE, getattr(RegType, "PTR_TO_ARENA", -1)):
            v.verbose(f"R{regno} is not a pointer to arena or scalar.\n")
            return errno.EINVAL
    elif arg.kind == ARG_PTR_TO_DYNPTR:
        from pybpf.helpers.proto import ArgType
        dynptr.process_dynptr_func(v, regno, int(ArgType.ARG_PTR_TO_DYNPTR) | MEM_RDONLY)
    elif arg.kind == ARG_PTR_TO_BTF_ID:
        if _register_is_null(reg) and arg.flags & PTR_MAYBE_NULL:
            return 0
        _check_btf_id_arg(v, reg, regno, arg)
    return 0


def _check_btf_id_arg(v: Verifier, reg: Reg, regno: int, arg: SubprogArg) -> None:
    """``check_reg_type`` for a trusted BTF argument: a trusted (or RCU) pointer to the
    named struct, or to one that starts with it."""
    from pybpf.verifier.btf_access import btf_struct_ids_match, btf_type_name, is_trusted_reg
    from pybpf.verifier.regs import reg_type_str

    t = reg.type & ~PTR_MAYBE_NULL if arg.flags & PTR_MAYBE_NULL else reg.type
    if reg.base != RegType.PTR_TO_BTF_ID or t & PTR_UNTRUSTED or t & PTR_MAYBE_NULL:
        v.fail(errno.EACCES, f"R{regno} type={reg_type_str(reg.type)} expected=ptr_, trusted_ptr_, rcu_ptr_\n")
    if not is_trusted_reg(reg):
        v.fail(errno.EACCES, f"R{regno} type={reg_type_str(reg.type)} expected=ptr_, trusted_ptr_, rcu_ptr_\n")
    kbtf = vmlinux_btf(v)
    log: list[str] = []
    if not btf_struct_ids_match(reg.btf, reg.btf_id, reg.off, kbtf, arg.btf_id, False, log):
        for line in log:
            v.verbose(line)
        v.fail(errno.EACCES, f"R{regno} is of type {btf_type_name(reg.btf, reg.btf_id)} but "
                             f"{btf_type_name(kbtf, arg.btf_id)} is expected\n")
    v.check_func_arg_reg_off(reg, regno, 0)


def btf_check_subprog_call(v: Verifier, sub: int) -> int:
    """Do the caller's R1-R5 fit subprogram ``sub``'s prototype? 0, or a (positive) errno;
    ``EFAULT`` aborts verification. A mismatch marks the function's BTF unreliable."""
    sp = v.cfg.subprogs[sub]
    if not v.func_info:
        return errno.EINVAL
    if not v.func_info[sub][1]:
        return errno.EFAULT
    if sp.unreliable:
        return errno.EINVAL
    err = btf_prepare_func_args(v, sub)
    if not err:
        assert sp.args is not None
        for i, arg in enumerate(sp.args):
            try:
                err = _check_arg(v, i, arg)
            except VerifyError as e:
                err = e.errno
            if err:
                break
    if err:
        sp.unreliable = True
    return err


# -- calls and separate verification ---------------------------------------------------------

def check_global_call(v: Verifier, sub: int, err: int) -> None:
    """The global branch of ``check_func_call``: assume the callee valid, verify it later."""
    from pybpf.verifier.calls import CALLER_SAVED
    from pybpf.verifier.regs import mark_not_init

    st = v.state
    name = subprog_name(v, sub)
    if st.active_lock is not None:
        v.fail(errno.EINVAL, "global function calls are not allowed while holding a lock,\n"
                             "use static function instead\n")
    if st.active_preempt_locks:
        v.fail(errno.EINVAL, "global function calls are not allowed with preemption disabled,\n"
                             "use static function instead\n")
    if st.active_irq_id:
        v.fail(errno.EINVAL, "global function calls are not allowed with IRQs disabled,\n"
                             "use static function instead\n")
    sp = v.cfg.subprogs[sub]
    if sp.might_sleep and (st.active_rcu or st.active_preempt_locks or st.active_irq_id
                           or not v.prog_info.sleepable):
        v.fail(errno.EINVAL, "global functions that may sleep are not allowed in non-sleepable "
                             "context,\ni.e., in a RCU/IRQ/preempt-disabled section, or in\n"
                             "a non-sleepable BPF program context\n")
    if err:
        v.fail(err, f"Caller passes invalid args into func#{sub} ('{name}')\n")
    v.verbose(f"Func#{sub} ('{name}') is global and assumed valid.\n")
    if sp.changes_pkt_data:
        v.clear_all_pkt_pointers()
    sp.called = True
    regs = st.cur.regs
    for r in CALLER_SAVED:
        mark_not_init(regs[r])
    v.log.scratched_regs |= 0x3F
    mark_unknown(regs[0])
    regs[0].subreg_def = 0


def init_subprog_args(v: Verifier, sub: int, regs: list[Reg]) -> None:
    """``do_check_common``'s entry registers of a global function, from its prototype."""
    v.log(f"Validating {subprog_name(v, sub)}() func#{sub}...\n")  # at every log level
    err = btf_prepare_func_args(v, sub)
    if err:
        raise VerifyError(err)
    sp = v.cfg.subprogs[sub]
    assert sp.args is not None
    for i, arg in enumerate(sp.args):
        reg = regs[i + 1]
        if arg.kind == ARG_PTR_TO_CTX:
            mark_unknown(reg)
            mark_known(reg, 0)
            reg.type = RegType.PTR_TO_CTX
        elif arg.kind in (ARG_ANYTHING, ARG_PTR_TO_ARENA):
            mark_unknown(reg)
        elif arg.kind == ARG_PTR_TO_DYNPTR:
            from pybpf.verifier.dynptr import mark_dynptr_cb_reg
            mark_dynptr_cb_reg(v, reg, BPF_DYNPTR_TYPE_LOCAL)
        elif arg.kind == ARG_PTR_TO_MEM:
            mark_unknown(reg)
            mark_known(reg, 0)
            reg.type = RegType.PTR_TO_MEM | (arg.flags & (PTR_MAYBE_NULL | PTR_UNTRUSTED | MEM_RDONLY))
            reg.mem_size = arg.mem_size
            if arg.flags & PTR_MAYBE_NULL:
                v.id_gen += 1
                reg.id = v.id_gen
        elif arg.kind == ARG_PTR_TO_BTF_ID:
            mark_unknown(reg)
            mark_known(reg, 0)
            reg.type = RegType.PTR_TO_BTF_ID | (arg.flags & (PTR_MAYBE_NULL | PTR_UNTRUSTED | PTR_TRUSTED))
            reg.btf = vmlinux_btf(v)
            reg.btf_id = arg.btf_id
            v.id_gen += 1
            reg.id = v.id_gen


def check_main_prototype(v: Verifier) -> None:
    """With BTF, the main program's prototype must be one context argument; otherwise its
    BTF is only marked unreliable (it matters to programs that replace it)."""
    if not v.func_info:
        return
    sp = v.cfg.subprogs[0]
    err = btf_prepare_func_args(v, 0)
    if err or sp.args is None or len(sp.args) != 1 or sp.args[0].kind != ARG_PTR_TO_CTX:
        sp.unreliable = True


def mark_subprog_effects(v: Verifier) -> None:
    """Which subprograms may change packet data, directly or through the subprograms they
    call (``mark_subprog_changes_pkt_data`` / ``merge_callee_effects``): a call to such a
    global function invalidates the caller's packet pointers."""
    from pybpf.helpers.kfuncs import KF_SLEEPABLE, kfunc_flags
    from pybpf.verifier.kfuncs import PKT_CHANGING_KFUNCS, kfunc_name

    subs = v.cfg.subprogs
    callees: list[set[int]] = [set() for _ in subs]
    for i, ins in enumerate(v.insns):
        if ins.code != 0x85:
            continue
        s = v.cfg.subprog_of(i)
        if ins.src == 0:
            if ins.imm in v.PKT_CHANGING:
                subs[s].changes_pkt_data = True
            proto = v.get_helper_proto(ins.imm) if 0 <= ins.imm < 1 << 16 else None
            if proto is not None and proto.might_sleep:
                subs[s].might_sleep = True
        elif ins.src == 2:
            name = kfunc_name(v, ins)
            if name in PKT_CHANGING_KFUNCS:
                subs[s].changes_pkt_data = True
            if name and (kfunc_flags(name, v.prog_type) or 0) & KF_SLEEPABLE:
                subs[s].might_sleep = True
        elif ins.src == 1:
            callees[s].add(v.cfg.subprog_of(i + ins.imm + 1))
    changed = True
    while changed:
        changed = False
        for s, sp in enumerate(subs):
            for c in callees[s]:
                if subs[c].changes_pkt_data and not sp.changes_pkt_data:
                    sp.changes_pkt_data = changed = True
                if subs[c].might_sleep and not sp.might_sleep:
                    sp.might_sleep = changed = True


def subprogs_to_verify(v: Verifier) -> list[int]:
    """Global functions called by verified code and not verified yet, in order."""
    return [i for i, sp in enumerate(v.cfg.subprogs)
            if i and sp.linkage == BTF_FUNC_GLOBAL and sp.called and not sp.verified]
