"""``struct bpf_prog`` + ``struct bpf_prog_aux``: a loaded program (seed: ``kernel/bpf/core.c``).

What users can observe of a program lives here: its type and expected attach type, the
instructions as loaded and as translated, the tag, ``gpl_compatible``, the ID, name, load
time and owner, the maps and BTF it holds references to, func/line info, run statistics
and memlock accounting. The runtime the program executes on (interpreter or JIT) is
``bpf_func``.

Lifecycle: a program starts with one reference (its first fd); every fd, pin, link,
prog-array slot or ``attach_prog_fd`` user takes another. When the last goes,
:meth:`BpfProg.put` frees the ID first (so ``GET_FD_BY_ID`` cannot resurrect it), then
drops the maps, the BTF objects and the target program, and runs the free hooks.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pybpf.isa.insn import Insn, encode

if TYPE_CHECKING:
    from pybpf.core.btf import BtfObject
    from pybpf.core.map import KMap
    from pybpf.kernel import Kernel

BPF_TAG_SIZE = 8
BPF_OBJ_NAME_LEN = 16
PAGE_SIZE = 4096
#: ``offsetof(struct bpf_prog, insns)`` on x86-64 6.18: the header ``bpf_prog_size`` adds.
BPF_PROG_HEADER_SIZE = 72

_LD_IMM64 = 0x18
#: per thread: how deep in program runs we are (a run inside a helper is not the outermost)
_RUNS = threading.local()
# BPF_PSEUDO_MAP_FD and BPF_PSEUDO_MAP_VALUE: the ld_imm64 forms whose imm is an fd.
_TAG_ZEROED_SRC = (1, 2)

#: ``license_is_gpl_compatible()`` (include/linux/license.h): exact strings only.
GPL_COMPATIBLE_LICENSES = frozenset({
    "GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL",
    "Dual MPL/GPL",
})


def license_is_gpl_compatible(license: str | bytes) -> bool:
    if isinstance(license, bytes):
        license = license.decode("latin-1")
    return license in GPL_COMPATIBLE_LICENSES


def bpf_obj_name_cpy(src: bytes, size: int = BPF_OBJ_NAME_LEN) -> bytes | None:
    """``bpf_obj_name_cpy``: the validated name, or ``None`` for ``EINVAL``.

    Only ``isalnum()``, ``'_'`` and ``'.'`` are allowed, and a NUL must occur within the
    ``size`` bytes (so at most 15 characters for the 16-byte fields).
    """
    src = src[:size].ljust(size, b"\0") if len(src) < size else src[:size]
    out = bytearray()
    for byte in src:
        if byte == 0:
            return bytes(out)
        ch = chr(byte)
        if not ((ch.isascii() and ch.isalnum()) or ch in "_."):
            return None
        out.append(byte)
    return None  # no NUL within size bytes


def bpf_prog_calc_tag(insns: list[Insn] | bytes) -> bytes:
    """The program tag: the first 8 bytes of SHA-256 over the instructions, with the
    immediates of map-fd ``ld_imm64`` pairs (``BPF_PSEUDO_MAP_FD``/``MAP_VALUE``) zeroed,
    because fd numbers are not stable across processes. (6.18 moved from SHA-1 to SHA-256.)
    """
    raw = bytearray(insns if isinstance(insns, (bytes, bytearray)) else encode(insns))
    was_ld_map = False
    for off in range(0, len(raw) - len(raw) % 8, 8):
        code, regs = raw[off], raw[off + 1]
        src, dst = regs >> 4, regs & 0xF
        insn_off = struct.unpack_from("<h", raw, off + 2)[0]
        if not was_ld_map and code == _LD_IMM64 and src in _TAG_ZEROED_SRC:
            was_ld_map = True
            raw[off + 4: off + 8] = b"\0\0\0\0"
        elif was_ld_map and code == 0 and dst == 0 and src == 0 and insn_off == 0:
            was_ld_map = False
            raw[off + 4: off + 8] = b"\0\0\0\0"
        else:
            was_ld_map = False
    return hashlib.sha256(bytes(raw)).digest()[:BPF_TAG_SIZE]


def bpf_prog_pages(insn_cnt: int) -> int:
    """``prog->pages``: pages of ``bpf_prog_size(len)``, what fdinfo reports as memlock."""
    size = BPF_PROG_HEADER_SIZE + insn_cnt * 8
    return max(1, (size + PAGE_SIZE - 1) // PAGE_SIZE)


@dataclass
class ProgStats:
    """``struct bpf_prog_stats`` summed over CPUs."""

    run_cnt: int = 0
    run_time_ns: int = 0
    recursion_misses: int = 0


@dataclass(eq=False)
class BpfProg:
    """A loaded program. Built by ``BPF_PROG_LOAD`` (:mod:`pybpf.syscall.prog_cmds`)."""

    kernel: Kernel
    type: int
    insns: list[Insn]  # as loaded (map fds intact): what the tag is computed over
    expected_attach_type: int = 0
    gpl_compatible: bool = False
    license: str = ""
    name: bytes = b""
    uid: int = 0
    load_time: int = 0  # ktime_get_boottime_ns() at load
    prog_flags: int = 0
    sleepable: bool = False
    prog_ifindex: int = 0
    id: int = 0
    tag: bytes = b"\0" * BPF_TAG_SIZE
    xlated: list[Insn] = field(default_factory=list)  # after the verifier's rewrites
    jited: bool = False
    jited_len: int = 0
    bpf_func: Any = None  # the runtime: CompiledProgram (interpreter) or the JIT's program
    used_maps: list[KMap] = field(default_factory=list)
    btf: BtfObject | None = None
    attach_btf: BtfObject | None = None
    attach_btf_id: int = 0
    dst_prog: BpfProg | None = None
    func_info: bytes = b""  # raw struct bpf_func_info records
    func_info_rec_size: int = 8
    func_info_cnt: int = 0
    line_info: bytes = b""  # raw struct bpf_line_info records
    line_info_rec_size: int = 16
    nr_linfo: int = 0
    jited_linfo: list[int] = field(default_factory=list)
    func_cnt: int = 0  # subprograms beyond the main one (0: single function)
    verified_insns: int = 0
    stack_depth: int = 0
    pages: int = 1
    refcnt: int = 1
    stats: ProgStats = field(default_factory=ProgStats)
    aux: dict[str, Any] = field(default_factory=dict)  # verifier/type extras
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    freed: bool = False

    @property
    def len(self) -> int:
        """``prog->len``: instruction slots after translation."""
        return len(self.xlated or self.insns)

    @property
    def xlated_bytes(self) -> bytes:
        return encode(self.xlated or self.insns)

    @property
    def name_str(self) -> str:
        return self.name.decode("ascii", "replace")

    @property
    def memlock(self) -> int:
        return self.pages * PAGE_SIZE

    # -- references ------------------------------------------------------------------
    def get(self) -> BpfProg:
        with self._lock:
            self.refcnt += 1
        return self

    def put(self) -> None:
        """``bpf_prog_put``: drop a reference; free everything on the last one."""
        with self._lock:
            self.refcnt -= 1
            last = self.refcnt == 0
        if last:
            self._free()

    def put_pin(self) -> None:
        self.put()

    def _free(self) -> None:
        if self.freed:
            return
        self.freed = True
        k = self.kernel
        if self.id:
            k.prog_idr.remove(self.id)
            self.id = 0
        maps, self.used_maps = self.used_maps, []
        for kmap in maps:
            kmap.put()
        for btf in (self.btf, self.attach_btf):
            if btf is not None:
                btf.put()
        self.btf = self.attach_btf = None
        if self.dst_prog is not None:
            dst, self.dst_prog = self.dst_prog, None
            dst.put()
        release = getattr(self.bpf_func, "release", None)
        if callable(release):
            release()
        self.bpf_func = None
        k.security.call("bpf_prog_free", self)

    # -- running -----------------------------------------------------------------------
    def run(self, *args: int, ctx: Any = None, cpu: int = 0) -> int:
        """``bpf_prog_run``: run once, counting statistics while they are enabled."""
        func = self.bpf_func
        if func is None:
            from pybpf.errors import BpfError

            raise BpfError(22, "program has no runtime (freed?)")
        if not self.kernel.stats_enabled():
            return self._run(func, args, ctx, cpu)
        start = time.perf_counter_ns()
        try:
            return self._run(func, args, ctx, cpu)
        finally:
            elapsed = time.perf_counter_ns() - start
            with self._lock:
                self.stats.run_cnt += 1
                self.stats.run_time_ns += elapsed

    def _run(self, func: Any, args: tuple[int, ...], ctx: Any, cpu: int) -> int:
        from pybpf.verifier.exceptions import BpfThrow, run_exception_callback

        depth = getattr(_RUNS, "depth", 0)
        _RUNS.depth = depth + 1
        try:
            r0 = int(func.run(*args, ctx=ctx, cpu=cpu, prog=self, kernel=self.kernel))
        except BpfThrow as throw:  # every frame unwound: the exception callback answers
            r0 = run_exception_callback(self, func, throw, ctx, cpu)
        finally:
            _RUNS.depth = depth
        if not depth and "_deferred" in self.kernel.__dict__:
            # back to "user space": task works and workqueues the run scheduled
            from pybpf.helpers.deferred import run_deferred

            run_deferred(self.kernel)
        return r0

    def map_ids(self) -> list[int]:
        return [m.id for m in self.used_maps]
