"""Soundness and differential checks on generated programs."""

from __future__ import annotations

import random
from types import ModuleType

from pybpf.isa.insn import encode
from pybpf.verifier.api import VerifierInput, bpf_check
from pybpf.verifier.gen import gen_program


def test_accepted_programs_never_fault() -> None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "fuzz_verifier", Path(__file__).resolve().parents[2] / "tools" / "fuzz_verifier.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    _n, accepted, runs, faults = mod.fuzz(200, 2, seed=3)
    assert accepted > 20 and runs > 0
    assert faults == []


def test_verdicts_match_live_kernel(kernel: ModuleType) -> None:
    rng = random.Random(11)
    mismatches = []
    for _ in range(150):
        insns = gen_program(rng, rng.randrange(4, 20))
        kr = kernel.prog_load(1, encode(insns), log_level=1, log_size=1 << 20)
        if kr.fd >= 0:
            kernel.close(kr.fd)
        ours = bpf_check(VerifierInput(insns=insns, prog_type=1))
        if (kr.fd >= 0) != (ours.errno == 0):
            mismatches.append((kr.log.strip().splitlines()[-2:], ours.extra.get("error_line")))
    assert mismatches == []
