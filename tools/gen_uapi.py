#!/usr/bin/env python3
"""Generate ``src/pybpf/uapi/linux_bpf.py`` from the running kernel's BTF.

Usage::

    python tools/gen_uapi.py [BTF_FILE] [--out PATH] [--release UNAME_R]

``BTF_FILE`` defaults to ``/sys/kernel/btf/vmlinux``. The kernel is the specification
(see DESIGN.md, "The reference is Linux 6.18"): enum values and struct layouts are read from its BTF, never typed in.
Only what BTF cannot carry -- the ``#define`` constants of ``include/uapi/linux/bpf.h``,
``bpf_common.h`` and a few kernel-internal verifier constants -- is listed by hand in
:data:`SUPPLEMENT`, with the header each value comes from.

What goes into the generated module:

* one ``IntEnum``/``IntFlag`` class per enum of bpf.h (named enums: CamelCase of the C
  name; anonymous enums: the name given in :data:`ANON_ENUMS`), plus every enumerator as a
  plain module-level ``int``. Enumerators spelled ``__X`` (the ``__MAX_*`` sentinels) are
  module-level constants only: inside a class body Python would mangle them.
* the supplement constants;
* ctypes layouts of ``union bpf_attr`` (one Structure per command view, named in
  :data:`ATTR_VIEWS`), of every struct of bpf.h present in BTF, and of whatever they
  reference; ``ATTR_VIEW`` (command -> view class), ``STRUCTS`` (C name -> class) and
  ``LAYOUTS`` / ``BITFIELDS`` (the sizes and offsets BTF records, for tests).

Every generated layout is checked against BTF before the file is written; the generator
fails rather than emit a layout that differs from the kernel's.
"""

from __future__ import annotations

import argparse
import ctypes
import keyword
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pybpf.btf import (  # noqa: E402  (needs the sys.path line above)
    Btf,
    BtfArray,
    BtfComposite,
    BtfEnum,
    BtfFloat,
    BtfInt,
    BtfKind,
    BtfPtr,
    BtfType,
    BtfUnion,
    IntEncoding,
)

DEFAULT_BTF = "/sys/kernel/btf/vmlinux"
DEFAULT_OUT = ROOT / "src" / "pybpf" / "uapi" / "linux_bpf.py"

# --------------------------------------------------------------------------- enums

#: Named enums of include/uapi/linux/bpf.h (Linux 6.18) -> True when the values are
#: bit flags (IntFlag), False for plain enumerations (IntEnum).
NAMED_ENUMS: dict[str, bool] = {
    "bpf_cond_pseudo_jmp": False,
    "bpf_cgroup_iter_order": False,
    "bpf_cmd": False,
    "bpf_map_type": False,
    "bpf_prog_type": False,
    "bpf_attach_type": False,
    "bpf_link_type": False,
    "bpf_perf_event_type": False,
    "bpf_addr_space_cast": False,
    "bpf_stats_type": False,
    "bpf_stack_build_id_status": False,
    "bpf_func_id": False,
    "bpf_adj_room_mode": False,
    "bpf_hdr_start_off": False,
    "bpf_lwt_encap_mode": False,
    "bpf_ret_code": False,
    "tcx_action_base": False,
    "xdp_action": False,
    "sk_action": False,
    "bpf_check_mtu_flags": True,
    "bpf_check_mtu_ret": False,
    "bpf_task_fd_type": False,
    "bpf_core_relo_kind": False,
    "bpf_kfunc_flags": True,
}


@dataclass(frozen=True)
class AnonEnum:
    """An anonymous enum of bpf.h, found in BTF by its first enumerator."""

    first: str
    cls: str
    flags: bool
    doc: str


