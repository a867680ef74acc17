"""kfunc calls: ``BPF_CALL`` with ``src_reg = BPF_PSEUDO_KFUNC_CALL`` and ``imm`` = a FUNC id.

A kfunc is an ordinary kernel function the program calls directly; unlike a helper it has
no hand-written prototype. Its signature is the function's BTF prototype in vmlinux, its
contract the ``KF_*`` flags of the id set that registered it (:mod:`pybpf.helpers.kfuncs`).
The verifier therefore types every argument from BTF (scalars, ``__k`` constants,
memory + ``__sz`` size pairs, pointers to kernel structs that must be trusted, iterators
on the stack, the program's ctx) and the return value from the BTF return type (a scalar,
read-only memory of the pointee's size, or a ``PTR_TO_BTF_ID`` that is a new reference
for ``KF_ACQUIRE`` and may be NULL for ``KF_RET_NULL``). The call sequence follows the
kernel's ``add_kfunc_call`` (at subprogram discovery: does the id name a function at
all?) and ``check_kfunc_call`` (is this program type allowed to call it, arguments,
RCU / preemption sections, release, return value, iterator fork).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybpf.btf.raw import (
    BtfComposite,
    BtfEnum,
    BtfFunc,
    BtfFuncProto,
    BtfInt,
    BtfPtr,
    BtfStruct,
    BtfType,
    BtfVoid,
)
from pybpf.helpers import kfuncs as K
from pybpf.verifier.alloc_obj import (
    ALLOC_RET_KFUNCS,
    is_kfunc_arg_alloc_obj,
    is_kfunc_arg_refcounted_kptr,
    is_kfunc_ret_null,
    process_alloc_arg,
    process_refcounted_arg,
    set_alloc_return,
)
from pybpf.verifier.async_work import (
    TASK_WORK_KFUNCS,
    WQ_SET_CALLBACK,
    check_field_map_arg,
    process_field_arg,
    push_field_callback,
)
from pybpf.verifier.graph import (
    graph_arg_kind,
    graph_insert,
    in_rbtree_lock_required_cb,
    process_graph_node,
    process_graph_root,
    push_rbtree_less_callback,
    set_graph_return,
)
from pybpf.verifier.regs import (
    MEM_ALLOC,
    MEM_PERCPU,
    MEM_RCU,
    MEM_RDONLY,
    PTR_MAYBE_NULL,
    PTR_TRUSTED,
    PTR_UNTRUSTED,
    Reg,
    RegType,
    mark_known,
    mark_not_init,
    mark_unknown,
    reg_type_str,
    set_reg_btf,
)
from pybpf.verifier.res_lock import RES_LOCK_TAKERS, mark_lock_success, push_failed_lock

if TYPE_CHECKING:
    from pybpf.btf.raw import Btf
    from pybpf.isa.insn import Insn
    from pybpf.verifier.core import Verifier

ENOTSUPP = 524
BPF_PSEUDO_KFUNC_CALL = 2
MAX_BPF_FUNC_REG_ARGS = 5
BPF_F_SLEEPABLE = 1 << 4
CALLER_SAVED = (0, 1, 2, 3, 4, 5)

# ``enum kfunc_ptr_arg_type``
(KF_ARG_PTR_TO_CTX, KF_ARG_PTR_TO_ALLOC_BTF_ID, KF_ARG_PTR_TO_REFCOUNTED_KPTR, KF_ARG_PTR_TO_DYNPTR,
 KF_ARG_PTR_TO_ITER, KF_ARG_PTR_TO_LIST_HEAD, KF_ARG_PTR_TO_LIST_NODE, KF_ARG_PTR_TO_BTF_ID,
 KF_ARG_PTR_TO_MEM, KF_ARG_PTR_TO_MEM_SIZE, KF_ARG_PTR_TO_CALLBACK, KF_ARG_PTR_TO_RB_ROOT,
 KF_ARG_PTR_TO_RB_NODE, KF_ARG_PTR_TO_NULL, KF_ARG_PTR_TO_CONST_STR, KF_ARG_PTR_TO_MAP,
 KF_ARG_PTR_TO_WORKQUEUE, KF_ARG_PTR_TO_IRQ_FLAG, KF_ARG_PTR_TO_RES_SPIN_LOCK,
 KF_ARG_PTR_TO_TASK_WORK) = range(20)

#: kfuncs whose verification needs machinery pybpf does not model yet: calling one is
#: refused with ENOTSUPP rather than guessed at (none in 6.18's graph / object API now)
UNSUPPORTED: frozenset[str] = frozenset()

#: special structs of map values a kfunc argument may point to, and their argument kinds
FIELD_ARG_KINDS = {"bpf_wq": KF_ARG_PTR_TO_WORKQUEUE, "bpf_task_work": KF_ARG_PTR_TO_TASK_WORK,
                   "bpf_res_spin_lock": KF_ARG_PTR_TO_RES_SPIN_LOCK}

#: ``kfunc_spin_allowed``: the kfuncs a program may call while holding a lock (the graph
#: API, the numeric iterator, the resilient locks themselves)
SPIN_ALLOWED_KFUNCS = frozenset({
    "bpf_list_push_front_impl", "bpf_list_push_back_impl", "bpf_list_pop_front",
    "bpf_list_pop_back", "bpf_list_front", "bpf_list_back", "bpf_rbtree_add_impl",
    "bpf_rbtree_remove", "bpf_rbtree_first", "bpf_rbtree_root", "bpf_rbtree_left",
    "bpf_rbtree_right", "bpf_refcount_acquire_impl", "bpf_iter_num_new", "bpf_iter_num_next",
    "bpf_iter_num_destroy", "bpf_res_spin_lock", "bpf_res_spin_unlock",
    "bpf_res_spin_lock_irqsave", "bpf_res_spin_unlock_irqrestore",
})

#: kfuncs that may move packet data (``is_kfunc_pkt_changing``)
PKT_CHANGING_KFUNCS = frozenset({"bpf_xdp_pull_data"})

#: XDP metadata kfuncs, callable only from device-bound (offloaded) programs
DEV_BOUND_KFUNCS = frozenset({"bpf_xdp_metadata_rx_hash", "bpf_xdp_metadata_rx_timestamp",
                              "bpf_xdp_metadata_rx_vlan_tag"})

#: struct names an argument may point to for ``KF_ARG_PTR_TO_CTX`` (``btf_is_prog_ctx_type``):
#: the program type's uapi context and its kernel counterpart.
PROG_CTX_TYPES: dict[int, tuple[str, ...]] = {
    1: ("__sk_buff", "sk_buff"), 3: ("__sk_buff", "sk_buff"), 4: ("__sk_buff", "sk_buff"),
    6: ("xdp_md", "xdp_buff"), 8: ("__sk_buff", "sk_buff"), 9: ("bpf_sock", "sock"),
    10: ("__sk_buff", "sk_buff"), 11: ("__sk_buff", "sk_buff"), 12: ("__sk_buff", "sk_buff"),
    13: ("bpf_sock_ops", "bpf_sock_ops_kern"), 14: ("__sk_buff", "sk_buff"),
    16: ("sk_msg_md", "sk_msg"), 18: ("bpf_sock_addr", "bpf_sock_addr_kern"),
    22: ("__sk_buff", "bpf_flow_dissector"), 23: ("bpf_sysctl", "bpf_sysctl_kern"),
    25: ("bpf_sockopt", "bpf_sockopt_kern"), 30: ("bpf_sk_lookup", "bpf_sk_lookup_kern"),
    32: ("bpf_nf_ctx", "bpf_nf_ctx"), 7: ("bpf_perf_event_data", "bpf_perf_event_data_kern"),
}

#: ``reg2btf_ids``: register types that stand for a kernel struct.
REG2BTF = {RegType.PTR_TO_SOCKET: "sock", RegType.PTR_TO_SOCK_COMMON: "sock_common",
           RegType.PTR_TO_TCP_SOCK: "tcp_sock"}


@dataclass
class KfuncMeta:
    """``struct bpf_kfunc_call_arg_meta``: the callee and what argument checking learned."""

    btf: Any
    func_id: int
    name: str
    flags: int
    proto: BtfFuncProto
    ref_obj_id: int = 0
    release_regno: int = 0
    r0_size: int = 0
    r0_rdonly: bool = False
    arg_constant: int | None = None
    iter_spi: int = -1
    iter_frameno: int = 0
    dynptr_id: int = 0  # meta->initialized_dynptr
    dynptr_type: int = 0
    dynptr_ref_obj_id: int = 0
    arg_prog: int = 0  # the register of a ``__prog`` argument
    map_ptr: Any = None  # meta->map.ptr: the map of a map-field argument (task work)
    map_uid: int = 0
    subprogno: int | None = None  # the callback argument's subprogram
    arg_btf: Any = None  # meta->arg_btf / arg_btf_id: an allocated object argument's type
    arg_btf_id: int = 0
    arg_owning_ref: bool = False  # bpf_refcount_acquire of an owning reference
    graph_root: Any = None  # meta->arg_list_head / arg_rbtree_root: the root's btf_field

    def iter_arg_type(self, argno: int) -> tuple[int, str, int] | None:
        """``btf_check_iter_arg``: (btf id, ``<type>`` of ``bpf_iter_<type>``, size) of the
        iterator struct argument ``argno`` points to, or None."""
        params = self.proto.params
        if argno >= len(params):
            return None
        btf = self.btf
        t = _skip(btf, params[argno].type)[0]
        if not isinstance(t, BtfPtr):
            return None
        st, sid = _skip(btf, t.type)
        if not isinstance(st, BtfStruct) or not st.name.startswith("bpf_iter_"):
            return None
        if not st.size or st.size % 8:
            return None
        return sid, st.name[len("bpf_iter_"):], st.size


def _skip(btf: Btf, tid: int) -> tuple[BtfType, int]:
    from pybpf.verifier.btf_access import skip_modifiers

    return skip_modifiers(btf, tid)


def _is_scalar(t: BtfType) -> bool:
    return isinstance(t, (BtfInt, BtfEnum))


def _btf_type_str(t: BtfType) -> str:
    from pybpf.verifier.btf_access import btf_type_str

    return btf_type_str(t)


def vmlinux_btf(v: Verifier) -> Any:
    """The kernel BTF kfuncs resolve in: the loading instance's, else the default
    instance's (a verifier run without an instance, e.g. the corpus harness)."""
    kernel = getattr(v.inp, "kernel", None)
    if kernel is None:
        from pybpf.kernel import default_kernel

        kernel = default_kernel()
    obj = getattr(kernel, "vmlinux_btf", None)
    if obj is None:
        return None
    try:
        return obj.parsed()
    except (OSError, ValueError):
        return None


