"""Dynptr helpers at run time, on both tiers, against the live kernel's BPF_PROG_TEST_RUN.

Each XDP program below uses the dynptr helpers on real memory (a hash map value, a ring
buffer sample, the stack) and returns a number that depends on what they did (data read
back, an errno, the ring buffer's available bytes); the live kernel's retval and pybpf's on
the interpreter (``bpf_jit_enable=0``) and the JIT must be equal. A user ring buffer drain
runs end to end in pybpf: records written by "user space" with the kernel's header format
reach the callback through its CONST_PTR_TO_DYNPTR.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.testing.verifier_cases import callback_btf
from pybpf.testing.verifier_diff import callback_func_info, callback_slot, patch_map_marks

XDP = 6
RB_MARK, HASH_MARK, URB_MARK = 0x5EED, 0x4A5, 0x0B1
MAPS = {RB_MARK: (27, 0, 0, 4096, b"rb"), HASH_MARK: (1, 4, 64, 4, b"hash")}
PKT = bytes(64)

# r6 = the hash map's value for key 0 (the tests put one there)
LOOKUP = """
r1 = 0
*(u32 *)(r10 - 40) = r1
r1 = 0x4a5 ll
r2 = r10
r2 += -40
call 1
if r0 != 0 goto +2
r0 = 99
exit
r6 = r0
"""
# r7 = return of bpf_dynptr_from_mem(r6, SIZE, FLAGS, fp-16)
FROM_MEM = """
r1 = r6
r2 = {size}
r3 = {flags}
r4 = r10
r4 += -16
call 197
r7 = r0
"""
WRITE_42 = """
r1 = 42
*(u64 *)(r10 - 32) = r1
r1 = r10
r1 += -16
r2 = {off}
r3 = r10
r3 += -32
r4 = 8
r5 = 0
call 202
r8 = r0
"""
READ_BACK = """
r1 = r10
r1 += -48
r2 = 8
r3 = r10
r3 += -16
r4 = {off}
r5 = 0
call 201
r9 = r0
"""

# copy the dynptr's 16 bytes at fp-16 to fp-64 with bpf_probe_read_kernel
PEEK = """
r1 = r10
r1 += -64
r2 = 16
r3 = r10
r3 += -16
call 113
"""

PROGRAMS: dict[str, str] = {
    # write 42 through the dynptr, read it back through it: 42
    "local_roundtrip": LOOKUP + FROM_MEM.format(size=16, flags=0) + WRITE_42.format(off=8)
    + READ_BACK.format(off=8) + "r0 = *(u64 *)(r10 - 48)\nexit\n",
    # ... and the map value itself changed: 42 at offset 8
    "local_write_reaches_map": LOOKUP + FROM_MEM.format(size=16, flags=0) + WRITE_42.format(off=8)
    + "r0 = *(u64 *)(r6 + 8)\nexit\n",
    # bad flags: -EINVAL, and the dynptr is null (reads fail with -EINVAL too)
    "from_mem_flags": LOOKUP + FROM_MEM.format(size=8, flags=1) + READ_BACK.format(off=0)
    + "r0 = r7\nr0 = -r0\nr9 = -r9\nr9 <<= 8\nr0 |= r9\nexit\n",
    # out of bounds write and read: -E2BIG each
    "local_oob": LOOKUP + FROM_MEM.format(size=8, flags=0) + WRITE_42.format(off=4)
    + READ_BACK.format(off=1) + "r0 = r8\nr0 = -r0\nr9 = -r9\nr9 <<= 8\nr0 |= r9\nexit\n",
    # a slice: non-NULL in bounds, NULL past the end
    "local_data": LOOKUP + FROM_MEM.format(size=16, flags=0) + """
r1 = r10
r1 += -16
r2 = 8
r3 = 8
call 203
r8 = 1
if r0 != 0 goto +1
r8 = 0
r1 = r10
r1 += -16
r2 = 12
r3 = 8
call 203
r0 = r8
exit
""",
    # reserve a ring buffer sample, fill it via a slice, submit: 16 bytes available
    "ringbuf_submit": """
r1 = 0x5eed ll
r2 = 8
r3 = 0
r4 = r10
r4 += -16
call 198
r6 = r0
r1 = r10
r1 += -16
r2 = 0
r3 = 8
call 203
if r0 == 0 goto +2
r1 = 0x1234
*(u64 *)(r0 + 0) = r1
r1 = r10
r1 += -16
r2 = 0
call 199
r1 = 0x5eed ll
r2 = 0
call 134
r0 += r6
exit
""",
    # too big for the ring: -EINVAL and a null dynptr, which discard accepts
    "ringbuf_reserve_too_big": """
