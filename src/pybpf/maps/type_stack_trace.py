"""``BPF_MAP_TYPE_STACK_TRACE`` (``kernel/bpf/stackmap.c``): stack ids → instruction pointers.

Keys are ``u32`` stack ids (buckets, ``n_buckets = roundup_pow_of_two(max_entries)``);
values are ``value_size / 8`` u64 ips (``value_size`` a multiple of 8, at most
``perf_event_max_stack`` entries; with ``BPF_F_STACK_BUILD_ID`` multiples of 32-byte
build-id records). User space can look up (zero-padded after the trace), delete
(E2BIG past the buckets, ENOENT if empty) and iterate (ascending ids); update is EINVAL;
programs cannot look up (EOPNOTSUPP). ``bpf_get_stackid`` stores through
:meth:`StackTraceOps.get_stackid`, with the kernel's bucket rules: the id is
``jhash2(ips) & (n_buckets - 1)``; the same trace in its bucket returns the id; a
different trace there is ``EEXIST`` unless ``BPF_F_REUSE_STACKID`` (replace it);
``BPF_F_FAST_STACK_CMP`` trusts a matching hash without comparing the ips.

Where the stack comes from is the host's business (pybpf has no kernel stack):
see :func:`pybpf.helpers.maps.get_stackid`.

Layout: ``header.data`` -> ``n_buckets`` slots of ``8 + value_size`` bytes
(``u32 nr`` (0 = empty bucket), ``u32 hash``, then the ips).
"""

from __future__ import annotations

import errno

from pybpf.errors import BpfError
from pybpf.maps.base import BaseMapOps
from pybpf.maps.common import roundup_pow_of_two
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.jhash import jhash2
from pybpf.maps.ops import register_map_ops
from pybpf.maps.storage import alloc_region
from pybpf.uapi import (
    BPF_F_FAST_STACK_CMP,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_REUSE_STACKID,
    BPF_F_SKIP_FIELD_MASK,
    BPF_F_STACK_BUILD_ID,
    BPF_F_WRONLY,
    BPF_MAP_TYPE_STACK_TRACE,
)

STACK_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_STACK_BUILD_ID
SYSCTL_PERF_EVENT_MAX_STACK = 127
SIZEOF_BPF_STACK_BUILD_ID = 32
SIZEOF_BPF_STACK_MAP = 320
SIZEOF_STACK_MAP_BUCKET = 16


def perf_event_max_stack() -> int:
    try:
        return int(open("/proc/sys/kernel/perf_event_max_stack").read())
    except (OSError, ValueError):
        return SYSCTL_PERF_EVENT_MAX_STACK


class StackTraceMap(BpfMap):
    def __init__(self, ops: BaseMapOps, attr: MapAttr) -> None:
        super().__init__(ops, attr)
        self.n_buckets = roundup_pow_of_two(self.max_entries)
        self.slot_size = 8 + self.value_size
        self.slab = alloc_region(self, self.n_buckets * self.slot_size, "stack buckets")
        self.write_header(elem_size=self.slot_size, data=self.slab.start)

    def present(self, sid: int) -> bool:
        off = sid * self.slot_size
        return bool(int.from_bytes(self.slab.mv[off:off + 4], "little"))

    def elem_size(self) -> int:
        return SIZEOF_BPF_STACK_BUILD_ID if self.map_flags & BPF_F_STACK_BUILD_ID else 8


