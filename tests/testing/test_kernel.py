"""The live-kernel oracle: program load/run, maps, info, raw attrs and run_u64."""

from __future__ import annotations

import ctypes
import errno
import os
from types import ModuleType

import pytest

from pybpf.errors import BpfError
from pybpf.testing import kernel as oracle
from pybpf.uapi import (
    BPF_ANY,
    BPF_EXIST,
    BPF_NOEXIST,
    BPF_PSEUDO_CALL,
    BpfCmd,
    BpfMapType,
    BpfProgType,
    bpf_attr,
    bpf_attr_map_create,
)

SOCKET_FILTER = BpfProgType.BPF_PROG_TYPE_SOCKET_FILTER
PACKET = bytes(64)


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return oracle._insn(code, dst, src, off, imm)


def mov64_imm(dst: int, imm: int) -> bytes:
    return insn(0xB7, dst, 0, 0, imm)


def ld_imm64(dst: int, value: int) -> bytes:
    return insn(0x18, dst, 0, 0, value & 0xFFFFFFFF) + insn(0, 0, 0, 0, value >> 32)


EXIT = insn(0x95)


def key(n: int) -> bytes:
    return n.to_bytes(4, "little")


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


# --------------------------------------------------------------------------- basics


def test_available_is_cached_and_explains() -> None:
    ok, why = oracle.available()
    assert isinstance(ok, bool) and isinstance(why, str)
    assert ok or why
    assert oracle.available() is oracle.available()


def test_load_and_run_r0_42(kernel: ModuleType, kernel_fds: oracle.KernelFds) -> None:
    res = kernel_fds.prog_load(SOCKET_FILTER, mov64_imm(0, 42) + EXIT, prog_name=b"answer")
    assert res.ok and res.errno == 0, res.log
    run = kernel.prog_test_run(res.fd, data_in=PACKET, data_size_out=len(PACKET), repeat=3)
    assert (run.errno, run.retval) == (0, 42)
    assert run.data_out == PACKET
    info = kernel.prog_info(res.fd)
    assert info.type == SOCKET_FILTER
    assert info.name == b"answer"
    assert info.xlated_prog_len > 0


def test_bad_program_reports_errno_and_log(kernel: ModuleType) -> None:
    res = kernel.prog_load(SOCKET_FILTER, EXIT, log_level=1, log_size=1 << 16)
    assert (res.fd, res.errno) == (-1, errno.EACCES)
    assert "R0 !read_ok" in res.log
    assert res.log_true_size == len(res.log) + 1
    bad_opcode = kernel.prog_load(SOCKET_FILTER, insn(0xFF) + EXIT, log_level=1,
                                  log_size=1 << 16)
    assert bad_opcode.errno == errno.EINVAL
    assert bad_opcode.log


def test_log_without_level_is_the_kernels_einval(kernel: ModuleType) -> None:
    res = kernel.prog_load(SOCKET_FILTER, mov64_imm(0, 0) + EXIT, log_size=4096)
    assert res.errno == errno.EINVAL


def test_prog_load_rejects_partial_instructions(kernel: ModuleType) -> None:
    with pytest.raises(ValueError):
        kernel.prog_load(SOCKET_FILTER, b"\x95\0\0")


# --------------------------------------------------------------------------- maps


