"""pybpf's xlated programs against the live kernel's (``tools/xlated_agreement.py``).

The same program is loaded in the machine's kernel and in pybpf; both are printed in
bpftool's syntax with only map references (by role) and call immediates (by callee name)
normalised, and must be equal line for line.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import pybpf.uapi as U
from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.maps.api import Map
from pybpf.verifier.api import VerifierInput, bpf_check

ROOT = Path(__file__).resolve().parents[2]


def _tool() -> ModuleType:
    name = "xlated_agreement"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


XA = _tool()
XDP, SCHED_CLS = 6, 3

PROGRAMS = {
    "dead branch": ("r0 = 0\nif r0 == 0 goto +2\nr0 = 1\nr0 += 2\nexit\n", ()),
    "nop goto": ("r0 = 3\ngoto +0\nexit\n", ()),
    "div/mod by register": ("r0 = 7\nr1 = 3\nr0 /= r1\nw0 %= w1\nr0 s/= r1\nr0 s%= r1\n"
                            "w0 s%= w1\nexit\n", ()),
    "sdiv/smod by -1": ("r0 = 7\nr0 s/= -1\nw0 s%= -1\nexit\n", ()),
    "helpers by name": ("call 7\ncall 5\nr0 = 0\nexit\n", ()),
    "array lookup": ("*(u32 *)(r10 - 4) = 1\nr2 = r10\nr2 += -4\nr1 = map[id:{m0}]\ncall 1\n"
                     "r0 = 0\nexit\n", ((U.BPF_MAP_TYPE_ARRAY, 4, 8, 4),)),
    "array lookup, odd value size": ("*(u32 *)(r10 - 4) = 1\nr2 = r10\nr2 += -4\n"
                                     "r1 = map[id:{m0}]\ncall 1\nr0 = 0\nexit\n",
                                     ((U.BPF_MAP_TYPE_ARRAY, 4, 20, 3),)),
    "hash lookup/update/delete": (
        "*(u32 *)(r10 - 4) = 1\n*(u64 *)(r10 - 16) = 2\nr2 = r10\nr2 += -4\n"
        "r1 = map[id:{m0}]\ncall 1\nr2 = r10\nr2 += -4\nr3 = r10\nr3 += -16\nr4 = 0\n"
        "r1 = map[id:{m0}]\ncall 2\nr2 = r10\nr2 += -4\nr1 = map[id:{m0}]\ncall 3\n"
        "r0 = 0\nexit\n", ((U.BPF_MAP_TYPE_HASH, 4, 8, 4),)),
}


def _kernel_text(kernel: ModuleType, fds: Any, text: str, specs: tuple[Any, ...]) -> list[str]:
    mfds = [fds.map_create(*s) for s in specs]
    res = fds.prog_load(XDP, encode(assemble(text.format(**{f"m{i}": fd
                                                             for i, fd in enumerate(mfds)}))))
    assert res.ok, res.log
    insns, _ = XA.kernel_xlated(res.fd)
    ids = {kernel.map_info(fd).id: f"m{i}" for i, fd in enumerate(mfds)}
    return XA.render(insns, XA.live_call_name, XA._kernel_map_ref(ids))


def _pybpf_text(text: str, specs: tuple[Any, ...]) -> list[str]:
    maps = {f"m{i}": Map.create(*s).bmap for i, s in enumerate(specs)}
    fds = {100 + i: m for i, m in enumerate(maps.values())}
    src = text.format(**{f"m{i}": 100 + i for i in range(len(specs))})
    res = bpf_check(VerifierInput(insns=assemble(src), prog_type=XDP, map_by_fd=fds.get))
    assert res.errno == 0, res.log
    from pybpf.syscall.info import jit_subprog_calls

    return XA.render(jit_subprog_calls(list(res.insns)),
                     XA.pybpf_call_namer(XDP), XA._pybpf_map_ref(maps))


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_xlated_equal(kernel: ModuleType, kernel_fds: Any, name: str) -> None:
    text, specs = PROGRAMS[name]
    assert _pybpf_text(text, specs) == _kernel_text(kernel, kernel_fds, text, specs)


def test_corpus_xlated_agreement_floor(kernel: ModuleType) -> None:
    """Accepted corpus cases whose xlated program equals the kernel's: never fewer."""
    from pybpf.verifier import corpus

    outs = [XA.corpus_case(c) for c in corpus.load()
            if (c.get("kernel") or {}).get("accepted")]
    compared = [o for o in outs if o.kernel is not None and o.ours is not None]
    equal = sum(o.equal for o in compared)
    assert len(compared) >= 702
    assert equal >= 702, [o.name for o in compared if not o.equal]


def test_corpus_rnd_hi32_poison_as_kernel(kernel: ModuleType) -> None:
    """With the cases' own ``BPF_F_TEST_RND_HI32`` (every test_verifier case has it) the
    poisoned 32-bit definitions are the kernel's, on a sample of the corpus (modulo the
    random values; the whole corpus: ``tools/xlated_agreement.py --corpus --rnd-hi32``)."""
    from pybpf.verifier import corpus

    XA.KEEP_RND_HI32 = True
    try:
        cases = [c for c in corpus.load() if (c.get("kernel") or {}).get("accepted")][::7]
        outs = [XA.corpus_case(c) for c in cases]
    finally:
        XA.KEEP_RND_HI32 = False
    compared = [o for o in outs if o.kernel is not None and o.ours is not None]
    assert len(compared) >= 95
    assert [o.name for o in compared if not o.equal] == []
    assert any("r11 <<= 32" in ln for o in compared for ln in o.ours or [])
