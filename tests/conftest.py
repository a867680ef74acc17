"""Shared fixtures: the live-kernel oracle, which skips visibly where it cannot run; the
execution tier (``--bpf-tier jit|interp`` or ``PYBPF_JIT_ENABLE=1|0``) every new
:class:`~pybpf.Kernel` runs programs on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from pybpf.testing import kernel as _kernel


@pytest.fixture(scope="session")
def kernel() -> ModuleType:
    """The oracle module (:mod:`pybpf.testing.kernel`), or a skip saying why not.

    Session-scoped so Hypothesis-driven tests may use it. Tests needing the live kernel
    take this fixture; none may pass without it.
    """
    ok, why = _kernel.available()
    if not ok:
        pytest.skip(f"live bpf() unavailable: {why}")
    return _kernel


@pytest.fixture
def kernel_fds(kernel: ModuleType) -> Iterator[_kernel.KernelFds]:
    """A :class:`~pybpf.testing.kernel.KernelFds` closed when the test ends."""
    with kernel.KernelFds() as fds:
        yield fds


_TIERS = {"jit": "1", "interp": "0"}


@pytest.fixture(scope="module")
def btf_ids(kern: Any) -> dict[str, int]:
    """vmlinux BTF ids of the host functions of the module's pybpf instance ``kern``
    (the attach targets of fentry/fexit/fmod_ret tests)."""
    from pybpf.hooks.trampoline import host_function_btf_ids

    ids = host_function_btf_ids(kern)
    if not ids:
        pytest.skip("no /sys/kernel/btf/vmlinux to name the attach targets")
    return ids


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bpf-tier", choices=sorted(_TIERS), default=None,
        help="execution tier of every new Kernel (sets PYBPF_JIT_ENABLE; default: the JIT)")


def pytest_configure(config: pytest.Config) -> None:
    """``--bpf-tier`` sets ``PYBPF_JIT_ENABLE`` before any test module creates a Kernel."""
    config.addinivalue_line(
        "markers", "jit_tier: the test inspects JIT output and is skipped on the interpreter tier")
    tier = config.getoption("--bpf-tier")
    if tier is not None:
        os.environ["PYBPF_JIT_ENABLE"] = _TIERS[tier]
        from pybpf import kernel as _kmod

        if _kmod._DEFAULT is not None:  # created during conftest import: follow the option
            _kmod._DEFAULT.sysctl["bpf_jit_enable"] = int(_TIERS[tier])


def _current_tier() -> str:
    return "interp" if os.environ.get("PYBPF_JIT_ENABLE", "1").strip() == "0" else "jit"


@pytest.fixture(scope="session")
def bpf_tier() -> str:
    """``"jit"`` or ``"interp"``: the tier programs of new instances run on in this session."""
    return _current_tier()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tag every test that uses the oracle with the ``kernel`` marker (``-m "not kernel"``);
    skip (visibly) tests marked ``jit_tier`` when the session runs on the interpreter."""
    interp = _current_tier() == "interp"
    for item in items:
        if "kernel" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kernel)
        if interp and item.get_closest_marker("jit_tier") is not None:
            item.add_marker(pytest.mark.skip(reason="inspects JIT output; session runs the interpreter"))
