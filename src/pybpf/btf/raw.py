"""A reader of raw BTF blobs: ``/sys/kernel/btf/*`` and the ``.BTF`` section of ELF objects.

BTF is a header, a type section and a string section. The type section is a run of
variable-length records, one per type; a type's id is its position in that run, counted
from 1 (id 0 is ``void`` and has no record). Each record starts with three 32-bit words
(name offset, ``info`` = vlen | kind << 24 | kind_flag << 31, size-or-type) followed by
kind-specific data.

This module only *reads*: it turns a blob into typed dataclasses and answers the questions
every consumer asks (look a type up by name, skip modifiers, compute a size). It rejects
blobs it cannot read with :class:`BtfFormatError` (a ``ValueError``) and never lets an
``IndexError`` or ``struct.error`` escape. Checking a blob the way ``BPF_BTF_LOAD`` does,
with the kernel's errnos, is a separate, stricter job built on top of this one.

Split BTF (kernel modules: ``/sys/kernel/btf/<module>``) continues the id and string
numbering of a base BTF; pass ``base=`` to read it.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from os import PathLike
from typing import ClassVar

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
#: Size of the version-1 header; ``hdr_len`` may be larger (fields added later).
BTF_HEADER_SIZE = 24
#: Largest type id and string offset the format can express.
BTF_MAX_TYPE = 0x000FFFFF
BTF_MAX_NAME_OFFSET = 0x00FFFFFF
#: Modifier/typedef chains longer than this are treated as cycles, as the kernel does.
MAX_RESOLVE_DEPTH = 32
#: BTF does not record the pointer size; pybpf targets 64-bit BPF.
POINTER_SIZE = 8


class BtfFormatError(ValueError):
    """A blob that is not readable BTF: truncated, out-of-range offset, unknown kind, …"""


class BtfKind(IntEnum):
    """``BTF_KIND_*``: the 5-bit kind field of ``btf_type.info``."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


class IntEncoding(IntFlag):
    """``BTF_INT_*`` encoding bits of an INT type (at most one is set in valid BTF)."""

    NONE = 0
    SIGNED = 1
    CHAR = 2
    BOOL = 4


class BtfLinkage(IntEnum):
    """Linkage of FUNC (in ``vlen``) and VAR (in its extra word)."""

    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


# --------------------------------------------------------------------------- types
# Plain (not frozen) slotted dataclasses: vmlinux has ~150k types and ~600k members,
# and frozen dataclasses cost a second per million objects more to build.


@dataclass(slots=True, eq=False)
class BtfType:
    """Common part of every type: its id, name (``""`` when anonymous) and raw flag bit.

    ``kind_flag`` is kept raw because its meaning depends on the kind (bitfield encoding
    of members, enum signedness, fwd-of-union, attribute tag).
    """

    kind: ClassVar[BtfKind] = BtfKind.UNKN
    id: int
    name: str
    name_off: int
    kind_flag: bool


@dataclass(slots=True, eq=False)
class BtfVoid(BtfType):
    """Type id 0. Has no record in the blob."""


@dataclass(slots=True, eq=False)
class BtfInt(BtfType):
    """An integer of ``size`` bytes, of which ``bits`` starting at ``bit_offset`` are used."""

    kind: ClassVar[BtfKind] = BtfKind.INT
    size: int
    encoding: IntEncoding
    bit_offset: int
    bits: int

    @property
    def signed(self) -> bool:
        return bool(self.encoding & IntEncoding.SIGNED)


@dataclass(slots=True, eq=False)
class BtfRef(BtfType):
    """A type that only points at another: pointers, typedefs and qualifiers."""

    type: int


@dataclass(slots=True, eq=False)
class BtfPtr(BtfRef):
    kind: ClassVar[BtfKind] = BtfKind.PTR


@dataclass(slots=True, eq=False)
class BtfTypedef(BtfRef):
    kind: ClassVar[BtfKind] = BtfKind.TYPEDEF


@dataclass(slots=True, eq=False)
class BtfVolatile(BtfRef):
    kind: ClassVar[BtfKind] = BtfKind.VOLATILE


