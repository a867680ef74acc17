"""Live-kernel helpers shared by the ISA tests: load a program, read back its listings.

Kept out of the library because they interpret kernel output for tests only: the
verifier's ``Live regs before insn:`` listing (log level 2, Linux 6.15+) prints every
instruction through ``print_bpf_insn`` once the CFG checks pass, which makes it the
most direct golden for the kernel-syntax disassembler.
"""

from __future__ import annotations

import re
from types import ModuleType

from pybpf.isa.insn import Insn, encode

SOCKET_FILTER = 1
_LIVE_RE = re.compile(r"^Live regs before insn:\n((?:\s*\d+: [0-9.]{10} .*\n)+)", re.M)


def load(kernel: ModuleType, insns: list[Insn], log_level: int = 1) -> tuple[int, int, str]:
    """``(fd, errno, log)`` of BPF_PROG_LOAD of a socket filter; fd -1 on failure."""
    res = kernel.prog_load(SOCKET_FILTER, encode(insns), log_level=log_level,
                           log_size=1 << 22)
    return res.fd, res.errno, res.log


def first_error(log: str) -> str:
    """The kernel's error line: the last log line before the ``processed ...`` summary."""
    lines = [ln for ln in log.splitlines() if ln.strip() and not ln.startswith("processed ")]
    return lines[-1] if lines else ""


def live_listing(log: str) -> list[str]:
    """The instructions of the ``Live regs before insn:`` listing, without index and mask."""
    m = _LIVE_RE.search(log)
    if m is None:
        return []
    return [re.sub(r"^\s*\d+: [0-9.]{10} ", "", ln) for ln in m.group(1).splitlines()]


def xlated(kernel: ModuleType, fd: int) -> list[Insn]:
    """The program as the kernel keeps it after verification (``xlated_prog_insns``)."""
    return kernel.prog_xlated(fd)
