"""A skeleton-like Python API over the loader: ``pybpf.open()`` / ``pybpf.load()``.

::

    obj = pybpf.open("globals_calls.o")      # parse + settings, nothing created yet
    obj.rodata.max_len = 1000                # .rodata constants, before load
    obj.progs.sock_globals.autoload = False  # bpf_program__set_autoload
    obj.maps.drops.max_entries = 4096        # bpf_map__set_max_entries
    obj.load()                               # BTF, maps, programs through bpf()
    print(obj.bss.pkt_count)                 # typed by BTF, read from the live map

    with pybpf.load("xdp_counter.o") as obj: # open + load; closed on exit
        fd = obj.progs.xdp_count.fd

Program and map settings mirror libbpf's ``bpf_program__set_*`` / ``bpf_map__set_*``.
Global-data views are typed through the object's BTF (:mod:`pybpf.btf.codec`); before
load they edit the initial image, after load every read and write goes to the map, so a
program sees userspace writes and vice versa. Load failures raise
:class:`~pybpf.errors.BpfError`, whose ``str()`` frames the verifier log as libbpf does.

Where the syscalls go: a pybpf :class:`~pybpf.kernel.Kernel` (the default instance unless
``kernel=`` is given), or ``kernel="live"`` for the machine's own ``bpf()``.

What CO-RE relocations resolve against (``target_btf=``, libbpf's ``btf_custom_path``): a
:class:`~pybpf.btf.raw.Btf` or a path (raw BTF or an ELF object's ``.BTF``), or by
default the target's own kernel BTF — ``/sys/kernel/btf/vmlinux`` for the live kernel;
for a pybpf instance the kernel BTF it registers (its ``vmlinux_btf``), falling back to
pybpf's own (:func:`pybpf.btf.kernel_btf.kernel_btf`: context structs, uapi enums, pybpf's
kernel objects) on machines without one. ``target_btf=False`` resolves against nothing
(relocations poisoned where they must be), as libbpf would without a target.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, MutableMapping
from typing import Any

from pybpf.btf.codec import Codec, StructCodec, codec_for
from pybpf.btf.raw import Btf, BtfDatasec
from pybpf.btf.relo_core import CandidateIndex
from pybpf.errors import BpfError
from pybpf.loader.elf_object import BpfObjectSpec, open_object
from pybpf.loader.errors import LoaderError
from pybpf.loader.externs import KernelFacts
from pybpf.loader.load import LiveSyscalls, LoadedObject, load_object
from pybpf.loader.model import LibbpfMapType, MapSpec, ProgramSpec

VMLINUX = "/sys/kernel/btf/vmlinux"
_TARGETS: dict[object, CandidateIndex] = {}
#: What ``target_btf=`` accepts: a parsed BTF, a path, False (no target), None (default).
TargetBtf = Btf | str | os.PathLike[str] | bool | None


def _vmlinux_target() -> CandidateIndex | None:
    if VMLINUX not in _TARGETS:
        if not os.path.exists(VMLINUX):
            return None
        _TARGETS[VMLINUX] = CandidateIndex(Btf.from_file(VMLINUX))
    return _TARGETS[VMLINUX]


def _index(btf: Btf) -> CandidateIndex:
    """One candidate index per BTF object (building it walks every type)."""
    key = id(btf)
    cached = _TARGETS.get(key)
    if cached is None or cached.btf is not btf:
        cached = _TARGETS[key] = CandidateIndex(btf)
    return cached


def _instance_target(kernel: Any) -> CandidateIndex:
    """A pybpf instance's kernel BTF: the one it registered, else pybpf's own."""
    from pybpf.btf.kernel_btf import kernel_btf

    registered = getattr(kernel, "vmlinux_btf", None)
    if registered is not None:
        path = getattr(registered, "_path", None)
        if path == VMLINUX:
            target = _vmlinux_target()
            if target is not None:
                return target
        try:
            return _index(registered.parsed())
        except (AttributeError, ValueError, OSError):
            pass
    return _index(kernel_btf())


def resolve_target(target_btf: TargetBtf, kernel: Any) -> CandidateIndex | None:
    """The CO-RE target for ``target_btf=`` when loading into ``kernel``."""
    if target_btf is False:
        return None
    if isinstance(target_btf, Btf):
        return _index(target_btf)
    if isinstance(target_btf, str | os.PathLike):
        path = os.fspath(target_btf)
        if path not in _TARGETS:
            try:
                _TARGETS[path] = CandidateIndex(Btf.from_file(path))
            except (OSError, ValueError) as exc:
                raise LoaderError(errno.EINVAL,
                                  f"failed to parse target BTF '{path}': {exc}") from None
        return _TARGETS[path]
    if kernel == "live":
        return _vmlinux_target()
    return _instance_target(kernel)


class Program:
    """One entry program: libbpf's ``struct bpf_program`` settings and, after load, its fd."""

    def __init__(self, owner: BpfObject, spec: ProgramSpec) -> None:
        self._owner = owner
        self._spec = spec

    name = property(lambda self: self._spec.name)
    section = property(lambda self: self._spec.sec_name)

    def _setter(attr: str) -> property:  # type: ignore[misc]
        def get(self: Program) -> Any:
            return getattr(self._spec, attr)

        def put(self: Program, value: Any) -> None:
            self._owner._check_not_loaded(f"set {attr} of program '{self.name}'")
            setattr(self._spec, attr, value)
        return property(get, put)

    autoload = _setter("autoload")
    type = _setter("type")
    expected_attach_type = _setter("expected_attach_type")
    log_level = _setter("log_level")
    prog_flags = _setter("prog_flags")

    @property
    def insns(self) -> list[Any]:
        """Final instructions once relocated, else the compiler's."""
        return list(self._spec.final_insns or self._spec.insns)

    @property
    def fd(self) -> int:
        if self._owner._loaded is None or self.name not in self._owner._loaded.prog_fds:
            raise BpfError(9, f"program '{self.name}' is not loaded")
        return self._owner._loaded.prog_fds[self.name]

    def handle(self) -> Any:
        """The loaded program as a :class:`pybpf.program.Program` (fd-level object API)."""
        from pybpf.program import Program as FdProgram

        return FdProgram(self._owner._task(), self.fd)

    def test_run(self, data_in: Any = b"", **opts: Any) -> Any:
        """``BPF_PROG_TEST_RUN`` with libbpf's ``bpf_test_run_opts`` names (``data_in``,
        ``data_size_out``, ``ctx_in``, ``ctx_size_out``, ``repeat``, ``flags``, ``cpu``)."""
        return self.handle().test_run(data_in, **opts)

    def __getattr__(self, name: str) -> Any:
        """Attach methods and the rest of the fd-level API (``attach_tcx``, ``attach_xdp``,
        ``attach_raw_tracepoint``, ``info``, ``pin``…) act on the loaded program."""
        if name.startswith("_") or name in ("handle",):
            raise AttributeError(name)
        from pybpf.program import Program as FdProgram

        if not hasattr(FdProgram, name):
            raise AttributeError(f"'Program' object has no attribute {name!r}")
        return getattr(self.handle(), name)

    def __repr__(self) -> str:
        return f"<Program {self.name} sec={self.section!r} type={self._spec.type}>"


