"""Resilient spin locks against the live kernel: ``tests/verifier/locks/res_lock.o``
(clang-built) loaded program by program in both worlds — whole logs at levels 1 and 2
(the failed-acquisition path, nested locks, AA deadlocks, out-of-order unlocks, the irqsave
variants' flag class, calls and loads inside the region) — then the accepted programs'
test-run results and map contents on both tiers, and which map types may hold the lock."""

from __future__ import annotations

import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import pybpf
from pybpf.core.map import MapHandle
from pybpf.kernel import Kernel
from pybpf.testing.object_logs import normalize, program_logs

OBJ = Path(__file__).parent / "locks" / "res_lock.o"
RUNS = ("lock_ok", "two_nested", "irqsave_ok")


@pytest.mark.parametrize("level", [1, 2])
def test_res_lock_logs_as_kernel(kernel: ModuleType, level: int) -> None:
    live = program_logs(OBJ, "live", level)
    ours = program_logs(OBJ, Kernel(), level)
    assert sorted(ours) == sorted(live) and live
    for name, want in live.items():
        assert ours[name].errno == want.errno, name
        assert normalize(ours[name].log) == normalize(want.log), name


def _run(oracle: ModuleType, side: Any, prog: str) -> tuple[list[int], list[tuple[int, ...]]]:
    obj = pybpf.open(str(OBJ), kernel=side)
    for p in obj.progs:
        p.autoload = p.name == prog
    obj.load()
    try:
        p = getattr(obj.progs, prog)
        rets = []
        for _ in range(2):
            rets.append(oracle.prog_test_run(p.fd, repeat=0).retval if side == "live"
                        else p.test_run(repeat=0).retval)
        m = obj.maps.locked
        vals = []
        for key in (0, 1):
            k = struct.pack("<I", key)
            raw = oracle.map_lookup(m.fd, k, 16) if side == "live" else \
                MapHandle(side.root, m.fd).lookup(k)
            vals.append(struct.unpack("<IIQ", raw))
        return rets, vals
    finally:
        obj.close()


@pytest.mark.parametrize("jit", [1, 0], ids=["jit", "interpreter"])
@pytest.mark.parametrize("prog", RUNS)
def test_res_lock_programs_run(kernel: ModuleType, prog: str, jit: int) -> None:
    k = Kernel()
    k.sysctl["bpf_jit_enable"] = jit
    assert _run(kernel, k, prog) == _run(kernel, "live", prog)


@pytest.mark.parametrize("map_type", [1, 2, 5, 6, 9])
def test_map_types_that_may_hold_a_res_lock(kernel: ModuleType, map_type: int) -> None:
    from pybpf.btf.writer import to_bytes
    from pybpf.loader.elf_object import open_object
    from pybpf.testing.verifier_diff import kernel_btf_map, pybpf_btf_map

    obj = open_object(str(OBJ))
    spec = next(m for m in obj.maps if m.name == "locked")
    assert obj.btf is not None
    args = (to_bytes(obj.btf, keep_strings=True), map_type, 4, 16, 2, spec.btf_value_type_id,
            spec.btf_key_type_id)
    want = kernel_btf_map(kernel, *args)
    got = pybpf_btf_map(Kernel(), *args)
    if want >= 0:
        kernel.close(want)
    assert (got >= 0, min(got, 0)) == (want >= 0, min(want, 0))
