"""Sweeps against the live 6.18 kernel, over the machine's whole vmlinux BTF: the
level-2 log (every register type string) and verdict of

- a tp_btf program reading every argument of *every* ``btf_trace_*`` tracepoint (typing
  of each slot: scalars, ``(const) void *``, unions by value, ``trusted_ptr_<struct>``,
  the null-args table and ``__nullable`` names);
- an iterator program reading every argument of every ``bpf_iter_*`` target;
- reads of members of kernel structs at each member's offset with each size (scalars,
  bitfields, arrays, nested structs, partial pointer reads, reads past a member);
- loads through every pointer member of a struct and a read behind it (trusted / RCU /
  untrusted / read-only untrusted memory results, in sleepable and non-sleepable
  programs).

Each case is one small program; a mismatch reports the first differing log line.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from pybpf.btf.raw import Btf, BtfKind, BtfPtr
from pybpf.isa.asm import assemble
from pybpf.kernel import Kernel
from pybpf.testing.verifier_diff import first_difference, load_both

TRACING, TRACE_RAW_TP, TRACE_ITER = 26, 23, 28
BPF_F_SLEEPABLE = 1 << 4
WIDTH = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}


def _mismatch(kernel: ModuleType, k: Kernel, eat: int, btf_id: int, text: str,
              flags: int = 0) -> str | None:
    """None when both agree, else the first differing line."""
    insns = assemble(text, syntax="kernel")
    want, got = load_both(kernel, k, TRACING, insns, log_level=2, expected_attach_type=eat,
                          attach_btf_id=btf_id, prog_flags=flags)
    return first_difference(want, got)


def _report(bad: list[str]) -> None:
    assert not bad, f"{len(bad)} mismatches, first: " + "; ".join(bad[:5])


def _read_all_args(nargs: int) -> str:
    return "".join(f"r{2 + i % 8} = *(u64 *)(r1 + {8 * i})\n" for i in range(nargs)) + \
        "r0 = 0\nexit"


def test_every_tracepoint_argument(kernel: ModuleType, k: Kernel, vmlinux: Btf) -> None:
    bad = []
    for t in vmlinux.types:
        if t.kind != BtfKind.TYPEDEF or not t.name.startswith("btf_trace_"):
            continue
        proto = vmlinux.types[vmlinux.types[t.type].type]  # type: ignore[attr-defined]
        nargs = len(proto.params) - 1  # type: ignore[attr-defined]
        why = _mismatch(kernel, k, TRACE_RAW_TP, t.id, _read_all_args(nargs))
        if why:
            bad.append(f"{t.name}: {why}")
    _report(bad)


def test_every_iterator_argument(kernel: ModuleType, k: Kernel, vmlinux: Btf) -> None:
    bad = []
    for t in vmlinux.types:
        if t.kind != BtfKind.FUNC or not t.name.startswith("bpf_iter_"):
            continue
        proto = vmlinux.types[t.type]  # type: ignore[attr-defined]
        nargs = len(getattr(proto, "params", ()))
        for text in (_read_all_args(nargs), _read_all_args(nargs + 1)):
            why = _mismatch(kernel, k, TRACE_ITER, t.id, text)
            if why:
                bad.append(f"{t.name}: {why}")
    _report(bad)


def _member_reads(btf: Btf, struct: str, every: int) -> Iterator[tuple[int, int]]:
    st = btf.types[btf.find(struct, BtfKind.STRUCT)]
    seen = set()
    for i, m in enumerate(st.members):  # type: ignore[attr-defined]
        if i % every:
            continue
        off = m.bit_offset // 8
        for size in (1, 2, 4, 8):
            for at in (off, off + 4):
                if (at, size) not in seen:
                    seen.add((at, size))
                    yield at, size


@pytest.mark.parametrize(("tp", "arg", "struct", "every"), [
    ("sched_switch", 1, "task_struct", 5), ("kfree_skb", 0, "sk_buff", 1),
    ("tcp_send_reset", 0, "sock", 3)])
def test_member_reads(kernel: ModuleType, k: Kernel, vmlinux: Btf, tp: str, arg: int,
                      struct: str, every: int) -> None:
    btf_id = vmlinux.find("btf_trace_" + tp, BtfKind.TYPEDEF)
    bad = []
    for off, size in _member_reads(vmlinux, struct, every):
        text = f"r2 = *(u64 *)(r1 + {8 * arg})\nr3 = *({WIDTH[size]} *)(r2 + {off})\nr0 = 0\nexit"
        why = _mismatch(kernel, k, TRACE_RAW_TP, btf_id, text)
        if why:
            bad.append(f"{struct}+{off} size {size}: {why}")
    _report(bad)


@pytest.mark.parametrize(("target", "arg", "struct", "flags"), [
    ("btf_trace_sched_switch", 1, "task_struct", 0),
    ("bpf_iter_task", 1, "task_struct", 0),
    ("bpf_iter_task", 1, "task_struct", BPF_F_SLEEPABLE),
    ("btf_trace_kfree_skb", 0, "sk_buff", 0),
    ("bpf_iter_task_file", 3, "file", 0),
    ("bpf_iter_task_vma", 2, "vm_area_struct", 0)])
def test_pointer_member_walks(kernel: ModuleType, k: Kernel, vmlinux: Btf, target: str,
                              arg: int, struct: str, flags: int) -> None:
    """``p->member`` for each pointer member, then a byte read through it."""
    iterator = target.startswith("bpf_iter_")
    eat = TRACE_ITER if iterator else TRACE_RAW_TP
    btf_id = vmlinux.find(target, BtfKind.FUNC if iterator else BtfKind.TYPEDEF)
    null_check = "if r2 == 0 goto +3\n" if iterator else ""
    st = vmlinux.types[vmlinux.find(struct, BtfKind.STRUCT)]
    bad = []
    for m in st.members:  # type: ignore[attr-defined]
        if not isinstance(vmlinux.resolve(m.type), BtfPtr):
            continue
        text = (f"r2 = *(u64 *)(r1 + {8 * arg})\n{null_check}r3 = *(u64 *)(r2 + {m.bit_offset // 8})\n"
                "r4 = *(u8 *)(r3 + 0)\nr0 = 0\nexit")
        why = _mismatch(kernel, k, eat, btf_id, text, flags)
        if why:
            bad.append(f"{struct}.{m.name}: {why}")
    _report(bad)
