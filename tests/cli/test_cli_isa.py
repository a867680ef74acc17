"""The ISA commands and the demo, driven through click as a user would."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pybpf.cli.main import cli
from pybpf.examples import asm_examples


def test_demo_runs_every_shipped_example_with_expected_results() -> None:
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    for ex in asm_examples():
        assert ex.name in result.output
    assert "NO" not in result.output


def test_every_example_declares_its_expected_result() -> None:
    examples = asm_examples()
    assert len(examples) >= 6
    assert all(ex.expect is not None for ex in examples)


def test_asm_disasm_run_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "p.s"
    src.write_text("r0 = 40\nr0 += 2\nexit\n")
    runner = CliRunner()
    out = runner.invoke(cli, ["asm", str(src)])
    assert out.exit_code == 0, out.output
    assert out.output.split()[:2] == ["b7", "00"]
    binary = tmp_path / "p.bin"
    assert runner.invoke(cli, ["asm", str(src), "-o", str(binary)]).exit_code == 0
    assert binary.read_bytes()[:1] == b"\xb7"
    dis = runner.invoke(cli, ["disasm", str(binary)])
    assert dis.exit_code == 0, dis.output
    assert "(b7) r0 = 40" in dis.output and "(07) r0 += 2" in dis.output
    ran = runner.invoke(cli, ["run", str(binary)])
    assert ran.exit_code == 0 and "r0 = 0x2a (42)" in ran.output


def test_bad_input_gives_a_message_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.s"
    bad.write_text("r0 = \nfrobnicate r1\n")
    runner = CliRunner()
    for args in (["asm", str(bad)], ["disasm", str(bad)], ["run", str(bad)]):
        out = runner.invoke(cli, args)
        assert out.exit_code == 1
        assert "Traceback" not in out.output and "line" in out.output
    fault = tmp_path / "fault.s"
    fault.write_text("r1 = 0\nr0 = *(u32 *)(r1 +0)\nexit\n")
    out = runner.invoke(cli, ["run", str(fault)])
    assert out.exit_code == 1 and "faulted" in out.output
