"""kprobe-style attachment to Python functions.

``@kernel.kprobe`` (or ``kernel.kprobe(func)``) returns a wrapper; KPROBE programs attached
with ``probe.attach(prog)`` run on every call before the function, ``probe.attach(prog,
retprobe=True)`` after it returns. Their ctx is a ``struct pt_regs`` (x86-64 layout,
:class:`pybpf.uapi.pt_regs`): the call's arguments in ``di, si, dx, cx, r8, r9`` (ints as
u64, ``bool`` as 0/1, bytes-like arguments as the address of a registered read-only copy
so ``bpf_probe_read_kernel/user`` can read them, anything else 0), the return value in
``ax`` for the return probe, and ``ip`` a stable per-function pseudo address.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import zlib
from collections.abc import Callable
from typing import Any

from pybpf.hooks.attachments import close_link, hook_link, run_link
from pybpf.runtime.memory import REGISTRY, Region
from pybpf.uapi import pt_regs

ARG_REGS = ("di", "si", "dx", "cx", "r8", "r9")
PROG_TYPE_KPROBE = 2
M64 = (1 << 64) - 1


class Kprobe:
    """A probed Python function (the returned wrapper is callable like the original)."""

    def __init__(self, kernel: Any, func: Callable[..., Any], name: str) -> None:
        self.kernel = kernel
        self.func = func
        self.name = name
        self.ip = 0xFFFFFFFF81000000 | (zlib.crc32(name.encode()) << 4)
        self.entry: list[Any] = []
        self.ret: list[Any] = []
        self.hits = 0
        self._lock = threading.Lock()
        functools.update_wrapper(self, func)

    # -- hook registry (link ops) ----------------------------------------------------------
    def attach(self, prog: Any, *, retprobe: bool = False) -> Any:
        """Attach a KPROBE program on entry (or return); returns the link."""
        link = hook_link(self.kernel, _Side(self, retprobe), prog, (PROG_TYPE_KPROBE,))
        return link

    def detach(self, link: Any) -> None:
        close_link(self.kernel, link)

    # -- the call ------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.hits += 1
        if not self.entry and not self.ret:
            return self.func(*args, **kwargs)
        regions: list[Region] = []
        try:
            regs = pt_regs()
            regs.ip = self.ip
            for reg, value in zip(ARG_REGS, [*args, *kwargs.values()], strict=False):
                setattr(regs, reg, self._arg(value, regions))
            self._run(self.entry, regs)
            result = self.func(*args, **kwargs)
            if self.ret:
                regs.ax = self._arg(result, regions)
                self._run(self.ret, regs)
            return result
        finally:
            for r in regions:
                REGISTRY.remove(r)

    def _arg(self, value: Any, regions: list[Region]) -> int:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value & M64
        if isinstance(value, str):
            value = value.encode() + b"\0"
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            r = REGISTRY.alloc(max(len(data), 1), f"kprobe {self.name} arg", writable=False)
            r.mv[:len(data)] = data
            regions.append(r)
            return r.start
        return 0

    def _run(self, links: list[Any], regs: pt_regs) -> None:
        if not links:
            return
        region = REGISTRY.wrap(regs, f"kprobe {self.name} pt_regs", writable=False)
        try:
            for link in list(links):
                link.extra.setdefault("func_ip", self.ip)
                run_link(self.kernel, link, region.start)
        finally:
            REGISTRY.remove(region)


class _Side:
    """The entry or the return list of a probe, as a hook for :func:`hook_link`."""

    def __init__(self, probe: Kprobe, ret: bool) -> None:
        self.probe, self.ret = probe, ret

    def register(self, link: Any) -> None:
        (self.probe.ret if self.ret else self.probe.entry).append(link)

    def unregister(self, link: Any) -> None:
        lst = self.probe.ret if self.ret else self.probe.entry
        if link in lst:
            lst.remove(link)


def kprobe(kernel: Any, func: Callable[..., Any] | None = None, *,
           name: str | None = None) -> Any:
    """``kernel.kprobe(func)`` → :class:`Kprobe`; ``@kernel.kprobe(name=...)`` as decorator."""
    if func is None:
        return lambda f: Kprobe(kernel, f, name or f.__qualname__)
    return Kprobe(kernel, func, name or str(getattr(func, "__qualname__", repr(func))))


assert ctypes.sizeof(pt_regs) == 168
