"""BPF_OBJ_GET_INFO_BY_FD: ``bpf_prog_info``, ``bpf_map_info``, ``bpf_btf_info``,
``bpf_link_info``, with the kernel's ``info_len`` rules.

For every kind: ``info_len`` above a page is ``E2BIG``; a caller struct *larger* than the
kernel's must be zero beyond the kernel's size (``E2BIG``, checked with
``bpf_check_uarg_tail_zero``); the kernel copies ``min(info_len, sizeof(info))`` bytes in
(they carry the caller's array pointers and lengths), fills the struct, copies the same
number of bytes back and writes that number to ``info_len``. Arrays (map IDs, xlated
instructions, func/line info, tags) are copied up to the length the caller offered and
their full length is reported.

The module also has the Python-side helpers :func:`get_info` and :func:`obj_pin`.
"""

from __future__ import annotations

import ctypes
import errno
import struct
from typing import TYPE_CHECKING, Any

from pybpf.core.btf import BtfObject
from pybpf.core.link import BpfLink
from pybpf.core.map import KMap
from pybpf.core.prog import BpfProg
from pybpf.errors import BpfError
from pybpf.isa.insn import Insn, encode
from pybpf.syscall.attr import OFF_INFO_LEN, PAGE_SIZE
from pybpf.syscall.dispatch import Call, command
from pybpf.syscall.fdtable import KIND_BTF, KIND_LINK, KIND_MAP, KIND_PROG
from pybpf.syscall.uaccess import copy_from_user, copy_to_user, put_user_u32, put_user_u64
from pybpf.uapi import (
    BPF_MAP_TYPE_ARRAY,
    BpfCmd,
    bpf_btf_info,
    bpf_link_info,
    bpf_map_info,
    bpf_prog_info,
)

if TYPE_CHECKING:
    from pybpf.kernel import Task

EBADFD = 77
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_FUNC_INFO_SIZE = 8
BPF_LINE_INFO_SIZE = 16
SHA256_DIGEST_SIZE = 32


def _check_uarg_tail_zero(uaddr: int, expected: int, actual: int) -> None:
    if actual > PAGE_SIZE:
        raise BpfError(errno.E2BIG, "info_len larger than a page")
    if actual <= expected:
        return
    if any(copy_from_user(uaddr + expected, actual - expected)):
        raise BpfError(errno.E2BIG, "info struct has non-zero bytes the kernel does not know")


def _read_info(uinfo: int, cls: type[Any], info_len: int) -> tuple[Any, int]:
    _check_uarg_tail_zero(uinfo, ctypes.sizeof(cls), info_len)
    n = min(ctypes.sizeof(cls), info_len)
    raw = copy_from_user(uinfo, n) if n else b""
    info = cls.from_buffer_copy(raw.ljust(ctypes.sizeof(cls), b"\0"))
    return info, n


def _write_info(call: Call, uinfo: int, info: Any, n: int) -> None:
    copy_to_user(uinfo, bytes(info)[:n])
    call.put_u32(OFF_INFO_LEN, n)


@command(BpfCmd.BPF_OBJ_GET_INFO_BY_FD)
def bpf_obj_get_info_by_fd(call: Call) -> int:
    call.check_attr()
    a = call.attr.info
    file = call.task.fds.get(a.bpf_fd)
    if file is None:
        raise BpfError(EBADFD, f"fd {a.bpf_fd} is not open")
    if file.kind == KIND_PROG and isinstance(file.obj, BpfProg):
        return prog_get_info(call, file, file.obj, a.info, a.info_len)
    if file.kind == KIND_MAP and isinstance(file.obj, KMap):
        return map_get_info(call, file.obj, a.info, a.info_len)
    if file.kind == KIND_BTF and isinstance(file.obj, BtfObject):
        return btf_get_info(call, file.obj, a.info, a.info_len)
    if file.kind == KIND_LINK and isinstance(file.obj, BpfLink):
        return link_get_info(call, file.obj, a.info, a.info_len)
    raise BpfError(errno.EINVAL, f"fd {a.bpf_fd} is not a BPF object")


