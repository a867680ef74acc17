"""Typed ksyms: ``ld_imm64`` with ``BPF_PSEUDO_BTF_ID`` (Linux 6.18 ``check_pseudo_btf_id``).

libbpf turns ``extern const struct rq runqueues __ksym;`` into ``r1 = <BTF id of VAR
runqueues>`` (``src_reg`` 3; ``insn[1].imm`` a module BTF fd or 0). Before the main walk
the kernel looks the VAR (or FUNC) up in vmlinux BTF, finds the symbol's address with
``kallsyms_lookup_name`` and writes it into the instruction; the register then is

- ``PTR_TO_BTF_ID | MEM_PERCPU`` (``percpu_ptr_<type>``) for a variable of the
  ``.data..percpu`` section — usable only through ``bpf_per_cpu_ptr`` /
  ``bpf_this_cpu_ptr`` (``RET_PTR_TO_MEM_OR_BTF_ID``: a read-only ``mem`` of the type's
  size for scalars, a ``ptr_<struct>`` for structs);
- ``PTR_TO_MEM | MEM_RDONLY`` of the variable's size for other non-struct variables,
  ``PTR_TO_BTF_ID`` for struct ones;
- ``PTR_TO_MEM | MEM_RDONLY`` of size 0 for a FUNC.

pybpf has no kernel variables. Each instance gives every variable a program loads a
zero-filled, read-only native region of the type's size (:class:`KsymTable`); per-CPU
variables get one copy per possible CPU, ``PCPU_UNIT_STRIDE`` apart (pybpf's per-CPU model,
:mod:`pybpf.runtime.cpus`), so ``bpf_per_cpu_ptr``/``bpf_this_cpu_ptr`` and the per-CPU
``mov`` find them. Programs read zeros where Linux would show live kernel state. FUNC
symbols get an address outside any region (size-0 memory is never dereferenced).

``kallsyms_lookup_name`` finds data symbols only in kernels built with
``CONFIG_KALLSYMS_ALL``; without it every VAR ksym fails with ``ENOENT`` ("ldimm64 failed to
find the address for kernel symbol"). pybpf models a kernel with it
(``KsymTable.kallsyms_all``); the differential tests turn it off to mirror a host kernel
built without it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybpf.btf.raw import BtfDatasec, BtfFunc, BtfVar
from pybpf.runtime.cpus import PCPU_UNIT_STRIDE, num_possible_cpus, this_cpu_off
from pybpf.runtime.memory import REGISTRY, Region
from pybpf.verifier.regs import MEM_ALLOC, MEM_PERCPU, MEM_RCU, MEM_RDONLY, RegType

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier
    from pybpf.verifier.regs import Reg

BPF_PSEUDO_BTF_ID = 3
PERCPU_SECTION = ".data..percpu"
#: where FUNC ksyms "are": kernel-text-like addresses no region covers
FUNC_KSYM_BASE = 0xFFFF_FFFF_8100_0000
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)
#: bytes of per-CPU ksym space per CPU of one instance (one lazy reservation)
PERCPU_AREA = 1 << 24


@dataclass(frozen=True)
class BtfVarInfo:
    """``aux->btf_var``: what the register of a typed ksym load becomes."""

    reg_type: int
    btf: Any
    btf_id: int
    mem_size: int
    addr: int


class KsymTable:
    """The kernel variables of one pybpf instance that programs have referenced."""

    def __init__(self, kernel: Any = None) -> None:
        self.kallsyms_all = True  # CONFIG_KALLSYMS_ALL: data symbols are in kallsyms
        self._lock = threading.Lock()
        self._addrs: dict[str, int] = {}
        self._regions: list[Region] = []
        self._pcpu: tuple[Any, Any, int] | None = None  # (mmap, ctypes array, base)
        self._pcpu_used = 0

    def lookup(self, name: str, *, func: bool, size: int, percpu: bool, btf_id: int) -> int:
        """``kallsyms_lookup_name``: the symbol's address, allocated on first use; 0 when
        the symbol is not in kallsyms."""
        if func:
            return FUNC_KSYM_BASE + 16 * btf_id
        if not self.kallsyms_all:
            return 0
        with self._lock:
            addr = self._addrs.get(name)
            if addr is None:
                addr = self._alloc_percpu(name, size) if percpu else self._alloc(name, size)
                self._addrs[name] = addr
            return addr

    def _alloc(self, name: str, size: int) -> int:
        region = REGISTRY.alloc(max(size, 1), f"ksym {name}", writable=False, owner=self)
        self._regions.append(region)
        return region.start

    def _alloc_percpu(self, name: str, size: int) -> int:
        """CPU 0's copy; CPU ``c``'s lies ``this_cpu_off(c)`` after it."""
        size = max(size, 1)
        if self._pcpu is None:
            total = this_cpu_off(num_possible_cpus() - 1) + PERCPU_AREA
            buf = mmap.mmap(-1, total, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
            cbuf = (ctypes.c_char * total).from_buffer(buf)
            self._pcpu = (buf, cbuf, ctypes.addressof(cbuf))
        buf, cbuf, base = self._pcpu
        off = (self._pcpu_used + 63) & ~63
        if off + size > PERCPU_AREA:
            return 0  # out of per-CPU ksym space: not found, as an unknown symbol
        self._pcpu_used = off + size
        raw = memoryview(cbuf).cast("B")
        for cpu in range(num_possible_cpus()):
            start = this_cpu_off(cpu) + off
            region = Region(base + start, size, f"ksym {name} cpu{cpu}", raw[start:start + size],
                            True, False, (buf, cbuf), self)
            REGISTRY.add(region)
            self._regions.append(region)
        return base + off


def ksym_table(kernel: Any) -> KsymTable:
    """The instance's :class:`KsymTable` (a module-wide one for verifier runs without one)."""
    if kernel is None:
        return _DEFAULT
    table: KsymTable = kernel.subsystem("_ksyms", KsymTable)
    return table


