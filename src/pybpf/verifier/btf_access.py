"""BTF-typed pointers (``PTR_TO_BTF_ID``): where they come from and what reading through
them yields — ``btf_ctx_access``, ``btf_struct_walk``/``btf_struct_access``,
``check_ptr_to_btf_access`` and ``btf_struct_ids_match`` of Linux 6.18.

A tracing program's ctx is the traced function's arguments, one 8-byte slot each. The
attach target's BTF prototype (:mod:`.attach_target`) says what each slot holds: a
pointer to a struct becomes ``PTR_TO_BTF_ID`` of that struct, so the program may read the
kernel object's members. Such reads are not bounds-checked memory accesses in the usual
sense: the JIT turns them into ``BPF_PROBE_MEM`` loads that yield 0 instead of faulting,
so the verifier only needs the *type* to be right — which member is read, whether the
result is a scalar or another typed pointer, and how far that pointer is trusted
(``PTR_TRUSTED``, ``MEM_RCU``, ``PTR_UNTRUSTED``) for helpers and kfuncs taking it.

The trust allow-lists (``task_struct__safe_rcu`` ...) are read from the BTF itself, where
the kernel's ``BTF_TYPE_SAFE_*`` declarations put them, so they are 6.18's by construction.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.btf.raw import (
    Btf,
    BtfArray,
    BtfComposite,
    BtfEnum,
    BtfFuncProto,
    BtfInt,
    BtfKind,
    BtfPtr,
    BtfType,
    BtfTypeTag,
)
from pybpf.verifier.log import tnum_str
from pybpf.verifier.regs import (
    BASE_MASK,
    MEM_ALLOC,
    MEM_PERCPU,
    MEM_RCU,
    MEM_RDONLY,
    MEM_USER,
    NON_OWN_REF,
    PTR_MAYBE_NULL,
    PTR_TRUSTED,
    PTR_UNTRUSTED,
    Reg,
    RegType,
    mark_known,
    mark_unknown,
)

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

BPF_READ, BPF_WRITE = 1, 2
TRACE_RAW_TP, TRACE_FEXIT, MODIFY_RETURN, LSM_MAC, TRACE_ITER, LSM_CGROUP = 23, 25, 26, 27, 28, 43
PROG_TRACING, PROG_STRUCT_OPS, PROG_LSM = 26, 27, 29
MAX_BPF_FUNC_REG_ARGS = 5
#: ``BPF_REG_TRUSTED_MODIFIERS``
TRUSTED_MODIFIERS = MEM_ALLOC | PTR_TRUSTED | NON_OWN_REF

WALK_SCALAR, WALK_PTR, WALK_PTR_UNTRUSTED, WALK_STRUCT = 0, 1, 2, 3

#: ``raw_tp_null_args``: tracepoints that may pass NULL (nibble bit 0x1 of argument i at
#: bit 4*i) or an ERR_PTR (0x2) in a pointer argument. 6.18's list (checked for every
#: vmlinux tracepoint against the live kernel: no ``sched_process_wait``/``signal_*``
#: entries any more, the xfs/hugetlbfs/tcp ones added).
RAW_TP_NULL_ARGS: dict[str, int] = {
    "sched_pi_setprio": 0x10, "sched_stick_numa": 0x100,
    "sched_swap_numa": 0x100, "afs_make_fs_call": 0x10, "afs_make_fs_calli": 0x10,
    "afs_make_fs_call1": 0x10, "afs_make_fs_call2": 0x10, "afs_protocol_error": 0x1,
    "afs_flock_ev": 0x10, "cachefiles_lookup": 0x1 | 0x200, "cachefiles_unlink": 0x1,
    "cachefiles_rename": 0x1, "cachefiles_prep_read": 0x1, "cachefiles_mark_active": 0x1,
    "cachefiles_mark_failed": 0x1, "cachefiles_mark_inactive": 0x1,
    "cachefiles_vfs_error": 0x1, "cachefiles_io_error": 0x1, "cachefiles_ondemand_open": 0x1,
    "cachefiles_ondemand_copen": 0x1, "cachefiles_ondemand_close": 0x1,
    "cachefiles_ondemand_read": 0x1, "cachefiles_ondemand_cread": 0x1,
    "cachefiles_ondemand_fd_write": 0x1, "cachefiles_ondemand_fd_release": 0x1,
    "ext4_mballoc_discard": 0x10, "ext4_mballoc_free": 0x10, "fib_table_lookup": 0x100,
    "posix_lock_inode": 0x10, "fcntl_setlk": 0x10, "locks_remove_posix": 0x10,
    "flock_lock_inode": 0x10, "break_lease_noblock": 0x10, "break_lease_block": 0x10,
    "break_lease_unblock": 0x10, "generic_delete_lease": 0x10, "time_out_leases": 0x10,
    "host1x_cdma_push_gather": 0x10000, "mm_khugepaged_scan_pmd": 0x10,
    "mm_collapse_huge_page_isolate": 0x1, "mm_khugepaged_scan_file": 0x10,
    "mm_khugepaged_collapse_file": 0x10, "mm_page_alloc": 0x1, "mm_page_pcpu_drain": 0x1,
    "mm_page_alloc_zone_locked": 0x1, "netfs_failure": 0x10, "device_pm_callback_start": 0x10,
    "qdisc_dequeue": 0x1000, "rxrpc_recvdata": 0x1, "rxrpc_resend": 0x10, "kfree_skb": 0x1000,
    "xs_stream_read_data": 0x1, "xprt_reserve_cong": 0x10, "xprt_release_cong": 0x10,
    "xprt_get_cong": 0x10, "xprt_put_cong": 0x10, "tcp_send_reset": 0x11,
    "tegra_dma_tx_status": 0x100, "tmigr_update_events": 0x1, "writeback_dirty_folio": 0x10,
    "folio_wait_writeback": 0x10, "mr_integ_alloc": 0x2000, "bpf_testmod_test_read": 0x0,
    # later additions (6.18's live behaviour): hugetlbfs, tcp, xfs
    "hugetlbfs_alloc_inode": 0x10, "tcp_sendmsg_locked": 0x100,
    **dict.fromkeys(("xfs_inodegc_flush", "xfs_inodegc_push", "xfs_inodegc_start",
                     "xfs_inodegc_stop", "xfs_inodegc_queue", "xfs_inodegc_throttle",
                     "xfs_fs_sync_fs", "xfs_blockgc_start", "xfs_blockgc_stop",
                     "xfs_blockgc_worker", "xfs_blockgc_flush_all", "xfs_defer_create_intent",
                     "xfs_defer_cancel_list", "xfs_defer_pending_finish",
                     "xfs_defer_pending_abort", "xfs_defer_relog_intent",
                     "xfs_defer_isolate_paused", "xfs_defer_item_pause",
                     "xfs_defer_item_unpause", "xfs_defer_add_item", "xfs_defer_cancel_item",
                     "xfs_defer_finish_item"), 0x1),
    "xfs_map_blocks_found": 0x10000, "xfs_map_blocks_alloc": 0x10000,
    "xfs_btree_updkeys": 0x100, "xfs_btree_overlapped_query_range": 0x100,
    "xfs_ioc_free_eofblocks": 0x10, "xfs_blockgc_free_space": 0x10,
}

_MODIFIER_KINDS = ("BtfTypedef", "BtfVolatile", "BtfConst", "BtfRestrict", "BtfTypeTag")


class AccessError(Exception):
    """A refusal of ``btf_struct_walk``: errno (the message was logged already)."""

    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.errno = err


# -- small BTF predicates, named as in btf.c ---------------------------------------------

def btf_type_str(t: BtfType) -> str:
    name = t.kind.name
    return "UNKNOWN" if name == "UNKN" else name


def is_modifier(t: BtfType) -> bool:
    return type(t).__name__ in _MODIFIER_KINDS


def skip_modifiers(btf: Btf, type_id: int) -> tuple[BtfType, int]:
    """``btf_type_skip_modifiers``: the type and its id after typedefs and qualifiers."""
    t = btf.types[type_id]
    for _ in range(32):
        if not is_modifier(t):
            break
        type_id = t.type  # type: ignore[attr-defined]
        t = btf.types[type_id]
    return t, type_id


def is_struct(t: BtfType) -> bool:
    """``btf_type_is_struct``: a struct or a union."""
    return isinstance(t, BtfComposite)


def is_small_int(t: BtfType) -> bool:
    return isinstance(t, BtfInt) and t.size <= 8


def anon(name: str) -> str:
    """``__btf_name_by_offset``: messages call a nameless type ``(anon)``."""
    return name or "(anon)"


def btf_type_name(btf: Any, type_id: int) -> str:
    """``btf_type_name``: the (possibly empty) name of a type, for ``ptr_<name>``."""
    try:
        return str(btf.types[type_id].name)
    except (AttributeError, IndexError, TypeError):
        return ""


def is_kernel_btf(btf: Any, v: Verifier) -> bool:
    """``btf_is_kernel``: vmlinux (or a module) rather than a program's own BTF."""
    obj = getattr(getattr(v.inp, "kernel", None), "vmlinux_btf", None)
    try:
        return obj is not None and obj.parsed() is btf
    except (OSError, ValueError):
        return False


