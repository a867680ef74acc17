"""A ctypes client of the system's libbpf, used as the reference for relocation tests.

libbpf keeps each program's final instructions after ``bpf_object__load``
(``bpf_program__insns``), so loading an object in the live kernel and reading them back
gives exactly what libbpf sent to BPF_PROG_LOAD. Map fds in ``ld_imm64`` are replaced by
map indices so the result compares with pybpf's open-only relocation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass, field

from pybpf.isa.insn import Insn, decode


@dataclass
class LibbpfResult:
    loaded: bool
    error: int = 0
    programs: dict[str, list[Insn]] = field(default_factory=dict)
    prog_fds: dict[str, int] = field(default_factory=dict)
    maps: list[dict[str, object]] = field(default_factory=list)
    autoload: dict[str, bool] = field(default_factory=dict)


def _lib() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    sigs = {
        "bpf_object__open_file": (vp, [cp, vp]), "bpf_object__load": (ctypes.c_int, [vp]),
        "bpf_object__close": (None, [vp]),
        "bpf_object__next_program": (vp, [vp, vp]), "bpf_object__next_map": (vp, [vp, vp]),
        "bpf_program__name": (cp, [vp]), "bpf_program__insns": (vp, [vp]),
        "bpf_program__insn_cnt": (ctypes.c_size_t, [vp]),
        "bpf_program__set_autoload": (ctypes.c_int, [vp, ctypes.c_bool]),
        "bpf_program__autoload": (ctypes.c_bool, [vp]),
        "bpf_program__fd": (ctypes.c_int, [vp]),
        "bpf_map__name": (cp, [vp]), "bpf_map__fd": (ctypes.c_int, [vp]),
        "bpf_map__type": (ctypes.c_int, [vp]), "bpf_map__key_size": (ctypes.c_uint32, [vp]),
        "bpf_map__value_size": (ctypes.c_uint32, [vp]),
        "bpf_map__max_entries": (ctypes.c_uint32, [vp]),
        "bpf_map__map_flags": (ctypes.c_uint32, [vp]),
        "libbpf_set_print": (vp, [vp]),
    }
    for fn, (res, args) in sigs.items():
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    lib.libbpf_set_print(None)  # silence libbpf's stderr output
    return lib


LIB = _lib()


def available() -> bool:
    return LIB is not None and os.geteuid() == 0 and os.path.exists("/sys/kernel/btf/vmlinux")


def _iter(fn, obj):  # type: ignore[no-untyped-def]
    p = None
    while True:
        p = fn(obj, p)
        if not p:
            return
        yield p


def libbpf_load(path: str, only: set[str] | None = None) -> LibbpfResult:
    """Open and load ``path`` with libbpf (``only``: names to autoload), read results back."""
    assert LIB is not None
    obj = LIB.bpf_object__open_file(path.encode(), None)
    if not obj:
        return LibbpfResult(False, error=-1)
    try:
        progs = list(_iter(LIB.bpf_object__next_program, obj))
        if only is not None:
            for p in progs:
                LIB.bpf_program__set_autoload(p, LIB.bpf_program__name(p).decode() in only)
        err = LIB.bpf_object__load(obj)
        res = LibbpfResult(err == 0, error=err)
        maps = list(_iter(LIB.bpf_object__next_map, obj))
        fd_to_idx = {LIB.bpf_map__fd(m): i for i, m in enumerate(maps)}
        for m in maps:
            res.maps.append({"name": LIB.bpf_map__name(m).decode(),
                             "type": LIB.bpf_map__type(m),
                             "key_size": LIB.bpf_map__key_size(m),
                             "value_size": LIB.bpf_map__value_size(m),
                             "max_entries": LIB.bpf_map__max_entries(m),
                             "map_flags": LIB.bpf_map__map_flags(m)})
        if err:
            return res
        for p in progs:
            name = LIB.bpf_program__name(p).decode()
            res.autoload[name] = LIB.bpf_program__autoload(p)
            if not res.autoload[name]:
                continue
            n = LIB.bpf_program__insn_cnt(p)
            insns = decode(ctypes.string_at(LIB.bpf_program__insns(p), 8 * n))
            res.programs[name] = normalize_fds(insns, fd_to_idx)
            res.prog_fds[name] = LIB.bpf_program__fd(p)
        return res
    finally:
        LIB.bpf_object__close(obj)


def libbpf_load_each(path: str) -> LibbpfResult:
    """Load the whole object; if the kernel refuses it, each program on its own.

    Objects from tool packages often have programs whose attach targets this kernel lacks;
    the programs that do load are still compared.
    """
    res = libbpf_load(path)
    if res.loaded:
        return res
    names = program_names(path)
    merged = LibbpfResult(False, error=res.error, maps=res.maps)
    for name in names:
        one = libbpf_load(path, {name})
        if one.loaded and name in one.programs:
            merged.programs[name] = one.programs[name]
            merged.autoload[name] = True
    return merged


def program_names(path: str) -> list[str]:
    assert LIB is not None
    obj = LIB.bpf_object__open_file(path.encode(), None)
    if not obj:
        return []
    try:
        return [LIB.bpf_program__name(p).decode()
                for p in _iter(LIB.bpf_object__next_program, obj)]
    finally:
        LIB.bpf_object__close(obj)


def normalize_fds(insns: list[Insn], fd_to_idx: dict[int, int]) -> list[Insn]:
    """Replace map fds of ``ld_imm64`` map pseudo loads by map indices."""
    out = list(insns)
    for i, ins in enumerate(out):
        if ins.code == 0x18 and ins.src in (1, 2) and ins.imm in fd_to_idx:
            out[i] = ins._replace(imm=fd_to_idx[ins.imm])
    return out
