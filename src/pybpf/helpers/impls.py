"""Implementations of the non-map helpers (``impl(ctx, r1..r5) -> r0``)."""

from __future__ import annotations

import random
import time
import weakref
from collections.abc import Callable
from typing import Any

from pybpf.errors import BpfFault
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
        if not (32 <= ch < 127 or chr(ch) in " \t\n\v\f\r"):
            return -EINVAL
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
XDP_FRAME_SIZE = 40  # sizeof(struct xdp_frame): kept free at data_hard_start
SKB_SHARED_INFO_SIZE = 320  # SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
META_MAX = 255  # type_max(skb_shared_info.meta_len), xdp_metalen_invalid
BPF_MAX_LOOPS = 1 << 23
BPF_F_RECOMPUTE_CSUM, BPF_F_INVALIDATE_HASH = 1, 2
BPF_F_HDR_FIELD_MASK, BPF_F_PSEUDO_HDR, BPF_F_MARK_MANGLED_0, BPF_F_MARK_ENFORCE, BPF_F_IPV6 = \
    0xF, 0x10, 0x20, 0x40, 0x80
CSUM_MANGLED_0 = 0xFFFF
INT_MAX = (1 << 31) - 1
M32 = 0xFFFFFFFF

# struct xdp_md offsets (pybpf.net.ctx lays the struct out)
_XDP_DATA, _XDP_DATA_END, _XDP_DATA_META = 0, 4, 8


def _neg(err: int) -> int:
    return (-err) & M64


def _s32(value: int) -> int:
    value &= M32
    return value - (1 << 32) if value >> 31 else value


# --------------------------------------------------------------------------- XDP

class _XdpBuff:
    """The running ``xdp_buff`` seen through the ``xdp_md`` pybpf laid out: ``data``,
    ``data_end`` and ``data_meta`` live in the ctx struct (the program reads them there),
    ``data_hard_start`` is the frame start, and the non-linear part is the list of
    fragment bytes in ``ctx.data["xdp_frags"]`` (BPF_PROG_TEST_RUN puts it there)."""

    def __init__(self, ctx: RunContext) -> None:
        self.rc = ctx
        self.x: Any = ctx.data.get("xdp")

    @property
    def ok(self) -> bool:
        return self.x is not None

    def get(self, off: int) -> int:
        return int(self.x._u32(off))

    def put(self, off: int, value: int) -> None:
        self.x._set_u32(off, value)

    @property
    def hard_start(self) -> int:
        return int(self.x.frame.start)

    @property
    def frame_sz(self) -> int:
        """``xdp->frame_sz``: a page for a test-run buffer, else the whole frame region."""
        size = getattr(self.x, "frame_sz", None)
        if size is not None:
            return int(size)
        return PAGE_SIZE if "xdp_frags" in self.rc.data else int(self.x.frame.size)

    @property
    def hard_end(self) -> int:
        """``xdp_data_hard_end``: tailroom for ``skb_shared_info`` stays reserved."""
        return self.hard_start + self.frame_sz - SKB_SHARED_INFO_SIZE

    @property
    def frags(self) -> list[bytes]:
        return list(self.rc.data.get("xdp_frags") or [])

    def set_frags(self, frags: list[bytes]) -> None:
        """Update the fragment list in place: the test run holds the same list object."""
        current = self.rc.data.get("xdp_frags")
        if isinstance(current, list):
            current[:] = frags
        else:
            self.rc.data["xdp_frags"] = frags


def xdp_adjust_head(ctx: RunContext, _xdp: int, offset: int, *_: int) -> int:
    """``bpf_xdp_adjust_head``: move ``data`` (and the metadata with it) by ``offset``;
    the headroom never eats the ``xdp_frame`` area and at least ETH_HLEN bytes stay."""
    b = _XdpBuff(ctx)
    if not b.ok:
        return _neg(EINVAL)
    offset = _s32(offset)
    data, data_end, meta = b.get(_XDP_DATA), b.get(_XDP_DATA_END), b.get(_XDP_DATA_META)
    metalen = data - meta if meta <= data else 0
    new = data + offset
    if new < b.hard_start + XDP_FRAME_SIZE + metalen or new > data_end - ETH_HLEN:
        return _neg(EINVAL)
    if metalen:
        ctx.mem.write(meta + offset, ctx.mem.read(meta, metalen))
    b.put(_XDP_DATA_META, meta + offset)
    b.put(_XDP_DATA, new)
    return 0


