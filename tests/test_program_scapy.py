"""``Program.test_run`` takes scapy packets and ctypes contexts; ``TestRun.packet()``
parses ``data_out``. The shipped tc_rewrite example NATs UDP port 53 to 5353: hypothesis
packets built with scapy go through pybpf and the live kernel with equal results."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybpf.skel as skel
from pybpf.kernel import Kernel
from pybpf.program import as_bytes

scapy_all = pytest.importorskip("scapy.all", reason="scapy (the 'net' extra) not installed")
Ether, IP, UDP, TCP, IPv6, Raw = (scapy_all.Ether, scapy_all.IP, scapy_all.UDP, scapy_all.TCP,
                                  scapy_all.IPv6, scapy_all.Raw)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def tc_rewrite() -> object:
    return skel.load(EXAMPLES / "tc_rewrite.o", kernel=Kernel()).progs.tc_rewrite


def test_scapy_packet_in_and_out(tc_rewrite) -> None:  # type: ignore[no-untyped-def]
    pkt = Ether() / IP(src="10.0.0.2", dst="10.0.0.1", ttl=9) / UDP(sport=999, dport=53) / b"q"
    run = tc_rewrite.test_run(pkt)
    out = run.packet()
    assert out[UDP].dport == 5353 and out[IP].ttl == 8
    # the checksums the helpers fixed are the ones scapy computes from scratch
    fresh = out.copy()
    del fresh[IP].chksum
    del fresh[UDP].chksum
    fresh = Ether(bytes(fresh))
    assert out[IP].chksum == fresh[IP].chksum and out[UDP].chksum == fresh[UDP].chksum


def test_bad_data_in_types_are_refused_clearly() -> None:
    with pytest.raises(TypeError, match="data_in must be bytes"):
        as_bytes(12, "data_in")
    with pytest.raises(TypeError, match="ctx_in must be bytes"):
        as_bytes(object(), "ctx_in")
    assert as_bytes(bytearray(b"ab"), "x") == b"ab"


_l4 = st.one_of(
    st.builds(lambda s, d: UDP(sport=s, dport=d), st.integers(1, 65535), st.sampled_from([53, 54, 5353])),
    st.builds(lambda s, d: TCP(sport=s, dport=d), st.integers(1, 65535), st.sampled_from([53, 80])),
)
_packets = st.one_of(
    st.builds(lambda ttl, l4, pay: Ether() / IP(src="192.0.2.1", dst="198.51.100.7", ttl=ttl)
              / l4 / Raw(pay), st.integers(1, 255), _l4, st.binary(max_size=40)),
    st.builds(lambda l4, pay: Ether() / IPv6() / l4 / Raw(pay), _l4, st.binary(max_size=20)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pkt=_packets)
def test_tc_rewrite_matches_the_kernel_on_scapy_packets(kernel, tc_rewrite, pkt) -> None:  # type: ignore[no-untyped-def]
    live = _live_tc_rewrite()
    raw = bytes(pkt)
    mine = tc_rewrite.test_run(pkt, data_size_out=len(raw) + 64)
    res = kernel.prog_test_run(live.fd, raw, data_size_out=len(raw) + 64)
    assert res.errno == 0
    assert (mine.retval, mine.data_out) == (res.retval, res.data_out)


_LIVE: dict[str, object] = {}


def _live_tc_rewrite():  # type: ignore[no-untyped-def]
    if "p" not in _LIVE:
        obj = skel.load(EXAMPLES / "tc_rewrite.o", kernel="live")
        _LIVE["obj"] = obj
        _LIVE["p"] = obj.progs.tc_rewrite
    return _LIVE["p"]
