"""Global functions in clang-built objects (``tests/verifier/global_funcs/``): each program,
loaded on its own by pybpf's loader into the live kernel and into pybpf, gets the same
errno and the same log at levels 1, 2 and 4 — the ``Func#N ('name') is global and assumed
valid.`` call sites, the ``Validating name() func#N...`` passes after the main program, the
source lines of ``line_info``, and the refusals (NULL into a non-NULL argument, a wrong
context argument, reading past an argument's pointee, a global call under a spin lock,
packet pointers used after a global that may change packet data)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from pybpf.kernel import Kernel
from pybpf.testing.object_logs import normalize, program_logs

OBJECTS = sorted((Path(__file__).parent / "global_funcs").glob("globals_*.o"))


@pytest.mark.parametrize("level", [1, 2, 4])
@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.stem)
def test_global_funcs_log_as_kernel(kernel: ModuleType, path: Path, level: int) -> None:
    live = program_logs(path, "live", level)
    ours = program_logs(path, Kernel(), level)
    assert live, f"the kernel loaded nothing from {path.name}"
    assert sorted(ours) == sorted(live)
    for name, want in live.items():
        got = ours[name]
        assert (name, got.errno) == (name, want.errno), got.log
        assert normalize(got.log) == normalize(want.log), name


def test_global_funcs_objects_cover_both_verdicts() -> None:
    """The shipped objects hold accepted and refused programs (pybpf alone)."""
    verdicts = {name: res.errno for path in OBJECTS
                for name, res in program_logs(path, Kernel(), 1).items()}
    assert 0 in verdicts.values() and any(verdicts.values())
    assert verdicts["bad_ctx_arg"] != 0 and verdicts["main_prog"] == 0
