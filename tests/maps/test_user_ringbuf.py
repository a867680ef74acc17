"""BPF_MAP_TYPE_USER_RINGBUF: creation rules and element commands against the live kernel,
the user-space producer (libbpf's ``user_ring_buffer__*`` rules), and records produced the
same way in the live kernel's map (through its mmap) and pybpf's, drained by the same
program: the retvals must be equal on both tiers."""

from __future__ import annotations

import errno
import mmap
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pybpf.errors import BpfError
from pybpf.kernel import Kernel
from pybpf.maps.user_ringbuf_producer import UserRingBuffer
from pybpf.program import Program

USER_RINGBUF = 31
PAGE = mmap.PAGESIZE

sys.path.insert(0, str(Path(__file__).parent.parent / "verifier"))
import test_dynptr_run as drain_case  # noqa: E402  (the drain program and its BTF)


@pytest.mark.parametrize("geometry", [
    (0, 0, 4096, 0), (0, 0, 8192, 0), (4, 0, 4096, 0), (0, 8, 4096, 0), (0, 0, 1000, 0),
    (0, 0, 6144, 0), (0, 0, 0, 0), (0, 0, 4096, 1), (0, 0, 4096, 4),
])
def test_create_errno_matches_kernel(kernel: ModuleType, geometry: tuple[int, int, int, int]) -> None:
    key, value, entries, flags = geometry
    fd, err = kernel.map_create_raw(USER_RINGBUF, key, value, entries, flags)
    if fd >= 0:
        kernel.close(fd)
    k = Kernel()
    try:
        m = k.map_create(USER_RINGBUF, key, value, entries, flags)
        got = 0
        m.close()
    except BpfError as e:
        got = e.errno
    assert got == err


def test_element_commands_are_enotsupp_like_the_kernel(kernel: ModuleType, kernel_fds: Any) -> None:
    fd = kernel_fds.map_create(USER_RINGBUF, 0, 0, 4096, name=b"urb")
    want = [kernel.map_lookup_raw(fd, b"", 0)[0], kernel.map_update_raw(fd, b"", b""),
            kernel.map_delete_raw(fd, b""), kernel.map_get_next_key_raw(fd, None, 0)[0]]
    k = Kernel()
    m = k.map_create(USER_RINGBUF, 0, 0, 4096)
    got = []
    for op in (lambda: m.lookup(b""), lambda: m.update(b"", b""), lambda: m.delete(b""),
               lambda: m.get_next_key(None)):
        try:
            op()
            got.append(0)
        except BpfError as e:
            got.append(e.errno)
    assert got == want and all(got)


def _producer(size: int = 4096) -> tuple[Kernel, Any, UserRingBuffer]:
    k = Kernel()
    m = k.map_create(USER_RINGBUF, 0, 0, size, name=b"urb")
    return k, m, UserRingBuffer(m.kmap.bmap)


def test_reserve_moves_producer_pos_and_marks_busy() -> None:
    _, _, urb = _producer()
    view = urb.reserve(5)
    assert urb.producer_pos == 16 and len(view) == 5
    hdr = struct.unpack_from("<II", urb.rb.data.mv, 0)
    assert hdr == (5 | 1 << 31, 0)
    urb.submit(view)
    assert struct.unpack_from("<I", urb.rb.data.mv, 0)[0] == 5
    view = urb.reserve(0)
    urb.discard(view)
    assert struct.unpack_from("<I", urb.rb.data.mv, 16)[0] == 1 << 30


def test_reserve_refuses_what_cannot_fit() -> None:
    _, _, urb = _producer()
    for size in (4096, 1 << 30, 1 << 31, -1):
        with pytest.raises(BpfError) as e:
            urb.reserve(size)
        assert e.value.errno == errno.E2BIG
    urb.reserve(4088)  # header + 4088 bytes: the whole ring
    with pytest.raises(BpfError) as e:
        urb.reserve(1)
    assert e.value.errno == errno.ENOSPC
    with pytest.raises(BpfError) as e:
        urb.reserve_blocking(1, timeout_ms=10)
    assert e.value.errno == errno.ENOSPC