# -- btf_ctx_access ---------------------------------------------------------------------

def _slot_size(btf: Btf, type_id: int) -> int:
    t, _ = skip_modifiers(btf, type_id)
    if isinstance(t, BtfPtr):
        return 8
    return (int(getattr(t, "size", 0)) + 7) // 8 * 8


def get_ctx_arg_idx(btf: Btf, proto: BtfFuncProto | None, off: int) -> int:
    """``get_ctx_arg_idx``: which argument (or the return value, index ``nr_args``) the
    ctx offset falls in; arguments wider than 8 bytes (structs) span several slots."""
    if proto is None:
        return off // 8
    offset = 0
    for i, p in enumerate(proto.params):
        offset += _slot_size(btf, p.type)
        if off < offset:
            return i
    offset += _slot_size(btf, proto.type)
    if off < offset:
        return len(proto.params)
    return len(proto.params) + 1


def prog_args_trusted(prog: Any) -> bool:
    eat = getattr(prog, "expected_attach_type", 0)
    ptype = getattr(prog, "prog_type", 0)
    if ptype == PROG_TRACING:
        return eat in (TRACE_RAW_TP, TRACE_ITER)
    if ptype == PROG_LSM:  # bpf_lsm_is_trusted
        from pybpf.verifier.attach_target import UNTRUSTED_LSM_HOOKS
        target = getattr(prog, "attach", None)
        return target is not None and target.tname not in UNTRUSTED_LSM_HOOKS
    return ptype == PROG_STRUCT_OPS