def kfunc_name(v: Verifier, ins: Insn) -> str | None:
    """The log's name of a kfunc call (``call bpf_iter_num_new#64256``)."""
    if ins.off:
        return None
    btf = vmlinux_btf(v)
    if btf is None or not 0 < ins.imm < len(btf.types):
        return None
    t = btf.types[ins.imm]
    return t.name if isinstance(t, BtfFunc) else None


# -- add_kfunc_call ------------------------------------------------------------------------

def add_kfunc_calls(v: Verifier) -> None:
    """``add_kfunc_call`` for every kfunc call of the program, as ``add_subprog_and_kfunc``
    meets them: the call must name a FUNC with a prototype in the kernel's BTF."""
    first = True
    for ins in v.insns:
        if ins.code != 0x85 or ins.src != BPF_PSEUDO_KFUNC_CALL:
            continue
        if first:
            first = False
            if vmlinux_btf(v) is None:
                v.fail(ENOTSUPP, "calling kernel function is not supported without CONFIG_DEBUG_INFO_BTF\n")
            if not v.inp.gpl_compatible:
                v.fail(errno.EINVAL, "cannot call kernel function from non-GPL compatible program\n")
        if not ins.imm and not ins.off:
            continue  # refused by the fixup pass unless dead code removal drops it
        if ins.off:  # find_kfunc_desc_btf: pybpf has no module BTFs
            if ins.off < 0:
                v.verbose("negative offset disallowed for kernel module function call\n")
                err = errno.EINVAL
            elif v.inp.fd_array is None:
                v.verbose("kfunc offset > 0 without fd_array is invalid\n")
                err = errno.EPROTO
            else:
                v.verbose("invalid module BTF fd specified\n")
                err = errno.EBADF
            v.fail(err, "failed to find BTF for kernel function\n")
        btf = vmlinux_btf(v)
        fid = ins.imm & 0xFFFFFFFF
        func = btf.types[fid] if fid < len(btf.types) else None
        if not isinstance(func, BtfFunc):
            v.fail(errno.EINVAL, f"kernel btf_id {fid} is not a function\n")
        assert isinstance(func, BtfFunc)
        proto = btf.types[func.type]
        if not isinstance(proto, BtfFuncProto):
            v.fail(errno.EINVAL, f"kernel function btf_id {fid} does not have a valid func_proto\n")
        if func.name in DEV_BOUND_KFUNCS:  # bpf_dev_bound_kfunc_check: pybpf has no offload
            v.fail(errno.EINVAL, "metadata kfuncs require device-bound program\n")


