"""``BPF_MAP_TYPE_XSKMAP``: AF_XDP sockets XDP programs redirect frames to (``net/xdp/xskmap.c``).

A u32 key and a u32 value (an AF_XDP socket fd). pybpf has no AF_XDP sockets, so every
update fails as the kernel fails it for an fd that is not one: EBADF for an fd that is
not open, ENOTSOCK for one that is open but no socket (a map or program fd). The other
rules are the kernel's: creation (value size 4, flags NUMA/RDONLY/WRONLY only), updates
(flags, E2BIG past the end), syscall lookups (EOPNOTSUPP: the value is a socket),
deletes (EINVAL past the end, else success) and array-order iteration. Programs may look
entries up (always NULL here; the socket table is at ``map + 304`` as in ``struct xsk_map``,
so the verifier inlines lookups as ``xsk_map_gen_lookup``) and redirect to them (``bpf_redirect_map`` then takes the
fallback action, there being no socket).
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from pybpf.errors import BpfError
from pybpf.maps.arraybase import array_get_next_key
from pybpf.maps.base import NoProgElemOps
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.fdmaps import resolve_fd
from pybpf.maps.ops import register_map_ops
from pybpf.maps.storage import colocate_after_header
from pybpf.uapi import (
    BPF_EXIST,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_WRONLY,
    BPF_MAP_TYPE_XSKMAP,
)

SIZEOF_XSK_MAP = 256
#: ``offsetof(struct xsk_map, xsk_map)`` on x86-64 Linux 6.18: the socket pointer table an
#: inlined lookup (``xsk_map_gen_lookup``: ``r1 += 304``) indexes
XSK_MAP_PTRS_OFF = 304
_U32 = struct.Struct("<I")


class XskMapOps(NoProgElemOps):
    """``xsk_map_ops``."""

    map_type = BPF_MAP_TYPE_XSKMAP
    redirect_flags = 0

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        """``xsk_map_alloc``."""
        if (attr.max_entries == 0 or attr.key_size != 4 or attr.value_size != 4
                or attr.map_flags & ~(BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY)):
            raise BpfError(errno.EINVAL)
        attr.map_flags &= ~(BPF_F_RDONLY | BPF_F_WRONLY)  # bpf_map_init_from_attr
        bmap = BpfMap(self, attr)
        # the socket table, where the kernel's inlined lookup reads it: all NULL, pybpf
        # having no AF_XDP sockets
        bmap.xsk_ptrs = colocate_after_header(  # type: ignore[attr-defined]
            bmap, XSK_MAP_PTRS_OFF, 8 * bmap.max_entries, "sockets")
        return bmap

    def mem_usage(self, bmap: BpfMap) -> int:
        return SIZEOF_XSK_MAP + 8 * bmap.max_entries

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        """``xsk_map_update_elem`` up to ``sockfd_lookup``: no fd is an AF_XDP socket."""
        if flags > BPF_EXIST:
            raise BpfError(errno.EINVAL)
        if _U32.unpack_from(key)[0] >= bmap.max_entries:
            raise BpfError(errno.E2BIG)
        fd = struct.unpack_from("<i", value)[0]
        obj: Any = None
        for kind in ("map", "prog"):
            try:
                obj = resolve_fd(bmap, fd, kind)
            except BpfError:
                continue
            break
        if obj is None:
            raise BpfError(errno.EBADF, f"fd {fd} is not open")
        if hasattr(obj, "put") and not isinstance(obj, BpfMap):
            obj.put()  # prog_get took a reference
        raise BpfError(errno.ENOTSOCK, f"fd {fd} is not an AF_XDP socket")

    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        raise BpfError(errno.EOPNOTSUPP)  # xsk_map_lookup_elem_sys

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        if _U32.unpack_from(key)[0] >= bmap.max_entries:
            raise BpfError(errno.EINVAL)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        return array_get_next_key(bmap, key)

    def redirect_entry(self, bmap: BpfMap, idx: int) -> Any:
        return None  # __xsk_map_lookup_elem: no sockets



register_map_ops(XskMapOps())
