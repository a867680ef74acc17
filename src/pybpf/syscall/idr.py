"""The kernel's IDR with ``idr_alloc_cyclic(idr, obj, 1, INT_MAX)``: object IDs.

Programs, maps, BTF objects and links each get an ID from their own IDR. Allocation is
cyclic: a new ID is the lowest free one *after the last one handed out*, wrapping to 1 at
``INT_MAX`` — so a freed ID is not reused at once, which is what lets tools hold an ID
across a close and reopen without picking up a different object. ``get_next`` is
``idr_get_next`` (the lowest used ID >= start), the walk behind ``*_GET_NEXT_ID``.
"""

from __future__ import annotations

import bisect
import errno
import threading
from typing import Generic, TypeVar

from pybpf.errors import BpfError

INT_MAX = 0x7FFFFFFF
T = TypeVar("T")


class Idr(Generic[T]):
    """IDs in ``[1, INT_MAX)`` allocated cyclically; thread-safe."""

    def __init__(self, name: str, start: int = 1) -> None:
        self.name = name
        self._objs: dict[int, T] = {}
        self._sorted: list[int] = []
        self._next = start  # idr_alloc_cyclic's cursor (idr->idr_next)
        self._lock = threading.Lock()

    def alloc_cyclic(self, obj: T) -> int:
        """Store ``obj`` and return its ID; ``ENOSPC`` when every ID is taken."""
        with self._lock:
            if len(self._objs) >= INT_MAX - 1:
                raise BpfError(errno.ENOSPC, f"{self.name} IDR full")
            cand = self._next if 1 <= self._next < INT_MAX else 1
            while cand in self._objs:
                cand = cand + 1 if cand + 1 < INT_MAX else 1
            self._objs[cand] = obj
            bisect.insort(self._sorted, cand)
            self._next = cand + 1
            return cand

    def remove(self, ident: int) -> None:
        with self._lock:
            if self._objs.pop(ident, None) is not None:
                i = bisect.bisect_left(self._sorted, ident)
                if i < len(self._sorted) and self._sorted[i] == ident:
                    del self._sorted[i]

    def find(self, ident: int) -> T | None:
        return self._objs.get(ident)

    def get_next(self, start: int) -> tuple[int, T] | None:
        """The lowest used ID >= ``start`` and its object, or ``None``."""
        with self._lock:
            i = bisect.bisect_left(self._sorted, start)
            if i >= len(self._sorted):
                return None
            ident = self._sorted[i]
            return ident, self._objs[ident]

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._sorted)

    def __len__(self) -> int:
        return len(self._objs)
