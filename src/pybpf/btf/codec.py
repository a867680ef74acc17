"""Codecs: BTF-typed bytes ↔ Python values.

``codec_for(btf, type_id)`` returns an object with ``size``, ``unpack(bytes) -> value`` and
``pack(value) -> bytes``. Integers become ``int`` (signedness from BTF), ``char`` arrays
``bytes`` (NUL-trimmed), other arrays ``list``, structs and unions ``dict`` by member
name (bitfields included), enums ``int``, floats ``float``, pointers ``int``. Packing a
dict fills unspecified members with zeroes. The skeleton's ``.bss``/``.data``/``.rodata``
views and map key/value typing use these.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pybpf.btf.raw import (
    Btf,
    BtfArray,
    BtfComposite,
    BtfDatasec,
    BtfEnum,
    BtfFloat,
    BtfInt,
    BtfPtr,
    BtfVar,
    IntEncoding,
)


class Codec:
    """Base of all codecs; every subclass has a ``size`` in bytes."""

    size: int

    def unpack(self, data: bytes | bytearray | memoryview) -> Any:
        raise NotImplementedError

    def pack(self, value: Any) -> bytes:
        raise NotImplementedError

    # the codec protocol of pybpf.maps (``Map(key_type=..., value_type=...)``)
    def encode(self, value: Any) -> bytes:
        return self.pack(value)

    def decode(self, data: bytes | bytearray | memoryview) -> Any:
        return self.unpack(data)


@dataclass
class IntCodec(Codec):
    size: int
    signed: bool
    bits: int = 0
    bit_offset: int = 0
    is_bool: bool = False

    def unpack(self, data: bytes | bytearray | memoryview) -> Any:
        v = int.from_bytes(bytes(data[: self.size]), "little", signed=False)
        if self.bits and self.bits < self.size * 8:
            v = (v >> self.bit_offset) & ((1 << self.bits) - 1)
            if self.signed and v >> (self.bits - 1):
                v -= 1 << self.bits
        elif self.signed and v >> (self.size * 8 - 1):
            v -= 1 << (self.size * 8)
        return bool(v) if self.is_bool else v

    def pack(self, value: Any) -> bytes:
        v = int(value) & ((1 << (self.size * 8)) - 1)
        return v.to_bytes(self.size, "little")


@dataclass
class FloatCodec(Codec):
    size: int

    def unpack(self, data: bytes | bytearray | memoryview) -> Any:
        return struct.unpack("<d" if self.size == 8 else "<f", bytes(data[: self.size]))[0]

    def pack(self, value: Any) -> bytes:
        return struct.pack("<d" if self.size == 8 else "<f", float(value))


@dataclass
class BytesCodec(Codec):
    """``char[N]``: bytes up to the first NUL."""

    size: int

    def unpack(self, data: bytes | bytearray | memoryview) -> Any:
        return bytes(data[: self.size]).split(b"\0", 1)[0]

    def pack(self, value: Any) -> bytes:
        raw = value.encode() if isinstance(value, str) else bytes(value)
        if len(raw) > self.size:
            raise ValueError(f"{len(raw)} bytes do not fit in char[{self.size}]")
        return raw.ljust(self.size, b"\0")


@dataclass
class ArrayCodec(Codec):
    elem: Codec
    count: int

    def __post_init__(self) -> None:
        self.size = self.elem.size * self.count

    def unpack(self, data: bytes | bytearray | memoryview) -> Any:
        s = self.elem.size
        return [self.elem.unpack(data[i * s:(i + 1) * s]) for i in range(self.count)]

    def pack(self, value: Any) -> bytes:
        items = list(value)
        if len(items) > self.count:
            raise ValueError(f"{len(items)} items do not fit in an array of {self.count}")
        items += [None] * (self.count - len(items))
        return b"".join(self.elem.pack(v) if v is not None else bytes(self.elem.size)
                        for v in items)


@dataclass
class Field:
    name: str
    offset: int
    codec: Codec
    bits: int = 0
    bit_offset: int = 0


@dataclass
class StructCodec(Codec):
    size: int
    fields: list[Field]

    def unpack(self, data: bytes | bytearray | memoryview) -> Any:
        out = {}
        for f in self.fields:
            if f.bits:
                word = int.from_bytes(bytes(data[f.offset: f.offset + f.codec.size]), "little")
                v = (word >> f.bit_offset) & ((1 << f.bits) - 1)
                if isinstance(f.codec, IntCodec) and f.codec.signed and v >> (f.bits - 1):
                    v -= 1 << f.bits
                out[f.name] = v
            else:
                out[f.name] = f.codec.unpack(data[f.offset: f.offset + f.codec.size])
        return out

    def pack(self, value: Any) -> bytes:
        buf = bytearray(self.size)
        if not isinstance(value, dict):
            raise TypeError(f"expected a dict of members, got {type(value).__name__}")
        names = {f.name for f in self.fields}
        unknown = set(value) - names
        if unknown:
            raise KeyError(f"no member(s) {sorted(unknown)}")
        for f in self.fields:
            if f.name not in value:
                continue
            if f.bits:
                n = f.codec.size
                word = int.from_bytes(buf[f.offset: f.offset + n], "little")
                mask = ((1 << f.bits) - 1) << f.bit_offset
                word = (word & ~mask) | ((int(value[f.name]) << f.bit_offset) & mask)
                buf[f.offset: f.offset + n] = word.to_bytes(n, "little")
            else:
                buf[f.offset: f.offset + f.codec.size] = f.codec.pack(value[f.name])
        return bytes(buf)


@dataclass
class OpaqueCodec(Codec):
    size: int

    def unpack(self, data: bytes | bytearray | memoryview) -> Any:
        return bytes(data[: self.size])

    def pack(self, value: Any) -> bytes:
        return bytes(value).ljust(self.size, b"\0")[: self.size]


def codec_for(btf: Btf, type_id: int) -> Codec:
    """The codec of BTF type ``type_id`` (modifiers and typedefs followed)."""
    t = btf.resolve(type_id)
    if isinstance(t, BtfVar):
        return codec_for(btf, t.type)
    if isinstance(t, BtfInt):
        return IntCodec(t.size, bool(t.encoding & IntEncoding.SIGNED),
                        is_bool=bool(t.encoding & IntEncoding.BOOL))
    if isinstance(t, BtfEnum):
        return IntCodec(t.size, t.signed)
    if isinstance(t, BtfPtr):
        return IntCodec(8, False)
    if isinstance(t, BtfFloat):
        return FloatCodec(t.size) if t.size in (4, 8) else OpaqueCodec(t.size)
    if isinstance(t, BtfArray):
        elem = btf.resolve(t.type)
        if isinstance(elem, BtfInt) and elem.size == 1 and elem.encoding & IntEncoding.CHAR:
            return BytesCodec(t.nelems)
        if isinstance(elem, BtfInt) and elem.size == 1 and elem.name == "char":
            return BytesCodec(t.nelems)
        return ArrayCodec(codec_for(btf, t.type), t.nelems)
    if isinstance(t, BtfComposite):
        fields = []
        for i, m in enumerate(t.members):
            c = codec_for(btf, m.type)
            name = m.name or f"__anon{i}"
            if t.kind_flag and m.bitfield_size:
                unit = c.size or 4
                off = m.bit_offset // 8 // unit * unit
                fields.append(Field(name, off, IntCodec(unit, getattr(c, "signed", False)),
                                    m.bitfield_size, m.bit_offset - off * 8))
            else:
                fields.append(Field(name, m.bit_offset // 8, c))
        return StructCodec(t.size, fields)
    if isinstance(t, BtfDatasec):
        fields = []
        for v in t.vars:
            var = btf.types[v.type]
            fields.append(Field(var.name, v.offset, codec_for(btf, v.type)))
        return StructCodec(t.size, fields)
    return OpaqueCodec(btf.resolve_size(type_id))
