"""Disassembler: kernel ``print_bpf_insn`` text to the character, and conformance text.

The golden strings below were checked against Linux 6.18's verifier log; the tests marked
``kernel`` re-check them (and a broad program) against the live kernel and bpftool.
"""

from __future__ import annotations

import shutil
import subprocess
from types import ModuleType

import isa_kernel
import pytest

from pybpf.isa.asm import assemble
from pybpf.isa.disasm import (
    bpftool_imm64,
    default_helper_names,
    disasm_conformance,
    disasm_kernel,
    format_insn_conformance,
    format_insn_kernel,
    lossless_imm64,
)
from pybpf.isa.insn import Insn, encode, ld_imm64

# (slots, kernel text) — one instruction each.
KERNEL_GOLDEN: list[tuple[list[Insn], str]] = [
    ([Insn(0xB7, 0, 0, 0, 42)], "(b7) r0 = 42"),
    ([Insn(0xB7, 1, 0, 0, -1)], "(b7) r1 = -1"),
    ([Insn(0xBF, 1, 2)], "(bf) r1 = r2"),
    ([Insn(0xBC, 1, 2)], "(bc) w1 = w2"),
    ([Insn(0x07, 1, 0, 0, 5)], "(07) r1 += 5"),
    ([Insn(0x04, 1, 0, 0, 5)], "(04) w1 += 5"),
    ([Insn(0x87, 1)], "(87) r1 = -r1"),
    ([Insn(0x84, 3)], "(84) w3 = -w3"),
    ([Insn(0x3F, 1, 2, 1)], "(3f) r1 s/= r2"),
    ([Insn(0x97, 1, 0, 1, 7)], "(97) r1 s%= 7"),
    ([Insn(0x3F, 1, 2, 0)], "(3f) r1 /= r2"),
    ([Insn(0xC7, 1, 0, 0, 3)], "(c7) r1 s>>= 3"),
    ([Insn(0xBF, 1, 2, 8)], "(bf) r1 = (s8)r2"),
    ([Insn(0xBF, 1, 2, 32)], "(bf) r1 = (s32)r2"),
    ([Insn(0xBC, 1, 2, 16)], "(bc) w1 = (s16)w2"),
    ([Insn(0xDC, 1, 0, 0, 16)], "(dc) r1 = be16 r1"),
    ([Insn(0xD4, 1, 0, 0, 64)], "(d4) r1 = le64 r1"),
    ([Insn(0xD7, 1, 0, 0, 16)], "(d7) r1 = bswap16 r1"),
    ([Insn(0xBF, 1, 2, 1, 1)], "(bf) r1 = addr_space_cast(r2, 0, 1)"),
    ([Insn(0xBF, 1, 2, 1, 1 << 16)], "(bf) r1 = addr_space_cast(r2, 1, 0)"),
    ([Insn(0xBF, 1, 2, -1)], "(bf) r1 = &(void __percpu *)(r2)"),
    ([Insn(0x61, 0, 1, 4)], "(61) r0 = *(u32 *)(r1 +4)"),
    ([Insn(0x79, 0, 10, -8)], "(79) r0 = *(u64 *)(r10 -8)"),
    ([Insn(0x91, 0, 1, 0)], "(91) r0 = *(s8 *)(r1 +0)"),
    ([Insn(0x81, 0, 1, 2)], "(81) r0 = *(s32 *)(r1 +2)"),
    ([Insn(0x63, 10, 1, -4)], "(63) *(u32 *)(r10 -4) = r1"),
    ([Insn(0x62, 10, 0, -4, 5)], "(62) *(u32 *)(r10 -4) = 5"),
    ([Insn(0x72, 10, 0, -1, -1)], "(72) *(u8 *)(r10 -1) = -1"),
    ([Insn(0xDB, 10, 1, -8, 0x00)], "(db) lock *(u64 *)(r10 -8) += r1"),
    ([Insn(0xC3, 10, 1, -8, 0x50)], "(c3) lock *(u32 *)(r10 -8) &= r1"),
    ([Insn(0xDB, 10, 1, -8, 0x40)], "(db) lock *(u64 *)(r10 -8) |= r1"),
    ([Insn(0xDB, 10, 1, -8, 0xA0)], "(db) lock *(u64 *)(r10 -8) ^= r1"),
    ([Insn(0xDB, 10, 1, -8, 0x01)], "(db) r1 = atomic64_fetch_add((u64 *)(r10 -8), r1)"),
    ([Insn(0xC3, 10, 2, -8, 0xA1)], "(c3) r2 = atomic_fetch_xor((u32 *)(r10 -8), r2)"),
    ([Insn(0xDB, 10, 1, -8, 0xE1)], "(db) r1 = atomic64_xchg((u64 *)(r10 -8), r1)"),
    ([Insn(0xDB, 10, 1, -8, 0xF1)], "(db) r0 = atomic64_cmpxchg((u64 *)(r10 -8), r0, r1)"),
    ([Insn(0xC3, 10, 1, -8, 0xF1)], "(c3) r0 = atomic_cmpxchg((u32 *)(r10 -8), r0, r1)"),
    ([Insn(0xDB, 3, 1, 8, 0x100)], "(db) r3 = load_acquire((u64 *)(r1 +8))"),
    ([Insn(0xD3, 3, 1, 0, 0x100)], "(d3) r3 = load_acquire((u8 *)(r1 +0))"),
    ([Insn(0xCB, 1, 2, 2, 0x110)], "(cb) store_release((u16 *)(r1 +2), r2)"),
    ([Insn(0xC3, 10, 2, -8, 0x02)], "BUG_c3"),
    ([Insn(0x30, 0, 0, 0, 12)], "(30) r0 = *(u8 *)skb[12]"),
    ([Insn(0x48, 0, 2, 0, 0)], "(48) r0 = *(u16 *)skb[r2 + 0]"),
    ([Insn(0x40, 0, 2, 0, -4)], "(40) r0 = *(u32 *)skb[r2 + -4]"),
    (list(ld_imm64(1, 0x1234)), "(18) r1 = 0x1234"),
    (list(ld_imm64(1, 0x1122334455667788)), "(18) r1 = 0x1122334455667788"),
    (list(ld_imm64(2, 3, 1)), "(18) r2 = 0x3"),
    ([Insn(0x85, 0, 0, 0, 1)], "(85) call bpf_map_lookup_elem#1"),
    ([Insn(0x85, 0, 0, 0, 0)], "(85) call bpf_unspec#0"),
    ([Insn(0x85, 0, 0, 0, 100000)], "(85) call unknown#100000"),
    ([Insn(0x85, 0, 1, 0, 3)], "(85) call pc+3"),
    ([Insn(0x85, 0, 1, 0, -7)], "(85) call pc-7"),
    ([Insn(0x85, 0, 2, 0, 12345)], "(85) call kernel-function#12345"),
    ([Insn(0x05, 0, 0, 2)], "(05) goto pc+2"),
    ([Insn(0x05, 0, 0, -1)], "(05) goto pc-1"),
    ([Insn(0x06, 0, 0, 0, 2)], "(06) gotol pc+2"),
    ([Insn(0xE5, 0, 0, 2)], "(e5) may_goto pc+2"),
    ([Insn(0xE5, 0, 1, 1)], "(e5) if r0 (null) 0x0 goto pc+1"),
    ([Insn(0x25, 1, 0, 2, 5)], "(25) if r1 > 0x5 goto pc+2"),
    ([Insn(0x25, 1, 0, 2, -1)], "(25) if r1 > 0xffffffff goto pc+2"),
    ([Insn(0xAE, 1, 2, -3)], "(ae) if w1 < w2 goto pc-3"),
    ([Insn(0xA6, 1, 0, -3, 7)], "(a6) if w1 < 0x7 goto pc-3"),
    ([Insn(0x4D, 1, 2, 0)], "(4d) if r1 & r2 goto pc+0"),
    ([Insn(0xCD, 1, 2, 0)], "(cd) if r1 s< r2 goto pc+0"),
    ([Insn(0x95)], "(95) exit"),
    ([Insn(0x21, 0, 1)], "BUG_ldx_21"),
    ([Insn(0x00, 0, 0)], "BUG_ld_00"),
    ([Insn(0x22, 0, 0)], "BUG_st_22"),
    ([Insn(0x23, 0, 0)], "BUG_23"),
]


