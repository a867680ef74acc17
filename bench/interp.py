"""Interpreter throughput: instructions per second on the checked interpreter.

Workloads (each also run in the live kernel with BPF_PROG_TEST_RUN in the same run, where
the kernel is available, so the table shows how far the reference tier is from the
kernel's JIT):

- ``straight``: a 1,000-instruction straight-line ALU program;
- ``loop``: a counted loop of 3 instructions per iteration (10,000 iterations);
- ``branchy``: a loop whose body branches (several basic blocks per iteration).

Target (issue 2): at least 5 million instructions per second on ``straight`` and ``loop``.
Run: ``python bench/interp.py`` (``--json`` for machine-readable output).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

from pybpf.isa.insn import Insn, encode
from pybpf.runtime.interpreter import CompiledProgram

EXIT = Insn(0x95)
TARGET = 5e6


@dataclass
class Workload:
    name: str
    insns: list[Insn]
    executed: int  # instructions one run executes


def straight(n: int = 1000) -> Workload:
    body = [Insn(0xB7, 0, 0, 0, 1)]
    ops = [Insn(0x07, 0, 0, 0, 3), Insn(0x27, 0, 0, 0, 7), Insn(0xA7, 0, 0, 0, 0x55),
           Insn(0x77, 0, 0, 0, 1)]
    body += [ops[i % len(ops)] for i in range(n - 2)]
    return Workload("straight", [*body, EXIT], n)


def loop(iterations: int = 10_000) -> Workload:
    insns = [Insn(0xB7, 0, 0, 0, 0), Insn(0xB7, 1, 0, 0, 0),
             Insn(0x0F, 0, 1), Insn(0x07, 1, 0, 0, 1), Insn(0xA5, 1, 0, -3, iterations),
             EXIT]
    return Workload("loop", insns, 2 + 3 * iterations + 1)


def branchy(iterations: int = 10_000) -> Workload:
    # r0 = 0; r1 = 0
    # loop: r2 = r1; r2 &= 1; if r2 == 0 goto even; r0 += 3; goto next
    # even: r0 ^= r1
    # next: r1 += 1; if r1 < N goto loop; exit
    insns = [
        Insn(0xB7, 0, 0, 0, 0), Insn(0xB7, 1, 0, 0, 0),
        Insn(0xBF, 2, 1), Insn(0x57, 2, 0, 0, 1), Insn(0x15, 2, 0, 2, 0),
        Insn(0x07, 0, 0, 0, 3), Insn(0x05, 0, 0, 1),
        Insn(0xAF, 0, 1),
        Insn(0x07, 1, 0, 0, 1), Insn(0xA5, 1, 0, -8, iterations),
        EXIT,
    ]
    # odd iterations execute 7 instructions, even ones 6; plus 2 to set up and the exit
    executed = 2 + (iterations // 2) * 7 + ((iterations + 1) // 2) * 6 + 1
    return Workload("branchy", insns, executed)


def measure_pybpf(w: Workload, min_time: float = 0.5) -> tuple[float, int]:
    prog = CompiledProgram(w.insns, name=w.name)
    r0 = prog.run()
    runs = 0
    start = time.perf_counter()
    while True:
        prog.run()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return w.executed * runs / elapsed, r0


def measure_kernel(w: Workload, repeat: int = 2000) -> tuple[float | None, str]:
    try:
        from pybpf.testing import kernel
    except ImportError as exc:
        return None, f"oracle unavailable: {exc}"
    ok, why = kernel.available()
    if not ok:
        return None, why
    res = kernel.prog_load(1, encode(w.insns))  # BPF_PROG_TYPE_SOCKET_FILTER
    if res.fd < 0:
        return None, f"kernel refused the program: errno {res.errno}"
    try:
        run = kernel.prog_test_run(res.fd, data_in=bytes(64), repeat=repeat)
        if run.errno or not run.duration:
            return None, f"test_run errno {run.errno}"
        return w.executed / (run.duration * 1e-9), ""
    finally:
        kernel.close(res.fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--min-time", type=float, default=0.5)
    args = parser.parse_args(argv)
    rows = []
    for w in (straight(), loop(), branchy()):
        ips, _r0 = measure_pybpf(w, args.min_time)
        kips, note = measure_kernel(w)
        rows.append({"workload": w.name, "insns_per_run": w.executed, "pybpf_ips": ips,
                     "kernel_ips": kips, "ratio": (kips / ips) if kips else None,
                     "meets_target": ips >= TARGET or w.name == "branchy", "note": note})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("| workload | insns/run | interpreter (M insn/s) | kernel JIT (M insn/s) "
              "| kernel / interpreter | target 5 M/s |")
        print("|---|---:|---:|---:|---:|---|")
        for r in rows:
            k = f"{r['kernel_ips'] / 1e6:.0f}" if r["kernel_ips"] else f"n/a ({r['note']})"
            ratio = f"{r['ratio']:.1f}×" if r["ratio"] else "n/a"
            target = ("met" if r["pybpf_ips"] >= TARGET else "MISSED") if r["workload"] != \
                "branchy" else "(not a target)"
            print(f"| {r['workload']} | {r['insns_per_run']} | {r['pybpf_ips'] / 1e6:.1f} "
                  f"| {k} | {ratio} | {target} |")
    return 0 if all(r["meets_target"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
