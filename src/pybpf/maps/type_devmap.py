"""``BPF_MAP_TYPE_DEVMAP`` and ``BPF_MAP_TYPE_DEVMAP_HASH``: network devices for XDP redirects.

As ``kernel/bpf/devmap.c``: a u32 key; a value that is ``struct bpf_devmap_val`` cut to 4
bytes (``ifindex``) or 8 (``ifindex`` + ``bpf_prog.fd``, an XDP program with expected
attach type ``BPF_XDP_DEVMAP`` run on each frame before it is sent). Lookups return
``{ifindex, bpf_prog.id}``; programs may read that value but never write it (the map is
created with ``BPF_F_RDONLY_PROG`` added to its flags). The devices are the instance's
(:mod:`pybpf.net.device`; ifindex 1, the loopback, always exists).

DEVMAP is an array: an update of ``ifindex`` 0 empties the slot, ``BPF_NOEXIST`` is
EEXIST, delete always succeeds in range. DEVMAP_HASH is a hash over
``roundup_pow_of_two(max_entries)`` buckets; :func:`sys_get_next_key` walks them in the
kernel's order (bucket by bucket, newest first within a bucket), so iteration matches.

``bpf_redirect_map`` (:mod:`pybpf.helpers.xdp`) finds an entry through
:meth:`DevMapOps.redirect_entry`; sending the frame (the entry's program, broadcasts) is
:mod:`pybpf.net.xdp_redirect`'s business, once the XDP program has returned.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import Any

from pybpf.errors import BpfError
from pybpf.maps.arraybase import array_get_next_key
from pybpf.maps.base import BaseMapOps
from pybpf.maps.common import check_mem
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.fdmaps import resolve_fd
from pybpf.maps.ops import register_map_ops
from pybpf.maps.storage import alloc_region
from pybpf.runtime.memory import Region
from pybpf.uapi import (
    BPF_EXIST,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY,
    BPF_MAP_TYPE_DEVMAP,
    BPF_MAP_TYPE_DEVMAP_HASH,
    BPF_NOEXIST,
)

ENOTSUPP = 524
DEV_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY
VAL_IFINDEX_SIZE, VAL_PROG_SIZE = 4, 8  # offsetofend(bpf_devmap_val, ifindex / bpf_prog.fd)
PROG_TYPE_XDP, BPF_XDP_DEVMAP = 6, 33
SIZEOF_BPF_DTAB = 320  # sizeof(struct bpf_dtab), for mem_usage
SIZEOF_DTAB_NETDEV = 64  # sizeof(struct bpf_dtab_netdev)
BPF_F_BROADCAST, BPF_F_EXCLUDE_INGRESS = 1 << 3, 1 << 4
_VAL = struct.Struct("<Ii")
_U32 = struct.Struct("<I")


@dataclass
class DevEntry:
    """``struct bpf_dtab_netdev``: the device, its optional program, and the native
    ``struct bpf_devmap_val`` programs read (``region`` at ``offset``)."""

    idx: int
    ifindex: int
    dev: Any
    prog: Any
    region: Region | None = None
    offset: int = 0

    @property
    def prog_id(self) -> int:
        return int(getattr(self.prog, "id", 0)) if self.prog is not None else 0

    @property
    def value_addr(self) -> int:
        assert self.region is not None
        return self.region.start + self.offset


def _roundup_pow_of_two(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _dev_get_by_index(kernel: Any, ifindex: int) -> Any:
    """``dev_get_by_index`` in the instance's namespace (the loopback is ifindex 1)."""
    from pybpf.progs.testrun_common import dev_get_by_index

    return dev_get_by_index(kernel, ifindex)


class DevMap(BpfMap):
    """Entries by index (DEVMAP: values in one array region, as ``netdev_map``) or in
    buckets (DEVMAP_HASH: one small region per entry, as the kernel allocates nodes)."""

    def __init__(self, ops: BaseMapOps, attr: MapAttr) -> None:
        super().__init__(ops, attr)
        self.is_hash = attr.map_type == BPF_MAP_TYPE_DEVMAP_HASH
        self.n_buckets = _roundup_pow_of_two(self.max_entries) if self.is_hash else 0
        check_mem(8 * (self.n_buckets or self.max_entries))
        self.array: Region | None = None
        if not self.is_hash:
            self.array = alloc_region(self, VAL_PROG_SIZE * self.max_entries, "devmap values",
                                      writable=False)
        self.entries: dict[int, DevEntry] = {}  # idx -> entry
        self.buckets: dict[int, list[int]] = {}  # bucket -> idx chain, newest first
        self.write_header(elem_size=VAL_PROG_SIZE,
                          data=self.array.start if self.array is not None else 0)

    def chain(self, idx: int) -> list[int]:
        return self.buckets.setdefault(idx & (self.n_buckets - 1), [])

    def value_bytes(self, entry: DevEntry) -> bytes:
        return _VAL.pack(entry.ifindex, entry.prog_id)[:self.value_size]

    def place(self, entry: DevEntry) -> None:
        """Give ``entry`` its native value."""
        if self.array is not None:
            entry.region, entry.offset = self.array, VAL_PROG_SIZE * entry.idx
        else:
            entry.region = self.mem.alloc(VAL_PROG_SIZE, f"map {self.name!r} devmap value",
                                          writable=False, owner=self)
            entry.offset = 0
        entry.region.mv[entry.offset:entry.offset + VAL_PROG_SIZE] = \
            _VAL.pack(entry.ifindex, entry.prog_id)

    def drop(self, entry: DevEntry) -> None:
        """``__dev_map_entry_free``: release the program and the value."""
        if entry.prog is not None and hasattr(entry.prog, "put"):
            entry.prog.put()
        if entry.region is self.array and entry.region is not None:
            if self.entries.get(entry.idx) is None:
                entry.region.mv[entry.offset:entry.offset + VAL_PROG_SIZE] = bytes(8)
        elif entry.region is not None:
            self.mem.remove(entry.region)
        entry.region = None

    def free_all(self) -> None:
        for entry in list(self.entries.values()):
            self.entries.pop(entry.idx, None)
            self.drop(entry)
        self.buckets.clear()


