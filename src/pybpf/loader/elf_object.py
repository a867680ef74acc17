"""Opening a BPF object file the way libbpf's ``bpf_object__open`` does.

:func:`open_object` turns ELF bytes into a :class:`BpfObjectSpec`: programs cut out of
executable sections by their ``STT_FUNC`` symbols, ``.text`` subprograms, map definitions
(BTF-defined ``.maps``, global data sections, ``.kconfig``), externs, and every relocation
recorded against the instruction it patches. Nothing is created in a kernel here, and the
instructions are still the compiler's; :mod:`pybpf.loader.relocate` produces the final
ones. The steps and their order follow libbpf (``bpf_object__elf_collect``,
``bpf_object__collect_externs``, ``bpf_object_fixup_btf``, ``bpf_object__init_maps``,
``bpf_object_init_progs``, ``bpf_object__collect_relos``), and so do the messages of the
errors they raise.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field

from pybpf.btf.ext import BtfExt
from pybpf.btf.raw import (
    Btf,
    BtfArray,
    BtfComposite,
    BtfDatasec,
    BtfEnum,
    BtfEnum64,
    BtfFormatError,
    BtfFunc,
    BtfFuncProto,
    BtfInt,
    BtfPtr,
    BtfStruct,
    BtfVar,
    BtfVarSecinfo,
    IntEncoding,
)
from pybpf.btf.relo_core import btf_kind_str, essential_name
from pybpf.isa.insn import decode
from pybpf.loader.elf import (
    SHF_EXECINSTR,
    SHN_LORESERVE,
    SHN_UNDEF,
    SHT_LLVM_ADDRSIG,
    SHT_NOBITS,
    SHT_PROGBITS,
    SHT_REL,
    SHT_STRTAB,
    SHT_SYMTAB,
    STB_GLOBAL,
    STB_LOCAL,
    STB_WEAK,
    STT_FUNC,
    STT_NOTYPE,
    STT_SECTION,
    STV_HIDDEN,
    STV_INTERNAL,
    ElfObject,
    Rel,
    Symbol,
    read_elf,
)
from pybpf.loader.errors import LibbpfErrno, LoaderError, einval, fmt_error, reloc_error
from pybpf.loader.model import (
    ExternDesc,
    ExternType,
    KcfgType,
    LibbpfMapType,
    MapSpec,
    ProgramSpec,
    RelocDesc,
    RelocType,
)
from pybpf.loader.secdef import find_sec_def
from pybpf.uapi import (
    BPF_F_MMAPABLE,
    BPF_F_RDONLY_PROG,
    BpfMapType,
)

BPF_OBJ_NAME_LEN = 16
MAPS_SEC = ".maps"
ARENA_SEC = ".addr_space.1"  # __arena globals
KCONFIG_SEC = ".kconfig"
KSYMS_SEC = ".ksyms"
LIBBPF_PIN_NONE = 0
LIBBPF_PIN_BY_NAME = 1
BTF_VAR_STATIC, BTF_VAR_GLOBAL_ALLOCATED, BTF_VAR_GLOBAL_EXTERN = 0, 1, 2
PAGE_SIZE = 4096

_MAP_IN_MAP = (BpfMapType.BPF_MAP_TYPE_ARRAY_OF_MAPS, BpfMapType.BPF_MAP_TYPE_HASH_OF_MAPS)


@dataclass
class BpfObjectSpec:
    """An opened object: what libbpf's ``struct bpf_object`` holds before load."""

    path: str
    name: str
    elf: ElfObject
    btf: Btf | None
    btf_ext: BtfExt | None
    license: str = ""
    kern_version: int = 0
    programs: list[ProgramSpec] = field(default_factory=list)
    maps: list[MapSpec] = field(default_factory=list)
    externs: list[ExternDesc] = field(default_factory=list)
    text_shndx: int = -1
    btf_maps_shndx: int = -1
    btf_maps_sec_btf_id: int = 0
    kconfig_map_idx: int = -1
    #: the ``.addr_space.1`` section of ``__arena`` globals, and the arena map they live in
    arena_data_shndx: int = -1
    arena_data: bytearray | None = None
    arena_map_idx: int = -1
    #: libbpf's debug/info/warn lines, for ``-d`` style output
    log: list[str] = field(default_factory=list)
    #: section index -> kind ("data", "rodata", "bss", "relo")
    sec_types: dict[int, str] = field(default_factory=dict)

    # ---- lookups

    @property
    def entry_programs(self) -> list[ProgramSpec]:
        """Main programs (what ``bpf_object__for_each_program`` yields to users)."""
        return [p for p in self.programs if not p.is_subprog]

    def program(self, name: str) -> ProgramSpec:
        for p in self.programs:
            if p.name == name and not p.is_subprog:
                return p
        raise KeyError(f"no program named {name!r}")

    def map(self, name: str) -> MapSpec:
        for m in self.maps:
            if m.name == name:
                return m
        for m in self.maps:  # internal maps are also found by their section name
            if m.real_name == name:
                return m
        raise KeyError(f"no map named {name!r}")

    def find_prog_by_sec_insn(self, sec_idx: int, insn_idx: int) -> ProgramSpec | None:
        for p in self.programs:
            if p.sec_idx == sec_idx and p.sec_insn_off <= insn_idx < p.sec_insn_off + \
                    p.sec_insn_cnt:
                return p
        return None


def open_object(source: str | os.PathLike[str] | bytes, *, name: str | None = None,
                relaxed_maps: bool = False, pin_root_path: str | None = None) -> BpfObjectSpec:
    """Parse a BPF ELF object (a path or its bytes) as ``bpf_object__open`` does."""
    if isinstance(source, bytes | bytearray | memoryview):
        data, path = bytes(source), name or "<memory>"
        name = None
    else:
        path = os.fspath(source)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise LoaderError(exc.errno or errno.EIO,
                              f"elf: failed to open {path}: {exc.strerror}") from None
    obj_name = name or _object_name(path)
    try:
        return _Opener(data, path, obj_name, relaxed_maps, pin_root_path).run()
    except LoaderError:
        raise
    except (BtfFormatError, IndexError, KeyError, ValueError, AssertionError,
            AttributeError, TypeError, OverflowError) as exc:
        # Defence in depth: a corrupted object must give a clear error, never a traceback.
        raise fmt_error(f"{path}: malformed BPF object: {type(exc).__name__}: {exc}") from None


