"""The oracle: a small ctypes client of the real ``bpf()`` system call.

Differential tests run a case here, in the live kernel, and in pybpf, and compare. This
module therefore stays thin and literal: it fills the generated ``bpf_attr_*`` views
(:mod:`pybpf.uapi`), calls ``syscall(__NR_bpf, cmd, &attr, size)`` and hands back what
the kernel returned -- fd or errno, log, retval. It interprets nothing.

Conventions:

* ``sys_bpf`` and the ``*_raw`` helpers never raise for a kernel error; they return the
  errno (0 on success), so tests can compare errnos of bad attributes.
* The convenience helpers (``map_create``, ``map_lookup``, …) raise :class:`OSError`
  (a :class:`pybpf.errors.BpfError` carrying the verifier log where there is one).
* Every fd returned is the caller's to close; :class:`KernelFds` does it for tests.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import functools
import os
import platform
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pybpf.errors import BpfError
from pybpf.uapi import (
    BPF_ADD,
    BPF_ALU64,
    BPF_CALL,
    BPF_DW,
    BPF_EXIT,
    BPF_IMM,
    BPF_JA,
    BPF_JEQ,
    BPF_JMP,
    BPF_K,
    BPF_LD,
    BPF_MEM,
    BPF_MOV,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_ST,
    BPF_STX,
    BPF_W,
    BPF_X,
    BpfCmd,
    BpfFuncId,
    BpfMapType,
    BpfProgType,
    bpf_attr_btf_load,
    bpf_attr_info,
    bpf_attr_map_create,
    bpf_attr_map_elem,
    bpf_attr_obj,
    bpf_attr_prog_load,
    bpf_attr_test,
    bpf_map_info,
    bpf_prog_info,
)

#: ``__NR_bpf`` per architecture (``platform.machine()``).
NR_BPF: dict[str, int] = {
    "x86_64": 321,
    "aarch64": 280,
    "arm64": 280,
    "riscv64": 280,
    "loongarch64": 280,
    "i686": 357,
    "i386": 357,
    "armv7l": 386,
    "ppc64le": 361,
    "ppc64": 361,
    "s390x": 351,
}

#: How often a program load that fails with EAGAIN is retried (as libbpf does).
PROG_LOAD_ATTEMPTS = 5
#: Verifier log buffer used when a helper needs the log to explain a failure.
DEFAULT_LOG_SIZE = 1 << 20

CData = ctypes.Structure | ctypes.Union
Attr = bytes | bytearray | CData

_INSN_SIZE = 8


# --------------------------------------------------------------------------- syscall


@functools.cache
def _syscall() -> Any:
    """libc's ``syscall(2)``, typed; raises OSError where there is no such thing."""
    if not sys.platform.startswith("linux"):
        raise OSError(_errno.ENOSYS, f"bpf() needs Linux, not {sys.platform}")
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.syscall
    fn.restype = ctypes.c_long
    fn.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_ulong]
    return fn


def _nr_bpf() -> int:
    machine = platform.machine()
    if machine not in NR_BPF:
        raise OSError(_errno.ENOSYS, f"__NR_bpf unknown for architecture {machine}")
    return NR_BPF[machine]


def sys_bpf(cmd: int, attr: Attr, size: int | None = None) -> tuple[int, int]:
    """``bpf(cmd, attr, size)`` -> ``(ret, errno)``; errno is 0 on success.

    ``attr`` may be a ctypes view (written back in place, as the kernel writes output
    fields), a ``bytearray`` (likewise) or ``bytes`` (output is lost). ``size``
    defaults to the size of ``attr`` -- pass another to test the kernel's size checks.
    """
    fn, nr = _syscall(), _nr_bpf()
    if isinstance(attr, bytes):
        buf: Any = ctypes.create_string_buffer(attr, max(len(attr), 1))
        length = len(attr)
    elif isinstance(attr, bytearray):
        buf = (ctypes.c_char * max(len(attr), 1)).from_buffer(attr) if attr else \
            ctypes.create_string_buffer(1)
        length = len(attr)
    else:
        buf, length = attr, ctypes.sizeof(attr)
    ret = fn(nr, cmd, ctypes.addressof(buf), length if size is None else size)
    if ret < 0:
        return ret, ctypes.get_errno()
    return ret, 0