def xdp_adjust_meta(ctx: RunContext, _xdp: int, offset: int, *_: int) -> int:
    """``bpf_xdp_adjust_meta``: move ``data_meta``; metadata is u32-aligned, at most
    255 bytes, between the ``xdp_frame`` area and ``data``."""
    b = _XdpBuff(ctx)
    if not b.ok:
        return _neg(EINVAL)
    data, meta = b.get(_XDP_DATA), b.get(_XDP_DATA_META)
    if meta > data:  # xdp_data_meta_unsupported
        return _neg(ENOTSUPP)
    new = meta + _s32(offset)
    if new < b.hard_start + XDP_FRAME_SIZE or new > data:
        return _neg(EINVAL)
    metalen = data - new
    if metalen % 4 or metalen > META_MAX:
        return _neg(EACCES)
    b.put(_XDP_DATA_META, new)
    return 0


def xdp_adjust_tail(ctx: RunContext, _xdp: int, offset: int, *_: int) -> int:
    """``bpf_xdp_adjust_tail``: move ``data_end`` within the frame (grown bytes are
    zeroed); a fragmented buffer grows or shrinks its fragments instead."""
    b = _XdpBuff(ctx)
    if not b.ok:
        return _neg(EINVAL)
    offset = _s32(offset)
    data, data_end = b.get(_XDP_DATA), b.get(_XDP_DATA_END)
    frags = b.frags
    if frags:
        return _xdp_frags_adjust_tail(b, frags, data_end - data, offset)
    new = data_end + offset
    if new > b.hard_end or new < data + ETH_HLEN:
        return _neg(EINVAL)
    if offset > 0:
        ctx.mem.write(data_end, bytes(offset))
    b.put(_XDP_DATA_END, new)
    return 0


def _xdp_frags_adjust_tail(b: _XdpBuff, frags: list[bytes], linear: int, offset: int) -> int:
    """``bpf_xdp_frags_shrink_tail`` / ``bpf_xdp_frags_increase_tail`` (page-sized
    fragments at offset 0, as BPF_PROG_TEST_RUN builds them)."""
    if offset < 0:
        shrink = -offset
        if shrink > linear + sum(map(len, frags)) - ETH_HLEN:
            return _neg(EINVAL)
        while frags and shrink > 0:
            cut = min(shrink, len(frags[-1]))
            shrink -= cut
            frags[-1] = frags[-1][:len(frags[-1]) - cut]
            if not frags[-1]:
                frags.pop()
        b.set_frags(frags)
        if not frags and shrink:
            b.put(_XDP_DATA_END, b.get(_XDP_DATA_END) - shrink)
        return 0
    tailroom = PAGE_SIZE - len(frags[-1])
    if offset > tailroom:
        return _neg(EINVAL)
    frags[-1] = frags[-1] + bytes(offset)
    b.set_frags(frags)
    return 0


def _xdp_span(b: _XdpBuff, offset: int, length: int) -> int:
    """``bpf_xdp_pointer``'s checks: 0 when ``[offset, offset+length)`` is in the buffer."""
    offset &= M32
    length &= M32
    if offset > 0xFFFF or length > 0xFFFF:
        return EFAULT
    linear = b.get(_XDP_DATA_END) - b.get(_XDP_DATA)
    if offset + length > linear + sum(map(len, b.frags)):
        return EINVAL
    return 0


def xdp_load_bytes(ctx: RunContext, _xdp: int, offset: int, buf: int, length: int,
                   *_: int) -> int:
    """``bpf_xdp_load_bytes``: copy out of the linear part and the fragments."""
    b = _XdpBuff(ctx)
    if not b.ok:
        return _neg(EINVAL)
    err = _xdp_span(b, offset, length)
    if err:
        return _neg(err)
    data, data_end = b.get(_XDP_DATA), b.get(_XDP_DATA_END)
    whole = ctx.mem.read(data, data_end - data) + b"".join(b.frags)
    ctx.mem.write(buf, whole[offset:offset + length])
    return 0


