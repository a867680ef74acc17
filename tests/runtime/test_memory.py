"""The memory registry: regions, checked access, and the accessors' cache."""

from __future__ import annotations

import ctypes

import pytest

from pybpf.errors import BpfFault
from pybpf.runtime.memory import MemoryRegistry


@pytest.fixture
def mem() -> MemoryRegistry:
    return MemoryRegistry()


def test_alloc_gives_zeroed_native_memory_at_a_real_address(mem: MemoryRegistry) -> None:
    r = mem.alloc(16, "buf")
    assert r.size == 16 and r.start % 8 == 0
    assert ctypes.string_at(r.start, 16) == b"\0" * 16
    mem.store(r.start + 4, 4, 0x11223344)
    assert ctypes.string_at(r.start + 4, 4) == bytes.fromhex("44332211")
    assert mem.load(r.start + 4, 2) == 0x3344


def test_out_of_bounds_and_read_only_accesses_fault(mem: MemoryRegistry) -> None:
    r = mem.alloc(8, "buf")
    ro = mem.alloc(8, "ro", writable=False)
    with pytest.raises(BpfFault) as exc:
        mem.load(r.start + 6, 4, pc=3)
    assert exc.value.pc == 3 and exc.value.addr == r.start + 6 and exc.value.size == 4
    with pytest.raises(BpfFault, match="read-only"):
        mem.store(ro.start, 1, 1)
    with pytest.raises(BpfFault):
        mem.read(0, 1)


def test_overlapping_regions_are_refused(mem: MemoryRegistry) -> None:
    r = mem.alloc(32, "a")
    from pybpf.runtime.memory import Region

    with pytest.raises(ValueError, match="overlaps"):
        mem.add(Region(r.start + 8, 8, "b", r.mv[8:16]))


def test_wrap_registers_a_bytearray_in_place(mem: MemoryRegistry) -> None:
    data = bytearray(b"hello")
    r = mem.wrap(data, "bytes")
    mem.store(r.start, 1, ord("j"))
    assert data == bytearray(b"jello")
    assert mem.read_cstr(r.start, 3) == b"jel"


def test_accessor_cache_forgets_removed_regions(mem: MemoryRegistry) -> None:
    load, store = mem.accessors()
    r = mem.alloc(8, "temp")
    store(r.start, 8, 7, 0)
    assert load(r.start, 8, 0) == 7
    mem.remove(r)
    with pytest.raises(BpfFault):
        load(r.start, 8, 0)
    with pytest.raises(BpfFault):
        store(r.start, 8, 1, 0)


def test_find_requires_the_whole_range(mem: MemoryRegistry) -> None:
    r = mem.alloc(8, "a")
    assert mem.find(r.start, 8) is r
    assert mem.find(r.start + 1, 8) is None
    assert mem.find(r.start - 1, 1) is None or mem.find(r.start - 1, 1) is not r


def test_version_changes_on_every_add_and_remove(mem: MemoryRegistry) -> None:
    v0 = mem.version
    r = mem.alloc(8, "a")
    assert mem.version == v0 + 1
    mem.remove(r)
    assert mem.version == v0 + 2
