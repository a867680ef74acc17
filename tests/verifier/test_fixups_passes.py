"""Post-verification passes: ProgPatcher.remove, dead code, do_misc_fixups rewrites.

Each rewrite is checked for its shape (what ``bpftool prog dump xlated`` would show) and
for running the same as the program it replaced (the checked interpreter runs the
xlated program; the internal call targets are in the instance's helper table).
"""

from __future__ import annotations

from typing import Any

import pytest

import pybpf.uapi as U
from pybpf.helpers.internal import HTAB_MAP_LOOKUP_ELEM, map_op_call_id, xlated_call_name
from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn
from pybpf.kernel import Kernel
from pybpf.maps.api import Map
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.verifier.api import VerifierInput, bpf_check
from pybpf.verifier.patch import ProgPatcher

XDP, SOCKET_FILTER = 6, 1
JA, EXIT, MOV = 0x05, 0x95, 0xB7


def check(text: str, maps: dict[int, Any] | None = None, **kw: Any) -> list[Insn]:
    inp = VerifierInput(insns=assemble(text), prog_type=kw.pop("prog_type", XDP),
                        map_by_fd=(maps or {}).get, **kw)
    res = bpf_check(inp)
    assert res.errno == 0, res.log
    return res.insns


def run(insns: list[Insn]) -> int:
    return CompiledProgram(insns, helpers=Kernel().helpers.impls()).run()


# ----------------------------------------------------------------------- remove


def test_remove_shrinks_jumps_across_the_hole() -> None:
    p = ProgPatcher([Insn(0x15, 1, 0, 3, 0), Insn(MOV, 0, 0, 0, 1), Insn(MOV, 0, 0, 0, 2),
                     Insn(MOV, 0, 0, 0, 3), Insn(EXIT)], subprog_starts=[0, 5],
                    linfo_offs=[0, 2, 4])
    p.remove(1, 2)
    assert p.insns[0].off == 1 and p.insns[1].imm == 3
    assert p.subprog_starts == [0, 3]
    assert p.linfo_offs == [0, 1, 2]
    assert len(p.aux) == 3


def test_remove_backward_jump_from_after_the_hole() -> None:
    p = ProgPatcher([Insn(MOV, 0, 0, 0, 0), Insn(MOV, 0, 0, 0, 1), Insn(MOV, 0, 0, 0, 2),
                     Insn(0x25, 0, 0, -4, 5), Insn(EXIT)])
    p.remove(1, 2)
    assert p.insns[1].off == -2  # still lands on slot 0


def test_remove_out_of_range_is_an_error() -> None:
    p = ProgPatcher([Insn(EXIT)])
    with pytest.raises(ValueError):
        p.remove(0, 2)


# ----------------------------------------------------------------------- dead code


DEAD = """
r0 = 0
if r0 == 0 goto +2
r0 = 1
r0 += 2
exit
"""


def test_dead_branch_removed_for_privileged_load() -> None:
    insns = check(DEAD)
    assert [(i.code, i.imm) for i in insns] == [(MOV, 0), (EXIT, 0)]
    assert run(insns) == 0


def test_dead_code_sanitized_for_unprivileged_load() -> None:
    insns = check(DEAD, prog_type=SOCKET_FILTER, bpf_capable=False, perfmon_capable=False)
    assert len(insns) == 5
    assert insns[2] == Insn(JA, 0, 0, -1, 0) and insns[3] == Insn(JA, 0, 0, -1, 0)
    assert run(insns) == 0


def test_nop_goto_removed() -> None:
    insns = check("r0 = 3\ngoto +0\nexit\n")
    assert [i.code for i in insns] == [MOV, EXIT]


# ----------------------------------------------------------------------- div / mod