def test_commit_of_a_foreign_view_is_einval() -> None:
    _, _, urb = _producer()
    view = urb.reserve(8)
    with pytest.raises(BpfError) as e:
        urb.submit(memoryview(bytearray(8)))
    assert e.value.errno == errno.EINVAL
    urb.submit(view)
    with pytest.raises(BpfError) as e:
        urb.submit(view)  # twice
    assert e.value.errno == errno.EINVAL


def test_producer_needs_a_user_ringbuf() -> None:
    k = Kernel()
    rb = k.map_create(27, 0, 0, 4096)
    with pytest.raises(BpfError) as e:
        UserRingBuffer(rb.kmap.bmap)
    assert e.value.errno == errno.EINVAL


class _LiveProducer:
    """libbpf's producer over the live kernel's map: consumer page read-only at offset 0,
    producer page and the twice-mapped data writable from offset PAGE_SIZE."""

    def __init__(self, fd: int, size: int) -> None:
        self.size = size
        self.cons = mmap.mmap(fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
        self.prod = mmap.mmap(fd, PAGE + 2 * size, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE, offset=PAGE)

    def write(self, payload: bytes, flag: int) -> None:
        pos = struct.unpack_from("<Q", self.prod, 0)[0]
        off = PAGE + (pos & (self.size - 1))
        struct.pack_into("<II", self.prod, off, len(payload) | flag, 0)
        self.prod[off + 8:off + 8 + len(payload)] = payload
        struct.pack_into("<Q", self.prod, 0, pos + ((len(payload) + 15) & ~7))

    def close(self) -> None:
        self.cons.close()
        self.prod.close()


def _write(urb: UserRingBuffer, payload: bytes, flag: int) -> None:
    view = urb.reserve(len(payload))
    view[:] = payload
    if flag == 1 << 30:
        urb.discard(view)
    elif flag == 0:
        urb.submit(view)  # BUSY (1 << 31): left reserved, never committed


ROUNDS = [
    [(struct.pack("<Q", 5), 0), (struct.pack("<QI", 7, 1), 0), (struct.pack("<Q", 1000), 1 << 30),
     (struct.pack("<Q", 11), 0)],
    [(struct.pack("<Q", 0xFF), 0), (struct.pack("<Q", 1), 0)],
    [],
    [(struct.pack("<Q", 3), 1 << 31), (struct.pack("<Q", 4), 0)],
]


@pytest.mark.parametrize("jit", [0, 1], ids=["interp", "jit"])
def test_drain_of_produced_records_matches_kernel(kernel: ModuleType, kernel_fds: Any,
                                                  jit: int) -> None:
    import os

    from pybpf.isa.insn import encode

    fd = kernel_fds.map_create(USER_RINGBUF, 0, 0, 4096, name=b"urb")
    btf = drain_case._callback_btf(kernel, drain_case.DRAIN)
    try:
        res = kernel_fds.prog_load(drain_case.XDP,
                                   encode(drain_case._build(drain_case.DRAIN, {drain_case.URB_MARK: fd})),
                                   log_level=1, log_size=1 << 20, **btf)
    finally:
        os.close(btf["prog_btf_fd"])
    assert res.ok, res.log
    live = _LiveProducer(fd, 4096)
    k = Kernel(sysctls={"bpf_jit_enable": jit})
    m = k.map_create(USER_RINGBUF, 0, 0, 4096, name=b"urb")
    prog = Program.load(k, drain_case.XDP, drain_case._build(drain_case.DRAIN,
                                                             {drain_case.URB_MARK: m.fd}))
    urb = UserRingBuffer(m.kmap.bmap)
    try:
        for records in ROUNDS:
            for payload, flag in records:
                live.write(payload, flag)
                _write(urb, payload, flag)
            for _ in range(2):
                want = kernel.prog_test_run(res.fd, drain_case.PKT,
                                            data_size_out=len(drain_case.PKT)).retval
                assert prog.test_run(drain_case.PKT).retval == want
    finally:
        live.close()
