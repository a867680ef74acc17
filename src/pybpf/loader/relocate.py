"""Relocation: from compiler instructions to the instructions BPF_PROG_LOAD receives.

libbpf's ``bpf_object__relocate``, step by step:

1. **CO-RE** — every ``.BTF.ext`` CO-RE record of a program that will be loaded is
   resolved against the target BTF (:mod:`pybpf.btf.relo_core`) and patched into the
   program's own instructions (subprograms included, before they are copied anywhere);
2. **subprogram calls** — for each main program, every ``.text`` subprogram it reaches is
   appended after it, depth first in the order calls are met, and call / ``ld_imm64``
   function-pointer immediates are rewritten to the appended position. Each main program
   gets its own copy; the subprograms' relocations move along, and func_info/line_info
   records are converted from ELF byte offsets to instruction indices in the final layout;
3. **data** — ``ld_imm64`` of maps get ``BPF_PSEUDO_MAP_FD`` + the map's fd, global data
   gets ``BPF_PSEUDO_MAP_VALUE`` + fd + offset, externs get the ``.kconfig`` map value,
   the BTF id of a typed ``__ksym`` (``BPF_PSEUDO_BTF_ID``), a kfunc's BTF id
   (``BPF_PSEUDO_KFUNC_CALL``) or a kallsyms address.

The fd of each map comes from a callback, so the same code serves the open-only model
(fd = map index, handy for comparing with libbpf) and the load step (real fds).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field

from pybpf.btf.ext import FuncInfo, LineInfo
from pybpf.btf.relo_core import CandidateIndex, CoreReloError, patch_insn, resolve_relo
from pybpf.isa.insn import Insn
from pybpf.loader.arena import ARENA_DATA_OFF
from pybpf.loader.elf_object import BpfObjectSpec
from pybpf.loader.errors import LoaderError, einval, reloc_error
from pybpf.loader.model import ExternType, ProgramSpec, RelocDesc, RelocType

#: libbpf's poison constants: an unreachable ``call`` the verifier names in its log.
POISON_LDIMM64_MAP_BASE = 2001000000
POISON_CALL_KFUNC_BASE = 2002000000

PSEUDO_MAP_FD, PSEUDO_MAP_VALUE, PSEUDO_BTF_ID, PSEUDO_FUNC = 1, 2, 3, 4
PSEUDO_CALL, PSEUDO_KFUNC_CALL = 1, 2


@dataclass
class RelocateOptions:
    """Inputs of relocation besides the object itself."""

    #: CO-RE target types (vmlinux or the pybpf instance's kernel BTF); None = no target
    target: CandidateIndex | None = None
    #: map index -> fd written into ld_imm64 (default: the map index itself)
    map_fd: Callable[[int], int] = field(default=lambda idx: idx)
    #: keep the kernel's func/line info (libbpf drops them if the kernel lacks BTF_FUNC)
    btf_func: bool = True


def relocate(obj: BpfObjectSpec, opts: RelocateOptions | None = None) -> list[str]:
    """Relocate every autoload main program of ``obj``; returns libbpf's debug lines.

    Programs are reset to their ELF instructions first, so calling this again after
    changing settings (autoload, target) redoes the work from scratch.
    """
    opts = opts or RelocateOptions()
    log: list[str] = []
    for p in obj.programs:
        p.insns = list(p.orig_insns)
        p.relos = [r for r in p.relos if r.type != RelocType.CORE]
        p.func_info, p.line_info = [], []
        p.final_insns, p.final_relos = None, []
    try:
        if obj.btf_ext is not None and obj.btf_ext.core_relos:
            _relocate_core(obj, opts, log)
        for p in obj.programs:
            for r in p.relos:
                if r.type == RelocType.SUBPROG_ADDR:
                    p.insns[r.insn_idx] = p.insns[r.insn_idx]._replace(src=PSEUDO_FUNC)
        for p in obj.programs:
            if p.is_subprog or not p.autoload:
                continue
            try:
                _relocate_calls(obj, p, opts, log)
            except LoaderError as exc:
                raise type(exc)(exc.errno or errno.EINVAL, f"{exc.message}\nprog '{p.name}': "
                                f"failed to relocate calls: {exc.message}") from None
        for p in obj.programs:
            if p.is_subprog or not p.autoload:
                continue
            _relocate_data(obj, p, opts, log)
    except CoreReloError as exc:
        raise LoaderError(exc.errno, f"{exc}\nfailed to perform CO-RE relocations: "
                          f"-{errno.errorcode.get(exc.errno, exc.errno)}") from None
    return log


# ---------------------------------------------------------------- CO-RE


def _relocate_core(obj: BpfObjectSpec, opts: RelocateOptions, log: list[str]) -> None:
    assert obj.btf is not None and obj.btf_ext is not None
    cache: dict[int, list[int]] = {}
    for sec in obj.btf_ext.core_relos:
        sec_idx = _sec_idx(obj, sec.sec_name)
        if sec_idx < 0:
            raise einval(f"sec '{sec.sec_name}': CO-RE relocations for a missing section")
        for i, rec in enumerate(sec.records):
            if rec.insn_off % 8:
                raise einval(f"sec '{sec.sec_name}': relo #{i}: misaligned insn_off "
                             f"{rec.insn_off}")
            insn_idx = rec.insn_off // 8
            prog = obj.find_prog_by_sec_insn(sec_idx, insn_idx)
            if prog is None:
                log.append(f"sec '{sec.sec_name}': skipping CO-RE relocation #{i} for insn "
                           f"#{insn_idx} belonging to eliminated weak subprogram")
                continue
            if not prog.autoload:
                continue
            local_idx = insn_idx - prog.sec_insn_off
            if local_idx >= len(prog.insns):
                raise einval(f"prog '{prog.name}': relo #{i}: insn #{local_idx} out of range")
            prog.relos.append(RelocDesc(RelocType.CORE, local_idx))
            prog.core_relos.append((local_idx, rec))
            try:
                res, lines = resolve_relo(prog.name, rec, i, obj.btf, opts.target, cache)
                log.extend(lines)
                log.append(patch_insn(prog.name, prog.insns, local_idx, rec, i, res))
            except CoreReloError as exc:
                raise CoreReloError(exc.errno, f"{exc}\nprog '{prog.name}': relo #{i}: failed "
                                    f"to relocate: -{errno.errorcode.get(exc.errno, '')}"
                                    ) from None
    for p in obj.programs:
        p.relos.sort(key=lambda r: (r.insn_idx, r.type))


def _sec_idx(obj: BpfObjectSpec, name: str) -> int:
    for s in obj.elf.sections:
        if s.name == name:
            return s.idx
    # a '?'-prefixed section keeps its ELF name; programs strip it
    return -1


# ---------------------------------------------------------------- calls


def _relocate_calls(obj: BpfObjectSpec, main: ProgramSpec, opts: RelocateOptions,
                    log: list[str]) -> None:
    for p in obj.programs:
        if p.is_subprog:
            p.sub_insn_off = 0
    main.final_insns = list(main.insns)
    main.final_relos = [RelocDesc(r.type, r.insn_idx, r.map_idx, r.sym_off, r.ext_idx,
                                  r.sym_name) for r in main.relos]
    main.sub_insn_off = 0
    _reloc_code(obj, main, main, opts, log)
    # libbpf appends the exception callback the main function's decl tag names: nothing
    # calls it, the kernel finds it by its func_info record
    exc = _exception_callback(obj, main)
    if exc is not None and exc.sub_insn_off == 0:
        _append_subprog(main, exc, log)
        _reloc_code(obj, main, exc, opts, log)


def _exception_callback(obj: BpfObjectSpec, main: ProgramSpec) -> ProgramSpec | None:
    """The subprogram ``exception_callback:<name>`` on ``main``'s BTF FUNC names."""
    from pybpf.btf.raw import BtfDeclTag, BtfFunc

    btf = obj.btf
    if btf is None:
        return None
    funcs = {t.id for t in btf.types if isinstance(t, BtfFunc) and t.name == main.name}
    prefix = "exception_callback:"
    for t in btf.types:
        if isinstance(t, BtfDeclTag) and t.type in funcs and t.component_idx == -1 \
                and t.name.startswith(prefix):
            name = t.name[len(prefix):]
            return next((p for p in obj.programs if p.is_subprog and p.name == name), None)
    return None


