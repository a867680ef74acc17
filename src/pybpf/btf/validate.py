"""Check a BTF blob the way ``BPF_BTF_LOAD`` does (``btf_parse`` in kernel/bpf/btf.c).

The kernel's checks run in four passes, and so do ours, in the same order, so the first
problem found — and therefore the errno and the last log line — is the kernel's:

1. the header (``btf_parse_hdr``) and the placement of the two sections;
2. the string section (``btf_parse_str_sec``);
3. every record's *meta* (``btf_check_meta``: layout, names, flags, sizes), logging each
   type as it goes — this is why a successful load's log lists every type;
4. *resolution* (``btf_check_all_types``): an explicit depth-first walk over the type
   graph with a 32-deep stack, in one of three modes (behind a pointer, inside a
   struct/array, or undecided), which sizes every array, checks every member against its
   struct and every FUNC/FUNC_PROTO/VAR/DATASEC/DECL_TAG target, and finds cycles;
   then the type-tag ordering rule (``btf_check_type_tags``).

The log is the verifier-log-style text the kernel writes at ``btf_log_level`` 1 (level 2
adds nothing for BTF): the header fields, one line per type (with its members, enum values
or section entries), and the message of the failing check. Like ``bpf_verifier_vlog``,
each formatted piece is cut at 1023 bytes. Name bytes are kept exactly: the returned text
is decoded with ``surrogateescape``, so ``log.encode("utf-8", "surrogateescape")`` gives
the kernel's bytes. Character classes follow the kernel's Latin-1 ``ctype`` table.

Not modelled: the special-field records the kernel builds after validation
(``btf_parse_struct_metas``: ``bpf_spin_lock``, ``bpf_list_head``, kptr tags …), which
can still reject a blob that passes these checks; and split (module) BTF, which user
space cannot load.

Public entry point: :func:`btf_check`.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

from pybpf.btf.raw import Btf, BtfFormatError

ENOTSUPP = 524  # the kernel-internal errno BTF_LOAD lets escape for unsupported features

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
BTF_HEADER_SIZE = 24
BTF_MAX_SIZE = 16 * 1024 * 1024
BTF_MAX_TYPE = 0x000FFFFF
BTF_MAX_NAME_OFFSET = 0x00FFFFFF
BTF_INFO_MASK = 0x9F00FFFF
BTF_INT_MASK = 0x0FFFFFFF
BTF_KIND_MAX = 19
MAX_RESOLVE_DEPTH = 32
KSYM_NAME_LEN = 512
#: ``BPF_VERIFIER_TMP_LOG_SIZE``: one formatted log piece is at most this minus the NUL.
LOG_PIECE_MAX = 1023
U32 = 0xFFFFFFFF

# kinds
UNKN, INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, \
    FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(20)

KIND_STR = ("UNKNOWN", "INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM", "FWD", "TYPEDEF",
            "VOLATILE", "CONST", "RESTRICT", "FUNC", "FUNC_PROTO", "VAR", "DATASEC", "FLOAT",
            "DECL_TAG", "TYPE_TAG", "ENUM64")

_MODIFIERS = frozenset({TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG})
_HAS_SIZE = frozenset({INT, STRUCT, UNION, ENUM, DATASEC, FLOAT, ENUM64})
_NEEDS_RESOLVE = _MODIFIERS | {PTR, STRUCT, UNION, ARRAY, VAR, FUNC, DECL_TAG, DATASEC}
_SOURCE_ONLY = frozenset({VAR, DECL_TAG, DATASEC})

# resolve modes and visit states
RESOLVE_TBD, RESOLVE_PTR, RESOLVE_STRUCT_OR_ARRAY = range(3)
NOT_VISITED, VISITED, RESOLVED = range(3)
CHECK_META, CHECK_TYPE = range(2)


# --------------------------------------------------------------------------- ctype


def _latin1_classes() -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
    """(alpha, alnum, print) byte sets of the kernel's ``lib/ctype.c`` (ISO-8859-1)."""
    upper = set(range(0x41, 0x5B)) | set(range(0xC0, 0xD7)) | set(range(0xD8, 0xDF))
    lower = set(range(0x61, 0x7B)) | set(range(0xDF, 0xF7)) | set(range(0xF8, 0x100))
    digit = set(range(0x30, 0x3A))
    punct = (set(range(0x21, 0x30)) | set(range(0x3A, 0x41)) | set(range(0x5B, 0x61))
             | set(range(0x7B, 0x7F)) | set(range(0xA1, 0xC0)) | {0xD7, 0xF7})
    space = {0x20, 0xA0}
    alpha = upper | lower
    return frozenset(alpha), frozenset(alpha | digit), frozenset(alpha | digit | punct | space)


_ALPHA, _ALNUM, _PRINT = _latin1_classes()
_UNDERSCORE, _DOT = 0x5F, 0x2E


# --------------------------------------------------------------------------- records


class _Type:
    """One ``struct btf_type`` record as the kernel sees it (no interpretation yet)."""

    __slots__ = ("id", "info", "kflag", "kind", "name_off", "off", "st", "vlen")

    def __init__(self, tid: int, off: int, name_off: int, info: int, st: int) -> None:
        self.id = tid
        self.off = off  # byte offset of the record in the blob
        self.name_off = name_off
        self.info = info
        self.st = st  # size or type
        self.kind = (info >> 24) & 0x1F
        self.vlen = info & 0xFFFF
        self.kflag = bool(info >> 31)


_VOID = _Type(0, -1, 0, 0, 0)


class _Fail(Exception):
    """A check failed; the message is already in the log."""

    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.errno = err


@dataclass
class _Vertex:
    t: _Type
    type_id: int
    next_member: int = 0


@dataclass
class BtfCheckResult:
    """Outcome of :func:`check`: ``errno`` 0 when the kernel would accept the blob."""

    errno: int
    log: str
    btf: Btf | None = None
    types: int = 0
    hdr: dict[str, int] = field(default_factory=dict)


