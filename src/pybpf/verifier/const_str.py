"""Constant strings as call arguments: ``ARG_PTR_TO_CONST_STR`` of helpers (the format of
``bpf_snprintf``, ``bpf_trace_vprintk``, the string of ``bpf_strncmp``) and the
``__str`` arguments of kfuncs (``bpf_stream_vprintk_impl``'s format).

The kernel reads such a string while verifying (``bpf_snprintf`` has its format checked
then, not at run time), so it must sit at a constant offset of a frozen read-only map
value (``.rodata``) and end with a NUL inside the value (``check_reg_const_str``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.errors import BpfFault
from pybpf.verifier.regs import Reg

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

BPF_F_RDONLY_PROG = 1 << 7
MAX_BPRINTF_VARARGS = 12


def _is_rdonly(m: Any) -> bool:
    """``bpf_map_is_rdonly``: read-only to programs, frozen, no syscall write in flight."""
    return bool(getattr(m, "map_flags", 0) & BPF_F_RDONLY_PROG) and \
        bool(getattr(m, "frozen", False)) and not getattr(m, "writecnt", 0)


def const_str_bytes(m: Any, off: int) -> bytes:
    """The bytes of the map's (only) value from ``off`` to its end."""
    out = bytearray()
    for k in range(off, m.value_size):
        out.append(m.read_const(k, 1))
    return bytes(out)


def check_reg_const_str(v: Verifier, reg: Reg, regno: int) -> None:
    """``check_reg_const_str``: a NUL-terminated string in a read-only map value (the
    callers have checked that ``reg`` is a map value pointer)."""
    m = reg.map_ptr
    if not _is_rdonly(m):
        v.fail(errno.EACCES, f"R{regno} does not point to a readonly map'\n")
    if reg.var_off.mask:
        v.fail(errno.EACCES, f"R{regno} is not a constant address'\n")
    if getattr(m, "direct_value_addr", None) is None or not hasattr(m, "read_const"):
        v.fail(errno.EACCES, "no direct value access support for this map type\n")
    v.check_map_access(regno, reg.off, m.value_size - reg.off, False, True)
    off = reg.off + reg.var_off.value
    try:
        text = const_str_bytes(m, off)
    except ValueError:
        v.fail(errno.EINVAL, "direct value access on string failed\n")
    if b"\0" not in text:
        v.fail(errno.EINVAL, "string is not zero-terminated\n")


class _NoMemory:
    """Verification formats nothing: a ``%s`` argument is never read."""

    @staticmethod
    def read(addr: int, size: int) -> bytes:
        raise BpfFault(0, addr, size, "not read while verifying")


class _VerifyCtx:
    mem = _NoMemory()


def check_bpf_snprintf_call(v: Verifier) -> None:
    """``check_bpf_snprintf_call``: ``bpf_snprintf``'s format (R3, a constant string) must
    be valid for the ``R5 / 8`` arguments R4 holds (``bpf_bprintf_prepare``)."""
    from pybpf.helpers.impls import bprintf

    fmt_reg, len_reg = v.regs[3], v.regs[5]
    data_len = len_reg.var_off.value
    if data_len % 8:
        v.fail(errno.EINVAL, "")
    fmt = const_str_bytes(fmt_reg.map_ptr, fmt_reg.off + fmt_reg.var_off.value)
    num_args = min(data_len // 8, MAX_BPRINTF_VARARGS + 1)  # more can never be used
    got = bprintf(_VerifyCtx(), fmt, [0] * num_args)  # type: ignore[arg-type]
    if isinstance(got, int):
        v.fail(-got, "Invalid format string\n")
