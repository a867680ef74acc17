"""``bpf_perf_event_output`` from tracing hooks into a PERF_EVENT_ARRAY, read back with
the perf reader (what BCC's ``open_perf_buffer`` and libbpf's ``perf_buffer`` do)."""

from __future__ import annotations

import struct

from pybpf.isa.asm import assemble
from pybpf.kernel import Kernel
from pybpf.maps.perf_reader import PerfBuffer
from pybpf.program import Program

KPROBE, TRACEPOINT, PERF_EVENT_ARRAY = 2, 5, 4


def _emit_ctx_field(map_fd: int, off: int) -> str:
    """Copy the u64 at ctx+off to the stack and output it on the current CPU."""
    return f"""
        r6 = r1
        r2 = *(u64 *)(r1 + {off})
        *(u64 *)(r10 - 8) = r2
        r1 = r6
        r2 = pseudo[1]:{map_fd}
        r3 = 0xffffffff ll
        r4 = r10
        r4 += -8
        r5 = 8
        call 25
        exit"""


def test_kprobe_and_tracepoint_output_reach_the_reader() -> None:
    k = Kernel()
    events = k.map_create(PERF_EVENT_ARRAY, 4, 4, 1)
    got: list[tuple[int, int]] = []
    reader = PerfBuffer(events.kmap.bmap, 1, lambda cpu, data: got.append(
        (cpu, struct.unpack("<Q", data[:8])[0])))
    try:
        @k.kprobe
        def open_file(fd: int) -> int:
            return fd

        tp = k.tracepoint("app", "done", fields=[("u64", "bytes")])
        kp = Program.load(k, KPROBE, assemble(_emit_ctx_field(events.fd, 112), syntax="kernel"))
        tpp = Program.load(k, TRACEPOINT, assemble(_emit_ctx_field(events.fd, 8),
                                                   syntax="kernel"))
        with kp.attach_kprobe(open_file), tpp.attach_tracepoint("app", "done"):
            open_file(7)
            assert tp.fire(bytes=4096) == [0]
        assert reader.poll(100) == 2
        assert got == [(0, 7), (0, 4096)]
        open_file(8)  # detached: nothing more
        assert reader.poll(0) == 0
    finally:
        reader.close()


def test_output_without_a_reader_is_enoent() -> None:
    k = Kernel()
    events = k.map_create(PERF_EVENT_ARRAY, 4, 4, 1)
    tp = k.tracepoint("app", "x", fields=[("u64", "v")])
    prog = Program.load(k, TRACEPOINT, assemble(_emit_ctx_field(events.fd, 8), syntax="kernel"))
    with prog.attach_tracepoint("app", "x"):
        assert tp.fire(v=1) == [(-2) & 0xFFFFFFFFFFFFFFFF]  # no event in the CPU's slot
