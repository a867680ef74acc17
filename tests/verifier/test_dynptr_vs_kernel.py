"""Dynptrs in the verifier, against the live 6.18 kernel.

Small raw-instruction XDP programs use the dynptr helpers (``bpf_dynptr_from_mem``,
``bpf_ringbuf_reserve_dynptr``/``submit``/``discard``, ``bpf_dynptr_read``/``write``/``data``,
``bpf_user_ringbuf_drain``'s callback with its CONST_PTR_TO_DYNPTR). Each is loaded into
the live kernel and into pybpf with the same maps; the verdict, the first error message
(the last log line before the stats) and the processed count must be equal, and for a
selection the whole level-2 log (dynptr stack slots print as
``fp-16=dynptr_ringbuf(id=1,ref_id=2,dynptr_id=1)``).

pybpf's maps/ has no BPF_MAP_TYPE_USER_RINGBUF yet: the ``user_ringbuf`` fixture stands one
in for the test (the ring buffer's own ops under type 31) when the real one is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn
from pybpf.kernel import Kernel
from pybpf.testing import verifier_diff
from pybpf.testing.verifier_cases import callback_btf
from pybpf.testing.verifier_diff import (
    callback_func_info,
    callback_slot,
    load_outcome,
    normalise_map_addrs,
    patch_map_marks,
)

XDP = 6
RINGBUF, HASH, USER_RINGBUF = 27, 1, 31
# ``rX = MARK ll`` is replaced by the fd of that map
RB_MARK, HASH_MARK, URB_MARK = 0x5EED, 0x4A5, 0x0B1
MAPS = {RB_MARK: (RINGBUF, 0, 0, 4096, b"rb"), HASH_MARK: (HASH, 4, 64, 4, b"hash"),
        URB_MARK: (USER_RINGBUF, 0, 0, 4096, b"urb")}


def reserve(off: int = -16, size: int = 8, flags: int = 0) -> str:
    return f"""
r1 = 0x5eed ll
r2 = {size}
r3 = {flags}
r4 = r10
r4 += {off}
call 198
"""


def release(off: int = -16, fid: int = 199) -> str:
    return f"""
r1 = r10
r1 += {off}
r2 = 0
call {fid}
"""


# r6 = a value of the hash map (or the program returns 0)
LOOKUP = """
r1 = 0
*(u32 *)(r10 - 40) = r1
r1 = 0x4a5 ll
r2 = r10
r2 += -40
call 1
if r0 != 0 goto +2
r0 = 0
exit
r6 = r0
"""


def from_mem(off: int = -16, size: int = 8) -> str:
    return f"""
r1 = r6
r2 = {size}
r3 = 0
r4 = r10
r4 += {off}
call 197
"""


def data(off: int = -16, size: str = "8", at: int = 0) -> str:
    return f"""
r1 = r10
r1 += {off}
r2 = {at}
r3 = {size}
call 203
"""


def read(dst: int = -32, length: int = 8, src: int = -16) -> str:
    return f"""
r1 = r10
r1 += {dst}
r2 = {length}
r3 = r10
r3 += {src}
r4 = 0
r5 = 0
call 201
"""


def write(dst: int = -16, src: int = -32, length: int = 8) -> str:
    return f"""
