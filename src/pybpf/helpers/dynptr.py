"""The dynptr helpers (``kernel/bpf/helpers.c``, ``kernel/bpf/ringbuf.c``): prototypes as data
plus implementations.

A ``struct bpf_dynptr`` is 16 opaque bytes on the BPF stack; the kernel keeps a
``struct bpf_dynptr_kern`` in them, and so does pybpf, byte for byte, so a program that
peeks at its dynptr (or a helper handed a pointer to one) sees what Linux 6.18 has::

    u64 data     address of the memory
    u32 size     bits 0-23 size, bits 28-30 enum bpf_dynptr_type, bit 31 read-only
    u32 offset   where the dynptr's view starts within ``data``

A failed initialisation zeroes all 16 bytes (``bpf_dynptr_set_null``); every helper treats
``data == 0`` as "no dynptr". The verifier side (stack slots, references, slices) is
:mod:`pybpf.verifier.dynptr`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import IntEnum
from errno import E2BIG, EBUSY, EINVAL
from typing import Any

from pybpf.helpers.proto import ArgFlag, ArgType, FuncProto, RetType
from pybpf.helpers.protos import OBJ_RELEASE
from pybpf.runtime.context import RunContext

M64 = (1 << 64) - 1


class DynptrType(IntEnum):
    """``enum bpf_dynptr_type`` (6.18)."""

    BPF_DYNPTR_TYPE_INVALID = 0
    BPF_DYNPTR_TYPE_LOCAL = 1
    BPF_DYNPTR_TYPE_RINGBUF = 2
    BPF_DYNPTR_TYPE_SKB = 3
    BPF_DYNPTR_TYPE_XDP = 4
    BPF_DYNPTR_TYPE_SKB_META = 5


# ``DYNPTR_TYPE_*`` argument flags (``enum bpf_type_flag``): which kind of dynptr an
# ARG_PTR_TO_DYNPTR expects or creates. pybpf's flag bits, clear of the other ArgFlags.
DYNPTR_TYPE_LOCAL = 1 << 26
DYNPTR_TYPE_RINGBUF = 1 << 27
DYNPTR_TYPE_SKB = 1 << 28
DYNPTR_TYPE_XDP = 1 << 29
DYNPTR_TYPE_SKB_META = 1 << 30
DYNPTR_TYPE_FLAG_TO_TYPE: dict[int, DynptrType] = {
    DYNPTR_TYPE_LOCAL: DynptrType.BPF_DYNPTR_TYPE_LOCAL,
    DYNPTR_TYPE_RINGBUF: DynptrType.BPF_DYNPTR_TYPE_RINGBUF,
    DYNPTR_TYPE_SKB: DynptrType.BPF_DYNPTR_TYPE_SKB,
    DYNPTR_TYPE_XDP: DynptrType.BPF_DYNPTR_TYPE_XDP,
    DYNPTR_TYPE_SKB_META: DynptrType.BPF_DYNPTR_TYPE_SKB_META,
}
DYNPTR_TYPE_FLAG_MASK = sum(DYNPTR_TYPE_FLAG_TO_TYPE)

# struct bpf_dynptr_kern
BPF_DYNPTR_SIZE = 16
DYNPTR_MAX_SIZE = (1 << 24) - 1
DYNPTR_TYPE_SHIFT = 28
DYNPTR_SIZE_MASK = 0xFFFFFF
DYNPTR_RDONLY_BIT = 1 << 31
_KERN = struct.Struct("<QII")

# user ring buffer (kernel/bpf/ringbuf.c)
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP = 1, 2
BPF_MAX_USER_RINGBUF_SAMPLES = 128 * 1024
ENODATA, EAGAIN = 61, 11


def _neg(err: int) -> int:
    return -err & M64


# -- struct bpf_dynptr_kern -------------------------------------------------------------------
class DynptrKern:
    """A decoded ``struct bpf_dynptr_kern`` (what lives in a ``struct bpf_dynptr``)."""

    __slots__ = ("data", "offset", "size_word")

    def __init__(self, data: int, size_word: int, offset: int) -> None:
        self.data, self.size_word, self.offset = data, size_word, offset

    @classmethod
    def load(cls, ctx: RunContext, addr: int) -> DynptrKern:
        return cls(*_KERN.unpack(ctx.mem.read(addr, BPF_DYNPTR_SIZE)))

    @property
    def size(self) -> int:
        return self.size_word & DYNPTR_SIZE_MASK

    @property
    def type(self) -> int:
        return (self.size_word & ~DYNPTR_RDONLY_BIT) >> DYNPTR_TYPE_SHIFT

    @property
    def rdonly(self) -> bool:
        return bool(self.size_word & DYNPTR_RDONLY_BIT)

    def check_off_len(self, offset: int, length: int) -> bool:
        """``bpf_dynptr_check_off_len``: ``[offset, offset + length)`` within the size."""
        size = self.size
        return length <= size and offset <= size - length


def dynptr_init(ctx: RunContext, addr: int, data: int, dtype: int, offset: int, size: int,
                rdonly: bool = False) -> None:
    """``bpf_dynptr_init`` (+ ``bpf_dynptr_set_rdonly``) into the 16 bytes at ``addr``."""
    word = (size | (dtype << DYNPTR_TYPE_SHIFT) | (DYNPTR_RDONLY_BIT if rdonly else 0)) & 0xFFFFFFFF
    ctx.mem.write(addr, _KERN.pack(data, word, offset))


def dynptr_set_null(ctx: RunContext, addr: int) -> None:
    ctx.mem.write(addr, bytes(BPF_DYNPTR_SIZE))


# -- helpers --------------------------------------------------------------------------------
_MEM_TYPES = (DynptrType.BPF_DYNPTR_TYPE_LOCAL, DynptrType.BPF_DYNPTR_TYPE_RINGBUF)


def dynptr_from_mem(ctx: RunContext, data: int, size: int, flags: int, ptr: int, *_: int) -> int:
    """``bpf_dynptr_from_mem(data, size, flags, ptr)``: a LOCAL dynptr over ``data``."""
    size &= 0xFFFFFFFF
    err = E2BIG if size > DYNPTR_MAX_SIZE else EINVAL if flags else 0
    if err:
        dynptr_set_null(ctx, ptr)
        return _neg(err)
    dynptr_init(ctx, ptr, data, DynptrType.BPF_DYNPTR_TYPE_LOCAL, 0, size)
    return 0


def ringbuf_reserve_dynptr(ctx: RunContext, map_addr: int, size: int, flags: int, ptr: int,
                           *_: int) -> int:
    """``bpf_ringbuf_reserve_dynptr``: a RINGBUF dynptr over a reserved sample."""
    from pybpf.helpers.maps import _ringbuf

    size &= 0xFFFFFFFF
    if flags:
        dynptr_set_null(ctx, ptr)
        return _neg(EINVAL)
    if size > DYNPTR_MAX_SIZE:
        dynptr_set_null(ctx, ptr)
        return _neg(E2BIG)
    sample = int(_ringbuf(map_addr).reserve(size))
    if not sample:
        dynptr_set_null(ctx, ptr)
        return _neg(EINVAL)
    dynptr_init(ctx, ptr, sample, DynptrType.BPF_DYNPTR_TYPE_RINGBUF, 0, size)
    return 0


def _ringbuf_commit_dynptr(ctx: RunContext, ptr: int, flags: int, discard: bool) -> int:
    from pybpf.helpers.maps import _commit

    d = DynptrKern.load(ctx, ptr)
    if not d.data:
        return 0
    _commit(ctx, d.data, flags, discard)
    dynptr_set_null(ctx, ptr)
    return 0


def ringbuf_submit_dynptr(ctx: RunContext, ptr: int, flags: int, *_: int) -> int:
    return _ringbuf_commit_dynptr(ctx, ptr, flags, False)


def ringbuf_discard_dynptr(ctx: RunContext, ptr: int, flags: int, *_: int) -> int:
    return _ringbuf_commit_dynptr(ctx, ptr, flags, True)


def dynptr_read(ctx: RunContext, dst: int, length: int, src: int, offset: int, flags: int,
                *_: int) -> int:
    """``bpf_dynptr_read(dst, len, src, offset, flags)``: copy out of a dynptr."""
    d = DynptrKern.load(ctx, src)
    length &= 0xFFFFFFFF
    offset &= 0xFFFFFFFF
    if not d.data or flags:
        return _neg(EINVAL)
    if not d.check_off_len(offset, length):
        return _neg(E2BIG)
    if d.type not in _MEM_TYPES:
        return _neg(EINVAL)  # skb/xdp dynptrs come from kfuncs pybpf does not run yet
    ctx.mem.write(dst, ctx.mem.read(d.data + d.offset + offset, length))
    return 0


def dynptr_write(ctx: RunContext, dst: int, offset: int, src: int, length: int, flags: int,
                 *_: int) -> int:
    """``bpf_dynptr_write(dst, offset, src, len, flags)``: copy into a writable dynptr."""
    d = DynptrKern.load(ctx, dst)
    length &= 0xFFFFFFFF
    offset &= 0xFFFFFFFF
    if not d.data or d.rdonly:
        return _neg(EINVAL)
    if not d.check_off_len(offset, length):
        return _neg(E2BIG)
    if d.type not in _MEM_TYPES or flags:
        return _neg(EINVAL)
    ctx.mem.write(d.data + d.offset + offset, ctx.mem.read(src, length))
    return 0


def dynptr_data(ctx: RunContext, ptr: int, offset: int, length: int, *_: int) -> int:
    """``bpf_dynptr_data(ptr, offset, len)``: a direct pointer into the dynptr, or NULL
    (read-only dynptrs and skb/xdp dynptrs give NULL: those use ``bpf_dynptr_slice``)."""
    d = DynptrKern.load(ctx, ptr)
    offset &= 0xFFFFFFFF
    length &= 0xFFFFFFFF
    if not d.data or not d.check_off_len(offset, length) or d.rdonly or d.type not in _MEM_TYPES:
        return 0
    return (d.data + d.offset + offset) & M64


# -- bpf_user_ringbuf_drain -------------------------------------------------------------------
def user_ringbuf_peek(rb: Any) -> tuple[int, int, int]:
    """``__bpf_user_ringbuf_peek``: ``(err, sample address, size)`` of the next record.

    ``rb`` is a ring buffer map object with the BPF ring buffer's layout
    (:class:`pybpf.maps.type_ringbuf.RingBufMap`): ``consumer_pos``/``producer_pos``,
    ``data`` (a region: the data pages mapped twice) and ``mask``. User space produced
    the records: an 8-byte header ``u32 len | BUSY | DISCARD``, ``u32`` unused, then
    ``len`` bytes padded to 8."""
    prod = rb.producer_pos
    if prod % 8:
        return -EINVAL, 0, 0
    cons = rb.consumer_pos
    if cons >= prod:
        return -ENODATA, 0, 0
    data = rb.data
    hdr_off = cons & rb.mask
    hdr = struct.unpack_from("<I", data.mv, hdr_off)[0]
    flags = hdr & (BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
    size = hdr & ~flags
    total = (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
    if total > prod - cons:
        return -EINVAL, 0, 0
    if total > rb.mask + 1 or size > DYNPTR_MAX_SIZE:
        return -E2BIG, 0, 0
    if flags & BPF_RINGBUF_DISCARD_BIT:
        rb.consumer_pos = cons + total
        return -EAGAIN, 0, 0
    if flags & BPF_RINGBUF_BUSY_BIT:
        return -ENODATA, 0, 0
    return 0, data.start + ((cons + BPF_RINGBUF_HDR_SZ) & rb.mask), size


def user_ringbuf_drain(ctx: RunContext, map_addr: int, callback: int, callback_ctx: int,
                       flags: int, *_: int) -> int:
    """``bpf_user_ringbuf_drain(map, callback, ctx, flags)``: call ``callback(dynptr, ctx)``
    for each record user space committed, with a read-only-to-helpers LOCAL dynptr
    (the verifier's CONST_PTR_TO_DYNPTR) over it, until the ring is empty or the callback
    returns non-zero. Returns the number of records consumed (discarded ones excluded)."""
    from pybpf.helpers.impls import callback_pc
    from pybpf.helpers.maps import _map

    if flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
        return _neg(EINVAL)
    rb: Any = _map(map_addr)  # a ring buffer map (see user_ringbuf_peek)
    if getattr(rb, "drain_busy", False):
        return _neg(EBUSY)
    pc = callback_pc(ctx, callback)
    holder = ctx.mem.alloc(BPF_DYNPTR_SIZE, "user_ringbuf_drain dynptr")  # the kernel's stack copy
    rb.drain_busy = True
    samples = discarded = 0
    ret = 0
    try:
        while samples < BPF_MAX_USER_RINGBUF_SAMPLES and ret == 0:
            err, sample, size = user_ringbuf_peek(rb)
            if err == -ENODATA:
                break
            if err == -EAGAIN:
                discarded += 1
                samples += 1
                continue
            if err:
                return _neg(-err)
            dynptr_init(ctx, holder.start, sample, DynptrType.BPF_DYNPTR_TYPE_LOCAL, 0, size)
            ret = ctx.call_subprog(pc, holder.start, callback_ctx, 0, 0, 0) & M64
            rb.consumer_pos = rb.consumer_pos + ((size + BPF_RINGBUF_HDR_SZ + 7) & ~7)
            samples += 1
    finally:
        rb.drain_busy = False
        ctx.mem.remove(holder)
    wake = getattr(rb, "wakeup", None)
    if wake is not None and (flags & BPF_RB_FORCE_WAKEUP or (not flags & BPF_RB_NO_WAKEUP and samples)):
        wake()
    return (samples - discarded) & M64


# -- prototypes -----------------------------------------------------------------------------
_DYNPTR = int(ArgType.ARG_PTR_TO_DYNPTR)
_UNINIT = int(ArgFlag.MEM_UNINIT)
_WRITE = int(ArgFlag.MEM_WRITE)
_RDONLY = int(ArgFlag.MEM_RDONLY)
_UNINIT_MEM = int(ArgType.ARG_PTR_TO_MEM) | _UNINIT | _WRITE
_R_MAYBE_NULL = 1 << 8  # verifier register flag PTR_MAYBE_NULL
_ANY = int(ArgType.ARG_ANYTHING)
_MAP = int(ArgType.ARG_CONST_MAP_PTR)
_SIZE0 = int(ArgType.ARG_CONST_SIZE_OR_ZERO)


def _proto(fid: int, name: str, impl: Callable[..., int], args: tuple[int, ...],
           ret: int = RetType.RET_INTEGER, ret_flags: int = 0) -> FuncProto:
    return FuncProto(fid, name, impl, int(ret), args, ret_flags=ret_flags)


PROTOS: list[FuncProto] = [
    _proto(197, "dynptr_from_mem", dynptr_from_mem,
           (_UNINIT_MEM, _SIZE0, _ANY, _DYNPTR | DYNPTR_TYPE_LOCAL | _UNINIT | _WRITE)),
    _proto(198, "ringbuf_reserve_dynptr", ringbuf_reserve_dynptr,
           (_MAP, _ANY, _ANY, _DYNPTR | DYNPTR_TYPE_RINGBUF | _UNINIT | _WRITE)),
    _proto(199, "ringbuf_submit_dynptr", ringbuf_submit_dynptr,
           (_DYNPTR | DYNPTR_TYPE_RINGBUF | OBJ_RELEASE, _ANY), RetType.RET_VOID),
    _proto(200, "ringbuf_discard_dynptr", ringbuf_discard_dynptr,
           (_DYNPTR | DYNPTR_TYPE_RINGBUF | OBJ_RELEASE, _ANY), RetType.RET_VOID),
    _proto(201, "dynptr_read", dynptr_read, (_UNINIT_MEM, _SIZE0, _DYNPTR | _RDONLY, _ANY, _ANY)),
    _proto(202, "dynptr_write", dynptr_write,
           (_DYNPTR | _RDONLY, _ANY, int(ArgType.ARG_PTR_TO_MEM) | _RDONLY, _SIZE0, _ANY)),
    # RET_PTR_TO_DYNPTR_MEM_OR_NULL
    _proto(203, "dynptr_data", dynptr_data,
           (_DYNPTR | _RDONLY, _ANY, int(ArgType.ARG_CONST_ALLOC_SIZE_OR_ZERO)),
           RetType.RET_PTR_TO_MEM, _R_MAYBE_NULL),
    _proto(209, "user_ringbuf_drain", user_ringbuf_drain,
           (_MAP, int(ArgType.ARG_PTR_TO_FUNC), int(ArgType.ARG_PTR_TO_STACK) | int(ArgFlag.PTR_MAYBE_NULL),
            _ANY)),
]
PROTOS_BY_ID: dict[int, FuncProto] = {p.func_id: p for p in PROTOS}
IMPLS: dict[int, Callable[..., int]] = {p.func_id: p.impl for p in PROTOS if p.impl is not None}