_DEFAULT = KsymTable()


def _percpu_var_ids(btf: Any) -> frozenset[int]:
    cached = getattr(btf, "_pybpf_percpu_vars", None)
    if cached is not None:
        return frozenset(cached)
    ids: set[int] = set()
    for t in btf.types:
        if isinstance(t, BtfDatasec) and t.name == PERCPU_SECTION:
            ids.update(vs.type for vs in t.vars)
            break
    with contextlib.suppress(AttributeError):
        btf._pybpf_percpu_vars = frozenset(ids)
    return frozenset(ids)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def check_pseudo_btf_id(v: Verifier, idx: int) -> None:
    """Resolve the typed ksym at ``idx`` (``resolve_pseudo_ldimm64``): errors as 6.18,
    else ``v.aux[idx]["btf_var"]``."""
    from pybpf.verifier.btf_access import skip_modifiers, vmlinux_btf

    ins, nxt = v.insns[idx], v.insns[idx + 1]
    if nxt.imm:  # pybpf has no module BTFs (nor takes a program's BTF fd here)
        v.fail(errno.EINVAL, "invalid module BTF object FD specified.\n")
    btf = vmlinux_btf(v)
    if btf is None:
        v.fail(errno.EINVAL, "kernel is missing BTF, make sure CONFIG_DEBUG_INFO_BTF=y is "
                             "specified in Kconfig.\n")
    assert btf is not None
    tid = ins.imm & 0xFFFFFFFF
    if tid >= len(btf.types):
        v.fail(errno.ENOENT, f"ldimm64 insn specifies invalid btf_id {_s32(tid)}.\n")
    t = btf.types[tid]
    if not isinstance(t, (BtfVar, BtfFunc)):  # (the void type 0 included)
        v.fail(errno.EINVAL, f"pseudo btf_id {_s32(tid)} in ldimm64 isn't KIND_VAR or KIND_FUNC\n")
    table = ksym_table(getattr(v.inp, "kernel", None))
    if isinstance(t, BtfFunc):
        addr = table.lookup(t.name, func=True, size=0, percpu=False, btf_id=tid)
        _set_addr(v, idx, BtfVarInfo(RegType.PTR_TO_MEM | MEM_RDONLY, None, 0, 0, addr))
        return
    assert isinstance(t, BtfVar)
    missing = f"ldimm64 failed to find the address for kernel symbol '{t.name}'.\n"
    if not table.kallsyms_all:  # kallsyms_lookup_name comes first
        v.fail(errno.ENOENT, missing)
    percpu = tid in _percpu_var_ids(btf)
    base, _ = skip_modifiers(btf, t.type)
    size = 0
    if percpu or base.kind.name != "STRUCT":
        try:
            size = int(btf.resolve_size(t.type))
        except (ValueError, KeyError, IndexError):
            if not percpu:
                v.fail(errno.EINVAL, f"ldimm64 unable to resolve the size of type '{base.name}': "
                                     f"{-errno.EINVAL}\n")
    else:
        size = int(getattr(base, "size", 0))
    addr = table.lookup(t.name, func=False, size=size, percpu=percpu, btf_id=tid)
    if not addr:
        v.fail(errno.ENOENT, missing)
    if percpu:
        info = BtfVarInfo(RegType.PTR_TO_BTF_ID | MEM_PERCPU, btf, t.type, 0, addr)
    elif base.kind.name != "STRUCT":
        info = BtfVarInfo(RegType.PTR_TO_MEM | MEM_RDONLY, None, 0, size, addr)
    else:
        info = BtfVarInfo(RegType.PTR_TO_BTF_ID, btf, t.type, 0, addr)
    _set_addr(v, idx, info)


