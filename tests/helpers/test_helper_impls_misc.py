"""bpf_loop, clocks and the Python override of helpers (a fixed clock, a seeded prandom)."""

from __future__ import annotations

import random
import struct
from types import ModuleType
from typing import Any

import pytest

from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.runtime.context import RunContext
from pybpf.testing.verifier_cases import callback_btf

XDP = 6
PKT = bytes(6) + bytes.fromhex("020000000001") + b"\x08\x00" + bytes(50)


def _loop_prog(nr: int, stop_at: int, flags: int = 0) -> str:
    """sum of i over bpf_loop iterations kept in a stack slot; stops when i == stop_at.
    Returns (loop's r0 << 16) | sum (low 16 bits)."""
    return f"""
r1 = 0
*(u64 *)(r10 - 8) = r1
r1 = {nr} ll
r2 = subprog[cb]
r3 = r10
r3 += -8
r4 = {flags}
call 181
r0 <<= 16
r1 = *(u64 *)(r10 - 8)
r1 &= 0xffff
r0 |= r1
exit
cb:
r3 = *(u64 *)(r2 + 0)
r3 += r1
*(u64 *)(r2 + 0) = r3
r0 = 0
if r1 != {stop_at} goto +1
r0 = 1
exit
"""


def _kernel_load_with_callback(kernel: ModuleType, kernel_fds: Any, text: str) -> Any:
    insns = assemble(text)
    cb_slot = 0
    for label_line in text.strip().splitlines():
        if label_line.strip() == "cb:":
            break
        if label_line.strip():
            cb_slot += 2 if " ll" in label_line or "subprog[" in label_line else 1
    btf = kernel.btf_load(callback_btf(("int", "int")))
    assert btf.ok, btf.log
    try:
        finfo = struct.pack("<IIII", 0, 3, cb_slot, 5)
        return kernel_fds.prog_load(XDP, encode(insns), log_level=1, log_size=1 << 16,
                                    prog_btf_fd=btf.fd, func_info=finfo,
                                    func_info_rec_size=8)
    finally:
        import os

        os.close(btf.fd)


@pytest.mark.parametrize(("nr", "stop_at", "flags"), [
    (0, 99, 0), (1, 99, 0), (10, 99, 0), (10, 3, 0), (10, 0, 0), (300, 299, 0),
    (10, 99, 1), ((1 << 23) + 1, 0, 0), (0xFFFFFFFF, 0, 0), (0x1_0000_0005, 99, 0),
])
def test_bpf_loop_vs_kernel(kernel: ModuleType, kernel_fds: Any, nr: int, stop_at: int,
                            flags: int) -> None:
    text = _loop_prog(nr, stop_at, flags)
    raw = encode(assemble(text))
    res = _kernel_load_with_callback(kernel, kernel_fds, text)
    assert res.ok, res.log
    want = kernel.prog_test_run(res.fd, data_in=PKT, data_size_out=256)
    prog = Program.load(Kernel(), XDP, raw)
    got = prog.test_run(PKT, data_size_out=256)
    assert (got.retval, got.data_out) == (want.retval, want.data_out), text


def _clock_prog() -> bytes:
    """r0 = ktime_get_ns() low 32 bits XOR get_prandom_u32()."""
    return encode(assemble("call 5\nr6 = r0\ncall 7\nr0 ^= r6\nr0 &= 0x7fffffff\nexit\n"))


def test_override_fixed_clock_and_seeded_prandom() -> None:
    k = Kernel()
    seeded = random.Random(42)

    def fixed_clock(ctx: RunContext, *_: int) -> int:
        return 1_000_000_007

    def prandom(ctx: RunContext, *_: int) -> int:
        return seeded.getrandbits(32)

    k.helpers.override(5, fixed_clock)
    k.helpers.override(7, prandom)
    prog = Program.load(k, XDP, _clock_prog())
    got = [prog.test_run(PKT).retval for _ in range(3)]
    expect = random.Random(42)
    assert got == [(1_000_000_007 ^ expect.getrandbits(32)) & 0x7FFFFFFF for _ in range(3)]