@pytest.mark.parametrize(("insns", "text"), KERNEL_GOLDEN, ids=[t for _, t in KERNEL_GOLDEN])
def test_kernel_golden(insns: list[Insn], text: str) -> None:
    if "bpf_" in text and not default_helper_names():
        pytest.skip("pybpf.uapi (helper names) not importable")
    assert format_insn_kernel(insns, 0) == text


def test_disasm_kernel_one_line_per_instruction() -> None:
    prog = [*ld_imm64(1, 5), Insn(0xB7, 0, 0, 0, 0), Insn(0x95)]
    assert disasm_kernel(prog) == ["(18) r1 = 0x5", "(b7) r0 = 0", "(95) exit"]
    assert disasm_kernel(prog, numbered=True) == ["0: (18) r1 = 0x5", "2: (b7) r0 = 0",
                                                  "3: (95) exit"]


def test_a_truncated_ld_imm64_still_prints() -> None:
    assert disasm_kernel([Insn(0x18, 1, 0, 0, 7)]) == ["(18) r1 = 0x7"]


def test_helper_name_callback_and_call_target() -> None:
    call = [Insn(0x85, 0, 0, 0, 1)]
    assert format_insn_kernel(call, 0, helper_name=lambda i: "mine") == "(85) call mine#1"
    unknown = [Insn(0x85, 0, 0, 0, 4242)]
    assert format_insn_kernel(unknown, 0, helper_name=lambda i: None,
                              call_target=lambda ins: "resolved") == "(85) call resolved#4242"
    kfunc = [Insn(0x85, 0, 2, 0, 77)]
    assert format_insn_kernel(kfunc, 0, call_target=lambda ins: "bpf_obj_new_impl") == \
        "(85) call bpf_obj_new_impl#77"
    local = [Insn(0x85, 0, 1, 0, 4)]
    assert format_insn_kernel(local, 0, call_target=lambda ins: "+4#bpf_prog_x_F") == \
        "(85) call pc+4#bpf_prog_x_F"


