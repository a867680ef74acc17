"""Native map fast paths: the JIT's map helpers must leave maps exactly as the interpreter does.

Every test runs the same operations through the interpreter (Python helpers) and through
JIT code whose map helpers are native (no bridge), on twin maps, and compares what the
helpers returned and what the maps hold afterwards as the Python map API sees them.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from pybpf.helpers.maps import MAP_HELPERS
from pybpf.isa.insn import Insn, ld_imm64
from pybpf.jit import compile_program, mapgen
from pybpf.maps.api import create_map
from pybpf.maps.bpf_lru import REF_WORD
from pybpf.maps.ringbuf_consumer import RingBufConsumer
from pybpf.runtime.context import RunContext
from pybpf.runtime.interpreter import CompiledProgram

# find_map_ops loads the type modules only while its registry is empty, and importing the
# ring-buffer consumer registers RINGBUF first: import the types this file uses.
for _mod in ("type_array", "type_hash", "type_lru_hash", "type_percpu_array", "type_percpu_hash",
             "type_ringbuf"):
    importlib.import_module(f"pybpf.maps.{_mod}")

HELPERS = {fid: proto.impl for fid, proto in MAP_HELPERS.items()}
HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY, LRU_HASH, LRU_PERCPU_HASH, RINGBUF = 1, 2, 5, 6, 9, 10, 27
F_ZERO_SEED = 0x40
M64 = (1 << 64) - 1
EXIT = Insn(0x95, 0, 0, 0, 0)


# --- programs -------------------------------------------------------------------------------
def prog_update(m: int) -> list[Insn]:
    """r0 = map_update_elem(m, &(u32)r1, &(u64)r2, r3)"""
    return [Insn(0x63, 10, 1, -4, 0), Insn(0x7B, 10, 2, -16, 0), Insn(0xBF, 4, 3, 0, 0),
            *ld_imm64(1, m, 1), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
            Insn(0xBF, 3, 10, 0, 0), Insn(0x07, 3, 0, 0, -16), Insn(0x85, 0, 0, 0, 2), EXIT]


def prog_lookup(m: int, helper: int = 1) -> list[Insn]:
    """r0 = *(u64 *)map_lookup_elem(m, &(u32)r1) or -1 (helper 195: on CPU r2)"""
    return [Insn(0x63, 10, 1, -4, 0), Insn(0xBF, 3, 2, 0, 0), *ld_imm64(1, m, 1),
            Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4), Insn(0x85, 0, 0, 0, helper),
            Insn(0x15, 0, 0, 2, 0), Insn(0x79, 0, 0, 0, 0), EXIT, Insn(0xB7, 0, 0, 0, -1), EXIT]


def prog_delete(m: int) -> list[Insn]:
    return [Insn(0x63, 10, 1, -4, 0), *ld_imm64(1, m, 1), Insn(0xBF, 2, 10, 0, 0),
            Insn(0x07, 2, 0, 0, -4), Insn(0x85, 0, 0, 0, 3), EXIT]


def prog_add(m: int) -> list[Insn]:
    """Look up key r1; if absent insert r2 (BPF_NOEXIST), else atomically add r2."""
    return [Insn(0x63, 10, 1, -4, 0), Insn(0x7B, 10, 2, -16, 0), Insn(0xBF, 6, 2, 0, 0),
            *ld_imm64(7, m, 1), Insn(0xBF, 1, 7, 0, 0), Insn(0xBF, 2, 10, 0, 0),
            Insn(0x07, 2, 0, 0, -4), Insn(0x85, 0, 0, 0, 1), Insn(0x15, 0, 0, 3, 0),
            Insn(0xDB, 0, 6, 0, 0), Insn(0xB7, 0, 0, 0, 0), EXIT,
            Insn(0xBF, 1, 7, 0, 0), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
            Insn(0xBF, 3, 10, 0, 0), Insn(0x07, 3, 0, 0, -16), Insn(0xB7, 4, 0, 0, 1),
            Insn(0x85, 0, 0, 0, 2), Insn(0x55, 0, 0, -16, 0), EXIT]


def twin_tiers(insns: list[Insn]) -> tuple[CompiledProgram, Any]:
    return CompiledProgram(insns, helpers=HELPERS), compile_program(insns, helpers=HELPERS)


def contents(m: Any) -> list[tuple[bytes, bytes]]:
    """The map as user space sees it: keys in iteration order with their values."""
    out = []
    key = None
    while True:
        try:
            key = m.ops.sys_get_next_key(m, key)
        except Exception:
            return out
        out.append((key, m.ops.sys_lookup(m, key, 0)))
        if len(out) > 100_000:
            raise AssertionError("endless iteration")


def new_map(map_type: int, key_size: int = 4, value_size: int = 8, max_entries: int = 16
            ) -> Any:
    flags = F_ZERO_SEED if map_type not in (ARRAY, PERCPU_ARRAY) else 0
    return create_map(map_type, key_size, value_size, max_entries, flags)


# --- differential -----------------------------------------------------------------------------
@pytest.mark.parametrize("map_type", [HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY])
def test_random_operations_leave_identical_maps(map_type: int) -> None:
    maps = [new_map(map_type), new_map(map_type)]
    progs = []
    for m, tier in zip(maps, ("interp", "jit"), strict=True):
        build = [prog_update(m.addr), prog_lookup(m.addr), prog_delete(m.addr),
                 prog_lookup(m.addr, 195)]
        if tier == "interp":
            progs.append([CompiledProgram(p, helpers=HELPERS) for p in build])
        else:
            jits = [compile_program(p, helpers=HELPERS) for p in build]
            assert not any(j.code.translation.uses_bridge for j in jits), "not native"
            progs.append(jits)
    rnd = random.Random(map_type)
    for step in range(600):
        op = rnd.randrange(4)
        key = rnd.randrange(20)
        args = [(key, rnd.randrange(1 << 64), rnd.choice([0, 0, 0, 1, 2, 3, 4, 1 << 40])),
                (key,), (key,), (key, rnd.choice([0, 1, 2, 5, 1 << 33]))][op]
        cpu = rnd.randrange(maps[0].nr_cpus)
        want = progs[0][op].run(*args, cpu=cpu)
        got = progs[1][op].run(*args, cpu=cpu)
        assert got == want, f"step {step}: op {op}{args} cpu {cpu}: JIT {got} != {want}"
        if step % 100 == 99:
            assert contents(maps[1]) == contents(maps[0])
    assert contents(maps[1]) == contents(maps[0])


@pytest.mark.parametrize("key_size", [1, 3, 4, 7, 8, 12, 13, 16, 40, 200])
def test_hash_key_sizes(key_size: int) -> None:
    """jhash is unrolled per key size: every tail length hashes as the Python table does."""
    m = new_map(HASH, key_size=key_size, value_size=4, max_entries=64)
    keys = [bytes((i * 31 + j) & 0xFF for j in range(key_size)) for i in range(40)]
    for i, k in enumerate(keys[:20]):
        m.ops.sys_update(m, k, i.to_bytes(4, "little"), 0)
    scratch = m.mem.alloc(max(key_size, 8), "key")
    try:
        look = [*ld_imm64(1, m.addr, 1), Insn(0xBF, 2, 6, 0, 0), Insn(0x85, 0, 0, 0, 1),
                Insn(0x15, 0, 0, 2, 0), Insn(0x61, 0, 0, 0, 0), EXIT, Insn(0xB7, 0, 0, 0, -1),
                EXIT]
        prog = [Insn(0xBF, 6, 1, 0, 0), *look]
        interp, jit = twin_tiers(prog)
        for k in keys:
            scratch.write(0, k)
            assert jit.run(scratch.start) == interp.run(scratch.start)
    finally:
        m.mem.remove(scratch)


def test_lru_lookup_is_native_and_sets_the_reference_bit() -> None:
    maps = [new_map(LRU_HASH), new_map(LRU_HASH)]
    for m in maps:
        for k in range(10):
            m.ops.sys_update(m, k.to_bytes(4, "little"), (k * 3).to_bytes(8, "little"), 0)
    interp = CompiledProgram(prog_lookup(maps[0].addr), helpers=HELPERS)
    jit = compile_program(prog_lookup(maps[1].addr), helpers=HELPERS)
    assert not jit.code.translation.uses_bridge
    for k in (1, 3, 5, 11):
        assert jit.run(k) == interp.run(k)
    ref = [[m.e32[i * m.ew + REF_WORD] for i in range(m.n_elems)] for m in maps]
    assert ref[0] == ref[1] and any(ref[1])


def test_lru_update_and_delete_are_native() -> None:
    m = new_map(LRU_HASH)
    jit = compile_program(prog_update(m.addr), helpers=HELPERS)
    assert not jit.code.translation.uses_bridge
    assert jit.run(1, 5, 0) == 0
    assert m.ops.sys_lookup(m, (1).to_bytes(4, "little"), 0) == (5).to_bytes(8, "little")
    delete = compile_program(prog_delete(m.addr), helpers=HELPERS)
    assert not delete.code.translation.uses_bridge
    assert delete.run(1) == 0 and delete.run(1) == (-errno.ENOENT) & M64
    assert contents(m) == []


@pytest.mark.parametrize(("map_type", "flags", "max_entries"),
                         [(LRU_HASH, 0, 4), (LRU_HASH, 0, 37), (LRU_HASH, 2, 16),
                          (LRU_PERCPU_HASH, 0, 16), (LRU_PERCPU_HASH, 2, 37)])
def test_lru_lists_stay_byte_identical_to_the_python_path(map_type: int, flags: int,
                                                          max_entries: int) -> None:
    """Native LRU updates/deletes (local free-list fast path, Python slow path) leave the
    LRU lists, ref bits and chains exactly as the interpreter's Python helpers do."""
    maps = [create_map(map_type, 4, 8, max_entries, F_ZERO_SEED | flags) for _ in range(2)]
    build = [prog_update, prog_lookup, prog_delete]
    interp = [CompiledProgram(p(maps[0].addr), helpers=HELPERS) for p in build]
    jits = [compile_program(p(maps[1].addr), helpers=HELPERS) for p in build]
    assert not any(j.code.translation.uses_bridge for j in jits)
    rnd = random.Random(map_type * 1000 + max_entries + flags)
    for step in range(1500):
        op = rnd.randrange(3)
        key = rnd.randrange(3 * max_entries)
        args = [(key, rnd.randrange(1 << 64), rnd.choice([0, 0, 0, 1, 2, 3])), (key,),
                (key,)][op]
        cpu = rnd.randrange(maps[0].nr_cpus)
        want = interp[op].run(*args, cpu=cpu)
        assert jits[op].run(*args, cpu=cpu) == want, f"step {step}: op {op}{args} cpu {cpu}"
        assert bytes(maps[1].lru_area.mv) == bytes(maps[0].lru_area.mv), f"step {step}"
        assert bytes(maps[1].e32) == bytes(maps[0].e32), f"step {step}"
    assert contents(maps[1]) == contents(maps[0])
    assert maps[1].count == maps[0].count


