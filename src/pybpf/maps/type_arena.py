"""``BPF_MAP_TYPE_ARENA`` (``kernel/bpf/arena.c``): memory shared by programs and user space.

An arena is up to 4 GiB of pages (``max_entries`` is the page count) seen at two places:

- user space maps the map fd (``mmap``) at ``user_vm_start`` (``map_extra``, or chosen at
  the first mmap), and arena pointers a program hands out are such user addresses;
- programs reach it through the kernel window: ``kern_vm_start`` plus the low 32 bits of
  the user address (``addr_space_cast`` keeps those, ``BPF_PROBE_MEM32`` accesses add the
  window base — the JIT keeps it in ``r12``).

pybpf reserves the kernel window as real address space (4 GiB + guard, ``PROT_NONE``,
no memory committed) and keeps the arena's pages in a memfd: page ``pgoff`` lives at file
offset ``pgoff * PAGE_SIZE``. ``bpf_arena_alloc_pages`` maps those file pages into the
window; the user mapping is a shared mapping of the same memfd, so both sides see the same
bytes (DESIGN decision 3, real memory and real addresses). A page user space touches
becomes allocated, as the kernel's ``arena_vm_fault`` allocates it: pybpf notices the
populated memfd page (``SEEK_DATA``) when a program faults on it or allocates.

Programs never fault on the arena: an access to a page that is not allocated reads 0 and
drops stores (the kernel's exception table for ``PROBE_MEM32``) — :meth:`ArenaMap.probe_load`
and :meth:`ArenaMap.probe_store` do exactly that for the interpreter.

Not modelled: ``BPF_F_SEGV_ON_FAULT`` (user faults on unallocated pages never SIGSEGV
here, they allocate), NUMA node ids other than ``NUMA_NO_NODE`` and 0.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from pybpf.errors import BpfError
from pybpf.maps.base import BaseMapOps, NoProgElemOps
from pybpf.maps.common import PAGE_SIZE
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.ops import register_map_ops
from pybpf.uapi import BPF_F_MMAPABLE, BPF_F_NO_USER_CONV, BPF_F_SEGV_ON_FAULT, BPF_MAP_TYPE_ARENA

if TYPE_CHECKING:
    from collections.abc import Iterator

SZ_4G = 1 << 32
#: ``GUARD_SZ``: room for the 16-bit signed ``off`` of an access on either side of the window
GUARD_SZ = 1 << 16
KERN_VM_SZ = SZ_4G + GUARD_SZ
ARENA_CREATE_FLAG_MASK = BPF_F_MMAPABLE | BPF_F_SEGV_ON_FAULT | BPF_F_NO_USER_CONV
NUMA_NO_NODE = -1
SIZEOF_BPF_ARENA = 464  # struct bpf_arena on the reference kernel (mem_usage)

_PROT_NONE, _PROT_RW = 0, mmap.PROT_READ | mmap.PROT_WRITE
_MAP_SHARED, _MAP_PRIVATE, _MAP_FIXED, _MAP_ANON = 0x01, 0x02, 0x10, 0x20
_MAP_NORESERVE, _MAP_FIXED_NOREPLACE = 0x4000, 0x100000
_MAP_FAILED = ctypes.c_void_p(-1).value
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
_ADD, _OR, _AND, _XCHG, _CMPXCHG = 0x00, 0x40, 0x50, 0xE1, 0xF1  # BPF_ATOMIC ops (imm)


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    return libc


_LIBC = _libc()


def _mmap(addr: int, length: int, prot: int, flags: int, fd: int = -1, off: int = 0) -> int:
    got = _LIBC.mmap(addr or None, length, prot, flags, fd, off)
    if got is None or got == _MAP_FAILED:
        raise BpfError(ctypes.get_errno() or errno.ENOMEM, "mmap failed")
    return int(got)


def clear_lo32(v: int) -> int:
    return v & ~0xFFFFFFFF


class ArenaMap(BpfMap):
    """The pages, the kernel window and the allocation state of one arena."""

    def __init__(self, ops: BaseMapOps, attr: MapAttr) -> None:
        super().__init__(ops, attr)
        vm_range = attr.max_entries * PAGE_SIZE
        self.user_vm_start = attr.map_extra
        self.user_vm_end = attr.map_extra + vm_range if attr.map_extra else 0
        self.mmap_fd = os.memfd_create("pybpf-arena", os.MFD_CLOEXEC)
        self.mmap_size = vm_range
        self.mmap_fd_close = weakref.finalize(self, os.close, self.mmap_fd)
        # reserve the kernel window: address space only, never committed
        base = _mmap(0, KERN_VM_SZ, _PROT_NONE, _MAP_PRIVATE | _MAP_ANON | _MAP_NORESERVE)
        self._kern_base = base
        self._kern_unmap = weakref.finalize(self, _LIBC.munmap, base, KERN_VM_SZ)
        self.kern_vm_start = base + GUARD_SZ // 2
        self.allocated: set[int] = set()  # pgoffs in use (the kernel's range tree, inverted)
        self.reserved: set[int] = set()  # pgoffs taken without a page (reserve_pages)
        self.alloc_lock = threading.Lock()
        self.user_views: weakref.WeakSet[ArenaMmap] = weakref.WeakSet()
        self._jit_table: Any = None  # jit_table()
        self.write_header(data=self.kern_vm_start)

    # -- geometry -------------------------------------------------------------------------
    @property
    def page_cnt_max(self) -> int:
        if not self.user_vm_start:
            return 0
        return (self.user_vm_end - self.user_vm_start) // PAGE_SIZE

    def direct_value_addr(self, off: int) -> int:
        """The user address of byte ``off`` of the arena (``arena_map_direct_value_addr``
        plus ``off``): what an ``__arena`` global's ``ld_imm64`` loads."""
        return self.user_vm_start + off

    def direct_value_errno(self, off: int) -> int:
        """``arena_map_direct_value_addr`` refuses offsets past the user range."""
        return errno.ERANGE if off > self.user_vm_end - self.user_vm_start else 0

    def compute_pgoff(self, uaddr: int) -> int:
        return ((uaddr - self.user_vm_start) & 0xFFFFFFFF) // PAGE_SIZE

    def kaddr_of(self, pgoff: int) -> int:
        """Where page ``pgoff`` appears in the kernel window."""
        return self.kern_vm_start + ((self.user_vm_start + pgoff * PAGE_SIZE) & 0xFFFFFFFF)

    def pgoff_of_window(self, off32: int) -> int | None:
        """The page behind window offset ``off32`` (0 .. 4 GiB), or ``None``."""
        pgoff = ((off32 - self.user_vm_start) & 0xFFFFFFFF) // PAGE_SIZE
        return pgoff if pgoff < self.page_cnt_max else None

    def _window_page(self, pgoff: int) -> int:
        """The kernel-window page (window offset >> 12) page ``pgoff`` appears at."""
        return ((self.user_vm_start + pgoff * PAGE_SIZE) & 0xFFFFFFFF) // PAGE_SIZE

    def jit_table(self) -> int:
        """The address of the resident-page table JIT code checks before an access: one
        byte per window page, 1 where an allocated page is mapped (made on first use)."""
        if self._jit_table is None:
            table = (ctypes.c_uint8 * (SZ_4G // PAGE_SIZE))()
            with self.alloc_lock:
                for pgoff in self.allocated:
                    table[self._window_page(pgoff)] = 1
                self._jit_table = table
        return ctypes.addressof(self._jit_table)

    # -- pages ----------------------------------------------------------------------------
    def _ensure_size(self, size: int) -> None:
        if os.fstat(self.mmap_fd).st_size < size:
            os.ftruncate(self.mmap_fd, size)

    def _map_kern(self, pgoff: int, cnt: int = 1) -> None:
        self._ensure_size((pgoff + cnt) * PAGE_SIZE)
        for i in range(pgoff, pgoff + cnt):
            _mmap(self.kaddr_of(i), PAGE_SIZE, _PROT_RW, _MAP_SHARED | _MAP_FIXED,
                  self.mmap_fd, i * PAGE_SIZE)
            if self._jit_table is not None:
                self._jit_table[self._window_page(i)] = 1

    def _unmap_kern(self, pgoff: int) -> None:
        if self._jit_table is not None:
            self._jit_table[self._window_page(pgoff)] = 0
        _mmap(self.kaddr_of(pgoff), PAGE_SIZE, _PROT_NONE,
              _MAP_PRIVATE | _MAP_ANON | _MAP_FIXED | _MAP_NORESERVE)
        # zap the user mappings too: the next user access sees a fresh zero page
        _LIBC.fallocate(self.mmap_fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE,
                        pgoff * PAGE_SIZE, PAGE_SIZE)

    def _populated(self) -> Iterator[int]:
        """pgoffs whose memfd page exists (user space touched it)."""
        fd, end = self.mmap_fd, os.fstat(self.mmap_fd).st_size
        pos = 0
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                return
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            yield from range(data // PAGE_SIZE, (hole + PAGE_SIZE - 1) // PAGE_SIZE)
            pos = hole

    def sync_user_faults(self) -> None:
        """``arena_vm_fault``: pages user space touched are allocated and in the window."""
        if not self.user_vm_start:
            return
        for pgoff in self._populated():
            if pgoff not in self.allocated and pgoff < self.page_cnt_max:
                self.reserved.discard(pgoff)  # a user fault backs a reserved page too
                self.allocated.add(pgoff)
                self._map_kern(pgoff)

    def alloc_pages(self, uaddr: int, page_cnt: int, node_id: int, flags: int) -> int:
        """``bpf_arena_alloc_pages``: the user address of ``page_cnt`` fresh zeroed pages
        (at ``uaddr`` when given), or 0."""
        node_id = node_id - (1 << 32) if node_id >> 31 else node_id
        maxcnt = self.page_cnt_max
        if flags or not page_cnt or page_cnt > maxcnt or node_id not in (NUMA_NO_NODE, 0):
            return 0
        with self.alloc_lock:
            self.sync_user_faults()
            if uaddr:
                if uaddr % PAGE_SIZE:
                    return 0
                pgoff = self.compute_pgoff(uaddr)
                if pgoff > maxcnt - page_cnt:
                    return 0
                if any(p in self.allocated or p in self.reserved
                       for p in range(pgoff, pgoff + page_cnt)):
                    return 0
            else:
                found = self._find_free(page_cnt, maxcnt)
                if found is None:
                    return 0
                pgoff = found
            for p in range(pgoff, pgoff + page_cnt):
                self.allocated.add(p)
                self._ensure_size((p + 1) * PAGE_SIZE)
                _LIBC.fallocate(self.mmap_fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE,
                                p * PAGE_SIZE, PAGE_SIZE)  # zeroed, as fresh pages are
            self._map_kern(pgoff, page_cnt)
        uaddr32 = (self.user_vm_start + pgoff * PAGE_SIZE) & 0xFFFFFFFF
        return clear_lo32(self.user_vm_start) + uaddr32

    def reserve_pages(self, uaddr: int, page_cnt: int) -> int:
        """``bpf_arena_reserve_pages``: take ``page_cnt`` pages from ``uaddr`` out of the
        allocator without backing them (accesses there fault); 0, -EINVAL past the arena,
        -EBUSY where a page is already allocated or reserved. A misaligned ``uaddr`` is
        ignored (0), as in the kernel."""
        if uaddr % PAGE_SIZE:
            return 0
        pgoff = self.compute_pgoff(uaddr)
        if pgoff + page_cnt > self.page_cnt_max:
            return -errno.EINVAL
        with self.alloc_lock:
            self.sync_user_faults()
            pages = range(pgoff, pgoff + page_cnt)
            if any(p in self.allocated or p in self.reserved for p in pages):
                return -errno.EBUSY
            self.reserved.update(pages)
        return 0

    def _find_free(self, cnt: int, maxcnt: int) -> int | None:
        """First fit, lowest address (``range_tree_find``)."""
        run = 0
        for p in range(maxcnt):
            run = 0 if p in self.allocated or p in self.reserved else run + 1
            if run == cnt:
                return p - cnt + 1
        return None

    def free_pages(self, uaddr: int, page_cnt: int) -> None:
        """``bpf_arena_free_pages``: give back the pages from ``uaddr`` (low 32 bits count)."""
        if not uaddr or not page_cnt or not self.user_vm_start:
            return
        uaddr = (uaddr & 0xFFFFFFFF) & ~(PAGE_SIZE - 1)
        full = clear_lo32(self.user_vm_start) + uaddr
        end = min(self.user_vm_end, full + page_cnt * PAGE_SIZE)
        if full >= end:
            return
        pgoff = self.compute_pgoff(uaddr)
        with self.alloc_lock:
            for p in range(pgoff, pgoff + (end - full) // PAGE_SIZE):
                self.reserved.discard(p)  # free in the range tree again
                if p in self.allocated:
                    self.allocated.discard(p)
                    self._unmap_kern(p)

    # -- program accesses (BPF_PROBE_MEM32) -----------------------------------------------
    def _resident(self, off: int, size: int) -> int | None:
        """The native address of window offset ``off`` when ``size`` bytes there are on
        an allocated page, else ``None`` (a fault the exception table absorbs)."""
        if off < 0 or off + size > SZ_4G:
            return None
        pgoff = self.pgoff_of_window(off)
        if pgoff is None or (off + size - 1) // PAGE_SIZE != off // PAGE_SIZE:
            return None
        if pgoff not in self.allocated:
            self.sync_user_faults()
            if pgoff not in self.allocated:
                return None
        return self.kern_vm_start + off

    def probe_load(self, off: int, size: int) -> int:
        addr = self._resident(off, size)
        if addr is None:
            return 0
        return int.from_bytes(ctypes.string_at(addr, size), "little")

    def probe_store(self, off: int, size: int, value: int) -> None:
        addr = self._resident(off, size)
        if addr is not None:
            ctypes.memmove(addr, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"), size)

    def probe_atomic(self, off: int, size: int, op: int, src: int, r0: int) -> int:
        """``BPF_PROBE_ATOMIC``: the old value (for ``cmpxchg``, compared with ``r0``).
        On a page that is not there nothing happens: the register that would receive the
        old value keeps its own (``r0`` for ``cmpxchg``, else ``src``), as on Linux."""
        addr = self._resident(off, size)
        if addr is None:
            return r0 if op == _CMPXCHG else src
        mask = (1 << (8 * size)) - 1
        with self.alloc_lock:
            old = int.from_bytes(ctypes.string_at(addr, size), "little")
            base = op & ~1
            if op == _CMPXCHG:
                new = src if old == r0 & mask else old
            elif op == _XCHG:
                new = src
            elif base == _ADD:
                new = old + src
            elif base == _OR:
                new = old | src
            elif base == _AND:
                new = old & src
            else:
                new = old ^ src
            ctypes.memmove(addr, (new & mask).to_bytes(size, "little"), size)
        return old

    # -- user space (arena_map_mmap) ------------------------------------------------------
    def mmap(self, writable: bool = True, length: int | None = None, offset: int = 0,
             addr: int = 0) -> ArenaMmap:
        """Map the arena into this process, as ``mmap(map_fd)`` does: at ``user_vm_start``
        (``map_extra``), or — the first time, without ``map_extra`` — somewhere that does
        not cross a 4 GiB boundary, which then becomes ``user_vm_start``."""
        if offset:
            raise BpfError(errno.EINVAL, "arena mappings start at page offset 0")
        with self.lock:
            if length is None:
                length = self.user_vm_end - self.user_vm_start if self.user_vm_start \
                    else self.max_entries * PAGE_SIZE
            if length <= 0 or length > SZ_4G:
                raise BpfError(errno.EINVAL, "bad arena mapping length")
            if self.user_vm_start:
                if length > self.user_vm_end - self.user_vm_start:
                    raise BpfError(errno.E2BIG, "longer than the arena")
                if length != self.user_vm_end - self.user_vm_start:
                    raise BpfError(errno.EINVAL, "the arena is mapped whole")
                if addr and addr != self.user_vm_start:
                    raise BpfError(errno.EINVAL, "arena maps at user_vm_start")
                start = self.user_vm_start
            else:
                start = _pick_user_range(length)
            self._ensure_size(length)
            prot = _PROT_RW if writable else mmap.PROT_READ
            got = _mmap(start, length, prot, _MAP_SHARED | _MAP_FIXED_NOREPLACE, self.mmap_fd, 0)
            if got != start:
                _LIBC.munmap(got, length)
                raise BpfError(errno.ENOMEM, "user_vm_start is taken in this process")
            if not self.user_vm_start:
                self.user_vm_start, self.user_vm_end = start, start + length
            view = ArenaMmap(self, start, length)
            self.user_views.add(view)
            return view


def _pick_user_range(length: int) -> int:
    """``arena_get_unmapped_area``: a free range of ``length`` not crossing 4 GiB."""
    probe = _mmap(0, length * 2, _PROT_NONE, _MAP_PRIVATE | _MAP_ANON | _MAP_NORESERVE)
    _LIBC.munmap(probe, length * 2)
    if probe >> 32 != (probe + length - 1) >> 32:
        probe = (probe + SZ_4G - 1) & ~(SZ_4G - 1)
    return probe


class ArenaMmap:
    """A user-space mapping of an arena at its user address: ``addr``, ``len()``, byte
    indexing and slicing, ``mv`` (a memoryview), ``read``/``write`` at offsets."""

    def __init__(self, arena: ArenaMap, addr: int, length: int) -> None:
        self.arena = arena
        self.addr = addr
        self.length = length
        self._buf = (ctypes.c_char * length).from_address(addr)
        self.mv: memoryview | None = memoryview(self._buf).cast("B")
        self._unmap = weakref.finalize(self, _LIBC.munmap, addr, length)

    def _view(self) -> memoryview:
        if self.mv is None:
            raise ValueError("arena mapping is closed")
        return self.mv

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: Any) -> Any:
        return self._view()[key] if isinstance(key, int) else bytes(self._view()[key])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._view()[key] = value

    def read(self, off: int, size: int) -> bytes:
        return bytes(self._view()[off:off + size])

    def write(self, off: int, data: bytes) -> None:
        self._view()[off:off + len(data)] = data

    def close(self) -> None:
        if self.mv is not None:
            self.mv.release()
            self.mv = None
            self._unmap()

    def __enter__(self) -> ArenaMmap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArenaOps(NoProgElemOps):
    map_type = BPF_MAP_TYPE_ARENA

    def map_alloc_check(self, attr: MapAttr) -> None:
        if (attr.key_size or attr.value_size or not attr.max_entries
                or not attr.map_flags & BPF_F_MMAPABLE
                or attr.map_flags & ~ARENA_CREATE_FLAG_MASK):
            raise BpfError(errno.EINVAL)
        if attr.map_extra % PAGE_SIZE:
            raise BpfError(errno.EINVAL, "user_vm_start must be page aligned")
        vm_range = attr.max_entries * PAGE_SIZE
        if vm_range > SZ_4G:
            raise BpfError(errno.E2BIG)
        if attr.map_extra >> 32 != (attr.map_extra + vm_range - 1) >> 32:
            raise BpfError(errno.ERANGE, "the user range may not cross a 4 GiB boundary")

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        return ArenaMap(self, attr)

    def mem_usage(self, bmap: BpfMap) -> int:
        return SIZEOF_BPF_ARENA

    def map_mmap(self, bmap: BpfMap, writable: bool = True, length: int | None = None,
                 offset: int = 0) -> ArenaMmap:
        """``arena_map_mmap`` (reached through :func:`pybpf.maps.mmap_view.map_mmap`)."""
        assert isinstance(bmap, ArenaMap)
        return bmap.mmap(writable, length, offset)

    # no element access, from either side (arena_map_lookup_elem & co.)
    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        raise BpfError(errno.EINVAL)

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        raise BpfError(errno.EOPNOTSUPP)

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        raise BpfError(errno.EOPNOTSUPP)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        raise BpfError(errno.EOPNOTSUPP)


register_map_ops(ArenaOps())


# -- the interpreter's side (runtime/interpreter.py) ---------------------------------------

def prog_arena(prog: Any) -> ArenaMap | None:
    """The arena a running program uses (``prog->aux->arena``): its arena map."""
    if prog is None:
        return None
    aux = getattr(prog, "aux", None)
    if isinstance(aux, dict) and "arena" in aux:
        return aux["arena"]
    found = None
    for km in getattr(prog, "used_maps", ()):
        bmap = getattr(km, "bmap", km)
        if isinstance(bmap, ArenaMap):
            found = bmap
            break
    if isinstance(aux, dict):
        aux["arena"] = found
    return found


def run_arena_load(ctx: Any, off: int, size: int) -> int:
    """A ``BPF_PROBE_MEM32`` load at window offset ``off``: 0 where nothing is mapped."""
    arena = prog_arena(ctx.prog)
    return arena.probe_load(off, size) if arena is not None else 0


def run_arena_store(ctx: Any, off: int, size: int, value: int) -> None:
    """A ``BPF_PROBE_MEM32`` store: dropped where nothing is mapped."""
    arena = prog_arena(ctx.prog)
    if arena is not None:
        arena.probe_store(off, size, value)


def run_arena_cast_user(ctx: Any, value: int) -> int:
    """``addr_space_cast(rX, 1, 0)``: a kernel-window offset back to a user pointer."""
    lo = value & 0xFFFFFFFF
    if not lo:
        return 0
    arena = prog_arena(ctx.prog)
    return (clear_lo32(arena.user_vm_start) if arena is not None else 0) | lo


def run_arena_atomic(ctx: Any, off: int, size: int, op: int, src: int, r0: int) -> int:
    """A ``BPF_PROBE_ATOMIC`` read-modify-write: the old value (see ``probe_atomic``)."""
    arena = prog_arena(ctx.prog)
    if arena is None:
        return r0 if op == _CMPXCHG else src
    return arena.probe_atomic(off, size, op, src, r0)
