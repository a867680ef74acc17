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
BPF_PROG_TYPE_TRACING = 26


def btf_pointer_args(prog: Any) -> dict[int, tuple[int, bool]]:
    """Argument index → (pointee size, may be NULL) for the struct-pointer arguments a
    tp_btf program's verifier typed as ``PTR_TO_BTF_ID`` (from the ``btf_trace_<tp>``
    prototype; NULL-able per ``__nullable`` and the raw_tp null-args table)."""
    cached = getattr(prog, "_btf_pointer_args", None)
    if cached is not None:
        return cached
    out: dict[int, tuple[int, bool]] = {}
    btf_obj = getattr(prog, "attach_btf", None)
    if getattr(prog, "type", 0) == BPF_PROG_TYPE_TRACING and btf_obj is not None:
        from pybpf.btf.raw import BtfPtr, BtfTypedef
        from pybpf.verifier.attach_target import _raw_tp_proto
        from pybpf.verifier.btf_access import RAW_TP_NULL_ARGS, is_struct, skip_modifiers

        btf = btf_obj.parsed()
        t = btf.types[prog.attach_btf_id]
        if isinstance(t, BtfTypedef) and str(t.name).startswith("btf_trace_"):
            tp = str(t.name)[len("btf_trace_"):]
            proto = _raw_tp_proto(btf, t, tp)
            null_args = RAW_TP_NULL_ARGS.get(tp, 0)
            for i, param in enumerate(list(getattr(proto, "params", ()))[1:]):
                pt, _ = skip_modifiers(btf, param.type)
                if isinstance(pt, BtfPtr):
                    st, _ = skip_modifiers(btf, pt.type)
                    if is_struct(st):
                        nullable = bool(null_args >> (4 * i) & 0x3) \
                            or str(param.name).endswith("__nullable")
                        out[i] = (int(getattr(st, "size", 0)), nullable)
    prog._btf_pointer_args = out
    return out


def check_btf_pointer_args(prog: Any, args: tuple[int, ...], name: str) -> None:
    """A tp_btf program dereferences its struct-pointer arguments without checks (they are
    trusted, as the kernel's own objects are), so a host event must pass pybpf memory
    holding the whole struct there (or NULL where the tracepoint may pass NULL, which the
    verifier made the program check) — anything else is EFAULT, never a wild load."""
    from pybpf.runtime.memory import REGISTRY

    if prog is None:
        return
    for i, (size, nullable) in btf_pointer_args(prog).items():
        addr = int(args[i]) if i < len(args) else 0
        if addr == 0 and nullable:
            continue
        if REGISTRY.find(addr, max(size, 1)) is None:
            raise BpfError(14, f"{name}: argument {i} (0x{addr:x}) does not point to "
                               f"{size} bytes of pybpf memory")


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
    for link in links:
        check_btf_pointer_args(link.prog, args, name)
    buf = bytearray(8 * max(len(args), 1))
    struct.pack_into(f"<{len(args)}Q", buf, 0, *(int(a) & (2**64 - 1) for a in args))
    region = REGISTRY.wrap(buf, f"raw_tp {name} args", writable=False)
    try:
        rets = [run_link(kernel, link, region.start) for link in links]
    finally:
        REGISTRY.remove(region)
    return [r for r in rets if r is not None]