def xdp_store_bytes(ctx: RunContext, _xdp: int, offset: int, buf: int, length: int,
                    *_: int) -> int:
    """``bpf_xdp_store_bytes``: copy into the linear part and the fragments."""
    b = _XdpBuff(ctx)
    if not b.ok:
        return _neg(EINVAL)
    err = _xdp_span(b, offset, length)
    if err:
        return _neg(err)
    src = ctx.mem.read(buf, length)
    data, data_end = b.get(_XDP_DATA), b.get(_XDP_DATA_END)
    linear = data_end - data
    head = src[:max(0, linear - offset)]
    if head:
        ctx.mem.write(data + offset, head)
    rest, pos = src[len(head):], max(0, offset - linear)
    frags = b.frags
    for i, frag in enumerate(frags):
        if not rest:
            break
        if pos >= len(frag):
            pos -= len(frag)
            continue
        part = rest[:len(frag) - pos]
        frags[i] = frag[:pos] + part + frag[pos + len(part):]
        rest, pos = rest[len(part):], 0
    b.set_frags(frags)
    return 0


# --------------------------------------------------------------------------- skb writes

def _skb_writable(ctx: RunContext, write_len: int) -> tuple[int, int] | None:
    """``bpf_try_make_writable``: ``(skb->data, skb->len)`` when ``write_len`` bytes of
    linear data exist, else None (the helpers then return -EFAULT)."""
    skb: Any = ctx.data.get("skb")
    if skb is None:
        return None
    start, end = skb.bounds()
    if write_len > end - start:
        return None
    return start, end - start


def skb_store_bytes(ctx: RunContext, _skb: int, offset: int, frm: int, length: int,
                    flags: int) -> int:
    """``bpf_skb_store_bytes``. Test skbs are CHECKSUM_NONE, so BPF_F_RECOMPUTE_CSUM has
    no ``skb->csum`` to maintain; BPF_F_INVALIDATE_HASH clears the hash."""
    if flags & ~(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH):
        return _neg(EINVAL)
    offset &= M32
    if offset > INT_MAX:
        return _neg(EFAULT)
    where = _skb_writable(ctx, (offset + length) & M32)
    if where is None:
        return _neg(EFAULT)
    ctx.mem.write(where[0] + offset, ctx.mem.read(frm, length))
    if flags & BPF_F_INVALIDATE_HASH:
        _skb_clear_hash(ctx)
    return 0


# --------------------------------------------------------------------------- skb shape

_SKB_LEN, _SKB_PKT_TYPE, _SKB_PROTOCOL, _SKB_HASH = 0, 4, 16, 68
_SKB_DATA, _SKB_DATA_END, _SKB_DATA_META = 76, 80, 140
PACKET_OTHERHOST = 3
ETH_P_IP_BE, ETH_P_IPV6_BE = 0x0008, 0xDD86  # htons() as the __sk_buff field reads it
IPV4_HLEN, IPV6_HLEN = 20, 40
SKB_MAX_ALLOC = 4 * PAGE_SIZE - SKB_SHARED_INFO_SIZE  # BPF_SKB_MAX_LEN
ENOMEM = 12


def _skb_obj(ctx: RunContext) -> Any:
    return ctx.data.get("skb")


def _skb_clear_hash(ctx: RunContext) -> None:
    """``skb_clear_hash``: no hash, neither software- nor L4-computed."""
    skb = _skb_obj(ctx)
    if skb is not None:
        skb._set_u32(_SKB_HASH, 0)
    ctx.data["skb_hash_set"] = False


def _skb_set_bounds(ctx: RunContext, start: int, end: int) -> None:
    """Move ``skb->data``/tail and recompute what the ctx shows (``len``, and
    ``data``/``data_end``/``data_meta`` where the type has direct packet access)."""
    skb = _skb_obj(ctx)
    direct = skb._u32(_SKB_DATA_END) != 0
    if hasattr(skb, "head"):
        skb.head, skb.tail = start, end
    skb._set_u32(_SKB_LEN, end - start)
    skb._set_u32(_SKB_DATA, start)
    if direct:
        skb._set_u32(_SKB_DATA_END, end)
        skb._set_u32(_SKB_DATA_META, start)


