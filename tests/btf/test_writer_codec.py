"""BTF re-encoding is lossless; codecs turn BTF-typed bytes into Python values and back."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.btf.codec import codec_for
from pybpf.btf.ext import BtfExt
from pybpf.btf.raw import Btf, BtfKind, elf_section
from pybpf.btf.writer import to_bytes

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.o")), ids=lambda p: p.name)
def test_object_btf_roundtrips_byte_for_byte(path: Path) -> None:
    raw = elf_section(path.read_bytes(), ".BTF")
    btf = Btf.from_bytes(raw)
    assert to_bytes(btf, keep_strings=True) == raw
    again = Btf.from_bytes(to_bytes(btf))
    assert [(t.kind, t.name) for t in again.types] == [(t.kind, t.name) for t in btf.types]


def test_btf_ext_records() -> None:
    data = (EXAMPLES / "globals_calls.o").read_bytes()
    btf = Btf.from_bytes(elf_section(data, ".BTF"))
    ext = BtfExt.from_bytes(elf_section(data, ".BTF.ext"), btf)
    assert {s.sec_name for s in ext.func_info} == {".text", "xdp", "socket"}
    assert ext.func_info_rec_size == 8 and ext.line_info_rec_size == 16
    text = ext.section("func_info", ".text")
    assert sorted(btf.types[r.type_id].name for r in text) == ["account", "bucket", "common_tail"]
    assert all(r.insn_off % 8 == 0 for r in text)


def test_codec_struct_and_arrays() -> None:
    data = (EXAMPLES / "xdp_counter.o").read_bytes()
    btf = Btf.from_bytes(elf_section(data, ".BTF"))
    ev = codec_for(btf, btf.find("datarec", BtfKind.STRUCT))
    assert ev.size == 16
    value = {"packets": 7, "bytes": 2**40}
    packed = ev.pack(value)
    assert len(packed) == 16 and ev.unpack(packed) == value
    gd = (EXAMPLES / "globals_calls.o").read_bytes()
    gbtf = Btf.from_bytes(elf_section(gd, ".BTF"))
    ro = codec_for(gbtf, gbtf.find(".rodata", BtfKind.DATASEC))
    assert ro.unpack(elf_section(gd, ".rodata"))["common_tail.____fmt"] == b"len %u long %d"
    with pytest.raises(KeyError):
        ev.pack({"nope": 1})


def test_codec_signed_ints() -> None:
    data = (EXAMPLES / "core_probe.o").read_bytes()
    btf = Btf.from_bytes(elf_section(data, ".BTF"))
    c = codec_for(btf, btf.find("int", BtfKind.INT))
    assert c.unpack(c.pack(-5)) == -5 and c.size == 4
