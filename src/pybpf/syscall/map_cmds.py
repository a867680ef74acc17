"""The map commands: MAP_CREATE, the element commands, FREEZE and the batch commands.

This module is the *plumbing* of ``kernel/bpf/syscall.c``: attr checks, fd → map, the
fd's access mode (``BPF_F_RDONLY``/``WRONLY`` fds, frozen maps), user pointers for keys
and values, capability rules of MAP_CREATE, IDs and fds. What an operation *does* to a
map is its type's ``MapOps`` (``pybpf.maps``), reached through ``find_map_ops``.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.core.map import KMap
from pybpf.core.prog import bpf_obj_name_cpy
from pybpf.errors import BpfError
from pybpf.kernel import Cap
from pybpf.maps.core import MapAttr
from pybpf.maps.ops import find_map_ops
from pybpf.syscall.attr import OFF_BATCH_COUNT
from pybpf.syscall.dispatch import ENOTSUPP, Call, command
from pybpf.syscall.objects import (
    bpf_get_file_flag,
    btf_get_by_fd,
    can_read,
    can_write,
    fd_resolver,
    fdget,
    map_get,
    map_new_fd,
)
from pybpf.syscall.uaccess import UserFault, copy_from_user, copy_to_user
from pybpf.uapi import BpfCmd, BpfMapType

if TYPE_CHECKING:
    from pybpf.maps.core import BpfMap

BPF_F_LOCK = 4
BPF_F_NUMA_NODE = 1 << 2
BPF_F_TOKEN_FD = 1 << 16
NUMA_NO_NODE = -1
SHA256_DIGEST_SIZE = 32

T = BpfMapType
#: Map types any caller may create (subject to ``unprivileged_bpf_disabled``).
UNPRIVILEGED_MAP_TYPES = frozenset({
    T.BPF_MAP_TYPE_ARRAY, T.BPF_MAP_TYPE_PERCPU_ARRAY, T.BPF_MAP_TYPE_PROG_ARRAY,
    T.BPF_MAP_TYPE_PERF_EVENT_ARRAY, T.BPF_MAP_TYPE_CGROUP_ARRAY,
    T.BPF_MAP_TYPE_ARRAY_OF_MAPS, T.BPF_MAP_TYPE_HASH, T.BPF_MAP_TYPE_PERCPU_HASH,
    T.BPF_MAP_TYPE_HASH_OF_MAPS, T.BPF_MAP_TYPE_RINGBUF, T.BPF_MAP_TYPE_USER_RINGBUF,
    T.BPF_MAP_TYPE_CGROUP_STORAGE, T.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
})
#: Map types that need CAP_NET_ADMIN (or CAP_SYS_ADMIN); every other type needs CAP_BPF.
NET_ADMIN_MAP_TYPES = frozenset({
    T.BPF_MAP_TYPE_SOCKMAP, T.BPF_MAP_TYPE_SOCKHASH, T.BPF_MAP_TYPE_DEVMAP,
    T.BPF_MAP_TYPE_DEVMAP_HASH, T.BPF_MAP_TYPE_XSKMAP,
})


def _numa_nodes_online() -> set[int]:
    try:
        text = open("/sys/devices/system/node/online").read().strip()  # noqa: SIM115
    except OSError:
        return {0}
    nodes: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        nodes.update(range(int(lo), int(hi or lo) + 1))
    return nodes or {0}


def token_get(call: Call, fd: int) -> None:
    """``bpf_token_get_from_fd``: pybpf has no BPF tokens, so any fd is the wrong kind."""
    fdget(call.task, fd)  # EBADF when not open
    raise BpfError(errno.EINVAL, f"fd {fd} is not a BPF token")


def _ops(bmap: BpfMap) -> Any:
    """The map's ops as the concrete type modules implement them (wider than the Protocol:
    ``sys_lookup`` takes the value for bloom filters, keyless maps take ``None`` keys)."""
    return bmap.ops


def value_size_of(bmap: BpfMap) -> int:
    fn = getattr(bmap.ops, "sys_value_size", None)
    return int(fn(bmap)) if callable(fn) else int(bmap.value_size)


# --------------------------------------------------------------------------- MAP_CREATE
@command(BpfCmd.BPF_MAP_CREATE)
def map_create(call: Call) -> int:
    call.check_attr()
    a = call.attr
    token_flag = bool(a.map_flags & BPF_F_TOKEN_FD)
    map_flags = a.map_flags & ~BPF_F_TOKEN_FD
    if a.btf_vmlinux_value_type_id:
        if a.map_type != T.BPF_MAP_TYPE_STRUCT_OPS or a.btf_key_type_id or a.btf_value_type_id:
            raise BpfError(errno.EINVAL, "btf_vmlinux_value_type_id is for struct_ops only")
    elif a.btf_key_type_id and not a.btf_value_type_id:
        raise BpfError(errno.EINVAL, "btf_key_type_id without btf_value_type_id")
    if a.map_type not in (T.BPF_MAP_TYPE_BLOOM_FILTER, T.BPF_MAP_TYPE_ARENA) and a.map_extra:
        raise BpfError(errno.EINVAL, "map_extra is for bloom filters and arenas")
    f_flags = bpf_get_file_flag(map_flags)
    numa_node = a.numa_node if map_flags & BPF_F_NUMA_NODE else NUMA_NO_NODE
    if numa_node != NUMA_NO_NODE and numa_node not in _numa_nodes_online():
        raise BpfError(errno.EINVAL, f"NUMA node {numa_node} not online")
    ops = find_map_ops(a.map_type)
    if ops is None:
        raise BpfError(errno.EINVAL, f"map type {a.map_type} not supported")
    mattr = MapAttr(map_type=a.map_type, key_size=a.key_size, value_size=a.value_size,
                    max_entries=a.max_entries, map_flags=map_flags, map_extra=a.map_extra,
                    map_name=bytes(a.map_name), numa_node=a.numa_node,
                    map_ifindex=a.map_ifindex, inner_map_fd=a.inner_map_fd,
                    btf_key_type_id=a.btf_key_type_id, btf_value_type_id=a.btf_value_type_id,
                    btf_vmlinux_value_type_id=a.btf_vmlinux_value_type_id,
                    kernel=call.kernel)
    # Inner maps of map-in-map types are resolved by their map_alloc_check from this.
    mattr.inner_map = _inner_map(call, a)
    ops.map_alloc_check(mattr)
    if token_flag:
        token_get(call, a.map_token_fd)
    cred = call.cred
    if call.kernel.sysctl["unprivileged_bpf_disabled"] and not cred.bpf_capable():
        raise BpfError(errno.EPERM, "unprivileged BPF is disabled")
    if a.map_type in NET_ADMIN_MAP_TYPES:
        if not cred.bpf_ns_capable(Cap.CAP_NET_ADMIN):
            raise BpfError(errno.EPERM, "map type needs CAP_NET_ADMIN")
    elif a.map_type not in UNPRIVILEGED_MAP_TYPES and not cred.bpf_capable():
        raise BpfError(errno.EPERM, "map type needs CAP_BPF")
    if a.map_ifindex:
        # Offloaded maps: CAP_SYS_ADMIN, ARRAY/HASH only, and a netdev with ndo_bpf —
        # pybpf has no network devices, so the device lookup fails.
        if not cred.capable(Cap.CAP_SYS_ADMIN):
            raise BpfError(errno.EPERM, "offloaded maps need CAP_SYS_ADMIN")
        raise BpfError(errno.EINVAL, f"no offload-capable device {a.map_ifindex}")
    bmap = ops.map_alloc(mattr)
    kmap = KMap(call.kernel, bmap)
    try:
        name = bpf_obj_name_cpy(bytes(a.map_name))
        if name is None:
            raise BpfError(errno.EINVAL, "invalid map name")
        bmap.name = name
        if a.btf_key_type_id or a.btf_value_type_id or a.btf_vmlinux_value_type_id:
            btf = btf_get_by_fd(call.task, a.btf_fd)
            if btf.kernel_btf:
                btf.put()
                raise BpfError(errno.EACCES, "map BTF must not be kernel BTF")
            kmap.btf = btf
            bmap.btf = btf
            if a.btf_value_type_id:
                _map_check_btf(kmap, a.btf_key_type_id, a.btf_value_type_id)
            bmap.btf_key_type_id = a.btf_key_type_id
            bmap.btf_value_type_id = a.btf_value_type_id
            bmap.btf_vmlinux_value_type_id = a.btf_vmlinux_value_type_id
        if a.excl_prog_hash:
            if a.excl_prog_hash_size != SHA256_DIGEST_SIZE:
                raise BpfError(errno.EINVAL, "excl_prog_hash_size must be 32")
            kmap.excl_prog_sha = copy_from_user(a.excl_prog_hash, SHA256_DIGEST_SIZE)
        elif a.excl_prog_hash_size:
            raise BpfError(errno.EINVAL, "excl_prog_hash_size without excl_prog_hash")
        call.kernel.security.check("bpf_map_create", call.task, kmap, a)
    except BpfError:
        kmap.refcnt = 0
        kmap._free()
        raise
    kmap.set_id(call.kernel.map_idr.alloc_cyclic(kmap))
    call.kernel._track_map(kmap)
    try:
        return map_new_fd(call.task, kmap, f_flags)
    except BpfError:
        kmap.put_with_uref()
        raise


def _inner_map(call: Call, a: Any) -> BpfMap | None:
    if a.map_type not in (T.BPF_MAP_TYPE_ARRAY_OF_MAPS, T.BPF_MAP_TYPE_HASH_OF_MAPS):
        return None
    file = call.task.fds.get(a.inner_map_fd)
    obj = getattr(file, "obj", None)
    return obj.bmap if isinstance(obj, KMap) else None


def _map_check_btf(kmap: KMap, key_id: int, value_id: int) -> None:
    """``map_check_btf``: key/value types must exist and have the map's sizes."""
    assert kmap.btf is not None
    try:
        btf = kmap.btf.parsed()
    except (ValueError, OSError) as exc:
        raise BpfError(errno.EINVAL, f"map BTF unreadable: {exc}") from None
    bmap = kmap.bmap
    check = getattr(bmap.ops, "map_check_btf", None)

    def size_of(tid: int) -> int | None:
        try:
            return int(btf.resolve_size(tid))
        except (ValueError, KeyError, IndexError):
            return None

    if key_id:
        if size_of(key_id) != bmap.key_size:
            raise BpfError(errno.EINVAL, "BTF key type size mismatch")
    elif check is None and not getattr(bmap.ops, "allows_no_btf_key", False):
        raise BpfError(errno.EINVAL, "BTF key type required")
    if size_of(value_id) != bmap.value_size:
        raise BpfError(errno.EINVAL, "BTF value type size mismatch")
    if callable(check):
        check(bmap, btf, key_id, value_id)


