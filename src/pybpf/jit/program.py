"""A JIT-compiled program: the interpreter's ``run`` interface on native code.

:func:`compile_program` translates (:mod:`pybpf.jit.translate`), optimises and emits a
program, or takes it from the compile cache (:mod:`pybpf.jit.cache`), and wraps it in a
:class:`JitProgram` whose ``run`` behaves exactly like
:meth:`pybpf.runtime.interpreter.CompiledProgram.run`: same arguments, same r0, same
faults (:class:`~pybpf.errors.BpfFault` with pc, address and size), the same tail-call
limit, and helper exceptions propagate.

Each thread has its own native run context and its own registered stack frames, so
several threads run programs in parallel (ctypes releases the GIL while native code
runs), each with its own CPU id.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pybpf.errors import BpfFault
from pybpf.isa.insn import Insn, encode
from pybpf.isa.opcodes import MAX_BPF_STACK, MAX_CALL_FRAMES
from pybpf.jit import bridge as _bridge
from pybpf.jit import cache as _cache
from pybpf.jit.engine import compile_ir
from pybpf.jit.natives import natives_for
from pybpf.jit.state import (
    CALLBACK_TYPE,
    ENTRY_TYPE,
    LOOP_TYPE,
    REASON_READ_ONLY,
    JitCtx,
    Status,
)
from pybpf.jit.translate import Translation, Translator
from pybpf.runtime.context import BPF_MAX_LOOPS, RunContext, thread_stack
from pybpf.runtime.interpreter import MAX_TAIL_CALL_CNT, HelperFn, LdAbsFn
from pybpf.runtime.memory import REGISTRY, MemoryRegistry, Region

M64 = (1 << 64) - 1


# --- native code ------------------------------------------------------------------------
@dataclass
class CompiledCode:
    """Native code of one translation; shared by every JitProgram of the same program."""

    translation: Translation
    addresses: dict[str, int]
    object_file: bytes
    entry: Any  # ENTRY_TYPE
    loop: Any  # LOOP_TYPE
    callback: Any = None  # CALLBACK_TYPE, when the program has callback subprograms
    compile_ns: int = 0
    line_twin: Callable[[], tuple[Translation, bytes]] | None = field(default=None, repr=False)
    _layout: Any = field(default=None, repr=False)

    def layout(self) -> Any:
        """Function sizes and the line table, read from the object file on first use."""
        if self._layout is None:
            from pybpf.jit.layout import read_layout

            self._layout = read_layout(self)
        return self._layout


def build_code(insns: Sequence[Insn], *, name: str, sanitize: bool, budgeted: bool,
               natives: Mapping[int, Any], debug_info: bool = True,
               aux_reg: bool = False) -> CompiledCode:
    t0 = time.perf_counter_ns()
    tr = Translator(insns, name=name, sanitize=sanitize, budgeted=budgeted,
                    natives={fid: row.gen for fid, row in natives.items()},
                    debug_info=debug_info, aux_reg=aux_reg).translate()
    native = compile_ir(tr.ir, [tr.entry, tr.loop] + ([tr.callback] if tr.callback else []),
                        keep=[fname for fname, pc in tr.functions if pc])
    addresses = dict(native.addresses)

    def line_twin() -> tuple[Translation, bytes]:
        # The same code with line info, compiled on demand: LLVM's code generation does
        # not depend on debug info, so its offsets hold for the code that runs.
        twin = Translator(insns, name=name, sanitize=sanitize, budgeted=budgeted,
                          natives={fid: row.gen for fid, row in natives.items()},
                          debug_info=True, aux_reg=aux_reg).translate()
        return twin, compile_ir(twin.ir, [twin.entry],
                                keep=[fname for fname, pc in twin.functions if pc]).object_file

    callback = CALLBACK_TYPE(addresses[tr.callback]) if tr.callback else None
    return CompiledCode(tr, addresses, native.object_file, ENTRY_TYPE(addresses[tr.entry]),
                        LOOP_TYPE(addresses[tr.loop]), callback, time.perf_counter_ns() - t0,
                        None if debug_info else line_twin)


# --- per-thread native state -------------------------------------------------------------
class _ThreadCtx:
    """A run context and its stack frames, owned by one thread (reused across runs)."""

    def __init__(self, mem: MemoryRegistry, *, nested: bool = False) -> None:
        self.mem = mem
        self.jctx = JitCtx()
        self.addr = ctypes.addressof(self.jctx)
        if nested:
            self.frames: list[Region] = [mem.alloc(MAX_BPF_STACK, f"jit stack frame {i}")
                                         for i in range(MAX_CALL_FRAMES)]
            weakref.finalize(self, _release_frames, mem, list(self.frames))
        else:
            # The thread's interpreter frames: both tiers see the same stack addresses.
            self.frames = thread_stack(mem).frames
        for i, frame in enumerate(self.frames):
            self.jctx.frames[i] = frame.end
        self.jctx.bridge = _bridge.BRIDGE_ADDR
        self.jctx.prandom = int.from_bytes(os.urandom(8), "little") | 1
        self.busy = False


def _release_frames(mem: MemoryRegistry, frames: list[Region]) -> None:
    for frame in frames:
        mem.remove(frame)


_local = threading.local()


def _acquire(mem: MemoryRegistry) -> _ThreadCtx:
    pool: dict[int, _ThreadCtx] | None = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    tc = pool.get(id(mem))
    if tc is None:
        tc = pool[id(mem)] = _ThreadCtx(mem)
    if tc.busy:  # a run inside a helper of a run on this thread: its own frames
        tc = _ThreadCtx(mem, nested=True)
    tc.busy = True
    return tc


# --- the sanitizer's region table ---------------------------------------------------------
class RegionTable:
    """The registry's regions as a sorted native array ``(start, end, writable)``.

    Rebuilt when the registry publishes a new snapshot (its region tuple changes identity
    on every add/remove), checked before a run and after every bridge call.
    """

    def __init__(self, mem: MemoryRegistry) -> None:
        self.mem = mem
        self.snapshot: tuple[Region, ...] | None = None
        self.array: Any = (ctypes.c_uint64 * 3)()
        self.count = 0
        self._keep: list[Any] = []
        self._lock = threading.Lock()

    def sync(self) -> tuple[int, int]:
        regions = self.mem.regions()
        if regions is not self.snapshot:
            with self._lock:
                arr = (ctypes.c_uint64 * (3 * max(len(regions), 1)))()
                for i, r in enumerate(regions):
                    arr[3 * i] = r.start
                    arr[3 * i + 1] = r.end
                    arr[3 * i + 2] = 1 if r.writable else 0
                self._keep.append(self.array)
                del self._keep[:-4]  # other threads may still be reading recent tables
                self.array, self.count, self.snapshot = arr, len(regions), regions
        return ctypes.addressof(self.array), self.count


_TABLES: weakref.WeakKeyDictionary[MemoryRegistry, RegionTable] = weakref.WeakKeyDictionary()


def region_table(mem: MemoryRegistry) -> RegionTable:
    table = _TABLES.get(mem)
    if table is None:
        table = _TABLES[mem] = RegionTable(mem)
    return table


# --- the program ------------------------------------------------------------------------
class JitProgram:
    """A program compiled to native code, with the interpreter's ``run`` interface."""

    def __init__(self, insns: Sequence[Insn], code: CompiledCode, *,
                 helpers: Mapping[int, HelperFn] | None = None,
                 kfuncs: Mapping[int, HelperFn] | None = None, ld_abs: LdAbsFn | None = None,
                 mem: MemoryRegistry = REGISTRY, name: str = "prog", sanitize: bool = False,
                 budgeted: bool = False, blinded: bool = False,
                 xlated: Sequence[Insn] | None = None,
                 blind_map: Sequence[int] | None = None, arena: Any = None) -> None:
        self.insns = list(insns)
        self.xlated = list(xlated) if xlated is not None else self.insns
        self.code = code
        self.helpers = dict(helpers or {})
        self.kfuncs = dict(kfuncs or {})
        self.ld_abs = ld_abs
        self.mem = mem
        self.name = name
        self.sanitize = sanitize
        self.budgeted = budgeted
        self.blinded = blinded
        # original instruction index → index in the blinded program (identity otherwise)
        self.blind_map = list(blind_map) if blind_map is not None else None
        self.arena = arena  # the program's ArenaMap (prog->aux->arena), if it has one
        self._entry: Callable[..., int] = code.entry
        self._budgeted_twin: JitProgram | None = None
        # the region table: the sanitizer's checks, and BPF_PROBE_MEM loads (always checked)
        self._table = region_table(mem) \
            if sanitize or code.translation.notes.get("probe_loads") else None

    # -- running ----------------------------------------------------------------------
    def run(self, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0, r5: int = 0, *,
            ctx: RunContext | None = None, steps: int | None = None, cpu: int = 0,
            prog: Any = None, kernel: Any = None) -> int:
        """Run from instruction 0 with R1–R5 set; return R0 (unsigned 64-bit)."""
        if steps is not None and not self.budgeted and (
                self.code.translation.may_loop or steps < len(self.insns)):
            return self.with_budget().run(r1, r2, r3, r4, r5, ctx=ctx, steps=steps, cpu=cpu,
                                          prog=prog, kernel=kernel)
        tc = _acquire(self.mem)
        jctx = tc.jctx
        jctx.status = 0
        jctx.cpu = ctx.cpu if ctx is not None else cpu
        jctx.loops = ctx.loops if ctx is not None else BPF_MAX_LOOPS
        jctx.steps = steps if steps is not None else -1
        _set_arena(jctx, self.arena)
        state = _bridge.RunState(self, jctx, ctx, jctx.cpu, prog, kernel)
        if ctx is not None:
            ctx.steps = jctx.steps
            ctx.runner = self
        _bridge.register_run(tc.addr, state)
        try:
            program = self
            args: tuple[int, ...] = (r1 & M64, r2 & M64, r3 & M64, r4 & M64, r5 & M64)
            tail_calls = 0
            while True:
                if program._table is not None:
                    table = program._table
                    jctx.regions, jctx.nregions = table.sync()
                    state.on_return = _resync(table, jctx)
                else:
                    state.on_return = None
                r0 = program._entry(tc.addr, *args)
                status = jctx.status
                if status == Status.OK:
                    return int(r0)
                if status == Status.PY_EXCEPTION:
                    exc = state.exc
                    state.exc = None
                    assert exc is not None
                    raise exc
                if status == Status.FAULT:
                    raise program._fault(jctx)
                if status == Status.TAIL_CALL:
                    tail_calls += 1
                    if tail_calls > MAX_TAIL_CALL_CNT:
                        return M64
                    program = as_jit(state.tail, budgeted=self.budgeted)
                    _set_arena(jctx, program.arena)
                    state.program = program
                    state.tail = None
                    args = state.tail_args
                    jctx.status = 0
                    if state.ctx is not None:
                        state.ctx.depth = 0
                        state.ctx.runner = program
                    continue
                raise BpfFault(int(jctx.fault_pc), 0, 0, f"bad JIT status {status}")
        finally:
            if ctx is not None:
                ctx.loops = jctx.loops
                ctx.steps = jctx.steps
            _bridge.unregister_run(tc.addr)
            tc.busy = False

    def call_subprog(self, ctx: RunContext, target: int, r1: int = 0, r2: int = 0,
                     r3: int = 0, r4: int = 0, r5: int = 0) -> int:
        """Run subprogram ``target`` from a helper (``ctx.call_subprog``): fresh registers,
        the next frame — the interpreter's ``call_subprog`` on native code."""
        depth = ctx.depth + 1
        if depth >= MAX_CALL_FRAMES:
            raise BpfFault(target, 0, 0, f"call depth exceeds {MAX_CALL_FRAMES} frames")
        if not 0 <= target < len(self.xlated):
            raise BpfFault(target, 0, 0, f"callback target {target} out of range")
        state = _bridge.current_run()
        native_pc = self._native_pc(target)
        if (state is None or state.program is not self or self.code.callback is None
                or native_pc not in self.code.translation.callback_targets):
            return self._interpreted().call_subprog(ctx, target, r1, r2, r3, r4, r5)
        jctx = state.jctx
        saved_depth = ctx.depth
        ctx.depth = depth
        try:
            r0 = self.code.callback(ctypes.addressof(jctx), depth, native_pc, r1 & M64,
                                    r2 & M64, r3 & M64, r4 & M64, r5 & M64)
            status = jctx.status
            if status != Status.OK:
                jctx.status = 0
                if status == Status.PY_EXCEPTION and state.exc is not None:
                    exc, state.exc = state.exc, None
                    raise exc
                if status == Status.FAULT:
                    raise self._fault(jctx)
                raise BpfFault(target, 0, 0, "tail call from a callback")
            return int(r0)
        finally:
            ctx.depth = saved_depth

    def _interpreted(self) -> Any:
        """The interpreter's form of this program (for callbacks the JIT has no entry for)."""
        twin = getattr(self, "_interp_twin", None)
        if twin is None:
            from pybpf.runtime.interpreter import CompiledProgram

            twin = self._interp_twin = CompiledProgram(
                self.xlated, helpers=self.helpers, kfuncs=self.kfuncs, ld_abs=self.ld_abs,
                mem=self.mem, name=self.name)
        return twin

    def _fault(self, jctx: JitCtx) -> BpfFault:
        reasons = self.code.translation.reasons
        idx = int(jctx.fault_reason)
        reason = reasons[idx] if idx < len(reasons) else "fault"
        addr, size = int(jctx.fault_addr), int(jctx.fault_size)
        if idx == REASON_READ_ONLY:
            region = self.mem.find(addr, size)
            reason = f"write to read-only {region.name if region else '?'}"
        return BpfFault(int(jctx.fault_pc), addr, size, reason)

    def with_budget(self) -> JitProgram:
        """The same program compiled with an instruction budget check in every block."""
        if self.budgeted:
            return self
        if self._budgeted_twin is None:
            self._budgeted_twin = compile_program(
                self.xlated, helpers=self.helpers, kfuncs=self.kfuncs, ld_abs=self.ld_abs,
                mem=self.mem, name=self.name, sanitize=self.sanitize, harden=self.blinded,
                arena=self.arena, _budgeted=True)
        return self._budgeted_twin

    def test_run(self, r1: int = 0, repeat: int = 1, *, cpu: int = 0) -> tuple[int, int]:
        """Run ``repeat`` times in a native loop (``BPF_PROG_TEST_RUN``); ``(r0, total ns)``.

        Only for programs that never need Python (no bridge calls): the loop does not
        stop for helper exceptions or tail calls. Others fall back to ``run`` in a loop.
        """
        if self.code.translation.uses_bridge or self.sanitize:
            import time

            t0 = time.perf_counter_ns()
            r0 = 0
            for _ in range(max(repeat, 1)):
                r0 = self.run(r1, cpu=cpu)
            return r0, time.perf_counter_ns() - t0
        tc = _acquire(self.mem)
        try:
            jctx = tc.jctx
            jctx.status = 0
            jctx.cpu = cpu
            jctx.loops = BPF_MAX_LOOPS
            jctx.steps = -1
            _set_arena(jctx, self.arena)
            jctx.loop_target = self.code.addresses[self.code.translation.entry]
            retval = ctypes.c_uint64(0)
            ns = self.code.loop(tc.addr, r1 & M64, max(repeat, 1), ctypes.addressof(retval))
            if jctx.status == Status.FAULT:
                raise self._fault(jctx)
            return int(retval.value), int(ns)
        finally:
            tc.busy = False

    # -- jited info -------------------------------------------------------------------
    @property
    def jited_len(self) -> int:
        """``jited_prog_len``: bytes of native code of all functions."""
        return int(sum(self.jited_func_lens))

    @property
    def jited_func_lens(self) -> list[int]:
        return [f.size for f in self.code.layout().functions]

    @property
    def jited_ksyms(self) -> list[int]:
        """Start address of each function's native code (main first)."""
        return [f.address for f in self.code.layout().functions]

    @property
    def native_code(self) -> bytes:
        """The native code of every function, concatenated in ``jited_ksyms`` order."""
        return b"".join(f.code() for f in self.code.layout().functions)

    def _native_pc(self, pc: int) -> int:
        return self.blind_map[pc] if self.blind_map is not None and pc < len(
            self.blind_map) else pc

    @property
    def insn_offsets(self) -> dict[int, int]:
        """BPF instruction index (of the program as loaded) → native offset from the start
        of the main function."""
        offs = self.code.layout().insn_offsets
        return {pc: offs[self._native_pc(pc)] for pc in range(len(self.xlated))
                if self._native_pc(pc) in offs}

    def jited_line_info(self, insn_offs: Sequence[int]) -> list[int]:
        """``bpf_prog_fill_jited_linfo``: native address of each line-info instruction."""
        layout = self.code.layout()
        main = layout.functions[0].address if layout.functions else 0
        return [layout.insn_addrs.get(self._native_pc(off), main) for off in insn_offs]

    @property
    def compile_ns(self) -> int:
        return self.code.compile_ns

    def disassemble(self, annotate: Callable[[int], str | None] | None = None,
                    tag: str = "") -> list[str]:
        """Native code as text (``bpftool prog dump jited``); see :mod:`pybpf.jit.disasm`."""
        from pybpf.jit.disasm import disassemble

        return disassemble(self, annotate=annotate, tag=tag)


