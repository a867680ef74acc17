"""The fast tier: BPF programs compiled to native code with LLVM (llvmlite).

``compile_program(insns, helpers=..., ...)`` returns a :class:`JitProgram` with the same
``run`` interface as the interpreter's ``CompiledProgram``; ``select_runtime(insns,
jit_enable=..., harden=...)`` is ``bpf_prog_select_runtime``: JIT or interpreter, with the
jited info (:mod:`pybpf.jit.runtime`). Without llvmlite only ``select_runtime`` is
available, and it picks the interpreter.
"""

import contextlib

from pybpf.jit.runtime import JitedInfo, RuntimeSelection, select_runtime

with contextlib.suppress(ImportError):  # llvmlite missing: select_runtime interprets
    from pybpf.jit.program import CompiledCode, JitProgram, compile_program

__all__ = ["CompiledCode", "JitProgram", "JitedInfo", "RuntimeSelection", "compile_program",
           "select_runtime"]