def test_map_pointer_that_is_not_a_constant_goes_through_python() -> None:
    a, b = new_map(HASH), new_map(ARRAY)
    # r1 = r1 ? a : b, decided at run time
    prog = [Insn(0xBF, 6, 1, 0, 0), Insn(0x63, 10, 2, -4, 0), *ld_imm64(1, a.addr, 1),
            Insn(0x55, 6, 0, 2, 0), *ld_imm64(1, b.addr, 1), Insn(0xBF, 2, 10, 0, 0),
            Insn(0x07, 2, 0, 0, -4), Insn(0x85, 0, 0, 0, 1), EXIT]
    jit = compile_program(prog, helpers=HELPERS)
    assert jit.code.translation.uses_bridge
    a.ops.sys_update(a, (2).to_bytes(4, "little"), (9).to_bytes(8, "little"), 0)
    assert jit.run(1, 2) == a.value_addr(a.index[(2).to_bytes(4, "little")])
    assert jit.run(0, 2) == b.base + 2 * 8


def test_constant_kept_in_a_callee_saved_register_is_specialised() -> None:
    m = new_map(ARRAY)
    prog = [*ld_imm64(6, m.addr, 1), Insn(0x63, 10, 1, -4, 0), Insn(0x15, 1, 0, 1, 7),
            Insn(0x07, 0, 0, 0, 1), Insn(0xBF, 1, 6, 0, 0), Insn(0xBF, 2, 10, 0, 0),
            Insn(0x07, 2, 0, 0, -4), Insn(0x85, 0, 0, 0, 1), EXIT]
    jit = compile_program(prog, helpers=HELPERS)
    assert not jit.code.translation.uses_bridge
    assert jit.run(3) == m.base + 24
    assert jit.run(16) == 0