class Map(MutableMapping[Any, Any]):
    """One map definition (``struct bpf_map``) and, after load, the live map.

    Once loaded into a pybpf instance it behaves as :class:`pybpf.maps.api.Map` (BCC's
    names: ``m[k]``, ``items()``, batch operations, ``print_log2_hist`` …) with keys and
    values typed through the object's BTF.
    """

    def __init__(self, owner: BpfObject, spec: MapSpec, index: int) -> None:
        self._owner = owner
        self._spec = spec
        self._index = index
        self._api_map: Any = None

    def api(self) -> Any:
        """The :class:`pybpf.maps.api.Map` over the created map (pybpf instances only)."""
        if self._api_map is None:
            from pybpf.maps.api import Map as ApiMap
            from pybpf.syscall.objects import map_get

            task = self._owner._task()
            if not hasattr(task, "fds"):
                raise BpfError(95, f"map '{self.name}': Python map access needs a pybpf "
                                   "instance (the live kernel's maps: pybpf.testing.kernel)")
            kmap, _file = map_get(task, self.fd)
            btf = self._spec_btf()
            key_codec = _btf_codec(btf, self._spec.btf_key_type_id, self.key_size)
            value_codec = _btf_codec(btf, self._spec.btf_value_type_id, self.value_size)
            self._api_map = ApiMap(kmap.bmap, key_codec, value_codec)
        return self._api_map

    def _spec_btf(self) -> Any:
        return getattr(self._owner.spec, "btf", None)

    def __getitem__(self, key: Any) -> Any:
        return self.api()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.api()[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.api()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.api())

    def __len__(self) -> int:
        return len(self.api())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.api(), name)

    name = property(lambda self: self._spec.name)
    type = property(lambda self: self._spec.type)
    key_size = property(lambda self: self._spec.key_size)
    value_size = property(lambda self: self._spec.value_size)

    @property
    def max_entries(self) -> int:
        return self._spec.max_entries

    @max_entries.setter
    def max_entries(self, n: int) -> None:
        self._owner._check_not_loaded(f"resize map '{self.name}'")
        self._spec.max_entries = n

    @property
    def autocreate(self) -> bool:
        return self._spec.autocreate

    @autocreate.setter
    def autocreate(self, v: bool) -> None:
        self._owner._check_not_loaded(f"set autocreate of map '{self.name}'")
        self._spec.autocreate = v

    @property
    def fd(self) -> int:
        if self._owner._loaded is None:
            raise BpfError(9, f"map '{self.name}' is not created")
        return self._owner._loaded.map_fds[self._index]

    def __repr__(self) -> str:
        return f"<Map {self.name} type={self.type} max_entries={self.max_entries}>"