r1 = 0
*(u64 *)(r10 {src}) = r1
r1 = r10
r1 += {dst}
r2 = 0
r3 = r10
r3 += {src}
r4 = {length}
r5 = 0
call 202
"""


OK = "\nr0 = 0\nexit\n"

PROGRAMS: dict[str, str] = {
    # ring buffer dynptrs: a reference to release
    "ringbuf_submit": reserve() + release() + OK,
    "ringbuf_discard": reserve() + release(fid=200) + OK,
    "ringbuf_submit_deeper": reserve(off=-48, size=64) + release(off=-48) + OK,
    "ringbuf_leak": reserve() + OK,
    "ringbuf_double_submit": reserve() + release() + release() + OK,
    "ringbuf_overwrite_referenced": reserve() + "*(u64 *)(r10 - 16) = 0\n" + release() + OK,
    "ringbuf_partial_overwrite": reserve() + "r1 = 1\n*(u32 *)(r10 - 4) = r1\n" + release() + OK,
    "ringbuf_reserve_twice_same_slot": reserve() + reserve() + release() + OK,
    "ringbuf_two_dynptrs": reserve() + reserve(off=-32) + release() + release(off=-32, fid=200) + OK,
    "ringbuf_misaligned": reserve(off=-12) + release(off=-12) + OK,
    "ringbuf_at_fp8": reserve(off=-8) + OK,
    "ringbuf_above_fp": reserve(off=0) + OK,
    "ringbuf_wrong_map": reserve().replace("0x5eed", "0x4a5") + release() + OK,
    "ringbuf_read_dynptr_bytes": reserve() + "r0 = *(u64 *)(r10 - 16)\n" + release() + OK,
    "ringbuf_helper_reads_dynptr": reserve() + """
r1 = 0x5eed ll
r2 = r10
r2 += -16
r3 = 16
r4 = 0
call 130
""" + release() + OK,
    "ringbuf_helper_var_off_read": reserve() + """
call 7
r0 &= 8
r2 = r10
r2 += -24
r2 += r0
r1 = 0x5eed ll
r3 = 8
r4 = 0
call 130
""" + release() + OK,
    "ringbuf_var_offset": """
r7 = 0
*(u64 *)(r10 - 8) = r7
call 7
r0 &= 8
r4 = r10
r4 += -24
r4 += r0
r1 = 0x5eed ll
r2 = 8
r3 = 0
call 198
""" + OK,
    "ringbuf_submit_uninit": release() + OK,
    "ringbuf_submit_spilled_ringbuf_ptr": """
r1 = 0x5eed ll
r2 = 8
r3 = 0
call 131
if r0 == 0 goto +7
*(u64 *)(r10 - 16) = r0
r1 = r10
r1 += -16
r2 = 0
call 199
r0 = 0
exit
r0 = 0
exit
""",
    "ringbuf_submit_scalar": "r1 = 0\nr2 = 0\ncall 199\n" + OK,
    "ringbuf_submit_off": reserve() + "r1 = r10\nr1 += -15\nr2 = 0\ncall 199\n" + OK,
    # slices: bpf_dynptr_data
    "ringbuf_data_rw": reserve() + data() + """
if r0 == 0 goto +3
r1 = 7
*(u64 *)(r0 + 0) = r1
r1 = *(u64 *)(r0 + 0)
""" + release() + OK,
    "ringbuf_data_no_null_check": reserve() + data() + "r1 = *(u64 *)(r0 + 0)\n" + release() + OK,
    "ringbuf_data_oob": reserve() + data() + "if r0 == 0 goto +1\nr1 = *(u64 *)(r0 + 4)\n"
                        + release() + OK,
    "ringbuf_data_after_submit": reserve() + data() + "r7 = r0\n" + release() + """
if r7 == 0 goto +1
r1 = *(u64 *)(r7 + 0)
""" + OK,
    "ringbuf_data_spilled_after_submit": reserve() + data() + "*(u64 *)(r10 - 24) = r0\n"
                                         + release() + """
