"""``bpf_kptr_xchg``: swap the pointer in a map value's kptr field (``kernel/bpf/helpers.c``).

The verifier has checked that the destination is a referenced kptr field and the new
pointer one of its type (:mod:`pybpf.verifier.kptr`); at run time the exchange is one
atomic 8-byte swap, and the old pointer goes back to the program as the reference it now
owns (NULL if the field was empty).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pybpf.runtime.context import RunContext

_U64 = struct.Struct("<Q")
_XCHG_LOCK = threading.Lock()  # programs on other threads may swap the same field


def kptr_xchg(ctx: RunContext, dst: int, ptr: int, *_: int) -> int:
    with _XCHG_LOCK:
        old: int = _U64.unpack(ctx.mem.read(dst, 8))[0]
        ctx.mem.write(dst, _U64.pack(ptr & 0xFFFFFFFFFFFFFFFF))
    return old


IMPLS: dict[int, Callable[..., int]] = {194: kptr_xchg}
