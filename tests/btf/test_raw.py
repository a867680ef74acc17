"""The raw BTF reader: the kernel's own BTF, hand-built blobs of every kind, bad blobs."""

from __future__ import annotations

import contextlib
import random
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from pybpf.btf import (
    Btf,
    BtfArray,
    BtfConst,
    BtfDatasec,
    BtfDeclTag,
    BtfEnum,
    BtfEnum64,
    BtfFloat,
    BtfFormatError,
    BtfFunc,
    BtfFuncProto,
    BtfFwd,
    BtfInt,
    BtfKind,
    BtfLinkage,
    BtfPtr,
    BtfRestrict,
    BtfStruct,
    BtfTypedef,
    BtfTypeTag,
    BtfUnion,
    BtfVar,
    BtfVoid,
    BtfVolatile,
    IntEncoding,
)

VMLINUX = Path("/sys/kernel/btf/vmlinux")


# --------------------------------------------------------------------------- blob builder


class Blob:
    """Builds BTF blobs word by word, so tests can state exactly what they feed in."""

    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.words: list[int] = []
        self.count = 0

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, name: str, kind: BtfKind, vlen: int = 0, kflag: bool = False,
            size_or_type: int = 0, extra: list[int] | None = None) -> int:
        info = vlen | (int(kind) << 24) | (int(kflag) << 31)
        self.words += [self.s(name), info, size_or_type & 0xFFFFFFFF]
        self.words += [w & 0xFFFFFFFF for w in extra or []]
        self.count += 1
        return self.count

    def build(self, endian: str = "<", strings: bytes | None = None) -> bytes:
        types = struct.pack(f"{endian}{len(self.words)}I", *self.words)
        strs = bytes(self.strings) if strings is None else strings
        header = struct.pack(f"{endian}HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types),
                             len(types), len(strs))
        return header + types + strs


def every_kind() -> tuple[Blob, dict[str, int]]:
    """A blob with one type of each of the 19 kinds (and a few extras)."""
    b, ids = Blob(), {}
    ids["int"] = b.add("int", BtfKind.INT, size_or_type=4, extra=[(1 << 24) | 32])
    ids["u8"] = b.add("unsigned char", BtfKind.INT, size_or_type=1, extra=[8])
    ids["ptr"] = b.add("", BtfKind.PTR, size_or_type=ids["int"])
    ids["arr"] = b.add("", BtfKind.ARRAY, extra=[ids["int"], ids["int"], 3])
    members = [b.s("a"), ids["int"], 0,
               b.s("lo"), ids["u8"], (4 << 24) | 32,
               b.s("hi"), ids["u8"], (4 << 24) | 36,
               b.s("v"), ids["arr"], 64]
    ids["struct"] = b.add("s", BtfKind.STRUCT, vlen=4, kflag=True, size_or_type=20,
                          extra=members)
    ids["union"] = b.add("u", BtfKind.UNION, vlen=2, size_or_type=4,
                         extra=[b.s("x"), ids["int"], 0, b.s("y"), ids["u8"], 0])
    ids["enum"] = b.add("e", BtfKind.ENUM, vlen=2, kflag=True, size_or_type=4,
                        extra=[b.s("NEG"), -1, b.s("POS"), 7])
    ids["fwd"] = b.add("f", BtfKind.FWD, kflag=True)
    ids["typedef"] = b.add("td", BtfKind.TYPEDEF, size_or_type=ids["struct"])
    ids["volatile"] = b.add("", BtfKind.VOLATILE, size_or_type=ids["typedef"])
    ids["const"] = b.add("", BtfKind.CONST, size_or_type=ids["volatile"])
    ids["restrict"] = b.add("", BtfKind.RESTRICT, size_or_type=ids["ptr"])
    ids["proto"] = b.add("", BtfKind.FUNC_PROTO, vlen=2, size_or_type=ids["int"],
                         extra=[b.s("p"), ids["ptr"], 0, 0])
    ids["func"] = b.add("fn", BtfKind.FUNC, vlen=1, size_or_type=ids["proto"])
    ids["var"] = b.add("g", BtfKind.VAR, size_or_type=ids["const"], extra=[1])
    ids["datasec"] = b.add(".data", BtfKind.DATASEC, vlen=1, size_or_type=20,
                           extra=[ids["var"], 0, 20])
    ids["float"] = b.add("double", BtfKind.FLOAT, size_or_type=8)
    ids["decl_tag"] = b.add("tag", BtfKind.DECL_TAG, size_or_type=ids["struct"], extra=[-1])
    ids["type_tag"] = b.add("user", BtfKind.TYPE_TAG, size_or_type=ids["int"])
    ids["enum64"] = b.add("e64", BtfKind.ENUM64, vlen=2, size_or_type=8,
                          extra=[b.s("BIG"), 0x55667788, 0x11223344, b.s("TOP"), 0, 0x80000000])
    ids["senum64"] = b.add("s64", BtfKind.ENUM64, vlen=1, kflag=True, size_or_type=8,
                           extra=[b.s("MINUS_TWO"), 0xFFFFFFFE, 0xFFFFFFFF])
    ids["cycle_a"] = b.add("", BtfKind.CONST, size_or_type=ids["senum64"] + 2)
    ids["cycle_b"] = b.add("", BtfKind.VOLATILE, size_or_type=ids["cycle_a"])
    return b, ids


