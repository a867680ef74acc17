"""Validator: the kernel's pre-pass and per-instruction messages, order and errno.

Every row of the tables is checked twice: against pybpf's expectation (always) and against
the live kernel's first error line and errno (tests marked ``kernel``, which skip visibly
without a usable ``bpf()``). Hypothesis then compares random programs with the kernel.
"""

from __future__ import annotations

import errno
import re
from types import ModuleType

import isa_kernel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.isa.insn import Insn, ld_imm64
from pybpf.isa.opcodes import OPCODES, linux_accepts_code
from pybpf.isa.validate import (
    check_insn,
    check_insn_errno,
    check_insn_reserved,
    check_program_structure,
    subprog_starts,
)

EXIT = Insn(0x95)
R0 = Insn(0xB7, 0, 0, 0, 0)
EINVAL, EACCES, E2BIG, EPERM = errno.EINVAL, errno.EACCES, errno.E2BIG, errno.EPERM

# name -> (program, errno, message): rejected by the pre-passes.
STRUCTURE: dict[str, tuple[list[Insn], int, str]] = {
    "empty": ([], E2BIG, ""),
    "ldx reserved imm": ([Insn(0x61, 0, 1, 0, 5), EXIT], EINVAL, "BPF_LDX uses reserved fields"),
    "ldx bad mode": ([Insn(0x21, 0, 1), EXIT], EINVAL, "BPF_LDX uses reserved fields"),
    "exit not last": ([EXIT, R0], EINVAL, "last insn is not an exit or jmp"),
    "jmp32 exit is not exit": ([R0, Insn(0x96)], EINVAL, "last insn is not an exit or jmp"),
    "ld_imm64 last": ([R0, EXIT, Insn(0x18, 1, 0, 0, 1)], EINVAL,
                      "last insn is not an exit or jmp"),
    "callx": ([Insn(0xB7, 2, 0, 0, 1), Insn(0x8D, 2), R0, EXIT], EINVAL, "unknown opcode 8d"),
    "gotox": ([Insn(0x0D, 1), R0, EXIT], EINVAL, "unknown opcode 0d"),
    "ld imm w": ([Insn(0x00, 1, 0, 0, 1), R0, EXIT], EINVAL, "unknown opcode 00"),
    "ld abs dw": ([Insn(0x38), R0, EXIT], EINVAL, "unknown opcode 38"),
    "alu64 end x": ([R0, Insn(0xDF, 0, 0, 0, 16), EXIT], EINVAL, "unknown opcode df"),
    "neg x": ([R0, Insn(0x8F), R0, EXIT], EINVAL, "unknown opcode 8f"),
    "ldx memsx dw": ([Insn(0x99, 0, 1), R0, EXIT], EINVAL, "unknown opcode 99"),
    "may_goto jmp32": ([Insn(0xE6, 0, 0, 1), R0, EXIT], EINVAL, "unknown opcode e6"),
    "jump out of range": ([Insn(0x05, 0, 0, 5), R0, EXIT], EINVAL,
                          "jump out of range from insn 0 to 6"),
    "gotol out of range": ([Insn(0x06, 0, 0, 0, 9), R0, EXIT], EINVAL,
                           "jump out of range from insn 0 to 10"),
    "backward out of range": ([R0, Insn(0x05, 0, 0, -3), EXIT], EINVAL,
                              "jump out of range from insn 1 to -1"),
    "range before opcode": ([Insn(0xFF), Insn(0x05, 0, 0, 9), R0, EXIT], EINVAL,
                            "jump out of range from insn 1 to 11"),
    "range before ldx": ([Insn(0x61, 0, 1, 0, 5), Insn(0x05, 0, 0, 9), R0, EXIT], EINVAL,
                         "jump out of range from insn 1 to 11"),
    "unreachable": ([R0, EXIT, R0, EXIT], EINVAL, "unreachable insn 2"),
    "into ld_imm64 is unreachable": ([Insn(0x05, 0, 0, 1), *ld_imm64(1, 1), R0, EXIT], EINVAL,
                                     "unreachable insn 1"),
    "middle of ld_imm64": ([Insn(0x15, 1, 0, 1, 0), *ld_imm64(1, 1), R0, EXIT], EINVAL,
                           "jump into the middle of ldimm64 insn 1"),
    "bad ld_imm64 second": ([Insn(0x18, 1, 0, 0, 1), Insn(0, 1), R0, EXIT], EINVAL,
                            "invalid bpf_ld_imm64 insn"),
    "ld_imm64 src 7": ([*ld_imm64(1, 1, 7), R0, EXIT], EINVAL,
                       "unrecognized bpf_ld_imm64 insn"),
    "map fd with high word": ([*ld_imm64(1, 999 | 1 << 32, 1), R0, EXIT], EINVAL,
                              "unrecognized bpf_ld_imm64 insn"),
    "call to invalid destination": ([Insn(0x85, 0, 1, 0, 10), R0, EXIT], EINVAL,
                                    "call to invalid destination"),
    "func to invalid destination": ([*ld_imm64(1, 100, 4), R0, EXIT], EINVAL,
                                    "call to invalid destination"),
    "subprog falls through": ([Insn(0x85, 0, 1, 0, 1), EXIT, R0], EINVAL,
                              "last insn is not an exit or jmp"),
    "jump into another subprog": ([Insn(0x85, 0, 1, 0, 2), Insn(0x05, 0, 0, 1), EXIT, R0, EXIT],
                                  EINVAL, "jump out of range from insn 1 to 3"),
}

