"""``bpf_timer_*`` driven by the host's clock, against the live kernel.

tests/helpers/progs/tracing_timer.c (a syscall program) misuses a timer in every way the
helpers refuse, arms it for 30 ms with a callback that re-arms it once for 40 ms, and a
second program cancels it. The kernel runs it on real time; pybpf on its virtual clock
(and once on real time)."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import pybpf.skel as skel
from pybpf.kernel import Kernel

OBJ = str(Path(__file__).parent / "progs" / "tracing_timer.o")
EINVAL, EBUSY, EDEADLK = -22, -16, -35
MS = 1_000_000
FIRST = [EINVAL, EINVAL, EINVAL, EINVAL, 0, EBUSY, EINVAL, 0, EINVAL, 0]
AGAIN = [EINVAL, 0, 0, EINVAL, EBUSY, EBUSY, 0, 0, EINVAL, 0]  # cancel dropped the callback


def _elem(obj: Any, where: ModuleType | Kernel, key: int) -> tuple[int, ...]:
    """The ``struct elem`` at ``key`` as four u64 (timer, timer, fired, rearm_ns)."""
    raw = struct.pack("<i", key)
    if isinstance(where, Kernel):
        from pybpf.core.map import MapHandle

        value = MapHandle(where.root, obj.maps.timers.fd).lookup(raw)
    else:
        value = where.map_lookup(obj.maps.timers.fd, raw, 32)
    return struct.unpack("<QQQQ", bytes(value))


def _run(obj: Any, name: str) -> int:
    return int(getattr(obj.progs, name).test_run(repeat=0).retval)


def _results(obj: Any) -> list[int]:
    return [int(x) for x in obj.bss.results]


def _scenario(obj: Any) -> list[Any]:
    """The calls both sides make before time passes."""
    out: list[Any] = [_run(obj, "arm"), _results(obj)]
    out += [_run(obj, "cancel"), _run(obj, "cancel")]
    out += [_run(obj, "arm"), _results(obj)]
    return out


def test_timer_helpers_vs_kernel(kernel: ModuleType) -> None:
    live = skel.load(OBJ, kernel="live")
    want = _scenario(live)
    time.sleep(0.25)  # 30 ms, then the 40 ms re-arm
    want_after = (_elem(live, kernel, 1)[2], _results(live)[9])
    assert want == [0, FIRST, 1, 0, 0, AGAIN]  # the kernel's own answer, spelled out

    k = Kernel()
    mine = skel.load(OBJ, kernel=k)
    assert _scenario(mine) == want
    timers = k.bpf_timers
    assert timers.advance(29 * MS) == 0
    assert timers.advance(1 * MS) == 1   # the 30 ms timer; its callback re-arms for 40 ms
    assert timers.advance(39 * MS) == 0
    assert timers.advance(1 * MS) == 1
    assert timers.advance(1000 * MS) == 0
    assert (_elem(mine, k, 1)[2], _results(mine)[9]) == want_after == (202, EDEADLK)


def test_timer_on_real_time() -> None:
    k = Kernel()
    mine = skel.load(OBJ, kernel=k)
    assert _run(mine, "arm") == 0
    k.bpf_timers.start()
    try:
        deadline = time.monotonic() + 2
        while _elem(mine, k, 1)[2] < 202 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        k.bpf_timers.stop()
    assert _elem(mine, k, 1)[2] == 202
    with pytest.raises(RuntimeError):
        k.bpf_timers.start()
        try:
            k.bpf_timers.advance(1)
        finally:
            k.bpf_timers.stop()


def test_cancelled_timer_never_fires_and_clock_is_monotonic() -> None:
    k = Kernel()
    mine = skel.load(OBJ, kernel=k)
    _run(mine, "arm")
    assert _run(mine, "cancel") == 1
    assert k.bpf_timers.advance(10_000 * MS) == 0
    assert _elem(mine, k, 1)[2] == 0
    with pytest.raises(ValueError):
        k.bpf_timers.advance(-1)
