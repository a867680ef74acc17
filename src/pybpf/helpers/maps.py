"""Map helpers for programs: ``FuncProto`` data plus implementations over the map ops.

``r1`` is the map pointer (a map's header address, :func:`pybpf.maps.core.map_from_addr`);
keys and values are addresses in the run's memory. Each prototype carries the kernel's
return/argument types and ``gpl_only`` (``kernel/bpf/helpers.c``, ``ringbuf.c``,
``bpf_trace.c``). ``bpf_for_each_map_elem`` calls its bpf-to-bpf callback through
:meth:`pybpf.runtime.context.RunContext.call_subprog` (implemented by the running
interpreter or JIT); the callback's index is what a ``BPF_PSEUDO_FUNC`` ld_imm64 holds.
"""

from __future__ import annotations

import errno
from typing import Any

from pybpf.helpers.proto import ArgFlag, ArgType, FuncProto, RetType
from pybpf.maps.core import BpfMap, map_from_addr
from pybpf.runtime.context import RunContext
from pybpf.uapi import (
    BPF_F_CTXLEN_MASK,
    BPF_F_INDEX_MASK,
    BPF_RB_FORCE_WAKEUP,
    BPF_RB_NO_WAKEUP,
    BpfFuncId,
)

M64 = (1 << 64) - 1
MAYBE_NULL = ArgFlag.PTR_MAYBE_NULL
RET_PTR_TO_MAP_VALUE_OR_NULL = RetType.RET_PTR_TO_MAP_VALUE | (1 << 8)
RET_PTR_TO_RINGBUF_MEM_OR_NULL = RetType.RET_PTR_TO_MEM | (1 << 8) | ArgFlag.MEM_RINGBUF
OBJ_RELEASE = 1 << 13  # kernel's OBJ_RELEASE type flag (BPF_BASE_TYPE_BITS + 5)
ARG_PTR_TO_UNINIT_MAP_VALUE = ArgType.ARG_PTR_TO_MAP_VALUE | ArgFlag.MEM_UNINIT | \
    ArgFlag.MEM_WRITE


def _map(addr: int) -> BpfMap:
    bmap = map_from_addr(addr)
    if bmap is None:
        from pybpf.errors import BpfFault

        raise BpfFault(-1, addr, 0, "helper argument is not a map pointer")
    return bmap


def _neg(err: int) -> int:
    return err & M64


def map_lookup_elem(ctx: RunContext, r1: int, r2: int, *_: int) -> int:
    bmap = _map(r1)
    return bmap.ops.map_lookup_elem(bmap, r2, ctx.cpu)  # type: ignore[call-arg]


