"""The object model of an opened BPF object file: programs, maps, externs, relocations.

These are the Python counterparts of libbpf's ``struct bpf_program``, ``struct bpf_map``,
``struct extern_desc`` and ``struct reloc_desc``. They hold what ``open`` found in the ELF
file and what ``relocate`` computed; creating kernel objects is the load step's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from pybpf.btf.ext import CoreRelo, FuncInfo, LineInfo
from pybpf.isa.insn import Insn
from pybpf.loader.secdef import SecDef


class LibbpfMapType(IntEnum):
    """``enum libbpf_map_type``: where a map came from."""

    UNSPEC = 0  # a BTF-defined map in .maps
    DATA = 1
    BSS = 2
    RODATA = 3
    KCONFIG = 4


class RelocType(IntEnum):
    """``enum reloc_type`` (libbpf's, the order matters for sorting)."""

    LD64 = 0
    CALL = 1
    DATA = 2
    EXTERN_LD64 = 3
    EXTERN_CALL = 4
    SUBPROG_ADDR = 5
    CORE = 6


@dataclass(slots=True)
class RelocDesc:
    """One relocation of a program, in the program's own instruction numbering."""

    type: RelocType
    insn_idx: int
    map_idx: int = -1
    sym_off: int = 0
    ext_idx: int = -1
    sym_name: str = ""


@dataclass(slots=True)
class MapSpec:
    """A map definition as found in the object (``struct bpf_map`` before creation)."""

    name: str
    libbpf_type: LibbpfMapType
    type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    map_extra: int = 0
    numa_node: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    pinning: int = 0
    pin_path: str | None = None
    real_name: str = ""
    sec_idx: int = -1
    sec_offset: int = 0
    btf_var_idx: int = -1
    inner: MapSpec | None = None
    #: initial slots of a map-in-map / prog array: names of maps or programs (or None)
    init_slots: list[str | None] = field(default_factory=list)
    #: initial contents of a global-data map (``mmaped`` in libbpf)
    data: bytearray | None = None
    autocreate: bool = True

    @property
    def is_internal(self) -> bool:
        return self.libbpf_type != LibbpfMapType.UNSPEC

    def definition(self) -> dict[str, object]:
        """The fields BPF_MAP_CREATE gets, for comparisons and display."""
        return {"name": self.name, "type": self.type, "key_size": self.key_size,
                "value_size": self.value_size, "max_entries": self.max_entries,
                "map_flags": self.map_flags, "map_extra": self.map_extra,
                "btf_key_type_id": self.btf_key_type_id,
                "btf_value_type_id": self.btf_value_type_id,
                "inner": self.inner.definition() if self.inner else None,
                "pinning": self.pinning}


class ExternType(IntEnum):
    UNKNOWN = 0
    KCFG = 1
    KSYM = 2


class KcfgType(IntEnum):
    UNKNOWN = 0
    CHAR = 1
    BOOL = 2
    INT = 3
    TRISTATE = 4
    CHAR_ARR = 5


@dataclass(slots=True)
class ExternDesc:
    """``struct extern_desc``: a ``__kconfig`` or ``__ksym`` extern."""

    name: str
    type: ExternType
    sym_idx: int
    btf_id: int
    sec_btf_id: int
    is_weak: bool
    is_set: bool = False
    # kconfig
    kcfg_type: KcfgType = KcfgType.UNKNOWN
    kcfg_sz: int = 0
    kcfg_align: int = 0
    kcfg_signed: bool = False
    kcfg_data_off: int = 0
    # ksym
    ksym_type_id: int = 0
    ksym_is_func: bool = False
    ksym_addr: int = 0
    kernel_btf_id: int = 0
    kernel_btf_obj_fd: int = 0
    btf_fd_idx: int = 0


@dataclass(slots=True)
class ProgramSpec:
    """A program (or a ``.text`` subprogram) of the object."""

    name: str
    sec_name: str
    sec_idx: int
    sec_insn_off: int
    sec_insn_cnt: int
    insns: list[Insn]
    is_subprog: bool
    sym_global: bool = False
    mark_btf_static: bool = False
    sec_def: SecDef | None = None
    type: int = 0
    expected_attach_type: int = 0
    prog_flags: int = 0
    autoload: bool = True
    log_level: int = 0
    attach_btf_id: int = 0
    attach_btf_obj_fd: int = 0
    relos: list[RelocDesc] = field(default_factory=list)
    core_relos: list[tuple[int, CoreRelo]] = field(default_factory=list)
    # set while relocating
    sub_insn_off: int = 0
    func_info: list[FuncInfo] = field(default_factory=list)
    line_info: list[LineInfo] = field(default_factory=list)
    func_info_rec_size: int = 0
    line_info_rec_size: int = 0
    #: (original ELF instructions, kept so relocation can be redone after settings change)
    orig_insns: list[Insn] = field(default_factory=list)
    #: the relocated instructions of a main program (None until relocated)
    final_insns: list[Insn] | None = None
    #: relocations of the final instructions, map/extern references only
    final_relos: list[RelocDesc] = field(default_factory=list)