def _find_relo(prog: ProgramSpec, insn_idx: int) -> RelocDesc | None:
    for r in prog.relos:
        if r.insn_idx == insn_idx:
            return r
    return None


def _reloc_code(obj: BpfObjectSpec, main: ProgramSpec, prog: ProgramSpec,
                opts: RelocateOptions, log: list[str]) -> None:
    assert main.final_insns is not None
    if opts.btf_func:
        _reloc_ext_info(obj, main, prog, log)
    for k in range(prog.sec_insn_cnt):
        pos = prog.sub_insn_off + k
        insn = main.final_insns[pos]
        is_call = (insn.code == 0x85 and insn.src == PSEUDO_CALL and insn.dst == 0
                   and insn.off == 0)
        is_func = insn.code == 0x18 and insn.src == PSEUDO_FUNC
        if not is_call and not is_func:
            continue
        relo = _find_relo(prog, k)
        if relo is not None and relo.type == RelocType.EXTERN_CALL:
            continue
        if relo is not None and relo.type not in (RelocType.CALL, RelocType.SUBPROG_ADDR):
            raise reloc_error(f"prog '{prog.name}': unexpected relo for insn #{k}, type "
                              f"{int(relo.type)}")
        if relo is not None:
            if relo.type == RelocType.CALL:
                sub_idx = relo.sym_off // 8 + insn.imm + 1
            else:
                sub_idx = (relo.sym_off + insn.imm) // 8
        elif is_func:
            raise reloc_error(f"prog '{prog.name}': missing subprog addr relo for insn #{k}")
        else:
            sub_idx = prog.sec_insn_off + k + insn.imm + 1
        sub = obj.find_prog_by_sec_insn(obj.text_shndx, sub_idx)
        if sub is None:
            raise reloc_error(f"prog '{prog.name}': no .text section found yet sub-program "
                              "call exists")
        if sub.sub_insn_off == 0:
            _append_subprog(main, sub, log)
            _reloc_code(obj, main, sub, opts, log)
        new_imm = sub.sub_insn_off - (prog.sub_insn_off + k) - 1
        main.final_insns[pos] = main.final_insns[pos]._replace(imm=new_imm)
        log.append(f"prog '{prog.name}': insn #{k} relocated, imm {new_imm} points to "
                   f"subprog '{sub.name}' (now at {sub.sub_insn_off} offset)")