@pytest.mark.parametrize("op,expect", [("/=", 0), ("%=", 7)])
@pytest.mark.parametrize("width", ["r", "w"])
def test_div_mod_by_zero_register_guarded(op: str, width: str, expect: int) -> None:
    insns = check(f"r0 = 7\nr1 = 0\n{width}0 {op} {width}1\nexit\n")
    assert any(i.code in (0x55, 0x56, 0x15, 0x16) and i.dst == 1 for i in insns)
    assert run(insns) == expect


@pytest.mark.parametrize("op,expect", [("s/=", 0), ("s%=", 7)])
def test_signed_div_mod_by_zero_register(op: str, expect: int) -> None:
    insns = check(f"r0 = 7\nr1 = 0\nr0 {op} r1\nexit\n")
    assert any(i.dst == 11 for i in insns)  # BPF_REG_AX carries the check
    assert run(insns) == expect


def test_sdiv_by_constant_minus_one_becomes_neg() -> None:
    insns = check("r0 = 5\nr0 s/= -1\nexit\n")
    assert insns[1] == Insn(0x87, 0, 0, 0, 0)
    assert run(insns) == (-5) & ((1 << 64) - 1)


# ----------------------------------------------------------------------- maps

LOOKUP = """
*(u32 *)(r10 - 4) = {key}
r2 = r10
r2 += -4
r1 = map[id:100]
call 1
if r0 == 0 goto +2
r0 = *(u64 *)(r0 + 0)
exit
r0 = 99
exit
"""


def test_array_lookup_inlined_and_runs() -> None:
    m = Map.create(U.BPF_MAP_TYPE_ARRAY, 4, 8, 4)
    m[2] = 1234
    insns = check(LOOKUP.format(key=2), {100: m.bmap})
    assert not any(i.code == 0x85 for i in insns)
    assert any(i.code == 0x07 and i.dst == 1 and i.imm == 312 for i in insns)
    assert run(insns) == 1234
    assert run(check(LOOKUP.format(key=4), {100: m.bmap})) == 99


def test_hash_lookup_calls_internal_target_and_runs() -> None:
    m = Map.create(U.BPF_MAP_TYPE_HASH, 4, 8, 4)
    m[3] = 777
    insns = check(LOOKUP.format(key=3), {100: m.bmap})
    calls = [i for i in insns if i.code == 0x85]
    assert [c.imm for c in calls] == [HTAB_MAP_LOOKUP_ELEM]
    assert xlated_call_name(HTAB_MAP_LOOKUP_ELEM) == "__htab_map_lookup_elem"
    assert any(i.code == 0x07 and i.dst == 0 and i.imm == 56 for i in insns)
    assert run(insns) == 777
    assert run(check(LOOKUP.format(key=5), {100: m.bmap})) == 99


def test_map_update_becomes_direct_call_and_runs() -> None:
    m = Map.create(U.BPF_MAP_TYPE_HASH, 4, 8, 4)
    insns = check("""
        *(u32 *)(r10 - 4) = 9
        *(u64 *)(r10 - 16) = 42
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 0
        r1 = map[id:100]
        call 2
        exit
    """, {100: m.bmap})
    call = next(i for i in insns if i.code == 0x85)
    assert call.imm == map_op_call_id(U.BPF_MAP_TYPE_HASH, 2)
    assert xlated_call_name(call.imm) == "htab_map_update_elem"
    assert run(insns) == 0 and m[9] == 42


def test_user_program_cannot_name_an_internal_target() -> None:
    inp = VerifierInput(insns=assemble(f"call {HTAB_MAP_LOOKUP_ELEM}\nexit\n"), prog_type=XDP)
    res = bpf_check(inp)
    assert res.errno != 0 and "invalid func" in res.log + res.extra.get("error_line", "")


def test_helper_names_follow_program_type() -> None:
    assert xlated_call_name(7) == "bpf_user_rnd_u32"
    assert xlated_call_name(84, 3) == "bpf_tc_sk_lookup_tcp"
    assert xlated_call_name(84, 14) == "bpf_sk_lookup_tcp"
    assert xlated_call_name(25, 6) == "bpf_xdp_event_output"
