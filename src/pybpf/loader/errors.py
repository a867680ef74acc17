"""Errors of the loader: libbpf's error codes and messages.

libbpf reports object-file problems with its own error numbers (``LIBBPF_ERRNO__*``, from
4000 up) next to ordinary errnos, and logs a line naming the section, program, map or
symbol. :class:`LoaderError` carries both: ``errno`` is what libbpf would return (negated
there), ``message`` is libbpf's warning line.
"""

from __future__ import annotations

import errno as _errno
from enum import IntEnum

from pybpf.errors import BpfError


class LibbpfErrno(IntEnum):
    """``enum libbpf_errno``."""

    LIBELF = 4000
    FORMAT = 4001
    KVERSION = 4002
    ENDIAN = 4003
    INTERNAL = 4004
    RELOC = 4005
    LOAD = 4006
    VERIFY = 4007
    PROG2BIG = 4008
    KVER = 4009
    PROGTYPE = 4010
    WRNGPID = 4011
    INVSEQ = 4012
    NLPARSE = 4013


#: ``libbpf_strerror`` texts of the libbpf-specific codes.
LIBBPF_STRERROR = {
    LibbpfErrno.LIBELF: "Something wrong in libelf",
    LibbpfErrno.FORMAT: "BPF object format invalid",
    LibbpfErrno.KVERSION: "'version' section incorrect or lost",
    LibbpfErrno.ENDIAN: "Endian mismatch",
    LibbpfErrno.INTERNAL: "Internal error in libbpf",
    LibbpfErrno.RELOC: "Relocation failed",
    LibbpfErrno.LOAD: "Load program failed for unknown reason",
    LibbpfErrno.VERIFY: "Kernel verifier blocks program loading",
    LibbpfErrno.PROG2BIG: "Program too big",
    LibbpfErrno.KVER: "Incorrect kernel version",
    LibbpfErrno.PROGTYPE: "Kernel doesn't support this program type",
    LibbpfErrno.WRNGPID: "Wrong pid in netlink message",
    LibbpfErrno.INVSEQ: "Invalid netlink sequence",
    LibbpfErrno.NLPARSE: "Incorrect netlink message parsing",
}


class LoaderError(BpfError):
    """An object file libbpf would refuse: ``errno`` as libbpf returns it, its message."""

    @property
    def errname(self) -> str:
        code = self.errno or 0
        if code in LIBBPF_STRERROR:
            return f"LIBBPF_ERRNO__{LibbpfErrno(code).name}"
        return _errno.errorcode.get(code, str(code))


def fmt_error(message: str) -> LoaderError:
    """A ``-LIBBPF_ERRNO__FORMAT`` error (malformed ELF/BTF)."""
    return LoaderError(LibbpfErrno.FORMAT, message)


def reloc_error(message: str) -> LoaderError:
    """A ``-LIBBPF_ERRNO__RELOC`` error (a relocation libbpf cannot apply)."""
    return LoaderError(LibbpfErrno.RELOC, message)


def einval(message: str) -> LoaderError:
    return LoaderError(_errno.EINVAL, message)
