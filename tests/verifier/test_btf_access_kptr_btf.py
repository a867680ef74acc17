"""Which map value members are kptrs (``btf_parse_fields`` / ``btf_find_kptr``), against the
live 6.18 kernel: the same BTF blob (built with :mod:`pybpf.btf.writer`) loaded on both
sides, the same array map created with it, and SCHED_CLS programs whose 4- and 8-byte loads
of a member tell a kptr (``kptr access size must be BPF_DW``, a typed pointer) from plain
memory. Level-2 logs must be equal; map creation must fail with the same errno.

Covered: the three tags, volatile pointers (a kptr), typedef'd pointers, attribute tags,
unknown or doubled tags and pointers to non-structs (no kptr: Linux gives such a value no
record), arrays of kptrs and kptrs in nested structs, program-local pointee types (MEM_ALLOC
objects: ``rcu_ptr_or_null_<local>``), and referenced kptrs of kernel structs without a
destructor (``ENOENT``).
"""

from __future__ import annotations

import ctypes
from types import ModuleType
from typing import Any

import pytest

from pybpf.btf.raw import (
    BtfArray,
    BtfInt,
    BtfMember,
    BtfPtr,
    BtfStruct,
    BtfType,
    BtfTypedef,
    BtfTypeTag,
    BtfVolatile,
    IntEncoding,
)
from pybpf.btf.writer import StringTable, build_blob, encode_types
from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn
from pybpf.kernel import Kernel
from pybpf.maps.btf_record import find_kptrs
from pybpf.testing.verifier_diff import (
    is_map_load_line,
    kernel_btf_map,
    load_both,
    log_lines,
    patch_map_marks,
    pybpf_btf_map,
)
from pybpf.uapi import BpfCmd, bpf_attr_btf_load, bpf_attr_map_create

SCHED_CLS, ARRAY = 3, 2
MAP_MARK = 0x7AB
LOOKUP = ("*(u32 *)(r10 - 4) = 0\nr2 = r10\nr2 += -4\nr1 = 0x7ab ll\ncall 1\n"
          "if r0 != 0 goto +1\nexit\n")


class Types:
    """A BTF type list under construction; type 1 is ``int`` (the map key)."""

    def __init__(self) -> None:
        self.types: list[BtfType] = []
        self.int = self.add(BtfInt(0, "int", 0, False, 4, IntEncoding.SIGNED, 0, 32))

    def add(self, t: BtfType) -> int:
        self.types.append(t)
        t.id = len(self.types)
        return t.id

    def struct(self, name: str, size: int, members: list[tuple[str, int, int]]) -> int:
        return self.add(BtfStruct(0, name, 0, False, size,
                                  tuple(BtfMember(n, 0, tid, off * 8, 0) for n, tid, off in members)))

    def ptr(self, tid: int) -> int:
        return self.add(BtfPtr(0, "", 0, False, tid))

    def tag(self, name: str, tid: int, kflag: bool = False) -> int:
        return self.add(BtfTypeTag(0, name, 0, kflag, tid))

    def kptr(self, tag: str, struct_name: str) -> int:
        return self.ptr(self.tag(tag, self.struct(struct_name, 0, [])))

    def blob(self) -> bytes:
        strings = StringTable()
        return build_blob(encode_types(self.types, strings), bytes(strings.data))


def _one(tag: str, pointee: str) -> tuple[bytes, int, int]:
    t = Types()
    vid = t.struct("val", 16, [("p", t.kptr(tag, pointee), 0)])
    return t.blob(), vid, 0


def _wrapped(kind: str) -> tuple[bytes, int, int]:
    t = Types()
    target = t.struct("prog_test_ref_kfunc", 0, [])
    if kind == "int":
        p = t.ptr(t.tag("kptr", t.int))
    elif kind == "double_tag":
        p = t.ptr(t.tag("kptr", t.tag("kptr", target)))
    elif kind == "attr_tag":
        p = t.ptr(t.tag("kptr", target, kflag=True))
    else:
        p = t.ptr(t.tag("kptr", target))
        p = t.add(BtfVolatile(0, "", 0, False, p)) if kind == "volatile" else \
            t.add(BtfTypedef(0, "kptr_t", 0, False, p))
    vid = t.struct("val", 16, [("p", p, 0)])
    return t.blob(), vid, 0


def _array() -> tuple[bytes, int, int]:
    t = Types()
    arr = t.add(BtfArray(0, "", 0, False, t.kptr("kptr", "prog_test_ref_kfunc"), t.int, 2))
    vid = t.struct("val", 16, [("p", arr, 0)])
    return t.blob(), vid, 8


def _nested() -> tuple[bytes, int, int]:
    t = Types()
    inner = t.struct("inner", 8, [("p", t.kptr("kptr_untrusted", "prog_test_ref_kfunc"), 0)])
    vid = t.struct("val", 16, [("x", t.int, 0), ("in", inner, 8)])
    return t.blob(), vid, 8