# ------------------------------------------------------------------------------ programs
def jit_subprog_calls(insns: list[Insn]) -> list[Insn]:
    """bpf-to-bpf calls as a JITed program keeps them (``jit_subprogs``): ``imm`` is the
    callee's subprogram index and ``off`` the relative offset the call had, which is what
    the kernel's xlated dump of a JITed multi-function program holds (bpftool prints
    ``call pc+<imm>``)."""
    starts = {0}
    for i, ins in enumerate(insns):
        if (ins.code == 0x85 and ins.src == 1) or (ins.code == 0x18 and ins.src == 4):
            starts.add(i + ins.imm + 1)
    if len(starts) == 1:
        return insns
    index = {s: n for n, s in enumerate(sorted(starts))}
    out = list(insns)
    for i, ins in enumerate(insns):
        if ins.code == 0x85 and ins.src == 1 and -(1 << 15) <= ins.imm < (1 << 15):
            out[i] = ins._replace(off=ins.imm, imm=index.get(i + ins.imm + 1, ins.imm))
        elif ins.code == 0x18 and ins.src == 4 and i + 1 < len(insns) \
                and i + ins.imm + 1 in index:  # callback address: subprog index in imm[1]
            out[i + 1] = insns[i + 1]._replace(imm=index[i + ins.imm + 1])
    return out


def insn_prepare_dump(prog: BpfProg) -> list[Insn]:
    """``bpf_insn_prepare_dump``: map addresses back to map IDs (and value offsets); the
    bpf-to-bpf calls as ``jit_subprogs`` leaves them (x86-64 kernels JIT every program,
    ``CONFIG_BPF_JIT_ALWAYS_ON``, so that is the form a 6.18 dump shows whichever pybpf
    tier runs the program). ``BPF_PROBE_MEM`` (and ``BPF_PROBE_MEM32``) loads read back as
    the ``BPF_MEM`` ones they were; ``BPF_PROBE_MEMSX`` stays (bpftool: ``BUG_ldx_41``)."""
    insns = jit_subprog_calls(list(prog.xlated or prog.insns))
    by_addr = {km.bmap.addr: km for km in prog.used_maps}
    i = 0
    while i < len(insns):
        ins = insns[i]
        if ins.code == 0x18 and i + 1 < len(insns):
            addr = (ins.imm & 0xFFFFFFFF) | ((insns[i + 1].imm & 0xFFFFFFFF) << 32)
            km = by_addr.get(addr)
            if km is not None:
                insns[i] = ins._replace(src=BPF_PSEUDO_MAP_FD, imm=km.id)
                insns[i + 1] = insns[i + 1]._replace(imm=0)
            else:
                for km in prog.used_maps:
                    off = _direct_value_off(km, addr)
                    if off is not None:
                        insns[i] = ins._replace(src=BPF_PSEUDO_MAP_VALUE, imm=km.id)
                        insns[i + 1] = insns[i + 1]._replace(imm=off)
                        break
            i += 2
            continue
        cls, mode = ins.code & 0x07, ins.code & 0xE0
        if cls == 0x01 and mode == 0x20:  # BPF_PROBE_MEM: shown as the BPF_MEM load it was
            insns[i] = ins._replace(code=0x01 | 0x60 | (ins.code & 0x18))
        elif cls in (0x01, 0x02, 0x03) and mode == 0xA0:  # BPF_PROBE_MEM32 likewise
            insns[i] = ins._replace(code=cls | 0x60 | (ins.code & 0x18))
        i += 1
    return insns


def _direct_value_off(km: KMap, addr: int) -> int | None:
    bmap = km.bmap
    meta = getattr(bmap.ops, "map_direct_value_meta", None)
    if callable(meta):
        try:
            off = meta(bmap, addr)
        except BpfError:
            return None
        return None if off is None else int(off)
    base_fn = getattr(bmap, "direct_value_addr", None)
    if callable(base_fn):
        try:
            base = int(base_fn(0))
        except (BpfError, ValueError):
            return None
        size = int(bmap.value_size)
        if base <= addr < base + size:
            return addr - base
    return None