def test_pseudo_imm64_bpftool_forms() -> None:
    cases = [
        (ld_imm64(1, 3, 1), "(18) r1 = map[id:3]"),
        (ld_imm64(1, 3 | 8 << 32, 2), "(18) r1 = map[id:3][0]+8"),
        (ld_imm64(1, 2 | 0 << 32, 6), "(18) r1 = map[idx:2]+0"),
        (ld_imm64(2, 4, 4), "(18) r2 = subprog[+4]"),
        (ld_imm64(2, (1 << 32) - 3, 4), "(18) r2 = subprog[-3]"),
        (ld_imm64(1, 0x99, 3), "(18) r1 = 0x99"),
        (ld_imm64(1, 0x99, 5), "(18) r1 = 0x99"),
    ]
    for slots, text in cases:
        assert format_insn_kernel(list(slots), 0, pseudo_imm64=bpftool_imm64) == text


def test_pseudo_imm64_lossless_forms() -> None:
    assert format_insn_kernel(list(ld_imm64(1, 5, 5)), 0, pseudo_imm64=lossless_imm64) == \
        "(18) r1 = pseudo[5]:0x5"
    assert format_insn_kernel(list(ld_imm64(1, 5 | 1 << 32, 1)), 0,
                              pseudo_imm64=lossless_imm64) == "(18) r1 = pseudo[1]:0x100000005"
    assert format_insn_kernel(list(ld_imm64(1, 5)), 0, pseudo_imm64=lossless_imm64) == \
        "(18) r1 = 0x5"


def test_pointer_immediates_hidden_without_ptr_leaks() -> None:
    slots = list(ld_imm64(1, 0xFFFF888812345678, 1))
    assert format_insn_kernel(slots, 0) == "(18) r1 = 0xffff888812345678"
    assert format_insn_kernel(slots, 0, allow_ptr_leaks=False) == "(18) r1 = 0x0"
    plain = list(ld_imm64(1, 0x1234))
    assert format_insn_kernel(plain, 0, allow_ptr_leaks=False) == "(18) r1 = 0x1234"


