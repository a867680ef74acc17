"""Kernel variables that inlined helpers read: per-CPU ``cpu_number`` and ``jiffies``.

Linux 6.18 on x86-64 inlines two helpers into loads of kernel variables
(``do_misc_fixups``)::

    bpf_get_smp_processor_id():  r0 = (u32)&cpu_number       (a MOV64_IMM)
                                 r0 = &(void __percpu *)(r0)  (this CPU's copy)
                                 r0 = *(u32 *)(r0 +0)
    bpf_jiffies64():             r0 = &jiffies                (ld_imm64)
                                 r0 = *(u64 *)(r0 +0)

pybpf's rewritten programs run those very instructions, so the variables exist here as
native memory registered (read-only for programs) in the process-wide
:data:`~pybpf.runtime.memory.REGISTRY`:

- ``cpu_number``: one u32 per possible CPU, CPU ``c``'s copy ``this_cpu_off(c)`` after
  CPU 0's (pybpf's per-CPU model, :mod:`pybpf.runtime.cpus`), holding ``c``. The
  instruction carries CPU 0's address in a sign-extended 32-bit immediate, so that copy
  must lie below 2 GiB: each CPU's page is mapped at a fixed address (``mmap`` with
  ``MAP_FIXED_NOREPLACE``) from a base under 2 GiB. Where that fails (another platform,
  the addresses taken) :func:`cpu_number_addr` is ``None`` and the verifier keeps the
  helper call.
- ``jiffies``: a u64 counting 4 ms ticks of ``CLOCK_MONOTONIC`` (HZ=250, what the
  ``bpf_jiffies64`` helper implementation returns), refreshed by a daemon thread every
  tick once a program needs it (restarted in a forked child).

Programs run against a private :class:`~pybpf.runtime.memory.MemoryRegistry` (some tests
build one) do not see these regions: an inlined load there faults like any unknown
address.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

from pybpf.runtime.cpus import num_possible_cpus, this_cpu_off
from pybpf.runtime.memory import REGISTRY, Region

#: jiffies per second of the ``bpf_jiffies64`` helper (CONFIG_HZ=250)
HZ = 250
_TICK_NS = 1_000_000_000 // HZ

_PROT_READ, _PROT_WRITE = 1, 2
_MAP_PRIVATE, _MAP_ANONYMOUS, _MAP_FIXED_NOREPLACE = 0x02, 0x20, 0x100000
_PAGE = 4096
#: candidate bases for CPU 0's ``cpu_number`` (below 2 GiB, above the usual low mappings)
_BASES = tuple(range(0x10000000, 0x80000000, 0x08000000))

_lock = threading.Lock()
_cpu_number: int | None = None
_cpu_number_tried = False
_jiffies: ctypes.c_uint64 | None = None
_jiffies_region: Region | None = None


def jiffies_now() -> int:
    """The current ``jiffies`` value (what the helper returns)."""
    return time.monotonic_ns() // _TICK_NS


def _map_pages(base: int, n: int) -> list[int] | None:
    """Map one page per CPU at ``base + this_cpu_off(c)``, or ``None`` (nothing kept)."""
    libc = ctypes.CDLL(None, use_errno=True)
    mmap_fn, munmap_fn = libc.mmap, libc.munmap
    mmap_fn.restype = ctypes.c_void_p
    mmap_fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                        ctypes.c_int, ctypes.c_long]
    munmap_fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    got: list[int] = []
    for cpu in range(n):
        want = base + this_cpu_off(cpu)
        addr = mmap_fn(want, _PAGE, _PROT_READ | _PROT_WRITE,
                       _MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_FIXED_NOREPLACE, -1, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value or addr != want:
            if addr not in (None, ctypes.c_void_p(-1).value):
                munmap_fn(addr, _PAGE)  # an old kernel took the address as a hint
            for a in got:
                munmap_fn(a, _PAGE)
            return None
        got.append(addr)
    return got


def cpu_number_addr() -> int | None:
    """CPU 0's ``cpu_number`` (below 2 GiB), mapping and registering it on first use."""
    global _cpu_number, _cpu_number_tried
    with _lock:
        if _cpu_number_tried:
            return _cpu_number
        _cpu_number_tried = True
        if sys.platform != "linux" or ctypes.sizeof(ctypes.c_void_p) != 8:
            return None
        n = num_possible_cpus()
        for base in _BASES:
            if base + this_cpu_off(n - 1) + _PAGE > 1 << 47:
                break
            pages = _map_pages(base, n)
            if pages is None:
                continue
            for cpu, addr in enumerate(pages):
                ctypes.c_uint32.from_address(addr).value = cpu
                mv = memoryview((ctypes.c_char * 4).from_address(addr)).cast("B")
                REGISTRY.add(Region(addr, 4, f"cpu_number cpu{cpu}", mv, True, False))
            _cpu_number = base
            return base
        return None


def _tick() -> None:
    word = _jiffies
    assert word is not None
    while True:
        word.value = jiffies_now()
        time.sleep(_TICK_NS / 1e9)


def jiffies_addr() -> int:
    """The address of ``jiffies``, registering it and starting its ticker on first use."""
    global _jiffies, _jiffies_region
    with _lock:
        if _jiffies is None:
            _jiffies = ctypes.c_uint64(jiffies_now())
            mv = memoryview(_jiffies).cast("B")
            _jiffies_region = REGISTRY.add(Region(ctypes.addressof(_jiffies), 8, "jiffies",
                                                  mv, True, False, _jiffies))
            _start_ticker()
            if hasattr(os, "register_at_fork"):  # a forked child has no ticker thread
                os.register_at_fork(after_in_child=_start_ticker)
        return ctypes.addressof(_jiffies)


def _start_ticker() -> None:
    threading.Thread(target=_tick, name="pybpf-jiffies", daemon=True).start()
