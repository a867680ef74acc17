"""``pybpf.Map``: a map as a Python ``MutableMapping`` with BCC's method names.

``Map.create(map_type, key_size, value_size, max_entries, flags=...)`` makes a standalone
map over the :mod:`~pybpf.maps.ops` tables; ``Map(bmap)`` wraps a map that a kernel
instance or the loader created. Keys and values go through codecs
(:mod:`pybpf.maps.codec`): ints, bytes, ctypes objects, or BTF-typed views. Per-CPU maps
return :class:`PerCpuValues` lists. Bulk reads (:meth:`Map.values_array`,
:meth:`Map.keys_array`) build numpy arrays from one batch pass over native memory.
Every operation takes the map's lock, so Python threads and running programs can share
a map. Errors are :class:`~pybpf.errors.BpfError` (``KeyError`` for a missing key in
``m[k]`` / ``del m[k]``, as a mapping should).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import numpy as np

from pybpf.errors import BpfError
from pybpf.maps import elem_cmds
from pybpf.maps.codec import Codec, make_codec
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.histogram import (
    LINEAR_INDEX_MAX,
    LOG2_INDEX_MAX,
    print_linear_hist,
    print_log2_hist,
)
from pybpf.maps.ops import find_map_ops


class PerCpuValues(list[Any]):
    """One value per possible CPU, with BCC's reductions."""

    def sum(self) -> Any:
        return sum(self)

    def max(self) -> Any:
        return max(self)

    def average(self) -> float:
        return sum(self) / len(self)


def create_map(map_type: int, key_size: int, value_size: int, max_entries: int,
               flags: int = 0, *, map_extra: int = 0, name: bytes = b"",
               inner_map: BpfMap | None = None, **attrs: Any) -> BpfMap:
    """MAP_CREATE on the map side: type lookup, ``map_alloc_check``, ``map_alloc``."""
    from pybpf.uapi import BPF_F_RDONLY, BPF_F_WRONLY, BPF_MAP_TYPE_ARENA, BPF_MAP_TYPE_BLOOM_FILTER

    if map_type not in (BPF_MAP_TYPE_BLOOM_FILTER, BPF_MAP_TYPE_ARENA) and map_extra:
        raise BpfError(errno.EINVAL)
    if flags & BPF_F_RDONLY and flags & BPF_F_WRONLY:
        raise BpfError(errno.EINVAL)
    ops = find_map_ops(map_type)
    if ops is None:
        raise BpfError(errno.EINVAL, f"unknown map type {map_type}")
    attr = MapAttr(map_type, key_size, value_size, max_entries, flags, map_extra, name,
                   inner_map=inner_map, **attrs)
    ops.map_alloc_check(attr)
    return ops.map_alloc(attr)


