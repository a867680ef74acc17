"""Load one program in the live kernel and in pybpf, and compare what the verifiers said.

The verifier's differential tests (kfuncs, iterators, dynptrs, kptrs, BTF access, spills,
``may_goto``…) all do the same three things: assemble a program (kfunc calls by name, map
fds patched in), load it on both sides with the same attributes, and compare the verdict,
the first error message, the processed count or the whole log. This module is that one
way of doing it, so a fix to the comparison (a new line both logs may differ in, a new
attribute) is made once.

The live side goes through :mod:`pybpf.testing.kernel` (``kernel`` is that module, as the
``kernel`` fixture hands it); the pybpf side through :class:`pybpf.program.Program` on a
:class:`pybpf.kernel.Kernel`, or through :func:`pybpf.verifier.api.bpf_check` alone
(:func:`verifier_load`) for programs that need no kernel objects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.testing.verifier_cases import load_outcome

__all__ = [
    "LOG_SIZE",
    "Loaded",
    "error_line",
    "kernel_load",
    "kfunc_ids",
    "kfunc_program",
    "load_both",
    "load_outcome",
    "log_lines",
    "normalise_map_addrs",
    "patch_map_marks",
    "pybpf_instance",
    "pybpf_load",
    "verifier_load",
]

LOG_SIZE = 1 << 22
#: ``call kf:NAME`` in a program text: a kfunc call of vmlinux's FUNC ``NAME``
_KFUNC_CALL = re.compile(r"call kf:(\w+)")
_MAP_ADDR = re.compile(r"r(\d) = 0x[0-9a-f]+( +;)?")


@dataclass(frozen=True)
class Loaded:
    """One side's answer to a load: verdict, errno (0 when loaded) and the log."""

    ok: bool
    errno: int
    log: str

    @property
    def outcome(self) -> tuple[bool, str, int]:
        """Verdict, first error message, processed count (:func:`load_outcome`)."""
        return load_outcome(self.ok, self.log)


# -- building programs -------------------------------------------------------------------

_INSTANCES: dict[int, Kernel] = {}


def pybpf_instance(jit: int = 1) -> Kernel:
    """One shared pybpf ``Kernel`` per JIT setting: parsing vmlinux BTF once per test run
    instead of once per case. Tests that create objects the next case must not see make
    their own ``Kernel``."""
    k = _INSTANCES.get(jit)
    if k is None:
        k = _INSTANCES[jit] = Kernel()
        k.sysctl["bpf_jit_enable"] = jit
    return k


_KFUNC_IDS: dict[str, int] = {}


def kfunc_ids() -> dict[str, int]:
    """vmlinux FUNC name → BTF id (empty without vmlinux BTF)."""
    if not _KFUNC_IDS:
        btf = pybpf_instance().vmlinux_btf
        if btf is not None:
            _KFUNC_IDS.update({t.name: t.id for t in btf.parsed().types
                               if type(t).__name__ == "BtfFunc"})
    return _KFUNC_IDS


def kfunc_program(text: str) -> list[Insn]:
    """Assemble ``text`` where ``call kf:NAME`` is a kfunc call of ``NAME`` (its vmlinux
    BTF id: the same on both sides, as both read this machine's vmlinux)."""
    ids = kfunc_ids()
    missing = [name for name in _KFUNC_CALL.findall(text) if name not in ids]
    if missing:  # no vmlinux BTF (or an older kernel): the comparison cannot be made here
        import pytest

        pytest.skip(f"kfuncs not in this machine's vmlinux BTF: {', '.join(sorted(set(missing)))}")
    return assemble(_KFUNC_CALL.sub(lambda m: f"call {m.group(1)}#{ids[m.group(1)]}", text))


def patch_map_marks(insns: Sequence[Insn], fds: Mapping[int, int]) -> list[Insn]:
    """``r1 = MARK ll`` → ``r1 = map[fd]``: each 64-bit immediate load of a mark in
    ``fds`` becomes a ``BPF_PSEUDO_MAP_FD`` load of that side's map fd."""
    return [Insn(0x18, i.dst, 1, 0, fds[i.imm]) if i.code == 0x18 and i.imm in fds else i
            for i in insns]


# -- loading -----------------------------------------------------------------------------

def kernel_load(kernel: ModuleType, prog_type: int, insns: Sequence[Insn], *,
                log_level: int = 1, log_size: int = LOG_SIZE, close: bool = True,
                **attrs: Any) -> Loaded:
    """Load in the live kernel (``kernel`` is :mod:`pybpf.testing.kernel`, or a
    ``KernelFds`` that closes its fds itself: pass ``close=False`` then); a loaded program
    is closed again."""
    res = kernel.prog_load(prog_type, encode(list(insns)), log_level=log_level,
                           log_size=log_size if log_level else 0, **attrs)
    if res.fd >= 0 and close:
        os.close(res.fd)
    return Loaded(res.fd >= 0, 0 if res.fd >= 0 else int(res.errno), str(res.log or ""))


def pybpf_load(k: Kernel, prog_type: int, insns: Sequence[Insn], *, log_level: int = 1,
               log_size: int = LOG_SIZE, **attrs: Any) -> Loaded:
    """Load with ``Program.load`` on ``k``; the program is closed again."""
    try:
        prog = Program.load(k, prog_type, list(insns), log_level=log_level,
                            log_size=log_size, **attrs)
    except BpfError as exc:
        return Loaded(False, exc.errno or 0, exc.log or "")
    log = prog.log
    prog.close()
    return Loaded(True, 0, log)


