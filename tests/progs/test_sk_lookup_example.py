"""The shipped ``examples/sk_lookup.o`` (C, clang -target bpf): BPF_PROG_TEST_RUN in pybpf and
in the live kernel on the same ``struct bpf_sk_lookup`` inputs — retval, ctx_out and every
map's contents must agree."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybpf.skel as skel

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sk_lookup.o"
AF_INET, AF_INET6 = 2, 10


def ctx(family: int, protocol: int, remote: bytes, rport: int, local: bytes, lport: int) -> bytes:
    v4 = family == AF_INET
    r4, l4 = (remote[:4], local[:4]) if v4 else (bytes(4), bytes(4))
    r6, l6 = (bytes(16), bytes(16)) if v4 else (remote, local)
    return (struct.pack("<QII", 0, family, protocol) + r4 + r6 + struct.pack(">H", rport)
            + bytes(2) + l4 + l6 + struct.pack("<II", lport, 0) + bytes(4))


SEEN = struct.Struct("<IIIIIIIIIiBBH")  # struct lookup_seen
SEEN_FIELDS = ("family", "protocol", "remote_ip4", "local_ip4", "remote_ip6_last",
               "local_ip6_first", "remote_port", "local_port", "ingress_ifindex", "assign_err",
               "remote_port_hi", "family_lo", "local_ip4_hi")


@pytest.fixture(scope="module")
def pair(kernel: ModuleType) -> Any:
    if not EXAMPLE.exists():
        pytest.skip(f"{EXAMPLE} not built")
    mine, live = skel.load(str(EXAMPLE)), skel.load(str(EXAMPLE), kernel="live")
    for port in (7, 23):
        mine.maps.closed_ports[port] = 1
        kernel.map_update(live.maps.closed_ports.fd, struct.pack("<H", port), b"\x01")
    return kernel, mine, live


def live_seen(kernel: ModuleType, live: Any) -> dict[str, int]:
    raw = kernel.map_lookup(live.maps.last.fd, bytes(4), SEEN.size)
    return dict(zip(SEEN_FIELDS, SEEN.unpack(raw), strict=True))


def _run(prog: Any, cin: bytes) -> tuple[int, bytes]:
    r = prog.test_run(ctx_in=cin, ctx_size_out=len(cin))
    return r.retval, r.ctx_out


lookups = st.builds(
    lambda fam, proto, ra, rp, la, lp: ctx(fam, proto, ra if fam == AF_INET6 else ra[:4], rp,
                                           la if fam == AF_INET6 else la[:4], lp),
    st.sampled_from([AF_INET, AF_INET6]), st.sampled_from([6, 17]),
    st.binary(min_size=16, max_size=16), st.integers(0, 0xFFFF),
    st.binary(min_size=16, max_size=16), st.sampled_from([7, 9, 22, 23, 80, 443, 65535]))


def test_sk_lookup_example_vs_kernel(pair: Any) -> None:
    kernel, mine, live = pair
    sent = [ctx(AF_INET, 6, socket.inet_aton("10.0.0.2"), 40000, socket.inet_aton("10.0.0.1"), 7),
            ctx(AF_INET6, 17, socket.inet_pton(AF_INET6, "2001:db8::2"), 53,
                socket.inet_pton(AF_INET6, "2001:db8::1"), 9)]

    @given(lookups)
    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def agree(cin: bytes) -> None:
        sent.append(cin)
        assert _run(mine.progs.steer, cin) == _run(live.progs.steer, cin)
        assert mine.maps.last[0] == live_seen(kernel, live)

    for cin in sent[:2]:
        assert _run(mine.progs.steer, cin) == _run(live.progs.steer, cin)
    agree()
    for proto in (6, 17, 0):
        theirs = kernel.map_lookup(live.maps.per_proto.fd, struct.pack("<I", proto), 8)
        assert mine.maps.per_proto[proto] == struct.unpack("<Q", theirs)[0], proto
    assert mine.maps.per_proto[6] + mine.maps.per_proto[17] == len(sent) > 2
    assert _run(mine.progs.steer, sent[0])[0] == 0  # port 7 is closed
