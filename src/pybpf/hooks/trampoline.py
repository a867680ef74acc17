"""BPF trampolines on host functions: fentry, fexit and fmod_ret (``kernel/bpf/trampoline.c``).

In Linux a TRACING program loaded with ``attach_btf_id`` naming a kernel function attaches
(``BPF_LINK_CREATE`` or ``BPF_RAW_TRACEPOINT_OPEN`` without a name) to that function's
trampoline. Calling the function then runs, in the kernel's order:

1. every fentry program, on a ctx that is the function's arguments as a ``u64`` array;
2. every fmod_ret program, on the arguments plus a return slot (0 before the first); the
   first non-zero return value becomes the function's return value and the function body
   (and the remaining fmod_ret programs) are skipped;
3. the function body, unless skipped; its return value goes into the return slot;
4. every fexit program, on the arguments plus the return slot.

pybpf's "kernel functions" are :class:`HostFunction` objects: a Python callable taking and
returning ``u64`` values, whose pointer arguments are real addresses in the memory
registry. The functions ``BPF_PROG_TEST_RUN`` calls for TRACING programs
(``bpf_fentry_test1`` … ``bpf_fentry_test10``, ``bpf_modify_return_test``,
``bpf_modify_return_test2`` from ``net/bpf/test_run.c``) are built in, with the kernel's
bodies; a host adds its own with :func:`register_host_function` (it must also be named by
the instance's kernel BTF for a program to load against it).
"""

from __future__ import annotations

import errno
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pybpf.core.link import BpfLink
from pybpf.errors import BpfError
from pybpf.hooks.attachments import run_link
from pybpf.runtime.memory import REGISTRY
from pybpf.uapi import BpfAttachType, BpfLinkType