@dataclass(slots=True, eq=False)
class BtfConst(BtfRef):
    kind: ClassVar[BtfKind] = BtfKind.CONST


@dataclass(slots=True, eq=False)
class BtfRestrict(BtfRef):
    kind: ClassVar[BtfKind] = BtfKind.RESTRICT


@dataclass(slots=True, eq=False)
class BtfTypeTag(BtfRef):
    """``btf_type_tag("name")`` on a pointee; ``kind_flag`` marks an attribute tag."""

    kind: ClassVar[BtfKind] = BtfKind.TYPE_TAG


@dataclass(slots=True, eq=False)
class BtfArray(BtfType):
    kind: ClassVar[BtfKind] = BtfKind.ARRAY
    type: int
    index_type: int
    nelems: int


@dataclass(slots=True, eq=False)
class BtfMember:
    """A struct/union member; ``bitfield_size`` is 0 for a plain member."""

    name: str
    name_off: int
    type: int
    bit_offset: int
    bitfield_size: int

    @property
    def byte_offset(self) -> int:
        """Offset in whole bytes (rounded down for bitfields)."""
        return self.bit_offset // 8


@dataclass(slots=True, eq=False)
class BtfComposite(BtfType):
    """STRUCT or UNION. With ``kind_flag`` set, member offsets carry bitfield sizes."""

    size: int
    members: tuple[BtfMember, ...]

    def member(self, name: str) -> BtfMember:
        """The member called ``name`` (anonymous members are not searched)."""
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"{self.name or '(anon)'} has no member {name!r}")


@dataclass(slots=True, eq=False)
class BtfStruct(BtfComposite):
    kind: ClassVar[BtfKind] = BtfKind.STRUCT


@dataclass(slots=True, eq=False)
class BtfUnion(BtfComposite):
    kind: ClassVar[BtfKind] = BtfKind.UNION


@dataclass(slots=True, eq=False)
class BtfEnumValue:
    """One enumerator; ``value`` already carries the enum's signedness."""

    name: str
    name_off: int
    value: int


@dataclass(slots=True, eq=False)
class BtfEnum(BtfType):
    """ENUM (32-bit values). ``kind_flag`` set means the values are signed.

    :class:`BtfEnum64` derives from it so ``isinstance(t, BtfEnum)`` finds both.
    """

    kind: ClassVar[BtfKind] = BtfKind.ENUM
    size: int
    values: tuple[BtfEnumValue, ...]

    @property
    def signed(self) -> bool:
        return self.kind_flag


@dataclass(slots=True, eq=False)
class BtfEnum64(BtfEnum):
    kind: ClassVar[BtfKind] = BtfKind.ENUM64


@dataclass(slots=True, eq=False)
class BtfFwd(BtfType):
    """A forward declaration of a struct (or, with ``kind_flag``, a union)."""

    kind: ClassVar[BtfKind] = BtfKind.FWD

    @property
    def is_union(self) -> bool:
        return self.kind_flag


@dataclass(slots=True, eq=False)
class BtfFunc(BtfType):
    """A function: ``type`` is its FUNC_PROTO; linkage lives in the record's vlen."""

    kind: ClassVar[BtfKind] = BtfKind.FUNC
    type: int
    linkage: int


@dataclass(slots=True, eq=False)
class BtfParam:
    """A FUNC_PROTO parameter; a last one with name 0 and type 0 means ``...``."""

    name: str
    name_off: int
    type: int


@dataclass(slots=True, eq=False)
class BtfFuncProto(BtfType):
    """A function signature: ``type`` is the return type (0 = void)."""

    kind: ClassVar[BtfKind] = BtfKind.FUNC_PROTO
    type: int
    params: tuple[BtfParam, ...]

    @property
    def variadic(self) -> bool:
        return bool(self.params) and self.params[-1].type == 0 and not self.params[-1].name_off


@dataclass(slots=True, eq=False)
class BtfVar(BtfType):
    kind: ClassVar[BtfKind] = BtfKind.VAR
    type: int
    linkage: int


@dataclass(slots=True, eq=False)
class BtfVarSecinfo:
    """A variable placed in a DATASEC: its VAR (or FUNC) id, offset and size."""

    type: int
    offset: int
    size: int


