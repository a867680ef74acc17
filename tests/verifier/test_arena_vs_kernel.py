"""BPF arenas against the live kernel: ``tests/verifier/arena/arena_basic.o`` (clang-built,
arena macros from ``arena_common.h``) loaded by pybpf's loader into the live kernel and
into pybpf, and hand-written programs for the verifier's arena rules.

Compared: verdict, first error message, the level-2 log, ``verified_insns``, the xlated
program (``BPF_PROBE_MEM32`` accesses dump as plain ``BPF_MEM``, casts to the kernel view
as ``wX = wY``), ``test_run`` retval, and the arena's bytes as user space reads them
through its mapping of the map.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import pybpf
from pybpf.errors import BpfError
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.program import Program

OBJ = Path(__file__).parent / "arena" / "arena_basic.o"
USER_VM_START = 0x10000000  # arena_basic.c
PROGS = ("arena_alloc", "arena_fault", "arena_free")
SYSCALL, BPF_F_SLEEPABLE, BPF_F_MMAPABLE, ARENA = 31, 1 << 4, 1 << 10, 33
LOG = 1 << 20


def _xlated(side: Any, fd: int) -> list[tuple[int, ...]]:
    """Xlated instructions without what legitimately differs: ld_imm64 values and kfunc
    call immediates (a kernel text offset there, a BTF id here)."""
    from pybpf.testing import kernel as oracle
    from pybpf.testing.xlated import pybpf_xlated

    insns = oracle.prog_xlated(fd) if side == "live" else pybpf_xlated(side, fd)
    out: list[tuple[int, ...]] = []
    skip = False
    for ins in insns:
        if skip:
            skip = False
        elif ins.code == 0x18:
            out.append((ins.code, ins.dst))
            skip = True
        elif ins.code == 0x85 and ins.src == 2:
            out.append((ins.code, ins.src))
        else:
            out.append((ins.code, ins.dst, ins.src, ins.off, ins.imm))
    return out


def _free_user_base(length: int = 4 * 4096, low: int = USER_VM_START) -> int:
    """A user address for the object's arena that is free in this process, with the low
    32 bits the object was built with (``low``: its fixed addresses use them)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    for k in range(64):
        want = low + (k << 32)
        got = libc.mmap(want, length, 0, 0x22 | 0x100000, -1, 0)  # PRIVATE|ANON|NOREPLACE
        if got not in (None, ctypes.c_void_p(-1).value):
            libc.munmap(got, length)
            if got == want:
                return want
    pytest.skip("no free user address for the arena")


def _run_object(oracle: ModuleType, side: Any, base: int) -> dict[str, Any]:
    obj = pybpf.open(str(OBJ), kernel=side)
    obj.progs.no_arena.autoload = False  # refused: see test_addr_space_cast_needs_an_arena
    obj.maps.arena._spec.map_extra = base  # bpf_map__set_map_extra
    obj.load()
    try:
        out: dict[str, Any] = {}
        for name in PROGS:
            fd = getattr(obj.progs, name).fd
            if side == "live":
                info = oracle.prog_info(fd)
                res = oracle.prog_test_run(fd, repeat=0)
                assert res.errno == 0
                out[name] = (info.verified_insns, _xlated(side, fd), res.retval)
            else:
                task = side.root
                info = pybpf.program.Program(task, fd).info()
                res = getattr(obj.progs, name).test_run(repeat=0)
                out[name] = (info.verified_insns, _xlated(task, fd), res.retval)
        arena = obj._loaded.arenas["arena"]
        page0 = arena.read(0, 4096)
        out["page0"] = [struct.unpack_from("<Q", page0, 8 * i)[0] for i in (0, 3, 7, 8, 511)]
        out["page3"] = arena.read(3 * 4096, 8)  # the dropped store of arena_fault
        out["page2"] = arena.read(2 * 4096, 16)  # allocated and freed by arena_free
        return out
    finally:
        obj.close()


def test_object_runs_as_in_the_kernel(kernel: ModuleType) -> None:
    # one after the other: both sides map the arena at the same user address
    base = _free_user_base()
    want = _run_object(kernel, "live", base)
    got = _run_object(kernel, Kernel(), base)
    assert got == want
    assert want["arena_alloc"][2] == 0x1003 + 0xFEED
    assert want["page0"] == [0x1000, 0x1003, 0x1007, base, 0xFEED]


