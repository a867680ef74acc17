"""BPF_BTF_LOAD and BPF_BTF_GET_FD_BY_ID.

``BTF_LOAD`` is ``bpf_btf_load`` + ``btf_parse``, with the same log-buffer rules as
program loading; the validation itself (header, strings, every type, in the kernel's
order and with its log text) is :func:`pybpf.btf.validate.btf_check`.
"""

from __future__ import annotations

import errno

from pybpf.core.btf import BtfObject
from pybpf.errors import BpfError
from pybpf.kernel import Cap
from pybpf.syscall.attr import END_BTF_LOG_TRUE_SIZE, OFF_BTF_LOG_TRUE_SIZE
from pybpf.syscall.dispatch import Call, command
from pybpf.syscall.log import VerifierLog
from pybpf.syscall.map_cmds import token_get
from pybpf.syscall.objects import btf_new_fd
from pybpf.syscall.uaccess import copy_from_user
from pybpf.uapi import BpfCmd

BPF_F_TOKEN_FD = 1 << 16
BTF_MAX_SIZE = 16 * 1024 * 1024
BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
BTF_HEADER_SIZE = 24


def btf_parse(data: bytes, log_level: int = 1) -> tuple[int, str]:
    """``btf_parse``: ``(errno, log)`` for a BTF blob, 0 when it is acceptable.

    The whole blob goes to the BTF layer's validator, which checks the header, strings
    and every type in the kernel's order and writes the kernel's log text.
    """
    from pybpf.btf.validate import btf_check

    err, log, _btf = btf_check(data, log_level)
    return int(err), str(log)


@command(BpfCmd.BPF_BTF_LOAD)
def bpf_btf_load(call: Call) -> int:
    call.check_attr()
    a = call.attr
    if a.btf_flags & ~BPF_F_TOKEN_FD:
        raise BpfError(errno.EINVAL, "unknown btf_flags")
    if a.btf_flags & BPF_F_TOKEN_FD:
        token_get(call, a.btf_token_fd)
    if not call.cred.bpf_capable():
        raise BpfError(errno.EPERM, "BTF_LOAD needs CAP_BPF")
    if a.btf_size > BTF_MAX_SIZE:
        raise BpfError(errno.E2BIG, "BTF larger than 16 MiB")
    log = VerifierLog.init(a.btf_log_level, a.btf_log_buf, a.btf_log_size)
    data = copy_from_user(a.btf, a.btf_size)
    err, text = btf_parse(data, a.btf_log_level or 1)
    lerr, true_size = log.finalize(text if log.level else "")
    if call.size >= END_BTF_LOG_TRUE_SIZE:
        call.put_u32(OFF_BTF_LOG_TRUE_SIZE, true_size)
    if lerr:  # finalize_log() overwrites err with -ENOSPC or -EFAULT
        err = lerr
    if err:
        raise BpfError(err, "BTF rejected", text)
    btf = BtfObject(call.kernel, data)
    call.kernel.security.check("bpf_btf_load", call.task, btf)
    btf.id = call.kernel.btf_idr.alloc_cyclic(btf)
    try:
        return btf_new_fd(call.task, btf)
    except BpfError:
        btf.put()
        raise


@command(BpfCmd.BPF_BTF_GET_FD_BY_ID)
def bpf_btf_get_fd_by_id(call: Call) -> int:
    call.check_attr()
    a = call.attr
    if a.open_flags & ~BPF_F_TOKEN_FD:
        raise BpfError(errno.EINVAL, "unknown open_flags")
    if a.open_flags & BPF_F_TOKEN_FD:
        token_get(call, a.fd_by_id_token_fd)
    if not call.cred.capable(Cap.CAP_SYS_ADMIN):
        raise BpfError(errno.EPERM, "BTF_GET_FD_BY_ID needs CAP_SYS_ADMIN")
    btf = call.kernel.btf_idr.find(a.btf_id)
    if btf is None or (btf.refcnt <= 0 and not btf.kernel_btf):
        raise BpfError(errno.ENOENT, f"no BTF with id {a.btf_id}")
    btf.get()
    try:
        return btf_new_fd(call.task, btf)
    except BpfError:
        btf.put()
        raise