CONFORMANCE_GOLDEN: list[tuple[list[Insn], str]] = [
    ([Insn(0xB7, 0, 0, 0, 1)], "mov %r0, 1"),
    ([Insn(0xB7, 0, 0, 0, 0x2A)], "mov %r0, 0x2a"),
    ([Insn(0xB7, 0, 0, 0, -13)], "mov %r0, -13"),
    ([Insn(0xB4, 0, 0, 0, -0x80000000)], "mov32 %r0, 0x80000000"),
    ([Insn(0x0C, 1, 2)], "add32 %r1, %r2"),
    ([Insn(0x79, 0, 10, -8)], "ldxdw %r0, [%r10-8]"),
    ([Insn(0x61, 0, 1, 0)], "ldxw %r0, [%r1]"),
    ([Insn(0x91, 0, 1, 2)], "ldxsb %r0, [%r1+2]"),
    ([Insn(0x63, 1, 2, 4)], "stxw [%r1+4], %r2"),
    ([Insn(0x72, 1, 0, 2, 5)], "stb [%r1+2], 5"),
    (list(ld_imm64(0, 0x1122334455667788)), "lddw %r0, 0x1122334455667788"),
    ([Insn(0xC3, 10, 1, -8, 0x01)], "lock fetch add32 [%r10-8], %r1"),
    ([Insn(0xDB, 10, 1, -8, 0xF1)], "lock cmpxchg [%r10-8], %r1"),
    ([Insn(0xDB, 10, 1, -8, 0xE1)], "lock xchg [%r10-8], %r1"),
    ([Insn(0xDB, 10, 1, -8, 0x40)], "lock or [%r10-8], %r1"),
    ([Insn(0xDB, 3, 1, 0, 0x100)], "lock load_acquire64 %r3, [%r1]"),
    ([Insn(0xCB, 1, 2, 2, 0x110)], "lock store_release16 [%r1+2], %r2"),
    ([Insn(0x55, 0, 0, 3, 15)], "jne %r0, 0xf, +3"),
    ([Insn(0x5E, 0, 1, -2)], "jne32 %r0, %r1, -2"),
    ([Insn(0x05, 0, 0, 2)], "ja +2"),
    ([Insn(0x06, 0, 0, 0, 2)], "ja32 +2"),
    ([Insn(0xE5, 0, 0, 1)], "may_goto +1"),
    ([Insn(0x85, 0, 0, 0, 5)], "call 5"),
    ([Insn(0x85, 0, 1, 0, 3)], "call local +3"),
    ([Insn(0x85, 0, 2, 0, 9)], "call runtime 9"),
    ([Insn(0x8D, 2)], "call %r2"),
    ([Insn(0x95)], "exit"),
    ([Insn(0xD4, 0, 0, 0, 16)], "le16 %r0"),
    ([Insn(0xDC, 0, 0, 0, 32)], "be32 %r0"),
    ([Insn(0xD7, 0, 0, 0, 64)], "bswap64 %r0"),
    ([Insn(0xBC, 0, 1, 8)], "movsx832 %r0, %r1"),
    ([Insn(0xBF, 0, 1, 32)], "movsx3264 %r0, %r1"),
    ([Insn(0x84, 0)], "neg32 %r0"),
    ([Insn(0x3F, 1, 2, 1)], "sdiv %r1, %r2"),
    ([Insn(0x94, 1, 0, 1, 3)], "smod32 %r1, 3"),
    ([Insn(0x20, 0, 0, 0, 12)], "ldabsw 0xc"),
    ([Insn(0x48, 0, 2, 0, 4)], "ldindh %r2, 4"),
    # Not expressible in the syntax: raw slots.
    ([Insn(0xB7, 0, 3, 0, 1)], ".insn 0xb7, 0, 3, 0, 1"),
    ([Insn(0xFF, 1, 2, 3, 4)], ".insn 0xff, 1, 2, 3, 4"),
    (list(ld_imm64(1, 3, 1)), ".insn 0x18, 1, 1, 0, 3"),
]


@pytest.mark.parametrize(("insns", "text"), CONFORMANCE_GOLDEN,
                         ids=[t for _, t in CONFORMANCE_GOLDEN])
def test_conformance_golden(insns: list[Insn], text: str) -> None:
    assert format_insn_conformance(insns, 0) == text


def test_disasm_conformance_lines() -> None:
    prog = [*ld_imm64(0, 1), *ld_imm64(1, 2, 1), Insn(0x95)]
    assert disasm_conformance(prog) == ["lddw %r0, 0x1", ".insn 0x18, 1, 1, 0, 2",
                                        ".insn 0x00, 0, 0, 0, 0", "exit"]


# --------------------------------------------------------------------------- live kernel

