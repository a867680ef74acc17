"""The map-type registry finds every built-in type, whichever module registered first."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from types import ModuleType

import pytest

from pybpf.kernel import Kernel
from pybpf.uapi import (
    BPF_MAP_CREATE,
    BPF_OBJ_GET_INFO_BY_FD,
    bpf_attr_info,
    bpf_attr_map_create,
    bpf_map_info,
)


def test_registering_one_type_early_does_not_hide_the_others() -> None:
    code = ("import pybpf.maps.type_ringbuf\n"
            "from pybpf.maps.ops import find_map_ops\n"
            "from pybpf.uapi import BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY\n"
            "assert find_map_ops(BPF_MAP_TYPE_HASH) is not None\n"
            "assert find_map_ops(BPF_MAP_TYPE_ARRAY) is not None\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr



@pytest.mark.parametrize("flags", [0, 1 << 3, 1 << 4, (1 << 3) | (1 << 7), 1 << 8])
def test_reported_map_flags_drop_fd_access_bits_like_the_kernel(kernel: ModuleType,
                                                                flags: int) -> None:
    """``bpf_map_flags_retain_permanent``: BPF_F_RDONLY/WRONLY shape the creating fd only."""
    kfd = kernel.map_create(2, 4, 8, 4, flags)
    try:
        want = kernel.map_info(kfd).map_flags
    finally:
        os.close(kfd)
    k = Kernel()
    attr = bpf_attr_map_create(map_type=2, key_size=4, value_size=8, max_entries=4,
                               map_flags=flags)
    fd = k.bpf(BPF_MAP_CREATE, attr)
    assert fd >= 0
    info = bpf_map_info()
    ia = bpf_attr_info(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    assert k.bpf(BPF_OBJ_GET_INFO_BY_FD, ia) == 0
    assert info.map_flags == want