def _check(ret: int, err: int, what: str, log: str = "") -> int:
    if err:
        raise BpfError(err, f"{what}: {os.strerror(err)}", log)
    return ret


def close(fd: int) -> None:
    """Close ``fd``; an already-closed fd is not an error (tests close defensively)."""
    try:
        os.close(fd)
    except OSError as exc:
        if exc.errno != _errno.EBADF:
            raise


# --------------------------------------------------------------------------- availability


@functools.cache
def available() -> tuple[bool, str]:
    """Whether this process can create maps and load programs, and if not, why.

    Tried once per process: an ARRAY map and a two-instruction socket filter.
    """
    try:
        fd, err = map_create_raw(BpfMapType.BPF_MAP_TYPE_ARRAY, 4, 8, 1)
        if err:
            return False, f"BPF_MAP_CREATE fails with {_errname(err)}; needs root or CAP_BPF"
        close(fd)
        res = prog_load(BpfProgType.BPF_PROG_TYPE_SOCKET_FILTER,
                        _insn(BPF_ALU64 | BPF_MOV | BPF_K) + _insn(_EXIT))
        if not res.ok:
            return False, f"BPF_PROG_LOAD fails with {_errname(res.errno)}"
        close(res.fd)
    except OSError as exc:  # not Linux, unknown architecture, no libc
        return False, f"no bpf() syscall: {exc.strerror or exc}"
    return True, ""


def _errname(err: int) -> str:
    return f"{_errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


# --------------------------------------------------------------------------- programs


@dataclass
class LoadResult:
    """Outcome of BPF_PROG_LOAD / BPF_BTF_LOAD: ``fd`` is -1 on failure."""

    fd: int
    errno: int
    log: str
    log_true_size: int

    @property
    def ok(self) -> bool:
        return self.fd >= 0


def _log_buffer(log_size: int) -> ctypes.Array[ctypes.c_char] | None:
    return ctypes.create_string_buffer(log_size) if log_size else None


def _addr(buf: Any) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


def _text(buf: ctypes.Array[ctypes.c_char] | None) -> str:
    return buf.value.decode("utf-8", "replace") if buf is not None else ""


def prog_load(prog_type: int, insns: bytes, *, license: str = "GPL", log_level: int = 0,
              log_size: int = 0, prog_flags: int = 0, expected_attach_type: int = 0,
              kern_version: int = 0, prog_name: bytes = b"", attach_btf_id: int = 0,
              attach_prog_fd: int = 0, prog_btf_fd: int = 0, func_info: bytes = b"",
              func_info_rec_size: int = 0, line_info: bytes = b"",
              line_info_rec_size: int = 0,
              fd_array: Sequence[int] | None = None) -> LoadResult:
    """BPF_PROG_LOAD exactly as given; never raises for a kernel error.

    ``log_size`` 0 passes no buffer; otherwise a buffer of that size (the kernel
    insists on ``log_level > 0`` then). EAGAIN is retried like libbpf does.
    """
    if len(insns) % _INSN_SIZE:
        raise ValueError(f"program of {len(insns)} bytes is not whole instructions")
    code = ctypes.create_string_buffer(insns, max(len(insns), 1))
    lic = ctypes.create_string_buffer(license.encode())
    log = _log_buffer(log_size)
    finfo = ctypes.create_string_buffer(func_info, len(func_info)) if func_info else None
    linfo = ctypes.create_string_buffer(line_info, len(line_info)) if line_info else None
    fds = (ctypes.c_int32 * len(fd_array))(*fd_array) if fd_array else None

    attr = bpf_attr_prog_load()
    attr.prog_type = prog_type
    attr.insn_cnt = len(insns) // _INSN_SIZE
    attr.insns = ctypes.addressof(code)
    attr.license = ctypes.addressof(lic)
    attr.log_level, attr.log_size, attr.log_buf = log_level, log_size, _addr(log)
    attr.kern_version, attr.prog_flags = kern_version, prog_flags
    attr.prog_name = prog_name
    attr.expected_attach_type = expected_attach_type
    attr.prog_btf_fd = prog_btf_fd
    attr.func_info_rec_size = func_info_rec_size
    attr.func_info, attr.func_info_cnt = _addr(finfo), _count(func_info, func_info_rec_size)
    attr.line_info_rec_size = line_info_rec_size
    attr.line_info, attr.line_info_cnt = _addr(linfo), _count(line_info, line_info_rec_size)
    attr.attach_btf_id, attr.attach_prog_fd = attach_btf_id, attach_prog_fd
    attr.fd_array = _addr(fds)
    for _ in range(PROG_LOAD_ATTEMPTS):
        ret, err = sys_bpf(BpfCmd.BPF_PROG_LOAD, attr)
        if err != _errno.EAGAIN:
            break
    return LoadResult(ret if not err else -1, err, _text(log), attr.log_true_size)


