"""What kfunc calls do at run time, on both tiers (interpreter and JIT bridge).

An implementation has the helper signature ``impl(ctx, r1, r2, r3, r4, r5) -> r0``.
:data:`IMPLS` is keyed by kfunc name (kfuncs have no stable numbers; their BTF ids differ
per kernel build); :func:`kfunc_impls_for` turns it into the ``{btf_id: impl}`` table a
program's runtime needs, for the kfunc calls the program makes (after
``fixup_kfunc_call`` a call keeps its BTF id in ``imm``, see
:mod:`pybpf.verifier.kfunc_fixup`).

Memory layouts are the kernel's: ``struct bpf_iter_num_kern { int cur; int end; }`` and
``struct bpf_iter_bits_kern``, so a program that peeks at its iterator sees what it would
see on Linux.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pybpf.helpers.deferred import DEFERRED_IMPLS
from pybpf.helpers.kfunc_alloc import ALLOC_IMPLS
from pybpf.helpers.kfunc_graph import GRAPH_IMPLS
from pybpf.helpers.kfunc_session import SESSION_IMPLS
from pybpf.helpers.kfunc_stream import STREAM_IMPLS

if TYPE_CHECKING:
    from pybpf.runtime.context import RunContext

Impl = Callable[..., int]

EINVAL = 22
E2BIG = 7
EFAULT = 14
ERANGE = 34
BPF_MAX_LOOPS = 8 * 1024 * 1024
M64 = (1 << 64) - 1
_NUM = struct.Struct("<ii")


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _neg(err: int) -> int:
    return -err & M64


# -- bpf_iter_num: integers in [start, end) ------------------------------------------------

def iter_num_new(ctx: RunContext, it: int, start: int, end: int, *_: int) -> int:
    start, end = _s32(start), _s32(end)
    if start > end:
        ctx.mem.write(it, _NUM.pack(0, 0))
        return _neg(EINVAL)
    if end - start > BPF_MAX_LOOPS:  # no more than bpf_loop would allow
        ctx.mem.write(it, _NUM.pack(0, 0))
        return _neg(E2BIG)
    ctx.mem.write(it, _NUM.pack(_s32(start - 1), end))  # _next steps first
    return 0


def iter_num_next(ctx: RunContext, it: int, *_: int) -> int:
    cur, end = _NUM.unpack(ctx.mem.read(it, 8))
    if cur + 1 >= end:  # done, or a failed _new (cur == end == 0)
        ctx.mem.write(it, _NUM.pack(0, 0))
        return 0
    ctx.mem.write(it, _NUM.pack(cur + 1, end))
    return it  # &s->cur: the first member


def iter_num_destroy(ctx: RunContext, it: int, *_: int) -> int:
    ctx.mem.write(it, _NUM.pack(0, 0))
    return 0


# -- bpf_iter_bits: set bits of a u64 array ------------------------------------------------
# struct bpf_iter_bits_kern { union { __u64 *bits; __u64 bits_copy; }; int nr_bits; int bit; }

_BITS = struct.Struct("<Qii")
BITS_ITER_NR_WORDS_MAX = 511
#: copies of the bit arrays of iterators longer than one word (the kernel allocates one
#: with bpf_mem_alloc and keeps the pointer in the iterator), by iterator address
_BIT_ARRAYS: dict[int, int] = {}


def iter_bits_new(ctx: RunContext, it: int, ptr: int, nr_words: int, *_: int) -> int:
    nr_words &= 0xFFFFFFFF
    ctx.mem.write(it, _BITS.pack(0, 0, -1))
    _BIT_ARRAYS.pop(it, None)
    if not ptr or not nr_words:
        return _neg(EINVAL)
    if nr_words > BITS_ITER_NR_WORDS_MAX:
        return _neg(E2BIG)
    try:
        data = ctx.mem.read(ptr, nr_words * 8)
    except Exception:
        return _neg(EFAULT)
    bits = int.from_bytes(data, "little")
    if nr_words == 1:
        ctx.mem.write(it, _BITS.pack(bits, 64, -1))
    else:
        _BIT_ARRAYS[it] = bits
        ctx.mem.write(it, _BITS.pack(0, nr_words * 64, -1))
    return 0


def iter_bits_next(ctx: RunContext, it: int, *_: int) -> int:
    word, nr_bits, bit = _BITS.unpack(ctx.mem.read(it, 16))
    if not nr_bits or bit >= nr_bits:
        return 0
    bits = word if nr_bits == 64 else _BIT_ARRAYS.get(it, 0)
    b = bit + 1
    while b < nr_bits and not (bits >> b) & 1:
        b += 1
    b = min(b, nr_bits)
    ctx.mem.write(it + 12, struct.pack("<i", b))
    return 0 if b >= nr_bits else it + 12  # &kit->bit


def iter_bits_destroy(ctx: RunContext, it: int, *_: int) -> int:
    _BIT_ARRAYS.pop(it, None)
    return 0


# -- string kfuncs: kernel strings read without faulting ----------------------------------
# Each returns an index or length, or -ERANGE (a pointer into user space: pybpf takes the
# first page for it), -EFAULT (unreadable), -E2BIG (no NUL within XATTR_SIZE_MAX bytes).

XATTR_SIZE_MAX = 65536
ENOENT = 2
_LOW_PAGE = 4096


class _StrError(Exception):
    def __init__(self, err: int) -> None:
        self.err = err


class _Str:
    """Byte-at-a-time reader of a kernel string (``__get_kernel_nofault``)."""

    def __init__(self, ctx: RunContext, addr: int) -> None:
        if addr < _LOW_PAGE:
            raise _StrError(ERANGE)
        self.ctx, self.addr = ctx, addr

    def at(self, i: int) -> int:
        try:
            return self.ctx.mem.read(self.addr + i, 1)[0]
        except Exception:
            raise _StrError(EFAULT) from None


def _str_kfunc(fn: Callable[..., int]) -> Impl:
    def impl(ctx: RunContext, *args: int) -> int:
        try:
            return fn(ctx, *args) & M64
        except _StrError as e:
            return _neg(e.err)
    impl.__name__ = fn.__name__
    return impl


def _strnlen(ctx: RunContext, s: int, count: int) -> int:
    r = _Str(ctx, s)
    i = 0
    while i < count and i < XATTR_SIZE_MAX:
        if r.at(i) == 0:
            return i
        i += 1
    return -E2BIG if i == XATTR_SIZE_MAX else i


def _strcmp(ctx: RunContext, s1: int, s2: int, ignore_case: bool) -> int:
    a, b = _Str(ctx, s1), _Str(ctx, s2)
    for i in range(XATTR_SIZE_MAX):
        c1, c2 = a.at(i), b.at(i)
        if ignore_case:
            c1 = c1 + 32 if 65 <= c1 <= 90 else c1
            c2 = c2 + 32 if 65 <= c2 <= 90 else c2
        if c1 != c2:
            return -1 if c1 < c2 else 1
        if c1 == 0:
            return 0
    return -E2BIG


def _strnchr(ctx: RunContext, s: int, count: int, c: int) -> int:
    r = _Str(ctx, s)
    c &= 0xFF
    for i in range(min(count, XATTR_SIZE_MAX)):
        ch = r.at(i)
        if ch == c:
            return i
        if ch == 0:
            return -ENOENT
    return -ENOENT if count < XATTR_SIZE_MAX else -E2BIG


def _strchrnul(ctx: RunContext, s: int, c: int) -> int:
    r = _Str(ctx, s)
    c &= 0xFF
    for i in range(XATTR_SIZE_MAX):
        ch = r.at(i)
        if ch == 0 or ch == c:
            return i
    return -E2BIG


def _strrchr(ctx: RunContext, s: int, c: int) -> int:
    r = _Str(ctx, s)
    c &= 0xFF
    last = -ENOENT
    for i in range(XATTR_SIZE_MAX):
        ch = r.at(i)
        if ch == c:
            last = i
        if ch == 0:
            return last
    return -E2BIG


def _strspn(ctx: RunContext, s: int, chars: int, accept: bool) -> int:
    r, set_r = _Str(ctx, s), _Str(ctx, chars)
    allowed = set()
    for j in range(XATTR_SIZE_MAX):
        ch = set_r.at(j)
        if ch == 0:
            break
        allowed.add(ch)
    else:
        return -E2BIG
    for i in range(XATTR_SIZE_MAX):
        ch = r.at(i)
        if ch == 0 or (ch in allowed) != accept:
            return i
    return -E2BIG


def _strnstr(ctx: RunContext, s1: int, s2: int, count: int) -> int:
    a, b = _Str(ctx, s1), _Str(ctx, s2)
    for i in range(XATTR_SIZE_MAX):
        if i >= count:
            return -ENOENT
        if a.at(i) == 0 and b.at(0) != 0:
            return -ENOENT
        j = 0
        while True:
            if j >= XATTR_SIZE_MAX:
                return -E2BIG
            cb = b.at(j)
            if cb == 0:
                return i
            if i + j >= count or a.at(i + j) != cb:
                break
            j += 1
    return -E2BIG


STR_IMPLS: dict[str, Impl] = {
    "bpf_strlen": _str_kfunc(lambda ctx, s, *_: _strnlen(ctx, s, XATTR_SIZE_MAX)),
    "bpf_strnlen": _str_kfunc(lambda ctx, s, n, *_: _strnlen(ctx, s, n)),
    "bpf_strcmp": _str_kfunc(lambda ctx, a, b, *_: _strcmp(ctx, a, b, False)),
    "bpf_strcasecmp": _str_kfunc(lambda ctx, a, b, *_: _strcmp(ctx, a, b, True)),
    "bpf_strchr": _str_kfunc(lambda ctx, s, c, *_: _strnchr(ctx, s, XATTR_SIZE_MAX, c)),
    "bpf_strnchr": _str_kfunc(lambda ctx, s, n, c, *_: _strnchr(ctx, s, n, c)),
    "bpf_strchrnul": _str_kfunc(lambda ctx, s, c, *_: _strchrnul(ctx, s, c)),
    "bpf_strrchr": _str_kfunc(lambda ctx, s, c, *_: _strrchr(ctx, s, c)),
    "bpf_strspn": _str_kfunc(lambda ctx, s, a, *_: _strspn(ctx, s, a, True)),
    "bpf_strcspn": _str_kfunc(lambda ctx, s, r, *_: _strspn(ctx, s, r, False)),
    "bpf_strstr": _str_kfunc(lambda ctx, a, b, *_: _strnstr(ctx, a, b, XATTR_SIZE_MAX)),
    "bpf_strnstr": _str_kfunc(lambda ctx, a, b, n, *_: _strnstr(ctx, a, b, n)),
}


# -- sections the verifier tracks; nothing to do at run time -------------------------------

def nop(ctx: RunContext, *_: int) -> int:
    return 0


def _throw(ctx: RunContext, cookie: int, *_: int) -> int:
    """``bpf_throw``: unwind to the program's run, which calls the exception callback."""
    from pybpf.verifier.exceptions import BpfThrow

    raise BpfThrow(cookie)


