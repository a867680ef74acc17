"""Values with a BTF-described ``struct bpf_spin_lock``: creation, BPF_F_LOCK, vs Linux.

The same BTF blob is loaded into the live kernel and into a pybpf ``Kernel`` (BPF_BTF_LOAD
through the syscall layer); maps are created with ``btf_fd`` + key/value type ids in both,
and the same element operations must give the same errnos and bytes.
"""

from __future__ import annotations

import ctypes
import struct
import threading
from types import ModuleType
from typing import Any

import pytest

import pybpf.uapi as U
from pybpf.errors import BpfError
from pybpf.helpers.maps import MAP_HELPERS
from pybpf.isa.insn import Insn
from pybpf.kernel import Kernel
from pybpf.maps import elem_cmds
from pybpf.maps.api import Map
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.uapi import BpfCmd, bpf_attr

LOCK = U.BPF_F_LOCK


def _struct(name: int, size: int, members: list[tuple[int, int, int]]) -> bytes:
    out = struct.pack("<III", name, (4 << 24) | len(members), size)
    return out + b"".join(struct.pack("<III", *m) for m in members)


def lock_btf(bad: str = "") -> tuple[bytes, dict[str, int]]:
    """BTF with ``int``, ``struct bpf_spin_lock`` and value structs; ids by name.

    ``bad`` adds a struct Linux refuses at BTF_LOAD: ``"two"`` (two locks) or
    ``"misaligned"`` (a lock at byte offset 2), as type 6.
    """
    strings = bytearray(b"\0")

    def s(text: str) -> int:
        off = len(strings)
        strings.extend(text.encode() + b"\0")
        return off

    types = struct.pack("<III", s("int"), 1 << 24, 4) + struct.pack("<I", (1 << 24) | 32)
    types += _struct(s("bpf_spin_lock"), 4, [(s("val"), 1, 0)])                       # 2
    types += _struct(s("val"), 16, [(s("cnt"), 1, 0), (s("lock"), 2, 32),
                                    (s("a"), 1, 64), (s("b"), 1, 96)])                  # 3
    types += _struct(s("small"), 4, [(s("l"), 2, 0)])                                   # 4
    types += _struct(s("nolock"), 8, [(s("x"), 1, 0), (s("y"), 1, 32)])                # 5
    if bad == "two":
        types += _struct(s("two"), 8, [(s("l1"), 2, 0), (s("l2"), 2, 32)])             # 6
    elif bad == "misaligned":
        types += _struct(s("mis"), 8, [(s("l"), 2, 16)])                               # 6
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    ids = {"int": 1, "val": 3, "small": 4, "nolock": 5, "bad": 6}
    return hdr + types + bytes(strings), ids


class PyWorld:
    """A pybpf Kernel reached through ``bpf()``; maps handed back as their ``BpfMap``."""

    def __init__(self, blob: bytes) -> None:
        self.k = Kernel(sysctls={"bpf_jit_enable": 0})
        buf = ctypes.create_string_buffer(blob, len(blob))
        a = bpf_attr()
        a.btf, a.btf_size = ctypes.addressof(buf), len(blob)
        self.btf_fd = self.k.bpf(BpfCmd.BPF_BTF_LOAD, a)
        assert self.btf_fd > 0

    def create(self, mt: int, ks: int, vs: int, n: int, key_id: int, value_id: int
               ) -> tuple[int, Any]:
        a = bpf_attr()
        a.map_type, a.key_size, a.value_size, a.max_entries = mt, ks, vs, n
        a.btf_fd, a.btf_key_type_id, a.btf_value_type_id = self.btf_fd, key_id, value_id
        fd = self.k.bpf(BpfCmd.BPF_MAP_CREATE, a)
        if fd < 0:
            return -fd, None
        return 0, self.k.root.file(fd).obj.bmap


@pytest.fixture(scope="module")
def worlds(kernel: ModuleType) -> Any:
    blob, ids = lock_btf()
    res = kernel.btf_load(blob)
    assert res.fd > 0, res
    yield kernel, res.fd, PyWorld(blob), ids
    kernel.close(res.fd)


CREATE_CASES = [
    (U.BPF_MAP_TYPE_HASH, 4, 16, "val"),
    (U.BPF_MAP_TYPE_ARRAY, 4, 16, "val"),
    (U.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 16, "val"),
    (U.BPF_MAP_TYPE_PERCPU_HASH, 4, 16, "val"),
    (U.BPF_MAP_TYPE_LRU_HASH, 4, 16, "val"),
    (U.BPF_MAP_TYPE_HASH, 4, 4, "small"),
    (U.BPF_MAP_TYPE_QUEUE, 0, 4, "small"),
    (U.BPF_MAP_TYPE_BLOOM_FILTER, 0, 16, "val"),
    (U.BPF_MAP_TYPE_ARRAY, 4, 8, "nolock"),
    (U.BPF_MAP_TYPE_HASH, 4, 12, "val"),  # size mismatch
]


