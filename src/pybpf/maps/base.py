"""Default behaviour of a map type: what the kernel does when a ``bpf_map_ops`` slot is empty.

Every ``type_*.py`` subclasses :class:`BaseMapOps` and overrides what its kernel
counterpart implements. The defaults follow ``kernel/bpf/syscall.c``: a missing batch
operation is ``-ENOTSUPP`` (524), a missing lookup-and-delete is ``-ENOTSUPP``, a type
without push/pop/peek gives ``-ENOTSUPP`` (``bpf_map_*`` helpers are only offered by the
verifier for types that have them).

Program-side (``map_*``) defaults are written in terms of the byte-level ``sys_*``
operations, reading keys and values through the run's memory registry; hot types
override them with address-returning fast paths.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from pybpf.errors import BpfError
from pybpf.maps.batch import BatchResult
from pybpf.maps.common import ENOTSUPP
from pybpf.runtime.memory import REGISTRY

if TYPE_CHECKING:
    from pybpf.maps.core import BpfMap, MapAttr

ForEachCallback = Callable[[int, int], int]
"""``callback(key_addr, value_addr) -> r0`` used by ``bpf_for_each_map_elem``."""


class BaseMapOps:
    """A ``struct bpf_map_ops`` with the kernel's defaults for empty slots."""

    map_type: int = 0
    percpu_values = False  # syscall values are round_up(value_size, 8) * possible CPUs
    fd_values = False  # syscall values are u32 fds in, ids out
    lookup_reads_value = False  # BPF_MAP_LOOKUP_ELEM reads the value buffer (bloom filter)
    push_via_update = False  # BPF_MAP_UPDATE_ELEM means push (queue, stack, bloom)
    lookup_is_peek = False  # BPF_MAP_LOOKUP_ELEM means peek (queue, stack, bloom)

    # -- creation ---------------------------------------------------------------------
    def map_alloc_check(self, attr: MapAttr) -> None:
        return None

    def map_alloc(self, attr: MapAttr) -> BpfMap:  # pragma: no cover - every type overrides
        raise BpfError(errno.EINVAL)

    def map_free(self, bmap: BpfMap) -> None:
        for region in getattr(bmap, "regions", ()):
            bmap.mem.remove(region)
        close_memfd = getattr(bmap, "mmap_fd_close", None)
        if close_memfd is not None:
            close_memfd()
        bmap.release_header()

    def mem_usage(self, bmap: BpfMap) -> int:
        return 0

    def sys_value_size(self, bmap: BpfMap) -> int:
        """``bpf_map_value_size``: bytes of one value as ``bpf()`` passes it."""
        if self.percpu_values:
            return bmap.value_stride * bmap.nr_cpus
        if self.fd_values:
            return 4
        return bmap.value_size

    def batch_token_size(self, bmap: BpfMap) -> int:
        """Bytes of ``in_batch`` / ``out_batch`` (a key for the generic batch ops)."""
        return bmap.key_size

    def native_layout(self, bmap: BpfMap) -> dict[str, int]:
        """Addresses and sizes of the native storage (for the JIT); see the type's docstring."""
        return {"header": bmap.addr}

    # -- syscall side -----------------------------------------------------------------
    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        raise BpfError(ENOTSUPP)

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        raise BpfError(ENOTSUPP)

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        raise BpfError(ENOTSUPP)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        raise BpfError(ENOTSUPP)

    def sys_lookup_and_delete(self, bmap: BpfMap, key: bytes | None, flags: int) -> bytes:
        raise BpfError(ENOTSUPP)

    def sys_lookup_batch(self, bmap: BpfMap, in_batch: bytes | None, count: int,
                         elem_flags: int, flags: int) -> BatchResult:
        raise BpfError(ENOTSUPP)

    def sys_lookup_and_delete_batch(self, bmap: BpfMap, in_batch: bytes | None, count: int,
                                    elem_flags: int, flags: int) -> BatchResult:
        raise BpfError(ENOTSUPP)

    def sys_update_batch(self, bmap: BpfMap, keys: bytes, values: bytes, count: int,
                         elem_flags: int, flags: int) -> BatchResult:
        raise BpfError(ENOTSUPP)

    def sys_delete_batch(self, bmap: BpfMap, keys: bytes, count: int, elem_flags: int,
                         flags: int) -> BatchResult:
        raise BpfError(ENOTSUPP)

    # -- program side -----------------------------------------------------------------
    def map_lookup_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        return 0

    def map_update_elem(self, bmap: BpfMap, key_addr: int, value_addr: int, flags: int,
                        cpu: int = 0) -> int:
        key = REGISTRY.read(key_addr, bmap.key_size)
        value = REGISTRY.read(value_addr, bmap.value_size)
        try:
            self.sys_update(bmap, key, value, flags)
        except BpfError as exc:
            return -(exc.errno or errno.EINVAL)
        return 0

    def map_delete_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        key = REGISTRY.read(key_addr, bmap.key_size)
        try:
            self.sys_delete(bmap, key)
        except BpfError as exc:
            return -(exc.errno or errno.EINVAL)
        return 0

    def map_push_elem(self, bmap: BpfMap, value_addr: int, flags: int) -> int:
        return -ENOTSUPP

    def map_pop_elem(self, bmap: BpfMap, value_addr: int) -> int:
        return -ENOTSUPP

    def map_peek_elem(self, bmap: BpfMap, value_addr: int) -> int:
        return -ENOTSUPP

    def map_lookup_percpu_elem(self, bmap: BpfMap, key_addr: int, cpu: int) -> int:
        return 0

    def map_for_each_callback(self, bmap: BpfMap, callback: ForEachCallback,
                              cpu: int = 0) -> int:
        return -errno.EINVAL


class NoProgElemOps(BaseMapOps):
    """Maps whose elements programs never reach through the map helpers (fd arrays,
    cpumaps, xskmaps): lookups find nothing, updates and deletes are refused — the
    verifier already keeps programs from calling them; this is the runtime's guard."""

    def map_lookup_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        return 0

    def map_update_elem(self, bmap: BpfMap, key_addr: int, value_addr: int, flags: int,
                        cpu: int = 0) -> int:
        return -errno.EOPNOTSUPP

    def map_delete_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        return -errno.EOPNOTSUPP
