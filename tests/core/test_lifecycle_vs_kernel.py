"""Object lifecycles (IDs, refcounts, pins) and info structs, compared with the live kernel.

    .venv/bin/pytest tests/core/test_lifecycle_vs_kernel.py -q
"""

from __future__ import annotations

import ctypes
import errno
import os
import random
import shutil
from typing import Any

import pytest

from pybpf.core.prog import bpf_obj_name_cpy, bpf_prog_calc_tag, license_is_gpl_compatible
from pybpf.errors import BpfError
from pybpf.kernel import Kernel
from pybpf.link import Link
from pybpf.program import Program
from pybpf.syscall.info import get_info
from pybpf.uapi import (
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_HASH,
    BPF_PROG_TYPE_RAW_TRACEPOINT,
    BPF_PROG_TYPE_SOCKET_FILTER,
    BpfCmd,
    bpf_attr,
    bpf_link_info,
)

RET0 = bytes.fromhex("b700000000000000" "9500000000000000")


def _ins(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return bytes([code, dst | src << 4]) + off.to_bytes(2, "little", signed=True) + \
        (imm & 0xFFFFFFFF).to_bytes(4, "little")


def with_map(fd: int) -> bytes:
    return _ins(0x18, 1, 1, imm=fd) + _ins(0) + RET0


@pytest.fixture
def k() -> Kernel:
    return Kernel(sysctls={"bpf_jit_enable": 0})


def _next_ids(k: Kernel, cmd: int) -> list[int]:
    out, start = [], 0
    while True:
        a = bpf_attr()
        a.start_id = start
        if k.bpf(cmd, a) < 0:
            return out
        out.append(a.next_id)
        start = a.next_id


# ------------------------------------------------------------------------------ pybpf only
def test_ids_are_cyclic_and_freed_with_the_last_reference(k: Kernel) -> None:
    m1 = k.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1)
    assert m1.id == 1
    m1.close()
    m2 = k.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1)
    assert m2.id == 2, "a freed ID is not reused at once (idr_alloc_cyclic)"
    assert _next_ids(k, BpfCmd.BPF_MAP_GET_NEXT_ID) == [2]
    assert _next_ids(k, BpfCmd.BPF_BTF_GET_NEXT_ID)[:1] == [1], "vmlinux BTF is id 1"


def test_program_holds_its_maps(k: Kernel) -> None:
    m = k.map_create(BPF_MAP_TYPE_HASH, 4, 8, 4)
    kmap, map_id = m.kmap, m.id
    p = Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, with_map(m.fd))
    assert kmap.refcnt == 2
    assert list(p.info().map_ids if False else []) == []
    info = p.info()
    assert info.nr_map_ids == 1
    m.close()
    assert k.map_idr.find(map_id) is kmap, "the program keeps the map alive"
    p.close()
    assert k.map_idr.find(map_id) is None and kmap.freed


def test_pin_outlives_fds_and_unpin_frees(k: Kernel) -> None:
    p = Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, RET0, name="pinned")
    pid = p.id
    k.bpffs.mkdir("/sys/fs/bpf/d")
    p.pin("/sys/fs/bpf/d/p")
    p.close()
    assert k.prog_idr.find(pid) is not None
    again = Program.pinned(k, "/sys/fs/bpf/d/p")
    assert again.id == pid and again.name == "pinned"
    again.close()
    k.bpffs.rename("/sys/fs/bpf/d/p", "/sys/fs/bpf/q")
    assert k.bpffs.listdir("/sys/fs/bpf") == ["d", "q"]
    byid = Program.from_id(k, pid)
    k.bpffs.unlink("/sys/fs/bpf/q")
    assert k.prog_idr.find(pid) is not None, "the fd from GET_FD_BY_ID still holds it"
    byid.close()
    assert k.prog_idr.find(pid) is None
    with pytest.raises(BpfError) as exc:
        Program.from_id(k, pid)
    assert exc.value.errno == errno.ENOENT


