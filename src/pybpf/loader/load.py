"""The load step: BTF, maps and programs of an opened object, through ``bpf()``.

libbpf's ``bpf_object_load`` in order: resolve externs, load the (edited) BTF, create maps
(inner-map templates first, global data filled and ``.rodata``/``.kconfig`` frozen),
relocate with the real map fds, load every autoload program (func/line info attached;
on failure retried with a verifier log as libbpf does), then fill map-in-map and
prog-array slots declared in ``.maps``.

The syscall goes through any object with ``bpf(cmd, attr) -> int`` (negative errno on
failure) and ``close(fd)``: a pybpf :class:`~pybpf.kernel.Kernel`, or
:class:`LiveSyscalls` for the machine's real kernel (differential tests).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from pybpf.btf.relo_core import CandidateIndex
from pybpf.btf.writer import to_bytes
from pybpf.errors import BpfError
from pybpf.isa.insn import encode
from pybpf.loader.arena import ARENA_DATA_OFF, BPF_MAP_TYPE_ARENA, mmap_arena
from pybpf.loader.attach_btf import find_attach_btf_id, needs_attach_btf
from pybpf.loader.elf_object import BpfObjectSpec
from pybpf.loader.externs import KernelFacts, resolve_externs
from pybpf.loader.model import LibbpfMapType, MapSpec, ProgramSpec
from pybpf.loader.relocate import RelocateOptions, relocate
from pybpf.uapi import (
    BpfCmd,
    BpfMapType,
    bpf_attr_btf_load,
    bpf_attr_map_create,
    bpf_attr_map_elem,
    bpf_attr_prog_load,
)

#: Map types created without BTF key/value ids (libbpf's bpf_object__create_map list).
_NO_BTF_KV = {BpfMapType.BPF_MAP_TYPE_PERF_EVENT_ARRAY, BpfMapType.BPF_MAP_TYPE_CGROUP_ARRAY,
              BpfMapType.BPF_MAP_TYPE_STACK_TRACE, BpfMapType.BPF_MAP_TYPE_ARRAY_OF_MAPS,
              BpfMapType.BPF_MAP_TYPE_HASH_OF_MAPS, BpfMapType.BPF_MAP_TYPE_DEVMAP,
              BpfMapType.BPF_MAP_TYPE_DEVMAP_HASH, BpfMapType.BPF_MAP_TYPE_CPUMAP,
              BpfMapType.BPF_MAP_TYPE_XSKMAP, BpfMapType.BPF_MAP_TYPE_SOCKMAP,
              BpfMapType.BPF_MAP_TYPE_SOCKHASH, BpfMapType.BPF_MAP_TYPE_QUEUE,
              BpfMapType.BPF_MAP_TYPE_STACK, BpfMapType.BPF_MAP_TYPE_RINGBUF,
              BpfMapType.BPF_MAP_TYPE_PROG_ARRAY}
LOG_BUF_SIZE = 16 * 1024 * 1024


class Syscalls(Protocol):
    def bpf(self, cmd: int, attr: Any, size: int | None = None) -> int: ...
    def close(self, fd: int) -> Any: ...


class LiveSyscalls:
    """The host kernel's ``bpf()`` in the ``Syscalls`` shape (ret or ``-errno``)."""

    def bpf(self, cmd: int, attr: Any, size: int | None = None) -> int:
        from pybpf.testing.kernel import sys_bpf

        ret, err = sys_bpf(cmd, attr, size)
        return -err if err else ret

    def close(self, fd: int) -> None:
        os.close(fd)


@dataclass
class LoadedObject:
    """File descriptors of a loaded object, and the object they belong to."""

    spec: BpfObjectSpec
    sys: Any
    btf_fd: int = -1
    map_fds: list[int] = field(default_factory=list)
    prog_fds: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    arenas: dict[str, Any] = field(default_factory=dict)  # user mappings (loader/arena.py)

    def close(self) -> None:
        for mapping in self.arenas.values():
            mapping.close()
        self.arenas.clear()
        fds = [*self.prog_fds.values(), *self.map_fds, self.btf_fd]
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    self.sys.close(fd)
        self.prog_fds.clear()
        self.map_fds = []
        self.btf_fd = -1


def possible_cpus() -> int:
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
        n = 0
        for part in text.split(","):
            a, _, b = part.partition("-")
            n += (int(b) - int(a) + 1) if b else 1
        return n
    except (OSError, ValueError):
        return os.cpu_count() or 1


