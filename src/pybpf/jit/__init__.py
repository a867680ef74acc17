"""The fast tier: BPF programs compiled to native code with LLVM (llvmlite).

``compile_program(insns, helpers=..., ...)`` returns a :class:`JitProgram` with the same
``run`` interface as the interpreter's ``CompiledProgram``.
"""

from pybpf.jit.program import CompiledCode, JitProgram, compile_program

__all__ = ["CompiledCode", "JitProgram", "compile_program"]