def kfunc_num_params(v: Verifier, ins: Insn) -> int | None:
    """Argument count of a kfunc call for the live-register table (``get_call_summary``);
    None when the call does not resolve to a kfunc this program may call."""
    name = kfunc_name(v, ins)
    if name is None or K.kfunc_flags_for(name, v.prog_type, v.inp.expected_attach_type) is None:
        return None
    btf = vmlinux_btf(v)
    proto = btf.types[btf.types[ins.imm].type]
    return len(proto.params) if isinstance(proto, BtfFuncProto) else None


def is_iter_next_call(v: Verifier, ins: Insn) -> bool:
    """For ``check_cfg``: a kfunc call of a ``KF_ITER_NEXT`` function (a forced checkpoint)."""
    if ins.code != 0x85 or ins.src != BPF_PSEUDO_KFUNC_CALL or not ins.imm:
        return False
    name = kfunc_name(v, ins)
    if name is None:
        return False
    flags = K.kfunc_flags_for(name, v.prog_type, v.inp.expected_attach_type)
    return flags is not None and bool(flags & K.KF_ITER_NEXT)


# -- check_kfunc_call ----------------------------------------------------------------------

def fetch_kfunc_meta(v: Verifier, ins: Insn) -> KfuncMeta:
    btf = vmlinux_btf(v)
    func = btf.types[ins.imm]
    name = func.name
    flags = K.kfunc_flags_for(name, v.prog_type, v.inp.expected_attach_type)
    if flags is None:
        v.fail(errno.EACCES, f"calling kernel function {name} is not allowed\n")
    assert flags is not None
    return KfuncMeta(btf, ins.imm, name, flags, btf.types[func.type])


