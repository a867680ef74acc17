"""Differential tests: pybpf relocates exactly as libbpf does, and loads what bpftool loads.

Reference 1 — the system libbpf (ctypes, :mod:`libbpf_oracle`): it loads each object in the
live kernel and hands back the final instructions of every program; pybpf's open-only
relocation (CO-RE against the same vmlinux BTF) must produce the same instructions, map
fds replaced by map indices on both sides.

Reference 2 — ``bpftool prog loadall``: the tags the kernel computes for bpftool's programs
must equal the tags of the programs pybpf loads into the same kernel, and
``bpf_prog_calc_tag`` over pybpf's pre-load instructions.

The corpus: Debian's libbpf-tools and xdp-tools ship BPF objects inside their binaries
(skeletons); a fixture downloads the packages with apt and cuts the ELF objects out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import libbpf_oracle as oracle
import pytest

from pybpf.btf.raw import Btf
from pybpf.btf.relo_core import CandidateIndex
from pybpf.loader.elf_object import open_object
from pybpf.loader.externs import KernelFacts, resolve_externs
from pybpf.loader.load import LiveSyscalls, create_max_entries, load_object, possible_cpus
from pybpf.loader.relocate import RelocateOptions, relocate
from pybpf.testing.corpora import debian_bpf_objects

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OBJECTS = sorted(EXAMPLES.glob("*.o"))
VMLINUX = "/sys/kernel/btf/vmlinux"
CORPUS_PACKAGES = ("libbpf-tools", "xdp-tools")


@pytest.fixture(scope="module")
def libbpf(kernel: object) -> object:
    if not oracle.available():
        pytest.skip("system libbpf (libbpf1) or vmlinux BTF not available")
    return oracle


@pytest.fixture(scope="module")
def vmlinux() -> CandidateIndex:
    if not os.path.exists(VMLINUX):
        pytest.skip("no /sys/kernel/btf/vmlinux")
    return CandidateIndex(Btf.from_file(VMLINUX))


def compare_with_libbpf(path: Path, vml: CandidateIndex) -> tuple[int, list[str]]:
    """(programs compared, differences) between libbpf and pybpf for one object."""
    ref = oracle.libbpf_load_each(str(path))
    obj = open_object(path)
    resolve_externs(obj, KernelFacts.host(vml.btf))  # kfunc externs (examples/iter_sum.o), as libbpf
    diffs = []
    for name, insns in ref.programs.items():
        for p in obj.programs:
            p.autoload = p.is_subprog or (p.name == name if not ref.loaded else True)
        relocate(obj, RelocateOptions(target=vml))
        mine = obj.program(name).final_insns
        if mine != insns:
            assert mine is not None
            at = next((i for i, (a, b) in enumerate(zip(mine, insns)) if a != b),
                      min(len(mine), len(insns)))
            diffs.append(f"{path.name}:{name}: first difference at insn {at}")
    if ref.loaded:
        ncpus = possible_cpus()
        mine_maps = [{"name": m.name, "type": m.type, "key_size": m.key_size,
                      "value_size": m.value_size, "max_entries": create_max_entries(m, ncpus),
                      "map_flags": m.map_flags} for m in obj.maps]
        if mine_maps != ref.maps:
            diffs.append(f"{path.name}: maps differ: {mine_maps} != {ref.maps}")
    return len(ref.programs), diffs


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
def test_examples_relocate_like_libbpf(path: Path, libbpf: object,
                                       vmlinux: CandidateIndex) -> None:
    n, diffs = compare_with_libbpf(path, vmlinux)
    assert n > 0, "libbpf could not load the example"
    assert not diffs


def _bpftool_tags(path: Path) -> dict[str, str]:
    pin = Path("/sys/fs/bpf") / f"pybpf_test_{os.getpid()}"
    shutil.rmtree(pin, ignore_errors=True)
    try:
        subprocess.run(["bpftool", "prog", "loadall", str(path), str(pin)], check=True,
                       capture_output=True, timeout=60)
        tags = {}
        for name in os.listdir(pin):
            out = subprocess.run(["bpftool", "-j", "prog", "show", "pinned", str(pin / name)],
                                 capture_output=True, text=True, check=True, timeout=30)
            tags[name] = json.loads(out.stdout)["tag"]
        return tags
    finally:
        shutil.rmtree(pin, ignore_errors=True)


@pytest.fixture(scope="module")
def bpftool(kernel: object) -> str:
    tool = shutil.which("bpftool")
    if tool is None or not os.path.ismount("/sys/fs/bpf"):
        pytest.skip("bpftool or a bpffs at /sys/fs/bpf not available")
    return tool


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
def test_examples_load_with_bpftool_tags(path: Path, bpftool: str, kernel: object,
                                         vmlinux: CandidateIndex) -> None:
    from pybpf.core.prog import bpf_prog_calc_tag
    from pybpf.testing.kernel import prog_info

    obj = open_object(path)
    facts = KernelFacts.host(vmlinux.btf, kallsyms=True)
    lo = load_object(obj, LiveSyscalls(), target=vmlinux, facts=facts)
    try:
        live = {n: bytes(prog_info(fd).tag).hex() for n, fd in lo.prog_fds.items()}
    finally:
        lo.close()
    calc = {p.name: bpf_prog_calc_tag(p.final_insns).hex()
            for p in obj.entry_programs if p.final_insns is not None}
    assert live == _bpftool_tags(path)
    assert calc == live


# ------------------------------------------------------------------ Debian corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """BPF objects of Debian's libbpf-tools and xdp-tools, fetched with apt."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("apt-get/dpkg not available to fetch the corpus")
    root = tmp_path_factory.mktemp("corpus")
    try:
        out = debian_bpf_objects(root, CORPUS_PACKAGES)
    except (subprocess.SubprocessError, OSError) as e:
        pytest.skip(f"apt-get download {' '.join(CORPUS_PACKAGES)} failed: {e}")
    if not out:
        pytest.skip("no BPF objects found in the corpus packages")
    return out


def test_corpus_opens(corpus: list[Path]) -> None:
    """Every real-world object opens and relocates without a target error."""
    failures = []
    for path in corpus:
        try:
            obj = open_object(path)
            relocate(obj)
        except Exception as exc:  # the report lists them all
            failures.append(f"{path.name}: {exc}")
    assert not failures, "\n".join(failures)
    assert len(corpus) >= 50


@pytest.mark.slow
def test_corpus_relocates_like_libbpf(corpus: list[Path], libbpf: object,
                                      vmlinux: CandidateIndex) -> None:
    total, diffs = 0, []
    for path in corpus:
        n, d = compare_with_libbpf(path, vmlinux)
        total += n
        diffs.extend(d)
    print(f"corpus: {len(corpus)} objects, {total} programs compared with libbpf, "
          f"{len(diffs)} differences")
    assert total >= 200
    assert not diffs, "\n".join(diffs)