def _resync(table: RegionTable, jctx: JitCtx) -> Callable[[], None]:
    def resync() -> None:
        jctx.regions, jctx.nregions = table.sync()

    return resync


_TWINS: weakref.WeakKeyDictionary[Any, JitProgram] = weakref.WeakKeyDictionary()


def as_jit(target: Any, *, budgeted: bool = False) -> JitProgram:
    """The JIT form of a tail-call target (a JitProgram, or an interpreter program)."""
    if isinstance(target, JitProgram):
        return target.with_budget() if budgeted else target
    twin = _TWINS.get(target)
    if twin is None:
        twin = compile_program(target.insns, helpers=getattr(target, "helpers", None),
                               kfuncs=getattr(target, "kfuncs", None),
                               ld_abs=getattr(target, "ld_abs", None),
                               mem=getattr(target, "mem", REGISTRY),
                               name=getattr(target, "name", "prog"),
                               arena=getattr(target, "arena", None))
        _TWINS[target] = twin
    return twin.with_budget() if budgeted else twin


def _map_fingerprint(insns: Sequence[Insn], natives: Mapping[int, Any]) -> tuple[Any, ...]:
    if not any(hasattr(row.gen, "applies") for row in natives.values()):
        return ()
    from pybpf.jit.mapgen import map_fingerprint

    return map_fingerprint(insns)