def _count(records: bytes, rec_size: int) -> int:
    return len(records) // rec_size if rec_size else 0


def btf_load(data: bytes, *, log_level: int = 0, log_size: int = 0) -> LoadResult:
    """BPF_BTF_LOAD of a raw BTF blob; never raises for a kernel error."""
    blob = ctypes.create_string_buffer(data, max(len(data), 1))
    log = _log_buffer(log_size)
    attr = bpf_attr_btf_load()
    attr.btf, attr.btf_size = ctypes.addressof(blob), len(data)
    attr.btf_log_buf, attr.btf_log_size, attr.btf_log_level = _addr(log), log_size, log_level
    ret, err = sys_bpf(BpfCmd.BPF_BTF_LOAD, attr)
    return LoadResult(ret if not err else -1, err, _text(log), attr.btf_log_true_size)


@dataclass
class TestRunResult:
    """Outcome of BPF_PROG_TEST_RUN; ``errno`` 0 on success."""

    __test__ = False  # not a pytest test class, despite the name

    retval: int
    data_out: bytes
    ctx_out: bytes
    duration: int
    errno: int
    data_size_out: int = 0  # as reported by the kernel (may exceed len(data_out))
    ctx_size_out: int = 0


def prog_test_run(prog_fd: int, data_in: bytes = b"", data_size_out: int = 0,
                  ctx_in: bytes = b"", ctx_size_out: int = 0, repeat: int = 1,
                  flags: int = 0, cpu: int = 0) -> TestRunResult:
    """BPF_PROG_TEST_RUN with output buffers of the given sizes; never raises."""
    din = ctypes.create_string_buffer(data_in, len(data_in)) if data_in else None
    dout = ctypes.create_string_buffer(data_size_out) if data_size_out else None
    cin = ctypes.create_string_buffer(ctx_in, len(ctx_in)) if ctx_in else None
    cout = ctypes.create_string_buffer(ctx_size_out) if ctx_size_out else None
    attr = bpf_attr_test()
    attr.prog_fd, attr.repeat, attr.flags, attr.cpu = prog_fd, repeat, flags, cpu
    attr.data_in, attr.data_size_in = _addr(din), len(data_in)
    attr.data_out, attr.data_size_out = _addr(dout), data_size_out
    attr.ctx_in, attr.ctx_size_in = _addr(cin), len(ctx_in)
    attr.ctx_out, attr.ctx_size_out = _addr(cout), ctx_size_out
    _ret, err = sys_bpf(BpfCmd.BPF_PROG_TEST_RUN, attr)
    data = dout.raw[:min(attr.data_size_out, data_size_out)] if dout is not None else b""
    ctx = cout.raw[:min(attr.ctx_size_out, ctx_size_out)] if cout is not None else b""
    return TestRunResult(attr.retval, data, ctx, attr.duration, err,
                         attr.data_size_out, attr.ctx_size_out)


# --------------------------------------------------------------------------- maps


