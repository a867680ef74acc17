"""CO-RE: resolve a program's ``bpf_core_relo`` records against a target BTF.

This is libbpf's relo_core.c, re-expressed. A relocation names a *local* type (in the
object's own BTF) and an access string ``"0:1:2"`` (pointer deref, member #1, member #2 …).
Resolution:

1. parse the access string into a *spec* over the local type (bit offset, named
   accessors), checking every step is valid;
2. collect *candidates* in the target BTF: same essential name (the part before a
   ``___flavor`` suffix) and a compatible kind;
3. match the local spec against each candidate (members found by name, recursively
   through anonymous members; arrays by index), computing the target's bit offset;
4. compute the relocated value for the relocation kind, check that all matching
   candidates agree, and patch the instruction (ALU imm, LDX/ST/STX offset and size, or
   ld_imm64 value). An unresolvable relocation *poisons* the instruction with
   ``call 0xbad2310`` so the verifier rejects it only if it is reachable.

Errors carry libbpf's messages (``prog 'x': relo #3: …``).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from pybpf.btf.ext import CORE_RELO_KIND_STR, CoreRelo, CoreReloKind
from pybpf.btf.raw import (
    Btf,
    BtfArray,
    BtfComposite,
    BtfEnum,
    BtfEnum64,
    BtfFormatError,
    BtfFuncProto,
    BtfFwd,
    BtfInt,
    BtfKind,
    BtfPtr,
    BtfStruct,
    BtfType,
    BtfUnion,
    BtfVoid,
    IntEncoding,
)
from pybpf.isa.insn import Insn

BPF_CORE_SPEC_MAX_LEN = 64
#: ``call 0xbad2310``: libbpf's marker for a relocation that could not be resolved.
POISON_IMM = 195896080

K = CoreReloKind
_FIELD_KINDS = {K.FIELD_BYTE_OFFSET, K.FIELD_BYTE_SIZE, K.FIELD_EXISTS, K.FIELD_SIGNED,
                K.FIELD_LSHIFT_U64, K.FIELD_RSHIFT_U64}
_TYPE_KINDS = {K.TYPE_ID_LOCAL, K.TYPE_ID_TARGET, K.TYPE_EXISTS, K.TYPE_MATCHES, K.TYPE_SIZE}
_ENUMVAL_KINDS = {K.ENUMVAL_EXISTS, K.ENUMVAL_VALUE}


class CoreReloError(Exception):
    """A relocation libbpf fails on (not a poisoning): ``errno`` and libbpf's message."""

    def __init__(self, err: int, message: str) -> None:
        self.errno = err
        super().__init__(message)


def kind_str(kind: int) -> str:
    return CORE_RELO_KIND_STR.get(kind, "unknown")  # type: ignore[call-overload]


def essential_name(name: str) -> str:
    """``name`` without a ``___flavor`` suffix (``bpf_core_essential_name_len``)."""
    n = len(name)
    for i in range(n - 5, -1, -1):
        s = name[i:i + 5]
        if s[0] != "_" and s[1:4] == "___" and s[4] != "_":
            return name[:i + 1]
    return name


def _is_enum(t: BtfType) -> bool:
    return isinstance(t, BtfEnum)


def kind_core_compat(a: BtfType, b: BtfType) -> bool:
    """Same kind, or ENUM vs ENUM64 (``btf_kind_core_compat``)."""
    return a.kind == b.kind or (_is_enum(a) and _is_enum(b))


def _skip(btf: Btf, tid: int) -> tuple[BtfType, int]:
    nid = btf.skip_mods_and_typedefs(tid)
    return btf.types[nid], nid


def _size(btf: Btf, tid: int) -> int:
    try:
        return btf.resolve_size(tid)
    except (BtfFormatError, KeyError):
        return -errno.EINVAL


# ---------------------------------------------------------------- spec


@dataclass(slots=True)
class Accessor:
    type_id: int
    idx: int
    name: str | None = None