# --------------------------------------------------------------------------- elements
def copy_key(ukey: int, key_size: int) -> bytes | None:
    """``__bpf_copy_key``: the key bytes; a pointer for a keyless map is ``EINVAL``."""
    if key_size:
        return copy_from_user(ukey, key_size)
    if ukey:
        raise BpfError(errno.EINVAL, "key given for a map without keys")
    return None


def _spin_lock_check(bmap: BpfMap, flags: int) -> None:
    if flags & BPF_F_LOCK and getattr(bmap, "spin_lock_off", -1) < 0:
        raise BpfError(errno.EINVAL, "BPF_F_LOCK on a value without bpf_spin_lock")


class _WriteActive:
    """``bpf_map_write_active_inc/dec`` around a syscall write (FREEZE sees it: EBUSY)."""

    def __init__(self, bmap: BpfMap) -> None:
        self.bmap = bmap

    def __enter__(self) -> None:
        self.bmap.writecnt = getattr(self.bmap, "writecnt", 0) + 1

    def __exit__(self, *exc: object) -> None:
        self.bmap.writecnt -= 1


@command(BpfCmd.BPF_MAP_LOOKUP_ELEM)
def map_lookup_elem(call: Call) -> int:
    call.check_attr()
    a = call.attr
    if a.flags & ~BPF_F_LOCK:
        raise BpfError(errno.EINVAL, "unknown lookup flags")
    kmap, file = map_get(call.task, a.map_fd)
    if not can_read(kmap, file):
        raise BpfError(errno.EPERM, "map fd is not readable")
    bmap = kmap.bmap
    _spin_lock_check(bmap, a.flags)
    key = copy_key(a.key, bmap.key_size)
    vsize = value_size_of(bmap)
    if getattr(bmap.ops, "lookup_reads_value", False):
        value_in = copy_from_user(a.value, vsize)
        _ops(bmap).sys_lookup(bmap, key, a.flags, value_in)
        return 0
    value = _ops(bmap).sys_lookup(bmap, key, a.flags)
    copy_to_user(a.value, value[:vsize])
    return 0