def _append_subprog(main: ProgramSpec, sub: ProgramSpec, log: list[str]) -> None:
    assert main.final_insns is not None
    sub.sub_insn_off = len(main.final_insns)
    main.final_insns.extend(sub.insns)
    log.append(f"prog '{main.name}': added {len(sub.insns)} insns from sub-prog '{sub.name}'")
    if main is not sub:
        for r in sub.relos:
            main.final_relos.append(RelocDesc(r.type, r.insn_idx + sub.sub_insn_off,
                                              r.map_idx, r.sym_off, r.ext_idx, r.sym_name))


def _reloc_ext_info(obj: BpfObjectSpec, main: ProgramSpec, prog: ProgramSpec,
                    log: list[str]) -> None:
    """libbpf's ``reloc_prog_func_and_line_info`` / ``adjust_prog_btf_ext_info``."""
    ext = obj.btf_ext
    if ext is None:
        return
    sec_name = obj.elf.sec_name(prog.sec_idx)
    for kind in ("func_info", "line_info"):
        have = main.func_info if kind == "func_info" else main.line_info
        if main is not prog and not have:
            continue
        recs = _ext_records(getattr(ext, kind), sec_name, prog)
        if recs is None:
            if have:
                raise LoaderError(errno.ENOENT, f"prog '{prog.name}': missing .BTF.ext "
                                  f"{kind.replace('_', ' ')}.")
            log.append(f"prog '{prog.name}': missing .BTF.ext {kind.replace('_', ' ')} for "
                       f"the main program, skipping all of .BTF.ext "
                       f"{kind.replace('_', ' ')}.")
            continue
        adj = prog.sub_insn_off - prog.sec_insn_off
        if kind == "func_info":
            main.func_info.extend(FuncInfo(r.insn_off // 8 + adj, r.type_id) for r in recs)
            main.func_info_rec_size = ext.func_info_rec_size
        else:
            main.line_info.extend(LineInfo(r.insn_off // 8 + adj, r.file_name_off,
                                           r.line_off, r.line_col) for r in recs)
            main.line_info_rec_size = ext.line_info_rec_size


def _ext_records(sections: list, sec_name: str, prog: ProgramSpec) -> list | None:
    for sec in sections:
        if sec.sec_name != sec_name:
            continue
        out = []
        for r in sec.records:
            idx = r.insn_off // 8
            if idx < prog.sec_insn_off:
                continue
            if idx >= prog.sec_insn_off + prog.sec_insn_cnt:
                break
            out.append(r)
        return out or None
    return None


# ---------------------------------------------------------------- data


def _relocate_data(obj: BpfObjectSpec, prog: ProgramSpec, opts: RelocateOptions,
                   log: list[str]) -> None:
    insns = prog.final_insns
    assert insns is not None
    for i, r in enumerate(prog.final_relos):
        at = r.insn_idx
        ins = insns[at]
        if r.type == RelocType.LD64:
            m = obj.maps[r.map_idx]
            if m.autocreate:
                insns[at] = ins._replace(src=PSEUDO_MAP_FD, imm=opts.map_fd(r.map_idx))
            else:
                _poison_map(insns, at, r.map_idx, prog, i, m.name, log)
        elif r.type == RelocType.DATA:
            m = obj.maps[r.map_idx]
            off = ins.imm + r.sym_off + (ARENA_DATA_OFF if r.map_idx == obj.arena_map_idx else 0)
            insns[at + 1] = insns[at + 1]._replace(imm=_s32(off))
            if m.autocreate:
                insns[at] = ins._replace(src=PSEUDO_MAP_VALUE, imm=opts.map_fd(r.map_idx))
            else:
                _poison_map(insns, at, r.map_idx, prog, i, m.name, log)
        elif r.type == RelocType.EXTERN_LD64:
            ext = obj.externs[r.ext_idx]
            if ext.type == ExternType.KCFG:
                insns[at] = ins._replace(src=PSEUDO_MAP_VALUE,
                                         imm=opts.map_fd(obj.kconfig_map_idx))
                insns[at + 1] = insns[at + 1]._replace(imm=ext.kcfg_data_off)
            elif ext.ksym_type_id and ext.is_set:
                insns[at] = ins._replace(src=PSEUDO_BTF_ID, imm=ext.kernel_btf_id)
                insns[at + 1] = insns[at + 1]._replace(imm=ext.kernel_btf_obj_fd)
            else:
                insns[at] = ins._replace(imm=_s32(ext.ksym_addr))
                insns[at + 1] = insns[at + 1]._replace(imm=_s32(ext.ksym_addr >> 32))
        elif r.type == RelocType.EXTERN_CALL:
            ext = obj.externs[r.ext_idx]
            if ext.is_set:
                insns[at] = ins._replace(src=PSEUDO_KFUNC_CALL, imm=ext.kernel_btf_id,
                                         off=ext.btf_fd_idx)
            else:
                insns[at] = Insn(0x85, 0, 0, 0, POISON_CALL_KFUNC_BASE + r.ext_idx)
                log.append(f"prog '{prog.name}': relo #{i}: poisoning insn #{at} that calls "
                           f"kfunc '{ext.name}'")
        elif r.type == RelocType.SUBPROG_ADDR and ins.src != PSEUDO_FUNC:
            raise einval(f"prog '{prog.name}': relo #{i}: bad insn")


def _poison_map(insns: list[Insn], at: int, map_idx: int, prog: ProgramSpec, i: int,
                name: str, log: list[str]) -> None:
    log.append(f"prog '{prog.name}': relo #{i}: poisoning insn #{at} that loads map "
               f"#{map_idx} '{name}'")
    for k in (at, at + 1):
        insns[k] = Insn(0x85, 0, 0, 0, POISON_LDIMM64_MAP_BASE + map_idx)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v
