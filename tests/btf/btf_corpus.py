"""Blobs for the BPF_BTF_LOAD differential tests: valid ones and systematic corruptions.

``every_kind_blob()`` holds one of each of the 19 kinds (plus bitfields, varargs, tags);
``corruptions(blob)`` yields (label, corrupted blob) pairs that touch each header field and
each word of each type record with values chosen to hit the kernel's checks (kind, vlen,
kind_flag, sizes, name offsets, type ids, member offsets, …).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from pybpf.btf.raw import (
    Btf,
    BtfArray,
    BtfConst,
    BtfDatasec,
    BtfDeclTag,
    BtfEnum,
    BtfEnum64,
    BtfEnumValue,
    BtfFloat,
    BtfFunc,
    BtfFuncProto,
    BtfFwd,
    BtfInt,
    BtfMember,
    BtfParam,
    BtfPtr,
    BtfRestrict,
    BtfStruct,
    BtfType,
    BtfTypedef,
    BtfTypeTag,
    BtfUnion,
    BtfVar,
    BtfVarSecinfo,
    BtfVolatile,
    IntEncoding,
)
from pybpf.btf.writer import StringTable, build_blob, encode_types

HEADER = struct.Struct("<HBBIIIII")


def _m(name: str, tid: int, off: int, bits: int = 0) -> BtfMember:
    return BtfMember(name, 0, tid, off, bits)


def every_kind_types() -> list[BtfType]:
    """Types 1..N of a blob using every 6.18 kind once or more."""
    S, U = IntEncoding.SIGNED, IntEncoding.NONE
    return [
        BtfInt(1, "int", 0, False, 4, S, 0, 32),                       # 1
        BtfInt(2, "unsigned char", 0, False, 1, U, 0, 8),              # 2
        BtfPtr(3, "", 0, False, 1),                                    # 3 int *
        BtfArray(4, "", 0, False, 2, 1, 16),                           # 4 uchar[16]
        BtfStruct(5, "pkt", 0, True, 24, (                             # 5 bitfields
            _m("len", 1, 0), _m("flags", 1, 32, 3), _m("mode", 1, 35, 5),
            _m("data", 4, 64), _m("next", 3, 128))),
        BtfUnion(6, "u", 0, False, 8, (_m("a", 1, 0), _m("p", 3, 0))),  # 6
        BtfEnum(7, "color", 0, False, 4, (BtfEnumValue("RED", 0, 0),
                                          BtfEnumValue("BLUE", 0, 7))),  # 7
        BtfEnum64(8, "big", 0, True, 8, (BtfEnumValue("NEG", 0, -5),
                                         BtfEnumValue("HUGE", 0, 1 << 40))),  # 8
        BtfFwd(9, "opaque", 0, False),                                 # 9
        BtfTypedef(10, "myint", 0, False, 1),                          # 10
        BtfVolatile(11, "", 0, False, 10),                             # 11
        BtfConst(12, "", 0, False, 11),                                # 12
        BtfRestrict(13, "", 0, False, 3),                              # 13
        BtfFuncProto(14, "", 0, False, 1, (BtfParam("ctx", 0, 3),
                                           BtfParam("", 0, 0))),       # 14 vararg
        BtfFunc(15, "handler", 0, False, 14, 1),                       # 15
        BtfVar(16, "counter", 0, False, 5, 1),                         # 16
        BtfDatasec(17, ".data", 0, False, 24, (BtfVarSecinfo(16, 0, 24),)),  # 17
        BtfFloat(18, "double", 0, False, 8),                           # 18
        BtfDeclTag(19, "tag1", 0, False, 5, 1),                        # 19 on pkt.flags
        BtfDeclTag(20, "tag2", 0, False, 15, -1),                      # 20 on handler
        BtfTypeTag(21, "user", 0, False, 1),                           # 21
        BtfPtr(22, "", 0, False, 21),                                  # 22 int __user *
        BtfStruct(23, "withf", 0, False, 16, (_m("d", 18, 0), _m("e", 7, 64),
                                              _m("x", 12, 96))),       # 23
        BtfPtr(24, "", 0, False, 9),                                   # 24 fwd *
        BtfUnion(25, "", 0, False, 8, (_m("q", 8, 0), _m("r", 24, 0))),  # 25
    ]


def blob_of(types: list[BtfType]) -> bytes:
    strings = StringTable()
    return build_blob(encode_types(types, strings), bytes(strings.data))


def every_kind_blob() -> bytes:
    return blob_of(every_kind_types())


def _records(blob: bytes) -> list[tuple[int, int]]:
    """(byte offset, byte length) of each type record of a well-formed blob."""
    hdr = HEADER.unpack_from(blob)
    btf = Btf.from_bytes(blob)
    start = hdr[3] + hdr[4]
    out, pos = [], start
    for t in btf.types[1:]:
        info = struct.unpack_from("<I", blob, pos + 4)[0]
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        extra = {1: 4, 3: 12, 4: 12 * vlen, 5: 12 * vlen, 6: 8 * vlen, 13: 8 * vlen,
                 14: 4, 15: 12 * vlen, 17: 4, 19: 12 * vlen}.get(kind, 0)
        out.append((pos, 12 + extra))
        pos += 12 + extra
        del t
    return out


def _put(blob: bytes, off: int, value: int) -> bytes:
    return blob[:off] + struct.pack("<I", value & 0xFFFFFFFF) + blob[off + 4:]


def header_corruptions(blob: bytes) -> Iterator[tuple[str, bytes]]:
    hdr = list(HEADER.unpack_from(blob))
    names = ["magic", "version", "flags", "hdr_len", "type_off", "type_len", "str_off",
             "str_len"]
    picks = {
        "magic": [0, 0x9FEB, 0xEB9E], "version": [0, 2, 255], "flags": [1, 0x80],
        "hdr_len": [0, 8, 20, 23, 25, 28, 32, 1 << 20],
        "type_off": [1, 2, 4, hdr[6], 1 << 31], "type_len": [0, 4, 11, hdr[5] - 4,
                                                            hdr[5] + 4, 0xFFFFFFFF],
        "str_off": [0, hdr[6] - 1, hdr[6] + 1, 0xFFFFFFF0],
        "str_len": [0, 1, hdr[7] - 1, hdr[7] + 1, 0xFFFFFFFF],
    }
    for i, name in enumerate(names):
        for v in picks[name]:
            h = list(hdr)
            h[i] = v & (0xFFFF if i == 0 else 0xFF if i in (1, 2) else 0xFFFFFFFF)
            yield f"hdr.{name}={v:#x}", HEADER.pack(*h) + blob[24:]
    yield "truncated-7", blob[:7]
    yield "header-only", blob[:24]
    yield "extended-header-nonzero", _extend_header(blob, b"\1\0\0\0")
    yield "extended-header-zero", _extend_header(blob, b"\0\0\0\0")
    yield "string-not-nul-terminated", blob[:-1] + b"x"
    yield "string-not-starting-empty", _put_byte(blob, 24 + hdr[6], 0x41)
    yield "trailing-garbage", blob + b"\0\0\0\0"


def _put_byte(blob: bytes, off: int, value: int) -> bytes:
    return blob[:off] + bytes([value]) + blob[off + 1:]


def _extend_header(blob: bytes, extra: bytes) -> bytes:
    hdr = list(HEADER.unpack_from(blob))
    hdr[3] += len(extra)
    return HEADER.pack(*hdr) + extra + blob[24:]


def record_corruptions(blob: bytes) -> Iterator[tuple[str, bytes]]:
    """Per type record: kind, vlen, kind_flag, size/type, name offset, each extra word."""
    hdr = HEADER.unpack_from(blob)
    str_len = hdr[7]
    recs = _records(blob)
    ntypes = len(recs)
    for tid, (off, length) in enumerate(recs, 1):
        name_off, info, st = struct.unpack_from("<III", blob, off)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        for k in range(0, 21):
            if k != kind:
                yield f"[{tid}].kind={k}", _put(blob, off + 4, (info & ~(0x1F << 24)) | k << 24)
        yield f"[{tid}].kind=31", _put(blob, off + 4, (info & ~(0x1F << 24)) | 31 << 24)
        for dv in (1, -1, 2, 0x100):
            if 0 <= vlen + dv <= 0xFFFF:
                yield f"[{tid}].vlen{dv:+}", _put(blob, off + 4, (info & ~0xFFFF) | (vlen + dv))
        yield f"[{tid}].kflag^", _put(blob, off + 4, info ^ (1 << 31))
        yield f"[{tid}].info-bit29", _put(blob, off + 4, info | (1 << 29))
        for v in (0, 1, 3, 7, 16, 17, ntypes, ntypes + 1, tid, 0x100000, 0xFFFFFFFF, st + 1,
                  st - 1):
            if v != st:
                yield f"[{tid}].size_type={v & 0xFFFFFFFF:#x}", _put(blob, off + 8, v)
        for v in (0, 1, str_len - 1, str_len, 0x1000000):
            if v != name_off:
                yield f"[{tid}].name_off={v:#x}", _put(blob, off, v)
        for w in range(12, length, 4):
            old = struct.unpack_from("<I", blob, off + w)[0]
            for v in (0, 1, 5, 8, 9, 31, 33, 64, ntypes, ntypes + 1, old + 1, old + 8,
                      old | 0x80000000, 0xFFFFFFFF, 1 << 24 | old, str_len):
                v &= 0xFFFFFFFF
                if v != old:
                    yield f"[{tid}]+{w}={v:#x}", _put(blob, off + w, v)


def corruptions(blob: bytes) -> Iterator[tuple[str, bytes]]:
    yield from header_corruptions(blob)
    yield from record_corruptions(blob)


def special_blobs() -> Iterator[tuple[str, bytes]]:
    """Hand-written cases for rules a single-word mutation does not reach."""
    I = BtfInt(1, "int", 0, False, 4, IntEncoding.SIGNED, 0, 32)  # noqa: E741
    yield "ptr-cycle", blob_of([I, BtfPtr(2, "", 0, False, 3), BtfPtr(3, "", 0, False, 2)])
    yield "typedef-cycle", blob_of([I, BtfTypedef(2, "a", 0, False, 3),
                                    BtfTypedef(3, "b", 0, False, 2)])
    yield "struct-self", blob_of([I, BtfStruct(2, "s", 0, False, 4, (_m("s", 2, 0),))])
    yield "struct-via-ptr", blob_of([I, BtfStruct(2, "s", 0, False, 8, (_m("n", 3, 0),)),
                                     BtfPtr(3, "", 0, False, 2)])
    chain: list[BtfType] = [I]
    for i in range(2, 40):
        chain.append(BtfConst(i, "", 0, False, i - 1))
    yield "long-const-chain", blob_of(chain)
    arr: list[BtfType] = [I]
    for i in range(2, 40):
        arr.append(BtfArray(i, "", 0, False, i - 1, 1, 1))
    yield "deep-arrays", blob_of(arr)
    yield "tag-after-const", blob_of([I, BtfConst(2, "", 0, False, 1),
                                      BtfTypeTag(3, "t", 0, False, 2),
                                      BtfPtr(4, "", 0, False, 3)])
    yield "const-after-tag", blob_of([I, BtfTypeTag(2, "t", 0, False, 1),
                                      BtfConst(3, "", 0, False, 2)])
    yield "typetag-kflag", blob_of([I, BtfTypeTag(2, "attr", 0, True, 1),
                                    BtfPtr(3, "", 0, False, 2)])
    yield "decltag-kflag", blob_of([I, BtfVar(2, "v", 0, False, 1, 0),
                                    BtfDeclTag(3, "attr", 0, True, 2, -1)])
    yield "decltag-idx-var", blob_of([I, BtfVar(2, "v", 0, False, 1, 0),
                                      BtfDeclTag(3, "x", 0, False, 2, 0)])
    yield "func-extern", blob_of([I, BtfFuncProto(2, "", 0, False, 1, ()),
                                  BtfFunc(3, "f", 0, False, 2, 2)])
    yield "func-unnamed-arg", blob_of([I, BtfFuncProto(2, "", 0, False, 1,
                                                       (BtfParam("", 0, 1),)),
                                       BtfFunc(3, "f", 0, False, 2, 0)])
    yield "func-not-proto", blob_of([I, BtfFunc(2, "f", 0, False, 1, 0)])
    yield "proto-void-arg", blob_of([I, BtfFuncProto(2, "", 0, False, 1,
                                                     (BtfParam("a", 0, 0), BtfParam("b", 0, 1)))])
    yield "proto-only-vararg", blob_of([I, BtfFuncProto(2, "", 0, False, 0,
                                                        (BtfParam("", 0, 0),))])
    yield "proto-ret-var", blob_of([I, BtfVar(2, "v", 0, False, 1, 0),
                                    BtfFuncProto(3, "", 0, False, 2, ())])
    yield "var-extern", blob_of([I, BtfVar(2, "v", 0, False, 1, 2)])
    yield "var-of-fwd", blob_of([BtfFwd(1, "f", 0, False), BtfVar(2, "v", 0, False, 1, 0)])
    yield "datasec-non-var", blob_of([I, BtfDatasec(2, ".d", 0, False, 4,
                                                    (BtfVarSecinfo(1, 0, 4),))])
    yield "datasec-small", blob_of([I, BtfVar(2, "v", 0, False, 1, 0),
                                    BtfDatasec(3, ".d", 0, False, 4, (BtfVarSecinfo(2, 0, 2),))])
    yield "datasec-name-space", blob_of([I, BtfVar(2, "v", 0, False, 1, 0),
                                         BtfDatasec(3, ".d x", 0, False, 4,
                                                    (BtfVarSecinfo(2, 0, 4),))])
    yield "datasec-name-tab", blob_of([I, BtfVar(2, "v", 0, False, 1, 0),
                                       BtfDatasec(3, ".d\tx", 0, False, 4,
                                                  (BtfVarSecinfo(2, 0, 4),))])
    yield "name-latin1", blob_of([BtfStruct(1, "caf\xe9", 0, False, 0, ())])
    yield "name-utf8", blob_of([BtfStruct(1, "café", 0, False, 0, ())])
    yield "name-512", blob_of([BtfStruct(1, "a" * 512, 0, False, 0, ())])
    yield "name-513", blob_of([BtfStruct(1, "a" * 513, 0, False, 0, ())])
    yield "name-2000", blob_of([BtfStruct(1, "a" * 2000, 0, False, 0, ())])
    yield "name-digit", blob_of([BtfStruct(1, "1abc", 0, False, 0, ())])
    yield "name-dot", blob_of([BtfStruct(1, ".abc", 0, False, 0, ())])
    yield "name-dash", blob_of([BtfTypedef(1, "a-b", 0, False, 0)])
    yield "typedef-void", blob_of([BtfTypedef(1, "v", 0, False, 0)])
    yield "array-of-void", blob_of([I, BtfArray(2, "", 0, False, 0, 1, 1)])
    yield "array-bad-index", blob_of([I, BtfPtr(2, "", 0, False, 1),
                                      BtfArray(3, "", 0, False, 1, 2, 4)])
    yield "array-overflow", blob_of([I, BtfArray(2, "", 0, False, 1, 1, 0x40000000),
                                     BtfArray(3, "", 0, False, 2, 1, 2)])
    yield "array-bitint", blob_of([BtfInt(1, "i3", 0, False, 1, IntEncoding.NONE, 0, 3),
                                   BtfInt(2, "int", 0, False, 4, IntEncoding.NONE, 0, 32),
                                   BtfArray(3, "", 0, False, 1, 2, 4)])
    yield "member-too-far", blob_of([I, BtfStruct(2, "s", 0, False, 4, (_m("a", 1, 8),))])
    yield "member-ptr-small", blob_of([I, BtfPtr(2, "", 0, False, 1),
                                       BtfStruct(3, "s", 0, False, 4, (_m("a", 2, 0),))])
    yield "member-unaligned", blob_of([I, BtfStruct(2, "s", 0, False, 8, (_m("a", 3, 4),)),
                                       BtfPtr(3, "", 0, False, 1)])
    yield "bitfield-too-wide", blob_of([I, BtfStruct(2, "s", 0, True, 4,
                                                     (_m("a", 1, 0, 33),))])
    yield "bitfield-enum", blob_of([BtfEnum(1, "e", 0, False, 4, ()),
                                    BtfStruct(2, "s", 0, True, 4, (_m("a", 1, 3, 5),))])
    yield "float-misaligned", blob_of([BtfFloat(1, "float", 0, False, 4),
                                       BtfStruct(2, "s", 0, False, 8, (_m("a", 1, 16),))])
    yield "decltag-on-int", blob_of([I, BtfDeclTag(2, "x", 0, False, 1, -1)])
    yield "decltag-bad-idx", blob_of([I, BtfStruct(2, "s", 0, False, 4, (_m("a", 1, 0),)),
                                      BtfDeclTag(3, "x", 0, False, 2, 1)])
    yield "decltag-func-param", blob_of([I, BtfFuncProto(2, "", 0, False, 1,
                                                         (BtfParam("a", 0, 1),)),
                                         BtfFunc(3, "f", 0, False, 2, 0),
                                         BtfDeclTag(4, "x", 0, False, 3, 0),
                                         BtfDeclTag(5, "y", 0, False, 3, 1)])
    yield "int128", blob_of([BtfInt(1, "__int128", 0, False, 16, IntEncoding.SIGNED, 0, 128)])
    yield "int-bool-char", blob_of([BtfInt(1, "_Bool", 0, False, 1, IntEncoding.BOOL, 0, 8),
                                    BtfInt(2, "char", 0, False, 1, IntEncoding.CHAR, 0, 8)])
    yield "enum-signed-neg", blob_of([BtfEnum(1, "e", 0, True, 4,
                                              (BtfEnumValue("M", 0, -1),))])
    yield "enum-size-3", blob_of([BtfEnum(1, "e", 0, False, 3, ())])
    yield "empty-struct", blob_of([BtfStruct(1, "", 0, False, 0, ())])
    yield "zero-len-array-member", blob_of([I, BtfArray(2, "", 0, False, 1, 1, 0),
                                            BtfStruct(3, "s", 0, False, 4,
                                                      (_m("a", 1, 0), _m("b", 2, 32)))])
