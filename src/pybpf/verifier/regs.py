"""Register state (the kernel's ``struct bpf_reg_state``) and scalar bounds.

A register is NOT_INIT, a SCALAR_VALUE, or a pointer of some :class:`RegType` (possibly
OR-ed with flags such as ``PTR_MAYBE_NULL``). Scalars and the variable part of pointers
carry a tnum (``var_off``) plus four numeric ranges (s64/u64/s32/u32);
:func:`reg_bounds_sync` keeps all five consistent, as the kernel does after every
operation, because each view can sharpen the others.
"""

from __future__ import annotations

from contextvars import ContextVar
from enum import IntEnum
from typing import Any

from pybpf.verifier import tnum as tn
from pybpf.verifier.tnum import U32, U64, Tnum

S64_MIN = -(1 << 63)
S64_MAX = (1 << 63) - 1
S32_MIN = -(1 << 31)
S32_MAX = (1 << 31) - 1


def s64(v: int) -> int:
    v &= U64
    return v - (1 << 64) if v >> 63 else v


def s32(v: int) -> int:
    v &= U32
    return v - (1 << 32) if v >> 31 else v


class RegType(IntEnum):
    """``enum bpf_reg_type`` base types."""

    NOT_INIT = 0
    SCALAR_VALUE = 1
    PTR_TO_CTX = 2
    CONST_PTR_TO_MAP = 3
    PTR_TO_MAP_VALUE = 4
    PTR_TO_MAP_KEY = 5
    PTR_TO_STACK = 6
    PTR_TO_PACKET_META = 7
    PTR_TO_PACKET = 8
    PTR_TO_PACKET_END = 9
    PTR_TO_FLOW_KEYS = 10
    PTR_TO_SOCKET = 11
    PTR_TO_SOCK_COMMON = 12
    PTR_TO_TCP_SOCK = 13
    PTR_TO_TP_BUFFER = 14
    PTR_TO_XDP_SOCK = 15
    PTR_TO_BTF_ID = 16
    PTR_TO_MEM = 17
    PTR_TO_ARENA = 18
    PTR_TO_BUF = 19
    PTR_TO_FUNC = 20
    CONST_PTR_TO_DYNPTR = 21


BASE_MASK = 0xFF
#: ``reg->id`` flags of a scalar linked to others by a constant delta (``rX = rY; rX += c``,
#: ``c`` kept in ``reg->off``): 64- or 32-bit arithmetic made the link
BPF_ADD_CONST64 = 1 << 31
BPF_ADD_CONST32 = 1 << 30
BPF_ADD_CONST = BPF_ADD_CONST64 | BPF_ADD_CONST32

PTR_MAYBE_NULL = 1 << 8
MEM_RDONLY = 1 << 9
MEM_RINGBUF = 1 << 10
MEM_USER = 1 << 11
MEM_PERCPU = 1 << 12
MEM_RCU = 1 << 13
PTR_UNTRUSTED = 1 << 14
PTR_TRUSTED = 1 << 15
MEM_ALLOC = 1 << 16
NON_OWN_REF = 1 << 17  # a graph node owned by a collection (verifier/graph.py)

_TYPE_NAMES = {
    RegType.NOT_INIT: "?", RegType.SCALAR_VALUE: "scalar", RegType.PTR_TO_CTX: "ctx",
    RegType.CONST_PTR_TO_MAP: "map_ptr", RegType.PTR_TO_MAP_VALUE: "map_value",
    RegType.PTR_TO_STACK: "fp", RegType.PTR_TO_PACKET: "pkt",
    RegType.PTR_TO_PACKET_META: "pkt_meta", RegType.PTR_TO_PACKET_END: "pkt_end",
    RegType.PTR_TO_FLOW_KEYS: "flow_keys", RegType.PTR_TO_SOCKET: "sock",
    RegType.PTR_TO_SOCK_COMMON: "sock_common", RegType.PTR_TO_TCP_SOCK: "tcp_sock",
    RegType.PTR_TO_TP_BUFFER: "tp_buffer", RegType.PTR_TO_XDP_SOCK: "xdp_sock",
    RegType.PTR_TO_BTF_ID: "ptr_", RegType.PTR_TO_MEM: "mem", RegType.PTR_TO_ARENA: "arena",
    RegType.PTR_TO_BUF: "buf", RegType.PTR_TO_FUNC: "func", RegType.PTR_TO_MAP_KEY: "map_key",
    RegType.CONST_PTR_TO_DYNPTR: "dynptr_ptr",
}


