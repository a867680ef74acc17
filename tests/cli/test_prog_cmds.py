"""``pybpf prog load|loadall|dump xlated`` against bpftool on the live kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from pybpf.cli.main import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BPFFS = Path("/sys/fs/bpf")


@pytest.fixture
def pin_dir(kernel: ModuleType) -> Path:
    if not BPFFS.is_dir() or shutil.which("bpftool") is None:
        pytest.skip("no bpffs or bpftool")
    d = BPFFS / f"pybpf_cli_{os.getpid()}"
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


@pytest.mark.parametrize("flags", [(), ("linum",), ("opcodes",)])
def test_dump_xlated_matches_bpftool(pin_dir: Path, flags: tuple[str, ...]) -> None:
    """xdp_firewall: helper calls, map ids, BTF signatures and source lines."""
    r = CliRunner().invoke(cli, ["prog", "loadall", str(EXAMPLES / "xdp_firewall.o"),
                                 str(pin_dir), "--live"])
    assert r.exit_code == 0, r.output
    pinned = pin_dir / "xdp_firewall"
    assert pinned.exists()
    ours = CliRunner().invoke(cli, ["prog", "dump", "xlated", "pinned", str(pinned),
                                    *flags, "--live"])
    assert ours.exit_code == 0, ours.output
    theirs = subprocess.run(["bpftool", "prog", "dump", "xlated", "pinned", str(pinned),
                             *flags], capture_output=True, text=True, check=True).stdout
    assert ours.output == theirs


def test_prog_load_pins_first_program(pin_dir: Path) -> None:
    pin_dir.mkdir()
    path = pin_dir / "counter"
    r = CliRunner().invoke(cli, ["prog", "load", str(EXAMPLES / "xdp_counter.o"), str(path),
                                 "--live"])
    assert r.exit_code == 0, r.output
    show = subprocess.run(["bpftool", "prog", "show", "pinned", str(path)],
                          capture_output=True, text=True, check=True).stdout
    assert "xdp  name xdp_count" in show


def test_errors_are_messages(tmp_path: Path) -> None:
    bad = tmp_path / "bad.o"
    bad.write_bytes(b"\x7fELFnonsense")
    r = CliRunner().invoke(cli, ["prog", "load", str(bad)])
    assert r.exit_code == 1 and "failed to" in r.output
    r = CliRunner().invoke(cli, ["prog", "dump", "xlated", "bogus", "1"])
    assert r.exit_code == 2