def btf_ctx_access(off: int, size: int, write: bool, prog: Any, info: dict[str, Any]) -> bool:
    """Type the ctx slot at ``off`` of a BTF-attached program (``info`` gets ``reg_type``,
    ``btf``, ``btf_id``; log lines go to ``info["log"]``)."""
    target = getattr(prog, "attach", None)
    log: list[str] = info.setdefault("log", [])
    if target is None:
        return True  # no attach_func_proto: MAX_BPF_FUNC_REG_ARGS u64 arguments
    btf, proto, tname = target.btf, target.proto, target.tname
    if off % 8:
        log.append(f"func '{tname}' offset {off} is not multiple of 8\n")
        return False
    arg = get_ctx_arg_idx(btf, proto, off)
    params = list(proto.params) if proto is not None else []
    nr_args = len(params) if proto is not None else MAX_BPF_FUNC_REG_ARGS
    if target.btf_trace:
        params = params[1:]
        nr_args -= 1
    if arg > nr_args:
        log.append(f"func '{tname}' doesn't have {arg + 1}-th argument\n")
        return False
    eat = getattr(prog, "expected_attach_type", 0)
    if arg == nr_args:
        if eat in (LSM_MAC, LSM_CGROUP, TRACE_FEXIT):
            if eat == LSM_MAC:
                info["is_retval"] = True
            if proto is None:
                return True
            t = btf.types[proto.type]
        elif eat == MODIFY_RETURN:
            if proto is None:
                return False
            t, _ = skip_modifiers(btf, proto.type)
            if not is_small_int(t):
                log.append(f"ret type {btf_type_str(t)} not allowed for fmod_ret\n")
                return False
        else:
            log.append(f"func '{tname}' doesn't have {arg + 1}-th argument\n")
            return False
    else:
        if proto is None:
            return True
        t = btf.types[params[arg].type]
    t, _ = skip_modifiers(btf, t.id)
    if is_small_int(t) or isinstance(t, (BtfEnum, BtfComposite)):
        return True  # a scalar (structs and unions passed by value too)
    if not isinstance(t, BtfPtr):
        log.append(f"func '{tname}' arg{arg} '{anon(t.name)}' has type {btf_type_str(t)}. "
                   "Only pointer access is allowed\n")
        return False
    if size != 8:
        log.append(f"func '{tname}' size {size} must be 8\n")
        return False
    for ca in target.ctx_arg_info:
        if ca.offset == off and ca.reg_type & BASE_MASK == RegType.PTR_TO_BUF and \
                ca.reg_type & PTR_MAYBE_NULL:
            info["reg_type"] = ca.reg_type
            return True
    pointee, pointee_id = skip_modifiers(btf, t.type)
    if pointee_id == 0:  # (const) void *: a scalar, no further walking
        return True
    if isinstance(pointee, BtfInt):
        return True  # is_int_ptr
    for ca in target.ctx_arg_info:
        if ca.offset == off:
            if not ca.btf_id:
                log.append(f"invalid btf_id for context argument offset {off}\n")
                return False
            info["reg_type"] = ca.reg_type
            info["btf"] = btf
            info["btf_id"] = ca.btf_id
            return True
    reg_type: int = RegType.PTR_TO_BTF_ID
    if prog_args_trusted(prog):
        reg_type |= PTR_TRUSTED
    if arg < len(params) and _name_has_suffix(params[arg].name, "__nullable"):
        reg_type |= PTR_MAYBE_NULL
    ptr_err = False
    if eat == TRACE_RAW_TP:
        mask = RAW_TP_NULL_ARGS.get(target.raw_tp)
        if mask is not None:
            if mask & (0x1 << (arg * 4)):
                reg_type |= PTR_MAYBE_NULL
            if mask & (0x2 << (arg * 4)):
                ptr_err = True
    btf_id = t.type
    tt = btf.types[btf_id]
    if isinstance(tt, BtfTypeTag):
        if tt.name == "user":
            reg_type |= MEM_USER
        if tt.name == "percpu":
            reg_type |= MEM_PERCPU
    while is_modifier(tt):
        btf_id = tt.type
        tt = btf.types[btf_id]
    if not is_struct(tt):
        log.append(f"func '{tname}' arg{arg} type {btf_type_str(tt)} is not a struct\n")
        return False
    log.append(f"func '{tname}' arg{arg} has btf_id {btf_id} type {btf_type_str(tt)} '{anon(tt.name)}'\n")
    info["reg_type"] = reg_type
    info["btf"] = btf
    info["btf_id"] = btf_id
    if ptr_err:
        log.append(f"marking pointer arg{arg} as scalar as it may encode error")
        info["reg_type"] = RegType.SCALAR_VALUE
    return True