# -- arenas (maps/type_arena.py) ------------------------------------------------------------

def _arena_of(map_addr: int) -> Any:
    from pybpf.maps.core import map_from_addr
    from pybpf.maps.type_arena import ArenaMap

    bmap = map_from_addr(map_addr)
    return bmap if isinstance(bmap, ArenaMap) else None


def arena_alloc_pages(ctx: RunContext, map_addr: int, addr: int, page_cnt: int, node_id: int,
                      flags: int, *_: int) -> int:
    """``bpf_arena_alloc_pages``: a user pointer to fresh zeroed pages, or NULL."""
    arena = _arena_of(map_addr)
    if arena is None:
        return 0
    return arena.alloc_pages(addr, page_cnt & 0xFFFFFFFF, node_id & 0xFFFFFFFF, flags)


def arena_free_pages(ctx: RunContext, map_addr: int, ptr: int, page_cnt: int, *_: int) -> int:
    """``bpf_arena_free_pages``: pages back to the arena (user mappings see zeroes)."""
    arena = _arena_of(map_addr)
    if arena is not None:
        arena.free_pages(ptr, page_cnt & 0xFFFFFFFF)
    return 0


def arena_reserve_pages(ctx: RunContext, map_addr: int, ptr: int, page_cnt: int,
                        *_: int) -> int:
    """``bpf_arena_reserve_pages``: keep the allocator off a range (0 or -errno)."""
    arena = _arena_of(map_addr)
    if arena is None:
        return (-errno.EINVAL) & M64
    page_cnt &= 0xFFFFFFFF
    return arena.reserve_pages(ptr, page_cnt) & M64 if page_cnt else 0


