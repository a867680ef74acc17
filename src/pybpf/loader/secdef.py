"""libbpf's section-name conventions: ``SEC("xdp")`` → program type and expected attach type.

libbpf keeps an ordered table (``section_defs`` in libbpf.c); the first entry that matches
a program's ELF section name decides its type. Three match forms exist:

- ``"name"``: the section name must be exactly ``name``;
- ``"name+"``: exactly ``name`` or ``name/<anything>`` (``kprobe/do_sys_open``);
- ``"name/"``: must start with ``name/``.

A leading ``?`` in the section name means "autoload off" and is stripped before matching.
``.s`` variants are sleepable (``BPF_F_SLEEPABLE``), ``xdp.frags`` sets
``BPF_F_XDP_HAS_FRAGS``. Entries whose attach type does not exist in Linux 6.18 (the
fsession and multi-fentry forms of newer libbpf) are left out: 6.18 would reject them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

from pybpf.uapi import BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS
from pybpf.uapi import BpfAttachType as A
from pybpf.uapi import BpfProgType as P


class SecFlags(IntFlag):
    """libbpf's ``enum sec_def_flags``."""

    NONE = 0
    EXP_ATTACH_OPT = 1
    ATTACHABLE = 2
    ATTACHABLE_OPT = 3
    ATTACH_BTF = 4
    SLEEPABLE = 8
    XDP_FRAGS = 16
    USDT = 32


F = SecFlags


@dataclass(frozen=True, slots=True)
class SecDef:
    """One row of libbpf's table."""

    sec: str
    prog_type: P
    expected_attach_type: A | None
    flags: SecFlags

    @property
    def attach_type(self) -> int:
        """The expected attach type as the number BPF_PROG_LOAD gets (0 when none)."""
        return int(self.expected_attach_type) if self.expected_attach_type is not None else 0

    def matches(self, sec_name: str) -> bool:
        """libbpf's ``sec_def_matches``."""
        if self.sec.endswith("/"):
            return sec_name.startswith(self.sec)
        if self.sec.endswith("+"):
            base = self.sec[:-1]
            if not sec_name.startswith(base):
                return False
            rest = sec_name[len(base):]
            return rest == "" or rest.startswith("/")
        return sec_name == self.sec

    def prog_flags(self, prog_type: int) -> int:
        """Flags libbpf's ``libbpf_prepare_prog_load`` adds to ``prog_flags``."""
        flags = 0
        if self.flags & SecFlags.SLEEPABLE:
            flags |= BPF_F_SLEEPABLE
        if prog_type == P.BPF_PROG_TYPE_XDP and self.flags & SecFlags.XDP_FRAGS:
            flags |= BPF_F_XDP_HAS_FRAGS
        return flags