#: Anonymous enums of bpf.h: our class name for each (the C has none).
ANON_ENUMS: list[AnonEnum] = [
    AnonEnum("BPF_REG_0", "BpfReg", False, "register numbers"),
    AnonEnum("BPF_F_KPROBE_MULTI_RETURN", "BpfKprobeMultiFlags", True,
             "link_create.kprobe_multi.flags"),
    AnonEnum("BPF_F_UPROBE_MULTI_RETURN", "BpfUprobeMultiFlags", True,
             "link_create.uprobe_multi.flags"),
    AnonEnum("BPF_ANY", "BpfUpdateFlags", True, "flags of BPF_MAP_UPDATE_ELEM / lookup"),
    AnonEnum("BPF_F_NO_PREALLOC", "BpfMapFlags", True,
             "map_flags of BPF_MAP_CREATE and file flags of BPF_OBJ_*"),
    AnonEnum("BPF_STREAM_STDOUT", "BpfStreamId", False, "BPF_PROG_STREAM_READ_BY_FD ids"),
    AnonEnum("BPF_F_RECOMPUTE_CSUM", "BpfStoreBytesFlags", True, "bpf_skb_store_bytes flags"),
    AnonEnum("BPF_F_HDR_FIELD_MASK", "BpfCsumReplaceMask", True,
             "bpf_l3/l4_csum_replace header field size mask"),
    AnonEnum("BPF_F_PSEUDO_HDR", "BpfL4CsumReplaceFlags", True, "bpf_l4_csum_replace flags"),
    AnonEnum("BPF_F_TUNINFO_IPV6", "BpfTunnelKeyFlags", True,
             "bpf_skb_{set,get}_tunnel_key flags"),
    AnonEnum("BPF_F_SKIP_FIELD_MASK", "BpfStackFlags", True,
             "bpf_get_stackid / bpf_get_stack flags"),
    AnonEnum("BPF_F_ZERO_CSUM_TX", "BpfSetTunnelKeyFlags", True,
             "bpf_skb_set_tunnel_key flags"),
    AnonEnum("BPF_F_TUNINFO_FLAGS", "BpfGetTunnelKeyFlags", True,
             "bpf_skb_get_tunnel_key flags"),
    AnonEnum("BPF_F_INDEX_MASK", "BpfPerfEventFlags", True,
             "bpf_perf_event_output / read / read_value flags"),
    AnonEnum("BPF_F_CURRENT_NETNS", "BpfNetns", False, "current network namespace"),
    AnonEnum("BPF_CSUM_LEVEL_QUERY", "BpfCsumLevel", False, "bpf_csum_level levels"),
    AnonEnum("BPF_F_ADJ_ROOM_FIXED_GSO", "BpfAdjRoomFlags", True, "bpf_skb_adjust_room flags"),
    AnonEnum("BPF_ADJ_ROOM_ENCAP_L2_MASK", "BpfAdjRoomEncapL2", False,
             "encoding of the L2 length in bpf_skb_adjust_room flags"),
    AnonEnum("BPF_F_SYSCTL_BASE_NAME", "BpfSysctlFlags", True, "bpf_sysctl_get_name flags"),
    AnonEnum("BPF_LOCAL_STORAGE_GET_F_CREATE", "BpfLocalStorageFlags", True,
             "bpf_<obj>_storage_get flags"),
    AnonEnum("BPF_F_GET_BRANCH_RECORDS_SIZE", "BpfBranchRecordsFlags", True,
             "bpf_read_branch_records flags"),
    AnonEnum("BPF_RB_NO_WAKEUP", "BpfRingbufFlags", True,
             "bpf_ringbuf_{commit,discard,output} flags"),
    AnonEnum("BPF_RB_AVAIL_DATA", "BpfRingbufQuery", False, "bpf_ringbuf_query flags"),
    AnonEnum("BPF_RINGBUF_BUSY_BIT", "BpfRingbufHeader", True, "ring buffer record header"),
    AnonEnum("BPF_SK_LOOKUP_F_REPLACE", "BpfSkLookupFlags", True, "bpf_sk_assign flags"),
    AnonEnum("BPF_F_BPRM_SECUREEXEC", "BpfBprmFlags", True, "bpf_bprm_opts_set flags"),
    AnonEnum("BPF_F_INGRESS", "BpfRedirectFlags", True, "bpf_redirect / redirect_map flags"),
    AnonEnum("BPF_SKB_TSTAMP_UNSPEC", "BpfSkbClock", False, "__sk_buff.tstamp_type values"),
    AnonEnum("BPF_SOCK_OPS_RTO_CB_FLAG", "BpfSockOpsCbFlags", True,
             "bpf_sock_ops_cb_flags_set flags"),
    AnonEnum("SK_BPF_CB_TX_TIMESTAMPING", "SkBpfCbFlags", True, "SK_BPF_CB_FLAGS values"),
    AnonEnum("BPF_SOCK_OPS_VOID", "BpfSockOpsOp", False, "bpf_sock_ops.op values"),
    AnonEnum("BPF_TCP_ESTABLISHED", "BpfTcpState", False, "TCP states seen by sock_ops"),
    AnonEnum("TCP_BPF_IW", "TcpBpfSockopt", False, "TCP bpf_setsockopt/getsockopt options"),
    AnonEnum("BPF_LOAD_HDR_OPT_TCP_SYN", "BpfLoadHdrOptFlags", True,
             "bpf_load_hdr_opt flags"),
    AnonEnum("BPF_WRITE_HDR_TCP_CURRENT_MSS", "BpfWriteHdrFlags", False,
             "bpf_sock_ops.args[0] of BPF_SOCK_OPS_HDR_OPT_LEN_CB"),
    AnonEnum("BPF_DEVCG_ACC_MKNOD", "BpfDevcgAccess", True, "bpf_cgroup_dev_ctx access type"),
    AnonEnum("BPF_DEVCG_DEV_BLOCK", "BpfDevcgDevType", True, "bpf_cgroup_dev_ctx device type"),
    AnonEnum("BPF_FIB_LOOKUP_DIRECT", "BpfFibLookupFlags", True, "bpf_fib_lookup flags"),
    AnonEnum("BPF_FIB_LKUP_RET_SUCCESS", "BpfFibLookupRet", False, "bpf_fib_lookup results"),
    AnonEnum("BPF_FLOW_DISSECTOR_F_PARSE_1ST_FRAG", "BpfFlowDissectorFlags", True,
             "bpf_flow_keys.flags"),
    AnonEnum("BTF_F_COMPACT", "BtfPrintFlags", True, "bpf_snprintf_btf / seq_printf_btf flags"),
    AnonEnum("BPF_F_TIMER_ABS", "BpfTimerFlags", True, "bpf_timer_start flags"),
]

# --------------------------------------------------------------------------- supplement

Value = int | Callable[[dict[str, int]], int]


@dataclass(frozen=True)
class Define:
    """A ``#define`` BTF cannot carry; ``value`` may derive from already-known constants."""

    name: str
    value: Value
    note: str = ""


def _ref(name: str) -> Callable[[dict[str, int]], int]:
    return lambda known: known[name]


