"""Program-type ops: registration, helper availability and ctx access rules."""

from __future__ import annotations

from typing import Any

from pybpf.progs.ops import find_prog_type
from pybpf.verifier.regs import RegType


def access(pt: int, off: int, size: int, write: bool = False, **prog: Any) -> tuple[bool, dict[str, Any]]:
    ops = find_prog_type(pt)
    assert ops is not None

    class P:
        expected_attach_type = prog.get("att", 0)

    info: dict[str, Any] = {}
    return ops.is_valid_access(off, size, write, P(), info), info


def test_types_registered() -> None:
    for pt in (1, 2, 3, 5, 6, 8, 9, 13, 14, 16, 18, 21, 23, 25, 26, 30):
        assert find_prog_type(pt) is not None, pt


def test_skb_rules() -> None:
    assert access(1, 0, 4)[0]            # len
    assert not access(1, 76, 4)[0]       # socket filter: no data
    ok, info = access(3, 76, 4)          # tc: data is a packet pointer
    assert ok and info["reg_type"] == RegType.PTR_TO_PACKET
    assert access(1, 48, 4, write=True)[0]   # cb[0]
    assert not access(1, 8, 4, write=True)[0]  # mark is read-only for socket filters
    assert access(3, 8, 4, write=True)[0]


def test_xdp_rules() -> None:
    ok, info = access(6, 4, 4)
    assert ok and info["reg_type"] == RegType.PTR_TO_PACKET_END
    assert not access(6, 0, 4, write=True)[0]


def test_helper_availability() -> None:
    kprobe = find_prog_type(2)
    sockf = find_prog_type(1)
    assert kprobe is not None and sockf is not None
    assert kprobe.get_func_proto(160, None) is None  # ktime_get_coarse_ns: not for tracing
    assert sockf.get_func_proto(160, None) is not None
    assert sockf.get_func_proto(26, None).name == "skb_load_bytes"  # type: ignore[union-attr]
