"""STACK_TRACE maps: creation rules and user-space commands vs Linux; bpf_get_stackid rules."""

from __future__ import annotations

import struct
from types import ModuleType

import pytest

import pybpf.uapi as U
from pybpf.errors import BpfError
from pybpf.helpers.maps import MAP_HELPERS
from pybpf.isa.insn import Insn
from pybpf.maps import elem_cmds
from pybpf.maps.api import Map, create_map
from pybpf.runtime.context import RunContext
from pybpf.runtime.interpreter import CompiledProgram

ST = U.BPF_MAP_TYPE_STACK_TRACE
BUILD_ID = U.BPF_F_STACK_BUILD_ID
M64 = (1 << 64) - 1

CREATE = [
    (4, 8, 4, 0), (4, 16, 4, 0), (4, 12, 4, 0), (4, 4, 4, 0), (8, 8, 4, 0), (4, 0, 4, 0),
    (4, 8, 0, 0), (4, 127 * 8, 4, 0), (4, 128 * 8, 4, 0), (4, 8, 4, U.BPF_F_NO_PREALLOC),
    (4, 32, 4, BUILD_ID), (4, 64, 4, BUILD_ID), (4, 40, 4, BUILD_ID), (4, 24, 4, BUILD_ID),
    (4, 127 * 32, 4, BUILD_ID), (4, 128 * 32, 4, BUILD_ID), (4, 8, 4, U.BPF_F_RDONLY),
    (4, 8, 4, U.BPF_F_ZERO_SEED), (4, 8, 4, U.BPF_F_MMAPABLE), (4, 8, 4, U.BPF_F_RDONLY_PROG),
]


@pytest.mark.parametrize("geo", CREATE, ids=str)
def test_create_rules_match_kernel(kernel: ModuleType, geo: tuple[int, int, int, int]) -> None:
    ks, vs, n, flags = geo
    fd, kerr = kernel.map_create_raw(ST, ks, vs, n, flags)
    if fd >= 0:
        kernel.close(fd)
    try:
        create_map(ST, ks, vs, n, flags)
        perr = 0
    except BpfError as exc:
        perr = exc.errno
    assert perr == kerr, (geo, kerr, perr)


def test_userspace_commands_on_empty_map_match_kernel(kernel: ModuleType) -> None:
    fd = kernel.map_create(ST, 4, 16, 4)
    bmap = create_map(ST, 4, 16, 4)

    def ours(fn: object, *args: object) -> int:
        try:
            fn(bmap, *args)  # type: ignore[operator]
        except BpfError as exc:
            return exc.errno
        return 0

    try:
        for key in (0, 3, 4, 1000):
            kb = struct.pack("<I", key)
            assert kernel.map_lookup_raw(fd, kb, 16)[0] == ours(elem_cmds.map_lookup_elem, kb)
            assert kernel.map_delete_raw(fd, kb) == ours(elem_cmds.map_delete_elem, kb)
            assert kernel.map_update_raw(fd, kb, bytes(16)) == \
                ours(elem_cmds.map_update_elem, kb, bytes(16))
            assert kernel.map_get_next_key_raw(fd, kb, 4)[0] == \
                ours(elem_cmds.map_get_next_key, kb)
        assert kernel.map_get_next_key_raw(fd, None, 4)[0] == \
            ours(elem_cmds.map_get_next_key, None)
    finally:
        kernel.close(fd)


# ---------------------------------------------------------------- bpf_get_stackid
HELPERS = {f: p.impl for f, p in MAP_HELPERS.items()}


def stackid_prog(map_addr: int, flags: int) -> CompiledProgram:
    return CompiledProgram([
        Insn(0x18, 2, 1, 0, map_addr & 0xFFFFFFFF), Insn(0, 0, 0, 0, map_addr >> 32),
        Insn(0xB7, 3, 0, 0, flags),
        Insn(0x85, 0, 0, 0, U.BPF_FUNC_get_stackid),
        Insn(0x95, 0, 0, 0, 0)], helpers=HELPERS)


def run(prog: CompiledProgram, ips: list[int] | None = None, user: list[int] | None = None
        ) -> int:
    ctx = RunContext()
    if ips is not None:
        ctx.data["stack_ips"] = ips
    if user is not None:
        ctx.data["user_stack_ips"] = user
    r0 = prog.run(ctx=ctx)
    return r0 - (1 << 64) if r0 >> 63 else r0


def test_get_stackid_stores_the_host_stack_and_userspace_reads_it() -> None:
    m = Map.create(ST, 4, 4 * 8, 64)
    prog = stackid_prog(m.bmap.addr, 0)
    trace = [0xFFFF0001, 0xFFFF0002, 0xFFFF0003]
    sid = run(prog, trace)
    assert sid >= 0
    assert run(prog, trace) == sid  # the same trace: the same id
    assert m[sid] == struct.pack("<4Q", *trace, 0)  # zero-padded after the trace
    assert list(m.keys()) == [sid]
    # skip=1 drops the innermost frame; traces longer than value_size/8 are cut
    skip_id = run(stackid_prog(m.bmap.addr, 1), trace)
    assert m[skip_id][:16] == struct.pack("<2Q", *trace[1:])
    long_id = run(prog, list(range(1, 10)))
    assert m[long_id] == struct.pack("<4Q", 1, 2, 3, 4)
    del m[sid]
    with pytest.raises(KeyError):
        m[sid]


def test_get_stackid_bucket_rules() -> None:
    """One bucket: a different trace is EEXIST, REUSE_STACKID replaces, FAST_CMP trusts
    a hash match, skip beyond the trace is EFAULT, unknown flags EINVAL."""
    m = Map.create(ST, 4, 16, 1)
    addr = m.bmap.addr
    assert run(stackid_prog(addr, 0), [1, 2]) == 0
    assert run(stackid_prog(addr, 0), [3, 4]) == -17  # EEXIST
    assert run(stackid_prog(addr, U.BPF_F_REUSE_STACKID), [3, 4]) == 0
    assert m[0] == struct.pack("<2Q", 3, 4)
    assert run(stackid_prog(addr, U.BPF_F_FAST_STACK_CMP), [3, 4]) == 0
    assert run(stackid_prog(addr, 2), [3, 4]) == -14  # EFAULT: nothing left after skip
    assert run(stackid_prog(addr, 1 << 11), [3, 4]) == -22
    assert run(stackid_prog(addr, U.BPF_F_USER_STACK), None, user=[]) == -14
    assert run(stackid_prog(addr, U.BPF_F_USER_STACK | U.BPF_F_REUSE_STACKID),
               None, user=[9, 8]) == 0
    assert m[0] == struct.pack("<2Q", 9, 8)


def test_get_stackid_defaults_to_the_python_call_stack() -> None:
    m = Map.create(ST, 4, 127 * 8, 256)
    prog = stackid_prog(m.bmap.addr, 0)

    def site_a() -> int:
        return run(prog)

    def site_b() -> int:
        return run(prog)

    a1, a2 = (site_a() for _ in range(2))  # the same call path twice
    b = site_b()
    assert a1 >= 0 and a1 == a2 and b >= 0
    assert m[a1] != m[b]  # a different Python call path is a different trace