#: Constants that are macros (values from Linux 6.18 headers), grouped by origin.
#: Enumerators of anonymous enums absent from the kernel's BTF (BPF_STREAM_*,
#: BPF_DEVCG_*) are here too, and become enum classes like the others.
SUPPLEMENT: dict[str, list[Define]] = {
    "include/uapi/linux/bpf_common.h: instruction classes, sizes, modes, ops, sources": [
        Define("BPF_LD", 0x00), Define("BPF_LDX", 0x01), Define("BPF_ST", 0x02),
        Define("BPF_STX", 0x03), Define("BPF_ALU", 0x04), Define("BPF_JMP", 0x05),
        Define("BPF_RET", 0x06), Define("BPF_MISC", 0x07),
        Define("BPF_W", 0x00), Define("BPF_H", 0x08), Define("BPF_B", 0x10),
        Define("BPF_IMM", 0x00), Define("BPF_ABS", 0x20), Define("BPF_IND", 0x40),
        Define("BPF_MEM", 0x60), Define("BPF_LEN", 0x80), Define("BPF_MSH", 0xA0),
        Define("BPF_ADD", 0x00), Define("BPF_SUB", 0x10), Define("BPF_MUL", 0x20),
        Define("BPF_DIV", 0x30), Define("BPF_OR", 0x40), Define("BPF_AND", 0x50),
        Define("BPF_LSH", 0x60), Define("BPF_RSH", 0x70), Define("BPF_NEG", 0x80),
        Define("BPF_MOD", 0x90), Define("BPF_XOR", 0xA0),
        Define("BPF_JA", 0x00), Define("BPF_JEQ", 0x10), Define("BPF_JGT", 0x20),
        Define("BPF_JGE", 0x30), Define("BPF_JSET", 0x40),
        Define("BPF_K", 0x00), Define("BPF_X", 0x08),
        Define("BPF_MAXINSNS", 4096, "classic BPF limit, also the unprivileged eBPF one"),
    ],
    "include/uapi/linux/bpf.h: eBPF instruction encoding": [
        Define("BPF_JMP32", 0x06), Define("BPF_ALU64", 0x07),
        Define("BPF_DW", 0x18), Define("BPF_MEMSX", 0x80),
        Define("BPF_ATOMIC", 0xC0), Define("BPF_XADD", 0xC0, "legacy name of BPF_ATOMIC"),
        Define("BPF_MOV", 0xB0), Define("BPF_ARSH", 0xC0), Define("BPF_END", 0xD0),
        Define("BPF_TO_LE", 0x00), Define("BPF_TO_BE", 0x08),
        Define("BPF_FROM_LE", _ref("BPF_TO_LE")), Define("BPF_FROM_BE", _ref("BPF_TO_BE")),
        Define("BPF_JNE", 0x50), Define("BPF_JLT", 0xA0), Define("BPF_JLE", 0xB0),
        Define("BPF_JSGT", 0x60), Define("BPF_JSGE", 0x70), Define("BPF_JSLT", 0xC0),
        Define("BPF_JSLE", 0xD0), Define("BPF_JCOND", 0xE0),
        Define("BPF_CALL", 0x80), Define("BPF_EXIT", 0x90),
        Define("BPF_FETCH", 0x01), Define("BPF_XCHG", 0xE1), Define("BPF_CMPXCHG", 0xF1),
        Define("BPF_LOAD_ACQ", 0x100), Define("BPF_STORE_REL", 0x110),
        Define("MAX_BPF_REG", _ref("__MAX_BPF_REG")),
    ],
    "include/uapi/linux/bpf.h: pseudo src_reg values of ld_imm64 and call": [
        Define("BPF_PSEUDO_MAP_FD", 1), Define("BPF_PSEUDO_MAP_IDX", 5),
        Define("BPF_PSEUDO_MAP_VALUE", 2), Define("BPF_PSEUDO_MAP_IDX_VALUE", 6),
        Define("BPF_PSEUDO_BTF_ID", 3), Define("BPF_PSEUDO_FUNC", 4),
        Define("BPF_PSEUDO_CALL", 1), Define("BPF_PSEUDO_KFUNC_CALL", 2),
    ],
    "include/uapi/linux/bpf.h: attach flags (BPF_PROG_ATTACH, BPF_LINK_CREATE, query)": [
        Define("MAX_BPF_ATTACH_TYPE", _ref("__MAX_BPF_ATTACH_TYPE")),
        Define("MAX_BPF_LINK_TYPE", _ref("__MAX_BPF_LINK_TYPE")),
        Define("BPF_F_ALLOW_OVERRIDE", 1 << 0), Define("BPF_F_ALLOW_MULTI", 1 << 1),
        Define("BPF_F_REPLACE", 1 << 2), Define("BPF_F_BEFORE", 1 << 3),
        Define("BPF_F_AFTER", 1 << 4), Define("BPF_F_ID", 1 << 5),
        Define("BPF_F_PREORDER", 1 << 6),
        Define("BPF_F_QUERY_EFFECTIVE", 1 << 0),
    ],
    "include/uapi/linux/bpf.h: prog_flags of BPF_PROG_LOAD": [
        Define("BPF_F_STRICT_ALIGNMENT", 1 << 0), Define("BPF_F_ANY_ALIGNMENT", 1 << 1),
        Define("BPF_F_TEST_RND_HI32", 1 << 2), Define("BPF_F_TEST_STATE_FREQ", 1 << 3),
        Define("BPF_F_SLEEPABLE", 1 << 4), Define("BPF_F_XDP_HAS_FRAGS", 1 << 5),
        Define("BPF_F_XDP_DEV_BOUND_ONLY", 1 << 6),
        Define("BPF_F_TEST_REG_INVARIANTS", 1 << 7),
        Define("BPF_F_NETFILTER_IP_DEFRAG", 1 << 0, "link_create.netfilter.flags"),
    ],
    "include/uapi/linux/bpf.h: BPF_PROG_TEST_RUN flags": [
        Define("BPF_F_TEST_RUN_ON_CPU", 1 << 0), Define("BPF_F_TEST_XDP_LIVE_FRAMES", 1 << 1),
        Define("BPF_F_TEST_SKB_CHECKSUM_COMPLETE", 1 << 2),
    ],
    "include/uapi/linux/bpf.h: sizes and miscellany": [
        Define("BPF_BUILD_ID_SIZE", 20), Define("BPF_OBJ_NAME_LEN", 16),
        Define("BPF_TAG_SIZE", 8), Define("XDP_PACKET_HEADROOM", 256),
        Define("BPF_F_REDIRECT_FLAGS", lambda k: k["BPF_F_INGRESS"] | k["BPF_F_BROADCAST"]
               | k["BPF_F_EXCLUDE_INGRESS"]),
    ],
    "include/uapi/linux/bpf.h: anonymous enums the kernel's BTF does not carry": [
        Define("BPF_STREAM_STDOUT", 1), Define("BPF_STREAM_STDERR", 2),
        Define("BPF_DEVCG_ACC_MKNOD", 1 << 0), Define("BPF_DEVCG_ACC_READ", 1 << 1),
        Define("BPF_DEVCG_ACC_WRITE", 1 << 2),
        Define("BPF_DEVCG_DEV_BLOCK", 1 << 0), Define("BPF_DEVCG_DEV_CHAR", 1 << 1),
    ],
    "include/linux/bpf_verifier.h (kernel-internal): log_level bits and log limits": [
        Define("BPF_LOG_LEVEL1", 1), Define("BPF_LOG_LEVEL2", 2),
        Define("BPF_LOG_STATS", 4), Define("BPF_LOG_FIXED", 8),
        Define("BPF_LOG_LEVEL", 3), Define("BPF_LOG_MASK", 15),
        Define("BPF_LOG_KERNEL", 16, "kernel-internal, rejected from user space"),
        Define("BPF_LOG_MIN_ALIGNMENT", 8), Define("BPF_LOG_ALIGNMENT", 40),
    ],
}

#: Anonymous enums rebuilt from the supplement: class name -> enumerator names.
SUPPLEMENT_ENUMS: dict[str, list[str]] = {
    "BPF_STREAM_STDOUT": ["BPF_STREAM_STDOUT", "BPF_STREAM_STDERR"],
    "BPF_DEVCG_ACC_MKNOD": ["BPF_DEVCG_ACC_MKNOD", "BPF_DEVCG_ACC_READ", "BPF_DEVCG_ACC_WRITE"],
    "BPF_DEVCG_DEV_BLOCK": ["BPF_DEVCG_DEV_BLOCK", "BPF_DEVCG_DEV_CHAR"],
}

# --------------------------------------------------------------------------- structs

