"""print_log2_hist / print_linear_hist print exactly what BCC prints for the same map."""

from __future__ import annotations

import pytest

import pybpf.uapi as U
from pybpf.maps.api import Map

LOG2 = """\
     value               : count     distribution
         0 -> 1          : 5        |********************                    |
         2 -> 3          : 10       |****************************************|
         4 -> 7          : 0        |                                        |
         8 -> 15         : 2        |********                                |
"""

LOG2_STRIPPED_USECS = """\
     usecs               : count     distribution
         2 -> 3          : 10       |****************************************|
         4 -> 7          : 0        |                                        |
         8 -> 15         : 2        |********                                |
"""

LINEAR = """\
     kbytes        : count     distribution
        0          : 0        |                                        |
        1          : 3        |****************************************|
        2          : 1        |*************                           |
"""


def hist_map(map_type: int, vals: dict[int, int]) -> Map:
    m = Map.create(map_type, 4, 8, 65)
    for k, v in vals.items():
        m[k] = v
    return m


@pytest.mark.parametrize("map_type", [U.BPF_MAP_TYPE_ARRAY, U.BPF_MAP_TYPE_HASH])
def test_log2_hist_golden(capsys: pytest.CaptureFixture[str], map_type: int) -> None:
    m = hist_map(map_type, {1: 5, 2: 10, 4: 2})
    m.print_log2_hist()
    assert capsys.readouterr().out == LOG2
    m2 = hist_map(map_type, {1: 0, 2: 10, 4: 2})
    m2.print_log2_hist("usecs", strip_leading_zero=True)
    assert capsys.readouterr().out == LOG2_STRIPPED_USECS


def test_log2_hist_wide_buckets(capsys: pytest.CaptureFixture[str]) -> None:
    m = hist_map(U.BPF_MAP_TYPE_ARRAY, {40: 1})
    m.print_log2_hist()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "               value                         : count     distribution"
    assert lines[-1] == ("        549755813888 -> 1099511627775        : 1        "
                         "|********************|")
    assert len(lines) == 41


def test_linear_hist_golden_on_percpu_values(capsys: pytest.CaptureFixture[str]) -> None:
    m = Map.create(U.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 4)
    cpus = m.bmap.nr_cpus
    m[1] = [3] + [0] * (cpus - 1)
    m[2] = [0] * (cpus - 1) + [1]
    m.print_linear_hist("kbytes")
    assert capsys.readouterr().out == LINEAR


def test_empty_hist_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    hist_map(U.BPF_MAP_TYPE_HASH, {}).print_log2_hist()
    hist_map(U.BPF_MAP_TYPE_HASH, {}).print_linear_hist()
    assert capsys.readouterr().out == ""
