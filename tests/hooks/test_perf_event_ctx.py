"""PERF_EVENT programs on pybpf's perf events read ``struct bpf_perf_event_data`` through
the kernel's ``bpf_perf_event_data_kern`` (regs / perf_sample_data pointers).

The hooks hand programs the kernel's internal layout and the verifier's conversion
(``pe_prog_convert_ctx_access``, compared with the live kernel in
tests/verifier/test_ctx_convert_other.py) routes each read through it; these tests check
the values arrive — whole and narrow — on the tier the session runs (``--bpf-tier``).
"""

from __future__ import annotations

import pytest

from pybpf.errors import BpfFault
from pybpf.hooks.perf_event import event_of
from pybpf.hooks.perf_timer import SAMPLE_IP, PerfSample
from pybpf.isa.asm import assemble
from pybpf.kernel import Kernel
from pybpf.program import Program
from pybpf.runtime.memory import REGISTRY
from pybpf.uapi.kernel_structs import KSTRUCTS

PERF_EVENT = 7
SAMPLE_PERIOD, ADDR = 168, 176
REGS = KSTRUCTS["pt_regs"]


def _load(k: Kernel, text: str) -> Program:
    return Program.load(k, PERF_EVENT, assemble(text, syntax="kernel"))


def _reader(off: int, size: int) -> str:
    kind = {8: "u64", 4: "u32", 2: "u16", 1: "u8"}[size]
    return f"r0 = *({kind} *)(r1 + {off})\nexit"


@pytest.mark.parametrize("size", [8, 4, 2, 1])
def test_sample_period_and_addr_whole_and_narrow(size: int) -> None:
    k = Kernel()
    timer = k.perf_timer(freq=3)  # period 333_333_333 = 0x13de4355
    addr = 0x1122334455667788
    period = timer.sample_period
    for base, value in ((SAMPLE_PERIOD, period), (ADDR, addr)):
        for part in range(0, 8, size):
            prog = _load(k, _reader(base + part, size))
            link = timer.attach(prog.obj)
            want = (value >> 8 * part) & ((1 << 8 * size) - 1)
            assert timer.tick(1, addr=addr) == [want], (base, part, size)
            timer.detach(link)


def test_registers_through_regs_pointer() -> None:
    k = Kernel()
    timer = k.perf_timer(freq=100)
    regs = {name: 0x1000 + m.offset for name, m in REGS.members.items()
            if m.size == 8 and "." not in name and m.offset % 8 == 0 and name != "ip"}
    seen: dict[int, int] = {}
    for off in range(0, REGS.size, 8):
        prog = _load(k, _reader(off, 8))
        link = timer.attach(prog.obj)
        seen[off] = timer.tick(1, regs=regs)[0]
        timer.detach(link)
    assert seen[REGS.off("ip")] == SAMPLE_IP
    for name, value in regs.items():
        assert seen[REGS.off(name)] == value, name


def test_xlated_reads_through_kern_pointers(bpf_tier: str) -> None:
    """The program that runs — JIT-compiled or interpreted, as the session asks — is the
    converted one: two loads per field."""
    k = Kernel()
    prog = _load(k, "r0 = *(u64 *)(r1 + 168)\nr2 = *(u64 *)(r1 + 128)\nr0 += r2\nexit")
    xl = prog.obj.xlated
    kern, sample = KSTRUCTS["bpf_perf_event_data_kern"], KSTRUCTS["perf_sample_data"]
    assert [(i.dst, i.src, i.off) for i in xl[:4]] == [
        (0, 1, kern.off("data")), (0, 0, sample.off("period")),
        (2, 1, kern.off("regs")), (2, 2, REGS.off("ip"))]
    assert prog.obj.jited == (bpf_tier == "jit")
    timer = k.perf_timer(freq=1000)
    timer.attach(prog.obj)
    assert timer.tick(2) == [(1_000_000 + SAMPLE_IP) % 2**64] * 2


def test_perf_event_fd_link_reads_the_sample() -> None:
    """Through ``perf_event_open`` + ``BPF_LINK_CREATE``: the event's own timer drives it."""
    k = Kernel()
    fd = k.perf_event_open(freq=250, cpus=(0, 1))
    prog = _load(k, "r2 = *(u32 *)(r1 + 168)\nr3 = *(u8 *)(r1 + 176)\nr0 = r2\nr0 += r3\nexit")
    link = prog.attach_perf_event(fd)
    assert event_of(k, fd).hook.tick(1, addr=0x2A) == [4_000_000 + 0x2A] * 2
    link.close()
    k.root.close(fd)


def test_bad_register_name_is_refused_without_leaking() -> None:
    k = Kernel()
    timer = k.perf_timer(freq=10)
    n = len(REGISTRY.regions())
    with pytest.raises(ValueError, match="no 8-byte register 'nope'"):
        timer.tick(1, regs={"nope": 1})
    with pytest.raises(ValueError, match="'cs'"):
        PerfSample(1, regs={"cs": 1})  # a 2-byte member
    assert len(REGISTRY.regions()) == n


def test_programs_cannot_write_the_sample() -> None:
    """The sample is read-only memory, and unregistered once closed."""
    sample = PerfSample(5, 6)
    try:
        assert REGISTRY.find(sample.ctx_addr) is sample.kern
        assert all(not r.writable for r in sample.regions)
        with pytest.raises(BpfFault):
            REGISTRY.write(sample.data.start + 8, b"\0" * 8)
    finally:
        sample.close()
    assert REGISTRY.find(sample.ctx_addr) is None