@dataclass(slots=True)
class Spec:
    """A parsed access: high-level accessors, raw indices, and the field's bit offset."""

    btf: Btf
    root_type_id: int
    relo_kind: int
    spec: list[Accessor] = field(default_factory=list)
    raw_spec: list[int] = field(default_factory=list)
    bit_offset: int = 0

    def format(self) -> str:
        """``bpf_core_format_spec``: ``[id] struct foo.a[3] (0:1:3 @ offset 12)``."""
        t = self.btf.types[self.root_type_id]
        kind = _KIND_STR.get(t.kind, "?")
        out = f"[{self.root_type_id}] {kind} {t.name or '<anon>'}"
        if self.relo_kind in _TYPE_KINDS:
            return out
        if self.relo_kind in _ENUMVAL_KINDS:
            if not self.spec:
                return out
            e = self.btf.types[self.spec[0].type_id]
            assert isinstance(e, BtfEnum)
            v = e.values[self.spec[0].idx]
            return out + f"::{v.name} = {v.value}"
        parts = []
        for i, acc in enumerate(self.spec):
            if acc.name:
                parts.append(f".{acc.name}")
            elif i > 0:
                parts.append(f"[{acc.idx}]")
        raw = ":".join(str(x) for x in self.raw_spec)
        off = self.bit_offset // 8
        bit = f".{self.bit_offset % 8}" if self.bit_offset % 8 else ""
        return out + "".join(parts) + f" ({raw} @ offset {off}{bit})"


_KIND_STR = {BtfKind.UNKN: "UNKNOWN", BtfKind.INT: "int", BtfKind.PTR: "ptr",
             BtfKind.ARRAY: "array", BtfKind.STRUCT: "struct", BtfKind.UNION: "union",
             BtfKind.ENUM: "enum", BtfKind.FWD: "fwd", BtfKind.TYPEDEF: "typedef",
             BtfKind.VOLATILE: "volatile", BtfKind.CONST: "const",
             BtfKind.RESTRICT: "restrict", BtfKind.FUNC: "func",
             BtfKind.FUNC_PROTO: "func_proto", BtfKind.VAR: "var", BtfKind.DATASEC: "datasec",
             BtfKind.FLOAT: "float", BtfKind.DECL_TAG: "decl_tag",
             BtfKind.TYPE_TAG: "type_tag", BtfKind.ENUM64: "enum64"}


def btf_kind_str(t: BtfType) -> str:
    return _KIND_STR.get(t.kind, "unknown")


def _is_flex_arr(btf: Btf, acc: Accessor | None, arr: BtfArray) -> bool:
    if acc is None or not acc.name or arr.nelems > 0:
        return False
    t = btf.types[acc.type_id]
    return isinstance(t, BtfComposite) and acc.idx == len(t.members) - 1


def parse_spec(prog: str, btf: Btf, relo: CoreRelo) -> Spec:
    """``bpf_core_parse_spec``; raises ``CoreReloError`` with a negative-errno code."""
    try:
        spec_str = btf.string(relo.access_str_off)
    except BtfFormatError:
        raise CoreReloError(errno.EINVAL, "bad access string offset") from None
    if not spec_str or spec_str.startswith(":"):
        raise CoreReloError(errno.EINVAL, "empty access string")
    spec = Spec(btf, relo.type_id, relo.kind)
    if relo.kind in _TYPE_KINDS:
        if spec_str != "0":
            raise CoreReloError(errno.EINVAL, "type relocation with non-zero access string")
        return spec
    for part in spec_str.split(":"):
        if part == "":
            continue
        if not part.isdigit():
            raise CoreReloError(errno.EINVAL, f"bad access string {spec_str!r}")
        if len(spec.raw_spec) == BPF_CORE_SPEC_MAX_LEN:
            raise CoreReloError(errno.E2BIG, "access string too long")
        spec.raw_spec.append(int(part))
    if not spec.raw_spec:
        raise CoreReloError(errno.EINVAL, "empty access string")
    t, tid = _skip(btf, relo.type_id)
    idx = spec.raw_spec[0]
    acc = Accessor(tid, idx)
    spec.spec.append(acc)
    if relo.kind in _ENUMVAL_KINDS:
        if not isinstance(t, BtfEnum) or len(spec.raw_spec) > 1 or idx >= len(t.values):
            raise CoreReloError(errno.EINVAL, "bad enum value access")
        acc.name = t.values[idx].name
        return spec
    if relo.kind not in _FIELD_KINDS:
        raise CoreReloError(errno.EINVAL, "unknown relocation kind")
    sz = _size(btf, tid)
    if sz < 0:
        raise CoreReloError(-sz, "unsized root type")
    spec.bit_offset = idx * sz * 8
    for i in range(1, len(spec.raw_spec)):
        t, tid = _skip(btf, tid)
        idx = spec.raw_spec[i]
        if isinstance(t, BtfComposite):
            if idx >= len(t.members):
                raise CoreReloError(errno.EINVAL, "member index out of range")
            m = t.members[idx]
            spec.bit_offset += m.bit_offset
            if m.name_off:
                if not m.name:
                    raise CoreReloError(errno.EINVAL, "bad member name")
                spec.spec.append(Accessor(tid, idx, m.name))
            tid = m.type
        elif isinstance(t, BtfArray):
            _, tid = _skip(btf, t.type)
            flex = _is_flex_arr(btf, spec.spec[-1] if spec.spec else None, t)
            if not flex and idx >= t.nelems:
                raise CoreReloError(errno.EINVAL, "array index out of range")
            spec.spec.append(Accessor(tid, idx))
            sz = _size(btf, tid)
            if sz < 0:
                raise CoreReloError(-sz, "unsized array element")
            spec.bit_offset += idx * sz * 8
        else:
            raise CoreReloError(
                errno.EINVAL,
                f"prog '{prog}': relo for [{relo.type_id}] {spec_str} (at idx {i}) captures "
                f"type [{tid}] of unexpected kind {btf_kind_str(t)}")
    return spec