def base_type(t: int) -> int:
    return t & BASE_MASK


def reg_type_str(t: int) -> str:
    """The kernel's ``reg_type_str``: ``map_value_or_null``, ``rdonly_mem``, ``ptr_``…"""
    base = base_type(t)
    post = ""
    if t & PTR_MAYBE_NULL:
        post = "or_null_" if base == RegType.PTR_TO_BTF_ID else "_or_null"
    pre = "".join(p for flag, p in ((MEM_RDONLY, "rdonly_"), (MEM_RINGBUF, "ringbuf_"),
                                    (MEM_USER, "user_"), (MEM_PERCPU, "percpu_"),
                                    (MEM_RCU, "rcu_"), (PTR_UNTRUSTED, "untrusted_"),
                                    (PTR_TRUSTED, "trusted_")) if t & flag)
    return pre + _TYPE_NAMES.get(RegType(base), "?") + post


class Reg:
    """One register. Mutable; states copy registers when they fork."""

    __slots__ = (
        "btf",
        "btf_id",
        "btf_name",
        "dynptr_id",
        "frameno",
        "id",
        "live_read",
        "map_ptr",
        "mem_size",
        "off",
        "precise",
        "range",
        "ref_obj_id",
        "s32_max",
        "s32_min",
        "smax",
        "smin",
        "subprogno",
        "subreg_def",
        "type",
        "u32_max",
        "u32_min",
        "umax",
        "umin",
        "var_off",
    )

    def __init__(self) -> None:
        self.type: int = RegType.NOT_INIT
        self.off = 0
        self.var_off = tn.UNKNOWN
        self.smin = S64_MIN
        self.smax = S64_MAX
        self.umin = 0
        self.umax = U64
        self.s32_min = S32_MIN
        self.s32_max = S32_MAX
        self.u32_min = 0
        self.u32_max = U32
        self.id = 0
        self.ref_obj_id = 0
        self.map_ptr: Any = None
        self.range = 0  # packet: bytes known accessible past this pointer
        self.mem_size = 0  # PTR_TO_MEM / BUF: size of the region; CONST_PTR_TO_DYNPTR: its dynptr type
        self.dynptr_id = 0  # PTR_TO_MEM slice of a dynptr: that dynptr's id (verifier/dynptr.py)
        self.frameno = 0  # PTR_TO_STACK: which frame
        self.subprogno = 0
        self.btf_name = ""
        # PTR_TO_BTF_ID (and MEM_ALLOC etc.): the BTF object (a parsed ``Btf``) and the
        # type id in it that the pointer points to — the kernel's ``reg->btf``/``btf_id``.
        self.btf: Any = None
        self.btf_id = 0
        self.precise = False
        self.live_read = False
        # the instruction (index + 1) whose 32-bit result this register holds, 0 when
        # the upper half is known zero-extended (``subreg_def``, see verifier/zext.py)
        self.subreg_def = 0

    def copy(self) -> Reg:
        r = Reg.__new__(Reg)
        r.type = self.type
        r.off = self.off
        r.var_off = self.var_off
        r.smin = self.smin
        r.smax = self.smax
        r.umin = self.umin
        r.umax = self.umax
        r.s32_min = self.s32_min
        r.s32_max = self.s32_max
        r.u32_min = self.u32_min
        r.u32_max = self.u32_max
        r.id = self.id
        r.ref_obj_id = self.ref_obj_id
        r.map_ptr = self.map_ptr
        r.range = self.range
        r.mem_size = self.mem_size
        r.dynptr_id = self.dynptr_id
        r.frameno = self.frameno
        r.subprogno = self.subprogno
        r.btf_name = self.btf_name
        r.btf = self.btf
        r.btf_id = self.btf_id
        r.precise = self.precise
        r.live_read = self.live_read
        r.subreg_def = self.subreg_def
        return r

    def assign(self, other: Reg) -> None:
        """Copy ``other``'s state into this register (a ``mov``, a fill): everything but
        ``subreg_def``, which stays the definition ``check_reg_arg`` just recorded."""
        for name in _ASSIGN_SLOTS:
            setattr(self, name, getattr(other, name))

    # -- classification -----------------------------------------------------------------
    @property
    def base(self) -> int:
        return self.type & BASE_MASK

    def is_scalar(self) -> bool:
        return self.type == RegType.SCALAR_VALUE

    def is_pointer(self) -> bool:
        return self.type not in (RegType.NOT_INIT, RegType.SCALAR_VALUE)

    def is_const(self) -> bool:
        return self.type == RegType.SCALAR_VALUE and self.var_off.mask == 0

    def is_pkt_pointer(self) -> bool:
        return self.base in (RegType.PTR_TO_PACKET, RegType.PTR_TO_PACKET_META)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        from pybpf.verifier.log import format_reg
        return f"Reg({format_reg(self, 0)})"


