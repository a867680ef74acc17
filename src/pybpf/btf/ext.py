"""``.BTF.ext``: per-instruction BTF info that clang emits next to ``.BTF``.

Three sub-sections, each a record size followed by per-ELF-section groups of records:

- ``func_info`` (``struct bpf_func_info``: insn_off, type_id) — one per function, what
  BPF_PROG_LOAD takes as ``func_info`` so the verifier knows every subprogram's prototype;
- ``line_info`` (``struct bpf_line_info``: insn_off, file_name_off, line_off, line_col) —
  source lines, later mapped to JIT offsets (``bpf_prog_fill_jited_linfo``);
- ``core_relo`` (``struct bpf_core_relo``: insn_off, type_id, access_str_off, kind) — the
  CO-RE relocations libbpf resolves against the target kernel's BTF.

In the ELF file ``insn_off`` is a *byte* offset inside the named section; the loader turns
it into an instruction index relative to the program it ends up in (libbpf's
``adjust_prog_btf_ext_info``). Records are kept as small named tuples; parsing checks the
same things libbpf's ``btf_ext_parse_sec_info`` does and reports them as
:class:`~pybpf.btf.raw.BtfFormatError` with libbpf's wording.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

from pybpf.btf.raw import BTF_MAGIC, Btf, BtfFormatError

#: ``struct btf_ext_header`` up to ``line_info_len`` (the minimal header) and with CO-RE.
BTF_EXT_MIN_HEADER = 24
BTF_EXT_CORE_HEADER = 32


class FuncInfo(NamedTuple):
    """``struct bpf_func_info``; ``insn_off`` in bytes (ELF) or instructions (loaded)."""

    insn_off: int
    type_id: int


class LineInfo(NamedTuple):
    """``struct bpf_line_info``; ``line_col`` = line << 10 | column."""

    insn_off: int
    file_name_off: int
    line_off: int
    line_col: int

    @property
    def line(self) -> int:
        return self.line_col >> 10

    @property
    def col(self) -> int:
        return self.line_col & 0x3FF


class CoreReloKind(IntEnum):
    """``enum bpf_core_relo_kind``."""

    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12


#: libbpf's ``core_relo_kind_str`` spellings, used in its messages.
CORE_RELO_KIND_STR = {
    CoreReloKind.FIELD_BYTE_OFFSET: "byte_off", CoreReloKind.FIELD_BYTE_SIZE: "byte_sz",
    CoreReloKind.FIELD_EXISTS: "field_exists", CoreReloKind.FIELD_SIGNED: "signed",
    CoreReloKind.FIELD_LSHIFT_U64: "lshift_u64", CoreReloKind.FIELD_RSHIFT_U64: "rshift_u64",
    CoreReloKind.TYPE_ID_LOCAL: "local_type_id", CoreReloKind.TYPE_ID_TARGET: "target_type_id",
    CoreReloKind.TYPE_EXISTS: "type_exists", CoreReloKind.TYPE_MATCHES: "type_matches",
    CoreReloKind.TYPE_SIZE: "type_size", CoreReloKind.ENUMVAL_EXISTS: "enumval_exists",
    CoreReloKind.ENUMVAL_VALUE: "enumval_value",
}


class CoreRelo(NamedTuple):
    """``struct bpf_core_relo``."""

    insn_off: int
    type_id: int
    access_str_off: int
    kind: int


@dataclass(slots=True)
class ExtSection:
    """The records of one sub-section that belong to one ELF section (by name)."""

    sec_name: str
    records: list = field(default_factory=list)


@dataclass(slots=True)
class BtfExt:
    """A parsed ``.BTF.ext``: record sizes and per-section records of each kind."""

    func_info_rec_size: int = 8
    line_info_rec_size: int = 16
    core_relo_rec_size: int = 16
    func_info: list[ExtSection] = field(default_factory=list)
    line_info: list[ExtSection] = field(default_factory=list)
    core_relos: list[ExtSection] = field(default_factory=list)

    @classmethod
    def from_bytes(cls, data: bytes, btf: Btf) -> BtfExt:
        """Parse ``data``; section names are offsets into ``btf``'s string section."""
        return _parse(bytes(data), btf)

    def section(self, kind: str, sec_name: str) -> list:
        """The records of ``kind`` (``func_info``/``line_info``/``core_relos``) for a section."""
        for sec in getattr(self, kind):
            if sec.sec_name == sec_name:
                return sec.records
        return []