def _name_has_suffix(name: str, suffix: str) -> bool:
    return len(name) > len(suffix) and name.endswith(suffix)


# -- btf_struct_walk / btf_struct_access ------------------------------------------------

def _resolve_size(btf: Btf, t: BtfType, mid: int) -> tuple[BtfType, int, BtfType, int, int, int]:
    """``__btf_resolve_size``: (type or outermost array, total size, element type,
    element id, total element count, id of the type after modifiers)."""
    array: BtfArray | None = None
    outer: BtfArray | None = None
    nelems = 1
    for _ in range(32):
        if isinstance(t, BtfPtr):
            size = 8
            break
        if isinstance(t, (BtfInt, BtfComposite, BtfEnum)) or t.kind.name == "FLOAT":
            size = int(t.size)  # type: ignore[attr-defined]
            break
        if is_modifier(t):
            mid = t.type  # type: ignore[attr-defined]
            t = btf.types[mid]
            continue
        if isinstance(t, BtfArray):
            if outer is None:
                outer = t
            array = t
            nelems *= t.nelems
            t = btf.types[t.type]
            continue
        raise ValueError("no size")
    else:
        raise ValueError("too deep")
    elem_id = array.type if array is not None else 0
    return (outer if outer is not None else t), nelems * size, t, elem_id, nelems, mid


class _Walk:
    """Results of one ``btf_struct_walk`` besides its return value."""

    def __init__(self) -> None:
        self.next_btf_id = 0
        self.flag = 0
        self.field_name = ""


