"""The skeleton API: settings before load, typed live global data, close on exit."""

from __future__ import annotations

from pathlib import Path

import pytest

import pybpf.skel as skel
from pybpf.errors import BpfError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_open_exposes_typed_sections_and_settings() -> None:
    obj = skel.open(EXAMPLES / "globals_calls.o")
    assert set(obj.progs._items) == {"xdp_globals", "sock_globals"}
    assert obj.rodata.max_len == 1500 and obj.rodata.verbose == 0
    assert obj.data.magic == 0xFEEDF00DCAFE
    assert obj.bss.as_dict() == {"pkt_count": 0, "long_count": 0, "last_len": 0}
    assert obj.section(".data.hist").hist == [0] * 8
    obj.rodata.max_len = 100
    assert obj.rodata.max_len == 100
    obj.progs.sock_globals.autoload = False
    obj.maps[".data.hist"].max_entries = 1
    with pytest.raises(AttributeError, match="no variable 'nope'"):
        _ = obj.bss.nope
    with pytest.raises(AttributeError, match="no program named 'nope'"):
        _ = obj.progs.nope


def test_live_kernel_load_runs_with_rodata_and_bss(kernel: object) -> None:
    obj = skel.open(EXAMPLES / "globals_calls.o", kernel="live")
    obj.rodata.max_len = 100
    obj.progs.sock_globals.autoload = False
    with obj.load():
        obj.bss.pkt_count = 41
        res = kernel.prog_test_run(obj.progs.xdp_globals.fd, b"\0" * 200)  # type: ignore
        assert res.retval == 1  # XDP_DROP: 200 > max_len set before load
        assert obj.bss.as_dict() == {"pkt_count": 42, "long_count": 1, "last_len": 200}
        assert obj.section(".data.hist").hist == [0, 0, 1, 0, 0, 0, 0, 0]
        with pytest.raises(BpfError, match="frozen"):
            obj.rodata.max_len = 5
        with pytest.raises(BpfError):
            obj.progs.xdp_globals.autoload = False
    assert not obj.loaded


def test_verifier_failure_carries_framed_log(kernel: object) -> None:
    obj = skel.open(EXAMPLES / "xdp_counter.o", kernel="live")
    obj.progs.xdp_count.type = 1  # socket filter: xdp_md's data pointers are scalars there
    with pytest.raises(BpfError) as ei:
        obj.load()
    text = str(ei.value)
    assert "prog 'xdp_count': BPF program load failed" in text
    assert "-- BEGIN PROG LOAD LOG --" in text and "-- END PROG LOAD LOG --" in text
