"""The two-value form of :func:`pybpf.btf.validate.btf_check`, for ``syscall/btf_cmds.py``.

``BPF_BTF_LOAD`` in :mod:`pybpf.syscall.btf_cmds` looks for ``btf_check(data) ->
(errno, log)`` here. Prefer :func:`pybpf.btf.validate.btf_check`, which also takes the
log level and returns the parsed :class:`~pybpf.btf.raw.Btf`.
"""

from __future__ import annotations

from pybpf.btf import validate


def btf_check(data: bytes | bytearray | memoryview, log_level: int = 1) -> tuple[int, str]:
    """``(errno, log)`` of a ``BPF_BTF_LOAD`` of ``data`` (errno 0: accepted)."""
    err, log, _ = validate.btf_check(data, log_level)
    return err, log


__all__ = ["btf_check"]
