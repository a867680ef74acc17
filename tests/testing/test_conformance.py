"""bpf_conformance: every file of ../shared/conformance passes through the plugin's code path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.testing import shared_dir
from pybpf.testing.conformance import parse_case, run_case, run_program

_SHARED = shared_dir()
_FILES = sorted((_SHARED / "conformance").glob("*.data")) if _SHARED else []


def test_the_suite_is_present() -> None:
    if _SHARED is None:
        pytest.skip("../shared/conformance is not present beside the checkout")
    assert len(_FILES) == 225


@pytest.mark.parametrize("path", _FILES, ids=[p.stem for p in _FILES])
def test_conformance_interpreter(path: Path) -> None:
    ok, why = run_case(parse_case(path), tier="interp")
    assert ok, why


def test_parse_case_reads_every_section(tmp_path: Path) -> None:
    f = tmp_path / "x.data"
    f.write_text("# c\n-- asm\nmov %r0, %r2\nexit\n-- mem\n00 01\n02\n-- result\n0x3\n"
                 "-- raw\n0x00000000000000bf\n")
    case = parse_case(f)
    assert case.asm.splitlines() == ["mov %r0, %r2", "exit"]
    assert case.mem == b"\x00\x01\x02" and case.result == 3 and case.raw == [0xBF]


def test_a_wrong_result_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "wrong.data"
    f.write_text("-- asm\nmov %r0, 1\nexit\n-- result\n0x2\n")
    ok, why = run_case(parse_case(f))
    assert not ok and "expected 0x2" in why


def test_unwind_helper_ends_the_program() -> None:
    from pybpf.isa.insn import Insn, encode

    prog = encode([Insn(0xB7, 1, 0, 0, 0), Insn(0x85, 0, 0, 0, 5), Insn(0xB7, 0, 0, 0, 9),
                   Insn(0x95)])
    assert run_program(prog) == 0


def _plugin(args: list[str], stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybpf.cli.main", "conformance-plugin", *args],
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_plugin_protocol_over_stdin_and_argument() -> None:
    # ldxh r0, [r1]; exit — memory given as a hex argument
    proc = _plugin(["2211"], "69 10 00 00 00 00 00 00 95 00 00 00 00 00 00 00\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1122"


def test_plugin_reports_faults_and_bad_input_on_stderr() -> None:
    proc = _plugin([], "61 10 00 00 00 00 00 00 95 00 00 00 00 00 00 00\n")  # r1 = NULL
    assert proc.returncode != 0 and "fault" in proc.stderr and proc.stdout == ""
    proc = _plugin([], "zz\n")
    assert proc.returncode != 0 and "hex" in proc.stderr
    proc = _plugin([], "95 00 00\n")
    assert proc.returncode != 0 and "multiple of 8" in proc.stderr
