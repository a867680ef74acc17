"""SK_LOOKUP programs: ctx conversion, BPF_PROG_TEST_RUN and bpf_sk_assign vs Linux 6.18.

A program copies ``struct bpf_sk_lookup`` fields (whole and narrow reads) into an array
map; the live kernel and pybpf run it on the same ``ctx_in``s and must agree on retval,
ctx_out, the map value, the xlated program (``sk_lookup_convert_ctx_access``) and every
errno of the test_run rules.
"""

from __future__ import annotations

import errno
import socket
import struct
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybpf
from pybpf.errors import BpfError
from pybpf.isa.insn import Insn, encode
from pybpf.program import Program
from pybpf.progs.testrun_sk_lookup import SkLookupKern, sk_lookup_assign

SK_LOOKUP = 30
BPF_SK_LOOKUP = 36  # enum bpf_attach_type
AF_INET, AF_INET6 = 2, 10

#: (offset, size) of the reads the program stores, one u32 slot each
READS = [(0, 8), (8, 4), (12, 4), (16, 4), (20, 4), (24, 4), (28, 4), (32, 4), (36, 4),
         (36, 2), (37, 1), (38, 2), (40, 4), (44, 4), (56, 4), (60, 4), (64, 4), (9, 1),
         (62, 2), (41, 1), (47, 1), (22, 2)]
SZ = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}
VALUE_SIZE = 4 * (len(READS) + 1)


def ld_map(reg: int, fd: int) -> list[Insn]:
    return [Insn(0x18, reg, 1, 0, fd), Insn(0, 0, 0, 0, 0)]


def fields_prog(map_fd: int | None, *, assign_flags: int | None = None,
                assign_ctx_sk: bool = False) -> list[Insn]:
    """Copy READS into map[0] (the stack when ``map_fd`` is None: no map-lookup inlining
    in the xlated program); optionally call bpf_sk_assign(ctx, NULL or ctx->sk, flags)
    and store its result in the last slot; drop when local_port == 81."""
    if map_fd is None:
        out = [Insn(0xBF, 6, 1), Insn(0xBF, 7, 10), Insn(0x07, 7, 0, 0, -VALUE_SIZE)]
    else:
        out = [Insn(0xBF, 6, 1), Insn(0x62, 10, 0, -4, 0), Insn(0xBF, 2, 10),
               Insn(0x07, 2, 0, 0, -4), *ld_map(1, map_fd), Insn(0x85, 0, 0, 0, 1),
               Insn(0x55, 0, 0, 2, 0), Insn(0xB7, 0, 0, 0, 0), Insn(0x95), Insn(0xBF, 7, 0)]
    for i, (off, size) in enumerate(READS):
        out.append(Insn(0x61 | SZ[size], 1, 6, off))
        if size < 8 or map_fd is not None:  # a pointer may not be spilled as a u32
            out.append(Insn(0x63, 7, 1, 4 * i))
    if assign_flags is not None:
        out += [Insn(0xBF, 1, 6),
                Insn(0x79, 2, 6, 0) if assign_ctx_sk else Insn(0xB7, 2, 0, 0, 0),
                Insn(0xB7, 3, 0, 0, assign_flags), Insn(0x85, 0, 0, 0, 124),
                Insn(0x63, 7, 0, 4 * len(READS))]
    out += [Insn(0x61, 1, 6, 60), Insn(0xB7, 0, 0, 0, 1), Insn(0x55, 1, 0, 1, 81),
            Insn(0xB7, 0, 0, 0, 0), Insn(0x95)]
    return out




def ctx_in(family: int = AF_INET, protocol: int = 6, remote: bytes = b"\x0a\0\0\x02",
           rport: int = 0x3930, local: bytes = b"\x0a\0\0\x01", lport: int = 80,
           sk: int = 0, ifindex: int = 0) -> bytes:
    r4 = remote if family == AF_INET else b"\0" * 4
    l4 = local if family == AF_INET else b"\0" * 4
    r6 = remote if family == AF_INET6 else b"\0" * 16
    l6 = local if family == AF_INET6 else b"\0" * 16
    return (struct.pack("<QII", sk, family, protocol) + r4 + r6 + struct.pack("<HH", rport, 0)
            + l4 + l6 + struct.pack("<II", lport, ifindex) + b"\0" * 4)


