"""The verifier log buffer rules of ``kernel/bpf/log.c`` (Linux 6.18).

The verifier produces text; how much of it reaches the caller's ``log_buf`` is decided
here, identically for ``BPF_PROG_LOAD`` and ``BPF_BTF_LOAD``:

- ``bpf_vlog_init``: ``log_buf`` and ``log_size`` go together; a buffer with
  ``log_level == 0`` is meaningless; unknown level bits (beyond ``BPF_LOG_MASK``) and a
  size above ``UINT_MAX >> 2`` are rejected — all ``EINVAL``, before verification.
- A level without a buffer is fine: nothing is written, but ``log_true_size`` is reported.
- Rotating mode (default): when the log does not fit, the buffer keeps the *last*
  ``log_size - 1`` bytes plus a NUL. ``BPF_LOG_FIXED`` (8) keeps the *first* ones.
- ``bpf_vlog_finalize``: ``log_true_size`` is the size the whole log needs including its
  NUL (``len_max``); if that exceeds ``log_size`` the command fails with ``ENOSPC`` —
  even when the program itself was accepted.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from pybpf.errors import BpfError
from pybpf.syscall.uaccess import UserFault, copy_to_user

BPF_LOG_LEVEL1 = 1
BPF_LOG_LEVEL2 = 2
BPF_LOG_STATS = 4
BPF_LOG_FIXED = 8
BPF_LOG_LEVEL = BPF_LOG_LEVEL1 | BPF_LOG_LEVEL2
BPF_LOG_MASK = BPF_LOG_LEVEL | BPF_LOG_STATS | BPF_LOG_FIXED
UINT_MAX = 0xFFFFFFFF
#: ``BPF_VERIFIER_TMP_LOG_SIZE``: one message is formatted into this many bytes at most.
BPF_VERIFIER_TMP_LOG_SIZE = 1024


@dataclass
class VerifierLog:
    """``struct bpf_verifier_log``: level, user buffer and its size."""

    level: int
    ubuf: int
    len_total: int

    @classmethod
    def init(cls, level: int, ubuf: int, size: int) -> VerifierLog:
        """``bpf_vlog_init``: validate the attributes (``EINVAL``)."""
        log = cls(level, ubuf, size)
        if bool(ubuf) != bool(size):
            raise BpfError(errno.EINVAL, "log_buf and log_size must be given together")
        if ubuf and level == 0:
            raise BpfError(errno.EINVAL, "log_buf given with log_level 0")
        if level & ~BPF_LOG_MASK:
            raise BpfError(errno.EINVAL, f"unknown log_level bits {level:#x}")
        if size > UINT_MAX >> 2:
            raise BpfError(errno.EINVAL, "log_size too large")
        return log

    @property
    def needed(self) -> bool:
        return bool(self.level)

    def finalize(self, text: str | bytes, len_max: int | None = None) -> tuple[int, int]:
        """Write ``text`` as the kernel leaves it in the buffer: ``(errno or 0, true_size)``.

        ``len_max`` is the largest size the log ever had (with its NUL): the verifier
        rewinds the log when it abandons a path (``bpf_vlog_reset``), so the final text
        can be shorter than what the caller's buffer needed to hold at some point; that
        maximum is ``log_true_size`` and decides ``ENOSPC``. ``true_size`` is 0 when no
        log was requested (level 0).
        """
        if not self.level:
            return 0, 0
        data = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
        true_size = len(data) + 1 if data else 0
        if len_max is not None:
            true_size = max(true_size, int(len_max))
        if true_size > UINT_MAX:
            true_size = UINT_MAX
        if not self.ubuf:
            return 0, true_size
        total = self.len_total
        if len(data) + 1 <= total:
            out = data + b"\0"
        elif self.level & BPF_LOG_FIXED:
            out = data[: total - 1] + b"\0"
        else:
            out = data[len(data) - (total - 1):] + b"\0"
        try:
            if data:
                copy_to_user(self.ubuf, out)
        except UserFault:
            return errno.EFAULT, true_size
        if true_size > total:
            return errno.ENOSPC, true_size
        return 0, true_size