# ---------------------------------------------------------------- compatibility


def types_are_compat(lb: Btf, lid: int, tb: Btf, tid: int, level: int = 32) -> int:
    """``__bpf_core_types_are_compat``: 1, 0, or negative errno."""
    lt, tt = lb.types[lid], tb.types[tid]
    if not kind_core_compat(lt, tt):
        return 0
    depth = 32
    while True:
        depth -= 1
        if depth < 0:
            return -errno.EINVAL
        lt, lid = _skip(lb, lid)
        tt, tid = _skip(tb, tid)
        if not kind_core_compat(lt, tt):
            return 0
        if isinstance(lt, BtfVoid | BtfComposite | BtfEnum | BtfFwd):
            return 1
        if isinstance(lt, BtfInt):
            assert isinstance(tt, BtfInt)
            return int(lt.bit_offset == 0 and tt.bit_offset == 0)
        if isinstance(lt, BtfPtr):
            assert isinstance(tt, BtfPtr)
            lid, tid = lt.type, tt.type
        elif isinstance(lt, BtfArray):
            assert isinstance(tt, BtfArray)
            lid, tid = lt.type, tt.type
        elif isinstance(lt, BtfFuncProto):
            assert isinstance(tt, BtfFuncProto)
            if len(lt.params) != len(tt.params):
                return 0
            for lp, tp in zip(lt.params, tt.params):
                if level <= 0:
                    return -errno.EINVAL
                r = types_are_compat(lb, lb.skip_mods_and_typedefs(lp.type), tb,
                                     tb.skip_mods_and_typedefs(tp.type), level - 1)
                if r <= 0:
                    return r
            lid = lb.skip_mods_and_typedefs(lt.type)
            tid = tb.skip_mods_and_typedefs(tt.type)
        else:
            return 0


def _names_match(ln: str, tn: str) -> bool:
    if not tn:
        return not ln
    return essential_name(ln) == essential_name(tn)


