"""Runtime selection: ``bpf_prog_select_runtime`` for pybpf's two tiers.

After verification the kernel picks how a program runs: with ``bpf_jit_enable`` set it
JIT-compiles (blinding constants first when ``bpf_jit_harden`` asks for it), fills the
jited line info, and on any JIT failure keeps the interpreter
(``bpf_prog_jit_attempt_done`` drops the half-made JIT state) — unless the kernel is built
JIT-always-on, where the load fails with ENOTSUPP. :func:`select_runtime` does the same
with pybpf's tiers and returns what ``BPF_PROG_LOAD`` and ``BPF_OBJ_GET_INFO_BY_FD``
need: the runner (anything with the interpreter's ``run``), whether it is jited, the
jited lengths, symbols and line info, and the instructions as translated (the blinded
program when constants were blinded, as the kernel's xlated dump shows).

This module imports neither llvmlite nor the JIT until a JIT is asked for, so it works
(falling back to the interpreter) on an installation without llvmlite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pybpf.isa.insn import Insn
from pybpf.runtime.memory import REGISTRY, MemoryRegistry

ENOTSUPP = 524


@dataclass
class JitedInfo:
    """The ``jited_*`` fields of ``struct bpf_prog_info`` for a JIT-compiled program."""

    jited_prog_len: int
    jited_func_lens: list[int]
    jited_ksyms: list[int]
    jited_line_info: list[int]  # native address of each line-info entry's instruction
    jited_prog_insns: bytes = b""  # the native code (``bpftool prog dump jited``)

    @property
    def nr_jited_ksyms(self) -> int:
        return len(self.jited_ksyms)

    @property
    def nr_jited_func_lens(self) -> int:
        return len(self.jited_func_lens)


@dataclass
class RuntimeSelection:
    """What ``bpf_prog_select_runtime`` decided for one program."""

    runner: Any  # JitProgram or interpreter CompiledProgram: .run(r1..r5, ctx=..., ...)
    jited: bool
    info: JitedInfo | None = None
    blinded: bool = False
    xlated: list[Insn] = field(default_factory=list)  # the program the runner executes
    jit_error: str = ""  # why the JIT was not used although enabled ("" if it was)
    compile_ns: int = 0


def blinding_enabled(harden: int, privileged: bool) -> bool:
    """``bpf_jit_blinding_enabled``: 1 hardens unprivileged loads, 2 hardens all."""
    return harden >= 2 or (harden == 1 and not privileged)


def _load_jit() -> Any:
    from pybpf.jit import program

    return program


def _interpreter(insns: Sequence[Insn], *, helpers: Mapping[int, Any] | None,
                 kfuncs: Mapping[int, Any] | None, ld_abs: Any, mem: MemoryRegistry,
                 name: str) -> Any:
    from pybpf.runtime.interpreter import CompiledProgram

    return CompiledProgram(list(insns), helpers=helpers, kfuncs=kfuncs, ld_abs=ld_abs,
                           mem=mem, name=name)


def jited_info(jit: Any, linfo_insn_offs: Sequence[int] = ()) -> JitedInfo:
    """The jited fields of a compiled program; ``linfo_insn_offs`` are the ``insn_off``
    of each ``bpf_line_info`` record (``bpf_prog_fill_jited_linfo``)."""
    return JitedInfo(jit.jited_len, list(jit.jited_func_lens), list(jit.jited_ksyms),
                     jit.jited_line_info(list(linfo_insn_offs)) if linfo_insn_offs else [],
                     jit.native_code)


def select_runtime(insns: Sequence[Insn], *, jit_enable: int = 1, harden: int = 0,
                   privileged: bool = True, jit_always_on: bool = False,
                   helpers: Mapping[int, Any] | None = None,
                   kfuncs: Mapping[int, Any] | None = None, ld_abs: Any = None,
                   mem: MemoryRegistry = REGISTRY, name: str = "prog",
                   linfo_insn_offs: Sequence[int] = (), sanitize: bool = False,
                   arena: Any = None) -> RuntimeSelection:
    """Choose and build the runtime of a verified (post-fixup) program.

    ``jit_enable`` is the instance's ``net.core.bpf_jit_enable`` (0 interpreter, 1 or 2
    JIT), ``harden`` its ``bpf_jit_harden``, ``privileged`` whether the loader has
    CAP_SYS_ADMIN (for ``harden == 1``). When the JIT is enabled but cannot be used
    (llvmlite missing, a compile error) the interpreter runs the program and
    ``jit_error`` says why — or, with ``jit_always_on`` (CONFIG_BPF_JIT_ALWAYS_ON),
    :class:`~pybpf.errors.BpfError` ENOTSUPP is raised as the kernel fails the load.
    """
    insns = list(insns)
    if jit_enable:
        blind = blinding_enabled(harden, privileged)
        try:
            program = _load_jit()
            jit = program.compile_program(insns, helpers=helpers, kfuncs=kfuncs,
                                          ld_abs=ld_abs, mem=mem, name=name,
                                          sanitize=sanitize, harden=blind, arena=arena)
            info = jited_info(jit, linfo_insn_offs)
        except Exception as exc:
            if jit_always_on:
                from pybpf.errors import BpfError

                raise BpfError(ENOTSUPP, f"JIT compilation failed: {exc}") from exc
            error = f"{type(exc).__name__}: {exc}"
        else:
            return RuntimeSelection(jit, True, info, blind, list(jit.insns), "",
                                    jit.compile_ns)
    else:
        error = ""
    runner = _interpreter(insns, helpers=helpers, kfuncs=kfuncs, ld_abs=ld_abs, mem=mem,
                          name=name)
    return RuntimeSelection(runner, False, None, False, insns, error)


__all__ = ["ENOTSUPP", "JitedInfo", "RuntimeSelection", "blinding_enabled", "jited_info",
           "select_runtime"]