@command(BpfCmd.BPF_MAP_UPDATE_ELEM)
def map_update_elem(call: Call) -> int:
    call.check_attr()
    a = call.attr
    kmap, file = map_get(call.task, a.map_fd)
    bmap = kmap.bmap
    with _WriteActive(bmap):
        if not can_write(kmap, file):
            raise BpfError(errno.EPERM, "map fd is not writable")
        _spin_lock_check(bmap, a.flags)
        key = copy_key(a.key, bmap.key_size)
        value = copy_from_user(a.value, value_size_of(bmap))
        bmap.fd_resolver = fd_resolver(call.task)
        _ops(bmap).sys_update(bmap, key, value, a.flags)
    return 0


@command(BpfCmd.BPF_MAP_DELETE_ELEM)
def map_delete_elem(call: Call) -> int:
    call.check_attr()
    a = call.attr
    kmap, file = map_get(call.task, a.map_fd)
    bmap = kmap.bmap
    with _WriteActive(bmap):
        if not can_write(kmap, file):
            raise BpfError(errno.EPERM, "map fd is not writable")
        key = copy_key(a.key, bmap.key_size)
        _ops(bmap).sys_delete(bmap, key)
    return 0


@command(BpfCmd.BPF_MAP_GET_NEXT_KEY)
def map_get_next_key(call: Call) -> int:
    call.check_attr()
    a = call.attr
    kmap, file = map_get(call.task, a.map_fd)
    if not can_read(kmap, file):
        raise BpfError(errno.EPERM, "map fd is not readable")
    bmap = kmap.bmap
    key = copy_key(a.key, bmap.key_size) if a.key else None
    nxt = _ops(bmap).sys_get_next_key(bmap, key)
    copy_to_user(a.next_key, nxt[:bmap.key_size])
    return 0