class DevMapOps(BaseMapOps):
    """``dev_map_ops`` / ``dev_map_hash_ops``."""

    map_type = BPF_MAP_TYPE_DEVMAP
    redirect_flags = BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS  # bpf_redirect_map may take

    # -- creation ---------------------------------------------------------------------
    def map_alloc_check(self, attr: MapAttr) -> None:
        """``dev_map_alloc_check``."""
        if (attr.max_entries == 0 or attr.key_size != 4
                or attr.value_size not in (VAL_IFINDEX_SIZE, VAL_PROG_SIZE)
                or attr.map_flags & ~DEV_CREATE_FLAG_MASK):
            raise BpfError(errno.EINVAL)
        if attr.map_type == BPF_MAP_TYPE_DEVMAP_HASH and attr.max_entries > 1 << 31:
            raise BpfError(errno.EINVAL)

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        # the value is a pointer straight at the device entry: programs may only read it;
        # bpf_map_init_from_attr keeps the fd's access mode out of map_flags
        attr.map_flags = (attr.map_flags | BPF_F_RDONLY_PROG) & ~(BPF_F_RDONLY | BPF_F_WRONLY)
        return DevMap(self, attr)

    def map_free(self, bmap: BpfMap) -> None:
        assert isinstance(bmap, DevMap)
        bmap.free_all()
        super().map_free(bmap)

    def map_check_btf(self, bmap: BpfMap, btf: Any, key_id: int, value_id: int) -> None:
        """``map_check_no_btf``."""
        raise BpfError(ENOTSUPP, "devmaps take no BTF")

    def mem_usage(self, bmap: BpfMap) -> int:
        assert isinstance(bmap, DevMap)
        usage = SIZEOF_BPF_DTAB + 8 * (bmap.n_buckets if bmap.is_hash else bmap.max_entries)
        return usage + len(bmap.entries) * SIZEOF_DTAB_NETDEV

    def native_layout(self, bmap: BpfMap) -> dict[str, int]:
        assert isinstance(bmap, DevMap)
        return {"header": bmap.addr, "values": bmap.array.start if bmap.array else 0}

    # -- entries ----------------------------------------------------------------------
    def _alloc_node(self, bmap: DevMap, idx: int, value: bytes) -> DevEntry:
        """``__dev_map_alloc_node``: the device must exist; a program fd > 0 must be an
        XDP program for devmaps. Every failure is EINVAL."""
        ifindex, prog_fd = _VAL.unpack((value + bytes(8))[:8])
        dev = _dev_get_by_index(bmap.kernel, ifindex)
        if dev is None:
            raise BpfError(errno.EINVAL, f"no device with ifindex {ifindex}")
        prog = None
        if bmap.value_size >= VAL_PROG_SIZE and prog_fd > 0:
            try:
                prog = resolve_fd(bmap, prog_fd, "prog")
            except BpfError:
                raise BpfError(errno.EINVAL, f"fd {prog_fd} is not a program") from None
            if getattr(prog, "type", None) != PROG_TYPE_XDP \
                    or getattr(prog, "expected_attach_type", 0) != BPF_XDP_DEVMAP:
                if hasattr(prog, "put"):
                    prog.put()
                raise BpfError(errno.EINVAL, "devmap programs are XDP with BPF_XDP_DEVMAP")
        return DevEntry(idx, ifindex, dev, prog)

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        """``__dev_map_update_elem``."""
        assert isinstance(bmap, DevMap)
        idx = _U32.unpack_from(key)[0]
        if flags > BPF_EXIST:
            raise BpfError(errno.EINVAL)
        if idx >= bmap.max_entries:
            raise BpfError(errno.E2BIG)
        if flags == BPF_NOEXIST:
            raise BpfError(errno.EEXIST)
        ifindex, prog_fd = _VAL.unpack((value + bytes(8))[:8])
        if bmap.value_size < VAL_PROG_SIZE:
            prog_fd = 0
        with bmap.lock:
            if not ifindex:
                if prog_fd > 0:
                    raise BpfError(errno.EINVAL, "a program needs a device")
                old = bmap.entries.pop(idx, None)
            else:
                entry = self._alloc_node(bmap, idx, value[:bmap.value_size])
                old = bmap.entries.get(idx)
                bmap.entries[idx] = entry
                bmap.place(entry)
            if old is not None:
                bmap.drop(old)

    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        assert isinstance(bmap, DevMap)
        entry = bmap.entries.get(_U32.unpack_from(key)[0])
        if entry is None:
            raise BpfError(errno.ENOENT)
        return bmap.value_bytes(entry)

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        """``dev_map_delete_elem``: EINVAL out of range, else success (empty or not)."""
        assert isinstance(bmap, DevMap)
        idx = _U32.unpack_from(key)[0]
        if idx >= bmap.max_entries:
            raise BpfError(errno.EINVAL)
        with bmap.lock:
            old = bmap.entries.pop(idx, None)
            if old is not None:
                bmap.drop(old)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        """``dev_map_get_next_key``: array order over all slots, occupied or not."""
        return array_get_next_key(bmap, key)

    # -- program side -----------------------------------------------------------------
    def lookup_entry(self, bmap: BpfMap, idx: int) -> DevEntry | None:
        assert isinstance(bmap, DevMap)
        return bmap.entries.get(idx & 0xFFFFFFFF)

    def map_lookup_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        assert isinstance(bmap, DevMap)
        idx = _U32.unpack(bmap.mem.read(key_addr, 4))[0]
        entry = self.lookup_entry(bmap, idx)
        return entry.value_addr if entry is not None else 0

    def map_update_elem(self, bmap: BpfMap, key_addr: int, value_addr: int, flags: int,
                        cpu: int = 0) -> int:
        return -errno.EOPNOTSUPP  # the verifier never lets programs update devmaps

    def map_delete_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        return -errno.EOPNOTSUPP

    def redirect_entry(self, bmap: BpfMap, idx: int) -> DevEntry | None:
        """The entry ``bpf_redirect_map`` finds for ``idx`` (``__dev_map_lookup_elem``)."""
        return self.lookup_entry(bmap, idx)

    def redirect_target(self, bmap: BpfMap, idx: int) -> int | None:
        entry = self.lookup_entry(bmap, idx)
        return entry.ifindex if entry is not None else None

    def all_entries(self, bmap: BpfMap) -> list[DevEntry]:
        """Every entry, in the order a broadcast visits them."""
        assert isinstance(bmap, DevMap)
        return [bmap.entries[i] for i in sorted(bmap.entries)]


