"""Assembler: both syntaxes, labels, the conformance suite, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.errors import AsmError
from pybpf.isa.asm import assemble, assemble_bytes
from pybpf.isa.disasm import default_helper_names, disasm_conformance, disasm_kernel
from pybpf.isa.insn import Insn, encode, ld_imm64
from pybpf.testing import shared_dir
from pybpf.testing.conformance import parse_case

_SHARED = shared_dir()
_FILES = sorted((_SHARED / "conformance").glob("*.data")) if _SHARED else []


def one(text: str, **kw: object) -> Insn:
    got = assemble(text, **kw)  # type: ignore[arg-type]
    assert len(got) == 1, got
    return got[0]


# --------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("path", _FILES, ids=[p.stem for p in _FILES])
def test_every_conformance_file_assembles(path: Path) -> None:
    case = parse_case(path)
    insns = assemble(case.asm, syntax="conformance")
    assert insns
    assert assemble(case.asm) == insns  # auto-detection agrees
    if case.raw:
        assert [int.from_bytes(i.encode(), "little") for i in insns] == case.raw


def test_conformance_suite_present() -> None:
    if _SHARED is None:
        pytest.skip("../shared/conformance is not present beside the checkout")
    assert len(_FILES) == 225
    assert any(p.stem == "lddw" for p in _FILES)


def test_lddw_raw_encoding() -> None:
    raw = assemble_bytes("lddw %r0, 0x1122334455667788\nexit")
    words = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
    assert words == [0x5566778800000018, 0x1122334400000000, 0x0000000000000095]


CONFORMANCE_CASES = [
    ("mov %r0, 1", Insn(0xB7, 0, 0, 0, 1)),
    ("mov32 %r1, 0xfffffffe", Insn(0xB4, 1, 0, 0, -2)),
    ("mov %r1, -1", Insn(0xB7, 1, 0, 0, -1)),
    ("add32 %r1, %r2", Insn(0x0C, 1, 2)),
    ("ldxdw %r0, [%r10-8]", Insn(0x79, 0, 10, -8)),
    ("ldxb %r0, [%r1]", Insn(0x71, 0, 1, 0)),
    ("ldxh %r0, [%r1+0x10]", Insn(0x69, 0, 1, 16)),
    ("ldxsw %r0, [%r1+2]", Insn(0x81, 0, 1, 2)),
    ("stxw [%r1+4], %r2", Insn(0x63, 1, 2, 4)),
    ("stb [%r1+2], 5", Insn(0x72, 1, 0, 2, 5)),
    ("stdw [%r1], 0x7fffffff", Insn(0x7A, 1, 0, 0, 0x7FFFFFFF)),
    ("lock fetch add32 [%r10-8], %r1", Insn(0xC3, 10, 1, -8, 0x01)),
    ("lock add [%r10-8], %r1", Insn(0xDB, 10, 1, -8, 0x00)),
    ("lock cmpxchg [%r10-8], %r1", Insn(0xDB, 10, 1, -8, 0xF1)),
    ("lock xchg32 [%r10-8], %r1", Insn(0xC3, 10, 1, -8, 0xE1)),
    ("lock load_acquire32 %r0, [%r1+4]", Insn(0xC3, 0, 1, 4, 0x100)),
    ("lock store_release8 [%r1], %r2", Insn(0xD3, 1, 2, 0, 0x110)),
    ("jne %r0, 15, +3", Insn(0x55, 0, 0, 3, 15)),
    ("jsgt32 %r0, %r1, -1", Insn(0x6E, 0, 1, -1)),
    ("ja +2", Insn(0x05, 0, 0, 2)),
    ("ja32 +2", Insn(0x06, 0, 0, 0, 2)),
    ("ja32 -70000", Insn(0x06, 0, 0, 0, -70000)),
    ("call 5", Insn(0x85, 0, 0, 0, 5)),
    ("call helper 5", Insn(0x85, 0, 0, 0, 5)),
    ("call local +3", Insn(0x85, 0, 1, 0, 3)),
    ("call runtime 7", Insn(0x85, 0, 2, 0, 7)),
    ("call %r2", Insn(0x8D, 2, 0, 0, 0)),
    ("call helper %r3", Insn(0x8D, 3, 0, 0, 0)),
    ("exit", Insn(0x95)),
    ("le16 %r0", Insn(0xD4, 0, 0, 0, 16)),
    ("be32 %r0", Insn(0xDC, 0, 0, 0, 32)),
    ("bswap64 %r0", Insn(0xD7, 0, 0, 0, 64)),
    ("swap16 %r0", Insn(0xD7, 0, 0, 0, 16)),
    ("movsx832 %r0, %r1", Insn(0xBC, 0, 1, 8)),
    ("movsx1664 %r0, %r1", Insn(0xBF, 0, 1, 16)),
    ("neg32 %r0", Insn(0x84, 0)),
    ("neg %r3", Insn(0x87, 3)),
    ("sdiv %r1, %r2", Insn(0x3F, 1, 2, 1)),
    ("smod32 %r1, -3", Insn(0x94, 1, 0, 1, -3)),
    ("div %r1, 3", Insn(0x37, 1, 0, 0, 3)),
    ("ldabsh 12", Insn(0x28, 0, 0, 0, 12)),
    ("ldindb %r2, 0", Insn(0x50, 0, 2, 0, 0)),
    ("may_goto +1", Insn(0xE5, 0, 0, 1)),
    (".insn 0xff, 1, 2, -3, 0xffffffff", Insn(0xFF, 1, 2, -3, -1)),
    ("mov %r11, 1", Insn(0xB7, 11, 0, 0, 1)),
]


@pytest.mark.parametrize(("text", "want"), CONFORMANCE_CASES, ids=[t for t, _ in CONFORMANCE_CASES])
def test_conformance_syntax(text: str, want: Insn) -> None:
    assert one(text) == want
    assert one(text, syntax="conformance") == want


def test_lddw_values() -> None:
    assert assemble("lddw %r1, 0x1122334455667788") == list(ld_imm64(1, 0x1122334455667788))
    assert assemble("lddw %r1, -1") == list(ld_imm64(1, -1))
    assert assemble("lddw %r1, 18446744073709551615") == list(ld_imm64(1, -1))


def test_labels_exit_label_and_call_local() -> None:
    text = """
        mov %r0, 0
        call local func1   # to the function below
        jne %r0, 15, failed
        ja32 done
    failed:
        mov %r0, -1
    done: exit
    func1:
        mov %r0, 15
        exit
    """
    got = assemble(text)
    assert got[1] == Insn(0x85, 0, 1, 0, 4)  # func1 is slot 6: 6 - 1 - 1
    assert got[2] == Insn(0x55, 0, 0, 1, 15)  # failed is slot 4
    assert got[3] == Insn(0x06, 0, 0, 0, 1)  # done is slot 5
    assert assemble("jeq %r1, 0xb, exit # Not taken\nmov %r0, 1\nexit\nexit") == [
        Insn(0x15, 1, 0, 1, 11), Insn(0xB7, 0, 0, 0, 1), Insn(0x95), Insn(0x95)]


def test_labels_count_ld_imm64_as_two_slots() -> None:
    got = assemble("ja end\nlddw %r0, 1\nend:\nexit")
    assert got[0] == Insn(0x05, 0, 0, 2)


# --------------------------------------------------------------------------- kernel syntax

KERNEL_CASES = [
    ("r0 = 42", Insn(0xB7, 0, 0, 0, 42)),
    ("(b7) r0 = 42", Insn(0xB7, 0, 0, 0, 42)),
    ("3: (b7) r0 = 42", Insn(0xB7, 0, 0, 0, 42)),
    ("  12: (b7) r0 = 42                 ; R0_w=42", Insn(0xB7, 0, 0, 0, 42)),
    ("r0 = -1", Insn(0xB7, 0, 0, 0, -1)),
    ("r0 = 0x7fffffff", Insn(0xB7, 0, 0, 0, 0x7FFFFFFF)),
    ("w1 = 0xffffffff", Insn(0xB4, 1, 0, 0, -1)),
    ("w1 += w2", Insn(0x0C, 1, 2)),
    ("r1 = r2", Insn(0xBF, 1, 2)),
    ("w1 = w2", Insn(0xBC, 1, 2)),
    ("r1 = (s8)r2", Insn(0xBF, 1, 2, 8)),
    ("w1 = (s16)w2", Insn(0xBC, 1, 2, 16)),
    ("r1 s/= r2", Insn(0x3F, 1, 2, 1)),
    ("r1 s%= 3", Insn(0x97, 1, 0, 1, 3)),
    ("r1 /= 3", Insn(0x37, 1, 0, 0, 3)),
    ("r1 s>>= 3", Insn(0xC7, 1, 0, 0, 3)),
    ("r1 <<= r3", Insn(0x6F, 1, 3)),
    ("r1 = -r1", Insn(0x87, 1)),
    ("w1 = -w1", Insn(0x84, 1)),
    ("r1 = be16 r1", Insn(0xDC, 1, 0, 0, 16)),
    ("r1 = le64 r1", Insn(0xD4, 1, 0, 0, 64)),
    ("r1 = bswap32 r1", Insn(0xD7, 1, 0, 0, 32)),
    ("r0 = *(u32 *)(r1 +4)", Insn(0x61, 0, 1, 4)),
    ("r0 = *(u32 *)(r1 + 0x4)", Insn(0x61, 0, 1, 4)),
    ("w0 = *(u32 *)(r1 - 4)", Insn(0x61, 0, 1, -4)),
    ("r0 = *(s16 *)(r1 +0)", Insn(0x89, 0, 1, 0)),
    ("*(u64 *)(r10 -8) = r1", Insn(0x7B, 10, 1, -8)),
    ("*(u32 *)(r10 - 0x4) = w1", Insn(0x63, 10, 1, -4)),
    ("*(u32 *)(r10 -4) = 5", Insn(0x62, 10, 0, -4, 5)),
    ("lock *(u64 *)(r10 -8) += r1", Insn(0xDB, 10, 1, -8, 0)),
    ("lock *(u32 *)(r10 -8) ^= r1", Insn(0xC3, 10, 1, -8, 0xA0)),
    ("r1 = atomic64_fetch_add((u64 *)(r10 -8), r1)", Insn(0xDB, 10, 1, -8, 0x01)),
    ("r1 = atomic_fetch_and((u32 *)(r10 -8), r1)", Insn(0xC3, 10, 1, -8, 0x51)),
    ("r1 = atomic64_xchg((u64 *)(r10 -8), r1)", Insn(0xDB, 10, 1, -8, 0xE1)),
    ("r0 = atomic64_cmpxchg((u64 *)(r10 -8), r0, r3)", Insn(0xDB, 10, 3, -8, 0xF1)),
    ("r2 = load_acquire((u16 *)(r1 +2))", Insn(0xCB, 2, 1, 2, 0x100)),
    ("r9 = xchg_64(r1 + 40, r9)", Insn(0xDB, 1, 9, 40, 0xE1)),
    ("w1 = xchg32_32(r10 - 8, w1)", Insn(0xC3, 10, 1, -8, 0xE1)),
    ("r0 = cmpxchg_64(r1 + 48, r0, r3)", Insn(0xDB, 1, 3, 48, 0xF1)),
    ("w0 = cmpxchg32_32(r1 + 0, w0, w3)", Insn(0xC3, 1, 3, 0, 0xF1)),
    ("w1 = atomic_fetch_add((u32 *)(r10 - 0x8), w1)", Insn(0xC3, 10, 1, -8, 0x01)),
    ("store_release((u64 *)(r1 +0), r2)", Insn(0xDB, 1, 2, 0, 0x110)),
    ("r0 = *(u8 *)skb[12]", Insn(0x30, 0, 0, 0, 12)),
    ("r0 = *(u16 *)skb[r2 + 0]", Insn(0x48, 0, 2, 0, 0)),
    ("r0 = *(u32 *)skb[r2]", Insn(0x40, 0, 2, 0, 0)),
    ("if r1 > 0x5 goto pc+2", Insn(0x25, 1, 0, 2, 5)),
    ("if r1 > 5 goto +2", Insn(0x25, 1, 0, 2, 5)),
    ("if r1 > 0xffffffff goto pc-1", Insn(0x25, 1, 0, -1, -1)),
    ("if w1 < w2 goto pc-3", Insn(0xAE, 1, 2, -3)),
    ("if r1 s>= r2 goto pc+0", Insn(0x7D, 1, 2, 0)),
    ("if r1 & 0x8 goto pc+1", Insn(0x45, 1, 0, 1, 8)),
    ("goto pc+2", Insn(0x05, 0, 0, 2)),
    ("goto +2 <LBB0_3>", Insn(0x05, 0, 0, 2)),
    ("gotol pc+70000", Insn(0x06, 0, 0, 0, 70000)),
    ("may_goto pc+2", Insn(0xE5, 0, 0, 2)),
    ("call 1", Insn(0x85, 0, 0, 0, 1)),
    ("call bpf_map_lookup_elem#1", Insn(0x85, 0, 0, 0, 1)),
    ("call unknown#99999", Insn(0x85, 0, 0, 0, 99999)),
    ("call kernel-function#77", Insn(0x85, 0, 2, 0, 77)),
    ("call pc+3", Insn(0x85, 0, 1, 0, 3)),
    ("call pc-2#bpf_prog_123_F", Insn(0x85, 0, 1, 0, -2)),
    ("callx r2", Insn(0x8D, 2)),
    ("exit", Insn(0x95)),
    ("r1 = addr_space_cast(r2, 0, 1)", Insn(0xBF, 1, 2, 1, 1)),
    ("(bf) r1 = &(void __percpu *)(r2)", Insn(0xBF, 1, 2, -1)),
]


@pytest.mark.parametrize(("text", "want"), KERNEL_CASES, ids=[t for t, _ in KERNEL_CASES])
def test_kernel_syntax(text: str, want: Insn) -> None:
    assert one(text) == want
    assert one(text, syntax="kernel") == want


def test_helper_names_need_uapi_or_a_table() -> None:
    assert one("call f", helper_ids={"f": 9}) == Insn(0x85, 0, 0, 0, 9)
    assert one("call bpf_f", helper_ids={"bpf_f": 9}) == Insn(0x85, 0, 0, 0, 9)
    if not default_helper_names():
        pytest.skip("pybpf.uapi (helper names) not importable")
    assert one("call bpf_map_lookup_elem") == Insn(0x85, 0, 0, 0, 1)
    assert one("call map_lookup_elem") == Insn(0x85, 0, 0, 0, 1)
    assert one("call bpf_obj_new_impl#70000") == Insn(0x85, 0, 2, 0, 70000)
    assert one("call helper map_lookup_elem") == Insn(0x85, 0, 0, 0, 1)


def test_ld_imm64_forms() -> None:
    assert assemble("r1 = 0x1122334455667788 ll") == list(ld_imm64(1, 0x1122334455667788))
    assert assemble("r1 = 5 ll") == list(ld_imm64(1, 5))
    assert assemble("(18) r1 = 0x5") == list(ld_imm64(1, 5))
    assert assemble("r1 = 0x1122334455667788") == list(ld_imm64(1, 0x1122334455667788))
    assert assemble("r1 = 0xffffffff") == list(ld_imm64(1, 0xFFFFFFFF))
    assert assemble("r1 = 0xffffffffffffffff") == [Insn(0xB7, 1, 0, 0, -1)]
    assert assemble("r1 = map[id:3]") == list(ld_imm64(1, 3, 1))
    assert assemble("r1 = map[id:3][0]+8") == list(ld_imm64(1, 3 | 8 << 32, 2))
    assert assemble("r1 = map[idx:2]+4") == list(ld_imm64(1, 2 | 4 << 32, 6))
    assert assemble("r2 = subprog[+4]") == list(ld_imm64(2, 4, 4))
    assert assemble("r2 = subprog[-3]") == list(ld_imm64(2, -3 & 0xFFFFFFFF, 4))
    assert assemble("r1 = pseudo[5]:0x7") == list(ld_imm64(1, 7, 5))
    got = assemble("r2 = subprog[cb]\nr0 = 0\nexit\ncb: r0 = 1\nexit")
    assert got[:2] == list(ld_imm64(2, 3, 4))


def test_pseudo_resolver_is_asked_first() -> None:
    def resolve(text: str) -> tuple[int, int] | None:
        return (1, 42) if text == "my_map" else None

    assert assemble("r1 = my_map", pseudo_resolver=resolve) == list(ld_imm64(1, 42, 1))
    with pytest.raises(AsmError, match="line 1"):
        assemble("r1 = other_map", pseudo_resolver=resolve)


def test_kernel_labels_and_calls() -> None:
    text = """
    start:
        r0 = 0
        if r1 == 0x0 goto out
        call sub
        goto out
    sub:
        r0 = 1
        exit
    out:
        exit
    """
    got = assemble(text)
    assert got[1] == Insn(0x15, 1, 0, 4, 0)
    assert got[2] == Insn(0x85, 0, 1, 0, 1)
    assert got[3] == Insn(0x05, 0, 0, 2)


def test_mixed_syntax_program() -> None:
    got = assemble("mov %r0, 1\nr0 += 2\njne %r0, 3, +1\nexit\nr0 = 0\nexit")
    assert got[:2] == [Insn(0xB7, 0, 0, 0, 1), Insn(0x07, 0, 0, 0, 2)]


def test_comments_and_blank_lines() -> None:
    text = "# header\n\n; verifier state\nr0 = 0 // llvm\n  ; R0=0\nexit # done\n"
    assert assemble(text) == [Insn(0xB7), Insn(0x95)]


def test_bpftool_listing_reassembles() -> None:
    listing = """
    int prog(struct __sk_buff * skb):
    ; return 0;
       0: (b7) r0 = 0
       1: (95) exit
    """
    assert assemble(listing) == [Insn(0xB7), Insn(0x95)]


def test_outputs_of_both_disassemblers_reassemble() -> None:
    prog = assemble("r0 = 1\nr1 = 0x1122334455667788 ll\nif r0 != 0x1 goto pc+1\nexit\nexit")
    assert assemble("\n".join(disasm_kernel(prog))) == prog
    assert assemble("\n".join(disasm_conformance(prog))) == prog


# --------------------------------------------------------------------------- errors

ERRORS = [
    ("r0 = 0\nfrobnicate %r0, 1", 2, "unknown mnemonic"),
    ("mov %r16, 1", 1, "bad register"),
    ("mov %rx, 1", 1, "bad register"),
    ("r16 = 1", 1, "bad register"),
    ("mov %r0, 0x100000000", 1, "out of range"),
    ("mov %r0, 2147483648", 1, "out of range"),
    ("mov %r0, -2147483649", 1, "out of range"),
    ("ldxw %r0, [%r1+40000]", 1, "out of range"),
    ("ja nowhere", 1, "undefined label"),
    ("exit\nx:\nx:\nexit", 3, "duplicate label"),
    ("mov %r0", 1, "takes 2 operands"),
    ("exit %r0", 1, "exit takes no operands"),
    ("exit %r0", 1, "line 1"),
    ("ldxw %r0, %r1", 1, "bad memory operand"),
    ("(07) r0 = 1", 1, "opcode column"),
    ("r0 = *(u24 *)(r1 +0)", 1, "bad memory type"),
    ("*(s8 *)(r1 +0) = r2", 1, "signed type"),
    ("w1 += r2", 1, "mixed"),
    ("r1 = -r2", 1, "neg"),
    ("r1 = atomic64_fetch_add((u64 *)(r10 -8), r2)", 1, "atomic fetch"),
    ("r1 = atomic64_cmpxchg((u64 *)(r10 -8), r0, r2)", 1, "cmpxchg"),
    ("r1 = *(u8 *)skb[1]", 1, "r0"),
    ("call bpf_no_such_helper_xyz", 1, "unknown helper"),
    ("call local", 1, "needs a target"),
    ("call sideways 3", 1, "bad call target"),
    ("call helper %r2 x", 1, "call takes one target"),
    ("call local +", 1, "bad jump target"),
    ("lock frob [%r1], %r2", 1, "unknown mnemonic"),
    ("if r1 ~ r2 goto pc+1", 1, "bad conditional jump"),
    ("r1 = 0x1122334455667788 ll zz", 1, "cannot parse"),
    (".insn 1, 2, 3", 1, ".insn takes 5 fields"),
    (".insn 0x100, 0, 0, 0, 0", 1, "opcode out of range"),
    ("w1 = 1 ll", 1, "64-bit register"),
    ("r1 = le17 r1", 1, "bad byte swap width"),
    ("r1 = (s32)r2\nw1 = (s32)w2", 2, "no sign-extending move"),
    ("(b7)", 1, "missing instruction"),
]


@pytest.mark.parametrize(("text", "line", "what"), ERRORS, ids=[e[2] + ":" + e[0] for e in ERRORS])
def test_errors_name_line_and_problem(text: str, line: int, what: str) -> None:
    with pytest.raises(AsmError) as info:
        assemble(text, helper_ids={"bpf_map_lookup_elem": 1})
    assert info.value.line == line
    assert what in str(info.value)


def test_jump_to_label_out_of_16_bit_range() -> None:
    text = "ja far\n" + "r0 = 0\n" * 40000 + "far: exit"
    with pytest.raises(AsmError, match="out of range"):
        assemble(text)


def test_unknown_syntax_name() -> None:
    with pytest.raises(AsmError, match="unknown syntax"):
        assemble("exit", syntax="intel")


def test_forced_syntax_is_honoured() -> None:
    with pytest.raises(AsmError):
        assemble("r0 = 1", syntax="conformance")
    with pytest.raises(AsmError):
        assemble("mov %r0, 1", syntax="kernel")


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("r%w0123456789 +-*=()[],:;#xabsulgoticfp&<>|^\n.")),
               max_size=60))
def test_garbage_raises_only_asm_error(text: str) -> None:
    """Any text assembles or raises AsmError -- from the parsers, not the safety net."""
    try:
        assemble(text)
    except AsmError as exc:
        assert exc.__cause__ is None, f"internal error on {text!r}: {exc.__cause__!r}"


# --------------------------------------------------------------------------- speed


def test_a_thousand_instructions_in_well_under_100ms() -> None:
    base = assemble("""
        r0 = 42
        r1 += r2
        r3 = *(u32 *)(r1 +4)
        *(u64 *)(r10 -8) = r1
        if r1 > 0x5 goto pc+1
        r1 = 0x1122334455667788 ll
        lock *(u64 *)(r10 -8) += r1
        call 1
        exit
    """)
    prog = (base * 112)[:1000]
    kernel_text = "\n".join(disasm_kernel(prog))
    conf_text = "\n".join(disasm_conformance(prog))
    assert disasm_kernel(assemble(kernel_text)) == kernel_text.split("\n")
    assert encode(assemble(conf_text)) == encode(prog)


# --------------------------------------------------------------------------- LLVM output

_C_PROGRAM = r"""
typedef unsigned long long u64; typedef unsigned int u32;
typedef signed char s8; typedef short s16;
__attribute__((section("socket"), used))
long prog(u64 *ctx) {
    u64 a = ctx[0], b = ctx[1];
    u32 c = (u32)ctx[2];
    long r = 0;
    if (a > 5) r += a * 3;
    if ((long)b < -7) r -= b / 3;
    if (c & 0xff) r ^= c << 2;
    r += (s8)a + (s16)b;
    r += __builtin_bswap64(a) + 0x1122334455667788ULL;
    __sync_fetch_and_add(ctx + 3, r);
    r += __sync_fetch_and_add(ctx + 4, 7);
    r += __sync_lock_test_and_set(ctx + 5, r);
    r += __sync_val_compare_and_swap(ctx + 6, a, b);
    for (int i = 0; i < (int)(c & 7); i++) r += i * b;
    return r;
}
"""


def test_llvm_objdump_output_reassembles(tmp_path: Path) -> None:
    """clang-compiled code, as ``llvm-objdump -d`` prints it, assembles to the same bytes."""
    import re
    import shutil
    import subprocess

    clang, objdump = shutil.which("clang"), shutil.which("llvm-objdump")
    if clang is None or objdump is None:
        pytest.skip("clang / llvm-objdump not installed")
    src, obj = tmp_path / "p.c", tmp_path / "p.o"
    src.write_text(_C_PROGRAM)
    subprocess.run([clang, "-O2", "-target", "bpf", "-mcpu=v3", "-c", str(src), "-o", str(obj)],
                   check=True, capture_output=True)
    with_bytes = subprocess.run([objdump, "-d", str(obj)], check=True, capture_output=True,
                                text=True).stdout
    text_only = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(obj)], check=True,
                               capture_output=True, text=True).stdout
    expected = bytes.fromhex("".join(
        m.group(1) for m in re.finditer(r"^\s*\d+:\s+((?:[0-9a-f]{2} ){7}[0-9a-f]{2}"
                                        r"(?: (?:[0-9a-f]{2} ){7}[0-9a-f]{2})?)", with_bytes,
                                        re.M)).replace(" ", ""))
    assert len(expected) > 8 * 30
    assert encode(assemble(text_only)) == expected
    assert encode(assemble(with_bytes)) == expected


def test_bytes_column_is_checked() -> None:
    assert one("0: b7 01 00 00 05 00 00 00 r1 = 5") == Insn(0xB7, 1, 0, 0, 5)
    with pytest.raises(AsmError, match="bytes column"):
        assemble("0: b7 01 00 00 05 00 00 00 r1 = 6")
