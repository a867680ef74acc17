"""``BPF_F_MMAPABLE`` arrays: mmap/FREEZE rules and shared pages, vs the live kernel.

The kernel side maps the map fd with Python's :mod:`mmap`; the pybpf side uses
``Map.mmap()``. The same steps must give the same errnos, and both mappings must see
element updates made through the other path (and, in pybpf, program stores).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import pybpf.uapi as U
from pybpf.errors import BpfError
from pybpf.helpers.maps import MAP_HELPERS
from pybpf.isa.insn import Insn
from pybpf.maps.api import Map
from pybpf.runtime.interpreter import CompiledProgram

MM = U.BPF_F_MMAPABLE
PAGE = mmap.PAGESIZE
RW = mmap.PROT_READ | mmap.PROT_WRITE


def _errno(fn: Callable[[], Any]) -> tuple[int, Any]:
    try:
        return 0, fn()
    except BpfError as exc:
        return exc.errno, None
    except OSError as exc:
        return exc.errno or -1, None


class KernelSide:
    def __init__(self, kernel: ModuleType, flags: int, max_entries: int = 10) -> None:
        self.k = kernel
        self.fd = kernel.map_create(U.BPF_MAP_TYPE_ARRAY, 4, 8, max_entries, flags)

    def mmap(self, writable: bool, length: int = PAGE) -> Any:
        return mmap.mmap(self.fd, length, flags=mmap.MAP_SHARED,
                         prot=RW if writable else mmap.PROT_READ)

    def freeze(self) -> None:
        err = self.k.map_freeze_raw(self.fd)
        if err:
            raise OSError(err, "freeze")

    def update(self, key: int, value: int) -> None:
        self.k.map_update(self.fd, struct.pack("<I", key), struct.pack("<Q", value))

    def lookup(self, key: int) -> int:
        return int(struct.unpack("<Q", self.k.map_lookup(self.fd, struct.pack("<I", key), 8))[0])

    def close(self) -> None:
        self.k.close(self.fd)


class PySide:
    def __init__(self, flags: int, max_entries: int = 10) -> None:
        self.m = Map.create(U.BPF_MAP_TYPE_ARRAY, 4, 8, max_entries, flags)

    def mmap(self, writable: bool, length: int = PAGE) -> Any:
        return self.m.mmap(writable, length)

    def freeze(self) -> None:
        self.m.freeze()

    def update(self, key: int, value: int) -> None:
        self.m[key] = value

    def lookup(self, key: int) -> int:
        return int(self.m[key])

    def close(self) -> None:
        self.m.close()


def freeze_sequence(side: Any) -> list[Any]:
    """Writable map → FREEZE busy → unmap → FREEZE → writable map refused, read-only ok."""
    out: list[Any] = []
    err, w = _errno(lambda: side.mmap(True))
    out.append(("mmap rw", err))
    w[8:16] = struct.pack("<Q", 0x1122334455667788)
    out.append(("store seen by lookup", side.lookup(1)))
    side.update(2, 99)
    out.append(("update seen by mapping", struct.unpack_from("<Q", w, 16)[0]))
    out.append(("freeze while mapped rw", _errno(side.freeze)[0]))
    err, r = _errno(lambda: side.mmap(False))
    out.append(("mmap ro while rw exists", err))
    out.append(("freeze with ro mapping too", _errno(side.freeze)[0]))
    w.close()
    out.append(("freeze after unmap", _errno(side.freeze)[0]))
    out.append(("mmap rw frozen", _errno(lambda: side.mmap(True))[0]))
    err, r2 = _errno(lambda: side.mmap(False))
    out.append(("mmap ro frozen", err, bytes(r2[8:16]) if r2 is not None else None))
    out.append(("mmap past the end", _errno(lambda: side.mmap(False, 2 * PAGE))[0]))
    for m in (r, r2):
        if m is not None:
            m.close()
    return out


def test_freeze_and_mmap_rules_match_kernel(kernel: ModuleType) -> None:
    ks = KernelSide(kernel, MM)
    try:
        theirs = freeze_sequence(ks)
    finally:
        ks.close()
    ps = PySide(MM)
    ours = freeze_sequence(ps)
    assert ours == theirs


@pytest.mark.parametrize("flags,writable", [
    (0, False),                        # not mmapable
    (MM | U.BPF_F_RDONLY_PROG, True),  # programs may not write: no writable mapping
    (MM | U.BPF_F_RDONLY_PROG, False),
    (MM | U.BPF_F_RDONLY, True),       # read-only fd
    (MM | U.BPF_F_RDONLY, False),
    (MM | U.BPF_F_WRONLY, False),
])
def test_mmap_permission_errnos_match_kernel(kernel: ModuleType, flags: int,
                                             writable: bool) -> None:
    ks = KernelSide(kernel, flags)
    try:
        kerr, km = _errno(lambda: ks.mmap(writable))
        if km is not None:
            km.close()
    finally:
        ks.close()
    perr, pm = _errno(lambda: PySide(flags).mmap(writable))
    if pm is not None:
        pm.close()
    assert (perr or 0) == kerr, (flags, writable, kerr, perr)


def test_multi_page_array_offsets_match_kernel(kernel: ModuleType) -> None:
    """A 3-page array: mapping at page offsets, the length limit, values stay in place."""
    n = (2 * PAGE) // 8 + 5
    ks, ps = KernelSide(kernel, MM, n), PySide(MM, n)
    try:
        for side in (ks, ps):
            side.update(n - 1, 0xABCDEF)
        kpage = mmap.mmap(ks.fd, PAGE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ,
                          offset=2 * PAGE)
        ppage = ps.m.mmap(False, PAGE, 2 * PAGE)
        assert bytes(kpage) == bytes(ppage)
        assert struct.unpack_from("<Q", ppage, (n - 1) * 8 - 2 * PAGE)[0] == 0xABCDEF
        kerr = _errno(lambda: mmap.mmap(ks.fd, 2 * PAGE, flags=mmap.MAP_SHARED,
                                        prot=mmap.PROT_READ, offset=2 * PAGE))[0]
        perr = _errno(lambda: ps.m.mmap(False, 2 * PAGE, 2 * PAGE))[0]
        assert perr == kerr != 0
        kpage.close()
        ppage.close()
    finally:
        ks.close()


def test_numpy_view_is_writable_and_sees_program_stores() -> None:
    m = Map.create(U.BPF_MAP_TYPE_ARRAY, 4, 8, 16, MM)
    arr = m.as_numpy("<u8")
    assert arr.shape == (16,) and arr.flags.writeable
    arr[5] = 1234
    assert m[5] == 1234
    addr = m.bmap.addr
    # key 5 → lookup → *(u64 *)value += 1 ; a program store lands in the numpy view
    insns = [Insn(0x62, 10, 0, -4, 5),
             Insn(0x18, 1, 1, 0, addr & 0xFFFFFFFF), Insn(0, 0, 0, 0, addr >> 32),
             Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
             Insn(0x85, 0, 0, 0, U.BPF_FUNC_map_lookup_elem),
             Insn(0x15, 0, 0, 2, 0), Insn(0xB7, 1, 0, 0, 1), Insn(0xDB, 0, 1, 0, 0),
             Insn(0xB7, 0, 0, 0, 0), Insn(0x95, 0, 0, 0, 0)]
    prog = CompiledProgram(insns, helpers={f: p.impl for f, p in MAP_HELPERS.items()})
    for _ in range(3):
        assert prog.run() == 0
    assert arr[5] == 1237
    with pytest.raises(BpfError) as exc:
        m.freeze()  # the numpy view holds a writable mapping
    assert exc.value.errno == 16
    ro = m.as_numpy("<u8", writable=False)
    assert not ro.flags.writeable and ro[5] == 1237
    del arr
    import gc

    gc.collect()
    m.freeze()  # the mapping died with its last view
    assert np.array_equal(ro, m.values_array())


def test_padded_values_view_one_element_per_value() -> None:
    m = Map.create(U.BPF_MAP_TYPE_ARRAY, 4, 4, 8, MM)
    arr = m.as_numpy("<u4")
    arr[:] = np.arange(8, dtype="<u4") * 3
    assert [m[i] for i in range(8)] == [i * 3 for i in range(8)]