def skb_change_type(ctx: RunContext, _skb: int, pkt_type: int, *_: int) -> int:
    """``bpf_skb_change_type``: only PACKET_HOST..PACKET_OTHERHOST, from and to."""
    skb = _skb_obj(ctx)
    if skb is None:
        return _neg(EINVAL)
    pkt_type &= M32
    if skb._u32(_SKB_PKT_TYPE) > PACKET_OTHERHOST or pkt_type > PACKET_OTHERHOST:
        return _neg(EINVAL)
    skb._set_u32(_SKB_PKT_TYPE, pkt_type)
    return 0


def skb_pull_data(ctx: RunContext, _skb: int, length: int, *_: int) -> int:
    """``bpf_skb_pull_data``: make ``len`` bytes (0: the linear part) direct-accessible;
    pybpf's packets are linear, so only a length beyond the packet fails (-ENOMEM)."""
    skb = _skb_obj(ctx)
    if skb is None:
        return _neg(EINVAL)
    start, end = skb.bounds()
    length &= M32
    return _neg(ENOMEM) if length > end - start else 0


def set_hash(ctx: RunContext, _skb: int, value: int, *_: int) -> int:
    """``bpf_set_hash``: a software hash, valid until invalidated."""
    skb = _skb_obj(ctx)
    if skb is not None:
        skb._set_u32(_SKB_HASH, value & M32)
    ctx.data["skb_hash_set"] = True
    return 0


def get_hash_recalc(ctx: RunContext, _skb: int, *_: int) -> int:
    """``bpf_get_hash_recalc``: the hash set by ``bpf_set_hash``. Without one the kernel
    computes a flow hash keyed by a per-boot random secret — not reproducible, so pybpf
    reports the (zero) field, as for a packet nothing has hashed."""
    skb = _skb_obj(ctx)
    if skb is None or not ctx.data.get("skb_hash_set"):
        return 0
    return int(skb._u32(_SKB_HASH))


def _skb_room(ctx: RunContext, start: int, end: int, new_start: int, new_end: int) -> bool:
    """Whether the frame holds ``[new_start, new_end)`` (the kernel would reallocate)."""
    frame = _skb_obj(ctx).frame
    return frame.start <= new_start and new_end <= frame.start + frame.size - SKB_SHARED_INFO_SIZE


def skb_change_proto(ctx: RunContext, _skb: int, proto: int, flags: int, *_: int) -> int:
    """``bpf_skb_change_proto``: IPv4 <-> IPv6 by inserting/removing 20 zero bytes after
    the MAC header; the program rewrites the headers itself."""
    skb = _skb_obj(ctx)
    if skb is None:
        return _neg(EINVAL)
    if flags:
        return _neg(EINVAL)
    frm, to = skb._u32(_SKB_PROTOCOL), proto & 0xFFFF
    start, end = skb.bounds()
    off = ETH_HLEN  # skb_mac_header_len: tc sees the packet from the MAC header
    diff = IPV6_HLEN - IPV4_HLEN
    if frm == ETH_P_IP_BE and to == ETH_P_IPV6_BE:
        if not _skb_room(ctx, start, end, start - diff, end):
            return _neg(ENOMEM)
        mac = ctx.mem.read(start, off)
        ctx.mem.write(start - diff, mac + bytes(diff))
        _skb_set_bounds(ctx, start - diff, end)
        _set_headers(ctx, start - diff)
    elif frm == ETH_P_IPV6_BE and to == ETH_P_IP_BE:
        if off + diff > end - start:
            return _neg(ENOMEM)
        mac = ctx.mem.read(start, off)
        ctx.mem.write(start + diff, mac)
        _skb_set_bounds(ctx, start + diff, end)
        _set_headers(ctx, start + diff)
    else:
        return _neg(ENOTSUPP)
    skb._set_u32(_SKB_PROTOCOL, to)
    return 0


