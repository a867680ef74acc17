"""CGROUP_STORAGE and PERCPU_CGROUP_STORAGE maps through ``bpf()``, against the live kernel.

The same ``bpf_attr`` (same key and value buffers, only the map fd differs) goes to the
live 6.18 kernel and to a pybpf ``Kernel``; each command must fail with the same errno
in the same order of checks: creation attributes (key size, value size, flags,
``max_entries``), and on an (always empty, no program attached) map lookups, updates
with every flag, deletes, ``get_next_key``, lookup-and-delete, batches, freeze, with
good, NULL and unreadable keys."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import pybpf.uapi as U
from pybpf.kernel import Kernel
from pybpf.uapi import BpfCmd, bpf_attr_map_batch, bpf_attr_map_create, bpf_attr_map_elem

STORAGE_TYPES = (U.BPF_MAP_TYPE_CGROUP_STORAGE, U.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE)
BAD_ADDR = 8  # an address no process maps: EFAULT when read

CREATE_CASES = [  # key_size, value_size, max_entries, map_flags
    (16, 8, 0, 0), (8, 8, 0, 0), (4, 8, 0, 0), (12, 8, 0, 0), (0, 8, 0, 0),
    (16, 0, 0, 0), (16, 8, 1, 0), (16, 32768, 0, 0), (16, 32769, 0, 0),
    (16, 65407, 0, 0), (16, 65408, 0, 0), (16, 1 << 20, 1, 1), (4, 1 << 20, 1, 1),
    (16, 0, 1, 1), (16, 8, 1, 1), (16, 8, 0, U.BPF_F_NUMA_NODE), (16, 8, 0, U.BPF_F_RDONLY),
    (16, 8, 0, U.BPF_F_RDONLY_PROG), (16, 8, 0, U.BPF_F_RDONLY_PROG | U.BPF_F_WRONLY_PROG),
    (16, 8, 0, U.BPF_F_NO_PREALLOC), (16, 8, 0, U.BPF_F_MMAPABLE), (16, 8, 0, 1 << 9),
]


def _create_attr(mt: int, case: tuple[int, int, int, int]) -> bpf_attr_map_create:
    attr = bpf_attr_map_create()
    attr.map_type = mt
    attr.key_size, attr.value_size, attr.max_entries, attr.map_flags = case
    return attr


def _pybpf_errno(ret: int) -> int:
    return -ret if ret < 0 else 0


@pytest.fixture(scope="module")
def pyk() -> Kernel:
    return Kernel(sysctls={"bpf_jit_enable": 0})


@pytest.mark.parametrize("mt", STORAGE_TYPES)
@pytest.mark.parametrize("case", CREATE_CASES, ids=str)
def test_create_checks_match_kernel(kernel: ModuleType, pyk: Kernel, mt: int,
                                    case: tuple[int, int, int, int]) -> None:
    kret, kerr = kernel.sys_bpf(BpfCmd.BPF_MAP_CREATE, _create_attr(mt, case))
    if kret >= 0:
        os.close(kret)
    pret = pyk.bpf(BpfCmd.BPF_MAP_CREATE, _create_attr(mt, case))
    assert _pybpf_errno(pret) == kerr, (case, kerr, pret)


KEY = ctypes.create_string_buffer(16)
VALUE = ctypes.create_string_buffer(8 * 512)  # room for a per-CPU value on any machine
ELEM_OPS = [  # (command, key address or None for NULL, flags)
    (BpfCmd.BPF_MAP_LOOKUP_ELEM, "key", 0), (BpfCmd.BPF_MAP_LOOKUP_ELEM, "key", U.BPF_F_LOCK),
    (BpfCmd.BPF_MAP_LOOKUP_ELEM, "key", 1), (BpfCmd.BPF_MAP_LOOKUP_ELEM, "key", 8),
    (BpfCmd.BPF_MAP_LOOKUP_ELEM, None, 0), (BpfCmd.BPF_MAP_LOOKUP_ELEM, "bad", 0),
    (BpfCmd.BPF_MAP_LOOKUP_ELEM, "bad", 8),
    *[(BpfCmd.BPF_MAP_UPDATE_ELEM, "key", f) for f in (0, 1, 2, 3, 4, 5, 6, 8, 1 << 32)],
    (BpfCmd.BPF_MAP_UPDATE_ELEM, None, 0), (BpfCmd.BPF_MAP_UPDATE_ELEM, "bad", 1),
    (BpfCmd.BPF_MAP_UPDATE_ELEM, "bad", U.BPF_F_LOCK),
    (BpfCmd.BPF_MAP_DELETE_ELEM, "key", 0), (BpfCmd.BPF_MAP_DELETE_ELEM, None, 0),
    (BpfCmd.BPF_MAP_DELETE_ELEM, "bad", 0),
    (BpfCmd.BPF_MAP_GET_NEXT_KEY, "key", 0), (BpfCmd.BPF_MAP_GET_NEXT_KEY, None, 0),
    (BpfCmd.BPF_MAP_GET_NEXT_KEY, "bad", 0),
    (BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM, "key", 0),
    (BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM, "key", U.BPF_F_LOCK),
    (BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM, "key", 8),
    (BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM, "bad", 0),
]


def _elem_attr(fd: int, key: str | None, flags: int) -> bpf_attr_map_elem:
    attr = bpf_attr_map_elem()
    attr.map_fd, attr.flags = fd, flags
    attr.key = {"key": ctypes.addressof(KEY), "bad": BAD_ADDR, None: 0}[key]
    attr.value = ctypes.addressof(VALUE)
    return attr


def _batch_attr(fd: int, count: int) -> bpf_attr_map_batch:
    attr = bpf_attr_map_batch()
    attr.map_fd, attr.count = fd, count
    attr.keys = attr.values = ctypes.addressof(VALUE)
    return attr


@pytest.fixture(params=STORAGE_TYPES, scope="module")
def both_maps(request: Any, kernel: ModuleType, pyk: Kernel) -> Iterator[tuple[ModuleType, int, Kernel, int]]:
    case = (16, 8, 0, 0)
    kfd, kerr = kernel.sys_bpf(BpfCmd.BPF_MAP_CREATE, _create_attr(request.param, case))
    assert kerr == 0
    pfd = pyk.bpf(BpfCmd.BPF_MAP_CREATE, _create_attr(request.param, case))
    assert pfd >= 0
    yield kernel, kfd, pyk, pfd
    os.close(kfd)


@pytest.mark.parametrize("op", ELEM_OPS, ids=lambda op: f"{op[0].name}-{op[1]}-{op[2]:#x}")
def test_element_commands_match_kernel(both_maps: Any, op: tuple[Any, str | None, int]) -> None:
    kernel, kfd, pyk, pfd = both_maps
    cmd, key, flags = op
    _kret, kerr = kernel.sys_bpf(cmd, _elem_attr(kfd, key, flags))
    perr = _pybpf_errno(pyk.bpf(cmd, _elem_attr(pfd, key, flags)))
    assert perr == kerr, (op, kerr, perr)


@pytest.mark.parametrize("cmd", [BpfCmd.BPF_MAP_LOOKUP_BATCH, BpfCmd.BPF_MAP_UPDATE_BATCH,
                                 BpfCmd.BPF_MAP_DELETE_BATCH,
                                 BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_BATCH])
def test_batch_commands_match_kernel(both_maps: Any, cmd: BpfCmd) -> None:
    kernel, kfd, pyk, pfd = both_maps
    _kret, kerr = kernel.sys_bpf(cmd, _batch_attr(kfd, 1))
    perr = _pybpf_errno(pyk.bpf(cmd, _batch_attr(pfd, 1)))
    assert perr == kerr, (cmd, kerr, perr)