class _Verifier:
    """``struct btf_verifier_env`` plus the parsed ``struct btf`` it checks."""

    def __init__(self, data: bytes, log_level: int) -> None:
        self.data = data
        self.log_on = log_level != 0
        self.pieces: list[bytes] = []
        self.hdr = dict(magic=0, version=0, flags=0, hdr_len=0, type_off=0, type_len=0,
                        str_off=0, str_len=0)
        self.strings = b""
        self.types: list[_Type] = [_VOID]
        self.log_type_id = 1
        self.phase = CHECK_META
        self.resolve_mode = RESOLVE_TBD
        self.stack: list[_Vertex] = []
        self.visit: list[int] = []
        self.resolved_ids: list[int] = []
        self.resolved_sizes: list[int] = []

    # ---------------------------------------------------------------- log

    def log(self, text: str) -> None:
        """``bpf_verifier_vlog``: one printf into the log, cut at 1023 bytes."""
        if self.log_on:
            self.pieces.append(text.encode("utf-8", "surrogateescape")[:LOG_PIECE_MAX])

    def name(self, off: int) -> str:
        """``__btf_name_by_offset``."""
        if not off:
            return "(anon)"
        s = self.str_at(off)
        return "(invalid-name-offset)" if s is None else s.decode("utf-8", "surrogateescape")

    def log_type(self, t: _Type, msg: str | None = None, details: bool = True) -> None:
        """``btf_verifier_log_type`` (``details``) / ``btf_verifier_log_basic``."""
        if not self.log_on:
            return
        self.log(f"[{self.log_type_id}] {KIND_STR[t.kind]} {self.name(t.name_off)}"
                 f"{' ' if details else ''}")
        if details:
            self.log_details(t)
        if msg:
            self.log(" ")
            self.log(msg)
        self.log("\n")

    def log_basic(self, t: _Type, msg: str) -> None:
        self.log_type(t, msg, details=False)

    def log_member(self, st: _Type, m: tuple[int, int, int], msg: str | None = None) -> None:
        """``btf_verifier_log_member``; outside CHECK_META the struct is logged first."""
        if not self.log_on:
            return
        if self.phase != CHECK_META:
            self.log_type(st)
        name_off, mtype, moff = m
        if st.kflag:
            self.log(f"\t{self.name(name_off)} type_id={mtype} bitfield_size={moff >> 24} "
                     f"bits_offset={moff & 0xFFFFFF}")
        else:
            self.log(f"\t{self.name(name_off)} type_id={mtype} bits_offset={moff}")
        if msg:
            self.log(" ")
            self.log(msg)
        self.log("\n")

    def log_vsi(self, ds: _Type, vsi: tuple[int, int, int], msg: str | None = None) -> None:
        if not self.log_on:
            return
        if self.phase != CHECK_META:
            self.log_type(ds)
        self.log(f"\t type_id={vsi[0]} offset={vsi[1]} size={vsi[2]}")
        if msg:
            self.log(" ")
            self.log(msg)
        self.log("\n")

    def log_details(self, t: _Type) -> None:
        k = t.kind
        if k == INT:
            d = self.word(t, 0)
            enc = (d >> 24) & 0xF
            encs = {0: "(none)", 1: "SIGNED", 2: "CHAR", 4: "BOOL"}.get(enc, "UNKN")
            self.log(f"size={t.st} bits_offset={(d >> 16) & 0xFF} nr_bits={d & 0xFF} "
                     f"encoding={encs}")
        elif k in (PTR, FUNC) or k in _MODIFIERS:
            self.log(f"type_id={t.st}")
        elif k == FWD:
            self.log("union" if t.kflag else "struct")
        elif k == ARRAY:
            self.log(f"type_id={self.word(t, 0)} index_type_id={self.word(t, 1)} "
                     f"nr_elems={self.word(t, 2)}")
        elif k in (STRUCT, UNION, ENUM, ENUM64, DATASEC):
            self.log(f"size={t.st} vlen={t.vlen}")
        elif k == FUNC_PROTO:
            self.log_proto(t)
        elif k == VAR:
            self.log(f"type_id={t.st} linkage={self.word(t, 0)}")
        elif k == FLOAT:
            self.log(f"size={t.st}")
        elif k == DECL_TAG:
            self.log(f"type={t.st} component_idx={_s32(self.word(t, 0))}")

    def log_proto(self, t: _Type) -> None:
        args = [self.pair(t, i) for i in range(t.vlen)]
        self.log(f"return={t.st} args=(")
        if not args:
            self.log("void")
        elif len(args) == 1 and not args[0][1]:
            self.log("vararg")
        else:
            self.log(f"{args[0][1]} {self.name(args[0][0])}")
            for a in args[1:-1]:
                self.log(f", {a[1]} {self.name(a[0])}")
            if len(args) > 1:
                last = args[-1]
                self.log(f", {last[1]} {self.name(last[0])}" if last[1] else ", vararg")
        self.log(")")

    def text(self) -> str:
        return b"".join(self.pieces).decode("utf-8", "surrogateescape")

    # ---------------------------------------------------------------- raw access

    def u32(self, off: int) -> int:
        return int.from_bytes(self.data[off:off + 4], "little")

    def word(self, t: _Type, i: int) -> int:
        """The ``i``-th 32-bit word after the 12-byte head of ``t``."""
        return self.u32(t.off + 12 + 4 * i)

    def triple(self, t: _Type, i: int) -> tuple[int, int, int]:
        """Member / secinfo / enum64 entry ``i`` (three words)."""
        return struct.unpack_from("<III", self.data, t.off + 12 + 12 * i)

    def pair(self, t: _Type, i: int) -> tuple[int, int]:
        """Enum / param entry ``i`` (two words)."""
        return struct.unpack_from("<II", self.data, t.off + 12 + 8 * i)

    def str_at(self, off: int) -> bytes | None:
        """``btf_str_by_offset``: the NUL-terminated bytes at ``off``, or None."""
        if off >= self.hdr["str_len"]:
            return None
        end = self.strings.find(b"\0", off)
        return self.strings[off:end]

    def name_offset_valid(self, off: int) -> bool:
        return off <= BTF_MAX_NAME_OFFSET and off < self.hdr["str_len"]

    def valid_identifier(self, off: int) -> bool:
        """``btf_name_valid_identifier`` (offset known valid)."""
        s = self.str_at(off) or b""
        if not s or not (s[0] in _ALPHA or s[0] in (_UNDERSCORE, _DOT)):
            return False
        if len(s) > KSYM_NAME_LEN:
            return False
        return all(c in _ALNUM or c in (_UNDERSCORE, _DOT) for c in s[1:])

    def valid_section(self, off: int) -> bool:
        """``btf_name_valid_section``: printable, non-empty, bounded."""
        s = self.str_at(off) or b""
        return bool(s) and len(s) <= KSYM_NAME_LEN and all(c in _PRINT for c in s)

    def by_id(self, tid: int) -> _Type | None:
        return self.types[tid] if 0 <= tid < len(self.types) else None

    # ---------------------------------------------------------------- header + strings

    def parse_hdr(self) -> None:
        data, size = self.data, len(self.data)
        if size < 8:
            self.log("hdr_len not found")
            raise _Fail(errno.EINVAL)
        hdr_len = self.u32(4)
        if size < hdr_len:
            self.log("btf_header not found")
            raise _Fail(errno.EINVAL)
        if hdr_len > BTF_HEADER_SIZE and any(data[BTF_HEADER_SIZE:hdr_len]):
            self.log("Unsupported btf_header")
            raise _Fail(errno.E2BIG)
        raw = data[:min(hdr_len, BTF_HEADER_SIZE)].ljust(BTF_HEADER_SIZE, b"\0")
        vals = struct.unpack("<HBBIIIII", raw)
        self.hdr = dict(zip(self.hdr, vals, strict=True))
        h = self.hdr
        for key, v in h.items():
            self.log(f"{key}: {v:#x}\n" if key in ("magic", "flags") else f"{key}: {v}\n")
        self.log(f"btf_total_size: {size}\n")
        if h["magic"] != BTF_MAGIC:
            self.log("Invalid magic")
            raise _Fail(errno.EINVAL)
        if h["version"] != BTF_VERSION:
            self.log("Unsupported version")
            raise _Fail(ENOTSUPP)
        if h["flags"]:
            self.log("Unsupported flags")
            raise _Fail(ENOTSUPP)
        if size == h["hdr_len"]:
            self.log("No data")
            raise _Fail(errno.EINVAL)
        self.check_sec_info(size)

    def check_sec_info(self, size: int) -> None:
        h = self.hdr
        secs = [(h["type_off"], h["type_len"]), (h["str_off"], h["str_len"])]

        def cmp(x: tuple[int, int], y: tuple[int, int]) -> int:
            return _s32(x[0] - y[0]) or _s32(x[1] - y[1])

        if cmp(secs[0], secs[1]) > 0:
            secs.reverse()
        total, expected = 0, (size - h["hdr_len"]) & U32
        for off, length in secs:
            if expected < off:
                self.log("Invalid section offset")
                raise _Fail(errno.EINVAL)
            if total < off:
                self.log("Unsupported section found")
                raise _Fail(errno.EINVAL)
            if total > off:
                self.log("Section overlap found")
                raise _Fail(errno.EINVAL)
            if expected - total < length:
                self.log("Total section length too long")
                raise _Fail(errno.EINVAL)
            total += length
        if expected != total:
            self.log("Unsupported section found")
            raise _Fail(errno.EINVAL)

    def parse_str_sec(self) -> None:
        h = self.hdr
        start = h["hdr_len"] + h["str_off"]
        end = start + h["str_len"]
        if end != len(self.data):
            self.log("String section is not at the end")
            raise _Fail(errno.EINVAL)
        s = self.data[start:end]
        self.strings = s
        if not s or len(s) - 1 > BTF_MAX_NAME_OFFSET or s[-1] or s[0]:
            self.log("Invalid string section")
            raise _Fail(errno.EINVAL)

    # ---------------------------------------------------------------- pass 3: metas

    def parse_type_sec(self) -> None:
        h = self.hdr
        if h["type_off"] & 3:
            self.log("Unaligned type_off")
            raise _Fail(errno.EINVAL)
        if not h["type_len"]:
            self.log("No type found")
            raise _Fail(errno.EINVAL)
        self.check_all_metas()
        self.check_all_types()

    def check_all_metas(self) -> None:
        h = self.hdr
        cur = h["hdr_len"] + h["type_off"]
        end = cur + h["type_len"]
        self.log_type_id = 1
        while cur < end:
            cur += self.check_meta(cur, end - cur)
            self.log_type_id += 1

    def check_meta(self, off: int, meta_left: int) -> int:
        if meta_left < 12:
            self.log(f"[{self.log_type_id}] meta_left:{meta_left} meta_needed:12")
            raise _Fail(errno.EINVAL)
        name_off, info, st = struct.unpack_from("<III", self.data, off)
        t = _Type(self.log_type_id, off, name_off, info, st)
        if info & ~BTF_INFO_MASK & U32:
            self.log(f"[{self.log_type_id}] Invalid btf_info:{info:x}")
            raise _Fail(errno.EINVAL)
        if t.kind > BTF_KIND_MAX or t.kind == UNKN:
            self.log(f"[{self.log_type_id}] Invalid kind:{t.kind}")
            raise _Fail(errno.EINVAL)
        if not self.name_offset_valid(name_off):
            self.log(f"[{self.log_type_id}] Invalid name_offset:{name_off}")
            raise _Fail(errno.EINVAL)
        extra = _CHECK_META[t.kind](self, t, meta_left - 12)
        if len(self.types) >= BTF_MAX_TYPE:
            self.log("Exceeded max num of types")
            raise _Fail(errno.E2BIG)
        self.types.append(t)
        return 12 + extra

    def fail_type(self, t: _Type, msg: str, err: int = errno.EINVAL) -> _Fail:
        self.log_type(t, msg)
        return _Fail(err)

    def need_meta(self, t: _Type, meta_left: int, needed: int) -> None:
        if meta_left < needed:
            self.log_basic(t, f"meta_left:{meta_left} meta_needed:{needed}")
            raise _Fail(errno.EINVAL)

    def meta_int(self, t: _Type, meta_left: int) -> int:
        self.need_meta(t, meta_left, 4)
        if t.vlen:
            raise self.fail_type(t, "vlen != 0")
        if t.kflag:
            raise self.fail_type(t, "Invalid btf_info kind_flag")
        d = self.word(t, 0)
        if d & ~BTF_INT_MASK & U32:
            self.log_basic(t, f"Invalid int_data:{d:x}")
            raise _Fail(errno.EINVAL)
        nr_bits = (d & 0xFF) + ((d >> 16) & 0xFF)
        if nr_bits > 128:
            raise self.fail_type(t, "nr_bits exceeds 128")
        if _roundup_bytes(nr_bits) > t.st:
            raise self.fail_type(t, "nr_bits exceeds type_size")
        if ((d >> 24) & 0xF) not in (0, 1, 2, 4):
            raise self.fail_type(t, "Unsupported encoding", ENOTSUPP)
        self.log_type(t)
        return 4

    def meta_ref(self, t: _Type, meta_left: int) -> int:
        if t.vlen:
            raise self.fail_type(t, "vlen != 0")
        if t.kflag and t.kind != TYPE_TAG:
            raise self.fail_type(t, "Invalid btf_info kind_flag")
        if t.st > BTF_MAX_TYPE:
            raise self.fail_type(t, "Invalid type_id")
        if t.kind == TYPEDEF:
            if not t.name_off or not self.valid_identifier(t.name_off):
                raise self.fail_type(t, "Invalid name")
        elif t.kind == TYPE_TAG:
            if not self.str_at(t.name_off):
                raise self.fail_type(t, "Invalid name")
        elif t.name_off:
            raise self.fail_type(t, "Invalid name")
        self.log_type(t)
        return 0

    def meta_fwd(self, t: _Type, meta_left: int) -> int:
        if t.vlen:
            raise self.fail_type(t, "vlen != 0")
        if t.st:
            raise self.fail_type(t, "type != 0")
        if not t.name_off or not self.valid_identifier(t.name_off):
            raise self.fail_type(t, "Invalid name")
        self.log_type(t)
        return 0

    def meta_array(self, t: _Type, meta_left: int) -> int:
        self.need_meta(t, meta_left, 12)
        if t.name_off:
            raise self.fail_type(t, "Invalid name")
        if t.vlen:
            raise self.fail_type(t, "vlen != 0")
        if t.kflag:
            raise self.fail_type(t, "Invalid btf_info kind_flag")
        if t.st:
            raise self.fail_type(t, "size != 0")
        elem, index = self.word(t, 0), self.word(t, 1)
        if not elem or elem > BTF_MAX_TYPE:
            raise self.fail_type(t, "Invalid elem")
        if not index or index > BTF_MAX_TYPE:
            raise self.fail_type(t, "Invalid index")
        self.log_type(t)
        return 12

    def meta_struct(self, t: _Type, meta_left: int) -> int:
        needed = 12 * t.vlen
        self.need_meta(t, meta_left, needed)
        if t.name_off and not self.valid_identifier(t.name_off):
            raise self.fail_type(t, "Invalid name")
        self.log_type(t)
        last = 0
        for i in range(t.vlen):
            m = self.triple(t, i)
            name_off, mtype, moff = m
            if not self.name_offset_valid(name_off):
                self.log_member(t, m, f"Invalid member name_offset:{name_off}")
                raise _Fail(errno.EINVAL)
            if name_off and not self.valid_identifier(name_off):
                self.log_member(t, m, "Invalid name")
                raise _Fail(errno.EINVAL)
            if not mtype or mtype > BTF_MAX_TYPE:
                self.log_member(t, m, "Invalid type_id")
                raise _Fail(errno.EINVAL)
            offset = moff & 0xFFFFFF if t.kflag else moff
            if t.kind == UNION and offset:
                self.log_member(t, m, "Invalid member bits_offset")
                raise _Fail(errno.EINVAL)
            if last > offset:
                self.log_member(t, m, "Invalid member bits_offset")
                raise _Fail(errno.EINVAL)
            if _roundup_bytes(offset) > t.st:
                self.log_member(t, m, "Member bits_offset exceeds its struct size")
                raise _Fail(errno.EINVAL)
            self.log_member(t, m)
            last = offset
        return needed

    def meta_enum(self, t: _Type, meta_left: int) -> int:
        wide = t.kind == ENUM64
        needed = (12 if wide else 8) * t.vlen
        self.need_meta(t, meta_left, needed)
        if t.st > 8 or t.st & (t.st - 1) or not t.st:
            raise self.fail_type(t, "Unexpected size")
        if t.name_off and not self.valid_identifier(t.name_off):
            raise self.fail_type(t, "Invalid name")
        self.log_type(t)
        for i in range(t.vlen):
            if wide:
                name_off, lo, hi = self.triple(t, i)
                val = lo | hi << 32
                sval = val - (1 << 64) if t.kflag and val >> 63 else val
            else:
                name_off, val = self.pair(t, i)
                sval = _s32(val) if t.kflag else val
            if not self.name_offset_valid(name_off):
                self.log(f"\tInvalid name_offset:{name_off}")
                raise _Fail(errno.EINVAL)
            if not name_off or not self.valid_identifier(name_off):
                raise self.fail_type(t, "Invalid name")
            self.log(f"\t{self.name(name_off)} val={sval}\n")
        return needed

    def meta_func_proto(self, t: _Type, meta_left: int) -> int:
        needed = 8 * t.vlen
        self.need_meta(t, meta_left, needed)
        if t.name_off:
            raise self.fail_type(t, "Invalid name")
        if t.kflag:
            raise self.fail_type(t, "Invalid btf_info kind_flag")
        self.log_type(t)
        return needed

    def meta_func(self, t: _Type, meta_left: int) -> int:
        if not t.name_off or not self.valid_identifier(t.name_off):
            raise self.fail_type(t, "Invalid name")
        if t.vlen > 1:  # BTF_FUNC_GLOBAL: extern functions cannot be loaded
            raise self.fail_type(t, "Invalid func linkage")
        if t.kflag:
            raise self.fail_type(t, "Invalid btf_info kind_flag")
        self.log_type(t)
        return 0

    def meta_var(self, t: _Type, meta_left: int) -> int:
        self.need_meta(t, meta_left, 4)
        if t.vlen:
            raise self.fail_type(t, "vlen != 0")
        if t.kflag:
            raise self.fail_type(t, "Invalid btf_info kind_flag")
        if not t.name_off or not self.valid_identifier(t.name_off):
            raise self.fail_type(t, "Invalid name")
        if not t.st or t.st > BTF_MAX_TYPE:
            raise self.fail_type(t, "Invalid type_id")
        if self.word(t, 0) not in (0, 1):  # static, global allocated
            raise self.fail_type(t, "Linkage not supported")
        self.log_type(t)
        return 4

    def meta_datasec(self, t: _Type, meta_left: int) -> int:
        needed = 12 * t.vlen
        self.need_meta(t, meta_left, needed)
        if not t.st:
            raise self.fail_type(t, "size == 0")
        if t.kflag:
            raise self.fail_type(t, "Invalid btf_info kind_flag")
        if not t.name_off or not self.valid_section(t.name_off):
            raise self.fail_type(t, "Invalid name")
        self.log_type(t)
        last_end = total = 0
        for i in range(t.vlen):
            vsi = self.triple(t, i)
            vtype, voff, vsize = vsi
            if not vtype or vtype > BTF_MAX_TYPE:
                self.log_vsi(t, vsi, "Invalid type_id")
                raise _Fail(errno.EINVAL)
            if voff < last_end or voff >= t.st:
                self.log_vsi(t, vsi, "Invalid offset")
                raise _Fail(errno.EINVAL)
            if not vsize or vsize > t.st:
                self.log_vsi(t, vsi, "Invalid size")
                raise _Fail(errno.EINVAL)
            last_end = voff + vsize
            if last_end > t.st:
                self.log_vsi(t, vsi, "Invalid offset+size")
                raise _Fail(errno.EINVAL)
            self.log_vsi(t, vsi)
            total += vsize
        if t.st < total:
            raise self.fail_type(t, "Invalid btf_info size")
        return needed

    def meta_float(self, t: _Type, meta_left: int) -> int:
        if t.vlen:
            raise self.fail_type(t, "vlen != 0")
        if t.kflag:
            raise self.fail_type(t, "Invalid btf_info kind_flag")
        if t.st not in (2, 4, 8, 12, 16):
            raise self.fail_type(t, "Invalid type_size")
        self.log_type(t)
        return 0

    def meta_decl_tag(self, t: _Type, meta_left: int) -> int:
        self.need_meta(t, meta_left, 4)
        if not self.str_at(t.name_off):
            raise self.fail_type(t, "Invalid value")
        if t.vlen:
            raise self.fail_type(t, "vlen != 0")
        if _s32(self.word(t, 0)) < -1:
            raise self.fail_type(t, "Invalid component_idx")
        self.log_type(t)
        return 4

    # ---------------------------------------------------------------- pass 4: resolve

    def is_resolved(self, tid: int) -> bool:
        return self.visit[tid] == RESOLVED

    def is_sink(self, nt: _Type) -> bool:
        """``env_type_is_resolve_sink``: where the walk stops in the current mode."""
        if self.resolve_mode == RESOLVE_TBD:
            return nt.kind not in _NEEDS_RESOLVE or nt is _VOID
        if self.resolve_mode == RESOLVE_PTR:
            return nt.kind not in _MODIFIERS and nt.kind != PTR
        return nt.kind not in _MODIFIERS and nt.kind not in (ARRAY, STRUCT, UNION)

    def push(self, t: _Type, tid: int) -> int:
        if len(self.stack) == MAX_RESOLVE_DEPTH:
            return -errno.E2BIG
        if self.visit[tid] != NOT_VISITED:
            return -errno.EEXIST
        self.visit[tid] = VISITED
        self.stack.append(_Vertex(t, tid))
        if self.resolve_mode == RESOLVE_TBD:
            if t.kind == PTR:
                self.resolve_mode = RESOLVE_PTR
            elif t.kind in (STRUCT, UNION, ARRAY):
                self.resolve_mode = RESOLVE_STRUCT_OR_ARRAY
        return 0

    def pop_resolved(self, rid: int, size: int) -> None:
        v = self.stack.pop()
        self.resolved_ids[v.type_id] = rid
        self.resolved_sizes[v.type_id] = size & U32
        self.visit[v.type_id] = RESOLVED

    def id_size(self, tid: int) -> tuple[_Type, int, int] | None:
        """``btf_type_id_size``: the sized type behind ``tid``, its id and size."""
        t = self.by_id(tid)
        if t is None or _nosize(t):
            return None
        if t.kind in _HAS_SIZE:
            return t, tid, t.st
        if t.kind == ARRAY:
            return t, tid, self.resolved_sizes[tid]
        if t.kind == PTR:
            return t, tid, 8
        if t.kind not in _MODIFIERS and t.kind != VAR:
            return None
        tid = self.resolved_ids[tid]
        t = self.by_id(tid)
        if t is None or _nosize(t):
            return None
        if t.kind in _HAS_SIZE:
            return t, tid, t.st
        if t.kind == ARRAY:
            return t, tid, self.resolved_sizes[tid]
        if t.kind == PTR:
            return t, tid, 8
        return None

    def resolve_id(self, tid: int) -> tuple[_Type | None, int]:
        rid = self.resolved_ids[tid]
        return self.by_id(rid), rid

    def check_all_types(self) -> None:
        n = len(self.types)
        self.visit = [NOT_VISITED] * n
        self.resolved_ids = [0] * n
        self.resolved_sizes = [0] * n
        self.phase = CHECK_TYPE
        for tid in range(1, n):
            t = self.types[tid]
            self.log_type_id = tid
            if t.kind in _NEEDS_RESOLVE and not self.is_resolved(tid):
                self.resolve(t, tid)
            if t.kind == FUNC_PROTO:
                self.func_proto_check(t)

    def resolve(self, t: _Type, tid: int) -> None:
        """``btf_resolve``: drive the explicit stack until ``t`` is resolved."""
        saved = self.log_type_id
        self.resolve_mode = RESOLVE_TBD
        self.push(t, tid)
        err = 0
        try:
            while not err and self.stack:
                v = self.stack[-1]
                self.log_type_id = v.type_id
                err = _RESOLVE[v.t.kind](self, v)
        except _Fail as exc:
            err = -exc.errno
        self.log_type_id = tid
        if err == -errno.E2BIG:
            self.log_type(t, f"Exceeded max resolving depth:{MAX_RESOLVE_DEPTH}")
        elif err == -errno.EEXIST:
            self.log_type(t, "Loop detected")
        if not err and not self.resolve_valid(t, tid):
            self.log_type(t, "Invalid resolve state")
            err = -errno.EINVAL
        self.log_type_id = saved
        if err:
            raise _Fail(-err)

    def resolve_valid(self, t: _Type, tid: int) -> bool:
        if not self.is_resolved(tid):
            return False
        rid, rsize = self.resolved_ids[tid], self.resolved_sizes[tid]
        if t.kind in (STRUCT, UNION, DATASEC):
            return not rid and not rsize
        if t.kind in (DECL_TAG, FUNC):
            return bool(rid) and not rsize
        if t.kind in _MODIFIERS or t.kind in (PTR, VAR):
            r, _ = self.resolve_id(tid)
            return r is not None and r.kind not in _MODIFIERS and r.kind not in (VAR, DATASEC)
        if t.kind == ARRAY:
            got = self.id_size(self.word(t, 0))
            return (got is not None and got[0].kind not in _MODIFIERS
                    and (self.word(t, 2) * got[2]) & U32 == rsize)
        return False

    def fail_v(self, v: _Vertex, msg: str) -> int:
        self.log_type(v.t, msg)
        return -errno.EINVAL

    def res_df(self, v: _Vertex) -> int:
        self.log_basic(v.t, "Unsupported resolve")
        return -errno.EINVAL

    def _follow_ptr_chain(self, nid: int, nt: _Type) -> int | None:
        """Shared by ptr/var resolve: continue past a modifier that stopped at a pointer."""
        if nt.kind in _MODIFIERS:
            rt, rid = self.resolve_id(nid)
            if rt is not None and rt.kind == PTR and not self.is_sink(rt) \
                    and not self.is_resolved(rid):
                return self.push(rt, rid)
        return None

    def res_modifier(self, v: _Vertex) -> int:
        nid = v.t.st
        nt = self.by_id(nid)
        if nt is None or (nt.kind in _SOURCE_ONLY and nt is not _VOID):
            return self.fail_v(v, "Invalid type_id")
        if not self.is_sink(nt) and not self.is_resolved(nid):
            return self.push(nt, nid)
        got = self.id_size(nid)
        if got is None:
            if self.is_resolved(nid):
                nt2, nid = self.resolve_id(nid)
                nt = nt2 if nt2 is not None else nt
            if nt is not _VOID and nt.kind not in (FWD, FUNC_PROTO):
                return self.fail_v(v, "Invalid type_id")
        else:
            nid = got[1]
        self.pop_resolved(nid, 0)
        return 0

    def res_ptr(self, v: _Vertex) -> int:
        nid = v.t.st
        nt = self.by_id(nid)
        if nt is None or (nt.kind in _SOURCE_ONLY and nt is not _VOID):
            return self.fail_v(v, "Invalid type_id")
        if not self.is_sink(nt) and not self.is_resolved(nid):
            return self.push(nt, nid)
        pushed = self._follow_ptr_chain(nid, nt)
        if pushed is not None:
            return pushed
        got = self.id_size(nid)
        if got is None:
            if self.is_resolved(nid):
                nt2, nid = self.resolve_id(nid)
                nt = nt2 if nt2 is not None else nt
            if nt is not _VOID and nt.kind not in (FWD, FUNC_PROTO):
                return self.fail_v(v, "Invalid type_id")
        else:
            nid = got[1]
        self.pop_resolved(nid, 0)
        return 0

    def res_var(self, v: _Vertex) -> int:
        nid = v.t.st
        nt = self.by_id(nid)
        if nt is None or (nt.kind in _SOURCE_ONLY and nt is not _VOID):
            return self.fail_v(v, "Invalid type_id")
        if not self.is_sink(nt) and not self.is_resolved(nid):
            return self.push(nt, nid)
        pushed = self._follow_ptr_chain(nid, nt)
        if pushed is not None:
            return pushed
        got = self.id_size(nid)
        if got is None:
            return self.fail_v(v, "Invalid type_id")
        self.pop_resolved(got[1], 0)
        return 0

    def res_array(self, v: _Vertex) -> int:
        t = v.t
        iid = self.word(t, 1)
        it = self.by_id(iid)
        if it is None or _nosize(it) or it.kind in _SOURCE_ONLY:
            return self.fail_v(v, "Invalid index")
        if not self.is_sink(it) and not self.is_resolved(iid):
            return self.push(it, iid)
        got = self.id_size(iid)
        if got is None or got[0].kind != INT or not self.int_is_regular(got[0]):
            return self.fail_v(v, "Invalid index")
        eid = self.word(t, 0)
        et = self.by_id(eid)
        if et is None or _nosize(et) or et.kind in _SOURCE_ONLY:
            return self.fail_v(v, "Invalid elem")
        if not self.is_sink(et) and not self.is_resolved(eid):
            return self.push(et, eid)
        got = self.id_size(eid)
        if got is None:
            return self.fail_v(v, "Invalid elem")
        et, eid, esize = got
        if et.kind == INT and not self.int_is_regular(et):
            return self.fail_v(v, "Invalid array of int")
        nelems = self.word(t, 2)
        if nelems and esize > U32 // nelems:
            return self.fail_v(v, "Array size overflows U32_MAX")
        self.pop_resolved(eid, esize * nelems)
        return 0

    def res_struct(self, v: _Vertex) -> int:
        t = v.t
        if v.next_member:
            last = self.triple(t, v.next_member - 1)
            lt = self.by_id(last[1])
            assert lt is not None
            err = self.check_member(t, last, lt)
            if err:
                return err
        for i in range(v.next_member, t.vlen):
            m = self.triple(t, i)
            mt = self.by_id(m[1])
            if mt is None or _nosize(mt) or mt.kind in _SOURCE_ONLY:
                self.log_member(t, m, "Invalid member")
                return -errno.EINVAL
            if not self.is_sink(mt) and not self.is_resolved(m[1]):
                v.next_member = i + 1
                return self.push(mt, m[1])
            err = self.check_member(t, m, mt)
            if err:
                return err
        self.pop_resolved(0, 0)
        return 0

    def res_datasec(self, v: _Vertex) -> int:
        t = v.t
        self.resolve_mode = RESOLVE_TBD
        for i in range(v.next_member, t.vlen):
            vsi = self.triple(t, i)
            vt = self.by_id(vsi[0])
            if vt is None or vt.kind != VAR:
                self.log_vsi(t, vsi, "Not a VAR kind member")
                return -errno.EINVAL
            if not self.is_sink(vt) and not self.is_resolved(vsi[0]):
                v.next_member = i + 1
                return self.push(vt, vsi[0])
            got = self.id_size(vt.st)
            if got is None:
                self.log_vsi(t, vsi, "Invalid type")
                return -errno.EINVAL
            if vsi[2] < got[2]:
                self.log_vsi(t, vsi, "Invalid size")
                return -errno.EINVAL
        self.pop_resolved(0, 0)
        return 0

    def res_func(self, v: _Vertex) -> int:
        self.func_check(v.t)
        self.pop_resolved(v.t.st, 0)
        return 0

    def res_decl_tag(self, v: _Vertex) -> int:
        t = v.t
        nid = t.st
        nt = self.by_id(nid)
        if nt is None or nt is _VOID or nt.kind not in (FUNC, STRUCT, UNION, VAR, TYPEDEF):
            return self.fail_v(v, "Invalid type_id")
        if not self.is_sink(nt) and not self.is_resolved(nid):
            return self.push(nt, nid)
        idx = _s32(self.word(t, 0))
        if idx != -1:
            if nt.kind in (VAR, TYPEDEF):
                return self.fail_v(v, "Invalid component_idx")
            if nt.kind in (STRUCT, UNION):
                vlen = nt.vlen
            else:
                proto = self.by_id(nt.st)
                vlen = proto.vlen if proto is not None else 0
            if idx & U32 >= vlen:
                return self.fail_v(v, "Invalid component_idx")
        self.pop_resolved(nid, 0)
        return 0

    # ---- members

    def check_member(self, st: _Type, m: tuple[int, int, int], mt: _Type) -> int:
        if st.kflag:
            return _CHECK_KFLAG_MEMBER[mt.kind](self, st, m, mt)
        return _CHECK_MEMBER[mt.kind](self, st, m, mt)

    def mem_fail(self, st: _Type, m: tuple[int, int, int], msg: str) -> int:
        self.log_member(st, m, msg)
        return -errno.EINVAL

    def cm_df(self, st: _Type, m: tuple[int, int, int], mt: _Type) -> int:
        self.log_basic(st, "Unsupported check_member")
        return -errno.EINVAL

    def ckm_df(self, st: _Type, m: tuple[int, int, int], mt: _Type) -> int:
        self.log_basic(st, "Unsupported check_kflag_member")
        return -errno.EINVAL

    def ckm_generic(self, st: _Type, m: tuple[int, int, int], mt: _Type) -> int:
        if m[2] >> 24:
            return self.mem_fail(st, m, "Invalid member bitfield_size")
        return _CHECK_MEMBER[mt.kind](self, st, m, mt)

    def cm_int(self, st: _Type, m: tuple[int, int, int], mt: _Type) -> int:
        d = self.word(mt, 0)
        bits_off = m[2]
        int_off = (d >> 16) & 0xFF
        if U32 - bits_off < int_off:
            return self.mem_fail(st, m, "bits_offset exceeds U32_MAX")
        bits_off += int_off
        nr_copy = (d & 0xFF) + (bits_off & 7)
        if nr_copy > 128:
            return self.mem_fail(st, m, "nr_copy_bits exceeds 128")
        byte_off = bits_off >> 3
        if st.st < byte_off or st.st - byte_off < _roundup_bytes(nr_copy):
            return self.mem_fail(st, m, "Member exceeds struct_size")
        return 0

    def ckm_int(self, st: _Type, m: tuple[int, int, int], mt: _Type) -> int:
        if not self.int_is_regular(mt):
            return self.mem_fail(st, m, "Invalid member base type")
        d = self.word(mt, 0)
        nr_bits, bits_off = m[2] >> 24, m[2] & 0xFFFFFF
        int_bits = d & 0xFF
        if not nr_bits:
            if bits_off & 7:
                return self.mem_fail(st, m, "Invalid member offset")
            nr_bits = int_bits
        elif nr_bits > int_bits:
            return self.mem_fail(st, m, "Invalid member bitfield_size")
        byte_off = bits_off >> 3
        nr_copy = nr_bits + (bits_off & 7)
        if nr_copy > 128:
            return self.mem_fail(st, m, "nr_copy_bits exceeds 128")
        if st.st < byte_off or st.st - byte_off < _roundup_bytes(nr_copy):
            return self.mem_fail(st, m, "Member exceeds struct_size")
        return 0

    def _modifier_member(self, st: _Type, m: tuple[int, int, int], kflag: bool) -> int:
        got = self.id_size(m[1])
        if got is None:
            return self.mem_fail(st, m, "Invalid member")
        rt, rid, _ = got
        rm = (m[0], rid, m[2])
        table = _CHECK_KFLAG_MEMBER if kflag else _CHECK_MEMBER
        return table[rt.kind](self, st, rm, rt)

    def cm_modifier(self, st: _Type, m: tuple[int, int, int], mt: _Type) -> int:
        return self._modifier_member(st, m, False)

    def ckm_modifier(self, st: _Type, m: tuple[int, int, int], mt: _Type) -> int:
        return self._modifier_member(st, m, True)

    def cm_ptr(self, st: _Type, m: tuple[int, int, int], mt: _Type) -> int:
        if m[2] & 7:
            return self.mem_fail(st, m, "Member is not byte aligned")
        if (st.st - (m[2] >> 3)) & U32 < 8:
            return self.mem_fail(st, m, "Member exceeds struct_size")
        return 0

    def cm_array(self, st: _Type, m: tuple[int, int, int], mt: _Type) -> int:
        if m[2] & 7:
            return self.mem_fail(st, m, "Member is not byte aligned")
        got = self.id_size(m[1])
        size = got[2] if got is not None else 0
        if (st.st - (m[2] >> 3)) & U32 < size:
            return self.mem_fail(st, m, "Member exceeds struct_size")
        return 0

    def cm_sized(self, st: _Type, m: tuple[int, int, int], mt: _Type) -> int:
        """Struct, union, enum and enum64 members: byte aligned, within the struct."""
        if m[2] & 7:
            return self.mem_fail(st, m, "Member is not byte aligned")
        if (st.st - (m[2] >> 3)) & U32 < mt.st:
            return self.mem_fail(st, m, "Member exceeds struct_size")
        return 0

    def ckm_enum(self, st: _Type, m: tuple[int, int, int], mt: _Type) -> int:
        bits_off, nr_bits = m[2] & 0xFFFFFF, m[2] >> 24
        if not nr_bits:
            if bits_off & 7:
                return self.mem_fail(st, m, "Member is not byte aligned")
            nr_bits = 32
        elif nr_bits > 32:
            return self.mem_fail(st, m, "Invalid member bitfield_size")
        if st.st < _roundup_bytes(bits_off + nr_bits):
            return self.mem_fail(st, m, "Member exceeds struct_size")
        return 0

    def cm_float(self, st: _Type, m: tuple[int, int, int], mt: _Type) -> int:
        align_bits = min(8, mt.st) * 8
        if m[2] % align_bits:
            return self.mem_fail(st, m, "Member is not properly aligned")
        if m[2] // 8 + mt.st > st.st:
            return self.mem_fail(st, m, "Member exceeds struct_size")
        return 0

    def int_is_regular(self, t: _Type) -> bool:
        d = self.word(t, 0)
        nr_bits = d & 0xFF
        return not (nr_bits & 7 or (d >> 16) & 0xFF
                    or _roundup_bytes(nr_bits) not in (1, 2, 4, 8, 16))

    # ---- functions

    def func_proto_check(self, t: _Type) -> None:
        if t.st:
            rid = t.st
            rt = self.by_id(rid)
            if rt is None or rt.kind in _SOURCE_ONLY:
                raise self.fail_type(t, "Invalid return type")
            if rt.kind in _NEEDS_RESOLVE and not self.is_resolved(rid):
                self.resolve(rt, rid)
            if self.id_size(rid) is None:
                raise self.fail_type(t, "Invalid return type")
        nargs = t.vlen
        if not nargs:
            return
        last = self.pair(t, nargs - 1)
        if not last[1]:
            if last[0]:
                raise self.fail_type(t, f"Invalid arg#{nargs}")
            nargs -= 1
        for i in range(nargs):
            name_off, aid = self.pair(t, i)
            at = self.by_id(aid)
            if at is None or (at.kind in _SOURCE_ONLY and at is not _VOID):
                raise self.fail_type(t, f"Invalid arg#{i + 1}")
            if name_off and (not self.name_offset_valid(name_off)
                             or not self.valid_identifier(name_off)):
                raise self.fail_type(t, f"Invalid arg#{i + 1}")
            if at.kind in _NEEDS_RESOLVE and at is not _VOID and not self.is_resolved(aid):
                self.resolve(at, aid)
            if self.id_size(aid) is None:
                raise self.fail_type(t, f"Invalid arg#{i + 1}")

    def func_check(self, t: _Type) -> None:
        proto = self.by_id(t.st)
        if proto is None or proto.kind != FUNC_PROTO:
            raise self.fail_type(t, "Invalid type_id")
        for i in range(proto.vlen):
            name_off, atype = self.pair(proto, i)
            if not name_off and atype:
                raise self.fail_type(t, f"Invalid arg#{i + 1}")

    # ---------------------------------------------------------------- type tags

    def check_type_tags(self) -> None:
        good = 0
        for i in range(1, len(self.types)):
            t: _Type | None = self.types[i]
            assert t is not None
            if t.kind not in _MODIFIERS:
                continue
            limit = 32
            cur = i
            in_tags = t.kind == TYPE_TAG
            while t is not None and t is not _VOID and t.kind in _MODIFIERS:
                if not limit:
                    self.log("Max chain length or cycle detected")
                    raise _Fail(errno.ELOOP)
                limit -= 1
                if t.kind == TYPE_TAG:
                    if not in_tags:
                        self.log("Type tags don't precede modifiers")
                        raise _Fail(errno.EINVAL)
                elif in_tags:
                    in_tags = False
                if cur <= good:
                    break
                cur = t.st
                t = self.by_id(cur)
                if t is None:
                    raise _Fail(errno.EINVAL)
            good = i

    # ---------------------------------------------------------------- driver

    def run(self) -> int:
        try:
            self.parse_hdr()
            self.parse_str_sec()
            self.parse_type_sec()
            self.check_type_tags()
        except _Fail as exc:
            return exc.errno
        return 0