def check_kfunc_call(v: Verifier, ins: Insn) -> None:
    if not ins.imm:  # dead (or refused later): the log line still gets its empty "; "
        v.log.scratched_regs |= 1
        return
    meta = fetch_kfunc_meta(v, ins)
    name = meta.name
    aux = v.aux[v.insn_idx]
    aux["kfunc"] = (meta.func_id, name)
    if name == "__bpf_trap":
        v.fail(errno.EFAULT, "unexpected __bpf_trap() due to uninitialized variable?\n")
    if meta.flags & K.KF_SLEEPABLE and not v.inp.prog_flags & BPF_F_SLEEPABLE \
            and not v.state.in_sleepable:
        v.fail(errno.EACCES, f"program must be sleepable to call sleepable kfunc {name}\n")
    if name in UNSUPPORTED:
        v.fail(ENOTSUPP, f"pybpf: kernel function {name} is not supported yet\n")
    if name in RES_LOCK_TAKERS:
        push_failed_lock(v)  # the path where taking the lock fails (verifier/res_lock.py)
    check_kfunc_args(v, meta)
    push_rbtree_less_callback(v, meta)  # bpf_rbtree_add_impl (verifier/graph.py)
    if name == "bpf_session_cookie":  # the session's u64, writable
        meta.r0_size, meta.r0_rdonly = 8, False
    if name in TASK_WORK_KFUNCS or name == WQ_SET_CALLBACK:
        push_field_callback(v, meta)
    st = v.state
    rcu_lock = name == "bpf_rcu_read_lock"
    rcu_unlock = name == "bpf_rcu_read_unlock"
    sleepable = bool(meta.flags & K.KF_SLEEPABLE)
    if st.active_rcu:
        if (rcu_lock or rcu_unlock) and in_rbtree_lock_required_cb(v):
            v.fail(errno.EACCES, "Calling bpf_rcu_read_{lock,unlock} in unnecessary rbtree callback\n")
        if rcu_lock:
            v.fail(errno.EINVAL, f"nested rcu read lock (kernel function {name})\n")
        elif rcu_unlock:
            for reg in st.all_regs():
                if reg.type & MEM_RCU:
                    reg.type &= ~(MEM_RCU | PTR_MAYBE_NULL)
                    reg.type |= PTR_UNTRUSTED
            from pybpf.verifier.iters import untrust_rcu_iters

            untrust_rcu_iters(st)
            st.active_rcu = False
        elif sleepable:
            v.fail(errno.EACCES, f"kernel func {name} is sleepable within rcu_read_lock region\n")
    elif rcu_lock:
        st.active_rcu = True
    elif rcu_unlock:
        v.fail(errno.EINVAL, f"unmatched rcu read unlock (kernel function {name})\n")
    preempt_disable = name == "bpf_preempt_disable"
    preempt_enable = name == "bpf_preempt_enable"
    depth = st.active_preempt_locks
    if depth:
        if preempt_disable:
            depth += 1
        elif preempt_enable:
            depth -= 1
        elif sleepable:
            v.fail(errno.EACCES, f"kernel func {name} is sleepable within non-preemptible region\n")
    elif preempt_disable:
        depth += 1
    elif preempt_enable:
        v.fail(errno.EINVAL, f"unmatched attempt to enable preemption (kernel function {name})\n")
    if preempt_disable or preempt_enable:
        st.active_preempt_locks = depth
    if st.active_irq_id and sleepable:
        v.fail(errno.EACCES, f"kernel func {name} is sleepable within IRQ-disabled region\n")
    regs = v.regs
    if meta.release_regno and not v.release_reference(regs[meta.release_regno].ref_obj_id):
        v.fail(errno.EINVAL, f"kfunc {name}#{meta.func_id} reference has not been acquired before\n")
    graph_insert(v, meta)  # push / add: owning -> non-owning (verifier/graph.py)
    if name == "bpf_throw":
        from pybpf.verifier.exceptions import check_bpf_throw

        check_bpf_throw(v)
    for r in CALLER_SAVED:
        mark_not_init(regs[r])
    v.log.scratched_regs |= 0x3F
    set_kfunc_return(v, meta)
    if name in RES_LOCK_TAKERS:
        mark_lock_success(v)
    if name in PKT_CHANGING_KFUNCS:
        v.clear_all_pkt_pointers()
    if meta.flags & K.KF_ITER_NEXT:
        from pybpf.verifier.iters import process_iter_next_call

        process_iter_next_call(v, meta)


