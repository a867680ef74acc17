"""PERF_EVENT_ARRAY output: the perf ring's record framing vs the live kernel.

Kernel side: a ``PERF_COUNT_SW_BPF_OUTPUT`` software event opened with
``perf_event_open`` on CPU 0 (``PERF_SAMPLE_RAW``), its ring mmap'ed, installed in a
PERF_EVENT_ARRAY slot; a raw_tracepoint program calls ``bpf_perf_event_output`` through
BPF_PROG_TEST_RUN on CPU 0. pybpf side: ``Map.open_perf_buffer`` and the same program on
the interpreter. The raw records (type, size, raw size, payload; LOST records after an
overflow) must agree.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
from types import ModuleType

import pytest

import pybpf.uapi as U
from pybpf.helpers.maps import MAP_HELPERS
from pybpf.isa.insn import Insn, encode
from pybpf.maps.api import Map
from pybpf.runtime.context import RunContext
from pybpf.runtime.interpreter import CompiledProgram

PAGE = mmap.PAGESIZE
NR_PERF_EVENT_OPEN = 298  # x86_64
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
BPF_F_TEST_RUN_ON_CPU = 1
PAYLOAD = bytes(range(1, 17))


def perf_event_open_bpf_output(cpu: int) -> int:
    attr = bytearray(136)
    struct.pack_into("<IIQQQ", attr, 0, PERF_TYPE_SOFTWARE, len(attr),
                     PERF_COUNT_SW_BPF_OUTPUT, 1, PERF_SAMPLE_RAW)
    struct.pack_into("<I", attr, 48, 1)  # wakeup_events
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(NR_PERF_EVENT_OPEN, buf, -1, cpu, -1, 8)  # PERF_FLAG_FD_CLOEXEC
    if fd < 0:
        err = ctypes.get_errno()
        pytest.skip(f"perf_event_open not permitted here: {os.strerror(err)}")
    return int(fd)


def output_insns(map_ref: tuple[int, int], size: int) -> list[Insn]:
    """*(fp-16..) = PAYLOAD; bpf_perf_event_output(ctx, map, CURRENT_CPU, fp-16, size)."""
    lo, hi = struct.unpack("<QQ", PAYLOAD)
    src, imm = map_ref
    return [Insn(0x18, 2, 0, 0, lo & 0xFFFFFFFF), Insn(0, 0, 0, 0, lo >> 32),
            Insn(0x7B, 10, 2, -16, 0),
            Insn(0x18, 2, 0, 0, hi & 0xFFFFFFFF), Insn(0, 0, 0, 0, hi >> 32),
            Insn(0x7B, 10, 2, -8, 0),
            Insn(0x18, 2, src, 0, imm & 0xFFFFFFFF), Insn(0, 0, 0, 0, imm >> 32),
            Insn(0x18, 3, 0, 0, 0xFFFFFFFF), Insn(0, 0, 0, 0, 0),
            Insn(0xBF, 4, 10, 0, 0), Insn(0x07, 4, 0, 0, -16),
            Insn(0xB7, 5, 0, 0, size),
            Insn(0x85, 0, 0, 0, U.BPF_FUNC_perf_event_output),
            Insn(0x95, 0, 0, 0, 0)]


def read_records(mv: memoryview, data_off: int, data_size: int, head: int
                 ) -> list[tuple[int, int, bytes]]:
    """(type, size, body) of each record; SAMPLE bodies cut to raw_size + payload."""
    out = []
    pos = 0
    while pos < head:
        def at(p: int, n: int) -> bytes:
            return bytes(mv[data_off + (p % data_size) + i] for i in range(n)) \
                if (p % data_size) + n > data_size else \
                bytes(mv[data_off + p % data_size:data_off + p % data_size + n])
        rtype, _misc, size = struct.unpack("<IHH", at(pos, 8))
        body = at(pos + 8, size - 8)
        if rtype == 9:  # SAMPLE: u32 raw size + raw bytes (compare the payload part)
            raw = struct.unpack_from("<I", body)[0]
            body = body[:4] + body[4:4 + min(raw, len(PAYLOAD))]
        elif rtype == 2:  # LOST: u64 id (event-specific), u64 lost
            body = body[8:16]
        out.append((rtype, size, body))
        pos += size
    return out


SIZES = [1, 4, 5, 8, 13, 16]


def kernel_records(kernel: ModuleType, sizes: list[int], page_cnt: int, repeat: int = 1
                   ) -> list[tuple[int, int, bytes]]:
    efd = perf_event_open_bpf_output(0)
    mfd = kernel.map_create(U.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, os.cpu_count() or 1)
    ring = mmap.mmap(efd, (1 + page_cnt) * PAGE, flags=mmap.MAP_SHARED,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE)
    progs = []
    try:
        kernel.map_update(mfd, struct.pack("<I", 0), struct.pack("<I", efd))
        for size in sizes:
            insns = encode(output_insns((1, mfd), size))
            res = kernel.prog_load(U.BPF_PROG_TYPE_RAW_TRACEPOINT, insns)
            assert res.fd > 0, res
            progs.append(res.fd)
            for _ in range(repeat):
                tr = kernel.prog_test_run(res.fd, repeat=0, flags=BPF_F_TEST_RUN_ON_CPU, cpu=0)
                assert tr.errno == 0
        head = struct.unpack_from("<Q", ring, 1024)[0]
        data_off, data_size = struct.unpack_from("<QQ", ring, 1040)
        return read_records(memoryview(ring), data_off or PAGE, data_size or page_cnt * PAGE,
                            head)
    finally:
        for fd in progs:
            kernel.close(fd)
        ring.close()
        kernel.close(mfd)
        os.close(efd)


def pybpf_records(sizes: list[int], page_cnt: int, repeat: int = 1
                  ) -> list[tuple[int, int, bytes]]:
    m = Map.create(U.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, os.cpu_count() or 1)
    pb = m.open_perf_buffer(lambda cpu, data: None, page_cnt=page_cnt)
    try:
        helpers = {f: p.impl for f, p in MAP_HELPERS.items()}
        for size in sizes:
            prog = CompiledProgram(output_insns((0, m.bmap.addr), size), helpers=helpers)
            for _ in range(repeat):
                prog.run(ctx=RunContext())
        ev = pb.events[0]
        head = struct.unpack_from("<Q", ev.mv, 1024)[0]
        return read_records(ev.mv, PAGE, ev.size, head)
    finally:
        pb.close()


def test_sample_records_match_kernel(kernel: ModuleType) -> None:
    theirs = kernel_records(kernel, SIZES, 1)
    ours = pybpf_records(SIZES, 1)
    assert [r[0] for r in theirs] == [9] * len(SIZES)
    assert ours == theirs


def test_overflow_then_lost_record_matches_kernel(kernel: ModuleType) -> None:
    """One data page, 170 outputs of 16 bytes (32-byte records): the ring fills, later
    outputs are lost; nothing is read, so no LOST record yet — then compare what was kept."""
    theirs = kernel_records(kernel, [16], 1, repeat=170)
    ours = pybpf_records([16], 1, repeat=170)
    assert len(theirs) == len(ours) == PAGE // 32 - 1  # one byte always stays free
    assert ours == theirs


def test_reader_callbacks_see_payloads_and_lost_counts() -> None:
    m = Map.create(U.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, os.cpu_count() or 1)
    got: list[tuple[int, bytes]] = []
    lost: list[tuple[int, int]] = []
    pb = m.open_perf_buffer(lambda cpu, data: got.append((cpu, data)), page_cnt=1,
                            lost_cb=lambda cpu, n: lost.append((cpu, n)))
    helpers = {f: p.impl for f, p in MAP_HELPERS.items()}
    prog = CompiledProgram(output_insns((0, m.bmap.addr), 13), helpers=helpers)
    for _ in range(PAGE // 32 + 5):  # 13 bytes -> 32-byte records: 5 lost
        prog.run(ctx=RunContext())
    assert pb.poll(0) == PAGE // 32 - 1
    assert got[0] == (0, PAYLOAD[:13] + bytes(7))  # raw data as the ring holds it (padded)
    prog.run(ctx=RunContext())  # the next output first reports the loss
    pb.consume()
    assert lost == [(0, 6)]
    pb.close()