@command(BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM)
def map_lookup_and_delete_elem(call: Call) -> int:
    call.check_attr()
    a = call.attr
    if a.flags & ~BPF_F_LOCK:
        raise BpfError(errno.EINVAL, "unknown flags")
    kmap, file = map_get(call.task, a.map_fd)
    bmap = kmap.bmap
    with _WriteActive(bmap):
        if not can_read(kmap, file) or not can_write(kmap, file):
            raise BpfError(errno.EPERM, "map fd must be readable and writable")
        if a.flags and bmap.map_type in (T.BPF_MAP_TYPE_QUEUE, T.BPF_MAP_TYPE_STACK):
            raise BpfError(errno.EINVAL, "flags not allowed for queue/stack")
        _spin_lock_check(bmap, a.flags)
        key = copy_key(a.key, bmap.key_size)
        fn = getattr(bmap.ops, "sys_lookup_and_delete", None)
        if not callable(fn):
            raise BpfError(ENOTSUPP)
        value = fn(bmap, key, a.flags)
        copy_to_user(a.value, value[:value_size_of(bmap)])
    return 0


@command(BpfCmd.BPF_MAP_FREEZE)
def map_freeze(call: Call) -> int:
    call.check_attr()
    kmap, file = map_get(call.task, call.attr.map_fd)
    bmap = kmap.bmap
    if bmap.map_type == T.BPF_MAP_TYPE_STRUCT_OPS or getattr(bmap, "has_record", False):
        raise BpfError(ENOTSUPP, "map cannot be frozen")
    if not can_write(kmap, file):
        raise BpfError(errno.EPERM, "map fd is not writable")
    freeze = getattr(bmap, "freeze", None)
    if callable(freeze):
        freeze()
        return 0
    if getattr(bmap, "writecnt", 0) or bmap.frozen:
        raise BpfError(errno.EBUSY)
    bmap.frozen = True
    return 0


