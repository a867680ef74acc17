"""Malformed objects give a LoaderError with a message, never a traceback or a hang."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.loader.elf_object import open_object
from pybpf.loader.errors import LoaderError
from pybpf.loader.relocate import relocate

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "globals_calls.o").read_bytes()


def _open_and_relocate(data: bytes) -> None:
    try:
        obj = open_object(data, name="fuzz.o")
        relocate(obj)
    except LoaderError as exc:
        assert str(exc)


def test_truncations() -> None:
    for n in list(range(0, 80)) + list(range(80, len(EXAMPLE), 97)):
        _open_and_relocate(EXAMPLE[:n])


def test_not_elf_and_wrong_class() -> None:
    for data in (b"", b"hello", b"\x7fELF\x01\x01" + EXAMPLE[6:], EXAMPLE[:5] + b"\x07"):
        try:
            open_object(data, name="bad.o")
        except LoaderError as exc:
            assert "ELF" in str(exc) or "elf" in str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(EXAMPLE) - 1), st.integers(0, 255)),
                min_size=1, max_size=8))
def test_random_byte_corruption(patches: list[tuple[int, int]]) -> None:
    data = bytearray(EXAMPLE)
    for off, val in patches:
        data[off] = val
    _open_and_relocate(bytes(data))


@settings(max_examples=100, deadline=None)
@given(st.integers(0x28, 0x3F), st.integers(0, 255))
def test_header_corruption(off: int, val: int) -> None:
    data = bytearray(EXAMPLE)
    data[off] = val
    _open_and_relocate(bytes(data))