@pytest.mark.parametrize("jit_enable", [1, 0], ids=["jit", "interpreter"])
def test_object_runs_on_both_tiers(jit_enable: int) -> None:
    """The JIT compiles arena code (jit/arenagen.py); both tiers give the same results,
    faults included (the missing page of arena_fault)."""
    k = Kernel()
    k.sysctl["bpf_jit_enable"] = jit_enable
    obj = pybpf.open(str(OBJ), kernel=k)
    obj.progs.no_arena.autoload = False
    base = _free_user_base()
    obj.maps.arena._spec.map_extra = base
    obj.load()
    try:
        from pybpf.syscall.objects import prog_get

        for name in PROGS:
            prog = prog_get(k.root, getattr(obj.progs, name).fd)
            try:
                assert prog.jited == bool(jit_enable), prog.aux.get("jit_error")
            finally:
                prog.put()
        assert obj.progs.arena_alloc.test_run(repeat=0).retval == 0x1003 + 0xFEED
        assert obj.progs.arena_fault.test_run(repeat=0).retval == 2
        # arena_free compares the returned pointer with a 32-bit constant: equal only when
        # the free user range found for this process lies below 4 GiB
        assert obj.progs.arena_free.test_run(repeat=0).retval == (0 if base >> 32 == 0 else 2)
        assert obj.progs.arena_alloc.test_run(repeat=0).retval == 0x1003 + 0xFEED  # a new page
    finally:
        obj.close()


# -- hand-written programs ---------------------------------------------------------------