# name -> (instruction, errno, message): rejected when do_check reaches it. The program is
# the prologue _INIT below, the instruction (slot 10), r0 = 0, exit.
INSN: dict[str, tuple[Insn, int, str]] = {
    "neg reserved": (Insn(0x87, 0, 0, 0, 1), EINVAL, "BPF_NEG uses reserved fields"),
    "neg32 src": (Insn(0x84, 0, 1, 0, 0), EINVAL, "BPF_NEG uses reserved fields"),
    "end width": (Insn(0xD4, 0, 0, 0, 17), EINVAL, "BPF_END uses reserved fields"),
    "end off": (Insn(0xDC, 0, 0, 1, 16), EINVAL, "BPF_END uses reserved fields"),
    "mov k src": (Insn(0xB7, 0, 1, 0, 0), EINVAL, "BPF_MOV uses reserved fields"),
    "mov k off": (Insn(0xB7, 0, 0, 8, 0), EINVAL, "BPF_MOV uses reserved fields"),
    "mov32 sx32": (Insn(0xBC, 0, 1, 32, 0), EINVAL, "BPF_MOV uses reserved fields"),
    "mov x imm": (Insn(0xBF, 0, 1, 0, 1), EINVAL, "BPF_MOV uses reserved fields"),
    "movsx imm": (Insn(0xBF, 0, 1, 8, 1), EINVAL, "BPF_MOV uses reserved fields"),
    "addr_space_cast imm": (Insn(0xBF, 0, 1, 1, 5), EINVAL,
                            "addr_space_cast insn can only convert between address space 1 and 0"),
    "addr_space_cast arena": (Insn(0xBF, 0, 1, 1, 1), EINVAL,
                              "addr_space_cast insn can only be used in a program that has an "
                              "associated arena"),
    "alu x imm": (Insn(0x0F, 0, 1, 0, 1), EINVAL, "BPF_ALU uses reserved fields"),
    "alu k off": (Insn(0x07, 0, 0, 1, 1), EINVAL, "BPF_ALU uses reserved fields"),
    "alu k src": (Insn(0x07, 0, 2, 0, 1), EINVAL, "BPF_ALU uses reserved fields"),
    "sdiv off 2": (Insn(0x3F, 0, 1, 2, 0), EINVAL, "BPF_ALU uses reserved fields"),
    "div by zero": (Insn(0x37, 0, 0, 0, 0), EINVAL, "div by zero"),
    "sdiv by zero": (Insn(0x37, 0, 0, 1, 0), EINVAL, "div by zero"),
    "mod32 by zero": (Insn(0x94, 0, 0, 0, 0), EINVAL, "div by zero"),
    "shift 64": (Insn(0x67, 0, 0, 0, 64), EINVAL, "invalid shift 64"),
    "shift32 32": (Insn(0x64, 0, 0, 0, 32), EINVAL, "invalid shift 32"),
    "shift -1": (Insn(0xC4, 0, 0, 0, -1), EINVAL, "invalid shift -1"),
    "st src": (Insn(0x62, 10, 1, -4, 1), EINVAL, "BPF_ST uses reserved fields"),
    "stx imm": (Insn(0x63, 10, 1, -4, 1), EINVAL, "BPF_STX uses reserved fields"),
    "atomic bad op": (Insn(0xC3, 10, 1, -8, 0x02), EINVAL,
                      "BPF_ATOMIC uses invalid atomic opcode 02"),
    "atomic load_acq fetch": (Insn(0xDB, 0, 10, -8, 0x101), EINVAL,
                              "BPF_ATOMIC uses invalid atomic opcode 101"),
    "atomic -1": (Insn(0xDB, 10, 1, -8, -1), EINVAL,
                  "BPF_ATOMIC uses invalid atomic opcode ffffffff"),
    "atomic u8 add": (Insn(0xD3, 10, 1, -8, 0x00), EINVAL, "invalid atomic operand size"),
    "atomic u16 fetch": (Insn(0xCB, 10, 1, -8, 0x01), EINVAL, "invalid atomic operand size"),
    "call dst": (Insn(0x85, 1, 0, 0, 7), EINVAL, "BPF_CALL uses reserved fields"),
    "call off": (Insn(0x85, 0, 0, 1, 7), EINVAL, "BPF_CALL uses reserved fields"),
    "call src 3": (Insn(0x85, 0, 3, 0, 7), EINVAL, "BPF_CALL uses reserved fields"),
    "ja imm": (Insn(0x05, 0, 0, 0, 1), EINVAL, "BPF_JA uses reserved fields"),
    "ja dst": (Insn(0x05, 1, 0, 0, 0), EINVAL, "BPF_JA uses reserved fields"),
    "gotol off": (Insn(0x06, 0, 0, 1, 0), EINVAL, "BPF_JA uses reserved fields"),
    "jmp k src": (Insn(0x15, 0, 1, 0, 1), EINVAL, "BPF_JMP/JMP32 uses reserved fields"),
    "jmp x imm": (Insn(0x1D, 0, 1, 0, 1), EINVAL, "BPF_JMP/JMP32 uses reserved fields"),
    "jmp32 k src": (Insn(0x16, 0, 1, 0, 1), EINVAL, "BPF_JMP/JMP32 uses reserved fields"),
    "may_goto imm": (Insn(0xE5, 0, 0, 1, 5), EINVAL, "invalid may_goto imm 5"),
    "may_goto src": (Insn(0xE5, 0, 1, 1, 0), EINVAL, "invalid may_goto imm 0"),
    "may_goto dst": (Insn(0xE5, 1, 0, 1, 0), EINVAL, "invalid may_goto imm 0"),
    "ld_abs off": (Insn(0x30, 0, 0, 1, 1), EINVAL, "BPF_LD_[ABS|IND] uses reserved fields"),
    "ld_abs src": (Insn(0x30, 0, 1, 0, 1), EINVAL, "BPF_LD_[ABS|IND] uses reserved fields"),
    "ld_ind dst": (Insn(0x50, 1, 2, 0, 1), EINVAL, "BPF_LD_[ABS|IND] uses reserved fields"),
    "r11 dst": (Insn(0xB7, 11, 0, 0, 0), EINVAL, "R11 is invalid"),
    "r12 src": (Insn(0x0F, 0, 12, 0, 0), EINVAL, "R12 is invalid"),
    "r13 jmp dst before reserved": (Insn(0x15, 13, 1, 0, 1), EINVAL, "R13 is invalid"),
    "r14 load base": (Insn(0x61, 0, 14, 0, 0), EINVAL, "R14 is invalid"),
    "write r10": (Insn(0xB7, 10, 0, 0, 0), EACCES, "frame pointer is read only"),
    "load into r10": (Insn(0x79, 10, 10, -8, 0), EACCES, "frame pointer is read only"),
    "neg r10": (Insn(0x87, 10), EACCES, "frame pointer is read only"),
    "div0 before fp": (Insn(0x37, 10, 0, 0, 0), EINVAL, "div by zero"),
    "fetch into r10": (Insn(0xDB, 10, 10, -8, 0x01), EACCES, "frame pointer is read only"),
    "xchg into r10": (Insn(0xDB, 10, 10, -8, 0xE1), EACCES, "frame pointer is read only"),
    "load_acquire into r10": (Insn(0xDB, 10, 10, -8, 0x100), EACCES,
                              "frame pointer is read only"),
}

