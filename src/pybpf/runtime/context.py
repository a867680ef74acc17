"""Per-run state shared by the interpreter and the helpers a program calls.

One :class:`RunContext` exists per program invocation (per thread): it carries the memory
registry, the CPU the run pretends to be on (per-CPU maps index by it), the program and
kernel instance (helpers reach maps and sysctls through them), the stack frames, and the
counters that bound unverified programs.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from pybpf.isa.opcodes import MAX_BPF_STACK, MAX_CALL_FRAMES
from pybpf.runtime.cpus import check_cpu
from pybpf.runtime.memory import REGISTRY, MemoryRegistry, Region

BPF_MAX_LOOPS = 8 * 1024 * 1024
"""Iterations a ``may_goto`` allows before it takes its branch (kernel ``BPF_MAX_LOOPS``)."""


class StackFrames:
    """The stack frames of one thread: ``MAX_CALL_FRAMES`` regions of 512 bytes.

    Each frame is its own region, so a program that runs off its frame faults instead of
    silently reading its caller's. Frames are reused across runs of the same thread.
    """

    def __init__(self, mem: MemoryRegistry) -> None:
        self.mem = mem
        self.frames: list[Region] = [
            mem.alloc(MAX_BPF_STACK, f"stack frame {i}") for i in range(MAX_CALL_FRAMES)
        ]

    def enter(self, depth: int) -> int:
        """Zero the frame at ``depth`` and return its frame pointer (one past the top)."""
        frame = self.frames[depth]
        ctypes.memset(frame.start, 0, MAX_BPF_STACK)
        return frame.end

    def close(self) -> None:
        for frame in self.frames:
            self.mem.remove(frame)
        self.frames = []


_local = threading.local()


def thread_stack(mem: MemoryRegistry = REGISTRY) -> StackFrames:
    """The calling thread's stack frames in ``mem`` (created on first use)."""
    stacks: dict[int, StackFrames] | None = getattr(_local, "stacks", None)
    if stacks is None:
        stacks = _local.stacks = {}
    frames = stacks.get(id(mem))
    if frames is None:
        frames = stacks[id(mem)] = StackFrames(mem)
    return frames


class RunContext:
    """What a running program and its helpers share."""

    __slots__ = ("cpu", "data", "depth", "kernel", "loops", "mem", "prog", "runner", "stack",
                 "steps")

    def __init__(self, *, mem: MemoryRegistry = REGISTRY, cpu: int = 0, prog: Any = None,
                 kernel: Any = None, steps: int = -1) -> None:
        self.mem = mem
        self.cpu = check_cpu(cpu)
        self.prog = prog
        self.kernel = kernel
        self.stack = thread_stack(mem)
        self.depth = 0
        self.loops = BPF_MAX_LOOPS
        self.steps = steps  # instruction budget; negative = unlimited
        self.data: dict[str, Any] = {}
        self.runner: Any = None  # the compiled program running now (interpreter or JIT)

    def call_subprog(self, target: int, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0,
                     r5: int = 0) -> int:
        """Run the current program's subprogram at instruction ``target`` and return r0.

        Helpers that take a callback (``for_each_map_elem``, ``loop``, timers, …) call
        this, like the kernel calling a ``PTR_TO_FUNC`` from a helper.
        """
        if self.runner is None:
            raise RuntimeError("no program is running in this context")
        return int(self.runner.call_subprog(self, target, r1, r2, r3, r4, r5))