@dataclass(slots=True, eq=False)
class BtfDatasec(BtfType):
    kind: ClassVar[BtfKind] = BtfKind.DATASEC
    size: int
    vars: tuple[BtfVarSecinfo, ...]


@dataclass(slots=True, eq=False)
class BtfFloat(BtfType):
    kind: ClassVar[BtfKind] = BtfKind.FLOAT
    size: int


@dataclass(slots=True, eq=False)
class BtfDeclTag(BtfType):
    """A tag on a type (``component_idx == -1``) or on one member/parameter of it."""

    kind: ClassVar[BtfKind] = BtfKind.DECL_TAG
    type: int
    component_idx: int


#: Kinds whose third word is a size, for :meth:`Btf.resolve_size`.
_SIZED = (BtfInt, BtfComposite, BtfEnum, BtfDatasec, BtfFloat)
#: Kinds skipped by :meth:`Btf.skip_modifiers`.
_MODIFIERS = (BtfVolatile, BtfConst, BtfRestrict, BtfTypeTag)


@dataclass(slots=True, frozen=True)
class BtfHeader:
    """``struct btf_header``; section offsets are relative to the end of the header."""

    magic: int
    version: int
    flags: int
    hdr_len: int
    type_off: int
    type_len: int
    str_off: int
    str_len: int


# --------------------------------------------------------------------------- parser