# --------------------------------------------------------------------------- batch
def _copy_elems(addr: int, elem: int, count: int) -> bytes:
    """Up to ``count`` elements from user memory; stops at the first unreadable one."""
    if count == 0 or elem == 0:
        return b""
    try:
        return copy_from_user(addr, elem * count)
    except UserFault:
        out = bytearray()
        for i in range(count):
            try:
                out += copy_from_user(addr + i * elem, elem)
            except UserFault:
                break
        return bytes(out)


@command(BpfCmd.BPF_MAP_LOOKUP_BATCH, BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_BATCH,
         BpfCmd.BPF_MAP_UPDATE_BATCH, BpfCmd.BPF_MAP_DELETE_BATCH)
def map_do_batch(call: Call) -> int:
    call.check_attr()
    b = call.attr.batch
    cmd = call.cmd
    has_read = cmd in (BpfCmd.BPF_MAP_LOOKUP_BATCH, BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_BATCH)
    has_write = cmd != BpfCmd.BPF_MAP_LOOKUP_BATCH
    kmap, file = map_get(call.task, b.map_fd)
    bmap = kmap.bmap
    ops = bmap.ops
    if has_write:
        bmap.writecnt = getattr(bmap, "writecnt", 0) + 1
    try:
        if has_read and not can_read(kmap, file):
            raise BpfError(errno.EPERM, "map fd is not readable")
        if has_write and not can_write(kmap, file):
            raise BpfError(errno.EPERM, "map fd is not writable")
        ks = bmap.key_size
        vs = value_size_of(bmap)
        count = b.count
        if has_read:
            name = "sys_lookup_batch" if cmd == BpfCmd.BPF_MAP_LOOKUP_BATCH \
                else "sys_lookup_and_delete_batch"
            fn = getattr(ops, name, None)
            if not callable(fn):
                raise BpfError(ENOTSUPP)
            in_batch = None
            if count and b.in_batch:
                tok = getattr(ops, "batch_token_size", None)
                in_batch = copy_from_user(b.in_batch, int(tok(bmap)) if callable(tok) else ks)
            res = fn(bmap, in_batch, count, b.elem_flags, b.flags)
        elif cmd == BpfCmd.BPF_MAP_UPDATE_BATCH:
            bmap.fd_resolver = fd_resolver(call.task)
            fn = getattr(ops, "sys_update_batch", None)
            if not callable(fn):
                raise BpfError(ENOTSUPP)
            keys = _copy_elems(b.keys, ks, count)
            values = _copy_elems(b.values, vs, count)
            res = fn(bmap, keys, values, count, b.elem_flags, b.flags)
        else:
            fn = getattr(ops, "sys_delete_batch", None)
            if not callable(fn):
                raise BpfError(ENOTSUPP)
            keys = _copy_elems(b.keys, ks, count)
            res = fn(bmap, keys, count, b.elem_flags, b.flags)
        return _finish_batch(call, b, res, has_read)
    finally:
        if has_write:
            bmap.writecnt -= 1


def _finish_batch(call: Call, b: Any, res: Any, has_read: bool) -> int:
    """Write keys/values, ``count`` and ``out_batch`` back as the kernel does."""
    if not getattr(res, "count_written", True):
        return -res.err if res.err else 0
    call.put_u32(OFF_BATCH_COUNT, 0)
    if has_read and res.count:
        copy_to_user(b.keys, res.keys)
        copy_to_user(b.values, res.values)
    call.put_u32(OFF_BATCH_COUNT, res.count)
    if has_read and res.out_batch is not None and res.count:
        copy_to_user(b.out_batch, res.out_batch)
    return -res.err if res.err else 0
