"""Shared fixtures: the live-kernel oracle, which skips visibly where it cannot run."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tag every test that uses the oracle with the ``kernel`` marker (``-m "not kernel"``)."""
    for item in items:
        if "kernel" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kernel)