def map_create_raw(map_type: int, key_size: int, value_size: int, max_entries: int,
                   map_flags: int = 0, inner_map_fd: int = 0, map_extra: int = 0,
                   name: bytes = b"", btf_fd: int = 0, btf_key_type_id: int = 0,
                   btf_value_type_id: int = 0) -> tuple[int, int]:
    """BPF_MAP_CREATE -> ``(fd, errno)``; fd is -1 on failure."""
    attr = bpf_attr_map_create()
    attr.map_type, attr.key_size, attr.value_size = map_type, key_size, value_size
    attr.max_entries, attr.map_flags, attr.inner_map_fd = max_entries, map_flags, inner_map_fd
    attr.map_extra, attr.map_name = map_extra, name
    attr.btf_fd, attr.btf_key_type_id = btf_fd, btf_key_type_id
    attr.btf_value_type_id = btf_value_type_id
    ret, err = sys_bpf(BpfCmd.BPF_MAP_CREATE, attr)
    return (ret if not err else -1), err


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int,
               map_flags: int = 0, inner_map_fd: int = 0, map_extra: int = 0,
               name: bytes = b"", btf_fd: int = 0, btf_key_type_id: int = 0,
               btf_value_type_id: int = 0) -> int:
    """BPF_MAP_CREATE -> fd; raises OSError with the kernel's errno."""
    fd, err = map_create_raw(map_type, key_size, value_size, max_entries, map_flags,
                             inner_map_fd, map_extra, name, btf_fd, btf_key_type_id,
                             btf_value_type_id)
    return _check(fd, err, "BPF_MAP_CREATE")


def _elem(cmd: int, fd: int, key: bytes | None, out_size: int = 0, value: bytes = b"",
          flags: int = 0) -> tuple[int, bytes]:
    """One BPF_MAP_*_ELEM command: ``(errno, bytes written to the value/next_key slot)``."""
    kbuf = ctypes.create_string_buffer(key, len(key)) if key else None
    vbuf = ctypes.create_string_buffer(value, len(value)) if value else (
        ctypes.create_string_buffer(out_size) if out_size else None)
    attr = bpf_attr_map_elem()
    attr.map_fd, attr.key, attr.value, attr.flags = fd, _addr(kbuf), _addr(vbuf), flags
    _ret, err = sys_bpf(cmd, attr)
    out = vbuf.raw[:out_size] if (vbuf is not None and out_size and not err) else b""
    return err, out


def map_lookup_raw(fd: int, key: bytes, value_size: int, flags: int = 0) -> tuple[int, bytes]:
    """BPF_MAP_LOOKUP_ELEM -> ``(errno, value)``."""
    return _elem(BpfCmd.BPF_MAP_LOOKUP_ELEM, fd, key, value_size, flags=flags)


def map_lookup(fd: int, key: bytes, value_size: int, flags: int = 0) -> bytes:
    err, value = map_lookup_raw(fd, key, value_size, flags)
    _check(0, err, "BPF_MAP_LOOKUP_ELEM")
    return value


def map_update_raw(fd: int, key: bytes, value: bytes, flags: int = 0) -> int:
    """BPF_MAP_UPDATE_ELEM -> errno."""
    return _elem(BpfCmd.BPF_MAP_UPDATE_ELEM, fd, key, value=value, flags=flags)[0]


