"""``BPF_PROG_TEST_RUN`` with a repeat count runs a jited program in the JIT's native loop
when nothing needs Python, with the same results as running it that many times."""

from __future__ import annotations

from pathlib import Path

import pytest

import pybpf
from pybpf.kernel import Kernel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("jit", [0, 1])
def test_repeat_counts_every_run_on_both_tiers(jit: int) -> None:
    k = Kernel(sysctls={"bpf_jit_enable": jit})
    obj = pybpf.load(str(EXAMPLES / "xdp_counter.o"), kernel=k)
    run = obj.progs.xdp_count.test_run(data_in=bytes(64), repeat=5000)
    assert run.retval == 2 and run.duration >= 0
    stats = obj.maps.proto_stats[0]
    assert sum(v["packets"] for v in stats) == 5000
    assert sum(v["bytes"] for v in stats) == 5000 * 64


def test_run_statistics_count_every_repetition() -> None:
    """With BPF_ENABLE_STATS on, each repetition is a counted run, as in the kernel."""
    k = Kernel(sysctls={"bpf_stats_enabled": 1})  # kernel.bpf_stats_enabled
    obj = pybpf.load(str(EXAMPLES / "xdp_counter.o"), kernel=k)
    prog = obj.progs.xdp_count
    prog.test_run(data_in=bytes(64), repeat=300)
    assert prog.info().run_cnt == 300
