"""Tracing helpers in pybpf alone: the simulated ``current`` task, ``get_func_ip`` /
``get_attach_cookie`` at each hook, and probe reads of hook arguments."""

from __future__ import annotations

import threading

import pytest

from pybpf.helpers.task import current_task, running_as
from pybpf.hooks.trampoline import host_functions
from pybpf.isa.asm import assemble
from pybpf.kernel import Kernel
from pybpf.program import Program

TRACEPOINT, KPROBE, TRACING = 5, 2, 26
M64 = (1 << 64) - 1


def _tp_prog(k: Kernel, text: str) -> tuple[Program, object]:
    tp = k.tracepoint("app", "ev", fields=[("u64", "v")])
    prog = Program.load(k, TRACEPOINT, assemble(text, syntax="kernel"))
    return prog, tp


def test_current_task_defaults_set_and_scoped() -> None:
    k = Kernel()
    assert k.current is k.root
    worker = k.task(uid=1000, gid=100, comm="worker-with-a-long-name")
    prog, tp = _tp_prog(k, "call 14\nexit")
    uid = Program.load(k, TRACEPOINT, assemble("call 15\nexit", syntax="kernel"))
    with prog.attach_tracepoint("app", "ev"), uid.attach_tracepoint("app", "ev"):
        assert tp.fire() == [k.root.pid << 32 | k.root.pid, 0]  # type: ignore[attr-defined]
        with running_as(k, worker):
            assert k.current is worker
            assert tp.fire() == [worker.pid << 32 | worker.pid, 100 << 32 | 1000]  # type: ignore[attr-defined]
        k.current = worker
        seen: list[object] = []
        t = threading.Thread(target=lambda: seen.append(current_task(k)))
        t.start()
        t.join()
        assert seen == [worker]  # a fixed current holds in every thread
        k.current = None
        assert k.current is k.root


def test_get_current_comm_truncates_and_pads() -> None:
    k = Kernel()
    k.current = k.task(comm="a-very-long-command-name")
    prog, tp = _tp_prog(k, """
        r1 = -1
        *(u64 *)(r10 - 16) = r1
        *(u64 *)(r10 - 8) = r1
        r1 = r10
        r1 += -16
        r2 = 16
        call 16
        r0 = *(u64 *)(r10 - 8)
        exit""")
    with prog.attach_tracepoint("app", "ev"):
        # bytes 8..15 of the comm: "ong-com" and the NUL that ends the 15 bytes kept
        assert tp.fire() == [int.from_bytes(b"ong-com\0", "little")]  # type: ignore[attr-defined]


def test_get_current_task_is_a_readable_task_struct() -> None:
    from pybpf.uapi.kernel_structs import KSTRUCTS

    k = Kernel()
    k.current = k.task(comm="reader")
    off = KSTRUCTS["task_struct"].off("tgid")
    prog, tp = _tp_prog(k, f"""
        call 35
        r3 = r0
        r3 += {off}
        r1 = r10
        r1 += -8
        r2 = 4
        call 113
        r0 = *(u32 *)(r10 - 8)
        exit""")
    with prog.attach_tracepoint("app", "ev"):
        assert tp.fire() == [k.current.pid]  # type: ignore[attr-defined]


def test_func_ip_and_cookie_on_a_trampoline() -> None:
    k = Kernel()
    btf = k.vmlinux_btf
    if btf is None:
        pytest.skip("no vmlinux BTF to name bpf_fentry_test1")
    fid = next(t.id for t in btf.parsed().types
               if type(t).__name__ == "BtfFunc" and t.name == "bpf_fentry_test1")
    fn = host_functions(k)["bpf_fentry_test1"]
    m = k.map_create(2, 4, 8, 2)
    for slot, helper in enumerate((173, 174)):
        # fentry programs must return 0 (check_return_code): the helper's value goes to
        # the array (bpf_get_func_ip is inlined for TRACING programs: no call to observe)
        prog = Program.load(k, TRACING, assemble(f"""
            call {helper}
            *(u64 *)(r10 - 8) = r0
            *(u32 *)(r10 - 12) = {slot}
            r1 = pseudo[1]:{m.fd}
            r2 = r10
            r2 += -12
            r3 = r10
            r3 += -8
            r4 = 0
            call 2
            r0 = 0
            exit""", syntax="kernel"), expected_attach_type=24, attach_btf_id=fid)
        prog.attach_trace(cookie=0xC0FFEE)
    assert fn(41) == 42
    ip, cookie = (int.from_bytes(m.lookup(i.to_bytes(4, "little")), "little") for i in (0, 1))
    assert cookie == 0xC0FFEE
    assert ip == fn.fentry[0].extra["func_ip"] and ip >> 32 == 0xFFFFFFFF


def test_probe_read_user_str_of_a_kprobe_string_argument() -> None:
    k = Kernel()
    probe = k.kprobe(lambda path: 0, name="do_open")
    prog = Program.load(k, KPROBE, assemble("""
        r3 = *(u64 *)(r1 + 112)
        r1 = r10
        r1 += -16
        r2 = 16
        call 114
        r0 <<= 32
        r1 = *(u32 *)(r10 - 16)
        r0 |= r1
        exit""", syntax="kernel"))
    rets: list[int] = []
    orig = prog.obj.run
    prog.obj.run = lambda *a, **kw: rets.append(orig(*a, **kw)) or rets[-1]  # type: ignore[method-assign]
    with prog.attach_kprobe(probe):
        probe("/etc")
    assert rets == [(5 << 32) | int.from_bytes(b"/etc", "little")]