def _set_addr(v: Verifier, idx: int, info: BtfVarInfo) -> None:
    """The kernel writes the address into the instruction at once (the log prints it);
    ``src_reg`` stays ``BPF_PSEUDO_BTF_ID`` until the verifier is done."""
    v.aux[idx]["btf_var"] = info
    v.insns[idx] = v.insns[idx]._replace(imm=_s32(info.addr))
    v.insns[idx + 1] = v.insns[idx + 1]._replace(imm=_s32(info.addr >> 32))


def mark_ksym_reg(v: Verifier, d: Reg, idx: int) -> None:
    """``check_ld_imm`` for ``BPF_PSEUDO_BTF_ID``: the register ``aux->btf_var`` says."""
    from pybpf.verifier.btf_access import btf_type_name

    info: BtfVarInfo | None = v.aux[idx].get("btf_var")
    if info is None:
        v.fail(errno.EFAULT, "bpf verifier is confused\n")
    assert info is not None
    d.type = info.reg_type
    if d.base == RegType.PTR_TO_MEM:
        d.mem_size = info.mem_size
    else:
        d.btf, d.btf_id = info.btf, info.btf_id
        d.btf_name = btf_type_name(info.btf, info.btf_id)


def resolve_ksym_addresses(v: Verifier, p: Any) -> None:
    """``convert_pseudo_ld_imm64`` for typed ksyms: the symbol's address, ``src_reg`` 0."""
    for idx, aux in enumerate(p.aux):
        info = aux.get("btf_var") if isinstance(aux, dict) else None
        if info is None or idx + 1 >= len(p.insns):
            continue
        ins = p.insns[idx]
        if ins.code != 0x18 or ins.src != BPF_PSEUDO_BTF_ID:
            continue
        p.insns[idx] = ins._replace(src=0, imm=_s32(info.addr))
        p.insns[idx + 1] = p.insns[idx + 1]._replace(imm=_s32(info.addr >> 32))


__all__ = [
    "PCPU_UNIT_STRIDE",
    "BtfVarInfo",
    "KsymTable",
    "check_pseudo_btf_id",
    "ksym_table",
    "mark_ksym_reg",
    "resolve_ksym_addresses",
]


def _register() -> None:
    from pybpf.verifier.fixups import register_fixup_pass
    register_fixup_pass(5, resolve_ksym_addresses)


_register()


def record_percpu_btf_arg(v: Verifier, fn: Any, meta: dict[str, Any]) -> None:
    """``check_func_arg`` for ``ARG_PTR_TO_PERCPU_BTF_ID``: the pointee type becomes the
    helper's return type (``meta->ret_btf``/``ret_btf_id``)."""
    from pybpf.helpers.proto import ArgType

    for i, at in enumerate(fn.arg_types):
        if at & 0xFF == int(ArgType.ARG_PTR_TO_PERCPU_BTF_ID):
            reg = v.regs[i + 1]
            if not reg.btf_id:
                v.fail(errno.EACCES, f"Helper has invalid btf_id in R{i + 1}\n")
            meta["ret_btf"], meta["ret_btf_id"] = reg.btf, reg.btf_id
            # a bpf_percpu_obj_new object (loaded from a map's percpu kptr, MEM_RCU): the
            # register holds the address of the per-CPU pointer, which a fixup loads
            if reg.type & MEM_RCU:
                meta["ret_alloc_percpu"] = True
                v.aux[v.insn_idx]["call_with_percpu_alloc_ptr"] = True


def mark_ret_mem_or_btf_id(v: Verifier, r0: Reg, ret_flags: int, meta: dict[str, Any]) -> None:
    """``RET_PTR_TO_MEM_OR_BTF_ID`` (``bpf_per_cpu_ptr``, ``bpf_this_cpu_ptr``): read-only
    memory of the type's size for scalars, else a pointer to the struct (``MEM_RDONLY``
    dropped; ``bpf_percpu_obj_new`` objects give ``MEM_ALLOC | MEM_RCU``)."""
    from pybpf.verifier.btf_access import btf_type_name, skip_modifiers

    btf: Any = meta.get("ret_btf")
    btf_id: int = meta.get("ret_btf_id", 0)
    t, _ = skip_modifiers(btf, btf_id)
    if t.kind.name != "STRUCT":
        try:
            size = int(btf.resolve_size(btf_id))
        except (ValueError, KeyError, IndexError):
            v.fail(errno.EINVAL, f"unable to resolve the size of type '{t.name}': {-errno.EINVAL}\n")
        r0.type = RegType.PTR_TO_MEM | ret_flags
        r0.mem_size = size
        return
    if meta.get("ret_alloc_percpu"):
        r0.type = RegType.PTR_TO_BTF_ID | MEM_ALLOC | MEM_RCU
    else:
        r0.type = RegType.PTR_TO_BTF_ID | (ret_flags & ~MEM_RDONLY)
    r0.btf, r0.btf_id = btf, btf_id
    r0.btf_name = btf_type_name(btf, btf_id)