# -- bounds primitives ------------------------------------------------------------------

def mark_unbounded(r: Reg) -> None:
    r.smin, r.smax, r.umin, r.umax = S64_MIN, S64_MAX, 0, U64
    r.s32_min, r.s32_max, r.u32_min, r.u32_max = S32_MIN, S32_MAX, 0, U32


def mark_reg64_unbounded(r: Reg) -> None:
    r.smin, r.smax, r.umin, r.umax = S64_MIN, S64_MAX, 0, U64


def mark_reg32_unbounded(r: Reg) -> None:
    r.s32_min, r.s32_max, r.u32_min, r.u32_max = S32_MIN, S32_MAX, 0, U32


def mark_known(r: Reg, v: int) -> None:
    """``__mark_reg_known``: a constant (also clears pointer-only fields)."""
    v &= U64
    r.var_off = Tnum(v, 0)
    r.smin = r.smax = s64(v)
    r.umin = r.umax = v
    r.s32_min = r.s32_max = s32(v)
    r.u32_min = r.u32_max = v & U32
    r.off = 0
    r.id = 0
    r.ref_obj_id = 0
    r.range = 0
    r.map_ptr = None
    r.mem_size = 0
    r.dynptr_id = 0
    r.frameno = 0
    r.btf = None  # the kernel zeroes the pointer union (btf, btf_id) too
    r.btf_id = 0


def mark_reg32_known(r: Reg, v: int) -> None:
    r.var_off = tn.const_subreg(r.var_off, v)
    r.s32_min = r.s32_max = s32(v)
    r.u32_min = r.u32_max = v & U32


def mark_scalar_known(r: Reg, v: int) -> None:
    r.type = RegType.SCALAR_VALUE
    mark_known(r, v)
    r.precise = False


_ASSIGN_SLOTS = tuple(n for n in Reg.__slots__ if n != "subreg_def")


#: ``!env->bpf_capable`` for the check under way: an unprivileged load makes every unknown
#: scalar precise from the start (``__mark_reg_unknown``), which its log shows (``P``).
#: The verifier sets it around a check (verifier/api.py).
UNKNOWN_PRECISE: ContextVar[bool] = ContextVar("pybpf_unknown_precise", default=False)


