"""Non-map helper prototypes and implementations."""

from __future__ import annotations

from pybpf.helpers.impls import csum_diff, get_smp_processor_id
from pybpf.helpers.protos import HELPER_PROTOS, func_id_name
from pybpf.helpers.registry import all_protos
from pybpf.runtime.context import RunContext
from pybpf.runtime.memory import REGISTRY


def test_names_and_protos() -> None:
    assert func_id_name(28) == "bpf_csum_diff"
    assert func_id_name(10 ** 7) == "unknown"
    assert HELPER_PROTOS[6].gpl_only
    protos = all_protos()
    assert protos[5].impl is not None and protos[1].func_id == 1


def test_csum_diff_and_cpu() -> None:
    ctx = RunContext(cpu=1)
    buf = REGISTRY.alloc(8, "csum test")
    buf.mv[:] = bytes([1, 0, 0, 0, 2, 0, 0, 0])
    assert csum_diff(ctx, 0, 0, buf.start, 8, 0) == 3
    assert csum_diff(ctx, 0, 3, 0, 0, 0) == (-22) & ((1 << 64) - 1)
    assert get_smp_processor_id(ctx) == 1
    REGISTRY.remove(buf)
