"""Run time of allocated objects: ``bpf_obj_new``, ``bpf_obj_drop``, ``bpf_refcount_acquire``.

An object is a zeroed native region of the type's size (the size and the type's struct
meta come in R1 / R2, loaded by ``fixup_kfunc_call`` as the kernel's rewrite does; see
:mod:`pybpf.verifier.alloc_obj`). :data:`LIVE` maps an object's address to its region and
meta: the kernel's ``bpf_mem_alloc`` keeps the same knowledge in the allocation header.

A type with a ``bpf_refcount`` field starts at refcount 1 (``bpf_obj_init``); each
``bpf_refcount_acquire`` adds one, each ``bpf_obj_drop`` removes one, and the object is
freed at zero: its own special fields are released first (``bpf_obj_free_fields``: kptrs
go to their destructor, a list's or rbtree's nodes are dropped in turn), then the region
leaves the memory registry, so a stale pointer faults instead of reading freed memory.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybpf.runtime.memory import REGISTRY, Region
from pybpf.runtime.percpu_alloc import PercpuArea
from pybpf.verifier.alloc_obj import StructMeta, meta_by_handle

if TYPE_CHECKING:
    from pybpf.runtime.context import RunContext

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
#: max live objects (the kernel's allocator fails with NULL under memory pressure)
MAX_LIVE_OBJECTS = 1 << 20


@dataclass(eq=False)
class LocalObj:
    region: Region
    meta: StructMeta | None


#: address → object, for every object ``bpf_obj_new`` made and nobody freed yet
LIVE: dict[int, LocalObj] = {}
_LOCK = threading.Lock()
#: what frees a graph collection's nodes when the object (or map value) holding the root
#: goes: field kind → ``fn(root_addr, field)`` (filled by :mod:`pybpf.helpers.kfunc_graph`)
FIELD_FREERS: dict[str, Callable[[int, Any], None]] = {}


def obj_new(ctx: RunContext | None, size: int, handle: int, *_: int) -> int:
    """``bpf_obj_new_impl``: a zeroed object with its refcount at 1, or NULL."""
    meta = meta_by_handle(handle)
    if len(LIVE) >= MAX_LIVE_OBJECTS:
        return 0
    region = REGISTRY.alloc(max(size, 1), f"bpf_obj_new {meta.name if meta else size}")
    if meta is not None and meta.refcount_off >= 0:
        region.write(meta.refcount_off, _U32.pack(1))
    with _LOCK:
        LIVE[region.start] = LocalObj(region, meta)
    return region.start


def free_fields(meta: StructMeta | None, addr: int) -> None:
    """``bpf_obj_free_fields`` for the special fields of the object (or value) at
    ``addr``: referenced kptrs released, collections emptied."""
    if meta is None:
        return
    for f in meta.fields:
        if f.kind in ("kptr", "percpu_kptr") and f.kptr_tag != "kptr_untrusted":
            ptr = _U64.unpack(REGISTRY.read(addr + f.offset, 8))[0]
            if ptr:
                REGISTRY.write(addr + f.offset, bytes(8))
                (drop_object if f.kind == "kptr" else drop_percpu_object)(ptr)
        else:
            freer = FIELD_FREERS.get(f.kind)
            if freer is not None:
                freer(addr + f.offset, f)


def drop_object(addr: int) -> None:
    """``__bpf_obj_drop_impl``: one reference less; free at zero. An address pybpf did not
    allocate (or already freed) is ignored."""
    obj = LIVE.get(addr)
    if obj is None:
        return
    meta = obj.meta
    if meta is not None and meta.refcount_off >= 0:
        cnt = _U32.unpack(obj.region.read(meta.refcount_off, 4))[0]
        if cnt > 1:
            obj.region.write(meta.refcount_off, _U32.pack(cnt - 1))
            return
        obj.region.write(meta.refcount_off, _U32.pack(0))
    free_fields(meta, addr)
    with _LOCK:
        if LIVE.pop(addr, None) is None:
            return
    REGISTRY.remove(obj.region)


def obj_drop(ctx: RunContext | None, p: int, handle: int, *_: int) -> int:
    """``bpf_obj_drop_impl``."""
    drop_object(p)
    return 0


def refcount_acquire(ctx: RunContext | None, p: int, handle: int, *_: int) -> int:
    """``bpf_refcount_acquire_impl``: another owning reference, or NULL when the object's
    count already reached zero (a non-owning reference to an object being freed)."""
    obj = LIVE.get(p)
    meta = obj.meta if obj is not None else meta_by_handle(handle)
    if obj is None or meta is None or meta.refcount_off < 0:
        return 0
    cnt = _U32.unpack(obj.region.read(meta.refcount_off, 4))[0]
    if not cnt:
        return 0
    obj.region.write(meta.refcount_off, _U32.pack(cnt + 1))
    return p


# -- per-CPU objects ------------------------------------------------------------------------

#: where ``bpf_percpu_obj_new`` objects live: 64 MiB of each CPU's unit, reserved lazily
PERCPU_OBJECTS = PercpuArea(64 << 20, "bpf_percpu_obj_new")
#: the cell's address (what the program holds) -> the cell, for every live per-CPU object
PERCPU_LIVE: dict[int, Region] = {}


def percpu_obj_new(ctx: RunContext | None, size: int, handle: int, *_: int) -> int:
    """``bpf_percpu_obj_new_impl``: zeroed copies of a scalar struct on every CPU, or NULL.

    As the kernel's per-CPU ``bpf_mem_alloc``, the result is the address of a cell that
    holds the per-CPU pointer; ``bpf_this_cpu_ptr`` / ``bpf_per_cpu_ptr`` of it load the
    pointer first (the fixup of ``call_with_percpu_alloc_ptr``)."""
    if len(PERCPU_LIVE) >= MAX_LIVE_OBJECTS:
        return 0
    pcpu = PERCPU_OBJECTS.alloc(size, f"bpf_percpu_obj_new {size}")
    if not pcpu:
        return 0
    cell = REGISTRY.alloc(8, "bpf_percpu_obj_new cell", writable=False)
    cell.mv[:8] = _U64.pack(pcpu)
    with _LOCK:
        PERCPU_LIVE[cell.start] = cell
    return cell.start


def drop_percpu_object(addr: int) -> None:
    """Free the per-CPU object whose cell is at ``addr`` (unknown addresses are ignored)."""
    with _LOCK:
        cell = PERCPU_LIVE.pop(addr, None)
    if cell is None:
        return
    PERCPU_OBJECTS.free(_U64.unpack(cell.read(0, 8))[0])
    REGISTRY.remove(cell)


def percpu_obj_drop(ctx: RunContext | None, p: int, handle: int, *_: int) -> int:
    """``bpf_percpu_obj_drop_impl``."""
    drop_percpu_object(p)
    return 0


def live_objects() -> int:
    """How many allocated objects exist, per-CPU ones included (tests check that maps
    free theirs)."""
    return len(LIVE) + len(PERCPU_LIVE)


ALLOC_IMPLS: dict[str, Callable[..., int]] = {
    "bpf_obj_new_impl": obj_new,
    "bpf_obj_drop_impl": obj_drop,
    "bpf_refcount_acquire_impl": refcount_acquire,
    "bpf_percpu_obj_new_impl": percpu_obj_new,
    "bpf_percpu_obj_drop_impl": percpu_obj_drop,
}

__all__ = ["ALLOC_IMPLS", "FIELD_FREERS", "LIVE", "PERCPU_LIVE", "drop_object", "drop_percpu_object",
           "free_fields", "live_objects"]
