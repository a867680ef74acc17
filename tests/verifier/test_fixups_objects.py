"""Whole clang-built objects beyond examples/: their xlated programs equal the kernel's.

``tests/helpers/progs/tracing_timer.o`` exercises the ``bpf_timer_set_callback`` fixup
(``r3 = prog->aux`` before the call; ``tools/xlated_agreement.py`` names the address
``&prog_aux`` on both sides) and callback addresses (``subprog[+N]``);
``tests/verifier/objects/*.o`` tp_btf, kfunc and dynptr programs. Each program is loaded
by bpftool into the live kernel and by ``pybpf.load``; the dumps are compared as the tool
does.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pybpf.isa.insn import Insn
from pybpf.verifier.misc_fixups import misc_fixups

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = ["tests/helpers/progs/tracing_timer.o", "tests/verifier/objects/kfunc_task.o",
           "tests/verifier/objects/tp_btf_task.o", "tests/verifier/objects/dynptr_rings.o"]


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


@pytest.mark.parametrize("obj", OBJECTS)
def test_object_xlated_equals_kernel(kernel: ModuleType, obj: str) -> None:
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed")
    outs = _tool().object_programs(ROOT / obj)
    compared = [o for o in outs if o.kernel is not None and o.ours is not None]
    assert compared, [o.skip for o in outs]
    assert [o.name for o in compared if not o.equal] == []


def test_timer_set_callback_gets_r3() -> None:
    """The fixup itself: ``ld_imm64 r3`` right before every ``bpf_timer_set_callback``."""
    from pybpf.verifier.patch import ProgPatcher

    call = Insn(0x85, 0, 0, 0, 170)
    p = ProgPatcher([Insn(0xB7, 0, 0, 0, 0), call, Insn(0x95, 0, 0, 0, 0)])

    class _V:
        prog_ops = None

    misc_fixups(_V(), p)  # type: ignore[arg-type]
    assert [i.code for i in p.insns] == [0xB7, 0x18, 0x00, 0x85, 0x95]
    assert p.insns[1].dst == 3 and p.insns[3] == call