def map_update(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    _check(0, map_update_raw(fd, key, value, flags), "BPF_MAP_UPDATE_ELEM")


def map_delete_raw(fd: int, key: bytes) -> int:
    """BPF_MAP_DELETE_ELEM -> errno."""
    return _elem(BpfCmd.BPF_MAP_DELETE_ELEM, fd, key)[0]


def map_delete(fd: int, key: bytes) -> None:
    _check(0, map_delete_raw(fd, key), "BPF_MAP_DELETE_ELEM")


def map_get_next_key_raw(fd: int, key: bytes | None, key_size: int) -> tuple[int, bytes]:
    """BPF_MAP_GET_NEXT_KEY -> ``(errno, next key)``; ``key=None`` asks for the first."""
    return _elem(BpfCmd.BPF_MAP_GET_NEXT_KEY, fd, key, key_size)


def map_get_next_key(fd: int, key: bytes | None, key_size: int) -> bytes:
    """The key after ``key`` (the first if None); ENOENT (OSError) after the last."""
    err, nxt = map_get_next_key_raw(fd, key, key_size)
    _check(0, err, "BPF_MAP_GET_NEXT_KEY")
    return nxt


def map_keys(fd: int, key_size: int) -> Iterator[bytes]:
    """All keys in the kernel's iteration order."""
    key: bytes | None = None
    while True:
        err, key = map_get_next_key_raw(fd, key, key_size)
        if err == _errno.ENOENT:
            return
        _check(0, err, "BPF_MAP_GET_NEXT_KEY")
        yield key


def map_lookup_and_delete_raw(fd: int, key: bytes | None, value_size: int,
                              flags: int = 0) -> tuple[int, bytes]:
    """BPF_MAP_LOOKUP_AND_DELETE_ELEM -> ``(errno, value)`` (key None for queues/stacks)."""
    return _elem(BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM, fd, key, value_size, flags=flags)


def map_lookup_and_delete(fd: int, key: bytes | None, value_size: int,
                          flags: int = 0) -> bytes:
    err, value = map_lookup_and_delete_raw(fd, key, value_size, flags)
    _check(0, err, "BPF_MAP_LOOKUP_AND_DELETE_ELEM")
    return value


def map_freeze_raw(fd: int) -> int:
    """BPF_MAP_FREEZE -> errno."""
    return _elem(BpfCmd.BPF_MAP_FREEZE, fd, None)[0]


def map_freeze(fd: int) -> None:
    _check(0, map_freeze_raw(fd), "BPF_MAP_FREEZE")


# --------------------------------------------------------------------------- map batches
#
# The four BPF_MAP_*_BATCH commands. Buffers are sized by the caller (``count`` elements
# of ``key_size`` / ``value_size`` bytes) and filled with a marker byte, so a test sees
# exactly what the kernel wrote; ``count`` comes back as the kernel left it (it writes
# it even on errors such as ENOENT at the end of a walk).


#: Byte the batch helpers pre-fill output buffers with (what was not written stays so).
BATCH_FILL = 0xA5


@dataclass
class BatchOut:
    """Outcome of a batch command: errno, ``count`` as written back, and the buffers."""

    errno: int
    count: int
    keys: bytes = b""
    values: bytes = b""
    out_batch: bytes = b""


def _batch_attr(fd: int, count: int, elem_flags: int, flags: int) -> Any:
    from pybpf.uapi import bpf_attr_map_batch

    attr = bpf_attr_map_batch()
    attr.map_fd, attr.count, attr.elem_flags, attr.flags = fd, count, elem_flags, flags
    return attr


def _lookup_batch(cmd: int, fd: int, in_batch: bytes | None, count: int, key_size: int,
                  value_size: int, batch_size: int, elem_flags: int, flags: int) -> BatchOut:
    fill = bytes([BATCH_FILL])
    keys = ctypes.create_string_buffer(fill * max(count * key_size, 1))
    values = ctypes.create_string_buffer(fill * max(count * value_size, 1))
    inb = ctypes.create_string_buffer(in_batch, len(in_batch)) if in_batch is not None else None
    outb = ctypes.create_string_buffer(fill * max(batch_size, 1))
    attr = _batch_attr(fd, count, elem_flags, flags)
    attr.in_batch, attr.out_batch = _addr(inb), ctypes.addressof(outb)
    attr.keys, attr.values = ctypes.addressof(keys), ctypes.addressof(values)
    _ret, err = sys_bpf(cmd, attr)
    return BatchOut(err, attr.count, keys.raw[:count * key_size],
                    values.raw[:count * value_size], outb.raw[:batch_size])


def map_lookup_batch_raw(fd: int, in_batch: bytes | None, count: int, key_size: int,
                         value_size: int, batch_size: int = 4, elem_flags: int = 0,
                         flags: int = 0) -> BatchOut:
    """BPF_MAP_LOOKUP_BATCH; ``batch_size`` is the bytes of ``out_batch`` returned
    (4 for hash maps' bucket tokens, ``key_size`` for the generic walk)."""
    return _lookup_batch(BpfCmd.BPF_MAP_LOOKUP_BATCH, fd, in_batch, count, key_size,
                         value_size, batch_size, elem_flags, flags)


def map_lookup_and_delete_batch_raw(fd: int, in_batch: bytes | None, count: int,
                                    key_size: int, value_size: int, batch_size: int = 4,
                                    elem_flags: int = 0, flags: int = 0) -> BatchOut:
    """BPF_MAP_LOOKUP_AND_DELETE_BATCH, as :func:`map_lookup_batch_raw`."""
    return _lookup_batch(BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_BATCH, fd, in_batch, count,
                         key_size, value_size, batch_size, elem_flags, flags)


def map_update_batch_raw(fd: int, keys: bytes, values: bytes, count: int,
                         elem_flags: int = 0, flags: int = 0) -> BatchOut:
    """BPF_MAP_UPDATE_BATCH of ``count`` elements from the given buffers."""
    kbuf = ctypes.create_string_buffer(keys, max(len(keys), 1))
    vbuf = ctypes.create_string_buffer(values, max(len(values), 1))
    attr = _batch_attr(fd, count, elem_flags, flags)
    attr.keys, attr.values = ctypes.addressof(kbuf), ctypes.addressof(vbuf)
    _ret, err = sys_bpf(BpfCmd.BPF_MAP_UPDATE_BATCH, attr)
    return BatchOut(err, attr.count)


def map_delete_batch_raw(fd: int, keys: bytes, count: int, elem_flags: int = 0,
                         flags: int = 0) -> BatchOut:
    """BPF_MAP_DELETE_BATCH of ``count`` keys."""
    kbuf = ctypes.create_string_buffer(keys, max(len(keys), 1))
    attr = _batch_attr(fd, count, elem_flags, flags)
    attr.keys = ctypes.addressof(kbuf)
    _ret, err = sys_bpf(BpfCmd.BPF_MAP_DELETE_BATCH, attr)
    return BatchOut(err, attr.count)


def _batch_check(out: BatchOut, what: str) -> BatchOut:
    if out.errno and out.errno != _errno.ENOENT:
        _check(0, out.errno, what)
    return out


def map_lookup_batch(fd: int, in_batch: bytes | None, count: int, key_size: int,
                     value_size: int, batch_size: int = 4) -> BatchOut:
    """As :func:`map_lookup_batch_raw`; raises OSError for errors other than ENOENT."""
    return _batch_check(map_lookup_batch_raw(fd, in_batch, count, key_size, value_size,
                                             batch_size), "BPF_MAP_LOOKUP_BATCH")


def map_lookup_and_delete_batch(fd: int, in_batch: bytes | None, count: int, key_size: int,
                                value_size: int, batch_size: int = 4) -> BatchOut:
    return _batch_check(map_lookup_and_delete_batch_raw(fd, in_batch, count, key_size,
                                                        value_size, batch_size),
                        "BPF_MAP_LOOKUP_AND_DELETE_BATCH")


def map_update_batch(fd: int, keys: bytes, values: bytes, count: int,
                     elem_flags: int = 0) -> int:
    """BPF_MAP_UPDATE_BATCH; returns the count; raises OSError on any error."""
    out = map_update_batch_raw(fd, keys, values, count, elem_flags)
    _check(0, out.errno, "BPF_MAP_UPDATE_BATCH")
    return out.count


def map_delete_batch(fd: int, keys: bytes, count: int, elem_flags: int = 0) -> int:
    out = map_delete_batch_raw(fd, keys, count, elem_flags)
    _check(0, out.errno, "BPF_MAP_DELETE_BATCH")
    return out.count


# --------------------------------------------------------------------------- info


def obj_get(path: str, file_flags: int = 0) -> int:
    """BPF_OBJ_GET: a new fd for the object pinned at ``path`` (raises on error)."""
    name = ctypes.create_string_buffer(path.encode())
    attr = bpf_attr_obj()
    attr.pathname, attr.file_flags = ctypes.addressof(name), file_flags
    ret, err = sys_bpf(BpfCmd.BPF_OBJ_GET, attr)
    return _check(ret, err, f"BPF_OBJ_GET {path}")


def obj_get_info_by_fd(fd: int, info: CData) -> int:
    """BPF_OBJ_GET_INFO_BY_FD into ``info`` (filled in place) -> errno.

    Pointer fields set in ``info`` beforehand (e.g. ``xlated_prog_insns`` with
    ``xlated_prog_len``) are honoured, as the kernel reads them.
    """
    attr = bpf_attr_info()
    attr.bpf_fd, attr.info_len, attr.info = fd, ctypes.sizeof(info), ctypes.addressof(info)
    return sys_bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, attr)[1]


