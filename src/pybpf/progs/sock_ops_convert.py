"""ctx conversion of BPF_PROG_TYPE_SOCK_OPS onto ``struct bpf_sock_ops_kern``.

A sock_ops program addresses ``struct bpf_sock_ops``; the TCP stack hands it a
``struct bpf_sock_ops_kern`` (the socket, the callback's arguments/reply, the skb, flags
saying whether ``sk`` is a full socket and whether its TCP state may be read). This is
the kernel's ``sock_ops_convert_ctx_access`` (``net/core/filter.c``) instruction for
instruction, as Linux 6.18.44 emits it:

- ``tcp_sock``/``sock`` fields are guarded: read only when ``is_locked_tcp_sock`` is set,
  else 0 (:func:`_get_guarded`); ``sk_txhash`` stores are skipped when it is not
  (``rtt_min`` is the exception: 6.18.44 reads it through ``sk`` unguarded);
- the ``sk`` pointer is guarded by ``is_fullsock`` (NULL otherwise, :func:`_get_sk`);
- when the destination register is also the ctx register the guard needs a borrowed
  register, parked in ``bpf_sock_ops_kern.temp`` — and the "not set" path zeroes the
  destination after restoring it (the 6.18.42 fix);
- skb fields are read through ``skb`` with a NULL check.

pybpf runs no TCP stack, so this is for xlated fidelity
(tests/verifier/test_ctx_convert_other.py compares with the live kernel).
"""

from __future__ import annotations

from pybpf.isa.insn import Insn
from pybpf.progs.cgroup_ctx_convert import (
    Converted,
    ldx,
    load_nested,
    scratch_reg,
    spill_scratch,
    store_like,
)
from pybpf.uapi.kernel_structs import KSTRUCTS

BPF_ALU, BPF_JMP, BPF_ALU64 = 0x04, 0x05, 0x07
BPF_JEQ, BPF_JA, BPF_MOV, BPF_LSH, BPF_ADD, BPF_K, BPF_X = 0x10, 0x00, 0xB0, 0x60, 0x00, 0x00, 0x08
BPF_REG_AX = 11

_KERN, _SKC, _SOCK, _TCP = (KSTRUCTS["bpf_sock_ops_kern"], KSTRUCTS["sock_common"],
                            KSTRUCTS["sock"], KSTRUCTS["tcp_sock"])
_SKB, _SHINFO, _TCB = KSTRUCTS["sk_buff"], KSTRUCTS["skb_shared_info"], KSTRUCTS["tcp_skb_cb"]

# struct bpf_sock_ops (uapi) offsets
OP, REPLY, FAMILY, REMOTE_IP4, LOCAL_IP4, REMOTE_IP6, LOCAL_IP6 = 0, 4, 20, 24, 28, 32, 48
REMOTE_PORT, LOCAL_PORT, IS_FULLSOCK, STATE, RTT_MIN, SK_TXHASH = 64, 68, 72, 88, 92, 164
SK, SKB_DATA, SKB_DATA_END, SKB_LEN, SKB_TCP_FLAGS, SKB_HWTSTAMP = 184, 192, 200, 208, 212, 216
SOCK_OPS_SIZE = 224

#: read-only socket fields at fixed offsets: uapi offset -> (sock_common member, size)
_SOCK_COMMON = {FAMILY: ("skc_family", 2), REMOTE_IP4: ("skc_daddr", 4),
                LOCAL_IP4: ("skc_rcv_saddr", 4), REMOTE_PORT: ("skc_dport", 2),
                LOCAL_PORT: ("skc_num", 2), STATE: ("skc_state", 1)}
#: the tcp_sock fields of bpf_sock_ops (same names in both), by uapi offset
_TCP_FIELDS = {
    76: "snd_cwnd", 80: "srtt_us", 84: "bpf_sock_ops_cb_flags", 96: "snd_ssthresh",
    100: "rcv_nxt", 104: "snd_nxt", 108: "snd_una", 112: "mss_cache", 116: "ecn_flags",
    120: "rate_delivered", 124: "rate_interval_us", 128: "packets_out",
    132: "retrans_out", 136: "total_retrans", 140: "segs_in", 144: "data_segs_in",
    148: "segs_out", 152: "data_segs_out", 156: "lost_out", 160: "sacked_out",
    168: "bytes_received", 176: "bytes_acked",
}


def _jeq0(reg: int, skip: int) -> Insn:
    return Insn(BPF_JMP | BPF_JEQ | BPF_K, reg, 0, skip, 0)


def _ja(skip: int) -> Insn:
    return Insn(BPF_JMP | BPF_JA, 0, 0, skip, 0)


def _mov0(reg: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_MOV | BPF_K, reg, 0, 0, 0)


