"""``struct bpf_map``: what every map has, whatever its type.

A map is a kernel object with a native header (so programs hold a real address for it,
as the kernel's ``struct bpf_map *`` in an ``ld_imm64`` after fixup) and type-specific
storage in native memory laid out once for the Python API, the interpreter and the JIT
(DESIGN decision 4). The header layout below is read by native code; extend it only in
the type-specific area.

Header (``MAP_HEADER_SIZE`` bytes, little-endian)::

    0   u32 map_type        4   u32 key_size       8   u32 value_size
    12  u32 max_entries     16  u32 map_flags      20  u32 elem_size (value stride)
    24  u64 data            (array: first value; other types: their main table)
    32  u64 aux             (type-specific pointer)
    40  u32 id              44  u32 reserved
    48..63 type-specific
    64  u32 map_type        68  u32 key_size       72  u32 value_size
    76  u32 max_entries     80  u64 map_extra      88  u32 map_flags      92  u32 id
    96..127 type-specific

Bytes 64..95 repeat the attributes where Linux 6.18's ``struct bpf_map`` (x86-64) keeps
them, so a program reading a map pointer as that struct (``check_ptr_to_map_access``,
CO-RE-relocated against the kernel's BTF) reads the map's values.
"""

from __future__ import annotations

import struct
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pybpf.runtime.cpus import num_possible_cpus
from pybpf.runtime.memory import REGISTRY, MemoryRegistry, Region
from pybpf.uapi import BPF_F_RDONLY, BPF_F_WRONLY

if TYPE_CHECKING:
    from pybpf.maps.ops import MapOps

MAP_HEADER_SIZE = 128
_HEADER = struct.Struct("<IIIIIIQQII")
_KERNEL_LAYOUT = struct.Struct("<IIIIQII")  # at KERNEL_LAYOUT_OFF: struct bpf_map's fields
KERNEL_LAYOUT_OFF = 64
BPF_OBJ_NAME_LEN = 16


@dataclass
class MapAttr:
    """The ``BPF_MAP_CREATE`` attributes after the syscall layer has resolved fds."""

    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    map_extra: int = 0
    map_name: bytes = b""
    numa_node: int = 0
    map_ifindex: int = 0
    inner_map: BpfMap | None = None  # resolved from inner_map_fd
    inner_map_fd: int = 0
    btf: Any = None  # resolved from btf_fd
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    btf_vmlinux_value_type_id: int = 0
    nr_cpus: int = field(default_factory=num_possible_cpus)
    mem: MemoryRegistry = REGISTRY
    kernel: Any = None


_BY_ADDR: weakref.WeakValueDictionary[int, BpfMap] = weakref.WeakValueDictionary()

_cpu = threading.local()


_overrides = 0  # threads inside an on_cpu() block; 0 lets fast paths skip the lookup


def sys_cpu() -> int:
    """The CPU ``bpf()`` commands of this thread run on (default 0).

    The kernel serves a syscall on whatever CPU the calling task runs on, and that is
    observable: LRU maps pop free elements from that CPU's local list, hash maps swap in
    that CPU's spare element. pybpf makes it an explicit, per-thread setting
    (:func:`on_cpu`) so runs are deterministic; differential tests pin the live process
    to CPU 0 to match the default.
    """
    return getattr(_cpu, "cpu", 0)


class on_cpu:
    """``with on_cpu(1): ...`` — syscall-side map operations of this thread run on CPU 1."""

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self.saved = 0

    def __enter__(self) -> on_cpu:
        global _overrides
        self.saved = sys_cpu()
        _cpu.cpu = self.cpu
        _overrides += 1
        return self

    def __exit__(self, *exc: object) -> None:
        global _overrides
        _cpu.cpu = self.saved
        _overrides -= 1


def sys_cpu_fast() -> int:
    """:func:`sys_cpu`, skipping the thread-local lookup while nobody uses :class:`on_cpu`."""
    return getattr(_cpu, "cpu", 0) if _overrides else 0


