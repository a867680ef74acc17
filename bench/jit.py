"""JIT benchmark: pybpf's JIT against the live kernel's JIT, program by program.

Each program of ``bench/progs/*.o`` (XDP programs in C, built with clang 14 — see the
Makefile there) runs with ``BPF_PROG_TEST_RUN`` and a large ``repeat`` in the live kernel,
and on pybpf's JIT with the same repeat in a native loop (``JitProgram.test_run``, the
counterpart of the kernel's ``bpf_test_run`` loop), on the same 128-byte packet, in the
same run. The table shows ns per run on both, the ratio pybpf / kernel, the speedup of
the JIT over pybpf's interpreter, and whether both returned the same verdict.

Until the ELF loader and the verifier's ctx rewriting are wired in, the benchmark extracts
the program's instructions from the object itself (the ``xdp`` section, with ``.text``
appended for bpf-to-bpf calls) and gives pybpf a minimal ctx: ``{u64 data, u64
data_end}``, with the program's two ``xdp_md`` loads widened to match.

Programs with maps (hash-map-heavy, array-map-heavy, ring buffer) get them created on
both sides for every trial — in the kernel with ``BPF_MAP_CREATE``, in pybpf with the
map type's ``map_alloc`` — from the definitions in the object's ``.maps`` section (read
with :func:`pybpf.loader.elf_object.open_object`); each map ``ld_imm64`` is fixed up to
the kernel map's fd (``BPF_PSEUDO_MAP_FD``) and to the pybpf map's header address
respectively, as the kernel's verifier does after loading.

Targets (issue 8): geometric mean ratio ≤ 1.0, no program worse than 2.0, and a JIT
compile of a 1,000-instruction program under 50 ms.

Run: ``python bench/jit.py`` (``--json`` for machine-readable output, ``--quick`` for a
short run).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from pybpf.isa.insn import Insn, decode, encode
from pybpf.isa.opcodes import CallKind
from pybpf.jit import compile_program
from pybpf.jit.cache import CACHE
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.runtime.memory import REGISTRY

PROGS = Path(__file__).resolve().parent / "progs"
BPF_PROG_TYPE_XDP = 6
R_BPF_64_64 = 1
R_BPF_64_32 = 10
BPF_PSEUDO_MAP_FD = 1
RATIO_TARGET = 1.0
WORST_TARGET = 2.0
LOAD_TARGET_MS = 50.0


def packet() -> bytes:
    """Ethernet + IPv4 + UDP to port 5353, then a deterministic payload: 128 bytes."""
    eth = bytes.fromhex("020000000002" "020000000001" "0800")
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 114, 1, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    udp = struct.pack("!HHHH", 40000, 5353, 94, 0)
    payload = bytes((i * 37 + 11) & 0xFF for i in range(128 - 14 - 20 - 8))
    return eth + ip + udp + payload


# --- object extraction (until the loader exists) -----------------------------------------
def extract(path: Path, section: str = "xdp") -> list[Insn]:
    """The program in ``section`` with ``.text`` subprograms appended and calls linked."""
    return extract_with_maps(path, section)[0]


def extract_with_maps(path: Path, section: str = "xdp") -> tuple[list[Insn], list[tuple[int, str]]]:
    """The program and its map references: ``(instruction index, map name)`` of each
    ``ld_imm64`` that loads a map."""
    relocs: list[tuple[int, str]] = []
    with path.open("rb") as f:
        elf = ELFFile(f)
        main = elf.get_section_by_name(section).data()
        text_sec = elf.get_section_by_name(".text")
        text = text_sec.data() if text_sec is not None else b""
        insns = decode(main + text)
        base = {section: 0, ".text": len(main) // 8}
        symtab = elf.get_section_by_name(".symtab")
        for rel_name, sec_name in ((f".rel{section}", section), (".rel.text", ".text")):
            rel = elf.get_section_by_name(rel_name)
            if not isinstance(rel, RelocationSection):
                continue
            for r in rel.iter_relocations():
                pc = base[sec_name] + r["r_offset"] // 8
                sym = symtab.get_symbol(r["r_info_sym"])
                if r["r_info_type"] == R_BPF_64_64 and insns[pc].code == 0x18:
                    shndx = sym["st_shndx"]
                    if isinstance(shndx, int) and elf.get_section(shndx).name == ".maps":
                        relocs.append((pc, sym.name))
                    continue
                if r["r_info_type"] != R_BPF_64_32:
                    continue
                ins = insns[pc]
                if ins.src != CallKind.PSEUDO_CALL:
                    continue
                target = base[".text"] + sym["st_value"] // 8 + ins.imm + 1
                insns[pc] = ins._replace(imm=target - pc - 1)
    return insns, relocs


def fix_maps(insns: list[Insn], relocs: list[tuple[int, str]], values: dict[str, int],
             src: int) -> list[Insn]:
    """Point each map ``ld_imm64`` at ``values[name]`` (an fd or a header address)."""
    out = list(insns)
    for pc, name in relocs:
        v = values[name]
        out[pc] = out[pc]._replace(src=src, imm=_s32(v & 0xFFFFFFFF))
        out[pc + 1] = out[pc + 1]._replace(imm=_s32(v >> 32))
    return out


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


@dataclass
class MapDef:
    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int


def map_defs(path: Path) -> dict[str, MapDef]:
    from pybpf.loader.elf_object import open_object

    return {m.name: MapDef(m.name, m.type, m.key_size, m.value_size, m.max_entries,
                           m.map_flags) for m in open_object(str(path)).maps}


class KernelMaps:
    """The program's maps in the live kernel (fresh for every trial)."""

    def __init__(self, defs: dict[str, MapDef]) -> None:
        from pybpf.testing import kernel

        self.fds = {d.name: kernel.map_create(d.map_type, d.key_size, d.value_size,
                                              d.max_entries, d.map_flags)
                    for d in defs.values()}

    def close(self) -> None:
        from pybpf.testing import kernel

        for fd in self.fds.values():
            kernel.close(fd)


