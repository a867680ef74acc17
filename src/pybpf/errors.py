"""Errors of the pybpf API.

The syscall layer speaks errno, as the kernel does; the Python API turns a negative
return into :class:`BpfError`, carrying the verifier log where there is one.
Execution faults in the checked interpreter are :class:`BpfFault`.
"""

from __future__ import annotations

import errno as _errno
import os


class BpfError(OSError):
    """A failed bpf() operation: ``errno`` as the kernel gives it, a message and a log."""

    def __init__(self, err: int, message: str = "", log: str = "") -> None:
        self.message = message or os.strerror(err)
        self.log = log
        super().__init__(err, self.message)

    @property
    def errname(self) -> str:
        return _errno.errorcode.get(self.errno or 0, str(self.errno))

    def __str__(self) -> str:
        text = f"[{self.errname}] {self.message}"
        if self.log:
            text += f"\n-- BEGIN PROG LOAD LOG --\n{self.log.rstrip()}\n-- END PROG LOAD LOG --"
        return text


class BpfFault(Exception):
    """A program touched memory it may not, or executed something invalid.

    Raised by the checked interpreter instead of crashing the process: ``pc`` is the
    instruction index, ``addr`` and ``size`` the access, ``reason`` a short explanation.
    """

    def __init__(self, pc: int, addr: int = 0, size: int = 0, reason: str = "") -> None:
        self.pc = pc
        self.addr = addr
        self.size = size
        self.reason = reason
        super().__init__(f"pc {pc}: {reason} (addr {addr:#x}, size {size})")


class AsmError(ValueError):
    """Text that does not assemble: names the line and what is wrong with it."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)
