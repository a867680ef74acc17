"""``func_info``/``line_info`` and global functions through ``BPF_PROG_LOAD``, live kernel vs
pybpf: the same attributes in both worlds must give the same errno and the same log.

The program is ``main`` calling one subprogram ``f``; its BTF is written here by hand, so
each case can break one record (``check_btf_func_early``, ``check_btf_func``,
``check_btf_line``) or change ``f``'s linkage and prototype (``btf_check_subprog_call``,
``btf_prepare_func_args``, ``do_check_subprogs``).
"""

from __future__ import annotations

import ctypes
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

from pybpf.kernel import Kernel
from pybpf.uapi import BPF_PROG_TYPE_SOCKET_FILTER, BpfCmd, bpf_attr

Bpf = Callable[[int, Any], tuple[int, int]]

# -- BTF ------------------------------------------------------------------------------------

STRINGS = b"\0int\0x\0main\0f\0prog.c\0int main(void)\0  return f(x);\0"


def _off(name: bytes) -> int:
    return STRINGS.index(b"\0" + name + b"\0") + 1


def _type(name_off: int, kind: int, vlen: int, size_or_type: int) -> bytes:
    return struct.pack("<III", name_off, (kind << 24) | vlen, size_or_type)


def btf_blob(f_linkage: int = 1, f_returns: int = 1, f_param: int = 1) -> bytes:
    """[1] int, [2] int (int x), [3] FUNC main, [4] FUNC f, [5] void *, [6] (x) -> ret."""
    types = b"".join([
        _type(_off(b"int"), 1, 0, 4) + struct.pack("<I", (1 << 24) | 32),
        _type(0, 13, 1, 1) + struct.pack("<II", _off(b"x"), 1),
        _type(_off(b"main"), 12, 1, 2),
        _type(_off(b"f"), 12, f_linkage, 6),
        _type(0, 2, 0, 0),
        _type(0, 13, 1, f_returns) + struct.pack("<II", _off(b"x"), f_param),
    ])
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(STRINGS))
    return hdr + types + STRINGS


# main: r1 = 7; call f; exit        f: r0 = r1; exit
PROG = [(0xB7, 1, 0, 0, 7), (0x85, 0, 1, 0, 1), (0x95, 0, 0, 0, 0), (0xBF, 0, 1, 0, 0),
        (0x95, 0, 0, 0, 0)]
# main passing its stack pointer instead
PROG_PTR = [(0xBF, 1, 10, 0, 0), *PROG[1:]]


def encode(prog: list[tuple[int, int, int, int, int]]) -> bytes:
    return b"".join(struct.pack("<BBhi", c, d | (s << 4), o, i) for c, d, s, o, i in prog)


def finfo(*recs: tuple[int, int], rec_size: int = 8) -> bytes:
    return b"".join(struct.pack("<II", *r) + bytes(rec_size - 8) for r in recs)


def linfo(*recs: tuple[int, int, int, int]) -> bytes:
    return b"".join(struct.pack("<IIII", *r) for r in recs)


FILE, L1, L2 = _off(b"prog.c"), _off(b"int main(void)"), STRINGS.index(b"  return")
GOOD_FINFO = finfo((0, 3), (3, 4))
GOOD_LINFO = linfo((0, FILE, L1, 3 << 10 | 1), (1, FILE, L2, 4 << 10 | 2), (3, FILE, L1, 7 << 10))


@dataclass
class Load:
    """One BPF_PROG_LOAD: what goes in, what came out."""

    prog: list[tuple[int, int, int, int, int]] = field(default_factory=lambda: list(PROG))
    btf: bytes = field(default_factory=btf_blob)
    func_info: bytes = GOOD_FINFO
    func_info_rec_size: int = 8
    func_info_cnt: int | None = None
    line_info: bytes = b""
    line_info_rec_size: int = 16
    log_level: int = 2


