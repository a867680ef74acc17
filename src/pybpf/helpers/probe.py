"""``bpf_probe_read_{kernel,user}{,_str}`` and the compat ``bpf_probe_read{,_str}``
(``kernel/trace/bpf_trace.c``).

pybpf's kernel memory is the memory registry: an address inside a registered region is
readable by every variant. For any other address the result is what x86-64 Linux 6.18
returns for it (measured against the live kernel, see tests/helpers/
test_tracing_helpers_vs_kernel.py):

- ``_kernel`` variants (``copy_from_kernel_nofault``): a user-half, non-canonical or
  vsyscall-page address is refused with ``-ERANGE``; any other kernel address is unmapped
  here: ``-EFAULT``;
- ``_user`` variants (``copy_from_user_nofault``): a user address is read from the host
  process itself — the task running the program is this process, as in
  ``BPF_PROG_TEST_RUN`` — through ``process_vm_readv`` (``-EFAULT`` where unmapped); a
  kernel address is ``-EFAULT``;
- the compat helpers take the user path below ``TASK_SIZE`` and the kernel path above.

On error the whole destination is zeroed (``memset(dst, 0, size)``). The ``_str``
variants copy up to ``size - 1`` bytes and a NUL, return the length including the NUL,
and do not pad the rest of the buffer.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from pybpf.errors import BpfFault
from pybpf.helpers.proto import ArgFlag, ArgType, FuncProto, RetType
from pybpf.runtime.context import RunContext

M64 = (1 << 64) - 1
PAGE_SIZE = 4096
TASK_SIZE_MAX = (1 << 47) - PAGE_SIZE  # x86-64, 4-level paging
VSYSCALL_ADDR = 0xFFFFFFFFFF600000
KERNEL_HALF = 0xFFFF800000000000  # first canonical kernel address (48-bit)


def _neg(err: int) -> int:
    return (-err) & M64


def kernel_read_allowed(addr: int) -> bool:
    """``copy_from_kernel_nofault_allowed`` on x86-64."""
    if addr < TASK_SIZE_MAX + PAGE_SIZE:
        return False
    if addr & ~(PAGE_SIZE - 1) == VSYSCALL_ADDR:
        return False
    return addr >= KERNEL_HALF


def _registered(ctx: RunContext, addr: int, size: int) -> bytes | None:
    try:
        return ctx.mem.read(addr, size)
    except BpfFault:
        return None


def _read_kernel(ctx: RunContext, addr: int, size: int) -> bytes | int:
    data = _registered(ctx, addr, size)
    if data is not None:
        return data
    return -errno.EFAULT if kernel_read_allowed(addr) else -errno.ERANGE


def _read_user(ctx: RunContext, addr: int, size: int) -> bytes | int:
    data = _registered(ctx, addr, size)
    if data is not None:
        return data
    if addr + size > TASK_SIZE_MAX or addr + size < addr:
        return -errno.EFAULT
    from pybpf.syscall.uaccess import UserFault, copy_from_user

    try:
        return copy_from_user(addr, size)
    except UserFault:
        return -errno.EFAULT


def _read_compat(ctx: RunContext, addr: int, size: int) -> bytes | int:
    if addr < TASK_SIZE_MAX:
        return _read_user(ctx, addr, size)
    return _read_kernel(ctx, addr, size)


Reader = Callable[[RunContext, int, int], "bytes | int"]


def _copy(ctx: RunContext, read: Reader, dst: int, size: int, src: int) -> int:
    if not size:
        return 0
    data = read(ctx, src, size)
    if isinstance(data, int):
        ctx.mem.write(dst, bytes(size))
        return _neg(-data)
    ctx.mem.write(dst, data)
    return 0


def _copy_str(ctx: RunContext, read: Reader, dst: int, size: int, src: int) -> int:
    """``strncpy_from_*_nofault`` + the zeroing on error."""
    if not size:
        return 0
    out = bytearray()
    while len(out) < size - 1:
        # read page-wise: the string may end right before an unreadable page
        chunk = min(PAGE_SIZE - ((src + len(out)) % PAGE_SIZE), size - 1 - len(out))
        piece = read(ctx, src + len(out), chunk)
        if isinstance(piece, int):
            piece = _bytewise(ctx, read, src + len(out), chunk)
            if isinstance(piece, int):
                # the kernel vets the start address only (ERANGE); later faults are EFAULT
                err = piece if not out and not _readable_start(ctx, read, src) \
                    else -errno.EFAULT
                ctx.mem.write(dst, bytes(size))
                return _neg(-err)
        nul = piece.find(b"\0")
        if nul >= 0:
            out += piece[:nul]
            break
        out += piece
    ctx.mem.write(dst, bytes(out) + b"\0")
    return len(out) + 1


def _readable_start(ctx: RunContext, read: Reader, addr: int) -> bool:
    return not isinstance(read(ctx, addr, 1), int)


def _bytewise(ctx: RunContext, read: Reader, addr: int, n: int) -> bytes | int:
    """Bytes up to and including a NUL, or the error of the first unreadable byte."""
    out = bytearray()
    for i in range(n):
        b = read(ctx, addr + i, 1)
        if isinstance(b, int):
            return b
        out += b
        if b == b"\0":
            return bytes(out)
    return bytes(out)


def probe_read_kernel(ctx: RunContext, dst: int, size: int, src: int, *_: int) -> int:
    return _copy(ctx, _read_kernel, dst, size, src)


def probe_read_user(ctx: RunContext, dst: int, size: int, src: int, *_: int) -> int:
    return _copy(ctx, _read_user, dst, size, src)


def probe_read(ctx: RunContext, dst: int, size: int, src: int, *_: int) -> int:
    return _copy(ctx, _read_compat, dst, size, src)


def probe_read_kernel_str(ctx: RunContext, dst: int, size: int, src: int, *_: int) -> int:
    return _copy_str(ctx, _read_kernel, dst, size, src)


def probe_read_user_str(ctx: RunContext, dst: int, size: int, src: int, *_: int) -> int:
    return _copy_str(ctx, _read_user, dst, size, src)


def probe_read_str(ctx: RunContext, dst: int, size: int, src: int, *_: int) -> int:
    return _copy_str(ctx, _read_compat, dst, size, src)


def copy_from_user(ctx: RunContext, dst: int, size: int, src: int, *_: int) -> int:
    """``bpf_copy_from_user``: a sleepable read of the current task's user memory (here the
    host process, as for the ``_user`` probes); on a fault the destination is zeroed."""
    return _copy(ctx, _read_user, dst, size, src)


def copy_from_user_task(ctx: RunContext, dst: int, size: int, src: int, task: int,
                        flags: int, *_: int) -> int:
    """``bpf_copy_from_user_task``: like :func:`copy_from_user` for a given task (pybpf's
    tasks share the host's address space); ``flags`` must be 0."""
    if flags:
        return _neg(errno.EINVAL)
    return _copy(ctx, _read_user, dst, size, src)


# ------------------------------------------------------------------------ attach point
def get_func_ip(ctx: RunContext, *_: int) -> int:
    """``bpf_get_func_ip``: the address of the traced function (kprobe, fentry/fexit) —
    the hook's pseudo kernel-text address, stable per function name."""
    return int(ctx.data.get("func_ip", 0)) & M64


def get_attach_cookie(ctx: RunContext, *_: int) -> int:
    """``bpf_get_attach_cookie``: the cookie given when the link was created (0 if none)."""
    return int(ctx.data.get("attach_cookie", 0)) & M64


def _frame_word(ctx: RunContext, ctx_addr: int, index: int) -> int:
    """Word ``index`` of the trampoline frame, counted from the ctx (``((u64 *)ctx)[i]``:
    -1 is the argument count, -2 the function's address; see hooks/trampoline.py)."""
    return int.from_bytes(ctx.mem.read((ctx_addr + 8 * index) & M64, 8), "little")


def get_func_arg(ctx: RunContext, ctx_addr: int, n: int, value: int, *_: int) -> int:
    """``bpf_get_func_arg``: argument ``n`` of the traced function into ``*value``;
    -EINVAL past the argument count."""
    if n & 0xFFFFFFFF >= _frame_word(ctx, ctx_addr, -1):
        return _neg(errno.EINVAL)
    ctx.mem.write(value, _frame_word(ctx, ctx_addr, n & 0xFFFFFFFF).to_bytes(8, "little"))
    return 0


def get_func_ret(ctx: RunContext, ctx_addr: int, value: int, *_: int) -> int:
    """``bpf_get_func_ret``: the return slot, right after the arguments, into ``*value``."""
    nr_args = _frame_word(ctx, ctx_addr, -1)
    ctx.mem.write(value, _frame_word(ctx, ctx_addr, nr_args).to_bytes(8, "little"))
    return 0


def get_func_arg_cnt(ctx: RunContext, ctx_addr: int, *_: int) -> int:
    """``bpf_get_func_arg_cnt``: how many arguments the traced function has."""
    return _frame_word(ctx, ctx_addr, -1)


def _protos() -> list[FuncProto]:
    ctx_arg = (int(ArgType.ARG_PTR_TO_CTX),)
    # ARG_PTR_TO_FIXED_SIZE_MEM | MEM_UNINIT | MEM_WRITE | MEM_ALIGNED of one u64
    u64_out = (int(ArgType.ARG_PTR_TO_MEM) | int(ArgFlag.MEM_UNINIT) | int(ArgFlag.MEM_WRITE)
               | int(ArgFlag.MEM_FIXED_SIZE))
    return [
        FuncProto(183, "get_func_arg", get_func_arg, int(RetType.RET_INTEGER),
                  (*ctx_arg, int(ArgType.ARG_ANYTHING), u64_out), arg_size=(0, 0, 8)),
        FuncProto(184, "get_func_ret", get_func_ret, int(RetType.RET_INTEGER),
                  (*ctx_arg, u64_out), arg_size=(0, 8)),
        FuncProto(185, "get_func_arg_cnt", get_func_arg_cnt, int(RetType.RET_INTEGER), ctx_arg),
        FuncProto(173, "get_func_ip", get_func_ip, int(RetType.RET_INTEGER), ctx_arg,
                  gpl_only=True),
        FuncProto(174, "get_attach_cookie", get_attach_cookie, int(RetType.RET_INTEGER),
                  ctx_arg),
    ]


#: Prototypes :mod:`pybpf.helpers.protos` does not have (the tracing types offer them).
PROTOS: list[FuncProto] = _protos()
PROTOS_BY_ID: dict[int, FuncProto] = {p.func_id: p for p in PROTOS}


IMPLS: dict[int, Callable[..., int]] = {
    4: probe_read,
    45: probe_read_str,
    112: probe_read_user,
    113: probe_read_kernel,
    114: probe_read_user_str,
    115: probe_read_kernel_str,
    148: copy_from_user,
    173: get_func_ip,
    174: get_attach_cookie,
    183: get_func_arg,
    184: get_func_ret,
    185: get_func_arg_cnt,
    191: copy_from_user_task,
}
