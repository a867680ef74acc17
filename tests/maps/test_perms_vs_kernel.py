"""FREEZE, BPF_F_RDONLY / BPF_F_WRONLY, map-in-map templates and memlock, against Linux.

Each case runs the same command on a live-kernel map (through the fd MAP_CREATE gave)
and on a pybpf map through :mod:`pybpf.maps.elem_cmds` (the map side of the commands,
which uses the creation flags as the fd's permissions) and compares the errnos.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

import pybpf.uapi as U
from pybpf.errors import BpfError
from pybpf.maps import elem_cmds
from pybpf.maps.api import create_map
from pybpf.maps.core import BpfMap

T = U
RDONLY, WRONLY = U.BPF_F_RDONLY, U.BPF_F_WRONLY


def errno_of(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    try:
        fn(*args, **kwargs)
    except BpfError as exc:
        return int(exc.errno or 0)
    return 0


def kernel_ops(k: ModuleType, fd: int, ks: int, vs: int) -> dict[str, Callable[[], int]]:
    key, value = bytes(ks), bytes(vs)
    return {
        "update": lambda: k.map_update_raw(fd, key, value) if ks else
        k.map_update_raw(fd, b"", value),
        "lookup": lambda: k.map_lookup_raw(fd, key, vs)[0],
        "delete": lambda: k.map_delete_raw(fd, key),
        "next": lambda: k.map_get_next_key_raw(fd, None, ks)[0] if ks else 0,
        "pop": lambda: k.map_lookup_and_delete_raw(fd, key if ks else None, vs)[0],
        "lookup_batch": lambda: k.map_lookup_batch_raw(fd, None, 4, ks, vs).errno if ks else 0,
        "update_batch": lambda: k.map_update_batch_raw(fd, key, value, 1).errno if ks else 0,
        "freeze": lambda: k.map_freeze_raw(fd),
    }


def our_ops(bmap: BpfMap, ks: int, vs: int) -> dict[str, Callable[[], int]]:
    key, value = bytes(ks), bytes(vs)
    return {
        "update": lambda: errno_of(elem_cmds.map_update_elem, bmap, key, value),
        "lookup": lambda: errno_of(elem_cmds.map_lookup_elem, bmap, key),
        "delete": lambda: errno_of(elem_cmds.map_delete_elem, bmap, key),
        "next": lambda: errno_of(elem_cmds.map_get_next_key, bmap, None) if ks else 0,
        "pop": lambda: errno_of(elem_cmds.map_lookup_and_delete_elem, bmap,
                                key if ks else None),
        "lookup_batch": lambda: (errno_of(elem_cmds.map_batch, bmap, "lookup", count=4)
                                 or elem_cmds.map_batch(bmap, "lookup", count=4).err)
        if ks else 0,
        "update_batch": lambda: (errno_of(elem_cmds.map_batch, bmap, "update", keys=key,
                                          values=value, count=1)
                                 or elem_cmds.map_batch(bmap, "update", keys=key, values=value,
                                                        count=1).err) if ks else 0,
        "freeze": lambda: errno_of(elem_cmds.map_freeze, bmap),
    }


SEQUENCE = ["lookup", "next", "update", "lookup_batch", "update_batch", "freeze", "update",
            "update_batch", "delete", "pop", "lookup", "next", "freeze", "lookup_batch"]
GEOS = [(T.BPF_MAP_TYPE_ARRAY, 4, 8, 4), (T.BPF_MAP_TYPE_HASH, 4, 8, 4),
        (T.BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 4), (T.BPF_MAP_TYPE_LRU_HASH, 4, 8, 4),
        (T.BPF_MAP_TYPE_QUEUE, 0, 8, 4)]


@pytest.mark.parametrize("flags", [0, RDONLY, WRONLY], ids=["rw", "rdonly", "wronly"])
@pytest.mark.parametrize("geo", GEOS, ids=lambda g: f"type{g[0]}")
def test_permissions_and_freeze_match_kernel(kernel: ModuleType, geo: tuple[int, ...],
                                             flags: int) -> None:
    mt, ks, vs, me = geo
    fd = kernel.map_create(mt, ks, vs, me, flags)
    bmap = create_map(mt, ks, vs, me, flags)
    try:
        svs = bmap.ops.sys_value_size(bmap)  # type: ignore[attr-defined]
        theirs, ours = kernel_ops(kernel, fd, ks, svs), our_ops(bmap, ks, svs)
        got = [(name, ours[name]()) for name in SEQUENCE]
        want = [(name, theirs[name]()) for name in SEQUENCE]
        assert got == want
    finally:
        os.close(fd)
        bmap.ops.map_free(bmap)


# -- map-in-map -----------------------------------------------------------------------------

INNER = [
    ("same", T.BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0),
    ("other max_entries", T.BPF_MAP_TYPE_ARRAY, 4, 4, 2, 0),
    ("other value_size", T.BPF_MAP_TYPE_ARRAY, 4, 8, 1, 0),
    ("other type", T.BPF_MAP_TYPE_HASH, 4, 4, 1, 0),
    ("other flags", T.BPF_MAP_TYPE_ARRAY, 4, 4, 1, U.BPF_F_RDONLY_PROG),
    ("inner-map template", T.BPF_MAP_TYPE_ARRAY, 4, 4, 7, U.BPF_F_INNER_MAP),
]
TEMPLATES = [(T.BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0), (T.BPF_MAP_TYPE_ARRAY, 4, 4, 3, U.BPF_F_INNER_MAP),
             (T.BPF_MAP_TYPE_HASH, 4, 4, 1, 0)]


def resolve(ours: dict[int, BpfMap], fd: int) -> BpfMap:
    """The syscall layer's job in the tests: fds the test did not create are no maps."""
    if fd not in ours:
        raise BpfError(errno.EINVAL, f"fd {fd} is not a map")
    return ours[fd]


