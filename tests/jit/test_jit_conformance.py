"""Every bpf_conformance file passes on the JIT (``pybpf conformance-plugin --tier jit``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.testing.conformance import parse_case, run_case

CONFORMANCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance"
FILES = sorted(CONFORMANCE.glob("*.data")) if CONFORMANCE.is_dir() else []


def test_suite_is_present() -> None:
    if not FILES:
        pytest.skip(f"conformance files not found at {CONFORMANCE}")
    assert len(FILES) >= 200


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_conformance_file_on_the_jit(path: Path) -> None:
    passed, why = run_case(parse_case(path), tier="jit")
    assert passed, why