r7 = *(u64 *)(r10 - 24)
if r7 == 0 goto +1
r1 = *(u64 *)(r7 + 0)
""" + OK,
    "data_size_not_const": reserve() + "call 7\nr3 = r0\nr3 &= 7\nr1 = r10\nr1 += -16\nr2 = 0\ncall 203\n"
                           + release() + OK,
    "data_of_uninit": data() + OK,
    # local dynptrs: bpf_dynptr_from_mem over a map value
    "local_read": LOOKUP + from_mem() + read() + OK,
    "local_write": LOOKUP + from_mem() + write() + OK,
    "local_data": LOOKUP + from_mem() + data() + "if r0 == 0 goto +1\nr1 = *(u64 *)(r0 + 0)\n" + OK,
    "local_reinit": LOOKUP + from_mem() + from_mem() + read() + OK,
    "local_overwritten_then_read": LOOKUP + from_mem() + "r1 = 0\n*(u64 *)(r10 - 8) = r1\n" + read() + OK,
    "local_overwritten_slice": LOOKUP + from_mem() + data() + "r7 = r0\nr1 = 0\n*(u64 *)(r10 - 16) = r1\n"
                               + "if r7 == 0 goto +1\nr1 = *(u64 *)(r7 + 0)\n" + OK,
    "local_submit": LOOKUP + from_mem() + release() + OK,
    "local_from_stack": "r1 = r10\nr1 += -32\nr2 = 8\nr3 = 0\nr4 = r10\nr4 += -16\ncall 197\n" + OK,
    "local_read_uninit": read() + OK,
    "local_read_into_itself": LOOKUP + from_mem() + read(dst=-16) + OK,
    "local_read_scalar_dynptr": LOOKUP + "r1 = r10\nr1 += -32\nr2 = 8\nr3 = 0\nr4 = 0\nr5 = 0\ncall 201\n" + OK,
    "local_size_too_big": LOOKUP + from_mem(size=65) + OK,
    "local_branches": LOOKUP + """
call 7
if r0 > 100 goto +7
""" + from_mem().strip() + """
goto +6
""" + from_mem(size=16).strip() + "\n" + read() + OK,
    "local_partial_overwrite": LOOKUP + from_mem() + "r1 = 1\n*(u8 *)(r10 - 9) = r1\n" + read() + OK,
    "local_overlapping_reinit": LOOKUP + from_mem() + from_mem(off=-24) + read(dst=-48) + OK,
    "local_overlapping_reinit_new_ok": LOOKUP + from_mem() + from_mem(off=-24) + read(dst=-48, src=-24) + OK,
    "local_spilled_slice_overwritten": LOOKUP + from_mem() + data() + """
*(u64 *)(r10 - 32) = r0
r1 = 0
*(u64 *)(r10 - 16) = r1
r7 = *(u64 *)(r10 - 32)
if r7 == 0 goto +1
r1 = *(u64 *)(r7 + 0)
""" + OK,
    "local_bytes_after_destroy": LOOKUP + from_mem() + "r1 = 1\n*(u8 *)(r10 - 9) = r1\nr0 = *(u64 *)(r10 - 16)\n"
                                 + OK,
    "local_data_zero_size": LOOKUP + from_mem() + data(size="0") + OK,
    "local_read_partly_into_itself": LOOKUP + from_mem() + read(dst=-24, length=16) + OK,
    "local_read_var_len": LOOKUP + from_mem() + """
call 7
r2 = r0
r2 &= 7
r1 = r10
r1 += -32
r3 = r10
r3 += -16
r4 = 0
r5 = 0
call 201
""" + OK,
    "ringbuf_at_stack_bottom": reserve(off=-512) + release(off=-512) + OK,
    "ringbuf_below_stack": reserve(off=-520) + OK,
    "ringbuf_branch_join": """
call 7
if r0 > 10 goto +8
""" + reserve().strip() + """
goto +7
""" + reserve(size=16).strip() + "\n" + release() + OK,
    "ringbuf_branch_local_or_ringbuf": LOOKUP + """
call 7
if r0 > 10 goto +8
""" + reserve().strip() + """
goto +6
""" + from_mem().strip() + "\n" + read() + OK,
    "local_bounded_loop": LOOKUP + from_mem(size=16) + "r7 = 0\n" + read().replace("r4 = 0\n", "r4 = r7\n")
                          + "r7 += 1\nif r7 < 8 goto -10\n" + OK,
    "ringbuf_bounded_loop": "r7 = 0\n" + reserve() + release() + "r7 += 1\nif r7 < 3 goto -13\n" + OK,
    "subprog_submits_callers_dynptr": reserve() + """