def set_kfunc_return(v: Verifier, meta: KfuncMeta) -> None:
    """R0 from the BTF return type (the second half of ``check_kfunc_call``)."""
    btf = meta.btf
    r0 = v.regs[0]
    t, _ = _skip(btf, meta.proto.type)
    acquire = bool(meta.flags & K.KF_ACQUIRE)
    if acquire and not (isinstance(t, BtfPtr) and isinstance(_skip(btf, t.type)[0], BtfComposite)) \
            and meta.name not in ALLOC_RET_KFUNCS:
        v.fail(errno.EINVAL, "acquire kernel function does not return PTR_TO_BTF_ID\n")
    if _is_scalar(t):
        mark_unknown(r0)
        return
    if not isinstance(t, BtfPtr):
        return  # void: R0 stays NOT_INIT
    pt, pid = _skip(btf, t.type)
    if meta.name == "bpf_cast_to_kern_ctx":
        _known_zero(r0)
        r0.type = RegType.PTR_TO_BTF_ID | PTR_TRUSTED
        names = PROG_CTX_TYPES.get(v.prog_type)
        set_reg_btf(r0, btf, btf.find(names[1]) if names else 0)
    elif meta.name == "bpf_rdonly_cast":
        tid = meta.arg_constant or 0
        ct = btf.types[tid] if 0 <= tid < len(btf.types) else None
        if ct is None:
            v.fail(errno.EINVAL, f"Unknown type ID {tid} passed to kfunc bpf_rdonly_cast\n")
        _known_zero(r0)
        if tid == 0:
            r0.type = RegType.PTR_TO_MEM | MEM_RDONLY | PTR_UNTRUSTED
            r0.mem_size = 0
        elif isinstance(ct, BtfComposite):
            r0.type = RegType.PTR_TO_BTF_ID | PTR_UNTRUSTED
            set_reg_btf(r0, btf, tid)
        else:
            v.fail(errno.EINVAL, "kfunc bpf_rdonly_cast type ID argument must be of a struct or void\n")
    elif meta.name in ("bpf_dynptr_slice", "bpf_dynptr_slice_rdwr"):
        from pybpf.verifier.kfunc_dynptr import set_slice_return

        set_slice_return(v, meta, r0)
    elif meta.name in ALLOC_RET_KFUNCS:
        set_alloc_return(v, meta, r0)
    elif meta.graph_root is not None and pt.name in ("bpf_list_node", "bpf_rb_node"):
        set_graph_return(v, meta, r0)
    elif isinstance(pt, BtfVoid):
        mark_unknown(r0)  # 'void *' is a scalar to the program
    elif not isinstance(pt, BtfComposite):
        if not meta.r0_size:
            try:
                meta.r0_size = btf.resolve_size(pid)
                meta.r0_rdonly = True
            except Exception:
                meta.r0_size = 0
        if not meta.r0_size:
            kind = _btf_type_str(pt)
            v.fail(errno.EINVAL, f"kernel function {meta.name} returns pointer type {kind} {pt.name} "
                                 "is not supported\n")
        _known_zero(r0)
        r0.type = RegType.PTR_TO_MEM | (MEM_RDONLY if meta.r0_rdonly else 0)
        r0.mem_size = meta.r0_size
        if meta.ref_obj_id:
            r0.ref_obj_id = meta.ref_obj_id
    else:
        _known_zero(r0)
        r0.type = RegType.PTR_TO_BTF_ID
        set_reg_btf(r0, btf, pid)
        if meta.flags & K.KF_ITER_NEXT:
            from pybpf.verifier.iters import get_iter_from_state, slot_iter

            it = slot_iter(get_iter_from_state(v.state, meta))
            r0.type |= MEM_RCU if it is not None and it.type_flags & MEM_RCU else PTR_TRUSTED
    ret_null = is_kfunc_ret_null(meta)
    if ret_null:
        r0.type |= PTR_MAYBE_NULL
        v.id_gen += 1
        r0.id = v.id_gen
    if acquire:
        rid = v.acquire_reference()
        if ret_null:
            r0.id = rid
        r0.ref_obj_id = rid


def _known_zero(r: Reg) -> None:
    mark_unknown(r)
    mark_known(r, 0)


# -- check_kfunc_args -----------------------------------------------------------------------

def _arg_name(btf: Btf, meta: KfuncMeta, i: int) -> str:
    return meta.proto.params[i].name


def _has_suffix(name: str, suffix: str) -> bool:
    return len(name) > len(suffix) and name.endswith(suffix)


def _register_is_null(reg: Reg) -> bool:
    return reg.type == RegType.SCALAR_VALUE and reg.var_off.mask == 0 and reg.var_off.value == 0


def _is_trusted_args(meta: KfuncMeta) -> bool:
    return bool(meta.flags & (K.KF_TRUSTED_ARGS | K.KF_RELEASE))