def test_override_is_per_kernel() -> None:
    """Another Kernel keeps the real clock: overrides do not leak."""
    k1, k2 = Kernel(), Kernel()
    k1.helpers.override(5, lambda ctx, *_: 0)
    k1.helpers.override(7, lambda ctx, *_: 0)
    assert Program.load(k1, XDP, _clock_prog()).test_run(PKT).retval == 0
    runs = {Program.load(k2, XDP, _clock_prog()).test_run(PKT).retval for _ in range(3)}
    assert runs != {0}


def test_ktime_get_tai_ns_is_ahead_of_monotonic() -> None:
    """TAI is wall-clock based: far beyond the monotonic clock (boot-relative)."""
    k = Kernel()
    text = "call 208\nr6 = r0\ncall 5\nr6 -= r0\nr6 >>= 50\nr0 = r6\nexit\n"
    prog = Program.load(k, XDP, encode(assemble(text)))
    assert prog.test_run(PKT).retval >= 1  # > 2**50 ns (~13 days) after boot time


def test_jiffies64_counts_up() -> None:
    k = Kernel()
    prog = Program.load(k, XDP, encode(assemble("call 118\nr0 >>= 1\nexit\n")))
    assert prog.test_run(PKT).retval > 0


def _strto_prog(fid: int, text: bytes, buf_len: int, flags: int) -> str:
    """Put ``text`` (<= 24 bytes) at r10-32, parse ``buf_len`` bytes of it with
    bpf_strtol/strtoul into r10-40; return (r0 & 0xff) | (res & 0xffffff) << 8."""
    padded = text.ljust(24, b"\0")
    lines = []
    for i in range(3):
        word = int.from_bytes(padded[i * 8:i * 8 + 8], "little")
        lines += [f"r1 = {word} ll", f"*(u64 *)(r10 - {32 - i * 8}) = r1"]
    lines += ["r1 = 0", "*(u64 *)(r10 - 40) = r1", "r1 = r10", "r1 += -32",
              f"r2 = {buf_len}", f"r3 = {flags}", "r4 = r10", "r4 += -40", f"call {fid}",
              "r0 &= 0xff", "r1 = *(u64 *)(r10 - 40)", "r1 &= 0xffffff", "r1 <<= 8",
              "r0 |= r1", "exit"]
    return "\n".join(lines) + "\n"


STRTO_CASES = [
    (b"123", 3, 0), (b"123", 4, 0), (b"  -42x", 6, 0), (b"-42", 3, 10), (b"0x1f", 4, 0),
    (b"0x1f", 4, 16), (b"0x", 2, 0), (b"0xg", 3, 0), (b"017", 3, 0), (b"019", 3, 0),
    (b"ff", 2, 16), (b"ff", 2, 10), (b"12", 2, 7), (b"12", 2, 0x20), (b"", 1, 0),
    (b"   ", 3, 0), (b"-", 1, 0), (b"18446744073709551615", 20, 0),
    (b"18446744073709551616", 20, 0), (b"9223372036854775807", 19, 0),
    (b"9223372036854775808", 19, 0), (b"-9223372036854775808", 20, 0),
    (b"-9223372036854775809", 20, 0), (b"\t\n7", 3, 0), (b"\xa05", 2, 0), (b"+5", 2, 0),
    (b"1 2", 3, 0), (b"12\x003", 4, 0),
]


@pytest.mark.parametrize("fid", [105, 106])
@pytest.mark.parametrize(("text", "buf_len", "flags"), STRTO_CASES)
def test_strtol_strtoul_vs_kernel(kernel: ModuleType, kernel_fds: Any, fid: int, text: bytes,
                                  buf_len: int, flags: int) -> None:
    src = _strto_prog(fid, text, buf_len, flags)
    raw = encode(assemble(src))
    res = kernel_fds.prog_load(XDP, raw, log_level=1, log_size=1 << 16)
    assert res.ok, res.log
    want = kernel.prog_test_run(res.fd, data_in=PKT, data_size_out=256)
    got = Program.load(Kernel(), XDP, raw).test_run(PKT, data_size_out=256)
    assert got.retval == want.retval, (text, buf_len, flags)