r1 = r10
r1 += -16
call pc+2
r0 = 0
exit
r2 = 0
call 199
r0 = 0
exit
""",
    "subprog_reserves_into_caller": """
r4 = r10
r4 += -16
call pc+6
r1 = r10
r1 += -16
r2 = 0
call 199
r0 = 0
exit
r1 = 0x5eed ll
r2 = 8
r3 = 0
call 198
r0 = 0
exit
""",
}

# bpf_user_ringbuf_drain(map, callback, ctx, flags) and its callback body
DRAIN_HEAD = """
r1 = 0
*(u64 *)(r10 - 8) = r1
r1 = 0x0b1 ll
r2 = subprog[cb]
r3 = r10
r3 += -8
r4 = 0
call 209
r0 = 0
exit
cb:
"""

DRAIN_PROGRAMS: dict[str, str] = {
    "drain_ok": DRAIN_HEAD + "r0 = 0\nexit\n",
    "drain_read": DRAIN_HEAD + """
r3 = r1
r1 = r10
r1 += -8
r2 = 8
r4 = 0
r5 = 0
call 201
r0 = 0
exit
""",
    "drain_data": DRAIN_HEAD + """
r2 = 0
r3 = 8
call 203
if r0 == 0 goto +1
r1 = *(u64 *)(r0 + 0)
r0 = 0
exit
""",
    "drain_write": DRAIN_HEAD + """
r6 = r2
r1 = r1
r2 = 0
r3 = r6
r4 = 8
r5 = 0
call 202
r0 = 0
exit
""",
    "drain_submit_const": DRAIN_HEAD + "r2 = 0\ncall 199\nr0 = 0\nexit\n",
    "drain_deref_dynptr": DRAIN_HEAD + "r0 = *(u64 *)(r1 + 0)\nr0 = 0\nexit\n",
    "drain_modified_dynptr": DRAIN_HEAD + """
r1 += 8
r3 = r1
r1 = r10
r1 += -8
r2 = 8
r4 = 0
r5 = 0
call 201
r0 = 0
exit
""",
    "drain_spilled_dynptr_ptr": DRAIN_HEAD + """
*(u64 *)(r10 - 16) = r1
r3 = *(u64 *)(r10 - 16)
r1 = r10
r1 += -8
r2 = 8
r4 = 0
r5 = 0
call 201
r0 = 0
exit
""",
    "drain_dynptr_ptr_as_mem": DRAIN_HEAD + """
r2 = r1
r1 = 0x5eed ll
r3 = 8
r4 = 0
call 130
r0 = 0
exit
""",
    "drain_ctx_is_callers_stack": DRAIN_HEAD + "r1 = 1\n*(u64 *)(r2 + 0) = r1\nr0 = 0\nexit\n",
    "drain_null_ctx": DRAIN_HEAD.replace("r3 = r10\nr3 += -8\n", "r3 = 0\n") + "r0 = 0\nexit\n",
    "drain_bad_flags_still_verifies": DRAIN_HEAD.replace("r4 = 0\n", "r4 = 7\n") + "r0 = 0\nexit\n",
    "drain_bad_ret": DRAIN_HEAD + "r0 = 2\nexit\n",
    "drain_ret_one": DRAIN_HEAD + "r0 = 1\nexit\n",
    "drain_wrong_map": DRAIN_HEAD.replace("0x0b1", "0x5eed") + "r0 = 0\nexit\n",
    "drain_from_mem_into_cb_dynptr": DRAIN_HEAD + """
r4 = r1
r1 = r10
r1 += -8
r2 = 8
r3 = 0
call 197
r0 = 0
exit
""",
}

# bpf_loop(4, callback, &dynptr at fp-16, 0) after HEAD; the callback gets it in R2
def loop_with(head: str, body: str) -> str:
    return head + """
