"""Implementations of the non-map helpers (``impl(ctx, r1..r5) -> r0``)."""

from __future__ import annotations

import random
import time
import weakref
from collections.abc import Callable
from typing import Any

from pybpf.errors import BpfFault
from pybpf.helpers.csum import csum_diff  # noqa: F401  (moved; re-exported)
from pybpf.runtime.context import RunContext

M64 = (1 << 64) - 1
_rng = random.Random(0x5EED)


def ktime_get_ns(ctx: RunContext, *_: int) -> int:
    return time.monotonic_ns() & M64


def ktime_get_boot_ns(ctx: RunContext, *_: int) -> int:
    return time.clock_gettime_ns(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)) & M64


def ktime_get_coarse_ns(ctx: RunContext, *_: int) -> int:
    return time.clock_gettime_ns(getattr(time, "CLOCK_MONOTONIC_COARSE", time.CLOCK_MONOTONIC)) & M64


def jiffies64(ctx: RunContext, *_: int) -> int:
    return (time.monotonic_ns() // 4_000_000) & M64


def get_prandom_u32(ctx: RunContext, *_: int) -> int:
    return _rng.getrandbits(32)


def get_smp_processor_id(ctx: RunContext, *_: int) -> int:
    return ctx.cpu


# --------------------------------------------------------------------------- printk

MAX_BPRINTF_VARARGS = 12
MAX_BPRINTF_BUF = 1024
_TRACE_PIPES: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()
_NO_KERNEL_PIPE: list[str] = []


def trace_pipe(kernel: Any) -> list[str]:
    """The lines ``bpf_trace_printk``/``bpf_trace_vprintk`` wrote for programs of
    ``kernel`` (a pybpf Kernel), oldest first — pybpf's ``trace_pipe``. Clear it with
    ``.clear()``."""
    if kernel is None:
        return _NO_KERNEL_PIPE
    return _TRACE_PIPES.setdefault(kernel, [])


def _cstr(ctx: RunContext, addr: int, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of a NUL-terminated string; None when unreadable."""
    out = bytearray()
    try:
        while len(out) < limit:
            b = ctx.mem.read(addr + len(out), 1)
            if b == b"\0":
                break
            out += b
    except BpfFault:
        return None if not out else bytes(out)
    return bytes(out)


def bprintf(ctx: RunContext, fmt: bytes, args: list[int]) -> bytes | int:
    """``bpf_bprintf_prepare`` + ``bstr_printf``: the formatted bytes, or -errno.

    Conversions: ``%d %i %u %x %X`` with ``l``/``ll``, flags ``0+- `` and width digits
    (no precision: the kernel refuses ``.``), ``%c``, ``%s``, ``%px`` (``%p``/``%pK`` print the raw pointer too: pybpf has
    no pointer hashing), ``%%``."""
    if b"\0" not in fmt:
        return -EINVAL
    fmt = fmt[:fmt.index(b"\0")]
    out = bytearray()
    i, n_args = 0, 0
    while i < len(fmt):
        ch = fmt[i]
        if ch < 0x80 and not (32 <= ch < 127 or chr(ch) in " \t\n\v\f\r"):
            return -EINVAL  # ASCII control bytes; UTF-8 text (bytes >= 0x80) passes
        if ch != 0x25:  # '%'
            out.append(ch)
            i += 1
            continue
        if fmt[i + 1:i + 2] == b"%":
            out.append(0x25)
            i += 2
            continue
        if n_args >= len(args) or n_args >= MAX_BPRINTF_VARARGS:
            return -EINVAL
        start = i
        i += 1
        while i < len(fmt) and chr(fmt[i]) in "0+- ":
            i += 1
        while i < len(fmt) and chr(fmt[i]).isdigit():
            i += 1
        spec = fmt[start + 1:i].decode()
        conv = chr(fmt[i]) if i < len(fmt) else ""
        arg = args[n_args] & M64
        n_args += 1
        if conv == "p":
            i += 1
            if fmt[i:i + 1] in (b"x", b"K"):
                i += 1
            elif fmt[i:i + 1] in (b"B", b"S", b"s"):  # a symbol: pybpf knows none
                i += 1
                out += f"0x{arg:x}".encode()
                continue
            elif fmt[i:i + 1].isalnum():
                return -EINVAL
            out += f"{arg:016x}".encode()
            continue
        if conv == "c":
            out += ("%" + spec + "c").encode() % bytes([arg & 0xFF])
            i += 1
            continue
        if conv == "s":
            text = _cstr(ctx, arg, MAX_BPRINTF_BUF) or b""
            out += ("%" + spec + "s").encode() % text
            i += 1
            continue
        size = 4
        if fmt[i:i + 2] == b"ll":
            size, i = 8, i + 2
        elif fmt[i:i + 1] == b"l":
            size, i = 8, i + 1
        conv = chr(fmt[i]) if i < len(fmt) else ""
        if conv not in "diuxX" or not conv:
            return -EINVAL
        i += 1
        bits = size * 8
        value = arg & ((1 << bits) - 1)
        if conv in "di" and value >> (bits - 1):
            value -= 1 << bits
        pyconv = "d" if conv in "diu" else conv
        out += ("%" + spec + pyconv).encode() % value
    return bytes(out[:MAX_BPRINTF_BUF - 1])


def _emit_trace(ctx: RunContext, text: bytes) -> None:
    line = text.decode(errors="replace")
    ctx.data.setdefault("trace_pipe", []).append(line)
    if ctx.kernel is not None:  # a bare CompiledProgram run keeps it in ctx.data only
        trace_pipe(ctx.kernel).append(line)


def trace_printk(ctx: RunContext, fmt: int, size: int, a1: int, a2: int, a3: int) -> int:
    """``bpf_trace_printk``: at most three arguments; returns the formatted length."""
    got = bprintf(ctx, ctx.mem.read(fmt, size), [a1, a2, a3])
    if isinstance(got, int):
        return got & M64
    _emit_trace(ctx, got)
    return len(got)


def _varargs(ctx: RunContext, data: int, data_len: int) -> list[int] | int:
    if data_len % 8 or data_len // 8 > MAX_BPRINTF_VARARGS:
        return -EINVAL
    if data_len and not data:
        return -EINVAL
    raw = ctx.mem.read(data, data_len) if data_len else b""
    return [int.from_bytes(raw[k:k + 8], "little") for k in range(0, data_len, 8)]


def trace_vprintk(ctx: RunContext, fmt: int, fmt_size: int, data: int, data_len: int,
                  *_: int) -> int:
    """``bpf_trace_vprintk``: the arguments come as an array of u64."""
    args = _varargs(ctx, data, data_len)
    if isinstance(args, int):
        return args & M64
    got = bprintf(ctx, ctx.mem.read(fmt, fmt_size), args)
    if isinstance(got, int):
        return got & M64
    _emit_trace(ctx, got)
    return len(got)


def snprintf(ctx: RunContext, out: int, out_size: int, fmt: int, data: int,
             data_len: int) -> int:
    """``bpf_snprintf``: format into ``out`` (NUL-terminated, truncated to ``out_size``);
    returns the length the whole result needs, NUL included."""
    args = _varargs(ctx, data, data_len)
    if isinstance(args, int):
        return args & M64
    fmt_bytes = _cstr(ctx, fmt, 1 << 16)
    if fmt_bytes is None:
        return _neg(EINVAL)
    got = bprintf(ctx, fmt_bytes + b"\0", args)
    if isinstance(got, int):
        return got & M64
    if out_size:
        ctx.mem.write(out, got[:out_size - 1] + b"\0")
    return len(got) + 1


def tail_call(ctx: RunContext, c: int, map_addr: int, index: int, *_: int) -> int:
    from pybpf.maps.core import map_from_addr
    from pybpf.runtime.interpreter import TailCall

    m = map_from_addr(map_addr)
    lookup = getattr(m, "tail_call_target", None)
    target = lookup(index & 0xFFFFFFFF) if lookup is not None else None
    if target is None:
        return 0
    raise TailCall(target)


def zero(ctx: RunContext, *_: int) -> int:
    """Helpers whose test_run result is 0 on a bare test skb (no classid, hash or socket)."""
    return 0


_KSPACE = frozenset(b" \t\n\v\f\r\xa0")  # the kernel's ctype isspace (160 included)
BPF_STRTOX_BASE_MASK = 0x1F
ERANGE = 34


def _parse_integer(s: bytes, base: int) -> tuple[int, int, bool]:
    """``_parse_integer``: (value mod 2**64, digits consumed, overflowed)."""
    value, n, over = 0, 0, False
    for ch in s:
        c = chr(ch).lower()
        if "0" <= c <= "9":
            digit = ord(c) - 48
        elif "a" <= c <= "f":
            digit = ord(c) - 87
        else:
            break
        if digit >= base:
            break
        value = value * base + digit
        if value > M64:
            over = True
            value &= M64
        n += 1
    return value, n, over


def _bpf_strtoull(ctx: RunContext, buf: int, buf_len: int, flags: int
                  ) -> tuple[int, int, bool]:
    """``__bpf_strtoull``: (consumed or -errno, value, negative)."""
    if flags & ~BPF_STRTOX_BASE_MASK or not buf_len:
        return -EINVAL, 0, False
    base = flags & BPF_STRTOX_BASE_MASK
    if base not in (0, 8, 10, 16):
        return -EINVAL, 0, False
    raw = ctx.mem.read(buf, buf_len)
    cur = 0
    while cur < len(raw) and raw[cur] in _KSPACE:
        cur += 1
    negative = cur < len(raw) and raw[cur] == ord("-")
    if negative:
        cur += 1
    consumed = cur
    if consumed == len(raw):
        return -EINVAL, 0, negative
    text = raw[cur:cur + 63].split(b"\0")[0] + b"\0"
    pos = 0
    if base == 0:
        if text[:1] == b"0" and text[1:2].lower() == b"x" and text[2:3] \
                and chr(text[2]) in "0123456789abcdefABCDEF":
            base = 16
        elif text[:1] == b"0":
            base = 8
        else:
            base = 10
    if base == 16 and text[:1] == b"0" and text[1:2].lower() == b"x":
        pos = 2
    value, n, over = _parse_integer(text[pos:], base)
    if over:
        return -ERANGE, 0, negative
    if n == 0:
        return -EINVAL, 0, negative
    return consumed + pos + n, value, negative


def strtoul(ctx: RunContext, buf: int, buf_len: int, flags: int, res: int, *_: int) -> int:
    """``bpf_strtoul``: no sign allowed."""
    got, value, negative = _bpf_strtoull(ctx, buf, buf_len & M32, flags)
    if got < 0:
        return got & M64
    if negative:
        return _neg(EINVAL)
    ctx.mem.write(res, value.to_bytes(8, "little"))
    return got


def strtol(ctx: RunContext, buf: int, buf_len: int, flags: int, res: int, *_: int) -> int:
    """``bpf_strtol``: a leading ``-``; values beyond s64 are -ERANGE."""
    got, value, negative = _bpf_strtoull(ctx, buf, buf_len & M32, flags)
    if got < 0:
        return got & M64
    if negative:
        if value > 1 << 63:
            return _neg(ERANGE)
        value = -value & M64
    elif value >= 1 << 63:
        return _neg(ERANGE)
    ctx.mem.write(res, value.to_bytes(8, "little"))
    return got


# --------------------------------------------------------------------------- errnos / flags

EINVAL, EFAULT, EACCES, E2BIG, EOPNOTSUPP, ENOTSUPP = 22, 14, 13, 7, 95, 524
ETH_HLEN = 14
PAGE_SIZE = 4096
SKB_SHARED_INFO_SIZE = 320  # SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
BPF_MAX_LOOPS = 1 << 23
BPF_F_RECOMPUTE_CSUM, BPF_F_INVALIDATE_HASH = 1, 2
BPF_F_HDR_FIELD_MASK, BPF_F_PSEUDO_HDR, BPF_F_MARK_MANGLED_0, BPF_F_MARK_ENFORCE, BPF_F_IPV6 = \
    0xF, 0x10, 0x20, 0x40, 0x80
CSUM_MANGLED_0 = 0xFFFF
INT_MAX = (1 << 31) - 1
M32 = 0xFFFFFFFF

def _neg(err: int) -> int:
    return (-err) & M64


def _s32(value: int) -> int:
    value &= M32
    return value - (1 << 32) if value >> 31 else value


# --------------------------------------------------------------------------- misc

def ktime_get_tai_ns(ctx: RunContext, *_: int) -> int:
    return time.clock_gettime_ns(getattr(time, "CLOCK_TAI", time.CLOCK_REALTIME)) & M64


def strncmp(ctx: RunContext, s1: int, s1_sz: int, s2: int, *_: int) -> int:
    """``bpf_strncmp``: lib/string.c ``strncmp`` (-1/0/1) over at most ``s1_sz`` bytes."""
    for i in range(s1_sz):
        c1 = ctx.mem.read(s1 + i, 1)[0]
        c2 = ctx.mem.read(s2 + i, 1)[0]
        if c1 != c2:
            return M64 if c1 < c2 else 1
        if not c1:
            break
    return 0


def callback_pc(ctx: RunContext, value: int) -> int:
    """The instruction index a callback argument names.

    The kernel rewrites a ``BPF_PSEUDO_FUNC`` ld_imm64 into the subprogram's address at
    load time; when the running program still holds the relative form (``imm`` counted
    from the ld_imm64), the value matches such an instruction's imm and names
    ``pc + imm + 1``. A value no unresolved ld_imm64 carries is taken as an index."""
    insns = getattr(getattr(ctx, "runner", None), "insns", None) or ()
    for pc, ins in enumerate(insns):
        if ins.code == 0x18 and ins.src == 4 and ins.imm == value and pc + 1 < len(insns):
            return pc + value + 1
    return value


def loop(ctx: RunContext, nr_loops: int, callback: int, callback_ctx: int, flags: int,
         *_: int) -> int:
    """``bpf_loop``: call ``callback(i, callback_ctx)`` until it returns non-zero. The
    verifier inlines it in the kernel, comparing the whole 64-bit count with
    BPF_MAX_LOOPS, so a count above 2**32 is -E2BIG too."""
    if flags:
        return _neg(EINVAL)
    if nr_loops > BPF_MAX_LOOPS:
        return _neg(E2BIG)
    callback = callback_pc(ctx, callback)
    for i in range(nr_loops):
        if ctx.call_subprog(callback, i, callback_ctx, 0, 0, 0) & M64:
            return i + 1
    return nr_loops


IMPLS: dict[int, Callable[..., int]] = {
    17: zero,
    105: strtol,
    106: strtoul,
    5: ktime_get_ns,
    6: trace_printk,
    165: snprintf,
    177: trace_vprintk,
    7: get_prandom_u32,
    8: get_smp_processor_id,
    12: tail_call,
    118: jiffies64,
    125: ktime_get_boot_ns,
    160: ktime_get_coarse_ns,
    181: loop,
    182: strncmp,
    208: ktime_get_tai_ns,
}