@pytest.mark.parametrize("case", CREATE_CASES, ids=lambda c: f"{c[0]}-{c[3]}-{c[2]}")
def test_create_with_btf_matches_kernel(worlds: Any, case: tuple[int, int, int, str]) -> None:
    kernel, kfd, py, ids = worlds
    mt, ks, vs, vname = case
    fd, kerr = kernel.map_create_raw(mt, ks, vs, 4, btf_fd=kfd, btf_key_type_id=ids["int"],
                                     btf_value_type_id=ids[vname])
    if fd >= 0:
        kernel.close(fd)
    perr, bmap = py.create(mt, ks, vs, 4, ids["int"], ids[vname])
    assert perr == kerr, (case, kerr, perr)
    if bmap is not None:
        assert bmap.spin_lock_off == {"val": 4, "small": 0}.get(vname, -1)


@pytest.mark.parametrize("bad", ["two", "misaligned"])
def test_bad_lock_layouts_refused_as_in_kernel(kernel: ModuleType, bad: str) -> None:
    """Linux refuses such BTF at BTF_LOAD; pybpf refuses it with the same errno, at the
    latest when a map is created with that value type (the record parse)."""
    blob, ids = lock_btf(bad)
    res = kernel.btf_load(blob)
    assert res.fd < 0 and res.errno in (7, 14)
    py = Kernel(sysctls={"bpf_jit_enable": 0})
    buf = ctypes.create_string_buffer(blob, len(blob))
    a = bpf_attr()
    a.btf, a.btf_size = ctypes.addressof(buf), len(blob)
    fd = py.bpf(BpfCmd.BPF_BTF_LOAD, a)
    if fd < 0:
        assert -fd == res.errno
        return
    a = bpf_attr()
    a.map_type, a.key_size, a.value_size, a.max_entries = U.BPF_MAP_TYPE_HASH, 4, 8, 4
    a.btf_fd, a.btf_key_type_id, a.btf_value_type_id = fd, ids["int"], ids["bad"]
    assert py.bpf(BpfCmd.BPF_MAP_CREATE, a) == -res.errno


def _ops(kernel: ModuleType, fd: int, bmap: Any, is_hash: bool) -> list[tuple[Any, Any]]:
    """Run one op sequence in both worlds; the list of (kernel, pybpf) outcomes."""
    out: list[tuple[Any, Any]] = []
    k0 = struct.pack("<I", 0)
    k1 = struct.pack("<I", 1)

    def py(fn: Any, *args: Any) -> Any:
        try:
            res = fn(bmap, *args)
            return 0, res if isinstance(res, bytes) else None
        except BpfError as exc:
            return exc.errno, None

    def upd(key: bytes, val: bytes, flags: int) -> None:
        out.append(((kernel.map_update_raw(fd, key, val, flags), None),
                    py(elem_cmds.map_update_elem, key, val, flags)))

    def look(key: bytes, flags: int) -> None:
        err, data = kernel.map_lookup_raw(fd, key, 16, flags)
        out.append(((err, data if not err else None), py(elem_cmds.map_lookup_elem, key, flags)))

    val = struct.pack("<IIII", 1, 0xDEADBEEF, 2, 3)
    upd(k0, val, 0)
    look(k0, 0)                     # the lock word reads 0
    look(k0, LOCK)
    upd(k0, struct.pack("<IIII", 5, 0x1234, 6, 7), LOCK)
    look(k0, LOCK)
    upd(k0, val, LOCK | U.BPF_NOEXIST)
    upd(k1, val, LOCK | U.BPF_EXIST)
    look(k1, LOCK)
    upd(k1, val, LOCK | 8)          # unknown flag bits
    look(k0, LOCK | 2)
    out.append(((kernel.map_freeze_raw(fd), None), py(elem_cmds.map_freeze)))
    if is_hash:
        err, data = kernel.map_lookup_and_delete_raw(fd, k0, 16, LOCK)
        out.append(((err, data if not err else None),
                    py(elem_cmds.map_lookup_and_delete_elem, k0, LOCK)))
    return out


@pytest.mark.parametrize("mt", [U.BPF_MAP_TYPE_HASH, U.BPF_MAP_TYPE_ARRAY])
def test_f_lock_element_ops_match_kernel(worlds: Any, mt: int) -> None:
    kernel, kfd, py, ids = worlds
    fd = kernel.map_create(mt, 4, 16, 4, btf_fd=kfd, btf_key_type_id=ids["int"],
                           btf_value_type_id=ids["val"])
    try:
        err, bmap = py.create(mt, 4, 16, 4, ids["int"], ids["val"])
        assert err == 0
        outcomes = _ops(kernel, fd, bmap, mt == U.BPF_MAP_TYPE_HASH)
    finally:
        kernel.close(fd)
    for i, (k, p) in enumerate(outcomes):
        assert k == p, (i, k, p)