r1 = 4
r2 = subprog[cb]
r3 = r10
r3 += -16
r4 = 0
call 181
""" + TAIL.get(head, "") + "r0 = 0\nexit\ncb:\n" + body


TAIL = {reserve(): release().strip() + "\n"}
LOOP_PROGRAMS: dict[str, str] = {
    "loop_cb_reads_callers_dynptr": loop_with(LOOKUP + from_mem(), """
r3 = r2
r1 = r10
r1 += -8
r2 = 8
r4 = 0
r5 = 0
call 201
r0 = 0
exit
"""),
    "loop_cb_submits_callers_ringbuf": loop_with(reserve(), "r1 = r2\nr2 = 0\ncall 199\nr0 = 0\nexit\n"),
    "loop_cb_overwrites_callers_ringbuf": loop_with(reserve(), "r1 = 0\n*(u64 *)(r2 + 0) = r1\nr0 = 0\nexit\n"),
    "loop_cb_overwrites_callers_local": loop_with(LOOKUP + from_mem(), "r1 = 0\n*(u64 *)(r2 + 8) = r1\nr0 = 0\nexit\n"),
    "loop_cb_own_ringbuf_dynptr": loop_with("", reserve().replace("r4 = r10\nr4 += -16", "r4 = r10\nr4 += -16")
                                            + release() + "r0 = 0\nexit\n"),
    "loop_cb_leaks_ringbuf_dynptr": loop_with("", reserve() + "r0 = 0\nexit\n"),
}
PROGRAMS.update(LOOP_PROGRAMS)

LOG2 = ["ringbuf_submit", "ringbuf_data_rw", "ringbuf_two_dynptrs", "local_data", "local_reinit",
        "local_overwritten_slice", "local_branches", "ringbuf_leak", "ringbuf_branch_join",
        "ringbuf_branch_local_or_ringbuf", "local_overlapping_reinit", "subprog_submits_callers_dynptr",
        "local_spilled_slice_overwritten", "loop_cb_reads_callers_dynptr", "loop_cb_own_ringbuf_dynptr",
        "local_bounded_loop", "ringbuf_bounded_loop", "ringbuf_overwrite_referenced", "local_read_into_itself",
        "ringbuf_misaligned", "local_partial_overwrite", "subprog_reserves_into_caller"]
# drain_data is left out: its log differs only by pybpf's conservative precision marking of
# pruned callback iterations (callbacks.py force_loop_precision), not by anything dynptr
LOG2_DRAIN = ["drain_ok", "drain_read", "drain_submit_const", "drain_spilled_dynptr_ptr", "drain_write"]



def _build(text: str, fds: dict[int, int]) -> tuple[list[Insn], int]:
    """The program with map fds patched in, and the callback's instruction index (-1)."""
    return patch_map_marks(assemble(text), fds), callback_slot(text)


def _maps_of(text: str) -> list[tuple[int, tuple[int, int, int, int, bytes]]]:
    """The maps a program names (a user ring buffer only where one is used)."""
    return [(mark, geo) for mark, geo in MAPS.items() if mark != URB_MARK or f"{mark:#05x} ll" in text]


def kernel_load(kernel: ModuleType, fds: Any, text: str, level: int = 1, prog_type: int = XDP) -> tuple[bool, str]:
    mfds = {mark: fds.map_create(t, k, v, n, name=name) for mark, (t, k, v, n, name) in _maps_of(text)}
    insns, cb_slot = _build(text, mfds)
    extra: dict[str, Any] = {}
    btf_fd = -1
    if cb_slot >= 0:
        btf = kernel.btf_load(callback_btf(("ptr", "ptr")))
        assert btf.ok, btf.log
        btf_fd = btf.fd
        extra = callback_func_info(btf_fd, cb_slot)
    try:
        res = verifier_diff.kernel_load(fds, prog_type, insns, log_level=level, close=False, **extra)
    finally:
        if btf_fd >= 0:
            os.close(btf_fd)
    return res.ok, res.log


