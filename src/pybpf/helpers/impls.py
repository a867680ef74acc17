"""Implementations of the non-map helpers (``impl(ctx, r1..r5) -> r0``)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

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


def trace_printk(ctx: RunContext, fmt: int, size: int, *_: int) -> int:
    data = ctx.mem.read_cstr(fmt, size)
    ctx.data.setdefault("trace_pipe", []).append(data.decode(errors="replace"))
    return len(data) & M64


def tail_call(ctx: RunContext, c: int, map_addr: int, index: int, *_: int) -> int:
    from pybpf.maps.core import map_from_addr
    from pybpf.runtime.interpreter import TailCall

    m = map_from_addr(map_addr)
    lookup = getattr(m, "tail_call_target", None)
    target = lookup(index & 0xFFFFFFFF) if lookup is not None else None
    if target is None:
        return 0
    raise TailCall(target)


def _skb(ctx: RunContext) -> object | None:
    return ctx.data.get("skb")


def skb_load_bytes(ctx: RunContext, skb_addr: int, off: int, to: int, length: int, *_: int) -> int:
    skb = _skb(ctx)
    pkt: bytes = getattr(skb, "payload", b"") if skb is not None else b""
    off &= 0xFFFFFFFF
    if off >= 1 << 31 or off + length > len(pkt):
        ctx.mem.write(to, bytes(length))
        return (-14) & M64  # -EFAULT
    ctx.mem.write(to, pkt[off:off + length])
    return 0


def csum_diff(ctx: RunContext, frm: int, from_size: int, to: int, to_size: int, seed: int) -> int:
    if from_size % 4 or to_size % 4:
        return (-22) & M64
    total = seed & 0xFFFFFFFF
    if from_size:
        for i in range(0, from_size, 4):
            total += (~int.from_bytes(ctx.mem.read(frm + i, 4), "little")) & 0xFFFFFFFF
    if to_size:
        for i in range(0, to_size, 4):
            total += int.from_bytes(ctx.mem.read(to + i, 4), "little")
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def zero(ctx: RunContext, *_: int) -> int:
    """Helpers whose test_run result is 0 on a bare test skb (no classid, hash or socket)."""
    return 0


def csum_update(ctx: RunContext, *_: int) -> int:
    return (-524) & M64  # -ENOTSUPP: test skbs are not CHECKSUM_COMPLETE


def _parse_ul(text: bytes, flags: int) -> tuple[int, int] | None:
    base = flags & 0x1F
    i = 0
    while i < len(text) and text[i:i + 1].isspace():
        i += 1
    s = text[i:]
    if base == 0:
        if s[:2].lower() == b"0x":
            base, s, i = 16, s[2:], i + 2
        elif s[:1] == b"0" and len(s) > 1:
            base = 8
        else:
            base = 10
    n = 0
    while n < len(s) and chr(s[n]).lower() in "0123456789abcdef"[:base]:
        n += 1
    if n == 0:
        return None
    return int(s[:n], base), i + n


def strtoul(ctx: RunContext, buf: int, buf_len: int, flags: int, res: int, *_: int) -> int:
    if flags & ~0x1F:
        return (-22) & M64
    text = ctx.mem.read(buf, buf_len).split(b"\0")[0]
    parsed = _parse_ul(text, flags)
    if parsed is None:
        return (-22) & M64
    value, consumed = parsed
    ctx.mem.write(res, (value & M64).to_bytes(8, "little"))
    return consumed


IMPLS: dict[int, Callable[..., int]] = {
    17: zero,
    34: zero,
    40: csum_update,
    84: zero,
    85: zero,
    86: zero,
    99: zero,
    106: strtoul,
    5: ktime_get_ns,
    6: trace_printk,
    7: get_prandom_u32,
    8: get_smp_processor_id,
    12: tail_call,
    26: skb_load_bytes,
    28: csum_diff,
    118: jiffies64,
    125: ktime_get_boot_ns,
    160: ktime_get_coarse_ns,
}