def test_sanitize_mode_keeps_the_checked_python_helpers() -> None:
    m = new_map(HASH)
    jit = compile_program(prog_lookup(m.addr), helpers=HELPERS, sanitize=True)
    assert jit.code.translation.uses_bridge
    assert jit.run(1) == M64


# --- Python API and native code see the same table ------------------------------------------
@pytest.mark.parametrize("map_type", [HASH, PERCPU_HASH])
def test_python_api_and_native_code_share_the_table(map_type: int) -> None:
    m = new_map(map_type)
    upd, look, dele = (compile_program(p(m.addr), helpers=HELPERS)
                       for p in (prog_update, prog_lookup, prog_delete))
    ops = m.ops
    k = (5).to_bytes(4, "little")
    percpu = map_type == PERCPU_HASH
    assert upd.run(5, 77, 0) == 0
    value = ops.sys_lookup(m, k, 0)
    assert value[:8] == (77).to_bytes(8, "little")
    if percpu:
        assert value[8:] == bytes(len(value) - 8)
    full = (88).to_bytes(8, "little") * (m.nr_cpus if percpu else 1)
    ops.sys_update(m, (6).to_bytes(4, "little"), full, 0)
    assert look.run(6) == 88
    ops.sys_delete(m, k)
    assert look.run(5) == M64
    assert dele.run(6) == 0
    with pytest.raises(Exception) as exc:
        ops.sys_lookup(m, (6).to_bytes(4, "little"), 0)
    assert getattr(exc.value, "errno", None) == errno.ENOENT
    assert contents(m) == []
    # fill to the brim from both sides: E2BIG exactly at max_entries
    for i in range(8):
        assert upd.run(100 + i, i, 0) == 0
        ops.sys_update(m, (200 + i).to_bytes(4, "little"), full, 0)
    assert upd.run(999, 1, 0) == -errno.E2BIG & M64
    assert len(contents(m)) == 16