def _s32(v: int) -> int:
    v &= U32
    return v - (1 << 32) if v & 0x80000000 else v


def _roundup_bytes(bits: int) -> int:
    return (bits + 7) >> 3


def _nosize(t: _Type) -> bool:
    """``btf_type_nosize``: void, FWD, FUNC, FUNC_PROTO, DECL_TAG."""
    return t is _VOID or t.kind in (FWD, FUNC, FUNC_PROTO, DECL_TAG)


V = _Verifier
_CHECK_META = {INT: V.meta_int, PTR: V.meta_ref, ARRAY: V.meta_array, STRUCT: V.meta_struct,
               UNION: V.meta_struct, ENUM: V.meta_enum, FWD: V.meta_fwd, TYPEDEF: V.meta_ref,
               VOLATILE: V.meta_ref, CONST: V.meta_ref, RESTRICT: V.meta_ref,
               FUNC: V.meta_func, FUNC_PROTO: V.meta_func_proto, VAR: V.meta_var,
               DATASEC: V.meta_datasec, FLOAT: V.meta_float, DECL_TAG: V.meta_decl_tag,
               TYPE_TAG: V.meta_ref, ENUM64: V.meta_enum}
_RESOLVE = {INT: V.res_df, PTR: V.res_ptr, ARRAY: V.res_array, STRUCT: V.res_struct,
            UNION: V.res_struct, ENUM: V.res_df, FWD: V.res_df, TYPEDEF: V.res_modifier,
            VOLATILE: V.res_modifier, CONST: V.res_modifier, RESTRICT: V.res_modifier,
            FUNC: V.res_func, FUNC_PROTO: V.res_df, VAR: V.res_var, DATASEC: V.res_datasec,
            FLOAT: V.res_df, DECL_TAG: V.res_decl_tag, TYPE_TAG: V.res_modifier,
            ENUM64: V.res_df}
