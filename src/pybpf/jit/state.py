"""The native run context shared by JIT code, native helpers and the Python bridge.

Every native function of a JIT-compiled program takes a pointer to one :class:`JitCtx`
(the counterpart of the interpreter's :class:`~pybpf.runtime.context.RunContext`, in
native memory so compiled code can read it without Python). It carries the CPU id
per-CPU maps index by, the may_goto and instruction budgets, the per-thread stack
frames, the Python bridge's address, the sanitizer's region table, the program's
arena, and — when a run
stops early — why: a pending Python exception, a fault (pc, address, size, reason) or a
tail call.

The field order is ABI between :mod:`pybpf.jit.translate` (which addresses fields by
:data:`FIELD` index) and this module; change both together.
"""

from __future__ import annotations

import ctypes
from enum import IntEnum

from pybpf.isa.opcodes import MAX_CALL_FRAMES


class Status(IntEnum):
    """Why native code returned (``JitCtx.status``)."""

    OK = 0
    PY_EXCEPTION = 1  # a helper raised; the bridge stored the exception
    FAULT = 2  # fault_pc / fault_addr / fault_size / fault_reason are set
    TAIL_CALL = 3  # the bridge stored the target; run() continues there
    LD_ABS_ABORT = 4  # an LD_ABS/LD_IND out of the packet: the frame returns 0


class JitCtx(ctypes.Structure):
    """``struct jit_ctx``: all fields are 64-bit so native code indexes them as ``i64[]``."""

    _fields_ = [
        ("status", ctypes.c_uint64),
        ("fault_pc", ctypes.c_uint64),
        ("fault_addr", ctypes.c_uint64),
        ("fault_size", ctypes.c_uint64),
        ("fault_reason", ctypes.c_uint64),
        ("cpu", ctypes.c_uint64),
        ("loops", ctypes.c_int64),
        ("steps", ctypes.c_int64),
        ("bridge", ctypes.c_uint64),
        ("regions", ctypes.c_uint64),
        ("nregions", ctypes.c_uint64),
        ("prandom", ctypes.c_uint64),
        ("run_id", ctypes.c_uint64),
        ("loop_target", ctypes.c_uint64),  # the program the native test_run loop calls
        ("depth", ctypes.c_uint64),  # call depth of the native code that called the bridge
        # the program's arena (jit/arenagen.py): its kernel window, resident-page table
        # and the upper half of its user address
        ("arena_base", ctypes.c_uint64),
        ("arena_table", ctypes.c_uint64),
        ("arena_user_hi", ctypes.c_uint64),
        ("reserved", ctypes.c_uint64),
        ("frames", ctypes.c_uint64 * MAX_CALL_FRAMES),  # frame pointers (one past the top)
    ]


FIELD: dict[str, int] = {name: getattr(JitCtx, name).offset // 8 for name, *_ in JitCtx._fields_}
"""Field name → index of its first 64-bit word, as native code addresses it."""

BRIDGE_HELPER = 0
BRIDGE_KFUNC = 1
BRIDGE_CALLX = 2
BRIDGE_LD_ABS = 3
"""``kind`` argument of the bridge: what the native code asks Python to do."""

BRIDGE_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64,
                               ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64,
                               ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64,
                               ctypes.c_uint64)
"""``u64 bridge(jit_ctx *, kind, id, r1, r2, r3, r4, r5, pc)``."""

ENTRY_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64,
                              ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64,
                              ctypes.c_uint64)
"""``u64 prog(jit_ctx *, r1, r2, r3, r4, r5)``: a program's native entry point."""

CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64,
                                 ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64,
                                 ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64)
"""``u64 callback(jit_ctx *, depth, target pc, r1..r5)``: run a callback subprogram."""

LOOP_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64,
                             ctypes.c_uint64, ctypes.c_void_p)
"""``u64 loop(jit_ctx *, r1, repeat, u64 *retval)``: run the program ``repeat`` times in
native code (the loop of ``BPF_PROG_TEST_RUN``) and return the elapsed nanoseconds."""

FIXED_REASONS = ("invalid memory read", "invalid memory write", "write to read-only")
"""Fault reasons every program shares (indices 0–2); per-program reasons follow."""
REASON_READ, REASON_WRITE, REASON_READ_ONLY = 0, 1, 2