def btf_struct_walk(log: list[str], btf: Btf, t: BtfType, off: int, size: int, w: _Walk,
                    walk_flex_arrays: bool = True) -> int:
    off &= 0xFFFFFFFF  # compared with the u32 sizes and offsets: a negative one is huge
    while True:  # the kernel's "goto again"
        if is_modifier(t):
            t, _ = skip_modifiers(btf, t.type)  # type: ignore[attr-defined]
        tname = anon(t.name)
        if not isinstance(t, BtfComposite):
            log.append(f"Type '{tname}' is not a struct\n")
            raise AccessError(errno.EINVAL)
        vlen = len(t.members)
        if t.kind.name == "UNION" and vlen != 1 and not w.flag & PTR_UNTRUSTED:
            w.flag |= PTR_UNTRUSTED  # walking unions yields untrusted pointers
        if off + size > t.size:
            nt = _flex_array_elem(btf, t, off, walk_flex_arrays)
            if nt is None:
                log.append(f"access beyond struct {tname} at off {off} size {size}\n")
                raise AccessError(errno.EACCES)
            if nt == "int":
                return WALK_SCALAR
            elem, moff = nt
            off = (off - moff) % elem.size
            t = elem
            continue
        again = False
        for m in t.members:
            moff = m.bit_offset // 8
            if off + size <= moff:
                break
            if m.bitfield_size:
                end_bit = m.bit_offset + m.bitfield_size
                if off <= moff and (end_bit + 7) // 8 <= off + size:
                    return WALK_SCALAR
                continue
            if off < moff:
                break
            mname = anon(m.name)
            try:
                mtype, msize, elem_type, elem_id, total, mid = _resolve_size(
                    btf, btf.types[m.type], m.type)
            except ValueError:
                log.append(f"field {mname} doesn't have size\n")
                raise AccessError(errno.EFAULT) from None
            mtrue_end = moff + msize
            if off >= mtrue_end:
                continue
            if isinstance(mtype, BtfArray):
                if moff == mtrue_end:
                    continue
                msize //= total
                moff += (off - moff) // msize * msize
                mtype = elem_type
                mid = elem_id
            if isinstance(mtype, BtfComposite):
                t = mtype
                if off == moff:
                    w.next_btf_id = mid
                    return WALK_STRUCT
                off -= moff
                again = True
                break
            if isinstance(mtype, BtfPtr):
                if msize != size or off != moff:
                    log.append(f"cannot access ptr member {mname} with moff {moff} in struct "
                               f"{tname} with off {off} size {size}\n")
                    raise AccessError(errno.EACCES)
                tmp_flag = 0
                tag = btf.types[mtype.type]
                if isinstance(tag, BtfTypeTag):
                    tmp_flag = {"user": MEM_USER, "percpu": MEM_PERCPU, "rcu": MEM_RCU}.get(tag.name, 0)
                stype, sid = skip_modifiers(btf, mtype.type)
                if is_struct(stype):
                    w.next_btf_id = sid
                    w.flag |= tmp_flag
                    w.field_name = m.name
                    return WALK_PTR
                return WALK_PTR_UNTRUSTED  # to anything else: untyped read-only memory
            if off + size > mtrue_end and not w.flag & PTR_UNTRUSTED:
                log.append(f"access beyond the end of member {mname} (mend:{mtrue_end}) in "
                           f"struct {tname} with off {off} size {size}\n")
                raise AccessError(errno.EACCES)
            return WALK_SCALAR
        if again:
            continue
        log.append(f"struct {tname} doesn't have field at offset {off}\n")
        raise AccessError(errno.EINVAL)


def _flex_array_elem(btf: Btf, t: BtfComposite, off: int, walk_flex: bool) -> Any:
    """An access past the struct's end may land in a trailing flexible array of ints
    ("int") or structs ((element type, array offset)); None: out of bounds."""
    if not walk_flex or not t.members:
        return None
    m = t.members[-1]
    mtype, _ = skip_modifiers(btf, m.type)
    if not isinstance(mtype, BtfArray) or mtype.nelems != 0:
        return None
    moff = m.bit_offset // 8
    if off < moff:
        return None
    elem, _ = skip_modifiers(btf, mtype.type)
    if isinstance(elem, BtfInt):
        return "int"
    if not is_struct(elem) or not elem.size:  # type: ignore[attr-defined]
        return None
    return elem, moff


