"""Constants and small rules every map type shares (``include/linux/bpf.h`` facts).

Kept apart from the map types so each ``type_*.py`` reads like its kernel counterpart:
flag masks, the ``ENOTSUPP`` errno the kernel leaks to user space (524), rounding, and
the copy rules for values that contain a ``struct bpf_spin_lock`` (updates never
overwrite the lock word; lookups hand out the value with the lock zeroed).
"""

from __future__ import annotations

import errno

from pybpf.errors import BpfError
from pybpf.uapi import (
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY,
    BPF_F_WRONLY_PROG,
)

ENOTSUPP = 524
"""The kernel-internal ``ENOTSUPP`` that several map paths return to user space."""

BPF_F_ACCESS_MASK = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG
PAGE_SIZE = 4096
KMALLOC_MAX_SIZE = 1 << 22  # x86_64 with SLUB: 1 << (MAX_PAGE_ORDER + PAGE_SHIFT)
PCPU_MIN_UNIT_SIZE = 32 << 10
MAX_BPF_STACK = 512
INT_MAX = 0x7FFFFFFF
U32_MAX = 0xFFFFFFFF
BPF_SPIN_LOCK_SIZE = 4

#: Bytes a map may allocate in pybpf before MAP_CREATE fails with ENOMEM (the kernel's
#: limit is the memory cgroup; ours keeps a typo from eating the machine).
MAX_MAP_BYTES = 1 << 31


def round_up(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def roundup_pow_of_two(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def is_power_of_2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def bpf_map_flags_access_ok(flags: int) -> bool:
    """``bpf_map_flags_access_ok``: not both RDONLY_PROG and WRONLY_PROG."""
    return (flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)) != (
        BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)


def fail(err: int, message: str = "") -> BpfError:
    """A :class:`BpfError` for ``err`` (raise it)."""
    return BpfError(err, message)


def check_mem(size: int) -> None:
    """ENOMEM for allocations beyond :data:`MAX_MAP_BYTES`."""
    if size > MAX_MAP_BYTES:
        raise BpfError(errno.ENOMEM, f"map needs {size} bytes")


def value_with_lock_zeroed(data: bytes, lock_off: int) -> bytes:
    """``check_and_init_map_value``: the copy user space sees has the lock word zeroed."""
    if lock_off < 0:
        return data
    return data[:lock_off] + b"\0" * BPF_SPIN_LOCK_SIZE + data[lock_off + BPF_SPIN_LOCK_SIZE:]


def store_value(mv: memoryview, off: int, data: bytes, size: int, lock_off: int) -> None:
    """``copy_map_value``: write ``size`` bytes of ``data`` at ``off``, keeping the lock word."""
    if lock_off < 0:
        mv[off:off + size] = data[:size]
        return
    mv[off:off + lock_off] = data[:lock_off]
    rest = lock_off + BPF_SPIN_LOCK_SIZE
    mv[off + rest:off + size] = data[rest:size]
