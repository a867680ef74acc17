"""The contract between ``BPF_PROG_LOAD`` and the verifier (the kernel's ``bpf_check``).

The syscall layer builds a :class:`VerifierInput`, calls :func:`bpf_check`, and applies the
log-buffer rules (log_level / log_buf / log_size / ``ENOSPC`` / ``log_true_size``) to the
text in :attr:`VerifierResult.log` — the verifier itself only produces the full log.

The verifier owns ``ld_imm64`` map resolution (``resolve_pseudo_ldimm64``): it turns map
fds and map-value references into native addresses in :attr:`VerifierResult.insns` and
lists the maps in :attr:`VerifierResult.used_maps`.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pybpf.isa.insn import Insn


@dataclass
class VerifierInput:
    insns: list[Insn]
    prog_type: int
    expected_attach_type: int = 0
    prog_flags: int = 0
    log_level: int = 0
    map_by_fd: Callable[[int], Any] = lambda fd: None  # fd → BpfMap of the loading task
    fd_array: list[int] | None = None
    gpl_compatible: bool = True
    bpf_capable: bool = True  # CAP_BPF (or CAP_SYS_ADMIN)
    perfmon_capable: bool = True  # CAP_PERFMON
    net_admin: bool = True
    attach_btf_id: int = 0
    attach_prog: Any = None
    prog_btf: Any = None
    func_info: list[Any] = field(default_factory=list)
    line_info: list[Any] = field(default_factory=list)
    kernel: Any = None  # the Kernel instance: helper table, sysctls, kernel BTF
    prog: Any = None  # the BpfProg being loaded (aux data the verifier may fill)


@dataclass
class VerifierResult:
    errno: int = 0  # 0: accepted
    log: str = ""  # full log text the kernel would produce at this log_level
    insns: list[Insn] = field(default_factory=list)  # after fixups
    used_maps: list[Any] = field(default_factory=list)
    stack_depth: int = 0
    verified_insns: int = 0
    subprog_starts: list[int] = field(default_factory=lambda: [0])
    extra: dict[str, Any] = field(default_factory=dict)


def bpf_check(inp: VerifierInput) -> VerifierResult:
    """Verify a program. Placeholder until the verifier lands: structural checks only.

    It resolves ``BPF_PSEUDO_MAP_FD`` / ``BPF_PSEUDO_MAP_VALUE`` to map addresses and
    rejects what the instruction-level validator rejects; it proves nothing about safety.
    """
    from pybpf.isa.opcodes import Pseudo

    insns = list(inp.insns)
    used: list[Any] = []
    i = 0
    while i < len(insns):
        ins = insns[i]
        if ins.code == 0x18:
            if i + 1 >= len(insns):
                return VerifierResult(errno.EINVAL, "invalid bpf_ld_imm64 insn\n")
            if ins.src in (Pseudo.MAP_FD, Pseudo.MAP_VALUE):
                bmap = inp.map_by_fd(ins.imm)
                if bmap is None:
                    return VerifierResult(errno.EBADF, f"fd {ins.imm} is not pointing to valid bpf_map\n")
                if bmap not in used:
                    used.append(bmap)
                addr = bmap.addr
                if ins.src == Pseudo.MAP_VALUE:
                    value_addr = getattr(bmap, "direct_value_addr", None)
                    if value_addr is None:
                        return VerifierResult(errno.EINVAL, "map direct value access not supported\n")
                    addr = value_addr(insns[i + 1].imm)
                lo = addr & 0xFFFFFFFF
                hi = addr >> 32
                insns[i] = ins._replace(src=0, imm=lo - (1 << 32) if lo >> 31 else lo)
                insns[i + 1] = insns[i + 1]._replace(imm=hi - (1 << 32) if hi >> 31 else hi)
            i += 2
            continue
        i += 1
    try:
        from pybpf.isa.validate import check_program_structure
    except ImportError:
        check_program_structure = None
    if check_program_structure is not None:
        problem = check_program_structure(list(inp.insns))
        if problem is not None:
            err, msg = problem
            return VerifierResult(err, msg if msg.endswith("\n") else msg + "\n")
    return VerifierResult(0, "", insns, used, verified_insns=len(insns))