def btf_struct_access(log: list[str], reg: Reg, off: int, size: int, w: _Walk) -> int:
    """Returns SCALAR_VALUE, PTR_TO_BTF_ID (``w`` has the pointee and flags) or, for a
    pointer to a non-struct, PTR_TO_MEM (read-only, untrusted, size 0: read with probes)."""
    btf = reg.btf
    alloc = bool(reg.type & MEM_ALLOC)
    t = btf.types[reg.btf_id]
    inner = _Walk()
    while True:
        res = btf_struct_walk(log, btf, t, off, size, inner, not alloc)
        if res == WALK_PTR:
            if alloc:
                return RegType.SCALAR_VALUE
            w.next_btf_id, w.flag, w.field_name = inner.next_btf_id, inner.flag, inner.field_name
            return RegType.PTR_TO_BTF_ID
        if res == WALK_PTR_UNTRUSTED:
            w.flag = MEM_RDONLY | PTR_UNTRUSTED
            return RegType.PTR_TO_MEM
        if res == WALK_SCALAR:
            return RegType.SCALAR_VALUE
        t = btf.types[inner.next_btf_id]
        off = 0


def btf_types_are_same(btf1: Any, id1: int, btf2: Any, id2: int) -> bool:
    if id1 != id2:
        return False
    if btf1 is btf2:
        return True
    try:
        return btf1.types[id1] is btf2.types[id2]
    except (AttributeError, IndexError):
        return False


def btf_struct_ids_match(btf: Any, type_id: int, off: int, need_btf: Any, need_id: int,
                         strict: bool = False, log: list[str] | None = None) -> bool:
    """Is the object at ``off`` of ``type_id`` a ``need_id`` (itself or a first member,
    recursively)? The walk's refusals go to ``log``, as the kernel's go to the verifier
    log."""
    if log is None:
        log = []
    if off == 0 and btf_types_are_same(btf, type_id, need_btf, need_id):
        return True
    if strict:
        return False
    while True:
        w = _Walk()
        try:
            res = btf_struct_walk(log, btf, btf.types[type_id], off, 1, w, True)
        except (AccessError, IndexError):
            return False
        if res != WALK_STRUCT:
            return False
        type_id = w.next_btf_id
        if btf_types_are_same(btf, type_id, need_btf, need_id):
            return True
        off = 0


# -- trust of the loaded pointer --------------------------------------------------------

def nested_type_is_trusted(reg: Reg, field_name: str, btf_id: int, suffix: str) -> bool:
    """``btf_nested_type_is_trusted``: is ``field_name`` (pointing to ``btf_id``) listed in
    the ``<struct><suffix>`` allow-list type of the walked struct?"""
    btf = reg.btf
    walk_type = btf.types[reg.btf_id]
    safe_name = f"{walk_type.name}{suffix}"
    if len(safe_name) >= 64:
        return False
    for sid in btf.find_all(safe_name, walk_type.kind):
        safe = btf.types[sid]
        for m in getattr(safe, "members", ()):
            mt = btf.types[m.type]
            if not isinstance(mt, BtfPtr):
                continue
            _, mid = skip_modifiers(btf, mt.type)
            if btf_id == mid and field_name == m.name:
                return True
        break
    return False


def is_trusted_reg(reg: Reg) -> bool:
    if reg.ref_obj_id:
        return True
    if reg.base in (RegType.PTR_TO_SOCKET, RegType.PTR_TO_SOCK_COMMON, RegType.PTR_TO_TCP_SOCK) \
            and not (reg.type & ~BASE_MASK & ~TRUSTED_MODIFIERS):
        return True
    flags = reg.type & ~BASE_MASK
    return bool(flags & TRUSTED_MODIFIERS) and not flags & ~TRUSTED_MODIFIERS


def in_rcu_cs(v: Verifier) -> bool:
    st = v.state
    return bool(getattr(st, "active_rcu", False) or st.active_lock is not None
                or not getattr(v.prog_info, "sleepable", False))


def clear_trusted_flags(flag: int) -> int:
    return flag & ~(TRUSTED_MODIFIERS | MEM_RCU)


def logged_struct_access(v: Verifier, reg: Reg, off: int, size: int) -> tuple[int, _Walk]:
    """:func:`btf_struct_access` with its messages in the verifier log; a refused access
    fails the check with its errno and last message."""
    log: list[str] = []
    w = _Walk()
    try:
        ret = btf_struct_access(log, reg, off, size, w)
    except AccessError as e:
        for line in log:
            v.verbose(line)
        from pybpf.verifier.cfg import VerifyError
        raise VerifyError(e.errno, log[-1] if log else "") from None
    for line in log:
        v.verbose(line)
    return ret, w


