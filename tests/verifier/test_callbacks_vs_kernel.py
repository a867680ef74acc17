"""Callback bodies (bpf_loop, bpf_for_each_map_elem) are verified, as in the live 6.18 kernel.

Each program is loaded into the live kernel (with the BTF func_info it needs before it
accepts a ``subprog[...]`` reference) and into pybpf; the verdict, the first error message
and the ``processed N insns`` count must be equal. Unsafe callback bodies (out-of-bounds
stack or map value access, bad return values) must be rejected by both: before callbacks
were walked pybpf accepted them.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pybpf import skel
from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.testing.verifier_cases import callback_btf, load_outcome

XDP = 6
MAP_MARK = 0x5EED  # ``r1 = 0x5eed ll`` is replaced by the map fd
VALUE_SIZE = 16

LOOP_HEAD = """
r1 = 0
*(u64 *)(r10 - 8) = r1
r1 = {nr}
r2 = subprog[cb]
r3 = r10
r3 += -8
r4 = 0
call 181
r0 = 0
exit
cb:
"""

FOR_EACH_HEAD = """
r1 = 0
*(u64 *)(r10 - 8) = r1
r1 = 0x5eed ll
r2 = subprog[cb]
r3 = r10
r3 += -8
r4 = 0
call 164
r0 = 0
exit
cb:
"""

# name -> (map type or 0, program text)
PROGRAMS: dict[str, tuple[int, str]] = {
    "loop_safe": (0, LOOP_HEAD.format(nr=10) + "r0 = 0\nexit\n"),
    "loop_counter_in_ctx": (0, LOOP_HEAD.format(nr=100) + """
r3 = *(u64 *)(r2 + 0)
r3 += 1
*(u64 *)(r2 + 0) = r3
r0 = 0
exit
"""),
    "loop_stop_on_index": (0, LOOP_HEAD.format(nr=20) + """
r0 = 0
if r1 != 5 goto +1
r0 = 1
exit
"""),
    "loop_oob_stack": (0, LOOP_HEAD.format(nr=10) + """
r3 = 1
*(u64 *)(r2 + 8) = r3
r0 = 0
exit
"""),
    "loop_uninit_ctx_read": (0, LOOP_HEAD.format(nr=10) + """
r3 = *(u64 *)(r2 - 8)
r0 = 0
exit
"""),
    "loop_bad_ret_const": (0, LOOP_HEAD.format(nr=10) + "r0 = 2\nexit\n"),
    "loop_bad_ret_unknown": (0, LOOP_HEAD.format(nr=10) + "r0 = r1\nexit\n"),
    "loop_ret_pointer": (0, LOOP_HEAD.format(nr=10) + "r0 = r2\nexit\n"),
    "loop_ret_uninit": (0, LOOP_HEAD.format(nr=10) + "exit\n"),
    "loop_idx_as_offset_bad": (0, LOOP_HEAD.format(nr=10) + """
r2 += r1
r3 = *(u8 *)(r2 + 0)
r0 = 0
exit
"""),
    # the callback's stack sits on top of its caller's: 400 + 200 > 512
    "loop_combined_stack_too_large": (0, LOOP_HEAD.replace("r4 = 0\n", "r4 = 0\n*(u64 *)(r10 - 400) = r4\n")
                                      .format(nr=4) + """
r3 = 0
*(u64 *)(r10 - 200) = r3
r0 = 0
exit
"""),
    "loop_combined_stack_fits": (0, LOOP_HEAD.replace("r4 = 0\n", "r4 = 0\n*(u64 *)(r10 - 256) = r4\n")
                                 .format(nr=4) + """
r3 = 0
*(u64 *)(r10 - 256) = r3
r0 = 0
exit
"""),
    "for_each_array_safe": (2, FOR_EACH_HEAD + """
r5 = *(u64 *)(r3 + 8)
r5 = *(u32 *)(r2 + 0)
r0 = 0
exit
"""),
    "for_each_hash_safe": (1, FOR_EACH_HEAD + """
r5 = *(u64 *)(r3 + 0)
r0 = 1
exit
"""),
    "for_each_value_oob": (2, FOR_EACH_HEAD + f"""
r5 = *(u64 *)(r3 + {VALUE_SIZE})
r0 = 0
exit
"""),
    "for_each_key_oob": (2, FOR_EACH_HEAD + """
r5 = *(u32 *)(r2 + 4)
r0 = 0
exit
"""),
    "for_each_ctx_write": (2, FOR_EACH_HEAD + """
r5 = *(u64 *)(r3 + 0)
*(u64 *)(r4 + 0) = r5
r0 = 0
exit
"""),
    "for_each_bad_ret": (2, FOR_EACH_HEAD + "r0 = -1\nexit\n"),
}



def _build(text: str, map_fd: int) -> tuple[list[Insn], int]:
    """The program with the map fd patched in, and the callback's instruction index."""
    head = text.split("cb:")[0]
    insns = assemble(head + "cb:" + text.split("cb:")[1])
    cb_slot = len(assemble(head.replace("subprog[cb]", "0 ll") + "r0 = 0\nexit\n")) - 2
    out = [Insn(0x18, i.dst, 1, 0, map_fd) if i.code == 0x18 and i.imm == MAP_MARK else i
           for i in insns]
    return out, cb_slot


