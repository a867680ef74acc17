"""ctx conversion of the socket-map program types: SK_MSG and SK_REUSEPORT.

``sk_msg`` programs address ``struct sk_msg_md`` but run on the kernel's ``struct
sk_msg`` (the scatterlist first, then data pointers and the socket); ``sk_reuseport``
programs address ``struct sk_reuseport_md`` and run on ``struct sk_reuseport_kern`` (the
skb, the socket group's sockets, the hash). These are ``sk_msg_convert_ctx_access`` and
``sk_reuseport_convert_ctx_access`` (``net/core/filter.c``) instruction for instruction;
pybpf has no sockmaps or reuseport groups to run them from, so the conversion's job is
that ``prog dump xlated`` equals bpftool's (tests/verifier/test_ctx_convert_other.py).
"""

from __future__ import annotations

from pybpf.isa.insn import Insn
from pybpf.progs.cgroup_ctx_convert import Converted, ldx, load_nested
from pybpf.uapi.kernel_structs import KSTRUCTS

BPF_ALU, BPF_LSH, BPF_K = 0x04, 0x60, 0x00

# ---------------------------------------------------------------- sk_msg

_MSG, _SG, _SKC = KSTRUCTS["sk_msg"], KSTRUCTS["sk_msg_sg"], KSTRUCTS["sock_common"]

# struct sk_msg_md (uapi) offsets
MD_DATA, MD_DATA_END, MD_FAMILY, MD_REMOTE_IP4, MD_LOCAL_IP4 = 0, 8, 16, 20, 24
MD_REMOTE_IP6, MD_LOCAL_IP6, MD_REMOTE_PORT, MD_LOCAL_PORT, MD_SIZE, MD_SK = (
    28, 44, 60, 64, 68, 72)

#: sk_msg_md field -> (sock_common member, load size) read through ``sk_msg.sk``
_MSG_SOCK_FIELDS = {MD_FAMILY: ("skc_family", 2), MD_REMOTE_IP4: ("skc_daddr", 4),
                    MD_LOCAL_IP4: ("skc_rcv_saddr", 4), MD_REMOTE_PORT: ("skc_dport", 2),
                    MD_LOCAL_PORT: ("skc_num", 2)}


def sk_msg_convert_ctx_access(write: bool, insn: Insn) -> Converted:
    """``sk_msg_convert_ctx_access``: the socket's addresses and ports through
    ``sk_msg.sk`` (``remote_port`` shifted into the upper half, as the uapi keeps it in
    network order in the high 16 bits); ``size`` from the scatterlist that opens
    ``struct sk_msg``."""
    off, dst, src = insn.off, insn.dst, insn.src
    sk = _MSG.off("sk")
    if off in (MD_DATA, MD_DATA_END, MD_SK):
        member = {MD_DATA: "data", MD_DATA_END: "data_end", MD_SK: "sk"}[off]
        return [ldx(8, dst, src, _MSG.off(member))], 0
    if off in _MSG_SOCK_FIELDS:
        member, size = _MSG_SOCK_FIELDS[off]
        out = load_nested(insn, sk, size, _SKC.off(member))
        if off == MD_REMOTE_PORT:
            out.append(Insn(BPF_ALU | BPF_LSH | BPF_K, dst, 0, 0, 16))
        return out, 0
    for base, member in ((MD_REMOTE_IP6, "skc_v6_daddr"), (MD_LOCAL_IP6, "skc_v6_rcv_saddr")):
        if base <= off < base + 16:
            return load_nested(insn, sk, 4, _SKC.off(member) + off - base), 0
    if off == MD_SIZE:
        return [ldx(4, dst, src, _MSG.off("sg") + _SG.off("size"))], 0
    return [], 0


# ---------------------------------------------------------------- sk_reuseport

_RP, _SKB, _SOCK = KSTRUCTS["sk_reuseport_kern"], KSTRUCTS["sk_buff"], KSTRUCTS["sock"]

# struct sk_reuseport_md (uapi) offsets
RP_DATA, RP_DATA_END, RP_LEN, RP_ETH_PROTOCOL, RP_IP_PROTOCOL = 0, 8, 16, 20, 24
RP_BIND_INANY, RP_HASH, RP_SK, RP_MIGRATING_SK = 28, 32, 40, 48

#: field read through a pointer of the kern struct: uapi offset -> (pointer, kstruct,
#: member)
_RP_NESTED = {RP_DATA: ("skb", _SKB, "data"), RP_LEN: ("skb", _SKB, "len"),
              RP_ETH_PROTOCOL: ("skb", _SKB, "protocol"),
              RP_IP_PROTOCOL: ("sk", _SOCK, "sk_protocol")}
_RP_DIRECT = {RP_DATA_END: "data_end", RP_HASH: "hash", RP_BIND_INANY: "bind_inany",
              RP_SK: "sk", RP_MIGRATING_SK: "migrating_sk"}


def sk_reuseport_convert_ctx_access(write: bool, insn: Insn) -> Converted:
    """``sk_reuseport_convert_ctx_access``: packet fields through the ``skb``, the
    protocol through the socket, the rest members of ``sk_reuseport_kern``."""
    off = insn.off
    if off in _RP_NESTED:
        ptr, struct, member = _RP_NESTED[off]
        size = struct.sizeof(member)
        return load_nested(insn, _RP.off(ptr), size, struct.off(member)), size
    if off in _RP_DIRECT:
        member = _RP_DIRECT[off]
        size = _RP.sizeof(member)
        return [ldx(size, insn.dst, insn.src, _RP.off(member))], size
    return [], 0