@pytest.fixture(scope="module")
def small() -> tuple[Btf, dict[str, int]]:
    b, ids = every_kind()
    return Btf.from_bytes(b.build()), ids


# --------------------------------------------------------------------------- every kind


def test_every_kind_is_read_into_its_class(small: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = small
    expected = {
        "int": BtfInt, "ptr": BtfPtr, "arr": BtfArray, "struct": BtfStruct,
        "union": BtfUnion, "enum": BtfEnum, "fwd": BtfFwd, "typedef": BtfTypedef,
        "volatile": BtfVolatile, "const": BtfConst, "restrict": BtfRestrict,
        "proto": BtfFuncProto, "func": BtfFunc, "var": BtfVar, "datasec": BtfDatasec,
        "float": BtfFloat, "decl_tag": BtfDeclTag, "type_tag": BtfTypeTag,
        "enum64": BtfEnum64,
    }
    for key, cls in expected.items():
        t = btf[ids[key]]
        assert type(t) is cls, key
        assert t.id == ids[key]
    assert {type(t).kind for t in btf.types[1:]} == set(BtfKind) - {BtfKind.UNKN}
    assert isinstance(btf[0], BtfVoid) and btf[0].kind == BtfKind.UNKN


def test_int_encoding_and_members_with_bitfields(small: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = small
    i = btf[ids["int"]]
    assert isinstance(i, BtfInt)
    assert (i.size, i.bits, i.bit_offset, i.encoding, i.signed) == (4, 32, 0, IntEncoding.SIGNED,
                                                                    True)
    s = btf[ids["struct"]]
    assert isinstance(s, BtfStruct) and s.kind_flag
    got = [(m.name, m.type, m.bit_offset, m.bitfield_size) for m in s.members]
    assert got == [("a", ids["int"], 0, 0), ("lo", ids["u8"], 32, 4), ("hi", ids["u8"], 36, 4),
                   ("v", ids["arr"], 64, 0)]
    assert s.member("v").byte_offset == 8
    with pytest.raises(KeyError):
        s.member("nope")


def test_enum_values_carry_signedness(small: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = small
    e, e64, s64 = btf[ids["enum"]], btf[ids["enum64"]], btf[ids["senum64"]]
    assert isinstance(e, BtfEnum) and isinstance(e64, BtfEnum64) and isinstance(s64, BtfEnum64)
    assert e.signed and [(v.name, v.value) for v in e.values] == [("NEG", -1), ("POS", 7)]
    assert not e64.signed
    assert [(v.name, v.value) for v in e64.values] == [("BIG", 0x1122334455667788),
                                                       ("TOP", 1 << 63)]
    assert [(v.name, v.value) for v in s64.values] == [("MINUS_TWO", -2)]
    assert isinstance(e64, BtfEnum), "ENUM64 is an enum for isinstance checks"


def test_other_kinds_fields(small: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = small
    fwd, func, proto = btf[ids["fwd"]], btf[ids["func"]], btf[ids["proto"]]
    var, sec, tag = btf[ids["var"]], btf[ids["datasec"]], btf[ids["decl_tag"]]
    assert isinstance(fwd, BtfFwd) and fwd.is_union
    assert isinstance(func, BtfFunc) and func.linkage == BtfLinkage.GLOBAL
    assert isinstance(proto, BtfFuncProto) and proto.variadic
    assert [p.name for p in proto.params] == ["p", ""]
    assert isinstance(var, BtfVar) and var.linkage == BtfLinkage.GLOBAL
    assert isinstance(sec, BtfDatasec) and [(v.type, v.offset, v.size) for v in sec.vars] == [
        (ids["var"], 0, 20)]
    assert isinstance(tag, BtfDeclTag) and tag.component_idx == -1


def test_find_and_resolution(small: tuple[Btf, dict[str, int]]) -> None:
    btf, ids = small
    assert btf.find("s") == ids["struct"]
    assert btf.find("s", BtfKind.STRUCT) == ids["struct"]
    with pytest.raises(KeyError):
        btf.find("s", BtfKind.UNION)
    with pytest.raises(KeyError):
        btf.find("missing")
    assert btf.find_all("int") == [ids["int"]]
    assert btf.skip_modifiers(ids["const"]) == ids["typedef"]
    assert btf.skip_mods_and_typedefs(ids["const"]) == ids["struct"]
    assert btf.resolve(ids["const"]).id == ids["struct"]
    sizes = {"int": 4, "ptr": 8, "arr": 12, "struct": 20, "union": 4, "enum": 4,
             "const": 20, "restrict": 8, "var": 20, "datasec": 20, "float": 8,
             "type_tag": 4, "enum64": 8}
    for key, size in sizes.items():
        assert btf.resolve_size(ids[key]) == size, key
    assert btf.type_name(ids["ptr"]) == "int *"
    assert btf.type_name(ids["struct"]) == "struct s"


@pytest.mark.parametrize("key", ["fwd", "func", "proto", "decl_tag", "cycle_a"])
def test_types_without_a_size_raise_a_format_error(small: tuple[Btf, dict[str, int]],
                                                   key: str) -> None:
    btf, ids = small
    with pytest.raises(BtfFormatError):
        btf.resolve_size(ids[key])


def test_resolve_size_of_void_and_bad_ids(small: tuple[Btf, dict[str, int]]) -> None:
    btf, _ = small
    with pytest.raises(BtfFormatError):
        btf.resolve_size(0)
    with pytest.raises(KeyError):
        btf.resolve_size(len(btf))


def test_big_endian_blob_reads_the_same() -> None:
    b, ids = every_kind()
    le, be = Btf.from_bytes(b.build("<")), Btf.from_bytes(b.build(">"))
    assert be.endian == ">"
    s_le, s_be = le[ids["struct"]], be[ids["struct"]]
    assert isinstance(s_le, BtfStruct) and isinstance(s_be, BtfStruct)
    assert [(m.name, m.bit_offset) for m in s_le.members] == \
        [(m.name, m.bit_offset) for m in s_be.members]
    assert be.resolve_size(ids["arr"]) == 12


def test_split_btf_continues_ids_and_strings() -> None:
    b, ids = every_kind()
    base = Btf.from_bytes(b.build())
    split = Blob()
    split.strings = bytearray(b"")  # split string offsets continue the base's
    split.strings += b"child\0"
    split.words = [len(b.strings), int(BtfKind.PTR) << 24, ids["struct"]]
    split.count = 1
    child = Btf.from_bytes(split.build(), base=base)
    new_id = len(base.types)
    assert child[new_id].name == "child"
    assert child.resolve_size(new_id) == 8
    assert child.find("s") == ids["struct"]
    assert child.string(b.strings.index(b"int\0")) == "int"  # base strings visible


# --------------------------------------------------------------------------- malformed


def test_every_truncation_is_a_format_error() -> None:
    blob = every_kind()[0].build()
    for n in range(len(blob)):
        with pytest.raises(BtfFormatError):
            Btf.from_bytes(blob[:n])


def _patched(blob: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(blob)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.mark.parametrize(("offset", "fmt", "value", "message"), [
    (0, "<H", 0x1234, "magic"),
    (2, "<B", 2, "version"),
    (4, "<I", 8, "header length"),
    (12, "<I", 10, "aligned"),
    (20, "<I", 1 << 20, "string section"),
    (24 + 4, "<I", 20 << 24, "unknown kind"),
    (24, "<I", 1 << 20, "name offset"),
    (24 + 32 + 8, "<I", 9999, "beyond the last"),  # the PTR after two 4-word INTs
])
def test_corrupt_fields_are_named(offset: int, fmt: str, value: int, message: str) -> None:
    bad = _patched(every_kind()[0].build(), offset, fmt, value)
    with pytest.raises(BtfFormatError, match=message):
        Btf.from_bytes(bad)


def test_string_section_must_be_nul_terminated_and_start_empty() -> None:
    b = every_kind()[0]
    with pytest.raises(BtfFormatError, match="NUL"):
        Btf.from_bytes(b.build(strings=bytes(b.strings) + b"x"))
    with pytest.raises(BtfFormatError, match="empty string"):
        Btf.from_bytes(b.build(strings=b"x" + bytes(b.strings)))


def test_random_corruption_never_leaks_other_errors() -> None:
    blob = every_kind()[0].build()
    rng = random.Random(1234)
    for _ in range(3000):
        bad = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        try:
            btf = Btf.from_bytes(bytes(bad))
        except BtfFormatError:
            continue
        for t in btf.types:  # a blob that parses must also resolve safely
            with contextlib.suppress(BtfFormatError):
                btf.resolve_size(t.id)


def test_format_error_is_a_value_error() -> None:
    assert issubclass(BtfFormatError, ValueError)


# --------------------------------------------------------------------------- real BTF


@pytest.fixture(scope="module")
def vmlinux() -> Btf:
    if not VMLINUX.exists():
        pytest.skip(f"{VMLINUX} not present: kernel without CONFIG_DEBUG_INFO_BTF")
    return Btf.from_file(VMLINUX)


def test_vmlinux_parses() -> None:
    """Parse speed is a benchmark matter (no timing here): the whole blob parses."""
    if not VMLINUX.exists():
        pytest.skip(f"{VMLINUX} not present")
    btf = Btf.from_file(VMLINUX)
    assert len(btf) > 50_000


def test_vmlinux_has_bpf_uapi_types(vmlinux: Btf) -> None:
    attr = vmlinux[vmlinux.find("bpf_attr", BtfKind.UNION)]
    assert isinstance(attr, BtfUnion)
    assert attr.size == vmlinux.resolve_size(attr.id) >= 120
    insn = vmlinux[vmlinux.find("bpf_insn", BtfKind.STRUCT)]
    assert isinstance(insn, BtfStruct) and insn.size == 8
    regs = {m.name: (m.bit_offset, m.bitfield_size) for m in insn.members}
    assert regs["dst_reg"] == (8, 4) and regs["src_reg"] == (12, 4)
    cmd = vmlinux[vmlinux.find("bpf_cmd", BtfKind.ENUM)]
    assert isinstance(cmd, BtfEnum)
    assert (cmd.values[0].name, cmd.values[0].value) == ("BPF_MAP_CREATE", 0)
    assert vmlinux.resolve_size(vmlinux.find("__u64", BtfKind.TYPEDEF)) == 8


def test_vmlinux_kinds(vmlinux: Btf) -> None:
    kinds = Counter(t.kind for t in vmlinux.types)
    for kind in (BtfKind.INT, BtfKind.PTR, BtfKind.ARRAY, BtfKind.STRUCT, BtfKind.UNION,
                 BtfKind.ENUM, BtfKind.TYPEDEF, BtfKind.CONST, BtfKind.FUNC,
                 BtfKind.FUNC_PROTO, BtfKind.VAR, BtfKind.DATASEC):
        assert kinds[kind] > 0, kind.name


def test_vmlinux_sizes_resolve_everywhere(vmlinux: Btf) -> None:
    for t in vmlinux.types:
        if isinstance(t, BtfStruct | BtfUnion | BtfTypedef | BtfArray | BtfPtr):
            try:
                vmlinux.resolve_size(t.id)
            except BtfFormatError:
                # only typedefs/arrays of forward declarations or functions lack a size
                target = vmlinux.resolve(t.id)
                while isinstance(target, BtfArray):
                    target = vmlinux.resolve(target.type)
                assert isinstance(target, BtfFwd | BtfFuncProto | BtfVoid), t


# --------------------------------------------------------------------------- ELF


def test_btf_section_of_a_clang_object(tmp_path: Path) -> None:
    clang = shutil.which("clang") or shutil.which("clang-14")
    if clang is None:
        pytest.skip("clang not installed")
    src = tmp_path / "prog.c"
    src.write_text("struct pair { int a; unsigned b : 3; };\n"
                   "struct pair g;\n"
                   "int f(struct pair *p) { return p->a + g.b; }\n")
    obj = tmp_path / "prog.o"
    subprocess.run([clang, "-target", "bpf", "-g", "-O2", "-c", str(src), "-o", str(obj)],
                   check=True)
    btf = Btf.from_file(obj)
    pair = btf[btf.find("pair", BtfKind.STRUCT)]
    assert isinstance(pair, BtfStruct)
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in pair.members] == [
        ("a", 0, 0), ("b", 32, 3)]
    assert isinstance(btf[btf.find("f", BtfKind.FUNC)], BtfFunc)


def test_elf_without_btf_is_a_format_error() -> None:
    from pybpf.btf import elf_section

    with pytest.raises(BtfFormatError):
        elf_section(b"\x7fELF" + bytes(60), ".BTF")
    with pytest.raises(BtfFormatError):
        elf_section(b"not elf", ".BTF")
