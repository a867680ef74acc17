"""BPF exceptions at run time, live kernel vs pybpf (both execution tiers run this file):
``bpf_throw`` from a global function with the default callback returns the cookie, a
program's own exception callback turns the cookie into the return value. Verdicts and logs
of the throwing programs (and the refusals: a reference held at the throw, a cookie that
is no valid return value, a callback with two arguments) are compared with the other
global-function objects in ``test_global_funcs_vs_kernel.py``."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from pybpf.kernel import Kernel
from pybpf.loader.elf_object import open_object
from pybpf.loader.externs import KernelFacts
from pybpf.loader.load import LiveSyscalls, load_object
from pybpf.program import Program
from pybpf.testing.object_logs import vmlinux_target

OBJECT = Path(__file__).parent / "global_funcs" / "globals_throw.o"


def _load_one(world: object, name: str) -> tuple[int, object]:
    obj = open_object(OBJECT)
    for p in obj.programs:
        if not p.is_subprog:
            p.autoload = p.name == name
    target = vmlinux_target()
    facts = KernelFacts.host(target.btf) if target is not None else None
    lo = load_object(obj, world, target=target, facts=facts)
    return lo.prog_fds[name], lo


@pytest.mark.parametrize("name", ["throw_default", "throw_with_cb"])
@pytest.mark.parametrize("size", [14, 64, 200])
def test_throw_returns_as_kernel(kernel: ModuleType, name: str, size: int) -> None:
    live_fd, live = _load_one(LiveSyscalls(), name)
    try:
        want = kernel.prog_test_run(live_fd, data_in=bytes(size)).retval
    finally:
        live.close()  # type: ignore[attr-defined]
    k = Kernel()
    fd, _ = _load_one(k, name)
    got = Program.from_fd(k.root, fd).test_run(bytes(size)).retval
    assert got == want


def test_throw_unwinds_to_the_callback() -> None:
    """Without the live kernel: the cookie reaches the callback (2 + 40); the default
    callback returns the cookie, and only when the throw happens."""
    k = Kernel()
    fd, _ = _load_one(k, "throw_with_cb")
    assert Program.from_fd(k.root, fd).test_run(bytes(64)).retval == 42
    fd, _ = _load_one(k, "throw_default")
    prog = Program.from_fd(k.root, fd)
    assert prog.test_run(bytes(200)).retval == 7
    assert prog.test_run(bytes(64)).retval == 65


def test_throw_placement_as_kernel(kernel: ModuleType) -> None:
    """``bpf_throw kfunc (insn N) cannot be called from callback subprog M`` for a throw in a
    bpf_loop callback or in the exception callback, ``bpf_throw cannot be used inside
    bpf_rcu_read_lock-ed region`` at any call depth; a throw in a static function is fine (errno and error line at log
    level 1; the level-2 logs differ in one deliberate precision mark, see docs/verifier.md)."""
    from pybpf.testing.object_logs import program_logs

    path = OBJECT.parent / "throw_in_callback.o"
    live = program_logs(path, "live", 1)
    ours = program_logs(path, Kernel(), 1)
    assert sorted(live) == sorted(ours) == ["throw_from_exc_", "throw_in_loop", "throw_in_rcu_st",
                                            "throw_in_static"]
    for name, want in live.items():
        assert (ours[name].errno, ours[name].log) == (want.errno, want.log)
    assert "cannot be called from callback subprog 1" in ours["throw_in_loop"].log
    assert "cannot be called from callback subprog 1" in ours["throw_from_exc_"].log