@pytest.mark.parametrize("outer_type", [T.BPF_MAP_TYPE_ARRAY_OF_MAPS, T.BPF_MAP_TYPE_HASH_OF_MAPS])
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: f"type{t[0]}-n{t[3]}-f{t[4]:#x}")
def test_inner_map_geometry_checks_match_kernel(kernel: ModuleType, outer_type: int,
                                                template: tuple[int, ...]) -> None:
    fds: list[int] = []
    ours: dict[int, BpfMap] = {}
    try:
        tmpl_fd = kernel.map_create(*template[:4], template[4])
        fds.append(tmpl_fd)
        tmpl = create_map(*template[:4], template[4])
        outer_fd = kernel.map_create(outer_type, 4, 4, 2, 0, inner_map_fd=tmpl_fd)
        fds.append(outer_fd)
        outer = create_map(outer_type, 4, 4, 2, 0, inner_map=tmpl)
        outer.fd_resolver = lambda fd, kind: resolve(ours, fd)
        for name, mt, ks, vs, me, fl in INNER:
            ifd = kernel.map_create(mt, ks, vs, me, fl)
            fds.append(ifd)
            ours[ifd] = create_map(mt, ks, vs, me, fl)
            val = ifd.to_bytes(4, "little")
            want = kernel.map_update_raw(outer_fd, bytes(4), val)
            got = errno_of(elem_cmds.map_update_elem, outer, bytes(4), val)
            assert got == want, name
            want = kernel.map_lookup_raw(outer_fd, bytes(4), 4)[0]
            got = errno_of(elem_cmds.map_lookup_elem, outer, bytes(4))
            assert got == want, name
        want = kernel.map_update_raw(outer_fd, bytes(4), bytes(4), U.BPF_NOEXIST)
        got = errno_of(elem_cmds.map_update_elem, outer, bytes(4), bytes(4), U.BPF_NOEXIST)
        assert got == want
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("inner", [(T.BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 1),
                                   (T.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096),
                                   (T.BPF_MAP_TYPE_QUEUE, 0, 4, 2),
                                   (T.BPF_MAP_TYPE_LPM_TRIE, 8, 4, 2)],
                         ids=lambda t: f"type{t[0]}")
def test_which_maps_can_be_templates_match_kernel(kernel: ModuleType,
                                                  inner: tuple[int, ...]) -> None:
    flags = U.BPF_F_NO_PREALLOC if inner[0] == T.BPF_MAP_TYPE_LPM_TRIE else 0
    ifd = kernel.map_create(*inner, flags)
    try:
        fd, want = kernel.map_create_raw(T.BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 1, 0,
                                         inner_map_fd=ifd)
        if fd >= 0:
            os.close(fd)
        got = errno_of(create_map, T.BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 1, 0,
                       inner_map=create_map(*inner, flags))
        assert got == want
    finally:
        os.close(ifd)


# -- memlock ---------------------------------------------------------------------------------

MEMLOCK = [
    (T.BPF_MAP_TYPE_ARRAY, 4, 8, 10, 0), (T.BPF_MAP_TYPE_ARRAY, 4, 8, 1000, U.BPF_F_MMAPABLE),
    (T.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 12, 7, 0), (T.BPF_MAP_TYPE_HASH, 4, 8, 10, 0),
    (T.BPF_MAP_TYPE_HASH, 16, 100, 1000, 0), (T.BPF_MAP_TYPE_HASH, 4, 8, 10, U.BPF_F_NO_PREALLOC),
    (T.BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 10, 0),
    (T.BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 10, U.BPF_F_NO_PREALLOC),
    (T.BPF_MAP_TYPE_LRU_HASH, 4, 8, 10, 0), (T.BPF_MAP_TYPE_LRU_HASH, 4, 8, 10, U.BPF_F_NO_COMMON_LRU),
    (T.BPF_MAP_TYPE_LRU_PERCPU_HASH, 4, 8, 10, 0), (T.BPF_MAP_TYPE_QUEUE, 0, 8, 10, 0),
    (T.BPF_MAP_TYPE_STACK, 0, 8, 10, 0), (T.BPF_MAP_TYPE_RINGBUF, 0, 0, 1 << 16, 0),
    (T.BPF_MAP_TYPE_BLOOM_FILTER, 0, 8, 100, 0), (T.BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 10, 0),
    (T.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 2, 0), (T.BPF_MAP_TYPE_STACK_TRACE, 4, 64, 10, 0),
    (T.BPF_MAP_TYPE_CGROUP_ARRAY, 4, 4, 3, 0),
]