def I(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:  # noqa: E743
    return encode([Insn(code, dst, src, off, imm)])


def ld_map(dst: int, fd: int) -> bytes:
    return I(0x18, dst, 1, 0, fd) + I(0)


@functools.cache
def _kfunc_id(name: str) -> int:
    from pybpf.btf.raw import Btf

    btf = Btf.from_file("/sys/kernel/btf/vmlinux")
    return next(i for i, t in enumerate(btf.types) if t.name == name and type(t).__name__ == "BtfFunc")


def _alloc_prog(fd: int, tail: bytes) -> bytes:
    """r0 = bpf_arena_alloc_pages(arena, NULL, 1, NUMA_NO_NODE, 0); if !r0 exit 0; tail"""
    alloc = _kfunc_id("bpf_arena_alloc_pages")
    body = (ld_map(1, fd) + I(0xB7, 2) + I(0xB7, 3, imm=1) + I(0xB7, 4, imm=-1) + I(0xB7, 5)
            + I(0x85, 0, 2, 0, alloc))
    n = len(tail) // 8
    return body + I(0x15, 0, 0, n, 0) + tail + I(0xB7, 0) + I(0x95)


@functools.cache
def _pk() -> Kernel:
    """One pybpf instance for the hand-written programs (its kernel BTF is parsed once)."""
    return Kernel()


def _both(oracle: ModuleType, insns_of: Any, *, map_extra: int = 0x200000000,
          pages: int = 4) -> tuple[Any, Any]:
    """Load ``insns_of(map_fd)`` in both; returns (kernel result, pybpf (errno, log, fd, k))."""
    kfd = oracle.map_create(ARENA, 0, 0, pages, BPF_F_MMAPABLE, map_extra=map_extra)
    try:
        kres = oracle.prog_load(SYSCALL, insns_of(kfd), log_level=2, log_size=LOG,
                                prog_flags=BPF_F_SLEEPABLE)
        krun = oracle.prog_test_run(kres.fd, repeat=0).retval if kres.fd >= 0 else None
        if kres.fd >= 0:
            oracle.close(kres.fd)
    finally:
        oracle.close(kfd)
    pk = _pk()
    # a user address of its own (this process maps both), with the same low 32 bits
    m = pk.map_create(ARENA, 0, 0, pages, BPF_F_MMAPABLE,
                      map_extra=map_extra + (1 << 32) if map_extra else 0)
    try:
        p = Program.load(pk, SYSCALL, insns_of(m.fd), log_level=2, prog_flags=BPF_F_SLEEPABLE)
    except BpfError as exc:
        return (kres, krun), (exc.errno, exc.log, None)
    return (kres, krun), (0, p.log, p.test_run(repeat=0).retval)


def _strip_addrs(log: str) -> list[str]:
    import re

    return [re.sub(r"\s+", " ", re.sub(r"0x[0-9a-f]{9,}", "ADDR", line))
            for line in log.splitlines()]


def _same(oracle: ModuleType, insns_of: Any) -> tuple[Any, Any]:
    (kres, krun), (perr, plog, prun) = _both(oracle, insns_of)
    assert perr == kres.errno, (kres.log, plog)
    assert _strip_addrs(plog) == _strip_addrs(kres.log)
    assert prun == krun
    return kres, plog


def test_arena_pointer_arithmetic_and_accesses(kernel: ModuleType) -> None:
    # r0 = cast_kern(r0); *(u64 *)(r0 + 8) = 0x1234; r0 += 16; r0 = *(u64 *)(r0 - 8)
    tail = (I(0xBF, 0, 0, 1, 1) + I(0xB7, 1, imm=0x1234) + I(0x7B, 0, 1, 8)
            + I(0x07, 0, imm=16) + I(0x79, 0, 0, -8) + I(0x95))
    _same(kernel, lambda fd: _alloc_prog(fd, tail))


def test_cast_back_to_user_keeps_the_low_half(kernel: ModuleType) -> None:
    # r1 = cast_kern(r0); r1 = cast_user(r1); r0 = r1 - r0 (0: the same user pointer)
    tail = (I(0xBF, 1, 0, 1, 1) + I(0xBF, 1, 1, 1, 1 << 16) + I(0x1F, 1, 0)
            + I(0xBF, 0, 1) + I(0x95))
    _same(kernel, lambda fd: _alloc_prog(fd, tail))


def test_unallocated_page_reads_zero(kernel: ModuleType) -> None:
    # r1 = cast_kern(r0); r1 += 8192 (not allocated); *(u32 *)(r1 + 0) = 5; r0 = *(u32 *)(r1 + 0) + 7
    tail = (I(0xBF, 1, 0, 1, 1) + I(0x07, 1, imm=8192) + I(0x62, 1, 0, 0, 5)
            + I(0x61, 0, 1, 0) + I(0x07, 0, imm=7) + I(0x95))
    _same(kernel, lambda fd: _alloc_prog(fd, tail))


@pytest.mark.parametrize("imm", [0, 2, 1 << 16 | 1, -1])
def test_bad_addr_space_cast(kernel: ModuleType, imm: int) -> None:
    tail = I(0xBF, 1, 0, 1, imm) + I(0x95)
    kres, _ = _same(kernel, lambda fd: _alloc_prog(fd, tail))
    assert kres.fd < 0


def test_addr_space_cast_needs_an_arena(kernel: ModuleType) -> None:
    prog = I(0xB7, 1) + I(0xBF, 1, 1, 1, 1) + I(0xB7, 0) + I(0x95)
    kres, _ = _same(kernel, lambda fd: prog)
    assert "associated arena" in kres.log


def test_arena_needs_a_user_address(kernel: ModuleType) -> None:
    """map_extra 0 and no mmap yet: the program is refused."""
    (kres, _), (perr, plog, _r) = _both(kernel, lambda fd: _alloc_prog(fd, I(0x95)),
                                        map_extra=0)
    assert kres.fd < 0 and perr == kres.errno
    assert _strip_addrs(plog) == _strip_addrs(kres.log)


def test_sleepable_kfunc_needs_sleepable_program(kernel: ModuleType) -> None:
    kfd = kernel.map_create(ARENA, 0, 0, 1, BPF_F_MMAPABLE, map_extra=0x200000000)
    try:
        raw = _alloc_prog(kfd, I(0x95))
        kres = kernel.prog_load(SYSCALL, raw, log_level=1, log_size=LOG)
    finally:
        kernel.close(kfd)
    pk = _pk()
    m = pk.map_create(ARENA, 0, 0, 1, BPF_F_MMAPABLE, map_extra=0x300000000)
    with pytest.raises(BpfError) as exc:
        Program.load(pk, SYSCALL, _alloc_prog(m.fd, I(0x95)), log_level=1)
    assert exc.value.errno == kres.errno
    assert kres.log.splitlines()[-2] in exc.value.log


ATOMICS = {"add": 0x00, "fetch_add": 0x01, "or": 0x40, "fetch_xor": 0xA1, "xchg": 0xE1,
           "cmpxchg": 0xF1}


@pytest.mark.parametrize("op", sorted(ATOMICS))
@pytest.mark.parametrize("code", [0xDB, 0xC3], ids=["dw", "w"])
def test_atomics_on_arena(kernel: ModuleType, op: str, code: int) -> None:
    """``BPF_PROBE_ATOMIC`` on an allocated page and on a missing one (nothing happens)."""
    imm = ATOMICS[op]
    # r1 = cast_kern(r0); *(u64 *)(r1 + 0) = 9; r2 = 5; r0 = 9; atomic(r1 + 0, r2);
    # r3 = r1 + 8192 (not allocated); r4 = 3; atomic(r3 + 0, r4);
    # r0 = *(r1 + 0) * 1000 + r2 * 100 + r4 * 10 + r0 (low 32 bits)
    tail = (I(0xBF, 1, 0, 1, 1) + I(0x7A, 1, 0, 0, 9) + I(0xB7, 2, imm=5) + I(0xB7, 0, imm=9)
            + I(code, 1, 2, 0, imm) + I(0xBF, 3, 1) + I(0x07, 3, imm=8192)
            + I(0xB7, 4, imm=3) + I(code, 3, 4, 0, imm) + I(0xBF, 5, 0)
            + I(0x79, 0, 1, 0) + I(0x27, 0, imm=1000) + I(0x27, 2, imm=100) + I(0x0F, 0, 2)
            + I(0x27, 4, imm=10) + I(0x0F, 0, 4) + I(0x0F, 0, 5) + I(0x95))
    _same(kernel, lambda fd: _alloc_prog(fd, tail))


def test_sign_extending_loads_from_arena(kernel: ModuleType) -> None:
    """6.18 turns them into ``BPF_PROBE_MEM32SX`` (mode 0xc0, dumped as is)."""
    # r0 = cast_kern(r0); *(u32 *)(r0 + 0) = -5; r1 = *(s8 *)(r0 + 0);
    # r2 = *(s16 *)(r0 + 0); r3 = *(s32 *)(r0 + 0); r0 = r1 + r2 + r3
    tail = (I(0xBF, 0, 0, 1, 1) + I(0x62, 0, 0, 0, -5) + I(0x91, 1, 0, 0) + I(0x89, 2, 0, 0)
            + I(0x81, 3, 0, 0) + I(0x0F, 1, 2) + I(0x0F, 1, 3) + I(0xBF, 0, 1) + I(0x95))
    kfd = kernel.map_create(ARENA, 0, 0, 1, BPF_F_MMAPABLE, map_extra=0x200000000)
    try:
        kres = kernel.prog_load(SYSCALL, _alloc_prog(kfd, tail), prog_flags=BPF_F_SLEEPABLE)
        assert kres.fd >= 0
        want = (_xlated("live", kres.fd), kernel.prog_test_run(kres.fd, repeat=0).retval)
        kernel.close(kres.fd)
    finally:
        kernel.close(kfd)
    pk = _pk()
    m = pk.map_create(ARENA, 0, 0, 1, BPF_F_MMAPABLE, map_extra=0x300000000)
    p = Program.load(pk, SYSCALL, _alloc_prog(m.fd, tail), prog_flags=BPF_F_SLEEPABLE)
    assert (_xlated(pk.root, p.fd), p.test_run(repeat=0).retval) == want
    assert want[1] == (-15) & 0xFFFFFFFF


# -- __arena globals: BPF_PSEUDO_MAP_VALUE of the arena map --------------------------------

def ld_arena_value(dst: int, fd: int, off: int) -> bytes:
    return I(0x18, dst, 2, 0, fd) + I(0, imm=off)


@pytest.mark.parametrize("off", [0, 8, 4096 + 16])
def test_arena_global_is_a_user_address(kernel: ModuleType, off: int) -> None:
    """The ld_imm64 gives a scalar (the variable's user address); cast to the kernel
    view it is read and written like any arena pointer."""
    # r1 = &var; r2 = r1; r1 = cast_kern(r1); *(u64 *)(r1 + 0) = 77; r0 = *(u64 *)(r1 + 0)
    # r2 &= 0xfff (the low bits of the user address: off within its page); r0 += r2
    tail = (ld_arena_value(1, 0, off) + I(0xBF, 2, 1) + I(0xBF, 1, 1, 1, 1)
            + I(0x7A, 1, 0, 0, 77) + I(0x79, 0, 1, 0) + I(0x57, 2, imm=0xFFF) + I(0x0F, 0, 2)
            + I(0x95))

    def prog(fd: int) -> bytes:  # the allocation makes the arena pages exist
        t = bytearray(tail)
        t[4:8] = struct.pack("<i", fd)
        return _alloc_prog(fd, bytes(t))

    kres, _ = _same(kernel, prog)
    assert kres.fd >= 0


def test_arena_global_without_cast_is_a_scalar(kernel: ModuleType) -> None:
    def prog(fd: int) -> bytes:
        return ld_arena_value(1, fd, 0) + I(0x7A, 1, 0, 0, 1) + I(0xB7, 0) + I(0x95)

    kres, _ = _same(kernel, prog)
    assert kres.fd < 0 and "invalid mem access 'scalar'" in kres.log


@pytest.mark.parametrize("pages, off", [(4, 4 * 4096), (4, 4 * 4096 + 1), (1, 1 << 20),
                                        (1, (1 << 29) - 1), (1, 1 << 29)])
def test_arena_global_offset_limits(kernel: ModuleType, pages: int, off: int) -> None:
    """Offsets up to the arena's size are taken (ERANGE past it); 2**29 and more are
    refused whatever the map."""
    (kres, krun), (perr, plog, prun) = _both(
        kernel, lambda fd: ld_arena_value(1, fd, off) + I(0xB7, 0) + I(0x95), pages=pages)
    assert perr == kres.errno, (kres.log, plog)
    assert _strip_addrs(plog) == _strip_addrs(kres.log)
    assert prun == krun


def test_arena_global_needs_a_user_address(kernel: ModuleType) -> None:
    """Without ``map_extra`` and before any mmap the user range is empty: offset 0 passes
    ``map_direct_value_addr``, the arena check refuses the program."""
    for off in (0, 8):
        (kres, _), (perr, plog, _r) = _both(
            kernel, lambda fd, off=off: ld_arena_value(1, fd, off) + I(0xB7, 0) + I(0x95),
            map_extra=0)
        assert kres.fd < 0 and perr == kres.errno, (off, kres.log, plog)
        assert _strip_addrs(plog) == _strip_addrs(kres.log)


GLOBALS_OBJ = Path(__file__).parent / "arena" / "arena_globals.o"
GLOBALS_VM_START = 0x30000000  # arena_globals.c
GLOBALS_RUNS = ("bump", "bump", "histogram", "where", "alloc_and_link", "bump")


def _run_globals(oracle: ModuleType, side: Any, base: int) -> dict[str, Any]:
    obj = pybpf.open(str(GLOBALS_OBJ), kernel=side)
    obj.maps.arena._spec.map_extra = base
    obj.load()
    try:
        arena = obj._loaded.arenas["arena"]
        out: dict[str, Any] = {"initial": arena.read(0, 48)}
        for i, name in enumerate(GLOBALS_RUNS):
            fd = getattr(obj.progs, name).fd
            if side == "live":
                res = oracle.prog_test_run(fd, repeat=0)
                assert res.errno == 0
                info = oracle.prog_info(fd)
                out[f"{i}:{name}"] = (info.verified_insns, _xlated(side, fd), res.retval)
            else:
                info = pybpf.program.Program(side.root, fd).info()
                res = getattr(obj.progs, name).test_run(repeat=0)
                out[f"{i}:{name}"] = (info.verified_insns, _xlated(side.root, fd), res.retval)
        out["final"] = arena.read(0, 48)
        out["page1"] = arena.read(4096, 8)
        return out
    finally:
        obj.close()


def test_arena_globals_object_runs_as_in_the_kernel(kernel: ModuleType) -> None:
    """``__arena`` globals (``.addr_space.1``): initial values in the arena's first page,
    ld_imm64 relocations, reads and writes, all as libbpf and the live kernel do them."""
    base = _free_user_base(low=GLOBALS_VM_START)
    want = _run_globals(kernel, "live", base)
    got = _run_globals(kernel, Kernel(), base)
    assert got == want
    assert want["initial"][:8] == struct.pack("<Q", 40) and want["initial"][8:14] == b"arena\0"
    assert [want[f"{i}:bump"][2] for i in (0, 1)] == [42, 44]
    assert struct.unpack_from("<Q", want["final"])[0] == 9  # alloc_and_link stored 7, bump +2


def test_arena_globals_need_an_arena_map() -> None:
    """libbpf refuses ``__arena`` globals in an object without an arena map (ENOENT)."""
    data = GLOBALS_OBJ.read_bytes()
    assert b".maps\0" in data  # renamed (section and BTF datasec): the object has no maps
    with pytest.raises(BpfError) as exc:
        pybpf.open(data.replace(b".maps\0", b".mapz\0"), kernel=Kernel())  # type: ignore[arg-type]
    assert exc.value.errno == errno.ENOENT
    assert "the ARENA map should be explicitly declared" in str(exc.value)


def test_reserve_pages(kernel: ModuleType) -> None:
    """``bpf_arena_reserve_pages``: 0, -EBUSY on allocated or reserved pages, -EINVAL past
    the arena, 0 for a misaligned address; the allocator skips reserved pages until they
    are freed. Each result's low five bits are shifted into r0 (test_run keeps 32 bits:
    the first reserve's 0 shows in the second -EBUSY)."""
    reserve, alloc, free = (_kfunc_id(n) for n in (
        "bpf_arena_reserve_pages", "bpf_arena_alloc_pages", "bpf_arena_free_pages"))

    def call(fd: int, kfunc: int, off: int, cnt: int, *, node: bool = False) -> bytes:
        return (ld_map(1, fd) + I(0xBF, 2, 6) + I(0x07, 2, imm=off) + I(0xB7, 3, imm=cnt)
                + (I(0xB7, 4, imm=-1) + I(0xB7, 5) if node else b"") + I(0x85, 0, 2, 0, kfunc))

    def keep(as_bool: bool = False) -> bytes:  # r7 = r7 << 5 | (r0 & 0x1f) (or r0 != 0)
        norm = (I(0x15, 0, 0, 1, 0) + I(0xB7, 0, imm=1)) if as_bool else b""
        return norm + I(0x57, 0, imm=0x1F) + I(0x67, 7, imm=5) + I(0x4F, 7, 0)

    def prog(fd: int) -> bytes:
        tail = (I(0xBF, 6, 0) + I(0xB7, 7)
                + call(fd, reserve, 4096, 2) + keep()
                + call(fd, reserve, 0, 1) + keep()
                + call(fd, reserve, 2 * 4096, 1) + keep()
                + call(fd, reserve, 3 * 4096, 100) + keep()
                + call(fd, reserve, 5, 1) + keep()
                + call(fd, alloc, 4096, 1, node=True) + keep(as_bool=True)
                + call(fd, free, 4096, 2)
                + call(fd, alloc, 4096, 1, node=True) + keep(as_bool=True)
                + I(0xBF, 0, 7) + I(0x95))
        return _alloc_prog(fd, tail)

    kres, _ = _same(kernel, prog)
    assert kres.fd >= 0
    (_, krun), _p = _both(kernel, prog)
    codes = [0, (-16) & 0x1F, (-16) & 0x1F, (-22) & 0x1F, 0, 0, 1]  # -EBUSY, -EINVAL
    assert krun == sum(c << 5 * (6 - i) for i, c in enumerate(codes)) & 0xFFFFFFFF


def _skeleton_round(side: Any, base: int) -> list[Any]:
    """``obj.arena``: set before load, read and written after, as libbpf's skel->arena."""
    obj = pybpf.open(str(GLOBALS_OBJ), kernel=side)
    obj.maps.arena._spec.map_extra = base
    seen: list[Any] = [obj.arena.as_dict()]
    obj.arena.counter = 100
    obj.load()
    try:
        run = (lambda: pybpf.testing.kernel.prog_test_run(obj.progs.bump.fd, repeat=0).retval) \
            if side == "live" else (lambda: obj.progs.bump.test_run(repeat=0).retval)
        seen += [obj.arena.counter, run(), obj.arena.counter]
        obj.arena.counter = 1000
        seen += [run(), obj.arena.as_dict()]
        return seen
    finally:
        obj.close()


def test_arena_globals_through_the_skeleton(kernel: ModuleType) -> None:
    base = _free_user_base(low=GLOBALS_VM_START)
    want = _skeleton_round("live", base)
    assert _skeleton_round(Kernel(), base) == want
    assert want[1:4] == [100, 102, 102] and want[4] == 1002