A = BpfAttachType
M64 = (1 << 64) - 1
MAX_BPF_FUNC_ARGS = 12
BPF_MAX_TRAMP_LINKS = 38  # x86-64: links per trampoline (fentry + fexit + fmod_ret)
TRAMP_KINDS = (A.BPF_TRACE_FENTRY, A.BPF_TRACE_FEXIT, A.BPF_MODIFY_RETURN)
#: words of the trampoline frame below the ctx: the traced function's address
#: (``ctx - 16``) and its argument count (``ctx - 8``)
FRAME_WORDS = 2


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _sext(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


@dataclass
class HostFunction:
    """A function programs can trace: ``body(*u64 args) -> u64`` with ``nargs`` arguments.

    ``ret_bits`` is the width of the C return type (32 for ``int``/``u32``, 64 for ``long``
    and pointers, 0 for ``void``): the caller sees the return slot truncated to it.
    """

    name: str
    body: Callable[..., int]
    nargs: int
    ret_bits: int = 32
    ret_signed: bool = True
    fentry: list[BpfLink] = field(default_factory=list)
    fexit: list[BpfLink] = field(default_factory=list)
    fmod_ret: list[BpfLink] = field(default_factory=list)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def links_for(self, attach_type: int) -> list[BpfLink]:
        if attach_type == A.BPF_TRACE_FENTRY:
            return self.fentry
        if attach_type == A.BPF_TRACE_FEXIT:
            return self.fexit
        return self.fmod_ret

    def link_count(self) -> int:
        return len(self.fentry) + len(self.fexit) + len(self.fmod_ret)

    def _ret(self, raw: int) -> int:
        if not self.ret_bits:
            return 0
        raw &= (1 << self.ret_bits) - 1
        return _sext(raw, self.ret_bits) if self.ret_signed else raw

    def __call__(self, *args: int, cpu: int = 0) -> int:
        """Call through the trampoline: what the caller receives (C-typed, as a Python int)."""
        self.calls += 1
        if len(args) != self.nargs:
            raise TypeError(f"{self.name} takes {self.nargs} arguments, not {len(args)}")
        if not self.link_count():
            return self._ret(int(self.body(*args)))
        with self.lock:
            fentry, fmod, fexit = list(self.fentry), list(self.fmod_ret), list(self.fexit)
        # the trampoline's frame: the function's address, the argument count, then the
        # ctx programs get (the arguments and the return slot) — ``bpf_get_func_ip`` and
        # ``bpf_get_func_arg*`` read the two words below the ctx (``ctx - 16``, ``ctx - 8``)
        buf = bytearray(8 * (FRAME_WORDS + self.nargs + 1))
        struct.pack_into(f"<QQ{self.nargs}Q", buf, 0, _func_ip(self.name), self.nargs,
                         *(a & M64 for a in args))
        region = REGISTRY.wrap(buf, f"trampoline {self.name} ctx", writable=False)
        ctx = region.start + 8 * FRAME_WORDS
        ret_off = 8 * (FRAME_WORDS + self.nargs)
        try:
            for link in fentry:
                _run_link(link, ctx, cpu)
            skip = False
            for link in fmod:
                r0 = _run_link(link, ctx, cpu)
                if r0 is None:
                    continue
                struct.pack_into("<Q", buf, ret_off, r0 & M64)
                if r0 & M64:
                    skip = True
                    break
            if not skip:
                struct.pack_into("<Q", buf, ret_off, int(self.body(*args)) & M64)
            for link in fexit:
                _run_link(link, ctx, cpu)
            return self._ret(struct.unpack_from("<Q", buf, ret_off)[0])
        finally:
            REGISTRY.remove(region)


def _run_link(link: BpfLink, ctx_addr: int, cpu: int) -> int | None:
    r0 = run_link(link.kernel, link, ctx_addr, cpu)
    return None if r0 is None else r0 & M64


# ------------------------------------------------------------------------ memory access
def _load(addr: int, size: int) -> int:
    """``*(uN *)addr`` on registered memory (a fault is a kernel oops: BpfError EFAULT)."""
    try:
        return REGISTRY.load(addr, size)
    except Exception as exc:  # BpfFault
        raise BpfError(errno.EFAULT, f"host function read {addr:#x}: {exc}") from None


def _store(addr: int, size: int, value: int) -> None:
    try:
        REGISTRY.store(addr, size, value & ((1 << (8 * size)) - 1))
    except Exception as exc:
        raise BpfError(errno.EFAULT, f"host function write {addr:#x}: {exc}") from None


# ------------------------------------------------------------------------ the test functions
def _int(v: int) -> int:
    return _s32(v)


def _char(v: int) -> int:
    return _sext(v, 8)


def _short(v: int) -> int:
    return _sext(v, 16)


def _long(v: int) -> int:
    return _sext(v, 64)


def _modify_return_test(a: int, b: int) -> int:
    _store(b, 4, _s32(_load(b, 4)) + 1)
    return _int(a) + _s32(_load(b, 4))


def _modify_return_test2(a: int, b: int, c: int, d: int, e: int, f: int, g: int) -> int:
    _store(b, 4, _s32(_load(b, 4)) + 1)
    return _int(a) + _s32(_load(b, 4)) + _short(c) + _int(d) + _long(e) + _char(f) + _int(g)


#: ``net/bpf/test_run.c``'s traceable functions: name → (body, nargs, ret bits, signed).
TEST_FUNCTIONS: dict[str, tuple[Callable[..., int], int, int, bool]] = {
    "bpf_fentry_test1": (lambda a: _int(a) + 1, 1, 32, True),
    "bpf_fentry_test2": (lambda a, b: _int(a) + b, 2, 32, True),
    "bpf_fentry_test3": (lambda a, b, c: _char(a) + _int(b) + c, 3, 32, True),
    "bpf_fentry_test4": (lambda a, b, c, d: _long(a) + _char(b) + _int(c) + d, 4, 32, True),
    "bpf_fentry_test5": (lambda a, b, c, d, e: a + _long(b) + _short(c) + _int(d) + e, 5, 32,
                         True),
    "bpf_fentry_test6": (lambda a, b, c, d, e, f: a + _long(b) + _short(c) + _int(d)
                         + _long(e) + f, 6, 32, True),
    "bpf_fentry_test7": (lambda arg: arg, 1, 32, True),
    "bpf_fentry_test8": (lambda arg: _load(arg, 8), 1, 32, True),  # arg->a
    "bpf_fentry_test9": (lambda a: _load(a, 4), 1, 32, False),  # u32 *a
    "bpf_fentry_test10": (lambda a: a, 1, 32, True),  # (long)a
    "bpf_modify_return_test": (_modify_return_test, 2, 32, True),
    "bpf_modify_return_test2": (_modify_return_test2, 7, 32, True),
}


class HostFunctions:
    """The traceable functions of one instance, by name."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self._funcs: dict[str, HostFunction] = {}
        for name, (body, nargs, bits, signed) in TEST_FUNCTIONS.items():
            self._funcs[name] = HostFunction(name, body, nargs, bits, signed)

    def register(self, name: str, body: Callable[..., int], nargs: int, *,
                 ret_bits: int = 64, ret_signed: bool = False) -> HostFunction:
        if not 0 <= nargs <= MAX_BPF_FUNC_ARGS:
            raise BpfError(errno.EINVAL, f"{name}: {nargs} arguments (at most 12)")
        if name in self._funcs:
            raise BpfError(errno.EEXIST, f"host function {name!r} already registered")
        fn = HostFunction(name, body, nargs, ret_bits, ret_signed)
        self._funcs[name] = fn
        return fn

    def get(self, name: str) -> HostFunction | None:
        return self._funcs.get(name)

    def __getitem__(self, name: str) -> HostFunction:
        return self._funcs[name]

    def names(self) -> list[str]:
        return sorted(self._funcs)


def host_functions(kernel: Any) -> HostFunctions:
    """The instance's :class:`HostFunctions` (created on first use)."""
    return kernel.subsystem("_host_functions", HostFunctions)


def host_function_btf_ids(kernel: Any) -> dict[str, int]:
    """The vmlinux BTF ids of this instance's host functions (``attach_btf_id`` of a
    fentry/fexit/fmod_ret program on one); empty without vmlinux BTF."""
    btf = kernel.vmlinux_btf
    if btf is None:
        return {}
    wanted = set(host_functions(kernel).names())
    return {t.name: t.id for t in btf.parsed().types
            if type(t).__name__ == "BtfFunc" and t.name in wanted}


def register_host_function(kernel: Any, name: str, body: Callable[..., int], nargs: int,
                           **kw: Any) -> HostFunction:
    """Make ``body`` traceable under ``name`` on ``kernel``."""
    return host_functions(kernel).register(name, body, nargs, **kw)


# ------------------------------------------------------------------------ links
def attach_target_name(prog: Any) -> str | None:
    """The name of the function ``prog.attach_btf_id`` names in its attach BTF."""
    btf = getattr(prog, "attach_btf", None)
    btf_id = getattr(prog, "attach_btf_id", 0)
    if btf is None or not btf_id:
        return None
    try:
        t = btf.parsed().types[btf_id]
    except (IndexError, AttributeError, ValueError):
        return None
    return getattr(t, "name", None) or None


class TracingLinkOps:
    """``bpf_tracing_link_lops``: release leaves the trampoline; detach is allowed."""

    def release(self, link: BpfLink) -> None:
        fn: HostFunction | None = link.extra.get("func")
        if fn is None:
            return
        with fn.lock:
            lst = fn.links_for(link.attach_type)
            if link in lst:
                lst.remove(link)

    def detach(self, link: BpfLink) -> None:
        link.detach()

    def fill_link_info(self, link: BpfLink, info: Any, task: Any) -> None:
        tr = info.tracing
        tr.attach_type = link.attach_type
        tr.target_obj_id = link.extra.get("target_obj_id", 0)
        tr.target_btf_id = link.extra.get("target_btf_id", 0)
        tr.cookie = link.extra.get("cookie", 0)


TRACING_LINK_OPS = TracingLinkOps()


def tracing_link_attach(kernel: Any, prog: Any, cookie: int = 0) -> BpfLink:
    """``bpf_tracing_prog_attach`` for fentry/fexit/fmod_ret: a link on the trampoline.

    Errnos as the kernel: EINVAL for other attach types; ENOENT when the target is not a
    host function of the instance (the kernel would have no trampoline address); E2BIG
    when the trampoline is full; EBUSY when the program is already attached there.
    The caller (the syscall layer) gives the link its ID and fd.
    """
    eat = int(prog.expected_attach_type)
    if eat not in TRAMP_KINDS:
        raise BpfError(errno.EINVAL, "not an fentry/fexit/fmod_ret program")
    name = attach_target_name(prog)
    fn = host_functions(kernel).get(name) if name else None
    if fn is None:
        raise BpfError(errno.ENOENT, f"no traceable host function {name!r}")
    link = BpfLink(kernel, BpfLinkType.BPF_LINK_TYPE_TRACING, TRACING_LINK_OPS, prog, eat)
    link.extra.update(func=fn, cookie=cookie, target_btf_id=prog.attach_btf_id,
                      target_obj_id=getattr(prog.attach_btf, "id", 0),
                      func_ip=_func_ip(name or ""))
    return link


def trampoline_link(link: BpfLink) -> None:
    """``bpf_trampoline_link_prog``: put a prepared link on its function's trampoline."""
    fn: HostFunction = link.extra["func"]
    with fn.lock:
        lst = fn.links_for(link.attach_type)
        if any(other.prog is link.prog for other in lst):
            raise BpfError(errno.EBUSY, "program already attached to this trampoline")
        if fn.link_count() >= BPF_MAX_TRAMP_LINKS:
            raise BpfError(errno.E2BIG, "trampoline full")
        lst.append(link)


def _func_ip(name: str) -> int:
    """A stable pseudo kernel text address for ``name`` (what ``bpf_get_func_ip`` returns)."""
    import zlib

    return 0xFFFFFFFF81000000 | (zlib.crc32(name.encode()) << 4)

