"""The ELF side of a BPF object file, read eagerly with pyelftools into plain records.

pyelftools parses lazily and raises a zoo of exceptions (``ELFError``, ``struct.error``,
``IndexError``, ``UnicodeDecodeError``…) on damaged input. This module touches every part
the loader needs — header, section headers and contents, the symbol table, ``SHT_REL``
entries — once, inside one guard, and turns any failure into a
:class:`~pybpf.loader.errors.LoaderError` with libbpf's message. Everything after this
works on :class:`ElfObject`, which cannot fail to read.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from pybpf.loader.errors import LibbpfErrno, LoaderError, fmt_error

EM_BPF = 247
ET_REL = 1
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOBITS = 8
SHT_REL = 9
SHT_LLVM_ADDRSIG = 0x6FFF4C03
SHF_WRITE = 0x1
SHF_EXECINSTR = 0x4
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2

STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STV_DEFAULT, STV_INTERNAL, STV_HIDDEN = 0, 1, 2

R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10


@dataclass(slots=True)
class Section:
    idx: int
    name: str
    type: int
    flags: int
    size: int
    link: int
    info: int
    entsize: int
    data: bytes  # empty for SHT_NOBITS


@dataclass(slots=True)
class Symbol:
    idx: int
    name: str
    name_off: int
    value: int
    size: int
    bind: int
    type: int
    visibility: int
    shndx: int


@dataclass(slots=True)
class Rel:
    offset: int
    sym: int
    type: int


@dataclass(slots=True)
class ElfObject:
    """What the loader needs from an ELF file; ``sections[i]`` is section index ``i``."""

    path: str
    little_endian: bool
    machine: int
    sections: list[Section]
    symbols: list[Symbol]
    symtab_idx: int
    strtab_idx: int
    rels: dict[int, list[Rel]] = field(default_factory=dict)  # by SHT_REL section index

    def section_by_name(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def sec_name(self, idx: int) -> str:
        return self.sections[idx].name if 0 <= idx < len(self.sections) else "<?>"


def read_elf(data: bytes, path: str = "<memory>") -> ElfObject:
    """Parse ``data`` as a BPF ELF relocatable object, the way libbpf's elf_init does."""
    try:
        return _read(data, path)
    except LoaderError:
        raise
    except Exception as exc:  # pyelftools raises many kinds on corrupted input
        raise fmt_error(f"elf: failed to parse {path}: {type(exc).__name__}: {exc}") from None


def _read(data: bytes, path: str) -> ElfObject:
    from elftools.elf.elffile import ELFFile  # imported lazily: optional dependency

    if data[:4] != b"\x7fELF":
        raise LoaderError(LibbpfErrno.LIBELF, f"elf: '{path}' is not a proper ELF object")
    if len(data) < 64 or data[4] != 2:
        raise fmt_error(f"elf: '{path}' is not a 64-bit ELF object")
    if data[5] not in (1, 2):
        raise LoaderError(LibbpfErrno.ENDIAN, f"elf: '{path}' has unknown byte order")
    little = data[5] == 1
    elf = ELFFile(io.BytesIO(data))
    hdr = elf.header
    e_type = hdr["e_type"]
    machine = _machine_number(hdr["e_machine"])
    if e_type not in ("ET_REL", ET_REL) or (machine and machine != EM_BPF):
        raise fmt_error(f"elf: {path} is not a valid eBPF object file")
    nsec = elf.num_sections()
    if nsec == 0:
        raise fmt_error(f"elf: failed to get section names section index for {path}")
    shstrndx = elf.get_shstrndx()
    if not 0 < shstrndx < nsec:
        raise fmt_error(f"elf: failed to get section names strings from {path}")
    shstr = _section_bytes(data, elf._get_section_header(shstrndx), path)

    sections: list[Section] = []
    for i in range(nsec):
        sh = elf._get_section_header(i)
        stype = _sh_type_number(sh["sh_type"])
        name = _cstr(shstr, sh["sh_name"], path, "section name")
        content = b"" if stype == SHT_NOBITS or i == 0 else _section_bytes(data, sh, path)
        sections.append(Section(i, name, stype, sh["sh_flags"], sh["sh_size"], sh["sh_link"],
                                sh["sh_info"], sh["sh_entsize"], content))

    symtabs = [s for s in sections if s.type == SHT_SYMTAB]
    if len(symtabs) > 1:
        raise fmt_error(f"elf: multiple symbol tables in {path}")
    if not symtabs:
        raise LoaderError(2, f"elf: couldn't find symbol table in {path}, stripped object file?")
    symtab = symtabs[0]
    if not 0 < symtab.link < nsec or sections[symtab.link].type != SHT_STRTAB:
        raise fmt_error(f"elf: symbol strings section missing or invalid in {path}")
    strtab = sections[symtab.link].data
    symbols = _parse_symbols(symtab.data, strtab, little, path)

    rels: dict[int, list[Rel]] = {}
    for s in sections:
        if s.type != SHT_REL:
            continue
        if s.entsize != 16 or s.info >= nsec:
            continue  # libbpf rejects this only for relocations it uses; checked there
        fmt = struct.Struct(("<" if little else ">") + "QQ")
        n = len(s.data) // 16
        rels[s.idx] = [Rel(off, info >> 32, info & 0xFFFFFFFF)
                       for off, info in (fmt.unpack_from(s.data, k * 16) for k in range(n))]
    return ElfObject(path, little, machine, sections, symbols, symtab.idx, symtab.link, rels)


def _machine_number(m: object) -> int:
    if isinstance(m, int):
        return m
    return {"EM_BPF": EM_BPF, "EM_NONE": 0}.get(str(m), -1)


_SH_TYPES = {"SHT_NULL": 0, "SHT_PROGBITS": 1, "SHT_SYMTAB": 2, "SHT_STRTAB": 3,
             "SHT_RELA": 4, "SHT_HASH": 5, "SHT_DYNAMIC": 6, "SHT_NOTE": 7, "SHT_NOBITS": 8,
             "SHT_REL": 9, "SHT_LLVM_ADDRSIG": SHT_LLVM_ADDRSIG}


def _sh_type_number(t: object) -> int:
    if isinstance(t, int):
        return t
    return _SH_TYPES.get(str(t), 0x7FFFFFFF)


def _section_bytes(data: bytes, sh: object, path: str) -> bytes:
    off, size = sh["sh_offset"], sh["sh_size"]  # type: ignore[index]
    if off + size > len(data):
        raise fmt_error(f"elf: section at offset {off} size {size} extends past the end "
                        f"of {path} ({len(data)} bytes)")
    return data[off: off + size]


def _cstr(table: bytes, off: int, path: str, what: str) -> str:
    if not 0 <= off < len(table):
        raise fmt_error(f"elf: {what} offset {off} outside string table in {path}")
    end = table.find(b"\0", off)
    if end < 0:
        raise fmt_error(f"elf: unterminated {what} at offset {off} in {path}")
    return table[off:end].decode("utf-8", "surrogateescape")


def _parse_symbols(raw: bytes, strtab: bytes, little: bool, path: str) -> list[Symbol]:
    fmt = struct.Struct(("<" if little else ">") + "IBBHQQ")
    out = []
    for i in range(len(raw) // 24):
        name_off, info, other, shndx, value, size = fmt.unpack_from(raw, i * 24)
        name = _cstr(strtab, name_off, path, "symbol name") if name_off else ""
        out.append(Symbol(i, name, name_off, value, size, info >> 4, info & 0xF, other & 3,
                          shndx))
    return out
