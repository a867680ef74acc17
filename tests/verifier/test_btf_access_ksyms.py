"""Typed ksyms (``ld_imm64`` with ``BPF_PSEUDO_BTF_ID``) and ``bpf_per_cpu_ptr`` /
``bpf_this_cpu_ptr``.

Against the live 6.18 kernel: raw tracepoint programs, verdict and the whole level-2 log.
The host kernel is built without ``CONFIG_KALLSYMS_ALL``, so it finds no variable in
kallsyms and refuses every VAR ksym with ``ENOENT``; the pybpf instance is told to model
the same kernel (``KsymTable.kallsyms_all = False``) for those comparisons. FUNC ksyms, bad
ids, non-VAR types and bad BTF fds are compared as they are.

With ``kallsyms_all`` (pybpf's default) the register types follow ``check_pseudo_btf_id``
(``percpu_ptr_<type>`` for ``.data..percpu`` variables; the helpers return ``rdonly_mem``
of the type's size or ``ptr_<struct>``), checked here by their log lines, and programs run on
both tiers against the zero-filled per-CPU copies pybpf gives each variable.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.testing.verifier_diff import is_map_load_line, kernel_load, log_lines
from pybpf.verifier.ksyms import ksym_table

RAW_TP = 17
BPF_F_TEST_RUN_ON_CPU = 1


def _vmlinux_id(k: Kernel, name: str, kind: str) -> int:
    btf = k.vmlinux_btf
    if btf is None:
        pytest.skip("no vmlinux BTF")
    for t in btf.parsed().types:
        if t.name == name and t.kind.name == kind:
            return int(t.id)
    pytest.skip(f"vmlinux BTF has no {kind} {name}")
    return 0


@pytest.fixture(scope="module")
def ids() -> dict[str, int]:
    k = Kernel()
    return {"runqueues": _vmlinux_id(k, "runqueues", "VAR"),
            "bpf_prog_active": _vmlinux_id(k, "bpf_prog_active", "VAR"),
            "schedule": _vmlinux_id(k, "schedule", "FUNC"),
            "int": _vmlinux_id(k, "int", "INT")}


def _ld(dst: int, btf_id: int, btf_fd: int = 0) -> list[Insn]:
    return [Insn(0x18, dst, 3, 0, btf_id), Insn(0, 0, 0, 0, btf_fd)]


#: name -> (symbol, btf fd, program after ``r1 = <ksym>``)
CASES: dict[str, tuple[str, int, str]] = {
    "var_struct": ("runqueues", 0, "r0 = 0\nexit"),
    "var_int": ("bpf_prog_active", 0, "r0 = 0\nexit"),
    "func": ("schedule", 0, "r0 = 0\nexit"),
    "func_deref": ("schedule", 0, "r0 = *(u8 *)(r1 + 0)\nexit"),
    "func_this_cpu_ptr": ("schedule", 0, "call 154\nr0 = 0\nexit"),
    "not_var_or_func": ("int", 0, "r0 = 0\nexit"),
    "bad_id": ("", 0, "r0 = 0\nexit"),
    "bad_btf_fd": ("runqueues", 9999, "r0 = 0\nexit"),
    "percpu_deref": ("bpf_prog_active", 0, "r0 = *(u32 *)(r1 + 0)\nexit"),
    "this_cpu_int": ("bpf_prog_active", 0, "call 154\nr0 = *(u32 *)(r0 + 0)\nexit"),
    "per_cpu_struct": ("runqueues", 0, "r2 = 1\ncall 153\nif r0 == 0 goto +1\n"
                                       "r0 = *(u32 *)(r0 + 0)\nr0 = 0\nexit"),
    "scalar_to_per_cpu_ptr": ("", -1, "r1 = 0\nr2 = 1\ncall 153\nr0 = 0\nexit"),
}


def _program(ids: dict[str, int], name: str) -> list[Insn]:
    sym, fd, body = CASES[name]
    if fd < 0:
        return assemble(body)
    return _ld(1, ids.get(sym, 0x7FFFFFFF), fd) + assemble(body)


def _pybpf(insns: list[Insn], kallsyms_all: bool) -> tuple[bool, str, Program | None, Kernel]:
    k = Kernel()
    ksym_table(k).kallsyms_all = kallsyms_all
    try:
        prog = Program.load(k, RAW_TP, insns, log_level=2, log_size=1 << 20)
    except BpfError as e:
        return False, e.log, None, k
    return True, prog.log, prog, k


@pytest.mark.parametrize("name", list(CASES))
def test_log_matches_kernel(kernel: ModuleType, ids: dict[str, int], name: str) -> None:
    insns = _program(ids, name)
    want = kernel_load(kernel, RAW_TP, insns, log_level=2)
    ok, log, prog, _k = _pybpf(insns, kallsyms_all=False)
    if prog is not None:
        prog.close()
    assert ok == want.ok, log
    assert log_lines(log, is_map_load_line) == log_lines(want.log, is_map_load_line)


def _lines(ids: dict[str, int], text: str) -> tuple[bool, list[str]]:
    sym, _, body = text.partition("|")
    ok, log, prog, _k = _pybpf(_ld(1, ids[sym]) + assemble(body), kallsyms_all=True)
    if prog is not None:
        prog.close()
    return ok, [ln.split(";")[-1].strip() if ";" in ln else ln for ln in log.splitlines()]


def test_register_types_with_kallsyms_all(ids: dict[str, int]) -> None:
    ok, lines = _lines(ids, "runqueues|call 154\nr0 = *(u32 *)(r0 + 0)\nr0 = 0\nexit")
    assert ok and "R1=percpu_ptr_rq()" in lines and "R0=ptr_rq()" in lines
    ok, lines = _lines(ids, "bpf_prog_active|r2 = 0\ncall 153\nr0 = 0\nexit")
    assert ok and "R1=percpu_ptr_int()" in lines and "R0=rdonly_mem_or_null(id=1,sz=4)" in lines
    ok, lines = _lines(ids, "bpf_prog_active|call 154\n*(u32 *)(r0 + 0) = 1\nr0 = 0\nexit")
    assert not ok and "R0 cannot write into rdonly_mem" in lines
    ok, lines = _lines(ids, "bpf_prog_active|call 154\nr0 = *(u32 *)(r0 + 4)\nexit")
    assert not ok and "invalid access to memory, mem_size=4 off=4 size=4" in lines
    ok, lines = _lines(ids, "runqueues|r1 += 8\ncall 154\nr0 = 0\nexit")
    assert not ok and "dereference of modified percpu_ptr_ ptr R1 off=8 disallowed" in lines


@pytest.mark.parametrize("jit", [0, 1])
def test_programs_read_zeroed_per_cpu_copies(ids: dict[str, int], jit: int) -> None:
    """Both tiers: the running CPU's copy, another CPU's, and NULL past the last CPU."""
    k = Kernel(sysctls={"bpf_jit_enable": jit})
    cases = {
        "call 154\nr0 = *(u32 *)(r0 + 0)\nr0 += 7\nexit": 7,
        "r2 = 1\ncall 153\nif r0 == 0 goto +2\nr0 = *(u32 *)(r0 + 0)\nr0 += 9\nexit": 9,
        "r2 = 100000\ncall 153\nif r0 == 0 goto +2\nr0 = *(u32 *)(r0 + 0)\nr0 += 9\nexit": 0,
    }
    for body, want in cases.items():
        prog = Program.load(k, RAW_TP, _ld(1, ids["bpf_prog_active"]) + assemble(body))
        for cpu in (0, 1):
            assert prog.test_run(cpu=cpu, flags=BPF_F_TEST_RUN_ON_CPU, repeat=0).retval == want
        prog.close()
    prog = Program.load(k, RAW_TP, _ld(1, ids["runqueues"])
                        + assemble("call 154\nr0 = *(u64 *)(r0 + 64)\nr0 += 5\nexit"))
    assert prog.test_run(repeat=0).retval == 5  # a load through ptr_rq (BPF_PROBE_MEM)


def test_one_region_per_symbol(ids: dict[str, int]) -> None:
    table = ksym_table(Kernel())
    a = table.lookup("runqueues", func=False, size=64, percpu=True, btf_id=ids["runqueues"])
    b = table.lookup("runqueues", func=False, size=64, percpu=True, btf_id=ids["runqueues"])
    c = table.lookup("bpf_prog_active", func=False, size=4, percpu=True,
                     btf_id=ids["bpf_prog_active"])
    assert a == b and a != c and a and c