def test_hash_update_of_an_existing_key_keeps_the_old_value_readable() -> None:
    """HASH updates go to a spare element: a pointer from an earlier lookup still reads
    the old value (the kernel's RCU-safe replacement)."""
    m = new_map(HASH)
    upd = compile_program(prog_update(m.addr), helpers=HELPERS)
    get_ptr = compile_program([Insn(0x63, 10, 1, -4, 0), *ld_imm64(1, m.addr, 1),
                               Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
                               Insn(0x85, 0, 0, 0, 1), EXIT], helpers=HELPERS)
    upd.run(1, 10, 0)
    old_ptr = get_ptr.run(1)
    upd.run(1, 20, 0)
    new_ptr = get_ptr.run(1)
    assert new_ptr != old_ptr
    assert m.mem.load(old_ptr, 8) == 10 and m.mem.load(new_ptr, 8) == 20


# --- threads ----------------------------------------------------------------------------------
def test_concurrent_native_and_python_hash_updates_lose_nothing() -> None:
    threads_n, per = 4, 150
    m = new_map(HASH, max_entries=threads_n * per + 64)
    upd = compile_program(prog_update(m.addr), helpers=HELPERS)
    dele = compile_program(prog_delete(m.addr), helpers=HELPERS)
    add = compile_program(prog_add(m.addr), helpers=HELPERS)
    assert not upd.code.translation.uses_bridge and not add.code.translation.uses_bridge
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)
        return run

    def native_worker(t: int) -> Callable[[], None]:
        def work() -> None:
            for i in range(per):
                key = t * per + i
                assert upd.run(key, key * 7, 0, cpu=t) == 0
                assert upd.run(key, key * 7 + 1, 2, cpu=t) == 0  # BPF_EXIST: replace
                add.run(1_000_000, 1, cpu=t)  # shared counter
                if i % 3 == 0:
                    assert dele.run(key, cpu=t) == 0
        return work

    def python_worker() -> None:
        for i in range(per):
            key = (2_000_000 + i).to_bytes(4, "little")
            m.ops.sys_update(m, key, i.to_bytes(8, "little"), 0)
            if i % 2:
                m.ops.sys_delete(m, key)
            add.run(1_000_000, 1, cpu=7)

    threads = [threading.Thread(target=guarded(native_worker(t))) for t in range(threads_n)]
    threads.append(threading.Thread(target=guarded(python_worker)))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    got = dict(contents(m))
    want: dict[bytes, bytes] = {}
    for t in range(threads_n):
        for i in range(per):
            key = t * per + i
            if i % 3:
                want[key.to_bytes(4, "little")] = (key * 7 + 1).to_bytes(8, "little")
    for i in range(0, per, 2):
        want[(2_000_000 + i).to_bytes(4, "little")] = i.to_bytes(8, "little")
    counter = got.pop((1_000_000).to_bytes(4, "little"))
    assert got == want
    assert int.from_bytes(counter, "little") == (threads_n + 1) * per
    assert m.ctl_i[6] == len(want) + 1  # count
    free_top = m.ctl_i[7]
    assert free_top == m.max_entries - len(want) - 1
    stack = sorted(m.fs32[:free_top])
    assert len(set(stack)) == free_top  # no element on the free stack twice


