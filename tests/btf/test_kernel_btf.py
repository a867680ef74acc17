"""The pybpf instance's kernel BTF: valid, ABI-true, and a CO-RE target like vmlinux."""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from types import ModuleType

import pytest

from pybpf.btf.dump import dump_c
from pybpf.btf.ext import BtfExt
from pybpf.btf.kernel_btf import (
    CTX_STRUCTS,
    ITER_CONTEXTS,
    OBJECT_LAYOUTS,
    kernel_btf,
    kernel_btf_blob,
)
from pybpf.btf.raw import Btf, BtfComposite, BtfKind, BtfPtr, elf_section
from pybpf.btf.relo_core import CandidateIndex, resolve_relo
from pybpf.btf.validate import btf_check
from pybpf.uapi import LAYOUTS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VMLINUX = Path("/sys/kernel/btf/vmlinux")


@functools.cache
def vmlinux_btf() -> Btf:
    return Btf.from_file(VMLINUX)


def flatten(btf: Btf, tid: int, prefix: str = "", base: int = 0) -> list[tuple]:
    """(path, bit offset, bitfield size, byte size, pointer?) of every leaf member."""
    out: list[tuple] = []
    t = btf.resolve(tid)
    assert isinstance(t, BtfComposite)
    for m in t.members:
        mt = btf.resolve(m.type)
        name = prefix + m.name
        if isinstance(mt, BtfComposite) and (not m.name or not mt.name):
            out += flatten(btf, m.type, name + ("." if m.name else ""), base + m.bit_offset)
        else:
            out.append((name, base + m.bit_offset, m.bitfield_size,
                        btf.resolve_size(m.type), isinstance(mt, BtfPtr)))
    return out


def composite(btf: Btf, name: str) -> int:
    for kind in (BtfKind.STRUCT, BtfKind.UNION):
        ids = btf.find_all(name, kind)
        if ids:
            return ids[0]
    raise KeyError(name)


def test_blob_is_valid_btf() -> None:
    err, log, btf = btf_check(kernel_btf_blob(), 1)
    assert err == 0, log.splitlines()[-3:]
    assert btf is not None and len(btf.types) == len(kernel_btf().types)


def test_blob_loads_into_the_live_kernel(kernel: ModuleType) -> None:
    r = kernel.btf_load(kernel_btf_blob(), log_level=1, log_size=1 << 20)
    assert r.ok, r.log[-300:]
    kernel.close(r.fd)


@pytest.mark.parametrize("name", [n for n in CTX_STRUCTS if n in LAYOUTS])
def test_ctx_structs_follow_the_uapi_layouts(name: str) -> None:
    btf = kernel_btf()
    tid = composite(btf, name)
    size, fields = LAYOUTS[name]
    assert btf.resolve_size(tid) == size
    leaves = {path.rsplit(".", 1)[-1]: off // 8 for path, off, *_ in flatten(btf, tid)}
    for field, off in fields.items():
        if field in leaves:
            assert leaves[field] == off, field


@pytest.mark.parametrize("name", CTX_STRUCTS)
def test_ctx_structs_match_vmlinux(name: str) -> None:
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux to compare with")
    vmlinux = vmlinux_btf()
    ours = kernel_btf()
    assert flatten(ours, composite(ours, name)) == flatten(vmlinux, composite(vmlinux, name))


def test_iterator_contexts_and_objects() -> None:
    btf = kernel_btf()
    for name, members in ITER_CONTEXTS.items():
        leaves = flatten(btf, composite(btf, name))
        assert [(p, off, ptr) for p, off, _, _, ptr in leaves] == [
            (m, 64 * i, True) for i, (m, _) in enumerate(members)]
    for name, layout in OBJECT_LAYOUTS.items():
        assert btf.resolve_size(composite(btf, name)) == ctypes.sizeof(layout)
    bpf_map = btf.types[composite(btf, "bpf_map")]
    assert isinstance(bpf_map, BtfComposite)
    assert bpf_map.member("id").byte_offset == 40
    assert btf.resolve(bpf_map.member("map_type").type).name == "bpf_map_type"


def test_dumps_as_a_header() -> None:
    text = dump_c(kernel_btf())
    assert "struct __sk_buff {" in text and "struct bpf_iter__bpf_map {" in text
    assert "\t\tstruct bpf_flow_keys *flow_keys;\n" in text


def test_core_relocations_resolve_against_it_as_against_vmlinux() -> None:
    """core_probe.o's pt_regs and enum relocations get the same values from either BTF."""
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux to compare with")
    data = (EXAMPLES / "core_probe.o").read_bytes()
    local = Btf.from_bytes(elf_section(data, ".BTF"))
    ext = BtfExt.from_bytes(elf_section(data, ".BTF.ext"), local)
    ours, theirs = CandidateIndex(kernel_btf()), CandidateIndex(vmlinux_btf())
    compared = 0
    for sec in ext.core_relos:
        for i, rec in enumerate(sec.records):
            root = local.types[rec.type_id].name
            if root.startswith(("pt_regs", "bpf_map_type")):
                a, _ = resolve_relo("p", rec, i, local, ours)
                b, _ = resolve_relo("p", rec, i, local, theirs)
                assert (a.new_val, a.poison) == (b.new_val, b.poison)
                compared += 1
    assert compared >= 3


def test_skeleton_target_btf_option() -> None:
    import pybpf.skel as skel

    assert skel.resolve_target(False, "live") is None
    idx = skel.resolve_target(kernel_btf(), None)
    assert idx is not None and idx.btf is kernel_btf()

    class NoVmlinux:
        vmlinux_btf = None

    target = skel.resolve_target(None, NoVmlinux())
    assert target is not None and target.btf is kernel_btf()
    with pytest.raises(skel.LoaderError):
        skel.resolve_target("/nonexistent.btf", None)