SECTION_DEFS: tuple[SecDef, ...] = (
    SecDef("socket", P.BPF_PROG_TYPE_SOCKET_FILTER, None, F.NONE),
    SecDef("sk_reuseport/migrate", P.BPF_PROG_TYPE_SK_REUSEPORT, A.BPF_SK_REUSEPORT_SELECT_OR_MIGRATE, F.ATTACHABLE),
    SecDef("sk_reuseport", P.BPF_PROG_TYPE_SK_REUSEPORT, A.BPF_SK_REUSEPORT_SELECT, F.ATTACHABLE),
    SecDef("kprobe+", P.BPF_PROG_TYPE_KPROBE, None, F.NONE),
    SecDef("uprobe+", P.BPF_PROG_TYPE_KPROBE, None, F.NONE),
    SecDef("uprobe.s+", P.BPF_PROG_TYPE_KPROBE, None, F.SLEEPABLE),
    SecDef("kretprobe+", P.BPF_PROG_TYPE_KPROBE, None, F.NONE),
    SecDef("uretprobe+", P.BPF_PROG_TYPE_KPROBE, None, F.NONE),
    SecDef("uretprobe.s+", P.BPF_PROG_TYPE_KPROBE, None, F.SLEEPABLE),
    SecDef("kprobe.multi+", P.BPF_PROG_TYPE_KPROBE, A.BPF_TRACE_KPROBE_MULTI, F.NONE),
    SecDef("kretprobe.multi+", P.BPF_PROG_TYPE_KPROBE, A.BPF_TRACE_KPROBE_MULTI, F.NONE),
    SecDef("kprobe.session+", P.BPF_PROG_TYPE_KPROBE, A.BPF_TRACE_KPROBE_SESSION, F.NONE),
    SecDef("uprobe.multi+", P.BPF_PROG_TYPE_KPROBE, A.BPF_TRACE_UPROBE_MULTI, F.NONE),
    SecDef("uretprobe.multi+", P.BPF_PROG_TYPE_KPROBE, A.BPF_TRACE_UPROBE_MULTI, F.NONE),
    SecDef("uprobe.session+", P.BPF_PROG_TYPE_KPROBE, A.BPF_TRACE_UPROBE_SESSION, F.NONE),
    SecDef("uprobe.multi.s+", P.BPF_PROG_TYPE_KPROBE, A.BPF_TRACE_UPROBE_MULTI, F.SLEEPABLE),
    SecDef("uretprobe.multi.s+", P.BPF_PROG_TYPE_KPROBE, A.BPF_TRACE_UPROBE_MULTI, F.SLEEPABLE),
    SecDef("uprobe.session.s+", P.BPF_PROG_TYPE_KPROBE, A.BPF_TRACE_UPROBE_SESSION, F.SLEEPABLE),
    SecDef("ksyscall+", P.BPF_PROG_TYPE_KPROBE, None, F.NONE),
    SecDef("kretsyscall+", P.BPF_PROG_TYPE_KPROBE, None, F.NONE),
    SecDef("usdt+", P.BPF_PROG_TYPE_KPROBE, None, F.USDT),
    SecDef("usdt.s+", P.BPF_PROG_TYPE_KPROBE, None, F.USDT | F.SLEEPABLE),
    SecDef("tc/ingress", P.BPF_PROG_TYPE_SCHED_CLS, A.BPF_TCX_INGRESS, F.NONE),
    SecDef("tc/egress", P.BPF_PROG_TYPE_SCHED_CLS, A.BPF_TCX_EGRESS, F.NONE),
    SecDef("tcx/ingress", P.BPF_PROG_TYPE_SCHED_CLS, A.BPF_TCX_INGRESS, F.NONE),
    SecDef("tcx/egress", P.BPF_PROG_TYPE_SCHED_CLS, A.BPF_TCX_EGRESS, F.NONE),
    SecDef("tc", P.BPF_PROG_TYPE_SCHED_CLS, None, F.NONE),
    SecDef("classifier", P.BPF_PROG_TYPE_SCHED_CLS, None, F.NONE),
    SecDef("action", P.BPF_PROG_TYPE_SCHED_ACT, None, F.NONE),
    SecDef("netkit/primary", P.BPF_PROG_TYPE_SCHED_CLS, A.BPF_NETKIT_PRIMARY, F.NONE),
    SecDef("netkit/peer", P.BPF_PROG_TYPE_SCHED_CLS, A.BPF_NETKIT_PEER, F.NONE),
    SecDef("tracepoint+", P.BPF_PROG_TYPE_TRACEPOINT, None, F.NONE),
    SecDef("tp+", P.BPF_PROG_TYPE_TRACEPOINT, None, F.NONE),
    SecDef("tracepoint.s+", P.BPF_PROG_TYPE_TRACEPOINT, None, F.SLEEPABLE),
    SecDef("tp.s+", P.BPF_PROG_TYPE_TRACEPOINT, None, F.SLEEPABLE),
    SecDef("raw_tracepoint+", P.BPF_PROG_TYPE_RAW_TRACEPOINT, None, F.NONE),
    SecDef("raw_tp+", P.BPF_PROG_TYPE_RAW_TRACEPOINT, None, F.NONE),
    SecDef("raw_tracepoint.s+", P.BPF_PROG_TYPE_RAW_TRACEPOINT, None, F.SLEEPABLE),
    SecDef("raw_tp.s+", P.BPF_PROG_TYPE_RAW_TRACEPOINT, None, F.SLEEPABLE),
    SecDef("raw_tracepoint.w+", P.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE, None, F.NONE),
    SecDef("raw_tp.w+", P.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE, None, F.NONE),
    SecDef("tp_btf+", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_RAW_TP, F.ATTACH_BTF),
    SecDef("tp_btf.s+", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_RAW_TP, F.ATTACH_BTF | F.SLEEPABLE),
    SecDef("fentry+", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_FENTRY, F.ATTACH_BTF),
    SecDef("fmod_ret+", P.BPF_PROG_TYPE_TRACING, A.BPF_MODIFY_RETURN, F.ATTACH_BTF),
    SecDef("fexit+", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_FEXIT, F.ATTACH_BTF),
    SecDef("fentry.s+", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_FENTRY, F.ATTACH_BTF | F.SLEEPABLE),
    SecDef("fmod_ret.s+", P.BPF_PROG_TYPE_TRACING, A.BPF_MODIFY_RETURN, F.ATTACH_BTF | F.SLEEPABLE),
    SecDef("fexit.s+", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_FEXIT, F.ATTACH_BTF | F.SLEEPABLE),
    SecDef("freplace+", P.BPF_PROG_TYPE_EXT, None, F.ATTACH_BTF),
    SecDef("lsm+", P.BPF_PROG_TYPE_LSM, A.BPF_LSM_MAC, F.ATTACH_BTF),
    SecDef("lsm.s+", P.BPF_PROG_TYPE_LSM, A.BPF_LSM_MAC, F.ATTACH_BTF | F.SLEEPABLE),
    SecDef("lsm_cgroup+", P.BPF_PROG_TYPE_LSM, A.BPF_LSM_CGROUP, F.ATTACH_BTF),
    SecDef("iter+", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_ITER, F.ATTACH_BTF),
    SecDef("iter.s+", P.BPF_PROG_TYPE_TRACING, A.BPF_TRACE_ITER, F.ATTACH_BTF | F.SLEEPABLE),
    SecDef("syscall", P.BPF_PROG_TYPE_SYSCALL, None, F.SLEEPABLE),
    SecDef("xdp.frags/devmap", P.BPF_PROG_TYPE_XDP, A.BPF_XDP_DEVMAP, F.XDP_FRAGS),
    SecDef("xdp/devmap", P.BPF_PROG_TYPE_XDP, A.BPF_XDP_DEVMAP, F.ATTACHABLE),
    SecDef("xdp.frags/cpumap", P.BPF_PROG_TYPE_XDP, A.BPF_XDP_CPUMAP, F.XDP_FRAGS),
    SecDef("xdp/cpumap", P.BPF_PROG_TYPE_XDP, A.BPF_XDP_CPUMAP, F.ATTACHABLE),
    SecDef("xdp.frags", P.BPF_PROG_TYPE_XDP, A.BPF_XDP, F.XDP_FRAGS),
    SecDef("xdp", P.BPF_PROG_TYPE_XDP, A.BPF_XDP, F.ATTACHABLE_OPT),
    SecDef("perf_event", P.BPF_PROG_TYPE_PERF_EVENT, None, F.NONE),
    SecDef("lwt_in", P.BPF_PROG_TYPE_LWT_IN, None, F.NONE),
    SecDef("lwt_out", P.BPF_PROG_TYPE_LWT_OUT, None, F.NONE),
    SecDef("lwt_xmit", P.BPF_PROG_TYPE_LWT_XMIT, None, F.NONE),
    SecDef("lwt_seg6local", P.BPF_PROG_TYPE_LWT_SEG6LOCAL, None, F.NONE),
    SecDef("sockops", P.BPF_PROG_TYPE_SOCK_OPS, A.BPF_CGROUP_SOCK_OPS, F.ATTACHABLE_OPT),
    SecDef("sk_skb/stream_parser", P.BPF_PROG_TYPE_SK_SKB, A.BPF_SK_SKB_STREAM_PARSER, F.ATTACHABLE_OPT),
    SecDef("sk_skb/stream_verdict", P.BPF_PROG_TYPE_SK_SKB, A.BPF_SK_SKB_STREAM_VERDICT, F.ATTACHABLE_OPT),
    SecDef("sk_skb/verdict", P.BPF_PROG_TYPE_SK_SKB, A.BPF_SK_SKB_VERDICT, F.ATTACHABLE_OPT),
    SecDef("sk_skb", P.BPF_PROG_TYPE_SK_SKB, None, F.NONE),
    SecDef("sk_msg", P.BPF_PROG_TYPE_SK_MSG, A.BPF_SK_MSG_VERDICT, F.ATTACHABLE_OPT),
    SecDef("lirc_mode2", P.BPF_PROG_TYPE_LIRC_MODE2, A.BPF_LIRC_MODE2, F.ATTACHABLE_OPT),
    SecDef("flow_dissector", P.BPF_PROG_TYPE_FLOW_DISSECTOR, A.BPF_FLOW_DISSECTOR, F.ATTACHABLE_OPT),
    SecDef("cgroup_skb/ingress", P.BPF_PROG_TYPE_CGROUP_SKB, A.BPF_CGROUP_INET_INGRESS, F.ATTACHABLE_OPT),
    SecDef("cgroup_skb/egress", P.BPF_PROG_TYPE_CGROUP_SKB, A.BPF_CGROUP_INET_EGRESS, F.ATTACHABLE_OPT),
    SecDef("cgroup/skb", P.BPF_PROG_TYPE_CGROUP_SKB, None, F.NONE),
    SecDef("cgroup/sock_create", P.BPF_PROG_TYPE_CGROUP_SOCK, A.BPF_CGROUP_INET_SOCK_CREATE, F.ATTACHABLE),
    SecDef("cgroup/sock_release", P.BPF_PROG_TYPE_CGROUP_SOCK, A.BPF_CGROUP_INET_SOCK_RELEASE, F.ATTACHABLE),
    SecDef("cgroup/sock", P.BPF_PROG_TYPE_CGROUP_SOCK, A.BPF_CGROUP_INET_SOCK_CREATE, F.ATTACHABLE_OPT),
    SecDef("cgroup/post_bind4", P.BPF_PROG_TYPE_CGROUP_SOCK, A.BPF_CGROUP_INET4_POST_BIND, F.ATTACHABLE),
    SecDef("cgroup/post_bind6", P.BPF_PROG_TYPE_CGROUP_SOCK, A.BPF_CGROUP_INET6_POST_BIND, F.ATTACHABLE),
    SecDef("cgroup/bind4", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_INET4_BIND, F.ATTACHABLE),
    SecDef("cgroup/bind6", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_INET6_BIND, F.ATTACHABLE),
    SecDef("cgroup/connect4", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_INET4_CONNECT, F.ATTACHABLE),
    SecDef("cgroup/connect6", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_INET6_CONNECT, F.ATTACHABLE),
    SecDef("cgroup/connect_unix", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_UNIX_CONNECT, F.ATTACHABLE),
    SecDef("cgroup/sendmsg4", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_UDP4_SENDMSG, F.ATTACHABLE),
    SecDef("cgroup/sendmsg6", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_UDP6_SENDMSG, F.ATTACHABLE),
    SecDef("cgroup/sendmsg_unix", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_UNIX_SENDMSG, F.ATTACHABLE),
    SecDef("cgroup/recvmsg4", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_UDP4_RECVMSG, F.ATTACHABLE),
    SecDef("cgroup/recvmsg6", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_UDP6_RECVMSG, F.ATTACHABLE),
    SecDef("cgroup/recvmsg_unix", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_UNIX_RECVMSG, F.ATTACHABLE),
    SecDef("cgroup/getpeername4", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_INET4_GETPEERNAME, F.ATTACHABLE),
    SecDef("cgroup/getpeername6", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_INET6_GETPEERNAME, F.ATTACHABLE),
    SecDef("cgroup/getpeername_unix", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_UNIX_GETPEERNAME, F.ATTACHABLE),
    SecDef("cgroup/getsockname4", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_INET4_GETSOCKNAME, F.ATTACHABLE),
    SecDef("cgroup/getsockname6", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_INET6_GETSOCKNAME, F.ATTACHABLE),
    SecDef("cgroup/getsockname_unix", P.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, A.BPF_CGROUP_UNIX_GETSOCKNAME, F.ATTACHABLE),
    SecDef("cgroup/sysctl", P.BPF_PROG_TYPE_CGROUP_SYSCTL, A.BPF_CGROUP_SYSCTL, F.ATTACHABLE),
    SecDef("cgroup/getsockopt", P.BPF_PROG_TYPE_CGROUP_SOCKOPT, A.BPF_CGROUP_GETSOCKOPT, F.ATTACHABLE),
    SecDef("cgroup/setsockopt", P.BPF_PROG_TYPE_CGROUP_SOCKOPT, A.BPF_CGROUP_SETSOCKOPT, F.ATTACHABLE),
    SecDef("cgroup/dev", P.BPF_PROG_TYPE_CGROUP_DEVICE, A.BPF_CGROUP_DEVICE, F.ATTACHABLE_OPT),
    SecDef("struct_ops+", P.BPF_PROG_TYPE_STRUCT_OPS, None, F.NONE),
    SecDef("struct_ops.s+", P.BPF_PROG_TYPE_STRUCT_OPS, None, F.SLEEPABLE),
    SecDef("sk_lookup", P.BPF_PROG_TYPE_SK_LOOKUP, A.BPF_SK_LOOKUP, F.ATTACHABLE),
    SecDef("netfilter", P.BPF_PROG_TYPE_NETFILTER, A.BPF_NETFILTER, F.NONE),
)


