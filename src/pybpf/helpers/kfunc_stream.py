"""``bpf_stream_vprintk_impl``: a program's own stdout and stderr (BPF streams).

Each program has two byte streams (``BPF_STDOUT`` 1, ``BPF_STDERR`` 2) that user space
drains with ``BPF_PROG_STREAM_READ_BY_FD`` (syscall/link_cmds.py reads
``prog.aux["streams"]``). The kfunc formats like ``bpf_trace_vprintk`` — the arguments
an array of u64 — and appends the text without its NUL. A stream holds at most
``BPF_STREAM_MAX_CAPACITY`` unread bytes; past that the write fails with -ENOSPC.
"""

from __future__ import annotations

import errno
from typing import Any

from pybpf.helpers.impls import _cstr, _varargs, bprintf

M64 = (1 << 64) - 1
BPF_STDOUT, BPF_STDERR = 1, 2
BPF_STREAM_MAX_CAPACITY = 100_000
MAX_FMT = 1 << 16


def _neg(err: int) -> int:
    return (-err) & M64


def stream_vprintk_impl(ctx: Any, stream_id: int, fmt: int, args: int, len_sz: int,
                        aux: int, *_: int) -> int:
    """Format ``fmt`` with the ``len_sz / 8`` arguments at ``args`` onto stream
    ``stream_id`` of the running program: 0, or -ENOENT / -EINVAL / -ENOSPC."""
    prog = getattr(ctx, "prog", None)
    stream_id &= 0xFFFFFFFF
    if prog is None or stream_id not in (BPF_STDOUT, BPF_STDERR):
        return _neg(errno.ENOENT)
    values = _varargs(ctx, args, len_sz & 0xFFFFFFFF)
    if isinstance(values, int):
        return values & M64
    text = _cstr(ctx, fmt, MAX_FMT)
    if text is None:
        return _neg(errno.EINVAL)
    got = bprintf(ctx, text + b"\0", values)
    if isinstance(got, int):
        return got & M64
    streams: dict[int, bytearray] = prog.aux.setdefault("streams", {})
    buf = streams.setdefault(stream_id, bytearray())
    if len(buf) >= BPF_STREAM_MAX_CAPACITY or len(buf) + len(got) >= BPF_STREAM_MAX_CAPACITY:
        return _neg(errno.ENOSPC)
    buf += got
    return 0


STREAM_IMPLS = {"bpf_stream_vprintk_impl": stream_vprintk_impl}