def types_match(lb: Btf, lid: int, tb: Btf, tid: int, behind_ptr: bool = False,
                level: int = 32) -> int:
    """``__bpf_core_types_match`` (the stricter TYPE_MATCHES rule)."""
    if level <= 0:
        return -errno.EINVAL
    depth = 32
    while True:
        depth -= 1
        if depth < 0:
            return -errno.EINVAL
        lt, lid = _skip(lb, lid)
        tt, tid = _skip(tb, tid)
        if not _names_match(lt.name, tt.name):
            return 0
        if isinstance(lt, BtfVoid):
            return int(isinstance(tt, BtfVoid))
        if isinstance(lt, BtfFwd):
            if behind_ptr:
                if isinstance(tt, BtfFwd):
                    return int(lt.kind_flag == tt.kind_flag)
                return int((isinstance(tt, BtfStruct) and not lt.kind_flag)
                           or (isinstance(tt, BtfUnion) and lt.kind_flag))
            return int(isinstance(tt, BtfFwd) and lt.kind_flag == tt.kind_flag)
        if isinstance(lt, BtfEnum):
            if not isinstance(tt, BtfEnum) or lt.size != tt.size:
                return 0
            if len(lt.values) > len(tt.values):
                return 0
            return int(all(any(_names_match(lv.name, tv.name) for tv in tt.values)
                           for lv in lt.values))
        if isinstance(lt, BtfComposite):
            if behind_ptr:
                if lt.kind == tt.kind:
                    return 1
                if not isinstance(tt, BtfFwd):
                    return 0
                return int(isinstance(lt, BtfUnion) == tt.kind_flag)
            if lt.kind != tt.kind:
                return 0
            assert isinstance(tt, BtfComposite)
            if len(lt.members) > len(tt.members):
                return 0
            for lm in lt.members:
                found = False
                for tm in tt.members:
                    if not _names_match(lm.name, tm.name):
                        continue
                    r = types_match(lb, lm.type, tb, tm.type, behind_ptr, level - 1)
                    if r < 0:
                        return r
                    if r > 0:
                        found = True
                        break
                if not found:
                    return 0
            return 1
        if isinstance(lt, BtfInt):
            if not isinstance(tt, BtfInt):
                return 0
            return int(lt.size == tt.size and lt.signed == tt.signed)
        if isinstance(lt, BtfPtr):
            if not isinstance(tt, BtfPtr):
                return 0
            behind_ptr = True
            lid, tid = lt.type, tt.type
        elif isinstance(lt, BtfArray):
            if not isinstance(tt, BtfArray) or lt.nelems != tt.nelems:
                return 0
            lid, tid = lt.type, tt.type
        elif isinstance(lt, BtfFuncProto):
            if not isinstance(tt, BtfFuncProto) or len(lt.params) != len(tt.params):
                return 0
            for lp, tp in zip(lt.params, tt.params):
                r = types_match(lb, lp.type, tb, tp.type, behind_ptr, level - 1)
                if r <= 0:
                    return r
            lid, tid = lt.type, tt.type
        else:
            return 0


def _fields_are_compat(lb: Btf, lid: int, tb: Btf, tid: int) -> int:
    while True:
        lt, lid = _skip(lb, lid)
        tt, tid = _skip(tb, tid)
        if isinstance(lt, BtfComposite) and isinstance(tt, BtfComposite):
            return 1
        if not kind_core_compat(lt, tt):
            return 0
        if isinstance(lt, BtfPtr) or lt.kind == BtfKind.FLOAT:
            return 1
        if isinstance(lt, BtfFwd | BtfEnum):
            ln, tn = essential_name(lt.name), essential_name(tt.name)
            return int(not ln or not tn or ln == tn)
        if isinstance(lt, BtfInt):
            assert isinstance(tt, BtfInt)
            return int(lt.bit_offset == 0 and tt.bit_offset == 0)
        if isinstance(lt, BtfArray):
            assert isinstance(tt, BtfArray)
            lid, tid = lt.type, tt.type
            continue
        return 0


def _match_member(lb: Btf, lacc: Accessor, tb: Btf, tid: int, spec: Spec) -> tuple[int, int]:
    """``bpf_core_match_member``: (result, next target type id)."""
    tt, tid = _skip(tb, tid)
    if not isinstance(tt, BtfComposite):
        return 0, tid
    lt = lb.types[lacc.type_id]
    assert isinstance(lt, BtfComposite)
    lm = lt.members[lacc.idx]
    for i, m in enumerate(tt.members):
        if len(spec.raw_spec) == BPF_CORE_SPEC_MAX_LEN:
            return -errno.E2BIG, tid
        spec.bit_offset += m.bit_offset
        spec.raw_spec.append(i)
        if not m.name:
            found, nxt = _match_member(lb, lacc, tb, m.type, spec)
            if found:
                return found, nxt
        elif m.name == lm.name:
            spec.spec.append(Accessor(tid, i, m.name))
            found = _fields_are_compat(lb, lm.type, tb, m.type)
            if not found:
                spec.spec.pop()
            return found, m.type
        spec.bit_offset -= m.bit_offset
        spec.raw_spec.pop()
    return 0, tid