def test_info_after_close_and_stats(k: Kernel) -> None:
    p = Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, RET0)
    obj = p.obj
    fd = p.fd
    p.close()
    a = bpf_attr()
    a.info.bpf_fd = fd
    assert k.bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, a) == -77  # EBADFD
    assert obj.freed and obj.bpf_func is None
    # stats are counted only while enabled
    p = Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, RET0)
    p.obj.run(0)
    assert p.info().run_cnt == 0
    s = k.bpf(BpfCmd.BPF_ENABLE_STATS, bpf_attr())
    assert s >= 3
    p.obj.run(0)
    p.obj.run(0)
    assert p.info().run_cnt == 2
    k.close(s)
    p.obj.run(0)
    assert p.info().run_cnt == 2
    k.sysctl["bpf_stats_enabled"] = 1
    p.obj.run(0)
    assert p.info().run_cnt == 3


def test_raw_tracepoint_link_fires_and_detaches_on_close(k: Kernel) -> None:
    p = Program.load(k, BPF_PROG_TYPE_RAW_TRACEPOINT,
                     _ins(0xB7, 0, 0, imm=42) + _ins(0x95))
    link = Link.raw_tracepoint(p, "sys_enter")
    assert k.tracepoints.fire("sys_enter", 1, 2) == [42]
    info = link.info()
    assert (info.type, info.prog_id) == (1, p.id)
    lid = link.id
    p.close()
    assert k.tracepoints.fire("sys_enter") == [42], "the link holds the program"
    link.close()
    assert k.tracepoints.fire("sys_enter") == [] and k.link_idr.find(lid) is None


def test_security_hooks_deny(k: Kernel) -> None:
    undo = k.security.add("bpf_prog_load", lambda task, prog, attr: -errno.EACCES)
    with pytest.raises(BpfError) as exc:
        Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, RET0)
    assert exc.value.errno == errno.EACCES
    undo()
    k.security.add("bpf", lambda task, cmd, attr, size: -errno.EPERM
                   if cmd == BpfCmd.BPF_MAP_CREATE else 0)
    with pytest.raises(BpfError):
        k.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1)
    Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, RET0).close()


def test_sysctls(k: Kernel) -> None:
    assert k.sysctl["kernel.unprivileged_bpf_disabled"] == 2
    k.sysctl["unprivileged_bpf_disabled"] = 0
    user = k.task(uid=1000)
    Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, RET0, task=user).close()
    k.sysctl["unprivileged_bpf_disabled"] = 1
    with pytest.raises(BpfError):
        k.sysctl["unprivileged_bpf_disabled"] = 0
    with pytest.raises(BpfError) as exc:
        Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, RET0, task=user)
    assert exc.value.errno == errno.EPERM


def test_names_and_licenses() -> None:
    assert bpf_obj_name_cpy(b"ok_name.1") == b"ok_name.1"
    assert bpf_obj_name_cpy(b"x" * 15) == b"x" * 15
    assert bpf_obj_name_cpy(b"x" * 16) is None
    assert bpf_obj_name_cpy(b"sp ace") is None
    assert license_is_gpl_compatible("Dual BSD/GPL")
    assert not license_is_gpl_compatible("GPL ")
    assert not license_is_gpl_compatible("BSD")


def test_bad_attr_objects_never_raise(k: Kernel) -> None:
    assert k.bpf(BpfCmd.BPF_MAP_CREATE, b"") == -errno.EINVAL
    assert k.bpf(BpfCmd.BPF_MAP_CREATE, b"\x02", size=64) == -errno.EFAULT
    assert k.bpf(BpfCmd.BPF_MAP_CREATE, "text") == -errno.EFAULT
    assert k.bpf(BpfCmd.BPF_PROG_LOAD, bytearray(168), size=5000) == -errno.E2BIG


