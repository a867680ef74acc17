"""``BPF_PROG_TEST_RUN`` for flow dissectors: ``bpf_prog_test_run_flow_dissector``.

The kernel dissects ``data_in`` as an Ethernet frame without building an skb: the
program's ``struct bpf_flow_dissector`` points at a copy of the packet (``skb`` is NULL,
so ``bpf_skb_load_bytes`` fails with -EFAULT) and at a fresh ``struct bpf_flow_keys``
pre-filled as ``bpf_flow_dissect`` does (``n_proto`` from the Ethernet header, ``nhoff``
= ``thoff`` = ETH_HLEN, the caller's ``flags``). After each run ``nhoff`` and ``thoff``
are clamped into the packet. The flow keys are the output: they come back in
``data_out``; ``ctx_in``/``ctx_out`` are a ``struct bpf_flow_keys`` whose only settable
field is ``flags`` (anything else non-zero: EINVAL), returned unchanged.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from pybpf.progs.ops import TestRunOpts, TestRunResult
from pybpf.progs.testrun_common import (
    ETH_HLEN,
    PAGE_SIZE,
    TestRunError,
    ctx_init,
    current_cpu,
    run_repeat,
)
from pybpf.progs.type_flow_dissector import FD_DATA, FD_DATA_END, FD_FLOW_KEYS, FD_SIZE
from pybpf.runtime.memory import REGISTRY
from pybpf.uapi.kernel_structs import KSTRUCTS

_FK = KSTRUCTS["bpf_flow_keys"]
FLOW_KEYS_SIZE = _FK.size
FK_NHOFF, FK_THOFF, FK_N_PROTO, FK_FLAGS = (
    _FK.off("nhoff"), _FK.off("thoff"), _FK.off("n_proto"), _FK.off("flags"))
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _clamp_u16(value: int, lo: int, hi: int) -> int:
    """``clamp_t(u16, value, lo, hi)``: every operand truncated to u16 first."""
    value, lo, hi = value & 0xFFFF, lo & 0xFFFF, hi & 0xFFFF
    return max(lo, min(value, hi))


class FlowDissectorCtx:
    """``struct bpf_flow_dissector`` + its packet and ``struct bpf_flow_keys``, in native
    memory the program addresses directly."""

    def __init__(self, name: str, data: bytes) -> None:
        # ctx->skb stays NULL: a test run dissects without an skb, so the type's
        # load_bytes (pybpf.helpers.flow_dissector) fails with -EFAULT as the kernel's does
        self.ctx = REGISTRY.alloc(FD_SIZE, f"{name} bpf_flow_dissector")
        self.keys = REGISTRY.alloc(FLOW_KEYS_SIZE, f"{name} bpf_flow_keys")
        self.pkt = REGISTRY.alloc(max(len(data), 1), f"{name} packet")
        self.pkt.mv[:len(data)] = data
        self.size = len(data)
        _U64.pack_into(self.ctx.mv, FD_FLOW_KEYS, self.keys.start)
        _U64.pack_into(self.ctx.mv, FD_DATA, self.pkt.start)
        _U64.pack_into(self.ctx.mv, FD_DATA_END, self.pkt.start + len(data))

    @property
    def addr(self) -> int:
        return self.ctx.start

    def prepare_keys(self, proto: int, nhoff: int, flags: int) -> None:
        """``bpf_flow_dissect``'s parameters: zeroed keys, then protocol, offsets, flags."""
        self.keys.zero()
        _U16.pack_into(self.keys.mv, FK_N_PROTO, proto)
        _U16.pack_into(self.keys.mv, FK_NHOFF, nhoff)
        _U16.pack_into(self.keys.mv, FK_THOFF, nhoff)
        _U32.pack_into(self.keys.mv, FK_FLAGS, flags)

    def clamp_offsets(self, nhoff: int, hlen: int) -> None:
        """After the run: ``nhoff`` within ``[nhoff, hlen]``, ``thoff`` within
        ``[nhoff, hlen]`` of the clamped ``nhoff``."""
        got_nh = int(_U16.unpack_from(self.keys.mv, FK_NHOFF)[0])
        new_nh = _clamp_u16(got_nh, nhoff, hlen)
        _U16.pack_into(self.keys.mv, FK_NHOFF, new_nh)
        got_th = int(_U16.unpack_from(self.keys.mv, FK_THOFF)[0])
        _U16.pack_into(self.keys.mv, FK_THOFF, _clamp_u16(got_th, new_nh, hlen))

    def flow_keys(self) -> bytes:
        return bytes(self.keys.mv)

    def close(self) -> None:
        for region in (self.ctx, self.keys, self.pkt):
            REGISTRY.remove(region)


def _verify_user_flow_keys(keys: bytes) -> None:
    """``verify_user_bpf_flow_keys``: only ``flags`` may be set."""
    if any(keys[:FK_FLAGS]) or any(keys[FK_FLAGS + 4:]):
        raise TestRunError(errno.EINVAL, "bpf_flow_keys fields other than flags are set")


def test_run_flow_dissector(prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
    """``bpf_prog_test_run_flow_dissector``."""
    try:
        return _run(prog, kernel, opts)
    except TestRunError as exc:
        return TestRunResult(errno=exc.errno)


def _run(prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
    if opts.flags or opts.cpu or opts.batch_size:
        raise TestRunError(errno.EINVAL, "flags, cpu and batch_size must be 0")
    size = opts.data_size_in
    if size < ETH_HLEN or size > PAGE_SIZE:  # bpf_test_init without head/tailroom
        raise TestRunError(errno.EINVAL, "data_in must hold an Ethernet header, at most a page")
    data = opts.data_in
    user_ctx = ctx_init(opts, FLOW_KEYS_SIZE)
    flags = 0
    if user_ctx is not None:
        _verify_user_flow_keys(bytes(user_ctx))
        flags = int(_U32.unpack_from(user_ctx, FK_FLAGS)[0])
    proto = int(_U16.unpack_from(data, 12)[0])  # eth->h_proto, as stored (big endian)
    fd = FlowDissectorCtx(f"test_run {getattr(prog, 'name_str', 'prog')}", data[:size])
    try:
        rctx_data: dict[str, Any] = {"flow_dissector": fd}

        def once() -> tuple[int, int]:
            fd.prepare_keys(proto, ETH_HLEN, flags)
            ret, ns = run_repeat(prog, kernel, fd.addr, 1, cpu=current_cpu(), data=rctx_data)
            fd.clamp_offsets(ETH_HLEN, size)
            return ret, ns

        repeat = max(opts.repeat, 1)
        total = 0
        retval = 0
        for _ in range(repeat):
            retval, ns = once()
            total += ns
        return TestRunResult(retval=retval, data_out=fd.flow_keys(),
                             ctx_out=bytes(user_ctx) if user_ctx is not None else None,
                             duration=min(total // repeat, 0xFFFFFFFF))
    finally:
        fd.close()