def check_kfunc_args(v: Verifier, meta: KfuncMeta) -> None:
    btf = meta.btf
    params = meta.proto.params
    nargs = len(params)
    if nargs > MAX_BPF_FUNC_REG_ARGS:
        v.fail(errno.EINVAL, f"Function {meta.name} has {nargs} > {MAX_BPF_FUNC_REG_ARGS} args\n")
    regs = v.regs
    i = 0
    while i < nargs:
        regno = i + 1
        reg = regs[regno]
        pname = params[i].name
        t, _ = _skip(btf, params[i].type)
        if _has_suffix(pname, "__ign"):
            i += 1
            continue
        if _has_suffix(pname, "__prog"):  # the verifier passes prog->aux (kfunc_fixup.py)
            if meta.arg_prog:
                v.fail(errno.EFAULT, "Only 1 prog->aux argument supported per-kfunc\n")
            meta.arg_prog = regno
            v.aux[v.insn_idx]["arg_prog"] = regno
            i += 1
            continue
        if _is_scalar(t):
            _check_scalar_arg(v, meta, reg, regno, pname)
            i += 1
            continue
        if not isinstance(t, BtfPtr):
            v.fail(errno.EINVAL, f"Unrecognized arg#{i} type {_btf_type_str(t)}\n")
        nullable = _has_suffix(pname, "__nullable")
        if (_is_trusted_args(meta) or meta.flags & K.KF_RCU) and \
                (_register_is_null(reg) or reg.type & PTR_MAYBE_NULL) and not nullable:
            v.fail(errno.EACCES, f"Possibly NULL pointer passed to trusted arg{i}\n")
        if reg.ref_obj_id:
            if meta.flags & K.KF_RELEASE and meta.ref_obj_id:
                v.fail(errno.EFAULT, f"verifier internal error: more than one arg with ref_obj_id R{regno} "
                                     f"{reg.ref_obj_id} {meta.ref_obj_id}\n")
            meta.ref_obj_id = reg.ref_obj_id
            if meta.flags & K.KF_RELEASE:
                meta.release_regno = regno
        assert isinstance(t, BtfPtr)
        ref_t, ref_id = _skip(btf, t.type)
        kind = get_kfunc_ptr_arg_type(v, meta, ref_t, i, nargs, nullable)
        if kind == KF_ARG_PTR_TO_NULL:
            i += 1
            continue
        if kind in (KF_ARG_PTR_TO_BTF_ID, KF_ARG_PTR_TO_ALLOC_BTF_ID) and \
                (_is_trusted_args(meta) or meta.flags & K.KF_RCU):
            from pybpf.verifier.btf_access import is_trusted_reg

            if not is_trusted_reg(reg):
                if not meta.flags & K.KF_RCU:
                    v.fail(errno.EINVAL, f"R{regno} must be referenced or trusted\n")
                if not _is_rcu_reg(reg):
                    v.fail(errno.EINVAL, f"R{regno} must be a rcu pointer\n")
        from pybpf.helpers.protos import OBJ_RELEASE

        v.check_func_arg_reg_off(reg, regno, OBJ_RELEASE if meta.flags & K.KF_RELEASE and reg.ref_obj_id else 0)
        if kind == KF_ARG_PTR_TO_CTX:
            if reg.type != RegType.PTR_TO_CTX:
                v.fail(errno.EINVAL, f"arg#{i} expected pointer to ctx, but got {reg_type_str(reg.type)}\n")
        elif kind == KF_ARG_PTR_TO_DYNPTR:
            from pybpf.verifier.kfunc_dynptr import process_kf_arg_dynptr

            process_kf_arg_dynptr(v, meta, regno, pname)
        elif kind == KF_ARG_PTR_TO_ITER:
            from pybpf.verifier.iters import process_iter_arg

            process_iter_arg(v, regno, meta)
        elif kind == KF_ARG_PTR_TO_BTF_ID:
            _check_btf_id_arg(v, meta, reg, regno, i, ref_t, ref_id)
        elif kind == KF_ARG_PTR_TO_ALLOC_BTF_ID:
            process_alloc_arg(v, meta, reg, i)
        elif kind == KF_ARG_PTR_TO_REFCOUNTED_KPTR:
            process_refcounted_arg(v, meta, reg, i)
        elif kind in (KF_ARG_PTR_TO_LIST_HEAD, KF_ARG_PTR_TO_RB_ROOT):
            assert isinstance(ref_t, BtfStruct)
            process_graph_root(v, meta, reg, regno, i, ref_t.name)
        elif kind in (KF_ARG_PTR_TO_LIST_NODE, KF_ARG_PTR_TO_RB_NODE):
            assert isinstance(ref_t, BtfStruct)
            process_graph_node(v, meta, reg, regno, i, ref_t.name)
        elif kind == KF_ARG_PTR_TO_MAP:
            _check_map_arg(v, meta, reg, regno, pname)
            check_field_map_arg(v, meta, regno)
        elif kind == KF_ARG_PTR_TO_RES_SPIN_LOCK:
            from pybpf.verifier.res_lock import process_res_spin_lock

            process_res_spin_lock(v, meta.name, regno, i)
        elif kind == KF_ARG_PTR_TO_IRQ_FLAG:
            from pybpf.verifier.irq_flags import process_irq_flag

            process_irq_flag(v, meta.name, regno, i)
        elif kind in (KF_ARG_PTR_TO_TASK_WORK, KF_ARG_PTR_TO_WORKQUEUE):
            assert isinstance(ref_t, BtfStruct)
            process_field_arg(v, ref_t.name, regno, i, meta)
        elif kind == KF_ARG_PTR_TO_CALLBACK:
            if reg.type != RegType.PTR_TO_FUNC:
                v.fail(errno.EINVAL, f"arg{i} expected pointer to func\n")
            meta.subprogno = reg.subprogno
        elif kind == KF_ARG_PTR_TO_CONST_STR:
            if reg.type != RegType.PTR_TO_MAP_VALUE:
                v.fail(errno.EINVAL, f"arg#{i} doesn't point to a const string\n")
            from pybpf.verifier.const_str import check_reg_const_str

            check_reg_const_str(v, reg, regno)
        elif kind == KF_ARG_PTR_TO_MEM:
            try:
                size = btf.resolve_size(ref_id)
            except Exception:
                v.fail(errno.EINVAL, f"arg#{i} reference type('{_btf_type_str(ref_t)} {ref_t.name}') size "
                                     "cannot be determined: -22\n")
            _check_mem_reg(v, reg, regno, size)
        elif kind == KF_ARG_PTR_TO_MEM_SIZE:
            size_reg = regs[regno + 1]
            if not _register_is_null(reg) or not _has_suffix(pname, "__opt"):
                _check_kfunc_mem_size_reg(v, size_reg, regno + 1, i)
            if _has_suffix(params[i + 1].name, "__szk"):
                if size_reg.var_off.mask:
                    v.fail(errno.EINVAL, f"R{regno + 1} must be a known constant\n")
                meta.arg_constant = size_reg.var_off.value
            i += 1
        i += 1
    if meta.flags & K.KF_RELEASE and not meta.release_regno:
        v.fail(errno.EINVAL, f"release kernel function {meta.name} expects refcounted PTR_TO_BTF_ID\n")


