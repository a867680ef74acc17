"""Socket lookup helpers over host sockets, and socket-field conversion, against Linux 6.18.

Each program looks a socket up with ``bpf_sk_lookup_tcp``/``udp`` (or ``skc``), reads one
``struct bpf_sock`` field, releases it and returns the field. The live kernel runs it
(``BPF_PROG_TEST_RUN`` of a tc program) over real sockets on 127.0.0.1; pybpf over host
sockets declared with the same addresses. Retval and the xlated program (the
``bpf_sock_convert_ctx_access`` rewrite) must agree.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import pybpf
from pybpf.errors import BpfError
from pybpf.isa.insn import Insn, encode
from pybpf.program import Program

SCHED_CLS = 3
PKT = bytes(14) + b"\x45" + bytes(50)

# bpf_sock field offsets
FIELDS = {"bound_dev_if": 0, "family": 4, "type": 8, "protocol": 12, "mark": 16,
          "priority": 20, "src_ip4": 24, "src_ip6_3": 40, "src_port": 44, "dst_port": 48,
          "dst_ip4": 52, "dst_ip6_0": 56, "state": 72, "rx_queue_mapping": 76}


def ld_tuple(saddr: bytes, daddr: bytes, sport: int, dport: int) -> list[Insn]:
    """Store a 12-byte ipv4 ``bpf_sock_tuple`` at r10-16."""
    raw = saddr + daddr + struct.pack(">HH", sport, dport)
    words = struct.unpack("<iii", raw)
    return [Insn(0x62, 10, 0, -16 + 4 * i, w) for i, w in enumerate(words)]


def lookup_prog(tup: list[Insn], *, helper: int = 84, field: int | None = 4, size: int = 4,
                netns: int = -1, flags: int = 0, tuple_size: int = 12) -> list[Insn]:
    """r0 = field of the socket found (or 0xdead when none), socket released."""
    sz = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}[size]
    body = [
        Insn(0xBF, 6, 1),                       # r6 = ctx
        *tup,
        Insn(0xBF, 2, 10), Insn(0x07, 2, 0, 0, -16),
        Insn(0xB7, 3, 0, 0, tuple_size),
        Insn(0xB7, 4, 0, 0, netns),
        Insn(0xB7, 5, 0, 0, flags),
        Insn(0xBF, 1, 6),
        Insn(0x85, 0, 0, 0, helper),
        Insn(0x55, 0, 0, 2, 0),                 # if r0 != 0 goto found
        Insn(0xB7, 0, 0, 0, 0xDEAD),
        Insn(0x95),
        Insn(0xBF, 7, 0),
    ]
    if field is None:
        body.append(Insn(0xB7, 8, 0, 0, 1))
    else:
        body.append(Insn(0x61 | sz, 8, 7, field))  # LDX size
    body += [Insn(0xBF, 1, 7), Insn(0x85, 0, 0, 0, 86), Insn(0xBF, 0, 8), Insn(0x95)]
    return body


def kernel_xlated(kernel: ModuleType, fd: int) -> list[Insn]:
    info = kernel.prog_info(fd)
    n = info.xlated_prog_len
    buf = ctypes.create_string_buffer(n)
    info2 = type(info)()
    info2.xlated_prog_len = n
    info2.xlated_prog_insns = ctypes.addressof(buf)
    kernel.obj_get_info_by_fd(fd, info2)
    raw = buf.raw
    return [Insn(raw[i], raw[i + 1] & 0xF, raw[i + 1] >> 4,
                 struct.unpack_from("<h", raw, i + 2)[0], struct.unpack_from("<i", raw, i + 4)[0])
            for i in range(0, n, 8)]


def _no_calls(insns: list[Insn]) -> list[Insn]:
    """Helper calls' imm is a kernel address delta in the kernel's dump: blank it."""
    return [i._replace(imm=0) if i.code == 0x85 else i for i in insns]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s
    s.close()


def run_both(kernel: ModuleType, insns: list[Insn], k: pybpf.Kernel) -> tuple[int, int, Any, Any]:
    res = kernel.prog_load(SCHED_CLS, encode(insns), log_level=1, log_size=1 << 16)
    assert res.ok, res.log
    try:
        kr = kernel.prog_test_run(res.fd, PKT, len(PKT) + 64)
        kx = kernel_xlated(kernel, res.fd)
    finally:
        kernel.close(res.fd)
    p = Program.load(k, SCHED_CLS, insns)
    pr = p.test_run(PKT)
    return kr.retval, pr.retval, kx, p.obj.xlated


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_listener_fields_vs_kernel(kernel: ModuleType, listener: socket.socket, name: str) -> None:
    port = listener.getsockname()[1]
    k = pybpf.Kernel()
    k.socket("tcp", ("127.0.0.1", port))
    insns = lookup_prog(ld_tuple(socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"),
                                 40000, port), field=FIELDS[name])
    kret, pret, kx, px = run_both(kernel, insns, k)
    assert kret != 0xDEAD
    assert pret == kret, name
    assert _no_calls(px) == _no_calls(kx)


@pytest.mark.parametrize(("off", "size"), [(24, 1), (25, 1), (26, 2), (4, 1), (48, 1), (49, 1),
                                            (48, 2), (44, 2), (72, 1), (52, 2), (40, 4)])
def test_narrow_loads_vs_kernel(kernel: ModuleType, listener: socket.socket, off: int,
                                size: int) -> None:
    port = listener.getsockname()[1]
    k = pybpf.Kernel()
    k.socket("tcp", ("127.0.0.1", port))
    insns = lookup_prog(ld_tuple(socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"),
                                 40000, port), field=off, size=size)
    kret, pret, kx, px = run_both(kernel, insns, k)
    assert pret == kret
    assert _no_calls(px) == _no_calls(kx)


def test_established_vs_kernel(kernel: ModuleType, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    c = socket.create_connection(("127.0.0.1", port))
    srv, _ = listener.accept()
    try:
        cport = c.getsockname()[1]
        k = pybpf.Kernel()
        k.socket("tcp", ("127.0.0.1", port))
        k.socket("tcp", ("127.0.0.1", port), ("127.0.0.1", cport))
        tup = ld_tuple(socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"), cport, port)
        for name in ("state", "dst_port", "dst_ip4", "src_port"):
            kret, pret, _kx, _px = run_both(kernel, lookup_prog(tup, field=FIELDS[name]), k)
            assert (name, pret) == (name, kret)
    finally:
        c.close()
        srv.close()


@pytest.mark.parametrize("case", ["no_socket", "flags", "bad_size", "netns_id", "udp_for_tcp"])
def test_lookup_misses_vs_kernel(kernel: ModuleType, listener: socket.socket, case: str) -> None:
    port = listener.getsockname()[1]
    k = pybpf.Kernel()
    k.socket("tcp", ("127.0.0.1", port))
    lo = socket.inet_aton("127.0.0.1")
    dport = port + 1 if case == "no_socket" else port
    kw: dict[str, Any] = {"flags": 1} if case == "flags" else {}
    if case == "bad_size":
        kw["tuple_size"] = 16
    if case == "netns_id":
        kw["netns"] = 12345
    if case == "udp_for_tcp":
        kw["helper"] = 85
    insns = lookup_prog(ld_tuple(lo, lo, 40000, dport), **kw)
    kret, pret, _kx, _px = run_both(kernel, insns, k)
    assert kret == pret == 0xDEAD


def test_udp_lookup_vs_kernel(kernel: ModuleType) -> None:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    try:
        port = u.getsockname()[1]
        k = pybpf.Kernel()
        k.socket("udp", ("127.0.0.1", port))
        lo = socket.inet_aton("127.0.0.1")
        for name in ("type", "protocol", "state", "src_port", "family"):
            insns = lookup_prog(ld_tuple(lo, lo, 40000, port), helper=85, field=FIELDS[name])
            kret, pret, _kx, _px = run_both(kernel, insns, k)
            assert (name, pret) == (name, kret)
    finally:
        u.close()


def test_tcp_sock_and_fullsock_xlated_vs_kernel(kernel: ModuleType,
                                                listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    k = pybpf.Kernel()
    k.socket("tcp", ("127.0.0.1", port))
    lo = socket.inet_aton("127.0.0.1")
    base = lookup_prog(ld_tuple(lo, lo, 40000, port), helper=99, field=None)
    # after the lookup (r7 = sk_common): r1 = r7; tcp_sock(); read snd_cwnd/bytes_acked
    found = next(i for i, ins in enumerate(base) if ins.code == 0xBF and ins.dst == 7)
    tail = [Insn(0xBF, 1, 7), Insn(0x85, 0, 0, 0, 95),       # sk_fullsock
            Insn(0x15, 0, 0, 5, 0),
            Insn(0xBF, 1, 0), Insn(0x85, 0, 0, 0, 96),       # tcp_sock
            Insn(0x15, 0, 0, 2, 0),
            Insn(0x79, 8, 0, 88),                            # bytes_acked (u64)
            Insn(0x61, 9, 0, 8),                             # rtt_min
            Insn(0x61, 8, 7, 44),                            # src_port via sock_common
            Insn(0xBF, 1, 7), Insn(0x85, 0, 0, 0, 86), Insn(0xBF, 0, 8), Insn(0x95)]
    insns = [*base[:found + 1], Insn(183, 8, 0, 0, 0), *tail]
    kret, pret, kx, px = run_both(kernel, insns, k)
    assert kret == pret == port
    assert _no_calls(px) == _no_calls(kx)


def test_host_socket_api() -> None:
    k = pybpf.Kernel()
    s = k.socket("tcp", ("10.0.0.1", 80))
    assert s.state == 10 and s.family == 2 and s.cookie == 1 and s.cookie == 1
    u = k.socket("udp", ("::1", 53))
    assert u.family == 10 and u.state == 7 and u.cookie == 2
    assert k.sockets.by_cookie(2) is u and len(k.sockets) == 2
    s.close()
    assert len(k.sockets) == 1 and k.sockets.by_addr(s.addr) is None
    for bad in ({"proto": "sctp"}, {"local": ("10.0.0.1", 70000)},
                {"local": ("::1", 1), "family": 2}, {"state": "bogus"}):
        with pytest.raises(ValueError):
            k.socket(**{"proto": "tcp", "local": ("10.0.0.1", 1), **bad})


def test_refcount_follows_release() -> None:
    k = pybpf.Kernel()
    est = k.socket("tcp", ("10.0.0.1", 80), ("10.0.0.2", 5555))
    tup = ld_tuple(bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1]), 5555, 80)
    p = Program.load(k, SCHED_CLS, lookup_prog(tup, field=FIELDS["state"]))
    assert p.test_run(PKT).retval == 1
    assert est.refcnt == 1  # taken by the lookup, dropped by bpf_sk_release


def test_unreleased_reference_rejected() -> None:
    k = pybpf.Kernel()
    lo = bytes([127, 0, 0, 1])
    insns = lookup_prog(ld_tuple(lo, lo, 1, 2))
    # drop the release: r1 = r7; call 86  ->  two no-ops
    i = next(n for n, ins in enumerate(insns) if ins.code == 0x85 and ins.imm == 86)
    insns[i - 1:i + 1] = [Insn(0xB7, 1, 0, 0, 0), Insn(0xB7, 1, 0, 0, 0)]
    with pytest.raises(BpfError) as e:
        Program.load(k, SCHED_CLS, insns, log_level=1)
    assert "Unreleased reference" in e.value.log