def spec_match(local: Spec, tb: Btf, tid: int) -> tuple[int, Spec]:
    """``bpf_core_spec_match``: (1 match / 0 no / negative errno, target spec)."""
    targ = Spec(tb, tid, local.relo_kind)
    kind = local.relo_kind
    if kind in _TYPE_KINDS:
        if kind == K.TYPE_MATCHES:
            return types_match(local.btf, local.root_type_id, tb, tid), targ
        return types_are_compat(local.btf, local.root_type_id, tb, tid), targ
    lacc0 = local.spec[0]
    if kind in _ENUMVAL_KINDS:
        tt, tid = _skip(tb, tid)
        if not isinstance(tt, BtfEnum):
            return 0, targ
        want = essential_name(lacc0.name or "")
        for i, v in enumerate(tt.values):
            if essential_name(v.name) == want:
                targ.spec.append(Accessor(tid, i, v.name))
                targ.raw_spec.append(i)
                return 1, targ
        return 0, targ
    for i, lacc in enumerate(local.spec):
        tt, tid = _skip(tb, tid)
        if lacc.name:
            found, tid = _match_member(local.btf, lacc, tb, tid, targ)
            if found <= 0:
                return found, targ
        else:
            if i > 0:
                if not isinstance(tt, BtfArray):
                    return 0, targ
                flex = _is_flex_arr(tb, targ.spec[-1] if targ.spec else None, tt)
                if not flex and lacc.idx >= tt.nelems:
                    return 0, targ
                _, tid = _skip(tb, tt.type)
            if len(targ.raw_spec) == BPF_CORE_SPEC_MAX_LEN:
                return -errno.E2BIG, targ
            targ.spec.append(Accessor(tid, lacc.idx))
            targ.raw_spec.append(lacc.idx)
            sz = _size(tb, tid)
            if sz < 0:
                return sz, targ
            targ.bit_offset += lacc.idx * sz * 8
    return 1, targ


# ---------------------------------------------------------------- values


@dataclass(slots=True)
class ReloResult:
    """``struct bpf_core_relo_res``."""

    orig_val: int = 0
    new_val: int = 0
    poison: bool = False
    validate: bool = True
    fail_memsz_adjust: bool = False
    orig_sz: int = 0
    new_sz: int = 0
    orig_type_id: int = 0
    new_type_id: int = 0


class _Poison(Exception):
    pass


def _calc_field(prog: str, relo: CoreRelo, spec: Spec | None,
                res: ReloResult | None) -> tuple[int, int, int, bool]:
    """(value, field size, field type id, validate) of a field relocation."""
    if relo.kind == K.FIELD_EXISTS:
        return (1 if spec else 0), 0, 0, True
    if spec is None:
        raise _Poison
    acc = spec.spec[-1]
    btf = spec.btf
    t = btf.types[acc.type_id]
    if not acc.name:
        if relo.kind == K.FIELD_BYTE_OFFSET:
            et, eid = _skip(btf, acc.type_id)
            while isinstance(et, BtfArray):
                et, eid = _skip(btf, et.type)
            sz = _size(btf, eid)
            if sz < 0:
                raise CoreReloError(errno.EINVAL, "unsized element")
            return spec.bit_offset // 8, sz, acc.type_id, True
        if relo.kind == K.FIELD_BYTE_SIZE:
            sz = _size(btf, acc.type_id)
            if sz < 0:
                raise CoreReloError(errno.EINVAL, "unsized element")
            return sz, 0, 0, True
        raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo {relo.kind} at insn "
                            f"#{relo.insn_off // 8} can't be applied to array access")
    assert isinstance(t, BtfComposite)
    m = t.members[acc.idx]
    mt, ftid = _skip(btf, m.type)
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size if t.kind_flag else 0
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = getattr(mt, "size", 0)
        if byte_sz <= 0:
            raise CoreReloError(errno.EINVAL, "bitfield of unsized type")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise CoreReloError(errno.E2BIG, f"prog '{prog}': relo {relo.kind} at insn "
                                    f"#{relo.insn_off // 8} can't be satisfied for bitfield")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        sz = _size(btf, ftid)
        if sz < 0:
            raise CoreReloError(errno.EINVAL, "unsized field")
        byte_sz = sz
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    validate = not bitfield
    fsz, ftype = 0, 0
    k = relo.kind
    if k == K.FIELD_BYTE_OFFSET:
        val = byte_off
        if not bitfield:
            et, eid = _skip(btf, ftid)
            while isinstance(et, BtfArray):
                et, eid = _skip(btf, et.type)
            sz = _size(btf, eid)
            if sz < 0:
                raise CoreReloError(errno.EINVAL, "unsized field")
            fsz, ftype = sz, ftid
    elif k == K.FIELD_BYTE_SIZE:
        val = byte_sz
    elif k == K.FIELD_SIGNED:
        val = int((isinstance(mt, BtfEnum) and mt.kind_flag)
                  or (isinstance(mt, BtfInt) and bool(mt.encoding & IntEncoding.SIGNED)))
        validate = True
    elif k == K.FIELD_LSHIFT_U64:
        val = 64 - (bit_off + bit_sz - byte_off * 8)
    elif k == K.FIELD_RSHIFT_U64:
        val = 64 - bit_sz
        validate = True
    else:
        raise CoreReloError(errno.EOPNOTSUPP, "")
    return val, fsz, ftype, validate


