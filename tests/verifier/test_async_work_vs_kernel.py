"""``bpf_task_work`` and ``bpf_wq`` against the live kernel: ``tests/verifier/task_work/``
``task_work.o`` and ``wq.o`` (clang-built) loaded program by program by pybpf's loader, in
the live kernel and in pybpf. Compared: verdict, errno, first error line, whole logs,
``verified_insns``, test-run results and what the callbacks wrote to the maps — the live
kernel runs a task work when ``BPF_PROG_TEST_RUN`` returns to user space and a workqueue
on a kworker right after (the test waits for it), pybpf both when the program's outermost
run ends."""

from __future__ import annotations

import struct
import time
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

SYSCALL = 31
OBJ = Path(__file__).parent / "task_work" / "task_work.o"
PROGS = ("schedule_resume", "schedule_signal_hash", "wrong_map", "wrong_offset",
         "callback_returns_5")
WQ_OBJ = Path(__file__).parent / "task_work" / "wq.o"
WQ_PROGS = ("wq_array", "wq_errors", "wq_hash", "wq_wrong_map", "wq_wrong_offset",
            "wq_bad_return", "wq_tc", "wq_value_as_map", "wq_scalar_as_map")
#: (object, its programs, its maps as (name, key) pairs)
OBJECTS = {"task_work": (OBJ, PROGS, (("works", 0), ("works", 1), ("hworks", 3))),
           "wq": (WQ_OBJ, WQ_PROGS, (("wqs", 0), ("wqs", 1), ("hwqs", 3)))}


def _map_values(oracle: ModuleType, side: Any, obj: Any, elems: Any) -> list[Any]:
    out: list[Any] = []
    for name, key in elems:
        m = getattr(obj.maps, name)
        sz = m.value_size
        k = struct.pack("<I", key)
        try:
            raw = oracle.map_lookup(m.fd, k, sz) if side == "live" else \
                MapHandle(side.root, m.fd).lookup(k)
        except (OSError, BpfError):
            raw = None
        out.append(struct.unpack(f"<{sz // 8}Q", raw) if raw is not None else None)
    return out


def _run(oracle: ModuleType, side: Any, prog: str, *, runs: int = 2,
         which: str = "task_work") -> tuple[Any, ...]:
    path, progs, elems = OBJECTS[which]
    obj = pybpf.open(str(path), kernel=side)
    for name in progs:
        getattr(obj.progs, name).autoload = name == prog
    try:
        obj.load()
    except BpfError as exc:
        return (exc.errno, error_line(exc.log or ""))
    try:
        p = getattr(obj.progs, prog)
        seen = []
        for _ in range(runs if p.type == SYSCALL else 0):
            if side == "live":
                res = oracle.prog_test_run(p.fd, repeat=0)
                assert res.errno == 0
                retval = res.retval
                time.sleep(0.05)  # a workqueue runs on a kworker: let it
            else:
                retval = p.test_run(repeat=0).retval
            seen.append((retval, _map_values(oracle, side, obj, elems)))
        info = oracle.prog_info(p.fd) if side == "live" else p.info()
        return (0, info.verified_insns, seen)
    finally:
        obj.close()


@pytest.mark.parametrize(("which", "prog"), [("task_work", p) for p in PROGS]
                         + [("wq", p) for p in WQ_PROGS])
def test_like_the_kernel(kernel: ModuleType, which: str, prog: str) -> None:
    want = _run(kernel, "live", prog, which=which)
    got = _run(kernel, Kernel(), prog, which=which)
    assert got == want


def test_wq_results(kernel: ModuleType) -> None:
    """Sanity of the reference: init 0 then -EBUSY, set_callback 0, start 0 twice; the
    callback ran once per run and saw key 1."""
    _err, _insns, seen = _run(kernel, Kernel(), "wq_array", which="wq")
    assert seen[0][0] == (0 | 0xF0 << 8 | 0 << 16) and seen[1][0] & 0xFF == 0xF0
    assert [s[1][1][:2] for s in seen] == [(1, 101), (2, 101)]


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
@pytest.mark.parametrize("which", sorted(OBJECTS))
def test_logs_as_kernel(kernel: ModuleType, level: int, which: str) -> None:
    """Whole logs: the callback is verified as its own path (``async_cb`` frames)."""
    path = OBJECTS[which][0]
    live = program_logs(path, "live", level)
    ours = program_logs(path, Kernel(), level)
    assert sorted(ours) == sorted(live) and live
    for name, want in live.items():
        assert ours[name].errno == want.errno, name
        assert normalize(ours[name].log) == normalize(want.log), name


@pytest.mark.parametrize("map_type", [1, 2, 5, 6, 9, 10])
@pytest.mark.parametrize(("which", "map_name", "value_size"), [("task_work", "works", 24),
                                                               ("wq", "wqs", 32)])
def test_map_types_that_may_hold_the_field(kernel: ModuleType, map_type: int, which: str,
                                           map_name: str, value_size: int) -> None:
    """``map_check_btf``: which map types' values may hold a ``bpf_task_work`` or a
    ``bpf_wq`` (the others fail creation); the object's own BTF and value type, created
    directly."""
    from pybpf.loader.elf_object import open_object
    from pybpf.loader.load import to_bytes
    from pybpf.testing.verifier_diff import kernel_btf_map, pybpf_btf_map

    obj = open_object(str(OBJECTS[which][0]))
    spec = next(m for m in obj.maps if m.name == map_name)
    assert obj.btf is not None
    blob = to_bytes(obj.btf, keep_strings=True)
    args = (blob, map_type, 4, value_size, 2, spec.btf_value_type_id, spec.btf_key_type_id)
    want = kernel_btf_map(kernel, *args)
    got = pybpf_btf_map(Kernel(), *args)
    if want >= 0:
        kernel.close(want)
    assert (got >= 0, min(got, 0)) == (want >= 0, min(want, 0))
