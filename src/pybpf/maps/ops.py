"""The ``MapOps`` protocol (the kernel's ``struct bpf_map_ops``) and its registry.

DESIGN decision 1: a map type is one module that implements :class:`MapOps` and registers
it under its ``BPF_MAP_TYPE_*`` with :func:`register_map_ops`. The syscall layer, the
helpers, the verifier and the JIT reach map behaviour only through these tables — they
never switch on the map type.

Error convention: operations raise :class:`pybpf.errors.BpfError` with the kernel's errno;
the syscall layer turns that into ``-errno``.

Two faces of every operation:
- ``map_*`` methods are what programs reach through helpers: keys/values are addresses
  in native memory (``lookup`` returns the value's stable address, or 0 for NULL).
- ``sys_*`` methods are what ``bpf()`` commands and the Python API reach: keys/values are
  bytes, per-CPU values are ``round_up(value_size, 8) * num_possible_cpus`` bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pybpf.maps.core import BpfMap, MapAttr


@runtime_checkable
class MapOps(Protocol):
    """Behaviour of one map type. Optional operations raise ``BpfError(EOPNOTSUPP/EINVAL)``
    as the kernel does when the type lacks them (see each map type's module)."""

    map_type: int

    # -- creation (bpf_map_alloc_check / map_alloc / map_free) --------------------------
    def map_alloc_check(self, attr: MapAttr) -> None:
        """Validate creation attributes; raise ``BpfError`` with the kernel's errno."""

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        """Allocate the map and its native storage."""

    def map_free(self, bmap: BpfMap) -> None:
        """Release storage (called when the last reference goes)."""

    # -- program side: native addresses -------------------------------------------------
    def map_lookup_elem(self, bmap: BpfMap, key_addr: int) -> int:
        """Address of the value for the key at ``key_addr``, or 0."""

    def map_update_elem(self, bmap: BpfMap, key_addr: int, value_addr: int, flags: int) -> int:
        """0 or ``-errno`` (helpers return errors, they do not raise)."""

    def map_delete_elem(self, bmap: BpfMap, key_addr: int) -> int:
        """0 or ``-errno``."""

    # -- syscall / Python side: bytes ---------------------------------------------------
    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int) -> bytes: ...

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None: ...

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None: ...

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes: ...

    def sys_lookup_and_delete(self, bmap: BpfMap, key: bytes | None, flags: int) -> bytes: ...

    def mem_usage(self, bmap: BpfMap) -> int:
        """Bytes of memory the map uses (``bpf_map_info`` / fdinfo ``memlock``)."""

    # -- extensions (implemented for every type by maps.base.BaseMapOps) ----------------
    # Program side, per-CPU aware: ``cpu`` is the CPU the running program is on.
    #   map_lookup_elem(bmap, key_addr, cpu=0) / map_update_elem(..., cpu=0) /
    #   map_delete_elem(..., cpu=0) / map_push_elem(bmap, value_addr, flags) /
    #   map_pop_elem(bmap, value_addr) / map_peek_elem(bmap, value_addr) /
    #   map_lookup_percpu_elem(bmap, key_addr, cpu) /
    #   map_for_each_callback(bmap, callback(key_addr, value_addr) -> int, cpu) -> int
    # Syscall side:
    #   sys_value_size(bmap)   — bpf_map_value_size(): bytes of a value in bpf_attr
    #   lookup_reads_value     — BPF_MAP_LOOKUP_ELEM passes the *value* buffer in (bloom)
    #   batch_token_size(bmap) — bytes of in_batch/out_batch tokens
    #   sys_lookup_batch / sys_lookup_and_delete_batch / sys_update_batch /
    #   sys_delete_batch -> maps.batch.BatchResult
    #   native_layout(bmap)    — the storage layout, for the JIT (dict of addresses/sizes)


_BUILTINS_LOADED = False  # every type_*.py imported once, whatever registered first
_REGISTRY: dict[int, MapOps] = {}


def register_map_ops(ops: MapOps) -> MapOps:
    """Register a map type's operations (one call per map-type module)."""
    _REGISTRY[int(ops.map_type)] = ops
    return ops


def find_map_ops(map_type: int) -> MapOps | None:
    """The operations of a map type, or ``None`` (MAP_CREATE then fails with EINVAL)."""
    _load_builtin_types()
    return _REGISTRY.get(int(map_type))


def registered_map_types() -> list[int]:
    _load_builtin_types()
    return sorted(_REGISTRY)


def _load_builtin_types() -> None:
    """Import every map-type module of this package so each registers itself."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    import importlib
    import pkgutil

    import pybpf.maps as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("type_"):
            importlib.import_module(f"pybpf.maps.{info.name}")
