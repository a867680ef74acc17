"""Modern clang-built programs (``tests/verifier/objects/``: tp_btf with BTF pointer walks,
a task iterator, task kfuncs and RCU sections, dynptrs over ring buffers) loaded by libbpf
into the live kernel (``bpftool prog loadall``) and by ``pybpf.load``: every program must
get the same verdict, the same ``verified_insns`` and the same xlated program."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import pybpf
from pybpf.kernel import Kernel

OBJECTS = Path(__file__).parent / "objects"
ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import xlated_agreement  # noqa: E402  (the xlated renderers shared with that tool)


def _bpftool(*args: str) -> Any:
    out = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, check=False,
                         timeout=60)
    if out.returncode:
        raise RuntimeError(out.stderr.strip() or out.stdout.strip())
    return json.loads(out.stdout) if out.stdout.strip() else None


@pytest.fixture(scope="module")
def bpftool(kernel: ModuleType) -> None:
    if shutil.which("bpftool") is None or not os.path.isdir("/sys/fs/bpf"):
        pytest.skip("bpftool or /sys/fs/bpf unavailable: libbpf's side cannot be loaded")


def _live_verified(oracle: ModuleType, path: Path) -> dict[str, int]:
    """``verified_insns`` of every program libbpf loads from ``path`` (by 15-char name)."""
    pin = f"/sys/fs/bpf/pybpf_objects_{os.getpid()}_{path.stem}"
    out = {}
    try:
        _bpftool("prog", "loadall", str(path), pin)
        for entry in sorted(os.listdir(pin)):
            fd = oracle.obj_get(f"{pin}/{entry}")
            try:
                info = oracle.prog_info(fd)
                out[info.name.decode()] = info.verified_insns
            finally:
                oracle.close(fd)
    finally:
        shutil.rmtree(pin, ignore_errors=True)
    return out


def _pybpf_verified(path: Path) -> dict[str, int]:
    out = {}
    with pybpf.load(str(path), kernel=Kernel()) as obj:
        for p in obj.progs:
            bp = xlated_agreement._bpf_prog(p)
            out[p.name[:15]] = bp.verified_insns
    return out


OBJS = sorted(p.name for p in OBJECTS.glob("*.o"))


@pytest.mark.parametrize("name", OBJS)
def test_object_loads_as_in_the_kernel(kernel: ModuleType, bpftool: None, name: str) -> None:
    path = OBJECTS / name
    want = _live_verified(kernel, path)
    assert want, f"libbpf loaded nothing from {name}"
    assert _pybpf_verified(path) == want


@pytest.mark.parametrize("name", OBJS)
def test_object_xlated_matches_kernel(bpftool: None, name: str) -> None:
    outs = xlated_agreement.object_programs(OBJECTS / name)
    assert outs
    for o in outs:
        assert o.kernel is not None and o.ours is not None, o
        assert o.ours == o.kernel, o.name


def test_objects_are_built_from_their_sources() -> None:
    """Every shipped object has its C source (the Makefile rebuilds them)."""
    for o in OBJECTS.glob("*.o"):
        assert o.with_suffix(".c").exists()