def prog_get_info(call: Call, file: Any, prog: BpfProg, uinfo: int, info_len: int) -> int:
    info, n = _read_info(uinfo, bpf_prog_info, info_len)
    info.type = prog.type
    info.id = prog.id
    info.load_time = prog.load_time
    info.created_by_uid = prog.uid
    info.gpl_compatible = 1 if prog.gpl_compatible else 0
    info.tag = (ctypes.c_uint8 * 8)(*prog.tag)
    info.name = prog.name
    ulen = info.nr_map_ids
    info.nr_map_ids = len(prog.used_maps)
    ulen = min(info.nr_map_ids, ulen)
    for i in range(ulen):
        put_user_u32(info.map_ids + 4 * i, prog.used_maps[i].id)
    if ((info.nr_func_info or info.func_info_rec_size)
            and info.func_info_rec_size != BPF_FUNC_INFO_SIZE):
        raise BpfError(errno.EINVAL, "func_info_rec_size")
    if ((info.nr_line_info or info.line_info_rec_size)
            and info.line_info_rec_size != BPF_LINE_INFO_SIZE):
        raise BpfError(errno.EINVAL, "line_info_rec_size")
    if ((info.nr_jited_line_info or info.jited_line_info_rec_size)
            and info.jited_line_info_rec_size != 8):
        raise BpfError(errno.EINVAL, "jited_line_info_rec_size")
    info.func_info_rec_size = BPF_FUNC_INFO_SIZE
    info.line_info_rec_size = BPF_LINE_INFO_SIZE
    info.jited_line_info_rec_size = 8
    info.run_time_ns = prog.stats.run_time_ns
    info.run_cnt = prog.stats.run_cnt
    info.recursion_misses = prog.stats.recursion_misses
    info.verified_insns = prog.verified_insns
    if prog.btf is not None:
        info.btf_id = prog.btf.id
    if not call.cred.bpf_capable():
        info.jited_prog_len = info.xlated_prog_len = 0
        info.nr_jited_ksyms = info.nr_jited_func_lens = 0
        info.nr_func_info = info.nr_line_info = info.nr_jited_line_info = 0
        _write_info(call, uinfo, info, n)
        return 0
    ulen = info.xlated_prog_len
    info.xlated_prog_len = prog.len * 8
    if info.xlated_prog_len and ulen:
        dump = encode(insn_prepare_dump(prog))
        copy_to_user(info.xlated_prog_insns, dump[:min(info.xlated_prog_len, ulen)])
    jinfo = prog.aux.get("jited_info")  # pybpf.jit.runtime.JitedInfo, when JIT-compiled
    ulen = info.jited_prog_len
    info.jited_prog_len = prog.jited_len
    if info.jited_prog_len and ulen:
        image = (jinfo.jited_prog_insns if jinfo is not None else
                 getattr(prog.bpf_func, "image", b"")) or b""
        copy_to_user(info.jited_prog_insns, bytes(image)[:min(prog.jited_len, ulen)])
    nfuncs = prog.func_cnt or 1
    ksyms = list(jinfo.jited_ksyms) if jinfo is not None else [0] * nfuncs
    func_lens = (list(jinfo.jited_func_lens) if jinfo is not None else
                 [prog.jited_len] + [0] * (nfuncs - 1))
    ulen = info.nr_jited_ksyms
    info.nr_jited_ksyms = len(ksyms) if prog.jited else nfuncs
    for i in range(min(info.nr_jited_ksyms, ulen)):
        put_user_u64(info.jited_ksyms + 8 * i, ksyms[i] if prog.jited and i < len(ksyms) else 0)
    ulen = info.nr_jited_func_lens
    info.nr_jited_func_lens = len(func_lens) if prog.jited else nfuncs
    for i in range(min(info.nr_jited_func_lens, ulen)):
        put_user_u32(info.jited_func_lens + 4 * i,
                     func_lens[i] if prog.jited and i < len(func_lens) else 0)
    info.attach_btf_id = prog.attach_btf_id
    if prog.attach_btf is not None:
        info.attach_btf_obj_id = prog.attach_btf.id
    ulen = info.nr_func_info
    info.nr_func_info = prog.func_info_cnt if prog.btf is not None else 0
    if info.nr_func_info and ulen:
        copy_to_user(info.func_info, prog.func_info[:BPF_FUNC_INFO_SIZE * min(
            info.nr_func_info, ulen)])
    ulen = info.nr_line_info
    info.nr_line_info = prog.nr_linfo if prog.btf is not None else 0
    if info.nr_line_info and ulen:
        copy_to_user(info.line_info, prog.line_info[:BPF_LINE_INFO_SIZE * min(
            info.nr_line_info, ulen)])
    ulen = info.nr_jited_line_info
    jited_linfo = prog.jited_linfo  # bpf_prog_fill_jited_linfo, filled at load
    info.nr_jited_line_info = len(jited_linfo)
    for i in range(min(info.nr_jited_line_info, ulen)):
        put_user_u64(info.jited_line_info + 8 * i, jited_linfo[i])
    ulen = info.nr_prog_tags
    info.nr_prog_tags = nfuncs
    if ulen:
        tags = prog.aux.get("func_tags") or [prog.tag]
        for i in range(min(nfuncs, ulen)):
            copy_to_user(info.prog_tags + 8 * i, tags[i] if i < len(tags) else prog.tag)
    _write_info(call, uinfo, info, n)
    return 0


