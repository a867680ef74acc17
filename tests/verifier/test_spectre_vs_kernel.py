"""Spectre mitigations of unprivileged programs against the live 6.18 kernel
(``verifier/spectre.py``): the ``BPF_REG_AX`` masking of pointer arithmetic
(``alu_state``/``alu_limit``), ``sanitize_ptr_alu``'s refusals, speculative paths
(``sanitize_speculative_path``, the truncated offset), ``nospec`` before what a speculative
path cannot run and after Spectre v4 stores, and ``explore_alu_limits`` pruning.

The kernel side loads each program from a capability-less child
(``pybpf.testing.unpriv_kernel``: ``kernel.unprivileged_bpf_disabled`` is lowered for the
duration and always restored) and root dumps the xlated program. Verdict, errno, the whole
level-2 log (``processed`` line included) and the xlated program must agree; the
rewritten programs must also compute the same results on both tiers.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pybpf.helpers.maps import MAP_HELPERS
from pybpf.isa.insn import Insn, encode, ld_imm64
from pybpf.jit import compile_program
from pybpf.maps.api import create_map
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.testing.xlated import comparable
from pybpf.verifier.api import VerifierInput, bpf_check

SOCKET_FILTER, ARRAY = 1, 2
FD = 100
EXIT = Insn(0x95, 0, 0, 0, 0)
MOV3 = Insn(0xB7, 3, 0, 0, 0)
HELPERS = {fid: proto.impl for fid, proto in MAP_HELPERS.items()}


def lookup(fd: int) -> list[Insn]:
    """``r0 = lookup(array, &0)``; ``exit`` when NULL (value size 48)."""
    return [Insn(0x7A, 10, 0, -8, 0), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -8),
            *ld_imm64(1, fd, 1), Insn(0x85, 0, 0, 0, 1), Insn(0x55, 0, 0, 1, 0), EXIT]


def byte0_masked(mask: int) -> list[Insn]:
    """``r1 = *(u8 *)(r0 + 0) & mask``."""
    return [Insn(0x71, 1, 0, 0, 0), Insn(0x57, 1, 0, 0, mask)]


def alu_limits(k: int, second_mask: int) -> Callable[[int], list[Insn]]:
    """Two paths reach ``r0 += r1`` with r1 in [0, 7] and [0, second_mask]: once a register
    offset was masked, pruning needs equal scalars (``explore_alu_limits``), so a narrower
    second path is explored and refused for its different ``alu_limit``."""
    def prog(fd: int) -> list[Insn]:
        return [*lookup(fd),
            Insn(0x71, 1, 0, 0, 0), Insn(0x71, 2, 0, 1, 0), Insn(0x71, 4, 0, 2, 0),
            Insn(0x15, 4, 0, 0, 0), Insn(0x15, 4, 0, 0, 0), *[MOV3] * k, Insn(0x15, 2, 0, 2, 0),
            Insn(0x57, 1, 0, 0, 7), Insn(0x05, 0, 0, 1, 0), Insn(0x57, 1, 0, 0, second_mask),
            *[MOV3] * k, Insn(0x0F, 0, 1, 0, 0), Insn(0x71, 0, 0, 0, 0), EXIT]
    return prog


PROGS: dict[str, Callable[[int], list[Insn]]] = {
    # map value pointer +/- a bounded register: the masking sequence (alu_limit 7)
    "ptr += reg": lambda fd: [*lookup(fd), *byte0_masked(7),
        Insn(0x0F, 0, 1, 0, 0), Insn(0x71, 0, 0, 0, 0), EXIT],
    "reg += ptr": lambda fd: [*lookup(fd), *byte0_masked(7),
        Insn(0x0F, 1, 0, 0, 0), Insn(0x71, 0, 1, 0, 0), EXIT],
    "ptr -= reg": lambda fd: [*lookup(fd), *byte0_masked(7),
        Insn(0x07, 0, 0, 0, 16), Insn(0x1F, 0, 1, 0, 0), Insn(0x71, 0, 0, 0, 0), EXIT],
    "ptr += negative reg": lambda fd: [*lookup(fd), *byte0_masked(7),
        Insn(0x87, 1, 0, 0, 0), Insn(0x07, 0, 0, 0, 16), Insn(0x0F, 0, 1, 0, 0),
        Insn(0x71, 0, 0, 0, 0), EXIT],
    "negative reg += ptr": lambda fd: [*lookup(fd), *byte0_masked(7),
        Insn(0x87, 1, 0, 0, 0), Insn(0x07, 0, 0, 0, 16), Insn(0x0F, 1, 0, 0, 0),
        Insn(0x71, 0, 1, 0, 0), EXIT],
    "ptr -= negative reg": lambda fd: [*lookup(fd), *byte0_masked(7),
        Insn(0x87, 1, 0, 0, 0), Insn(0x1F, 0, 1, 0, 0), Insn(0x71, 0, 0, 0, 0), EXIT],
    # constant register offsets: BPF_ALU_IMMEDIATE, AX = the constant's magnitude
    "ptr += const reg": lambda fd: [*lookup(fd),
        Insn(0xB7, 1, 0, 0, 4), Insn(0x0F, 0, 1, 0, 0), Insn(0x71, 0, 0, 0, 0), EXIT],
    "ptr += negative const reg": lambda fd: [*lookup(fd),
        Insn(0x07, 0, 0, 0, 16), Insn(0xB7, 1, 0, 0, -4), Insn(0x0F, 0, 1, 0, 0),
        Insn(0x71, 0, 0, 0, 0), EXIT],
    "ptr -= const reg": lambda fd: [*lookup(fd),
        Insn(0x07, 0, 0, 0, 16), Insn(0xB7, 1, 0, 0, 4), Insn(0x1F, 0, 1, 0, 0),
        Insn(0x71, 0, 0, 0, 0), EXIT],
    "stack += const reg": lambda fd: [
        Insn(0x7A, 10, 0, -8, 0), Insn(0xBF, 2, 10, 0, 0), Insn(0xB7, 1, 0, 0, -8),
        Insn(0x0F, 2, 1, 0, 0), Insn(0x79, 0, 2, 0, 0), EXIT],
    # refusals: mixed signs, paths with different limits, pointer on one path and scalar on
    # another
    "mixed-sign offset": lambda fd: [*lookup(fd),
        Insn(0x71, 1, 0, 0, 0), Insn(0x07, 1, 0, 0, -3), Insn(0x0F, 0, 1, 0, 0),
        Insn(0x71, 0, 0, 0, 0), EXIT],
    "same limit on two paths": lambda fd: [*lookup(fd), *byte0_masked(7),
        Insn(0x71, 2, 0, 1, 0), Insn(0x15, 2, 0, 1, 0), Insn(0x07, 0, 0, 0, 8),
        Insn(0x0F, 0, 1, 0, 0), Insn(0x71, 0, 0, 0, 0), EXIT],
    "pointer and scalar paths": lambda fd: [*lookup(fd), *byte0_masked(7),
        Insn(0x71, 2, 0, 1, 0), Insn(0xBF, 3, 0, 0, 0), Insn(0x15, 2, 0, 1, 0),
        Insn(0xB7, 3, 0, 0, 1), Insn(0x0F, 3, 1, 0, 0), Insn(0xB7, 0, 0, 0, 0), EXIT],
    "explore_alu_limits, narrower": alu_limits(0, 3),
    "explore_alu_limits, longer": alu_limits(6, 3),
    "explore_alu_limits, equal": alu_limits(0, 7),
    # Spectre v4: nospec after pointer spills and stores over non-data slots
    "pointer spill": lambda fd: [
        Insn(0x7B, 10, 1, -8, 0), Insn(0x79, 0, 10, -8, 0), Insn(0xB7, 0, 0, 0, 0), EXIT],
    "scalar stores": lambda fd: [
        Insn(0xB7, 0, 0, 0, 1), Insn(0x7B, 10, 0, -8, 0), Insn(0x7B, 10, 0, -8, 0),
        Insn(0x79, 0, 10, -8, 0), EXIT],
    # decided branches: the other side runs speculatively; a recoverable error there gets a
    # nospec (and sanitize_dead_code's goto pc-1), an unrecoverable one... stays one
    "speculative ctx read": lambda fd: [
        Insn(0xB7, 0, 0, 0, 0), Insn(0x15, 0, 0, 1, 0), Insn(0x79, 0, 1, 0, 0),
        Insn(0xB7, 0, 0, 0, 0), EXIT],
    "real ctx read after decided branch": lambda fd: [
        Insn(0xB7, 0, 0, 0, 1), Insn(0x15, 0, 0, 1, 0), Insn(0xB7, 0, 0, 0, 2),
        Insn(0x79, 0, 1, 0, 0), Insn(0xB7, 0, 0, 0, 0), EXIT],
    "speculative path ends after a spill": lambda fd: [
        Insn(0xB7, 0, 0, 0, 0), Insn(0x15, 0, 0, 2, 0), Insn(0x7B, 10, 1, -8, 0),
        Insn(0x79, 0, 1, 0, 0), Insn(0xB7, 0, 0, 0, 0), EXIT],
    "null check of a non-null pointer": lambda fd: [*lookup(fd),
        Insn(0x55, 0, 0, 1, 0), Insn(0x79, 0, 0, 0, 0), Insn(0xB7, 0, 0, 0, 0), EXIT],
    "pointer comparison": lambda fd: [
        Insn(0xBF, 2, 10, 0, 0), Insn(0x5D, 2, 10, 1, 0), Insn(0x79, 0, 1, 0, 0),
        Insn(0xB7, 0, 0, 0, 0), EXIT],
}


def _unpriv() -> ModuleType:
    from pybpf.testing import unpriv_kernel

    ok, why = unpriv_kernel.available()
    if not ok:
        pytest.skip(why)
    return unpriv_kernel


@pytest.fixture(scope="module", params=[2, 1], ids=["log2", "log1"])
def live(request: pytest.FixtureRequest) -> tuple[int, dict[str, Any]]:
    """Every program of PROGS loaded unprivileged in the live kernel (one child), with a
    level-2 log, then a level-1 one (where a finished speculative path's lines go)."""
    from pybpf.testing import kernel as K

    ok, why = K.available()
    if not ok:
        pytest.skip(why)
    uk = _unpriv()
    with K.KernelFds() as fds:
        mfd = fds.add(K.map_create(ARRAY, 4, 48, 1))
        res = uk.load_unprivileged([uk.UnprivJob(SOCKET_FILTER, encode(p(mfd)),
                                                 log_level=request.param)
                                    for p in PROGS.values()])
    return request.param, dict(zip(PROGS, res))


def ours(prog: Callable[[int], list[Insn]], log_level: int = 2, m: Any = None) -> Any:
    m = m if m is not None else create_map(ARRAY, 4, 48, 1)
    return bpf_check(VerifierInput(insns=prog(FD), prog_type=SOCKET_FILTER,
                                   map_by_fd={FD: m}.get, log_level=log_level,
                                   bpf_capable=False, perfmon_capable=False, net_admin=False))


def _log(text: str) -> list[str]:
    # unprivileged logs keep the precision marks of every unknown scalar
    # (``__mark_reg_unknown``: precise = !bpf_capable) and so propagate them after pruning;
    # pybpf prints neither (docs/verifier.md)
    return [ln for ln in re.sub(r"=P(-?\d|scalar)", r"=\1", text).splitlines()
            if not _PROPAGATING.match(ln)]


_PROPAGATING = re.compile(r"^frame \d+: propagating r\d+$")


@pytest.mark.parametrize("name", list(PROGS))
def test_unprivileged_program_matches_kernel(live: tuple[int, dict[str, Any]],
                                             name: str) -> None:
    level, results = live
    want = results[name]
    got = ours(PROGS[name], level)
    assert (got.errno == 0) == want.ok, (got.log, want.log)
    if not want.ok:
        assert got.errno == want.errno
    else:
        assert comparable(got.insns) == comparable(want.xlated)
    assert _log(got.log) == _log(want.log)


def test_masking_is_the_kernels_sequence() -> None:
    """A fixed expectation (no kernel needed): ``r0 += r1`` with r1 in [0, 7]."""
    got = ours(PROGS["ptr += reg"])
    assert got.errno == 0, got.log
    tail = [(i.code, i.dst, i.src, i.off, i.imm) for i in got.insns][-9:]
    assert tail == [(0xB4, 11, 0, 0, 7), (0x1F, 11, 1, 0, 0), (0x4F, 11, 1, 0, 0),
                    (0x87, 11, 0, 0, 0), (0xC7, 11, 0, 0, 63), (0x5F, 11, 1, 0, 0),
                    (0x0F, 0, 11, 0, 0), (0x71, 0, 0, 0, 0), (0x95, 0, 0, 0, 0)]
    assert (0xC2, 0, 0, 0, 0) in [(i.code, i.dst, i.src, i.off, i.imm) for i in got.insns]


def test_privileged_programs_are_not_masked() -> None:
    m = create_map(ARRAY, 4, 48, 1)
    got = bpf_check(VerifierInput(insns=PROGS["ptr += reg"](FD), prog_type=SOCKET_FILTER,
                                  map_by_fd={FD: m}.get))
    assert got.errno == 0
    assert not any(i.code == 0xC2 or 11 in (i.dst, i.src) for i in got.insns)


def _masked(kind: str) -> Callable[[int], list[Insn]]:
    """``return *(u8 *)(value + 16 <op> off)`` with ``off = value[0] & 7`` (``add``,
    ``radd``: ``off += ptr``; a variable ``ptr -= off`` is refused unprivileged) or the constants ``-4``/``4`` (``addk``/``subk``)."""
    body = {"add": [*byte0_masked(7), Insn(0x07, 0, 0, 0, 16), Insn(0x0F, 0, 1, 0, 0)],
            "radd": [*byte0_masked(7), Insn(0x07, 0, 0, 0, 16), Insn(0x0F, 1, 0, 0, 0),
                                       Insn(0xBF, 0, 1, 0, 0)],
            "addk": [Insn(0x07, 0, 0, 0, 16), Insn(0xB7, 1, 0, 0, -4), Insn(0x0F, 0, 1, 0, 0)],
            "subk": [Insn(0x07, 0, 0, 0, 16), Insn(0xB7, 1, 0, 0, 4), Insn(0x1F, 0, 1, 0, 0)]}
    return lambda fd: [*lookup(fd), *body[kind], Insn(0x71, 0, 0, 0, 0), EXIT]


@pytest.mark.parametrize("tier", ["interp", "jit"])
@pytest.mark.parametrize("kind", ["add", "radd", "addk", "subk"])
@pytest.mark.parametrize("first", [0, 3, 7, 0xFF])
def test_masked_programs_run_on_both_tiers(tier: str, kind: str, first: int) -> None:
    """The AX masking and nospec execute: an offset within the limit is kept."""
    m = create_map(ARRAY, 4, 48, 1)
    value = bytes([first]) + bytes(range(1, 48))
    m.ops.sys_update(m, (0).to_bytes(4, "little"), value, 0)
    got = ours(_masked(kind), 0, m)
    assert got.errno == 0, got.log
    assert any(i.dst == 11 for i in got.insns) and any(i.code == 0xC2 for i in got.insns)
    prog = (CompiledProgram(got.insns, helpers=HELPERS) if tier == "interp"
            else compile_program(got.insns, helpers=HELPERS))
    idx = {"add": 16 + (first & 7), "radd": 16 + (first & 7),
           "addk": 12, "subk": 12}[kind]
    assert prog.run() == value[idx]


TOOL = Path(__file__).parents[2] / "tools" / "xlated_agreement.py"


def test_unprivileged_corpus_xlated_matches_kernel() -> None:
    """``python tools/xlated_agreement.py --unpriv`` on the corpus (socket filter and
    cgroup skb cases, with their maps): verdict, errno, first message and ``processed``
    agree on every case, and every program both accept has the kernel's xlated program."""
    from pybpf.testing import kernel as K

    ok, why = K.available()
    if not ok:
        pytest.skip(why)
    _unpriv()
    spec = importlib.util.spec_from_file_location("xlated_agreement_tool", TOOL)
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool  # its dataclasses look their module up
    spec.loader.exec_module(tool)
    from pybpf.verifier import corpus

    try:
        cases = tool.unpriv_cases(corpus.load())
    except FileNotFoundError:
        pytest.skip("shared verifier corpus not found")
    outs, st = tool.unpriv_corpus(cases)
    compared = [o for o in outs if o.kernel is not None and o.ours is not None]
    assert len(compared) >= 270
    assert [o.name for o in compared if not o.equal] == []
    assert st["processed"] == st["verdict"]
    # accepting what 6.18 refuses an unprivileged user would be a hole: all must agree
    assert st["verdict"] == st["cases"], [o.skip for o in outs if o.skip.startswith("verdict")]
    assert st["message"] == st["errno"] == st["rejected"], \
        [o.skip for o in outs if o.skip.startswith("message")]