def pybpf_load(text: str, level: int = 1, prog_type: int = XDP) -> tuple[bool, str]:
    k = Kernel()
    mfds = {mark: k.map_create(t, kk, v, n, name=name).fd for mark, (t, kk, v, n, name) in _maps_of(text)}
    res = verifier_diff.pybpf_load(k, prog_type, _build(text, mfds)[0], log_level=level)
    return res.ok, res.log


@pytest.fixture(scope="module")
def user_ringbuf() -> Iterator[None]:
    """BPF_MAP_TYPE_USER_RINGBUF for pybpf: the real one if maps/ has it, else the ring
    buffer's ops registered under type 31 for the duration of this module."""
    from pybpf.maps import ops as map_ops

    if map_ops.find_map_ops(USER_RINGBUF) is not None:
        yield
        return
    from pybpf.maps.type_ringbuf import RingBufOps

    class UserRingBufOps(RingBufOps):
        map_type = USER_RINGBUF

    map_ops._REGISTRY[USER_RINGBUF] = UserRingBufOps()
    try:
        yield
    finally:
        map_ops._REGISTRY.pop(USER_RINGBUF, None)


ALL = {**PROGRAMS, **DRAIN_PROGRAMS}


@pytest.mark.parametrize("name", sorted(ALL))
def test_dynptr_verdict_and_message_match_kernel(kernel: ModuleType, kernel_fds: Any, user_ringbuf: None,
                                                 name: str) -> None:
    text = ALL[name]
    want = load_outcome(*kernel_load(kernel, kernel_fds, text))
    got = load_outcome(*pybpf_load(text))
    assert got == want, text


@pytest.mark.parametrize("name", LOG2 + LOG2_DRAIN)
def test_dynptr_level2_log_matches_kernel(kernel: ModuleType, kernel_fds: Any, user_ringbuf: None,
                                          name: str) -> None:
    text = ALL[name]
    want = normalise_map_addrs(kernel_load(kernel, kernel_fds, text, level=2)[1])
    got = normalise_map_addrs(pybpf_load(text, level=2)[1])
    assert got == want


# the dynptr helpers come with the base helpers: every program type that has those
OTHER_TYPES = {"socket_filter": 1, "kprobe": 2, "sched_cls": 3, "tracepoint": 5, "raw_tracepoint": 17}


@pytest.mark.parametrize("prog_type", sorted(OTHER_TYPES), ids=str)
@pytest.mark.parametrize("name", ["ringbuf_data_rw", "local_read", "ringbuf_leak", "drain_read"])
def test_dynptr_helpers_in_other_program_types(kernel: ModuleType, kernel_fds: Any, user_ringbuf: None,
                                               name: str, prog_type: str) -> None:
    text = ALL[name]
    pt = OTHER_TYPES[prog_type]
    want = load_outcome(*kernel_load(kernel, kernel_fds, text, prog_type=pt))
    assert load_outcome(*pybpf_load(text, prog_type=pt)) == want


def test_ringbuf_dynptr_slot_printing() -> None:
    """Without the kernel: the slot line names type, id, reference and the first-slot flag."""
    ok, log = pybpf_load(reserve() + release() + OK, level=2)
    assert ok
    assert "fp-16=dynptr_ringbuf(id=1,ref_id=2,dynptr_id=1) refs=2" in log


def test_unreleased_ringbuf_dynptr_is_rejected() -> None:
    ok, msg, _ = load_outcome(*pybpf_load(reserve() + OK))
    assert (ok, msg) == (False, "BPF_EXIT instruction in main prog would lead to reference leak")


def test_referenced_dynptr_cannot_be_overwritten() -> None:
    ok, msg, _ = load_outcome(*pybpf_load(PROGRAMS["ringbuf_partial_overwrite"]))
    assert (ok, msg) == (False, "cannot overwrite referenced dynptr")
