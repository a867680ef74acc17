"""Host tracepoints, kprobes on Python functions and the perf timer, with assembled programs."""

from __future__ import annotations

import pytest

from pybpf.isa.asm import assemble
from pybpf.kernel import Kernel
from pybpf.program import Program


def _load(k: Kernel, ptype: int, text: str) -> Program:
    return Program.load(k, ptype, assemble(text, syntax="kernel"))


def test_tracepoint_layout_and_fire() -> None:
    k = Kernel()
    tp = k.tracepoint("myapp", "request", fields=[("u32", "status"), ("char[16]", "path"),
                                                  ("u64", "bytes")])
    offs = {f.name: f.offset for f in tp.fields}
    assert offs == {"common_type": 0, "common_flags": 2, "common_preempt_count": 3,
                    "common_pid": 4, "status": 8, "path": 12, "bytes": 32}
    assert tp.size == 40 and "field:u32 status;\toffset:8;\tsize:4;" in tp.format
    # return status + first byte of path
    prog = _load(k, 5, "r0 = *(u32 *)(r1 + 8)\nr2 = *(u8 *)(r1 + 12)\nr0 += r2\nexit")
    link = tp.attach(prog.obj)
    assert tp.fire(status=200, path=b"/x") == [200 + ord("/")]
    tp.detach(link)
    assert tp.fire(status=1) == []
    with pytest.raises(Exception, match="no field"):
        tp.record(nope=1)


def test_tracepoint_rejects_other_program_types() -> None:
    k = Kernel()
    tp = k.tracepoint("myapp", "ev", fields=[("u32", "x")])
    prog = _load(k, 2, "r0 = 0\nexit")
    with pytest.raises(Exception, match="cannot attach"):
        tp.attach(prog.obj)


def test_kprobe_entry_and_return() -> None:
    k = Kernel()

    @k.kprobe
    def add(a: int, b: int) -> int:
        return a + b

    # pt_regs: di @112, si @104, ax @80 — record into r0 via return value only
    entry = _load(k, 2, "r0 = *(u64 *)(r1 + 112)\nr2 = *(u64 *)(r1 + 104)\nr0 += r2\nexit")
    ret = _load(k, 2, "r0 = *(u64 *)(r1 + 80)\nexit")
    seen: list[int] = []
    orig_run = entry.obj.run

    def spy(*a: int, **kw: object) -> int:
        r = orig_run(*a, **kw)
        seen.append(r)
        return r

    entry.obj.run = spy  # type: ignore[method-assign]
    l1 = add.attach(entry.obj)
    l2 = add.attach(ret.obj, retprobe=True)
    assert add(2, 40) == 42
    assert seen == [42] and add.hits == 1
    add.detach(l1)
    add.detach(l2)
    assert add(1, 1) == 2 and seen == [42]


def test_kprobe_bytes_arg_is_readable_memory() -> None:
    k = Kernel()
    probe = k.kprobe(lambda buf: len(buf), name="buflen")
    # bpf_probe_read_kernel(fp-8, 4, di) then return the u32 read
    prog = _load(k, 2, """
        r3 = *(u64 *)(r1 + 112)
        r1 = r10
        r1 += -8
        r2 = 4
        call 113
        r0 = *(u32 *)(r10 - 8)
        exit""")
    rets: list[int] = []
    orig = prog.obj.run
    prog.obj.run = lambda *a, **kw: rets.append(orig(*a, **kw)) or rets[-1]  # type: ignore[method-assign]
    probe.attach(prog.obj)
    assert probe(b"\x01\x02\x03\x04rest") == 8
    assert rets == [0x04030201]


def test_perf_timer_tick_and_thread() -> None:
    k = Kernel()
    timer = k.perf_timer(freq=1000, cpus=(0,))
    prog = _load(k, 7, "r0 = *(u64 *)(r1 + 168)\nexit")  # sample_period
    timer.attach(prog.obj)
    assert timer.tick(3) == [1_000_000] * 3
    with timer:
        import time

        time.sleep(0.05)
    assert timer.samples > 3
