"""Inlined lookups of ARRAY_OF_MAPS, HASH_OF_MAPS and XSKMAP (their ``map_gen_lookup``).

``array_of_map_gen_lookup`` loads the inner map pointer from the slots at ``map + 312``,
``htab_of_map_gen_lookup`` calls ``__htab_map_lookup_elem`` and loads it from the
element's value, ``xsk_map_gen_lookup`` indexes the socket table at ``map + 304``. The
rewritten program must equal the live kernel's (map addresses aside) and run on both tiers
to the retval the kernel's test_run gives.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest

from pybpf.helpers.internal import IMPLS as INTERNAL_IMPLS
from pybpf.helpers.maps import MAP_HELPERS
from pybpf.isa.insn import Insn, encode, ld_imm64
from pybpf.jit import compile_program
from pybpf.maps.api import create_map
from pybpf.runtime.interpreter import CompiledProgram
from pybpf.testing.xlated import comparable, verified_with_map

for _mod in ("type_array", "type_array_of_maps", "type_hash_of_maps", "type_xskmap"):
    importlib.import_module(f"pybpf.maps.{_mod}")

XDP = 6
ARRAY, ARRAY_OF_MAPS, HASH_OF_MAPS, XSKMAP = 2, 12, 13, 17
EXIT = Insn(0x95, 0, 0, 0, 0)
HELPERS = {**{fid: proto.impl for fid, proto in MAP_HELPERS.items()}, **INTERNAL_IMPLS}
OUTER_FD = 100
PKT = bytes(64)


def prog_two_level(fd: int, outer_key: int, inner_key: int) -> list[Insn]:
    """``inner = lookup(outer, key); v = lookup(inner, key2); return v ? *v : 1 or 2``."""
    return [Insn(0x62, 10, 0, -4, outer_key), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
            *ld_imm64(1, fd, 1), Insn(0x85, 0, 0, 0, 1),
            Insn(0x55, 0, 0, 2, 0), Insn(0xB7, 0, 0, 0, 1), EXIT,  # no inner map: 1
            Insn(0xBF, 1, 0, 0, 0),
            # at fp-12 (not 8-aligned) the key is no tracked constant: 6.18 would drop the
            # NULL check of an in-bounds constant-key array lookup
            Insn(0x62, 10, 0, -12, inner_key), Insn(0xBF, 2, 10, 0, 0),
            Insn(0x07, 2, 0, 0, -12),
            Insn(0x85, 0, 0, 0, 1),
            Insn(0x55, 0, 0, 2, 0), Insn(0xB7, 0, 0, 0, 2), EXIT,  # no value: 2
            Insn(0x61, 0, 0, 0, 0), EXIT]


def prog_xsk(fd: int, key: int) -> list[Insn]:
    """``return lookup(xskmap, key) ? 3 : 4``."""
    return [Insn(0x62, 10, 0, -4, key), Insn(0xBF, 2, 10, 0, 0), Insn(0x07, 2, 0, 0, -4),
            *ld_imm64(1, fd, 1), Insn(0x85, 0, 0, 0, 1),
            Insn(0x15, 0, 0, 2, 0), Insn(0xB7, 0, 0, 0, 3), EXIT, Insn(0xB7, 0, 0, 0, 4), EXIT]


def pybpf_outer(outer_type: int, value: int) -> Any:
    """An outer map holding, at key 1, an inner array whose value 3 is ``value``."""
    template = create_map(ARRAY, 4, 4, 4)
    inner = create_map(ARRAY, 4, 4, 4)
    inner.ops.sys_update(inner, (3).to_bytes(4, "little"), value.to_bytes(4, "little"), 0)
    outer = create_map(outer_type, 4, 4, 4, inner_map=template)
    outer.ops.put_object(outer, (1).to_bytes(4, "little"), inner, 0)
    outer._test_keep = inner  # type: ignore[attr-defined]
    return outer


def kernel_run(kernel: ModuleType, outer_type: int, value: int, build: Any,
               *keys: int) -> tuple[list[Any], int]:
    """The kernel's xlated program and test_run retval for the same maps."""
    with kernel.KernelFds() as fds:
        template = fds.add(kernel.map_create(ARRAY, 4, 4, 4))
        inner = fds.add(kernel.map_create(ARRAY, 4, 4, 4))
        kernel.map_update(inner, (3).to_bytes(4, "little"), value.to_bytes(4, "little"))
        outer = fds.add(kernel.map_create(outer_type, 4, 4, 4, inner_map_fd=template))
        kernel.map_update(outer, (1).to_bytes(4, "little"), inner.to_bytes(4, "little"))
        res = fds.prog_load(XDP, encode(build(outer, *keys)))
        assert res.ok, res.log
        run = kernel.prog_test_run(res.fd, PKT)
        assert run.errno == 0
        return kernel.prog_xlated(res.fd), run.retval


