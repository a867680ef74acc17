"""select_runtime: bpf_prog_select_runtime's choices, fallbacks and jited info."""

from __future__ import annotations

import types
from typing import Any

import pytest

from pybpf.errors import BpfError
from pybpf.isa.insn import Insn
from pybpf.jit import JitProgram, runtime, select_runtime
from pybpf.runtime.interpreter import CompiledProgram

EXIT = Insn(0x95, 0, 0, 0, 0)
# r0 = r1 * 3 + 0x12345678 through a bpf-to-bpf call (two functions)
PROG = [Insn(0x85, 0, 1, 0, 2), Insn(0x07, 0, 0, 0, 0x12345678), EXIT,
        Insn(0xBF, 0, 1, 0, 0), Insn(0x27, 0, 0, 0, 3), EXIT]


def test_jit_disabled_selects_the_interpreter() -> None:
    sel = select_runtime(PROG, jit_enable=0)
    assert isinstance(sel.runner, CompiledProgram) and not sel.jited and sel.info is None
    assert sel.runner.run(5) == 15 + 0x12345678
    assert sel.jit_error == ""


def test_jit_enabled_selects_native_code_with_jited_info() -> None:
    sel = select_runtime(PROG, jit_enable=1, linfo_insn_offs=[0, 1, 3, 4])
    assert isinstance(sel.runner, JitProgram) and sel.jited and not sel.blinded
    assert sel.runner.run(5) == 15 + 0x12345678
    info = sel.info
    assert info is not None
    assert info.jited_prog_len == sum(info.jited_func_lens) == len(info.jited_prog_insns)
    assert info.nr_jited_ksyms == info.nr_jited_func_lens >= 1
    assert len(info.jited_line_info) == 4
    ranges = list(zip(info.jited_ksyms, info.jited_func_lens, strict=True))
    for addr in info.jited_line_info:
        assert any(lo <= addr < lo + n for lo, n in ranges)
    assert sel.xlated == PROG


@pytest.mark.parametrize(("harden", "privileged", "blinded"),
                         [(0, False, False), (1, True, False), (1, False, True),
                          (2, True, True)])
def test_harden_blinds_constants(harden: int, privileged: bool, blinded: bool) -> None:
    sel = select_runtime(PROG, jit_enable=1, harden=harden, privileged=privileged)
    assert sel.blinded is blinded
    assert sel.runner.run(7) == 21 + 0x12345678
    if blinded:  # the xlated program is the blinded one, with BPF_REG_AX (r11)
        assert sel.xlated != PROG and any(11 in (i.dst, i.src) for i in sel.xlated)
        assert all(i.imm != 0x12345678 for i in sel.xlated)
    else:
        assert sel.xlated == PROG


def _failing_jit(exc: Exception) -> Any:
    def compile_program(*args: Any, **kw: Any) -> Any:
        raise exc

    return types.SimpleNamespace(compile_program=compile_program)


def test_failed_jit_falls_back_to_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_load_jit", lambda: _failing_jit(RuntimeError("boom")))
    sel = select_runtime(PROG, jit_enable=1)
    assert isinstance(sel.runner, CompiledProgram) and not sel.jited and sel.info is None
    assert "boom" in sel.jit_error
    assert sel.runner.run(1) == 3 + 0x12345678


def test_missing_llvmlite_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_llvmlite() -> Any:
        raise ImportError("No module named 'llvmlite'")

    monkeypatch.setattr(runtime, "_load_jit", no_llvmlite)
    sel = select_runtime(PROG, jit_enable=1)
    assert not sel.jited and "llvmlite" in sel.jit_error


def test_jit_always_on_fails_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_load_jit", lambda: _failing_jit(RuntimeError("boom")))
    with pytest.raises(BpfError) as exc:
        select_runtime(PROG, jit_enable=1, jit_always_on=True)
    assert exc.value.errno == runtime.ENOTSUPP