def _btf_codec(btf: Any, type_id: int, size: int) -> Any:
    """A BTF-typed codec for a map key/value, or ``None`` (raw bytes/ints) without BTF."""
    if btf is None or not type_id:
        return None
    try:
        codec = codec_for(btf, type_id)
    except (KeyError, ValueError, NotImplementedError):
        return None
    return codec if getattr(codec, "size", size) == size else None


class _Namespace:
    def __init__(self, items: dict[str, Any], what: str) -> None:
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_what", what)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"no {self._what} named {name!r}") from None

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __iter__(self) -> Any:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __dir__(self) -> list[str]:
        return list(self._items)


class GlobalData:
    """A ``.bss``/``.data``/``.rodata`` section's variables as attributes, typed by BTF."""

    def __init__(self, owner: BpfObject, spec: MapSpec, index: int, codec: StructCodec) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_spec", spec)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_fields", {f.name: f for f in codec.fields})

    def _image(self) -> bytearray:
        lo = self._owner._loaded
        if lo is None:
            assert self._spec.data is not None
            return self._spec.data
        return bytearray(self._owner._map_read(lo.map_fds[self._index], self._spec))

    def __getattr__(self, name: str) -> Any:
        f = self._fields.get(name)
        if f is None:
            raise AttributeError(f"{self._spec.real_name} has no variable {name!r}")
        data = self._image()
        return f.codec.unpack(data[f.offset: f.offset + f.codec.size])

    def __setattr__(self, name: str, value: Any) -> None:
        f = self._fields.get(name)
        if f is None:
            raise AttributeError(f"{self._spec.real_name} has no variable {name!r}")
        lo = self._owner._loaded
        if lo is not None and self._spec.libbpf_type == LibbpfMapType.RODATA:
            raise BpfError(1, f"{self._spec.real_name} is frozen after load")
        data = self._image()
        data[f.offset: f.offset + f.codec.size] = f.codec.pack(value)
        if lo is not None:
            self._store(lo, bytes(data))

    def _store(self, lo: Any, data: bytes) -> None:
        self._owner._map_write(lo.map_fds[self._index], data)

    def __dir__(self) -> list[str]:
        return list(self._fields)

    def as_dict(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._fields}


class ArenaGlobals(GlobalData):
    """The ``__arena`` globals (``.addr_space.1``), typed by BTF: the object's initial
    bytes before load, the arena's memory (through its user mapping) after."""

    def _image(self) -> bytearray:
        lo = self._owner._loaded
        spec = self._owner.spec
        if lo is None:
            assert isinstance(spec.arena_data, bytearray)
            return spec.arena_data
        from pybpf.loader.arena import ARENA_DATA_OFF

        mapping = lo.arenas[spec.maps[spec.arena_map_idx].name]
        return bytearray(mapping.read(ARENA_DATA_OFF, len(spec.arena_data or b"")))

    def _store(self, lo: Any, data: bytes) -> None:
        from pybpf.loader.arena import ARENA_DATA_OFF

        spec = self._owner.spec
        lo.arenas[spec.maps[spec.arena_map_idx].name].write(ARENA_DATA_OFF, data)


