"""Opening the shipped examples: programs, sections, maps, externs — as libbpf sees them."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pybpf.loader.elf_object import internal_map_name, open_object
from pybpf.loader.errors import LoaderError
from pybpf.loader.model import LibbpfMapType
from pybpf.loader.relocate import relocate
from pybpf.loader.secdef import find_sec_def, prog_type_by_name
from pybpf.uapi import BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, BpfAttachType, BpfMapType, BpfProgType

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OBJECTS = sorted(EXAMPLES.glob("*.o"))


def test_at_least_eight_examples_are_shipped() -> None:
    assert len(OBJECTS) >= 8
    for o in OBJECTS:
        assert o.with_suffix(".c").exists(), f"{o.name} has no C source"


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
def test_every_example_opens_and_relocates(path: Path) -> None:
    obj = open_object(path)
    assert obj.license == "GPL"
    assert obj.entry_programs
    relocate(obj)
    for p in obj.entry_programs:
        assert p.type != 0, f"{p.name}: section {p.sec_name} not recognised"
        assert p.final_insns and len(p.final_insns) >= p.sec_insn_cnt
        assert p.func_info and p.func_info[0].insn_off == 0


def test_globals_and_subprograms_are_laid_out_as_libbpf() -> None:
    obj = open_object(EXAMPLES / "globals_calls.o")
    names = [m.name for m in obj.maps]
    assert names == ["globals_.rodata", "globals_.bss", "globals_.data", ".data.hist"]
    rodata = obj.map(".rodata")
    assert rodata.libbpf_type == LibbpfMapType.RODATA
    assert rodata.map_flags == BPF_F_RDONLY_PROG | BPF_F_MMAPABLE
    assert rodata.type == BpfMapType.BPF_MAP_TYPE_ARRAY and rodata.max_entries == 1
    assert obj.map(".bss").data == bytearray(obj.map(".bss").value_size)
    subs = [p.name for p in obj.programs if p.is_subprog]
    assert set(subs) == {"bucket", "account", "common_tail"}
    relocate(obj)
    xdp = obj.program("xdp_globals")
    # main program first, then the subprograms it reaches, depth first
    assert xdp.final_insns is not None
    assert len(xdp.final_insns) == xdp.sec_insn_cnt + sum(
        p.sec_insn_cnt for p in obj.programs if p.is_subprog)
    assert [f.insn_off for f in xdp.func_info] == sorted(f.insn_off for f in xdp.func_info)
    assert len(xdp.func_info) == 4


def test_btf_defined_maps() -> None:
    obj = open_object(EXAMPLES / "map_in_map.o")
    tenants = obj.map("tenants")
    assert tenants.type == BpfMapType.BPF_MAP_TYPE_ARRAY_OF_MAPS
    assert tenants.inner is not None and tenants.inner.name == "tenants.inner"
    assert tenants.inner.type == BpfMapType.BPF_MAP_TYPE_HASH
    assert tenants.init_slots == ["tenant_a", None, "tenant_b"]
    dispatch = obj.map("dispatch")
    assert dispatch.value_size == 4 and dispatch.init_slots[6] == "xdp_tcp"
    assert dispatch.init_slots[17] == "xdp_udp"
    fw = open_object(EXAMPLES / "xdp_firewall.o").map("deny_v4")
    assert (fw.type, fw.key_size, fw.value_size, fw.max_entries) == (
        BpfMapType.BPF_MAP_TYPE_LPM_TRIE, 8, 4, 1024)
    rb = open_object(EXAMPLES / "ringbuf_events.o").map("events")
    assert rb.type == BpfMapType.BPF_MAP_TYPE_RINGBUF and rb.max_entries == 256 * 1024


def test_externs_and_kconfig_map() -> None:
    obj = open_object(EXAMPLES / "core_probe.o")
    kinds = {e.name: e.type.name for e in obj.externs}
    assert kinds == {"LINUX_KERNEL_VERSION": "KCFG", "CONFIG_HZ": "KCFG",
                     "CONFIG_BPF_SYSCALL": "KCFG", "bpf_prog_active": "KSYM"}
    kc = obj.maps[obj.kconfig_map_idx]
    assert kc.real_name == ".kconfig" and kc.name == "core_pr.kconfig"
    offs = {e.name: e.kcfg_data_off for e in obj.externs if e.type.name == "KCFG"}
    assert offs == {"CONFIG_HZ": 0, "LINUX_KERNEL_VERSION": 4, "CONFIG_BPF_SYSCALL": 8}
    assert kc.value_size == 9


def test_section_definitions_follow_libbpf() -> None:
    assert prog_type_by_name("xdp") == (BpfProgType.BPF_PROG_TYPE_XDP, BpfAttachType.BPF_XDP)
    assert prog_type_by_name("kprobe/do_sys_open")[0] == BpfProgType.BPF_PROG_TYPE_KPROBE
    assert prog_type_by_name("cgroup_skb/ingress") == (
        BpfProgType.BPF_PROG_TYPE_CGROUP_SKB, BpfAttachType.BPF_CGROUP_INET_INGRESS)
    assert prog_type_by_name("tcx/ingress")[1] == BpfAttachType.BPF_TCX_INGRESS
    sd = find_sec_def("fentry.s/do_unlinkat")
    assert sd is not None and sd.sec == "fentry.s+"
    assert sd.prog_flags(sd.prog_type) == 1 << 4  # BPF_F_SLEEPABLE
    frags = find_sec_def("xdp.frags")
    assert frags is not None and frags.prog_flags(BpfProgType.BPF_PROG_TYPE_XDP) == 1 << 5
    assert find_sec_def("kprobex") is None  # "+" needs exact match or a '/'
    assert find_sec_def("tp_btfx/foo") is None
    with pytest.raises(LookupError, match="failed to guess program type from ELF section 'foo'"):
        prog_type_by_name("foo")


def test_internal_map_names() -> None:
    assert internal_map_name("my_object_name", ".rodata") == "my_objec.rodata"
    assert internal_map_name("my_object_name", ".bss") == "my_objec.bss"
    assert internal_map_name("my_object_name", ".kconfig") == "my_obje.kconfig"
    assert internal_map_name("x", ".rodata.abracadabra") == ".rodata.abracad"


def _patch_section_name(data: bytes, old: bytes, new: bytes) -> bytes:
    """Rename a section in the section-name table (``.rel<name>`` shares its bytes)."""
    assert len(old) == len(new)
    i = data.index(b".rel" + old + b"\0") + 4
    return data[:i] + new + data[i + len(old):]


def test_legacy_maps_section_is_refused_like_libbpf() -> None:
    data = (EXAMPLES / "xdp_firewall.o").read_bytes()
    legacy = data.replace(b"\0.maps\0", b"\0maps\0\0")
    with pytest.raises(LoaderError) as ei:
        open_object(legacy, name="legacy.o")
    assert ei.value.errno == errno.EOPNOTSUPP
    assert "legacy map definitions in 'maps' section are not supported by libbpf v1.0+" in \
        str(ei.value)


def test_unknown_section_opens_without_type() -> None:
    data = _patch_section_name((EXAMPLES / "xdp_counter.o").read_bytes(), b"xdp", b"xyz")
    obj = open_object(data, name="x.o")
    assert obj.program("xdp_count").type == 0
    assert any("unrecognized ELF section name 'xyz'" in line for line in obj.log)
