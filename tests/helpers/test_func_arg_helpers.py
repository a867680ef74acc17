"""``bpf_get_func_arg``, ``bpf_get_func_ret``, ``bpf_get_func_arg_cnt`` and the tracing
``bpf_get_func_ip``: trampoline programs read them from the frame below their ctx.

For ``BPF_PROG_TYPE_TRACING`` the verifier inlines them (``do_misc_fixups``), so the
xlated program loads from ``ctx - 8`` and ``ctx - 16``; the trampoline builds that frame.
The live kernel of this machine refuses fentry loads (EPERM), so the rewrite is checked
against the kernel source's instruction sequences and the results against the traced
functions' arguments.
"""

from __future__ import annotations

import pytest

from pybpf.hooks.trampoline import _func_ip
from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.testing.xlated import pybpf_xlated

TRACING, FENTRY, FEXIT, FMOD_RET, RAW_TP = 26, 24, 25, 26, 23
BPF_MAP_TYPE_ARRAY = 2
EINVAL, EOPNOTSUPP = 22, 95


@pytest.fixture(scope="module")
def kern() -> Kernel:
    return Kernel()


def _store(slot: int) -> str:
    """array[slot] = r0 (r6 holds the map, r7 the ctx; r8 is scratch)."""
    return f"""
        r8 = r0
        *(u32 *)(r10 - 4) = {slot}
        r2 = r10
        r2 += -4
        r1 = r6
        call 1
        if r0 == 0 goto +1
        *(u64 *)(r0 + 0) = r8
        r1 = r7"""


def _prog(map_fd: int, with_ret: bool) -> str:
    """Writes arg_cnt, arg 1, get_func_arg(5)'s result, the ip and (fexit) the return
    value, each into its own array slot."""
    text = f"""
        r7 = r1
        r6 = pseudo[1]:{map_fd}
        call 185
        {_store(0)}
        r2 = 1
        r3 = r10
        r3 += -16
        call 183
        r0 = *(u64 *)(r10 - 16)
        {_store(1)}
        r2 = 5
        r3 = r10
        r3 += -16
        call 183
        {_store(2)}
        call 173
        {_store(3)}
        r2 = r10
        r2 += -16
        call 184
        {_store(4)}
        r0 = *(u64 *)(r10 - 16)
        {_store(5) if with_ret else ""}
        r0 = 0
        exit"""
    return text


def _slots(k: Kernel, fd: int, n: int = 6) -> list[int]:
    from pybpf.core.map import MapHandle

    h = MapHandle(k.root, fd)
    return [int.from_bytes(h.lookup(i.to_bytes(4, "little")), "little") for i in range(n)]


def _xlated(k: Kernel, fd: int) -> list[Insn]:
    return pybpf_xlated(k.root, fd)


@pytest.mark.parametrize("eat", [FENTRY, FEXIT])
def test_frame_helpers_read_the_trampoline_frame(kern: Kernel, btf_ids: dict[str, int],
                                                 eat: int) -> None:
    m = int(kern.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 6).fd)
    prog = Program.load(kern, TRACING, assemble(_prog(m, eat == FEXIT), syntax="kernel"),
                        expected_attach_type=eat, attach_btf_id=btf_ids["bpf_fentry_test2"])
    with prog.attach_trace():
        assert prog.test_run().retval == 0
    got = _slots(kern, m)
    # bpf_fentry_test2(2, 3): two arguments, the second is 3, a third is past the end
    assert got[:4] == [2, 3, (-EINVAL) & (2**64 - 1), _func_ip("bpf_fentry_test2")]
    if eat == FEXIT:
        assert got[4:] == [0, 5]  # returned 2 + 3
    else:
        assert got[4] == (-EOPNOTSUPP) & (2**64 - 1)


def test_tracing_programs_get_the_inline_bodies(kern: Kernel, btf_ids: dict[str, int]) -> None:
    m = int(kern.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 6).fd)
    prog = Program.load(kern, TRACING, assemble(_prog(m, True), syntax="kernel"),
                        expected_attach_type=FEXIT, attach_btf_id=btf_ids["bpf_fentry_test2"])
    xl = _xlated(kern, prog.fd)
    calls = {i.imm for i in xl if i.code == 0x85 and i.src == 0}
    assert not calls & {173, 183, 184, 185}
    nr_args = Insn(0x79, 0, 1, -8, 0)
    arg = [nr_args, Insn(0x3E, 2, 0, 6, 0), Insn(0x67, 2, 0, 0, 3), Insn(0x0F, 2, 1, 0, 0),
           Insn(0x79, 0, 2, 0, 0), Insn(0x7B, 3, 0, 0, 0), Insn(0xB7, 0, 0, 0, 0),
           Insn(0x05, 0, 0, 1, 0), Insn(0xB7, 0, 0, 0, -EINVAL)]
    ret = [nr_args, Insn(0x67, 0, 0, 0, 3), Insn(0x0F, 0, 1, 0, 0), Insn(0x79, 3, 0, 0, 0),
           Insn(0x7B, 2, 3, 0, 0), Insn(0xB7, 0, 0, 0, 0)]
    text = [tuple(i) for i in xl]

    def has(seq: list[Insn]) -> bool:
        want = [tuple(i) for i in seq]
        return any(text[k:k + len(want)] == want for k in range(len(text)))

    assert has(arg) and has(ret) and has([Insn(0x79, 0, 1, -16, 0)])
    assert sum(1 for i in xl if tuple(i) == tuple(nr_args)) == 4  # cnt, arg twice, ret


def test_fentry_get_func_ret_is_eopnotsupp_inline(kern: Kernel, btf_ids: dict[str, int]) -> None:
    prog = Program.load(kern, TRACING, assemble("""
        r2 = r10
        r2 += -8
        call 184
        r0 = 0
        exit""", syntax="kernel"), expected_attach_type=FENTRY,
                        attach_btf_id=btf_ids["bpf_fentry_test1"])
    xl = _xlated(kern, prog.fd)
    assert tuple(xl[2]) == tuple(Insn(0xB7, 0, 0, 0, -EOPNOTSUPP))


@pytest.mark.parametrize("fid", [183, 184, 185])
def test_no_trampoline_no_frame_helpers(kern: Kernel, fid: int) -> None:
    """tp_btf programs have no trampoline: the helpers are not offered (as in 6.18)."""
    from pybpf.errors import BpfError

    btf = kern.vmlinux_btf
    if btf is None:
        pytest.skip("no vmlinux BTF")
    tid = next(t.id for t in btf.parsed().types if t.name == "btf_trace_sched_switch")
    with pytest.raises(BpfError) as exc:
        Program.load(kern, TRACING, assemble(f"call {fid}\nr0 = 0\nexit", syntax="kernel"),
                     expected_attach_type=RAW_TP, attach_btf_id=tid, log_level=1)
    assert "program of this type cannot use helper" in exc.value.log