#: Structs/unions of include/uapi/linux/bpf.h (6.18) to lay out, plus the context
#: types of other uapi headers (bpf_perf_event_data, pt_regs). Missing ones are
#: reported; those in REQUIRED_STRUCTS must exist.
STRUCTS: list[str] = [
    "bpf_insn", "bpf_lpm_trie_key_hdr", "bpf_lpm_trie_key_u8", "bpf_cgroup_storage_key",
    "bpf_iter_link_info", "bpf_attr", "bpf_stack_build_id", "__sk_buff", "bpf_tunnel_key",
    "bpf_xfrm_state", "bpf_sock", "bpf_tcp_sock", "bpf_sock_tuple", "bpf_xdp_sock", "xdp_md",
    "bpf_devmap_val", "bpf_cpumap_val", "sk_msg_md", "sk_reuseport_md", "bpf_prog_info",
    "bpf_map_info", "bpf_btf_info", "bpf_link_info", "bpf_token_info", "bpf_sock_addr",
    "bpf_sock_ops", "bpf_perf_event_value", "bpf_cgroup_dev_ctx", "bpf_raw_tracepoint_args",
    "bpf_fib_lookup", "bpf_redir_neigh", "bpf_flow_keys", "bpf_func_info", "bpf_line_info",
    "bpf_spin_lock", "bpf_timer", "bpf_task_work", "bpf_wq", "bpf_dynptr", "bpf_list_head",
    "bpf_list_node", "bpf_rb_root", "bpf_rb_node", "bpf_refcount", "bpf_sysctl",
    "bpf_sockopt", "bpf_pidns_info", "bpf_sk_lookup", "btf_ptr", "bpf_core_relo",
    "bpf_iter_num", "bpf_perf_event_data", "pt_regs",
]

REQUIRED_STRUCTS = {
    "bpf_attr", "bpf_prog_info", "bpf_map_info", "bpf_btf_info", "bpf_link_info",
    "__sk_buff", "xdp_md", "bpf_sock", "bpf_sock_addr", "pt_regs", "bpf_insn",
    "bpf_func_info", "bpf_line_info", "bpf_flow_keys", "bpf_sk_lookup",
    "bpf_raw_tracepoint_args", "bpf_perf_event_data", "bpf_spin_lock", "bpf_timer",
    "bpf_tunnel_key", "bpf_fib_lookup", "bpf_sock_ops", "sk_msg_md", "sk_reuseport_md",
    "bpf_sockopt", "bpf_sysctl", "bpf_cgroup_dev_ctx", "bpf_xdp_sock", "bpf_tcp_sock",
    "bpf_sock_tuple",
}

#: Members of union bpf_attr -> view class name. Named members are keyed by their
#: name; anonymous ones by the first (flattened) field name of their struct.
ATTR_VIEWS: dict[str, str] = {
    "map_type": "bpf_attr_map_create",
    "map_fd": "bpf_attr_map_elem",
    "batch": "bpf_attr_map_batch",
    "prog_type": "bpf_attr_prog_load",
    "pathname": "bpf_attr_obj",
    "target_fd": "bpf_attr_prog_attach",
    "test": "bpf_attr_test",
    "start_id": "bpf_attr_get_id",
    "info": "bpf_attr_info",
    "query": "bpf_attr_query",
    "raw_tracepoint": "bpf_attr_raw_tracepoint",
    "btf": "bpf_attr_btf_load",
    "task_fd_query": "bpf_attr_task_fd_query",
    "link_create": "bpf_attr_link_create",
    "link_update": "bpf_attr_link_update",
    "link_detach": "bpf_attr_link_detach",
    "enable_stats": "bpf_attr_enable_stats",
    "iter_create": "bpf_attr_iter_create",
    "prog_bind_map": "bpf_attr_prog_bind_map",
    "token_create": "bpf_attr_token_create",
    "prog_stream_read": "bpf_attr_prog_stream_read",
}

#: bpf_cmd enumerator -> view (by the view's suffix after ``bpf_attr_``).
CMD_VIEWS: dict[str, str] = {
    "BPF_MAP_CREATE": "map_create",
    "BPF_MAP_LOOKUP_ELEM": "map_elem",
    "BPF_MAP_UPDATE_ELEM": "map_elem",
    "BPF_MAP_DELETE_ELEM": "map_elem",
    "BPF_MAP_GET_NEXT_KEY": "map_elem",
    "BPF_MAP_LOOKUP_AND_DELETE_ELEM": "map_elem",
    "BPF_MAP_FREEZE": "map_elem",
    "BPF_PROG_LOAD": "prog_load",
    "BPF_OBJ_PIN": "obj",
    "BPF_OBJ_GET": "obj",
    "BPF_PROG_ATTACH": "prog_attach",
    "BPF_PROG_DETACH": "prog_attach",
    "BPF_PROG_TEST_RUN": "test",
    "BPF_PROG_RUN": "test",
    "BPF_PROG_GET_NEXT_ID": "get_id",
    "BPF_MAP_GET_NEXT_ID": "get_id",
    "BPF_PROG_GET_FD_BY_ID": "get_id",
    "BPF_MAP_GET_FD_BY_ID": "get_id",
    "BPF_BTF_GET_FD_BY_ID": "get_id",
    "BPF_BTF_GET_NEXT_ID": "get_id",
    "BPF_LINK_GET_FD_BY_ID": "get_id",
    "BPF_LINK_GET_NEXT_ID": "get_id",
    "BPF_OBJ_GET_INFO_BY_FD": "info",
    "BPF_PROG_QUERY": "query",
    "BPF_RAW_TRACEPOINT_OPEN": "raw_tracepoint",
    "BPF_BTF_LOAD": "btf_load",
    "BPF_TASK_FD_QUERY": "task_fd_query",
    "BPF_MAP_LOOKUP_BATCH": "map_batch",
    "BPF_MAP_LOOKUP_AND_DELETE_BATCH": "map_batch",
    "BPF_MAP_UPDATE_BATCH": "map_batch",
    "BPF_MAP_DELETE_BATCH": "map_batch",
    "BPF_LINK_CREATE": "link_create",
    "BPF_LINK_UPDATE": "link_update",
    "BPF_LINK_DETACH": "link_detach",
    "BPF_ENABLE_STATS": "enable_stats",
    "BPF_ITER_CREATE": "iter_create",
    "BPF_PROG_BIND_MAP": "prog_bind_map",
    "BPF_TOKEN_CREATE": "token_create",
    "BPF_PROG_STREAM_READ_BY_FD": "prog_stream_read",
}


class GenError(Exception):
    """The BTF does not allow generating what was asked (fatal)."""


# --------------------------------------------------------------------------- enum model


@dataclass
class EnumDef:
    cls: str
    c_name: str  # "enum bpf_cmd" or "anonymous enum (BPF_ANY, ...)"
    flags: bool
    values: list[tuple[str, int]]
    doc: str = ""


def camel(c_name: str) -> str:
    """``bpf_map_type`` -> ``BpfMapType``."""
    return "".join(part.capitalize() for part in c_name.split("_") if part)