def create_max_entries(m: MapSpec, ncpus: int) -> int:
    """``map_set_def_max_entries``: a perf event array sized 0 gets one slot per CPU."""
    if m.type == BpfMapType.BPF_MAP_TYPE_PERF_EVENT_ARRAY and m.max_entries == 0:
        return ncpus
    return m.max_entries


def load_object(obj: BpfObjectSpec, sys: Syscalls, *, target: CandidateIndex | None = None,
                facts: KernelFacts | None = None, log_level: int = 0,
                ncpus: int | None = None) -> LoadedObject:
    """Create everything ``obj`` needs through ``sys``; raises :class:`BpfError`."""
    lo = LoadedObject(obj, sys)
    ncpus = ncpus or possible_cpus()
    try:
        resolve_externs(obj, facts or KernelFacts(btf=target.btf if target else None))
        if obj.btf is not None:
            lo.btf_fd = _load_btf(sys, to_bytes(obj.btf, keep_strings=True))
        for i, m in enumerate(obj.maps):
            lo.map_fds.append(_create_map(sys, m, lo.btf_fd, ncpus) if m.autocreate else -1)
            if m.data is not None and lo.map_fds[i] >= 0:
                _update(sys, lo.map_fds[i], b"\0\0\0\0", bytes(m.data))
                if m.libbpf_type in (LibbpfMapType.RODATA, LibbpfMapType.KCONFIG):
                    _freeze(sys, lo.map_fds[i], m.name)
            if m.type == BPF_MAP_TYPE_ARENA and lo.map_fds[i] >= 0:
                lo.arenas[m.name] = mmap_arena(sys, lo.map_fds[i], m.max_entries, m.map_extra)
                if i == obj.arena_map_idx and obj.arena_data:
                    lo.arenas[m.name].write(ARENA_DATA_OFF, bytes(obj.arena_data))
        relocate(obj, RelocateOptions(target=target, map_fd=lambda idx: lo.map_fds[idx]))
        for p in obj.programs:
            if p.is_subprog or not p.autoload:
                continue
            if needs_attach_btf(p):
                p.attach_btf_id = find_attach_btf_id(p, target.btf if target else None)
            lo.prog_fds[p.name] = _load_prog(sys, obj, p, lo.btf_fd, log_level)
        _init_slots(sys, obj, lo)
    except BaseException:
        lo.close()
        raise
    return lo


def _check(ret: int, what: str, log: str = "") -> int:
    if ret < 0:
        raise BpfError(-ret, f"{what}: {os.strerror(-ret)}", log)
    return ret


def _load_btf(sys: Syscalls, blob: bytes) -> int:
    buf = ctypes.create_string_buffer(blob, len(blob))
    logbuf = ctypes.create_string_buffer(LOG_BUF_SIZE // 16)
    attr = bpf_attr_btf_load()
    attr.btf, attr.btf_size = ctypes.addressof(buf), len(blob)
    ret = sys.bpf(BpfCmd.BPF_BTF_LOAD, attr)
    if ret < 0:
        attr.btf_log_buf, attr.btf_log_size = ctypes.addressof(logbuf), len(logbuf)
        attr.btf_log_level = 1
        ret = sys.bpf(BpfCmd.BPF_BTF_LOAD, attr)
    return _check(ret, "Error loading .BTF into kernel", logbuf.value.decode(errors="replace"))


def _create_map(sys: Syscalls, m: MapSpec, btf_fd: int, ncpus: int) -> int:
    inner_fd = -1
    if m.inner is not None:
        inner_fd = _create_map(sys, m.inner, btf_fd, ncpus)
    try:
        attr = bpf_attr_map_create()
        attr.map_type, attr.key_size, attr.value_size = m.type, m.key_size, m.value_size
        attr.max_entries = create_max_entries(m, ncpus)
        attr.map_flags, attr.map_extra, attr.numa_node = m.map_flags, m.map_extra, m.numa_node
        attr.map_name = m.name.encode()[:15]
        if inner_fd >= 0:
            attr.inner_map_fd = inner_fd
        if btf_fd >= 0 and m.btf_value_type_id and m.type not in _NO_BTF_KV:
            attr.btf_fd = btf_fd
            attr.btf_key_type_id, attr.btf_value_type_id = m.btf_key_type_id, \
                m.btf_value_type_id
        ret = sys.bpf(BpfCmd.BPF_MAP_CREATE, attr)
        if ret < 0 and attr.btf_fd:
            attr.btf_fd = attr.btf_key_type_id = attr.btf_value_type_id = 0
            ret = sys.bpf(BpfCmd.BPF_MAP_CREATE, attr)
        return _check(ret, f"map '{m.name}': failed to create")
    finally:
        if inner_fd >= 0:
            sys.close(inner_fd)


def _update(sys: Syscalls, fd: int, key: bytes, value: bytes) -> None:
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value, max(len(value), 1))
    attr = bpf_attr_map_elem()
    attr.map_fd, attr.key = fd, ctypes.addressof(kbuf)
    ctypes.memmove(ctypes.addressof(attr) + 16, ctypes.byref(ctypes.c_uint64(
        ctypes.addressof(vbuf))), 8)
    _check(sys.bpf(BpfCmd.BPF_MAP_UPDATE_ELEM, attr), "failed to set map contents")