def _printk_prog(fmt: bytes, a1: int, a2: int, a3: int) -> str:
    """bpf_trace_printk(fmt on the stack, a1, a2, a3); return its r0."""
    padded = (fmt + b"\0").ljust(((len(fmt) + 8) // 8) * 8, b"\0")
    lines = []
    for i in range(0, len(padded), 8):
        word = int.from_bytes(padded[i:i + 8], "little")
        lines += [f"r1 = {word} ll", f"*(u64 *)(r10 - {len(padded) - i}) = r1"]
    lines += ["r1 = r10", f"r1 += -{len(padded)}", f"r2 = {len(padded)}", f"r3 = {a1} ll",
              f"r4 = {a2} ll", f"r5 = {a3} ll", "call 6", "exit"]
    return "\n".join(lines) + "\n"


PRINTK_CASES = [
    (b"hello\n", 0, 0, 0), (b"%d %u %x\n", -5 & (2**64 - 1), 7, 255),
    (b"%lld %llu %llx\n", -5 & (2**64 - 1), 2**64 - 1, 2**40), (b"%5d|%-5d|%05x\n", 42, 42, 42),
    (b"%i %X %c\n", 2**31, 0xABC, 65), (b"100%%\n", 0, 0, 0), (b"%d %d %d %d\n", 1, 2, 3),
    (b"%q\n", 1, 0, 0), (b"%ld %lx\n", 2**63, 2**63, 0), (b"%+d % d\n", 5, 5, 0),
    (b"%.3d|%8.3x\n", 5, 255, 0), (b"%px\n", 0x1234, 0, 0), (b"%\n", 0, 0, 0),
    (b"tab\tdone\n", 0, 0, 0), (b"bad \x01 char", 0, 0, 0), (b"%lu", 7, 0, 0),
]


@pytest.mark.parametrize(("fmt", "a1", "a2", "a3"), PRINTK_CASES)
def test_trace_printk_length_vs_kernel(kernel: ModuleType, kernel_fds: Any, fmt: bytes,
                                       a1: int, a2: int, a3: int) -> None:
    """The kernel returns the formatted length (or -errno): pybpf must agree."""
    src = _printk_prog(fmt, a1, a2, a3)
    raw = encode(assemble(src))
    res = kernel_fds.prog_load(XDP, raw, log_level=1, log_size=1 << 16)
    assert res.ok, res.log
    want = kernel.prog_test_run(res.fd, data_in=PKT, data_size_out=256)
    k = Kernel()
    got = Program.load(k, XDP, raw).test_run(PKT, data_size_out=256)
    assert got.retval == want.retval, fmt


def test_trace_printk_lines_reach_the_trace_pipe() -> None:
    from pybpf.helpers.impls import trace_pipe

    k = Kernel()
    prog = Program.load(k, XDP, encode(assemble(_printk_prog(b"v=%d x=%x\n", -3 & (2**64 - 1),
                                                             255, 0))))
    prog.test_run(PKT)
    prog.test_run(PKT)
    assert trace_pipe(k) == ["v=-3 x=ff\n", "v=-3 x=ff\n"]
    assert trace_pipe(Kernel()) == []


MORE_PRINTK = [(b"%s|%5s\n", 0, 0, 0), (b"%c%c%c\n", 0x41, 0x42, 0x43), (b"%08llx\n", 2**36, 0, 0),
               (b"%-3c|\n", 0x41, 0, 0), (b"%pK\n", 1, 0, 0), (b"%pB\n", 1, 0, 0),
               (b"%hd\n", 1, 0, 0), (b"%zu\n", 1, 0, 0), (b"%lli\n", 2**64 - 1, 0, 0)]


@pytest.mark.parametrize(("fmt", "a1", "a2", "a3"), MORE_PRINTK)
def test_trace_printk_more_vs_kernel(kernel: ModuleType, kernel_fds: Any, fmt: bytes,
                                     a1: int, a2: int, a3: int) -> None:
    test_trace_printk_length_vs_kernel(kernel, kernel_fds, fmt, a1, a2, a3)


def _vprintk_prog(fmt: bytes, args: list[int]) -> str:
    """bpf_trace_vprintk(fmt at r10-64.., args array at r10-160..); return its r0."""
    padded = (fmt + b"\0").ljust(((len(fmt) + 8) // 8) * 8, b"\0")
    assert len(padded) <= 64
    lines = []
    for i in range(0, len(padded), 8):
        word = int.from_bytes(padded[i:i + 8], "little")
        lines += [f"r1 = {word} ll", f"*(u64 *)(r10 - {len(padded) - i}) = r1"]
    for k, a in enumerate(args):
        lines += [f"r1 = {a} ll", f"*(u64 *)(r10 - {160 - 8 * k}) = r1"]
    lines += ["r1 = r10", f"r1 += -{len(padded)}", f"r2 = {len(padded)}"]
    lines += ["r3 = r10", "r3 += -160"] if args else ["r3 = 0"]
    lines += [f"r4 = {8 * len(args)}", "call 177", "exit"]
    return "\n".join(lines) + "\n"


VPRINTK_CASES = [(b"x\n", []), (b"%d %d %d %d %d\n", [1, 2, 3, 4, 5]),
                 (b"%d\n", []), (b"%d\n", [1, 2]), (b"%llx %s\n", [2**50, 0]),
                 (b"%d" * 12, list(range(12))), (b"%d" * 13, list(range(13)))]


@pytest.mark.parametrize(("fmt", "args"), VPRINTK_CASES)
def test_trace_vprintk_vs_kernel(kernel: ModuleType, kernel_fds: Any, fmt: bytes,
                                 args: list[int]) -> None:
    src = _vprintk_prog(fmt, args)
    raw = encode(assemble(src))
    res = kernel_fds.prog_load(XDP, raw, log_level=1, log_size=1 << 16)
    assert res.ok, res.log
    want = kernel.prog_test_run(res.fd, data_in=PKT, data_size_out=256)
    got = Program.load(Kernel(), XDP, raw).test_run(PKT, data_size_out=256)
    assert got.retval == want.retval, (fmt, args)


def test_snprintf_formats_and_truncates() -> None:
    from pybpf.helpers.impls import snprintf
    from pybpf.runtime.memory import REGISTRY

    region = REGISTRY.alloc(256, "snprintf test")
    try:
        base = region.start
        region.mv[0:16] = b"n=%d s=%s\0".ljust(16, b"\0")
        region.mv[16:24] = b"abc\0\0\0\0\0"
        region.mv[32:48] = (7).to_bytes(8, "little") + (base + 16).to_bytes(8, "little")
        ctx = RunContext()
        assert snprintf(ctx, base + 64, 32, base, base + 32, 16) == len(b"n=7 s=abc") + 1
        assert bytes(region.mv[64:74]) == b"n=7 s=abc\0"
        assert snprintf(ctx, base + 128, 4, base, base + 32, 16) == 10
        assert bytes(region.mv[128:132]) == b"n=7\0"
        assert snprintf(ctx, base + 128, 4, base, base + 32, 12) == (-22) & (2**64 - 1)
        assert snprintf(ctx, base + 128, 4, base, base + 32, 8) == (-22) & (2**64 - 1)
    finally:
        REGISTRY.remove(region)


@pytest.mark.parametrize(("s1", "size", "s2", "want"), [
    (b"abc\0", 4, b"abc\0", 0), (b"abd\0", 4, b"abc\0", 1), (b"abb\0", 4, b"abc\0", -1),
    (b"abcdef", 3, b"abc\0", 0), (b"ab\0", 3, b"abc\0", -1), (b"\xff\0", 2, b"a\0", 1),
    (b"x", 0, b"y\0", 0),
])
def test_strncmp_semantics(s1: bytes, size: int, s2: bytes, want: int) -> None:
    """lib/string.c strncmp: unsigned bytes, -1/0/1, stops at NUL or after size bytes."""
    from pybpf.helpers.impls import strncmp
    from pybpf.runtime.memory import REGISTRY

    region = REGISTRY.alloc(64, "strncmp test")
    try:
        region.mv[0:len(s1)] = s1
        region.mv[32:32 + len(s2)] = s2
        got = strncmp(RunContext(), region.start, size, region.start + 32)
        assert got == want & (2**64 - 1)
    finally:
        REGISTRY.remove(region)