class BpfObject:
    """An opened (and maybe loaded) object file, like a libbpf skeleton."""

    def __init__(self, spec: BpfObjectSpec, kernel: Any = None,
                 target_btf: TargetBtf = None) -> None:
        self.spec = spec
        self._kernel = kernel
        self._target_btf = target_btf
        self._loaded: LoadedObject | None = None
        self.progs = _Namespace({p.name: Program(self, p) for p in spec.entry_programs},
                                "program")
        self.maps = _Namespace({m.name: Map(self, m, i) for i, m in enumerate(spec.maps)},
                               "map")
        self._sections: dict[str, GlobalData] = {}
        for i, m in enumerate(spec.maps):
            if m.libbpf_type in (LibbpfMapType.DATA, LibbpfMapType.BSS,
                                 LibbpfMapType.RODATA) and spec.btf is not None:
                t = spec.btf.types[m.btf_value_type_id] if m.btf_value_type_id else None
                if isinstance(t, BtfDatasec):
                    codec = codec_for(spec.btf, t.id)
                    assert isinstance(codec, StructCodec)
                    self._sections[m.real_name] = GlobalData(self, m, i, codec)
        self._arena: ArenaGlobals | None = None
        if spec.arena_data is not None and spec.arena_map_idx >= 0 and spec.btf is not None:
            for t in spec.btf.types:
                if isinstance(t, BtfDatasec) and t.name == ".addr_space.1":
                    codec = codec_for(spec.btf, t.id)
                    assert isinstance(codec, StructCodec)
                    self._arena = ArenaGlobals(self, spec.maps[spec.arena_map_idx],
                                               spec.arena_map_idx, codec)

    # ---- global data

    @property
    def bss(self) -> GlobalData:
        return self._section(".bss")

    @property
    def data(self) -> GlobalData:
        return self._section(".data")

    @property
    def rodata(self) -> GlobalData:
        return self._section(".rodata")

    @property
    def arena(self) -> GlobalData:
        """The ``__arena`` globals (libbpf's ``skel->arena``)."""
        if self._arena is None:
            raise AttributeError("object has no __arena globals")
        return self._arena

    def section(self, name: str) -> GlobalData:
        """A custom ``.data.*``/``.rodata.*`` section's view."""
        return self._section(name)

    def _section(self, name: str) -> GlobalData:
        try:
            return self._sections[name]
        except KeyError:
            raise AttributeError(f"object has no {name} section") from None

    # ---- lifecycle

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def _check_not_loaded(self, what: str) -> None:
        if self._loaded is not None:
            raise BpfError(16, f"can't {what} after the object is loaded")  # EBUSY

    def _task(self) -> Any:
        """What the object's fds belong to: the instance's root task, or the live kernel."""
        sys = self._syscalls()
        return getattr(sys, "root", sys)

    def _syscalls(self) -> Any:
        if self._kernel == "live":
            return LiveSyscalls()
        if self._kernel is None:
            from pybpf.kernel import default_kernel

            self._kernel = default_kernel()
        return self._kernel

    def load(self, *, log_level: int = 0) -> BpfObject:
        """Create BTF, maps and programs (``bpf_object__load``)."""
        self._check_not_loaded("load the object twice")
        sys = self._syscalls()
        target = resolve_target(self._target_btf, self._kernel)
        facts = KernelFacts.host(target.btf if target else None,
                                 kallsyms=self._kernel == "live")
        self._loaded = load_object(self.spec, sys, target=target, facts=facts,
                                   log_level=log_level)
        return self

    def close(self) -> None:
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- map access for the global-data views

    def _map_read(self, fd: int, spec: MapSpec) -> bytes:
        import ctypes

        from pybpf.uapi import BpfCmd, bpf_attr_map_elem

        key = ctypes.create_string_buffer(4)
        val = ctypes.create_string_buffer(spec.value_size)
        attr = bpf_attr_map_elem()
        attr.map_fd, attr.key = fd, ctypes.addressof(key)
        ctypes.memmove(ctypes.addressof(attr) + 16,
                       ctypes.byref(ctypes.c_uint64(ctypes.addressof(val))), 8)
        ret = self._syscalls().bpf(BpfCmd.BPF_MAP_LOOKUP_ELEM, attr)
        if ret < 0:
            raise BpfError(-ret, f"map '{spec.name}': lookup failed")
        return val.raw

    def _map_write(self, fd: int, value: bytes) -> None:
        from pybpf.loader.load import _update

        _update(self._syscalls(), fd, b"\0\0\0\0", value)

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "opened"
        return (f"<BpfObject {self.spec.name} {state}: progs={list(self.progs._items)} "
                f"maps={list(self.maps._items)}>")


def open(path: str | os.PathLike[str] | bytes, *, kernel: Any = None,
         name: str | None = None, target_btf: TargetBtf = None) -> BpfObject:
    """Open an object file (``bpf_object__open``); raises :class:`LoaderError`.

    ``target_btf`` chooses what CO-RE relocations resolve against (module docstring).
    """
    return BpfObject(open_object(path, name=name), kernel, target_btf)


def load(path: str | os.PathLike[str] | bytes, *, kernel: Any = None,
         log_level: int = 0, target_btf: TargetBtf = None) -> BpfObject:
    """Open and load an object file; use as a context manager to close it."""
    return open(path, kernel=kernel, target_btf=target_btf).load(log_level=log_level)


__all__ = ["BpfObject", "Codec", "GlobalData", "LoaderError", "Map", "Program", "load", "open",
           "resolve_target"]