def run(bpf: Bpf, close: Callable[[int], Any], case: Load) -> tuple[int, str, int]:
    """errno, log and the func_info_rec_size written back, in one world."""
    keep: list[Any] = []

    def buf(data: bytes) -> int:
        b = ctypes.create_string_buffer(data, max(len(data), 1))
        keep.append(b)
        return ctypes.addressof(b)

    a = bpf_attr()
    a.btf, a.btf_size = buf(case.btf), len(case.btf)
    btf_fd, err = bpf(BpfCmd.BPF_BTF_LOAD, a)
    assert err == 0, err
    code = encode(case.prog)
    log = ctypes.create_string_buffer(1 << 16)
    a = bpf_attr()
    a.prog_type, a.insn_cnt, a.insns = BPF_PROG_TYPE_SOCKET_FILTER, len(code) // 8, buf(code)
    a.license = buf(b"GPL\0")
    a.log_level, a.log_size, a.log_buf = case.log_level, len(log), ctypes.addressof(log)
    a.prog_btf_fd = btf_fd
    rs = case.func_info_rec_size
    a.func_info_rec_size, a.func_info = rs, buf(case.func_info)
    a.func_info_cnt = case.func_info_cnt if case.func_info_cnt is not None else \
        (len(case.func_info) // rs if rs else 0)
    if case.line_info:
        a.line_info_rec_size, a.line_info = case.line_info_rec_size, buf(case.line_info)
        a.line_info_cnt = len(case.line_info) // case.line_info_rec_size
    ret, err = bpf(BpfCmd.BPF_PROG_LOAD, a)
    if not err:
        close(ret)
    close(btf_fd)
    return err, log.value.decode(errors="replace"), a.func_info_rec_size


# main: r6 = r1; call f; exit     f: r0 = skb[0] (LD_ABS); exit
PROG_LD_ABS = [(0xBF, 6, 1, 0, 0), (0x85, 0, 1, 0, 1), (0x95, 0, 0, 0, 0), (0x30, 0, 0, 0, 0),
               (0x95, 0, 0, 0, 0)]
# main: r6 = r1; call f; exit     f: r1 = r6; r2 = 0; r3 = 0; tail_call; r0 = 0; exit
PROG_TAIL = [(0xBF, 6, 1, 0, 0), (0x85, 0, 1, 0, 1), (0x95, 0, 0, 0, 0), (0xBF, 1, 6, 0, 0),
             (0xB7, 2, 0, 0, 0), (0xB7, 3, 0, 0, 0), (0x85, 0, 0, 0, 12), (0xB7, 0, 0, 0, 0),
             (0x95, 0, 0, 0, 0)]

CASES: dict[str, Load] = {
    "LD_ABS in a subprogram without BTF": Load(prog=PROG_LD_ABS, func_info=b""),
    "tail call in a subprogram without BTF": Load(prog=PROG_TAIL, func_info=b""),
    "LD_ABS in a function returning a pointer": Load(prog=PROG_LD_ABS, btf=btf_blob(f_returns=5)),
    "global f": Load(),
    "global f, level 1": Load(log_level=1),
    "static f": Load(btf=btf_blob(f_linkage=0)),
    "line info": Load(line_info=GOOD_LINFO),
    "line info, level 1": Load(line_info=GOOD_LINFO, log_level=1),
    "rec size 16, zero tails": Load(func_info=finfo((0, 3), (3, 4), rec_size=16), func_info_rec_size=16),
    "rec size 4": Load(func_info_rec_size=4, func_info_cnt=2),
    "rec size 10": Load(func_info_rec_size=10, func_info_cnt=2),
    "rec size 256": Load(func_info_rec_size=256, func_info_cnt=2),
    "nonzero tail": Load(func_info=struct.pack("<II", 0, 3) + bytes(7) + b"\x01"
                         + finfo((3, 4), rec_size=16), func_info_rec_size=16),
    "first insn_off not 0": Load(func_info=finfo((1, 3), (3, 4))),
    "insn_off not increasing": Load(func_info=finfo((0, 3), (0, 4))),
    "type id of an INT": Load(func_info=finfo((0, 3), (3, 1))),
    "type id out of range": Load(func_info=finfo((0, 3), (3, 99))),
    "one record for two subprogs": Load(func_info=finfo((0, 3))),
    "record off the subprog start": Load(func_info=finfo((0, 3), (2, 4))),
    "line rec size 8": Load(line_info=GOOD_LINFO, line_info_rec_size=8),
    "line off beyond the program": Load(line_info=linfo((0, FILE, L1, 1), (9, FILE, L1, 2))),
    "line off not increasing": Load(line_info=linfo((0, FILE, L1, 1), (0, FILE, L1, 2))),
    "line missing for func#1": Load(line_info=linfo((0, FILE, L1, 1), (1, FILE, L1, 2))),
    "line bad string": Load(line_info=linfo((0, FILE, 9999, 1), (3, FILE, L1, 2))),
    "global f given a pointer": Load(prog=PROG_PTR),
    "static f given a pointer": Load(prog=PROG_PTR, btf=btf_blob(f_linkage=0)),
    "global f returning a pointer": Load(btf=btf_blob(f_returns=5)),
    "global f taking void *": Load(btf=btf_blob(f_param=5)),
}

ADDR = re.compile(r"0x[0-9a-f]{8,}")


def _both(kernel: ModuleType, case: Load) -> tuple[tuple[int, str, int], tuple[int, str, int]]:
    py = Kernel()

    def py_bpf(cmd: int, attr: Any) -> tuple[int, int]:
        ret = py.bpf(cmd, attr)
        return (ret, 0) if ret >= 0 else (-1, -ret)

    live = run(kernel.sys_bpf, kernel.close, case)
    ours = run(py_bpf, py.close, case)
    return live, ours


@pytest.mark.parametrize("name", list(CASES))
def test_prog_load_with_btf_info_as_kernel(kernel: ModuleType, name: str) -> None:
    live, ours = _both(kernel, CASES[name])
    assert ours[0] == live[0], (ours[1], live[1])
    assert ADDR.sub("ADDR", ours[1]) == ADDR.sub("ADDR", live[1])
    assert ours[2] == live[2]


def test_global_function_is_verified_after_main() -> None:
    """Without the live kernel: the log order of a global call (pybpf alone)."""
    py = Kernel()

    def py_bpf(cmd: int, attr: Any) -> tuple[int, int]:
        ret = py.bpf(cmd, attr)
        return (ret, 0) if ret >= 0 else (-1, -ret)

    err, log, _ = run(py_bpf, py.close, Load())
    assert err == 0
    lines = log.splitlines()
    assert "Func#1 ('f') is global and assumed valid." in lines
    assert lines.index("Validating f() func#1...") > lines.index("2: (95) exit")
    assert "Func#1 ('f') is safe for any args that match its prototype" in lines


@pytest.mark.parametrize("seed", range(4))
def test_random_records_never_crash(seed: int) -> None:
    """Random func_info/line_info records, linkages and prototypes through pybpf's
    BPF_PROG_LOAD: an errno or a program, never a Python exception."""
    import random

    rng = random.Random(seed)
    py = Kernel()

    def py_bpf(cmd: int, attr: Any) -> tuple[int, int]:
        ret = py.bpf(cmd, attr)
        return (ret, 0) if ret >= 0 else (-1, -ret)

    for _ in range(150):
        recs = [(rng.choice([0, 0, 1, 3, 4, 99]), rng.choice([1, 2, 3, 4, 5, 6, 0, 99, 2**31]))
                for _ in range(rng.choice([0, 1, 2, 2, 3]))]
        rec_size = rng.choice([8, 8, 8, 4, 12, 16, 0, 256])
        raw = [struct.pack("<II", a, b) + bytes(max(rec_size - 8, 0)) for a, b in recs]
        lines = b"".join(struct.pack("<IIII", rng.choice([0, 1, 3, 4, 9]), rng.choice([FILE, 0, 9999]),
                                     rng.choice([L1, L2, 99999]), rng.randrange(1 << 16))
                         for _ in range(rng.choice([0, 1, 2, 3])))
        case = Load(prog=rng.choice([PROG, PROG_PTR]),
                    btf=btf_blob(rng.choice([0, 1]), rng.choice([0, 1, 5]), rng.choice([1, 5])),
                    func_info=b"".join(raw), func_info_rec_size=rec_size, line_info=lines,
                    log_level=rng.choice([0, 1, 2]))
        err, _log, _size = run(py_bpf, py.close, case)
        assert err >= 0