BROAD_PROGRAM = """
r0 = 42
r1 = r10
w2 = w1
r1 += 5
w1 += -5
r1 = -r1
w1 = -w1
r2 = 7
r1 s/= r2
r1 s%= r2
w1 s/= w2
r1 s/= -3
r1 = (s8)r2
r1 = (s16)r2
r1 = (s32)r2
w1 = (s8)w2
w1 = (s16)w2
r1 = be16 r1
r1 = le32 r1
r1 = bswap64 r1
r1 <<= 3
w1 s>>= 2
r1 = r10
r1 += -16
*(u64 *)(r10 -8) = r2
*(u32 *)(r10 -12) = 5
*(u16 *)(r10 -14) = -1
*(u8 *)(r10 -15) = 255
r3 = *(u64 *)(r10 -8)
r3 = *(s32 *)(r10 -8)
r3 = *(s16 *)(r10 -8)
r3 = *(s8 *)(r10 -8)
lock *(u64 *)(r10 -8) += r2
lock *(u64 *)(r10 -8) &= r2
lock *(u32 *)(r10 -8) |= r2
lock *(u32 *)(r10 -8) ^= r2
r2 = atomic64_fetch_add((u64 *)(r10 -8), r2)
r2 = atomic_fetch_xor((u32 *)(r10 -8), r2)
r2 = atomic64_xchg((u64 *)(r10 -8), r2)
r0 = atomic64_cmpxchg((u64 *)(r10 -8), r0, r2)
r4 = load_acquire((u64 *)(r10 -8))
r4 = load_acquire((u8 *)(r10 -8))
store_release((u32 *)(r10 -8), r2)
r1 = 0x1122334455667788 ll
r1 = 0x7fffffff ll
r1 = -1
w1 = 0xffffffff
r6 = r1
r0 = *(u8 *)skb[12]
r0 = *(u16 *)skb[r2 + -4]
r0 = *(u32 *)skb[r2 + 8]
if r1 > 0x5 goto pc+0
if r1 s< -5 goto pc+0
if w1 & 0xff goto pc+0
if w1 != w2 goto pc+0
if r1 s>= r2 goto pc+0
may_goto pc+0
goto pc+0
gotol pc+0
call 7
call bpf_ktime_get_ns#5
call pc+2
r0 = 0
exit
r0 = 1
exit
"""


@pytest.mark.kernel
def test_kernel_listing_matches_live_verifier(kernel: ModuleType) -> None:
    """Every line equals the live kernel's own ``print_bpf_insn`` output."""
    prog = assemble(BROAD_PROGRAM)
    _fd, _err, log = isa_kernel.load(kernel, prog, log_level=2)
    listing = isa_kernel.live_listing(log)
    if not listing:
        pytest.skip("this kernel prints no 'Live regs before insn' listing (Linux < 6.15)")
    assert listing == disasm_kernel(prog)


@pytest.mark.kernel
def test_kernel_golden_lines_match_live_verifier(kernel: ModuleType) -> None:
    """The per-instruction goldens above, as the live kernel prints them."""
    lines = []
    for insns, text in KERNEL_GOLDEN:
        if text.startswith("BUG") or (insns[0].code == 0x85 and insns[0].src == 2):
            continue
        if "(null)" in text:
            continue
        # A program that reaches the listing: the instruction, then r0 = 0; exit.
        prog = [*insns, Insn(0xB7), Insn(0x95)]
        fd, _err, log = isa_kernel.load(kernel, prog, log_level=2)
        if fd >= 0:
            kernel.close(fd)
        listing = isa_kernel.live_listing(log)
        if listing:
            lines.append((listing[0], text))
        else:
            # rejected before the listing: the instruction echo precedes the error
            echo = [ln.split(": ", 1)[1] for ln in log.splitlines() if ln.startswith("0: (")]
            if echo:
                lines.append((echo[0].split("  ")[0].rstrip(), text))
    assert len(lines) > 40
    assert [k for k, _ in lines] == [t for _, t in lines]


@pytest.mark.kernel
def test_bpftool_xlated_dump_matches(kernel: ModuleType) -> None:
    """``bpftool prog dump xlated`` of a loaded program equals our listing of its xlated insns."""
    bpftool = shutil.which("bpftool")
    if bpftool is None:
        pytest.skip("bpftool is not installed")
    from pybpf.uapi import BpfMapType

    with kernel.KernelFds() as fds:
        mfd = fds.map_create(BpfMapType.BPF_MAP_TYPE_ARRAY, 4, 8, 1)
        text = f"""
            r1 = pseudo[1]:{mfd:#x}
            r2 = pseudo[2]:{4 << 32 | mfd:#x}
            r6 = *(u32 *)(r2 +0)
            r0 = 42
            w3 = -5
            r3 += r6
            r0 s>>= 1
            if r6 > 0x5 goto pc+1
            r0 = *(u32 *)(r2 +0)
            exit
        """
        res = fds.prog_load(isa_kernel.SOCKET_FILTER, encode(assemble(text)), log_level=1,
                            log_size=1 << 16)
        assert res.ok, res.log
        prog_id = kernel.prog_info(res.fd).id
        out = subprocess.run([bpftool, "prog", "dump", "xlated", "id", str(prog_id)],
                             capture_output=True, text=True, check=True).stdout
        theirs = [ln.split(": ", 1)[1] for ln in out.splitlines() if ": (" in ln]
        ours = disasm_kernel(isa_kernel.xlated(kernel, res.fd), pseudo_imm64=bpftool_imm64)
        assert theirs == ours
        assert any("map[id:" in ln for ln in theirs)