class Map(MutableMapping[Any, Any]):
    """A BPF map from Python (BCC's ``TableBase`` names and behaviour)."""

    def __init__(self, bmap: BpfMap, key_type: Any = None, value_type: Any = None) -> None:
        self.bmap = bmap
        self.ops = bmap.ops
        vsize = self.ops.sys_value_size(bmap)  # type: ignore[attr-defined]
        self.percpu = bool(getattr(self.ops, "percpu_values", False))
        self.key_codec: Codec = make_codec(key_type, bmap.key_size)
        self.value_codec: Codec = make_codec(value_type, bmap.value_size if self.percpu
                                             else vsize)
        self.vsize = vsize
        self.can_read, self.can_write = elem_cmds.default_perms(bmap)
        self._readable = self.can_read
        self._ks = bmap.key_size
        self._lookup = self.ops.sys_lookup
        self._update = self.ops.sys_update
        self._kenc = self.key_codec.encode
        self._vdec = self.value_codec.decode
        self._venc = self.value_codec.encode
        # plain values and a writable fd: __setitem__ may take the map's fast path
        self._plain = not self.percpu and not getattr(self.ops, "fd_values", False) \
            and self.can_write

    @classmethod
    def create(cls, map_type: int, key_size: int, value_size: int, max_entries: int,
               flags: int = 0, *, key_type: Any = None, value_type: Any = None,
               **kwargs: Any) -> Map:
        return cls(create_map(map_type, key_size, value_size, max_entries, flags, **kwargs),
                   key_type, value_type)

    # -- codecs -----------------------------------------------------------------------
    def _decode_value(self, data: bytes) -> Any:
        if not self.percpu:
            return self._vdec(data)
        stride = self.bmap.value_stride
        vs = self.bmap.value_size
        return PerCpuValues(self._vdec(data[i * stride:i * stride + vs])
                            for i in range(self.bmap.nr_cpus))

    def _encode_value(self, value: Any) -> bytes:
        if not self.percpu:
            return self._venc(value)
        stride = self.bmap.value_stride
        if not isinstance(value, (list, tuple)):
            value = [value] * self.bmap.nr_cpus
        if len(value) != self.bmap.nr_cpus:
            raise ValueError(f"per-CPU value needs {self.bmap.nr_cpus} entries")
        return b"".join(self._venc(v).ljust(stride, b"\0") for v in value)

    def _check_write(self) -> None:
        if self.bmap.frozen or not self.can_write:
            raise BpfError(errno.EPERM)

    # -- MutableMapping -----------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        kb = key if type(key) is bytes and len(key) == self._ks else self._kenc(key)
        fast = self.bmap.fast_lookup
        if fast is not None and self._readable:
            data = fast(kb)
            if data is None:
                raise KeyError(key)
            return self._vdec(data)
        if not self.can_read:
            raise BpfError(errno.EPERM)
        try:
            data = self._lookup(self.bmap, kb, 0)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                raise KeyError(key) from None
            raise
        if self.percpu:
            return self._decode_value(data)
        return self._vdec(data)

    def __setitem__(self, key: Any, value: Any) -> None:
        if self._plain:
            bmap = self.bmap
            fast = bmap.fast_update
            if fast is not None and not bmap.frozen:
                err = fast(key if type(key) is bytes and len(key) == self._ks
                           else self._kenc(key), self._venc(value))
                if err:
                    raise BpfError(err)
                return
            if bmap.frozen:
                raise BpfError(errno.EPERM)
            self._update(bmap, self._kenc(key), self._venc(value), 0)
            return
        self.update_elem(key, value, 0)

    def update_elem(self, key: Any, value: Any, flags: int = 0) -> None:
        """``BPF_MAP_UPDATE_ELEM`` with explicit flags (BPF_ANY/NOEXIST/EXIST/F_LOCK)."""
        if self.bmap.frozen or not self.can_write:
            raise BpfError(errno.EPERM)
        if getattr(self.ops, "fd_values", False) and not isinstance(value, (int, bytes)):
            self.ops.put_object(self.bmap, self._kenc(key), getattr(value, "bmap", value),  # type: ignore[attr-defined]
                                flags)
            return
        if flags:
            elem_cmds.map_update_elem(self.bmap, self._kenc(key), self._encode_value(value),
                                      flags)
            return
        self._update(self.bmap, self._kenc(key), self._encode_value(value), 0)

    def __delitem__(self, key: Any) -> None:
        bmap = self.bmap
        fast = bmap.fast_delete
        if fast is not None and self._plain and not bmap.frozen:
            # raw key bytes need no codec (every codec passes them through unchanged)
            if fast(key if type(key) is bytes and len(key) == self._ks else self._kenc(key)):
                raise KeyError(key)
            return
        self._check_write()
        try:
            self.ops.sys_delete(self.bmap, self._kenc(key))
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                raise KeyError(key) from None
            raise

    def get_next_key(self, key: Any = None) -> Any:
        kb = None if key is None else self._kenc(key)
        return self.key_codec.decode(elem_cmds.map_get_next_key(self.bmap, kb))

    def _raw_keys(self) -> Iterator[bytes]:
        key: bytes | None = None
        get_next = self.ops.sys_get_next_key
        while True:
            try:
                key = get_next(self.bmap, key)
            except BpfError as exc:
                if exc.errno == errno.ENOENT:
                    return
                raise
            yield key

    def __iter__(self) -> Iterator[Any]:
        dec = self.key_codec.decode
        for kb in self._raw_keys():
            yield dec(kb)

    def __len__(self) -> int:
        return sum(1 for _ in self._raw_keys())

    def __contains__(self, key: object) -> bool:
        try:
            self._lookup(self.bmap, self._kenc(key), 0)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        """(key, value) pairs, read with batch lookups where the map supports them."""
        keys, values = self._dump()
        kdec = self.key_codec.decode
        return [(kdec(k), self._decode_value(v)) for k, v in zip(keys, values, strict=True)]

    def keys(self) -> list[Any]:  # type: ignore[override]
        return [k for k, _ in self.items()]

    def values(self) -> list[Any]:  # type: ignore[override]
        return [v for _, v in self.items()]

    def clear(self) -> None:
        """Delete every element (arrays: zero every value, as BCC does)."""
        self._check_write()
        from pybpf.maps.htab import HashTab

        if isinstance(self.bmap, HashTab):
            self.bmap.clear()
            return
        zero = bytes(self.vsize)
        for kb in list(self._raw_keys()):
            try:
                self.ops.sys_delete(self.bmap, kb)
            except BpfError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._update(self.bmap, kb, zero, 0)

    def zero(self) -> None:
        for kb in list(self._raw_keys()):
            self._update(self.bmap, kb, bytes(self.vsize), 0)

    # -- raw dumps / batch ----------------------------------------------------------------
    def _dump(self) -> tuple[list[bytes], list[bytes]]:
        ks, vs = self.bmap.key_size, self.vsize
        try:
            res = elem_cmds.map_batch(self.bmap, "lookup", count=1 << 30)
        except BpfError as exc:
            if exc.errno != 524:
                raise
            keys = list(self._raw_keys())
            values = []
            kept = []
            for k in keys:
                try:
                    values.append(self._lookup(self.bmap, k, 0))
                    kept.append(k)
                except BpfError as exc2:
                    if exc2.errno != errno.ENOENT:
                        raise
            return kept, values
        n = res.count
        return ([res.keys[i * ks:(i + 1) * ks] for i in range(n)],
                [res.values[i * vs:(i + 1) * vs] for i in range(n)])

    def items_lookup_batch(self) -> Iterator[tuple[Any, Any]]:
        yield from self.items()

    def items_lookup_and_delete_batch(self) -> Iterator[tuple[Any, Any]]:
        ks, vs = self.bmap.key_size, self.vsize
        res = elem_cmds.map_batch(self.bmap, "lookup_and_delete", count=1 << 30)
        for i in range(res.count):
            yield (self.key_codec.decode(res.keys[i * ks:(i + 1) * ks]),
                   self._decode_value(res.values[i * vs:(i + 1) * vs]))

    def items_update_batch(self, keys: Any, values: Any, flags: int = 0) -> int:
        """Update many elements in one call; ``keys``/``values`` are sequences or arrays."""
        kb = self._pack(keys, self._kenc)
        vb = self._pack(values, self._encode_value)
        count = len(kb) // max(self.bmap.key_size, 1)
        res = elem_cmds.map_batch(self.bmap, "update", keys=kb, values=vb, count=count,
                                  elem_flags=flags)
        if res.err:
            raise BpfError(res.err)
        return res.count

    def items_delete_batch(self, keys: Any = None) -> int:
        if keys is None:
            kb = b"".join(self._raw_keys())
        else:
            kb = self._pack(keys, self._kenc)
        count = len(kb) // max(self.bmap.key_size, 1)
        res = elem_cmds.map_batch(self.bmap, "delete", keys=kb, count=count)
        if res.err:
            raise BpfError(res.err)
        return res.count

    @staticmethod
    def _pack(items: Any, enc: Callable[[Any], bytes]) -> bytes:
        if isinstance(items, np.ndarray):
            return np.ascontiguousarray(items).tobytes()
        if isinstance(items, (bytes, bytearray, memoryview)):
            return bytes(items)
        return b"".join(enc(x) for x in items)

    # -- numpy bulk -----------------------------------------------------------------------
    def keys_array(self, dtype: Any = None) -> np.ndarray:
        keys, _ = self._dump()
        raw = b"".join(keys)
        if dtype is None:
            dtype = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}.get(self.bmap.key_size)
        if dtype is None:
            return np.frombuffer(raw, np.uint8).reshape(-1, self.bmap.key_size)
        return np.frombuffer(raw, dtype)

    def values_array(self, dtype: Any = None) -> np.ndarray:
        """All values at once; per-CPU maps give shape ``(n, nr_cpus)`` (or ``(n, nr_cpus, stride)``)."""
        from pybpf.maps.type_array import ArrayMap

        b = self.bmap
        if isinstance(b, ArrayMap) and b.spin_lock_off < 0:
            n = b.max_entries
            raw = b.vmv[:n * b.value_stride * b.copies()].tobytes()  # mmapable: page-padded
        else:
            _, values = self._dump()
            raw = b"".join(values)
            n = len(values)
        stride = b.value_stride
        if dtype is None:
            dtype = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}.get(b.value_size)
        if isinstance(b, ArrayMap) or self.percpu:
            copies = b.nr_cpus if self.percpu else 1
            arr = np.frombuffer(raw, np.uint8).reshape(n, copies, stride)[:, :, :b.value_size]
            if dtype is not None:
                arr = np.ascontiguousarray(arr).view(dtype).reshape(n, copies)
            return arr if self.percpu else arr.reshape(n, -1) if dtype is None else arr[:, 0]
        if dtype is None:
            return np.frombuffer(raw, np.uint8).reshape(n, self.vsize)
        return np.frombuffer(raw, dtype)

    def mmap(self, writable: bool = True, length: int | None = None, offset: int = 0) -> Any:
        """A shared mapping of a ``BPF_F_MMAPABLE`` array's values (an ``mmap.mmap``).

        Linux's rules apply (:mod:`pybpf.maps.mmap_view`): a writable mapping of a frozen
        map is EPERM, and FREEZE is EBUSY while a writable mapping is open — close it
        (or use it in a ``with`` block) when done.
        """
        from pybpf.maps.mmap_view import map_mmap

        return map_mmap(self.bmap, writable, length, offset, self.can_write, self.can_read)

    def as_numpy(self, dtype: Any = np.uint8, writable: bool = True) -> np.ndarray:
        """A numpy view (no copy) on a ``BPF_F_MMAPABLE`` array's values.

        One element per value when ``dtype`` has the value's size (values are padded to 8
        bytes in memory, so other sizes see the raw pages). The view keeps its mapping
        alive (and, if writable, counted as a writer) until the array is released.
        """
        mapping = self.mmap(writable)
        dt = np.dtype(dtype)
        b = self.bmap
        n, stride = b.max_entries, b.value_stride
        if dt.itemsize == b.value_size and stride != b.value_size:
            raw = np.frombuffer(mapping, np.uint8, n * stride).reshape(n, stride)
            return raw[:, :b.value_size].view(dt).reshape(n)
        if dt.itemsize == b.value_size:
            return np.frombuffer(mapping, dt, n)
        return np.frombuffer(mapping, dt)

    # -- per-CPU reductions (BCC PerCpuHash/PerCpuArray) ----------------------------------
    def sum(self, key: Any) -> Any:
        return self[key].sum()

    def max(self, key: Any) -> Any:
        return self[key].max()

    def average(self, key: Any) -> float:
        return self[key].average()

    # -- queue / stack / bloom ------------------------------------------------------------
    def push(self, value: Any, flags: int = 0) -> None:
        elem_cmds.map_update_elem(self.bmap, b"", self._encode_value(value), flags)

    def pop(self, *default: Any) -> Any:
        try:
            return self._vdec(elem_cmds.map_lookup_and_delete_elem(self.bmap, None))
        except BpfError as exc:
            if exc.errno == errno.ENOENT and default:
                return default[0]
            if exc.errno == errno.ENOENT:
                raise KeyError("empty") from None
            raise

    def peek(self) -> Any:
        try:
            return self._vdec(elem_cmds.map_lookup_elem(self.bmap, b""))
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                raise KeyError("empty") from None
            raise

    def contains_value(self, value: Any) -> bool:
        """Bloom filter membership (False = definitely absent)."""
        try:
            elem_cmds.map_lookup_elem(self.bmap, b"", 0, self._encode_value(value))
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def freeze(self) -> None:
        elem_cmds.map_freeze(self.bmap)

    # -- histograms -----------------------------------------------------------------------
    def _hist_vals(self, size: int) -> list[int]:
        vals = [0] * size
        for k, v in self.items():
            idx = k if isinstance(k, int) else int(getattr(k, "value", 0))
            val = v.sum() if isinstance(v, PerCpuValues) else v
            if 0 <= idx < size:
                vals[idx] = int(getattr(val, "value", val))
        return vals

    def print_log2_hist(self, val_type: str = "value", section_header: str = "Bucket ptr",
                        section_print_fn: Any = None, bucket_fn: Any = None,
                        strip_leading_zero: bool | None = None,
                        bucket_sort_fn: Any = None) -> None:
        print_log2_hist(self._hist_vals(LOG2_INDEX_MAX), val_type, strip_leading_zero)

    def print_linear_hist(self, val_type: str = "value", section_header: str = "Bucket ptr",
                          section_print_fn: Any = None, bucket_fn: Any = None,
                          strip_leading_zero: bool | None = None,
                          bucket_sort_fn: Any = None) -> None:
        print_linear_hist(self._hist_vals(LINEAR_INDEX_MAX), val_type, strip_leading_zero)

    # -- event readers --------------------------------------------------------------------
    def open_ring_buffer(self, callback: Callable[[bytes], int | None]) -> Any:
        from pybpf.maps.ringbuf_consumer import RingBufConsumer

        return RingBufConsumer(self.bmap, callback)

    def user_ring_buffer(self) -> Any:
        """A producer for a USER_RINGBUF map (libbpf's ``user_ring_buffer__new``)."""
        from pybpf.maps.user_ringbuf_producer import UserRingBuffer

        return UserRingBuffer(self.bmap)

    def open_perf_buffer(self, callback: Callable[[int, bytes], None], page_cnt: int = 8,
                         lost_cb: Callable[[int, int], None] | None = None) -> Any:
        from pybpf.maps.perf_reader import PerfBuffer

        return PerfBuffer(self.bmap, page_cnt, callback, lost_cb)

    # -- info -------------------------------------------------------------------------------
    @property
    def map_type(self) -> int:
        return self.bmap.map_type

    def mem_usage(self) -> int:
        return self.ops.mem_usage(self.bmap)

    def close(self) -> None:
        self.ops.map_free(self.bmap)

    def __repr__(self) -> str:
        b = self.bmap
        return (f"<Map type={b.map_type} key_size={b.key_size} value_size={b.value_size} "
                f"max_entries={b.max_entries}>")
