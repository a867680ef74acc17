"""The way back from native code into Python: one ctypes callback for every program.

JIT code that needs Python (a helper without a native implementation, a kfunc, ``callx``,
``LD_ABS``/``LD_IND``) calls the bridge through the pointer in its run context. The
callback finds the run by the context's address, calls the implementation, and returns
r0. A Python exception cannot cross native frames, so the bridge stores it, sets the
context's ``status`` and returns; the native code checks ``status`` after every bridge
call and unwinds, and ``run()`` re-raises. A :class:`~pybpf.runtime.interpreter.TailCall`
travels the same way, with its own status.

ctypes releases the GIL around calls into native code and re-acquires it in the callback,
so programs run in parallel between helper calls.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pybpf.errors import BpfFault
from pybpf.jit.state import (
    BRIDGE_CALLX,
    BRIDGE_HELPER,
    BRIDGE_KFUNC,
    BRIDGE_LD_ABS,
    BRIDGE_TYPE,
    JitCtx,
    Status,
)
from pybpf.runtime.context import RunContext
from pybpf.runtime.interpreter import TailCall

if TYPE_CHECKING:
    from pybpf.jit.program import JitProgram

M64 = (1 << 64) - 1


class RunState:
    """One invocation of ``JitProgram.run``: what the bridge needs to serve it."""

    __slots__ = (
        "cpu",
        "ctx",
        "exc",
        "jctx",
        "kernel",
        "on_return",
        "prog",
        "program",
        "tail",
        "tail_args",
    )

    def __init__(self, program: JitProgram, jctx: JitCtx, ctx: RunContext | None, cpu: int,
                 prog: Any, kernel: Any) -> None:
        self.program = program
        self.jctx = jctx
        self.ctx = ctx
        self.cpu = cpu
        self.prog = prog
        self.kernel = kernel
        self.exc: BaseException | None = None
        self.tail: Any = None
        self.tail_args: tuple[int, ...] = ()
        self.on_return: Callable[[], None] | None = None  # e.g. re-sync the region table

    def context(self) -> RunContext:
        """The RunContext helpers receive, created on first need (most runs never need it)."""
        ctx = self.ctx
        if ctx is None:
            ctx = self.ctx = RunContext(mem=self.program.mem, cpu=self.cpu, prog=self.prog,
                                        kernel=self.kernel)
            ctx.runner = self.program
        return ctx


_RUNS: dict[int, RunState] = {}
_RUNS_LOCK = threading.Lock()
_ACTIVE = threading.local()  # .stack: this thread's runs, innermost last


def register_run(addr: int, state: RunState) -> None:
    _RUNS[addr] = state  # one writer per address: the thread owning that context
    stack: list[RunState] | None = getattr(_ACTIVE, "stack", None)
    if stack is None:
        stack = _ACTIVE.stack = []
    stack.append(state)


def unregister_run(addr: int) -> None:
    state = _RUNS.pop(addr, None)
    stack: list[RunState] | None = getattr(_ACTIVE, "stack", None)
    if stack and state is not None and stack[-1] is state:
        stack.pop()


def current_run() -> RunState | None:
    """The innermost run of JIT code on this thread (whose helper is calling Python)."""
    stack: list[RunState] | None = getattr(_ACTIVE, "stack", None)
    return stack[-1] if stack else None


def _dispatch(state: RunState, kind: int, ident: int, r1: int, r2: int, r3: int, r4: int,
              r5: int, pc: int) -> int:
    program = state.program
    ctx = state.context()
    ctx.depth = int(state.jctx.depth)  # a callback the helper runs takes the next frame
    if kind in (BRIDGE_HELPER, BRIDGE_CALLX):
        fn = program.helpers.get(ident)
        if fn is None:
            raise BpfFault(pc, 0, 0, f"unknown helper {ident}")
        return int(fn(ctx, r1, r2, r3, r4, r5)) & M64
    if kind == BRIDGE_KFUNC:
        fn = program.kfuncs.get(ident)
        if fn is None:
            raise BpfFault(pc, 0, 0, f"unknown kfunc {ident}")
        return int(fn(ctx, r1, r2, r3, r4, r5)) & M64
    if kind == BRIDGE_LD_ABS:
        if program.ld_abs is None:
            raise BpfFault(pc, 0, ident, "LD_ABS/LD_IND needs a socket buffer context")
        value = program.ld_abs(ctx, r1, r2 & M64, ident)
        if value is None:
            state.jctx.status = Status.LD_ABS_ABORT
            return 0
        return int(value) & M64
    raise BpfFault(pc, 0, 0, f"bad bridge request {kind}")


def _bridge(jctx_addr: int, kind: int, ident: int, r1: int, r2: int, r3: int, r4: int,
            r5: int, pc: int) -> int:
    state = _RUNS.get(jctx_addr)
    if state is None:  # cannot happen while run() is on the stack; be safe anyway
        ctypes.c_uint64.from_address(jctx_addr).value = Status.FAULT
        return 0
    try:
        r0 = _dispatch(state, kind, ident, r1, r2, r3, r4, r5, pc)
    except TailCall as tc:
        state.tail = tc.target
        state.tail_args = (r1, r2, r3, r4, r5)
        state.jctx.status = Status.TAIL_CALL
        r0 = 0
    except BaseException as exc:
        state.exc = exc
        state.jctx.status = Status.PY_EXCEPTION
        r0 = 0
    if state.on_return is not None:
        state.on_return()
    return r0


BRIDGE = BRIDGE_TYPE(_bridge)
"""The one callback object; its address goes into every run context."""
BRIDGE_ADDR: int = ctypes.cast(BRIDGE, ctypes.c_void_p).value or 0