def prog_info(fd: int) -> bpf_prog_info:
    info = bpf_prog_info()
    _check(0, obj_get_info_by_fd(fd, info), "BPF_OBJ_GET_INFO_BY_FD")
    return info


def prog_xlated(fd: int) -> list[Any]:
    """The program as the kernel keeps it after verification and its rewrites
    (``xlated_prog_insns``), as :class:`pybpf.isa.insn.Insn` slots."""
    from pybpf.isa.insn import decode

    n = prog_info(fd).xlated_prog_len
    buf = ctypes.create_string_buffer(n)
    info = bpf_prog_info()
    info.xlated_prog_len, info.xlated_prog_insns = n, ctypes.addressof(buf)
    _check(0, obj_get_info_by_fd(fd, info), "BPF_OBJ_GET_INFO_BY_FD")
    return decode(buf.raw[:n])


def map_info(fd: int) -> bpf_map_info:
    info = bpf_map_info()
    _check(0, obj_get_info_by_fd(fd, info), "BPF_OBJ_GET_INFO_BY_FD")
    return info


# --------------------------------------------------------------------------- fd bookkeeping


class KernelFds:
    """Collects fds a test creates and closes them all at the end::

        with KernelFds() as fds:
            m = fds.add(map_create(...))
    """

    def __init__(self) -> None:
        self.fds: list[int] = []

    def add(self, fd: int) -> int:
        """Track ``fd`` (negative values, i.e. failures, are ignored); returns it."""
        if fd >= 0:
            self.fds.append(fd)
        return fd

    def map_create(self, *args: Any, **kwargs: Any) -> int:
        return self.add(map_create(*args, **kwargs))

    def prog_load(self, *args: Any, **kwargs: Any) -> LoadResult:
        res = prog_load(*args, **kwargs)
        self.add(res.fd)
        return res

    def close_all(self) -> None:
        while self.fds:
            close(self.fds.pop())

    def __enter__(self) -> KernelFds:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close_all()