class DevMapHashOps(DevMapOps):
    map_type = BPF_MAP_TYPE_DEVMAP_HASH

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        """``__dev_map_hash_update_elem``."""
        assert isinstance(bmap, DevMap)
        idx = _U32.unpack_from(key)[0]
        ifindex = _U32.unpack_from(value)[0]
        if flags > BPF_EXIST or not ifindex:
            raise BpfError(errno.EINVAL)
        with bmap.lock:
            old = bmap.entries.get(idx)
            if old is not None and flags & BPF_NOEXIST:
                raise BpfError(errno.EEXIST)
            entry = self._alloc_node(bmap, idx, value[:bmap.value_size])
            chain = bmap.chain(idx)
            if old is not None:
                chain.remove(idx)
            elif len(bmap.entries) >= bmap.max_entries:
                bmap.drop(entry)
                raise BpfError(errno.E2BIG)
            chain.insert(0, idx)
            bmap.entries[idx] = entry
            bmap.place(entry)
            if old is not None:
                bmap.drop(old)

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        assert isinstance(bmap, DevMap)
        idx = _U32.unpack_from(key)[0]
        with bmap.lock:
            old = bmap.entries.pop(idx, None)
            if old is None:
                raise BpfError(errno.ENOENT)
            bmap.chain(idx).remove(idx)
            bmap.drop(old)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        """``dev_map_hash_get_next_key``: next in the key's bucket, else the first entry
        of a later bucket; an absent key starts over from the first bucket."""
        assert isinstance(bmap, DevMap)
        start = 0
        if key is not None:
            idx = _U32.unpack_from(key)[0]
            if idx in bmap.entries:
                chain = bmap.chain(idx)
                pos = chain.index(idx)
                if pos + 1 < len(chain):
                    return _U32.pack(chain[pos + 1])
                start = (idx & (bmap.n_buckets - 1)) + 1
        for bucket in sorted(b for b, chain in bmap.buckets.items() if chain and b >= start):
            return _U32.pack(bmap.buckets[bucket][0])
        raise BpfError(errno.ENOENT)

    def all_entries(self, bmap: BpfMap) -> list[DevEntry]:
        assert isinstance(bmap, DevMap)
        return [bmap.entries[i] for _b, chain in sorted(bmap.buckets.items()) for i in chain]


register_map_ops(DevMapOps())
register_map_ops(DevMapHashOps())