class _Parser:
    """Walks the type section once; one method per record layout.

    The type section is read as an array of 32-bit words (every record is a whole number
    of words), which is several times faster than ``struct.unpack_from`` per field.
    """

    def __init__(self, words: array[int], strings: _Strings, first_id: int) -> None:
        self.w = words
        self.s = strings
        self.first_id = first_id
        self.types: list[BtfType] = []

    def run(self) -> list[BtfType]:
        w, n, pos = self.w, len(self.w), 0
        builders = _BUILDERS
        tid = self.first_id
        while pos < n:
            if pos + 3 > n:
                raise BtfFormatError(f"type [{tid}]: record truncated at byte {pos * 4}")
            info = w[pos + 1]
            kind = (info >> 24) & 0x1F
            builder = builders.get(kind)
            if builder is None:
                raise BtfFormatError(f"type [{tid}]: unknown kind {kind}")
            extra = _extra_words(kind, info & 0xFFFF)
            if pos + 3 + extra > n:
                raise BtfFormatError(f"type [{tid}]: {BtfKind(kind).name} record truncated")
            self.types.append(builder(self, tid, pos, info))
            pos += 3 + extra
            tid += 1
        return self.types

    def _head(self, tid: int, pos: int, info: int) -> tuple[int, str, int, bool]:
        off = self.w[pos]
        return tid, self.s.get(off, tid), off, bool(info >> 31)

    def int_(self, tid: int, pos: int, info: int) -> BtfType:
        enc = self.w[pos + 3]
        return BtfInt(*self._head(tid, pos, info), self.w[pos + 2],
                      IntEncoding((enc >> 24) & 0xF), (enc >> 16) & 0xFF, enc & 0xFF)

    def ref(self, tid: int, pos: int, info: int) -> BtfType:
        cls = _REF_CLASSES[(info >> 24) & 0x1F]
        return cls(*self._head(tid, pos, info), self.w[pos + 2])

    def array(self, tid: int, pos: int, info: int) -> BtfType:
        w = self.w
        return BtfArray(*self._head(tid, pos, info), w[pos + 3], w[pos + 4], w[pos + 5])

    def composite(self, tid: int, pos: int, info: int) -> BtfType:
        w, get = self.w, self.s.get
        bitfields = bool(info >> 31)
        members = []
        for p in range(pos + 3, pos + 3 + 3 * (info & 0xFFFF), 3):
            off = w[p + 2]
            if bitfields:
                m = BtfMember(get(w[p], tid), w[p], w[p + 1], off & 0xFFFFFF, off >> 24)
            else:
                m = BtfMember(get(w[p], tid), w[p], w[p + 1], off, 0)
            members.append(m)
        cls = BtfUnion if (info >> 24) & 0x1F == BtfKind.UNION else BtfStruct
        return cls(*self._head(tid, pos, info), w[pos + 2], tuple(members))

    def enum(self, tid: int, pos: int, info: int) -> BtfType:
        w, get = self.w, self.s.get
        signed = bool(info >> 31)
        values = []
        for p in range(pos + 3, pos + 3 + 2 * (info & 0xFFFF), 2):
            v = w[p + 1]
            if signed and v & 0x80000000:
                v -= 1 << 32
            values.append(BtfEnumValue(get(w[p], tid), w[p], v))
        return BtfEnum(*self._head(tid, pos, info), w[pos + 2], tuple(values))

    def enum64(self, tid: int, pos: int, info: int) -> BtfType:
        w, get = self.w, self.s.get
        signed = bool(info >> 31)
        values = []
        for p in range(pos + 3, pos + 3 + 3 * (info & 0xFFFF), 3):
            v = w[p + 1] | (w[p + 2] << 32)
            if signed and v >> 63:
                v -= 1 << 64
            values.append(BtfEnumValue(get(w[p], tid), w[p], v))
        return BtfEnum64(*self._head(tid, pos, info), w[pos + 2], tuple(values))

    def fwd(self, tid: int, pos: int, info: int) -> BtfType:
        return BtfFwd(*self._head(tid, pos, info))

    def func(self, tid: int, pos: int, info: int) -> BtfType:
        return BtfFunc(*self._head(tid, pos, info), self.w[pos + 2], info & 0xFFFF)

    def func_proto(self, tid: int, pos: int, info: int) -> BtfType:
        w, get = self.w, self.s.get
        params = tuple(BtfParam(get(w[p], tid), w[p], w[p + 1])
                       for p in range(pos + 3, pos + 3 + 2 * (info & 0xFFFF), 2))
        return BtfFuncProto(*self._head(tid, pos, info), w[pos + 2], params)

    def var(self, tid: int, pos: int, info: int) -> BtfType:
        return BtfVar(*self._head(tid, pos, info), self.w[pos + 2], self.w[pos + 3])

    def datasec(self, tid: int, pos: int, info: int) -> BtfType:
        w = self.w
        secs = tuple(BtfVarSecinfo(w[p], w[p + 1], w[p + 2])
                     for p in range(pos + 3, pos + 3 + 3 * (info & 0xFFFF), 3))
        return BtfDatasec(*self._head(tid, pos, info), w[pos + 2], secs)

    def float_(self, tid: int, pos: int, info: int) -> BtfType:
        return BtfFloat(*self._head(tid, pos, info), self.w[pos + 2])

    def decl_tag(self, tid: int, pos: int, info: int) -> BtfType:
        idx = self.w[pos + 3]
        if idx & 0x80000000:
            idx -= 1 << 32
        return BtfDeclTag(*self._head(tid, pos, info), self.w[pos + 2], idx)


def _extra_words(kind: int, vlen: int) -> int:
    """Number of 32-bit words following the common 3-word record head."""
    if kind in (BtfKind.STRUCT, BtfKind.UNION, BtfKind.DATASEC, BtfKind.ENUM64):
        return 3 * vlen
    if kind in (BtfKind.ENUM, BtfKind.FUNC_PROTO):
        return 2 * vlen
    if kind == BtfKind.ARRAY:
        return 3
    if kind in (BtfKind.INT, BtfKind.VAR, BtfKind.DECL_TAG):
        return 1
    return 0


_Builder = Callable[[_Parser, int, int, int], BtfType]

_REF_CLASSES: dict[int, type[BtfRef]] = {
    BtfKind.PTR: BtfPtr, BtfKind.TYPEDEF: BtfTypedef, BtfKind.VOLATILE: BtfVolatile,
    BtfKind.CONST: BtfConst, BtfKind.RESTRICT: BtfRestrict, BtfKind.TYPE_TAG: BtfTypeTag,
}