# ------------------------------------------------------------------------------ maps
def map_get_info(call: Call, kmap: KMap, uinfo: int, info_len: int) -> int:
    info, n = _read_info(uinfo, bpf_map_info, info_len)
    bmap = kmap.bmap
    info.type = kmap.map_type
    info.id = kmap.id
    info.key_size = bmap.key_size
    info.value_size = bmap.value_size
    info.max_entries = bmap.max_entries
    info.map_flags = bmap.map_flags
    info.map_extra = bmap.map_extra
    info.name = kmap.name
    if kmap.btf is not None:
        info.btf_id = kmap.btf.id
        info.btf_key_type_id = bmap.btf_key_type_id
        info.btf_value_type_id = bmap.btf_value_type_id
    info.btf_vmlinux_value_type_id = bmap.btf_vmlinux_value_type_id
    if info.hash:
        get_hash = getattr(bmap.ops, "map_get_hash", None)
        if not callable(get_hash) and kmap.map_type == BPF_MAP_TYPE_ARRAY:
            get_hash = _array_map_get_hash
        if not callable(get_hash):
            raise BpfError(errno.EINVAL, "map has no hash")
        if info.hash_size != SHA256_DIGEST_SIZE:
            raise BpfError(errno.EINVAL, "hash_size must be 32")
        copy_to_user(info.hash, bytes(get_hash(bmap))[:SHA256_DIGEST_SIZE])
    elif info.hash_size:
        raise BpfError(errno.EINVAL, "hash_size without hash")
    _write_info(call, uinfo, info, n)
    return 0


def _array_map_get_hash(bmap: Any) -> bytes:
    """``array_map_get_hash``: SHA-256 of the (frozen) array's values, element stride 8."""
    import hashlib

    if not bmap.frozen:
        raise BpfError(errno.EPERM, "only frozen maps have a hash")
    stride = (bmap.value_size + 7) & ~7
    data = bytearray()
    for i in range(bmap.max_entries):
        value = bmap.ops.sys_lookup(bmap, i.to_bytes(4, "little"), 0)
        data += value[:bmap.value_size].ljust(stride, b"\0")
    return hashlib.sha256(bytes(data)).digest()


