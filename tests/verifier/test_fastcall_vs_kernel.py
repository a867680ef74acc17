"""``bpf_fastcall`` spill/fill patterns and private stacks (``tests/verifier/fastcall/``),
against the live kernel.

Spills and fills of live registers around ``bpf_get_smp_processor_id`` (which the kernel
inlines) are removed after verification and their slots leave the stack depth — unless
another instruction touches those slots, or the call is not inlined
(``verifier/fastcall.py``). A raw_tp program's big frame runs on a private stack, outside
the combined depth; a tc program's does not. Logs at levels 1 and 4 (``stack depth``),
the xlated programs (immediates of the inlined helper aside) and return values."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pybpf.kernel import Kernel
from pybpf.testing.object_logs import log_mismatches, program_logs

OBJ = Path(__file__).parent / "fastcall" / "fastcall.o"
NAMES = ["pattern", "contract_broken", "not_inlined", "private_stack", "cumulative"]


@pytest.mark.parametrize("level", [1, 4])
def test_logs_as_kernel(kernel: ModuleType, level: int) -> None:
    names, bad = log_mismatches(OBJ, Kernel(), level)
    assert len(names) == 6 and not bad, bad


def _shape(insns: list[Any]) -> list[tuple[int, ...]]:
    """Instructions without immediates (the inlined helper's variable address differs)."""
    return [(i.code, i.dst, i.src, i.off) for i in insns]


@pytest.mark.parametrize("name", NAMES)
def test_xlated_as_kernel(kernel: ModuleType, name: str) -> None:
    from pybpf.testing.xlated import object_xlated

    assert _shape(object_xlated(OBJ, name, Kernel())) == _shape(object_xlated(OBJ, name, "live"))


def test_patterns_removed() -> None:
    """pybpf alone: the inlined call's spills and fills are gone, the others stay."""
    logs = program_logs(OBJ, Kernel(), 4)
    assert "stack depth 16" in logs["pattern"].log  # the slots counted while verifying
    assert logs["cumulative_too_"].errno == 13 and logs["cumulative"].errno == 0
    assert logs["private_stack"].errno == 0
