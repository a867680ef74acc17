"""Links for the host's event hooks (tracepoints, kprobes, perf timers).

In the kernel these programs attach to a perf event (``BPF_LINK_TYPE_PERF_EVENT``). The host
hooks give each attachment a real link — an ID in the instance's link IDR and an fd in the
root task — so ``bpftool link``-style tools and ``LINK_DETACH`` see it.
"""

from __future__ import annotations

from typing import Any

from pybpf.core.link import BpfLink
from pybpf.errors import BpfError
from pybpf.runtime.context import RunContext
from pybpf.syscall.objects import link_new_fd
from pybpf.uapi import BpfAttachType, BpfLinkType


class HookLinkOps:
    """Release unregisters the link from its hook; ``detach`` is ``LINK_DETACH``."""

    def release(self, link: BpfLink) -> None:
        hook = link.extra.pop("hook", None)
        if hook is not None:
            hook.unregister(link)

    def detach(self, link: BpfLink) -> None:
        link.detach()

    def fill_link_info(self, link: BpfLink, info: Any, task: Any) -> None:
        return None


HOOK_LINK_OPS = HookLinkOps()


def hook_link(kernel: Any, hook: Any, prog: Any, want_types: tuple[int, ...]) -> BpfLink:
    """A perf-event link of ``prog`` on ``hook`` (which gets ``register(link)``)."""
    from pybpf.net.device import NetDevices

    bprog = NetDevices.resolve_prog(kernel.netdevs, prog)
    if bprog.type not in want_types:
        raise BpfError(22, f"program type {bprog.type} cannot attach here "
                           f"(needs {', '.join(map(str, want_types))})")
    link = BpfLink(kernel, BpfLinkType.BPF_LINK_TYPE_PERF_EVENT, HOOK_LINK_OPS, bprog.get(),
                   BpfAttachType.BPF_PERF_EVENT)
    link.id = kernel.link_idr.alloc_cyclic(link)
    link.extra["hook"] = hook
    link.extra["fd"] = link_new_fd(kernel.root, link)
    hook.register(link)
    return link


def close_link(kernel: Any, link: BpfLink) -> None:
    """Close the root task's fd of a hook link (detaches and frees it)."""
    fd = link.extra.get("fd")
    if fd is not None:
        kernel.root.close(fd)


def run_link(kernel: Any, link: Any, ctx_addr: int, cpu: int = 0) -> int | None:
    """Run a hook link's program on ``ctx_addr`` (None if it has gone): the run context
    carries the link's ``bpf_get_attach_cookie`` value and the hook's
    ``bpf_get_func_ip`` address."""
    prog = link.prog
    if prog is None or link.detached:
        return None
    rc = RunContext(kernel=kernel, prog=prog, cpu=cpu)
    rc.data["attach_cookie"] = link.extra.get("cookie", 0)
    rc.data["func_ip"] = link.extra.get("func_ip", 0)
    return int(prog.run(ctx_addr, ctx=rc, cpu=cpu))


MAX_BPF_FUNC_ARGS = 12


def run_on_args(kernel: Any, links: list[Any], args: tuple[int, ...], name: str) -> list[int]:
    """``bpf_trace_run<N>``: run each link's program with R1 pointing at the event's
    arguments as a ``u64`` array (read-only registered memory, as raw tracepoint and
    tp_btf programs read them); the return values of the programs that ran."""
    import struct

    from pybpf.runtime.memory import REGISTRY

    if len(args) > MAX_BPF_FUNC_ARGS:
        raise BpfError(7, f"{name}: {len(args)} arguments (at most {MAX_BPF_FUNC_ARGS})")
    if not links:
        return []
    buf = bytearray(8 * max(len(args), 1))
    struct.pack_into(f"<{len(args)}Q", buf, 0, *(int(a) & (2**64 - 1) for a in args))
    region = REGISTRY.wrap(buf, f"raw_tp {name} args", writable=False)
    try:
        rets = [run_link(kernel, link, region.start) for link in links]
    finally:
        REGISTRY.remove(region)
    return [r for r in rets if r is not None]
