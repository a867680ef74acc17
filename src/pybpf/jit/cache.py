"""The compile cache: reloading the same program reuses its native code.

The kernel JITs every load afresh; pybpf keys native code by everything that determines
it — the program's bytes after fixups (which include map addresses, so the program tag
alone would not do), the layouts of the maps native code was specialised on, sanitize and
budget modes, which helpers run natively, and whether line info is emitted — so loading the same object twice costs one dictionary lookup.
Blinded programs are never cached: their point is a fresh random key per load.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pybpf.jit.program import CompiledCode


class CacheKey(NamedTuple):
    program: bytes
    sanitize: bool
    budgeted: bool
    natives: tuple[tuple[int, str], ...]
    debug_info: bool
    maps: tuple[object, ...] = ()  # specialisations of native map code (mapgen.map_fingerprint)


class CompileCache:
    """A bounded LRU map ``CacheKey → CompiledCode`` (thread-safe)."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[CacheKey, CompiledCode] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> CompiledCode | None:
        with self._lock:
            code = self._entries.get(key)
            if code is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return code

    def put(self, key: CacheKey, code: CompiledCode) -> None:
        with self._lock:
            self._entries[key] = code
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


CACHE = CompileCache()
