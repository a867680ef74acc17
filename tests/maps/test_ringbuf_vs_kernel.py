"""Ring buffer records and positions against the live kernel.

A socket filter reserves records of given sizes and submits or discards them in a given
order (NULL-checked, as the verifier demands); user space maps the kernel ring's
consumer page (read-write) and producer page + data (read-only) and walks the records.
The same reservations and commits on a pybpf ring must succeed or fail alike and leave
the same record headers (length, BUSY/DISCARD bits, page offset) and positions; between
runs the consumer may advance.
"""

from __future__ import annotations

import mmap
import os
import struct
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybpf.uapi as U
from pybpf.isa.insn import Insn, encode, ld_imm64
from pybpf.maps.api import create_map
from pybpf.maps.type_ringbuf import RingBufMap

PAGE = 4096
SIZE = 4096


def ring_prog(kernel: ModuleType, fd: int, sizes: list[int], order: list[tuple[int, bool]]
              ) -> int:
    """Reserve ``sizes`` into r6..r9, note successes in a bitmask, release in ``order``."""
    insns = [Insn(0x7A, 10, 0, -8, 0)]  # *(u64 *)(r10 - 8) = 0
    for i, size in enumerate(sizes):
        insns += [*ld_imm64(1, fd, U.BPF_PSEUDO_MAP_FD), Insn(0xB7, 2, 0, 0, size),
                  Insn(0xB7, 3, 0, 0, 0), Insn(0x85, 0, 0, 0, U.BPF_FUNC_ringbuf_reserve),
                  Insn(0xBF, 6 + i, 0, 0, 0)]
        insns += [Insn(0x15, 6 + i, 0, 3, 0),                 # if r(6+i) == 0 goto +3
                  Insn(0x79, 1, 10, -8, 0), Insn(0x47, 1, 0, 0, 1 << i),
                  Insn(0x7B, 10, 1, -8, 0)]
    for slot, discard in order:
        helper = U.BPF_FUNC_ringbuf_discard if discard else U.BPF_FUNC_ringbuf_submit
        insns += [Insn(0x15, 6 + slot, 0, 3, 0), Insn(0xBF, 1, 6 + slot, 0, 0),
                  Insn(0xB7, 2, 0, 0, U.BPF_RB_NO_WAKEUP), Insn(0x85, 0, 0, 0, helper)]
    insns += [Insn(0x79, 0, 10, -8, 0), Insn(0x95, 0, 0, 0, 0)]
    res = kernel.prog_load(U.BPF_PROG_TYPE_SOCKET_FILTER, encode(insns))
    assert res.ok, res.log
    return int(res.fd)


class KernelRing:
    def __init__(self, kernel: ModuleType) -> None:
        self.k = kernel
        self.fd = kernel.map_create(U.BPF_MAP_TYPE_RINGBUF, 0, 0, SIZE)
        self.cons = mmap.mmap(self.fd, PAGE, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self.prod = mmap.mmap(self.fd, PAGE + 2 * SIZE, mmap.MAP_SHARED, mmap.PROT_READ,
                              offset=PAGE)

    def run(self, sizes: list[int], order: list[tuple[int, bool]]) -> int:
        prog = ring_prog(self.k, self.fd, sizes, order)
        try:
            out = self.k.prog_test_run(prog, data_in=bytes(64))
            assert out.errno == 0
            return int(out.retval)
        finally:
            os.close(prog)

    def positions(self) -> tuple[int, int]:
        return struct.unpack_from("<Q", self.cons, 0)[0], struct.unpack_from("<Q", self.prod, 0)[0]

    def consume(self, pos: int) -> None:
        struct.pack_into("<Q", self.cons, 0, pos)

    def header(self, pos: int) -> tuple[int, int]:
        return struct.unpack_from("<II", self.prod, PAGE + (pos & (SIZE - 1)))

    def close(self) -> None:
        self.cons.close()
        self.prod.close()
        os.close(self.fd)


class OurRing:
    def __init__(self) -> None:
        bmap = create_map(U.BPF_MAP_TYPE_RINGBUF, 0, 0, SIZE)
        assert isinstance(bmap, RingBufMap)
        self.rb = bmap

    def run(self, sizes: list[int], order: list[tuple[int, bool]]) -> int:
        samples = [self.rb.reserve(size) for size in sizes]
        for slot, discard in order:
            if samples[slot]:
                self.rb.commit(samples[slot], U.BPF_RB_NO_WAKEUP, discard)
        return sum(1 << i for i, s in enumerate(samples) if s)

    def positions(self) -> tuple[int, int]:
        return self.rb.consumer_pos, self.rb.producer_pos

    def consume(self, pos: int) -> None:
        self.rb.consumer_pos = pos

    def header(self, pos: int) -> tuple[int, int]:
        return struct.unpack_from("<II", self.rb.data.mv, pos & (SIZE - 1))

    def close(self) -> None:
        self.rb.ops.map_free(self.rb)


def records(ring: Any) -> list[tuple[int, int]]:
    cons, prod = ring.positions()
    out = []
    while cons < prod:
        length, pg_off = ring.header(cons)
        out.append((length, pg_off))
        cons += ((length & 0x3FFFFFFF) + 8 + 7) & ~7
    return out


runs = st.lists(
    st.tuples(st.lists(st.integers(1, 2000), min_size=1, max_size=4).flatmap(
        lambda sizes: st.tuples(st.just(sizes), st.permutations(range(len(sizes))),
                                st.lists(st.booleans(), min_size=len(sizes),
                                         max_size=len(sizes)))),
              st.sampled_from(["none", "all", "half"])),
    min_size=1, max_size=5)


def test_ringbuf_records_and_positions_match_kernel(kernel: ModuleType) -> None:
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(runs)
    def check(case: list[tuple[Any, str]]) -> None:
        theirs, ours = KernelRing(kernel), OurRing()
        try:
            for (sizes, perm, discards), consume in case:
                order = [(slot, discards[slot]) for slot in perm]
                assert ours.run(sizes, order) == theirs.run(sizes, order)
                assert ours.positions() == theirs.positions()
                assert records(ours) == records(theirs)
                cons, prod = theirs.positions()
                new = {"none": cons, "all": prod}.get(consume)
                if new is None:
                    recs = records(theirs)
                    new = cons
                    for length, _ in recs[:len(recs) // 2]:
                        new += ((length & 0x3FFFFFFF) + 8 + 7) & ~7
                theirs.consume(new)
                ours.consume(new)
        finally:
            theirs.close()
            ours.close()

    check()


@pytest.mark.parametrize("size", [0, 1, SIZE - 8, SIZE - 7, SIZE])
def test_edge_sizes_match_kernel(kernel: ModuleType, size: int) -> None:
    theirs, ours = KernelRing(kernel), OurRing()
    try:
        assert ours.run([size], [(0, False)]) == theirs.run([size], [(0, False)])
        assert ours.positions() == theirs.positions()
        assert records(ours) == records(theirs)
    finally:
        theirs.close()
        ours.close()