# --------------------------------------------------------------------------- run_u64
#
# BPF_PROG_TEST_RUN reports only the low 32 bits of r0. run_u64 gets all 64 by
# rewriting the program: every `exit` of the *main* program becomes a jump to an
# epilogue appended right after the main program (before any bpf-to-bpf subprogram),
# which stores r0 into element 0 of a one-element ARRAY map and then exits with the
# same r0. Subprograms keep their own exits; calls and ld_imm64 function references
# from the main program into them are shifted past the epilogue. The epilogue's map
# lookup call clobbers r1-r5, which is harmless: the program has finished.


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return bytes([code, (dst & 0xF) | ((src & 0xF) << 4)]) + off.to_bytes(2, "little", signed=True) \
        + (imm & 0xFFFFFFFF).to_bytes(4, "little")


def _fields(raw: bytes, i: int) -> tuple[int, int, int, int, int]:
    code, regs = raw[i * 8], raw[i * 8 + 1]
    off = int.from_bytes(raw[i * 8 + 2: i * 8 + 4], "little", signed=True)
    imm = int.from_bytes(raw[i * 8 + 4: i * 8 + 8], "little", signed=True)
    return code, regs & 0xF, regs >> 4, off, imm


_LD_IMM64 = BPF_LD | BPF_DW | BPF_IMM
_CALL = BPF_JMP | BPF_CALL
_EXIT = BPF_JMP | BPF_EXIT


def _subprog_starts(raw: bytes) -> list[int]:
    """Instruction indexes where bpf-to-bpf subprograms begin."""
    starts: set[int] = set()
    n = len(raw) // _INSN_SIZE
    for i in range(n):
        code, _dst, src, _off, imm = _fields(raw, i)
        if (code == _CALL and src == BPF_PSEUDO_CALL) or \
                (code == _LD_IMM64 and src == BPF_PSEUDO_FUNC):
            starts.add(i + imm + 1)
    return sorted(s for s in starts if s > 0)