def collect_enums(btf: Btf) -> tuple[list[EnumDef], list[str]]:
    """The enum classes to emit, and a list of warnings (enums missing from BTF)."""
    warnings: list[str] = []
    out: list[EnumDef] = []
    for c_name, flags in NAMED_ENUMS.items():
        t = _find_enum(btf, c_name)
        if t is None:
            warnings.append(f"enum {c_name} not in BTF")
            continue
        out.append(EnumDef(camel(c_name), f"enum {c_name}", flags,
                           [(v.name, v.value) for v in t.values]))
    by_first = _anonymous_enums(btf)
    for spec in ANON_ENUMS:
        t = by_first.get(spec.first)
        if t is None:
            if spec.first in SUPPLEMENT_ENUMS:
                continue  # built from the supplement later
            warnings.append(f"anonymous enum {spec.first} not in BTF")
            continue
        out.append(EnumDef(spec.cls, f"anonymous enum of {spec.first}", spec.flags,
                           [(v.name, v.value) for v in t.values], spec.doc))
    return out, warnings


def _find_enum(btf: Btf, name: str) -> BtfEnum | None:
    for tid in btf.find_all(name):
        t = btf[tid]
        if isinstance(t, BtfEnum):
            return t
    return None


def _anonymous_enums(btf: Btf) -> dict[str, BtfEnum]:
    found: dict[str, BtfEnum] = {}
    for t in btf.types:
        if isinstance(t, BtfEnum) and not t.name and t.values:
            found.setdefault(t.values[0].name, t)
    return found


def supplement_enums(known: dict[str, int]) -> list[EnumDef]:
    """Classes for the anonymous enums that only the supplement provides."""
    out = []
    for spec in ANON_ENUMS:
        names = SUPPLEMENT_ENUMS.get(spec.first)
        if names is None or spec.first not in known:
            continue
        out.append(EnumDef(spec.cls, f"anonymous enum of {spec.first} (supplement)",
                           spec.flags, [(n, known[n]) for n in names], spec.doc))
    return out


# --------------------------------------------------------------------------- ctypes model


@dataclass
class CType:
    """How one BTF type is spelled in ctypes, with the size/alignment ctypes will give it."""

    expr: str
    size: int
    align: int
    annotation: str  # of the attribute (what reading the field gives)
    cls: str = ""  # of the ctypes object, when it differs from expr (arrays)

    @property
    def ctype_annotation(self) -> str:
        return self.cls or self.expr


@dataclass
class Field:
    name: str
    expr: str
    align: int
    bits: int = 0


@dataclass
class ClassDef:
    pyname: str
    key: str  # key in STRUCTS/LAYOUTS: the C name, or pyname when anonymous
    btf_id: int
    union: bool
    size: int
    fields: list[Field] = field(default_factory=list)
    anonymous: list[str] = field(default_factory=list)
    packed: bool = False
    align: int = 1
    annotations: dict[str, str] = field(default_factory=dict)
    doc: str = ""


class NeedsPacking(Exception):
    """Natural ctypes alignment cannot reproduce this layout; retry with ``_pack_ = 1``."""


_INT_TYPES = {(1, False): "ctypes.c_uint8", (1, True): "ctypes.c_int8",
              (2, False): "ctypes.c_uint16", (2, True): "ctypes.c_int16",
              (4, False): "ctypes.c_uint32", (4, True): "ctypes.c_int32",
              (8, False): "ctypes.c_uint64", (8, True): "ctypes.c_int64"}


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def _py_name(c_name: str) -> str:
    """Python class name of a named C struct: leading ``__`` would be mangled in classes."""
    name = c_name.lstrip("_")
    return name + "_" if keyword.iskeyword(name) else name