VALUES = {
    "ref": lambda: _one("kptr", "prog_test_ref_kfunc"),
    "unref": lambda: _one("kptr_untrusted", "prog_test_ref_kfunc"),
    "percpu": lambda: _one("percpu_kptr", "task_struct"),
    "unknown_tag": lambda: _one("not_a_kptr", "prog_test_ref_kfunc"),
    "unref_no_dtor_needed": lambda: _one("kptr_untrusted", "sk_buff"),
    "local_ref": lambda: _one("kptr", "pybpf_local_node"),
    "local_unref": lambda: _one("kptr_untrusted", "pybpf_local_node"),
    "to_int": lambda: _wrapped("int"),
    "double_tag": lambda: _wrapped("double_tag"),
    "attr_tag": lambda: _wrapped("attr_tag"),
    "volatile": lambda: _wrapped("volatile"),
    "typedef": lambda: _wrapped("typedef"),
    "array": _array,
    "nested": _nested,
}
BODIES = {
    "u32": "r1 = *(u32 *)(r0 + {off})\nr0 = 0\nexit",
    "u64": "r1 = *(u64 *)(r0 + {off})\nr0 = *(u32 *)(r1 + 0)\nexit",
}


def _patch(text: str, fd: int) -> list[Insn]:
    return patch_map_marks(assemble(text), {MAP_MARK: fd})


def _pybpf_map(k: Kernel, blob: bytes, value_id: int) -> int:
    """BTF_LOAD + MAP_CREATE through pybpf's syscall layer: fd, or -errno."""
    return pybpf_btf_map(k, blob, ARRAY, 4, 16, 1, value_id)


@pytest.mark.parametrize("body", list(BODIES))
@pytest.mark.parametrize("value", list(VALUES))
def test_member_access_matches_kernel(kernel: ModuleType, value: str, body: str) -> None:
    blob, vid, off = VALUES[value]()
    text = LOOKUP + BODIES[body].format(off=off)
    kfd = kernel_btf_map(kernel, blob, ARRAY, 4, 16, 1, vid)
    assert kfd >= 0
    k = Kernel()
    fd = _pybpf_map(k, blob, vid)
    assert fd >= 0
    try:
        want, got = load_both(kernel, k, SCHED_CLS, _patch(text, fd), log_level=2,
                              kernel_insns=_patch(text, kfd))
    finally:
        kernel.close(kfd)
    assert got.ok == want.ok, got.log
    assert log_lines(got.log, is_map_load_line) == log_lines(want.log, is_map_load_line)


def test_referenced_kptr_needs_a_destructor(kernel: ModuleType) -> None:
    """Linux refuses the BTF itself (ENOENT from btf_parse_kptr at BTF_LOAD); pybpf's BTF
    layer does not look at kptrs, so the map creation fails with the same errno."""
    blob, vid, _ = _one("kptr", "sk_buff")
    assert kernel.btf_load(blob, log_level=1, log_size=1 << 16).errno == 2
    assert _pybpf_map(Kernel(), blob, vid) == -2


@pytest.mark.parametrize("map_type,key_size,errno_", [(11, 8, 95), (2, 4, 0), (1, 4, 0), (6, 4, 0)])
def test_map_types_that_may_hold_kptrs(kernel: ModuleType, map_type: int, key_size: int,
                                       errno_: int) -> None:
    t = Types()
    key = t.int if key_size == 4 else t.struct("key", key_size, [("a", t.int, 0)])  # LPM: a struct
    vid = t.struct("val", 16, [("p", t.kptr("kptr_untrusted", "prog_test_ref_kfunc"), 0)])
    blob = t.blob()
    flags = 1 if map_type == 11 else 0  # LPM tries must be BPF_F_NO_PREALLOC
    btf = kernel.btf_load(blob)
    fd, err = kernel.map_create_raw(map_type, key_size, 16, 1, map_flags=flags, btf_fd=btf.fd,
                                    btf_key_type_id=key, btf_value_type_id=vid)
    kernel.close(btf.fd)
    if fd >= 0:
        kernel.close(fd)
    assert err == errno_
    k = Kernel()
    buf = ctypes.create_string_buffer(blob, len(blob))
    battr = bpf_attr_btf_load()
    battr.btf, battr.btf_size = ctypes.addressof(buf), len(blob)
    mattr = bpf_attr_map_create()
    mattr.map_type, mattr.key_size, mattr.value_size, mattr.max_entries = map_type, key_size, 16, 1
    mattr.map_flags, mattr.btf_fd = flags, k.bpf(BpfCmd.BPF_BTF_LOAD, battr)
    mattr.btf_key_type_id, mattr.btf_value_type_id = key, vid
    got = k.bpf(BpfCmd.BPF_MAP_CREATE, mattr)
    assert (got if got < 0 else 0) == -errno_


def _kptrs(make: Any) -> list[tuple[str, int, str]]:
    blob, vid, _ = make()
    from pybpf.btf.raw import Btf
    return [(k.kind, k.offset, k.name) for k in find_kptrs(Btf.from_bytes(blob), vid)]


def test_find_kptrs_offsets() -> None:
    """No kernel needed: the record itself."""
    assert _kptrs(VALUES["array"]) == [("kptr", 0, "prog_test_ref_kfunc"),
                                       ("kptr", 8, "prog_test_ref_kfunc")]
    assert _kptrs(VALUES["nested"]) == [("kptr_untrusted", 8, "prog_test_ref_kfunc")]
    assert _kptrs(VALUES["volatile"]) == [("kptr", 0, "prog_test_ref_kfunc")]
    for none in ("typedef", "to_int", "double_tag", "attr_tag", "unknown_tag"):
        assert _kptrs(VALUES[none]) == [], none