def _calc_type(relo: CoreRelo, spec: Spec | None) -> tuple[int, bool]:
    if spec is None:
        return 0, True
    k = relo.kind
    if k == K.TYPE_ID_TARGET:
        return spec.root_type_id, False
    if k in (K.TYPE_EXISTS, K.TYPE_MATCHES):
        return 1, True
    if k == K.TYPE_SIZE:
        sz = _size(spec.btf, spec.root_type_id)
        if sz < 0:
            raise CoreReloError(errno.EINVAL, "unsized type")
        return sz, True
    raise CoreReloError(errno.EOPNOTSUPP, "")


def _calc_enumval(relo: CoreRelo, spec: Spec | None) -> int:
    if relo.kind == K.ENUMVAL_EXISTS:
        return 1 if spec else 0
    if relo.kind == K.ENUMVAL_VALUE:
        if spec is None:
            raise _Poison
        t = spec.btf.types[spec.spec[0].type_id]
        assert isinstance(t, BtfEnum)
        v = t.values[spec.spec[0].idx].value
        # libbpf reads ENUM values as u32 (``btf_enum(t)->val``) and ENUM64 as u64
        return v & (0xFFFFFFFFFFFFFFFF if isinstance(t, BtfEnum64) else 0xFFFFFFFF)
    raise CoreReloError(errno.EOPNOTSUPP, "")


def calc_relo(prog: str, relo: CoreRelo, idx: int, local: Spec,
              targ: Spec | None) -> ReloResult:
    """``bpf_core_calc_relo``."""
    res = ReloResult()
    try:
        if relo.kind in _FIELD_KINDS:
            res.orig_val, res.orig_sz, res.orig_type_id, res.validate = _calc_field(
                prog, relo, local, None)
            res.new_val, res.new_sz, res.new_type_id, _ = _calc_field(prog, relo, targ, None)
            if res.orig_sz != res.new_sz:
                ot = local.btf.types[res.orig_type_id]
                nt = targ.btf.types[res.new_type_id] if targ is not None else ot
                both_ptr = isinstance(ot, BtfPtr) and isinstance(nt, BtfPtr)
                both_uint = (isinstance(ot, BtfInt) and isinstance(nt, BtfInt)
                             and ot.encoding != IntEncoding.SIGNED
                             and nt.encoding != IntEncoding.SIGNED)
                res.fail_memsz_adjust = not (both_ptr or both_uint)
        elif relo.kind in _TYPE_KINDS:
            res.orig_val, res.validate = _calc_type(relo, local)
            res.new_val, _ = _calc_type(relo, targ)
        elif relo.kind in _ENUMVAL_KINDS:
            res.orig_val = _calc_enumval(relo, local)
            res.new_val = _calc_enumval(relo, targ)
        else:
            raise CoreReloError(errno.EOPNOTSUPP, "")
    except _Poison:
        res.poison = True
    except CoreReloError as exc:
        if exc.errno == errno.EOPNOTSUPP:
            raise CoreReloError(
                errno.EOPNOTSUPP,
                f"prog '{prog}': relo #{idx}: unrecognized CO-RE relocation "
                f"{kind_str(relo.kind)} ({relo.kind}) at insn #{relo.insn_off // 8}") from None
        raise
    return res


