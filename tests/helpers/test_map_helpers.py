"""Programs on the interpreter calling the map helpers on pybpf maps."""

from __future__ import annotations

import threading

import pybpf.uapi as U
from pybpf.helpers.maps import MAP_HELPERS
from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn
from pybpf.maps.api import Map
from pybpf.runtime.interpreter import CompiledProgram

HELPERS = {fid: p.impl for fid, p in MAP_HELPERS.items()}


def ld_map(reg: int, addr: int) -> list[Insn]:
    return [Insn(0x18, reg, 1, 0, addr & 0xFFFFFFFF), Insn(0, 0, 0, 0, addr >> 32)]


def counter_prog(bmap_addr: int) -> CompiledProgram:
    """key 0 → lookup → atomic add 1 to the u64 value; returns 1 if found."""
    insns = [Insn(0x62, 10, 0, -4, 0)]  # *(u32 *)(r10 - 4) = 0
    insns += ld_map(1, bmap_addr)
    insns += [Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
              Insn(0x85, 0, 0, 0, U.BPF_FUNC_map_lookup_elem),
              Insn(0x15, 0, 0, 3, 0),  # if r0 == 0 goto out
              Insn(0xB7, 1, 0, 0, 1),
              Insn(0xDB, 0, 1, 0, 0),  # lock *(u64 *)(r0 + 0) += r1
              Insn(0xB7, 0, 0, 0, 1),
              Insn(0x95, 0, 0, 0, 0)]
    return CompiledProgram(insns, helpers=HELPERS)


def test_lookup_returns_stable_address_and_atomic_adds_from_threads() -> None:
    m = Map.create(U.BPF_MAP_TYPE_ARRAY, 4, 8, 1)
    prog = counter_prog(m.bmap.addr)

    def work() -> None:
        for _ in range(300):
            assert prog.run() == 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m[0] == 1200


def test_hash_update_lookup_delete_from_program() -> None:
    m = Map.create(U.BPF_MAP_TYPE_HASH, 4, 8, 4)
    src = assemble("""
        *(u32 *)(r10 - 4) = 7
        *(u64 *)(r10 - 16) = 42
    """)
    insns = list(src) + ld_map(1, m.bmap.addr) + [
        Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
        Insn(0xBF, 3, 10, 0, 0), Insn(0x07, 3, 0, 0, -16),
        Insn(0xB7, 4, 0, 0, U.BPF_NOEXIST),
        Insn(0x85, 0, 0, 0, U.BPF_FUNC_map_update_elem),
        Insn(0x95, 0, 0, 0, 0)]
    prog = CompiledProgram(insns, helpers=HELPERS)
    assert prog.run() == 0
    assert m[7] == 42
    assert prog.run() == (-17) & ((1 << 64) - 1)  # EEXIST on the second NOEXIST insert


def test_ringbuf_output_reaches_consumer() -> None:
    rb = Map.create(U.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096)
    got: list[bytes] = []
    consumer = rb.open_ring_buffer(got.append)
    insns = [Insn(122, 10, 0, -8, 4660), *ld_map(1, rb.bmap.addr), Insn(191, 2, 10, 0, 0), Insn(7, 2, 0, 0, -8), Insn(183, 3, 0, 0, 8), Insn(183, 4, 0, 0, 0), Insn(133, 0, 0, 0, U.BPF_FUNC_ringbuf_output), Insn(149, 0, 0, 0, 0)]
    prog = CompiledProgram(insns, helpers=HELPERS)
    assert prog.run() == 0
    assert consumer.poll(1000) == 1
    assert got == [(0x1234).to_bytes(8, "little")]


def test_queue_push_pop_from_program() -> None:
    q = Map.create(U.BPF_MAP_TYPE_QUEUE, 0, 4, 2)
    q.push(5)
    insns = [*ld_map(1, q.bmap.addr), Insn(191, 2, 10, 0, 0), Insn(7, 2, 0, 0, -4), Insn(133, 0, 0, 0, U.BPF_FUNC_map_pop_elem), Insn(97, 0, 10, -4, 0), Insn(149, 0, 0, 0, 0)]
    prog = CompiledProgram(insns, helpers=HELPERS)
    assert prog.run() == 5


def for_each_prog(bmap_addr: int, stop: int) -> CompiledProgram:
    """Sum every value into a stack slot with bpf_for_each_map_elem; r0 = sum * 16 + count.

    The callback is at instruction 13; r2 holds its index, as after the loader resolves
    a BPF_PSEUDO_FUNC ld_imm64. It returns ``stop`` (1 ends the walk early).
    """
    insns = [Insn(0x7A, 10, 0, -8, 0),                     # *(u64 *)(r10 - 8) = 0
             *ld_map(1, bmap_addr),
             Insn(0xB7, 2, 0, 0, 13),                      # r2 = callback
             Insn(0xBF, 3, 10, 0, 0), Insn(0x07, 3, 0, 0, -8),
             Insn(0xB7, 4, 0, 0, 0),
             Insn(0x85, 0, 0, 0, U.BPF_FUNC_for_each_map_elem),
             Insn(0xBF, 6, 0, 0, 0),                       # r6 = elements visited
             Insn(0x79, 0, 10, -8, 0),                     # r0 = sum
             Insn(0x27, 0, 0, 0, 16), Insn(0x0F, 0, 6, 0, 0),
             Insn(0x95, 0, 0, 0, 0),
             # callback(map, key, value, ctx)
             Insn(0x79, 0, 3, 0, 0),                       # r0 = *(u64 *)value
             Insn(0x79, 1, 4, 0, 0), Insn(0x0F, 1, 0, 0, 0),
             Insn(0x7B, 4, 1, 0, 0),                       # *(u64 *)ctx += r0
             Insn(0xB7, 0, 0, 0, stop),
             Insn(0x95, 0, 0, 0, 0)]
    return CompiledProgram(insns, helpers=HELPERS)


def test_for_each_map_elem_calls_back_through_the_interpreter() -> None:
    for map_type in (U.BPF_MAP_TYPE_HASH, U.BPF_MAP_TYPE_ARRAY):
        m = Map.create(map_type, 4, 8, 3)
        for k, v in ((0, 1), (1, 2), (2, 3)):
            m[k] = v
        assert for_each_prog(m.bmap.addr, 0).run() == 6 * 16 + 3
        first = next(iter(m))
        assert for_each_prog(m.bmap.addr, 1).run() == m[first] * 16 + 1
