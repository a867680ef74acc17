"""``func_info``/``line_info`` in prog info describe the xlated program, as the kernel's
do after its rewrites (ctx conversion grows the program, dead-code removal shrinks it and
drops the line info of removed instructions): shipped examples vs the live kernel."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import pybpf.skel as skel
from pybpf.kernel import Kernel
from pybpf.uapi import BPF_OBJ_GET_INFO_BY_FD, bpf_attr, bpf_prog_info

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = sorted([*ROOT.glob("examples/*.o"), *ROOT.glob("bench/progs/*.o")])


def _info_arrays(bpf: Callable[[int, Any], int], fd: int) -> tuple[int, list[int], list[int]]:
    """(xlated length, func_info insn_offs, line_info insn_offs) of program ``fd``."""
    info = bpf_prog_info()
    attr = bpf_attr()
    attr.info.bpf_fd, attr.info.info_len, attr.info.info = fd, ctypes.sizeof(info), \
        ctypes.addressof(info)
    assert bpf(BPF_OBJ_GET_INFO_BY_FD, attr) == 0
    nf, nl = info.nr_func_info, info.nr_line_info
    fbuf = (ctypes.c_uint32 * (2 * max(nf, 1)))()
    lbuf = (ctypes.c_uint32 * (4 * max(nl, 1)))()
    info2 = bpf_prog_info(nr_func_info=nf, func_info_rec_size=8,
                          func_info=ctypes.addressof(fbuf), nr_line_info=nl,
                          line_info_rec_size=16, line_info=ctypes.addressof(lbuf))
    attr.info.info_len, attr.info.info = ctypes.sizeof(info2), ctypes.addressof(info2)
    assert bpf(BPF_OBJ_GET_INFO_BY_FD, attr) == 0
    return (info.xlated_prog_len // 8, [fbuf[2 * i] for i in range(nf)],
            [lbuf[4 * i] for i in range(nl)])


@pytest.mark.parametrize("path", OBJECTS, ids=[p.name for p in OBJECTS])
def test_func_and_line_info_offsets_match_the_kernel(kernel: ModuleType, path: Path) -> None:
    live = skel.load(str(path), kernel="live")
    k = Kernel()
    mine = skel.load(str(path), kernel=k)
    try:
        names = [n for n in dir(mine.progs) if not n.startswith("_")]
        assert names
        compared = 0
        for name in names:
            want = _info_arrays(_live_bpf(kernel), getattr(live.progs, name).fd)
            got = _info_arrays(k.bpf, getattr(mine.progs, name).fd)
            if got[0] != want[0]:
                continue  # an xlated difference tools/xlated_agreement.py lists
            assert got == want, name
            compared += 1
        if not compared:
            pytest.skip(f"{path.name}: xlated length differs from the kernel's (listed by "
                        "tools/xlated_agreement.py --examples --list)")
    finally:
        live.close()


def _live_bpf(kernel: ModuleType) -> Callable[[int, Any], int]:
    def call(cmd: int, attr: Any) -> int:
        ret, err = kernel.sys_bpf(cmd, attr)
        return -err if err else ret
    return call