_MIN_REC = {"func_info": 8, "line_info": 16, "core_relo": 16}
_REC_TYPES: dict[str, type] = {"func_info": FuncInfo, "line_info": LineInfo,
                               "core_relo": CoreRelo}


def _parse(data: bytes, btf: Btf) -> BtfExt:
    if len(data) < BTF_EXT_MIN_HEADER:
        raise BtfFormatError(".BTF.ext header not found")
    magic = int.from_bytes(data[:2], "little")
    if magic == BTF_MAGIC:
        e = "<"
    elif int.from_bytes(data[:2], "big") == BTF_MAGIC:
        e = ">"
    else:
        raise BtfFormatError(f"Invalid BTF.ext magic:{magic:x}")
    version, flags, hdr_len = struct.unpack_from(e + "BBI", data, 2)
    if version != 1:
        raise BtfFormatError(f"Unsupported BTF.ext version:{version}")
    if flags:
        raise BtfFormatError(f"Unsupported BTF.ext flags:{flags:x}")
    if hdr_len < BTF_EXT_MIN_HEADER or hdr_len > len(data):
        raise BtfFormatError(f"BTF.ext header length {hdr_len} is invalid")
    fi_off, fi_len, li_off, li_len = struct.unpack_from(e + "IIII", data, 8)
    ext = BtfExt()
    ext.func_info_rec_size, ext.func_info = _parse_info(
        data, e, hdr_len, fi_off, fi_len, "func_info", btf)
    ext.line_info_rec_size, ext.line_info = _parse_info(
        data, e, hdr_len, li_off, li_len, "line_info", btf)
    if hdr_len >= BTF_EXT_CORE_HEADER:
        cr_off, cr_len = struct.unpack_from(e + "II", data, 24)
        ext.core_relo_rec_size, ext.core_relos = _parse_info(
            data, e, hdr_len, cr_off, cr_len, "core_relo", btf)
    return ext


def _parse_info(data: bytes, e: str, hdr_len: int, off: int, length: int, desc: str,
                btf: Btf) -> tuple[int, list[ExtSection]]:
    min_rec = _MIN_REC[desc]
    if length == 0:
        return min_rec, []
    if off & 3:
        raise BtfFormatError(f".BTF.ext {desc} section is not aligned to 4 bytes")
    start = hdr_len + off
    if start + length > len(data):
        raise BtfFormatError(f"{desc} section (off:{off} len:{length}) is beyond the end "
                             "of the ELF section .BTF.ext")
    end = start + length
    if length < 4:
        raise BtfFormatError(f".BTF.ext {desc} record size not found")
    rec_size, = struct.unpack_from(e + "I", data, start)
    if rec_size < min_rec or rec_size & 3:
        raise BtfFormatError(f"{desc} section in .BTF.ext has invalid record size {rec_size}")
    pos = start + 4
    if pos == end:
        raise BtfFormatError(f"{desc} section in .BTF.ext has no records")
    rec_type = _REC_TYPES[desc]
    nfields = len(rec_type._fields)  # type: ignore[attr-defined]
    fmt = struct.Struct(e + "I" * nfields)
    sections: list[ExtSection] = []
    while pos < end:
        if end - pos < 8:
            raise BtfFormatError(f"{desc} section header is not found in .BTF.ext")
        name_off, num = struct.unpack_from(e + "II", data, pos)
        pos += 8
        if num == 0 or end - pos < num * rec_size:
            raise BtfFormatError(f"{desc} section has incorrect num_records in .BTF.ext")
        try:
            name = btf.string(name_off)
        except (BtfFormatError, KeyError):
            raise BtfFormatError(f"{desc} section name offset {name_off} is invalid") from None
        recs = [rec_type(*fmt.unpack_from(data, pos + i * rec_size)) for i in range(num)]
        pos += num * rec_size
        sections.append(ExtSection(name, recs))
    return rec_size, sections
