"""The tier switch: ``PYBPF_JIT_ENABLE`` sets a new instance's ``bpf_jit_enable``."""

from __future__ import annotations

import errno

import pytest

from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.uapi import BPF_PROG_TYPE_SOCKET_FILTER

PROG = assemble("r0 = 7\nexit\n")


@pytest.mark.parametrize(("env", "want"), [("0", 0), ("1", 1), ("2", 2), (" 0 ", 0), ("", 1)])
def test_environment_sets_the_default(monkeypatch: pytest.MonkeyPatch, env: str,
                                      want: int) -> None:
    monkeypatch.setenv("PYBPF_JIT_ENABLE", env)
    assert Kernel().sysctl["bpf_jit_enable"] == want


def test_unset_environment_means_the_jit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYBPF_JIT_ENABLE", raising=False)
    assert Kernel().sysctl["bpf_jit_enable"] == 1


@pytest.mark.parametrize("env", ["3", "yes", "-1"])
def test_a_bad_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    monkeypatch.setenv("PYBPF_JIT_ENABLE", env)
    with pytest.raises(BpfError) as exc:
        Kernel()
    assert exc.value.errno == errno.EINVAL and "PYBPF_JIT_ENABLE" in str(exc.value)


@pytest.mark.parametrize("env", ["0", "1"])
def test_explicit_sysctls_win_and_programs_follow(monkeypatch: pytest.MonkeyPatch,
                                                  env: str) -> None:
    pytest.importorskip("llvmlite")
    monkeypatch.setenv("PYBPF_JIT_ENABLE", env)
    k = Kernel()
    Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, PROG)
    assert k.progs()[-1].jited == (env == "1")
    forced = Kernel(sysctls={"bpf_jit_enable": 1 - int(env)})
    Program.load(forced, BPF_PROG_TYPE_SOCKET_FILTER, PROG)
    assert forced.progs()[-1].jited == (env == "0")
    assert forced.progs()[-1].bpf_func.run(0) == 7


def test_session_tier_fixture_matches_new_instances(bpf_tier: str) -> None:
    assert bpf_tier in ("jit", "interp")
    assert Kernel().sysctl["bpf_jit_enable"] == (0 if bpf_tier == "interp" else 1)