def _kernel_log(kernel: ModuleType, fds: Any, text: str, level: int) -> str:
    insns, cb_slot = _build(text, -1)
    btf = kernel.btf_load(callback_btf())
    assert btf.ok, btf.log
    try:
        res = fds.prog_load(XDP, encode(insns), log_level=level, log_size=1 << 20, prog_btf_fd=btf.fd,
                            func_info=struct.pack("<IIII", 0, 3, cb_slot, 5), func_info_rec_size=8)
    finally:
        os.close(btf.fd)
    return str(res.log)


def _pybpf_log(text: str, level: int) -> str:
    insns, _ = _build(text, -1)
    try:
        return Program.load(Kernel(), XDP, insns, log_level=level, log_size=1 << 20).log
    except BpfError as e:
        return e.log


def _kernel(kernel: ModuleType, fds: Any, map_type: int, text: str,
            value_size: int = VALUE_SIZE) -> tuple[bool, str, int]:
    map_fd = fds.map_create(map_type, 4, value_size, 4) if map_type else -1
    insns, cb_slot = _build(text, map_fd)
    btf = kernel.btf_load(callback_btf())
    assert btf.ok, btf.log
    try:
        res = fds.prog_load(XDP, encode(insns), log_level=1, log_size=1 << 20, prog_btf_fd=btf.fd,
                            func_info=struct.pack("<IIII", 0, 3, cb_slot, 5), func_info_rec_size=8)
    finally:
        os.close(btf.fd)
    return load_outcome(res.ok, res.log)


def _pybpf(map_type: int, text: str, value_size: int = VALUE_SIZE) -> tuple[bool, str, int]:
    k = Kernel()
    map_fd = k.map_create(map_type, 4, value_size, 4, name=b"m").fd if map_type else -1
    insns, _ = _build(text, map_fd)
    try:
        prog = Program.load(k, XDP, insns, log_level=1, log_size=1 << 20)
    except BpfError as e:
        return load_outcome(False, e.log)
    return load_outcome(True, prog.log)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_callback_matches_kernel(kernel: ModuleType, kernel_fds: Any, name: str) -> None:
    map_type, text = PROGRAMS[name]
    want = _kernel(kernel, kernel_fds, map_type, text)
    got = _pybpf(map_type, text)
    assert got == want, text


@pytest.mark.parametrize("name", sorted(n for n in PROGRAMS if n.startswith("loop_")))
def test_loop_callback_log_level2_matches_kernel(kernel: ModuleType, kernel_fds: Any, name: str) -> None:
    """The whole level-2 log: callback entry, ``returning from callee`` back to the call
    site, precision backtracking out of the callback, and the iteration pruned as safe."""
    text = PROGRAMS[name][1]
    assert _pybpf_log(text, 2) == _kernel_log(kernel, kernel_fds, text, 2)


@pytest.mark.parametrize("map_type", [4, 8])  # perf event array, cgroup array
def test_for_each_on_map_without_iteration(kernel: ModuleType, kernel_fds: Any, map_type: int) -> None:
    text = FOR_EACH_HEAD + "r0 = 0\nexit\n"
    want = _kernel(kernel, kernel_fds, map_type, text, value_size=4)
    assert want[:2] == (False, "callback function not allowed for map")
    assert _pybpf(map_type, text, value_size=4) == want


@pytest.mark.parametrize("name", ["loop_oob_stack", "loop_bad_ret_const", "loop_ret_pointer",
                                  "for_each_value_oob", "for_each_bad_ret"])
def test_unsafe_callback_rejected(name: str) -> None:
    """Without the kernel: an unsafe callback body is a rejected program."""
    map_type, text = PROGRAMS[name]
    ok, msg, _ = _pybpf(map_type, text)
    assert not ok and msg


def test_callback_return_message() -> None:
    ok, msg, _ = _pybpf(*PROGRAMS["loop_bad_ret_const"])
    assert (ok, msg) == (False, "At callback return the register R0 has smin=2 smax=2 "
                                "should have been in [0, 1]")


TIMER_OBJ = str(Path(__file__).parents[1] / "helpers" / "progs" / "tracing_timer.o")


def test_timer_callback_verified_once_as_async_path(kernel: ModuleType) -> None:
    """``bpf_timer_set_callback``'s callback is walked as its own path (frame 0, R0 must be
    0): the processed count of the clang-built program equals the kernel's."""
    live = skel.load(TIMER_OBJ, kernel="live")
    mine = skel.load(TIMER_OBJ, kernel=Kernel())
    for name in ("arm", "cancel"):
        want = kernel.prog_info(getattr(live.progs, name).fd).verified_insns
        assert getattr(mine.progs, name).info().verified_insns == want, name
