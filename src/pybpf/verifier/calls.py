# mypy: disable-error-code="misc"
"""Calls: helpers (prototypes as data), bpf-to-bpf calls and returns, program exit checks."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.helpers.proto import ArgFlag, ArgType, RetType
from pybpf.helpers.protos import OBJ_RELEASE, func_id_name
from pybpf.isa.insn import Insn
from pybpf.verifier import dynptr
from pybpf.verifier.cfg import VerifyError
from pybpf.verifier.const_str import check_bpf_snprintf_call, check_reg_const_str
from pybpf.verifier.map_key import lookup_cannot_fail, note_map_key
from pybpf.verifier.regs import (
    MEM_ALLOC,
    MEM_PERCPU,
    MEM_RCU,
    MEM_RDONLY,
    MEM_RINGBUF,
    PTR_MAYBE_NULL,
    PTR_TRUSTED,
    PTR_UNTRUSTED,
    S64_MAX,
    S64_MIN,
    Reg,
    RegType,
    mark_known,
    mark_not_init,
    mark_unknown,
    reg_bounds_sync,
    reg_type_str,
)
from pybpf.verifier.state import FuncState, RefState

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

MAX_CALL_FRAMES = 8
BPF_READ, BPF_WRITE = 1, 2
BPF_MAX_VAR_SIZ = 1 << 29
CALLER_SAVED = (0, 1, 2, 3, 4, 5)
FUNC_GET_FUNC_IP = 173
FUNC_D_PATH = 147
FUNC_SNPRINTF = 165
FUNC_KPTR_XCHG = 194
#: ``btf_allowlist_d_path``: the functions whose fentry/fexit programs may call bpf_d_path
D_PATH_ALLOWLIST = frozenset({"security_file_permission", "security_inode_getattr",
                              "security_file_open", "security_path_truncate", "vfs_truncate",
                              "vfs_fallocate", "dentry_open", "vfs_getattr", "filp_close"})
ENOTSUPP = 524

R = RegType
_MEM_TYPES: list[int] = [R.PTR_TO_STACK, R.PTR_TO_PACKET, R.PTR_TO_PACKET_META, R.PTR_TO_MAP_KEY,
              R.PTR_TO_MAP_VALUE, R.PTR_TO_MEM, R.PTR_TO_MEM | MEM_RINGBUF, R.PTR_TO_BUF,
              R.PTR_TO_BTF_ID | PTR_TRUSTED]
_SOCK_TYPES: list[int] = [R.PTR_TO_SOCK_COMMON, R.PTR_TO_SOCKET, R.PTR_TO_TCP_SOCK, R.PTR_TO_XDP_SOCK]
COMPATIBLE: dict[int, list[int]] = {
    ArgType.ARG_PTR_TO_MAP_KEY: _MEM_TYPES,
    ArgType.ARG_PTR_TO_MAP_VALUE: _MEM_TYPES,
    ArgType.ARG_CONST_SIZE: [R.SCALAR_VALUE],
    ArgType.ARG_CONST_SIZE_OR_ZERO: [R.SCALAR_VALUE],
    ArgType.ARG_CONST_ALLOC_SIZE_OR_ZERO: [R.SCALAR_VALUE],
    ArgType.ARG_CONST_MAP_PTR: [R.CONST_PTR_TO_MAP],
    ArgType.ARG_PTR_TO_CTX: [R.PTR_TO_CTX],
    ArgType.ARG_PTR_TO_SOCK_COMMON: _SOCK_TYPES,
    ArgType.ARG_PTR_TO_BTF_ID_SOCK_COMMON: [*_SOCK_TYPES, R.PTR_TO_BTF_ID, R.PTR_TO_BTF_ID | PTR_TRUSTED],
    ArgType.ARG_PTR_TO_SOCKET: [R.PTR_TO_SOCKET],
    ArgType.ARG_PTR_TO_BTF_ID: [R.PTR_TO_BTF_ID, R.PTR_TO_BTF_ID | PTR_TRUSTED, R.PTR_TO_BTF_ID | MEM_RCU],
    ArgType.ARG_PTR_TO_SPIN_LOCK: [R.PTR_TO_MAP_VALUE, R.PTR_TO_BTF_ID | (1 << 16)],
    ArgType.ARG_PTR_TO_MEM: _MEM_TYPES,
    ArgType.ARG_PTR_TO_RINGBUF_MEM: [R.PTR_TO_MEM | MEM_RINGBUF],
    ArgType.ARG_PTR_TO_PERCPU_BTF_ID: [R.PTR_TO_BTF_ID | MEM_PERCPU, R.PTR_TO_BTF_ID | MEM_PERCPU | MEM_RCU,
                                       R.PTR_TO_BTF_ID | MEM_PERCPU | PTR_TRUSTED],
    ArgType.ARG_PTR_TO_FUNC: [R.PTR_TO_FUNC],
    ArgType.ARG_PTR_TO_STACK: [R.PTR_TO_STACK],
    ArgType.ARG_PTR_TO_CONST_STR: [R.PTR_TO_MAP_VALUE],
    ArgType.ARG_PTR_TO_TIMER: [R.PTR_TO_MAP_VALUE],
    ArgType.ARG_KPTR_XCHG_DEST: [R.PTR_TO_MAP_VALUE, R.PTR_TO_BTF_ID | (1 << 16)],
    ArgType.ARG_PTR_TO_DYNPTR: [R.PTR_TO_STACK, R.CONST_PTR_TO_DYNPTR],
}

# map type -> helpers it may be passed to (check_map_func_compatibility, map side)
MT = {"PROG_ARRAY": 3, "PERF_EVENT_ARRAY": 4, "STACK_TRACE": 7, "CGROUP_ARRAY": 8, "ARRAY_OF_MAPS": 12,
      "HASH_OF_MAPS": 13, "DEVMAP": 14, "SOCKMAP": 15, "CPUMAP": 16, "XSKMAP": 17, "SOCKHASH": 18,
      "CGROUP_STORAGE": 19, "REUSEPORT_SOCKARRAY": 20, "PERCPU_CGROUP_STORAGE": 21, "QUEUE": 22,
      "STACK": 23, "SK_STORAGE": 24, "DEVMAP_HASH": 25, "STRUCT_OPS": 26, "RINGBUF": 27,
      "INODE_STORAGE": 28, "TASK_STORAGE": 29, "BLOOM_FILTER": 30, "USER_RINGBUF": 31,
      "CGRP_STORAGE": 32, "ARENA": 33}
MAP_ALLOWED: dict[int, set[int]] = {
    3: {12},
    4: {22, 25, 55, 111, 121},
    27: {130, 131, 134, 198, 199, 200},
    31: {209},
    7: {27},
    8: {33, 37},
    19: {81}, 21: {81},
    14: {51, 1}, 25: {51, 1},
    16: {51},
    17: {51, 1},
    12: {1}, 13: {1},
    15: {52, 53, 60, 82, 1, 2, 3},
    18: {72, 70, 71, 82, 1, 2, 3},
    20: {82},
    22: {87, 88, 89, 2}, 23: {87, 88, 89, 2},
    24: {107, 108},
    28: {143, 144}, 29: {156, 157}, 32: {210, 211},
    30: {89, 87},
}
FUNC_MAPS: dict[int, set[int]] = {
    12: {3}, 22: {4}, 25: {4}, 55: {4}, 111: {4}, 121: {4},
    130: {27}, 131: {27}, 134: {27}, 198: {27}, 199: {27}, 200: {27}, 209: {31},
    27: {7}, 33: {8}, 37: {8},
    81: {19, 21}, 51: {14, 25, 16, 17}, 52: {15}, 60: {15}, 53: {15}, 72: {18}, 70: {18}, 71: {18},
    82: {20, 15, 18}, 87: {22, 23, 30}, 88: {22, 23}, 89: {22, 23, 30},
    107: {24}, 108: {24}, 143: {28}, 144: {28}, 156: {29}, 157: {29}, 210: {32}, 211: {32},
    195: {6, 5, 10},
}
_ACQUIRE = {84, 85, 99, 131, 194}
_PTR_CAST = {96, 95, 137, 136, 138, 178, 180, 139}
_TRACING_TYPES = {2, 5, 7, 17, 24}


def base_arg(t: int) -> int:
    return t & 0xFF



#: the kernel's ``BPF_MAP_PTR_POISON``: different maps reach one call site
MAP_PTR_POISON = object()
#: helpers whose call site remembers its map (tail_call, map ops, for_each, redirect_map)
RECORD_MAP_FUNCS = frozenset({12, 1, 2, 3, 87, 88, 89, 164, 51, 195})


class CallsMixin:
    # -- helpers --------------------------------------------------------------------------
    def record_func_map(self: Verifier, meta: dict[str, Any], fid: int) -> None:
        """``record_func_map``: the map a map helper call site works on, for the fixups
        (``aux["map_ptr"]``; :data:`MAP_PTR_POISON` when paths bring different maps)."""
        m = meta["map_ptr"]
        if fid not in RECORD_MAP_FUNCS or m is None:
            return
        aux = self.aux[self.insn_idx]
        prev = aux.get("map_ptr")
        aux["map_ptr"] = m if prev is None or prev is m else MAP_PTR_POISON

    def check_helper_call(self: Verifier, ins: Insn) -> None:
        fid = ins.imm
        name = func_id_name(fid)
        if fid < 0 or fid >= 212:
            self.fail(errno.EINVAL, f"invalid func {name}#{fid}\n")
        fn = self.get_helper_proto(fid)
        if fn is None:
            self.fail(errno.EINVAL, f"program of this type cannot use helper {name}#{fid}\n")
        if not self.inp.gpl_compatible and fn.gpl_only:
            self.fail(errno.EINVAL, "cannot call GPL-restricted function from non-GPL compatible program\n")
        if fid == FUNC_D_PATH and not self.d_path_allowed():
            self.fail(errno.EINVAL, "helper call is not allowed in probe\n")
        if fn.might_sleep and not self.prog_info.sleepable:
            self.fail(errno.EINVAL, "helper call might sleep in a non-sleepable prog\n")
        if fn.might_sleep and self.state.active_rcu:  # kfunc sections (verifier/kfuncs.py)
            self.fail(errno.EINVAL, f"sleepable helper {name}#{fid} in rcu_read_lock region\n")
        if fn.might_sleep and self.state.active_preempt_locks:
            self.fail(errno.EINVAL, f"sleepable helper {name}#{fid} in non-preemptible region\n")
        if fn.might_sleep and self.state.active_irq_id:
            self.fail(errno.EINVAL, f"sleepable helper {name}#{fid} in IRQ-disabled region\n")
        meta: dict[str, Any] = {"func_id": fid, "pkt_access": fn.pkt_access, "map_ptr": None,
                                "release_regno": 0, "ref_obj_id": 0, "raw_mode": False,
                                "access_size": 0, "regno": -1, "mem_size": 0, "msize_max": 0,
                                "fn": fn}
        for i in range(5):
            self.check_func_arg(i, meta, fn)
        self.record_func_map(meta, fid)
        if fid == 12:  # record_func_key: a constant in-range key selects the target
            m, r3 = meta["map_ptr"], self.regs[3]
            if m is not None and r3.is_const() and r3.var_off.value < getattr(m, "max_entries", 0):
                self.mark_chain_precision(3)
        if meta["access_size"]:
            for i in range(meta["access_size"]):
                self.check_mem_access(meta["regno"], i, 1, BPF_WRITE, -1)
        regs = self.regs
        if meta["release_regno"] and base_arg(fn.arg_types[meta["release_regno"] - 1]) == ArgType.ARG_PTR_TO_DYNPTR:
            dynptr.unmark_stack_slots_dynptr(self, regs[meta["release_regno"]])
        elif meta["release_regno"]:
            rid = meta["ref_obj_id"]
            if not self.release_reference(rid) and not (regs[meta["release_regno"]].is_const()
                                                        and regs[meta["release_regno"]].var_off.value == 0):
                self.fail(errno.EINVAL, f"func {name}#{fid} reference has not been acquired before\n")
        if fid == 12:
            self.check_resource_leak(False, True, "tail_call")
        elif fid == 81:
            r2 = regs[2]
            if not (r2.is_const() and r2.var_off.value == 0):
                self.fail(errno.EINVAL, "get_local_storage() doesn't support non-zero flags\n")
            self.mark_chain_precision(2)
        elif fid == 93:
            pass
        elif fid == FUNC_SNPRINTF:
            check_bpf_snprintf_call(self)
        elif fid in dynptr.HELPER_CALL_CHECKS:
            dynptr.HELPER_CALL_CHECKS[fid](self, fn, meta)
        if fid in (181, 164, 170, 180, 209):
            if fid == 181:  # bpf_loop: flags == 0 allows inlining, nr_loops bounds the callback
                if regs[4].is_const() and regs[4].var_off.value == 0:
                    self.mark_chain_precision(4)
                self.mark_chain_precision(1)
            self.push_callback(ins, meta, fid)
        if fn.ret_type == RetType.RET_PTR_TO_MEM_OR_BTF_ID:  # typed per-CPU pointers
            from pybpf.verifier.ksyms import record_percpu_btf_arg
            record_percpu_btf_arg(self, fn, meta)
        for r in CALLER_SAVED:
            mark_not_init(regs[r])
        r0 = regs[0]
        ret = fn.ret_type
        rflags = fn.ret_flags
        if ret == RetType.RET_INTEGER:
            mark_unknown(r0)
        elif ret == RetType.RET_VOID:
            mark_not_init(r0)
        elif ret == RetType.RET_PTR_TO_MAP_VALUE:
            mark_unknown(r0)
            mark_known(r0, 0)
            if meta["map_ptr"] is None:
                self.fail(errno.EINVAL, "kernel subsystem misconfigured verifier\n")
            r0.map_ptr = meta["map_ptr"]
            if lookup_cannot_fail(meta):  # constant in-bounds array key: never NULL
                rflags &= ~PTR_MAYBE_NULL
            r0.type = R.PTR_TO_MAP_VALUE | rflags
            if not rflags & PTR_MAYBE_NULL and self.has_spin_lock(meta["map_ptr"]):
                self.id_gen += 1
                r0.id = self.id_gen
        elif ret in (RetType.RET_PTR_TO_SOCKET, RetType.RET_PTR_TO_TCP_SOCK, RetType.RET_PTR_TO_SOCK_COMMON):
            mark_unknown(r0)
            mark_known(r0, 0)
            r0.type = {RetType.RET_PTR_TO_SOCKET: R.PTR_TO_SOCKET, RetType.RET_PTR_TO_TCP_SOCK: R.PTR_TO_TCP_SOCK,
                       RetType.RET_PTR_TO_SOCK_COMMON: R.PTR_TO_SOCK_COMMON}[RetType(ret)] | rflags
        elif ret == RetType.RET_PTR_TO_MEM:
            mark_unknown(r0)
            mark_known(r0, 0)
            r0.type = R.PTR_TO_MEM | rflags
            r0.mem_size = meta["mem_size"]
        elif ret == RetType.RET_PTR_TO_MEM_OR_BTF_ID:
            from pybpf.verifier.ksyms import mark_ret_mem_or_btf_id
            mark_unknown(r0)
            mark_known(r0, 0)
            mark_ret_mem_or_btf_id(self, r0, rflags, meta)
        elif ret == RetType.RET_PTR_TO_BTF_ID:
            mark_unknown(r0)
            mark_known(r0, 0)
            r0.type = R.PTR_TO_BTF_ID | rflags
            r0.btf_name = fn.extra.get("btf_name", "")
            if fid == FUNC_KPTR_XCHG and meta.get("kptr_field") is not None:  # the field's type
                f = meta["kptr_field"]
                r0.btf, r0.btf_id, r0.btf_name = f.btf, f.btf_id, f.name
                if f.local:  # an object of the program's BTF: allocated (per-CPU or not)
                    r0.type |= MEM_ALLOC | (MEM_PERCPU if f.kind == "percpu_kptr" else 0)
            elif "ret_btf" in fn.extra:  # ret_btf_id: a struct in vmlinux
                from pybpf.verifier.btf_access import helper_btf_id, vmlinux_btf
                r0.btf, r0.btf_id = vmlinux_btf(self), helper_btf_id(self, fn.extra["ret_btf"])
                if not r0.btf_id:
                    self.fail(errno.EINVAL, f"invalid return type {int(ret) | rflags} of func "
                                            f"{name}#{fid}\n")
                r0.btf_name = fn.extra["ret_btf"]
        if r0.type & PTR_MAYBE_NULL:
            self.id_gen += 1
            r0.id = self.id_gen
        if fid == dynptr.FUNC_DYNPTR_DATA:  # is_dynptr_ref_function: a slice of the dynptr
            r0.dynptr_id = meta["dynptr_id"]
            r0.ref_obj_id = meta["ref_obj_id"]
        elif fid in _PTR_CAST:
            r0.ref_obj_id = meta["ref_obj_id"]
        elif fid in _ACQUIRE or (fid == 1 and meta["map_ptr"] is not None
                                 and getattr(meta["map_ptr"], "map_type", 0) in (15, 18)):
            rid = self.acquire_reference()
            r0.id = rid
            r0.ref_obj_id = rid
        if fid == 8:
            n = max(1, self.nr_cpus) - 1
            r0.umin, r0.umax, r0.smin, r0.smax = 0, n, 0, n
            r0.u32_min, r0.u32_max, r0.s32_min, r0.s32_max = 0, n, 0, n
            reg_bounds_sync(r0)
        elif fid in (67, 45, 115, 114, 141):
            from pybpf.verifier.regs import s32 as _s32
            from pybpf.verifier.regs import s64 as _s64
            r0.smax = _s64(meta["msize_max"])
            r0.s32_max = _s32(meta["msize_max"])
            r0.smin = r0.s32_min = -4095
            reg_bounds_sync(r0)
        self.check_map_func_compatibility(meta["map_ptr"], fid)
        if fid == FUNC_GET_FUNC_IP:
            self.check_get_func_ip()
        if fid in self.PKT_CHANGING:
            self.clear_all_pkt_pointers()

    def d_path_allowed(self: Verifier) -> bool:
        """``bpf_d_path_allowed``: iterators, LSM programs, and programs attached to an
        allow-listed function (a path there is known to be stable)."""
        if self.prog_type == 26 and self.inp.expected_attach_type == 28:  # BPF_TRACE_ITER
            return True
        if self.prog_type == 29:  # BPF_PROG_TYPE_LSM (6.18: its sleepable hooks)
            return True
        attach = getattr(self, "attach", None)
        return getattr(attach, "tname", "") in D_PATH_ALLOWLIST

    def check_get_func_ip(self: Verifier) -> None:
        """``check_get_func_ip``: only kprobes and trampoline-attached tracing programs
        know the function they run for."""
        name = f"{func_id_name(FUNC_GET_FUNC_IP)}#{FUNC_GET_FUNC_IP}"
        if self.prog_type == 26:  # BPF_PROG_TYPE_TRACING
            if self.inp.expected_attach_type not in (24, 25, 26):  # fentry, fexit, fmod_ret
                self.fail(ENOTSUPP, f"func {name} supported only for fentry/fexit/fmod_ret programs\n")
        elif self.prog_type != 2:  # BPF_PROG_TYPE_KPROBE
            self.fail(ENOTSUPP, f"func {name} not supported for program type {self.prog_type}\n")

    PKT_CHANGING = {9, 10, 11, 12, 13, 18, 19, 31, 32, 38, 39, 43, 44, 50, 54, 61, 62, 63, 65, 73, 74, 75,
                    76, 89 * 0 + 1000, 169 * 0 + 1001, 189, 190, 143 * 0 + 1002}

    def get_helper_proto(self: Verifier, fid: int) -> Any:
        ops = self.prog_ops
        if ops is None:
            return None
        return ops.get_func_proto(fid, self.prog_info)

    def check_func_arg(self: Verifier, arg: int, meta: dict[str, Any], fn: Any) -> None:
        regno = arg + 1
        if arg >= len(fn.arg_types):
            return
        at = fn.arg_types[arg]
        if at == ArgType.ARG_DONTCARE:
            return
        self.check_reg_arg(regno, src=True)
        reg = self.regs[regno]
        if at == ArgType.ARG_ANYTHING:
            if not self.allow_ptr_leaks and reg.type != RegType.SCALAR_VALUE:  # is_pointer_value
                self.fail(errno.EACCES, f"R{regno} leaks addr into helper function\n")
            return
        base = base_arg(at)
        if reg.is_pkt_pointer() and not self.may_access_direct_pkt_data(BPF_READ, meta):
            self.fail(errno.EACCES, "helper access to the packet is not allowed\n")
        is_null = reg.is_const() and reg.var_off.value == 0
        maybe_null = bool(at & int(ArgFlag.PTR_MAYBE_NULL))
        if base == ArgType.ARG_PTR_TO_MAP_VALUE and meta["map_ptr"] is not None:
            pass
        if is_null and maybe_null:
            self.mark_chain_precision(regno)  # NULL is accepted only because it is exactly 0
        else:
            self.check_reg_type(regno, at, meta)
            self.check_func_arg_reg_off(reg, regno, at)
        if at & OBJ_RELEASE and base == ArgType.ARG_PTR_TO_DYNPTR:
            dynptr.check_release_dynptr_arg(self, reg, regno)
            meta["release_regno"] = regno
        elif at & OBJ_RELEASE:
            if not reg.ref_obj_id and not is_null:
                self.fail(errno.EINVAL, f"R{regno} must be referenced when passed to release function\n")
            meta["release_regno"] = regno
        if reg.ref_obj_id and base != ArgType.ARG_KPTR_XCHG_DEST:
            meta["ref_obj_id"] = reg.ref_obj_id
        write = bool(at & int(ArgFlag.MEM_WRITE))
        if base == ArgType.ARG_CONST_MAP_PTR:
            meta["map_ptr"] = reg.map_ptr
        elif base == ArgType.ARG_PTR_TO_MAP_KEY:
            if meta["map_ptr"] is None:
                self.fail(errno.EACCES, "invalid map_ptr to access map->key\n")
            self.check_helper_mem_access(regno, meta["map_ptr"].key_size, BPF_READ, False, None)
            note_map_key(self, meta, reg)  # 6.18: a constant array key (verifier/map_key.py)
        elif base == ArgType.ARG_PTR_TO_MAP_VALUE:
            if maybe_null and is_null:
                return
            if meta["map_ptr"] is None:
                self.fail(errno.EACCES, "invalid map_ptr to access map->value\n")
            meta["raw_mode"] = bool(at & int(ArgFlag.MEM_UNINIT))
            self.check_helper_mem_access(regno, meta["map_ptr"].value_size, BPF_WRITE if write else BPF_READ,
                                         False, meta)
        elif base == ArgType.ARG_PTR_TO_MEM:
            meta["raw_mode"] = bool(at & int(ArgFlag.MEM_UNINIT))
            if at & int(ArgFlag.MEM_FIXED_SIZE):
                size = fn.arg_size[arg] if arg < len(fn.arg_size) else 8
                self.check_helper_mem_access(regno, size, BPF_WRITE if write else BPF_READ, False, meta)
                self.check_ptr_alignment(reg, 0, size, True)
            meta["mem_write"] = write
        elif base in (ArgType.ARG_CONST_SIZE, ArgType.ARG_CONST_SIZE_OR_ZERO):
            self.check_mem_size_reg(reg, regno, BPF_WRITE if meta.get("mem_write") else BPF_READ,
                                    base == ArgType.ARG_CONST_SIZE_OR_ZERO, meta)
        elif base == ArgType.ARG_CONST_ALLOC_SIZE_OR_ZERO:
            if reg.var_off.mask != 0:
                self.fail(errno.EACCES, f"R{regno} is not a known constant'\n")
            meta["mem_size"] = reg.var_off.value
            self.mark_chain_precision(regno)
        elif base == ArgType.ARG_PTR_TO_SPIN_LOCK:
            from pybpf.verifier.graph import in_rbtree_lock_required_cb

            if in_rbtree_lock_required_cb(self):
                self.fail(errno.EACCES, "can't spin_{lock,unlock} in rbtree cb\n")
            self.process_spin_lock(regno, meta["func_id"] == 93)
        elif base == ArgType.ARG_PTR_TO_TIMER:
            self.process_timer(regno, meta)
        elif base == ArgType.ARG_PTR_TO_FUNC:
            meta["subprogno"] = reg.subprogno
        elif base == ArgType.ARG_KPTR_XCHG_DEST:
            self.process_kptr_func(regno, meta)
        elif base == ArgType.ARG_PTR_TO_CONST_STR:
            check_reg_const_str(self, reg, regno)
        elif base == ArgType.ARG_PTR_TO_DYNPTR:
            dynptr.process_dynptr_func(self, regno, at)

    def check_reg_type(self: Verifier, regno: int, at: int, meta: dict[str, Any]) -> None:
        reg = self.regs[regno]
        compat = COMPATIBLE.get(base_arg(at), [])
        t = reg.type
        if at & int(ArgFlag.MEM_RDONLY):
            t &= ~MEM_RDONLY
        if at & int(ArgFlag.PTR_MAYBE_NULL):
            t &= ~PTR_MAYBE_NULL
        local_kptr = meta.get("func_id") == FUNC_KPTR_XCHG and regno == 2 and \
            reg.base == R.PTR_TO_BTF_ID and bool(reg.type & MEM_ALLOC)
        if local_kptr:  # an allocated object (per-CPU or not) may go into a local kptr
            t &= ~(MEM_ALLOC | MEM_PERCPU)
        if t in compat:
            if local_kptr and meta.get("kptr_field") is not None:
                from pybpf.verifier.kptr import map_kptr_match_type
                map_kptr_match_type(self, meta["kptr_field"], reg, regno)
            elif reg.base == R.PTR_TO_BTF_ID and reg.btf is not None:
                from pybpf.verifier.btf_access import check_reg_type_btf
                check_reg_type_btf(self, regno, at, compat is _MEM_TYPES, meta)
            return
        exp = ", ".join(reg_type_str(c) for c in compat)
        self.fail(errno.EACCES, f"R{regno} type={reg_type_str(reg.type)} expected={exp}\n")

    def check_func_arg_reg_off(self: Verifier, reg: Reg, regno: int, at: int) -> None:
        if at & OBJ_RELEASE and base_arg(at) == ArgType.ARG_PTR_TO_DYNPTR and reg.type == R.PTR_TO_STACK:
            return  # the dynptr may sit at any offset of the stack
        if at & OBJ_RELEASE:
            if reg.off:
                self.fail(errno.EINVAL, f"R{regno} must have zero offset when passed to release func or "
                                        "trusted arg to kfunc\n")
            self.check_ptr_off_reg(reg, regno, False)
            return
        t = reg.type
        if t in (R.PTR_TO_STACK, R.PTR_TO_PACKET, R.PTR_TO_PACKET_META, R.PTR_TO_MAP_KEY, R.PTR_TO_MAP_VALUE,
                 R.PTR_TO_MEM, R.PTR_TO_MEM | MEM_RDONLY, R.PTR_TO_MEM | MEM_RINGBUF, R.PTR_TO_BUF,
                 R.PTR_TO_BUF | MEM_RDONLY, R.PTR_TO_ARENA, R.SCALAR_VALUE):
            return
        if reg.base == R.PTR_TO_BTF_ID and not reg.type & (MEM_PERCPU | PTR_UNTRUSTED | PTR_MAYBE_NULL):
            self.check_ptr_off_reg(reg, regno, True)  # a fixed offset into the struct is fine
            return
        self.check_ptr_off_reg(reg, regno, False)

    def check_mem_size_reg(self: Verifier, reg: Reg, regno: int, t: int, zero_ok: bool,
                           meta: dict[str, Any]) -> None:
        meta["msize_max"] = reg.umax
        m: dict[str, Any] | None = meta if reg.var_off.mask == 0 else None
        if reg.smin < 0:
            self.fail(errno.EACCES, f"R{regno} min value is negative, either use unsigned or 'var &= const'\n")
        if reg.umin == 0 and not zero_ok:
            self.fail(errno.EACCES, f"R{regno} invalid zero-sized read: u64=[{reg.umin},{reg.umax}]\n")
        if reg.umax >= BPF_MAX_VAR_SIZ:
            self.fail(errno.EACCES, f"R{regno} unbounded memory access, use 'var &= const' or "
                                    "'if (var < const)'\n")
        self.check_helper_mem_access(regno - 1, reg.umax, t, zero_ok, m)
        self.mark_chain_precision(regno)

    def check_map_func_compatibility(self: Verifier, m: Any, fid: int) -> None:
        if m is None:
            return
        mt = getattr(m, "map_type", 0)
        allowed = MAP_ALLOWED.get(mt)
        bad = allowed is not None and fid not in allowed
        if not bad:
            need = FUNC_MAPS.get(fid)
            bad = need is not None and mt not in need
        if bad:
            self.fail(errno.EINVAL, f"cannot pass map_type {mt} into func {func_id_name(fid)}#{fid}\n")

    # -- references -----------------------------------------------------------------------
    def acquire_reference(self: Verifier) -> int:
        self.id_gen += 1
        self.state.refs.append(RefState(self.id_gen, self.insn_idx))
        return self.id_gen

    def release_reference(self: Verifier, rid: int) -> bool:
        refs = self.state.refs
        for i, r in enumerate(refs):
            if r.id == rid and r.kind == "ptr":
                del refs[i]
                for reg in self.state.all_regs():
                    if reg.ref_obj_id == rid:  # mark_reg_invalid
                        if self.allow_ptr_leaks:
                            mark_unknown(reg)
                        else:
                            mark_not_init(reg)
                return True
        return False

    def check_resource_leak(self: Verifier, exception_exit: bool, check_lock: bool, prefix: str) -> None:
        st = self.state
        if check_lock and st.active_lock is not None:
            self.fail(errno.EINVAL, f"{prefix} cannot be used inside bpf_spin_lock-ed region\n")
        leaked = False
        for r in st.refs:
            if r.kind != "ptr":
                continue
            self.verbose(f"Unreleased reference id={r.id} alloc_insn={r.insn_idx}\n")
            leaked = True
        if leaked:
            self.fail(errno.EINVAL, f"{prefix} would lead to reference leak\n")
        if check_lock and st.active_irq_id:  # verifier/irq_flags.py
            self.fail(errno.EINVAL, f"{prefix} cannot be used inside bpf_local_irq_save-ed region\n")
        if check_lock and st.active_rcu:  # kfunc sections (verifier/kfuncs.py)
            self.fail(errno.EINVAL, f"{prefix} cannot be used inside bpf_rcu_read_lock-ed region\n")
        if check_lock and st.active_preempt_locks:
            self.fail(errno.EINVAL, f"{prefix} cannot be used inside bpf_preempt_disable-ed region\n")

    def has_spin_lock(self, m: Any) -> bool:
        rec = getattr(m, "btf_record", None) or []
        return any(f[0] in ("spin_lock", "res_spin_lock") for f in rec)

    def process_spin_lock(self: Verifier, regno: int, is_lock: bool) -> None:
        from pybpf.verifier.spin_lock import process_spin_lock

        process_spin_lock(self, regno, is_lock)

    def process_timer(self: Verifier, regno: int, meta: dict[str, Any]) -> None:
        reg = self.regs[regno]
        m = reg.map_ptr
        rec = getattr(m, "btf_record", None) or []
        timer = [f for f in rec if f[0] == "timer"]
        if reg.var_off.mask != 0:
            self.fail(errno.EINVAL, f"R{regno} doesn't have constant offset. bpf_timer has to be at the "
                                    "constant offset\n")
        if not timer:
            self.fail(errno.EINVAL, f"map '{getattr(m, 'name', b'')}' has no valid bpf_timer\n")
        val = reg.var_off.value + reg.off
        if timer[0][1] != val:
            self.fail(errno.EINVAL, f"off {val} doesn't point to 'struct bpf_timer' that is at {timer[0][1]}\n")
        meta["map_ptr"] = m

    def process_kptr_func(self: Verifier, regno: int, meta: dict[str, Any]) -> None:
        from pybpf.verifier import kptr
        kptr.process_kptr_func(self, regno, meta)

    def clear_all_pkt_pointers(self: Verifier) -> None:
        pkt_dynptrs = self.__dict__.get("pkt_dynptr_ids", ())  # slices of skb/xdp dynptrs (kfuncs)
        for r in self.state.all_regs():
            if r.is_pkt_pointer() or r.type == R.PTR_TO_PACKET_END or \
                    (r.base == R.PTR_TO_MEM and r.dynptr_id and r.dynptr_id in pkt_dynptrs):
                mark_unknown(r)

    # -- bpf-to-bpf calls -----------------------------------------------------------------
    def check_func_call(self: Verifier, ins: Insn) -> None:
        from pybpf.verifier.global_funcs import (
            btf_check_subprog_call,
            check_global_call,
            subprog_is_global,
        )

        st = self.state
        target = self.insn_idx + ins.imm + 1
        sub = self.cfg.subprog_of(target)
        err = btf_check_subprog_call(self, sub)
        if err == errno.EFAULT:
            raise VerifyError(err)
        if subprog_is_global(self, sub):
            check_global_call(self, sub, err)
            return
        if st.curframe + 1 >= MAX_CALL_FRAMES:
            self.fail(errno.E2BIG, f"the call stack of {st.curframe + 2} frames is too deep\n")
        caller = st.cur
        callee = FuncState(st.curframe + 1, sub, self.insn_idx)
        for r in range(1, 6):
            callee.regs[r].assign(caller.regs[r])
        st.frames.append(callee)
        for r in CALLER_SAVED:
            mark_not_init(caller.regs[r])
        if self.log.enabled:
            from pybpf.verifier.log import format_state
            refs = [r.id for r in st.refs]
            self.verbose("caller:\n" + format_state(caller, refs) + "\n")
            self.verbose("callee:\n" + format_state(callee, refs) + "\n")
        self.log.mark_all_scratched()  # init_func_state
        self.stack_live.reset_callchain()
        self.insn_idx = target - 1

    def prepare_func_exit(self: Verifier) -> None:
        st = self.state
        self.stack_live.update_live_stack(st)
        callee = st.cur
        r0 = callee.regs[0]
        if r0.type == R.PTR_TO_STACK:
            self.fail(errno.EINVAL, "cannot return stack pointer to the caller\n")
        if callee.in_callback:
            self.callback_exit()
            return
        caller = st.frames[-2]
        caller.regs[0].assign(r0)
        caller.regs[0].subreg_def = r0.subreg_def  # the whole register returns (a 32-bit def too)
        self.insn_idx = callee.callsite + 1
        if self.log.enabled:
            from pybpf.verifier.log import format_state
            refs = [r.id for r in st.refs]
            self.verbose("returning from callee:\n" + format_state(callee, refs) + "\n")
            self.verbose(f"to caller at {self.insn_idx}:\n" + format_state(caller, refs) + "\n")
            self.log.mark_clean()
        st.frames.pop()

    def check_return_code(self: Verifier, regno: int = 0, name: str = "R0") -> None:
        """``check_return_code``: R0 at the program's exit (R1 at a ``bpf_throw`` whose
        cookie becomes the return value)."""
        self.check_reg_arg(regno, src=True)
        reg = self.regs[regno]
        if not self.allow_ptr_leaks and reg.type != R.SCALAR_VALUE:
            self.fail(errno.EACCES, f"{name} leaks addr as return value\n")
        ops = self.prog_ops
        rng = None
        exit_ctx = "At program exit"
        frame0 = self.state.frames[0]
        if self.state.cur.in_async_callback:  # timer callbacks return 0, task works an int
            exit_ctx, rng = "At async callback return", self.state.cur.callback_ret_range
        elif frame0.subprogno and not frame0.in_exception_callback:  # a global function
            if reg.type != R.SCALAR_VALUE:
                self.fail(errno.EINVAL, "At subprogram exit the register R0 is not a scalar value "
                                        f"({reg_type_str(reg.type)})\n")
            return
        elif ops is not None and hasattr(ops, "return_range"):
            rng = ops.return_range(self.prog_info)
        if rng is None:
            return
        if reg.type != R.SCALAR_VALUE:
            self.fail(errno.EINVAL, f"{exit_ctx} the register {name} is not a known value "
                                    f"({reg_type_str(reg.type)})\n")
        self.mark_chain_precision(regno)
        lo, hi = rng
        if not (reg.smin >= lo and reg.smax <= hi):
            self.fail(errno.EINVAL, invalid_scalar_text(reg, lo, hi, exit_ctx, name))


def invalid_scalar_text(reg: Reg, lo: int, hi: int, ctx: str, name: str) -> str:
    """``verbose_invalid_scalar``: why a returned scalar is out of its allowed range."""
    text = f"{ctx} the register {name} has"
    unknown = True
    if reg.smin > S64_MIN:
        text += f" smin={reg.smin}"
        unknown = False
    if reg.smax < S64_MAX:
        text += f" smax={reg.smax}"
        unknown = False
    if unknown:
        text += " unknown scalar value"
    return text + f" should have been in [{lo}, {hi}]\n"