def skb_change_tail(ctx: RunContext, _skb: int, new_len: int, flags: int, *_: int) -> int:
    """``bpf_skb_change_tail``: trim or grow (zero-filled) the packet to ``new_len``,
    never below the network header."""
    skb = _skb_obj(ctx)
    if skb is None:
        return _neg(EINVAL)
    start, end = skb.bounds()
    new_len &= M32
    min_len = max(0, _network_header(ctx, skb) - start)  # skb_network_offset
    if flags or new_len > SKB_MAX_ALLOC or new_len < min_len:
        return _neg(EINVAL)
    if not _skb_room(ctx, start, end, start, start + new_len):
        return _neg(ENOMEM)
    if new_len > end - start:
        ctx.mem.write(end, bytes(new_len - (end - start)))
    _skb_set_bounds(ctx, start, start + new_len)
    return 0


_SKB_VLAN_PRESENT, _SKB_VLAN_TCI, _SKB_VLAN_PROTO = 20, 24, 28
ETH_P_8021Q_BE, ETH_P_8021AD_BE = 0x0081, 0xA888  # htons(0x8100), htons(0x88A8)
VLAN_HLEN = 4
ETH_P_802_3_MIN = 0x0600


def _mac_header(ctx: RunContext, skb: Any) -> int:
    """``skb_mac_header``: where the helpers that moved it left it, else the frame's."""
    return int(ctx.data.get("mac_header", skb.data_start))


def _network_header(ctx: RunContext, skb: Any) -> int:
    return int(ctx.data.get("network_header", skb.data_start + ETH_HLEN))


def _set_headers(ctx: RunContext, mac: int) -> None:
    """MAC header at ``mac``, network header right after the Ethernet header."""
    ctx.data["mac_header"] = mac
    ctx.data["network_header"] = mac + ETH_HLEN


def _vlan_put_tag(skb: Any, proto: int, tci: int) -> None:
    """``__vlan_hwaccel_put_tag``: the tag lives in skb metadata, not in the packet."""
    skb._set_u32(_SKB_VLAN_PRESENT, 1)
    skb._set_u32(_SKB_VLAN_TCI, tci & 0xFFFF)
    skb._set_u32(_SKB_VLAN_PROTO, proto & 0xFFFF)


def _vlan_pop_from_packet(ctx: RunContext, skb: Any) -> int | tuple[int, int]:
    """``__skb_vlan_pop``: remove the tag after the MAC addresses; (0, tci) or -errno."""
    start, end = skb.bounds()
    if start != _mac_header(ctx, skb):  # skb->data must be at the MAC header
        return -EINVAL
    if end - start < ETH_HLEN + VLAN_HLEN:
        return -ENOMEM
    tci = int.from_bytes(ctx.mem.read(start + ETH_HLEN, 2), "big")
    encap = ctx.mem.read(start + ETH_HLEN + 2, 2)
    macs = ctx.mem.read(start, 2 * 6)
    ctx.mem.write(start + VLAN_HLEN, macs)
    _skb_set_bounds(ctx, start + VLAN_HLEN, end)
    _set_headers(ctx, start + VLAN_HLEN)
    if int.from_bytes(encap, "big") >= ETH_P_802_3_MIN:  # vlan_set_encap_proto
        skb._set_u32(_SKB_PROTOCOL, int.from_bytes(encap, "little"))
    return 0, tci


def _eth_type_vlan(proto_le: int) -> bool:
    return proto_le in (ETH_P_8021Q_BE, ETH_P_8021AD_BE)


def skb_vlan_push(ctx: RunContext, _skb: int, vlan_proto: int, vlan_tci: int, *_: int) -> int:
    """``bpf_skb_vlan_push``: a present tag goes into the packet, the new one into the
    metadata; unknown protocols become 802.1Q."""
    skb = _skb_obj(ctx)
    if skb is None:
        return _neg(EINVAL)
    proto = vlan_proto & 0xFFFF
    if not _eth_type_vlan(proto):
        proto = ETH_P_8021Q_BE
    if skb._u32(_SKB_VLAN_PRESENT):
        start, end = skb.bounds()
        if start != _mac_header(ctx, skb):
            return _neg(EINVAL)
        if not _skb_room(ctx, start, end, start - VLAN_HLEN, end):
            return _neg(ENOMEM)
        old_proto, old_tci = skb._u32(_SKB_VLAN_PROTO), skb._u32(_SKB_VLAN_TCI)
        macs = ctx.mem.read(start, 2 * 6)
        new = start - VLAN_HLEN
        ctx.mem.write(new, macs + old_proto.to_bytes(2, "little")
                      + old_tci.to_bytes(2, "big"))
        _skb_set_bounds(ctx, new, end)
        _set_headers(ctx, new)
        skb._set_u32(_SKB_PROTOCOL, old_proto)
    _vlan_put_tag(skb, proto, vlan_tci)
    return 0


