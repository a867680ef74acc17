"""``BPF_PROG_TEST_RUN`` for XDP programs: ``bpf_prog_test_run_xdp``.

The packet sits after ``XDP_PACKET_HEADROOM`` bytes of headroom in one page; an optional
``xdp_md`` ctx_in moves ``data`` forward to carve metadata out of the headroom (``data``
is the metadata length, ``data_end`` the linear length; ``data_meta`` must be 0). Input
beyond the linear part (at most ``PAGE_SIZE - headroom - tailroom`` bytes) goes into
page-sized fragments the program does not see directly. ``data_out`` is everything from
``data_meta`` to ``data_end`` plus the fragments, so ``bpf_xdp_adjust_head``/``_tail``/
``_meta`` show there; with a ctx_out, ``data``/``data_end`` report the final offsets.

``BPF_F_TEST_XDP_LIVE_FRAMES`` runs the program on fresh copies of the frame and sends
``XDP_TX`` frames out of the ingress device and ``XDP_REDIRECT`` ones where the program
redirected them (pybpf devices, devmaps); pybpf has no stack to inject ``XDP_PASS``
frames into, so those are dropped (retval 0, as the kernel reports for live frames).

The program runs on pybpf's ``struct xdp_buff`` (:class:`pybpf.net.xdp_buff.XdpBuff`);
its ``xdp_md`` reads were rewritten onto that object at load time, and the ``xdp_md``
of ctx_in/ctx_out is only converted to and from it here (``xdp_convert_md_to_buff`` /
``xdp_convert_buff_to_md``).
"""

from __future__ import annotations

import errno
import struct
import time
from typing import Any

from pybpf.net.xdp_buff import XDP_PACKET_HEADROOM, XdpBuff
from pybpf.progs.ops import TestRunOpts, TestRunResult
from pybpf.progs.testrun_common import (
    BPF_F_TEST_XDP_LIVE_FRAMES,
    ETH_HLEN,
    LOOPBACK_IFINDEX,
    PAGE_SIZE,
    SKB_SHARED_INFO_SIZE,
    TestRunError,
    ctx_init,
    current_cpu,
    dev_get_by_index,
    run_repeat,
)
from pybpf.runtime.context import RunContext

XDP = 6
BPF_XDP_DEVMAP, BPF_XDP_CPUMAP = 33, 35  # enum bpf_attach_type
NAPI_POLL_WEIGHT = 64
TEST_XDP_MAX_BATCH = 256
XDP_FRAME_SIZE = 40  # sizeof(struct xdp_frame)
XDP_PAGE_HEAD_SIZE = 112  # sizeof(struct xdp_page_head), live-frames bookkeeping
MAX_SKB_FRAGS = 17
XDP_TX, XDP_REDIRECT = 3, 4
META_LEN_MAX = 255  # skb_shared_info.meta_len is a u8

_U32 = struct.Struct("<I")
# struct xdp_md, the ctx_in/ctx_out ABI
XDP_DATA, XDP_DATA_END, XDP_DATA_META, XDP_INGRESS_IFINDEX, XDP_RX_QUEUE, XDP_EGRESS_IFINDEX = \
    0, 4, 8, 12, 16, 20
XDP_MD_SIZE = 24


def _u32(buf: bytes | bytearray, off: int) -> int:
    return int(_U32.unpack_from(buf, off)[0])


def _rxq_of(kernel: Any, ifindex: int, rx_queue: int) -> None:
    """``xdp_convert_md_to_buff``'s device checks: ENODEV/EINVAL."""
    dev = dev_get_by_index(kernel, ifindex)
    if dev is None:
        raise TestRunError(errno.ENODEV)
    queues = int(getattr(dev, "real_num_rx_queues", 1))
    if rx_queue >= queues:
        raise TestRunError(errno.EINVAL, "rx_queue_index beyond the device's queues")


