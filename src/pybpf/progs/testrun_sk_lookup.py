"""``BPF_PROG_TEST_RUN`` for sk_lookup programs (``bpf_prog_test_run_sk_lookup``).

The caller passes a ``struct bpf_sk_lookup`` (``ctx_in``) describing the packet: family,
protocol, remote/local addresses and ports. It is validated with the kernel's rules and
errnos (no data in/out, no flags/cpu/batch_size: EINVAL; ``sk`` set or bytes after
``local_port`` non-zero: EINVAL; ``local_port`` above 65535: ERANGE; family neither
AF_INET nor AF_INET6: EAFNOSUPPORT), turned into a native ``struct bpf_sk_lookup_kern``
(:class:`SkLookupKern`), and the program run on it as ``BPF_PROG_SK_LOOKUP_RUN_ARRAY``
runs one program: the result is SK_PASS unless the program dropped without selecting. The
ctx comes back with ``cookie`` = the selected socket's cookie (0 when none); a selected
reuseport socket without ``BPF_SK_LOOKUP_F_NO_REUSEPORT`` fails with EOPNOTSUPP, as the
kernel's test_run cannot run reuseport selection.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from pybpf.net.sockets import AF_INET, AF_INET6, HostSocket, socket_table
from pybpf.progs.ops import TestRunOpts, TestRunResult, bpf_test_run_loop
from pybpf.progs.testrun_common import TestRunError, ctx_init, fail
from pybpf.runtime.context import RunContext
from pybpf.runtime.memory import REGISTRY, Region
from pybpf.uapi.kernel_structs import KSTRUCTS

SK_DROP, SK_PASS = 0, 1
BPF_SK_LOOKUP_SIZE = 72
LOCAL_PORT_END = 64  # offsetofend(struct bpf_sk_lookup, local_port)
_K = KSTRUCTS["bpf_sk_lookup_kern"]
IN6_SIZE = 16


class SkLookupKern:
    """A native ``struct bpf_sk_lookup_kern`` followed by the two ``in6_addr`` its
    ``v6.saddr``/``v6.daddr`` point to (NULL for IPv4, as the kernel leaves them)."""

    def __init__(self, *, family: int, protocol: int, saddr: bytes, sport_be: int,
                 daddr: bytes, dport: int, ingress_ifindex: int = 0) -> None:
        self.region: Region = REGISTRY.alloc(_K.size + 2 * IN6_SIZE, "bpf_sk_lookup_kern",
                                             owner=self)
        mv = self.region.mv
        struct.pack_into("<HH", mv, _K.off("family"), family, protocol)
        struct.pack_into("<H", mv, _K.off("sport"), sport_be)  # __be16, kept as given
        struct.pack_into("<H", mv, _K.off("dport"), dport)
        struct.pack_into("<I", mv, _K.off("ingress_ifindex"), ingress_ifindex)
        if family == AF_INET:
            mv[_K.off("v4.saddr"):_K.off("v4.saddr") + 4] = saddr[:4]
            mv[_K.off("v4.daddr"):_K.off("v4.daddr") + 4] = daddr[:4]
        else:
            s6, d6 = _K.size, _K.size + IN6_SIZE
            mv[s6:s6 + IN6_SIZE] = saddr
            mv[d6:d6 + IN6_SIZE] = daddr
            struct.pack_into("<QQ", mv, _K.off("v6.saddr"), self.addr + s6, self.addr + d6)

    @property
    def addr(self) -> int:
        return self.region.start

    @property
    def family(self) -> int:
        return int(struct.unpack_from("<H", self.region.mv, _K.off("family"))[0])

    @property
    def protocol(self) -> int:
        return int(struct.unpack_from("<H", self.region.mv, _K.off("protocol"))[0])

    @property
    def dport(self) -> int:
        return int(struct.unpack_from("<H", self.region.mv, _K.off("dport"))[0])

    @property
    def selected_sk(self) -> int:
        return int(struct.unpack_from("<Q", self.region.mv, _K.off("selected_sk"))[0])

    @property
    def no_reuseport(self) -> bool:
        return bool(self.region.mv[_K.off("no_reuseport")])

    def select(self, sk: int, no_reuseport: bool) -> None:
        struct.pack_into("<Q", self.region.mv, _K.off("selected_sk"), sk)
        self.region.mv[_K.off("no_reuseport")] = int(no_reuseport)

    def free(self) -> None:
        REGISTRY.remove(self.region)


def run_sk_lookup_array(progs: list[Any], kernel: Any, kctx: SkLookupKern) -> int:
    """``BPF_PROG_SK_LOOKUP_RUN_ARRAY``: run every attached program; each sees the last
    selection a passing program made; the verdict is SK_PASS when all passed or one
    selected a socket. The final selection is left in ``kctx``."""
    selected, no_reuseport, all_pass = 0, False, True
    rctx = RunContext(cpu=0, kernel=kernel)
    rctx.data["sk_lookup"] = kctx
    for prog in progs:
        kctx.select(selected, no_reuseport)
        rctx.prog = prog
        ret = int(prog.run(kctx.addr, ctx=rctx, cpu=0)) & 0xFFFFFFFF
        if ret == SK_PASS and kctx.selected_sk:
            selected, no_reuseport = kctx.selected_sk, kctx.no_reuseport
        elif ret == SK_DROP:
            all_pass = False
    kctx.select(selected, no_reuseport)
    return SK_PASS if all_pass or selected else SK_DROP


def run_sk_lookup(prog: Any, kernel: Any, kctx: SkLookupKern, repeat: int = 1) -> tuple[int, int]:
    """``BPF_PROG_SK_LOOKUP_RUN_ARRAY`` over one program, ``repeat`` times:
    ``(SK_PASS | SK_DROP, ns per run)``; the selection is left in ``kctx``."""
    return bpf_test_run_loop(lambda: run_sk_lookup_array([prog], kernel, kctx), repeat)


def bpf_prog_test_run_sk_lookup(prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
    if opts.flags or opts.cpu or opts.batch_size:
        return fail(errno.EINVAL)
    if opts.has_data_in or opts.data_size_in or opts.has_data_out or opts.data_size_out:
        return fail(errno.EINVAL)
    try:
        user = ctx_init(opts, BPF_SK_LOOKUP_SIZE)
    except TestRunError as e:
        return fail(e.errno)
    if user is None:
        return fail(errno.EINVAL)
    sk, family, protocol = struct.unpack_from("<QII", user, 0)
    if sk or any(user[LOCAL_PORT_END:]):
        return fail(errno.EINVAL)
    local_port = struct.unpack_from("<I", user, 60)[0]
    if local_port > 0xFFFF:
        return fail(errno.ERANGE)
    if family & 0xFFFF not in (AF_INET, AF_INET6):
        return fail(errno.EAFNOSUPPORT)
    family &= 0xFFFF
    v4 = family == AF_INET
    kctx = SkLookupKern(
        family=family, protocol=protocol & 0xFFFF,
        saddr=bytes(user[16:20] if v4 else user[20:36]),
        sport_be=struct.unpack_from("<H", user, 36)[0],
        daddr=bytes(user[40:44] if v4 else user[44:60]), dport=local_port)
    try:
        retval, duration = run_sk_lookup(prog, kernel, kctx, opts.repeat)
        cookie = 0
        if kctx.selected_sk:
            sock = socket_table(kernel).by_addr(kctx.selected_sk)
            if sock is not None and sock.reuseport and not kctx.no_reuseport:
                return fail(errno.EOPNOTSUPP)
            cookie = sock.cookie if sock is not None else 0
    finally:
        kctx.free()
    struct.pack_into("<Q", user, 0, cookie)
    return TestRunResult(retval=retval, data_out=None, ctx_out=bytes(user), duration=duration)


def sk_lookup_assign(kctx: SkLookupKern, sock: HostSocket | None, sk: int, flags: int) -> int:
    """``bpf_sk_lookup_assign``: the checks, then the selection; ``-errno`` or 0."""
    if flags & ~(BPF_SK_LOOKUP_F_REPLACE | BPF_SK_LOOKUP_F_NO_REUSEPORT):
        return -errno.EINVAL
    if sock is not None:
        if not sock.rcu_free:
            return -errno.ESOCKTNOSUPPORT  # only listeners and UDP sockets, never refcounted
        if sock.proto == "tcp" and sock.state != 10:
            return -errno.ESOCKTNOSUPPORT
        if sock.proto == "udp" and sock.state != 7:
            return -errno.ESOCKTNOSUPPORT
        if sock.protocol != kctx.protocol:
            return -errno.EPROTOTYPE
        if sock.family != kctx.family and (sock.family == AF_INET or sock.ipv6only):
            return -errno.EAFNOSUPPORT
    if kctx.selected_sk and not flags & BPF_SK_LOOKUP_F_REPLACE:
        return -errno.EEXIST
    kctx.select(sk if sk else 0, bool(flags & BPF_SK_LOOKUP_F_NO_REUSEPORT))
    return 0


BPF_SK_LOOKUP_F_REPLACE = 1 << 0
BPF_SK_LOOKUP_F_NO_REUSEPORT = 1 << 1