# r6 = ctx (for LD_ABS/IND), the other registers below r9 = 0, and an initialised stack
# slot at fp-8, so that the state checks the kernel interleaves pass
_INIT = [Insn(0xBF, 6, 1), *(Insn(0xB7, r, 0, 0, 0) for r in (0, 1, 2, 3, 4, 5, 7, 8)),
         Insn(0x7A, 10, 0, -8, 0)]


def insn_program(ins: Insn) -> list[Insn]:
    return [*_INIT, ins, R0, EXIT]


def ld_imm64_program(ins_pair: list[Insn]) -> list[Insn]:
    return [*_INIT, *ins_pair, R0, EXIT]


# --------------------------------------------------------------------------- expectations


@pytest.mark.parametrize("name", list(STRUCTURE))
def test_structure(name: str) -> None:
    prog, err, msg = STRUCTURE[name]
    assert check_program_structure(prog) == (err, msg)


@pytest.mark.parametrize("name", list(INSN))
def test_insn(name: str) -> None:
    ins, err, msg = INSN[name]
    prog = insn_program(ins)
    assert check_program_structure(prog) is None
    assert check_insn(prog, 10) == msg
    assert check_insn_errno(prog, 10) == (err, msg)


def test_valid_rows_pass_both_checks() -> None:
    """A canonical instance of every Linux row passes the static checks."""
    for spec in OPCODES:
        if not spec.linux or spec.is_wide:
            continue
        off = spec.variant if spec.variant_field == "off" else 0
        imm = spec.variant if spec.variant_field == "imm" else 0
        k = spec.kind.value
        if k in ("alu", "sdiv", "smod") and not spec.src_reg:
            imm = 1
        src = 1 if spec.src_reg else 0
        if k == "atomic" and spec.op == 0x100:  # load_acquire: dst = *(src + off)
            ins = Insn(spec.code, 0, 10, -8, imm)
        elif k == "atomic":
            ins = Insn(spec.code, 10, 1, -8, imm)
        elif k in ("ldx", "ldxsx"):
            ins = Insn(spec.code, 0, 10, -8, 0)
        elif k in ("st", "stx"):
            ins = Insn(spec.code, 10, src, -8, imm)
        elif k == "ld_ind":
            ins = Insn(spec.code, 0, 1, 0, 0)
        elif k in ("end", "bswap"):
            ins = Insn(spec.code, 0, 0, 0, imm)
        else:
            ins = Insn(spec.code, 0, src, off, imm)
        assert check_insn([ins], 0) is None, spec.name
        assert check_insn_reserved([ins], 0) is None, spec.name


