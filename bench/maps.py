"""Map operation cost from Python: pybpf vs the live kernel's bpf() syscall, same run.

Run: ``.venv/bin/python bench/maps.py`` (needs root for the kernel column).
Per-op ns for lookup/update/delete on ARRAY and HASH (4-byte keys, 8-byte values) and
per-element ns for batch lookup/update; ratio = pybpf / kernel (≤ 1.0 = as fast or
faster). The kernel side uses a preallocated ``bpf_attr`` and buffers (the leanest
ctypes path); pybpf uses :class:`pybpf.maps.api.Map` with bytes keys/values.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import pybpf.uapi as U
from pybpf.maps.api import Map
from pybpf.maps.elem_cmds import map_batch
from pybpf.testing import kernel as K

N = 1024
REPS = 100_000


def timeit(fn: Callable[[int], None], reps: int = REPS) -> float:
    fn(0)
    t = time.perf_counter()
    fn(reps)
    return (time.perf_counter() - t) / reps * 1e9


class KernelMap:
    def __init__(self, map_type: int) -> None:
        self.fd = K.map_create(map_type, 4, 8, N)
        self.call = K._syscall()
        self.nr = K._nr_bpf()
        self.key = ctypes.create_string_buffer(4)
        self.val = ctypes.create_string_buffer(8)
        self.attr = U.bpf_attr_map_elem()
        self.attr.map_fd = self.fd
        self.attr.key = ctypes.addressof(self.key)
        self.attr.value = ctypes.addressof(self.val)
        self.pa = ctypes.addressof(self.attr)
        self.sz = ctypes.sizeof(self.attr)

    def lookup(self, k: bytes) -> bytes:
        self.key.raw = k
        self.call(self.nr, U.BPF_MAP_LOOKUP_ELEM, self.pa, self.sz)
        return self.val.raw

    def update(self, k: bytes, v: bytes) -> None:
        self.key.raw = k
        self.val.raw = v
        self.call(self.nr, U.BPF_MAP_UPDATE_ELEM, self.pa, self.sz)

    def delete(self, k: bytes) -> None:
        self.key.raw = k
        self.call(self.nr, U.BPF_MAP_DELETE_ELEM, self.pa, self.sz)

    def batch(self, cmd: int, keys: ctypes.Array[ctypes.c_char],
              values: ctypes.Array[ctypes.c_char], count: int) -> None:
        attr = U.bpf_attr_map_batch()
        out = ctypes.create_string_buffer(8)
        attr.map_fd, attr.keys, attr.values = self.fd, ctypes.addressof(keys), \
            ctypes.addressof(values)
        attr.count, attr.out_batch = count, ctypes.addressof(out)
        K.sys_bpf(cmd, attr)


KEYS = [i.to_bytes(4, "little") for i in range(N)]
VAL = b"\x01" * 8


def bench_type(name: str, map_type: int) -> list[tuple[str, float, float]]:
    km = KernelMap(map_type)
    pm = Map.create(map_type, 4, 8, N, key_type=bytes, value_type=bytes)
    for k in KEYS:
        km.update(k, VAL)
        pm[k] = VAL
    rows = []

    def k_lookup(n: int) -> None:
        f = km.lookup
        for i in range(n):
            f(KEYS[i & 1023])

    def p_lookup(n: int) -> None:
        for i in range(n):
            pm[KEYS[i & 1023]]

    def k_update(n: int) -> None:
        f = km.update
        for i in range(n):
            f(KEYS[i & 1023], VAL)

    def p_update(n: int) -> None:
        for i in range(n):
            pm[KEYS[i & 1023]] = VAL

    rows.append((f"{name} lookup", timeit(p_lookup), timeit(k_lookup)))
    rows.append((f"{name} update", timeit(p_update), timeit(k_update)))
    if map_type == U.BPF_MAP_TYPE_HASH:
        def k_del(n: int) -> None:
            for i in range(n):
                k = KEYS[i & 1023]
                km.delete(k)
                km.update(k, VAL)

        def p_del(n: int) -> None:
            for i in range(n):
                k = KEYS[i & 1023]
                del pm[k]
                pm[k] = VAL

        kd, pd = timeit(k_del, REPS // 2), timeit(p_del, REPS // 2)
        ku = rows[-1][2]
        pu = rows[-1][1]
        rows.append((f"{name} delete (+reinsert − update)", pd - pu, kd - ku))
    # batch lookup / update of all N elements, per element
    kb = ctypes.create_string_buffer(b"".join(KEYS), 4 * N)
    vb = ctypes.create_string_buffer(VAL * N, 8 * N)
    reps = 200
    kbl = timeit(lambda n: [km.batch(U.BPF_MAP_LOOKUP_BATCH, kb, vb, N) for _ in range(n)],
                 reps) / N
    pbl = timeit(lambda n: [map_batch(pm.bmap, "lookup", count=N) for _ in range(n)],
                 reps) / N
    kbu = timeit(lambda n: [km.batch(U.BPF_MAP_UPDATE_BATCH, kb, vb, N) for _ in range(n)],
                 reps) / N
    keys_b, vals_b = b"".join(KEYS), VAL * N
    pbu = timeit(lambda n: [map_batch(pm.bmap, "update", keys=keys_b, values=vals_b, count=N)
                            for _ in range(n)], reps) / N
    rows.append((f"{name} batch lookup (per elem)", pbl, kbl))
    rows.append((f"{name} batch update (per elem)", pbu, kbu))
    os.close(km.fd)
    return rows


def main() -> None:
    ok, why = K.available()
    if not ok:
        print(f"live kernel unavailable: {why}")
        return
    rows = bench_type("array", U.BPF_MAP_TYPE_ARRAY) + bench_type("hash", U.BPF_MAP_TYPE_HASH)
    print("| operation | pybpf ns | kernel ns | ratio |")
    print("|---|---:|---:|---:|")
    for name, p, k in rows:
        print(f"| {name} | {p:.0f} | {k:.0f} | {p / k:.2f}× |")
    by = {n: p for n, p, _ in rows}
    for t in ("array", "hash"):
        print(f"\n{t}: batch lookup {by[f'{t} lookup'] / by[f'{t} batch lookup (per elem)']:.1f}×"
              f" faster per element than single; batch update "
              f"{by[f'{t} update'] / by[f'{t} batch update (per elem)']:.1f}×")


if __name__ == "__main__":
    main()