class StackTraceOps(BaseMapOps):
    map_type = BPF_MAP_TYPE_STACK_TRACE

    def map_alloc_check(self, attr: MapAttr) -> None:
        vs = attr.value_size
        if attr.map_flags & ~STACK_CREATE_FLAG_MASK:
            raise BpfError(errno.EINVAL)
        if attr.max_entries == 0 or attr.key_size != 4 or vs < 8 or vs % 8:
            raise BpfError(errno.EINVAL)
        if attr.map_flags & BPF_F_STACK_BUILD_ID:
            if vs % SIZEOF_BPF_STACK_BUILD_ID or \
                    vs // SIZEOF_BPF_STACK_BUILD_ID > perf_event_max_stack():
                raise BpfError(errno.EINVAL)
        elif vs // 8 > perf_event_max_stack():
            raise BpfError(errno.EINVAL)
        if attr.max_entries > 1 << 31:
            raise BpfError(errno.E2BIG)

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        return StackTraceMap(self, attr)

    def mem_usage(self, bmap: BpfMap) -> int:
        assert isinstance(bmap, StackTraceMap)
        n = bmap.n_buckets
        return (SIZEOF_BPF_STACK_MAP + n * 8
                + (SIZEOF_STACK_MAP_BUCKET + bmap.value_size) * bmap.max_entries)

    def get_stackid(self, bmap: BpfMap, ips: list[int], flags: int) -> int:
        """``__bpf_get_stackid`` over ``ips`` (innermost first): the id or ``-errno``.

        ``flags`` are the helper's: skip count in the low byte, ``BPF_F_FAST_STACK_CMP``,
        ``BPF_F_REUSE_STACKID`` (``BPF_F_USER_STACK`` is resolved by the caller).
        """
        assert isinstance(bmap, StackTraceMap)
        skip = flags & BPF_F_SKIP_FIELD_MASK
        if len(ips) <= skip:
            return -errno.EFAULT  # skipping more than the usable trace
        nr = min(len(ips) - skip, bmap.value_size // 8)
        trace = b"".join((ip & (2**64 - 1)).to_bytes(8, "little") for ip in ips[skip:skip + nr])
        hash_ = jhash2(trace, 0)
        sid = hash_ & (bmap.n_buckets - 1)
        off = sid * bmap.slot_size
        mv = bmap.slab.mv
        with bmap.lock:
            old_nr = int.from_bytes(mv[off:off + 4], "little")
            old_hash = int.from_bytes(mv[off + 4:off + 8], "little")
            hash_matches = bool(old_nr) and old_hash == hash_
            if hash_matches and flags & BPF_F_FAST_STACK_CMP:
                return sid
            if hash_matches and old_nr == nr and mv[off + 8:off + 8 + len(trace)] == trace:
                return sid
            if old_nr and not flags & BPF_F_REUSE_STACKID:
                return -errno.EEXIST
            mv[off:off + 8] = nr.to_bytes(4, "little") + hash_.to_bytes(4, "little")
            mv[off + 8:off + 8 + bmap.value_size] = trace + bytes(bmap.value_size - len(trace))
        return sid

    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        assert isinstance(bmap, StackTraceMap)
        sid = int.from_bytes(key[:4], "little")
        if sid >= bmap.n_buckets or not bmap.present(sid):
            raise BpfError(errno.ENOENT)
        off = sid * bmap.slot_size + 8
        return bmap.slab.mv[off:off + bmap.value_size].tobytes()

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        raise BpfError(errno.EINVAL)

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        assert isinstance(bmap, StackTraceMap)
        sid = int.from_bytes(key[:4], "little")
        if sid >= bmap.n_buckets:
            raise BpfError(errno.E2BIG)
        with bmap.lock:
            if not bmap.present(sid):
                raise BpfError(errno.ENOENT)
            off = sid * bmap.slot_size
            bmap.slab.mv[off:off + bmap.slot_size] = bytes(bmap.slot_size)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        assert isinstance(bmap, StackTraceMap)
        if key is None:
            sid = 0
        else:
            sid = int.from_bytes(key[:4], "little")
            sid = 0 if sid >= bmap.n_buckets or not bmap.present(sid) else sid + 1
        while sid < bmap.n_buckets and not bmap.present(sid):
            sid += 1
        if sid >= bmap.n_buckets:
            raise BpfError(errno.ENOENT)
        return sid.to_bytes(4, "little")

    def map_lookup_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        return 0

    def map_update_elem(self, bmap: BpfMap, key_addr: int, value_addr: int, flags: int,
                        cpu: int = 0) -> int:
        return -errno.EINVAL


register_map_ops(StackTraceOps())