_BUILDERS: dict[int, _Builder] = {
    BtfKind.INT: _Parser.int_,
    BtfKind.PTR: _Parser.ref,
    BtfKind.ARRAY: _Parser.array,
    BtfKind.STRUCT: _Parser.composite,
    BtfKind.UNION: _Parser.composite,
    BtfKind.ENUM: _Parser.enum,
    BtfKind.FWD: _Parser.fwd,
    BtfKind.TYPEDEF: _Parser.ref,
    BtfKind.VOLATILE: _Parser.ref,
    BtfKind.CONST: _Parser.ref,
    BtfKind.RESTRICT: _Parser.ref,
    BtfKind.FUNC: _Parser.func,
    BtfKind.FUNC_PROTO: _Parser.func_proto,
    BtfKind.VAR: _Parser.var,
    BtfKind.DATASEC: _Parser.datasec,
    BtfKind.FLOAT: _Parser.float_,
    BtfKind.DECL_TAG: _Parser.decl_tag,
    BtfKind.TYPE_TAG: _Parser.ref,
    BtfKind.ENUM64: _Parser.enum64,
}


class _Strings:
    """The string section (continuing a base's, for split BTF), decoded on demand."""

    def __init__(self, data: bytes, start: int, base: _Strings | None) -> None:
        self.data = data
        self.start = start  # offset of data[0]: 0, or the base's total length
        self.base = base
        self.end = start + len(data)
        self.cache: dict[int, str] = {}

    def get(self, off: int, tid: int = -1) -> str:
        s = self.cache.get(off)
        if s is not None:
            return s
        if off < self.start and self.base is not None:
            return self.base.get(off, tid)
        if not self.start <= off < self.end:
            where = f"type [{tid}]: " if tid >= 0 else ""
            raise BtfFormatError(f"{where}name offset {off} outside string section")
        rel = off - self.start
        nul = self.data.find(b"\0", rel)  # the section is known to end with NUL
        s = self.data[rel:nul].decode("utf-8", "surrogateescape")
        self.cache[off] = s
        return s


# --------------------------------------------------------------------------- Btf