def test_run_xdp(prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
    """``bpf_prog_test_run_xdp``."""
    try:
        return _run(prog, kernel, opts)
    except TestRunError as exc:
        return TestRunResult(errno=exc.errno)


def _run(prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
    live = bool(opts.flags & BPF_F_TEST_XDP_LIVE_FRAMES)
    if int(getattr(prog, "expected_attach_type", 0)) in (BPF_XDP_DEVMAP, BPF_XDP_CPUMAP):
        raise TestRunError(errno.EINVAL, "devmap/cpumap programs cannot be test-run")
    if opts.flags & ~BPF_F_TEST_XDP_LIVE_FRAMES:
        raise TestRunError(errno.EINVAL)
    if getattr(prog, "prog_ifindex", 0):  # bpf_prog_is_dev_bound
        raise TestRunError(errno.EINVAL)
    batch = opts.batch_size
    if live:
        if not batch:
            batch = NAPI_POLL_WEIGHT
        elif batch > TEST_XDP_MAX_BATCH:
            raise TestRunError(errno.E2BIG)
    elif batch:
        raise TestRunError(errno.EINVAL)

    ctx = ctx_init(opts, XDP_MD_SIZE)
    size_in = opts.data_size_in
    headroom = XDP_PACKET_HEADROOM
    meta_sz = 0
    linear = size_in
    if ctx is not None:
        c_data, c_end = _u32(ctx, XDP_DATA), _u32(ctx, XDP_DATA_END)
        if _u32(ctx, XDP_DATA_META) or c_end > size_in or c_data > c_end \
                or (live and (opts.has_data_out or opts.has_ctx_out)):
            raise TestRunError(errno.EINVAL, "bad xdp_md data/data_end/data_meta")
        meta_sz = c_data
        if meta_sz % 4 or meta_sz > META_LEN_MAX or meta_sz > headroom - XDP_FRAME_SIZE:
            raise TestRunError(errno.EINVAL, "bad metadata length")
        headroom -= meta_sz
        linear = c_end
    if live:
        headroom += XDP_PAGE_HEAD_SIZE
    max_linear = PAGE_SIZE - headroom - SKB_SHARED_INFO_SIZE
    linear = min(linear, max_linear)
    if live and size_in > linear:
        raise TestRunError(errno.EINVAL, "live frames cannot be fragmented")
    if size_in - meta_sz < ETH_HLEN:
        raise TestRunError(errno.EINVAL, "packet shorter than an Ethernet header")
    if live:
        headroom -= XDP_PAGE_HEAD_SIZE
    data = opts.data_in

    ingress, rx_queue = LOOPBACK_IFINDEX, 0
    if ctx is not None:
        if _u32(ctx, XDP_EGRESS_IFINDEX):
            raise TestRunError(errno.EINVAL, "egress_ifindex is set")
        want_if, want_q = _u32(ctx, XDP_INGRESS_IFINDEX), _u32(ctx, XDP_RX_QUEUE)
        if not want_if and want_q:
            raise TestRunError(errno.EINVAL, "rx_queue_index without ingress_ifindex")
        if want_if:
            _rxq_of(kernel, want_if, want_q)
            ingress, rx_queue = want_if, want_q
    frags = [data[off:off + PAGE_SIZE] for off in range(linear, size_in, PAGE_SIZE)]
    if len(frags) > MAX_SKB_FRAGS:
        raise TestRunError(errno.ENOMEM, "too many fragments")

    xdp = XdpBuff(f"test_run {getattr(prog, 'name_str', 'prog')}")
    try:
        def load() -> None:
            xdp.init_buff(frame_sz=PAGE_SIZE, ifindex=ingress, rx_queue=rx_queue)
            xdp.prepare(headroom, data[:linear], meta_sz)
            xdp.frags = list(frags)

        load()
        run_data: dict[str, Any] = {"xdp": xdp}
        if live:
            retval, duration = _run_live(prog, kernel, xdp, load, opts.repeat, batch, run_data)
        else:
            retval, duration = run_repeat(prog, kernel, xdp.addr, opts.repeat,
                                          cpu=current_cpu(), data=run_data)
        lo_addr, hi_addr = xdp.meta_bounds()
        data_addr = xdp.data
        linear_out = xdp._slice(lo_addr, hi_addr)
        frag_bytes = b"".join(xdp.frags)
        out = linear_out + frag_bytes
        errno_out = 0
        if opts.data_size_out and len(out) > opts.data_size_out and frag_bytes:
            # bpf_test_finish with fragments: the linear copy is shortened by the whole
            # fragment size, then the fragments follow it
            keep = opts.data_size_out - len(frag_bytes)
            if keep < 0:
                errno_out = errno.ENOSPC
            else:
                shown = linear_out[:keep] + frag_bytes
                out = shown + bytes(len(out) - len(shown))
        ctx_out = None
        if ctx is not None:
            _U32.pack_into(ctx, XDP_DATA, data_addr - lo_addr)
            _U32.pack_into(ctx, XDP_DATA_END, hi_addr - lo_addr)
            ctx_out = bytes(ctx)
        if errno_out:
            return TestRunResult(errno=errno_out)
        return TestRunResult(retval=retval, data_out=out, ctx_out=ctx_out, duration=duration)
    finally:
        xdp.close()


def _run_live(prog: Any, kernel: Any, xdp: XdpBuff, load: Any, repeat: int, batch: int,
              run_data: dict[str, Any]) -> tuple[int, int]:
    """``bpf_test_run_xdp_live``: every repetition on a fresh copy of the frame; the
    verdicts are not reported (retval stays 0). Frames the program sends on are sent, as
    ``xdp_test_run_batch`` does: ``XDP_TX`` out of the ingress device, ``XDP_REDIRECT``
    where the redirect helper pointed (a device, a devmap entry, a broadcast)."""
    total = 0
    repeat = max(repeat, 1)
    for _ in range(repeat):
        load()
        rctx = RunContext(cpu=current_cpu(), prog=prog, kernel=kernel)
        rctx.data.update(run_data)
        start = time.perf_counter_ns()
        ret = int(prog.run(xdp.addr, ctx=rctx, cpu=rctx.cpu)) & 0xFFFFFFFF
        total += time.perf_counter_ns() - start
        _live_forward(kernel, xdp, ret, rctx.data.get("redirect"))
    load()  # the caller's view: the original frame
    return 0, min(total // repeat, 0xFFFFFFFF)


def _live_forward(kernel: Any, xdp: XdpBuff, verdict: int, redirect: Any) -> None:
    """Send a live frame on (``XDP_PASS`` frames would go up a stack pybpf does not have:
    they are dropped, as are frames for devices that do not exist)."""
    from pybpf.net.xdp_redirect import xdp_do_redirect

    dev = dev_get_by_index(kernel, xdp.ingress_ifindex)
    if verdict == XDP_TX:
        target = dev
    elif verdict == XDP_REDIRECT and redirect is not None:
        if xdp_do_redirect(dev, xdp, redirect) is not None:
            return
        target = dev_get_by_index(kernel, int(redirect[0]))
    else:
        return
    xmit = getattr(target, "_xmit", None)
    if callable(xmit):
        xmit(xdp.packet())
