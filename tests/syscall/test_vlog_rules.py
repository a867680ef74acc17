"""The verifier log buffer rules (kernel/bpf/log.c) against the live kernel's own log text.

The kernel produces a log for a program with a large buffer; then the same program is
loaded with small buffers (rotating and ``BPF_LOG_FIXED``). :class:`VerifierLog` applied
to the full text must leave exactly the bytes the kernel left, and the same errno and
``log_true_size``.
"""

from __future__ import annotations

import ctypes
import errno
from typing import Any

import pytest

from pybpf.errors import BpfError
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.syscall.log import BPF_LOG_FIXED, VerifierLog
from pybpf.uapi import BPF_PROG_TYPE_SOCKET_FILTER, BpfCmd, bpf_attr
from pybpf.verifier.api import VerifierResult

# r0 = 0; r1 = 1; r2 = r1; r0 += r2; exit — accepted, with a short level-2 log
PROG = bytes.fromhex("b700000000000000" "b701000001000000" "bf12000000000000"
                     "0f20000000000000" "9500000000000000")


def _kernel_log(kernel: Any, level: int, size: int) -> tuple[int, bytes, int]:
    buf = ctypes.create_string_buffer(b"\xaa" * size, size) if size else None
    code = ctypes.create_string_buffer(PROG, len(PROG))
    lic = ctypes.create_string_buffer(b"GPL")
    a = bpf_attr()
    a.prog_type, a.insn_cnt = BPF_PROG_TYPE_SOCKET_FILTER, len(PROG) // 8
    a.insns, a.license = ctypes.addressof(code), ctypes.addressof(lic)
    a.log_level, a.log_size = level, size
    a.log_buf = ctypes.addressof(buf) if buf is not None else 0
    ret, err = kernel.sys_bpf(BpfCmd.BPF_PROG_LOAD, a)
    if ret >= 0:
        kernel.close(ret)
    return err, (buf.raw if buf is not None else b""), a.log_true_size


def _pybpf_log(text: bytes, level: int, size: int, len_max: int) -> tuple[int, bytes, int]:
    buf = ctypes.create_string_buffer(b"\xaa" * size, size) if size else None
    log = VerifierLog.init(level, ctypes.addressof(buf) if buf is not None else 0, size)
    err, true_size = log.finalize(text, len_max)
    return err, (buf.raw if buf is not None else b""), true_size


@pytest.mark.kernel
@pytest.mark.parametrize("level", [1, 2, 2 | BPF_LOG_FIXED, 1 | BPF_LOG_FIXED])
@pytest.mark.parametrize("size", [0, 1, 2, 7, 16, 40, 100, 4096])
def test_log_truncation_matches_kernel(kernel: Any, level: int, size: int) -> None:
    err_full, full, true_full = _kernel_log(kernel, level, 1 << 16)
    assert err_full == 0
    text = full[:full.index(b"\0")]
    assert true_full >= len(text) + 1  # larger when the verifier rewound the log
    want = _kernel_log(kernel, level, size)
    got = _pybpf_log(text, level, size, true_full)
    # Bytes after the terminating NUL are leftovers of text the verifier rewound (it wrote
    # then discarded them); pybpf sees only the final text, so compare the C string.
    assert (got[0], got[1].split(b"\0")[0], got[2]) == (want[0], want[1].split(b"\0")[0],
                                                        want[2])
    assert (b"\0" in got[1]) == (b"\0" in want[1])


def test_log_attr_validation() -> None:
    for level, buf, size in [(0, 8, 8), (1, 8, 0), (1, 0, 8), (16, 8, 8), (1, 8, 1 << 30)]:
        with pytest.raises(BpfError) as exc:
            VerifierLog.init(level, buf, size)
        assert exc.value.errno == errno.EINVAL
    VerifierLog.init(1, 0, 0)
    VerifierLog.init(0, 0, 0)


def _fake_verifier(text: str, err: int = 0) -> Any:
    def check(inp: Any) -> VerifierResult:
        return VerifierResult(err, text if inp.log_level else "", list(inp.insns), [],
                              verified_insns=len(inp.insns))
    return check


def test_prog_load_enospc_and_true_size(monkeypatch: pytest.MonkeyPatch) -> None:
    import pybpf.verifier.api as api

    monkeypatch.setattr(api, "bpf_check", _fake_verifier("0123456789abcdef\n"))
    k = Kernel(sysctls={"bpf_jit_enable": 0})
    buf = ctypes.create_string_buffer(8)
    code = ctypes.create_string_buffer(PROG, len(PROG))
    lic = ctypes.create_string_buffer(b"GPL")
    a = bpf_attr()
    a.prog_type, a.insn_cnt = BPF_PROG_TYPE_SOCKET_FILTER, 5
    a.insns, a.license = ctypes.addressof(code), ctypes.addressof(lic)
    a.log_level, a.log_size, a.log_buf = 1, 8, ctypes.addressof(buf)
    assert k.bpf(BpfCmd.BPF_PROG_LOAD, a) == -errno.ENOSPC
    assert a.log_true_size == 18
    assert buf.raw == b"abcdef\n\0"  # rotating: the tail survives
    assert not k.progs(), "a load that fails with ENOSPC must not leave a program"
    a.log_level = 1 | BPF_LOG_FIXED
    assert k.bpf(BpfCmd.BPF_PROG_LOAD, a) == -errno.ENOSPC
    assert buf.raw == b"0123456\0"
    # a level without a buffer succeeds and still reports the size
    a.log_level, a.log_size, a.log_buf = 1, 0, 0
    fd = k.bpf(BpfCmd.BPF_PROG_LOAD, a)
    assert fd >= 3 and a.log_true_size == 18
    # a short attr (ending before log_true_size) gets no write-back
    a.log_true_size = 0
    fd2 = k.bpf(BpfCmd.BPF_PROG_LOAD, a, size=bpf_attr.log_true_size.offset)
    assert fd2 >= 3 and a.log_true_size == 0


def test_rejected_program_log_and_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import pybpf.verifier.api as api

    monkeypatch.setattr(api, "bpf_check", _fake_verifier("R0 !read_ok\n", errno.EACCES))
    k = Kernel(sysctls={"bpf_jit_enable": 0})
    with pytest.raises(BpfError) as exc:
        Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, PROG, log_level=1)
    assert exc.value.errno == errno.EACCES
    assert "R0 !read_ok" in exc.value.log
    assert "BEGIN PROG LOAD LOG" in str(exc.value)