r1 = 0x5eed ll
r2 = 8192
r3 = 0
r4 = r10
r4 += -16
call 198
r6 = r0
r1 = r10
r1 += -16
r2 = 0
call 200
r0 = r6
r0 = -r0
exit
""",
    # flags: -EINVAL
    "ringbuf_reserve_flags": """
r1 = 0x5eed ll
r2 = 8
r3 = 1
r4 = r10
r4 += -16
call 198
r6 = r0
r1 = r10
r1 += -16
r2 = 0
call 200
r0 = r6
r0 = -r0
exit
""",
    # struct bpf_dynptr_kern as the program can see it (bpf_probe_read_kernel of its 16
    # bytes): the size word is size | type << 28 (LOCAL 1), the offset 0
    "layout_local": LOOKUP + FROM_MEM.format(size=8, flags=0) + PEEK + "r0 = *(u32 *)(r10 - 56)\nexit\n",
    "layout_local_offset": LOOKUP + FROM_MEM.format(size=8, flags=0) + PEEK + "r0 = *(u32 *)(r10 - 52)\nexit\n",
    "layout_local_data_is_value": LOOKUP + FROM_MEM.format(size=8, flags=0) + PEEK
    + "r1 = *(u64 *)(r10 - 64)\nr0 = 1\nif r1 == r6 goto +1\nr0 = 0\nexit\n",
    "layout_failed_init_is_null": LOOKUP + FROM_MEM.format(size=8, flags=1) + PEEK
    + "r0 = *(u64 *)(r10 - 64)\nr1 = *(u64 *)(r10 - 56)\nr0 |= r1\nexit\n",
    # RINGBUF is type 2; submit zeroes the dynptr
    "layout_ringbuf": """
