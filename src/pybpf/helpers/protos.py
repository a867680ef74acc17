"""Prototypes of the non-map helpers pybpf knows (``struct bpf_func_proto`` as data).

Argument types use :class:`~pybpf.helpers.proto.ArgType` OR-ed with
:class:`~pybpf.helpers.proto.ArgFlag` modifiers, and :data:`OBJ_RELEASE` for arguments a
helper releases (``bpf_sk_release``, ``bpf_ringbuf_submit``). Return flags go in
``ret_flags`` (``PTR_MAYBE_NULL``, ``MEM_RINGBUF``…, the verifier's register flags).
Implementations live in :mod:`pybpf.helpers.impls`; map helpers come from
:mod:`pybpf.helpers.maps` when present.
"""

from __future__ import annotations

from pybpf.helpers.proto import ArgFlag, ArgType, FuncProto, RetType

OBJ_RELEASE = 1 << 21
MAYBE_NULL = int(ArgFlag.PTR_MAYBE_NULL)
RDONLY = int(ArgFlag.MEM_RDONLY)
UNINIT_MEM = int(ArgType.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_UNINIT) | int(ArgFlag.MEM_WRITE)
RO_MEM = int(ArgType.ARG_PTR_TO_MEM) | RDONLY

# verifier register flags used as ret_flags (see pybpf.verifier.regs)
R_MAYBE_NULL = 1 << 8
R_RDONLY = 1 << 9
R_RINGBUF = 1 << 10

A = ArgType
CTX = int(A.ARG_PTR_TO_CTX)
ANY = int(A.ARG_ANYTHING)
MAP = int(A.ARG_CONST_MAP_PTR)
KEY = int(A.ARG_PTR_TO_MAP_KEY)
VAL = int(A.ARG_PTR_TO_MAP_VALUE)
SIZE = int(A.ARG_CONST_SIZE)
SIZE0 = int(A.ARG_CONST_SIZE_OR_ZERO)
SOCK_COMMON = int(A.ARG_PTR_TO_SOCK_COMMON)
BTF_SOCK_COMMON = int(A.ARG_PTR_TO_BTF_ID_SOCK_COMMON)


def _p(fid: int, name: str, ret: int = RetType.RET_INTEGER, args: tuple[int, ...] = (), *,
       gpl: bool = False, pkt: bool = False, ret_flags: int = 0,
       arg_size: tuple[int, ...] = (), sleeps: bool = False) -> FuncProto:
    return FuncProto(fid, name, None, int(ret), args, gpl, sleeps, pkt, ret_flags, arg_size)