_CHECK_MEMBER = {INT: V.cm_int, PTR: V.cm_ptr, ARRAY: V.cm_array, STRUCT: V.cm_sized,
                 UNION: V.cm_sized, ENUM: V.cm_sized, FWD: V.cm_df, TYPEDEF: V.cm_modifier,
                 VOLATILE: V.cm_modifier, CONST: V.cm_modifier, RESTRICT: V.cm_modifier,
                 FUNC: V.cm_df, FUNC_PROTO: V.cm_df, VAR: V.cm_df, DATASEC: V.cm_df,
                 FLOAT: V.cm_float, DECL_TAG: V.cm_df, TYPE_TAG: V.cm_modifier,
                 ENUM64: V.cm_sized, UNKN: V.cm_df}
_CHECK_KFLAG_MEMBER = {INT: V.ckm_int, PTR: V.ckm_generic, ARRAY: V.ckm_generic,
                       STRUCT: V.ckm_generic, UNION: V.ckm_generic, ENUM: V.ckm_enum,
                       FWD: V.ckm_df, TYPEDEF: V.ckm_modifier, VOLATILE: V.ckm_modifier,
                       CONST: V.ckm_modifier, RESTRICT: V.ckm_modifier, FUNC: V.ckm_df,
                       FUNC_PROTO: V.ckm_df, VAR: V.ckm_df, DATASEC: V.ckm_df,
                       FLOAT: V.ckm_generic, DECL_TAG: V.ckm_df, TYPE_TAG: V.ckm_modifier,
                       ENUM64: V.ckm_enum, UNKN: V.ckm_df}


