"""``BPF_MAP_TYPE_CPUMAP``: CPUs an XDP program may redirect frames to (``kernel/bpf/cpumap.c``).

A u32 key (the CPU) and a ``struct bpf_cpumap_val`` cut to 4 bytes (``qsize``, the
queue length; 0 empties the slot) or 8 (``qsize`` + ``bpf_prog.fd``: an XDP program with
expected attach type ``BPF_XDP_CPUMAP``). Creation refuses more entries than the
kernel's ``NR_CPUS`` (E2BIG); an update for a CPU that is not possible is ENODEV, a
queue beyond 16384 EOVERFLOW, and any failure to set the entry up — a bad program fd
included — ENOMEM, as ``__cpu_map_entry_alloc`` reports it. Lookups return
``{qsize, bpf_prog.id}``.

What a redirect to a CPU does (a kthread on that CPU builds an skb and passes it up the
stack) is not modelled by pybpf's devices; ``bpf_redirect_map`` gives the kernel's
verdicts (:mod:`pybpf.helpers.xdp`).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import Any

from pybpf.errors import BpfError
from pybpf.maps.arraybase import array_get_next_key
from pybpf.maps.base import BaseMapOps, NoProgElemOps
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.fdmaps import resolve_fd
from pybpf.maps.ops import register_map_ops
from pybpf.runtime.cpus import num_possible_cpus
from pybpf.uapi import BPF_EXIST, BPF_F_NUMA_NODE, BPF_MAP_TYPE_CPUMAP, BPF_NOEXIST

NR_CPUS = 256  # CONFIG_NR_CPUS of the reference 6.18 build (probed: 256 ok, 257 E2BIG)
QSIZE_MAX = 16384
VAL_QSIZE_SIZE, VAL_PROG_SIZE = 4, 8
PROG_TYPE_XDP, BPF_XDP_CPUMAP = 6, 35
SIZEOF_BPF_CPU_MAP = 256
_VAL = struct.Struct("<Ii")
_U32 = struct.Struct("<I")


@dataclass
class CpuEntry:
    """``struct bpf_cpu_map_entry``: the CPU, its queue length and optional program."""

    cpu: int
    qsize: int
    prog: Any

    @property
    def value(self) -> bytes:
        return _VAL.pack(self.qsize, int(getattr(self.prog, "id", 0)) if self.prog else 0)


class CpuMap(BpfMap):
    def __init__(self, ops: BaseMapOps, attr: MapAttr) -> None:
        super().__init__(ops, attr)
        self.entries: dict[int, CpuEntry] = {}


def _put(entry: CpuEntry | None) -> None:
    if entry is not None and entry.prog is not None and hasattr(entry.prog, "put"):
        entry.prog.put()


class CpuMapOps(NoProgElemOps):
    """``cpu_map_ops``."""

    map_type = BPF_MAP_TYPE_CPUMAP
    redirect_flags = 0  # bpf_redirect_map takes no BPF_F_BROADCAST here

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        """``cpu_map_alloc`` (the checks live there, not in an alloc_check)."""
        if (attr.max_entries == 0 or attr.key_size != 4
                or attr.value_size not in (VAL_QSIZE_SIZE, VAL_PROG_SIZE)
                or attr.map_flags & ~BPF_F_NUMA_NODE):
            raise BpfError(errno.EINVAL)
        if attr.max_entries > NR_CPUS:
            raise BpfError(errno.E2BIG)
        return CpuMap(self, attr)

    def map_free(self, bmap: BpfMap) -> None:
        assert isinstance(bmap, CpuMap)
        for entry in bmap.entries.values():
            _put(entry)
        bmap.entries.clear()
        super().map_free(bmap)

    def mem_usage(self, bmap: BpfMap) -> int:
        return SIZEOF_BPF_CPU_MAP + 8 * bmap.max_entries

    def _entry(self, bmap: CpuMap, cpu: int, qsize: int, prog_fd: int) -> CpuEntry:
        """``__cpu_map_entry_alloc``: NULL (ENOMEM) for every failure."""
        prog = None
        if prog_fd > 0:
            try:
                prog = resolve_fd(bmap, prog_fd, "prog")
            except BpfError:
                raise BpfError(errno.ENOMEM, f"fd {prog_fd}: no XDP program") from None
            if getattr(prog, "type", None) != PROG_TYPE_XDP \
                    or getattr(prog, "expected_attach_type", 0) != BPF_XDP_CPUMAP:
                _put(CpuEntry(cpu, qsize, prog))
                raise BpfError(errno.ENOMEM, "cpumap programs are XDP with BPF_XDP_CPUMAP")
        return CpuEntry(cpu, qsize, prog)

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        """``cpu_map_update_elem``."""
        assert isinstance(bmap, CpuMap)
        cpu = _U32.unpack_from(key)[0]
        qsize, prog_fd = _VAL.unpack((value[:bmap.value_size] + bytes(8))[:8])
        if flags > BPF_EXIST:
            raise BpfError(errno.EINVAL)
        if cpu >= bmap.max_entries:
            raise BpfError(errno.E2BIG)
        if flags == BPF_NOEXIST:
            raise BpfError(errno.EEXIST)
        if qsize > QSIZE_MAX:
            raise BpfError(errno.EOVERFLOW)
        if cpu >= num_possible_cpus():
            raise BpfError(errno.ENODEV)
        entry = self._entry(bmap, cpu, qsize, prog_fd) if qsize else None
        with bmap.lock:
            old = bmap.entries.pop(cpu, None)
            if entry is not None:
                bmap.entries[cpu] = entry
        _put(old)

    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        assert isinstance(bmap, CpuMap)
        entry = bmap.entries.get(_U32.unpack_from(key)[0])
        if entry is None:
            raise BpfError(errno.ENOENT)
        return entry.value[:bmap.value_size]

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        assert isinstance(bmap, CpuMap)
        cpu = _U32.unpack_from(key)[0]
        if cpu >= bmap.max_entries:
            raise BpfError(errno.EINVAL)
        with bmap.lock:
            old = bmap.entries.pop(cpu, None)
        _put(old)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        return array_get_next_key(bmap, key)

    def redirect_entry(self, bmap: BpfMap, idx: int) -> CpuEntry | None:
        """``__cpu_map_lookup_elem``."""
        assert isinstance(bmap, CpuMap)
        return bmap.entries.get(idx)



register_map_ops(CpuMapOps())
