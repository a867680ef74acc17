"""``BPF_MAP_TYPE_ARENA`` against the live kernel: creation errnos (``arena_map_alloc``),
the element commands every arena refuses, the rules of ``mmap`` on an arena, and pages
shared between programs and user space (pybpf side: the interpreter over
``maps/type_arena.py``)."""

from __future__ import annotations

import ctypes
import errno
from types import ModuleType
from typing import Any

import pytest

from pybpf.errors import BpfError
from pybpf.kernel import Kernel
from pybpf.maps.type_arena import ArenaMap
from pybpf.uapi import BpfCmd, bpf_attr_map_elem

ARENA, MMAPABLE = 33, 1 << 10
SEGV_ON_FAULT, NO_USER_CONV, RDONLY, RDONLY_PROG = 1 << 17, 1 << 18, 1 << 3, 1 << 7

# (key_size, value_size, max_entries, map_flags, map_extra)
CREATE = {
    "ok": (0, 0, 1, MMAPABLE, 0),
    "key_size": (4, 0, 1, MMAPABLE, 0),
    "value_size": (0, 4, 1, MMAPABLE, 0),
    "no_pages": (0, 0, 0, MMAPABLE, 0),
    "not_mmapable": (0, 0, 1, 0, 0),
    "bad_flag": (0, 0, 1, MMAPABLE | 1, 0),
    "segv_on_fault": (0, 0, 1, MMAPABLE | SEGV_ON_FAULT, 0),
    "no_user_conv": (0, 0, 1, MMAPABLE | NO_USER_CONV, 0),
    "rdonly": (0, 0, 1, MMAPABLE | RDONLY, 0),
    "rdonly_prog": (0, 0, 1, MMAPABLE | RDONLY_PROG, 0),
    "unaligned_start": (0, 0, 1, MMAPABLE, 0x1001),
    "4g": (0, 0, 1 << 20, MMAPABLE, 0),
    "over_4g": (0, 0, (1 << 20) + 1, MMAPABLE, 0),
    "crosses_4g": (0, 0, 2, MMAPABLE, 0x7FFF_FFFF_F000),
    "high_start": (0, 0, 2, MMAPABLE, 0x7F00_0000_0000),
}


def _pybpf_create(pk: Kernel, case: tuple[int, ...]) -> tuple[int, Any]:
    ks, vs, me, fl, ex = case
    try:
        return 0, pk.map_create(ARENA, ks, vs, me, fl, map_extra=ex)
    except BpfError as exc:
        return exc.errno, None


@pytest.mark.parametrize("name", sorted(CREATE))
def test_create_errnos_match_kernel(kernel: ModuleType, name: str) -> None:
    ks, vs, me, fl, ex = CREATE[name]
    fd, kerr = kernel.map_create_raw(ARENA, ks, vs, me, fl, map_extra=ex)
    if fd >= 0:
        kernel.close(fd)
    perr, _m = _pybpf_create(Kernel(), CREATE[name])
    assert perr == kerr


def _elem_errno(side: Any, cmd: int, fd: int) -> int:
    buf = ctypes.create_string_buffer(8)
    attr = bpf_attr_map_elem()
    attr.map_fd, attr.key, attr.value = fd, ctypes.addressof(buf), ctypes.addressof(buf)
    if isinstance(side, Kernel):
        ret = side.bpf(cmd, attr)
        return -ret if ret < 0 else 0
    return int(side.sys_bpf(cmd, attr)[1])


ELEM_CMDS = [BpfCmd.BPF_MAP_LOOKUP_ELEM, BpfCmd.BPF_MAP_UPDATE_ELEM, BpfCmd.BPF_MAP_DELETE_ELEM,
             BpfCmd.BPF_MAP_GET_NEXT_KEY, BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM,
             BpfCmd.BPF_MAP_FREEZE]


@pytest.mark.parametrize("cmd", ELEM_CMDS, ids=[c.name for c in ELEM_CMDS])
def test_element_commands_match_kernel(kernel: ModuleType, cmd: BpfCmd) -> None:
    fd = kernel.map_create(ARENA, 0, 0, 1, MMAPABLE)
    try:
        want = _elem_errno(kernel, cmd, fd)
    finally:
        kernel.close(fd)
    pk = Kernel()
    m = pk.map_create(ARENA, 0, 0, 1, MMAPABLE)
    assert _elem_errno(pk, cmd, m.fd) == want


