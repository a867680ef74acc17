"""The CPUs a run can pretend to be on.

Per-CPU map values have one slot per *possible* CPU (``num_possible_cpus()``), exactly as
the kernel sizes them, so a differential test sees the same value layout from pybpf and
from the live kernel. A run's CPU id indexes those slots, natively in JIT code, so it is
checked once when the run's context is made.
"""

from __future__ import annotations

import functools
import os


@functools.cache
def num_possible_cpus() -> int:
    """Possible CPUs of this host, as ``/sys/devices/system/cpu/possible`` says."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
        count = 0
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            count += (int(hi) if hi else int(lo)) - int(lo) + 1
        return max(count, 1)
    except (OSError, ValueError):
        return os.cpu_count() or 1


def check_cpu(cpu: int) -> int:
    """``cpu`` if it is a possible CPU id, else ``ValueError`` (never a wild per-CPU slot)."""
    n = num_possible_cpus()
    if not 0 <= cpu < n:
        raise ValueError(f"cpu {cpu} is not a possible CPU (0..{n - 1})")
    return cpu


#: pybpf's per-CPU memory model: CPU ``c``'s copy of any per-CPU object lies
#: ``c * PCPU_UNIT_STRIDE`` bytes after CPU 0's, for every object, as the kernel's per-CPU
#: units do; ``this_cpu_off(c)`` is what the per-CPU mov (``BPF_MOV64_PERCPU_REG``) adds.
PCPU_UNIT_STRIDE = 1 << 30


def this_cpu_off(cpu: int) -> int:
    """The per-CPU offset of ``cpu`` (the kernel's ``this_cpu_off``)."""
    return cpu * PCPU_UNIT_STRIDE