class PybpfMaps:
    """The program's maps in pybpf, made by each type's ``map_alloc``."""

    def __init__(self, defs: dict[str, MapDef]) -> None:
        from pybpf.maps.core import MapAttr
        from pybpf.maps.ops import find_map_ops

        self.maps = {}
        for d in defs.values():
            ops = find_map_ops(d.map_type)
            attr = MapAttr(d.map_type, d.key_size, d.value_size, d.max_entries, d.map_flags,
                           map_name=d.name.encode())
            ops.map_alloc_check(attr)
            self.maps[d.name] = ops.map_alloc(attr)
        self.addrs = {name: m.addr for name, m in self.maps.items()}

    def close(self) -> None:
        for m in self.maps.values():
            m.ops.map_free(m)


def standard_helpers() -> dict[int, object]:
    from pybpf.helpers.maps import MAP_HELPERS

    return {fid: proto.impl for fid, proto in MAP_HELPERS.items()}


def widen_ctx_loads(insns: list[Insn]) -> list[Insn]:
    """Turn ``w = *(u32 *)(r1 + 0/4)`` (xdp_md data/data_end) into 64-bit loads of our ctx."""
    out = list(insns)
    patched = 0
    for pc, ins in enumerate(out):
        if ins.code == 0x61 and ins.src == 1 and ins.off in (0, 4):
            out[pc] = ins._replace(code=0x79, off=ins.off * 2)
            patched += 1
        if (ins.dst == 1 and ins.code & 0x07 in (0x00, 0x01, 0x04, 0x07)) or ins.code in (
                0x85, 0x95) or ins.code & 0x07 in (0x05, 0x06):
            break  # r1 is no longer the ctx (or control flow begins)
    if patched != 2:
        raise ValueError(f"expected the two xdp_md loads at the start, patched {patched}")
    return out


# --- measurements ------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    insns: int
    kernel_ns: float | None
    jit_ns: float
    interp_ns: float
    compile_ms: float
    kernel_ret: int | None
    jit_ret: int
    note: str = ""
    syscall_ns: float | None = None  # pybpf.load + BPF_PROG_TEST_RUN: the whole pipeline
    syscall_ret: int | None = None

    @property
    def ratio(self) -> float | None:
        return self.jit_ns / self.kernel_ns if self.kernel_ns else None


class PybpfXdp:
    """A registered packet and a ``{data, data_end}`` ctx for running raw XDP code."""

    def __init__(self, pkt: bytes) -> None:
        self.pkt = REGISTRY.alloc(len(pkt), "bench packet")
        self.pkt.write(0, pkt)
        self.ctx = REGISTRY.alloc(16, "bench xdp ctx")
        self.ctx.write(0, struct.pack("<QQ", self.pkt.start, self.pkt.start + len(pkt)))

    def close(self) -> None:
        REGISTRY.remove(self.pkt)
        REGISTRY.remove(self.ctx)


