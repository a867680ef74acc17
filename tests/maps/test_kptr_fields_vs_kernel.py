"""Kptr fields of map values seen from user space, against the live 6.18 kernel.

``copy_map_value`` skips a value's special fields in both directions: a
``BPF_MAP_LOOKUP_ELEM`` hands user space zeroes where the kptrs are
(``check_and_init_map_value``), and an update never writes the kptr slots — the bytes
user space puts there are ignored. An update or a delete then frees the element's fields
(``bpf_obj_free_fields``): the stored object's reference is dropped and its destructor
runs. That part is not observable from user space, so it is checked by pybpf's own
destructor accounting (``btf_record.KPTR_DTOR_HOOKS``)."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from test_spin_lock_vs_kernel import PyWorld

import pybpf.uapi as U
from pybpf.errors import BpfError
from pybpf.maps import btf_record, elem_cmds

VALUE_SIZE = 32
REF_OFF, UNREF_OFF = 8, 24
PERCPU = (U.BPF_MAP_TYPE_PERCPU_ARRAY, U.BPF_MAP_TYPE_PERCPU_HASH, U.BPF_MAP_TYPE_LRU_PERCPU_HASH)
MAP_TYPES = (U.BPF_MAP_TYPE_ARRAY, U.BPF_MAP_TYPE_HASH, U.BPF_MAP_TYPE_LRU_HASH, *PERCPU)


def value_btf() -> bytes:
    """``struct val { int a; <pad>; struct prog_test_ref_kfunc __kptr *ref; int b; <pad>;
    struct prog_test_ref_kfunc __kptr_untrusted *unref; }`` (32 bytes) as type 7."""
    names = ("int", "prog_test_ref_kfunc", "kptr", "kptr_untrusted", "val", "a", "ref", "b",
             "unref")
    strings = b"\0" + b"".join(n.encode() + b"\0" for n in names)
    off = {n: strings.index(b"\0" + n.encode() + b"\0") + 1 for n in names}
    types = b"".join([
        struct.pack("<IIII", off["int"], 1 << 24, 4, (1 << 24) | 32),          # 1
        struct.pack("<III", off["prog_test_ref_kfunc"], 4 << 24, 0),           # 2
        struct.pack("<III", off["kptr"], 18 << 24, 2),                         # 3
        struct.pack("<III", 0, 2 << 24, 3),                                    # 4
        struct.pack("<III", off["kptr_untrusted"], 18 << 24, 2),               # 5
        struct.pack("<III", 0, 2 << 24, 5),                                    # 6
        struct.pack("<III", off["val"], (4 << 24) | 4, VALUE_SIZE)             # 7
        + struct.pack("<III", off["a"], 1, 0) + struct.pack("<III", off["ref"], 4, 64)
        + struct.pack("<III", off["b"], 1, 128) + struct.pack("<III", off["unref"], 6, 192),
    ])
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


@pytest.fixture(scope="module")
def worlds(kernel: ModuleType) -> Iterator[tuple[ModuleType, int, PyWorld]]:
    blob = value_btf()
    res = kernel.btf_load(blob)
    assert res.fd > 0, res
    yield kernel, res.fd, PyWorld(blob)
    kernel.close(res.fd)


def _copies(bmap: Any, mt: int) -> int:
    return bmap.nr_cpus if mt in PERCPU else 1


def _py(fn: Any, *args: Any) -> tuple[int, bytes | None]:
    try:
        res = fn(*args)
    except BpfError as exc:
        return exc.errno, None
    return 0, res if isinstance(res, bytes) else None


@pytest.mark.parametrize("mt", MAP_TYPES)
def test_user_space_never_reads_or_writes_kptr_slots(worlds: Any, mt: int) -> None:
    kernel, kfd, py = worlds
    err, bmap = py.create(mt, 4, VALUE_SIZE, 2, 1, 7)
    assert err == 0 and bmap is not None
    n_py, n_k = _copies(bmap, mt), (os.cpu_count() or 1) if mt in PERCPU else 1
    fd = kernel.map_create(mt, 4, VALUE_SIZE, 2, btf_fd=kfd, btf_key_type_id=1,
                           btf_value_type_id=7)
    key = b"\0\0\0\0"
    val = bytes(range(1, VALUE_SIZE + 1))
    try:
        assert kernel.map_update_raw(fd, key, val * n_k, 0) == 0
        kerr, kdata = kernel.map_lookup_raw(fd, key, VALUE_SIZE * n_k)
    finally:
        kernel.close(fd)
    assert _py(elem_cmds.map_update_elem, bmap, key, val * n_py, 0) == (0, None)
    perr, pdata = _py(elem_cmds.map_lookup_elem, bmap, key, 0)
    assert (kerr, perr) == (0, 0)
    assert pdata is not None
    # the kernel's answer for one copy, the slots at 8 and 24 zero
    assert kdata[:VALUE_SIZE] == pdata[:VALUE_SIZE], (kdata[:VALUE_SIZE].hex(), pdata.hex())
    assert pdata[REF_OFF:REF_OFF + 8] == bytes(8) and pdata[:8] == val[:8]


REF_PTR, UNREF_PTR = 0xFFFF888000001000, 0xFFFF888000002000


def _hold(bmap: Any, key: bytes) -> None:
    """What a program's ``bpf_kptr_xchg`` leaves behind: both slots of every copy of the
    element hold an object (written below the kptr-aware view, as a program does)."""
    one = bytearray(bmap.value_stride)
    one[REF_OFF:REF_OFF + 8] = struct.pack("<Q", REF_PTR)
    one[UNREF_OFF:UNREF_OFF + 8] = struct.pack("<Q", UNREF_PTR)
    copies = bmap.nr_cpus if bmap.map_type in PERCPU else 1
    data = bytes(one) * copies if copies > 1 else bytes(one[:VALUE_SIZE])
    bmap.ops.inner.sys_update(bmap, key, data, 0)


@pytest.fixture()
def released() -> Iterator[list[int]]:
    """The pointers whose destructor ran (``prog_test_ref_kfunc``'s)."""
    calls: list[int] = []
    btf_record.KPTR_DTOR_HOOKS["prog_test_ref_kfunc"] = calls.append
    yield calls
    del btf_record.KPTR_DTOR_HOOKS["prog_test_ref_kfunc"]


@pytest.mark.parametrize("mt", MAP_TYPES)
def test_update_delete_and_free_release_the_referenced_kptr(worlds: Any, released: list[int],
                                                           mt: int) -> None:
    _kernel, _kfd, py = worlds
    err, bmap = py.create(mt, 4, VALUE_SIZE, 2, 1, 7)
    assert err == 0
    copies = bmap.nr_cpus if mt in PERCPU else 1
    key = b"\0\0\0\0"
    user = b"\xff" * (bmap.ops.sys_value_size(bmap) if copies > 1 else VALUE_SIZE)
    _hold(bmap, key)
    assert _py(elem_cmds.map_update_elem, bmap, key, user, 0) == (0, None)
    # the old object released once per copy; the untrusted one is never released
    assert released == [REF_PTR] * copies
    raw = bmap.ops.inner.sys_lookup(bmap, key, 0)
    assert raw[REF_OFF:REF_OFF + 8] == bytes(8) and raw[UNREF_OFF:UNREF_OFF + 8] == bytes(8)
    assert raw[:8] == b"\xff" * 8
    released.clear()
    _hold(bmap, key)
    derr, _ = _py(elem_cmds.map_delete_elem, bmap, key)
    is_array = mt in (U.BPF_MAP_TYPE_ARRAY, U.BPF_MAP_TYPE_PERCPU_ARRAY)
    assert derr == (22 if is_array else 0)
    assert released == ([] if is_array else [REF_PTR] * copies)
    released.clear()
    _hold(bmap, key)
    bmap.ops.map_free(bmap)  # the map goes: every element's fields are freed
    assert released == [REF_PTR] * copies


def test_lookup_and_delete_hands_back_zeroed_slots_and_releases(worlds: Any,
                                                               released: list[int]) -> None:
    _kernel, _kfd, py = worlds
    err, bmap = py.create(U.BPF_MAP_TYPE_HASH, 4, VALUE_SIZE, 2, 1, 7)
    assert err == 0
    _hold(bmap, b"\1\0\0\0")
    perr, data = _py(elem_cmds.map_lookup_and_delete_elem, bmap, b"\1\0\0\0", 0)
    assert perr == 0 and data == bytes(VALUE_SIZE)
    assert released == [REF_PTR]


@pytest.mark.parametrize("mt", [U.BPF_MAP_TYPE_ARRAY, U.BPF_MAP_TYPE_HASH])
def test_batch_update_and_lookup_skip_kptr_slots_as_in_kernel(worlds: Any, mt: int) -> None:
    kernel, kfd, py = worlds
    err, bmap = py.create(mt, 4, VALUE_SIZE, 2, 1, 7)
    assert err == 0
    keys = struct.pack("<II", 0, 1)
    values = bytes(range(1, VALUE_SIZE + 1)) + bytes(range(101, 101 + VALUE_SIZE))
    fd = kernel.map_create(mt, 4, VALUE_SIZE, 2, btf_fd=kfd, btf_key_type_id=1,
                           btf_value_type_id=7)
    try:
        assert kernel.map_update_batch_raw(fd, keys, values, 2).errno == 0
        kout = kernel.map_lookup_batch_raw(fd, None, 2, 4, VALUE_SIZE)
    finally:
        kernel.close(fd)
    pres = elem_cmds.map_batch(bmap, "update", keys=keys, values=values, count=2)
    assert (pres.err, pres.count) == (0, 2)
    pout = elem_cmds.map_batch(bmap, "lookup", count=2)
    got_k = dict(zip(struct.unpack("<II", kout.keys),
                     (kout.values[:VALUE_SIZE], kout.values[VALUE_SIZE:]), strict=True))
    got_p = dict(zip(struct.unpack("<II", pout.keys[:8]),
                     (pout.values[:VALUE_SIZE], pout.values[VALUE_SIZE:2 * VALUE_SIZE]),
                     strict=True))
    assert got_k == got_p
    assert got_p[1][REF_OFF:REF_OFF + 8] == bytes(8)


PROG_UPDATE = """*(u32 *)(r10 - 4) = 0
r1 = -1
*(u64 *)(r10 - 40) = r1
*(u64 *)(r10 - 32) = r1
*(u64 *)(r10 - 24) = r1
*(u64 *)(r10 - 16) = r1
r2 = r10
r2 += -4
r3 = r10
r3 += -40
r4 = 0
r1 = 0x7ab ll
call 2
exit"""


@pytest.mark.parametrize("mt", [U.BPF_MAP_TYPE_ARRAY, U.BPF_MAP_TYPE_HASH])
def test_program_update_skips_and_releases_kptr(worlds: Any, released: list[int], mt: int) -> None:
    """``bpf_map_update_elem`` from a program copies like the syscall: the slot is not
    overwritten by the program's bytes and the old object is released."""
    from pybpf.isa.asm import assemble
    from pybpf.program import Program
    from pybpf.testing.verifier_diff import patch_map_marks

    _kernel, _kfd, py = worlds
    err, bmap = py.create(mt, 4, VALUE_SIZE, 2, 1, 7)
    assert err == 0
    key = b"\0\0\0\0"
    _hold(bmap, key)
    prog = Program.load(py.k, 3, patch_map_marks(assemble(PROG_UPDATE), {0x7AB: _fd_of(py, bmap)}))
    assert prog.test_run(bytes(64)).retval == 0
    assert released == [REF_PTR]
    raw = bmap.ops.inner.sys_lookup(bmap, key, 0)
    assert raw[:8] == b"\xff" * 8 and raw[REF_OFF:REF_OFF + 8] == bytes(8)
    assert raw[UNREF_OFF:UNREF_OFF + 8] == bytes(8)


def _fd_of(py: PyWorld, bmap: Any) -> int:
    """The pybpf fd of ``bmap`` (``PyWorld.create`` hands back the map, not its fd)."""
    for fd in range(3, 1 << 12):
        try:
            if py.k.root.file(fd).obj.bmap is bmap:
                return fd
        except (AttributeError, KeyError, LookupError, BpfError):
            continue
    raise LookupError("map fd")
