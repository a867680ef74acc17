"""Map pointers read as kernel structs, and pointer equality proving non-NULL
(``tests/verifier/map_ptr/``), against the live kernel.

``check_ptr_to_map_access``: a map pointer reads as its map type's struct (``struct
bpf_htab``, ``struct bpf_array``, ... through ``btf_struct_access``; a pointer member such
as ``inner_map_meta`` gives a typed pointer), never written. At run time the map header
holds ``struct bpf_map``'s fields where Linux 6.18 keeps them, so the programs read the
map's attributes. A maybe-NULL pointer compared equal to a non-NULL one is not NULL on the
equal branch. Whole logs at levels 1 and 2, and return values on both tiers."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from pybpf.kernel import Kernel
from pybpf.testing.object_logs import log_mismatches, program_logs
from pybpf.testing.verifier_diff import pybpf_instance

OBJ = Path(__file__).parent / "map_ptr" / "map_ptr.o"
RUN = ["hash_max_entries", "array_max_entries", "inner_meta_deref", "eq_not_null"]


@pytest.mark.parametrize("level", [1, 2])
def test_logs_as_kernel(kernel: ModuleType, level: int) -> None:
    names, bad = log_mismatches(OBJ, Kernel(), level)
    assert len(names) == 6 and not bad, bad


def _runs(world: object) -> list[int]:
    import pybpf.skel as skel

    o = skel.open(str(OBJ), kernel=world)
    for p in o.progs:
        p.autoload = p.name in RUN
    o.load()
    try:
        return [getattr(o.progs, name).test_run(data_in=bytes(64)).retval for name in RUN]
    finally:
        o.close()


@pytest.mark.parametrize("jit", [0, 1])
def test_runs_as_kernel(kernel: ModuleType, jit: int) -> None:
    want = _runs("live")
    assert _runs(pybpf_instance(jit)) == want == [7 + 4, 5, 0, 1]


def test_refusals() -> None:
    """pybpf alone: no writes through a map pointer; NULL still possible where unequal."""
    logs = program_logs(OBJ, Kernel(), 1)
    assert "only read from bpf_htab is supported" in logs["map_ptr_write"].log
    assert "invalid mem access 'map_value_or_null'" in logs["ne_still_null"].log