def _check_map_arg(v: Verifier, meta: KfuncMeta, reg: Reg, regno: int, pname: str) -> None:
    """``KF_ARG_PTR_TO_MAP`` (``__map`` suffix): a ``struct bpf_map *`` — a map pointer from
    ``ld_imm64``, or a trusted BTF pointer to a map (an iterator's); then the checks of a
    ``struct bpf_map`` BTF argument (a map value is refused there)."""
    from pybpf.verifier.btf_access import helper_btf_id, is_trusted_reg, vmlinux_btf

    if reg.type == RegType.CONST_PTR_TO_MAP:
        return
    if reg.base != RegType.PTR_TO_BTF_ID and getattr(reg, "map_ptr", None) is None:
        v.fail(errno.EINVAL, f"pointer in R{regno} isn't map pointer\n")
    if (_is_trusted_args(meta) or meta.flags & K.KF_RCU) and not is_trusted_reg(reg):
        if not meta.flags & K.KF_RCU:
            v.fail(errno.EINVAL, f"R{regno} must be referenced or trusted\n")
        if not _is_rcu_reg(reg):
            v.fail(errno.EINVAL, f"R{regno} must be a rcu pointer\n")
    btf = vmlinux_btf(v)
    ref_id = helper_btf_id(v, "bpf_map")
    if btf is None or not ref_id:
        v.fail(ENOTSUPP, f"pybpf: argument {pname} of kernel function {meta.name} is not supported yet\n")
    assert btf is not None
    _check_btf_id_arg(v, meta, reg, regno, regno - 1, btf.types[ref_id], ref_id)


def _check_scalar_arg(v: Verifier, meta: KfuncMeta, reg: Reg, regno: int, pname: str) -> None:
    if reg.type != RegType.SCALAR_VALUE:
        v.fail(errno.EINVAL, f"R{regno} is not a scalar\n")
    if _has_suffix(pname, "__k"):
        if meta.arg_constant is not None:
            v.fail(errno.EFAULT, "verifier internal error: only one constant argument permitted\n")
        if reg.var_off.mask:
            v.fail(errno.EINVAL, f"R{regno} must be a known constant\n")
        v.mark_chain_precision(regno)
        meta.arg_constant = reg.var_off.value
        return
    ret_buf = pname == "rdonly_buf_size" or pname == "rdwr_buf_size"
    if not ret_buf:
        return
    if pname == "rdonly_buf_size":
        meta.r0_rdonly = True
    if meta.r0_size:
        v.fail(errno.EINVAL, "2 or more rdonly/rdwr_buf_size parameters for kfunc")
    if reg.var_off.mask:
        v.fail(errno.EINVAL, f"R{regno} is not a const\n")
    meta.r0_size = reg.var_off.value
    if meta.r0_size > 0xFFFFFFFF:
        v.fail(errno.EINVAL, f"R{regno} rdonly/rdwr_buf_size exceeds u32 max\n")
    v.mark_chain_precision(regno)


def _is_rcu_reg(reg: Reg) -> bool:
    return bool(reg.type & MEM_RCU)


def _is_scalar_struct(v: Verifier, btf: Btf, t: BtfType, depth: int = 0) -> bool:
    """``__btf_type_is_scalar_struct``: a struct/union of scalars, of non-empty arrays of
    scalars and of such structs nested at most 3 deep."""
    from pybpf.btf.raw import BtfArray

    if not isinstance(t, BtfComposite):
        return False
    for m in t.members:
        mt, _ = _skip(btf, m.type)
        if isinstance(mt, BtfComposite):
            if depth >= 3:
                v.verbose("max struct nesting depth exceeded\n")
                return False
            if not _is_scalar_struct(v, btf, mt, depth + 1):
                return False
            continue
        if isinstance(mt, BtfArray):
            if not mt.nelems:
                return False
            mt, _ = _skip(btf, mt.type)
        if not _is_scalar(mt):
            return False
    return True


def get_kfunc_ptr_arg_type(v: Verifier, meta: KfuncMeta, ref_t: BtfType, argno: int, nargs: int,
                           nullable: bool) -> int:
    """``get_kfunc_ptr_arg_type``: what a pointer argument is, from its BTF type and name."""
    btf = meta.btf
    params = meta.proto.params
    pname = params[argno].name
    regno = argno + 1
    reg = v.regs[regno]
    if meta.name == "bpf_cast_to_kern_ctx":
        return KF_ARG_PTR_TO_CTX
    if isinstance(ref_t, BtfStruct) and ref_t.name in PROG_CTX_TYPES.get(v.prog_type, ()):
        return KF_ARG_PTR_TO_CTX
    if nullable and _register_is_null(reg):
        return KF_ARG_PTR_TO_NULL
    if is_kfunc_arg_alloc_obj(pname):  # verifier/alloc_obj.py
        return KF_ARG_PTR_TO_ALLOC_BTF_ID
    if is_kfunc_arg_refcounted_kptr(pname):
        return KF_ARG_PTR_TO_REFCOUNTED_KPTR
    graph = graph_arg_kind(ref_t)  # verifier/graph.py
    if graph is not None:
        return graph
    if isinstance(ref_t, BtfStruct) and ref_t.name == "bpf_dynptr":
        return KF_ARG_PTR_TO_DYNPTR
    if (meta.flags & K.KF_ITER_MASK and argno == 0) or _has_suffix(pname, "__iter"):
        return KF_ARG_PTR_TO_ITER
    if _has_suffix(pname, "__map"):
        return KF_ARG_PTR_TO_MAP
    field_kind = FIELD_ARG_KINDS.get(ref_t.name) if isinstance(ref_t, BtfStruct) else None
    if field_kind is not None:  # bpf_wq, bpf_task_work, bpf_res_spin_lock
        return field_kind
    if _has_suffix(pname, "__irq_flag"):
        return KF_ARG_PTR_TO_IRQ_FLAG
    if _has_suffix(pname, "__str"):
        return KF_ARG_PTR_TO_CONST_STR
    if _has_suffix(pname, "__cb"):
        v.fail(ENOTSUPP, f"pybpf: argument {pname} of kernel function {meta.name} is not supported yet\n")
    if reg.base == RegType.PTR_TO_BTF_ID or reg.base in REG2BTF:
        if not isinstance(ref_t, BtfComposite):
            v.fail(errno.EINVAL, f"kernel function {meta.name} args#{argno} pointer type "
                                 f"{_btf_type_str(ref_t)} {ref_t.name} is not supported\n")
        return KF_ARG_PTR_TO_BTF_ID
    if isinstance(ref_t, BtfFuncProto):  # is_kfunc_arg_callback
        return KF_ARG_PTR_TO_CALLBACK
    mem_size = False
    if argno + 1 < nargs:
        nxt = params[argno + 1]
        nt, _ = _skip(btf, nxt.type)
        if _is_scalar(nt) and v.regs[regno + 1].type == RegType.SCALAR_VALUE and \
                (_has_suffix(nxt.name, "__sz") or _has_suffix(nxt.name, "__szk")):
            mem_size = True
    if not _is_scalar(ref_t) and not _is_scalar_struct(v, btf, ref_t) and \
            (not isinstance(ref_t, BtfVoid) if mem_size else True):
        void = "void, " if mem_size else ""
        v.fail(errno.EINVAL, f"arg#{argno} pointer type {_btf_type_str(ref_t)} {ref_t.name} must point to "
                             f"{void}scalar, or struct with scalar\n")
    return KF_ARG_PTR_TO_MEM_SIZE if mem_size else KF_ARG_PTR_TO_MEM