def find_sec_def(sec_name: str) -> SecDef | None:
    """The first table entry matching ``sec_name`` (libbpf's ``find_sec_def``)."""
    for sd in SECTION_DEFS:
        if sd.matches(sec_name):
            return sd
    return None


def supported_section_names() -> str:
    """The list libbpf prints after "supported section(type) names are:"."""
    return "".join(" " + sd.sec for sd in SECTION_DEFS)


def prog_type_by_name(sec_name: str) -> tuple[P, int]:
    """``libbpf_prog_type_by_name``: (prog type, expected attach type) or ``LookupError``.

    The error carries libbpf's two debug lines as its message.
    """
    sd = find_sec_def(sec_name)
    if sd is None:
        raise LookupError(f"failed to guess program type from ELF section '{sec_name}'\n"
                          f"supported section(type) names are:{supported_section_names()}")
    return sd.prog_type, sd.attach_type


#: What libbpf strips to find the BTF attach target of SEC_ATTACH_BTF programs, per
#: expected attach type: (type-name prefix, BTF kind looked up).
ATTACH_BTF_PREFIX = {
    A.BPF_TRACE_RAW_TP: ("btf_trace_", "TYPEDEF"),
    A.BPF_LSM_MAC: ("bpf_lsm_", "FUNC"),
    A.BPF_LSM_CGROUP: ("bpf_lsm_", "FUNC"),
    A.BPF_TRACE_ITER: ("bpf_iter_", "FUNC"),
}