@pytest.mark.parametrize("flags", [0, 2])
def test_concurrent_native_and_python_lru_writes_keep_the_lists_whole(flags: int) -> None:
    """Threads updating (and evicting from) one small LRU map natively — the slow path
    calling back into Python under the map's mutex — while a Python thread updates and
    deletes: no deadlock, every element on exactly one list, count matches the table."""
    m = create_map(LRU_HASH, 4, 8, 32, F_ZERO_SEED | flags)
    upd = compile_program(prog_update(m.addr), helpers=HELPERS)
    dele = compile_program(prog_delete(m.addr), helpers=HELPERS)
    assert not upd.code.translation.uses_bridge and not dele.code.translation.uses_bridge
    errors: list[BaseException] = []

    def native_worker(t: int) -> None:
        try:
            for i in range(400):
                key = t * 1000 + i % 97
                assert upd.run(key, i, 0, cpu=t % m.nr_cpus) == 0
                if i % 5 == 0:
                    dele.run(key, cpu=t % m.nr_cpus)
        except BaseException as exc:
            errors.append(exc)

    def python_worker() -> None:
        try:
            for i in range(300):
                key = (50_000 + i % 41).to_bytes(4, "little")
                m.ops.sys_update(m, key, i.to_bytes(8, "little"), 0)
                if i % 3 == 0:
                    with contextlib.suppress(Exception):  # ENOENT once evicted
                        m.ops.sys_delete(m, key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=native_worker, args=(t,)) for t in range(3)]
    threads.append(threading.Thread(target=python_worker))
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads), "deadlock"
    assert not errors, errors
    keys = [k for k, _ in contents(m)]
    with m.lock:
        m.sync()
        assert m.count == len(keys) == len(m.index) <= 32
        lists = m.lru_lists
        seen: list[int] = []
        heads = (range(3 * m.nr_cpus) if lists.percpu else
                 [*range(3), *(3 + 2 * c + j for c in range(m.nr_cpus) for j in (0, 1))])
        for h in heads:
            seen += lists.walk(m.n_elems + h)
        assert sorted(seen) == list(range(m.n_elems))


