"""Serialise a :class:`~pybpf.btf.raw.Btf` (possibly edited) back into a raw blob.

libbpf edits an object's BTF before loading it (DATASEC sizes and offsets, extern VARs),
and the kernel BTF of a pybpf instance is built in Python; both need the blob form that
``BPF_BTF_LOAD`` takes. Strings are re-interned in first-use order, so a blob read and
written back unchanged keeps its meaning (not necessarily its exact string offsets unless
``keep_strings`` is used).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from pybpf.btf.raw import (
    BTF_MAGIC,
    Btf,
    BtfArray,
    BtfComposite,
    BtfDatasec,
    BtfDeclTag,
    BtfEnum,
    BtfEnum64,
    BtfFloat,
    BtfFunc,
    BtfFuncProto,
    BtfFwd,
    BtfInt,
    BtfRef,
    BtfType,
    BtfVar,
    BtfVoid,
)


class StringTable:
    """Builds a BTF string section: offset 0 is the empty string."""

    def __init__(self, initial: bytes = b"\0") -> None:
        self.data = bytearray(initial)
        self.index: dict[str, int] = {"": 0}

    def add(self, s: str) -> int:
        off = self.index.get(s)
        if off is None:
            off = len(self.data)
            self.data += s.encode("utf-8", "surrogateescape") + b"\0"
            self.index[s] = off
        return off


class KeptStrings(StringTable):
    """The original string section, reused as is: names are written by their old offsets.

    Needed when other data (``.BTF.ext`` line info, map definitions) refers to string
    offsets of the original blob.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__(data)


def encode_types(types: Iterable[BtfType], strings: StringTable) -> bytes:
    """The type section for ``types`` (void excluded), interning names into ``strings``.

    With :class:`KeptStrings`, every name keeps its recorded ``name_off``.
    """
    out = bytearray()
    w = out.extend
    keep = isinstance(strings, KeptStrings)
    add = strings.add

    def name_of(obj: object) -> int:
        if keep:
            return obj.name_off  # type: ignore[attr-defined]
        return add(obj.name)  # type: ignore[attr-defined]

    for t in types:
        if isinstance(t, BtfVoid):
            continue
        name = name_of(t)
        kind = int(t.kind)
        kflag = 1 if t.kind_flag else 0

        def head(vlen: int, size_or_type: int, _n: int = name, _k: int = kind,
                 _f: int = kflag) -> None:
            w(struct.pack("<III", _n, (_f << 31) | (_k << 24) | (vlen & 0xFFFF),
                          size_or_type & 0xFFFFFFFF))

        if isinstance(t, BtfInt):
            head(0, t.size)
            w(struct.pack("<I", (int(t.encoding) << 24) | (t.bit_offset << 16) | t.bits))
        elif isinstance(t, BtfRef):
            head(0, t.type)
        elif isinstance(t, BtfArray):
            head(0, 0)
            w(struct.pack("<III", t.type, t.index_type, t.nelems))
        elif isinstance(t, BtfComposite):
            head(len(t.members), t.size)
            for m in t.members:
                off = (m.bitfield_size << 24 | m.bit_offset) if t.kind_flag else m.bit_offset
                w(struct.pack("<III", name_of(m), m.type, off))
        elif isinstance(t, BtfEnum64):
            head(len(t.values), t.size)
            for v in t.values:
                u = v.value & 0xFFFFFFFFFFFFFFFF
                w(struct.pack("<III", name_of(v), u & 0xFFFFFFFF, u >> 32))
        elif isinstance(t, BtfEnum):
            head(len(t.values), t.size)
            for v in t.values:
                w(struct.pack("<II", name_of(v), v.value & 0xFFFFFFFF))
        elif isinstance(t, BtfFwd):
            head(0, 0)
        elif isinstance(t, BtfFunc):
            head(t.linkage, t.type)
        elif isinstance(t, BtfFuncProto):
            head(len(t.params), t.type)
            for p in t.params:
                w(struct.pack("<II", name_of(p), p.type))
        elif isinstance(t, BtfVar):
            head(0, t.type)
            w(struct.pack("<I", t.linkage))
        elif isinstance(t, BtfDatasec):
            head(len(t.vars), t.size)
            for vs in t.vars:
                w(struct.pack("<III", vs.type, vs.offset, vs.size))
        elif isinstance(t, BtfFloat):
            head(0, t.size)
        elif isinstance(t, BtfDeclTag):
            head(0, t.type)
            w(struct.pack("<i", t.component_idx))
        else:
            raise ValueError(f"cannot encode BTF kind {t.kind!r}")
    return bytes(out)


def build_blob(type_section: bytes, string_section: bytes) -> bytes:
    """Header + type section + string section (little endian, version 1)."""
    hdr = struct.pack("<HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(type_section),
                      len(type_section), len(string_section))
    return hdr + type_section + string_section


def to_bytes(btf: Btf, keep_strings: bool = False) -> bytes:
    """Encode ``btf``'s own types (not a split base's) as a blob.

    ``keep_strings`` reuses the original string section and offsets (what libbpf does when
    it loads an object's edited BTF).
    """
    first = len(btf.base.types) if btf.base is not None else 1
    strings: StringTable = KeptStrings(btf.strings) if keep_strings else StringTable()
    types = encode_types(btf.types[first:], strings)
    return build_blob(types, bytes(strings.data))