# ---------------------------------------------------------------- candidates


class CandidateIndex:
    """Target types by essential name, built once per target BTF (libbpf scans linearly)."""

    def __init__(self, btf: Btf) -> None:
        self.btf = btf
        self._by_name: dict[str, list[int]] = {}
        for t in btf.types[1:]:
            if t.name:
                self._by_name.setdefault(essential_name(t.name), []).append(t.id)

    def candidates(self, local_t: BtfType) -> list[int]:
        ids = self._by_name.get(essential_name(local_t.name), [])
        return [i for i in ids if kind_core_compat(self.btf.types[i], local_t)]


def resolve_relo(prog: str, relo: CoreRelo, idx: int, local_btf: Btf,
                 targets: CandidateIndex | None,
                 cache: dict[int, list[int]] | None = None) -> tuple[ReloResult, list[str]]:
    """``bpf_core_calc_relo_insn``: the result for one relocation, plus debug lines."""
    log: list[str] = []
    lt = local_btf.types[relo.type_id] if relo.type_id < len(local_btf.types) else None
    if lt is None:
        raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo #{idx}: bad type id "
                            f"{relo.type_id}")
    try:
        local = parse_spec(prog, local_btf, relo)
    except CoreReloError as exc:
        try:
            spec_str = local_btf.string(relo.access_str_off)
        except BtfFormatError:
            spec_str = "<?>"
        raise CoreReloError(
            errno.EINVAL,
            f"prog '{prog}': relo #{idx}: parsing [{relo.type_id}] {btf_kind_str(lt)} "
            f"{lt.name or '<anon>'} + {spec_str} failed: {-exc.errno}") from None
    log.append(f"prog '{prog}': relo #{idx}: <{kind_str(relo.kind)}> {local.format()}")
    if relo.kind == K.TYPE_ID_LOCAL:
        return ReloResult(local.root_type_id, local.root_type_id, validate=False), log
    if not lt.name:
        raise CoreReloError(errno.EOPNOTSUPP,
                            f"prog '{prog}': relo #{idx}: <{kind_str(relo.kind)}> "
                            f"({relo.kind}) relocation doesn't support anonymous types")
    if targets is None:
        cands: list[int] = []
    elif cache is not None and relo.type_id in cache:
        cands = cache[relo.type_id]
    else:
        cands = targets.candidates(lt)
        if cache is not None:
            cache[relo.type_id] = cands
    result: ReloResult | None = None
    targ_spec: Spec | None = None
    kept: list[int] = []
    for i, cid in enumerate(cands):
        assert targets is not None
        found, cspec = spec_match(local, targets.btf, cid)
        if found < 0:
            raise CoreReloError(-found, f"prog '{prog}': relo #{idx}: error matching "
                                f"candidate #{i} {cspec.format()}: {found}")
        log.append(f"prog '{prog}': relo #{idx}: {'matching' if found else 'non-matching'} "
                   f"candidate #{i} {cspec.format()}")
        if not found:
            continue
        cres = calc_relo(prog, relo, idx, local, cspec)
        if result is None:
            result, targ_spec = cres, cspec
        elif targ_spec is not None and cspec.bit_offset != targ_spec.bit_offset:
            raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo #{idx}: field offset "
                                f"ambiguity: {cspec.bit_offset} != {targ_spec.bit_offset}")
        elif cres.poison != result.poison or cres.new_val != result.new_val:
            raise CoreReloError(
                errno.EINVAL,
                f"prog '{prog}': relo #{idx}: relocation decision ambiguity: "
                f"{'failure' if cres.poison else 'success'} {cres.new_val} != "
                f"{'failure' if result.poison else 'success'} {result.new_val}")
        kept.append(cid)
    if kept and cache is not None:
        cache[relo.type_id] = kept
    if result is None:
        log.append(f"prog '{prog}': relo #{idx}: no matching targets found")
        result = calc_relo(prog, relo, idx, local, None)
    return result, log


# ---------------------------------------------------------------- patching


def _poison(insns: list[Insn], i: int) -> None:
    insns[i] = Insn(0x85, 0, 0, 0, POISON_IMM)