def skb_vlan_pop(ctx: RunContext, _skb: int, *_: int) -> int:
    """``bpf_skb_vlan_pop``: drop the metadata tag (or the packet's outer tag), then move
    the next tag in the packet, if any, into the metadata."""
    skb = _skb_obj(ctx)
    if skb is None:
        return _neg(EINVAL)
    if skb._u32(_SKB_VLAN_PRESENT):
        for off in (_SKB_VLAN_PRESENT, _SKB_VLAN_TCI, _SKB_VLAN_PROTO):
            skb._set_u32(off, 0)
    else:
        if not _eth_type_vlan(skb._u32(_SKB_PROTOCOL)):
            return 0
        got = _vlan_pop_from_packet(ctx, skb)
        if isinstance(got, int):
            return got & M64
    proto = skb._u32(_SKB_PROTOCOL)
    if not _eth_type_vlan(proto):
        return 0
    got = _vlan_pop_from_packet(ctx, skb)
    if isinstance(got, int):
        return got & M64
    _vlan_put_tag(skb, proto, got[1])
    return 0


BPF_HDR_START_MAC, BPF_HDR_START_NET = 0, 1


BPF_ADJ_ROOM_NET, BPF_ADJ_ROOM_MAC = 0, 1
BPF_F_ADJ_ROOM_FIXED_GSO = 1 << 0
BPF_F_ADJ_ROOM_NO_CSUM_RESET = 1 << 5
BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_DECAP_L3_IPV6 = 1 << 7, 1 << 8
BPF_F_ADJ_ROOM_DECAP_L3_MASK = BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_DECAP_L3_IPV6
BPF_F_ADJ_ROOM_MASK = (BPF_F_ADJ_ROOM_FIXED_GSO | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4)
                       | (1 << 6) | (0xFF << 56) | BPF_F_ADJ_ROOM_DECAP_L3_MASK)