def _set_arena(jctx: JitCtx, arena: Any) -> None:
    """Point the run context at ``arena`` (``JitCtx.arena_*``, read by jit/arenagen.py);
    pages user space has touched since become resident first (``arena_vm_fault``)."""
    if arena is None:
        jctx.arena_base = jctx.arena_table = jctx.arena_user_hi = 0
        return
    arena.sync_user_faults()
    jctx.arena_table = arena.jit_table()
    jctx.arena_base = arena.kern_vm_start
    jctx.arena_user_hi = arena.user_vm_start & ~0xFFFFFFFF


def _is_arena_insn(ins: Insn) -> bool:
    """``BPF_PROBE_MEM32``/``BPF_PROBE_MEM32SX``/``BPF_PROBE_ATOMIC`` accesses and
    ``addr_space_cast``."""
    cls, mode = ins.code & 0x07, ins.code & 0xE0
    if cls in (0x01, 0x02, 0x03) and mode in (0xA0, 0xE0):
        return True
    if cls == 0x01 and mode == 0xC0:  # BPF_PROBE_MEM32SX
        return True
    return ins.code == 0xBF and ins.off == 1


def compile_program(insns: Sequence[Insn], *, helpers: Mapping[int, HelperFn] | None = None,
                    kfuncs: Mapping[int, HelperFn] | None = None, ld_abs: LdAbsFn | None = None,
                    mem: MemoryRegistry = REGISTRY, name: str = "prog", sanitize: bool = False,
                    harden: bool = False, native_helpers: bool = True,
                    debug_info: bool = False, arena: Any = None,
                    _budgeted: bool = False) -> JitProgram:
    """JIT-compile a (verified, post-fixup) program.

    ``harden`` applies constant blinding first (``bpf_jit_harden``); ``sanitize`` checks
    every memory access against ``mem``; ``native_helpers`` lets standard helper
    implementations run as native code (:mod:`pybpf.jit.natives`); ``debug_info`` emits
    line info with the code (otherwise it is derived on demand, when jited line info or
    an annotated disassembly is first asked for).
    ``arena`` is the program's arena map, which its arena instructions address
    (:mod:`pybpf.jit.arenagen`); without it such a program is not compiled.
    """
    insns = list(insns)
    if arena is None and any(_is_arena_insn(i) for i in insns):
        # arena code needs the program's arena (select_runtime falls back to the interpreter)
        raise NotImplementedError("pybpf: arena instructions without the program's arena")
    natives = natives_for(helpers or {}) if native_helpers else {}
    xlated = insns
    blind_map: list[int] | None = None
    if harden:
        from pybpf.jit.blinding import blind_constants

        insns, blind_map = blind_constants(insns)
        code = build_code(insns, name=name, sanitize=sanitize, budgeted=_budgeted,
                          natives=natives, debug_info=debug_info, aux_reg=True)
    else:
        key = _cache.CacheKey(encode(insns), sanitize, _budgeted,
                              tuple(sorted((fid, row.name) for fid, row in natives.items())),
                              debug_info, _map_fingerprint(insns, natives))
        cached = _cache.CACHE.get(key)
        if cached is None:
            # r11 (BPF_REG_AX) appears in the verifier's ctx rewrites
            aux = any(i.dst == 11 or i.src == 11 for i in insns)
            cached = build_code(insns, name=name, sanitize=sanitize, budgeted=_budgeted,
                                natives=natives, debug_info=debug_info, aux_reg=aux)
            _cache.CACHE.put(key, cached)
        code = cached
    return JitProgram(insns, code, helpers=helpers, kfuncs=kfuncs, ld_abs=ld_abs, mem=mem,
                      name=name, sanitize=sanitize, budgeted=_budgeted, blinded=harden,
                      xlated=xlated, blind_map=blind_map, arena=arena)