class Both:
    """The same program loaded in the live kernel and in pybpf, each with its map."""

    def __init__(self, kernel: ModuleType, **kw: Any) -> None:
        self.kernel = kernel
        self.kmap = kernel.map_create(2, 4, VALUE_SIZE, 1)
        kinsns = fields_prog(self.kmap, **kw)
        res = kernel.prog_load(SK_LOOKUP, encode(kinsns), expected_attach_type=BPF_SK_LOOKUP,
                               log_level=1, log_size=1 << 16)
        assert res.ok, res.log
        self.kfd = res.fd
        self.k = pybpf.Kernel()
        self.pmap = self.k.map_create(2, 4, VALUE_SIZE, 1)
        self.prog = Program.load(self.k, SK_LOOKUP, fields_prog(self.pmap.fd, **kw),
                                 expected_attach_type=BPF_SK_LOOKUP)

    def close(self) -> None:
        self.kernel.close(self.kfd)
        self.kernel.close(self.kmap)

    def run(self, cin: bytes, **kw: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        kr = self.kernel.prog_test_run(self.kfd, ctx_in=cin, ctx_size_out=72, **kw)
        kval = self.kernel.map_lookup(self.kmap, bytes(4), VALUE_SIZE) if not kr.errno else b""
        try:
            data = kw.pop("data_in", b"")
            pr = self.prog.test_run(data, ctx_in=cin, ctx_size_out=72, **kw)
            pres: tuple[Any, ...] = (0, pr.retval, pr.ctx_out,
                                     self.pmap.lookup(bytes(4)))
        except BpfError as e:
            pres = (e.errno, 0, b"", b"")
        kres = (kr.errno, kr.retval if not kr.errno else 0, kr.ctx_out if not kr.errno else b"",
                kval)
        return kres, pres


@pytest.fixture
def both(kernel: ModuleType) -> Any:
    b = Both(kernel)
    yield b
    b.close()


def kernel_xlated(kernel: ModuleType, fd: int) -> list[Insn]:
    """The live kernel's xlated program, helper-call immediates (addresses) blanked."""
    return no_calls(kernel.prog_xlated(fd))


def no_calls(insns: list[Insn]) -> list[tuple[int, ...]]:
    """(code, dst, src, off, imm) with call immediates and LD_IMM64 map fds blanked."""
    return [(i.code, i.dst, i.src, i.off, 0 if i.code in (0x85, 0x18, 0x00) else i.imm)
            for i in insns]


def test_xlated_equals_kernel(kernel: ModuleType) -> None:
    insns = fields_prog(None, assign_flags=0, assign_ctx_sk=True)
    res = kernel.prog_load(SK_LOOKUP, encode(insns), expected_attach_type=BPF_SK_LOOKUP,
                           log_level=1, log_size=1 << 16)
    assert res.ok, res.log
    try:
        kx = kernel_xlated(kernel, res.fd)
    finally:
        kernel.close(res.fd)
    p = Program.load(pybpf.Kernel(), SK_LOOKUP, insns, expected_attach_type=BPF_SK_LOOKUP)
    assert no_calls(p.obj.xlated) == kx


@pytest.mark.parametrize("cin", [
    ctx_in(),
    ctx_in(lport=81),
    ctx_in(protocol=17, rport=0xFFFF, lport=65535),
    ctx_in(AF_INET6, remote=socket.inet_pton(AF_INET6, "2001:db8::2"),
           local=socket.inet_pton(AF_INET6, "2001:db8::1"), lport=443),
], ids=["v4", "drop", "udp_ports", "v6"])
def test_fields_retval_ctx_out_vs_kernel(both: Both, cin: bytes) -> None:
    kres, pres = both.run(cin)
    assert pres == kres


@pytest.mark.parametrize(("cin", "kw"), [
    (b"", {}),                                          # no ctx: EINVAL
    (ctx_in(), {"data_in": b"x" * 20}),                  # data_in: EINVAL
    (ctx_in(), {"flags": 1}),                            # flags: EINVAL
    (ctx_in(), {"cpu": 1}),                              # cpu: EINVAL
    (ctx_in(sk=1), {}),                                  # sk set: EINVAL
    (ctx_in(ifindex=2), {}),                             # past local_port: EINVAL
    (ctx_in(lport=70000), {}),                           # ERANGE
    (ctx_in(family=3), {}),                              # EAFNOSUPPORT
    (ctx_in() + b"\x01", {}),                            # E2BIG
    (ctx_in()[:40], {}),                                 # short ctx: rest zero
    (ctx_in(), {"repeat": 5}),
], ids=["noctx", "data_in", "flags", "cpu", "sk", "ifindex", "erange", "family", "e2big",
        "short", "repeat"])
def test_test_run_rules_vs_kernel(both: Both, cin: bytes, kw: dict[str, Any]) -> None:
    kres, pres = both.run(cin, **kw)
    assert pres == kres


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(family=st.sampled_from([AF_INET, AF_INET6]), proto=st.sampled_from([6, 17, 0, 132]),
       rport=st.integers(0, 0xFFFF), lport=st.integers(0, 0xFFFF),
       raddr=st.binary(min_size=16, max_size=16), laddr=st.binary(min_size=16, max_size=16))
def test_fields_hypothesis_vs_kernel(both: Both, family: int, proto: int, rport: int,
                                     lport: int, raddr: bytes, laddr: bytes) -> None:
    n = 4 if family == AF_INET else 16
    cin = ctx_in(family, proto, raddr[:n], rport, laddr[:n], lport)
    kres, pres = both.run(cin)
    assert pres == kres


@pytest.mark.parametrize(("flags", "ctx_sk"), [(0, False), (1, False), (2, False), (3, True),
                                               (4, False), (8, True)])
def test_sk_assign_null_vs_kernel(kernel: ModuleType, flags: int, ctx_sk: bool) -> None:
    b = Both(kernel, assign_flags=flags, assign_ctx_sk=ctx_sk)
    try:
        kres, pres = b.run(ctx_in())
        assert pres == kres
        slot = struct.unpack_from("<i", pres[3], 4 * len(READS))[0]
        assert slot == (0 if flags < 4 else -errno.EINVAL)
    finally:
        b.close()


# ---------------------------------------------------------------- pybpf-only: selection


def _kctx(family: int = AF_INET, protocol: int = 6) -> SkLookupKern:
    n = 4 if family == AF_INET else 16
    return SkLookupKern(family=family, protocol=protocol, saddr=b"\x0a" * n, sport_be=1,
                        daddr=b"\x0b" * n, dport=80)


def test_sk_lookup_assign_rules() -> None:
    k = pybpf.Kernel()
    lst = k.socket("tcp", ("10.0.0.1", 80))
    est = k.socket("tcp", ("10.0.0.1", 80), ("10.0.0.2", 1000))
    udp = k.socket("udp", ("10.0.0.1", 53))
    udp_conn = k.socket("udp", ("10.0.0.1", 53), ("10.0.0.2", 53))
    v6only = k.socket("tcp", ("::", 80), ipv6only=True)
    dual = k.socket("tcp", ("::", 80))
    kc = _kctx()
    try:
        assert sk_lookup_assign(kc, lst, lst.addr, 4) == -errno.EINVAL
        assert sk_lookup_assign(kc, est, est.addr, 0) == -errno.ESOCKTNOSUPPORT
        assert sk_lookup_assign(kc, udp_conn, udp_conn.addr, 0) == -errno.ESOCKTNOSUPPORT
        assert sk_lookup_assign(kc, udp, udp.addr, 0) == -errno.EPROTOTYPE
        assert sk_lookup_assign(kc, v6only, v6only.addr, 0) == -errno.EAFNOSUPPORT
        assert sk_lookup_assign(kc, dual, dual.addr, 0) == 0
        assert sk_lookup_assign(kc, lst, lst.addr, 0) == -errno.EEXIST
        assert sk_lookup_assign(kc, lst, lst.addr, 1 | 2) == 0
        assert kc.selected_sk == lst.addr and kc.no_reuseport
        assert sk_lookup_assign(kc, None, 0, 1) == 0 and kc.selected_sk == 0
    finally:
        kc.free()


def test_selected_socket_cookie_in_ctx_out() -> None:
    """A program that assigns ``ctx->sk`` cannot get a socket in pybpf without a sockmap;
    drive the selection through the helper override instead and check the cookie."""
    k = pybpf.Kernel()
    lst = k.socket("tcp", ("10.0.0.1", 80))
    rp = k.socket("tcp", ("10.0.0.1", 83), reuseport=True)
    from pybpf.helpers.sock import sk_assign

    def pick(ctx: Any, c: int, sk: int, flags: int, *_: int) -> int:
        target = rp if ctx.data["sk_lookup"].dport == 83 else lst
        return sk_assign(ctx, c, target.addr, flags)

    k.helpers.override(124, pick)
    m = k.map_create(2, 4, VALUE_SIZE, 1)
    prog = Program.load(k, SK_LOOKUP, fields_prog(m.fd, assign_flags=0),
                        expected_attach_type=BPF_SK_LOOKUP)
    r = prog.test_run(b"", ctx_in=ctx_in(), ctx_size_out=72)
    assert r.retval == 1
    assert struct.unpack_from("<Q", r.ctx_out, 0)[0] == lst.cookie != 0
    with pytest.raises(BpfError) as e:
        prog.test_run(b"", ctx_in=ctx_in(lport=83), ctx_size_out=72)
    assert e.value.errno == errno.EOPNOTSUPP
    r = prog.test_run(b"", ctx_in=ctx_in(lport=82), ctx_size_out=72)
    assert struct.unpack_from("<Q", r.ctx_out, 0)[0] == lst.cookie
