"""Fixtures of the verifier's BTF tests: a pybpf instance with the host's kernel BTF."""

from __future__ import annotations

import pytest

from pybpf.btf.raw import Btf
from pybpf.kernel import Kernel


@pytest.fixture(scope="module")
def k() -> Kernel:
    """A pybpf instance whose kernel BTF is the host's (a visible skip without one)."""
    kern = Kernel()
    if kern.vmlinux_btf is None:
        pytest.skip("no vmlinux BTF on this machine")
    return kern


@pytest.fixture(scope="module")
def vmlinux(k: Kernel) -> Btf:
    """That instance's parsed kernel BTF."""
    btf: Btf = k.vmlinux_btf.parsed()  # type: ignore[union-attr]
    return btf