_SIZE_BYTES = {0x18: 8, 0x00: 4, 0x08: 2, 0x10: 1}
_BYTES_SIZE = {8: 0x18, 4: 0x00, 2: 0x08, 1: 0x10}


def patch_insn(prog: str, insns: list[Insn], i: int, relo: CoreRelo, idx: int,
               res: ReloResult) -> str:
    """``bpf_core_patch_insn``: rewrite ``insns[i]`` in place; returns a debug line."""
    ins = insns[i]
    cls = ins.code & 7
    if res.poison:
        return _do_poison(prog, insns, i, idx)
    orig, new = res.orig_val, res.new_val
    if cls in (4, 7):  # ALU, ALU64
        if ins.code & 0x08:
            raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo #{idx}: insn #{i} "
                                "(ALU/ALU64) is not an immediate operation")
        if res.validate and (ins.imm & 0xFFFFFFFFFFFFFFFF) != orig:
            raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo #{idx}: unexpected insn "
                                f"#{i} (ALU/ALU64) value: got {ins.imm}, exp {orig} -> {new}")
        insns[i] = ins._replace(imm=_s32(new))
        return (f"prog '{prog}': relo #{idx}: patched insn #{i} (ALU/ALU64) imm "
                f"{ins.imm} -> {new}")
    if cls in (1, 2, 3):  # LDX, ST, STX
        if res.validate and ins.off != orig:
            raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo #{idx}: unexpected insn "
                                f"#{i} (LDX/ST/STX) value: got {ins.off}, exp {orig} -> {new}")
        if new > 0x7FFF:
            raise CoreReloError(errno.ERANGE, f"prog '{prog}': relo #{idx}: insn #{i} "
                                f"(LDX/ST/STX) value too big: {new}")
        if res.fail_memsz_adjust:
            return _do_poison(prog, insns, i, idx)
        code = ins.code
        if res.new_sz != res.orig_sz:
            have = _SIZE_BYTES.get(code & 0x18, -1)
            if have != res.orig_sz:
                raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo #{idx}: insn #{i} "
                                    f"(LDX/ST/STX) unexpected mem size: got {have}, "
                                    f"exp {res.orig_sz}")
            if res.new_sz not in _BYTES_SIZE:
                raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo #{idx}: insn #{i} "
                                    f"(LDX/ST/STX) invalid new mem size: {res.new_sz}")
            code = (code & 0xE7) | _BYTES_SIZE[res.new_sz]
        insns[i] = ins._replace(code=code, off=new)
        return f"prog '{prog}': relo #{idx}: patched insn #{i} (LDX/ST/STX) off {ins.off} -> {new}"
    if cls == 0:  # LD
        nxt = insns[i + 1] if i + 1 < len(insns) else None
        if (ins.code != 0x18 or ins.src or ins.off or nxt is None or nxt.code or nxt.dst
                or nxt.src or nxt.off):
            raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo #{idx}: insn #{i} "
                                "(LDIMM64) has unexpected form")
        imm = (ins.imm & 0xFFFFFFFF) | ((nxt.imm & 0xFFFFFFFF) << 32)
        if res.validate and imm != orig:
            raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo #{idx}: unexpected insn "
                                f"#{i} (LDIMM64) value: got {imm}, exp {orig} -> {new}")
        insns[i] = ins._replace(imm=_s32(new))
        insns[i + 1] = nxt._replace(imm=_s32(new >> 32))
        return f"prog '{prog}': relo #{idx}: patched insn #{i} (LDIMM64) imm64 {imm} -> {new}"
    raise CoreReloError(errno.EINVAL, f"prog '{prog}': relo #{idx}: trying to relocate "
                        f"unrecognized insn #{i}, code:{ins.code:#x}, src:{ins.src:#x}, "
                        f"dst:{ins.dst:#x}, off:{ins.off & 0xFFFF:#x}, "
                        f"imm:{ins.imm & 0xFFFFFFFF:#x}")


def _do_poison(prog: str, insns: list[Insn], i: int, idx: int) -> str:
    if insns[i].code == 0x18 and i + 1 < len(insns):
        _poison(insns, i + 1)
    _poison(insns, i)
    return f"prog '{prog}': relo #{idx}: substituting insn #{i} w/ invalid insn"


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v