def test_feature_flag_off_keeps_hash_writes_in_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapgen, "NATIVE_HTAB_WRITES", False)
    m = new_map(HASH)
    upd = compile_program(prog_update(m.addr), helpers=HELPERS)
    look = compile_program(prog_lookup(m.addr), helpers=HELPERS)
    assert upd.code.translation.uses_bridge and not look.code.translation.uses_bridge
    assert upd.run(3, 4, 0) == 0 and look.run(3) == 4


def test_cache_key_tells_maps_at_one_address_apart() -> None:
    a = new_map(HASH)
    b = new_map(HASH, value_size=16)
    fa = mapgen.map_fingerprint(prog_lookup(a.addr))
    assert fa and fa != mapgen.map_fingerprint(prog_lookup(b.addr))
    assert fa == mapgen.map_fingerprint(prog_lookup(a.addr))


# --- ring buffer ------------------------------------------------------------------------------
def ring_programs(addr: int) -> list[list[Insn]]:
    def reserve_commit(helper: int) -> list[Insn]:
        return [Insn(0xBF, 6, 1, 0, 0), *ld_imm64(1, addr, 1), Insn(0xB7, 2, 0, 0, 12),
                Insn(0xB7, 3, 0, 0, 0), Insn(0x85, 0, 0, 0, 131), Insn(0x15, 0, 0, 6, 0),
                Insn(0x7B, 0, 6, 0, 0), Insn(0xBF, 1, 0, 0, 0), Insn(0xB7, 2, 0, 0, 0),
                Insn(0x85, 0, 0, 0, helper), Insn(0xB7, 0, 0, 0, 1), EXIT,
                Insn(0xB7, 0, 0, 0, 0), EXIT]

    output = [Insn(0x7B, 10, 1, -8, 0), Insn(0xBF, 4, 2, 0, 0), *ld_imm64(1, addr, 1),
              Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -8), Insn(0xB7, 3, 0, 0, 8),
              Insn(0x85, 0, 0, 0, 130), EXIT]
    return [reserve_commit(132), reserve_commit(133), output]


def test_ringbuf_records_match_the_interpreter() -> None:
    results = []
    for tier in ("interp", "jit"):
        rb = create_map(RINGBUF, 0, 0, 4096)
        progs = [CompiledProgram(p, helpers=HELPERS) if tier == "interp"
                 else compile_program(p, helpers=HELPERS) for p in ring_programs(rb.addr)]
        if tier == "jit":
            assert not any(p.code.translation.uses_bridge for p in progs)
        got: list[bytes] = []
        consumer = RingBufConsumer(rb, got.append)
        rets = []
        rnd = random.Random(7)
        for i in range(900):
            which = rnd.randrange(4)
            if which == 3:  # a Python producer in between
                sample = rb.reserve(5)
                if sample:
                    rb.mem.write(sample, b"py%03d" % (i % 1000))
                    rb.commit(sample, 0, False)
                rets.append(int(bool(sample)))
            else:
                flags = rnd.choice([0, 0, 1, 2, 4])
                rets.append(progs[which].run(i, flags))
            if rnd.randrange(40) == 0:
                consumer.consume()
        consumer.consume()
        # the raw ring too: record headers (length, busy/discard bits, pg_off) must agree
        raw = bytes(rb.data.mv[:rb.max_entries])
        results.append((rets, got, rb.producer_pos, rb.consumer_pos, raw))
    assert results[1] == results[0]
    assert len(results[0][1]) > 100


def prog_ringbuf_query(m: int) -> list[Insn]:
    """r0 = bpf_ringbuf_query(m, r1)"""
    return [Insn(0xBF, 2, 1, 0, 0), *ld_imm64(1, m, 1), Insn(0x85, 0, 0, 0, 134), EXIT]