def mark_unknown(r: Reg, precise: bool | None = None) -> None:
    """``__mark_reg_unknown``: a scalar about which nothing is known (``precise``: None
    for the kernel's default, see :data:`UNKNOWN_PRECISE`)."""
    r.type = RegType.SCALAR_VALUE
    r.var_off = tn.UNKNOWN
    mark_unbounded(r)
    r.off = 0
    r.id = 0
    r.ref_obj_id = 0
    r.range = 0
    r.map_ptr = None
    r.mem_size = 0
    r.frameno = 0
    r.subprogno = 0
    r.btf_name = ""
    r.btf = None
    r.btf_id = 0
    r.precise = UNKNOWN_PRECISE.get() if precise is None else precise


def set_reg_btf(r: Reg, btf: Any, tid: int) -> None:
    """Point a ``PTR_TO_BTF_ID`` register at type ``tid`` of ``btf`` (and name it)."""
    r.btf = btf
    r.btf_id = tid
    try:
        r.btf_name = btf.types[tid].name if tid > 0 else ""
    except (IndexError, AttributeError):
        r.btf_name = ""


def mark_not_init(r: Reg) -> None:
    mark_unknown(r)
    r.type = RegType.NOT_INIT
    r.subreg_def = 0


def update_reg32_bounds(r: Reg) -> None:
    v = tn.subreg(r.var_off)
    r.s32_min = max(r.s32_min, s32(v.value | (v.mask & 0x80000000)))
    r.s32_max = min(r.s32_max, s32(v.value | (v.mask & 0x7FFFFFFF)))
    r.u32_min = max(r.u32_min, v.value & U32)
    r.u32_max = min(r.u32_max, (v.value | v.mask) & U32)


def update_reg64_bounds(r: Reg) -> None:
    v = r.var_off
    r.smin = max(r.smin, s64(v.value | (v.mask & (1 << 63))))
    r.smax = min(r.smax, s64(v.value | (v.mask & S64_MAX)))
    r.umin = max(r.umin, v.value)
    r.umax = min(r.umax, v.value | v.mask)


def update_reg_bounds(r: Reg) -> None:
    update_reg32_bounds(r)
    update_reg64_bounds(r)


def _reg32_deduce_bounds(r: Reg) -> None:
    if (r.umin >> 32) == (r.umax >> 32):
        r.u32_min = max(r.u32_min, r.umin & U32)
        r.u32_max = min(r.u32_max, r.umax & U32)
        if s32(r.umin) <= s32(r.umax):
            r.s32_min = max(r.s32_min, s32(r.umin))
            r.s32_max = min(r.s32_max, s32(r.umax))
    if (r.smin >> 32) == (r.smax >> 32):
        if (r.smin & U32) <= (r.smax & U32):
            r.u32_min = max(r.u32_min, r.smin & U32)
            r.u32_max = min(r.u32_max, r.smax & U32)
        if s32(r.smin) <= s32(r.smax):
            r.s32_min = max(r.s32_min, s32(r.smin))
            r.s32_max = min(r.s32_max, s32(r.smax))
    if ((r.umin >> 32) + 1) & U32 == (r.umax >> 32) & U32 and s32(r.umin) < 0 <= s32(r.umax):
        r.s32_min = max(r.s32_min, s32(r.umin))
        r.s32_max = min(r.s32_max, s32(r.umax))
    if (((r.smin >> 32) + 1) & U32) == ((r.smax >> 32) & U32) and s32(r.smin) < 0 <= s32(r.smax):
        r.s32_min = max(r.s32_min, s32(r.smin))
        r.s32_max = min(r.s32_max, s32(r.smax))
    if s32(r.u32_min) <= s32(r.u32_max):
        r.s32_min = max(r.s32_min, s32(r.u32_min))
        r.s32_max = min(r.s32_max, s32(r.u32_max))
    if (r.s32_min & U32) <= (r.s32_max & U32):
        r.u32_min = max(r.s32_min & U32, r.u32_min)
        r.u32_max = min(r.s32_max & U32, r.u32_max)
    else:
        if r.u32_max < (r.s32_min & U32):
            r.s32_min = s32(r.u32_min)
            r.u32_max = min(r.u32_max, r.s32_max & U32)
        elif (r.s32_max & U32) < r.u32_min:
            r.s32_max = s32(r.u32_max)
            r.u32_min = max(r.u32_min, r.s32_min & U32)


