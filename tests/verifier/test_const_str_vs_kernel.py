"""Constant-string arguments against the live kernel: ``bpf_snprintf``'s format (checked
while verifying: ``check_reg_const_str`` and ``check_bpf_snprintf_call``), ``bpf_strncmp``
and the ``__str``/``__prog`` arguments of ``bpf_stream_vprintk_impl`` — verdict, errno,
first error line, test-run results and what the program wrote to its stream."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from types import ModuleType

import pytest

from pybpf.errors import BpfError
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.testing.verifier_diff import error_line, kfunc_ids
from pybpf.testing.xlated import pybpf_xlated
from pybpf.uapi import BpfCmd, bpf_attr

SYSCALL, ARRAY, BPF_F_SLEEPABLE = 31, 2, 1 << 4
BPF_F_RDONLY_PROG = 1 << 7
LOG = 1 << 20
VALUE_SIZE = 32


def I(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> Insn:  # noqa: E743
    return Insn(code, dst, src, off, imm)


def ld_value(dst: int, fd: int, off: int = 0) -> list[Insn]:
    return [I(0x18, dst, 2, 0, fd), I(0, imm=off)]


def _kernel_map(kernel: ModuleType, text: bytes, flags: int, freeze: bool) -> int:
    fd = kernel.map_create(ARRAY, 4, VALUE_SIZE, 1, flags)
    kernel.map_update(fd, b"\0" * 4, text.ljust(VALUE_SIZE, b"\0"))
    if freeze:
        kernel.map_freeze(fd)
    return int(fd)


def _pybpf_map(k: Kernel, text: bytes, flags: int, freeze: bool) -> int:
    m = k.map_create(ARRAY, 4, VALUE_SIZE, 1, flags)
    m.update(b"\0" * 4, text.ljust(VALUE_SIZE, b"\0"))
    if freeze:
        m.freeze()
    return int(m.fd)


def _stream_read(bpf: Callable[[int, ctypes.Structure], int], fd: int, stream: int) -> bytes:
    buf = ctypes.create_string_buffer(4096)
    attr = bpf_attr()
    sr = attr.prog_stream_read
    sr.stream_buf, sr.stream_buf_len = ctypes.addressof(buf), 4096
    sr.stream_id, sr.prog_fd = stream, fd
    n = bpf(BpfCmd.BPF_PROG_STREAM_READ_BY_FD, attr)
    return buf.raw[:n] if n > 0 else b""


def _both(kernel: ModuleType, text: bytes, prog: Callable[[int], list[Insn]], *,
          flags: int = BPF_F_RDONLY_PROG, freeze: bool = True, stream: int = 0
          ) -> tuple[tuple[int, str, int | None, bytes], tuple[int, str, int | None, bytes]]:
    """(errno, first error line, test-run retval, stream bytes) in the kernel and pybpf."""
    kfd = _kernel_map(kernel, text, flags, freeze)
    try:
        res = kernel.prog_load(SYSCALL, encode(prog(kfd)), log_level=1, log_size=LOG,
                                prog_flags=BPF_F_SLEEPABLE)
        if res.fd >= 0:
            run = kernel.prog_test_run(res.fd, repeat=0)
            assert run.errno == 0
            out = b""
            if stream:
                out = _stream_read(lambda c, a: kernel.sys_bpf(c, a)[0], res.fd, stream)
            kernel.close(res.fd)
            want = (0, "", run.retval, out)
        else:
            want = (res.errno, error_line(res.log), None, b"")
    finally:
        kernel.close(kfd)
    k = Kernel()
    pfd = _pybpf_map(k, text, flags, freeze)
    try:
        p = Program.load(k, SYSCALL, prog(pfd), log_level=1, prog_flags=BPF_F_SLEEPABLE)
    except BpfError as exc:
        return want, (exc.errno, error_line(exc.log), None, b"")
    retval = p.test_run(repeat=0).retval
    out = _stream_read(k.root.bpf, p.fd, stream) if stream else b""
    return want, (0, "", retval, out)


def _snprintf(data: list[int], data_len: int | None = None, fmt_off: int = 0
              ) -> Callable[[int], list[Insn]]:
    """r0 = bpf_snprintf(fp-64, 32, fmt, fp-32 (the u64 args), data_len), plus the first
    output byte times 2**16."""
    def prog(fd: int) -> list[Insn]:
        body = [I(0x7A, 10, 0, -32 + 8 * i, v) for i, v in enumerate(data)]
        body += [I(0xBF, 1, 10), I(0x07, 1, imm=-64), I(0xB7, 2, imm=32),
                 *ld_value(3, fd, fmt_off), I(0xBF, 4, 10), I(0x07, 4, imm=-32),
                 I(0xB7, 5, imm=8 * len(data) if data_len is None else data_len),
                 I(0x85, imm=165), I(0x71, 1, 10, -64), I(0x67, 1, imm=16), I(0x0F, 0, 1),
                 I(0x95)]
        return body
    return prog


CASES = {
    "ok": (b"%d-%lld!\n", _snprintf([7, -3]), {}),
    "utf8": ("é%u".encode(), _snprintf([5]), {}),
    "percent": (b"100%%", _snprintf([]), {}),
    "not_frozen": (b"%d", _snprintf([1]), {"freeze": False}),
    "not_rdonly": (b"%d", _snprintf([1]), {"flags": 0}),
    "bad_conv": (b"%q", _snprintf([1]), {}),
    "precision": (b"%.2d", _snprintf([1]), {}),
    "too_few_args": (b"%d %d", _snprintf([1]), {}),
    "odd_len": (b"%d", _snprintf([1, 2], data_len=12), {}),
    "control_char": (b"a\x01%d", _snprintf([1]), {}),
    "no_nul": (b"x" * VALUE_SIZE, _snprintf([]), {}),
    "offset": (b"ab%dcd", _snprintf([9], fmt_off=2), {}),
    "offset_past": (b"ab", _snprintf([], fmt_off=VALUE_SIZE), {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_snprintf_format_checks(kernel: ModuleType, case: str) -> None:
    text, prog, kw = CASES[case]
    want, got = _both(kernel, text, prog, **kw)
    assert got == want
    assert "sleepable" not in want[1]


def _strncmp(n: int) -> Callable[[int], list[Insn]]:
    """r0 = bpf_strncmp("abc", n, fmt): the stack string against the map's."""
    def prog(fd: int) -> list[Insn]:
        return [I(0x62, 10, 0, -8, 0x636261), I(0xBF, 1, 10), I(0x07, 1, imm=-8),
                I(0xB7, 2, imm=n), *ld_value(3, fd), I(0x85, imm=182), I(0x95)]
    return prog


