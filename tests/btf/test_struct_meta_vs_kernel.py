"""``BPF_BTF_LOAD`` of program BTF with graph roots (``btf_parse_struct_metas``) against
the live kernel: the ``contains:<type>:<node>`` tag of a ``bpf_list_head`` / ``bpf_rb_root``
member right, missing, malformed, naming a missing type or member, or a member of the
wrong node type (``tests/btf/struct_meta/``)."""

from __future__ import annotations

import ctypes
from pathlib import Path
from types import ModuleType

import pytest

from pybpf.btf.writer import to_bytes
from pybpf.kernel import Kernel
from pybpf.loader.elf_object import open_object
from pybpf.uapi import BpfCmd, bpf_attr_btf_load

DIR = Path(__file__).parent / "struct_meta"
CASES = sorted(p.stem for p in DIR.glob("meta_*.o"))


def _pybpf_btf_load(blob: bytes) -> int:
    buf = ctypes.create_string_buffer(blob, len(blob))
    attr = bpf_attr_btf_load()
    attr.btf, attr.btf_size = ctypes.addressof(buf), len(blob)
    return int(Kernel().bpf(BpfCmd.BPF_BTF_LOAD, attr))


@pytest.mark.parametrize("case", CASES)
def test_btf_load_checks_graph_roots(kernel: ModuleType, case: str) -> None:
    obj = open_object(str(DIR / f"{case}.o"))
    assert obj.btf is not None
    blob = to_bytes(obj.btf, keep_strings=True)
    want = kernel.btf_load(blob)
    if want.ok:
        kernel.close(want.fd)
    got = _pybpf_btf_load(blob)
    assert (got >= 0, -got if got < 0 else 0) == (bool(want.ok), 0 if want.ok else want.errno)
    assert bool(want.ok) == (case == "meta_ok")
