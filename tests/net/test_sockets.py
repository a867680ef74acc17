"""Host sockets (:mod:`pybpf.net.sockets`): lookup rules, memory layout, and sk_lookup
programs attached to the instance steering the host's own lookups."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import pytest

import pybpf
from pybpf.isa.insn import Insn
from pybpf.net.sockets import AF_INET, AF_INET6, OFF_COOKIE, OFF_FAMILY, OFF_NUM, OFF_STATE
from pybpf.program import Program

A = ipaddress.ip_address
SK_LOOKUP, BPF_SK_LOOKUP = 30, 36


def test_layout_is_struct_sock() -> None:
    k = pybpf.Kernel()
    s = k.socket("tcp", ("10.0.0.1", 8080))
    mv = s.region.mv
    assert struct.unpack_from("<H", mv, OFF_FAMILY)[0] == AF_INET
    assert struct.unpack_from("<H", mv, OFF_NUM)[0] == 8080
    assert mv[OFF_STATE] == 10
    assert struct.unpack_from("<Q", mv, OFF_COOKIE)[0] == 0  # generated on first use
    assert s.cookie == 1 and struct.unpack_from("<Q", mv, OFF_COOKIE)[0] == 1
    assert s.region.size == 2304  # sizeof(struct tcp_sock) on 6.18


def test_tcp_lookup_prefers_established_then_exact_listener() -> None:
    k = pybpf.Kernel()
    wild = k.socket("tcp", ("0.0.0.0", 80))
    exact = k.socket("tcp", ("10.0.0.1", 80))
    est = k.socket("tcp", ("10.0.0.1", 80), ("10.0.0.9", 5000))
    dual = k.socket("tcp", ("::", 443))
    v6only = k.socket("tcp", ("::", 444), ipv6only=True)
    bound = k.socket("tcp", ("0.0.0.0", 8080), bound_dev_if=3)
    t = k.sockets
    assert t.lookup("tcp", ("10.0.0.9", 5000), ("10.0.0.1", 80)) is est
    assert t.lookup("tcp", ("10.0.0.9", 5001), ("10.0.0.1", 80)) is exact
    assert t.lookup("tcp", ("10.0.0.9", 5001), ("10.0.0.2", 80)) is wild
    assert t.lookup("tcp", ("10.0.0.9", 1), ("10.0.0.2", 443)) is dual
    assert t.lookup("tcp", ("10.0.0.9", 1), ("10.0.0.2", 444)) is None
    assert t.lookup("tcp", ("::9", 1), ("::2", 444)) is v6only
    assert t.lookup("tcp", ("10.0.0.9", 1), ("10.0.0.2", 8080)) is None
    assert t.lookup("tcp", ("10.0.0.9", 1), ("10.0.0.2", 8080), dif=3) is bound
    assert dual.family == AF_INET6


def test_udp_lookup_scores_connected_sockets() -> None:
    k = pybpf.Kernel()
    anyu = k.socket("udp", ("0.0.0.0", 53))
    conn = k.socket("udp", ("10.0.0.1", 53), ("10.0.0.7", 999))
    t = k.sockets
    assert t.lookup("udp", ("10.0.0.7", 999), ("10.0.0.1", 53)) is conn
    assert t.lookup("udp", ("10.0.0.7", 998), ("10.0.0.1", 53)) is anyu
    assert t.lookup("udp", ("10.0.0.8", 999), ("10.0.0.1", 54)) is None


def _prog(k: pybpf.Kernel, drop_port: int, assign: bool = False) -> Program:
    """Drop lookups to ``drop_port``; with ``assign``, bpf_sk_assign(ctx, NULL, 0) first."""
    body = [Insn(0xBF, 6, 1)]
    if assign:
        body += [Insn(0xB7, 2, 0, 0, 0), Insn(0xB7, 3, 0, 0, 0), Insn(0x85, 0, 0, 0, 124),
                 Insn(0xBF, 1, 6)]
    body += [Insn(0x61, 1, 6, 60), Insn(0xB7, 0, 0, 0, 1), Insn(0x55, 1, 0, 1, drop_port),
             Insn(0xB7, 0, 0, 0, 0), Insn(0x95)]
    return Program.load(k, SK_LOOKUP, body, expected_attach_type=BPF_SK_LOOKUP)


def test_sk_lookup_programs_steer_host_lookups() -> None:
    k = pybpf.Kernel()
    lst = k.socket("tcp", ("10.0.0.1", 80))
    other = k.socket("tcp", ("10.0.0.1", 8080))
    est = k.socket("tcp", ("10.0.0.1", 80), ("10.0.0.9", 5000))
    udp = k.socket("udp", ("10.0.0.1", 80))
    detach = k.sockets.attach_sk_lookup(_prog(k, 80))
    t = k.sockets
    assert t.lookup("tcp", ("10.0.0.9", 1), ("10.0.0.1", 80)) is None  # refused
    assert t.lookup("udp", ("10.0.0.9", 1), ("10.0.0.1", 80)) is None
    assert t.lookup("tcp", ("10.0.0.9", 5000), ("10.0.0.1", 80)) is est  # established first
    assert t.lookup("tcp", ("10.0.0.9", 1), ("10.0.0.1", 8080)) is other  # passed through

    # a second program selects `other` for everything (selection via helper override)
    from pybpf.helpers.sock import sk_assign

    k.helpers.override(124, lambda ctx, c, sk, fl, *_: sk_assign(ctx, c, other.addr, fl))
    detach2 = k.sockets.attach_sk_lookup(_prog(k, 1, assign=True))
    assert t.lookup("tcp", ("10.0.0.9", 1), ("10.0.0.1", 80)) is other  # selected beats drop
    detach2()
    detach()
    assert t.lookup("tcp", ("10.0.0.9", 1), ("10.0.0.1", 80)) is lst
    assert t.lookup("udp", ("10.0.0.9", 1), ("10.0.0.1", 80)) is udp
    with pytest.raises(ValueError):
        k.sockets.attach_sk_lookup(Program.load(k, 3, [Insn(0xB7, 0), Insn(0x95)]))


def test_bpf_lookup_sees_sk_lookup_programs() -> None:
    """bpf_sk_lookup_tcp from a tc program goes through the attached sk_lookup programs,
    as __inet_lookup_listener runs them in the kernel."""
    k = pybpf.Kernel()
    k.socket("tcp", ("10.0.0.1", 80))
    lo = bytes([10, 0, 0, 1])
    tup = lo + lo + struct.pack(">HH", 1234, 80)
    words = struct.unpack("<iii", tup)
    insns = [Insn(0xBF, 6, 1), *[Insn(0x62, 10, 0, -16 + 4 * i, w) for i, w in enumerate(words)],
             Insn(0xBF, 2, 10), Insn(0x07, 2, 0, 0, -16), Insn(0xB7, 3, 0, 0, 12),
             Insn(0xB7, 4, 0, 0, -1), Insn(0xB7, 5, 0, 0, 0), Insn(0xBF, 1, 6),
             Insn(0x85, 0, 0, 0, 84), Insn(0x15, 0, 0, 3, 0), Insn(0xBF, 1, 0),
             Insn(0x85, 0, 0, 0, 86), Insn(0xB7, 0, 0, 0, 1), Insn(0x95)]
    tc = Program.load(k, 3, insns)
    pkt = bytes(14) + b"\x45" + bytes(40)
    assert tc.test_run(pkt).retval == 1
    k.sockets.attach_sk_lookup(_prog(k, 80))
    assert tc.test_run(pkt).retval == 0


def test_sockets_close_and_repr() -> None:
    k = pybpf.Kernel()
    s = k.socket("udp", ("::1", 53), ("::2", 53))
    assert "udp" in repr(s) and s.state == 1
    s.close()
    s.close()
    assert len(k.sockets) == 0
    s2: Any = k.socket("tcp", 8080)
    assert s2.local == (A("0.0.0.0"), 8080)
    assert k.socket("tcp", ("::", 1), family=AF_INET6).family == AF_INET6


CGROUP_SOCK, INET_SOCK_CREATE, INET4_POST_BIND = 9, 2, 12


def test_cgroup_sock_programs_run_on_host_sockets() -> None:
    """sock_create sets mark and (from bpf_get_socket_cookie) priority through the
    converted ctx; post_bind refuses port 23 — the ctx *is* the socket's struct sock."""
    k = pybpf.Kernel()
    create = Program.load(k, CGROUP_SOCK, [
        Insn(0xBF, 6, 1), Insn(0x62, 6, 0, 16, 42),           # ctx->mark = 42
        Insn(0xBF, 1, 6), Insn(0x85, 0, 0, 0, 46),            # bpf_get_socket_cookie(ctx)
        Insn(0x63, 6, 0, 20),                                 # ctx->priority = cookie
        Insn(0xB7, 0, 0, 0, 1), Insn(0x95)], expected_attach_type=INET_SOCK_CREATE)
    post_bind = Program.load(k, CGROUP_SOCK, [
        Insn(0x61, 2, 1, 44), Insn(0xB7, 0, 0, 0, 1),         # r2 = ctx->src_port
        Insn(0x55, 2, 0, 1, 23), Insn(0xB7, 0, 0, 0, 0), Insn(0x95)],
        expected_attach_type=INET4_POST_BIND)
    k.sockets.attach_sock(create)
    detach = k.sockets.attach_sock(post_bind)
    s = k.socket("tcp", ("10.0.0.1", 80))
    assert (s.mark, s.priority) == (42, s.cookie) and s.cookie > 0
    with pytest.raises(pybpf.BpfError) as e:
        k.socket("tcp", ("10.0.0.1", 23))
    assert e.value.errno == 1 and len(k.sockets) == 1
    detach()
    assert k.socket("tcp", ("10.0.0.1", 23)).mark == 42
    with pytest.raises(ValueError):
        k.sockets.attach_sock(Program.load(k, 3, [Insn(0xB7, 0), Insn(0x95)]))