def _reg64_deduce_bounds(r: Reg) -> None:
    if s64(r.umin) <= s64(r.umax):
        r.smin = max(r.smin, s64(r.umin))
        r.smax = min(r.smax, s64(r.umax))
    if (r.smin & U64) <= (r.smax & U64):
        r.umin = max(r.smin & U64, r.umin)
        r.umax = min(r.smax & U64, r.umax)
    else:
        if r.umax < (r.smin & U64):
            r.smin = s64(r.umin)
            r.umax = min(r.umax, r.smax & U64)
        elif (r.smax & U64) < r.umin:
            r.smax = s64(r.umax)
            r.umin = max(r.umin, r.smin & U64)


def _reg_deduce_mixed_bounds(r: Reg) -> None:
    hi = U64 ^ U32
    r.umin = max(r.umin, (r.umin & hi) | r.u32_min)
    r.umax = min(r.umax, (r.umax & hi) | r.u32_max)
    r.smin = max(r.smin, s64((r.smin & hi) | r.u32_min))
    r.smax = min(r.smax, s64((r.smax & hi) | r.u32_max))
    if (r.s32_min & U32) <= (r.s32_max & U32):
        r.umin = max(r.umin, (r.umin & hi) | (r.s32_min & U32))
        r.umax = min(r.umax, (r.umax & hi) | (r.s32_max & U32))
        r.smin = max(r.smin, s64((r.smin & hi) | (r.s32_min & U32)))
        r.smax = min(r.smax, s64((r.smax & hi) | (r.s32_max & U32)))
    if r.s32_min >= 0 and r.smin >= S32_MIN and r.smax <= S32_MAX:
        r.smin = r.s32_min
        r.smax = r.s32_max
        r.umin = r.s32_min
        r.umax = r.s32_max
        r.var_off = tn.intersect(r.var_off, tn.tnum_range(r.smin & U64, r.smax & U64))


def reg_deduce_bounds(r: Reg) -> None:
    _reg32_deduce_bounds(r)
    _reg64_deduce_bounds(r)
    _reg_deduce_mixed_bounds(r)


def reg_bound_offset(r: Reg) -> None:
    v64 = tn.intersect(r.var_off, tn.tnum_range(r.umin, r.umax))
    v32 = tn.intersect(tn.subreg(v64), tn.tnum_range(r.u32_min, r.u32_max))
    r.var_off = tn.or_(tn.clear_subreg(v64), v32)


def reg_bounds_sync_reference(r: Reg) -> None:
    """``reg_bounds_sync`` spelt as the kernel composes it (the readable specification).

    :func:`reg_bounds_sync` computes exactly the same thing in one function over locals;
    tests/verifier/test_speed_invariants.py checks the two agree.
    """
    update_reg_bounds(r)
    reg_deduce_bounds(r)
    reg_deduce_bounds(r)
    reg_deduce_bounds(r)
    reg_bound_offset(r)
    update_reg_bounds(r)