@pytest.mark.parametrize(("text", "kw"), [(b"abd", {}), (b"abc", {}), (b"abc", {"flags": 0})])
def test_strncmp_needs_a_constant_string(kernel: ModuleType, text: bytes,
                                         kw: dict[str, int]) -> None:
    want, got = _both(kernel, text, _strncmp(4), **kw)
    assert got == want


def _stream_printk(stream: int, nargs: int) -> Callable[[int], list[Insn]]:
    """r0 = bpf_stream_vprintk_impl(stream, fmt, fp-16, 8 * nargs, NULL (aux__prog))."""
    ids = kfunc_ids()
    if "bpf_stream_vprintk_impl" not in ids:
        pytest.skip("no bpf_stream_vprintk_impl in this machine's vmlinux BTF")

    def prog(fd: int) -> list[Insn]:
        return [I(0x7A, 10, 0, -16, 40), I(0x7A, 10, 0, -8, 2), I(0xB7, 1, imm=stream),
                *ld_value(2, fd), I(0xBF, 3, 10), I(0x07, 3, imm=-16),
                I(0xB7, 4, imm=8 * nargs), I(0xB7, 5), I(0x85, 0, 2, 0,
                                                         ids["bpf_stream_vprintk_impl"]),
                I(0x95)]
    return prog


ENOMEM = 12


@pytest.mark.parametrize(("stream", "nargs", "text", "kw", "printed"), [
    (1, 2, b"%d+%d\n", {}, b"40+2\n"), (2, 2, b"err %x %u", {}, b"err 28 2"),
    (3, 2, b"%d %d", {}, None), (1, 1, b"%d %d", {}, None),
    (1, 2, b"%d", {"freeze": False}, None),
])
def test_stream_vprintk(kernel: ModuleType, stream: int, nargs: int, text: bytes,
                        kw: dict[str, int], printed: bytes | None) -> None:
    """The format is a ``__str`` argument, the last one ``__prog`` (the verifier fills it);
    what the program printed is read back with ``BPF_PROG_STREAM_READ_BY_FD``.

    This machine's kernel fails the stream's allocation (``kmalloc_nolock``: -ENOMEM)
    for every write that gets that far; there the text must be what the format gives."""
    want, got = _both(kernel, text, _stream_printk(stream, nargs),
                      stream=stream if stream in (1, 2) else 0, **kw)
    assert got[:2] == want[:2]
    if want[2] == (-ENOMEM) & 0xFFFFFFFF and printed is not None:
        assert got[2:] == (0, printed)
    else:
        assert got == want
        assert printed is None or want[3] == printed


def test_stream_vprintk_gets_prog_aux_in_xlated(kernel: ModuleType) -> None:
    """``fixup_kfunc_call``: ``r5 = prog->aux`` (ld_imm64) right before the call."""
    k = Kernel()
    fd = _pybpf_map(k, b"%d+%d\n", BPF_F_RDONLY_PROG, True)
    p = Program.load(k, SYSCALL, _stream_printk(1, 2)(fd), prog_flags=BPF_F_SLEEPABLE)
    xl = pybpf_xlated(k.root, p.fd)
    call = next(i for i, ins in enumerate(xl) if ins.code == 0x85 and ins.src == 2)
    assert (xl[call - 2].code, xl[call - 2].dst) == (0x18, 5)
    kfd = _kernel_map(kernel, b"%d+%d\n", BPF_F_RDONLY_PROG, True)
    try:
        res = kernel.prog_load(SYSCALL, encode(_stream_printk(1, 2)(kfd)),
                                prog_flags=BPF_F_SLEEPABLE)
        assert res.fd >= 0
        kx = kernel.prog_xlated(res.fd)
        kernel.close(res.fd)
    finally:
        kernel.close(kfd)
    assert [(i.code, i.dst, i.src, i.off) for i in kx] == \
        [(i.code, i.dst, i.src, i.off) for i in xl]