def test_ringbuf_query_is_native_and_matches_the_interpreter() -> None:
    rb = create_map(RINGBUF, 0, 0, 4096)
    interp = CompiledProgram(prog_ringbuf_query(rb.addr), helpers=HELPERS)
    jit = compile_program(prog_ringbuf_query(rb.addr), helpers=HELPERS)
    assert not jit.code.translation.uses_bridge
    got: list[bytes] = []
    consumer = RingBufConsumer(rb, got.append)
    for i in range(40):
        sample = rb.reserve(8 + i % 5)
        if sample:
            rb.commit(sample, 0, False)
        if i % 7 == 0:
            consumer.consume()
        for flags in (0, 1, 2, 3, 4, 1 << 32 | 1, M64):
            assert jit.run(flags) == interp.run(flags), (i, flags)
    assert jit.run(1) == 4096 and jit.run(3) == rb.producer_pos > 0
    assert jit.run(0) == rb.producer_pos - rb.consumer_pos


@pytest.mark.parametrize("outer_type", [12, 13])  # ARRAY_OF_MAPS, HASH_OF_MAPS
def test_map_in_map_lookups_are_native(outer_type: int) -> None:
    """The outer lookup returns the inner map's address, NULL for a missing key or an
    empty slot, as the Python helper does; the inner map then works as usual."""
    importlib.import_module("pybpf.maps.type_array_of_maps")
    importlib.import_module("pybpf.maps.type_hash_of_maps")
    tmpl = new_map(ARRAY, max_entries=4)
    flags = F_ZERO_SEED if outer_type == 13 else 0
    outer = create_map(outer_type, 4, 4, 8, flags, inner_map=tmpl)
    inners = [new_map(ARRAY, max_entries=4) for _ in range(3)]
    for k, inner in zip((0, 2, 5), inners, strict=True):
        if outer_type == 13:
            outer.ops.put_object(outer, k.to_bytes(4, "little"), inner, 0)
        else:
            outer.set_slot(k, inner)
    # r0 = map_lookup_elem(outer, &(u32)r1) (the inner map's address or 0)
    prog = [Insn(0x63, 10, 1, -4, 0), *ld_imm64(1, outer.addr, 1), Insn(0xBF, 2, 10, 0, 0),
            Insn(0x07, 2, 0, 0, -4), Insn(0x85, 0, 0, 0, 1), EXIT]
    interp, jit = twin_tiers(prog)
    assert not jit.code.translation.uses_bridge
    for k in range(-1, 12):
        assert jit.run(k & 0xFFFFFFFF) == interp.run(k & 0xFFFFFFFF), k
    assert jit.run(2) == inners[1].addr and jit.run(3) == 0 and jit.run(9) == 0


@pytest.mark.parametrize("map_type", [HASH, LRU_HASH, PERCPU_HASH, ARRAY])
def test_internal_htab_lookup_call_is_native(map_type: int) -> None:
    """The fixups' ``call __htab_map_lookup_elem`` + ``r0 += value offset`` runs natively
    and gives what the interpreter gives with the Python implementation."""
    internal = pytest.importorskip("pybpf.helpers.internal")
    fid = internal.HTAB_MAP_LOOKUP_ELEM
    helpers = {**HELPERS, **internal.IMPLS}
    maps = [new_map(map_type), new_map(map_type)]
    for m in maps:
        for k in range(0, 12, 2):
            m.ops.sys_update(m, k.to_bytes(4, "little"),
                             (k * 5).to_bytes(8, "little") * (m.nr_cpus if map_type ==
                                                              PERCPU_HASH else 1), 0)
    off = internal.htab_elem_value_off(4)

    def prog(m: Any) -> list[Insn]:
        # r0 = __htab_map_lookup_elem(m, &(u32)r1); if r0: r0 += off; r0 = r0 ? *r0 : -1
        return [Insn(0x63, 10, 1, -4, 0), *ld_imm64(1, m.addr, 1), Insn(0xBF, 2, 10, 0, 0),
                Insn(0x07, 2, 0, 0, -4), Insn(0x85, 0, 0, 0, fid), Insn(0x15, 0, 0, 3, 0),
                Insn(0x07, 0, 0, 0, off), Insn(0x79, 0, 0, 0, 0), EXIT,
                Insn(0xB7, 0, 0, 0, -1), EXIT]

    interp = CompiledProgram(prog(maps[0]), helpers=helpers)
    jit = compile_program(prog(maps[1]), helpers=helpers)
    assert not jit.code.translation.uses_bridge
    for k in range(-1, 14):
        assert jit.run(k & 0xFFFFFFFF) == interp.run(k & 0xFFFFFFFF), k
    if map_type == LRU_HASH:
        ref = [[m.e32[i * m.ew + REF_WORD] for i in range(m.n_elems)] for m in maps]
        assert ref[0] == ref[1] and any(ref[1])


