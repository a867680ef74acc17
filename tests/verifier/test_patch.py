"""ProgPatcher: the kernel's bpf_patch_insn_data bookkeeping."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.isa.insn import Insn
from pybpf.verifier.patch import PatchError, ProgPatcher

MOV = 0xB7  # r = imm
JA = 0x05
JEQ = 0x15
CALL = 0x85
EXIT = 0x95


def _mov(imm: int) -> Insn:
    return Insn(MOV, 0, 0, 0, imm)


def test_branches_crossing_the_patch_move_and_those_inside_do_not() -> None:
    insns = [
        Insn(JEQ, 1, 0, 3, 0),    # 0: -> 4 (crosses 2)
        Insn(JEQ, 1, 0, 1, 0),    # 1: -> 3 (crosses 2)
        _mov(7),                  # 2: patched into 3 insns
        Insn(JA, 0, 0, -3, 0),    # 3: -> 1 (crosses back)
        Insn(JA, 0, 0, -3, 0),    # 4: -> 2 (targets the patched insn)
        Insn(EXIT),               # 5
    ]
    p = ProgPatcher(insns)
    p.patch(2, [_mov(1), Insn(JA, 0, 0, 0, 0), _mov(2)])
    assert [i.off for i in p.insns] == [5, 3, 0, 0, 0, -5, -5, 0]
    # targets: 0 -> 6 (was 4), 1 -> 5 (was 3), 5 -> 1, 6 -> 2 (start of the patch)
    assert 0 + 5 + 1 == 6 and 1 + 3 + 1 == 5 and 5 - 5 + 1 == 1 and 6 - 5 + 1 == 2


def test_calls_subprogs_linfo_and_aux_follow() -> None:
    insns = [
        Insn(CALL, 0, 1, 0, 3),   # 0: call pc 4
        _mov(0),                  # 1: patched
        Insn(EXIT),               # 2
        Insn(EXIT),               # 3 (padding, not a target)
        _mov(5),                  # 4: subprog
        Insn(EXIT),               # 5
    ]
    aux = [{"n": i} for i in range(len(insns))]
    p = ProgPatcher(insns, aux, subprog_starts=[0, 4, 6], linfo_offs=[0, 1, 2, 4])
    p.patch(1, [_mov(1), _mov(2), _mov(3)])
    assert p.insns[0].imm == 5
    assert p.subprog_starts == [0, 6, 8]
    assert p.linfo_offs == [0, 1, 4, 6]  # a record at the patched insn itself stays
    assert [a.get("n") for a in p.aux] == [0, None, None, 1, 2, 3, 4, 5]
    assert p.aux[1]["orig_idx"] == 1 and p.aux[2]["orig_idx"] == 1


def test_one_for_one_patch_touches_nothing_else() -> None:
    p = ProgPatcher([_mov(1), Insn(EXIT)], subprog_starts=[0, 2], linfo_offs=[0, 1])
    p.patch(0, [_mov(9)])
    assert p.insns == [_mov(9), Insn(EXIT)]
    assert p.subprog_starts == [0, 2] and p.linfo_offs == [0, 1]


def test_sixteen_bit_overflow_is_refused_like_the_kernel() -> None:
    n = 32760
    insns = [Insn(JA, 0, 0, n - 1, 0)] + [_mov(0)] * (n - 1) + [Insn(EXIT)]
    p = ProgPatcher(insns)
    with pytest.raises(PatchError) as e:
        p.patch(5, [_mov(1)] * 20)
    assert e.value.errno == errno.ERANGE
    assert e.value.message == "insn 5 cannot be patched due to 16-bit range\n"
    assert len(p.insns) == n + 1  # nothing changed


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_jump_keeps_its_target(data: st.DataObject) -> None:
    """After any sequence of patches, each original jump lands on the image of its old
    target (the first instruction of that target's replacement)."""
    n = data.draw(st.integers(4, 24))
    insns: list[Insn] = []
    for i in range(n - 1):
        if data.draw(st.booleans()):
            tgt = data.draw(st.integers(0, n - 1))
            insns.append(Insn(JEQ, 1, 0, tgt - i - 1, i))
        else:
            insns.append(_mov(i))
    insns.append(Insn(EXIT, 0, 0, 0, n - 1))
    start = list(range(n))  # original index -> current index of its first slot
    p = ProgPatcher(insns)
    for _ in range(data.draw(st.integers(1, 5))):
        orig = data.draw(st.sampled_from([k for k in range(n) if insns[k].code != JEQ]))
        at = start[orig]
        grow = data.draw(st.integers(1, 4))
        p.patch(at, [_mov(-1)] * (grow - 1) + [p.insns[at]])
        for k in range(n):
            if start[k] > at:
                start[k] += grow - 1
    for cur, ins in enumerate(p.insns):
        if ins.code == JEQ:
            orig_src, orig_tgt = ins.imm, ins.imm + insns[ins.imm].off + 1
            assert cur + ins.off + 1 == start[orig_tgt], (orig_src, orig_tgt)


def test_prologue_jumps_to_the_start_skip_it() -> None:
    """``adjust_jmp_off``: a loop back to insn 0 lands on the original first insn."""
    insns = [_mov(0), Insn(JEQ, 0, 0, -2, 0), Insn(EXIT)]
    p = ProgPatcher(insns)
    p.patch(0, [_mov(7), _mov(8), insns[0]])
    p.adjust_jmp_off(0, 2)
    assert 3 + p.insns[3].off + 1 == 2


def test_remove_drops_line_info_of_removed_insns_like_the_kernel() -> None:
    """``bpf_adj_linfo_after_remove``: records in the hole go; the first live instruction
    inherits the last removed record when it has none of its own."""
    insns = [_mov(i) for i in range(8)] + [Insn(EXIT)]
    p = ProgPatcher(insns, linfo_offs=[0, 2, 3, 6])
    p.remove(2, 3)  # slots 2..4 go; slot 5 had no record: it inherits record #2 (off 3)
    assert p.linfo_offs == [0, 2, 3] and p.linfo_ids == [0, 2, 3]
    q = ProgPatcher(insns, linfo_offs=[0, 2, 3, 5])
    q.remove(2, 3)  # slot 5 has its own record: records #1 and #2 both go
    assert q.linfo_offs == [0, 2] and q.linfo_ids == [0, 3]


def test_remove_of_a_whole_subprogram_drops_it() -> None:
    insns = [_mov(0), Insn(EXIT), _mov(1), Insn(EXIT), _mov(2), Insn(EXIT)]
    p = ProgPatcher(insns, subprog_starts=[0, 2, 4, 6])
    p.remove(2, 2)
    assert p.subprog_starts == [0, 2, 4] and p.subprog_ids == [0, 2, 3]
