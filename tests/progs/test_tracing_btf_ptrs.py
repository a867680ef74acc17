"""tp_btf programs reading kernel objects through BTF pointers, end to end: the verifier's
rewrite (loads through untrusted pointers become ``BPF_PROBE_MEM``/``BPF_PROBE_MEMSX``),
the xlated dump as the live kernel and bpftool give it, and running on both tiers — a
trusted ``task_struct *`` reads the task's fields, a probe load through an untrusted
pointer that leads nowhere reads 0 instead of faulting."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from types import ModuleType

import pytest

from pybpf.btf.raw import Btf, BtfKind
from pybpf.helpers.task import task_struct_region
from pybpf.isa.asm import assemble
from pybpf.isa.disasm import disasm_kernel
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.syscall.info import insn_prepare_dump

TRACING, TRACE_RAW_TP = 26, 23
PROBE_MEM, PROBE_MEMSX = 0x20, 0x40


@pytest.fixture(scope="module", params=["interp", "jit"])
def k(request: pytest.FixtureRequest) -> Kernel:
    kern = Kernel()
    if kern.vmlinux_btf is None:
        pytest.skip("no vmlinux BTF on this machine")
    kern.sysctl["bpf_jit_enable"] = 1 if request.param == "jit" else 0
    return kern


def _btf(k: Kernel) -> Btf:
    btf: Btf = k.vmlinux_btf.parsed()  # type: ignore[union-attr]
    return btf


def _off(btf: Btf, struct: str, member: str) -> int:
    t = btf.types[btf.find(struct, BtfKind.STRUCT)]
    return int(t.member(member).bit_offset) // 8  # type: ignore[attr-defined]


def _program(btf: Btf) -> str:
    """prev->pid (trusted: a plain load) + prev->mm->mmap_base (mm is an untrusted
    ``ptr_mm_struct``: probe loads, one sign-extending)."""
    pid, mm = _off(btf, "task_struct", "pid"), _off(btf, "task_struct", "mm")
    return (f"r2 = *(u64 *)(r1 + 8)\nr0 = *(u32 *)(r2 + {pid})\nr3 = *(u64 *)(r2 + {mm})\n"
            "r4 = *(s32 *)(r3 + 80)\nr0 += r4\nr4 = *(u64 *)(r3 + 88)\nr0 += r4\nexit")


def _load(k: Kernel) -> Program:
    btf = _btf(k)
    return Program.load(k, TRACING, assemble(_program(btf), syntax="kernel"),
                        expected_attach_type=TRACE_RAW_TP,
                        attach_btf_id=btf.find("btf_trace_sched_switch", BtfKind.TYPEDEF))


def test_untrusted_loads_become_probe_loads(k: Kernel) -> None:
    xlated: list[Insn] = _load(k).obj.xlated
    modes = [i.code & 0xE0 for i in xlated if i.code & 0x07 == 0x01]
    # ctx read, prev->pid (trusted), prev->mm (trusted walk), then the two mm reads
    assert modes == [0x60, 0x60, 0x60, PROBE_MEMSX, PROBE_MEM]


def test_xlated_dump_vs_kernel(kernel: ModuleType, k: Kernel) -> None:
    """``BPF_PROG_GET_INFO_BY_FD``'s xlated instructions: PROBE_MEM reads back as the
    BPF_MEM load it was, PROBE_MEMSX stays — as in the live kernel."""
    btf = _btf(k)
    insns = assemble(_program(btf), syntax="kernel")
    r = kernel.prog_load(TRACING, encode(insns), expected_attach_type=TRACE_RAW_TP,
                         attach_btf_id=btf.find("btf_trace_sched_switch", BtfKind.TYPEDEF))
    assert r.fd >= 0, r.log
    try:
        theirs = kernel.prog_xlated(r.fd)
        prog_id = kernel.prog_info(r.fd).id
        bpftool = None
        if shutil.which("bpftool"):
            out = subprocess.run(["bpftool", "prog", "dump", "xlated", "id", str(prog_id)],
                                 capture_output=True, text=True, check=False).stdout
            bpftool = [re.sub(r"^\s*\d+: ", "", ln) for ln in out.splitlines() if ln.strip()]
    finally:
        os.close(r.fd)
    ours = insn_prepare_dump(_load(k).obj)
    assert [tuple(i) for i in ours] == [tuple(i) for i in theirs]
    if bpftool is not None:
        assert disasm_kernel(ours) == bpftool  # incl. "BUG_ldx_41" for the PROBE_MEMSX load


def test_run_reads_the_task_and_probe_loads_read_zero(k: Kernel) -> None:
    """prev is the root task's ``task_struct`` image: its ``mm`` is NULL, so the two
    probe loads through it read 0 (the interpreter and the JIT alike)."""
    task = k.root
    region = task_struct_region(task)
    prog = _load(k)
    with prog.attach_trace():
        assert k.tracepoints.fire("sched_switch", 0, region.start, region.start, 0) == [task.pid]
    prog.close()


def test_fire_with_a_wild_task_pointer_is_efault(k: Kernel) -> None:
    """The program trusts its task_struct arguments: an address that is not pybpf memory
    holding a whole task_struct is refused before the program runs (never a wild load)."""
    import errno

    from pybpf.errors import BpfError

    region = task_struct_region(k.root)
    prog = _load(k)
    with prog.attach_trace():
        for wild in (0xDEAD0000, region.start + region.size - 8, 0):  # prev is never NULL
            with pytest.raises(BpfError) as e:
                k.tracepoints.fire("sched_switch", 0, wild, region.start, 0)
            assert e.value.errno == errno.EFAULT
        assert k.tracepoints.fire("sched_switch", 0, region.start, region.start, 0) == [k.root.pid]
    prog.close()