def reg_bounds_sync(r: Reg) -> None:
    """``reg_bounds_sync``: make var_off and the four ranges agree.

    This runs after nearly every scalar operation, so it is
    :func:`reg_bounds_sync_reference` fused into one function over local variables
    (no attribute traffic, no ``min``/``max``/``s32``/``s64`` calls): signed views are
    ``((x & mask) ^ sign) - sign``; ``max(a, b)`` is ``a if a >= b else b``. Each block
    below is labelled with the function it replaces; the statements are in the same order.
    """
    vo = r.var_off
    vv = vo.value
    vm = vo.mask
    if (vm == 0 and r.umin == vv and r.umax == vv
            and r.smin == r.smax == ((vv & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) - 0x8000000000000000
            and r.u32_min == r.u32_max == vv & 0xFFFFFFFF
            and r.s32_min == r.s32_max == ((vv & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000):
        # A constant whose eight bounds already are its views: every step is a no-op.
        return
    smin = r.smin
    smax = r.smax
    umin = r.umin
    umax = r.umax
    s3n = r.s32_min
    s3x = r.s32_max
    u3n = r.u32_min
    u3x = r.u32_max
    # update_reg32_bounds
    sv = vv & 0xFFFFFFFF
    sm = vm & 0xFFFFFFFF
    t = (((sv | (sm & 0x80000000)) & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
    if t > s3n:
        s3n = t
    t = (((sv | (sm & 0x7FFFFFFF)) & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
    if t < s3x:
        s3x = t
    if sv > u3n:
        u3n = sv
    t = (sv | sm) & 0xFFFFFFFF
    if t < u3x:
        u3x = t
    # update_reg64_bounds
    t = (((vv | (vm & 0x8000000000000000)) & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) \
        - 0x8000000000000000
    if t > smin:
        smin = t
    t = (((vv | (vm & 0x7FFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) \
        - 0x8000000000000000
    if t < smax:
        smax = t
    if vv > umin:
        umin = vv
    t = vv | vm
    if t < umax:
        umax = t
    for _ in range(3):
        # _reg32_deduce_bounds
        if (umin >> 32) == (umax >> 32):
            t = umin & 0xFFFFFFFF
            if t > u3n:
                u3n = t
            t = umax & 0xFFFFFFFF
            if t < u3x:
                u3x = t
            a = ((umin & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
            b = ((umax & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
            if a <= b:
                if a > s3n:
                    s3n = a
                if b < s3x:
                    s3x = b
        if (smin >> 32) == (smax >> 32):
            a = smin & 0xFFFFFFFF
            b = smax & 0xFFFFFFFF
            if a <= b:
                if a > u3n:
                    u3n = a
                if b < u3x:
                    u3x = b
            a = ((smin & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
            b = ((smax & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
            if a <= b:
                if a > s3n:
                    s3n = a
                if b < s3x:
                    s3x = b
        if ((umin >> 32) + 1) & 0xFFFFFFFF == (umax >> 32) & 0xFFFFFFFF:
            a = ((umin & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
            b = ((umax & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
            if a < 0 <= b:
                if a > s3n:
                    s3n = a
                if b < s3x:
                    s3x = b
        if ((smin >> 32) + 1) & 0xFFFFFFFF == (smax >> 32) & 0xFFFFFFFF:
            a = ((smin & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
            b = ((smax & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
            if a < 0 <= b:
                if a > s3n:
                    s3n = a
                if b < s3x:
                    s3x = b
        a = ((u3n & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
        b = ((u3x & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
        if a <= b:
            if a > s3n:
                s3n = a
            if b < s3x:
                s3x = b
        a = s3n & 0xFFFFFFFF
        b = s3x & 0xFFFFFFFF
        if a <= b:
            if a > u3n:
                u3n = a
            if b < u3x:
                u3x = b
        elif u3x < a:
            s3n = ((u3n & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
            if b < u3x:
                u3x = b
        elif b < u3n:
            s3x = ((u3x & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
            if a > u3n:
                u3n = a
        # _reg64_deduce_bounds
        a = ((umin & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) - 0x8000000000000000
        b = ((umax & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) - 0x8000000000000000
        if a <= b:
            if a > smin:
                smin = a
            if b < smax:
                smax = b
        a = smin & 0xFFFFFFFFFFFFFFFF
        b = smax & 0xFFFFFFFFFFFFFFFF
        if a <= b:
            if a > umin:
                umin = a
            if b < umax:
                umax = b
        elif umax < a:
            smin = ((umin & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) - 0x8000000000000000
            if b < umax:
                umax = b
        elif b < umin:
            smax = ((umax & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) - 0x8000000000000000
            if a > umin:
                umin = a
        # _reg_deduce_mixed_bounds
        t = (umin & 0xFFFFFFFF00000000) | u3n
        if t > umin:
            umin = t
        t = (umax & 0xFFFFFFFF00000000) | u3x
        if t < umax:
            umax = t
        t = ((((smin & 0xFFFFFFFF00000000) | u3n) & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) \
            - 0x8000000000000000
        if t > smin:
            smin = t
        t = ((((smax & 0xFFFFFFFF00000000) | u3x) & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) \
            - 0x8000000000000000
        if t < smax:
            smax = t
        a = s3n & 0xFFFFFFFF
        b = s3x & 0xFFFFFFFF
        if a <= b:
            t = (umin & 0xFFFFFFFF00000000) | a
            if t > umin:
                umin = t
            t = (umax & 0xFFFFFFFF00000000) | b
            if t < umax:
                umax = t
            t = ((((smin & 0xFFFFFFFF00000000) | a) & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) \
                - 0x8000000000000000
            if t > smin:
                smin = t
            t = ((((smax & 0xFFFFFFFF00000000) | b) & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) \
                - 0x8000000000000000
            if t < smax:
                smax = t
        if s3n >= 0 and smin >= -0x80000000 and smax <= 0x7FFFFFFF:
            smin = umin = s3n
            smax = umax = s3x
            # var_off = intersect(var_off, tnum_range(smin & U64, smax & U64))
            a = smin & 0xFFFFFFFFFFFFFFFF
            bits = (a ^ (smax & 0xFFFFFFFFFFFFFFFF)).bit_length()
            if bits > 63:
                rv, rm = 0, 0xFFFFFFFFFFFFFFFF
            else:
                rm = (1 << bits) - 1
                rv = a & ~rm & 0xFFFFFFFFFFFFFFFF
            t = vv | rv
            vm = vm & rm
            vv = t & ~vm & 0xFFFFFFFFFFFFFFFF
    # reg_bound_offset: v64 = var_off ∩ range(umin, umax)
    bits = (umin ^ umax).bit_length()
    if bits > 63:
        rv, rm = 0, 0xFFFFFFFFFFFFFFFF
    else:
        rm = (1 << bits) - 1
        rv = umin & ~rm & 0xFFFFFFFFFFFFFFFF
    t = vv | rv
    vm = vm & rm
    vv = t & ~vm & 0xFFFFFFFFFFFFFFFF
    # v32 = subreg(v64) ∩ range(u32_min, u32_max)
    bits = (u3n ^ u3x).bit_length()
    if bits > 63:
        rv, rm = 0, 0xFFFFFFFFFFFFFFFF
    else:
        rm = (1 << bits) - 1
        rv = u3n & ~rm & 0xFFFFFFFFFFFFFFFF
    m32 = (vm & 0xFFFFFFFF) & rm
    v32 = ((vv & 0xFFFFFFFF) | rv) & ~m32 & 0xFFFFFFFFFFFFFFFF
    # var_off = clear_subreg(v64) | v32
    t = (((vv >> 32) << 32) & 0xFFFFFFFFFFFFFFFF) | v32
    vm = ((((vm >> 32) << 32) & 0xFFFFFFFFFFFFFFFF) | m32) & ~t & 0xFFFFFFFFFFFFFFFF
    vv = t
    # update_reg32_bounds
    sv = vv & 0xFFFFFFFF
    sm = vm & 0xFFFFFFFF
    t = (((sv | (sm & 0x80000000)) & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
    if t > s3n:
        s3n = t
    t = (((sv | (sm & 0x7FFFFFFF)) & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
    if t < s3x:
        s3x = t
    if sv > u3n:
        u3n = sv
    t = (sv | sm) & 0xFFFFFFFF
    if t < u3x:
        u3x = t
    # update_reg64_bounds
    t = (((vv | (vm & 0x8000000000000000)) & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) \
        - 0x8000000000000000
    if t > smin:
        smin = t
    t = (((vv | (vm & 0x7FFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF) ^ 0x8000000000000000) \
        - 0x8000000000000000
    if t < smax:
        smax = t
    if vv > umin:
        umin = vv
    t = vv | vm
    if t < umax:
        umax = t
    r.var_off = Tnum(vv, vm)
    r.smin = smin
    r.smax = smax
    r.umin = umin
    r.umax = umax
    r.s32_min = s3n
    r.s32_max = s3x
    r.u32_min = u3n
    r.u32_max = u3x


def bounds_sane(r: Reg) -> bool:
    return (r.umin <= r.umax and r.smin <= r.smax and r.u32_min <= r.u32_max
            and r.s32_min <= r.s32_max)


def zext_32_to_64(r: Reg) -> None:
    """After a 32-bit op the upper half is zero: 64-bit bounds follow the u32 ones."""
    r.var_off = tn.subreg(r.var_off)
    r.umin = r.u32_min
    r.umax = r.u32_max
    r.smin = r.u32_min
    r.smax = r.u32_max


def coerce_reg_to_size(r: Reg, size: int) -> None:
    """Truncate to ``size`` bytes, zero-extended (narrow loads, 32-bit results)."""
    r.var_off = tn.cast(r.var_off, size)
    mask = (1 << (size * 8)) - 1
    if (r.umin & ~mask) == (r.umax & ~mask):
        r.umin &= mask
        r.umax &= mask
    else:
        r.umin = 0
        r.umax = mask
    r.smin = r.umin
    r.smax = r.umax
    if size < 4:
        mark_reg32_unbounded(r)
    reg_bounds_sync(r)


def _sext(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def coerce_reg_to_size_sx(r: Reg, size: int) -> None:
    """Sign-extending truncation (``movsx`` / ``ldsx``)."""
    bits = size * 8
    if r.var_off.mask == 0:
        mark_known(r, _sext(r.var_off.value, bits) & U64)
        return
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if (r.smin >> bits) == (r.smax >> bits) or ((r.umin >> bits) == (r.umax >> bits) and r.umax <= U64):
        a, b = _sext(r.smin, bits), _sext(r.smax, bits)
        same_hi = (r.smin >> bits) == (r.smax >> bits) or (r.umin >> bits) == (r.umax >> bits)
        if same_hi and a <= b:
            lo, hi = a, b
    var = r.var_off
    mark_unbounded(r)
    r.smin, r.smax = lo, hi
    r.umin, r.umax = (lo & U64, hi & U64) if lo >= 0 else (0, U64)
    r.var_off = tn.UNKNOWN if lo < 0 else tn.tnum_range(lo, hi)
    if lo >= 0:
        r.var_off = tn.intersect(r.var_off, tn.cast(var, size))
    r.s32_min, r.s32_max = max(lo, S32_MIN), min(hi, S32_MAX)
    if lo >= 0:
        r.u32_min, r.u32_max = lo, min(hi, U32)
    reg_bounds_sync(r)


def coerce_subreg_to_size_sx(r: Reg, size: int) -> None:
    bits = size * 8
    if tn.is_subreg_const(r.var_off):
        v = _sext(r.var_off.value, bits) & U32
        mark_known(r, v)
        return
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    a, b = _sext(r.s32_min, bits), _sext(r.s32_max, bits)
    if (r.s32_min >> bits) == (r.s32_max >> bits) and a <= b:
        lo, hi = a, b
    mark_unbounded(r)
    r.var_off = tn.UNKNOWN
    r.s32_min, r.s32_max = lo, hi
    if lo >= 0:
        r.u32_min, r.u32_max = lo, hi
    zext_32_to_64(r)
    reg_bounds_sync(r)