_ALL = [
    _p(1, "map_lookup_elem", RetType.RET_PTR_TO_MAP_VALUE, (MAP, KEY), pkt=True, ret_flags=R_MAYBE_NULL),
    _p(2, "map_update_elem", args=(MAP, KEY, VAL, ANY), pkt=True),
    _p(3, "map_delete_elem", args=(MAP, KEY), pkt=True),
    _p(4, "probe_read", args=(UNINIT_MEM, SIZE0, ANY), gpl=True),
    _p(5, "ktime_get_ns"),
    _p(6, "trace_printk", args=(RO_MEM, SIZE), gpl=True),
    _p(7, "get_prandom_u32"),
    _p(8, "get_smp_processor_id"),
    _p(9, "skb_store_bytes", args=(CTX, ANY, RO_MEM, SIZE, ANY)),
    _p(10, "l3_csum_replace", args=(CTX, ANY, ANY, ANY, ANY)),
    _p(11, "l4_csum_replace", args=(CTX, ANY, ANY, ANY, ANY)),
    _p(12, "tail_call", RetType.RET_VOID, (CTX, MAP, ANY)),
    _p(13, "clone_redirect", args=(CTX, ANY, ANY)),
    _p(14, "get_current_pid_tgid"),
    _p(15, "get_current_uid_gid"),
    _p(16, "get_current_comm", args=(UNINIT_MEM, SIZE)),
    _p(17, "get_cgroup_classid", args=(CTX,)),
    _p(18, "skb_vlan_push", args=(CTX, ANY, ANY)),
    _p(19, "skb_vlan_pop", args=(CTX,)),
    _p(20, "skb_get_tunnel_key", args=(CTX, UNINIT_MEM, SIZE, ANY)),
    _p(21, "skb_set_tunnel_key", args=(CTX, RO_MEM, SIZE, ANY)),
    _p(22, "perf_event_read", args=(MAP, ANY)),
    _p(23, "redirect", args=(ANY, ANY)),
    _p(24, "get_route_realm", args=(CTX,)),
    _p(25, "perf_event_output", args=(CTX, MAP, ANY, RO_MEM, SIZE0), gpl=True),
    _p(26, "skb_load_bytes", args=(CTX, ANY, UNINIT_MEM, SIZE)),
    _p(27, "get_stackid", args=(CTX, MAP, ANY), gpl=True),
    _p(28, "csum_diff", args=(RO_MEM | MAYBE_NULL, SIZE0, RO_MEM | MAYBE_NULL, SIZE0, ANY), pkt=True),
    _p(31, "skb_change_proto", args=(CTX, ANY, ANY)),
    _p(32, "skb_change_type", args=(CTX, ANY)),
    _p(33, "skb_under_cgroup", args=(CTX, MAP, ANY)),
    _p(34, "get_hash_recalc", args=(CTX,)),
    _p(37, "current_task_under_cgroup", args=(MAP, ANY)),
    _p(80, "get_current_cgroup_id"),
    _p(123, "get_current_ancestor_cgroup_id", args=(ANY,)),
    _p(48, "set_hash", args=(CTX, ANY)),
    _p(50, "skb_adjust_room", args=(CTX, ANY, ANY, ANY)),
    _p(35, "get_current_task", gpl=True),
    _p(38, "skb_change_tail", args=(CTX, ANY, ANY)),
    _p(39, "skb_pull_data", args=(CTX, ANY)),
    _p(40, "csum_update", args=(CTX, ANY)),
    _p(43, "skb_change_head", args=(CTX, ANY, ANY)),
    _p(44, "xdp_adjust_head", args=(CTX, ANY)),
    _p(45, "probe_read_str", args=(UNINIT_MEM, SIZE0, ANY), gpl=True),
    _p(46, "get_socket_cookie", args=(CTX,)),
    _p(47, "get_socket_uid", args=(CTX,)),
    _p(51, "redirect_map", args=(MAP, ANY, ANY)),
    _p(52, "sk_redirect_map", args=(CTX, MAP, ANY, ANY)),
    _p(53, "sock_map_update", args=(CTX, MAP, KEY, ANY)),
    _p(54, "xdp_adjust_meta", args=(CTX, ANY)),
    _p(57, "getsockopt", args=(CTX, ANY, ANY, UNINIT_MEM, SIZE)),
    _p(67, "get_stack", args=(CTX, UNINIT_MEM, SIZE0, ANY), gpl=True),
    _p(68, "skb_load_bytes_relative", args=(CTX, ANY, UNINIT_MEM, SIZE, ANY)),
    _p(69, "fib_lookup", args=(CTX, int(A.ARG_PTR_TO_MEM), SIZE, ANY), gpl=True),
    _p(81, "get_local_storage", RetType.RET_PTR_TO_MAP_VALUE, (MAP, ANY)),
    _p(82, "sk_select_reuseport", args=(CTX, MAP, KEY, ANY)),
    _p(84, "sk_lookup_tcp", RetType.RET_PTR_TO_SOCKET, (CTX, RO_MEM, SIZE, ANY, ANY), pkt=True,
       ret_flags=R_MAYBE_NULL),
    _p(85, "sk_lookup_udp", RetType.RET_PTR_TO_SOCKET, (CTX, RO_MEM, SIZE, ANY, ANY), pkt=True,
       ret_flags=R_MAYBE_NULL),
    _p(86, "sk_release", args=(BTF_SOCK_COMMON | OBJ_RELEASE,)),
    _p(87, "map_push_elem", args=(MAP, VAL, ANY)),
    _p(88, "map_pop_elem", args=(MAP, VAL | int(ArgFlag.MEM_UNINIT) | int(ArgFlag.MEM_WRITE))),
    _p(89, "map_peek_elem", args=(MAP, VAL | int(ArgFlag.MEM_UNINIT) | int(ArgFlag.MEM_WRITE))),
    _p(93, "spin_lock", RetType.RET_VOID, (int(A.ARG_PTR_TO_SPIN_LOCK),)),
    _p(94, "spin_unlock", RetType.RET_VOID, (int(A.ARG_PTR_TO_SPIN_LOCK),)),
    _p(95, "sk_fullsock", RetType.RET_PTR_TO_SOCKET, (SOCK_COMMON,), ret_flags=R_MAYBE_NULL),
    _p(96, "tcp_sock", RetType.RET_PTR_TO_TCP_SOCK, (SOCK_COMMON,), ret_flags=R_MAYBE_NULL),
    _p(98, "get_listener_sock", RetType.RET_PTR_TO_SOCKET, (SOCK_COMMON,), ret_flags=R_MAYBE_NULL),
    _p(99, "skc_lookup_tcp", RetType.RET_PTR_TO_SOCK_COMMON, (CTX, RO_MEM, SIZE, ANY, ANY), pkt=True,
       ret_flags=R_MAYBE_NULL),
    _p(105, "strtol", args=(RO_MEM, SIZE, ANY, UNINIT_MEM | int(ArgFlag.MEM_FIXED_SIZE)), arg_size=(0, 0, 0, 8)),
    _p(106, "strtoul", args=(RO_MEM, SIZE, ANY, UNINIT_MEM | int(ArgFlag.MEM_FIXED_SIZE)), arg_size=(0, 0, 0, 8)),
    _p(107, "sk_storage_get", RetType.RET_PTR_TO_MAP_VALUE, (MAP, BTF_SOCK_COMMON, VAL | MAYBE_NULL, ANY),
       ret_flags=R_MAYBE_NULL),
    _p(108, "sk_storage_delete", args=(MAP, BTF_SOCK_COMMON)),
    _p(112, "probe_read_user", args=(UNINIT_MEM, SIZE0, ANY), gpl=True),
    _p(113, "probe_read_kernel", args=(UNINIT_MEM, SIZE0, ANY), gpl=True),
    _p(114, "probe_read_user_str", args=(UNINIT_MEM, SIZE0, ANY), gpl=True),
    _p(115, "probe_read_kernel_str", args=(UNINIT_MEM, SIZE0, ANY), gpl=True),
    _p(118, "jiffies64"),
    _p(122, "get_netns_cookie", args=(CTX | MAYBE_NULL,)),
    _p(124, "sk_assign", args=(CTX, BTF_SOCK_COMMON, ANY)),  # tc's; sk_lookup has its own
    _p(125, "ktime_get_boot_ns"),
    _p(126, "seq_printf", args=(int(A.ARG_PTR_TO_BTF_ID), RO_MEM, SIZE, RO_MEM | MAYBE_NULL, SIZE0),
       gpl=True),
    _p(127, "seq_write", args=(int(A.ARG_PTR_TO_BTF_ID), RO_MEM, SIZE0), gpl=True),
    _p(130, "ringbuf_output", args=(MAP, RO_MEM, SIZE0, ANY)),
    _p(131, "ringbuf_reserve", RetType.RET_PTR_TO_MEM, (MAP, int(A.ARG_CONST_ALLOC_SIZE_OR_ZERO), ANY),
       ret_flags=R_MAYBE_NULL | R_RINGBUF),
    _p(132, "ringbuf_submit", RetType.RET_VOID, (int(A.ARG_PTR_TO_RINGBUF_MEM) | OBJ_RELEASE, ANY)),
    _p(133, "ringbuf_discard", RetType.RET_VOID, (int(A.ARG_PTR_TO_RINGBUF_MEM) | OBJ_RELEASE, ANY)),
    _p(134, "ringbuf_query", args=(MAP, ANY)),
    _p(137, "skc_to_tcp_sock", RetType.RET_PTR_TO_BTF_ID, (BTF_SOCK_COMMON,), ret_flags=R_MAYBE_NULL),
    _p(139, "skc_to_tcp_request_sock", RetType.RET_PTR_TO_BTF_ID, (BTF_SOCK_COMMON,), ret_flags=R_MAYBE_NULL),
    _p(141, "get_task_stack", args=(int(A.ARG_PTR_TO_BTF_ID), UNINIT_MEM, SIZE0, ANY)),
    _p(147, "d_path", args=(int(A.ARG_PTR_TO_BTF_ID), UNINIT_MEM, SIZE0)),
    _p(148, "copy_from_user", args=(UNINIT_MEM, SIZE0, ANY), sleeps=True),
    # 6.18's bpf_base_func_proto offers these to every program type (the capability decides)
    _p(42, "get_numa_node_id"),
    _p(55, "perf_event_read_value", args=(MAP, ANY, UNINIT_MEM, SIZE), gpl=True),
    _p(109, "send_signal", args=(ANY,)),
    _p(117, "send_signal_thread", args=(ANY,)),
    _p(120, "get_ns_current_pid_tgid", args=(ANY, ANY, UNINIT_MEM, SIZE)),
    _p(149, "snprintf_btf", args=(int(A.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_WRITE), SIZE, RO_MEM, SIZE, ANY)),
    _p(156, "task_storage_get", RetType.RET_PTR_TO_MAP_VALUE, (MAP, int(A.ARG_PTR_TO_BTF_ID) | MAYBE_NULL, VAL | MAYBE_NULL, ANY),
       ret_flags=R_MAYBE_NULL),
    _p(157, "task_storage_delete", args=(MAP, int(A.ARG_PTR_TO_BTF_ID))),
    _p(175, "task_pt_regs", RetType.RET_PTR_TO_BTF_ID, (int(A.ARG_PTR_TO_BTF_ID),), gpl=True),
    _p(176, "get_branch_snapshot", args=(UNINIT_MEM, SIZE0, ANY), gpl=True),
    _p(210, "cgrp_storage_get", RetType.RET_PTR_TO_MAP_VALUE, (MAP, int(A.ARG_PTR_TO_BTF_ID) | MAYBE_NULL, VAL | MAYBE_NULL, ANY),
       ret_flags=R_MAYBE_NULL),
    _p(211, "cgrp_storage_delete", args=(MAP, int(A.ARG_PTR_TO_BTF_ID))),
    # program-type specific helpers (net/core/filter.c, kernel/bpf/cgroup.c): the verifier
    # knows them; those without an implementation fault at run time ("unknown helper")
    _p(29, "skb_get_tunnel_opt", args=(CTX, UNINIT_MEM, SIZE)),
    _p(30, "skb_set_tunnel_opt", args=(CTX, RO_MEM, SIZE)),
    _p(41, "set_hash_invalid", args=(CTX,)),
    _p(49, "setsockopt", args=(CTX, ANY, ANY, RO_MEM, SIZE)),
    _p(56, "perf_prog_read_value", args=(CTX, UNINIT_MEM, SIZE), gpl=True),
    _p(59, "sock_ops_cb_flags_set", args=(CTX, ANY)),
    _p(60, "msg_redirect_map", args=(CTX, MAP, ANY, ANY)),
    _p(61, "msg_apply_bytes", args=(CTX, ANY)),
    _p(62, "msg_cork_bytes", args=(CTX, ANY)),
    _p(63, "msg_pull_data", args=(CTX, ANY, ANY, ANY)),
    _p(64, "bind", args=(CTX, RO_MEM, SIZE)),
    _p(66, "skb_get_xfrm_state", args=(CTX, ANY, UNINIT_MEM, SIZE, ANY)),
    _p(70, "sock_hash_update", args=(CTX, MAP, KEY, ANY)),
    _p(71, "msg_redirect_hash", args=(CTX, MAP, KEY, ANY)),
    _p(72, "sk_redirect_hash", args=(CTX, MAP, KEY, ANY)),
    _p(73, "lwt_push_encap", args=(CTX, ANY, RO_MEM, SIZE)),
    _p(79, "skb_cgroup_id", args=(CTX,)),
    _p(83, "skb_ancestor_cgroup_id", args=(CTX, ANY)),
    _p(90, "msg_push_data", args=(CTX, ANY, ANY, ANY)),
    _p(91, "msg_pop_data", args=(CTX, ANY, ANY, ANY)),
    _p(97, "skb_ecn_set_ce", args=(CTX,)),
    _p(100, "tcp_check_syncookie", args=(BTF_SOCK_COMMON, RO_MEM, SIZE, RO_MEM, SIZE), gpl=True),
    _p(101, "sysctl_get_name", args=(CTX, int(A.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_WRITE), SIZE, ANY)),
    _p(102, "sysctl_get_current_value", args=(CTX, UNINIT_MEM, SIZE)),
    _p(103, "sysctl_get_new_value", args=(CTX, UNINIT_MEM, SIZE)),
    _p(104, "sysctl_set_new_value", args=(CTX, RO_MEM, SIZE)),
    _p(110, "tcp_gen_syncookie", args=(BTF_SOCK_COMMON, RO_MEM, SIZE, RO_MEM, SIZE), gpl=True),
    _p(119, "read_branch_records", args=(CTX, int(A.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_WRITE) | MAYBE_NULL, SIZE0, ANY), gpl=True),
    _p(128, "sk_cgroup_id", args=(BTF_SOCK_COMMON,)),
    _p(129, "sk_ancestor_cgroup_id", args=(BTF_SOCK_COMMON, ANY)),
    _p(135, "csum_level", args=(CTX, ANY)),
    _p(142, "load_hdr_opt", args=(CTX, int(A.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_WRITE), SIZE, ANY)),
    _p(143, "store_hdr_opt", args=(CTX, RO_MEM, SIZE, ANY)),
    _p(144, "reserve_hdr_opt", args=(CTX, ANY, ANY)),
    _p(151, "skb_cgroup_classid", args=(CTX,)),
    _p(152, "redirect_neigh", args=(ANY, RO_MEM | MAYBE_NULL, SIZE0, ANY)),
    _p(155, "redirect_peer", args=(ANY, ANY)),
    _p(163, "check_mtu", args=(CTX, ANY, int(A.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_FIXED_SIZE) | int(ArgFlag.MEM_WRITE), ANY, ANY), gpl=True,
       arg_size=(0, 0, 4)),
    _p(186, "get_retval"),
    _p(187, "set_retval", args=(ANY,)),
    _p(188, "xdp_get_buff_len", args=(CTX,)),
    _p(192, "skb_set_tstamp", args=(CTX, ANY, ANY)),
    _p(204, "tcp_raw_gen_syncookie_ipv4", args=(int(A.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_FIXED_SIZE), int(A.ARG_PTR_TO_MEM), SIZE0), gpl=True,
       arg_size=(20,)),
    _p(205, "tcp_raw_gen_syncookie_ipv6", args=(int(A.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_FIXED_SIZE), int(A.ARG_PTR_TO_MEM), SIZE0), gpl=True,
       arg_size=(40,)),
    _p(206, "tcp_raw_check_syncookie_ipv4", args=(int(A.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_FIXED_SIZE), int(A.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_FIXED_SIZE)), gpl=True, arg_size=(20, 20)),
    _p(207, "tcp_raw_check_syncookie_ipv6", args=(int(A.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_FIXED_SIZE), int(A.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_FIXED_SIZE)), gpl=True, arg_size=(40, 20)),
    _p(191, "copy_from_user_task", args=(UNINIT_MEM, SIZE0, ANY, int(A.ARG_PTR_TO_BTF_ID), ANY),
       gpl=True, sleeps=True),
    _p(150, "seq_printf_btf", args=(int(A.ARG_PTR_TO_BTF_ID), RO_MEM, SIZE0, ANY), gpl=True),
    _p(153, "per_cpu_ptr", RetType.RET_PTR_TO_MEM_OR_BTF_ID, (int(A.ARG_PTR_TO_PERCPU_BTF_ID), ANY),
       ret_flags=R_MAYBE_NULL | R_RDONLY),
    _p(154, "this_cpu_ptr", RetType.RET_PTR_TO_MEM_OR_BTF_ID, (int(A.ARG_PTR_TO_PERCPU_BTF_ID),),
       ret_flags=R_RDONLY),
    _p(160, "ktime_get_coarse_ns"),
    _p(164, "for_each_map_elem", args=(MAP, int(A.ARG_PTR_TO_FUNC), int(A.ARG_PTR_TO_STACK) | MAYBE_NULL, ANY)),
    _p(169, "timer_init", args=(int(A.ARG_PTR_TO_TIMER), MAP, ANY)),
    _p(170, "timer_set_callback", args=(int(A.ARG_PTR_TO_TIMER), int(A.ARG_PTR_TO_FUNC))),
    _p(171, "timer_start", args=(int(A.ARG_PTR_TO_TIMER), ANY, ANY)),
    _p(172, "timer_cancel", args=(int(A.ARG_PTR_TO_TIMER),)),
    _p(165, "snprintf", args=(int(A.ARG_PTR_TO_MEM) | MAYBE_NULL | int(ArgFlag.MEM_WRITE), SIZE0,
                              int(A.ARG_PTR_TO_CONST_STR), RO_MEM | MAYBE_NULL, SIZE0), gpl=True),
    _p(177, "trace_vprintk", args=(RO_MEM, SIZE, RO_MEM | MAYBE_NULL, SIZE0), gpl=True),
    _p(181, "loop", args=(ANY, int(A.ARG_PTR_TO_FUNC), int(A.ARG_PTR_TO_STACK) | MAYBE_NULL, ANY)),
    _p(65, "xdp_adjust_tail", args=(CTX, ANY)),
    _p(182, "strncmp", args=(RO_MEM, SIZE, int(A.ARG_PTR_TO_CONST_STR))),
    _p(189, "xdp_load_bytes", args=(CTX, ANY, UNINIT_MEM, SIZE)),
    _p(190, "xdp_store_bytes", args=(CTX, ANY, RO_MEM, SIZE)),
    _p(208, "ktime_get_tai_ns"),
    _p(194, "kptr_xchg", RetType.RET_PTR_TO_BTF_ID, (int(A.ARG_KPTR_XCHG_DEST), int(A.ARG_PTR_TO_BTF_ID) | MAYBE_NULL | OBJ_RELEASE),
       ret_flags=R_MAYBE_NULL),
    _p(195, "map_lookup_percpu_elem", RetType.RET_PTR_TO_MAP_VALUE, (MAP, KEY, ANY), ret_flags=R_MAYBE_NULL),
]

HELPER_PROTOS: dict[int, FuncProto] = {p.func_id: p for p in _ALL}


def func_id_name(fid: int) -> str:
    """``func_id_name``: ``bpf_<name>`` for a known helper id, else ``unknown``."""
    try:
        from pybpf.uapi.linux_bpf import BpfFuncId
        return "bpf_" + BpfFuncId(fid).name[len("BPF_FUNC_"):]
    except (ImportError, ValueError):
        p = HELPER_PROTOS.get(fid)
        return p.kernel_name if p else "unknown"