def _arena(pk: Kernel, pages: int, extra: int = 0) -> ArenaMap:
    m = pk.map_create(ARENA, 0, 0, pages, MMAPABLE, map_extra=extra)
    bmap = m.kmap.bmap
    assert isinstance(bmap, ArenaMap)
    return bmap


def test_mmap_at_user_vm_start() -> None:
    a = _arena(Kernel(), 4, 0x5_0000_0000)
    with pytest.raises(BpfError) as exc:
        a.mmap(length=8192)  # the whole arena or nothing (kernel: EINVAL)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(BpfError) as exc:
        a.mmap(length=5 * 4096)
    assert exc.value.errno == errno.E2BIG
    with a.mmap() as view:
        assert view.addr == 0x5_0000_0000 and len(view) == 4 * 4096


def test_first_mmap_sets_user_vm_start() -> None:
    a = _arena(Kernel(), 2)
    assert a.user_vm_start == 0
    view = a.mmap()
    assert a.user_vm_start == view.addr
    assert view.addr >> 32 == (view.addr + len(view) - 1) >> 32  # no 4 GiB crossing
    view.close()


def test_pages_are_shared_with_user_space() -> None:
    a = _arena(Kernel(), 4, 0x6_0000_1000)
    view = a.mmap()
    try:
        u = a.alloc_pages(0, 2, -1 & 0xFFFFFFFF, 0)
        assert u == 0x6_0000_1000  # lowest free pages first
        assert a.alloc_pages(u, 1, -1 & 0xFFFFFFFF, 0) == 0  # taken
        assert a.alloc_pages(0, 1, 0, 1) == 0  # flags must be 0
        assert a.alloc_pages(0, 5, -1 & 0xFFFFFFFF, 0) == 0  # more than the arena
        off = u & 0xFFFFFFFF
        a.probe_store(off + 8, 8, 0x1122334455667788)
        assert view.read(8, 8) == (0x1122334455667788).to_bytes(8, "little")
        view.write(4096, b"\x2a")  # user writes to the second page, programs see them
        assert a.probe_load(off + 4096, 1) == 0x2A
        # a page nobody allocated: loads read 0, stores are dropped (no exception)
        a.probe_store(off + 3 * 4096, 4, 7)
        assert a.probe_load(off + 3 * 4096, 4) == 0
        assert a.probe_load(off - 8, 8) == 0 and a.probe_load(1 << 32, 8) == 0
        # a user fault allocates the page (arena_vm_fault), then the program sees it
        view.write(2 * 4096, b"\x05")
        assert a.probe_load(off + 2 * 4096, 1) == 5
        assert a.alloc_pages(u + 2 * 4096, 1, -1 & 0xFFFFFFFF, 0) == 0
        a.free_pages(u, 2)
        assert a.probe_load(off + 8, 8) == 0
        assert a.alloc_pages(u, 1, -1 & 0xFFFFFFFF, 0) == u
        assert a.probe_load(off + 8, 8) == 0  # fresh pages are zeroed
        assert view.read(8, 8) == bytes(8)  # freed pages were zapped for user space too
        # ... and a user access to a freed page allocates it again, as in the kernel
        assert view.read(4096 + 8, 8) == bytes(8)
        assert a.alloc_pages(u + 4096, 1, -1 & 0xFFFFFFFF, 0) == 0
    finally:
        view.close()


def test_map_handle_mmap_is_the_arena_mapping() -> None:
    """``Map.mmap`` (maps/mmap_view.py) hands arenas to their own mapping rules."""
    from pybpf.maps.api import Map

    m = Map(_arena(Kernel(), 2, 0x7_0000_0000))
    with pytest.raises(BpfError) as exc:
        m.mmap(offset=4096)
    assert exc.value.errno == errno.EINVAL
    view = m.mmap()
    try:
        assert view.addr == 0x7_0000_0000 and len(view) == 2 * 4096
    finally:
        view.close()