def test_hash_map_round_trip(kernel: ModuleType, kernel_fds: oracle.KernelFds) -> None:
    fd = kernel_fds.map_create(BpfMapType.BPF_MAP_TYPE_HASH, 4, 8, 16, name=b"rt")
    for n in (3, 1, 2):
        kernel.map_update(fd, key(n), u64(n * 100))
    assert kernel.map_lookup(fd, key(2), 8) == u64(200)
    seen = [kernel.map_get_next_key(fd, None, 4)]
    while True:
        err, nxt = kernel.map_get_next_key_raw(fd, seen[-1], 4)
        if err:
            assert err == errno.ENOENT
            break
        seen.append(nxt)
    keys = set(seen)
    assert len(seen) == 3
    assert keys == {key(1), key(2), key(3)}
    assert set(kernel.map_keys(fd, 4)) == keys
    kernel.map_delete(fd, key(2))
    with pytest.raises(OSError) as exc:
        kernel.map_lookup(fd, key(2), 8)
    assert exc.value.errno == errno.ENOENT
    assert kernel.map_lookup_raw(fd, key(2), 8) == (errno.ENOENT, b"")
    assert kernel.map_delete_raw(fd, key(2)) == errno.ENOENT
    assert kernel.map_update_raw(fd, key(1), u64(5), BPF_NOEXIST) == errno.EEXIST
    assert kernel.map_update_raw(fd, key(9), u64(5), BPF_EXIST) == errno.ENOENT
    assert kernel.map_lookup_and_delete(fd, key(3), 8) == u64(300)
    assert kernel.map_lookup_raw(fd, key(3), 8)[0] == errno.ENOENT
    info = kernel.map_info(fd)
    assert (info.type, info.key_size, info.value_size, info.max_entries) == (
        BpfMapType.BPF_MAP_TYPE_HASH, 4, 8, 16)
    assert info.name == b"rt"


def test_get_next_key_walks_an_array(kernel: ModuleType, kernel_fds: oracle.KernelFds) -> None:
    fd = kernel_fds.map_create(BpfMapType.BPF_MAP_TYPE_ARRAY, 4, 4, 3)
    assert list(kernel.map_keys(fd, 4)) == [key(0), key(1), key(2)]
    assert kernel.map_get_next_key(fd, key(0), 4) == key(1)
    with pytest.raises(OSError) as exc:
        kernel.map_get_next_key(fd, key(2), 4)
    assert exc.value.errno == errno.ENOENT


def test_freeze_makes_a_map_read_only(kernel: ModuleType, kernel_fds: oracle.KernelFds) -> None:
    fd = kernel_fds.map_create(BpfMapType.BPF_MAP_TYPE_ARRAY, 4, 8, 1)
    kernel.map_update(fd, key(0), u64(1), BPF_ANY)
    kernel.map_freeze(fd)
    assert kernel.map_update_raw(fd, key(0), u64(2)) == errno.EPERM
    assert kernel.map_lookup(fd, key(0), 8) == u64(1)


def test_map_create_errors(kernel: ModuleType) -> None:
    assert kernel.map_create_raw(BpfMapType.BPF_MAP_TYPE_HASH, 0, 8, 1) == (-1, errno.EINVAL)
    with pytest.raises(OSError) as exc:
        kernel.map_create(BpfMapType.BPF_MAP_TYPE_HASH, 4, 8, 0)
    assert exc.value.errno == errno.EINVAL
    assert isinstance(exc.value, BpfError)


# --------------------------------------------------------------------------- raw attrs


def test_sys_bpf_with_raw_bytes(kernel: ModuleType) -> None:
    assert kernel.sys_bpf(BpfCmd.BPF_MAP_CREATE, bytes(ctypes.sizeof(bpf_attr))) == (
        -1, errno.EINVAL)
    assert kernel.sys_bpf(9999, bytes(16))[1] == errno.EINVAL
    # Non-zero bytes past the kernel's union bpf_attr: E2BIG.
    tail = bytes(ctypes.sizeof(bpf_attr)) + b"\x01" + bytes(7)
    assert kernel.sys_bpf(BpfCmd.BPF_MAP_CREATE, tail)[1] == errno.E2BIG