def _freeze(sys: Syscalls, fd: int, name: str) -> None:
    attr = bpf_attr_map_elem()
    attr.map_fd = fd
    _check(sys.bpf(BpfCmd.BPF_MAP_FREEZE, attr), f"map '{name}': failed to freeze")


def _load_prog(sys: Syscalls, obj: BpfObjectSpec, p: ProgramSpec, btf_fd: int,
               log_level: int) -> int:
    if p.type == 0:
        raise BpfError(errno.EINVAL, f"prog '{p.name}': missing BPF prog type, check ELF "
                       f"section name '{p.sec_name}'")
    assert p.final_insns is not None
    code = encode(p.final_insns)
    cbuf = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(obj.license.encode())
    finfo = b"".join(r.insn_off.to_bytes(4, "little") + r.type_id.to_bytes(4, "little")
                     for r in p.func_info)
    linfo = b"".join(b"".join(x.to_bytes(4, "little") for x in r) for r in p.line_info)
    fbuf = ctypes.create_string_buffer(finfo, max(len(finfo), 1))
    lbuf = ctypes.create_string_buffer(linfo, max(len(linfo), 1))
    attr = bpf_attr_prog_load()
    attr.prog_type, attr.insn_cnt = p.type, len(p.final_insns)
    attr.insns, attr.license = ctypes.addressof(cbuf), ctypes.addressof(lic)
    attr.kern_version = obj.kern_version
    attr.prog_flags = p.prog_flags
    attr.prog_name = p.name.encode()[:15]
    attr.expected_attach_type = p.expected_attach_type
    attr.attach_btf_id = p.attach_btf_id
    if btf_fd >= 0 and p.func_info:
        attr.prog_btf_fd = btf_fd
        attr.func_info_rec_size, attr.func_info = 8, ctypes.addressof(fbuf)
        attr.func_info_cnt = len(p.func_info)
        if p.line_info:
            attr.line_info_rec_size, attr.line_info = 16, ctypes.addressof(lbuf)
            attr.line_info_cnt = len(p.line_info)
    logbuf = None
    level = p.log_level or log_level
    if level:
        logbuf = ctypes.create_string_buffer(LOG_BUF_SIZE)
        attr.log_level, attr.log_size, attr.log_buf = level, len(logbuf), \
            ctypes.addressof(logbuf)
    ret = sys.bpf(BpfCmd.BPF_PROG_LOAD, attr)
    if ret < 0 and logbuf is None:
        # libbpf retries with a log buffer so the error can be explained
        logbuf = ctypes.create_string_buffer(LOG_BUF_SIZE)
        attr.log_level, attr.log_size, attr.log_buf = 1, len(logbuf), ctypes.addressof(logbuf)
        ret = sys.bpf(BpfCmd.BPF_PROG_LOAD, attr)
    if ret < 0:
        log = logbuf.value.decode(errors="replace") if logbuf is not None else ""
        raise BpfError(-ret, f"prog '{p.name}': BPF program load failed: "
                       f"{os.strerror(-ret)}", log)
    return ret


def _init_slots(sys: Syscalls, obj: BpfObjectSpec, lo: LoadedObject) -> None:
    for i, m in enumerate(obj.maps):
        for slot, name in enumerate(m.init_slots):
            if name is None:
                continue
            if m.type == BpfMapType.BPF_MAP_TYPE_PROG_ARRAY:
                fd = lo.prog_fds.get(name, -1)
            else:
                fd = lo.map_fds[obj.maps.index(obj.map(name))]
            if fd < 0:
                continue
            _update(sys, lo.map_fds[i], slot.to_bytes(4, "little"), fd.to_bytes(4, "little"))
