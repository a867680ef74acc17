"""Packets moving between pybpf devices: XDP_TX, bpf_redirect from XDP and from tc (egress
and BPF_F_INGRESS), and what the same programs return in the live kernel's test_run
(the verdict a redirect yields, flags the helper refuses)."""

from __future__ import annotations

from typing import Any

import pytest

from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.kernel import Kernel
from pybpf.net import packets as P
from pybpf.program import Program

XDP, SCHED_CLS = 6, 3
BPF_F_INGRESS = 1
PKT = P.ipv4("10.0.0.2", "10.0.0.1", P.IPPROTO_UDP, 5, 53, b"redirect me")


def _redirect_prog(ifindex: int, flags: int) -> str:
    return f"r1 = {ifindex}\nr2 = {flags}\ncall 23\nexit"  # bpf_redirect


def _net() -> tuple[Kernel, Any, Any, Any]:
    k = Kernel()
    a = k.netdev("veth0", peer="veth1")
    b = k.netdevs.by_name("veth1")
    c = k.netdev("eth1")
    return k, a, b, c


def test_xdp_tx_bounces_to_the_peer() -> None:
    k, a, b, _c = _net()
    a.attach_xdp(Program.load(k, XDP, assemble("r0 = 3\nexit", syntax="kernel")))  # XDP_TX
    assert a.receive(PKT) == "xdp:tx"
    assert b.delivered == [PKT] and a.delivered == []


def test_xdp_redirect_transmits_on_the_target() -> None:
    k, a, _b, c = _net()
    a.attach_xdp(Program.load(k, XDP, assemble(_redirect_prog(c.ifindex, 0), syntax="kernel")))
    assert a.receive(PKT) == "xdp:redirect:eth1"
    assert c.wire == [PKT] and a.delivered == []


@pytest.mark.parametrize(("flags", "where"), [(0, "wire"), (BPF_F_INGRESS, "delivered")])
def test_tc_redirect_egress_or_ingress(flags: int, where: str) -> None:
    k, a, _b, c = _net()
    prog = Program.load(k, SCHED_CLS, assemble(_redirect_prog(c.ifindex, flags), syntax="kernel"))
    prog.attach_tcx(a)
    out = a.receive(PKT)
    assert out.startswith("tc:redirect")
    assert getattr(c, where) == [PKT]
    assert a.delivered == []


def test_redirect_to_a_missing_device_drops() -> None:
    k, a, _b, _c = _net()
    Program.load(k, SCHED_CLS, assemble(_redirect_prog(999, 0), syntax="kernel")).attach_tcx(a)
    assert a.receive(PKT) == "tc:redirect-failed"
    assert a.stats.rx_dropped == 1


@pytest.mark.parametrize(("ptype", "flags"), [(XDP, 0), (XDP, 1), (XDP, 8), (SCHED_CLS, 0),
                                               (SCHED_CLS, BPF_F_INGRESS), (SCHED_CLS, 4),
                                               (SCHED_CLS, 8)])
def test_redirect_verdicts_match_the_kernel(kernel: Any, ptype: int, flags: int) -> None:
    text = _redirect_prog(1, flags)
    res = kernel.prog_load(ptype, encode(assemble(text, syntax="kernel")))
    assert res.fd >= 0, res.log
    try:
        want = kernel.prog_test_run(res.fd, PKT, data_size_out=256)
    finally:
        import os

        os.close(res.fd)
    k = Kernel()
    mine = Program.load(k, ptype, assemble(text, syntax="kernel")).test_run(PKT)
    assert want.errno == 0
    assert mine.retval == want.retval


@pytest.mark.parametrize(("flags", "where"), [(0, "wire"), (BPF_F_INGRESS, "delivered")])
def test_clone_redirect_sends_a_copy_and_the_original_goes_on(flags: int, where: str) -> None:
    """``bpf_clone_redirect`` from tc ingress: a copy leaves through (or arrives at) the
    target device, and the program's own verdict still decides the original."""
    k, a, _b, c = _net()
    text = f"r6 = r1\nr2 = {c.ifindex}\nr3 = {flags}\ncall 13\nr0 = 0\nexit"  # TC_ACT_OK
    Program.load(k, SCHED_CLS, assemble(text, syntax="kernel")).attach_tcx(a)
    assert a.receive(PKT) == "pass"
    assert getattr(c, where) == [PKT]
    assert a.delivered == [PKT]
