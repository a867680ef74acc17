"""XDP ctx conversion (``xdp_convert_ctx_access``) against the live kernel's xlated code.

Each program reads ``struct xdp_md`` fields — whole, sign-extended, narrow (which both
must refuse the same way), through other registers, in packet-parsing code — and is loaded
in the live kernel and in pybpf. Accepted programs must have instruction-for-instruction
equal xlated code, with helper-call immediates (addresses relative to
``__bpf_call_base``) normalised away. A run on a pybpf device checks the converted loads
reach the real ``xdp_buff`` fields.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel
from pybpf.program import Program

XDP = 6
BPF_XDP_DEVMAP = 33
FIELDS = {"data": 0, "data_end": 4, "data_meta": 8, "ingress_ifindex": 12,
          "rx_queue_index": 16, "egress_ifindex": 20}
_CALL = 0x85


def kernel_xlated(kernel: ModuleType, fd: int) -> list[Insn]:
    return kernel.prog_xlated(fd)


def normalise(insns: list[Insn]) -> list[Insn]:
    """Helper calls carry kernel addresses: compare everything else."""
    return [i._replace(imm=0) if i.code == _CALL and i.src == 0 else i for i in insns]


def compare(kernel: ModuleType, fds: Any, text: str, attach: int = 0) -> bool:
    """Load ``text`` in both; same verdict and errno; equal xlated code when accepted.
    Returns whether the kernel accepted it."""
    raw = encode(assemble(text))
    res = fds.prog_load(XDP, raw, expected_attach_type=attach, log_level=1, log_size=1 << 16)
    pk = Kernel()
    if not res.ok:
        with pytest.raises(BpfError) as exc:
            Program.load(pk, XDP, raw, expected_attach_type=attach)
        assert exc.value.errno == res.errno, (text, res.log)
        return False
    ours = Program.load(pk, XDP, raw, expected_attach_type=attach).obj.xlated
    theirs = kernel_xlated(kernel, res.fd)
    assert normalise(ours) == normalise(theirs), (text, ours, theirs)
    return True


@pytest.mark.parametrize("attach", [0, BPF_XDP_DEVMAP])
@pytest.mark.parametrize("field", list(FIELDS))
def test_full_read(kernel: ModuleType, kernel_fds: Any, field: str, attach: int) -> None:
    off = FIELDS[field]
    accepted = compare(kernel, kernel_fds, f"r0 = *(u32 *)(r1 + {off})\nr0 = 2\nexit\n", attach)
    assert accepted == (field != "egress_ifindex" or attach == BPF_XDP_DEVMAP)


@pytest.mark.parametrize("field", ["ingress_ifindex", "rx_queue_index", "egress_ifindex",
                                   "data"])
def test_sign_extending_read(kernel: ModuleType, kernel_fds: Any, field: str) -> None:
    """``ldsx`` of the ifindex/queue fields is converted then ``movsx``-ed; of packet
    pointers refused."""
    off = FIELDS[field]
    compare(kernel, kernel_fds, f"r0 = *(s32 *)(r1 + {off})\nr0 = 2\nexit\n", BPF_XDP_DEVMAP)


@pytest.mark.parametrize("size", ["u8", "u16", "u64"])
@pytest.mark.parametrize("off", range(0, 24, 2))
def test_narrow_and_wide_reads_refused_alike(kernel: ModuleType, kernel_fds: Any, size: str,
                                             off: int) -> None:
    """``__is_valid_xdp_access``: only whole 4-byte reads; both refuse the rest."""
    if size == "u64" and off % 8:
        off -= off % 8
    compare(kernel, kernel_fds, f"r0 = *({size} *)(r1 + {off})\nr0 = 2\nexit\n", BPF_XDP_DEVMAP)


def test_registers_and_reuse(kernel: ModuleType, kernel_fds: Any) -> None:
    """dst == src, ctx in another register, several fields in one program."""
    text = """
r6 = r1
r1 = *(u32 *)(r1 + 12)
r2 = *(u32 *)(r6 + 16)
r3 = *(u32 *)(r6 + 20)
r9 = *(u32 *)(r6 + 8)
r0 = r1
r0 += r2
r0 += r3
exit
"""
    assert compare(kernel, kernel_fds, text, BPF_XDP_DEVMAP)


PARSER = """
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r4 = *(u32 *)(r1 + 8)
r0 = 1
r5 = r2
r5 += 14
if r5 > r3 goto +6
r5 = *(u16 *)(r2 + 12)
if r5 != 0x8 goto +4
r0 = 2
if r4 > r2 goto +2
r6 = *(u32 *)(r1 + 12)
r0 = 3
exit
"""


def test_packet_parser(kernel: ModuleType, kernel_fds: Any) -> None:
    assert compare(kernel, kernel_fds, PARSER)


def test_with_helper_calls(kernel: ModuleType, kernel_fds: Any) -> None:
    """Conversions around helper calls (adjust_head then fresh data/data_end reads)."""
    text = """
r6 = r1
r2 = -4
call 44
r2 = *(u32 *)(r6 + 0)
r3 = *(u32 *)(r6 + 4)
r0 = r3
r0 -= r2
r1 = *(u32 *)(r6 + 12)
r0 += r1
call 7
exit
"""
    assert compare(kernel, kernel_fds, text)


def test_converted_loads_reach_the_buffer() -> None:
    """The converted program really reads pybpf's xdp_buff: ingress_ifindex, length,
    queue index on a device and in a test run."""
    text = """
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r4 = *(u32 *)(r1 + 12)
r5 = *(u32 *)(r1 + 16)
r0 = r3
r0 -= r2
r4 <<= 16
r0 |= r4
r5 <<= 24
r0 |= r5
exit
"""
    pk = Kernel()
    prog = Program.load(pk, XDP, encode(assemble(text)))
    out = prog.test_run(bytes(60))
    assert out.retval == (1 << 16) | 60  # test runs use lo (ifindex 1), queue 0
    assert any(i.code == 0x79 for i in prog.obj.xlated)  # 64-bit xdp_buff loads


def test_direct_packet_write(kernel: ModuleType, kernel_fds: Any) -> None:
    """A direct packet write marks the program (``seen_direct_write``): XDP's prologue is
    the kernel's no-op one, so the xlated code gains nothing in front."""
    text = """
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r4 = r2
r4 += 2
if r4 > r3 goto +2
r5 = 7
*(u8 *)(r2 + 0) = r5
r0 = 2
exit
"""
    assert compare(kernel, kernel_fds, text)
