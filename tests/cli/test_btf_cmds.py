"""``pybpf btf dump file F [format c|raw]`` prints what bpftool prints."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from pybpf.cli.main import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("fmt", [(), ("format", "raw"), ("format", "c")])
def test_btf_dump_matches_bpftool(fmt: tuple[str, ...]) -> None:
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool not installed")
    path = EXAMPLES / "globals_calls.o"
    ours = CliRunner().invoke(cli, ["btf", "dump", "file", str(path), *fmt])
    assert ours.exit_code == 0, ours.output
    theirs = subprocess.run(["bpftool", "btf", "dump", "file", str(path), *fmt],
                            capture_output=True, text=True, check=True).stdout
    assert ours.output == theirs


def test_btf_dump_errors_are_messages(tmp_path: Path) -> None:
    bad = tmp_path / "bad.btf"
    bad.write_bytes(b"\x9f\xeb\x01\x00garbage")
    r = CliRunner().invoke(cli, ["btf", "dump", "file", str(bad)])
    assert r.exit_code == 1 and "failed to load BTF" in r.output
    r = CliRunner().invoke(cli, ["btf", "dump", "file", str(bad), "format", "x"])
    assert r.exit_code == 2