r1 = 0x5eed ll
r2 = 24
r3 = 0
r4 = r10
r4 += -16
call 198
""" + PEEK + """
r6 = *(u32 *)(r10 - 56)
r1 = r10
r1 += -16
r2 = 0
call 199
""" + PEEK + """
r0 = *(u64 *)(r10 - 64)
r0 += r6
exit
""",
}


def _build(text: str, fds: dict[int, int]) -> list[Insn]:
    return patch_map_marks(assemble(text), fds)


def _kernel_retval(kernel: ModuleType, fds: Any, text: str) -> int:
    mfds = {mark: fds.map_create(t, k, v, n, name=name) for mark, (t, k, v, n, name) in MAPS.items()}
    kernel.map_update(mfds[HASH_MARK], bytes(4), bytes(64))
    res = fds.prog_load(XDP, encode(_build(text, mfds)), log_level=1, log_size=1 << 20)
    assert res.ok, res.log
    run = kernel.prog_test_run(res.fd, PKT, data_size_out=len(PKT))
    assert run.errno == 0
    return int(run.retval)


def _pybpf_retval(text: str, jit: int) -> tuple[int, Any]:
    k = Kernel(sysctls={"bpf_jit_enable": jit})
    maps = {mark: k.map_create(t, kk, v, n, name=name) for mark, (t, kk, v, n, name) in MAPS.items()}
    maps[HASH_MARK].update(bytes(4), bytes(64))
    prog = Program.load(k, XDP, _build(text, {m: h.fd for m, h in maps.items()}))
    return int(prog.test_run(PKT).retval), maps


@pytest.mark.parametrize("jit", [0, 1], ids=["interp", "jit"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_dynptr_retval_matches_kernel(kernel: ModuleType, kernel_fds: Any, name: str, jit: int) -> None:
    text = PROGRAMS[name]
    assert _pybpf_retval(text, jit)[0] == _kernel_retval(kernel, kernel_fds, text)


@pytest.mark.parametrize("jit", [0, 1], ids=["interp", "jit"])
def test_local_roundtrip_without_kernel(jit: int) -> None:
    assert _pybpf_retval(PROGRAMS["local_roundtrip"], jit)[0] == 42


@pytest.mark.parametrize("jit", [0, 1], ids=["interp", "jit"])
def test_ringbuf_dynptr_record_reaches_consumer(jit: int) -> None:
    retval, maps = _pybpf_retval(PROGRAMS["ringbuf_submit"], jit)
    assert retval == 16
    rb = maps[RB_MARK].kmap.bmap
    hdr_len, _ = struct.unpack_from("<II", rb.data.mv, 0)
    assert hdr_len == 8
    assert struct.unpack_from("<Q", rb.data.mv, 8)[0] == 0x1234


# -- bpf_user_ringbuf_drain end to end ------------------------------------------------------
@pytest.fixture(scope="module")
def user_ringbuf() -> Iterator[None]:
    """BPF_MAP_TYPE_USER_RINGBUF: the real one if maps/ has it, else the ring buffer's ops
    registered under type 31 for the duration of this module."""
    from pybpf.maps import ops as map_ops

    if map_ops.find_map_ops(31) is not None:
        yield
        return
    from pybpf.maps.type_ringbuf import RingBufOps

    class UserRingBufOps(RingBufOps):
        map_type = 31

    map_ops._REGISTRY[31] = UserRingBufOps()
    try:
        yield
    finally:
        map_ops._REGISTRY.pop(31, None)


# main: r0 = drain(urb, cb, &sum, 0) * 1000 + sum; cb: sum += first u64 of the record,
# stop (return 1) when it is 0xff (or when bpf_dynptr_read fails)
DRAIN = """
r1 = 0
*(u64 *)(r10 - 8) = r1
r1 = 0x0b1 ll
r2 = subprog[cb]
r3 = r10
r3 += -8
r4 = 0
call 209
r0 *= 1000
r1 = *(u64 *)(r10 - 8)
r0 += r1
exit
cb:
r6 = r2
r3 = r1
r1 = r10
r1 += -8
r2 = 8
r4 = 0
r5 = 0
call 201
if r0 == 0 goto +2
r0 = 1
exit
r1 = *(u64 *)(r10 - 8)
r2 = *(u64 *)(r6 + 0)
r2 += r1
*(u64 *)(r6 + 0) = r2
r0 = 0
if r1 != 0xff goto +1
r0 = 1
exit
"""


def _produce(rb: Any, records: list[tuple[bytes, int]]) -> None:
    """User space's side: records with the kernel's 8-byte header, then producer_pos."""
    pos = rb.producer_pos
    for payload, flags in records:
        off = pos & rb.mask
        struct.pack_into("<II", rb.data.mv, off, len(payload) | flags, 0)
        rb.data.mv[off + 8:off + 8 + len(payload)] = payload
        pos += (len(payload) + 8 + 7) & ~7
    struct.pack_into("<Q", rb.meta.mv, 4096, pos)


@pytest.mark.parametrize("jit", [0, 1], ids=["interp", "jit"])
def test_user_ringbuf_drain_end_to_end(user_ringbuf: None, jit: int) -> None:
    k = Kernel(sysctls={"bpf_jit_enable": jit})
    urb = k.map_create(31, 0, 0, 4096, name=b"urb")
    prog = Program.load(k, XDP, _build(DRAIN, {URB_MARK: urb.fd}))
    rb = urb.kmap.bmap
    _produce(rb, [(struct.pack("<Q", 5), 0), (struct.pack("<QI", 7, 1), 0),
                  (struct.pack("<Q", 1000), 1 << 30),  # discarded by user space
                  (struct.pack("<Q", 11), 0)])
    assert prog.test_run(PKT).retval == 3 * 1000 + 23
    assert rb.consumer_pos == rb.producer_pos
    # the callback stops the drain: the record after the stop stays for next time
    _produce(rb, [(struct.pack("<Q", 0xFF), 0), (struct.pack("<Q", 1), 0)])
    assert prog.test_run(PKT).retval == 1 * 1000 + 0xFF
    assert prog.test_run(PKT).retval == 1 * 1000 + 1
    # a record still being written (BUSY) ends the drain
    _produce(rb, [(struct.pack("<Q", 3), 1 << 31)])
    assert prog.test_run(PKT).retval == 0


def test_user_ringbuf_drain_of_empty_ring_matches_kernel(kernel: ModuleType, kernel_fds: Any,
                                                         user_ringbuf: None) -> None:
    """Nothing produced: the live kernel and both tiers drain nothing (retval 0)."""
    fd = kernel_fds.map_create(31, 0, 0, 4096, name=b"urb")
    btf = _callback_btf(kernel, DRAIN)
    try:
        res = kernel_fds.prog_load(XDP, encode(_build(DRAIN, {URB_MARK: fd})), log_level=1, log_size=1 << 20,
                                   **btf)
    finally:
        os.close(btf["prog_btf_fd"])
    assert res.ok, res.log
    want = kernel.prog_test_run(res.fd, PKT, data_size_out=len(PKT)).retval
    for jit in (0, 1):
        k = Kernel(sysctls={"bpf_jit_enable": jit})
        urb = k.map_create(31, 0, 0, 4096, name=b"urb")
        prog = Program.load(k, XDP, _build(DRAIN, {URB_MARK: urb.fd}))
        assert prog.test_run(PKT).retval == want == 0


def _callback_btf(kernel: ModuleType, text: str) -> dict[str, Any]:
    """func_info naming the callback (the kernel wants it for a ``subprog[...]`` reference)."""

    btf = kernel.btf_load(callback_btf(("ptr", "ptr")))
    assert btf.ok, btf.log
    return callback_func_info(btf.fd, callback_slot(text))
