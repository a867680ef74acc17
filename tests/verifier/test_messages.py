"""First-error messages and verdicts on small hand-written programs (kernel texts)."""

from __future__ import annotations

import errno

import pytest

from pybpf.isa.insn import Insn
from pybpf.verifier.api import VerifierInput, bpf_check

EXIT = Insn(0x95)
R0_0 = Insn(0xB7, 0, 0, 0, 0)


def check(insns: list[Insn], prog_type: int = 1, **kw: object) -> tuple[int, str]:
    res = bpf_check(VerifierInput(insns=insns, prog_type=prog_type, **kw))  # type: ignore[arg-type]
    return res.errno, res.extra.get("error_line", "")


@pytest.mark.parametrize("insns,err,msg", [
    ([EXIT], errno.EACCES, "R0 !read_ok"),
    ([R0_0], errno.EINVAL, "last insn is not an exit or jmp"),
    ([Insn(0x05, 0, 0, 5), EXIT], errno.EINVAL, "jump out of range from insn 0 to 6"),
    ([R0_0, EXIT, EXIT], errno.EINVAL, "unreachable insn 2"),
    ([Insn(0x7A, 10, 0, 8, 0), R0_0, EXIT], errno.EACCES, "invalid write to stack R10 off=8 size=8"),
    ([Insn(0xBF, 1, 10), Insn(0x17, 1, 0, 0, 8), R0_0, EXIT], errno.EACCES,
     "R1 subtraction from stack pointer prohibited"),
    ([Insn(0xB7, 1, 0, 0, 0), Insn(0x79, 0, 1, 0, 0), EXIT], errno.EACCES, "R1 invalid mem access 'scalar'"),
    ([Insn(0x61, 0, 1, 1000, 0), EXIT], errno.EACCES, "invalid bpf_context access off=1000 size=4"),
    ([Insn(0xB7, 10, 0, 0, 0), R0_0, EXIT], errno.EACCES, "frame pointer is read only"),
    ([R0_0, Insn(0x37, 0, 0, 0, 0), EXIT], errno.EINVAL, "div by zero"),
    ([R0_0, Insn(0x85, 0, 0, 0, 9999), EXIT], errno.EINVAL, "invalid func unknown#9999"),
])
def test_first_error(insns: list[Insn], err: int, msg: str) -> None:
    assert check(insns) == (err, msg)


def test_accepts_bounded_loop_and_counts() -> None:
    prog = [Insn(0xB7, 0, 0, 0, 0), Insn(0x07, 0, 0, 0, 1), Insn(0xA5, 0, 0, -2, 10), EXIT]
    res = bpf_check(VerifierInput(insns=prog, prog_type=1, log_level=1))
    assert res.errno == 0
    assert res.log.rstrip().splitlines()[-1].startswith("processed ")


def test_infinite_loop_is_rejected() -> None:
    prog = [R0_0, Insn(0x05, 0, 0, -1, 0), EXIT]
    err, _ = check(prog)
    assert err in (errno.EINVAL, errno.E2BIG)


def test_map_value_bounds_need_a_map() -> None:
    # ld_imm64 of an unknown map fd is rejected with EBADF, as the kernel does
    prog = [Insn(0x18, 1, 1, 0, 77), Insn(0), R0_0, EXIT]
    assert check(prog) == (errno.EBADF, "fd 77 is not pointing to valid bpf_map")