class Btf:
    """A parsed BTF blob: ``types[id]`` for every id, ``types[0]`` being ``void``.

    For split BTF, ``types`` also holds the base's types (sharing the objects), so ids
    index it directly either way.
    """

    def __init__(self, header: BtfHeader, types: list[BtfType], strings: _Strings,
                 base: Btf | None = None, endian: str = "<") -> None:
        self.header = header
        self.types = types
        self.base = base
        self.endian = endian
        self._strings = strings
        self._by_name: dict[str, list[int]] | None = None

    # ---- construction

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, base: Btf | None = None) -> Btf:
        """Parse a raw BTF blob (not an ELF file: see :meth:`from_file`)."""
        data = bytes(data)
        header, endian = _parse_header(data)
        start = header.hdr_len
        tsec = data[start + header.type_off: start + header.type_off + header.type_len]
        ssec = data[start + header.str_off: start + header.str_off + header.str_len]
        strings = _check_strings(ssec, base)
        words = array("I")
        words.frombytes(tsec)
        if (endian == "<") != (sys.byteorder == "little"):
            words.byteswap()
        first_id = len(base.types) if base is not None else 1
        own = _Parser(words, strings, first_id).run()
        types: list[BtfType] = list(base.types) if base is not None else [
            BtfVoid(0, "", 0, False)]
        types.extend(own)
        if len(types) - 1 > BTF_MAX_TYPE:
            raise BtfFormatError(f"{len(types) - 1} types exceed the maximum {BTF_MAX_TYPE}")
        btf = cls(header, types, strings, base, endian)
        btf._check_references(first_id)
        return btf

    @classmethod
    def from_file(cls, path: str | PathLike[str], base: Btf | None = None) -> Btf:
        """Read a raw BTF file, or the ``.BTF`` section of an ELF object file."""
        with open(path, "rb") as f:
            data = f.read()
        if data[:4] == b"\x7fELF":
            data = elf_section(data, ".BTF")
        return cls.from_bytes(data, base)

    def _check_references(self, first_id: int) -> None:
        """Reject ids pointing past the last type, so lookups never go out of range."""
        limit = len(self.types)
        for t in self.types[first_id:]:
            for ref in _references(t):
                if ref >= limit:
                    raise BtfFormatError(f"type [{t.id}]: refers to type id {ref} "
                                         f"beyond the last one ({limit - 1})")

    # ---- access

    def __len__(self) -> int:
        return len(self.types)

    def __iter__(self) -> Iterator[BtfType]:
        return iter(self.types)

    def __getitem__(self, type_id: int) -> BtfType:
        if not 0 <= type_id < len(self.types):
            raise KeyError(f"no BTF type id {type_id}")
        return self.types[type_id]

    def string(self, offset: int) -> str:
        """The NUL-terminated string at ``offset`` of the string section."""
        return self._strings.get(offset)

    @property
    def strings(self) -> bytes:
        """This blob's own string section (without a base's)."""
        return self._strings.data

    def find(self, name: str, kind: BtfKind | None = None) -> int:
        """Id of the first type named ``name`` (of ``kind`` if given); ``KeyError`` if none."""
        for tid in self.find_all(name, kind):
            return tid
        what = f"{kind.name} " if kind is not None else ""
        raise KeyError(f"no BTF {what}type named {name!r}")

    def find_all(self, name: str, kind: BtfKind | None = None) -> list[int]:
        """Ids of all types named ``name`` (of ``kind`` if given), in id order."""
        if self._by_name is None:
            index: dict[str, list[int]] = {}
            for t in self.types:
                if t.name:
                    index.setdefault(t.name, []).append(t.id)
            self._by_name = index
        ids = self._by_name.get(name, [])
        if kind is None:
            return list(ids)
        return [i for i in ids if self.types[i].kind == kind]

    # ---- resolution

    def skip_modifiers(self, type_id: int) -> int:
        """Follow volatile/const/restrict/type_tag to the first other type."""
        return self._skip(type_id, _MODIFIERS)

    def skip_mods_and_typedefs(self, type_id: int) -> int:
        """Follow modifiers and typedefs to the underlying type."""
        return self._skip(type_id, (*_MODIFIERS, BtfTypedef))

    def resolve(self, type_id: int) -> BtfType:
        """The underlying type object of ``type_id`` (modifiers and typedefs skipped)."""
        return self.types[self.skip_mods_and_typedefs(type_id)]

    def _skip(self, type_id: int, kinds: tuple[type[BtfType], ...]) -> int:
        t = self[type_id]
        for _ in range(MAX_RESOLVE_DEPTH):
            if not isinstance(t, kinds):
                return t.id
            assert isinstance(t, BtfRef)
            t = self.types[t.type]
        raise BtfFormatError(f"type [{type_id}]: modifier chain too long or cyclic")

    def resolve_size(self, type_id: int) -> int:
        """Size in bytes of ``type_id``, through modifiers, typedefs, VARs and arrays.

        Raises :class:`BtfFormatError` for types without a size (void, FWD, FUNC,
        FUNC_PROTO, DECL_TAG) and for cycles.
        """
        t = self[type_id]
        count = 1
        for _ in range(MAX_RESOLVE_DEPTH):
            if isinstance(t, _SIZED):
                return count * t.size
            if isinstance(t, BtfPtr):
                return count * POINTER_SIZE
            if isinstance(t, BtfArray):
                count *= t.nelems
                t = self.types[t.type]
            elif isinstance(t, BtfRef | BtfVar):
                t = self.types[t.type]
            else:
                raise BtfFormatError(f"type [{type_id}]: {t.kind.name} [{t.id}] has no size")
        raise BtfFormatError(f"type [{type_id}]: type chain too long or cyclic")

    def type_name(self, type_id: int) -> str:
        """A short C-like spelling, for messages: ``struct foo``, ``int *``, ``void``."""
        t, stars = self[type_id], ""
        while isinstance(t, BtfPtr) and len(stars) < MAX_RESOLVE_DEPTH:
            t, stars = self.types[t.type], stars + "*"
        stars = " " + stars if stars else ""
        prefix = {BtfKind.STRUCT: "struct ", BtfKind.UNION: "union ", BtfKind.ENUM: "enum ",
                  BtfKind.ENUM64: "enum "}.get(t.kind, "")
        return prefix + (t.name or ("void" if t.id == 0 else "(anon)")) + stars


