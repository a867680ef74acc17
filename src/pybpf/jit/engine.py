"""One LLVM code generator per process: target machine, optimisation pipeline, MCJIT.

llvmlite's MCJIT engine owns the native code of every JIT-compiled program. Modules are
added to a single shared engine (symbol names are unique per compilation) under a lock,
because LLVM's engine is not thread-safe while code is being emitted. Running the code
needs no lock.

Native code is kept in memory for the life of the process — like the kernel's JIT images
it is cheap, and the compile cache (:mod:`pybpf.jit.cache`) reuses it for reloads of the
same program.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import llvmlite.binding as llvm

_LOCK = threading.Lock()
_STATE: _Engine | None = None


@dataclass
class _Engine:
    target_machine: llvm.TargetMachine
    engine: llvm.ExecutionEngine
    triple: str
    objects: dict[str, bytes]  # module name → object file, until compile_ir collects it


def _init() -> _Engine:
    global _STATE
    if _STATE is None:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        target = llvm.Target.from_default_triple()
        tm = target.create_target_machine(
            opt=3, codemodel="jitdefault", cpu=llvm.get_host_cpu_name(),
            features=llvm.get_host_cpu_features().flatten())
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
        objects: dict[str, bytes] = {}

        def notify(module: llvm.ModuleRef, buf: bytes) -> None:
            objects[module.name] = buf

        engine.set_object_cache(notify, lambda module: None)
        _STATE = _Engine(tm, engine, llvm.get_default_triple(), objects)
    return _STATE


def triple() -> str:
    """The host's target triple (modules must carry it)."""
    with _LOCK:
        return _init().triple


def data_layout() -> str:
    with _LOCK:
        return str(_init().target_machine.target_data)


@dataclass
class NativeCode:
    """What compiling one module produced: symbol addresses and the object file."""

    addresses: dict[str, int]
    object_file: bytes


def _has_function(mod: Any, name: str) -> bool:
    try:
        mod.get_function(name)
    except NameError:
        return False
    return True


def _kept(ir_text: str, names: Sequence[str]) -> str:
    """``ir_text`` with ``names`` in ``llvm.compiler.used``: LLVM may not delete them."""
    refs = ", ".join(f'ptr @"{name}"' for name in names)
    return (f"{ir_text}\n@llvm.compiler.used = appending global [{len(names)} x ptr] "
            f'[{refs}], section "llvm.metadata"\n')


def compile_ir(ir_text: str, symbols: list[str], *, opt_level: int = 3,
               keep: Sequence[str] = ()) -> NativeCode:
    """Parse, optimise and emit ``ir_text``; return the addresses of ``symbols``.

    ``keep`` names functions that must survive optimisation as functions of their own
    (BPF subprograms: the kernel reports each one's native code). Marking them used up
    front would keep LLVM from tuning their calling convention, so they are marked only
    when the optimiser deleted one (its calls were all folded away) and the module is
    optimised again.
    """
    with _LOCK:
        st = _init()
        mod = llvm.parse_assembly(ir_text)
        mod.verify()
        if opt_level > 0:
            pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
            pb = llvm.create_pass_builder(st.target_machine, pto)
            pb.getModulePassManager().run(mod, pb)
            lost = [name for name in keep if not _has_function(mod, name)]
            if lost:
                mod = llvm.parse_assembly(_kept(ir_text, lost))
                mod.verify()
                pb.getModulePassManager().run(mod, pb)
        st.engine.add_module(mod)
        st.engine.finalize_object()
        addresses = {name: st.engine.get_function_address(name) for name in symbols}
        obj = st.objects.pop(mod.name, b"")
        st.objects.clear()
        return NativeCode(addresses, obj)


def optimized_ir(ir_text: str, opt_level: int = 3) -> str:
    """The optimised IR of a module (for inspection and tests)."""
    with _LOCK:
        st = _init()
        mod = llvm.parse_assembly(ir_text)
        pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
        pb = llvm.create_pass_builder(st.target_machine, pto)
        pb.getModulePassManager().run(mod, pb)
        return str(mod)
