"""``bpf_task_work`` against the live kernel: ``tests/verifier/task_work/task_work.o``
(clang-built) loaded program by program by pybpf's loader, in the live kernel and in
pybpf. Compared: verdict, errno, first error line, ``verified_insns``, test-run results and
what the callbacks wrote to the maps — the live kernel runs them when ``BPF_PROG_TEST_RUN``
returns to user space, pybpf when the program's outermost run ends."""

from __future__ import annotations

import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import pybpf
from pybpf.core.map import MapHandle
from pybpf.errors import BpfError
from pybpf.kernel import Kernel
from pybpf.testing.object_logs import normalize, program_logs
from pybpf.testing.verifier_diff import error_line

OBJ = Path(__file__).parent / "task_work" / "task_work.o"
PROGS = ("schedule_resume", "schedule_signal_hash", "wrong_map", "wrong_offset",
         "callback_returns_5")


def _map_values(oracle: ModuleType, side: Any, obj: Any) -> list[Any]:
    out: list[Any] = []
    for name, key in (("works", 0), ("works", 1), ("hworks", 3)):
        m = getattr(obj.maps, name)
        k = struct.pack("<I", key)
        try:
            raw = oracle.map_lookup(m.fd, k, 24) if side == "live" else \
                MapHandle(side.root, m.fd).lookup(k)
        except (OSError, BpfError):
            raw = None
        out.append(struct.unpack("<QQQ", raw) if raw is not None else None)
    return out


def _run(oracle: ModuleType, side: Any, prog: str, *, runs: int = 2) -> tuple[Any, ...]:
    obj = pybpf.open(str(OBJ), kernel=side)
    for name in PROGS:
        getattr(obj.progs, name).autoload = name == prog
    try:
        obj.load()
    except BpfError as exc:
        return (exc.errno, error_line(exc.log or ""))
    try:
        p = getattr(obj.progs, prog)
        seen = []
        for _ in range(runs):
            if side == "live":
                res = oracle.prog_test_run(p.fd, repeat=0)
                assert res.errno == 0
                retval = res.retval
            else:
                retval = p.test_run(repeat=0).retval
            seen.append((retval, _map_values(oracle, side, obj)))
        info = oracle.prog_info(p.fd) if side == "live" else p.info()
        return (0, info.verified_insns, seen)
    finally:
        obj.close()


@pytest.mark.parametrize("prog", PROGS)
def test_task_work_like_the_kernel(kernel: ModuleType, prog: str) -> None:
    want = _run(kernel, "live", prog)
    got = _run(kernel, Kernel(), prog)
    assert got == want


def test_callbacks_ran_after_each_run(kernel: ModuleType) -> None:
    """Sanity of the reference itself: the second schedule while pending is -EBUSY, the
    callback ran once per test run and saw its key."""
    _err, _insns, seen = _run(kernel, Kernel(), "schedule_resume")
    assert seen[0][0] == 0xF000  # a = 0, b = -EBUSY
    assert [s[1][1] for s in seen] == [(1, 101, 0), (2, 101, 0)]


@pytest.mark.parametrize("jit", [1, 0], ids=["jit", "interpreter"])
def test_both_tiers(jit: int) -> None:
    k = Kernel()
    k.sysctl["bpf_jit_enable"] = jit
    _err, _insns, seen = _run(pybpf.testing.kernel, k, "schedule_signal_hash", runs=3)
    assert [s[1][2] for s in seen] == [(1, 103, 0), (2, 103, 0), (3, 103, 0)]


@pytest.mark.parametrize("level", [1, 2])
def test_task_work_logs_as_kernel(kernel: ModuleType, level: int) -> None:
    """Whole logs: the callback is verified as its own path (``async_cb`` frames)."""
    live = program_logs(OBJ, "live", level)
    ours = program_logs(OBJ, Kernel(), level)
    assert sorted(ours) == sorted(live) and live
    for name, want in live.items():
        assert ours[name].errno == want.errno, name
        assert normalize(ours[name].log) == normalize(want.log), name


@pytest.mark.parametrize("map_type", [1, 2, 5, 6, 9, 10])
def test_map_types_that_may_hold_a_task_work(kernel: ModuleType, map_type: int) -> None:
    """``map_check_btf``: which map types' values may hold a ``bpf_task_work`` (the others
    fail creation); the object's own BTF and value type, created directly."""
    from pybpf.loader.elf_object import open_object
    from pybpf.loader.load import to_bytes
    from pybpf.testing.verifier_diff import kernel_btf_map, pybpf_btf_map

    obj = open_object(str(OBJ))
    spec = next(m for m in obj.maps if m.name == "works")
    assert obj.btf is not None
    blob = to_bytes(obj.btf, keep_strings=True)
    args = (blob, map_type, 4, 24, 2, spec.btf_value_type_id, spec.btf_key_type_id)
    want = kernel_btf_map(kernel, *args)
    got = pybpf_btf_map(Kernel(), *args)
    if want >= 0:
        kernel.close(want)
    assert (got >= 0, min(got, 0)) == (want >= 0, min(want, 0))
