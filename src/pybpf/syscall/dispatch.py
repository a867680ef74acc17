"""``__sys_bpf``: the one entry point that multiplexes every command.

The order is the kernel's (Linux 6.18 ``kernel/bpf/syscall.c``):

1. ``bpf_check_uarg_tail_zero``: a ``size`` above a page is ``E2BIG``; bytes beyond
   ``sizeof(union bpf_attr)`` must be zero (``E2BIG``).
2. Copy ``min(size, sizeof(attr))`` bytes into a zeroed private union (``EFAULT``).
3. ``security_bpf`` — the first hook of the instance's security chain.
4. Dispatch through :data:`COMMANDS`, keyed by ``enum bpf_cmd``; unknown commands are
   ``EINVAL``. Each handler starts with its own ``CHECK_ATTR``.

There is no blanket "unprivileged" gate at the entry in 6.18: the
``unprivileged_bpf_disabled`` sysctl is consulted by ``BPF_MAP_CREATE`` and
``BPF_PROG_LOAD`` (object creation); every other command has its own capability rule.

Handlers raise :class:`~pybpf.errors.BpfError`; the return value is an fd, 0 or
``-errno``, never an exception.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pybpf.errors import BpfError
from pybpf.syscall.attr import BPF_ATTR_SIZE, PAGE_SIZE, check_attr, view
from pybpf.syscall.uaccess import UserBuffer, UserFault, copy_from_user

if TYPE_CHECKING:
    from pybpf.kernel import Kernel, Task

ENOTSUPP = 524


class Call:
    """One ``bpf()`` invocation: the task, the command, the kernel copy of the attr."""

    def __init__(self, task: Task, cmd: int, kattr: bytearray, ubuf: UserBuffer,
                 size: int) -> None:
        self.task = task
        self.kernel: Kernel = task.kernel
        self.cmd = cmd
        self.kattr = kattr
        self.attr = view(kattr)
        self.ubuf = ubuf
        self.uattr = ubuf.addr
        self.size = size  # min(size, sizeof(attr)): uattr_size as the handlers see it

    @property
    def cred(self) -> Any:
        return self.task.cred

    def check_attr(self) -> None:
        """``CHECK_ATTR(CMD)``: ``EINVAL`` if any byte after the last field is set."""
        if check_attr(self.cmd, self.kattr):
            raise BpfError(errno.EINVAL, "unused bpf_attr fields must be zero")

    def put_attr(self, offset: int, data: bytes) -> None:
        """``copy_to_user(&uattr->field, ...)``: write an output field back.

        Writes are confined to the caller's buffer: bytes the caller's object does not
        cover are dropped (the kernel would write past a short attr into whatever user
        memory follows it; in a Python process that memory belongs to the interpreter).
        """
        if self.ubuf.readonly:
            return
        limit = self.ubuf.size
        if offset >= limit:
            return
        chunk = data[: max(0, limit - offset)]
        from pybpf.syscall.uaccess import copy_to_user

        copy_to_user(self.uattr + offset, chunk)

    def put_u32(self, offset: int, value: int) -> None:
        self.put_attr(offset, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def put_u64(self, offset: int, value: int) -> None:
        self.put_attr(offset, (value & (2**64 - 1)).to_bytes(8, "little"))


Handler = Callable[[Call], int]
COMMANDS: dict[int, Handler] = {}


def command(*cmds: int) -> Callable[[Handler], Handler]:
    """Register a handler for one or more ``BPF_*`` commands."""
    def deco(fn: Handler) -> Handler:
        for cmd in cmds:
            COMMANDS[int(cmd)] = fn
        return fn
    return deco


_LOADED = False


def _load_commands() -> None:
    """Import every command module; each registers its handlers with ``@command``."""
    global _LOADED
    _LOADED = True
    from pybpf.syscall import (  # noqa: F401
        btf_cmds,
        info,
        link_cmds,
        map_cmds,
        obj_cmds,
        prog_cmds,
    )


def bpf_check_uarg_tail_zero(ubuf: UserBuffer, expected: int, actual: int) -> None:
    """``E2BIG`` for a size above a page or non-zero bytes in ``[expected, actual)``."""
    if actual > PAGE_SIZE:
        raise BpfError(errno.E2BIG, "attr larger than a page")
    if actual <= expected:
        return
    if any(copy_from_user(ubuf.addr + expected, actual - expected)):
        raise BpfError(errno.E2BIG, "non-zero bytes beyond sizeof(union bpf_attr)")


def sys_bpf(task: Task, cmd: int, attr: Any, size: int | None = None) -> int:
    """``bpf(cmd, attr, size)`` for ``task``: an fd, 0, or ``-errno``."""
    if not _LOADED:
        _load_commands()
    try:
        ubuf = UserBuffer(attr)
    except TypeError:
        return -errno.EFAULT
    if size is None:
        size = ubuf.size
    size = int(size) & 0xFFFFFFFF  # unsigned int in the syscall ABI
    try:
        if size > ubuf.size and size <= PAGE_SIZE:
            # A size beyond the caller's object: the kernel would read whatever user
            # memory follows; here nothing follows that we may read.
            raise UserFault(ubuf.addr, size)
        bpf_check_uarg_tail_zero(ubuf, BPF_ATTR_SIZE, size)
        copy = min(size, BPF_ATTR_SIZE)
        kattr = bytearray(BPF_ATTR_SIZE)
        kattr[:copy] = copy_from_user(ubuf.addr, copy) if copy else b""
        call = Call(task, int(cmd), kattr, ubuf, copy)
        ret = task.kernel.security.call("bpf", task, int(cmd), call.attr, copy)
        if ret < 0:
            return ret
        handler = COMMANDS.get(int(cmd))
        if handler is None:
            return -errno.EINVAL
        return handler(call)
    except BpfError as exc:
        return -(exc.errno or errno.EINVAL)
    finally:
        del ubuf