def test_ringbuf_threads_produce_every_record_once() -> None:
    rb = create_map(RINGBUF, 0, 0, 1 << 16)
    prog = compile_program(ring_programs(rb.addr)[2], helpers=HELPERS)
    got: list[bytes] = []
    consumer = RingBufConsumer(rb, got.append)
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            consumer.consume()
        consumer.consume()

    def produce(t: int) -> None:
        for i in range(2000):
            while prog.run(t << 32 | i, 0) != 0:  # -EAGAIN while full
                pass

    c = threading.Thread(target=consume)
    c.start()
    producers = [threading.Thread(target=produce, args=(t,)) for t in range(3)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    stop.set()
    c.join()
    values = sorted(int.from_bytes(r, "little") for r in got)
    assert values == sorted(t << 32 | i for t in range(3) for i in range(2000))


# --- callbacks --------------------------------------------------------------------------------
@pytest.mark.parametrize("map_type", [ARRAY, HASH])
def test_for_each_map_elem_callback_runs_on_the_jit(map_type: int) -> None:
    m = new_map(map_type, max_entries=8)
    for i in range(8):
        m.ops.sys_update(m, i.to_bytes(4, "little"), (i * 10 + 1).to_bytes(8, "little"), 0)
    prog = [Insn(0x7A, 10, 0, -8, 0), *ld_imm64(1, m.addr, 1), *ld_imm64(2, 11, 4),
            Insn(0xBF, 3, 10, 0, 0), Insn(0x07, 3, 0, 0, -8), Insn(0xB7, 4, 0, 0, 0),
            Insn(0x85, 0, 0, 0, 164), Insn(0x79, 0, 10, -8, 0), EXIT,
            # callback(map, key, value, ctx): *ctx += *value; stop after key 5
            Insn(0x79, 5, 3, 0, 0), Insn(0x79, 6, 4, 0, 0), Insn(0x0F, 6, 5, 0, 0),
            Insn(0x7B, 4, 6, 0, 0), Insn(0x61, 0, 2, 0, 0), Insn(0x25, 0, 0, 2, 4),
            Insn(0xB7, 0, 0, 0, 0), EXIT, Insn(0xB7, 0, 0, 0, 1), EXIT]
    interp = CompiledProgram(prog, helpers=HELPERS)
    jit = compile_program(prog, helpers=HELPERS)
    assert 11 in jit.code.translation.callback_targets
    ctx = RunContext(mem=m.mem)
    assert jit.run(ctx=ctx) == interp.run()
    assert ctx.runner is jit
    assert compile_program(prog, helpers=HELPERS, sanitize=True).run() == interp.run()


def test_call_subprog_outside_a_run_uses_the_interpreter_twin() -> None:
    prog = [Insn(0xB7, 0, 0, 0, 1), EXIT, Insn(0xBF, 0, 1, 0, 0), Insn(0x0F, 0, 2, 0, 0), EXIT]
    jit = compile_program(prog)
    ctx = RunContext(mem=jit.mem)
    assert jit.call_subprog(ctx, 2, 40, 2) == 42