def map_update_elem(ctx: RunContext, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
    bmap = _map(r1)
    return _neg(bmap.ops.map_update_elem(bmap, r2, r3, r4, ctx.cpu))  # type: ignore[call-arg]


def map_delete_elem(ctx: RunContext, r1: int, r2: int, *_: int) -> int:
    bmap = _map(r1)
    return _neg(bmap.ops.map_delete_elem(bmap, r2, ctx.cpu))  # type: ignore[call-arg]


def map_push_elem(ctx: RunContext, r1: int, r2: int, r3: int, *_: int) -> int:
    bmap = _map(r1)
    return _neg(bmap.ops.map_push_elem(bmap, r2, r3))  # type: ignore[attr-defined]


def map_pop_elem(ctx: RunContext, r1: int, r2: int, *_: int) -> int:
    bmap = _map(r1)
    return _neg(bmap.ops.map_pop_elem(bmap, r2))  # type: ignore[attr-defined]


def map_peek_elem(ctx: RunContext, r1: int, r2: int, *_: int) -> int:
    bmap = _map(r1)
    return _neg(bmap.ops.map_peek_elem(bmap, r2))  # type: ignore[attr-defined]


def map_lookup_percpu_elem(ctx: RunContext, r1: int, r2: int, r3: int, *_: int) -> int:
    bmap = _map(r1)
    return bmap.ops.map_lookup_percpu_elem(bmap, r2, r3 & 0xFFFFFFFF)  # type: ignore[attr-defined]


def _ringbuf(addr: int) -> Any:
    from pybpf.maps.type_ringbuf import RingBufMap

    bmap = _map(addr)
    if not isinstance(bmap, RingBufMap):
        from pybpf.errors import BpfFault

        raise BpfFault(-1, addr, 0, "not a ring buffer")
    return bmap


def ringbuf_output(ctx: RunContext, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
    if r4 & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
        return _neg(-errno.EINVAL)
    rb = _ringbuf(r1)
    sample = rb.reserve(r3)
    if not sample:
        return _neg(-errno.EAGAIN)
    ctx.mem.write(sample, ctx.mem.read(r2, r3))
    rb.commit(sample, r4, False)
    return 0


def ringbuf_reserve(ctx: RunContext, r1: int, r2: int, r3: int, *_: int) -> int:
    if r3:
        return 0
    return int(_ringbuf(r1).reserve(r2))


def _commit(ctx: RunContext, sample: int, flags: int, discard: bool) -> int:
    from pybpf.maps.type_ringbuf import ringbuf_of_sample

    rb = ringbuf_of_sample(ctx.mem, sample)
    if rb is None:
        from pybpf.errors import BpfFault

        raise BpfFault(-1, sample, 0, "not a ring buffer sample")
    rb.commit(sample, flags, discard)
    return 0


def ringbuf_submit(ctx: RunContext, r1: int, r2: int, *_: int) -> int:
    return _commit(ctx, r1, r2, False)


def ringbuf_discard(ctx: RunContext, r1: int, r2: int, *_: int) -> int:
    return _commit(ctx, r1, r2, True)


def ringbuf_query(ctx: RunContext, r1: int, r2: int, *_: int) -> int:
    return int(_ringbuf(r1).query(r2)) & M64


def for_each_map_elem(ctx: RunContext, r1: int, r2: int, r3: int, r4: int, *_: int) -> int:
    if r4:
        return _neg(-errno.EINVAL)
    bmap = _map(r1)

    def callback(key_addr: int, value_addr: int) -> int:
        return ctx.call_subprog(r2, r1, key_addr, value_addr, r3, 0) & M64

    return _neg(bmap.ops.map_for_each_callback(bmap, callback, ctx.cpu))  # type: ignore[attr-defined]


_SPIN_LOCKS: dict[int, Any] = {}


def spin_lock(ctx: RunContext, r1: int, *_: int) -> int:
    """``bpf_spin_lock``: a process-wide lock per lock address; the word reads 1 while held."""
    import threading

    lock = _SPIN_LOCKS.setdefault(r1, threading.Lock())
    lock.acquire()
    ctx.mem.store(r1, 4, 1)
    return 0


def spin_unlock(ctx: RunContext, r1: int, *_: int) -> int:
    lock = _SPIN_LOCKS.get(r1)
    ctx.mem.store(r1, 4, 0)
    if lock is not None and lock.locked():
        lock.release()
    return 0


BPF_F_USER_STACK = 1 << 8
GET_STACKID_FLAGS = 0xFF | BPF_F_USER_STACK | (1 << 9) | (1 << 10)  # skip, user, fast, reuse


def host_stack_ips(ctx: RunContext, user: bool) -> list[int]:
    """The stack ``bpf_get_stackid`` sees, innermost first.

    pybpf runs no kernel, so the hook that runs the program supplies the stack:
    ``ctx.data["stack_ips"]`` (kernel stack) / ``ctx.data["user_stack_ips"]`` (with
    ``BPF_F_USER_STACK``), lists of u64 "instruction pointers". Without them the kernel
    stack defaults to the *Python* call stack of the thread running the program — one id
    per frame, ``id(code) + f_lasti``, so the same Python call path yields the same trace
    for the life of the process — and the user stack to empty (then ``EFAULT``, as the
    kernel returns for a trace with nothing left after the skip).
    """
    key = "user_stack_ips" if user else "stack_ips"
    data = getattr(ctx, "data", None) or {}
    if key in data:
        return [int(ip) for ip in data[key]]
    if user:
        return []
    import sys

    frame = sys._getframe(1)
    ips: list[int] = []
    while frame is not None and len(ips) < 127:
        ips.append(id(frame.f_code) + frame.f_lasti)
        frame = frame.f_back  # type: ignore[assignment]
    return ips


def get_stackid(ctx: RunContext, r1: int, r2: int, r3: int, *_: int) -> int:
    """``bpf_get_stackid(ctx, map, flags)`` over the host-supplied stack (see above)."""
    from pybpf.maps.type_stack_trace import StackTraceOps

    if r3 & ~GET_STACKID_FLAGS:
        return _neg(-errno.EINVAL)
    bmap = _map(r2)
    if not isinstance(bmap.ops, StackTraceOps):
        return _neg(-errno.EINVAL)
    ips = host_stack_ips(ctx, bool(r3 & BPF_F_USER_STACK))
    return _neg(bmap.ops.get_stackid(bmap, ips, r3 & ~BPF_F_USER_STACK))


def perf_event_output(ctx: RunContext, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    from pybpf.maps.fdarray import FdArrayMap
    from pybpf.maps.type_perf_event_array import PerfEventArrayOps

    if r3 & ~(BPF_F_INDEX_MASK | BPF_F_CTXLEN_MASK):
        return _neg(-errno.EINVAL)
    bmap = _map(r2)
    if not isinstance(bmap, FdArrayMap) or not isinstance(bmap.ops, PerfEventArrayOps):
        return _neg(-errno.EINVAL)
    index = r3 & BPF_F_INDEX_MASK
    if index == BPF_F_INDEX_MASK:
        index = ctx.cpu
    return _neg(bmap.ops.output(bmap, index, ctx.cpu, ctx.mem.read(r4, r5)))


F = BpfFuncId
MAP = ArgType.ARG_CONST_MAP_PTR
KEY = ArgType.ARG_PTR_TO_MAP_KEY
VALUE = ArgType.ARG_PTR_TO_MAP_VALUE
ANY = ArgType.ARG_ANYTHING

MAP_HELPERS: dict[int, FuncProto] = {p.func_id: p for p in (
    FuncProto(F.BPF_FUNC_map_lookup_elem, "map_lookup_elem", map_lookup_elem,
              RET_PTR_TO_MAP_VALUE_OR_NULL, (MAP, KEY)),
    FuncProto(F.BPF_FUNC_map_update_elem, "map_update_elem", map_update_elem,
              RetType.RET_INTEGER, (MAP, KEY, VALUE, ANY)),
    FuncProto(F.BPF_FUNC_map_delete_elem, "map_delete_elem", map_delete_elem,
              RetType.RET_INTEGER, (MAP, KEY)),
    FuncProto(F.BPF_FUNC_map_push_elem, "map_push_elem", map_push_elem,
              RetType.RET_INTEGER, (MAP, VALUE, ANY)),
    FuncProto(F.BPF_FUNC_map_pop_elem, "map_pop_elem", map_pop_elem,
              RetType.RET_INTEGER, (MAP, ARG_PTR_TO_UNINIT_MAP_VALUE)),
    FuncProto(F.BPF_FUNC_map_peek_elem, "map_peek_elem", map_peek_elem,
              RetType.RET_INTEGER, (MAP, ARG_PTR_TO_UNINIT_MAP_VALUE)),
    FuncProto(F.BPF_FUNC_map_lookup_percpu_elem, "map_lookup_percpu_elem",
              map_lookup_percpu_elem, RET_PTR_TO_MAP_VALUE_OR_NULL, (MAP, KEY, ANY)),
    FuncProto(F.BPF_FUNC_ringbuf_output, "ringbuf_output", ringbuf_output,
              RetType.RET_INTEGER,
              (MAP, ArgType.ARG_PTR_TO_MEM | ArgFlag.MEM_RDONLY,
               ArgType.ARG_CONST_SIZE_OR_ZERO, ANY)),
    FuncProto(F.BPF_FUNC_ringbuf_reserve, "ringbuf_reserve", ringbuf_reserve,
              RET_PTR_TO_RINGBUF_MEM_OR_NULL,
              (MAP, ArgType.ARG_CONST_ALLOC_SIZE_OR_ZERO, ANY)),
    FuncProto(F.BPF_FUNC_ringbuf_submit, "ringbuf_submit", ringbuf_submit, RetType.RET_VOID,
              (ArgType.ARG_PTR_TO_RINGBUF_MEM | OBJ_RELEASE, ANY)),
    FuncProto(F.BPF_FUNC_ringbuf_discard, "ringbuf_discard", ringbuf_discard,
              RetType.RET_VOID, (ArgType.ARG_PTR_TO_RINGBUF_MEM | OBJ_RELEASE, ANY)),
    FuncProto(F.BPF_FUNC_ringbuf_query, "ringbuf_query", ringbuf_query, RetType.RET_INTEGER,
              (MAP, ANY)),
    FuncProto(F.BPF_FUNC_for_each_map_elem, "for_each_map_elem", for_each_map_elem,
              RetType.RET_INTEGER, (MAP, ArgType.ARG_PTR_TO_FUNC,
                                    ArgType.ARG_PTR_TO_STACK | MAYBE_NULL, ANY)),
    FuncProto(F.BPF_FUNC_spin_lock, "spin_lock", spin_lock, RetType.RET_VOID,
              (ArgType.ARG_PTR_TO_SPIN_LOCK,)),
    FuncProto(F.BPF_FUNC_spin_unlock, "spin_unlock", spin_unlock, RetType.RET_VOID,
              (ArgType.ARG_PTR_TO_SPIN_LOCK,)),
    FuncProto(F.BPF_FUNC_get_stackid, "get_stackid", get_stackid, RetType.RET_INTEGER,
              (ArgType.ARG_PTR_TO_CTX, MAP, ANY), gpl_only=True),
    FuncProto(F.BPF_FUNC_perf_event_output, "perf_event_output", perf_event_output,
              RetType.RET_INTEGER,
              (ArgType.ARG_PTR_TO_CTX, MAP, ANY, ArgType.ARG_PTR_TO_MEM | ArgFlag.MEM_RDONLY,
               ArgType.ARG_CONST_SIZE_OR_ZERO), gpl_only=True),
)}
