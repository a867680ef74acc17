"""JIT arena code (``jit/arenagen.py``) against the interpreter: random arena loads,
stores and atomics around two allocated pages — on them, on pages nobody allocated,
across page ends and outside the 4 GiB window — give the same registers and bytes."""

from __future__ import annotations

import ctypes
import functools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.btf.raw import Btf
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.program import Program

SYSCALL, BPF_F_SLEEPABLE, BPF_F_MMAPABLE, ARENA = 31, 1 << 4, 1 << 10, 33
PAGES = 8
SIZES = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}


def I(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> Insn:  # noqa: E743
    return Insn(code, dst, src, off, imm)


@functools.cache
def _alloc_id() -> int:
    btf = Btf.from_file("/sys/kernel/btf/vmlinux")
    return next(i for i, t in enumerate(btf.types)
                if t.name == "bpf_arena_alloc_pages" and type(t).__name__ == "BtfFunc")


def _free_base(k: int) -> int:
    """A user address free in this process, the same low 32 bits for every tier."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    for hi in range(k, 64):
        want = 0x7FF00000 + (hi << 32)
        got = libc.mmap(want, PAGES * 4096, 0, 0x22 | 0x100000, -1, 0)
        if got not in (None, ctypes.c_void_p(-1).value):
            libc.munmap(got, PAGES * 4096)
            if got == want:
                return want
    raise RuntimeError("no free user range")


@functools.cache
def _tier(jit: int) -> tuple[Kernel, int]:
    k = Kernel()
    k.sysctl["bpf_jit_enable"] = jit
    m = k.map_create(ARENA, 0, 0, PAGES, BPF_F_MMAPABLE, map_extra=_free_base(8 + 8 * jit))
    return k, int(m.fd)


op = st.tuples(st.sampled_from(["ld", "st", "stx", "add", "fetch_add", "xchg", "cmpxchg"]),
               st.sampled_from([1, 2, 4, 8]),
               st.one_of(st.integers(-4100, 4 * 4096), st.sampled_from([4094, 4095, 8190])),
               st.integers(0, 2**32 - 1))


def _program(fd: int, ops: list[tuple[str, int, int, int]]) -> bytes:
    """r6 = two pages at window offset X (allocated at pgoff 1); then each op relative to
    r6 (loads xor into r7); returns r7 ^ r8 ^ r0 (r8: the cmpxchg/fetch results)."""
    alloc = [I(0x18, 1, 1, 0, fd), I(0), I(0xB7, 2), I(0xB7, 3, imm=2), I(0xB7, 4, imm=-1),
             I(0xB7, 5), I(0x85, 0, 2, 0, _alloc_id())]
    body = [I(0xBF, 6, 0, 1, 1), I(0xB7, 7), I(0xB7, 8), I(0xB7, 0)]
    for name, size, off, val in ops:
        sz = SIZES[size]
        if name == "ld":
            body += [I(0x61 & ~0x18 | sz, 1, 6, off), I(0xAF, 7, 1)]
        elif name == "st":
            body += [I(0x62 & ~0x18 | sz, 6, 0, off, val & 0x7FFFFFFF)]
        elif name == "stx":
            body += [I(0x18, 2, 0, 0, val), I(0), I(0x63 & ~0x18 | sz, 6, 2, off)]
        elif size >= 4:
            code = 0xDB if size == 8 else 0xC3
            imm = {"add": 0x00, "fetch_add": 0x01, "xchg": 0xE1, "cmpxchg": 0xF1}[name]
            body += [I(0xB7, 2, imm=val & 0x7FFFFFFF), I(code, 6, 2, off, imm), I(0xAF, 8, 2)]
    body += [I(0xAF, 7, 8), I(0xAF, 7, 0), I(0xBF, 0, 7), I(0x95)]
    return encode([*alloc, I(0x55, 0, 0, 1, 0), I(0x95), *body])


def _run(jit: int, ops: list[tuple[str, int, int, int]]) -> tuple[int, bytes, bool]:
    k, fd = _tier(jit)
    p = Program.load(k, SYSCALL, _program(fd, ops), prog_flags=BPF_F_SLEEPABLE)
    from pybpf.syscall.objects import map_get, prog_get

    bp = prog_get(k.root, p.fd)
    jited = bp.jited
    bp.put()
    r0 = p.test_run(repeat=0).retval
    arena = map_get(k.root, fd)[0].bmap
    pages = b"".join(arena.probe_load(arena.kaddr_of(pg) - arena.kern_vm_start + 8 * i, 8)
                     .to_bytes(8, "little") for pg in range(PAGES) for i in range(512))
    arena.free_pages(arena.user_vm_start, PAGES)  # a fresh start for the next example
    return r0, pages, jited


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=12))
def test_jit_arena_matches_interpreter(ops: list[tuple[str, int, int, int]]) -> None:
    r_jit, mem_jit, jited = _run(1, ops)
    r_int, mem_int, interpreted = _run(0, ops)
    assert jited and not interpreted
    assert r_jit == r_int
    assert mem_jit == mem_int