def fdinfo_memlock(fd: int) -> int:
    for line in open(f"/proc/self/fdinfo/{fd}").read().splitlines():  # noqa: SIM115
        if line.startswith("memlock:"):
            return int(line.split()[1])
    pytest.skip("fdinfo has no memlock line")


@pytest.mark.parametrize("geo", MEMLOCK, ids=lambda g: f"type{g[0]}-n{g[3]}-f{g[4]:#x}")
def test_mem_usage_matches_fdinfo_memlock(kernel: ModuleType, geo: tuple[int, ...]) -> None:
    mt, ks, vs, me, fl = geo
    fd = kernel.map_create(mt, ks, vs, me, fl)
    bmap = create_map(mt, ks, vs, me, fl)
    try:
        assert bmap.ops.mem_usage(bmap) == fdinfo_memlock(fd)
        if mt in (T.BPF_MAP_TYPE_HASH, T.BPF_MAP_TYPE_PERCPU_HASH):
            svs = bmap.ops.sys_value_size(bmap)  # type: ignore[attr-defined]
            for i in range(3):  # NO_PREALLOC maps grow with their elements
                key = i.to_bytes(ks, "little")
                kernel.map_update(fd, key, bytes(svs))
                elem_cmds.map_update_elem(bmap, key, bytes(svs))
            assert bmap.ops.mem_usage(bmap) == fdinfo_memlock(fd)
    finally:
        os.close(fd)
        bmap.ops.map_free(bmap)


# -- PROG_ARRAY -----------------------------------------------------------------------------


class FakeProg:
    """What the syscall layer hands the map for a program fd: a type and an id."""

    def __init__(self, prog_type: int, prog_id: int) -> None:
        self.prog_type = prog_type
        self.id = prog_id
        self.addr = 0x1000 + prog_id


def test_prog_array_rules_match_kernel(kernel: ModuleType) -> None:
    ret0 = bytes([0xB7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])
    fds: list[int] = []
    progs: dict[int, FakeProg] = {}
    try:
        for prog_type in (T.BPF_PROG_TYPE_SOCKET_FILTER, T.BPF_PROG_TYPE_SOCKET_FILTER,
                          T.BPF_PROG_TYPE_XDP):
            res = kernel.prog_load(prog_type, ret0)
            assert res.ok, res.log
            fds.append(res.fd)
            progs[res.fd] = FakeProg(prog_type, len(progs) + 1)
        sf1, sf2, xdp = fds
        pa_fd = kernel.map_create(T.BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4)
        fds.append(pa_fd)
        pa = create_map(T.BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4)

        def resolve_prog(fd: int, kind: str) -> FakeProg:
            if kind != "prog" or fd not in progs:
                raise BpfError(errno.EBADF if fd > 1000 else errno.EINVAL)
            return progs[fd]

        pa.fd_resolver = resolve_prog
        steps: list[tuple[str, int, int, int]] = [
            ("update", 0, sf1, 0), ("update", 1, xdp, 0), ("update", 1, sf2, 0),
            ("update", 4, sf1, 0), ("update", 2, sf1, U.BPF_NOEXIST), ("update", 2, sf1, 2),
            ("update", 3, 5000, 0), ("lookup", 0, 0, 0), ("lookup", 2, 0, 0),
            ("lookup", 9, 0, 0), ("delete", 2, 0, 0), ("delete", 1, 0, 0),
            ("delete", 9, 0, 0), ("next", 3, 0, 0), ("next", 9, 0, 0)]
        for op, idx, fd, flags in steps:
            key, val = idx.to_bytes(4, "little"), fd.to_bytes(4, "little")
            if op == "update":
                want = kernel.map_update_raw(pa_fd, key, val, flags)
                got = errno_of(elem_cmds.map_update_elem, pa, key, val, flags)
            elif op == "lookup":
                want = kernel.map_lookup_raw(pa_fd, key, 4)[0]
                got = errno_of(elem_cmds.map_lookup_elem, pa, key)
            elif op == "delete":
                want = kernel.map_delete_raw(pa_fd, key)
                got = errno_of(elem_cmds.map_delete_elem, pa, key)
            else:
                want = kernel.map_get_next_key_raw(pa_fd, key, 4)[0]
                got = errno_of(elem_cmds.map_get_next_key, pa, key)
            assert got == want, (op, idx, fd, flags)
    finally:
        for fd in fds:
            os.close(fd)