def verifier_load(prog_type: int, insns: Sequence[Insn], *, log_level: int = 1,
                  **fields: Any) -> Loaded:
    """The pybpf verifier alone (``bpf_check``), for programs that use no kernel objects."""
    from pybpf.verifier.api import VerifierInput, bpf_check

    got = bpf_check(VerifierInput(insns=list(insns), prog_type=prog_type, log_level=log_level,
                                  **fields))
    return Loaded(got.errno == 0, got.errno, got.log)


def load_both(kernel: ModuleType, k: Kernel, prog_type: int, insns: Sequence[Insn], *,
              kernel_insns: Sequence[Insn] | None = None, log_level: int = 1,
              log_size: int = LOG_SIZE, **attrs: Any) -> tuple[Loaded, Loaded]:
    """(live kernel, pybpf) answers to the same load. ``kernel_insns`` is the program as
    the live kernel gets it where it differs (its own map fds)."""
    want = kernel_load(kernel, prog_type, insns if kernel_insns is None else kernel_insns,
                       log_level=log_level, log_size=log_size, **attrs)
    got = pybpf_load(k, prog_type, insns, log_level=log_level, log_size=log_size, **attrs)
    return want, got


# -- comparing logs ----------------------------------------------------------------------

def log_lines(log: str, drop: Callable[[str], bool] | None = None) -> list[str]:
    """The log's lines without the wall-clock ``verification time`` line (and those
    ``drop`` selects)."""
    return [ln for ln in log.splitlines()
            if not ln.startswith("verification time") and not (drop and drop(ln))]


def error_line(log: str) -> str:
    """The last non-empty line before the statistics: the error message of a rejection."""
    lines = [ln for ln in log_lines(log) if ln.strip() and not ln.startswith("processed ")]
    return lines[-1] if lines else ""


def normalise_map_addrs(log: str) -> str:
    """Map addresses loaded by ``ld_imm64`` (and the padding after them) differ between
    the two sides: ``rN = ADDR``."""
    return _MAP_ADDR.sub(r"r\1 = ADDR", log)


# -- programs with a callback subprogram ---------------------------------------------------

def callback_slot(text: str) -> int:
    """Instruction index of the callback ``cb:`` in a program text whose main program
    names it as ``subprog[cb]`` (-1 without one): where its ``func_info`` record points."""
    if "cb:" not in text:
        return -1
    head = text.split("cb:")[0]
    return len(assemble(head.replace("subprog[cb]", "0 ll") + "r0 = 0\nexit\n")) - 2


def callback_func_info(btf_fd: int, cb_slot: int, main_type: int = 3, cb_type: int = 5
                       ) -> dict[str, Any]:
    """``prog_load`` attributes giving main (insn 0) and the callback (``cb_slot``) their
    BTF FUNC types: the kernel accepts a ``subprog[...]`` reference only with func_info."""
    import struct

    return {"prog_btf_fd": btf_fd, "func_info_rec_size": 8,
            "func_info": struct.pack("<IIII", 0, main_type, cb_slot, cb_type)}


def is_map_load_line(line: str) -> bool:
    """A log line of the ``ld_imm64`` of a map (``(18) r1 = 0xffff…``): its address differs
    between the two sides (for :func:`log_lines`'s ``drop``)."""
    return "(18) r1 = " in line


# -- maps described by BTF, on both sides --------------------------------------------------

def kernel_btf_map(kernel: ModuleType, blob: bytes, map_type: int, key_size: int,
                   value_size: int, max_entries: int, value_type_id: int,
                   key_type_id: int = 1) -> int:
    """BTF_LOAD ``blob`` and MAP_CREATE with its key/value types in the live kernel: the
    map fd, or -errno (the BTF fd is closed again; the map keeps its BTF)."""
    btf = kernel.btf_load(blob, log_level=1, log_size=1 << 16)
    if not btf.ok:
        return -int(btf.errno)
    fd, err = kernel.map_create_raw(map_type, key_size, value_size, max_entries, btf_fd=btf.fd,
                                    btf_key_type_id=key_type_id, btf_value_type_id=value_type_id)
    kernel.close(btf.fd)
    return fd if fd >= 0 else -err


def pybpf_btf_map(k: Kernel, blob: bytes, map_type: int, key_size: int, value_size: int,
                  max_entries: int, value_type_id: int, key_type_id: int = 1) -> int:
    """The same through pybpf's syscall layer (``k.bpf``): the map fd, or -errno."""
    import ctypes

    from pybpf.uapi import BpfCmd, bpf_attr_btf_load, bpf_attr_map_create

    buf = ctypes.create_string_buffer(blob, len(blob))
    battr = bpf_attr_btf_load()
    battr.btf, battr.btf_size = ctypes.addressof(buf), len(blob)
    btf_fd = int(k.bpf(BpfCmd.BPF_BTF_LOAD, battr))
    if btf_fd < 0:
        return btf_fd
    mattr = bpf_attr_map_create()
    mattr.map_type, mattr.key_size, mattr.value_size = map_type, key_size, value_size
    mattr.max_entries, mattr.btf_fd = max_entries, btf_fd
    mattr.btf_key_type_id, mattr.btf_value_type_id = key_type_id, value_type_id
    return int(k.bpf(BpfCmd.BPF_MAP_CREATE, mattr))


def first_difference(want: Loaded, got: Loaded) -> str | None:
    """None when errno and the whole log agree, else the first differing log line (for
    sweeps that report every mismatch at the end instead of failing on the first)."""
    if got.errno == want.errno and got.log == want.log:
        return None
    for theirs, ours in zip(want.log.splitlines(), got.log.splitlines(), strict=False):
        if theirs != ours:
            return f"errno {want.errno}/{got.errno}: kernel {theirs!r} pybpf {ours!r}"
    return f"errno {want.errno}/{got.errno}: logs differ in length"