def skb_adjust_room(ctx: RunContext, _skb: int, len_diff: int, mode: int, flags: int,
                    *_: int) -> int:
    """``bpf_skb_adjust_room``: insert (zeroed) or remove ``len_diff`` bytes after the
    MAC header (BPF_ADJ_ROOM_MAC) or after the base L3 header (BPF_ADJ_ROOM_NET).

    Growing with the ENCAP flags inserts the room like the plain case; the kernel's extra
    tunnel-header bookkeeping (inner headers, GSO type) has no pybpf counterpart."""
    skb = _skb_obj(ctx)
    if skb is None:
        return _neg(EINVAL)
    diff = _s32(len_diff)
    shrink, absdiff = diff < 0, abs(diff)
    mode &= M32
    if flags & ~(BPF_F_ADJ_ROOM_MASK | BPF_F_ADJ_ROOM_NO_CSUM_RESET):
        return _neg(EINVAL)
    if absdiff > 0xFFF:
        return _neg(EFAULT)
    proto = skb._u32(_SKB_PROTOCOL)
    if proto not in (ETH_P_IP_BE, ETH_P_IPV6_BE):
        return _neg(ENOTSUPP)
    base_len = IPV4_HLEN if proto == ETH_P_IP_BE else IPV6_HLEN
    start, end = skb.bounds()
    mac, net = _mac_header(ctx, skb), _network_header(ctx, skb)
    off = net - mac
    if mode == BPF_ADJ_ROOM_NET:
        off += base_len
    elif mode != BPF_ADJ_ROOM_MAC:
        return _neg(ENOTSUPP)
    len_min = base_len
    decap = flags & BPF_F_ADJ_ROOM_DECAP_L3_MASK
    if decap:
        if not shrink:
            return _neg(EINVAL)
        if decap == BPF_F_ADJ_ROOM_DECAP_L3_IPV4:
            len_min = IPV4_HLEN
        elif decap == BPF_F_ADJ_ROOM_DECAP_L3_IPV6:
            len_min = IPV6_HLEN
        else:
            return _neg(EINVAL)
    len_cur = end - net
    if shrink and (absdiff >= len_cur or len_cur - absdiff < len_min):
        return _neg(ENOTSUPP)
    if not shrink and end - start + absdiff > SKB_MAX_ALLOC:
        return _neg(ENOTSUPP)
    if shrink:
        if flags & ~(BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_DECAP_L3_MASK
                     | BPF_F_ADJ_ROOM_NO_CSUM_RESET):
            return _neg(EINVAL)
        if off + absdiff > end - start:
            return _neg(ENOMEM)
        ctx.mem.write(start + absdiff, ctx.mem.read(start, off))
        _skb_set_bounds(ctx, start + absdiff, end)
        _set_headers(ctx, start + absdiff)
        if decap:
            skb._set_u32(_SKB_PROTOCOL, ETH_P_IP_BE if decap == BPF_F_ADJ_ROOM_DECAP_L3_IPV4
                         else ETH_P_IPV6_BE)
        return 0
    if not _skb_room(ctx, start, end, start - absdiff, end):
        return _neg(ENOMEM)
    ctx.mem.write(start - absdiff, ctx.mem.read(start, off) + bytes(absdiff))
    _skb_set_bounds(ctx, start - absdiff, end)
    _set_headers(ctx, start - absdiff)
    return 0




def skb_load_bytes_relative(ctx: RunContext, _skb: int, offset: int, to: int, length: int,
                            start_header: int) -> int:
    """``bpf_skb_load_bytes_relative``: copy from the MAC or network header up to the
    tail; on any failure the buffer is zeroed and -EFAULT returned."""
    skb = _skb_obj(ctx)
    offset &= M32
    start_header &= M32
    if skb is not None and offset <= 0xFFFF and start_header in (BPF_HDR_START_MAC,
                                                                  BPF_HDR_START_NET):
        base = _mac_header(ctx, skb) if start_header == BPF_HDR_START_MAC \
            else _network_header(ctx, skb)
        _start, end = skb.bounds()
        if base + offset + length <= end:
            ctx.mem.write(to, ctx.mem.read(base + offset, length))
            return 0
    if length:
        ctx.mem.write(to, bytes(length))
    return _neg(EFAULT)


def skb_change_head(ctx: RunContext, _skb: int, head_room: int, flags: int, *_: int) -> int:
    """``bpf_skb_change_head``: push ``head_room`` zero bytes in front of the packet."""
    skb = _skb_obj(ctx)
    if skb is None:
        return _neg(EINVAL)
    start, end = skb.bounds()
    head_room &= M32
    if flags or end - start + head_room > SKB_MAX_ALLOC:
        return _neg(EINVAL)
    if not _skb_room(ctx, start, end, start - head_room, end):
        return _neg(ENOMEM)
    ctx.mem.write(start - head_room, bytes(head_room))
    ctx.data["network_header"] = _network_header(ctx, skb)
    _skb_set_bounds(ctx, start - head_room, end)
    ctx.data["mac_header"] = start - head_room  # skb_reset_mac_header
    return 0


def csum_add(a: int, b: int) -> int:
    """32-bit ones'-complement add (``csum_add``)."""
    res = (a + b) & M32
    return (res + (res < (b & M32))) & M32