def _check_btf_id_arg(v: Verifier, meta: KfuncMeta, reg: Reg, regno: int, argno: int, ref_t: BtfType,
                      ref_id: int) -> None:
    from pybpf.verifier.btf_access import btf_struct_ids_match

    unsafe = reg.type & (PTR_UNTRUSTED | MEM_ALLOC | MEM_PERCPU)
    if (reg.base != RegType.PTR_TO_BTF_ID or (unsafe and not _is_rcu_reg(reg))) and reg.base not in REG2BTF:
        base = reg.base | (reg.type & (PTR_TRUSTED | MEM_RCU | MEM_ALLOC | MEM_PERCPU))
        v.verbose(f"arg#{argno} is {reg_type_str(reg.type)} ")
        v.fail(errno.EINVAL, f"expected {reg_type_str(base)} or socket\n")
    btf = meta.btf
    if reg.base == RegType.PTR_TO_BTF_ID:
        reg_btf, reg_id = reg.btf, reg.btf_id
    else:
        reg_btf = btf
        reg_id = btf.find(REG2BTF[RegType(reg.base)])
    strict = bool(meta.flags & (K.KF_ACQUIRE | K.KF_RELEASE))
    if reg_btf is None or not btf_struct_ids_match(reg_btf, reg_id, reg.off, btf, ref_id, strict):
        reg_t = reg_btf.types[reg_id] if reg_btf is not None and 0 < reg_id < len(reg_btf.types) else None
        rname = reg_t.name if reg_t is not None else ""
        rkind = _btf_type_str(reg_t) if reg_t is not None else "UNKNOWN"
        v.fail(errno.EINVAL, f"kernel function {meta.name} args#{argno} expected pointer to "
                             f"{_btf_type_str(ref_t)} {ref_t.name} but R{regno} has a pointer to {rkind} {rname}\n")


def _check_mem_reg(v: Verifier, reg: Reg, regno: int, size: int) -> None:
    """``check_mem_reg``: ``size`` bytes behind ``reg`` must be readable and writable (a NULL
    that may be NULL is checked as if it were not)."""
    from pybpf.verifier.mem import BPF_READ, BPF_WRITE

    if _register_is_null(reg):
        return
    saved = None
    if reg.type & PTR_MAYBE_NULL:
        saved = reg.copy()
        reg.type &= ~PTR_MAYBE_NULL
    try:
        v.check_helper_mem_access(regno, size, BPF_READ, False, None)
        v.check_helper_mem_access(regno, size, BPF_WRITE, False, None)
    finally:
        if saved is not None:
            reg.assign(saved)


def _check_kfunc_mem_size_reg(v: Verifier, size_reg: Reg, regno: int, argno: int) -> None:
    from pybpf.verifier.cfg import VerifyError
    from pybpf.verifier.mem import BPF_READ, BPF_WRITE

    mem_reg = v.regs[regno - 1]
    saved = None
    if mem_reg.type & PTR_MAYBE_NULL:
        saved = mem_reg.copy()
        mem_reg.type &= ~PTR_MAYBE_NULL
    try:
        v.check_mem_size_reg(size_reg, regno, BPF_READ, True, {})
        v.check_mem_size_reg(size_reg, regno, BPF_WRITE, True, {})
    except VerifyError:
        v.verbose(f"arg#{argno} arg#{argno + 1} memory, len pair leads to invalid memory access\n")
        raise
    finally:
        if saved is not None:
            mem_reg.assign(saved)


__all__ = ["KfuncMeta", "add_kfunc_calls", "check_kfunc_call", "is_iter_next_call", "kfunc_name"]

# the post-verification rewrite registers itself with the fixup pipeline
from pybpf.verifier import kfunc_fixup as _kfunc_fixup  # noqa: E402,F401
