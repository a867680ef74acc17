"""A program type's own implementation of a helper id (the kernel's per-type
``bpf_func_proto``) is what its programs call, unless the host overrode the helper."""

from __future__ import annotations

import pytest

from pybpf.isa.asm import assemble
from pybpf.kernel import Kernel
from pybpf.program import Program

FLOW_DISSECTOR = 22
# r0 = bpf_skb_load_bytes(ctx, 0, fp-8, 4) -- for a flow dissector, flow_dissector_load_bytes
PROG = """
r2 = 0
r3 = r10
r3 += -8
r4 = 4
call 26
exit
"""
PKT = bytes.fromhex("0200000000010200000000020800") + bytes(40)


@pytest.mark.parametrize("jit", [0, 1])
def test_flow_dissector_load_bytes_and_host_override(jit: int) -> None:
    k = Kernel()
    k.sysctl["bpf_jit_enable"] = jit
    p = Program.load(k, FLOW_DISSECTOR, assemble(PROG, syntax="kernel"))
    assert p.test_run(PKT).retval == (-14) & 0xFFFFFFFF  # no skb in a test run: -EFAULT
    k2 = Kernel()
    k2.sysctl["bpf_jit_enable"] = jit
    k2.helpers.override(26, lambda ctx, *a: 7)
    p2 = Program.load(k2, FLOW_DISSECTOR, assemble(PROG, syntax="kernel"))
    assert p2.test_run(PKT).retval == 7
