"""The map-type registry finds every built-in type, whichever module registered first."""

from __future__ import annotations

import subprocess
import sys


def test_registering_one_type_early_does_not_hide_the_others() -> None:
    code = ("import pybpf.maps.type_ringbuf\n"
            "from pybpf.maps.ops import find_map_ops\n"
            "from pybpf.uapi import BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY\n"
            "assert find_map_ops(BPF_MAP_TYPE_HASH) is not None\n"
            "assert find_map_ops(BPF_MAP_TYPE_ARRAY) is not None\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