# ------------------------------------------------------------------------------ BTF
def btf_get_info(call: Call, btf: BtfObject, uinfo: int, info_len: int) -> int:
    _check_uarg_tail_zero(uinfo, ctypes.sizeof(bpf_btf_info), info_len)
    n = min(info_len, ctypes.sizeof(bpf_btf_info))
    raw = copy_from_user(uinfo, n) if n else b""
    info = bpf_btf_info.from_buffer_copy(raw.ljust(ctypes.sizeof(bpf_btf_info), b"\0"))
    info.id = btf.id
    data_size = btf.data_size
    btf_copy = min(data_size, info.btf_size)
    if btf_copy:
        copy_to_user(info.btf, btf.data[:btf_copy])
    info.btf_size = data_size
    info.kernel_btf = 1 if btf.kernel_btf else 0
    if bool(info.name) != bool(info.name_len):
        raise BpfError(errno.EINVAL, "name and name_len go together")
    name = btf.name.encode()
    uname, uname_len = info.name, info.name_len
    info.name_len = len(name)
    ret = 0
    if uname:
        if uname_len >= len(name) + 1:
            copy_to_user(uname, name + b"\0")
        else:
            copy_to_user(uname, name[:uname_len - 1] + b"\0")
            ret = -errno.ENOSPC
    copy_to_user(uinfo, bytes(info)[:n])
    call.put_u32(OFF_INFO_LEN, n)
    return ret


# ------------------------------------------------------------------------------ links
def link_get_info(call: Call, link: BpfLink, uinfo: int, info_len: int) -> int:
    info, n = _read_info(uinfo, bpf_link_info, info_len)
    info.type = link.type
    info.id = link.id
    if link.prog is not None:
        info.prog_id = link.prog.id
    fill = getattr(link.ops, "fill_link_info", None)
    if callable(fill):
        fill(link, info, call.task)
    _write_info(call, uinfo, info, n)
    return 0


# ------------------------------------------------------------------------------ Python side
_INFO_CLASS = {KIND_PROG: bpf_prog_info, KIND_MAP: bpf_map_info, KIND_BTF: bpf_btf_info,
               KIND_LINK: bpf_link_info}


def get_info(task: Task, fd: int, info: Any = None) -> Any:
    """``BPF_OBJ_GET_INFO_BY_FD`` into a fresh (or the given) ctypes info struct."""
    from pybpf.uapi import bpf_attr

    if info is None:
        file = task.fds.get(fd)
        if file is None:
            raise BpfError(errno.EBADF, f"fd {fd} is not open")
        cls = _INFO_CLASS.get(file.kind)
        if cls is None:
            raise BpfError(errno.EINVAL, f"fd {fd} is not a BPF object")
        info = cls()
    attr = bpf_attr()
    attr.info.bpf_fd = fd
    attr.info.info_len = ctypes.sizeof(info)
    attr.info.info = ctypes.addressof(info)
    ret = task.bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, attr)
    if ret < 0:
        raise BpfError(-ret, "BPF_OBJ_GET_INFO_BY_FD")
    return info


def obj_pin(task: Task, fd: int, path: str) -> None:
    from pybpf.uapi import bpf_attr

    buf = ctypes.create_string_buffer(path.encode())
    attr = bpf_attr()
    attr.bpf_fd = fd
    attr.pathname = ctypes.addressof(buf)
    ret = task.bpf(BpfCmd.BPF_OBJ_PIN, attr)
    if ret < 0:
        raise BpfError(-ret, f"BPF_OBJ_PIN {path}")


def obj_get(task: Task, path: str, file_flags: int = 0) -> int:
    from pybpf.uapi import bpf_attr

    buf = ctypes.create_string_buffer(path.encode())
    attr = bpf_attr()
    attr.pathname = ctypes.addressof(buf)
    attr.file_flags = file_flags
    ret = task.bpf(BpfCmd.BPF_OBJ_GET, attr)
    if ret < 0:
        raise BpfError(-ret, f"BPF_OBJ_GET {path}")
    return ret


__all__ = ["get_info", "insn_prepare_dump", "jit_subprog_calls", "obj_get", "obj_pin", "struct"]
