"""Which helpers each program type may call, live kernel vs pybpf.

A bare ``call <id>; exit`` is loaded for every helper id in both worlds: the kernel answers
``program of this type cannot use helper`` for a helper the type does not offer, and
otherwise fails on (or accepts) the arguments. Both worlds must give the same errno and the
same first error line (24 program types and 17 attach-type variants x 211 helper ids).
The capability split of ``bpf_base_func_proto``
(none / CAP_BPF / CAP_BPF + CAP_PERFMON) is checked on socket filters from children that
hold only those capabilities.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
from types import ModuleType

import pytest

from pybpf.helpers.registry import all_protos
from pybpf.isa.insn import Insn, encode
from pybpf.verifier.api import VerifierInput, bpf_check

MAX_HELPER = 211
#: program types that load without an attach target, and the attach type some need
# (the kernel itself gives cgroup sock and sk_reuseport programs loaded with 0 the types 2
# and 39: bpf_prog_load_fixup_attach_type)
PROG_TYPES = {1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0, 9: 2, 10: 0, 11: 0, 12: 0, 13: 0,
              14: 0, 15: 0, 16: 0, 17: 0, 18: 10, 21: 39, 22: 0, 23: 18, 24: 0, 25: 21, 30: 36}
CAP_PERFMON, CAP_BPF = 38, 39


def _bare(fid: int) -> list[Insn]:
    return [Insn(0x85, 0, 0, 0, fid), Insn(0x95, 0, 0, 0, 0)]


def _first_error(log: str) -> str:
    lines = [ln for ln in log.strip().splitlines()
             if ln and not ln[0].isdigit() and not ln.startswith("processed")]
    return lines[0] if lines else ""


def _kernel(kernel: ModuleType, ptype: int, fid: int, eat: int, btf_id: int = 0) -> tuple[int, str]:
    r = kernel.prog_load(ptype, encode(_bare(fid)), log_level=1, log_size=1 << 16,
                         expected_attach_type=eat, attach_btf_id=btf_id)
    if r.fd >= 0:
        kernel.close(r.fd)
    return r.errno, _first_error(r.log)


def _ours(ptype: int, fid: int, eat: int, bpf: bool = True, perfmon: bool = True,
          btf_id: int = 0) -> tuple[int, str]:
    r = bpf_check(VerifierInput(insns=_bare(fid), prog_type=ptype, log_level=1,
                                expected_attach_type=eat, bpf_capable=bpf, perfmon_capable=perfmon,
                                attach_btf_id=btf_id))
    return r.errno, (r.extra.get("error_line", "") if r.errno else "")


@pytest.mark.parametrize("ptype", list(PROG_TYPES))
def test_helper_availability_as_kernel(kernel: ModuleType, ptype: int) -> None:
    eat = PROG_TYPES[ptype]
    diffs = []
    for fid in range(1, MAX_HELPER + 1):
        want = _kernel(kernel, ptype, fid, eat)
        got = _ours(ptype, fid, eat)
        if got != want:
            diffs.append(f"helper {fid}: kernel {want} pybpf {got}")
    assert not diffs, "\n".join(diffs)


#: attach types that change what a program type offers (bind/connect/sendmsg/recvmsg/
#: getpeername hooks, setsockopt, cgroup skb egress, sock create/post-bind, sock_ops, device)
ATTACH_VARIANTS = [(18, 8), (18, 9), (18, 11), (18, 14), (18, 19), (18, 29), (18, 31), (25, 22),
                   (8, 1), (9, 12), (9, 13), (9, 2), (13, 3), (15, 6), (23, 18)]


@pytest.mark.parametrize(("ptype", "eat"), ATTACH_VARIANTS)
def test_helper_availability_by_attach_type(kernel: ModuleType, ptype: int, eat: int) -> None:
    diffs = [f"helper {fid}: kernel {want} pybpf {got}" for fid in range(1, MAX_HELPER + 1)
             if (want := _kernel(kernel, ptype, fid, eat)) != (got := _ours(ptype, fid, eat))
             and (want[1] or not want[0])]  # an empty-log refusal is the attach check's
    assert not diffs, "\n".join(diffs)


@pytest.mark.parametrize(("eat", "target"), [(28, "task"), (23, "sched_switch")],
                         ids=["iter_task", "tp_btf_sched_switch"])
def test_tracing_helper_availability_as_kernel(kernel: ModuleType, eat: int, target: str) -> None:
    """BPF_PROG_TYPE_TRACING attached by BTF (iterator, tp_btf): the seq_file helpers, the
    attach cookie and the BTF-pointer variants of socket/xdp helpers."""
    from pybpf.verifier.attach_target import vmlinux_btf_id

    btf_id = vmlinux_btf_id(target, eat)
    if not btf_id:
        pytest.skip("no vmlinux BTF for the attach target")
    diffs = [f"helper {fid}: kernel {want} pybpf {got}" for fid in range(1, MAX_HELPER + 1)
             if (want := _kernel(kernel, 26, fid, eat, btf_id)) != (got := _ours(26, fid, eat, btf_id=btf_id))]
    assert not diffs, "\n".join(diffs)


def _in_child(caps: list[int]) -> set[int]:
    """Helper ids a socket filter may name, loaded from a child holding only ``caps``."""
    from pybpf.testing import kernel as oracle

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            lo = sum(1 << c for c in caps if c < 32)
            hi = sum(1 << (c - 32) for c in caps if c >= 32)
            libc = ctypes.CDLL(None, use_errno=True)
            hdr = ctypes.create_string_buffer(struct.pack("<Ii", 0x20080522, 0), 8)
            data = ctypes.create_string_buffer(struct.pack("<IIIIII", lo, lo, 0, hi, hi, 0), 24)
            if libc.syscall(126, hdr, data) != 0:
                os._exit(99)
            got = [fid for fid in range(1, MAX_HELPER + 1)
                   if "cannot use helper" not in _kernel(oracle, 1, fid, 0)[1]]
            os.write(w, json.dumps(got).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 1 << 16):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return set(json.loads(out or b"[]"))


@pytest.mark.parametrize(("caps", "bpf", "perfmon"), [([CAP_BPF], True, False),
                                                      ([CAP_BPF, CAP_PERFMON], True, True)])
def test_base_helpers_follow_capabilities(kernel: ModuleType, caps: list[int], bpf: bool,
                                          perfmon: bool) -> None:
    if os.geteuid() != 0:
        pytest.skip("dropping to a capability subset needs root")
    want = _in_child(caps)
    assert want, "the capability-limited child could not load anything"
    ours = {fid for fid in range(1, MAX_HELPER + 1)
            if "cannot use helper" not in _ours(1, fid, 0, bpf, perfmon)[1]}
    protos = all_protos()
    assert {f for f in want ^ ours if f in protos} == set()