# ------------------------------------------------------------------------------ vs kernel
def _rand_prog(rng: random.Random, map_fd: int | None) -> bytes:
    out = b"".join(_ins(0xB7, r, imm=rng.randrange(-2**31, 2**31)) for r in range(10))
    for _ in range(rng.randrange(1, 30)):
        reg = rng.randrange(0, 10)
        op = rng.choice([0xB7, 0x07, 0x17, 0x27, 0x47, 0x57, 0xA7, 0xB4, 0x04])
        out += _ins(op, reg, imm=rng.randrange(-2**31, 2**31))
        if map_fd is not None and rng.random() < 0.2:
            out += _ins(0x18, 1, 1, imm=map_fd) + _ins(0)
        if rng.random() < 0.1:
            out += _ins(0x18, reg, 0, imm=rng.randrange(2**32)) + _ins(0, imm=rng.randrange(2**32))
    return out + RET0


@pytest.mark.kernel
def test_tags_match_kernel(kernel: Any, k: Kernel) -> None:
    rng = random.Random(1234)
    kmap = kernel.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1)
    pmap = k.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1)
    agree = 0
    try:
        for i in range(150):
            use_map = i % 3 == 0
            raw_k = _rand_prog(random.Random(i), kmap if use_map else None)
            raw_p = _rand_prog(random.Random(i), pmap.fd if use_map else None)
            res = kernel.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, raw_k)
            if not res.ok:
                continue
            want = bytes(kernel.prog_info(res.fd).tag)
            kernel.close(res.fd)
            p = Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, raw_p)
            assert bytes(p.info().tag) == want == bpf_prog_calc_tag(raw_p), f"program {i}"
            p.close()
            agree += 1
    finally:
        kernel.close(kmap)
    del rng
    assert agree >= 100


PROG_FIELDS = ("type", "name", "gpl_compatible", "nr_map_ids", "xlated_prog_len",
               "created_by_uid", "nr_func_info", "nr_line_info", "func_info_rec_size",
               "line_info_rec_size", "jited_line_info_rec_size", "run_cnt", "btf_id",
               "attach_btf_id", "nr_prog_tags", "recursion_misses")
MAP_FIELDS = ("type", "key_size", "value_size", "max_entries", "map_flags", "name",
              "btf_key_type_id", "btf_value_type_id", "map_extra", "ifindex",
              "btf_vmlinux_value_type_id", "hash_size")


def _fields(info: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: (bytes(getattr(info, n)) if n in ("name", "tag") else getattr(info, n))
            for n in names}


