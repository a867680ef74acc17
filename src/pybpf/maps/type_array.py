"""``BPF_MAP_TYPE_ARRAY`` (``kernel/bpf/arraymap.c``).

Layout (native, fixed for the map's life; the JIT inlines lookups against it)::

    header.data      -> values: max_entries * elem_size bytes, elem_size = round_up(value_size, 8)
    value of key i   =  data + i * elem_size            (i < max_entries, else NULL)

A plain (not mmap-able, not per-CPU) array keeps its values where the kernel's ``struct
bpf_array`` does, :data:`ARRAY_VALUE_OFF` bytes after the map pointer programs hold: the
header and the values are two registered regions of one allocation, the bytes between them
unregistered. That is what lets the verifier inline ``bpf_map_lookup_elem`` as
``array_map_gen_lookup`` does (``r1 += 312`` …) and run the very program the kernel runs.

``BPF_F_MMAPABLE`` arrays put ``values`` in page-aligned mmap memory, exposed to Python as
a shared mapping (:meth:`ArrayMap.mmap`, :mod:`pybpf.maps.mmap_view`), with the header
``ARRAY_VALUE_OFF`` bytes below them on the page before, as the kernel's mmap-able
``bpf_array`` (so their lookups are inlined too). Every element exists from creation:
delete is EINVAL, ``BPF_NOEXIST`` is EEXIST, an index past the end is E2BIG on update
and ENOENT on lookup.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

import numpy as np

from pybpf.btf.raw import BtfDatasec, BtfInt
from pybpf.errors import BpfError
from pybpf.maps.arraybase import (
    SIZEOF_BPF_ARRAY,
    array_get_next_key,
    array_map_alloc_check,
)
from pybpf.maps.base import BaseMapOps, ForEachCallback
from pybpf.maps.batch import BatchResult, generic_lookup_batch, generic_update_batch
from pybpf.maps.common import (
    PAGE_SIZE,
    round_up,
    store_value,
    value_with_lock_zeroed,
)
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.mmap_view import MapMmap, map_mmap
from pybpf.maps.ops import register_map_ops
from pybpf.maps.storage import alloc_pages, alloc_region, colocate_after_header
from pybpf.runtime.memory import Region
from pybpf.uapi import BPF_EXIST, BPF_F_LOCK, BPF_F_MMAPABLE, BPF_MAP_TYPE_ARRAY, BPF_NOEXIST

if TYPE_CHECKING:
    pass

#: ``offsetof(struct bpf_array, value)`` on x86-64 Linux 6.18 (the ``r1 += 312`` of an
#: inlined array lookup in ``bpftool prog dump xlated``).
ARRAY_VALUE_OFF = 312


class ArrayMap(BpfMap):
    """An array map: one contiguous block of values."""

    values: Region

    def __init__(self, ops: BaseMapOps, attr: MapAttr) -> None:
        super().__init__(ops, attr)
        stride = self.value_stride
        size = self.max_entries * stride * self.copies()
        #: values sit at ``addr + ARRAY_VALUE_OFF`` (lookups may be inlined)
        self.values_follow_header = False
        if attr.map_flags & BPF_F_MMAPABLE:
            # the header sits ARRAY_VALUE_OFF below the page-aligned values, as in the
            # kernel's mmap-able bpf_array (where the platform lets pybpf place it)
            self.values = alloc_pages(self, size, "values",
                                      header_off=ARRAY_VALUE_OFF if self.copies() == 1 else 0)
            self.values_follow_header = self.values.start == self.addr + ARRAY_VALUE_OFF
        elif self.copies() == 1:
            self.values = self._colocate(size)
        else:
            self.values = alloc_region(self, size, "values")
        self.vmv = self.values.mv
        self.base = self.values.start
        self.key_scratch = alloc_region(self, 8, "key scratch")
        self.write_header(elem_size=stride, data=self.base)
        if self.copies() == 1:
            self.make_fast_paths()

    def _colocate(self, size: int) -> Region:
        """One allocation for header and values, values at ``ARRAY_VALUE_OFF``."""
        values = colocate_after_header(self, ARRAY_VALUE_OFF, size, "values", writable=True)
        self.values_follow_header = True
        return values

    def make_fast_paths(self) -> None:
        """Closures for syscall-side lookup/update (see ``BpfMap.fast_update``)."""
        vmv, stride, vs, me = self.vmv, self.value_stride, self.value_size, self.max_entries
        from_bytes = int.from_bytes
        bmap = self

        def fast_lookup(key: bytes) -> bytes | None:
            index = from_bytes(key, "little")
            if index >= me or bmap._spin_lock_off >= 0:
                return None if index >= me else value_with_lock_zeroed(
                    vmv[index * stride:index * stride + vs].tobytes(), bmap._spin_lock_off)
            off = index * stride
            return vmv[off:off + vs].tobytes()

        def fast_update(key: bytes, value: bytes) -> int:
            index = from_bytes(key, "little")
            if index >= me:
                return errno.E2BIG
            off = index * stride
            if bmap._spin_lock_off < 0 and len(value) == vs:
                vmv[off:off + vs] = value
            else:
                store_value(vmv, off, value, vs, bmap._spin_lock_off)
            return 0

        self.fast_lookup, self.fast_update = fast_lookup, fast_update

    def copies(self) -> int:
        return 1

    def direct_value_addr(self, off: int) -> int:
        """Address of byte ``off`` of value 0 (``array_map_direct_value_addr``).

        What ``BPF_PSEUDO_MAP_VALUE`` ld_imm64s (global data in ``.data``/``.rodata``/
        ``.bss``) resolve to; the verifier has already checked ``max_entries == 1`` and
        ``off < value_size``.
        """
        return self.base + off

    def direct_value_errno(self, off: int) -> int:
        """``array_map_direct_value_addr`` works for single-element arrays only, and for
        offsets inside the value."""
        return errno.EINVAL if self.max_entries != 1 or off >= self.value_size else 0

    def read_const(self, off: int, size: int) -> int:
        """``bpf_map_direct_read``: the ``size``-byte little-endian value at byte ``off``
        of value 0, which the verifier treats as a constant when the map is read-only to
        programs and frozen (``bpf_map_is_rdonly``: global ``.rodata``). ``ValueError``
        where ``array_map_direct_value_addr`` fails (``max_entries != 1``, ``off`` past
        the value) or while a syscall write is in flight (``bpf_map_write_active``)."""
        if self.max_entries != 1 or not 0 <= off < self.value_size or \
                off + size > self.value_size or size not in (1, 2, 4, 8):
            raise ValueError(f"no direct read of {size} bytes at {off}")
        if self.writecnt:
            raise ValueError("map write in progress")
        return int.from_bytes(self.vmv[off:off + size], "little")

    def mmap(self, writable: bool = True, length: int | None = None, offset: int = 0
             ) -> MapMmap:
        """A shared mapping of the values (``BPF_F_MMAPABLE`` arrays only), kernel rules:
        see :mod:`pybpf.maps.mmap_view`."""
        return map_mmap(self, writable, length, offset)


class ArrayOps(BaseMapOps):
    map_type = BPF_MAP_TYPE_ARRAY
    percpu_values = False

    def map_alloc_check(self, attr: MapAttr) -> None:
        array_map_alloc_check(attr)

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        return ArrayMap(self, attr)

    def map_check_btf(self, bmap: BpfMap, btf: Any, key_id: int, value_id: int) -> None:
        """``array_map_check_btf``: the key is a plain 32-bit integer; only global data
        (a one-element array whose value is a DATASEC) may have no key type."""
        if not key_id:
            if bmap.map_type != BPF_MAP_TYPE_ARRAY or bmap.max_entries != 1 or \
                    not isinstance(btf.resolve(value_id), BtfDatasec):
                raise BpfError(errno.EINVAL, "a keyless array BTF is for global data only")
            return
        key = btf.resolve(key_id)
        if not isinstance(key, BtfInt) or key.bits != 32 or key.bit_offset:
            raise BpfError(errno.EINVAL, "an array's BTF key must be a 32-bit integer")

    def mem_usage(self, bmap: BpfMap) -> int:
        size = bmap.max_entries * bmap.value_stride
        if bmap.map_flags & BPF_F_MMAPABLE:
            return round_up(SIZEOF_BPF_ARRAY, PAGE_SIZE) + round_up(size, PAGE_SIZE)
        return SIZEOF_BPF_ARRAY + size

    def native_layout(self, bmap: BpfMap) -> dict[str, int]:
        assert isinstance(bmap, ArrayMap)
        return {"header": bmap.addr, "values": bmap.base, "elem_size": bmap.value_stride,
                "max_entries": bmap.max_entries}

    # -- syscall side -----------------------------------------------------------------
    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        assert isinstance(bmap, ArrayMap)
        index = int.from_bytes(key[:4], "little")
        if index >= bmap.max_entries:
            raise BpfError(errno.ENOENT)
        off = index * bmap.value_stride
        data = bmap.vmv[off:off + bmap.value_size].tobytes()
        return value_with_lock_zeroed(data, bmap.spin_lock_off)

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        # array_map_update_elem: a plain copy into the element (no lock, as in Linux:
        # the element never moves, so concurrent readers may see a mix of old and new)
        if flags:
            if (flags & ~BPF_F_LOCK) > BPF_EXIST:
                raise BpfError(errno.EINVAL)
            if flags & BPF_NOEXIST:
                index = int.from_bytes(key[:4], "little")
                raise BpfError(errno.E2BIG if index >= bmap.max_entries else errno.EEXIST)
        index = int.from_bytes(key[:4], "little")
        if index >= bmap.max_entries:
            raise BpfError(errno.E2BIG)
        off = index * bmap.value_stride
        if bmap.spin_lock_off < 0 and len(value) == bmap.value_size:
            bmap.vmv[off:off + bmap.value_size] = value  # type: ignore[attr-defined]
        else:
            with bmap.lock:
                store_value(bmap.vmv, off, value, bmap.value_size,  # type: ignore[attr-defined]
                            bmap.spin_lock_off)

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        raise BpfError(errno.EINVAL)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        return array_get_next_key(bmap, key)

    def sys_lookup_batch(self, bmap: BpfMap, in_batch: bytes | None, count: int,
                         elem_flags: int, flags: int) -> BatchResult:
        return self.fast_lookup_batch(bmap, in_batch, count, elem_flags, flags)

    def fast_lookup_batch(self, bmap: BpfMap, in_batch: bytes | None, count: int,
                          elem_flags: int, flags: int) -> BatchResult:
        """``generic_map_lookup_batch`` for arrays, as slices (every index exists)."""
        if bmap.spin_lock_off >= 0 or not count or elem_flags:
            return generic_lookup_batch(self, bmap, in_batch, count, elem_flags, flags)
        assert isinstance(bmap, ArrayMap)
        start = 0
        if in_batch is not None:
            prev = int.from_bytes(in_batch[:4], "little")
            start = 0 if prev >= bmap.max_entries else prev + 1
            if prev == bmap.max_entries - 1:
                return BatchResult(0, err=errno.ENOENT)
        end = min(bmap.max_entries, start + count)
        n = end - start
        keys = np.arange(start, end, dtype="<u4").tobytes()
        values = self.slice_values(bmap, start, end)
        err = errno.ENOENT if n < count else 0
        return BatchResult(n, keys, values, (end - 1).to_bytes(4, "little"), err)

    def slice_values(self, bmap: ArrayMap, start: int, end: int) -> bytes:
        stride, vs = bmap.value_stride, bmap.value_size
        raw = bmap.vmv[start * stride:end * stride]
        if stride == vs:
            return raw.tobytes()
        return np.frombuffer(raw, np.uint8).reshape(end - start, stride)[:, :vs].tobytes()

    def sys_update_batch(self, bmap: BpfMap, keys: bytes, values: bytes, count: int,
                         elem_flags: int, flags: int) -> BatchResult:
        """``generic_map_update_batch``; without a spin lock, one vectorised scatter."""
        assert isinstance(bmap, ArrayMap)
        vs = self.sys_value_size(bmap)
        block = vs
        if (elem_flags or bmap.spin_lock_off >= 0 or not count
                or len(keys) < 4 * count or len(values) < vs * count):
            return generic_update_batch(self, bmap, keys, values, count, elem_flags, flags)
        idx = np.frombuffer(keys, "<u4", count)
        if int(idx.max()) >= bmap.max_entries:
            return generic_update_batch(self, bmap, keys, values, count, elem_flags, flags)
        stride = bmap.value_stride * bmap.copies()
        table = np.frombuffer(bmap.vmv, np.uint8).reshape(bmap.max_entries, stride)
        with bmap.lock:
            table[idx, :block] = np.frombuffer(values, np.uint8, vs * count).reshape(count, vs)
        return BatchResult(count)

    # -- program side -----------------------------------------------------------------
    def map_lookup_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        assert isinstance(bmap, ArrayMap)
        index = bmap.mem.load(key_addr, 4)
        if index >= bmap.max_entries:
            return 0
        return bmap.base + index * bmap.value_stride

    def map_for_each_callback(self, bmap: BpfMap, callback: ForEachCallback,
                              cpu: int = 0) -> int:
        assert isinstance(bmap, ArrayMap)
        key = bmap.key_scratch
        n = 0
        for i in range(bmap.max_entries):
            key.mv[0:4] = i.to_bytes(4, "little")
            n += 1
            if callback(key.start, self.value_addr(bmap, i, cpu)):
                break
        return n

    def value_addr(self, bmap: ArrayMap, index: int, cpu: int) -> int:
        return bmap.base + index * bmap.value_stride


register_map_ops(ArrayOps())
