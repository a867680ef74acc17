"""Helpers whose flow-dissector version differs from the skb one under the same id.

The kernel gives ``BPF_PROG_TYPE_FLOW_DISSECTOR`` its own ``bpf_func_proto`` for
``BPF_FUNC_skb_load_bytes``: ``bpf_flow_dissector_load_bytes`` reads through
``struct bpf_flow_dissector``'s ``skb`` (NULL when dissecting without an skb, as in
``BPF_PROG_TEST_RUN``, where every load fails). The program type lists it in its
``helper_impls``; it is not a helper group of its own (no ``IMPLS`` here).
"""

from __future__ import annotations

from pybpf.runtime.context import RunContext
from pybpf.uapi.kernel_structs import KSTRUCTS

M32 = 0xFFFFFFFF
EFAULT = 14
_FD_SKB = KSTRUCTS["bpf_flow_dissector"].off("skb")


def flow_dissector_load_bytes(ctx: RunContext, fd_ctx: int, offset: int, to: int, length: int,
                              *_: int) -> int:
    """``bpf_flow_dissector_load_bytes``: ``length`` bytes at ``offset`` of the skb being
    dissected; with no skb or out of range the buffer is zeroed and -EFAULT returned."""
    offset &= M32
    skb_addr = int.from_bytes(ctx.mem.read(fd_ctx + _FD_SKB, 8), "little")
    skb = ctx.data.get("skb") if skb_addr else None
    data = getattr(skb, "data", None)
    size = getattr(skb, "len", 0)
    if offset <= 0xFFFF and data is not None and offset + length <= size:
        ctx.mem.write(to, ctx.mem.read(data + offset, length))
        return 0
    if length:
        ctx.mem.write(to, bytes(length))
    return (-EFAULT) & ((1 << 64) - 1)
