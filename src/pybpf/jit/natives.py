"""Helpers implemented in native code: helper id → IR generator.

A helper call in JIT code normally goes back into Python through the bridge. For the
helpers on the hot path the JIT emits native code instead, from this table — adding one
is adding a row. A row applies only when the program's implementation for that id *is*
the standard one: tests and ``HelperTable.override`` swap implementations (a fixed clock,
the conformance suite's ``unwind`` as helper 5), and an overridden helper must keep
running the override. An implementation is standard when it says so with
:func:`native_equivalent` (``impl.__bpf_native__ = "ktime_get_ns"``) or when it is a
``pybpf.helpers`` function named after the helper (``bpf_ktime_get_ns`` or
``ktime_get_ns``).

A generator receives an :class:`~pybpf.jit.translate.Emitter` (IR builder, run context,
pc) and r1–r5, and returns r0 as an ``i64`` value. It may add blocks, but must leave the
builder positioned where execution continues.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import llvmlite.ir as ir

from pybpf.jit.translate import CLOCK_GETTIME, I32, I64, PTR, Emitter, NativeGen
from pybpf.uapi.linux_bpf import BpfFuncId

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class NativeHelper:
    func_id: int
    name: str  # enum bpf_func_id name without BPF_FUNC_ (internal targets: impl's name)
    gen: NativeGen
    generic: int = 0  # internal call target standing for this helper (0: none)


NATIVE_HELPERS: dict[int, NativeHelper] = {}


def native(name: str) -> Callable[[NativeGen], NativeGen]:
    """Register a generator for the helper ``name`` (``"ktime_get_ns"``)."""

    def deco(gen: NativeGen) -> NativeGen:
        fid = int(getattr(BpfFuncId, f"BPF_FUNC_{name}"))
        NATIVE_HELPERS[fid] = NativeHelper(fid, name, gen)
        return gen

    return deco


def native_internal(func_id: int, impl_name: str, generic: int = 0
                    ) -> Callable[[NativeGen], NativeGen]:
    """Register a generator for a kernel-internal call target (:mod:`pybpf.helpers.internal`,
    ids above ``__BPF_FUNC_MAX_ID``) whose standard implementation is the
    ``pybpf.helpers`` function ``impl_name``; ``generic`` is the helper it stands for
    (the row then applies only while that helper's implementation is standard too)."""

    def deco(gen: NativeGen) -> NativeGen:
        NATIVE_HELPERS[func_id] = NativeHelper(func_id, impl_name, gen, generic)
        return gen

    return deco


def native_equivalent(name: str) -> Callable[[F], F]:
    """Mark a Python implementation as equivalent to the native helper ``name``."""

    def deco(fn: F) -> F:
        fn.__bpf_native__ = name  # type: ignore[attr-defined]
        return fn

    return deco


def is_standard(impl: Any, name: str) -> bool:
    marker = getattr(impl, "__bpf_native__", None)
    if marker is not None:
        return bool(marker == name)
    module = getattr(impl, "__module__", "") or ""
    return module.startswith("pybpf.helpers") and getattr(impl, "__name__", "") in (
        name, f"bpf_{name}")


def natives_for(helpers: Mapping[int, Any]) -> dict[int, NativeHelper]:
    """The native rows that may replace the given implementations."""
    out: dict[int, NativeHelper] = {}
    for fid, impl in helpers.items():
        row = NATIVE_HELPERS.get(fid)
        if row is None or not is_standard(impl, row.name):
            continue
        if row.generic:  # a direct call of what the generic helper does: not overridden
            base = NATIVE_HELPERS.get(row.generic)
            generic_impl = helpers.get(row.generic)
            if base is None or (generic_impl is not None
                                and not is_standard(generic_impl, base.name)):
                continue
        out[fid] = row
    return out


# --- time ------------------------------------------------------------------------------
CLOCK_MONOTONIC = 1
CLOCK_MONOTONIC_COARSE = 6
CLOCK_BOOTTIME = 7
CLOCK_TAI = 11


def _clock(clock_id: int) -> NativeGen:
    def gen(em: Emitter, args: list[ir.Value]) -> ir.Value:
        b = em.b
        ts = b.alloca(ir.ArrayType(I64, 2))
        ts.type = PTR
        em.call_address(CLOCK_GETTIME, ir.FunctionType(I32, [I32, PTR]),
                        [ir.Constant(I32, clock_id), ts])
        sec = b.load(b.gep(ts, [ir.Constant(I64, 0)], source_etype=I64), typ=I64)
        nsec = b.load(b.gep(ts, [ir.Constant(I64, 1)], source_etype=I64), typ=I64)
        return b.add(b.mul(sec, ir.Constant(I64, 1_000_000_000)), nsec)

    return gen


native("ktime_get_ns")(_clock(CLOCK_MONOTONIC))
native("ktime_get_boot_ns")(_clock(CLOCK_BOOTTIME))
native("ktime_get_coarse_ns")(_clock(CLOCK_MONOTONIC_COARSE))
native("ktime_get_tai_ns")(_clock(CLOCK_TAI))


# --- CPU ---------------------------------------------------------------------------------
@native("get_smp_processor_id")
def _smp_processor_id(em: Emitter, args: list[ir.Value]) -> ir.Value:
    cpu = em.b.load(em.field_ptr("cpu"), typ=I64)
    return em.b.and_(cpu, ir.Constant(I64, 0xFFFFFFFF))


@native("get_numa_node_id")
def _numa_node_id(em: Emitter, args: list[ir.Value]) -> ir.Value:
    return ir.Constant(I64, 0)


@native("get_prandom_u32")
def _prandom_u32(em: Emitter, args: list[ir.Value]) -> ir.Value:
    """xorshift64* on the run context's state (per thread, like the kernel's per-CPU state)."""
    b = em.b
    ptr = em.field_ptr("prandom")
    x = b.load(ptr, typ=I64)
    x = b.xor(x, b.lshr(x, ir.Constant(I64, 12)))
    x = b.xor(x, b.shl(x, ir.Constant(I64, 25)))
    x = b.xor(x, b.lshr(x, ir.Constant(I64, 27)))
    b.store(x, ptr)
    return b.lshr(b.mul(x, ir.Constant(I64, 0x2545F4914F6CDD1D)), ir.Constant(I64, 32))


# --- maps (array / hash lookups, hash updates and deletes, ring buffer) ---------------------
def _register_maps_and_packets() -> None:
    from pybpf.jit import mapgen, pktgen

    mapgen.register()
    pktgen.register()


_register_maps_and_packets()