def _guarded(insn: Insn, flag: str, body: list[Insn]) -> list[Insn]:
    """``if (ctx->flag) dst = <body reading through ctx->sk>; else dst = 0`` — the
    kernel's SOCK_OPS_GET_FIELD / SOCK_OPS_GET_SK shape, ``body`` after ``dst = sk``."""
    dst, src = insn.dst, insn.src
    temp = _KERN.off("temp")
    same = dst == src
    flag_reg = scratch_reg(insn) if same else dst
    out: list[Insn] = []
    if same:
        out.append(spill_scratch(insn, flag_reg, temp))
    tail = [ldx(8, dst, src, _KERN.off("sk")), *body]
    skip = len(tail) + (2 if same else 0)
    out += [ldx(_KERN.sizeof(flag), flag_reg, src, _KERN.off(flag)), _jeq0(flag_reg, skip)]
    if same:
        out.append(ldx(8, flag_reg, src, temp))
    out += tail
    if same:
        out += [_ja(2), ldx(8, flag_reg, src, temp), _mov0(dst)]
    return out


def _get_guarded(insn: Insn, struct: str, member: str) -> list[Insn]:
    ks = KSTRUCTS[struct]
    return _guarded(insn, "is_locked_tcp_sock",
                    [ldx(ks.sizeof(member), insn.dst, insn.dst, ks.off(member))])


def _set_txhash(insn: Insn) -> list[Insn]:
    """SOCK_OPS_SET_FIELD(sk_txhash): store through ``sk`` when the TCP state is ours."""
    dst = insn.dst
    reg, temp = scratch_reg(insn), _KERN.off("temp")
    return [spill_scratch(insn, reg, temp),
            ldx(_KERN.sizeof("is_locked_tcp_sock"), reg, dst, _KERN.off("is_locked_tcp_sock")),
            _jeq0(reg, 2),
            ldx(8, reg, dst, _KERN.off("sk")),
            store_like(insn, _SOCK.sizeof("sk_txhash"), reg, _SOCK.off("sk_txhash")),
            ldx(8, reg, dst, temp)]


def _through_skb(insn: Insn, load: list[Insn]) -> list[Insn]:
    """``dst = ctx->skb; if (dst) <load>``."""
    return [ldx(8, insn.dst, insn.src, _KERN.off("skb")), _jeq0(insn.dst, len(load)), *load]


def sock_ops_convert_ctx_access(write: bool, insn: Insn) -> Converted:
    """``sock_ops_convert_ctx_access``."""
    off, dst, src = insn.off, insn.dst, insn.src
    sk = _KERN.off("sk")
    if off == OP:
        return [ldx(_KERN.sizeof("op"), dst, src, _KERN.off("op"))], 0
    if REPLY <= off < REPLY + 16:
        at = _KERN.off("replylong") + off - REPLY
        return [store_like(insn, 4, dst, at) if write else ldx(4, dst, src, at)], 0
    if off in _SOCK_COMMON:
        member, size = _SOCK_COMMON[off]
        out = load_nested(insn, sk, size, _SKC.off(member))
        if off == REMOTE_PORT:
            out.append(Insn(BPF_ALU | BPF_LSH | BPF_K, dst, 0, 0, 16))
        return out, 0
    for base, member in ((REMOTE_IP6, "skc_v6_daddr"), (LOCAL_IP6, "skc_v6_rcv_saddr")):
        if base <= off < base + 16:
            return load_nested(insn, sk, 4, _SKC.off(member) + off - base), 0
    if off == IS_FULLSOCK:
        return [ldx(_KERN.sizeof("is_fullsock"), dst, src, _KERN.off("is_fullsock"))], 0
    if off == RTT_MIN:  # rtt_min.s[0].v, read unguarded in 6.18.44 (the live kernel's)
        at = _TCP.off("rtt_min") + KSTRUCTS["minmax_sample"].off("v")
        return load_nested(insn, sk, 4, at), 0
    if off == SK_TXHASH:
        return (_set_txhash(insn) if write else _get_guarded(insn, "sock", "sk_txhash")), 0
    if off in _TCP_FIELDS:
        return _get_guarded(insn, "tcp_sock", _TCP_FIELDS[off]), 0
    if off == SK:
        return _guarded(insn, "is_fullsock", []), 0
    if off == SKB_DATA_END:
        return [ldx(8, dst, src, _KERN.off("skb_data_end"))], 0
    if off == SKB_DATA:
        return _through_skb(insn, [ldx(8, dst, dst, _SKB.off("data"))]), 0
    if off == SKB_LEN:
        return _through_skb(insn, [ldx(_SKB.sizeof("len"), dst, dst, _SKB.off("len"))]), 0
    if off == SKB_TCP_FLAGS:
        size = _TCB.sizeof("tcp_flags")
        at = _SKB.off("cb") + _TCB.off("tcp_flags")
        return _through_skb(insn, [ldx(size, dst, dst, at)]), size
    if off == SKB_HWTSTAMP:
        shinfo = [ldx(_SKB.sizeof("end"), BPF_REG_AX, dst, _SKB.off("end")),
                  ldx(8, dst, dst, _SKB.off("head")),
                  Insn(BPF_ALU64 | BPF_ADD | BPF_X, dst, BPF_REG_AX, 0, 0)]
        return _through_skb(insn, [*shinfo, ldx(8, dst, dst, _SHINFO.off("hwtstamps"))]), 8
    return [], 0