#: what ``bpf_local_irq_save`` stores: x86's EFLAGS with interrupts enabled (IF) — pybpf
#: has no interrupts to disable, and programs cannot read the slot anyway
SAVED_IRQ_FLAGS = 0x246


def local_irq_save(ctx: RunContext, flags: int, *_: int) -> int:
    """``bpf_local_irq_save``: keep the interrupt state in the caller's flag slot."""
    ctx.mem.write(flags, SAVED_IRQ_FLAGS.to_bytes(8, "little"))
    return 0


def res_spin_lock_irqsave(ctx: RunContext, lock: int, flags: int, *_: int) -> int:
    """``bpf_res_spin_lock_irqsave``: taken (0) — pybpf runs one program at a time on a
    thread and never deadlocks — with the interrupt state saved in the flag slot."""
    return local_irq_save(ctx, flags)


IMPLS: dict[str, Impl] = {
    "bpf_local_irq_save": local_irq_save,
    "bpf_local_irq_restore": nop,
    "bpf_res_spin_lock": nop,
    "bpf_res_spin_unlock": nop,
    "bpf_res_spin_lock_irqsave": res_spin_lock_irqsave,
    "bpf_res_spin_unlock_irqrestore": nop,
    "bpf_arena_alloc_pages": arena_alloc_pages,
    "bpf_arena_free_pages": arena_free_pages,
    "bpf_arena_reserve_pages": arena_reserve_pages,
    "bpf_iter_num_new": iter_num_new,
    "bpf_iter_num_next": iter_num_next,
    "bpf_iter_num_destroy": iter_num_destroy,
    "bpf_iter_bits_new": iter_bits_new,
    "bpf_iter_bits_next": iter_bits_next,
    "bpf_iter_bits_destroy": iter_bits_destroy,
    "bpf_rcu_read_lock": nop,
    "bpf_rcu_read_unlock": nop,
    "bpf_preempt_disable": nop,
    "bpf_preempt_enable": nop,
    "bpf_throw": _throw,
    **STR_IMPLS,
    **STREAM_IMPLS,
    **SESSION_IMPLS,
    **DEFERRED_IMPLS,
    **ALLOC_IMPLS,
    **GRAPH_IMPLS,
}


def kfunc_impls_for(kernel: Any, insns: Iterable[Any]) -> dict[int, Impl]:
    """``{btf_id: impl}`` for the kfunc calls among ``insns`` (xlated) that pybpf can run."""
    ids = {ins.imm for ins in insns if ins.code == 0x85 and ins.src == 2 and ins.imm}
    if not ids:
        return {}
    obj = getattr(kernel, "vmlinux_btf", None)
    if obj is None:
        return {}
    btf = obj.parsed()
    out: dict[int, Impl] = {}
    for fid in ids:
        name = btf.types[fid].name if 0 < fid < len(btf.types) else ""
        impl = IMPLS.get(name)
        if impl is not None:
            out[fid] = impl
    return out


__all__ = ["IMPLS", "kfunc_impls_for"]