class BpfMap:
    """Common state of every map. Type modules subclass it for their storage."""

    def __init__(self, ops: MapOps, attr: MapAttr) -> None:
        self.ops = ops
        self.map_type = attr.map_type
        self.key_size = attr.key_size
        self.value_size = attr.value_size
        self.max_entries = attr.max_entries
        # bpf_map_flags_retain_permanent: BPF_F_RDONLY/WRONLY say what the creating fd may
        # do (its f_mode), not what the map is; map info reports them cleared
        self.create_flags = attr.map_flags
        self.map_flags = attr.map_flags & ~(BPF_F_RDONLY | BPF_F_WRONLY)
        self.map_extra = attr.map_extra
        self.name = attr.map_name
        self.nr_cpus = attr.nr_cpus
        self._spin_lock_off = -1  # offset of a struct bpf_spin_lock in the value (BTF), or -1
        self.has_record = False  # value has special BTF fields (spin lock, timer, kptr…)
        # the kernel's btf_record as the verifier reads it: (kind, offset, size) per field
        self.btf_record: list[tuple[str, int, int]] = []
        self._btf_value_type_id = 0
        self.btf = attr.btf
        self.btf_key_type_id = attr.btf_key_type_id
        self.btf_value_type_id = attr.btf_value_type_id  # parses the value's btf_record
        self.btf_vmlinux_value_type_id = attr.btf_vmlinux_value_type_id
        self.map_ifindex = attr.map_ifindex
        self.mem = attr.mem
        self.kernel = attr.kernel
        self.id = 0  # assigned by the kernel instance's map IDR
        self.frozen = False
        self.lock = threading.RLock()  # serialises updates from Python and programs
        # Fields the kernel keeps in struct bpf_map beyond the attributes:
        # bpf_map_write_active(): syscall writers in flight and writable mmaps (FREEZE → EBUSY)
        self.writecnt = 0
        self.inner_map_meta: BpfMap | None = attr.inner_map  # map-in-map template
        self.fd_resolver: Any = None  # fd -> object, for fd-valued maps (see maps.fdmaps)
        self.owner_prog_type: int | None = None  # prog_array: first program type stored
        # Hot-path closures a map type may provide (bytes in, bytes/errno out), used by
        # the Python API and the syscall side: fast_lookup(key) -> bytes | None,
        # fast_update(key, value) -> errno (BPF_ANY), fast_delete(key) -> errno.
        self.fast_lookup: Any = None
        self.fast_update: Any = None
        self.fast_delete: Any = None
        self.header: Region = self.mem.alloc(MAP_HEADER_SIZE, f"map header {attr.map_name!r}",
                                             writable=False, owner=self)
        self.write_header()
        _BY_ADDR[self.header.start] = self

    @property
    def btf_value_type_id(self) -> int:
        return self._btf_value_type_id

    @btf_value_type_id.setter
    def btf_value_type_id(self, tid: int) -> None:
        """Setting the value type (MAP_CREATE with BTF) parses its special fields.

        This is ``map_check_btf``'s ``btf_parse_fields`` step: the syscall layer assigns
        ``bmap.btf`` then ``bmap.btf_value_type_id``, ``Map.create(btf=..., btf_value_type_id=
        ...)`` passes both in the attr; either way the record is found here and errors
        (E2BIG, EINVAL, EOPNOTSUPP) fail the creation.
        """
        from pybpf.maps.btf_record import (
            SIZEOF_BPF_RES_SPIN_LOCK,
            SIZEOF_BPF_TASK_WORK,
            SIZEOF_BPF_TIMER,
            SIZEOF_BPF_WQ,
            apply_btf_record,
            check_kptr_record,
            find_res_spin_lock,
            find_task_work,
            find_timer,
            find_wq,
            record_parse_error,
        )

        if self.btf is not None and record_parse_error(self.btf, tid) is not None:
            # btf_parse_fields failed: Linux creates the map without any record
            self._btf_value_type_id = tid
            self.btf_record = []
            self.graph_fields, self.kptr_types, self.kptr_fields = {}, {}, {}
            return
        off = apply_btf_record(self, self.btf, tid)
        timer_off = find_timer(self.btf, tid) if self.btf is not None else -1
        self._btf_value_type_id = tid
        self.btf_record = [("spin_lock", off, 4)] if off >= 0 else []
        if timer_off >= 0:
            self.btf_record.append(("timer", timer_off, SIZEOF_BPF_TIMER))
        tw_off = find_task_work(self, self.btf, tid) if self.btf is not None else -1
        if tw_off >= 0:
            self.btf_record.append(("task_work", tw_off, SIZEOF_BPF_TASK_WORK))
        wq_off = find_wq(self, self.btf, tid) if self.btf is not None else -1
        if wq_off >= 0:
            self.btf_record.append(("wq", wq_off, SIZEOF_BPF_WQ))
        res_off = find_res_spin_lock(self, self.btf, tid, off) if self.btf is not None else -1
        if res_off >= 0:
            self.btf_record.append(("res_spin_lock", res_off, SIZEOF_BPF_RES_SPIN_LOCK))
        from pybpf.maps.btf_record import check_graph_record

        self.graph_fields = check_graph_record(self, tid, off)  # bpf_list_head / bpf_rb_root
        self.btf_record.extend((f.kind[4:], f.offset, f.size) for f in self.graph_fields.values())
        kptrs = check_kptr_record(self, tid) if self.btf is not None else []  # btf_parse_kptr
        self.btf_record.extend((k.kind, k.offset, 8) for k in kptrs)
        self.kptr_types = {k.offset: k.name for k in kptrs}  # the verifier's pointees
        self.kptr_fields = {k.offset: k for k in kptrs}  # + their ids in the map's BTF
        if off >= 0 or self._spin_lock_off >= 0:
            self.has_record = off >= 0
            if hasattr(self, "header"):
                self.spin_lock_off = off  # rebuilds the fast paths
            else:
                self._spin_lock_off = off
        if kptrs or self.graph_fields:
            from pybpf.maps.btf_record import install_kptr_field_ops
            install_kptr_field_ops(self)  # copy_map_value skips them, updates free them

    @property
    def spin_lock_off(self) -> int:
        """Offset of the ``struct bpf_spin_lock`` in values (from BTF), or -1."""
        return self._spin_lock_off

    @spin_lock_off.setter
    def spin_lock_off(self, off: int) -> None:
        self._spin_lock_off = off
        self.make_fast_paths()  # fast paths assume values without a lock word

    def make_fast_paths(self) -> None:
        """(Re)build ``fast_lookup``/``fast_update``/``fast_delete`` (types that have them)."""

    @property
    def addr(self) -> int:
        """The address programs hold for this map (``struct bpf_map *``)."""
        return self.header.start

    def write_header(self, elem_size: int = 0, data: int = 0, aux: int = 0) -> None:
        _HEADER.pack_into(self.header.mv, 0, self.map_type, self.key_size, self.value_size,
                          self.max_entries, self.map_flags, elem_size, data, aux, self.id, 0)
        _KERNEL_LAYOUT.pack_into(self.header.mv, KERNEL_LAYOUT_OFF, self.map_type, self.key_size,
                                 self.value_size, self.max_entries, self.map_extra, self.map_flags,
                                 self.id)

    @property
    def value_stride(self) -> int:
        """``round_up(value_size, 8)``: the per-CPU and array element stride."""
        return (self.value_size + 7) & ~7

    def freeze(self) -> None:
        """``BPF_MAP_FREEZE`` on the map side: further syscall writes fail with EPERM."""
        import errno as _errno

        from pybpf.errors import BpfError
        from pybpf.uapi import BPF_MAP_TYPE_STRUCT_OPS

        if self.map_type == BPF_MAP_TYPE_STRUCT_OPS or self.has_record:
            raise BpfError(524, "map cannot be frozen (ENOTSUPP)")
        with self.lock:
            if self.writecnt or self.frozen:
                raise BpfError(_errno.EBUSY)
            self.frozen = True

    def release_header(self) -> None:
        _BY_ADDR.pop(self.header.start, None)
        self.mem.remove(self.header)


def map_from_addr(addr: int) -> BpfMap | None:
    """The map whose header is at ``addr`` (what helpers receive in r1), or ``None``."""
    return _BY_ADDR.get(addr)