def check_ptr_to_btf_access(v: Verifier, regno: int, off: int, size: int, atype: int,
                            value_regno: int) -> None:
    regs = v.regs
    reg = regs[regno]
    btf = reg.btf
    if btf is None:
        v.fail(errno.EACCES, f"R{regno} invalid mem access 'ptr_'\n")
    tname = btf_type_name(btf, reg.btf_id)
    if not v.allow_ptr_leaks:
        v.fail(errno.EPERM, f"'struct {tname}' access is allowed only to CAP_PERFMON and "
                            "CAP_SYS_ADMIN\n")
    if not v.inp.gpl_compatible and is_kernel_btf(btf, v):
        v.fail(errno.EINVAL, f"Cannot access kernel 'struct {tname}' from non-GPL compatible "
                             "program\n")
    if off < 0:
        v.fail(errno.EACCES, f"R{regno} is ptr_{tname} invalid negative access: off={off}\n")
    if reg.var_off.mask != 0 or reg.var_off.value:
        v.fail(errno.EACCES, f"R{regno} is ptr_{tname} invalid variable offset: off={off}, "
                             f"var_off={tnum_str(reg.var_off)}\n")
    if reg.type & MEM_USER:
        v.fail(errno.EACCES, f"R{regno} is ptr_{tname} access user memory: off={off}\n")
    if reg.type & MEM_PERCPU:
        v.fail(errno.EACCES, f"R{regno} is ptr_{tname} access percpu memory: off={off}\n")
    if atype != BPF_READ and reg.type & PTR_UNTRUSTED:
        v.fail(errno.EACCES, "only read is supported\n")
    if atype != BPF_READ and not (reg.type & MEM_ALLOC and not reg.type & PTR_UNTRUSTED):
        v.fail(errno.EACCES, "only read is supported\n")
    if reg.type & MEM_ALLOC:  # the object's special fields (verifier/alloc_obj.py)
        from pybpf.verifier.alloc_obj import check_alloc_field_access

        bad = check_alloc_field_access(reg, off, size)
        if bad:
            v.fail(errno.EACCES, bad)
    ret, w = logged_struct_access(v, reg, off, size)
    flag = w.flag
    if ret != RegType.PTR_TO_BTF_ID:
        pass
    elif reg.type & PTR_UNTRUSTED:
        flag = PTR_UNTRUSTED
    elif is_trusted_reg(reg) or reg.type & MEM_RCU:
        fname, bid = w.field_name, w.next_btf_id
        if nested_type_is_trusted(reg, fname, bid, "__safe_trusted"):
            flag |= PTR_TRUSTED
        elif nested_type_is_trusted(reg, fname, bid, "__safe_trusted_or_null"):
            flag |= PTR_TRUSTED | PTR_MAYBE_NULL
        elif in_rcu_cs(v) and not reg.type & PTR_MAYBE_NULL:
            rcu_or_null = nested_type_is_trusted(reg, fname, bid, "__safe_rcu_or_null")
            if nested_type_is_trusted(reg, fname, bid, "__safe_rcu"):
                flag |= MEM_RCU
            elif flag & MEM_RCU or rcu_or_null:
                flag |= MEM_RCU | PTR_MAYBE_NULL
                if rcu_or_null and flag & PTR_UNTRUSTED:
                    flag &= ~PTR_UNTRUSTED
            elif flag & (MEM_PERCPU | MEM_USER):
                pass
            else:
                flag = clear_trusted_flags(flag)
        else:
            flag = PTR_UNTRUSTED
    else:
        flag = clear_trusted_flags(flag)
    if atype == BPF_READ and value_regno >= 0:
        mark_btf_ld_reg(v, regs[value_regno], ret, btf, w.next_btf_id, flag)


def mark_btf_ld_reg(v: Verifier, d: Reg, reg_type: int, btf: Any, btf_id: int, flag: int) -> None:
    """``mark_btf_ld_reg``: the loaded value is a scalar or a typed pointer."""
    mark_unknown(d)
    if reg_type == RegType.SCALAR_VALUE:
        return
    mark_known(d, 0)
    if reg_type == RegType.PTR_TO_MEM:
        d.type = RegType.PTR_TO_MEM | flag
        d.mem_size = 0
        return
    d.type = RegType.PTR_TO_BTF_ID | flag
    d.btf = btf
    d.btf_id = btf_id
    d.btf_name = btf_type_name(btf, btf_id)
    if flag & PTR_MAYBE_NULL:
        v.id_gen += 1
        d.id = v.id_gen