def test_sys_bpf_with_a_view_and_explicit_size(kernel: ModuleType,
                                               kernel_fds: oracle.KernelFds) -> None:
    attr = bpf_attr_map_create(map_type=BpfMapType.BPF_MAP_TYPE_ARRAY, key_size=4,
                               value_size=4, max_entries=1)
    fd, err = kernel.sys_bpf(BpfCmd.BPF_MAP_CREATE, attr, 16)
    kernel_fds.add(fd)
    assert err == 0 and fd >= 0
    # A bytearray is written back like a view: BPF_OBJ_GET_INFO_BY_FD shrinks info_len.
    info = ctypes.create_string_buffer(512)
    raw = bytearray(16)
    raw[0:4] = fd.to_bytes(4, "little")
    raw[4:8] = (512).to_bytes(4, "little")
    raw[8:16] = ctypes.addressof(info).to_bytes(8, "little")
    assert kernel.sys_bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, raw) == (0, 0)
    assert 0 < int.from_bytes(raw[4:8], "little") < 512


def test_kernel_fds_closes_everything(kernel: ModuleType) -> None:
    with kernel.KernelFds() as fds:
        fd = fds.map_create(BpfMapType.BPF_MAP_TYPE_ARRAY, 4, 4, 1)
        res = fds.prog_load(SOCKET_FILTER, mov64_imm(0, 0) + EXIT)
        os.fstat(fd)
    for closed in (fd, res.fd):
        with pytest.raises(OSError):
            os.fstat(closed)
    kernel.close(fd)  # closing twice is tolerated


# --------------------------------------------------------------------------- run_u64


def test_run_u64_returns_all_64_bits(kernel: ModuleType) -> None:
    assert kernel.run_u64(ld_imm64(0, 0x1122334455667788) + EXIT) == 0x1122334455667788
    assert kernel.run_u64(mov64_imm(0, -1) + EXIT) == 2**64 - 1


def test_run_u64_with_several_exits(kernel: ModuleType) -> None:
    tail = b"".join([
        insn(0x25, 1, 0, 2, 3),          # if r1 > 3 goto +2
        mov64_imm(0, 1),
        EXIT,
        ld_imm64(0, 0xDEADBEEFCAFEBABE),
        EXIT,
    ])
    assert kernel.run_u64(mov64_imm(1, 5) + tail) == 0xDEADBEEFCAFEBABE
    assert kernel.run_u64(mov64_imm(1, 2) + tail) == 1


def test_run_u64_leaves_subprogram_exits_alone(kernel: ModuleType) -> None:
    prog = b"".join([
        insn(0x85, 0, BPF_PSEUDO_CALL, 0, 2),   # call pc+2 (the subprogram)
        insn(0x07, 0, 0, 0, 1),                 # r0 += 1
        EXIT,
        ld_imm64(0, 0x7FFFFFFF00000001),        # subprogram: r0 = ...
        EXIT,
    ])
    assert kernel.run_u64(prog) == 0x7FFFFFFF00000002


def test_run_u64_raises_with_the_verifier_log(kernel: ModuleType) -> None:
    with pytest.raises(BpfError) as exc:
        kernel.run_u64(EXIT)
    assert exc.value.errno == errno.EACCES
    assert "R0 !read_ok" in exc.value.log


def test_wrap_for_u64_rewrites_only_the_main_program() -> None:
    prog = b"".join([
        insn(0x85, 0, BPF_PSEUDO_CALL, 0, 2),
        EXIT,
        EXIT,  # never reached, only to have two exits
        mov64_imm(0, 3),
        EXIT,
    ])
    wrapped = oracle.wrap_for_u64(prog, map_fd=7)
    epilogue = oracle._epilogue(7)
    n_epi = len(epilogue) // 8
    assert wrapped[3 * 8:3 * 8 + len(epilogue)] == epilogue
    assert wrapped[-16:] == prog[-16:]                       # subprogram untouched
    assert oracle._fields(wrapped, 0) == (0x85, 0, BPF_PSEUDO_CALL, 0, 2 + n_epi)
    assert oracle._fields(wrapped, 1) == (0x05, 0, 0, 1, 0)  # exit -> ja to the epilogue
    assert oracle._fields(wrapped, 2) == (0x05, 0, 0, 0, 0)
