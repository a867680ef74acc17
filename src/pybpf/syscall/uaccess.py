"""``copy_from_user`` / ``copy_to_user`` for pointers that arrive inside ``bpf_attr``.

DESIGN decision 3: a pointer a caller hands to ``bpf()`` (``insns``, ``license``,
``log_buf``, ``key``, ``value``, ``info``, ``pathname``…) is a real address in this
process. It is never dereferenced directly: a wrong address must give ``EFAULT``, as in
the kernel, and never a segmentation fault. ``process_vm_readv`` / ``process_vm_writev``
on our own pid do exactly that — the kernel walks our page tables and reports a fault as
an error. Where those calls are unavailable (seccomp, non-Linux) ``/proc/self/mem`` is the
fallback; with neither, every user access faults.

All functions raise :class:`UserFault` (``errno == EFAULT``); the command handlers turn it
into ``-EFAULT`` like any other :class:`~pybpf.errors.BpfError`.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import sys
from typing import Any

from pybpf.errors import BpfError

#: Largest string ``strncpy_from_user`` callers in kernel/bpf copy (PATH_MAX).
PATH_MAX = 4096
_CHUNK = 4096


class UserFault(BpfError):
    """A user pointer that cannot be read or written: the kernel's ``-EFAULT``."""

    def __init__(self, addr: int, size: int, write: bool = False) -> None:
        self.addr = addr
        self.size = size
        what = "write" if write else "read"
        super().__init__(errno.EFAULT, f"bad user address {addr:#x} ({what} of {size} bytes)")


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


@functools.cache
def _vm_calls() -> tuple[Any, Any] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        readv, writev = libc.process_vm_readv, libc.process_vm_writev
    except (OSError, AttributeError):
        return None
    for fn in (readv, writev):
        fn.restype = ctypes.c_ssize_t
        fn.argtypes = [ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong,
                       ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.c_ulong]
    # Probe once: a seccomp filter or a hardened kernel may refuse the call itself.
    probe = ctypes.create_string_buffer(8)
    local = _IoVec(ctypes.addressof(probe), 8)
    remote = _IoVec(ctypes.addressof(probe), 8)
    if readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) != 8:
        return None
    return readv, writev


@functools.cache
def _proc_mem() -> int | None:
    try:
        return os.open("/proc/self/mem", os.O_RDWR)
    except OSError:
        return None


_MAX_ADDR = (1 << 64) - 1


def _valid_range(addr: int, size: int) -> bool:
    return addr > 0 and addr + size - 1 <= _MAX_ADDR


def copy_from_user(addr: int, size: int) -> bytes:
    """``size`` bytes at user address ``addr``; :class:`UserFault` if any byte is unreadable."""
    if size < 0:
        raise UserFault(addr, size)
    if size == 0:
        return b""
    if not _valid_range(addr, size):
        raise UserFault(addr, size)
    buf = ctypes.create_string_buffer(size)
    calls = _vm_calls()
    if calls is not None:
        local = _IoVec(ctypes.addressof(buf), size)
        remote = _IoVec(addr, size)
        got = calls[0](os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if got != size:
            raise UserFault(addr, size)
        return buf.raw
    fd = _proc_mem()
    if fd is None:
        raise UserFault(addr, size)
    try:
        data = os.pread(fd, size, addr)
    except (OSError, OverflowError, ValueError):
        raise UserFault(addr, size) from None
    if len(data) != size:
        raise UserFault(addr, size)
    return data


def copy_to_user(addr: int, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` at user address ``addr``; :class:`UserFault` if it cannot be written.

    A partial write (the tail page unmapped) leaves the head written, as the kernel's
    ``copy_to_user`` does, and still faults.
    """
    size = len(data)
    if size == 0:
        return
    if not _valid_range(addr, size):
        raise UserFault(addr, size, write=True)
    calls = _vm_calls()
    if calls is not None:
        src = ctypes.create_string_buffer(bytes(data), size)
        local = _IoVec(ctypes.addressof(src), size)
        remote = _IoVec(addr, size)
        put = calls[1](os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if put != size:
            raise UserFault(addr, size, write=True)
        return
    fd = _proc_mem()
    if fd is None:
        raise UserFault(addr, size, write=True)
    try:
        done = os.pwrite(fd, bytes(data), addr)
    except (OSError, OverflowError, ValueError):
        raise UserFault(addr, size, write=True) from None
    if done != size:
        raise UserFault(addr, size, write=True)


def put_user_u32(addr: int, value: int) -> None:
    copy_to_user(addr, (value & 0xFFFFFFFF).to_bytes(4, "little"))


def put_user_u64(addr: int, value: int) -> None:
    copy_to_user(addr, (value & _MAX_ADDR).to_bytes(8, "little"))


def strncpy_from_user(addr: int, count: int) -> bytes:
    """The NUL-terminated string at ``addr``, at most ``count`` bytes (without the NUL).

    Like the kernel: a string longer than ``count`` is returned truncated to ``count``
    bytes (callers decide whether that is an error), an unreadable byte before the NUL
    is a fault. Reads page-sized pieces so a short string near an unmapped page is fine.
    """
    if addr == 0:
        raise UserFault(addr, 1)
    out = bytearray()
    while len(out) < count:
        # Never cross a page boundary in one read: the next page may be unmapped.
        page_left = _CHUNK - ((addr + len(out)) % _CHUNK)
        want = min(page_left, count - len(out))
        piece = copy_from_user(addr + len(out), want)
        nul = piece.find(b"\0")
        if nul >= 0:
            out += piece[:nul]
            return bytes(out)
        out += piece
    return bytes(out)


def check_zeroed_user(addr: int, size: int) -> bool:
    """Whether ``size`` bytes at ``addr`` are all zero (faults propagate)."""
    return not any(copy_from_user(addr, size)) if size > 0 else True


class UserBuffer:
    """A caller-owned ``bytes``/``bytearray``/ctypes object, addressable like user memory.

    ``kernel.bpf(cmd, attr)`` accepts Python buffers; they are pinned here so the attr's
    own output fields (``log_true_size``, ``info_len``, ``next_id``…) can be written back
    through the same :func:`copy_to_user` path as any other user pointer.
    """

    def __init__(self, attr: Any) -> None:
        self.readonly = False
        if isinstance(attr, (bytes, memoryview)) and (isinstance(attr, bytes) or attr.readonly):
            raw = bytes(attr)
            self._keep: Any = ctypes.create_string_buffer(raw, max(len(raw), 1))
            self.size = len(raw)
            self.readonly = True  # results are not visible to the caller, as with a copy
        elif isinstance(attr, bytearray):
            self.size = len(attr)
            self._keep = (ctypes.c_char * max(self.size, 1)).from_buffer(attr) if self.size \
                else ctypes.create_string_buffer(1)
        elif isinstance(attr, memoryview):
            self.size = attr.nbytes
            self._keep = (ctypes.c_char * max(self.size, 1)).from_buffer(attr) if self.size \
                else ctypes.create_string_buffer(1)
        elif isinstance(attr, (ctypes.Structure, ctypes.Union, ctypes.Array)):
            self.size = ctypes.sizeof(attr)
            self._keep = attr
        else:
            raise TypeError(f"bpf attr must be bytes, a writable buffer or a ctypes object, "
                            f"not {type(attr).__name__}")
        self.addr = ctypes.addressof(self._keep)