def run_tier(tier: str, insns: list[Insn]) -> int:
    prog = (CompiledProgram(insns, helpers=HELPERS) if tier == "interp"
            else compile_program(insns, helpers=HELPERS))
    return int(prog.run()) & 0xFFFFFFFF


def xlated_(bmap: Any, insns: list[Insn]) -> list[Insn]:
    return verified_with_map(bmap, insns, XDP, OUTER_FD)


@pytest.mark.parametrize("outer_type", [ARRAY_OF_MAPS, HASH_OF_MAPS])
def test_map_in_map_lookup_is_inlined(outer_type: int) -> None:
    ours = xlated_(pybpf_outer(outer_type, 7), prog_two_level(OUTER_FD, 1, 3))
    assert not any(i.code == 0x85 and i.imm == 1 for i in ours[:12])
    assert any(i.code == 0x79 and i.dst == 0 and i.src == 0 for i in ours)  # inner map load


@pytest.mark.parametrize("outer_type", [ARRAY_OF_MAPS, HASH_OF_MAPS])
@pytest.mark.parametrize("keys", [(1, 3), (0, 3), (2, 3), (1, 2), (1, 4), (7, 3)])
def test_map_in_map_equals_kernel(kernel: ModuleType, outer_type: int,
                                  keys: tuple[int, int]) -> None:
    theirs, retval = kernel_run(kernel, outer_type, 7, prog_two_level, *keys)
    insns = xlated_(pybpf_outer(outer_type, 7), prog_two_level(OUTER_FD, *keys))
    assert comparable(insns) == comparable(theirs)
    for tier in ("interp", "jit"):
        assert run_tier(tier, insns) == retval, tier


@pytest.mark.parametrize("tier", ["interp", "jit"])
def test_array_of_maps_slot_change_is_seen(tier: str) -> None:
    """The inlined lookup reads the slots live: a replaced inner map is what runs next."""
    outer = pybpf_outer(ARRAY_OF_MAPS, 5)
    insns = xlated_(outer, prog_two_level(OUTER_FD, 1, 3))
    assert run_tier(tier, insns) == 5
    other = create_map(ARRAY, 4, 4, 4)
    other.ops.sys_update(other, (3).to_bytes(4, "little"), (9).to_bytes(4, "little"), 0)
    outer.ops.put_object(outer, (1).to_bytes(4, "little"), other, 0)
    assert run_tier(tier, insns) == 9
    outer.ops.sys_delete(outer, (1).to_bytes(4, "little"))
    assert run_tier(tier, insns) == 1


@pytest.mark.parametrize("key", [0, 3, 64])
def test_xskmap_lookup_equals_kernel(kernel: ModuleType, key: int) -> None:
    with kernel.KernelFds() as fds:
        fd = fds.add(kernel.map_create(XSKMAP, 4, 4, 4))
        res = fds.prog_load(XDP, encode(prog_xsk(fd, key)))
        assert res.ok, res.log
        theirs = kernel.prog_xlated(res.fd)
        retval = kernel.prog_test_run(res.fd, PKT).retval
    insns = xlated_(create_map(XSKMAP, 4, 4, 4), prog_xsk(OUTER_FD, key))
    assert comparable(insns) == comparable(theirs)
    for tier in ("interp", "jit"):
        assert run_tier(tier, insns) == retval == 4, tier
