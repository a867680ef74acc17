"""The kprobe/uprobe session kfuncs (``bpf_session_cookie``, ``bpf_session_is_return``)
against the live kernel: only session programs may call them (an attach-type filter),
the cookie is 8 writable bytes, and a session program returns 0 or 1 — whole level-2
logs compared."""

from __future__ import annotations

from types import ModuleType

import pytest

from pybpf.isa.insn import Insn
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.testing.verifier_diff import kfunc_ids, load_both, pybpf_instance

KPROBE, KPROBE_MULTI, KPROBE_SESSION, UPROBE_SESSION = 2, 42, 56, 57


def I(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> Insn:  # noqa: E743
    return Insn(code, dst, src, off, imm)


def _kfunc(name: str) -> int:
    ids = kfunc_ids()
    if name not in ids:
        pytest.skip(f"no {name} in this machine's vmlinux BTF")
    return ids[name]


@pytest.mark.parametrize("eat", [0, KPROBE_MULTI, KPROBE_SESSION, UPROBE_SESSION])
@pytest.mark.parametrize(("name", "off"), [("bpf_session_cookie", 0), ("bpf_session_cookie", 4),
                                           ("bpf_session_cookie", 8),
                                           ("bpf_session_is_return", None)])
@pytest.mark.parametrize("ret", [0, 1, 2])
def test_session_kfuncs(kernel: ModuleType, eat: int, name: str, off: int | None,
                        ret: int) -> None:
    use = I(0x79, 0, 0, off) if off is not None else I(0xBF, 0, 0)
    prog = [I(0x85, 0, 2, 0, _kfunc(name)), use, I(0xB7, 0, 0, 0, ret), I(0x95)]
    want, got = load_both(kernel, pybpf_instance(), KPROBE, prog, log_level=2,
                          expected_attach_type=eat)
    assert (got.ok, got.errno, got.log) == (want.ok, want.errno, want.log)


@pytest.mark.parametrize("jit", [1, 0], ids=["jit", "interpreter"])
def test_cookie_is_fresh_and_shared_within_a_run(jit: int) -> None:
    """Outside a session each run starts from a zeroed cookie; within the run the cookie
    keeps what the program wrote. The program returns 1 when both hold."""
    cookie = _kfunc("bpf_session_cookie")
    prog = [I(0x85, 0, 2, 0, cookie), I(0x79, 6, 0, 0), I(0xBF, 7, 6), I(0x07, 7, 0, 0, 7),
            I(0x7B, 0, 7, 0), I(0x85, 0, 2, 0, cookie), I(0x79, 7, 0, 0),
            I(0xB7, 0, 0, 0, 0), I(0x55, 6, 0, 2, 0), I(0x55, 7, 0, 1, 7), I(0xB7, 0, 0, 0, 1),
            I(0x95)]
    k = Kernel()
    k.sysctl["bpf_jit_enable"] = jit
    p = Program.load(k, KPROBE, prog, expected_attach_type=KPROBE_SESSION)
    from pybpf.runtime.memory import REGISTRY
    from pybpf.syscall.objects import prog_get

    bp = prog_get(k.root, p.fd)
    regs = REGISTRY.alloc(168, "pt_regs")
    try:
        assert bp.jited == bool(jit)
        assert [bp.run(regs.start) for _ in range(3)] == [1, 1, 1]
    finally:
        REGISTRY.remove(regs)
        bp.put()