def test_linux_rows_match_the_kernel_insn_table() -> None:
    known = {c for c in range(256) if linux_accepts_code(c)}
    assert 0x8D not in known and 0x18 in known and 0xD3 in known and 0xE5 in known
    assert len(known) == 128


def test_unprivileged_limits() -> None:
    loop = [R0, Insn(0x05, 0, 0, -2)]
    assert check_program_structure(loop) is None
    assert check_program_structure(loop, bpf_capable=False) == (
        EINVAL, "back-edge from insn 1 to 0")
    call = [Insn(0x85, 0, 1, 0, 1), EXIT, R0, EXIT]
    assert check_program_structure(call, bpf_capable=False)[0] == EPERM  # type: ignore[index]
    assert check_program_structure([R0] * 4096 + [EXIT], bpf_capable=False) == (E2BIG, "")


def test_hooks_report_at_their_pass() -> None:
    prog = [*ld_imm64(1, 3, 1), Insn(0x85, 0, 2, 0, 7), R0, EXIT]
    assert check_program_structure(
        prog, kfunc_hook=lambda i, ins: (EINVAL, f"kernel btf_id {ins.imm} is not a function"),
        ld_imm64_hook=lambda i, a, b: (errno.EBADF, "fd 3 is not pointing to valid bpf_map"),
    ) == (EINVAL, "kernel btf_id 7 is not a function")
    assert check_program_structure(
        prog, ld_imm64_hook=lambda i, a, b: (errno.EBADF, "fd 3 is not pointing to valid bpf_map"),
    ) == (errno.EBADF, "fd 3 is not pointing to valid bpf_map")


def test_subprog_starts() -> None:
    prog = [Insn(0x85, 0, 1, 0, 2), *ld_imm64(2, 3, 4), EXIT, R0, EXIT, R0, EXIT]
    assert subprog_starts(prog) == [0, 3, 5]


def test_has_arena_allows_addr_space_cast() -> None:
    prog = [Insn(0xBF, 0, 1, 1, 1)]
    assert check_insn(prog, 0, has_arena=True) is None


