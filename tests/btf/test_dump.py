"""``bpftool btf dump`` output, raw and ``format c``, byte for byte against the real bpftool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from btf_corpus import every_kind_blob, every_kind_types

from pybpf.btf.dump import dump_c, dump_raw
from pybpf.btf.raw import Btf

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OBJECTS = sorted(EXAMPLES.glob("*.o"))
VMLINUX = Path("/sys/kernel/btf/vmlinux")


def bpftool(path: Path, fmt: str) -> str:
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool not installed")
    out = subprocess.run(["bpftool", "btf", "dump", "file", str(path), "format", fmt],
                         capture_output=True, check=True, timeout=120)
    return out.stdout.decode("utf-8", "surrogateescape")


def test_raw_lines_of_every_kind() -> None:
    text = dump_raw(Btf.from_bytes(every_kind_blob()))
    assert "[8] ENUM64 'big' encoding=SIGNED size=8 vlen=2\n\t'NEG' val=-5LL\n" in text
    assert "[16] VAR 'counter' type_id=5, linkage=global\n" in text
    assert "\ttype_id=16 offset=0 size=24 (VAR 'counter')\n" in text
    assert "\t'flags' type_id=1 bits_offset=32 bitfield_size=3\n" in text
    assert text.count("\n") == len(every_kind_types()) + 19  # + members, values, …


def test_c_of_every_kind() -> None:
    text = dump_c(Btf.from_bytes(every_kind_blob()))
    assert text.startswith("#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n")
    assert "struct pkt {\n\tint len;\n\tint flags: 3;\n\tint mode: 5;\n\tlong: 0;\n" in text
    assert "\tvolatile const myint x;\n" in text
    assert text.endswith("#endif /* __VMLINUX_H__ */\n")


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
@pytest.mark.parametrize("fmt", ["raw", "c"])
def test_objects_as_bpftool(path: Path, fmt: str) -> None:
    btf = Btf.from_file(path)
    ours = dump_raw(btf) if fmt == "raw" else dump_c(btf)
    assert ours == bpftool(path, fmt)


@pytest.mark.parametrize("fmt", ["raw", "c"])
def test_every_kind_as_bpftool(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "every.btf"
    path.write_bytes(every_kind_blob())
    btf = Btf.from_bytes(every_kind_blob())
    assert (dump_raw(btf) if fmt == "raw" else dump_c(btf)) == bpftool(path, fmt)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["raw", "c"])
def test_vmlinux_as_bpftool(fmt: str) -> None:
    """All of vmlinux: anonymous types, bitfields, padding, packed structs, fwd cycles."""
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux")
    btf = Btf.from_file(VMLINUX)
    ours = dump_raw(btf) if fmt == "raw" else dump_c(btf)
    theirs = bpftool(VMLINUX, fmt)
    if ours != theirs:
        a, b = ours.splitlines(), theirs.splitlines()
        i = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
        pytest.fail(f"line {i}: ours {a[i]!r}, bpftool {b[i]!r}")