def kernel_run(insns: list[Insn], pkt: bytes, repeat: int, trials: int,
               relocs: list[tuple[int, str]] | None = None,
               defs: dict[str, MapDef] | None = None) -> tuple[float | None, int | None, str]:
    try:
        from pybpf.testing import kernel
    except ImportError as exc:
        return None, None, f"oracle unavailable: {exc}"
    ok, why = kernel.available()
    if not ok:
        return None, None, why
    best: float | None = None
    ret = None
    for _ in range(trials):
        kmaps = KernelMaps(defs or {})
        try:
            prog = fix_maps(insns, relocs or [], kmaps.fds, BPF_PSEUDO_MAP_FD)
            res = kernel.prog_load(BPF_PROG_TYPE_XDP, encode(prog), log_level=1,
                                   log_size=1 << 20)
            if res.fd < 0:
                return None, None, f"kernel refused: errno {res.errno} {res.log[-200:]}"
            try:
                run = kernel.prog_test_run(res.fd, data_in=pkt, data_size_out=len(pkt) + 256,
                                           repeat=repeat)
            finally:
                kernel.close(res.fd)
            if run.errno:
                return None, None, f"test_run errno {run.errno}"
            ret = run.retval
            best = run.duration if best is None else min(best, run.duration)
        finally:
            kmaps.close()
    return float(best or 0), ret, ""


def measure(path: Path, pkt: bytes, env: PybpfXdp, repeat: int, trials: int,
            interp_time: float) -> Row:
    insns, relocs = extract_with_maps(path)
    defs = map_defs(path) if relocs else {}
    kernel_ns, kernel_ret, note = kernel_run(insns, pkt, repeat, trials, relocs, defs)
    widened = widen_ctx_loads(insns)
    helpers = standard_helpers() if relocs else {}
    best = math.inf
    jit_ret = 0
    compile_ms = 0.0
    uses_python = False
    for trial in range(trials):
        pmaps = PybpfMaps(defs)
        try:
            ours = fix_maps(widened, relocs, pmaps.addrs, 0)
            CACHE.clear()
            t0 = time.perf_counter()
            jit = compile_program(ours, name=path.stem, helpers=helpers)
            if trial == 0:
                compile_ms = (time.perf_counter() - t0) * 1e3
            uses_python = jit.code.translation.uses_bridge
            jit_ret, ns = jit.test_run(env.ctx.start, repeat)
            best = min(best, ns / repeat)
        finally:
            pmaps.close()
    if uses_python:
        note = (note + "; " if note else "") + "calls Python helpers"
    pmaps = PybpfMaps(defs)
    try:
        interp = CompiledProgram(fix_maps(widened, relocs, pmaps.addrs, 0), name=path.stem,
                                 helpers=helpers)
        runs = 0
        t0 = time.perf_counter()
        while True:
            interp_ret = interp.run(env.ctx.start)
            runs += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= interp_time:
                break
    finally:
        pmaps.close()
    if interp_ret != jit_ret:
        note = (note + "; " if note else "") + f"interpreter r0 {interp_ret} != JIT {jit_ret}"
    return Row(path.stem, len(insns), kernel_ns, best, elapsed / runs * 1e9, compile_ms,
               kernel_ret, jit_ret, note)


def syscall_run(path: Path, pkt: bytes, repeat: int, trials: int) -> tuple[float | None, int | None]:
    """The object as users run it: ``pybpf.load`` (loader, verifier, post-verify fixups
    and ctx conversion, JIT) then ``BPF_PROG_TEST_RUN`` with ``repeat``, whose reported
    duration is per run like the kernel's; fresh maps per trial. ``(ns, r0)``."""
    import pybpf
    from pybpf.kernel import Kernel

    best: float | None = None
    ret = None
    for _ in range(trials):
        try:
            obj = pybpf.load(str(path), kernel=Kernel(sysctls={"bpf_jit_enable": 1}))
        except Exception:  # reported as n/a
            return None, None
        prog = getattr(obj.progs, path.stem, None)
        if prog is None:
            return None, None
        run = prog.test_run(data_in=pkt, data_size_out=len(pkt) + 256, repeat=repeat)
        ret = run.retval
        best = float(run.duration) if best is None else min(best, float(run.duration))
    return best, ret