def check(data: bytes | bytearray | memoryview, log_level: int = 1) -> BtfCheckResult:
    """Run every ``BPF_BTF_LOAD`` check on ``data``; see :func:`btf_check`."""
    v = _Verifier(bytes(data), log_level)
    err = v.run()
    btf = None
    if not err:
        try:
            btf = Btf.from_bytes(v.data)
        except BtfFormatError:
            btf = None
    if btf is not None:
        from pybpf.btf.struct_meta import check_struct_metas

        err = check_struct_metas(btf)  # btf_parse_struct_metas, after the type checks
        if err:
            btf = None
    return BtfCheckResult(err, v.text(), btf, len(v.types) - 1, dict(v.hdr))


def btf_check(data: bytes | bytearray | memoryview, log_level: int = 1) -> tuple[
        int, str, Btf | None]:
    """``(errno, log, btf)`` for a ``BPF_BTF_LOAD`` of ``data``, as Linux 6.18 answers.

    - ``errno`` is 0 when the kernel accepts the blob, else its errno (``EINVAL``,
      ``E2BIG``, ``ELOOP``, or 524 ``ENOTSUPP`` for an unsupported version, flag or
      INT encoding).
    - ``log`` is the full text the kernel writes to ``btf_log_buf`` at a non-zero
      ``log_level`` (empty at 0), before any truncation to the user's buffer; the caller
      applies ``log_size`` / ``BPF_LOG_FIXED`` rules and computes ``log_true_size``
      (= ``len(log.encode('utf-8', 'surrogateescape')) + 1``).
    - ``btf`` is the parsed :class:`~pybpf.btf.raw.Btf` on success, else ``None``.

    The size limit (``btf_size`` > 16 MiB → ``E2BIG``) and capability checks belong to
    the syscall and are not made here.
    """
    r = check(data, log_level)
    return r.errno, r.log, r.btf


__all__ = ["ENOTSUPP", "BtfCheckResult", "btf_check", "check"]