# -- helpers taking or returning BTF pointers ---------------------------------------------

def vmlinux_btf(v: Verifier) -> Btf | None:
    """``btf_vmlinux``: the kernel BTF of the instance verifying (the host's without one)."""
    kernel = getattr(v.inp, "kernel", None)
    if kernel is not None:
        obj = getattr(kernel, "vmlinux_btf", None)
    else:
        from pybpf.verifier.attach_target import _HostVmlinux
        obj = _HostVmlinux()
    if obj is None:
        return None
    try:
        parsed: Btf = obj.parsed()
    except (OSError, ValueError):
        return None
    return parsed


def helper_btf_id(v: Verifier, struct_name: str) -> int:
    """The vmlinux id of ``struct <struct_name>`` (a prototype's ``*_btf_id``); 0: none."""
    btf = vmlinux_btf(v)
    if btf is None:
        return 0
    ids = btf.find_all(struct_name, BtfKind.STRUCT)
    return ids[0] if ids else 0


#: reg types whose BTF id ``check_reg_type`` matches against the argument's
_MATCHED = {RegType.PTR_TO_BTF_ID, RegType.PTR_TO_BTF_ID | PTR_TRUSTED,
            RegType.PTR_TO_BTF_ID | PTR_TRUSTED | PTR_MAYBE_NULL, RegType.PTR_TO_BTF_ID | MEM_RCU,
            RegType.PTR_TO_BTF_ID | PTR_MAYBE_NULL,
            RegType.PTR_TO_BTF_ID | PTR_MAYBE_NULL | MEM_RCU}
#: ``compatible->btf_id`` of argument types that name their struct themselves
_DEFAULT_ARG_BTF = {16: "sock_common"}  # ARG_PTR_TO_BTF_ID_SOCK_COMMON
_FUNC_SK_RELEASE = 86


def check_reg_type_btf(v: Verifier, regno: int, arg_type: int, mem_arg: bool,
                       meta: dict[str, Any]) -> None:
    """The ``found:`` part of ``check_reg_type`` for a BTF pointer: memory arguments
    must be read-only; a struct argument must be (or begin with) the struct expected."""
    from pybpf.helpers.protos import OBJ_RELEASE, func_id_name
    from pybpf.verifier.regs import reg_type_str

    reg = v.regs[regno]
    fid = meta.get("func_id", 0)
    if mem_arg:
        if not arg_type & (1 << 9):  # MEM_RDONLY
            v.fail(errno.EACCES, f"{func_id_name(fid)}() may write into memory pointed by "
                                 f"R{regno} type={reg_type_str(reg.type)}\n")
        return
    if reg.type not in _MATCHED:
        return
    release = bool(arg_type & OBJ_RELEASE)
    strict = release and fid != _FUNC_SK_RELEASE
    if reg.type & PTR_MAYBE_NULL and (not arg_type & PTR_MAYBE_NULL or release):
        v.fail(errno.EACCES, f"Possibly NULL pointer passed to helper arg{regno}\n")
    if fid == 194 and meta.get("kptr_field") is not None:  # bpf_kptr_xchg: the field's type
        from pybpf.verifier.kptr import map_kptr_match_type
        map_kptr_match_type(v, meta["kptr_field"], reg, regno)
        return
    fn = meta.get("fn")
    name = (getattr(fn, "extra", {}) or {}).get("arg_btf", {}).get(regno - 1) \
        or _DEFAULT_ARG_BTF.get(arg_type & 0xFF)
    if not isinstance(name, str):
        v.fail(errno.EFAULT, "verifier internal error: missing arg compatible BTF ID\n")
        return
    need_id = helper_btf_id(v, name)
    need_btf = vmlinux_btf(v)
    log: list[str] = []
    matched = btf_struct_ids_match(reg.btf, reg.btf_id, reg.off, need_btf, need_id, strict, log)
    for line in log:
        v.verbose(line)
    if not matched:
        v.fail(errno.EACCES, f"R{regno} is of type {btf_type_name(reg.btf, reg.btf_id)} but "
                             f"{btf_type_name(need_btf, need_id)} is expected\n")


__all__ = ["btf_ctx_access", "btf_struct_access", "btf_struct_ids_match",
           "check_ptr_to_btf_access", "mark_btf_ld_reg"]