def load_time_1000(samples: int = 5) -> tuple[float, float]:
    """JIT compile time (ms) of a 1,000-instruction program: median with / without line info."""
    ops = [Insn(0x07, 0, 0, 0, 3), Insn(0x2F, 0, 1), Insn(0xAF, 1, 0), Insn(0x77, 0, 0, 0, 1),
           Insn(0x7B, 10, 0, -8), Insn(0x79, 2, 10, -8), Insn(0x0F, 0, 2),
           Insn(0x55, 2, 0, 1, 7), Insn(0x07, 0, 0, 0, 1)]
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(samples):
        prog = [Insn(0xB7, 0, 0, 0, i), Insn(0xBF, 1, 0)]
        prog += [ops[j % len(ops)] for j in range(997)]
        prog.append(Insn(0x95))
        for debug in (True, False):
            CACHE.clear()
            t0 = time.perf_counter()
            compile_program(prog, debug_info=debug)
            times[debug].append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times[True]), statistics.median(times[False])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--repeat", type=int, default=0)
    parser.add_argument("programs", nargs="*", help="names of bench/progs programs")
    args = parser.parse_args(argv)
    repeat = args.repeat or (20_000 if args.quick else 200_000)
    trials = 2 if args.quick else 3
    interp_time = 0.05 if args.quick else 0.2
    pkt = packet()
    env = PybpfXdp(pkt)
    rows: list[Row] = []
    try:
        for path in sorted(PROGS.glob("*.o")):
            if args.programs and path.stem not in args.programs:
                continue
            row = measure(path, pkt, env, repeat, trials, interp_time)
            row.syscall_ns, row.syscall_ret = syscall_run(path, pkt, repeat, trials)
            rows.append(row)
    finally:
        env.close()
    load_dbg, load_nodbg = load_time_1000()
    ratios = [r.ratio for r in rows if r.ratio]
    geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios)) if ratios else None
    worst = max(ratios) if ratios else None
    speedups = [r.interp_ns / r.jit_ns for r in rows if r.jit_ns > 0]
    geo_speed = math.exp(sum(math.log(x) for x in speedups) / len(speedups)) if speedups else 0
    ok = (geo is not None and geo <= RATIO_TARGET and worst is not None
          and worst <= WORST_TARGET and load_nodbg < LOAD_TARGET_MS
          and all(r.kernel_ret is None or r.kernel_ret == r.jit_ret for r in rows)
          and all(r.kernel_ret is None or r.syscall_ret is None or r.kernel_ret == r.syscall_ret
                  for r in rows))
    if args.json:
        print(json.dumps({
            "repeat": repeat,
            "rows": [{**r.__dict__, "ratio": r.ratio} for r in rows],
            "geomean_ratio": geo, "worst_ratio": worst, "geomean_jit_speedup": geo_speed,
            "load_ms_1000_insns": load_dbg, "load_ms_1000_insns_no_line_info": load_nodbg,
            "targets_met": ok}, indent=2))
        return 0 if ok else 1
    print(f"repeat = {repeat}, best of {trials}; 128-byte packet; ns per run\n")
    print("| program | insns | kernel JIT (ns) | pybpf JIT (ns) | pybpf / kernel "
          "| via pybpf.load + test_run (ns) | interpreter (ns) | JIT speedup "
          "| JIT compile (ms) | same r0 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        k = f"{r.kernel_ns:.1f}" if r.kernel_ns else f"n/a ({r.note})"
        ratio = f"{r.ratio:.2f}" if r.ratio else "n/a"
        same = "yes" if r.kernel_ret == r.jit_ret else (
            "n/a" if r.kernel_ret is None else f"NO ({r.kernel_ret} vs {r.jit_ret})")
        sysc = f"{r.syscall_ns:.0f}" if r.syscall_ns is not None else "n/a"
        print(f"| {r.name} | {r.insns} | {k} | {r.jit_ns:.1f} | {ratio} | {sysc} "
              f"| {r.interp_ns:,.0f} | {r.interp_ns / r.jit_ns:,.0f}× | {r.compile_ms:.1f} "
              f"| {same} |")
    print()
    if geo is not None:
        print(f"geometric mean pybpf/kernel: {geo:.2f} (target ≤ {RATIO_TARGET}); "
              f"worst: {worst:.2f} (target ≤ {WORST_TARGET})")
    print(f"geometric mean JIT speedup over the interpreter: {geo_speed:,.0f}×")
    print(f"JIT compile of a 1,000-instruction program: {load_nodbg:.1f} ms (target < "
          f"{LOAD_TARGET_MS:.0f} ms; line info is derived on demand), {load_dbg:.1f} ms when "
          "line info is emitted with the code")
    print(f"targets {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