def test_f_lock_without_a_lock_is_einval_as_in_kernel(worlds: Any) -> None:
    kernel, kfd, py, ids = worlds
    fd = kernel.map_create(U.BPF_MAP_TYPE_HASH, 4, 8, 4, btf_fd=kfd,
                           btf_key_type_id=ids["int"], btf_value_type_id=ids["nolock"])
    try:
        _, bmap = py.create(U.BPF_MAP_TYPE_HASH, 4, 8, 4, ids["int"], ids["nolock"])
        key, val = bytes(4), bytes(8)
        kerr = kernel.map_update_raw(fd, key, val, LOCK)
        with pytest.raises(BpfError) as exc:
            elem_cmds.map_update_elem(bmap, key, val, LOCK)
        assert exc.value.errno == kerr != 0
        kerr2, _ = kernel.map_lookup_raw(fd, key, 8, LOCK)
        with pytest.raises(BpfError) as exc:
            elem_cmds.map_lookup_elem(bmap, key, LOCK)
        assert exc.value.errno == kerr2 != 0
    finally:
        kernel.close(fd)


def test_map_create_api_with_parsed_btf_finds_the_lock() -> None:
    from pybpf.btf.raw import Btf

    blob, ids = lock_btf()
    m = Map.create(U.BPF_MAP_TYPE_ARRAY, 4, 16, 2, btf=Btf.from_bytes(blob),
                   btf_key_type_id=ids["int"], btf_value_type_id=ids["val"])
    assert m.bmap.spin_lock_off == 4
    m.update_elem(0, struct.pack("<IIII", 9, 0xFFFF, 8, 7), LOCK)
    assert m[0] == struct.pack("<IIII", 9, 0, 8, 7)
    with pytest.raises(BpfError):
        m.freeze()
    with pytest.raises(BpfError) as exc:
        Map.create(U.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 16, 2, btf=Btf.from_bytes(blob),
                   btf_key_type_id=ids["int"], btf_value_type_id=ids["val"])
    assert exc.value.errno == 95  # EOPNOTSUPP


# ------------------------------------------------------------------ helpers from programs
HELPERS = {fid: p.impl for fid, p in MAP_HELPERS.items()}


def locked_increment_prog(map_addr: int, lock_off: int) -> CompiledProgram:
    """lookup key 0; spin_lock(&v->lock); v->cnt = v->cnt + 1 (non-atomic); unlock."""
    insns = [Insn(0x62, 10, 0, -4, 0),
             Insn(0x18, 1, 1, 0, map_addr & 0xFFFFFFFF), Insn(0, 0, 0, 0, map_addr >> 32),
             Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
             Insn(0x85, 0, 0, 0, U.BPF_FUNC_map_lookup_elem),
             Insn(0x15, 0, 0, 10, 0),                       # if r0 == 0 goto out
             Insn(0xBF, 6, 0, 0, 0),                        # r6 = value
             Insn(0xBF, 1, 6, 0, 0), Insn(0x07, 1, 0, 0, lock_off),
             Insn(0x85, 0, 0, 0, U.BPF_FUNC_spin_lock),
             Insn(0x61, 7, 6, 0, 0),                        # r7 = v->cnt
             Insn(0x07, 7, 0, 0, 1),
             Insn(0x63, 6, 7, 0, 0),                        # v->cnt = r7
             Insn(0xBF, 1, 6, 0, 0), Insn(0x07, 1, 0, 0, lock_off),
             Insn(0x85, 0, 0, 0, U.BPF_FUNC_spin_unlock),
             Insn(0xB7, 0, 0, 0, 0),
             Insn(0x95, 0, 0, 0, 0)]
    return CompiledProgram(insns, helpers=HELPERS)


@pytest.mark.parametrize("mt", [U.BPF_MAP_TYPE_ARRAY, U.BPF_MAP_TYPE_HASH])
def test_spin_lock_helpers_lose_no_update_across_threads(mt: int) -> None:
    from pybpf.btf.raw import Btf

    blob, ids = lock_btf()
    m = Map.create(mt, 4, 16, 2, btf=Btf.from_bytes(blob), btf_key_type_id=ids["int"],
                   btf_value_type_id=ids["val"])
    m[0] = bytes(16)
    prog = locked_increment_prog(m.bmap.addr, m.bmap.spin_lock_off)
    n_threads, per_thread = 4, 250

    def work() -> None:
        for _ in range(per_thread):
            assert prog.run() == 0

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cnt, lock, _, _ = struct.unpack("<IIII", m[0])
    assert (cnt, lock) == (n_threads * per_thread, 0)
    # a BPF_F_LOCK update from user space takes the same lock and keeps the lock word
    m.update_elem(0, struct.pack("<IIII", 1, 77, 0, 0), LOCK)
    assert struct.unpack("<IIII", m[0])[:2] == (1, 0)