class LayoutBuilder:
    """Turns BTF composites into :class:`ClassDef`s, dependencies first."""

    def __init__(self, btf: Btf) -> None:
        self.btf = btf
        self.classes: list[ClassDef] = []
        self.by_id: dict[int, ClassDef] = {}
        self.preset_names: dict[int, str] = {}
        self.used_names: set[str] = set()
        #: Extra names of anonymous types BTF dedup shares between members (the
        #: ``tcx`` and ``netkit`` structs of bpf_link_info are one type): alias -> class.
        self.aliases: dict[str, str] = {}
        self.view_docs: dict[int, str] = {}

    # ---- entry points

    def add_named(self, c_name: str) -> ClassDef | None:
        ids = [i for i in self.btf.find_all(c_name)
               if isinstance(self.btf[i], BtfComposite)]
        if not ids:
            return None
        return self.composite(ids[0], _py_name(c_name))

    def preset_attr_views(self, attr_id: int) -> dict[str, str]:
        """Name the anonymous member structs of ``union bpf_attr`` after their command."""
        attr = self.btf[attr_id]
        assert isinstance(attr, BtfComposite)
        views: dict[str, str] = {}
        for m in attr.members:
            t = self.btf.resolve(m.type)
            key = m.name or next(iter(flat_names(self.btf, t)), "")
            view = ATTR_VIEWS.get(key)
            if view is None:
                raise GenError(f"union bpf_attr member {key!r} has no view name in ATTR_VIEWS")
            self.preset_names[t.id] = view
            suffix = view.removeprefix("bpf_attr_")
            views[suffix] = view
            cmds = ", ".join(c for c, v in CMD_VIEWS.items() if v == suffix)
            self.view_docs[t.id] = f"member of union bpf_attr used by {cmds}"
        return views

    # ---- types

    def ctype(self, type_id: int, hint: str) -> CType:
        t = self.btf.resolve(type_id)
        if isinstance(t, BtfInt):
            return self._int(t)
        if isinstance(t, BtfEnum):
            expr = _INT_TYPES[(t.size, t.signed)]
            return CType(expr, t.size, t.size, "int")
        if isinstance(t, BtfPtr):
            return CType("ctypes.c_uint64", 8, 8, "int")
        if isinstance(t, BtfFloat):
            fexpr = {4: "ctypes.c_float", 8: "ctypes.c_double"}.get(t.size)
            if fexpr is None:
                raise GenError(f"float of size {t.size} unsupported")
            return CType(fexpr, t.size, t.size, "float")
        if isinstance(t, BtfArray):
            elem = self.ctype(t.type, hint)
            cls = f"ctypes.Array[{elem.ctype_annotation}]"
            ann = "bytes" if elem.expr == "ctypes.c_char" else cls
            return CType(f"({elem.expr} * {t.nelems})", elem.size * t.nelems, elem.align,
                         ann, cls)
        if isinstance(t, BtfComposite):
            cd = self.composite(t.id, _py_name(t.name) if t.name else hint)
            return CType(cd.pyname, cd.size, cd.align, cd.pyname)
        raise GenError(f"type [{t.id}] {t.kind.name} {t.name!r} cannot be laid out ({hint})")

    @staticmethod
    def _int(t: BtfInt) -> CType:
        if t.encoding & IntEncoding.BOOL:
            return CType("ctypes.c_bool", t.size, t.size, "bool")
        if t.size == 1 and t.name == "char":
            return CType("ctypes.c_char", 1, 1, "bytes")
        expr = _INT_TYPES.get((t.size, t.signed))
        if expr is None:
            raise GenError(f"integer {t.name} of size {t.size} unsupported")
        return CType(expr, t.size, t.size, "int")

    # ---- composites

    def composite(self, type_id: int, pyname: str, prefix: str = "") -> ClassDef:
        """The class of composite ``type_id``; nested types get names under ``prefix``.

        Anonymous containers are transparent for naming: the structs inside the anonymous
        union of ``bpf_link_info`` are ``bpf_link_info_<member>``.
        """
        if type_id in self.by_id:
            return self.by_id[type_id]
        t = self.btf[type_id]
        assert isinstance(t, BtfComposite)
        pyname = self._unique(self.preset_names.get(type_id, pyname))
        key = t.name if t.name else pyname
        prefix = prefix or pyname
        try:
            cd = self._layout(t, pyname, key, prefix, packed=False)
        except NeedsPacking:
            cd = self._layout(t, pyname, key, prefix, packed=True)
        if type_id in self.view_docs:
            cd.doc += f", the {self.view_docs[type_id]}"
        self.by_id[type_id] = cd
        self.classes.append(cd)
        return cd

    def _unique(self, name: str) -> str:
        base, n = name, 1
        while name in self.used_names:
            n += 1
            name = f"{base}_{n}"
        self.used_names.add(name)
        return name

    def _layout(self, t: BtfComposite, pyname: str, key: str, prefix: str,
                packed: bool) -> ClassDef:
        cd = ClassDef(pyname, key, t.id, isinstance(t, BtfUnion), t.size, packed=packed)
        cd.doc = f"{'union' if cd.union else 'struct'} {t.name or '(anonymous)'}"
        state = _LayoutState(packed)
        anon = 0
        for m in t.members:
            if not m.name and self._is_md_ptr(m.type):
                inner = self.btf.resolve(m.type)
                assert isinstance(inner, BtfComposite)
                name, ct = inner.members[0].name, CType("ctypes.c_uint64", 8, 8, "int")
            elif m.name:
                name, ct = m.name, self._member_ctype(m.type, f"{prefix}_{m.name}", "")
            else:
                name = f"_anon{anon}"
                anon += 1
                ct = self._member_ctype(m.type, f"{pyname}{name}", prefix)
                cd.anonymous.append(name)
            bits = m.bitfield_size or self._int_bits(m.type)
            if cd.union:
                state.add_union_member(cd, name, ct, m.bit_offset, bits)
            elif bits:
                state.add_bitfield(cd, name, ct, m.bit_offset, bits)
            else:
                state.add_member(cd, name, ct, m.bit_offset)
            cd.annotations[name] = "int" if bits else ct.annotation
        state.finish(cd)
        cd.align = 1 if packed else state.align
        for name in cd.anonymous:
            sub = self._class_by_name(_field_expr(cd, name))
            for k, v in sub.annotations.items():
                if not k.startswith("_"):
                    cd.annotations.setdefault(k, v)
        return cd

    def _member_ctype(self, type_id: int, hint: str, prefix: str) -> CType:
        """Like :meth:`ctype`, but names a nested anonymous composite under ``prefix``."""
        t = self.btf.resolve(type_id)
        if isinstance(t, BtfComposite) and not t.name:
            cd = self.composite(t.id, hint, prefix)
            if cd.pyname != hint and t.id not in self.preset_names \
                    and not hint.split("_")[-1].startswith("anon") \
                    and hint not in self.used_names:
                self.used_names.add(hint)
                self.aliases[hint] = cd.pyname
            return CType(cd.pyname, cd.size, cd.align, cd.pyname)
        return self.ctype(type_id, hint)

    def _class_by_name(self, pyname: str) -> ClassDef:
        for cd in self.classes:
            if cd.pyname == pyname:
                return cd
        raise GenError(f"no class {pyname}")

    def _is_md_ptr(self, type_id: int) -> bool:
        """``__bpf_md_ptr(type, name)``: an anonymous 8-byte union around one pointer."""
        t = self.btf.resolve(type_id)
        if not (isinstance(t, BtfUnion) and not t.name and t.size == 8 and len(t.members) == 1):
            return False
        only = t.members[0]
        return bool(only.name) and isinstance(self.btf.resolve(only.type), BtfPtr)

    def _int_bits(self, type_id: int) -> int:
        """Bitfield width encoded the pre-kind_flag way, in the INT itself (0 if none)."""
        t = self.btf.resolve(type_id)
        if isinstance(t, BtfInt) and t.bits != t.size * 8:
            return t.bits
        return 0


def _field_expr(cd: ClassDef, name: str) -> str:
    for f in cd.fields:
        if f.name == name:
            return f.expr
    raise GenError(f"{cd.pyname} has no field {name}")


@dataclass
class _Run:
    """An open run of bitfields sharing one storage unit, as ctypes tracks it."""

    start_bits: int
    unit_bits: int
    pos_bits: int