def _epilogue(map_fd: int) -> bytes:
    key_off = -4
    return b"".join([
        _insn(BPF_ALU64 | BPF_MOV | BPF_X, 6, 0),                       # r6 = r0
        _insn(BPF_ST | BPF_MEM | BPF_W, 10, 0, key_off, 0),             # *(u32 *)(r10 - 4) = 0
        _insn(_LD_IMM64, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), _insn(0),    # r1 = map
        _insn(BPF_ALU64 | BPF_MOV | BPF_X, 2, 10),                      # r2 = r10
        _insn(BPF_ALU64 | BPF_ADD | BPF_K, 2, 0, 0, key_off),           # r2 += -4
        _insn(_CALL, 0, 0, 0, BpfFuncId.BPF_FUNC_map_lookup_elem),      # r0 = lookup(r1, r2)
        _insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1, 0),                   # if r0 == 0 goto +1
        _insn(BPF_STX | BPF_MEM | BPF_DW, 0, 6),                        # *(u64 *)(r0 + 0) = r6
        _insn(BPF_ALU64 | BPF_MOV | BPF_X, 0, 6),                       # r0 = r6
        _insn(_EXIT),
    ])


def wrap_for_u64(insns: bytes, map_fd: int) -> bytes:
    """``insns`` with its main program's exits routed through the r0-saving epilogue."""
    if len(insns) % _INSN_SIZE:
        raise ValueError(f"program of {len(insns)} bytes is not whole instructions")
    n = len(insns) // _INSN_SIZE
    starts = _subprog_starts(insns)
    main_end = starts[0] if starts else n
    epilogue = _epilogue(map_fd)
    shift = len(epilogue) // _INSN_SIZE
    out = bytearray()
    i = 0
    while i < main_end:
        code, dst, src, off, imm = _fields(insns, i)
        if code == _EXIT:
            out += _insn(BPF_JMP | BPF_JA, 0, 0, _ja_offset(main_end - i - 1), 0)
        elif (code == _CALL and src == BPF_PSEUDO_CALL and i + imm + 1 >= main_end) or (code == _LD_IMM64 and src == BPF_PSEUDO_FUNC and i + imm + 1 >= main_end):
            out += _insn(code, dst, src, off, imm + shift)
        else:
            out += insns[i * 8: i * 8 + 8]
        i += 1
    return bytes(out) + epilogue + insns[main_end * 8:]


def _ja_offset(delta: int) -> int:
    if delta > 0x7FFF:
        raise ValueError("main program too long for a 16-bit jump to the epilogue")
    return delta


#: A minimal packet for socket-filter test runs (the kernel wants >= ETH_HLEN bytes).
DUMMY_PACKET = bytes(64)


def run_u64(insns: bytes, *, stack_only: bool = True,
            prog_type: int = BpfProgType.BPF_PROG_TYPE_SOCKET_FILTER,
            data_in: bytes = DUMMY_PACKET) -> int:
    """Run ``insns`` once in the live kernel and return r0 at exit, all 64 bits.

    ``stack_only`` (the default) states that the program touches only registers and its
    stack, so it is run as a socket filter on a zeroed 64-byte packet. With
    ``stack_only=False`` the given ``prog_type`` and ``data_in`` are used, for programs
    that read their context. Raises :class:`BpfError` (an OSError) carrying the verifier
    log if the kernel rejects the program, or with the errno of a failed test run.
    """
    if stack_only:
        prog_type, data_in = BpfProgType.BPF_PROG_TYPE_SOCKET_FILTER, DUMMY_PACKET
    with KernelFds() as fds:
        map_fd = fds.map_create(BpfMapType.BPF_MAP_TYPE_ARRAY, 4, 8, 1)
        prog = wrap_for_u64(insns, map_fd)
        res = fds.prog_load(prog_type, prog)
        if not res.ok:
            res = fds.prog_load(prog_type, prog, log_level=1, log_size=DEFAULT_LOG_SIZE)
        if not res.ok:
            raise BpfError(res.errno, "run_u64: BPF_PROG_LOAD rejected the program", res.log)
        run = prog_test_run(res.fd, data_in=data_in)
        _check(0, run.errno, "run_u64: BPF_PROG_TEST_RUN")
        value = map_lookup(map_fd, bytes(4), 8)
    return int.from_bytes(value, "little")
