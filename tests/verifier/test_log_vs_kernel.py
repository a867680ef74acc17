"""pybpf's verifier log text against the live 6.18 kernel's, line for line.

Each case is loaded in the live kernel (``pybpf.testing.kernel.prog_load``) and through
pybpf's own ``bpf()`` (``Program.load``) at ``log_level`` 1 and 2; the logs are compared
after normalising only what must differ (see :func:`normalise`). ``LEVEL1_EXACT`` /
``LEVEL2_EXACT`` list the cases known to match exactly: a regression there fails, and
so does a case that starts matching without being listed (so the table stays honest).

Run as a script for the counts::

    .venv/bin/python tests/verifier/test_log_vs_kernel.py
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import pytest

from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn, encode

SOCKET_FILTER, XDP = 1, 6
MAP_MARK = 0xFD  # ``rN = 0xfd ll`` is patched into a map-fd ld_imm64


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    prog_type: int = SOCKET_FILTER
    map_value_size: int = 0  # > 0: a hash map (key 4 bytes) is created for MAP_MARK


MAP_LOOKUP = ("*(u32 *)(r10 -4) = 0;r2 = r10;r2 += -4;r1 = 0xfd ll;call 1;")
XDP_BOUNDS = ("r2 = *(u32 *)(r1 +0);r3 = *(u32 *)(r1 +4);r1 = r2;r1 += 14;")

CASES: list[Case] = [
    # accepted, straight-line
    Case("mov_exit", "r0 = 0;exit"),
    Case("alu_chain", "r0 = 1;r1 = r0;r1 += 5;r1 *= 3;r1 &= 0xff;r0 = r1;exit"),
    Case("alu32", "w0 = 7;w1 = w0;w1 <<= 3;w0 ^= w1;exit"),
    Case("spill_fill", "r1 = 42;*(u64 *)(r10 -8) = r1;r0 = *(u64 *)(r10 -8);exit"),
    Case("st_mem", "*(u32 *)(r10 -4) = 5;r0 = *(u32 *)(r10 -4);exit"),
    Case("ctx_load", "r0 = *(u32 *)(r1 +0);exit"),
    Case("ctx_spill", "*(u64 *)(r10 -8) = r1;r1 = *(u64 *)(r10 -8);r0 = 0;exit"),
    Case("ld_imm64", "r0 = 0x123456789 ll;r0 >>= 32;exit"),
    # accepted, branches
    Case("branch_const", "r0 = 1;if r0 > 3 goto +1;r0 = 2;exit"),
    Case("branch_unknown", "r2 = *(u32 *)(r1 +0);r0 = 0;if r2 > 3 goto +1;r0 = 1;exit"),
    Case("two_branches", "r2 = *(u32 *)(r1 +0);r0 = 0;if r2 == 1 goto +2;if r2 == 2 goto +1;"
         "r0 = 2;exit"),
    Case("bounded_loop", "r0 = 0;r0 += 1;if r0 < 4 goto -2;exit"),
    # rejected
    Case("r0_not_init", "exit"),
    Case("read_uninit_reg", "r0 = r2;exit"),
    Case("bad_stack_write", "*(u64 *)(r10 +8) = r1;r0 = 0;exit"),
    Case("div_zero", "r0 = 0;r0 /= 0;exit"),
    Case("scalar_deref", "r1 = 0;r0 = *(u64 *)(r1 +0);exit"),
    Case("bad_ctx_off", "r0 = *(u32 *)(r1 +1000);exit"),
    Case("var_ctx", "r2 = *(u32 *)(r1 +0);r0 = 1;if r2 > 3 goto +3;r3 = 5;"
         "*(u64 *)(r10 -16) = r3;exit;r2 += r1;r0 = *(u64 *)(r2 +0);exit"),
    Case("fp_write", "r10 = 0;r0 = 0;exit"),
    Case("branch_then_error", "r2 = *(u32 *)(r1 +0);if r2 > 3 goto +2;r0 = 0;exit;"
         "r0 = *(u64 *)(r2 +0);exit"),
    Case("ptr_leak_ret", "r0 = r10;exit"),
    Case("stack_ptr_arith", "r1 = r10;r1 += -8;r2 = 5;*(u64 *)(r1 +0) = r2;r0 = *(u64 *)(r1 +0);"
         "r0 = *(u64 *)(r10 -16);r0 = *(u64 *)(r1 +8);exit"),
    Case("stack_var_off", "r2 = *(u32 *)(r1 +0);r2 &= 8;r3 = r10;r3 += -16;r3 += r2;r4 = 1;"
         "*(u64 *)(r3 +0) = r4;r0 = *(u64 *)(r10 -8);r0 = *(u64 *)(r0 +0);exit"),
    Case("atomic_add", "r1 = 1;*(u64 *)(r10 -8) = r1;lock *(u64 *)(r10 -8) += r1;"
         "r0 = *(u64 *)(r10 -8);r0 = *(u64 *)(r0 +0);exit"),
    Case("ld_abs", "r6 = r1;r0 = *(u8 *)skb[3];r0 = *(u64 *)(r0 +0);exit"),
    Case("helper_not_allowed", "r1 = r10;r1 += -8;*(u64 *)(r10 -8) = 0;r2 = 8;r3 = 0;call 4;exit"),
    Case("precise_branch", "r2 = *(u32 *)(r1 +0);r0 = 0;if r2 > 3 goto +1;r0 = 0;r0 += 1;"
         "if r2 > 7 goto +1;r0 = 0;r3 = r10;r3 = *(u64 *)(r3 +8);exit"),
    # bpf-to-bpf calls
    Case("subprog_call", "r1 = 1;call pc+2;r0 = 0;exit;r0 = r1;exit"),
    Case("subprog_error", "r1 = 1;call pc+2;r0 = *(u64 *)(r10 -8);exit;r0 = r1;"
         "r0 = *(u64 *)(r10 -600);exit"),
    # maps
    Case("map_lookup_null", MAP_LOOKUP + "if r0 == 0 goto +1;r0 = *(u64 *)(r0 +0);r0 = 0;exit",
         map_value_size=8),
    Case("map_lookup_no_null", MAP_LOOKUP + "r0 = *(u64 *)(r0 +0);exit", map_value_size=8),
    Case("map_value_oob", MAP_LOOKUP + "if r0 == 0 goto +1;r0 = *(u64 *)(r0 +8);r0 = 0;exit",
         map_value_size=8),
    # XDP packet access
    Case("xdp_ok", XDP_BOUNDS + "r0 = 2;if r1 > r3 goto +1;r0 = *(u8 *)(r2 +12);exit", XDP),
    Case("xdp_no_check", "r2 = *(u32 *)(r1 +0);r0 = *(u8 *)(r2 +0);exit", XDP),
    Case("xdp_oob", XDP_BOUNDS + "r0 = 2;if r1 > r3 goto +1;r0 = *(u8 *)(r2 +14);exit", XDP),
    Case("xdp_ret", XDP_BOUNDS + "r0 = 2;if r1 > r3 goto +2;r0 = *(u8 *)(r2 +12);exit;"
         "r0 = r2;exit", XDP),
]

ALL_CASES = {c.name for c in CASES}
# Known exact matches (kept in sync with what the counts below report). Level 2 still
# differs where the kernel prints what pybpf does not track: precision backtracking
# (``mark_precise:`` lines), 6.18's stack liveness (``(0) frame 0 insn N +live -8``) and the
# loop SCC numbers of the ``Live regs before insn:`` table.
LEVEL1_EXACT: set[str] = ALL_CASES
LEVEL2_EXACT: set[str] = {
    "alu32", "alu_chain", "bad_ctx_off", "bad_stack_write", "branch_then_error",
    "branch_unknown", "ctx_load", "div_zero", "fp_write", "ld_imm64", "mov_exit",
    "ptr_leak_ret", "r0_not_init", "read_uninit_reg", "scalar_deref", "stack_ptr_arith",
    "two_branches", "xdp_no_check", "xdp_ok", "xdp_oob", "xdp_ret",
    "atomic_add", "ld_abs", "helper_not_allowed", "subprog_call", "subprog_error",
    # since precision backtracking (mark_precise lines, P marks) and 6.18's stack liveness
    "branch_const", "ctx_spill", "precise_branch", "spill_fill", "st_mem", "stack_var_off", "var_ctx",
    "map_lookup_no_null", "map_lookup_null", "map_value_oob", "bounded_loop",
}

_TIME = re.compile(r"^verification time \d+ usec$", re.M)


def normalise(log: str, case: Case | None = None) -> str:
    """Only what must differ: the verification time (level 4) and the map addresses that
    ``rN = <map>`` ld_imm64 lines print (kernel pointers vs pybpf's)."""
    log = _TIME.sub("verification time N usec", log.rstrip("\0"))
    if case is not None and case.map_value_size:
        log = re.sub(r"^(\d+: \(18\) r\d+ = )0x[0-9a-f]+ *", r"\1MAP ", log, flags=re.M)
        # the same pointer in the level-2 "Live regs before insn:" table
        log = re.sub(r"^( +\d+: [0-9.]{10} +\(18\) r\d+ = )0x[0-9a-f]+$", r"\1MAP", log, flags=re.M)
    return log


def build(case: Case, map_fd: int) -> list[Insn]:
    insns = assemble(case.text.replace(";", "\n"), syntax="kernel")
    out = []
    for ins in insns:
        if ins.code == 0x18 and ins.imm == MAP_MARK:
            ins = Insn(0x18, ins.dst, 1, 0, map_fd)
        out.append(ins)
    return out


def kernel_log(oracle, case: Case, level: int) -> str:  # type: ignore[no-untyped-def]
    fd = -1
    if case.map_value_size:
        fd = oracle.map_create(1, 4, case.map_value_size, 16, name=b"m")
    try:
        res = oracle.prog_load(case.prog_type, encode(build(case, fd)), log_level=level,
                               log_size=1 << 20)
        if res.fd >= 0:
            oracle.close(res.fd)
        return normalise(res.log, case)
    finally:
        if fd >= 0:
            oracle.close(fd)


def pybpf_log(case: Case, level: int) -> str:
    from pybpf.kernel import Kernel
    from pybpf.program import Program

    k = Kernel()
    fd = -1
    if case.map_value_size:
        fd = k.map_create(1, 4, case.map_value_size, 16, name=b"m").fd
    try:
        prog = Program.load(k, case.prog_type, build(case, fd), log_level=level,
                            log_size=1 << 20)
        return normalise(prog.log, case)
    except BpfError as e:
        return normalise(e.log, case)


def matches(oracle, level: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.name for c in CASES if kernel_log(oracle, c, level) == pybpf_log(c, level)]


@pytest.mark.parametrize("level", [1, 2, 4, 5])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_log_matches_kernel(kernel, case: Case, level: int) -> None:  # type: ignore[no-untyped-def]
    want = kernel_log(kernel, case, level)
    got = pybpf_log(case, level)
    exact = {1: LEVEL1_EXACT, 2: LEVEL2_EXACT, 4: LEVEL4_EXACT, 5: LEVEL5_EXACT}[level]
    if case.name in exact:
        assert got == want
    else:
        assert got != want, f"{case.name} now matches at level {level}: add it to the table"


LEVEL4_EXACT: set[str] = ALL_CASES
LEVEL5_EXACT: set[str] = ALL_CASES


def main() -> None:
    from pybpf.testing import kernel as oracle

    ok, why = oracle.available()
    if not ok:
        sys.exit(f"live kernel unavailable: {why}")
    verbose = "-v" in sys.argv
    for level in (1, 2, 4, 5):
        names = []
        for c in CASES:
            want, got = kernel_log(oracle, c, level), pybpf_log(c, level)
            if want == got:
                names.append(c.name)
            elif verbose:
                print(f"--- {c.name} level {level}\n[kernel]\n{want}\n[pybpf]\n{got}")
        print(f"level {level}: {len(names)}/{len(CASES)} exact: {sorted(names)}")




def corpus_counts(levels: tuple[int, ...] = (1, 2)) -> None:
    """Exact-log matches on the map-free cases of the shared corpus (``--corpus``)."""
    from pybpf.isa.insn import decode
    from pybpf.testing import kernel as oracle
    from pybpf.verifier import corpus
    from pybpf.verifier.api import VerifierInput, bpf_check

    cases = [c for c in corpus.load() if not c["fixups"] and c["kernel"] is not None
             and int(c["insn_cnt"]) < 4000 and int(c["index"]) not in (809, 810)]
    total = dict.fromkeys(levels, 0)
    stats_line = re.compile(r"^processed .*$", re.M)
    for level in levels:
        same = stats = 0
        for c in cases:
            raw = bytes.fromhex(c["insns"])
            kw = dict(prog_type=int(c["prog_type"]),
                      expected_attach_type=int(c.get("expected_attach_type") or 0),
                      prog_flags=int(c["prog_flags"]))
            want = oracle.prog_load(kw["prog_type"], raw, log_level=level, log_size=1 << 24,
                                    prog_flags=kw["prog_flags"],
                                    expected_attach_type=kw["expected_attach_type"])
            if want.fd >= 0:
                oracle.close(want.fd)
            if (want.fd >= 0) != bool(c["kernel"]["accepted"]):
                continue  # needs what this plain load lacks (BTF func_info): not comparable
            total[level] += 1
            got = bpf_check(VerifierInput(insns=decode(raw), log_level=level, **kw))  # type: ignore[arg-type]
            same += normalise(want.log) == normalise(got.log)
            stats += stats_line.findall(want.log) == stats_line.findall(got.log)
        print(f"corpus level {level}: {same}/{total[level]} exact (map-free cases), "
              f"statistics line (processed/max_states_per_insn/total_states/peak_states) "
              f"{stats}/{total[level]}")


if __name__ == "__main__":
    corpus_counts() if "--corpus" in sys.argv else main()