# --------------------------------------------------------------------------- live kernel


@pytest.mark.kernel
@pytest.mark.parametrize("name", list(STRUCTURE))
def test_structure_matches_kernel(kernel: ModuleType, name: str) -> None:
    prog, err, msg = STRUCTURE[name]
    fd, kerr, log = isa_kernel.load(kernel, prog)
    assert fd < 0
    assert (kerr, isa_kernel.first_error(log)) == (err, msg)


@pytest.mark.kernel
@pytest.mark.parametrize("name", list(INSN))
def test_insn_matches_kernel(kernel: ModuleType, name: str) -> None:
    ins, err, msg = INSN[name]
    fd, kerr, log = isa_kernel.load(kernel, insn_program(ins))
    assert fd < 0
    assert (kerr, isa_kernel.first_error(log)) == (err, msg)
    assert re.search(r"^10: ", log, re.M), "reported when do_check reached insn 10"


@pytest.mark.kernel
def test_every_opcode_byte_matches_kernel(kernel: ModuleType) -> None:
    """For every opcode byte, the pre-pass verdict is the kernel's (``unknown opcode`` …)."""
    for code in range(256):
        if code == 0x18:
            continue
        prog = [R0, Insn(code), R0, EXIT]
        fd, kerr, log = isa_kernel.load(kernel, prog)
        if fd >= 0:
            kernel.close(fd)
        ours = check_program_structure(prog)
        if ours is None:
            assert "unknown opcode" not in log, hex(code)
        else:
            assert (kerr, isa_kernel.first_error(log)) == ours, hex(code)


def _fields() -> st.SearchStrategy[Insn]:
    rows = st.sampled_from([s.code for s in OPCODES])
    code = st.one_of(rows, rows, st.integers(0, 255))
    reg = st.sampled_from([0, 1, 2, 10, 11, 15])
    off = st.sampled_from([0, 0, 0, 1, -1, 2, 8, 16, 32, -3])
    imm = st.sampled_from([0, 0, 1, 2, 5, 16, 32, 64, -1, 0x100, 0x110, 0xF1, 0x51, 70])
    return st.builds(Insn, code, reg, st.sampled_from([0, 0, 1, 2, 4, 7, 10, 11]), off, imm)


def _no_kfunc(prog: list[Insn]) -> bool:
    # kfunc calls are resolved against kernel BTF (the verifier's hook), not here
    return not any(i.code == 0x85 and i.src == 2 for i in prog)


@pytest.mark.kernel
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prog=st.lists(_fields(), min_size=1, max_size=6), add_exit=st.booleans())
def test_structure_differential(kernel: ModuleType, prog: list[Insn], add_exit: bool) -> None:
    """Random programs: our pre-pass verdict is the kernel's, or the kernel got past them."""
    if add_exit:
        prog = [*prog, EXIT]
    if not _no_kfunc(prog):
        return
    fd, kerr, log = isa_kernel.load(kernel, prog)
    if fd >= 0:
        kernel.close(fd)
    ours = check_program_structure(prog)
    if ours is not None:
        assert (fd, kerr, isa_kernel.first_error(log)) == (-1, *ours)
    elif fd < 0:
        # rejected later: do_check printed the instruction it stopped at
        assert re.search(r"^\d+: ", log, re.M) or "func_info" in log, log


@pytest.mark.kernel
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ins=_fields())
def test_insn_differential(kernel: ModuleType, ins: Insn) -> None:
    """Random instructions after the prologue: our static verdict is the kernel's."""
    if ins.code & 7 in (5, 6):  # keep jumps in range: only fall-through targets
        ins = ins._replace(off=0, imm=0 if ins.code == 0x06 else ins.imm)
    prog = insn_program(ins)
    if check_program_structure(prog) is not None or not _no_kfunc(prog):
        return
    fd, kerr, log = isa_kernel.load(kernel, prog)
    if fd >= 0:
        kernel.close(fd)
    ours = check_insn_errno(prog, 10)
    kmsg = isa_kernel.first_error(log)
    if ours is not None:
        assert (fd, kerr, kmsg) == (-1, *ours)
    else:
        static = ("reserved fields", "div by zero", "invalid shift", "is invalid",
                  "frame pointer", "invalid atomic", "invalid may_goto", "addr_space_cast",
                  "BPF_LD_IMM")
        assert fd >= 0 or not any(s in kmsg for s in static), kmsg