def _object_name(path: str) -> str:
    """libbpf: basename, cut at the first '.', at most 15 characters."""
    base = os.path.basename(path)[: BPF_OBJ_NAME_LEN - 1]
    return base.split(".", 1)[0]


class _Opener:
    def __init__(self, data: bytes, path: str, name: str, relaxed: bool,
                 pin_root: str | None) -> None:
        self.data = data
        self.path = path
        self.name = name
        self.strict = not relaxed
        self.pin_root = pin_root or "/sys/fs/bpf"
        self.log: list[str] = []

    def run(self) -> BpfObjectSpec:
        elf = read_elf(self.data, self.path)
        obj = BpfObjectSpec(self.path, self.name, elf, None, None, log=self.log)
        self.obj = obj
        btf_data, ext_data = self._elf_collect()
        self._init_btf(btf_data, ext_data)
        self._collect_externs()
        self._fixup_btf()
        self._init_maps()
        self._init_progs()
        self._collect_relos()
        return obj

    # ------------------------------------------------------------ sections

    def _elf_collect(self) -> tuple[bytes | None, bytes | None]:
        obj, elf = self.obj, self.obj.elf
        btf_data = ext_data = None
        for sec in elf.sections[1:]:
            name, idx = sec.name, sec.idx
            if _ignore_section(sec.type, sec.size, name):
                continue
            if name == "license":
                obj.license = sec.data.split(b"\0", 1)[0][:127].decode("utf-8", "replace")
                self.log.append(f"license of {self.path} is {obj.license}")
            elif name == "version":
                if len(sec.data) != 4:
                    raise fmt_error(f"invalid kver section in {self.path}")
                obj.kern_version = int.from_bytes(sec.data, "little" if elf.little_endian
                                                  else "big")
            elif name == "maps":
                raise LoaderError(errno.EOPNOTSUPP, "elf: legacy map definitions in 'maps' "
                                  "section are not supported by libbpf v1.0+")
            elif name == MAPS_SEC:
                obj.btf_maps_shndx = idx
            elif name == ".BTF":
                if sec.type != SHT_PROGBITS:
                    raise fmt_error(f"elf: section {name} is not PROGBITS")
                btf_data = sec.data
            elif name == ".BTF.ext":
                if sec.type != SHT_PROGBITS:
                    raise fmt_error(f"elf: section {name} is not PROGBITS")
                ext_data = sec.data
            elif sec.type == SHT_SYMTAB:
                pass
            elif sec.type == SHT_PROGBITS and sec.size > 0:
                if sec.flags & SHF_EXECINSTR:
                    if name == ".text":
                        obj.text_shndx = idx
                    self._add_programs(sec.data, name, idx)
                elif name == ".data" or name.startswith(".data."):
                    obj.sec_types[idx] = "data"
                elif name == ".rodata" or name.startswith(".rodata."):
                    obj.sec_types[idx] = "rodata"
                elif name == ARENA_SEC:
                    obj.arena_data_shndx, obj.arena_data = idx, bytearray(sec.data)
                else:
                    self.log.append(f"elf: skipping unrecognized data section({idx}) {name}")
            elif sec.type == SHT_REL:
                targ = sec.info
                if sec.entsize != 16 or targ >= len(elf.sections):
                    raise fmt_error(f"elf: relo section({idx}) {name} is corrupted")
                targ_sec = elf.sections[targ]
                if not (targ_sec.type == SHT_PROGBITS and targ_sec.flags & SHF_EXECINSTR) \
                        and name != ".rel" + MAPS_SEC:
                    self.log.append(f"elf: skipping relo section({idx}) {name} for "
                                    f"section({targ}) {targ_sec.name}")
                    continue
                obj.sec_types[idx] = "relo"
            elif sec.type == SHT_NOBITS and (name == ".bss" or name.startswith(".bss.")):
                obj.sec_types[idx] = "bss"
            else:
                self.log.append(f"elf: skipping section({idx}) {name} (size {sec.size})")
        obj.programs.sort(key=lambda p: (p.sec_idx, p.sec_insn_off))
        for p in obj.programs:
            p.is_subprog = p.sec_idx == obj.text_shndx
        return btf_data, ext_data

    def _add_programs(self, data: bytes, sec_name: str, sec_idx: int) -> None:
        obj = self.obj
        for sym in obj.elf.symbols:
            if sym.shndx != sec_idx or sym.type != STT_FUNC:
                continue
            off, size = sym.value, sym.size
            if off + size > len(data):
                raise fmt_error(f"sec '{sec_name}': program at offset {off} crosses section "
                                "boundary")
            if sec_idx != obj.text_shndx and sec_name != ".text" and sym.bind == STB_LOCAL:
                raise LoaderError(errno.EOPNOTSUPP, f"sec '{sec_name}': program '{sym.name}' "
                                  "is static and not supported")
            if size == 0 or size % 8 or off % 8:
                raise einval(f"sec '{sec_name}': corrupted program '{sym.name}', offset "
                             f"{off}, size {size}")
            autoload = not sec_name.startswith("?")
            clean_sec = sec_name[1:] if not autoload else sec_name
            insns = decode(data[off: off + size])
            if not obj.elf.little_endian:
                raise LoaderError(LibbpfErrno.ENDIAN, "big-endian BPF objects are not "
                                  "supported by pybpf")
            p = ProgramSpec(sym.name, clean_sec, sec_idx, off // 8, size // 8, insns,
                            is_subprog=False, autoload=autoload)
            p.orig_insns = list(insns)
            p.sym_global = sym.bind != STB_LOCAL
            p.mark_btf_static = p.sym_global and sym.visibility in (STV_HIDDEN, STV_INTERNAL)
            self.log.append(f"sec '{clean_sec}': found program '{sym.name}' at insn offset "
                            f"{off // 8} ({off} bytes), code size {size // 8} insns "
                            f"({size} bytes)")
            obj.programs.append(p)

    # ------------------------------------------------------------ BTF

    def _init_btf(self, btf_data: bytes | None, ext_data: bytes | None) -> None:
        obj = self.obj
        needs_btf = obj.btf_maps_shndx >= 0 or any(
            s.shndx == SHN_UNDEF and s.bind in (STB_GLOBAL, STB_WEAK) and s.type == STT_NOTYPE
            and s.name for s in obj.elf.symbols)
        if btf_data is not None:
            try:
                obj.btf = Btf.from_bytes(btf_data)
            except BtfFormatError as exc:
                self.log.append(f"Error loading ELF section .BTF: {exc}")
                if needs_btf:
                    raise LoaderError(errno.EINVAL, f"Error loading ELF section .BTF: {exc}"
                                      ) from None
        if obj.btf is None and needs_btf:
            raise LoaderError(errno.ENOENT, "BTF is required, but is missing or corrupted.")
        if obj.btf is not None and ext_data is not None:
            try:
                obj.btf_ext = BtfExt.from_bytes(ext_data, obj.btf)
            except BtfFormatError as exc:
                self.log.append(f"Error loading ELF section .BTF.ext: {exc}. Ignored and "
                                "continue.")

    def _collect_externs(self) -> None:
        obj, btf = self.obj, self.obj.btf
        exts: list[ExternDesc] = []
        for sym in obj.elf.symbols:
            if not (sym.shndx == SHN_UNDEF and sym.bind in (STB_GLOBAL, STB_WEAK)
                    and sym.type == STT_NOTYPE) or not sym.name:
                continue
            assert btf is not None
            btf_id = _find_extern_btf_id(btf, sym.name)
            if btf_id <= 0:
                raise LoaderError(errno.ESRCH, f"failed to find BTF for extern "
                                  f"'{sym.name}': {btf_id}")
            t = btf.types[btf_id]
            sec_id = _find_extern_sec_btf_id(btf, btf_id)
            if sec_id <= 0:
                raise LoaderError(errno.ENOENT, f"failed to find BTF for extern "
                                  f"'{sym.name}' [{btf_id}] section: {sec_id}")
            sec_name = btf.types[sec_id].name
            ext = ExternDesc(t.name, ExternType.UNKNOWN, sym.idx, btf_id, sec_id,
                             sym.bind == STB_WEAK)
            if sec_name == KCONFIG_SEC:
                if isinstance(t, BtfFunc):
                    raise LoaderError(errno.EOPNOTSUPP, f"extern function {ext.name} is "
                                      f"unsupported under {KCONFIG_SEC} section")
                assert isinstance(t, BtfVar)
                ext.type = ExternType.KCFG
                ext.kcfg_sz = _resolve_size(btf, t.type)
                if ext.kcfg_sz <= 0:
                    raise einval(f"failed to resolve size of extern (kcfg) '{sym.name}': "
                                 f"{ext.kcfg_sz}")
                ext.kcfg_align = align_of(btf, t.type)
                if ext.kcfg_align <= 0:
                    raise einval(f"failed to determine alignment of extern (kcfg) "
                                 f"'{sym.name}': {ext.kcfg_align}")
                ext.kcfg_type, ext.kcfg_signed = _find_kcfg_type(btf, t.type)
                if ext.kcfg_type == KcfgType.UNKNOWN:
                    raise LoaderError(errno.EOPNOTSUPP, f"extern (kcfg) '{sym.name}': type "
                                      "is unsupported")
            elif sec_name == KSYMS_SEC:
                ext.type = ExternType.KSYM
                ext.ksym_is_func = isinstance(t, BtfFunc)
                ext.ksym_type_id = btf.skip_mods_and_typedefs(
                    t.type) if isinstance(t, BtfVar | BtfFunc) else 0
            else:
                raise LoaderError(errno.EOPNOTSUPP, f"unrecognized extern section "
                                  f"'{sec_name}'")
            exts.append(ext)
        exts.sort(key=lambda e: (e.type, -e.kcfg_align if e.type == ExternType.KCFG else 0,
                                 e.kcfg_sz if e.type == ExternType.KCFG else 0,
                                 e.name.encode()))
        obj.externs = exts
        if not exts or btf is None:
            return
        by_name = {e.name: e for e in exts}
        for sec_t in btf.types:
            if not isinstance(sec_t, BtfDatasec):
                continue
            if sec_t.name == KSYMS_SEC:
                int_id = next((t.id for t in btf.types
                               if isinstance(t, BtfInt) and t.bits == 32), 0)
                new_vars, off = [], 0
                dummy_id = 0
                for vs in sec_t.vars:
                    vt = btf.types[vs.type]
                    if vt.name not in by_name:
                        raise LoaderError(errno.ESRCH, "failed to find extern definition for "
                                          f"BTF {btf_kind_str(vt)} '{vt.name}'")
                    var_id = vs.type
                    if isinstance(vt, BtfVar):
                        vt.linkage = BTF_VAR_GLOBAL_ALLOCATED
                        vt.type = int_id
                    elif isinstance(vt, BtfFunc):
                        # the kernel takes no extern FUNCs: libbpf makes a kfunc extern a
                        # global FUNC and lists a dummy int VAR in the DATASEC instead
                        if not dummy_id:
                            dummy_id = len(btf.types)
                            btf.types.append(BtfVar(dummy_id, vt.name, vt.name_off, False, int_id,
                                                    BTF_VAR_GLOBAL_ALLOCATED))
                        proto = btf.types[vt.type]
                        if isinstance(proto, BtfFuncProto):
                            for prm in proto.params:
                                if prm.type and not prm.name_off:
                                    prm.name_off, prm.name = vt.name_off, vt.name
                        vt.linkage = 1  # BTF_FUNC_GLOBAL
                        var_id = dummy_id
                    new_vars.append(BtfVarSecinfo(var_id, off, 4))
                    off += 4
                sec_t.vars = tuple(new_vars)
                sec_t.size = off
            elif sec_t.name == KCONFIG_SEC:
                off = 0
                for e in exts:
                    if e.type != ExternType.KCFG:
                        continue
                    e.kcfg_data_off = -(-off // e.kcfg_align) * e.kcfg_align
                    off = e.kcfg_data_off + e.kcfg_sz
                sec_t.size = off
                new_vars = []
                for vs in sec_t.vars:
                    vt = btf.types[vs.type]
                    e2 = by_name.get(vt.name)
                    if e2 is None:
                        raise LoaderError(errno.ESRCH, "failed to find extern definition for "
                                          f"BTF var '{vt.name}'")
                    if isinstance(vt, BtfVar):
                        vt.linkage = BTF_VAR_GLOBAL_ALLOCATED
                    new_vars.append(BtfVarSecinfo(vs.type, e2.kcfg_data_off, vs.size))
                sec_t.vars = tuple(new_vars)
        # kconfig externs without a .kconfig DATASEC still need offsets
        if not any(isinstance(t, BtfDatasec) and t.name == KCONFIG_SEC for t in btf.types):
            off = 0
            for e in exts:
                if e.type == ExternType.KCFG:
                    e.kcfg_data_off = -(-off // e.kcfg_align) * e.kcfg_align
                    off = e.kcfg_data_off + e.kcfg_sz

    def _fixup_btf(self) -> None:
        """``btf_fixup_datasec``: sizes and offsets clang leaves as zero."""
        obj, btf = self.obj, self.obj.btf
        if btf is None:
            return
        for t in btf.types:
            if not isinstance(t, BtfDatasec):
                continue
            if t.name in (KCONFIG_SEC, KSYMS_SEC):
                t.vars = tuple(sorted(t.vars, key=lambda v: v.offset))
                continue
            fix_offsets = False
            if t.size == 0:
                sec = obj.elf.section_by_name(t.name)
                if sec is None or not sec.size:
                    continue
                t.size = sec.size
                fix_offsets = True
            new_vars = []
            for vs in t.vars:
                vt = btf.types[vs.type]
                if not isinstance(vt, BtfVar):
                    raise einval(f"sec '{t.name}': unexpected non-VAR type found")
                if vt.linkage in (BTF_VAR_STATIC, BTF_VAR_GLOBAL_EXTERN):
                    new_vars.append(vs)
                    continue
                sym = _find_elf_var_sym(obj.elf.symbols, vt.name)
                if sym is None:
                    raise LoaderError(errno.ENOENT, f"sec '{t.name}': failed to find ELF "
                                      f"symbol for VAR '{vt.name}'")
                if fix_offsets:
                    vs = BtfVarSecinfo(vs.type, sym.value, vs.size)
                if sym.visibility in (STV_HIDDEN, STV_INTERNAL):
                    vt.linkage = BTF_VAR_STATIC
                new_vars.append(vs)
            t.vars = tuple(sorted(new_vars, key=lambda v: v.offset))

    # ------------------------------------------------------------ maps

    def _init_maps(self) -> None:
        self._init_btf_maps()
        self._init_arena_map()
        self._init_global_data_maps()
        self._init_kconfig_map()

    def _init_arena_map(self) -> None:
        """libbpf's arena rules: one arena map per object, big enough for the ``__arena``
        globals, which need one."""
        obj = self.obj
        for i, m in enumerate(obj.maps):
            if m.type != BpfMapType.BPF_MAP_TYPE_ARENA:
                continue
            if obj.arena_map_idx >= 0:
                raise einval(f"map '{m.name}': only single ARENA map is supported (map "
                             f"'{obj.maps[obj.arena_map_idx].name}' is also ARENA)")
            obj.arena_map_idx = i
            if obj.arena_data is not None:
                need = -(-len(obj.arena_data) // PAGE_SIZE) * PAGE_SIZE
                if need > m.max_entries * PAGE_SIZE:
                    raise LoaderError(errno.E2BIG, f"elf: sec '{ARENA_SEC}': declared ARENA map "
                                      f"size ({m.max_entries * PAGE_SIZE}) is too small to hold "
                                      f"global __arena variables of size {len(obj.arena_data)}")
        if obj.arena_data is not None and obj.arena_map_idx < 0:
            raise LoaderError(errno.ENOENT, f"elf: sec '{ARENA_SEC}': to use global __arena "
                              "variables the ARENA map should be explicitly declared in "
                              "SEC(\".maps\")")

    def _init_btf_maps(self) -> None:
        obj, btf = self.obj, self.obj.btf
        if obj.btf_maps_shndx < 0:
            return
        assert btf is not None
        data = obj.elf.sections[obj.btf_maps_shndx].data
        sec = None
        for t in btf.types:
            if isinstance(t, BtfDatasec) and t.name == MAPS_SEC:
                sec, obj.btf_maps_sec_btf_id = t, t.id
                break
        if sec is None:
            raise LoaderError(errno.ENOENT, f"DATASEC '{MAPS_SEC}' not found.")
        for i, vi in enumerate(sec.vars):
            var = btf.types[vi.type]
            name = var.name
            if not name:
                raise einval(f"map #{i}: empty name.")
            if vi.offset + vi.size > len(data):
                raise einval(f"map '{name}' BTF data is corrupted.")
            if not isinstance(var, BtfVar):
                raise einval(f"map '{name}': unexpected var kind {btf_kind_str(var)}.")
            if var.linkage != BTF_VAR_GLOBAL_ALLOCATED:
                raise LoaderError(errno.EOPNOTSUPP, f"map '{name}': unsupported map linkage "
                                  f"{_linkage_str(var.linkage)}.")
            d = btf.resolve(var.type)
            if not isinstance(d, BtfStruct):
                raise einval(f"map '{name}': unexpected def kind {btf_kind_str(var)}.")
            if d.size > vi.size:
                raise einval(f"map '{name}': invalid def size.")
            m = MapSpec(name, LibbpfMapType.UNSPEC, 0, 0, 0, 0, sec_idx=obj.btf_maps_shndx,
                        sec_offset=vi.offset, btf_var_idx=i, real_name=name)
            inner = MapSpec(f"{name}.inner", LibbpfMapType.UNSPEC, 0, 0, 0, 0)
            has_inner = _parse_btf_map_def(name, btf, d, self.strict, m, inner, self.log)
            _fill_map(m)
            if m.pinning == LIBBPF_PIN_BY_NAME:
                m.pin_path = f"{self.pin_root}/{name}"
            if has_inner:
                _fill_map(inner)
                inner.sec_idx = obj.btf_maps_shndx
                m.inner = inner
            obj.maps.append(m)

    def _init_global_data_maps(self) -> None:
        obj = self.obj
        kinds = {"data": LibbpfMapType.DATA, "rodata": LibbpfMapType.RODATA,
                 "bss": LibbpfMapType.BSS}
        for idx, kind in sorted(obj.sec_types.items()):
            if kind not in kinds:
                continue
            sec = obj.elf.sections[idx]
            if sec.size == 0:
                continue
            data = bytearray(sec.size) if kind == "bss" else bytearray(sec.data)
            self._add_internal_map(kinds[kind], sec.name, idx, data)

    def _add_internal_map(self, ltype: LibbpfMapType, real_name: str, sec_idx: int,
                          data: bytearray) -> MapSpec:
        obj = self.obj
        flags = BPF_F_RDONLY_PROG if ltype in (LibbpfMapType.RODATA,
                                               LibbpfMapType.KCONFIG) else 0
        m = MapSpec(internal_map_name(obj.name, real_name), ltype,
                    BpfMapType.BPF_MAP_TYPE_ARRAY, 4, len(data), 1, map_flags=flags,
                    real_name=real_name, sec_idx=sec_idx, data=data)
        if obj.btf is not None:
            ids = obj.btf.find_all(real_name)
            if ids:
                m.btf_value_type_id = ids[0]
                t = obj.btf.types[ids[0]]
                if isinstance(t, BtfDatasec) and any(
                        isinstance(obj.btf.types[v.type], BtfVar)
                        and obj.btf.types[v.type].linkage != BTF_VAR_STATIC  # type: ignore
                        for v in t.vars):
                    m.map_flags |= BPF_F_MMAPABLE
        obj.maps.append(m)
        return m

    def _init_kconfig_map(self) -> None:
        obj = self.obj
        kcfg = [e for e in obj.externs if e.type == ExternType.KCFG]
        if not kcfg:
            return
        last = kcfg[-1]
        self._add_internal_map(LibbpfMapType.KCONFIG, KCONFIG_SEC, obj.elf.symtab_idx,
                               bytearray(last.kcfg_data_off + last.kcfg_sz))
        obj.kconfig_map_idx = len(obj.maps) - 1

    # ------------------------------------------------------------ programs

    def _init_progs(self) -> None:
        for p in self.obj.programs:
            sd = find_sec_def(p.sec_name)
            if sd is None:
                self.log.append(f"prog '{p.name}': unrecognized ELF section name "
                                f"'{p.sec_name}'")
                continue
            p.sec_def = sd
            p.type = int(sd.prog_type)
            p.expected_attach_type = sd.attach_type
            p.prog_flags = sd.prog_flags(p.type)

    # ------------------------------------------------------------ relocations

    def _collect_relos(self) -> None:
        obj = self.obj
        for idx, kind in sorted(obj.sec_types.items()):
            if kind != "relo":
                continue
            sec = obj.elf.sections[idx]
            rels = obj.elf.rels.get(idx, [])
            if sec.info == obj.btf_maps_shndx:
                self._collect_map_relos(rels)
            else:
                self._collect_prog_relos(sec.name, sec.info, rels)
        for p in obj.programs:
            p.relos.sort(key=lambda r: (r.insn_idx, r.type))

    def _sym_name(self, sym: Symbol) -> str:
        if sym.type == STT_SECTION and sym.name_off == 0:
            return self.obj.elf.sec_name(sym.shndx)
        return sym.name

    def _collect_prog_relos(self, relo_sec: str, sec_idx: int, rels: list[Rel]) -> None:
        obj = self.obj
        sec_size = obj.elf.sections[sec_idx].size
        nsec = len(obj.elf.sections)
        for i, rel in enumerate(rels):
            if not 0 <= rel.sym < len(obj.elf.symbols):
                raise fmt_error(f"sec '{relo_sec}': symbol #{rel.sym} not found for relo #{i}")
            sym = obj.elf.symbols[rel.sym]
            if sym.shndx >= nsec and sym.shndx < SHN_LORESERVE:
                raise fmt_error(f"sec '{relo_sec}': corrupted symbol #{rel.sym} pointing to "
                                f"invalid section #{sym.shndx} for relo #{i}")
            if rel.offset % 8 or rel.offset >= sec_size:
                raise fmt_error(f"sec '{relo_sec}': invalid offset {rel.offset:#x} for "
                                f"relo #{i}")
            insn_idx = rel.offset // 8
            sym_name = self._sym_name(sym) or "<?"
            prog = obj.find_prog_by_sec_insn(sec_idx, insn_idx)
            if prog is None:
                self.log.append(f"sec '{relo_sec}': relo #{i}: couldn't find program in "
                                f"section '{obj.elf.sec_name(sec_idx)}' for insn #{insn_idx}, "
                                "probably overridden weak function, skipping...")
                continue
            prog.relos.append(self._record_reloc(prog, insn_idx - prog.sec_insn_off,
                                                 sym_name, sym))

    def _record_reloc(self, prog: ProgramSpec, insn_idx: int, sym_name: str,
                      sym: Symbol) -> RelocDesc:
        obj = self.obj
        insn = prog.insns[insn_idx]
        is_call = insn.code == 0x85
        is_ld64 = insn.code == 0x18
        if not is_call and not is_ld64:
            raise reloc_error(f"prog '{prog.name}': invalid relo against '{sym_name}' for "
                              f"insns[{insn_idx}].code {insn.code:#x}")
        if sym.shndx == SHN_UNDEF and sym.bind in (STB_GLOBAL, STB_WEAK) and \
                sym.type == STT_NOTYPE:
            for ei, ext in enumerate(obj.externs):
                if ext.sym_idx == sym.idx:
                    t = RelocType.EXTERN_CALL if is_call else RelocType.EXTERN_LD64
                    return RelocDesc(t, insn_idx, ext_idx=ei, sym_name=sym_name)
            raise reloc_error(f"prog '{prog.name}': extern relo failed to find extern for "
                              f"'{sym_name}' ({sym.idx})")
        shndx = sym.shndx
        if is_call:
            if insn.src != 1:
                raise reloc_error(f"prog '{prog.name}': incorrect bpf_call opcode")
            if not shndx or shndx != obj.text_shndx:
                raise reloc_error(f"prog '{prog.name}': bad call relo against '{sym_name}' in "
                                  f"section '{obj.elf.sec_name(shndx)}'")
            if sym.value % 8:
                raise reloc_error(f"prog '{prog.name}': bad call relo against '{sym_name}' at "
                                  f"offset {sym.value}")
            return RelocDesc(RelocType.CALL, insn_idx, sym_off=sym.value, sym_name=sym_name)
        if not shndx or shndx >= SHN_LORESERVE:
            raise reloc_error(f"prog '{prog.name}': invalid relo against '{sym_name}' in "
                              f"special section {shndx:#x}; forgot to initialize global var?..")
        if shndx == obj.text_shndx and ((sym.bind == STB_LOCAL and sym.type == STT_SECTION)
                                        or (sym.bind in (STB_GLOBAL, STB_WEAK)
                                            and sym.type == STT_FUNC)):
            if sym.value % 8 or insn.imm % 8:
                raise reloc_error(f"prog '{prog.name}': bad subprog addr relo against "
                                  f"'{sym_name}' at offset {sym.value}+{insn.imm}")
            return RelocDesc(RelocType.SUBPROG_ADDR, insn_idx, sym_off=sym.value,
                             sym_name=sym_name)
        if shndx == obj.arena_data_shndx:  # an __arena global: data in the arena map
            if obj.arena_map_idx < 0:
                raise reloc_error(f"prog '{prog.name}': bad arena data relocation at insn "
                                  f"{insn_idx}, no arena maps defined")
            return RelocDesc(RelocType.DATA, insn_idx, map_idx=obj.arena_map_idx,
                             sym_off=sym.value, sym_name=sym_name)
        sec_name = obj.elf.sec_name(shndx)
        kind = obj.sec_types.get(shndx)
        if kind not in ("data", "rodata", "bss"):
            if shndx != obj.btf_maps_shndx:
                raise reloc_error(f"prog '{prog.name}': bad map relo against '{sym_name}' in "
                                  f"section '{sec_name}'")
            for mi, m in enumerate(obj.maps):
                if m.libbpf_type == LibbpfMapType.UNSPEC and m.sec_idx == shndx and \
                        m.sec_offset == sym.value:
                    return RelocDesc(RelocType.LD64, insn_idx, map_idx=mi, sym_name=sym_name)
            raise reloc_error(f"prog '{prog.name}': map relo failed to find map for section "
                              f"'{sec_name}', off {sym.value}")
        for mi, m in enumerate(obj.maps):
            if m.is_internal and m.sec_idx == shndx:
                return RelocDesc(RelocType.DATA, insn_idx, map_idx=mi, sym_off=sym.value,
                                 sym_name=sym_name)
        raise reloc_error(f"prog '{prog.name}': data relo failed to find map for section "
                          f"'{sec_name}'")

    def _collect_map_relos(self, rels: list[Rel]) -> None:
        obj, btf = self.obj, self.obj.btf
        if not obj.btf_maps_sec_btf_id or btf is None:
            raise einval(".maps relocations without a .maps DATASEC")
        sec = btf.types[obj.btf_maps_sec_btf_id]
        assert isinstance(sec, BtfDatasec)
        for i, rel in enumerate(rels):
            if not 0 <= rel.sym < len(obj.elf.symbols):
                raise fmt_error(f".maps relo #{i}: symbol {rel.sym:x} not found")
            sym = obj.elf.symbols[rel.sym]
            name = sym.name or "<?>"
            owner = None
            for m in obj.maps:
                if m.sec_idx != obj.btf_maps_shndx or m.libbpf_type != LibbpfMapType.UNSPEC:
                    continue
                vi = sec.vars[m.btf_var_idx]
                if vi.offset <= rel.offset and rel.offset + 8 <= vi.offset + vi.size:
                    owner, owner_vi = m, vi
                    break
            if owner is None:
                raise einval(f".maps relo #{i}: cannot find map '{name}' at rel->r_offset "
                             f"{rel.offset}")
            if owner.type in _MAP_IN_MAP:
                if sym.shndx != obj.btf_maps_shndx:
                    raise reloc_error(f".maps relo #{i}: '{name}' isn't a BTF-defined map")
                if owner.type == BpfMapType.BPF_MAP_TYPE_HASH_OF_MAPS and owner.key_size != 4:
                    raise einval(f".maps relo #{i}: hash-of-maps '{owner.name}' should have "
                                 "key size 4.")
                if not any(m.name == name for m in obj.maps):
                    raise LoaderError(errno.ESRCH, f".maps relo #{i}: '{name}' isn't a valid "
                                      "map reference")
            elif owner.type == BpfMapType.BPF_MAP_TYPE_PROG_ARRAY:
                targ = next((p for p in obj.programs if p.name == name and not p.is_subprog),
                            None)
                if targ is None:
                    raise LoaderError(errno.ESRCH, f".maps relo #{i}: '{name}' isn't a valid "
                                      "program reference")
                if targ.sec_idx != sym.shndx or targ.sec_insn_off * 8 != sym.value:
                    raise reloc_error(f".maps relo #{i}: '{name}' isn't an entry-point "
                                      "program")
            else:
                raise einval(f".maps relo #{i}: map '{owner.name}' can't have initial values")
            var = btf.types[owner_vi.type]
            assert isinstance(var, BtfVar)
            d = btf.resolve(var.type)
            assert isinstance(d, BtfComposite)
            if not d.members or d.members[-1].name != "values":
                raise einval(f".maps relo #{i}: map '{owner.name}' has no 'values' member")
            moff = d.members[-1].bit_offset // 8
            if rel.offset - owner_vi.offset < moff:
                raise einval(f".maps relo #{i}: relocation before 'values' of map "
                             f"'{owner.name}'")
            slot_off = rel.offset - owner_vi.offset - moff
            if slot_off % 8:
                raise einval(f".maps relo #{i}: misaligned slot in map '{owner.name}'")
            slot = slot_off // 8
            while len(owner.init_slots) <= slot:
                owner.init_slots.append(None)
            owner.init_slots[slot] = name
            self.log.append(f".maps relo #{i}: map '{owner.name}' slot [{slot}] points to "
                            f"{'map' if owner.type in _MAP_IN_MAP else 'prog'} '{name}'")


# ---------------------------------------------------------------- helpers


def _ignore_section(sh_type: int, size: int, name: str) -> bool:
    """libbpf's ``ignore_elf_section``."""
    if sh_type in (SHT_STRTAB, SHT_LLVM_ADDRSIG):
        return True
    if sh_type == SHT_PROGBITS and size == 0 and name == ".text":
        return True
    if name.startswith(".debug_"):
        return True
    if name.startswith(".rel"):
        rest = name[4:]
        if rest.startswith(".debug_") or rest in (".BTF", ".BTF.ext"):
            return True
    return False


def internal_map_name(obj_name: str, real_name: str) -> str:
    """libbpf's ``internal_map_name``: ``<obj prefix><section>``, at most 15 characters."""
    sfx_len = min(max(7, len(real_name)), BPF_OBJ_NAME_LEN - 1)
    if "." in real_name[1:]:
        pfx_len = 0
    else:
        pfx_len = min(BPF_OBJ_NAME_LEN - sfx_len - 1, len(obj_name))
    name = obj_name[:pfx_len] + real_name[:sfx_len]
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)


def _linkage_str(linkage: int) -> str:
    return {0: "static", 1: "global", 2: "extern"}.get(linkage, "unknown")


def _resolve_size(btf: Btf, tid: int) -> int:
    try:
        return btf.resolve_size(tid)
    except (BtfFormatError, KeyError):
        return -errno.EINVAL


def align_of(btf: Btf, tid: int) -> int:
    """``btf__align_of``."""
    t = btf.types[btf.skip_mods_and_typedefs(tid)]
    if isinstance(t, BtfInt | BtfEnum) or t.kind.name == "FLOAT":
        return min(8, getattr(t, "size", 0))
    if isinstance(t, BtfPtr):
        return 8
    if isinstance(t, BtfArray):
        return align_of(btf, t.type)
    if isinstance(t, BtfComposite):
        best = 1
        for m in t.members:
            a = align_of(btf, m.type)
            if a <= 0:
                return a
            best = max(best, a)
            if not (t.kind_flag and m.bitfield_size) and m.bit_offset % (8 * a):
                return 1  # packed
        if t.size % best:
            return 1
        return best
    return -errno.EINVAL


def _find_kcfg_type(btf: Btf, tid: int) -> tuple[KcfgType, bool]:
    t = btf.resolve(tid)
    if isinstance(t, BtfInt):
        if t.encoding & IntEncoding.BOOL:
            return (KcfgType.BOOL if t.size == 1 else KcfgType.UNKNOWN), False
        signed = bool(t.encoding & IntEncoding.SIGNED)
        if t.size == 1:
            return KcfgType.CHAR, signed
        if t.size not in (2, 4, 8):
            return KcfgType.UNKNOWN, signed
        return KcfgType.INT, signed
    if isinstance(t, BtfEnum64):
        return (KcfgType.TRISTATE if t.name == "libbpf_tristate" else KcfgType.UNKNOWN), False
    if isinstance(t, BtfEnum):
        ok = t.size == 4 and t.name == "libbpf_tristate"
        return (KcfgType.TRISTATE if ok else KcfgType.UNKNOWN), False
    if isinstance(t, BtfArray):
        if t.nelems == 0 or _find_kcfg_type(btf, t.type)[0] != KcfgType.CHAR:
            return KcfgType.UNKNOWN, False
        return KcfgType.CHAR_ARR, False
    return KcfgType.UNKNOWN, False


def _find_extern_btf_id(btf: Btf, name: str) -> int:
    for t in btf.types:
        if isinstance(t, BtfVar | BtfFunc) and t.name == name:
            if isinstance(t, BtfVar) and t.linkage != BTF_VAR_GLOBAL_EXTERN:
                return -errno.EINVAL
            if isinstance(t, BtfFunc) and t.linkage != BTF_VAR_GLOBAL_EXTERN:
                return -errno.EINVAL
            return t.id
    return -errno.ENOENT


def _find_extern_sec_btf_id(btf: Btf, ext_id: int) -> int:
    for t in btf.types:
        if isinstance(t, BtfDatasec) and any(v.type == ext_id for v in t.vars):
            return t.id
    return -errno.ENOENT


def _find_elf_var_sym(symbols: list[Symbol], name: str) -> Symbol | None:
    for s in symbols:
        if s.name == name and s.type == 1 and s.bind in (STB_GLOBAL, STB_WEAK, STB_LOCAL):
            return s
    return None


def _fill_map(m: MapSpec) -> None:
    if m.type in (BpfMapType.BPF_MAP_TYPE_RINGBUF, BpfMapType.BPF_MAP_TYPE_USER_RINGBUF):
        m.max_entries = _adjust_ringbuf_sz(m.max_entries)


def _adjust_ringbuf_sz(sz: int) -> int:
    if sz == 0:
        return 0
    if sz % PAGE_SIZE == 0 and (sz // PAGE_SIZE) & (sz // PAGE_SIZE - 1) == 0:
        return sz
    mul = 1
    while mul <= 0xFFFFFFFF // PAGE_SIZE:
        if mul * PAGE_SIZE > sz:
            return mul * PAGE_SIZE
        mul <<= 1
    return sz


def _map_field_int(map_name: str, btf: Btf, mtype: int, mname: str) -> int:
    t = btf.resolve(mtype)
    if not isinstance(t, BtfPtr):
        raise einval(f"map '{map_name}': attr '{mname}': expected PTR, got {btf_kind_str(t)}.")
    if not 0 <= t.type < len(btf.types):
        raise einval(f"map '{map_name}': attr '{mname}': type [{t.type}] not found.")
    arr = btf.types[t.type]
    if not isinstance(arr, BtfArray):
        raise einval(f"map '{map_name}': attr '{mname}': expected ARRAY, got "
                     f"{btf_kind_str(arr)}.")
    return arr.nelems


def _map_field_long(map_name: str, btf: Btf, mtype: int, mname: str) -> int:
    t = btf.resolve(mtype)
    if isinstance(t, BtfPtr):
        return _map_field_int(map_name, btf, mtype, mname)
    if not isinstance(t, BtfEnum):
        raise einval(f"map '{map_name}': attr '{mname}': expected ENUM or ENUM64, got "
                     f"{btf_kind_str(t)}.")
    if len(t.values) != 1:
        raise einval(f"map '{map_name}': attr '{mname}': invalid __ulong")
    return t.values[0].value & 0xFFFFFFFFFFFFFFFF


def _parse_btf_map_def(map_name: str, btf: Btf, d: BtfComposite, strict: bool,
                       m: MapSpec, inner: MapSpec | None, log: list[str]) -> bool:
    """``parse_btf_map_def``; fills ``m`` (and ``inner``); True if an inner def was found."""
    is_inner = inner is None
    has_inner = False
    n = len(d.members)
    for i, mem in enumerate(d.members):
        name = mem.name
        if name == "type":
            m.type = _map_field_int(map_name, btf, mem.type, name)
        elif name == "max_entries":
            m.max_entries = _map_field_int(map_name, btf, mem.type, name)
        elif name == "map_flags":
            m.map_flags = _map_field_int(map_name, btf, mem.type, name)
        elif name == "numa_node":
            m.numa_node = _map_field_int(map_name, btf, mem.type, name)
        elif name in ("key_size", "value_size"):
            sz = _map_field_int(map_name, btf, mem.type, name)
            cur = m.key_size if name == "key_size" else m.value_size
            if cur and cur != sz:
                raise einval(f"map '{map_name}': conflicting {name.replace('_', ' ')} "
                             f"{cur} != {sz}.")
            setattr(m, name, sz)
        elif name in ("key", "value"):
            if not 0 <= mem.type < len(btf.types):
                raise einval(f"map '{map_name}': {name} type [{mem.type}] not found.")
            t = btf.types[mem.type]
            if not isinstance(t, BtfPtr):
                raise einval(f"map '{map_name}': {name} spec is not PTR: {btf_kind_str(t)}.")
            sz = _resolve_size(btf, t.type)
            if sz < 0:
                raise LoaderError(-sz, f"map '{map_name}': can't determine {name} size for "
                                  f"type [{t.type}]: {sz}.")
            cur = m.key_size if name == "key" else m.value_size
            if cur and cur != sz:
                raise einval(f"map '{map_name}': conflicting {name} size {cur} != {sz}.")
            if name == "key":
                m.key_size, m.btf_key_type_id = sz, t.type
            else:
                m.value_size, m.btf_value_type_id = sz, t.type
        elif name == "values":
            is_mim = m.type in _MAP_IN_MAP
            is_pa = m.type == BpfMapType.BPF_MAP_TYPE_PROG_ARRAY
            desc = "map-in-map inner" if is_mim else "prog-array value"
            if is_inner:
                raise LoaderError(errno.EOPNOTSUPP, f"map '{map_name}': multi-level inner "
                                  "maps not supported.")
            if i != n - 1:
                raise einval(f"map '{map_name}': '{name}' member should be last.")
            if not is_mim and not is_pa:
                raise LoaderError(errno.EOPNOTSUPP, f"map '{map_name}': should be map-in-map "
                                  "or prog-array.")
            if m.value_size and m.value_size != 4:
                raise einval(f"map '{map_name}': conflicting value size {m.value_size} != 4.")
            m.value_size = 4
            if not 0 <= mem.type < len(btf.types):
                raise einval(f"map '{map_name}': {desc} type [{mem.type}] not found.")
            t = btf.types[mem.type]
            if not isinstance(t, BtfArray) or t.nelems:
                raise einval(f"map '{map_name}': {desc} spec is not a zero-sized array.")
            pt = btf.resolve(t.type)
            if not isinstance(pt, BtfPtr):
                raise einval(f"map '{map_name}': {desc} def is of unexpected kind "
                             f"{btf_kind_str(pt)}.")
            tt = btf.resolve(pt.type)
            if is_pa:
                if tt.kind.name != "FUNC_PROTO":
                    raise einval(f"map '{map_name}': prog-array value def is of unexpected "
                                 f"kind {btf_kind_str(tt)}.")
                continue
            if not isinstance(tt, BtfStruct):
                raise einval(f"map '{map_name}': map-in-map inner def is of unexpected kind "
                             f"{btf_kind_str(tt)}.")
            assert inner is not None
            _parse_btf_map_def(f"{map_name}.inner", btf, tt, strict, inner, None, log)
            has_inner = True
        elif name == "pinning":
            if is_inner:
                raise einval(f"map '{map_name}': inner def can't be pinned.")
            val = _map_field_int(map_name, btf, mem.type, name)
            if val not in (LIBBPF_PIN_NONE, LIBBPF_PIN_BY_NAME):
                raise einval(f"map '{map_name}': invalid pinning value {val}.")
            m.pinning = val
        elif name == "map_extra":
            m.map_extra = _map_field_long(map_name, btf, mem.type, name)
        else:
            if strict:
                raise LoaderError(errno.EOPNOTSUPP, f"map '{map_name}': unknown field "
                                  f"'{name}'.")
            log.append(f"map '{map_name}': ignoring unknown field '{name}'.")
    if m.type == 0:
        raise einval(f"map '{map_name}': map type isn't specified.")
    return has_inner


#: For :func:`essential_name` users that import it from here.
__all__ = ["BpfObjectSpec", "align_of", "essential_name", "internal_map_name", "open_object"]

