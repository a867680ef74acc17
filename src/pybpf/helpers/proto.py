"""Helpers as data: ``FuncProto`` (the kernel's ``struct bpf_func_proto``) plus an implementation.

The verifier reads the prototype (argument and return types, ``gpl_only``); the
interpreter and the JIT call the implementation. Program types choose which helpers they
offer (``get_func_proto``); nothing switches on helper ids elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


class ArgType(IntEnum):
    """``enum bpf_arg_type`` (kernel names), the subset pybpf's helpers use."""

    ARG_DONTCARE = 0
    ARG_CONST_MAP_PTR = 1
    ARG_PTR_TO_MAP_KEY = 2
    ARG_PTR_TO_MAP_VALUE = 3
    ARG_PTR_TO_MEM = 4
    ARG_PTR_TO_ARENA = 5
    ARG_CONST_SIZE = 6
    ARG_CONST_SIZE_OR_ZERO = 7
    ARG_PTR_TO_CTX = 8
    ARG_ANYTHING = 9
    ARG_PTR_TO_SPIN_LOCK = 10
    ARG_PTR_TO_SOCK_COMMON = 11
    ARG_PTR_TO_SOCKET = 12
    ARG_PTR_TO_BTF_ID = 13
    ARG_PTR_TO_RINGBUF_MEM = 14
    ARG_CONST_ALLOC_SIZE_OR_ZERO = 15
    ARG_PTR_TO_BTF_ID_SOCK_COMMON = 16
    ARG_PTR_TO_PERCPU_BTF_ID = 17
    ARG_PTR_TO_FUNC = 18
    ARG_PTR_TO_STACK = 19
    ARG_PTR_TO_CONST_STR = 20
    ARG_PTR_TO_TIMER = 21
    ARG_KPTR_XCHG_DEST = 22
    ARG_PTR_TO_DYNPTR = 23


class ArgFlag(IntFlag):
    """Type modifiers OR-ed into an argument type (``PTR_MAYBE_NULL``, ``MEM_RDONLY``…)."""

    NONE = 0
    PTR_MAYBE_NULL = 1 << 8
    MEM_RDONLY = 1 << 9
    MEM_RINGBUF = 1 << 10
    MEM_USER = 1 << 11
    MEM_UNINIT = 1 << 17
    MEM_FIXED_SIZE = 1 << 24
    MEM_WRITE = 1 << 25


class RetType(IntEnum):
    """``enum bpf_return_type`` (kernel names)."""

    RET_INTEGER = 0
    RET_VOID = 1
    RET_PTR_TO_MAP_VALUE = 2
    RET_PTR_TO_SOCKET = 3
    RET_PTR_TO_TCP_SOCK = 4
    RET_PTR_TO_SOCK_COMMON = 5
    RET_PTR_TO_MEM = 6
    RET_PTR_TO_MEM_OR_BTF_ID = 7
    RET_PTR_TO_BTF_ID = 8


HelperImpl = Callable[..., int]
"""``impl(ctx: RunContext, r1, r2, r3, r4, r5) -> r0`` (all unsigned 64-bit ints)."""


@dataclass(frozen=True)
class FuncProto:
    """A helper's prototype and implementation (``struct bpf_func_proto``)."""

    func_id: int
    name: str  # without the bpf_ prefix, as in enum bpf_func_id: "map_lookup_elem"
    impl: HelperImpl | None = None
    ret_type: int = RetType.RET_INTEGER
    arg_types: tuple[int, ...] = ()
    gpl_only: bool = False
    might_sleep: bool = False
    pkt_access: bool = False
    ret_flags: int = 0
    arg_size: tuple[int, ...] = ()  # MEM_FIXED_SIZE sizes per argument
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def kernel_name(self) -> str:
        return f"bpf_{self.name}"


class HelperTable:
    """Helper id → prototype. One table per ``Kernel`` instance, so tests can override.

    ``override(func_id, impl)`` swaps an implementation (a fixed clock, a seeded prandom)
    without touching the prototype the verifier sees.
    """

    def __init__(self, protos: dict[int, FuncProto] | None = None,
                 overridden: set[int] | None = None) -> None:
        self._protos: dict[int, FuncProto] = dict(protos or {})
        self._overridden: set[int] = set(overridden or ())

    def register(self, proto: FuncProto) -> FuncProto:
        self._protos[proto.func_id] = proto
        return proto

    def get(self, func_id: int) -> FuncProto | None:
        return self._protos.get(func_id)

    def override(self, func_id: int, impl: HelperImpl) -> None:
        proto = self._protos[func_id]
        self._protos[func_id] = FuncProto(**{**proto.__dict__, "impl": impl})
        self._overridden.add(func_id)

    def overridden(self, func_id: int) -> bool:
        """Whether the host replaced this helper's implementation (it then wins over a
        program type's own implementation of the id as well)."""
        return func_id in self._overridden

    def impls(self) -> dict[int, HelperImpl]:
        return {fid: p.impl for fid, p in self._protos.items() if p.impl is not None}

    def __contains__(self, func_id: int) -> bool:
        return func_id in self._protos

    def __iter__(self) -> Iterator[FuncProto]:
        return iter(self._protos.values())

    def copy(self) -> HelperTable:
        return HelperTable(self._protos, self._overridden)
