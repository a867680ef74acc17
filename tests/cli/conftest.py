"""CLI commands act on the process-wide default instance: give every test a fresh one, so
objects another test loaded (a map named ``drops``…) never answer for this test's names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pybpf.kernel import set_default_kernel


@pytest.fixture(autouse=True)
def fresh_default_kernel() -> Iterator[None]:
    old = set_default_kernel(None)
    try:
        yield
    finally:
        set_default_kernel(old)