class _LayoutState:
    """Places members the way ctypes will, inserting explicit padding to match BTF."""

    def __init__(self, packed: bool) -> None:
        self.packed = packed
        self.cur = 0  # bytes: end of the last placed member
        self.align = 1
        self.run: _Run | None = None
        self.pads = 0

    def _pad(self, cd: ClassDef, nbytes: int) -> None:
        cd.fields.append(Field(f"_pad{self.pads}", f"(ctypes.c_uint8 * {nbytes})", 1))
        self.pads += 1
        self.cur += nbytes

    def _close_run(self) -> None:
        if self.run is not None:
            self.cur = (self.run.start_bits + self.run.unit_bits) // 8
            self.run = None

    def add_member(self, cd: ClassDef, name: str, ct: CType, bit_offset: int) -> None:
        self._close_run()
        if bit_offset % 8:
            raise GenError(f"{cd.pyname}.{name}: member not byte aligned")
        off = bit_offset // 8
        align = 1 if self.packed else ct.align
        natural = _align_up(self.cur, align)
        if off < natural:
            if self.packed:
                raise GenError(f"{cd.pyname}.{name}: overlaps the previous member")
            raise NeedsPacking
        if off > natural:
            if off % align:
                raise NeedsPacking
            self._pad(cd, off - self.cur)
        cd.fields.append(Field(name, ct.expr, align))
        self.cur = off + ct.size
        self.align = max(self.align, align)

    def add_bitfield(self, cd: ClassDef, name: str, ct: CType, bit: int, bits: int) -> None:
        unit = ct.size * 8
        run = self.run
        if run and run.unit_bits == unit and run.pos_bits <= bit \
                and bit + bits <= run.start_bits + unit:
            if bit > run.pos_bits:
                self._bit_pad(cd, ct, bit - run.pos_bits)
            cd.fields.append(Field(name, ct.expr, ct.align, bits))
            run.pos_bits = bit + bits
            return
        self._close_run()
        align = 1 if self.packed else ct.align
        start = _align_up(self.cur, align)
        if not start * 8 <= bit < start * 8 + unit or bit + bits > start * 8 + unit:
            target = (bit // unit) * unit // 8 if not self.packed else bit // 8
            if target < self.cur or target % align:
                raise NeedsPacking if not self.packed else GenError(
                    f"{cd.pyname}.{name}: bitfield placement not expressible in ctypes")
            self._pad(cd, target - self.cur)
            start = target
        self.run = _Run(start * 8, unit, start * 8)
        if bit > start * 8:
            self._bit_pad(cd, ct, bit - start * 8)
        cd.fields.append(Field(name, ct.expr, align, bits))
        self.run.pos_bits = bit + bits
        self.align = max(self.align, align)

    def _bit_pad(self, cd: ClassDef, ct: CType, bits: int) -> None:
        cd.fields.append(Field(f"_pad{self.pads}", ct.expr, ct.align, bits))
        self.pads += 1

    def add_union_member(self, cd: ClassDef, name: str, ct: CType, bit: int, bits: int) -> None:
        if bit:
            raise GenError(f"{cd.pyname}.{name}: union member at bit offset {bit}")
        cd.fields.append(Field(name, ct.expr, ct.align, bits))
        self.cur = max(self.cur, ct.size)
        self.align = max(self.align, 1 if self.packed else ct.align)

    def finish(self, cd: ClassDef) -> None:
        self._close_run()
        natural = _align_up(self.cur, self.align)
        if cd.size < natural:
            if self.packed:
                raise GenError(f"{cd.pyname}: BTF size {cd.size} < members' extent {self.cur}")
            raise NeedsPacking
        if cd.size > natural:
            if cd.size % self.align:
                raise NeedsPacking
            if cd.union:
                cd.fields.append(Field("_pad", f"(ctypes.c_uint8 * {cd.size})", 1))
            else:
                self._pad(cd, cd.size - self.cur)


# --------------------------------------------------------------------------- BTF truth


def flat_names(btf: Btf, t: BtfType) -> Iterator[str]:
    """Member names of a composite as C sees them (anonymous members flattened)."""
    if isinstance(t, BtfComposite):
        for m in t.members:
            if m.name:
                yield m.name
            else:
                yield from flat_names(btf, btf.resolve(m.type))


def btf_layout(btf: Btf, t: BtfComposite) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """``{field: byte offset}`` and ``{bitfield: (bit offset, width)}`` of ``t`` per BTF.

    Anonymous members are flattened into their parent, as C accesses them.
    """
    offsets: dict[str, int] = {}
    bitfields: dict[str, tuple[int, int]] = {}

    def walk(c: BtfComposite, base_bits: int) -> None:
        for m in c.members:
            bit = base_bits + m.bit_offset
            if not m.name:
                sub = btf.resolve(m.type)
                if isinstance(sub, BtfComposite):
                    walk(sub, bit)
                continue
            offsets[m.name] = bit // 8
            width = m.bitfield_size
            if not width:
                r = btf.resolve(m.type)
                if isinstance(r, BtfInt) and r.bits != r.size * 8:
                    width = r.bits
            if width:
                bitfields[m.name] = (bit, width)

    walk(t, 0)
    return offsets, bitfields


# --------------------------------------------------------------------------- emit


def constants(enums: list[EnumDef]) -> dict[str, int]:
    """Every enumerator and supplement constant, checking for conflicting duplicates."""
    known: dict[str, int] = {}
    for e in enums:
        for name, value in e.values:
            _define(known, name, value, e.c_name)
    for group, defines in SUPPLEMENT.items():
        for d in defines:
            value = d.value(known) if callable(d.value) else d.value
            _define(known, d.name, value, group)
    return known


def _define(known: dict[str, int], name: str, value: int, where: str) -> None:
    if name in known and known[name] != value:
        raise GenError(f"{name} = {value} ({where}) conflicts with {known[name]}")
    known[name] = value


def render(btf_path: str, release: str, enums: list[EnumDef], known: dict[str, int],
           builder: LayoutBuilder, views: dict[str, str], btf: Btf) -> str:
    out: list[str] = []
    w = out.append
    w(f"# Generated by tools/gen_uapi.py from the BTF of Linux {release} ({btf_path}).")
    w(f"# DO NOT EDIT. Regenerate with: python tools/gen_uapi.py {btf_path}")
    w('"""Linux ' + release + ' BPF uAPI: enums, constants and ctypes layouts (generated).')
    w("")
    w("Enum classes mirror the enums of include/uapi/linux/bpf.h; every enumerator and every")
    w("``#define`` of the supplement table is also a module-level ``int``. Structs are")
    w("``ctypes`` classes with the kernel's exact size and offsets (x86-64). ``__sk_buff`` is")
    w("``sk_buff`` here: names starting with ``__`` are mangled inside class bodies.")
    w("Pointer fields (``__bpf_md_ptr``, ``__aligned_u64``) are ``c_uint64``.")
    w('"""')
    w("")
    w("from __future__ import annotations")
    w("")
    w("import ctypes")
    w("from enum import IntEnum, IntFlag")
    w("")
    w(f"KERNEL_RELEASE = {release!r}")
    w("")
    names: list[str] = ["KERNEL_RELEASE"]
    _render_enums(w, enums, names)
    _render_constants(w, enums, known, names)
    _render_classes(w, builder, names)
    _render_tables(w, builder, views, btf, known, names)
    w("__all__ = [")
    for n in names:
        w(f"    {n!r},")
    w("]")
    return "\n".join(out) + "\n"


def _render_enums(w: Callable[[str], None], enums: list[EnumDef], names: list[str]) -> None:
    w("# " + "-" * 74 + " enums")
    for e in enums:
        w("")
        w("")
        w(f"class {e.cls}({'IntFlag' if e.flags else 'IntEnum'}):")
        doc = f"{e.c_name}" + (f": {e.doc}" if e.doc else "")
        w(f'    """{doc}."""')
        w("")
        members = [(n, v) for n, v in e.values if not n.startswith("__")]
        for n, v in members:
            w(f"    {n} = {_lit(v, e.flags)}")
        if not members:
            w("    pass")
        names.append(e.cls)
    w("")


def _lit(v: int, hexa: bool) -> str:
    return hex(v) if hexa and v > 9 else str(v)


def _render_constants(w: Callable[[str], None], enums: list[EnumDef], known: dict[str, int],
                      names: list[str]) -> None:
    w("")
    w("# " + "-" * 70 + " enumerators")
    emitted: set[str] = set()
    for e in enums:
        if e.c_name.endswith("(supplement)"):
            continue
        w(f"# {e.c_name}")
        for n, v in e.values:
            if n not in emitted:
                w(f"{n} = {_lit(v, e.flags)}")
                emitted.add(n)
                names.append(n)
    w("")
    w("# " + "-" * 66 + " #define supplement")
    for group, defines in SUPPLEMENT.items():
        w(f"# {group}")
        for d in defines:
            if d.name in emitted:
                continue
            note = f"  # {d.note}" if d.note else ""
            w(f"{d.name} = {_lit(known[d.name], True)}{note}")
            emitted.add(d.name)
            names.append(d.name)
    w("")


def _render_classes(w: Callable[[str], None], builder: LayoutBuilder, names: list[str]) -> None:
    w("# " + "-" * 74 + " layouts")
    for cd in builder.classes:
        base = "ctypes.Union" if cd.union else "ctypes.Structure"
        w("")
        w("")
        w(f"class {cd.pyname}({base}):")
        w(f'    """{cd.doc} ({cd.size} bytes)."""')
        w("")
        # A field named like a class used in _fields_ would shadow it for type checkers.
        used = {f.expr.strip("()").split(" * ")[0] for f in cd.fields}
        for n, ann in cd.annotations.items():
            if not n.startswith("_") and n not in used:
                w(f"    {n}: {ann}")
        if cd.packed:
            w("    _pack_ = 1")
        if cd.anonymous:
            w(f"    _anonymous_ = {tuple(cd.anonymous)!r}")
        w("    _fields_ = [")
        for f in cd.fields:
            bits = f", {f.bits}" if f.bits else ""
            w(f"        ({f.name!r}, {f.expr}{bits}),")
        w("    ]")
        names.append(cd.pyname)
    if builder.aliases:
        w("")
        w("")
        w("# Members whose anonymous types BTF deduplicated into one: same layout, own name.")
        for alias, target in builder.aliases.items():
            w(f"{alias} = {target}")
            names.append(alias)
    w("")


def _render_tables(w: Callable[[str], None], builder: LayoutBuilder, views: dict[str, str],
                   btf: Btf, known: dict[str, int], names: list[str]) -> None:
    w("")
    w("#: Command -> the bpf_attr view its fields live in.")
    w("ATTR_VIEW: dict[int, type[ctypes.Structure]] = {")
    for cmd, view in CMD_VIEWS.items():
        if cmd in known and view in views:
            w(f"    {cmd}: {views[view]},")
    w("}")
    w("")
    w("#: C name (or generated name of an anonymous type) -> ctypes class.")
    w("STRUCTS: dict[str, type[ctypes.Structure] | type[ctypes.Union]] = {")
    for cd in builder.classes:
        w(f"    {cd.key!r}: {cd.pyname},")
    w("}")
    w("")
    w("#: As recorded in BTF: key -> (size, {field: byte offset}); anonymous members")
    w("#: are flattened into their parent, bitfields give the byte of their first bit.")
    w("LAYOUTS: dict[str, tuple[int, dict[str, int]]] = {")
    bitfield_rows: list[str] = []
    for cd in builder.classes:
        t = btf[cd.btf_id]
        assert isinstance(t, BtfComposite)
        offsets, bitfields = btf_layout(btf, t)
        w(f"    {cd.key!r}: ({cd.size}, {offsets!r}),")
        if bitfields:
            bitfield_rows.append(f"    {cd.key!r}: {bitfields!r},")
    w("}")
    w("")
    w("#: Bitfields as recorded in BTF: key -> {field: (bit offset, width)}.")
    w("BITFIELDS: dict[str, dict[str, tuple[int, int]]] = {")
    for row in bitfield_rows:
        w(row)
    w("}")
    w("")
    names.extend(["ATTR_VIEW", "STRUCTS", "LAYOUTS", "BITFIELDS"])


# --------------------------------------------------------------------------- verify


def verify(module: ModuleType, btf: Btf, builder: LayoutBuilder) -> list[str]:
    """Compare every generated class with BTF; returns the differences found."""
    problems: list[str] = []
    for cd in builder.classes:
        cls = getattr(module, cd.pyname)
        t = btf[cd.btf_id]
        assert isinstance(t, BtfComposite)
        if ctypes.sizeof(cls) != t.size:
            problems.append(f"{cd.key}: sizeof {ctypes.sizeof(cls)} != BTF {t.size}")
        offsets, bitfields = btf_layout(btf, t)
        for name, off in offsets.items():
            desc = getattr(cls, name, None)
            if desc is None:
                problems.append(f"{cd.key}.{name}: missing")
                continue
            if name in bitfields:
                got = desc.offset * 8 + (desc.size & 0xFFFF), desc.size >> 16
                if got != bitfields[name]:
                    problems.append(f"{cd.key}.{name}: bits {got} != BTF {bitfields[name]}")
            elif desc.offset != off:
                problems.append(f"{cd.key}.{name}: offset {desc.offset} != BTF {off}")
    return problems


def load_module(source: str, name: str = "linux_bpf_check") -> ModuleType:
    module = ModuleType(name)
    exec(compile(source, name, "exec"), module.__dict__)
    return module


# --------------------------------------------------------------------------- main


def generate(btf_path: str, release: str) -> tuple[str, list[str]]:
    """The module source and the warnings met while generating it."""
    btf = Btf.from_file(btf_path)
    enums, warnings = collect_enums(btf)
    known = constants(enums)
    enums += supplement_enums(known)
    builder = LayoutBuilder(btf)
    attr_id = next((i for i in btf.find_all("bpf_attr", BtfKind.UNION)), None)
    if attr_id is None:
        raise GenError("union bpf_attr is not in BTF")
    views = builder.preset_attr_views(attr_id)
    for c_name in STRUCTS:
        if builder.add_named(c_name) is None:
            if c_name in REQUIRED_STRUCTS:
                raise GenError(f"struct {c_name} is not in BTF")
            warnings.append(f"struct {c_name} not in BTF")
    source = render(btf_path, release, enums, known, builder, views, btf)
    problems = verify(load_module(source), btf, builder)
    if problems:
        raise GenError("generated layouts differ from BTF:\n  " + "\n  ".join(problems))
    return source, warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("btf", nargs="?", default=DEFAULT_BTF, help="raw BTF of the kernel")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="module to write")
    parser.add_argument("--release", default=os.uname().release,
                        help="kernel release to record (default: uname -r)")
    args = parser.parse_args(argv)
    try:
        source, warnings = generate(args.btf, args.release)
    except (GenError, OSError, ValueError) as exc:
        print(f"gen_uapi: {exc}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"gen_uapi: warning: {warning}", file=sys.stderr)
    args.out.write_text(source)
    print(f"gen_uapi: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