def _references(t: BtfType) -> Iterator[int]:
    """Every type id a record mentions."""
    if isinstance(t, BtfRef | BtfFunc | BtfVar | BtfDeclTag):
        yield t.type
    elif isinstance(t, BtfArray):
        yield t.type
        yield t.index_type
    elif isinstance(t, BtfComposite):
        for m in t.members:
            yield m.type
    elif isinstance(t, BtfFuncProto):
        yield t.type
        for p in t.params:
            yield p.type
    elif isinstance(t, BtfDatasec):
        for v in t.vars:
            yield v.type


_HEADER = struct.Struct("HBBIIIII")


def _parse_header(data: bytes) -> tuple[BtfHeader, str]:
    """Decode and bounds-check the header; returns it and the blob's byte order."""
    if len(data) < BTF_HEADER_SIZE:
        raise BtfFormatError(f"blob of {len(data)} bytes is shorter than the BTF header")
    endian = "<"
    magic = int.from_bytes(data[:2], "little")
    if magic != BTF_MAGIC:
        if int.from_bytes(data[:2], "big") != BTF_MAGIC:
            raise BtfFormatError(f"bad BTF magic {magic:#06x}")
        endian = ">"
    h = BtfHeader(*struct.unpack_from(endian + _HEADER.format, data))
    if h.version != BTF_VERSION:
        raise BtfFormatError(f"unsupported BTF version {h.version}")
    if not BTF_HEADER_SIZE <= h.hdr_len <= len(data):
        raise BtfFormatError(f"bad header length {h.hdr_len}")
    body = len(data) - h.hdr_len
    for what, off, size in (("type", h.type_off, h.type_len), ("string", h.str_off, h.str_len)):
        if off + size > body:
            raise BtfFormatError(f"{what} section [{off}, {off + size}) "
                                 f"exceeds the {body} bytes after the header")
    if h.type_off % 4 or h.type_len % 4:
        raise BtfFormatError("type section is not 4-byte aligned")
    return h, endian


def _check_strings(section: bytes, base: Btf | None) -> _Strings:
    """The string section must end with NUL; a base's must also start with one (``""``)."""
    if base is None and (not section or section[0] != 0):
        raise BtfFormatError("string section must start with an empty string")
    if section and section[-1] != 0:
        raise BtfFormatError("string section is not NUL-terminated")
    start = base._strings.end if base is not None else 0
    if start + len(section) - 1 > BTF_MAX_NAME_OFFSET:
        raise BtfFormatError("string section too large")
    return _Strings(section, start, base._strings if base is not None else None)


# --------------------------------------------------------------------------- ELF


def elf_section(data: bytes, name: str) -> bytes:
    """Contents of section ``name`` of an ELF image (32/64-bit, either byte order).

    Just enough ELF to pull ``.BTF`` (or ``.BTF.ext``) out of an object file without a
    dependency; raises :class:`BtfFormatError` when the image is malformed or lacks it.
    """
    try:
        return _elf_section(data, name)
    except BtfFormatError:
        raise
    except (struct.error, IndexError, ValueError) as exc:
        raise BtfFormatError(f"malformed ELF image: {exc}") from None


def _elf_section(data: bytes, name: str) -> bytes:
    if data[:4] != b"\x7fELF":
        raise BtfFormatError("not an ELF image")
    is64, endian = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(endian + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 0x3A)
        entry = struct.Struct(endian + "IIQQQQ")  # name, type, flags, addr, offset, size
    else:
        shoff, = struct.unpack_from(endian + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 0x2E)
        entry = struct.Struct(endian + "IIIIII")
    headers = [entry.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    names = headers[shstrndx]
    names_data = data[names[4]: names[4] + names[5]]
    for sh_name, _type, _flags, _addr, offset, size in headers:
        end = names_data.index(b"\0", sh_name)
        if names_data[sh_name:end].decode() == name:
            if offset + size > len(data):
                raise BtfFormatError(f"ELF section {name} extends past the end of the file")
            return data[offset: offset + size]
    raise BtfFormatError(f"ELF image has no {name} section")
