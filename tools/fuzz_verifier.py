#!/usr/bin/env python3
"""Soundness fuzzer: programs pybpf's verifier accepts must never fault in the checked interpreter.

    .venv/bin/python tools/fuzz_verifier.py [--programs N] [--inputs K] [--seed S]

Generates random socket-filter programs (:mod:`pybpf.verifier.gen`), verifies them, and runs
every accepted one on K random skb contexts. Any ``BpfFault`` is a verifier bug and is printed
with the program. Reports how many programs were generated, accepted and run.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pybpf.errors import BpfFault
from pybpf.isa.disasm import disasm_kernel
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.runtime.memory import REGISTRY
from pybpf.verifier.api import VerifierInput, bpf_check
from pybpf.verifier.gen import gen_program


def fuzz(programs: int, inputs: int, seed: int) -> tuple[int, int, int, list[str]]:
    rng = random.Random(seed)
    ctx = REGISTRY.alloc(192, "fuzz skb ctx")
    accepted = runs = 0
    faults: list[str] = []
    for _ in range(programs):
        insns = gen_program(rng, rng.randrange(4, 20))
        res = bpf_check(VerifierInput(insns=insns, prog_type=1))
        if res.errno:
            continue
        accepted += 1
        prog = CompiledProgram(res.insns)
        for _ in range(inputs):
            ctx.mv[:] = rng.randbytes(192)
            runs += 1
            try:
                prog.run(ctx.start, steps=100_000)
            except BpfFault as e:
                faults.append(f"{e}\n" + "\n".join(disasm_kernel(insns, numbered=True)))
                break
    return programs, accepted, runs, faults


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=2000)
    ap.add_argument("--inputs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    n, acc, runs, faults = fuzz(a.programs, a.inputs, a.seed)
    print(f"programs {n}, accepted {acc}, runs {runs}, faults {len(faults)}")
    for f in faults[:10]:
        print("FAULT", f)
    return 1 if faults else 0


if __name__ == "__main__":
    raise SystemExit(main())
