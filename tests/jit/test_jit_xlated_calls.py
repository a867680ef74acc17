"""Programs as the fixups leave them run natively: internal call targets, r11, div guards.

``do_misc_fixups`` turns ``bpf_map_lookup_elem`` on a hash map into ``call
__htab_map_lookup_elem`` plus the value offset, other map helpers into calls of the map
type's own function (:mod:`pybpf.helpers.internal`), and division/modulo by a register
into guarded sequences using ``BPF_REG_AX``. Loaded through ``BPF_PROG_LOAD`` on a JIT
instance, such a program must compile with no call back into Python and compute what the
interpreter instance computes.
"""

from __future__ import annotations

import pytest

from pybpf.isa.insn import Insn, ld_imm64
from pybpf.kernel import Kernel
from pybpf.program import Program

pytest.importorskip("llvmlite")

SOCKET_FILTER = 1
HASH, ARRAY, PERCPU_HASH, LRU_HASH = 1, 2, 5, 9
EXIT = Insn(0x95, 0, 0, 0, 0)


def prog(map_fd: int) -> list[Insn]:
    """update(key 3, 40), update(key 5, 7), delete(key 5), r0 = *lookup(key 3) / skb->len
    % (r0 | 1), or 99 for a miss."""
    def key(k: int) -> list[Insn]:
        return [Insn(0x62, 10, 0, -4, k), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4)]

    def update(k: int, v: int) -> list[Insn]:
        return [*ld_imm64(1, map_fd, 1), *key(k), Insn(0x7A, 10, 0, -16, v),
                Insn(0xBF, 3, 10, 0, 0), Insn(0x07, 3, 0, 0, -16), Insn(0xB7, 4, 0, 0, 0),
                Insn(0x85, 0, 0, 0, 2)]

    return [
        Insn(0x61, 6, 1, 0, 0),  # r6 = skb->len
        *update(3, 40), *update(5, 7),
        *ld_imm64(1, map_fd, 1), *key(5), Insn(0x85, 0, 0, 0, 3),
        *ld_imm64(1, map_fd, 1), *key(3), Insn(0x85, 0, 0, 0, 1),
        Insn(0x55, 0, 0, 2, 0), Insn(0xB7, 0, 0, 0, 99), EXIT,
        Insn(0x79, 7, 0, 0, 0),  # r7 = value (40)
        Insn(0xBF, 0, 6, 0, 0), Insn(0x3F, 0, 7, 0, 0),  # r0 = len / r7 (guarded)
        Insn(0xBF, 8, 6, 0, 0), Insn(0x9F, 8, 7, 0, 0),  # r8 = len % r7
        Insn(0x67, 0, 0, 0, 8), Insn(0x0F, 0, 8, 0, 0), EXIT,
    ]


@pytest.mark.parametrize("map_type", [HASH, ARRAY, PERCPU_HASH, LRU_HASH])
def test_fixed_up_map_calls_run_natively_and_agree(map_type: int) -> None:
    results = []
    for jit in (0, 1):
        k = Kernel(sysctls={"bpf_jit_enable": jit})
        m = k.map_create(map_type, 4, 8, 16)
        p = Program.load(k, SOCKET_FILTER, prog(m.fd))
        kprog = k.progs()[-1]
        assert kprog.jited == bool(jit)
        if jit:
            assert not kprog.bpf_func.code.translation.uses_bridge, "a call went to Python"
        runs = [p.test_run(bytes(n)).retval for n in (14, 64, 100, 1500)]
        keys = sorted(bytes(kk) for kk in m.keys())  # noqa: SIM118 (a handle, not a dict)
        results.append((runs, keys))
    assert results[1] == results[0]
    skb_len = 64 - 14  # a socket filter's skb->len starts after the Ethernet header
    assert results[0][0][1] == ((skb_len // 40) << 8) + skb_len % 40


@pytest.mark.parametrize("map_type", [HASH, ARRAY, PERCPU_HASH, LRU_HASH])
def test_map_type_call_targets_get_the_generic_helpers_native_code(map_type: int) -> None:
    """``call htab_map_update_elem`` & co. (ids from ``map_op_call_id``) as the fixups
    write them: native, and the same results as the interpreter running the Python
    implementations of those ids."""
    internal = pytest.importorskip("pybpf.helpers.internal")
    from pybpf.helpers.maps import MAP_HELPERS
    from pybpf.jit import compile_program
    from pybpf.maps.api import create_map
    from pybpf.runtime.interpreter import CompiledProgram

    helpers = {**{f: p.impl for f, p in MAP_HELPERS.items()}, **internal.IMPLS}

    def op(helper: int) -> int:
        fid = internal.map_op_call_id(map_type, helper)
        return helper if fid is None else int(fid)

    def program(addr: int) -> list[Insn]:
        # update(r1 -> r2), delete(r1 + 1), r0 = lookup(r1) ? *value : -1
        return [Insn(0x63, 10, 1, -4, 0), Insn(0x7B, 10, 2, -16, 0), Insn(0xBF, 6, 1, 0, 0),
                *ld_imm64(1, addr, 1), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
                Insn(0xBF, 3, 10, 0, 0), Insn(0x07, 3, 0, 0, -16), Insn(0xB7, 4, 0, 0, 0),
                Insn(0x85, 0, 0, 0, op(2)),
                Insn(0x07, 6, 0, 0, 1), Insn(0x63, 10, 6, -4, 0),
                *ld_imm64(1, addr, 1), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
                Insn(0x85, 0, 0, 0, op(3)),
                Insn(0x07, 6, 0, 0, -1), Insn(0x63, 10, 6, -4, 0),
                *ld_imm64(1, addr, 1), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
                Insn(0x85, 0, 0, 0, op(1)), Insn(0x15, 0, 0, 2, 0), Insn(0x79, 0, 0, 0, 0),
                EXIT, Insn(0xB7, 0, 0, 0, -1), EXIT]

    maps = [create_map(map_type, 4, 8, 16, 0x40 if map_type != ARRAY else 0) for _ in "ab"]
    interp = CompiledProgram(program(maps[0].addr), helpers=helpers)
    jit = compile_program(program(maps[1].addr), helpers=helpers)
    assert any(op(h) != h for h in (1, 2, 3)), "no map-type call target for this type"
    assert not jit.code.translation.uses_bridge
    for k in (0, 1, 2, 3, 15, 16, 40, 1):
        assert jit.run(k, k * 11, cpu=0) == interp.run(k, k * 11, cpu=0), k
    for m in maps:
        m.ops.map_free(m)
