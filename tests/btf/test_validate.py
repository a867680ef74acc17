"""BTF validation agrees with BPF_BTF_LOAD of the live kernel: errno and the whole log.

The corpus: every example object's .BTF (as clang wrote it, which the kernel rejects for
its zero-sized DATASECs, and as the loader fixes it), a blob with every kind, hand-written
cases for the resolver's rules, systematic one-word corruptions of headers and records,
and random byte flips.
"""

from __future__ import annotations

import errno
import random
from pathlib import Path
from types import ModuleType

import pytest
from btf_corpus import corruptions, every_kind_blob, special_blobs
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.btf.raw import elf_section
from pybpf.btf.validate import ENOTSUPP, btf_check
from pybpf.btf.writer import to_bytes
from pybpf.loader.elf_object import open_object

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OBJECTS = sorted(EXAMPLES.glob("*.o"))
LOG_SIZE = 1 << 22


def kernel_answer(kernel: ModuleType, data: bytes) -> tuple[int, str]:
    r = kernel.btf_load(data, log_level=1, log_size=max(LOG_SIZE, 4 * len(data)))
    if r.fd >= 0:
        kernel.close(r.fd)
    return r.errno, r.log


def ours(data: bytes) -> tuple[int, str]:
    err, log, _ = btf_check(data, 1)
    return err, log.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def assert_same(kernel: ModuleType, label: str, data: bytes) -> None:
    k, m = kernel_answer(kernel, data), ours(data)
    if k != m:
        kl, ml = k[1].splitlines(), m[1].splitlines()
        first = next((i for i, (a, b) in enumerate(zip(kl, ml, strict=False)) if a != b),
                     min(len(kl), len(ml)))
        pytest.fail(f"{label}: kernel errno {k[0]}, ours {m[0]}; logs differ at line "
                    f"{first}:\n  kernel: {kl[first:first + 1]}\n  ours:   {ml[first:first + 1]}")


# ---------------------------------------------------------------- without the kernel


def test_every_kind_blob_is_valid_and_parsed() -> None:
    err, log, btf = btf_check(every_kind_blob(), 1)
    assert err == 0, log
    assert btf is not None and len(btf.types) == 26
    assert log.startswith("magic: 0xeb9f\nversion: 1\nflags: 0x0\nhdr_len: 24\n")
    assert "[5] STRUCT pkt size=24 vlen=5\n\tlen type_id=1 bitfield_size=0 bits_offset=0\n" in log
    assert "[14] FUNC_PROTO (anon) return=1 args=(3 ctx, vararg)\n" in log
    assert "[8] ENUM64 big size=8 vlen=2\n\tNEG val=-5\n\tHUGE val=1099511627776\n" in log


def test_log_level_zero_gives_no_log() -> None:
    assert btf_check(every_kind_blob(), 0)[:2] == (0, "")
    err, log, btf = btf_check(b"\x9f\xeb\x01\x00", 0)
    assert (err, log, btf) == (errno.EINVAL, "", None)


@pytest.mark.parametrize(("label", "err", "last"), [
    ("hdr.magic=0x9feb", errno.EINVAL, "Invalid magic"),
    ("hdr.version=0x2", ENOTSUPP, "Unsupported version"),
    ("extended-header-nonzero", errno.E2BIG, "Unsupported btf_header"),
    ("string-not-nul-terminated", errno.EINVAL, "Invalid string section"),
    ("[5].kind=31", errno.EINVAL, "[5] Invalid kind:31"),
])
def test_known_rejections(label: str, err: int, last: str) -> None:
    blob = dict(corruptions(every_kind_blob()))[label]
    got, log, btf = btf_check(blob, 1)
    assert (got, log.splitlines()[-1], btf) == (err, last, None)


def test_cycles_and_tag_order() -> None:
    cases = dict(special_blobs())
    err, log, _ = btf_check(cases["ptr-cycle"], 1)
    assert err == errno.EEXIST and log.endswith("[2] PTR (anon) type_id=3 Loop detected\n")
    err, log, _ = btf_check(cases["const-after-tag"], 1)
    assert (err, log.splitlines()[-1]) == (errno.EINVAL, "Type tags don't precede modifiers")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_raises(data: bytes) -> None:
    err, log, btf = btf_check(b"\x9f\xeb\x01\x00\x18\x00\x00\x00" + data, 1)
    assert isinstance(err, int) and isinstance(log, str)
    assert (btf is None) == (err != 0)


def test_btf_load_through_bpf_uses_the_validator() -> None:
    """BPF_BTF_LOAD on a pybpf instance gives the validator's verdict and log."""
    from pybpf.syscall.btf_cmds import btf_parse

    assert btf_parse(every_kind_blob()) == (0, btf_check(every_kind_blob(), 1)[1])
    bad = b"\x9f\xeb\x02" + every_kind_blob()[3:]  # version 2
    assert btf_parse(bad) == btf_check(bad, 1)[:2]


# ---------------------------------------------------------------- against the kernel


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
def test_object_btf_as_kernel(kernel: ModuleType, path: Path) -> None:
    raw = elf_section(path.read_bytes(), ".BTF")
    assert_same(kernel, f"{path.name} (clang)", raw)
    fixed = to_bytes(open_object(path).btf, keep_strings=True)
    assert_same(kernel, f"{path.name} (libbpf-fixed)", fixed)
    assert ours(fixed)[0] == 0


def test_every_kind_as_kernel(kernel: ModuleType) -> None:
    assert_same(kernel, "every kind", every_kind_blob())


@pytest.mark.parametrize(("label", "blob"), list(special_blobs()), ids=lambda x: x
                         if isinstance(x, str) else "")
def test_special_cases_as_kernel(kernel: ModuleType, label: str, blob: bytes) -> None:
    assert_same(kernel, label, blob)


def test_corruptions_of_every_kind_blob_as_kernel(kernel: ModuleType) -> None:
    n = 0
    for label, blob in corruptions(every_kind_blob()):
        assert_same(kernel, label, blob)
        n += 1
    assert n > 1500


def test_corruptions_of_an_object_as_kernel(kernel: ModuleType) -> None:
    fixed = to_bytes(open_object(EXAMPLES / "globals_calls.o").btf, keep_strings=True)
    items = list(corruptions(fixed))
    for label, blob in random.Random(6).sample(items, min(800, len(items))):
        assert_same(kernel, label, blob)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_byte_flips_as_kernel(kernel: ModuleType, data: st.DataObject) -> None:
    blob = bytearray(every_kind_blob())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    assert_same(kernel, "flipped", bytes(blob))


def test_vmlinux_as_kernel(kernel: ModuleType) -> None:
    path = Path("/sys/kernel/btf/vmlinux")
    if not path.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux")
    assert_same(kernel, "vmlinux", path.read_bytes())