def csum_fold(csum: int) -> int:
    """``csum_fold``: fold 32 bits to 16 and complement."""
    s = (csum & 0xFFFF) + (csum >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _csum16_add(c: int, addend: int) -> int:
    res = (c + addend) & 0xFFFF
    return (res + (res < addend)) & 0xFFFF


def _csum_replace(ptr_val: int, size: int, frm: int, to: int) -> int:
    """The new checksum for ``csum_replace_by_diff`` (size 0), ``csum_replace2`` (2) and
    ``csum_replace4`` (4)."""
    if size == 0:
        return csum_fold(csum_add(to & M32, ~ptr_val & M32))
    if size == 2:
        frm, to = frm & 0xFFFF, to & 0xFFFF
        return ~_csum16_add(_csum16_add(~ptr_val & 0xFFFF, ~frm & 0xFFFF), to) & 0xFFFF
    tmp = csum_add(~ptr_val & M32, ~frm & M32)
    return csum_fold(csum_add(tmp, to & M32))


def _csum_at(ctx: RunContext, offset: int) -> tuple[int, int] | int:
    """``(address, current value)`` of the 16-bit checksum at ``offset``, or an errno."""
    offset &= M32
    if offset > 0xFFFF or offset & 1:
        return EFAULT
    where = _skb_writable(ctx, offset + 2)
    if where is None:
        return EFAULT
    addr = where[0] + offset
    return addr, int.from_bytes(ctx.mem.read(addr, 2), "little")


def l3_csum_replace(ctx: RunContext, _skb: int, offset: int, frm: int, to: int,
                    flags: int) -> int:
    """``bpf_l3_csum_replace``."""
    if flags & ~BPF_F_HDR_FIELD_MASK:
        return _neg(EINVAL)
    at = _csum_at(ctx, offset)
    if isinstance(at, int):
        return _neg(at)
    addr, old = at
    size = flags & BPF_F_HDR_FIELD_MASK
    if size not in (0, 2, 4) or (size == 0 and frm):
        return _neg(EINVAL)
    ctx.mem.write(addr, _csum_replace(old, size, frm, to).to_bytes(2, "little"))
    return 0


def l4_csum_replace(ctx: RunContext, _skb: int, offset: int, frm: int, to: int,
                    flags: int) -> int:
    """``bpf_l4_csum_replace``. Test skbs are not CHECKSUM_PARTIAL, so the pseudo-header
    flag changes nothing on the packet (it would update ``skb->csum`` if COMPLETE)."""
    allowed = (BPF_F_MARK_MANGLED_0 | BPF_F_MARK_ENFORCE | BPF_F_PSEUDO_HDR
               | BPF_F_HDR_FIELD_MASK | BPF_F_IPV6)
    if flags & ~allowed:
        return _neg(EINVAL)
    at = _csum_at(ctx, offset)
    if isinstance(at, int):
        return _neg(at)
    addr, old = at
    mangled0 = bool(flags & BPF_F_MARK_MANGLED_0)
    if mangled0 and not flags & BPF_F_MARK_ENFORCE and old == 0:
        return 0
    size = flags & BPF_F_HDR_FIELD_MASK
    if size not in (0, 2, 4) or (size == 0 and frm):
        return _neg(EINVAL)
    new = _csum_replace(old, size, frm, to)
    if mangled0 and new == 0:
        new = CSUM_MANGLED_0
    ctx.mem.write(addr, new.to_bytes(2, "little"))
    return 0


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
    40: csum_update,
    84: zero,
    85: zero,
    86: zero,
    99: zero,
    105: strtol,
    106: strtoul,
    5: ktime_get_ns,
    6: trace_printk,
    165: snprintf,
    177: trace_vprintk,
    7: get_prandom_u32,
    8: get_smp_processor_id,
    12: tail_call,
    26: skb_load_bytes,
    28: csum_diff,
    118: jiffies64,
    125: ktime_get_boot_ns,
    160: ktime_get_coarse_ns,
    9: skb_store_bytes,
    18: skb_vlan_push,
    19: skb_vlan_pop,
    31: skb_change_proto,
    32: skb_change_type,
    34: get_hash_recalc,
    38: skb_change_tail,
    39: skb_pull_data,
    43: skb_change_head,
    48: set_hash,
    50: skb_adjust_room,
    68: skb_load_bytes_relative,
    10: l3_csum_replace,
    11: l4_csum_replace,
    44: xdp_adjust_head,
    54: xdp_adjust_meta,
    65: xdp_adjust_tail,
    181: loop,
    182: strncmp,
    189: xdp_load_bytes,
    190: xdp_store_bytes,
    208: ktime_get_tai_ns,
}