@pytest.mark.kernel
def test_info_structs_match_kernel(kernel: Any, k: Kernel) -> None:
    with kernel.KernelFds() as fds:
        for mtype, flags, name in [(BPF_MAP_TYPE_ARRAY, 0, b"arr"),
                                   (BPF_MAP_TYPE_HASH, 1, b"h.1"),
                                   (BPF_MAP_TYPE_ARRAY, 1 << 7, b"")]:
            kfd = fds.map_create(mtype, 4, 16, 8, flags, name=name)
            pm = k.map_create(mtype, 4, 16, 8, flags, name=name)
            assert _fields(kernel.map_info(kfd), MAP_FIELDS) == _fields(pm.info(), MAP_FIELDS)
        kmap = fds.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 2)
        pmap = k.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 2)
        for lic in ("GPL", "MIT"):
            res = fds.prog_load(BPF_PROG_TYPE_SOCKET_FILTER, with_map(kmap), license=lic,
                                prog_name=b"p_" + lic.encode())
            assert res.ok
            kinfo = kernel.prog_info(res.fd)
            p = Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, with_map(pmap.fd), license=lic,
                             name="p_" + lic)
            pinfo = p.info()
            assert _fields(kinfo, PROG_FIELDS) == _fields(pinfo, PROG_FIELDS)
            assert bytes(kinfo.tag) == bytes(pinfo.tag)
            # xlated dump with the map reference shown as (PSEUDO_MAP_FD, map id)
            for world, fd, mid in ((kernel, res.fd, kernel.map_info(kmap).id),
                                   (None, p.fd, pmap.id)):
                buf = ctypes.create_string_buffer(32)
                info = type(kinfo)()
                info.xlated_prog_len, info.xlated_prog_insns = 32, ctypes.addressof(buf)
                if world is None:
                    get_info(k.root, fd, info)
                else:
                    assert kernel.obj_get_info_by_fd(fd, info) == 0
                raw = buf.raw
                assert raw[0] == 0x18 and raw[1] >> 4 == 1
                assert int.from_bytes(raw[4:8], "little") == mid
        # link info: raw tracepoint
        rt = fds.prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, RET0)
        name = ctypes.create_string_buffer(b"sys_enter")
        a = bpf_attr()
        a.raw_tracepoint.name, a.raw_tracepoint.prog_fd = ctypes.addressof(name), rt.fd
        lfd, err = kernel.sys_bpf(BpfCmd.BPF_RAW_TRACEPOINT_OPEN, a)
        assert err == 0
        fds.add(lfd)
        p = Program.load(k, BPF_PROG_TYPE_RAW_TRACEPOINT, RET0)
        link = Link.raw_tracepoint(p, "sys_enter")

        def linfo(get: Any) -> tuple[int, int, bytes]:
            out = ctypes.create_string_buffer(32)
            info = bpf_link_info()
            info.raw_tracepoint.tp_name = ctypes.addressof(out)
            info.raw_tracepoint.tp_name_len = 32
            get(info)
            return info.type, info.raw_tracepoint.tp_name_len, out.value

        kl = linfo(lambda i: kernel.obj_get_info_by_fd(lfd, i))
        pl = linfo(lambda i: get_info(k.root, link.fd, i))
        assert kl == pl == (1, 10, b"sys_enter")


@pytest.mark.kernel
def test_pin_lifecycle_matches_kernel(kernel: Any, k: Kernel) -> None:
    """The same pin/get/unpin sequence in both worlds gives the same errnos."""
    d = f"/sys/fs/bpf/pybpf_lifecycle_{os.getpid()}"
    os.makedirs(d)
    k.bpffs.mkdir(d)
    try:
        def run(pin: Any, get: Any, unlink: Any) -> list[int]:
            out = []
            for step in (lambda: pin(f"{d}/a"), lambda: pin(f"{d}/a"), lambda: get(f"{d}/a"),
                         lambda: unlink(f"{d}/a"), lambda: get(f"{d}/a"),
                         lambda: pin(f"{d}/sub/a")):
                try:
                    step()
                    out.append(0)
                except OSError as exc:
                    out.append(exc.errno or -1)
            return out

        kfd = kernel.map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 1)
        pm = k.map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 1)

        def kpin(path: str) -> None:
            buf = ctypes.create_string_buffer(path.encode())
            a = bpf_attr()
            a.bpf_fd, a.pathname = kfd, ctypes.addressof(buf)
            _r, err = kernel.sys_bpf(BpfCmd.BPF_OBJ_PIN, a)
            if err:
                raise OSError(err, path)

        def kget(path: str) -> None:
            buf = ctypes.create_string_buffer(path.encode())
            a = bpf_attr()
            a.pathname = ctypes.addressof(buf)
            r, err = kernel.sys_bpf(BpfCmd.BPF_OBJ_GET, a)
            if err:
                raise OSError(err, path)
            kernel.close(r)

        def pget(path: str) -> None:
            from pybpf.syscall.info import obj_get

            k.close(obj_get(k.root, path))

        want = run(kpin, kget, os.unlink)
        got = run(pm.pin, pget, k.bpffs.unlink)
        assert got == want
        kernel.close(kfd)
    finally:
        shutil.rmtree(d, ignore_errors=True)
