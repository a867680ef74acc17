"""The differential table: bad attributes of every command, live kernel vs pybpf.

Each case builds the same ``union bpf_attr`` in both worlds (with each world's own fds and
buffers) and demands the identical errno. Reproduce the agreement count with::

    .venv/bin/pytest tests/syscall/test_bad_attrs_vs_kernel.py -q
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from typing import Any

import pytest
from syscall_worlds import RET0, Case, LiveWorld, PyWorld, World, errname, mini_btf

from pybpf.uapi import (
    BPF_ANY,
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_HASH,
    BPF_NOEXIST,
    BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
    BPF_PROG_TYPE_LIRC_MODE2,
    BPF_PROG_TYPE_SK_LOOKUP,
    BPF_PROG_TYPE_SOCKET_FILTER,
    BPF_PROG_TYPE_XDP,
    BPF_STRUCT_OPS,
    BPF_TCX_INGRESS,
    BPF_XDP,
    BpfCmd,
    bpf_attr,
    bpf_btf_info,
    bpf_map_info,
    bpf_prog_info,
)

C = BpfCmd
BAD_PTR = 0x10
BAD_FD = 9999
ENOTSUPP = 524


def attr(**fields: Any) -> bpf_attr:
    a = bpf_attr()
    for key, value in fields.items():
        if "." in key:
            outer, inner = key.split(".")
            setattr(getattr(a, outer), inner, value)
        else:
            setattr(a, key, value)
    return a


def poke(a: bpf_attr, offset: int, value: int = 1) -> bpf_attr:
    ctypes.memmove(ctypes.addressof(a) + offset, bytes([value]), 1)
    return a


def A(**fields: Any) -> Any:
    """A builder that fills ``fields``; values may be callables of the world."""
    def build(w: World) -> tuple[Any, None]:
        return attr(**{k: (v(w) if callable(v) else v) for k, v in fields.items()}), None
    return build


def F(name: str) -> Any:
    return lambda w: w.fd[name]


def key(i: int) -> Any:
    return lambda w: w.buf(i.to_bytes(4, "little"))


def val(n: int = 8) -> Any:
    return lambda w: w.buf(n)


def insns() -> Any:
    return lambda w: w.buf(RET0)


def lic(text: str = "GPL") -> Any:
    return lambda w: w.cstr(text)


def prog(ptype: int = BPF_PROG_TYPE_SOCKET_FILTER, **extra: Any) -> Any:
    fields = dict(prog_type=ptype, insn_cnt=2, insns=insns(), license=lic())
    fields.update(extra)
    return A(**fields)


def with_poke(build: Any, offset: int) -> Any:
    def b(w: World) -> tuple[Any, None]:
        a, size = build(w)
        return poke(a, offset), size
    return b


def sized(build: Any, size: int) -> Any:
    def b(w: World) -> tuple[Any, int]:
        a, _ = build(w)
        return a, size
    return b


def big_attr(size: int, nonzero_at: int | None = None) -> Any:
    def b(w: World) -> tuple[Any, int]:
        buf = bytearray(size)
        buf[0] = BPF_MAP_TYPE_ARRAY
        if nonzero_at is not None:
            buf[nonzero_at] = 1
        w.keep.append(buf)
        return buf, size
    return b


def map_create(t: int = BPF_MAP_TYPE_ARRAY, ks: int = 4, vs: int = 8, n: int = 4,
               **extra: Any) -> Any:
    return A(map_type=t, key_size=ks, value_size=vs, max_entries=n, **extra)


def path(rel: str) -> Any:
    return lambda w: w.cstr(f"{w.pin_dir}/{rel}" if not rel.startswith("/") else rel)


def info(fd: str, cls: type[Any], size: int | None = None, **fields: Any) -> Any:
    def b(w: World) -> tuple[Any, None]:
        n = size if size is not None else ctypes.sizeof(cls)
        raw = bytearray(max(n, ctypes.sizeof(cls)))
        obj = cls.from_buffer(raw)
        for k, v in fields.items():
            setattr(obj, k, v(w) if callable(v) else v)
        w.keep.append(raw)
        a = attr()
        a.info.bpf_fd = w.fd.get(fd, BAD_FD)
        a.info.info_len = n
        a.info.info = ctypes.addressof((ctypes.c_char * len(raw)).from_buffer(raw))
        return a, None
    return b


def big_info_tail(fd: str, cls: type[Any]) -> Any:
    def b(w: World) -> tuple[Any, None]:
        raw = bytearray(ctypes.sizeof(cls) + 8)
        raw[-1] = 1
        w.keep.append(raw)
        a = attr()
        a.info.bpf_fd, a.info.info_len = w.fd[fd], len(raw)
        a.info.info = ctypes.addressof((ctypes.c_char * len(raw)).from_buffer(raw))
        return a, None
    return b


def btf_load(data: bytes, **extra: Any) -> Any:
    return A(btf=lambda w: w.buf(data), btf_size=len(data), **extra)


BAD_MAGIC = b"\x00\x00" + mini_btf()[2:]


CASES: list[Case] = [
    # ---- entry point ------------------------------------------------------------------
    Case("unknown cmd 99", 99, A()),
    Case("unknown cmd 38", 38, A()),
    Case("size above a page", C.BPF_MAP_CREATE, big_attr(4097)),
    Case("non-zero byte beyond sizeof(attr)", C.BPF_MAP_CREATE, big_attr(200, 190)),
    Case("zero tail beyond sizeof(attr) is fine", C.BPF_MAP_CREATE, big_attr(200)),
    Case("size 0 reads nothing", C.BPF_MAP_CREATE, sized(map_create(), 0)),
    Case("size 4: only map_type", C.BPF_MAP_CREATE, sized(map_create(), 4)),
    # ---- MAP_CREATE -------------------------------------------------------------------
    Case("map type 0", C.BPF_MAP_CREATE, map_create(t=0)),
    Case("map type 9999", C.BPF_MAP_CREATE, map_create(t=9999)),
    Case("array key_size 8", C.BPF_MAP_CREATE, map_create(ks=8)),
    Case("array value_size 0", C.BPF_MAP_CREATE, map_create(vs=0)),
    Case("array max_entries 0", C.BPF_MAP_CREATE, map_create(n=0)),
    Case("hash key_size 0", C.BPF_MAP_CREATE, map_create(t=BPF_MAP_TYPE_HASH, ks=0)),
    Case("RDONLY|WRONLY", C.BPF_MAP_CREATE, map_create(map_flags=(1 << 3) | (1 << 4))),
    Case("unknown map flag", C.BPF_MAP_CREATE, map_create(map_flags=1 << 30)),
    Case("name with '-'", C.BPF_MAP_CREATE, map_create(map_name=b"a-b")),
    Case("name of 16 chars", C.BPF_MAP_CREATE, map_create(map_name=b"a" * 16)),
    Case("name with . and _", C.BPF_MAP_CREATE, map_create(map_name=b"a.b_c9")),
    Case("map_extra on array", C.BPF_MAP_CREATE, map_create(map_extra=1)),
    Case("btf key id without value id", C.BPF_MAP_CREATE, map_create(btf_key_type_id=1)),
    Case("btf_vmlinux_value_type_id on array", C.BPF_MAP_CREATE,
         map_create(btf_vmlinux_value_type_id=1)),
    Case("byte after excl_prog_hash_size", C.BPF_MAP_CREATE, with_poke(map_create(), 100)),
    Case("excl_prog_hash_size without hash", C.BPF_MAP_CREATE,
         map_create(excl_prog_hash_size=32)),
    Case("excl_prog_hash size 16", C.BPF_MAP_CREATE,
         map_create(excl_prog_hash=val(32), excl_prog_hash_size=16)),
    Case("excl_prog_hash bad pointer", C.BPF_MAP_CREATE,
         map_create(excl_prog_hash=BAD_PTR, excl_prog_hash_size=32)),
    Case("NUMA node 5", C.BPF_MAP_CREATE, map_create(map_flags=1 << 2, numa_node=5)),
    Case("NUMA node 0", C.BPF_MAP_CREATE, map_create(map_flags=1 << 2, numa_node=0)),
    Case("btf_fd not open", C.BPF_MAP_CREATE,
         map_create(btf_fd=BAD_FD, btf_key_type_id=1, btf_value_type_id=1)),
    Case("btf_fd is a map", C.BPF_MAP_CREATE,
         map_create(btf_fd=F("arr"), btf_key_type_id=1, btf_value_type_id=1)),
    Case("btf value type of wrong size", C.BPF_MAP_CREATE,
         map_create(btf_fd=F("btf"), btf_key_type_id=1, btf_value_type_id=1)),
    Case("btf key/value types fit", C.BPF_MAP_CREATE,
         map_create(vs=4, btf_fd=F("btf"), btf_key_type_id=1, btf_value_type_id=1)),
    Case("btf type id out of range", C.BPF_MAP_CREATE,
         map_create(vs=4, btf_fd=F("btf"), btf_key_type_id=1, btf_value_type_id=77)),
    Case("map_ifindex of no device", C.BPF_MAP_CREATE, map_create(map_ifindex=99999)),
    Case("token fd not open", C.BPF_MAP_CREATE,
         map_create(map_flags=1 << 16, map_token_fd=BAD_FD)),
    Case("token fd is a map", C.BPF_MAP_CREATE,
         map_create(map_flags=1 << 16, map_token_fd=F("arr"))),
    Case("array without CAP_BPF", C.BPF_MAP_CREATE, map_create(), unpriv=True),
    Case("hash without CAP_BPF", C.BPF_MAP_CREATE, map_create(t=BPF_MAP_TYPE_HASH),
         unpriv=True),
    # ---- MAP_LOOKUP_ELEM ----------------------------------------------------------------
    Case("lookup fd not open", C.BPF_MAP_LOOKUP_ELEM, A(map_fd=BAD_FD, key=key(0), value=val())),
    Case("lookup fd is a program", C.BPF_MAP_LOOKUP_ELEM,
         A(map_fd=F("prog"), key=key(0), value=val())),
    Case("lookup fd is not BPF", C.BPF_MAP_LOOKUP_ELEM,
         A(map_fd=F("nonbpf"), key=key(0), value=val())),
    Case("lookup unknown flag", C.BPF_MAP_LOOKUP_ELEM,
         A(map_fd=F("arr"), key=key(0), value=val(), flags=1 << 10)),
    Case("lookup BPF_F_LOCK without spin lock", C.BPF_MAP_LOOKUP_ELEM,
         A(map_fd=F("arr"), key=key(0), value=val(), flags=4)),
    Case("lookup bad key pointer", C.BPF_MAP_LOOKUP_ELEM,
         A(map_fd=F("arr"), key=BAD_PTR, value=val())),
    Case("lookup NULL key", C.BPF_MAP_LOOKUP_ELEM, A(map_fd=F("arr"), key=0, value=val())),
    Case("lookup bad value pointer", C.BPF_MAP_LOOKUP_ELEM,
         A(map_fd=F("arr"), key=key(0), value=BAD_PTR)),
    Case("lookup index out of range", C.BPF_MAP_LOOKUP_ELEM,
         A(map_fd=F("arr"), key=key(100), value=val())),
    Case("lookup ok", C.BPF_MAP_LOOKUP_ELEM, A(map_fd=F("arr"), key=key(1), value=val())),
    Case("lookup byte after flags", C.BPF_MAP_LOOKUP_ELEM,
         with_poke(A(map_fd=F("arr"), key=key(0), value=val()), 40)),
    Case("lookup on WRONLY fd", C.BPF_MAP_LOOKUP_ELEM,
         A(map_fd=F("arr_wo"), key=key(0), value=val())),
    Case("lookup on RDONLY fd", C.BPF_MAP_LOOKUP_ELEM,
         A(map_fd=F("arr_ro"), key=key(0), value=val())),
    Case("lookup missing hash key", C.BPF_MAP_LOOKUP_ELEM,
         A(map_fd=F("hash"), key=key(5), value=val())),
    # ---- MAP_UPDATE_ELEM ----------------------------------------------------------------
    Case("update fd not open", C.BPF_MAP_UPDATE_ELEM, A(map_fd=BAD_FD, key=key(0), value=val())),
    Case("update on RDONLY fd", C.BPF_MAP_UPDATE_ELEM,
         A(map_fd=F("arr_ro"), key=key(0), value=val())),
    Case("update on frozen map", C.BPF_MAP_UPDATE_ELEM,
         A(map_fd=F("frozen"), key=key(0), value=val())),
    Case("update BPF_F_LOCK without spin lock", C.BPF_MAP_UPDATE_ELEM,
         A(map_fd=F("arr"), key=key(0), value=val(), flags=4)),
    Case("update unknown flag", C.BPF_MAP_UPDATE_ELEM,
         A(map_fd=F("arr"), key=key(0), value=val(), flags=1 << 5)),
    Case("update NOEXIST on array", C.BPF_MAP_UPDATE_ELEM,
         A(map_fd=F("arr"), key=key(0), value=val(), flags=BPF_NOEXIST)),
    Case("update index out of range", C.BPF_MAP_UPDATE_ELEM,
         A(map_fd=F("arr"), key=key(4), value=val(), flags=BPF_ANY)),
    Case("update bad value pointer", C.BPF_MAP_UPDATE_ELEM,
         A(map_fd=F("arr"), key=key(0), value=BAD_PTR)),
    Case("update bad key pointer", C.BPF_MAP_UPDATE_ELEM,
         A(map_fd=F("arr"), key=BAD_PTR, value=val())),
    Case("update ok", C.BPF_MAP_UPDATE_ELEM, A(map_fd=F("arr"), key=key(2), value=val())),
    Case("update on WRONLY fd", C.BPF_MAP_UPDATE_ELEM,
         A(map_fd=F("arr_wo"), key=key(0), value=val())),
    # ---- MAP_DELETE_ELEM ----------------------------------------------------------------
    Case("delete from array", C.BPF_MAP_DELETE_ELEM, A(map_fd=F("arr"), key=key(0))),
    Case("delete fd not open", C.BPF_MAP_DELETE_ELEM, A(map_fd=BAD_FD, key=key(0))),
    Case("delete byte after key", C.BPF_MAP_DELETE_ELEM,
         with_poke(A(map_fd=F("arr"), key=key(0)), 16)),
    Case("delete missing hash key", C.BPF_MAP_DELETE_ELEM, A(map_fd=F("hash"), key=key(3))),
    Case("delete on RDONLY fd", C.BPF_MAP_DELETE_ELEM, A(map_fd=F("arr_ro"), key=key(0))),
    Case("delete bad key pointer", C.BPF_MAP_DELETE_ELEM, A(map_fd=F("hash"), key=BAD_PTR)),
    # ---- MAP_GET_NEXT_KEY ---------------------------------------------------------------
    Case("next_key fd not open", C.BPF_MAP_GET_NEXT_KEY,
         A(map_fd=BAD_FD, key=0, next_key=val(4))),
    Case("next_key bad out pointer", C.BPF_MAP_GET_NEXT_KEY,
         A(map_fd=F("arr"), key=0, next_key=BAD_PTR)),
    Case("next_key of empty hash", C.BPF_MAP_GET_NEXT_KEY,
         A(map_fd=F("hash"), key=0, next_key=val(4))),
    Case("next_key byte after next_key", C.BPF_MAP_GET_NEXT_KEY,
         with_poke(A(map_fd=F("arr"), key=0, next_key=val(4)), 24)),
    Case("next_key after the last index", C.BPF_MAP_GET_NEXT_KEY,
         A(map_fd=F("arr"), key=key(3), next_key=val(4))),
    Case("next_key on WRONLY fd", C.BPF_MAP_GET_NEXT_KEY,
         A(map_fd=F("arr_wo"), key=0, next_key=val(4))),
    # ---- MAP_LOOKUP_AND_DELETE_ELEM -----------------------------------------------------
    Case("lookup_and_delete on array", C.BPF_MAP_LOOKUP_AND_DELETE_ELEM,
         A(map_fd=F("arr"), key=key(0), value=val())),
    Case("lookup_and_delete unknown flag", C.BPF_MAP_LOOKUP_AND_DELETE_ELEM,
         A(map_fd=F("hash"), key=key(0), value=val(), flags=1 << 9)),
    Case("lookup_and_delete on RDONLY fd", C.BPF_MAP_LOOKUP_AND_DELETE_ELEM,
         A(map_fd=F("arr_ro"), key=key(0), value=val())),
    Case("lookup_and_delete missing hash key", C.BPF_MAP_LOOKUP_AND_DELETE_ELEM,
         A(map_fd=F("hash"), key=key(0), value=val())),
    # ---- MAP_FREEZE -----------------------------------------------------------------------
    Case("freeze fd not open", C.BPF_MAP_FREEZE, A(map_fd=BAD_FD)),
    Case("freeze a program fd", C.BPF_MAP_FREEZE, A(map_fd=F("prog"))),
    Case("freeze byte after map_fd", C.BPF_MAP_FREEZE, with_poke(A(map_fd=F("arr")), 4)),
    Case("freeze twice", C.BPF_MAP_FREEZE, A(map_fd=F("frozen"))),
    Case("freeze through RDONLY fd", C.BPF_MAP_FREEZE, A(map_fd=F("arr_ro"))),
    # ---- batches --------------------------------------------------------------------------
    Case("lookup batch count 0", C.BPF_MAP_LOOKUP_BATCH,
         A(**{"batch.map_fd": F("arr"), "batch.count": 0})),
    Case("lookup batch fd not open", C.BPF_MAP_LOOKUP_BATCH,
         A(**{"batch.map_fd": BAD_FD, "batch.count": 1})),
    Case("batch byte after flags", C.BPF_MAP_LOOKUP_BATCH,
         with_poke(A(**{"batch.map_fd": F("arr")}), 56)),
    Case("lookup batch unknown elem_flags", C.BPF_MAP_LOOKUP_BATCH,
         A(**{"batch.map_fd": F("arr"), "batch.count": 1, "batch.elem_flags": 1 << 8,
              "batch.keys": val(32), "batch.values": val(64)})),
    Case("lookup batch all of an array", C.BPF_MAP_LOOKUP_BATCH,
         A(**{"batch.map_fd": F("arr"), "batch.count": 8, "batch.keys": val(64),
              "batch.values": val(128), "batch.out_batch": val(4)})),
    Case("lookup batch bad keys pointer", C.BPF_MAP_LOOKUP_BATCH,
         A(**{"batch.map_fd": F("arr"), "batch.count": 2, "batch.keys": BAD_PTR,
              "batch.values": val(64), "batch.out_batch": val(4)})),
    Case("delete batch on array", C.BPF_MAP_DELETE_BATCH,
         A(**{"batch.map_fd": F("arr"), "batch.count": 1, "batch.keys": val(4)})),
    Case("lookup_and_delete batch on array", C.BPF_MAP_LOOKUP_AND_DELETE_BATCH,
         A(**{"batch.map_fd": F("arr"), "batch.count": 1, "batch.keys": val(4),
              "batch.values": val(8)})),
    Case("lookup batch on WRONLY fd", C.BPF_MAP_LOOKUP_BATCH,
         A(**{"batch.map_fd": F("arr_wo"), "batch.count": 1})),
    Case("update batch on RDONLY fd", C.BPF_MAP_UPDATE_BATCH,
         A(**{"batch.map_fd": F("arr_ro"), "batch.count": 1})),
    Case("update batch bad values pointer", C.BPF_MAP_UPDATE_BATCH,
         A(**{"batch.map_fd": F("arr"), "batch.count": 1, "batch.keys": key(0),
              "batch.values": BAD_PTR})),
    # ---- PROG_LOAD ------------------------------------------------------------------------
    Case("insn_cnt 0", C.BPF_PROG_LOAD, prog(insn_cnt=0)),
    Case("insn_cnt above 1M", C.BPF_PROG_LOAD, prog(insn_cnt=1_000_001)),
    Case("unknown prog_flags", C.BPF_PROG_LOAD, prog(prog_flags=1 << 20)),
    Case("prog type 0", C.BPF_PROG_LOAD, prog(ptype=0)),
    Case("prog type 9999", C.BPF_PROG_LOAD, prog(ptype=9999)),
    Case("prog type not built (LIRC)", C.BPF_PROG_LOAD, prog(ptype=BPF_PROG_TYPE_LIRC_MODE2)),
    Case("bad insns pointer", C.BPF_PROG_LOAD, prog(insns=BAD_PTR)),
    Case("bad license pointer", C.BPF_PROG_LOAD, prog(license=BAD_PTR)),
    Case("NULL license", C.BPF_PROG_LOAD, prog(license=0)),
    Case("non-GPL license loads", C.BPF_PROG_LOAD, prog(license=lic("Proprietary"))),
    Case("name with '-'", C.BPF_PROG_LOAD, prog(prog_name=b"a-b")),
    Case("name of 16 chars", C.BPF_PROG_LOAD, prog(prog_name=b"x" * 16)),
    Case("name of 15 chars", C.BPF_PROG_LOAD, prog(prog_name=b"x" * 15)),
    Case("log_buf with level 0", C.BPF_PROG_LOAD, prog(log_buf=val(64), log_size=64)),
    Case("log_size without log_buf", C.BPF_PROG_LOAD, prog(log_level=1, log_size=64)),
    Case("log_buf without log_size", C.BPF_PROG_LOAD, prog(log_level=1, log_buf=val(64))),
    Case("unknown log_level bit", C.BPF_PROG_LOAD,
         prog(log_level=16, log_buf=val(64), log_size=64)),
    Case("log_size above UINT_MAX>>2", C.BPF_PROG_LOAD,
         prog(log_level=1, log_buf=val(64), log_size=(1 << 30))),
    Case("log buffer too small", C.BPF_PROG_LOAD,
         prog(log_level=1, log_buf=val(16), log_size=16)),
    Case("log level without buffer", C.BPF_PROG_LOAD, prog(log_level=1)),
    Case("log level 2 big buffer", C.BPF_PROG_LOAD,
         prog(log_level=2, log_buf=val(4096), log_size=4096)),
    Case("byte after keyring_id", C.BPF_PROG_LOAD, with_poke(prog(), 167)),
    Case("cgroup sock_addr without expected type", C.BPF_PROG_LOAD,
         prog(ptype=BPF_PROG_TYPE_CGROUP_SOCK_ADDR)),
    Case("sk_lookup without expected type", C.BPF_PROG_LOAD,
         prog(ptype=BPF_PROG_TYPE_SK_LOOKUP)),
    Case("attach_btf_id on a socket filter", C.BPF_PROG_LOAD, prog(attach_btf_id=5)),
    Case("attach_prog_fd not open", C.BPF_PROG_LOAD, prog(attach_prog_fd=BAD_FD)),
    Case("attach_prog_fd is a map", C.BPF_PROG_LOAD, prog(attach_prog_fd=F("arr"))),
    Case("attach_prog_fd on a socket filter", C.BPF_PROG_LOAD, prog(attach_prog_fd=F("prog"))),
    Case("attach to a user BTF object", C.BPF_PROG_LOAD,
         prog(attach_btf_obj_fd=F("btf"), attach_btf_id=1)),
    Case("prog_ifindex on a socket filter", C.BPF_PROG_LOAD, prog(prog_ifindex=99999)),
    Case("prog_ifindex of no device", C.BPF_PROG_LOAD,
         prog(ptype=BPF_PROG_TYPE_XDP, prog_ifindex=99999)),
    Case("prog_ifindex with frags not dev-bound", C.BPF_PROG_LOAD,
         prog(ptype=BPF_PROG_TYPE_XDP, prog_ifindex=99999, prog_flags=1 << 5)),
    Case("signature of 5 bytes", C.BPF_PROG_LOAD, prog(signature=val(5), signature_size=5)),
    Case("token fd not open", C.BPF_PROG_LOAD, prog(prog_flags=1 << 16, prog_token_fd=BAD_FD)),
    Case("map fd in ld_imm64 not open", C.BPF_PROG_LOAD,
         A(prog_type=BPF_PROG_TYPE_SOCKET_FILTER, insn_cnt=4, license=lic(),
           insns=lambda w: w.buf(bytes([0x18, 0x10, 0, 0]) + BAD_FD.to_bytes(4, "little")
                                 + bytes(8) + RET0))),
    Case("socket filter without CAP_BPF", C.BPF_PROG_LOAD, prog(), unpriv=True),
    Case("xdp without capabilities", C.BPF_PROG_LOAD, prog(ptype=BPF_PROG_TYPE_XDP),
         unpriv=True),
    Case("5000 insns without CAP_BPF", C.BPF_PROG_LOAD, prog(insn_cnt=5000), unpriv=True),
    # ---- OBJ_PIN / OBJ_GET -----------------------------------------------------------------
    Case("pin fd not open", C.BPF_OBJ_PIN, A(bpf_fd=BAD_FD, pathname=path("x1"))),
    Case("pin a BTF fd", C.BPF_OBJ_PIN, A(bpf_fd=F("btf"), pathname=path("x2"))),
    Case("pin into a missing directory", C.BPF_OBJ_PIN,
         A(bpf_fd=F("arr"), pathname=path("nodir/x"))),
    Case("pin outside bpffs", C.BPF_OBJ_PIN,
         A(bpf_fd=F("arr"), pathname=path("/tmp/pybpf_pin_test_x"))),
    Case("pin empty path", C.BPF_OBJ_PIN, A(bpf_fd=F("arr"), pathname=lambda w: w.cstr(""))),
    Case("pin bad path pointer", C.BPF_OBJ_PIN, A(bpf_fd=F("arr"), pathname=BAD_PTR)),
    Case("pin unknown file_flags", C.BPF_OBJ_PIN,
         A(bpf_fd=F("arr"), pathname=path("x3"), file_flags=1)),
    Case("pin path_fd without flag", C.BPF_OBJ_PIN,
         A(bpf_fd=F("arr"), pathname=path("x4"), path_fd=3)),
    Case("pin over an existing pin", C.BPF_OBJ_PIN,
         A(bpf_fd=F("arr"), pathname=path("taken"))),
    Case("pin below a pinned object", C.BPF_OBJ_PIN,
         A(bpf_fd=F("arr"), pathname=path("taken/x"))),
    Case("pin name of 256 bytes", C.BPF_OBJ_PIN,
         A(bpf_fd=F("arr"), pathname=path("n" * 256))),
    Case("pin byte after path_fd", C.BPF_OBJ_PIN,
         with_poke(A(bpf_fd=F("arr"), pathname=path("x5")), 20)),
    Case("get missing pin", C.BPF_OBJ_GET, A(pathname=path("missing"))),
    Case("get with bpf_fd set", C.BPF_OBJ_GET, A(pathname=path("taken"), bpf_fd=1)),
    Case("get RDONLY|WRONLY", C.BPF_OBJ_GET, A(pathname=path("taken"), file_flags=0x18)),
    Case("get a directory", C.BPF_OBJ_GET, A(pathname=lambda w: w.cstr(w.pin_dir))),
    Case("get a regular host file", C.BPF_OBJ_GET, A(pathname=path("/etc/hostname"))),
    Case("get RDONLY", C.BPF_OBJ_GET, A(pathname=path("taken"), file_flags=1 << 3)),
    Case("get unknown flag", C.BPF_OBJ_GET, A(pathname=path("taken"), file_flags=1 << 1)),
    # ---- IDs ---------------------------------------------------------------------------------
    Case("next id from INT_MAX", C.BPF_PROG_GET_NEXT_ID, A(start_id=0x7FFFFFFF)),
    Case("next id past the last", C.BPF_MAP_GET_NEXT_ID, A(start_id=0x7FFFFFF0)),
    Case("next id byte after next_id", C.BPF_LINK_GET_NEXT_ID, with_poke(A(), 8)),
    Case("btf next id past the last", C.BPF_BTF_GET_NEXT_ID, A(start_id=0x7FFFFFF0)),
    Case("prog fd by id 0", C.BPF_PROG_GET_FD_BY_ID, A(prog_id=0)),
    Case("prog fd by unused id", C.BPF_PROG_GET_FD_BY_ID, A(prog_id=0x7FFFFFF0)),
    Case("prog fd by id with open_flags", C.BPF_PROG_GET_FD_BY_ID, A(prog_id=1, open_flags=1)),
    Case("map fd by id unknown open_flags", C.BPF_MAP_GET_FD_BY_ID,
         A(map_id=1, open_flags=1 << 10)),
    Case("map fd by id RDONLY|WRONLY", C.BPF_MAP_GET_FD_BY_ID, A(map_id=1, open_flags=0x18)),
    Case("btf fd by unused id", C.BPF_BTF_GET_FD_BY_ID, A(btf_id=0x7FFFFFF0)),
    Case("btf fd by id unknown open_flags", C.BPF_BTF_GET_FD_BY_ID, A(btf_id=1, open_flags=1)),
    Case("btf fd by id byte after token fd", C.BPF_BTF_GET_FD_BY_ID, with_poke(A(btf_id=1), 16)),
    Case("vmlinux btf fd by id 1", C.BPF_BTF_GET_FD_BY_ID, A(btf_id=1)),
    Case("link fd by id 0", C.BPF_LINK_GET_FD_BY_ID, A(link_id=0)),
    Case("next id without CAP_SYS_ADMIN", C.BPF_PROG_GET_NEXT_ID, A(), unpriv=True),
    Case("fd by id without CAP_SYS_ADMIN", C.BPF_MAP_GET_FD_BY_ID, A(map_id=1), unpriv=True),
    # ---- OBJ_GET_INFO_BY_FD ----------------------------------------------------------------
    Case("info fd not open", C.BPF_OBJ_GET_INFO_BY_FD, info("nope", bpf_prog_info)),
    Case("info of a non-BPF fd", C.BPF_OBJ_GET_INFO_BY_FD, info("nonbpf", bpf_prog_info)),
    Case("info_len above a page", C.BPF_OBJ_GET_INFO_BY_FD, info("prog", bpf_prog_info, 4097)),
    Case("info struct larger with non-zero tail", C.BPF_OBJ_GET_INFO_BY_FD,
         big_info_tail("prog", bpf_prog_info)),
    Case("map info struct larger with non-zero tail", C.BPF_OBJ_GET_INFO_BY_FD,
         big_info_tail("arr", bpf_map_info)),
    Case("prog info bad pointer", C.BPF_OBJ_GET_INFO_BY_FD,
         A(**{"info.bpf_fd": F("prog"), "info.info_len": 8, "info.info": BAD_PTR})),
    Case("prog info func_info_rec_size 3", C.BPF_OBJ_GET_INFO_BY_FD,
         info("prog", bpf_prog_info, func_info_rec_size=3)),
    Case("prog info short info_len", C.BPF_OBJ_GET_INFO_BY_FD, info("prog", bpf_prog_info, 16)),
    Case("map info hash_size without hash", C.BPF_OBJ_GET_INFO_BY_FD,
         info("arr", bpf_map_info, hash_size=32)),
    Case("map info hash on an array", C.BPF_OBJ_GET_INFO_BY_FD,
         info("arr", bpf_map_info, hash=val(32), hash_size=32)),
    Case("btf info name_len without name", C.BPF_OBJ_GET_INFO_BY_FD,
         info("btf", bpf_btf_info, name_len=4)),
    Case("btf info ok", C.BPF_OBJ_GET_INFO_BY_FD, info("btf", bpf_btf_info)),
    Case("info byte after info", C.BPF_OBJ_GET_INFO_BY_FD,
         with_poke(info("prog", bpf_prog_info), 16)),
    Case("prog info map_ids bad pointer", C.BPF_OBJ_GET_INFO_BY_FD,
         info("prog", bpf_prog_info, nr_map_ids=4, map_ids=BAD_PTR)),
    # ---- BTF_LOAD ---------------------------------------------------------------------------
    Case("btf unknown flags", C.BPF_BTF_LOAD, btf_load(mini_btf(), btf_flags=1)),
    Case("btf above 16 MiB", C.BPF_BTF_LOAD, A(btf=val(8), btf_size=(16 << 20) + 1)),
    Case("btf bad magic", C.BPF_BTF_LOAD, btf_load(BAD_MAGIC)),
    Case("btf bad pointer", C.BPF_BTF_LOAD, A(btf=BAD_PTR, btf_size=64)),
    Case("btf log buffer with level 0", C.BPF_BTF_LOAD,
         btf_load(mini_btf(), btf_log_buf=val(64), btf_log_size=64)),
    Case("btf too short for a header", C.BPF_BTF_LOAD, btf_load(b"\x9f\xeb\x01")),
    Case("btf without CAP_BPF", C.BPF_BTF_LOAD, btf_load(mini_btf()), unpriv=True),
    Case("btf byte after token fd", C.BPF_BTF_LOAD, with_poke(btf_load(mini_btf()), 40)),
    # ---- PROG_TEST_RUN -----------------------------------------------------------------------
    Case("test ctx_size_in without ctx_in", C.BPF_PROG_TEST_RUN,
         A(**{"test.prog_fd": F("prog"), "test.ctx_size_in": 8})),
    Case("test ctx_out without ctx_size_out", C.BPF_PROG_TEST_RUN,
         A(**{"test.prog_fd": F("prog"), "test.ctx_out": val(8)})),
    Case("test prog fd not open", C.BPF_PROG_TEST_RUN, A(**{"test.prog_fd": BAD_FD})),
    Case("test prog fd is a map", C.BPF_PROG_TEST_RUN, A(**{"test.prog_fd": F("arr")})),
    Case("test byte after batch_size", C.BPF_PROG_TEST_RUN,
         with_poke(A(**{"test.prog_fd": F("prog")}), 76)),
    Case("test run of a kprobe", C.BPF_PROG_TEST_RUN, A(**{"test.prog_fd": F("kprobe")})),
    # ---- RAW_TRACEPOINT_OPEN ------------------------------------------------------------------
    Case("raw tp prog fd not open", C.BPF_RAW_TRACEPOINT_OPEN,
         A(**{"raw_tracepoint.prog_fd": BAD_FD, "raw_tracepoint.name": lic("sys_enter")})),
    Case("raw tp with a socket filter", C.BPF_RAW_TRACEPOINT_OPEN,
         A(**{"raw_tracepoint.prog_fd": F("prog"), "raw_tracepoint.name": lic("sys_enter")})),
    Case("raw tp unknown tracepoint", C.BPF_RAW_TRACEPOINT_OPEN,
         A(**{"raw_tracepoint.prog_fd": F("rawtp"),
              "raw_tracepoint.name": lic("no_such_tp_xyz")})),
    Case("raw tp bad name pointer", C.BPF_RAW_TRACEPOINT_OPEN,
         A(**{"raw_tracepoint.prog_fd": F("rawtp"), "raw_tracepoint.name": BAD_PTR})),
    Case("raw tp byte after cookie", C.BPF_RAW_TRACEPOINT_OPEN,
         with_poke(A(**{"raw_tracepoint.prog_fd": F("rawtp")}), 24)),
    Case("raw tp ok", C.BPF_RAW_TRACEPOINT_OPEN,
         A(**{"raw_tracepoint.prog_fd": F("rawtp"), "raw_tracepoint.name": lic("sys_exit")})),
    # ---- links ----------------------------------------------------------------------------------
    Case("link_create prog fd not open", C.BPF_LINK_CREATE,
         A(**{"link_create.prog_fd": BAD_FD, "link_create.attach_type": BPF_XDP})),
    Case("link_create wrong attach type", C.BPF_LINK_CREATE,
         A(**{"link_create.prog_fd": F("prog"), "link_create.attach_type": BPF_XDP})),
    Case("link_create xdp on no device", C.BPF_LINK_CREATE,
         A(**{"link_create.prog_fd": F("xdp"), "link_create.attach_type": BPF_XDP,
              "link_create.target_ifindex": 99999})),
    Case("link_create byte after uprobe pid", C.BPF_LINK_CREATE,
         with_poke(A(**{"link_create.prog_fd": F("xdp")}), 60)),
    Case("link_create struct_ops with an array", C.BPF_LINK_CREATE,
         A(**{"link_create.map_fd": F("arr"), "link_create.attach_type": BPF_STRUCT_OPS})),
    Case("link_create tcx on a socket filter", C.BPF_LINK_CREATE,
         A(**{"link_create.prog_fd": F("prog"), "link_create.attach_type": BPF_TCX_INGRESS})),
    Case("link_update unknown flags", C.BPF_LINK_UPDATE,
         A(**{"link_update.link_fd": F("link"), "link_update.flags": 1})),
    Case("link_update link fd not open", C.BPF_LINK_UPDATE,
         A(**{"link_update.link_fd": BAD_FD, "link_update.new_prog_fd": F("rawtp")})),
    Case("link_update link fd is a program", C.BPF_LINK_UPDATE,
         A(**{"link_update.link_fd": F("prog"), "link_update.new_prog_fd": F("rawtp")})),
    Case("link_update raw tp link", C.BPF_LINK_UPDATE,
         A(**{"link_update.link_fd": F("link"), "link_update.new_prog_fd": F("rawtp")})),
    Case("link_detach fd not open", C.BPF_LINK_DETACH, A(**{"link_detach.link_fd": BAD_FD})),
    Case("link_detach a program fd", C.BPF_LINK_DETACH, A(**{"link_detach.link_fd": F("prog")})),
    Case("link_detach raw tp link", C.BPF_LINK_DETACH, A(**{"link_detach.link_fd": F("link")})),
    Case("link_detach byte after link_fd", C.BPF_LINK_DETACH, with_poke(A(), 4)),
    Case("link info of raw tp link", C.BPF_OBJ_GET_INFO_BY_FD,
         info("link", __import__("pybpf.uapi", fromlist=["x"]).bpf_link_info)),
    # ---- PROG_ATTACH / DETACH / QUERY ----------------------------------------------------------
    Case("attach unknown attach type", C.BPF_PROG_ATTACH,
         A(attach_type=9999, attach_bpf_fd=F("prog"))),
    Case("attach a socket filter as XDP", C.BPF_PROG_ATTACH,
         A(attach_type=BPF_XDP, attach_bpf_fd=F("prog"))),
    Case("attach byte after expected_revision", C.BPF_PROG_ATTACH, with_poke(A(), 32)),
    Case("detach byte after expected_revision", C.BPF_PROG_DETACH, with_poke(A(), 32)),
    Case("detach unknown attach type", C.BPF_PROG_DETACH, A(attach_type=9999)),
    Case("query unknown flags", C.BPF_PROG_QUERY, A(**{"query.query_flags": 2})),
    Case("query unknown attach type", C.BPF_PROG_QUERY, A(**{"query.attach_type": 9999})),
    Case("query without CAP_NET_ADMIN", C.BPF_PROG_QUERY, A(), unpriv=True),
    Case("query byte after revision", C.BPF_PROG_QUERY, with_poke(A(), 64)),
    # ---- the rest ---------------------------------------------------------------------------------
    Case("enable stats type 1", C.BPF_ENABLE_STATS, A(**{"enable_stats.type": 1})),
    Case("enable stats byte after type", C.BPF_ENABLE_STATS, with_poke(A(), 4)),
    Case("enable stats without CAP_SYS_ADMIN", C.BPF_ENABLE_STATS, A(), unpriv=True),
    Case("enable stats ok", C.BPF_ENABLE_STATS, A()),
    Case("iter_create flags", C.BPF_ITER_CREATE,
         A(**{"iter_create.link_fd": F("link"), "iter_create.flags": 1})),
    Case("iter_create link fd not open", C.BPF_ITER_CREATE, A(**{"iter_create.link_fd": BAD_FD})),
    Case("iter_create on a program fd", C.BPF_ITER_CREATE,
         A(**{"iter_create.link_fd": F("prog")})),
    Case("iter_create on a raw tp link", C.BPF_ITER_CREATE,
         A(**{"iter_create.link_fd": F("link")})),
    Case("bind_map flags", C.BPF_PROG_BIND_MAP,
         A(**{"prog_bind_map.prog_fd": F("prog"), "prog_bind_map.map_fd": F("arr"),
              "prog_bind_map.flags": 1})),
    Case("bind_map prog fd not open", C.BPF_PROG_BIND_MAP,
         A(**{"prog_bind_map.prog_fd": BAD_FD, "prog_bind_map.map_fd": F("arr")})),
    Case("bind_map map fd not open", C.BPF_PROG_BIND_MAP,
         A(**{"prog_bind_map.prog_fd": F("prog"), "prog_bind_map.map_fd": BAD_FD})),
    Case("bind_map map fd is a program", C.BPF_PROG_BIND_MAP,
         A(**{"prog_bind_map.prog_fd": F("prog"), "prog_bind_map.map_fd": F("xdp")})),
    Case("bind_map ok", C.BPF_PROG_BIND_MAP,
         A(**{"prog_bind_map.prog_fd": F("prog"), "prog_bind_map.map_fd": F("hash")})),
    Case("task_fd_query flags", C.BPF_TASK_FD_QUERY,
         A(**{"task_fd_query.pid": F("pid"), "task_fd_query.fd": F("link"),
              "task_fd_query.flags": 1})),
    Case("task_fd_query no such pid", C.BPF_TASK_FD_QUERY,
         A(**{"task_fd_query.pid": 0x3FFFFFF0, "task_fd_query.fd": 0})),
    Case("task_fd_query fd not open", C.BPF_TASK_FD_QUERY,
         A(**{"task_fd_query.pid": F("pid"), "task_fd_query.fd": BAD_FD})),
    Case("task_fd_query a map fd", C.BPF_TASK_FD_QUERY,
         A(**{"task_fd_query.pid": F("pid"), "task_fd_query.fd": F("arr")})),
    Case("task_fd_query raw tp link", C.BPF_TASK_FD_QUERY,
         A(**{"task_fd_query.pid": F("pid"), "task_fd_query.fd": F("link"),
              "task_fd_query.buf": val(64), "task_fd_query.buf_len": 64})),
    Case("task_fd_query short buffer", C.BPF_TASK_FD_QUERY,
         A(**{"task_fd_query.pid": F("pid"), "task_fd_query.fd": F("link"),
              "task_fd_query.buf": val(4), "task_fd_query.buf_len": 4})),
    Case("task_fd_query without CAP_SYS_ADMIN", C.BPF_TASK_FD_QUERY, A(), unpriv=True),
    Case("token_create flags", C.BPF_TOKEN_CREATE, A(**{"token_create.flags": 1})),
    Case("token_create fd not open", C.BPF_TOKEN_CREATE,
         A(**{"token_create.bpffs_fd": BAD_FD})),
    Case("token_create from a map fd", C.BPF_TOKEN_CREATE,
         A(**{"token_create.bpffs_fd": F("arr")})),
    Case("stream read prog fd not open", C.BPF_PROG_STREAM_READ_BY_FD,
         A(**{"prog_stream_read.prog_fd": BAD_FD})),
    Case("stream read byte after prog_fd", C.BPF_PROG_STREAM_READ_BY_FD, with_poke(A(), 20)),
]


def _case_id(case: Case) -> str:
    cmd = BpfCmd(case.cmd).name.removeprefix("BPF_") if case.cmd in set(BpfCmd) else str(case.cmd)
    return f"{cmd}: {case.name}"


IDS = [_case_id(c) for c in CASES]


@pytest.fixture(scope="module")
def worlds(kernel: Any) -> Iterator[tuple[World, World]]:
    pin_dir = f"/sys/fs/bpf/pybpf_syscall_test_{os.getpid()}"
    live = LiveWorld()
    py = PyWorld()
    if not os.path.isdir("/sys/fs/bpf"):
        pytest.skip("no bpffs mounted at /sys/fs/bpf")
    try:
        live.setup(pin_dir)
        py.setup(pin_dir)
        yield live, py
    finally:
        live.teardown()


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 100
    assert len(set(IDS)) == len(CASES), "duplicate case names"


@pytest.mark.kernel
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_attr_errno_matches_kernel(case: Case, worlds: tuple[World, World]) -> None:
    live, py = worlds
    want = case.run(live)
    got = case.run(py)
    assert got == want, f"{case.name}: kernel {errname(want)}, pybpf {errname(got)}"
