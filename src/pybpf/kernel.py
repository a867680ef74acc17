"""A ``Kernel``: one userspace instance of the BPF subsystem (DESIGN decision 6).

Everything the kernel keeps globally for BPF lives in an instance: the four IDRs (programs,
maps, BTF objects, links), the bpffs mounts, the sysctls, the LSM-like security hooks, the
helper table and the raw tracepoints programs can attach to. Tasks belong to a kernel and
carry what ``current`` carries in the kernel: credentials (uid, capabilities) and an fd
table. ``kernel.bpf(cmd, attr)`` is the system call made by the kernel's default task
(root with every capability); ``kernel.task(uid=1000, caps=())`` makes another caller.

The module keeps one default instance (:func:`default_kernel`) for the convenience API and
the CLI; :func:`bpf` is the system call on it.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TypeVar

from pybpf.errors import BpfError
from pybpf.helpers.proto import HelperTable
from pybpf.syscall.bpffs import BpfFs
from pybpf.syscall.fdtable import FdTable
from pybpf.syscall.idr import Idr

if TYPE_CHECKING:
    from pybpf.core.btf import BtfObject
    from pybpf.core.link import BpfLink
    from pybpf.core.map import KMap
    from pybpf.core.prog import BpfProg
    from pybpf.maps.core import BpfMap


_T = TypeVar("_T")

class Cap(IntEnum):
    """The capabilities the BPF subsystem looks at (``include/uapi/linux/capability.h``)."""

    CAP_DAC_OVERRIDE = 1
    CAP_NET_ADMIN = 12
    CAP_SYS_ADMIN = 21
    CAP_PERFMON = 38
    CAP_BPF = 39


ALL_CAPS = frozenset(Cap)


class Cred:
    """``struct cred``: who the caller is."""

    def __init__(self, uid: int = 0, gid: int | None = None,
                 caps: Iterable[int] | None = None) -> None:
        self.uid = uid
        self.gid = uid if gid is None else gid
        self.caps = frozenset(Cap(c) for c in caps) if caps is not None else \
            (ALL_CAPS if uid == 0 else frozenset())

    def capable(self, cap: int) -> bool:
        return cap in self.caps

    def bpf_ns_capable(self, cap: int) -> bool:
        """``bpf_token_capable(NULL, cap)``: the cap itself, or CAP_SYS_ADMIN (not for SYS_ADMIN)."""
        return cap in self.caps or (cap != Cap.CAP_SYS_ADMIN and Cap.CAP_SYS_ADMIN in self.caps)

    def bpf_capable(self) -> bool:
        return self.bpf_ns_capable(Cap.CAP_BPF)

    def perfmon_capable(self) -> bool:
        return self.bpf_ns_capable(Cap.CAP_PERFMON)

    def net_capable(self) -> bool:
        """``bpf_net_capable()``: CAP_NET_ADMIN or CAP_SYS_ADMIN."""
        return self.bpf_ns_capable(Cap.CAP_NET_ADMIN)

    def __repr__(self) -> str:
        names = ",".join(sorted(Cap(c).name for c in self.caps))
        return f"Cred(uid={self.uid}, caps={{{names}}})"


class Task:
    """A caller of ``bpf()``: credentials, an fd table, a cwd and a umask."""

    def __init__(self, kernel: Kernel, cred: Cred, pid: int, comm: str = "") -> None:
        self.kernel = kernel
        self.cred = cred
        self.pid = pid
        self.comm = comm or f"task{pid}"
        self.fds = FdTable()
        self.umask = 0o022
        self.cwd: str | None = None  # None: the process's working directory

    def bpf(self, cmd: int, attr: Any, size: int | None = None) -> int:
        """``bpf(cmd, attr, size)`` as this task: an fd, 0, or ``-errno``."""
        from pybpf.syscall.dispatch import sys_bpf

        return sys_bpf(self, cmd, attr, size)

    def close(self, fd: int) -> int:
        """``close(fd)``: 0 or ``-EBADF``."""
        try:
            self.fds.close(fd)
        except BpfError as exc:
            return -(exc.errno or errno.EBADF)
        return 0

    def file(self, fd: int) -> Any:
        return self.fds.get(fd)

    def exit(self) -> None:
        """Close every fd, as a process exit does."""
        self.fds.close_all()

    def __repr__(self) -> str:
        return f"Task(pid={self.pid}, {self.cred!r})"


# ------------------------------------------------------------------------------ sysctls

_SYSCTL_RANGES: dict[str, tuple[int, int]] = {
    "unprivileged_bpf_disabled": (0, 2),
    "bpf_jit_enable": (0, 2),
    "bpf_jit_harden": (0, 2),
    "bpf_jit_kallsyms": (0, 1),
    "bpf_stats_enabled": (0, 1),
}
_SYSCTL_PREFIXES = ("kernel.", "net.core.", "kernel/", "net/core/")


def _default_jit_enable() -> int:
    """``bpf_jit_enable`` of a new instance: ``$PYBPF_JIT_ENABLE`` when set (0, 1 or 2), else 1."""
    raw = os.environ.get("PYBPF_JIT_ENABLE", "").strip()
    if raw in ("0", "1", "2"):
        return int(raw)
    if raw:
        raise BpfError(errno.EINVAL, f"PYBPF_JIT_ENABLE={raw!r}: expected 0, 1 or 2")
    return 1


class Sysctls(MutableMapping[str, int]):
    """The BPF sysctls of an instance, dict-like, with the kernel's write rules.

    ``unprivileged_bpf_disabled`` defaults to 2 (``CONFIG_BPF_UNPRIV_DEFAULT_OFF``, as on
    the reference kernel); once set to 1 it cannot be changed (``EPERM``).
    ``bpf_jit_enable`` selects the runtime: the JIT where it is available, else the
    interpreter. Keys may be given with their ``kernel.``/``net.core.`` prefix.
    Its default comes from the environment variable ``PYBPF_JIT_ENABLE`` (``0``/``1``/``2``;
    unset: 1), so one test suite runs on either execution tier.
    """

    def __init__(self, **values: int) -> None:
        self._values = {"unprivileged_bpf_disabled": 2, "bpf_jit_enable": _default_jit_enable(),
                        "bpf_jit_harden": 0, "bpf_jit_kallsyms": 1, "bpf_stats_enabled": 0}
        for key, value in values.items():
            self[key] = value

    @staticmethod
    def _key(key: str) -> str:
        for prefix in _SYSCTL_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key not in _SYSCTL_RANGES:
            raise KeyError(key)
        return key

    def __getitem__(self, key: str) -> int:
        return self._values[self._key(key)]

    def __setitem__(self, key: str, value: int) -> None:
        name = self._key(key)
        lo, hi = _SYSCTL_RANGES[name]
        value = int(value)
        if not lo <= value <= hi:
            raise BpfError(errno.EINVAL, f"{name}: {value} not in [{lo}, {hi}]")
        if name == "unprivileged_bpf_disabled" and self._values[name] == 1 and value != 1:
            raise BpfError(errno.EPERM, "unprivileged_bpf_disabled is locked at 1")
        self._values[name] = value

    def __delitem__(self, key: str) -> None:
        raise BpfError(errno.EPERM, "sysctls cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Sysctls({self._values!r})"


# ------------------------------------------------------------------------------ security

SecurityHook = Callable[..., "int | None"]

#: Hook names (the LSM hooks of ``include/linux/lsm_hook_defs.h``) and their arguments.
SECURITY_HOOKS: dict[str, str] = {
    "bpf": "(task, cmd, attr, size) — every bpf() call, after the attr is copied in",
    "bpf_map_create": "(task, kmap, attr) — a map about to be published (6.9+ name)",
    "bpf_map": "(task, kmap, fmode) — a new fd for a map",
    "bpf_map_free": "(kmap) — the map is freed",
    "bpf_prog_load": "(task, prog, attr) — a program about to be verified",
    "bpf_prog": "(task, prog) — a new fd for a program",
    "bpf_prog_free": "(prog) — the program is freed",
    "bpf_btf_load": "(task, btf) — not an LSM hook in Linux; pybpf extension, optional",
}
_HOOK_ALIASES = {"bpf_map_alloc": "bpf_map_create", "security_bpf": "bpf"}


class SecurityHooks:
    """The LSM chain for BPF: callables that may deny an operation.

    A hook returns 0/``None`` to allow, or a negative errno (or raises ``BpfError``) to
    deny; the first denial wins, as with stacked LSMs. ``add`` returns a function that
    removes the hook again.
    """

    def __init__(self) -> None:
        self._hooks: dict[str, list[SecurityHook]] = {name: [] for name in SECURITY_HOOKS}

    def add(self, name: str, hook: SecurityHook) -> Callable[[], None]:
        name = _HOOK_ALIASES.get(name.removeprefix("security_"), name.removeprefix("security_"))
        if name not in self._hooks:
            raise KeyError(f"unknown security hook {name!r}; known: {sorted(self._hooks)}")
        self._hooks[name].append(hook)
        return lambda: self._hooks[name].remove(hook)

    def call(self, name: str, *args: Any) -> int:
        """0, or the negative errno of the first hook that denies."""
        for hook in list(self._hooks[name]):
            try:
                ret = hook(*args)
            except BpfError as exc:
                return -(exc.errno or errno.EPERM)
            if ret:
                return -abs(int(ret))
        return 0

    def check(self, name: str, *args: Any) -> None:
        """Like :meth:`call` but raises ``BpfError`` on denial."""
        ret = self.call(name, *args)
        if ret:
            raise BpfError(-ret, f"denied by security hook {name}")


# ------------------------------------------------------------------------------ kernel


def _default_helpers() -> HelperTable:
    """Every helper prototype pybpf knows, with its implementation.

    :func:`pybpf.helpers.registry.all_protos` merges the map helpers and the rest; any
    other ``pybpf.helpers`` module may also publish ``PROTOS`` (a list of FuncProto).
    """
    import importlib
    import pkgutil

    import pybpf.helpers as pkg

    table = HelperTable()
    try:
        from pybpf.helpers.registry import all_protos
    except ImportError:
        pass
    else:
        for proto in all_protos().values():
            table.register(proto)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_") or info.name == "proto":
            continue
        try:
            module = importlib.import_module(f"pybpf.helpers.{info.name}")
        except ImportError:
            continue
        for proto in getattr(module, "PROTOS", ()):
            table.register(proto)
    from pybpf.hooks.helper_fill import fill_missing  # host-hook helpers pybpf.helpers lacks

    fill_missing(table)
    return table


def boottime_ns() -> int:
    """``ktime_get_boottime_ns()``: what ``bpf_prog_info.load_time`` is measured in."""
    try:
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        return time.monotonic_ns()


class Kernel:
    """One instance of the BPF subsystem. See the module docstring."""

    def __init__(self, *, sysctls: dict[str, int] | None = None,
                 bpffs: Iterable[str] = ("/sys/fs/bpf",),
                 helpers: HelperTable | None = None,
                 vmlinux_btf: str | None = "/sys/kernel/btf/vmlinux") -> None:
        self.sysctl = Sysctls(**(sysctls or {}))
        self.security = SecurityHooks()
        self.helpers = helpers if helpers is not None else _default_helpers()
        self.prog_idr: Idr[BpfProg] = Idr("prog")
        self.map_idr: Idr[KMap] = Idr("map")
        self.btf_idr: Idr[BtfObject] = Idr("btf")
        self.link_idr: Idr[BpfLink] = Idr("link")
        self.bpffs = BpfFs(self)
        for path in bpffs:
            self.bpffs.mount(path)
        self.lock = threading.RLock()
        self.stats_refcnt = 0  # BPF_ENABLE_STATS fds open (bpf_stats_enabled_key)
        self.tracepoints = RawTracepoints(self)
        self._maps_by_obj: dict[int, KMap] = {}
        self._next_pid = os.getpid()
        self._tasks: list[Task] = []
        self.vmlinux_btf_path = vmlinux_btf
        self._vmlinux: BtfObject | None = None
        self.root = self.task(uid=0, comm="root")
        self._register_vmlinux_btf()

    # -- tasks ---------------------------------------------------------------------------
    def task(self, uid: int = 0, caps: Iterable[int] | None = None, *, gid: int | None = None,
             comm: str = "") -> Task:
        """A new caller. ``caps`` defaults to every capability for uid 0, none otherwise."""
        with self.lock:
            pid = self._next_pid
            self._next_pid += 1
        t = Task(self, Cred(uid, gid, caps), pid, comm)
        self._tasks.append(t)
        return t

    def bpf(self, cmd: int, attr: Any, size: int | None = None) -> int:
        """``bpf(cmd, attr, size)`` as the root task of this instance."""
        return self.root.bpf(cmd, attr, size)

    def close(self, fd: int) -> int:
        return self.root.close(fd)

    # -- state -----------------------------------------------------------------------------
    def stats_enabled(self) -> bool:
        """Run statistics are collected (sysctl ``bpf_stats_enabled`` or a stats fd)."""
        return bool(self.sysctl["bpf_stats_enabled"]) or self.stats_refcnt > 0

    def kmap_of(self, bmap: BpfMap) -> KMap | None:
        """The kernel-side bookkeeping of a map object the verifier or a helper holds."""
        return self._maps_by_obj.get(id(bmap))

    def _track_map(self, kmap: KMap) -> None:
        self._maps_by_obj[id(kmap.bmap)] = kmap

    def _untrack_map(self, kmap: KMap) -> None:
        self._maps_by_obj.pop(id(kmap.bmap), None)

    @property
    def vmlinux_btf(self) -> BtfObject | None:
        return self._vmlinux

    def _register_vmlinux_btf(self) -> None:
        """BTF id 1 is the kernel's own BTF, as on Linux (``bpftool btf show`` lists it)."""
        from pybpf.core.btf import BtfObject

        path = self.vmlinux_btf_path
        if not path or not os.path.exists(path):
            return
        btf = BtfObject(self, data=None, name="vmlinux", kernel_btf=True, path=path)
        btf.id = self.btf_idr.alloc_cyclic(btf)
        self._vmlinux = btf

    # -- objects, for tools ----------------------------------------------------------------
    def progs(self) -> list[BpfProg]:
        return [p for i in self.prog_idr.ids() if (p := self.prog_idr.find(i)) is not None]

    @property
    def trace_pipe(self) -> list[str]:
        """Lines ``bpf_trace_printk``/``bpf_trace_vprintk`` wrote for this instance's
        programs, oldest first (``/sys/kernel/tracing/trace_pipe``); ``.clear()`` it."""
        from pybpf.helpers.impls import trace_pipe

        return trace_pipe(self)

    def maps(self) -> list[KMap]:
        return [m for i in self.map_idr.ids() if (m := self.map_idr.find(i)) is not None]

    def btfs(self) -> list[BtfObject]:
        return [b for i in self.btf_idr.ids() if (b := self.btf_idr.find(i)) is not None]

    def links(self) -> list[BpfLink]:
        return [lk for i in self.link_idr.ids() if (lk := self.link_idr.find(i)) is not None]

    # -- python object API -----------------------------------------------------------------
    def map_create(self, map_type: int, key_size: int, value_size: int, max_entries: int,
                   map_flags: int = 0, *, name: str | bytes = b"", **kw: Any) -> Any:
        """Create a map through ``BPF_MAP_CREATE``; returns a :class:`pybpf.core.map.MapHandle`."""
        from pybpf.core.map import MapHandle

        return MapHandle.create(self, map_type, key_size, value_size, max_entries, map_flags,
                                name=name, **kw)

    def subsystem(self, key: str, factory: Callable[[Kernel], _T]) -> _T:
        """The instance's state of one subsystem (devices, sockets, routes, timers…),
        created on first use — exactly once, even when threads race for it."""
        obj = self.__dict__.get(key)
        if obj is None:
            with self.lock:
                obj = self.__dict__.get(key)
                if obj is None:
                    obj = self.__dict__[key] = factory(self)
        return obj

    # -- host hooks (pybpf.net, pybpf.hooks) ---------------------------------------------
    @property
    def netdevs(self) -> Any:
        """The instance's network devices (:class:`pybpf.net.device.NetDevices`)."""
        from pybpf.net.device import NetDevices

        return self.subsystem("_netdevs", NetDevices)

    def netdev(self, name: str, *, peer: str | None = None, mac: str | bytes | None = None,
               broadcast: str | bytes | None = None) -> Any:
        """A virtual network device (created on first use; ``peer``: a veth pair; ``mac``
        and ``broadcast``: its addresses, which decide ``skb->pkt_type`` on receive as
        ``eth_type_trans`` does)."""
        return self.netdevs.create(name, peer=peer, mac=mac, broadcast=broadcast)

    @property
    def sockets(self) -> Any:
        """The host's sockets (:class:`pybpf.net.sockets.SocketTable`) socket helpers see."""
        from pybpf.net.sockets import socket_table

        return socket_table(self)

    def socket(self, proto: str = "tcp", local: Any = None, remote: Any = None,
               **kw: Any) -> Any:
        """Declare a host socket (``local``/``remote``: ``(address, port)``), see
        :meth:`pybpf.net.sockets.SocketTable.socket`."""
        return self.sockets.socket(proto, local, remote, **kw)

    @property
    def routes(self) -> Any:
        """The host's routing table, neighbours and device MTUs
        (:class:`pybpf.net.routes.RouteTable`) that ``bpf_fib_lookup`` consults."""
        from pybpf.net.routes import route_table

        return route_table(self)

    @property
    def host_tracepoints(self) -> Any:
        """Tracepoints the host declared (:class:`pybpf.hooks.tracepoint.HostTracepoints`)."""
        from pybpf.hooks.tracepoint import HostTracepoints

        return self.subsystem("_host_tps", HostTracepoints)

    def tracepoint(self, category: str, name: str,
                   fields: Iterable[tuple[str, str]] | None = None) -> Any:
        """Declare (or get) the host tracepoint ``category:name``."""
        return self.host_tracepoints.declare(category, name, fields)

    def kprobe(self, func: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        """Make a Python function probeable (also a decorator): see :mod:`pybpf.hooks.kprobe`."""
        from pybpf.hooks.kprobe import kprobe

        return kprobe(self, func, name=name)

    def perf_timer(self, freq: int = 99, *, cpus: Iterable[int] = (0,)) -> Any:
        """A software cpu-clock perf event (:class:`pybpf.hooks.perf_timer.PerfTimer`)."""
        from pybpf.hooks.perf_timer import PerfTimer

        return PerfTimer(self, freq, cpus=tuple(cpus))

    def perf_event_open(self, *, tracepoint: tuple[str, str] | None = None,
                        kprobe: Any = None, retprobe: bool = False, freq: int | None = None,
                        cpus: Iterable[int] = (0,), timer: Any = None,
                        task: Task | None = None) -> int:
        """A perf event fd on a host hook, for ``BPF_LINK_CREATE`` with ``BPF_PERF_EVENT``
        (:func:`pybpf.hooks.perf_event.perf_event_open`)."""
        from pybpf.hooks.perf_event import perf_event_open

        return perf_event_open(self, tracepoint=tracepoint, kprobe=kprobe, retprobe=retprobe,
                               freq=freq, cpus=tuple(cpus), timer=timer, task=task)

    @property
    def netns(self) -> Any:
        """The instance's network namespace (:class:`pybpf.net.netns.NetNs`): flow
        dissector and SK_LOOKUP attachments."""
        from pybpf.net.netns import init_net

        return init_net(self)

    def netns_fd(self, task: Task | None = None) -> int:
        """An fd naming the instance's network namespace in ``task`` (default: the root
        task), as ``open("/proc/self/ns/net")``: the ``target_fd`` of flow dissector and
        SK_LOOKUP links and of ``PROG_QUERY``."""
        from pybpf.net.netns import netns_fd

        return netns_fd(self, task)

    @property
    def bpf_timers(self) -> Any:
        """The clock and queue of ``bpf_timer``s (:class:`pybpf.helpers.timer.BpfTimers`):
        ``advance(ns)`` on the virtual clock, or ``start()`` for real time."""
        from pybpf.helpers.timer import bpf_timers

        return bpf_timers(self)

    @property
    def current(self) -> Task:
        """The task BPF programs see as ``current`` (``bpf_get_current_pid_tgid`` …):
        see :mod:`pybpf.helpers.task`. Assign a task to fix it, ``None`` to reset."""
        from pybpf.helpers.task import current_task

        return current_task(self)

    @current.setter
    def current(self, task: Task | None) -> None:
        from pybpf.helpers.task import set_current

        set_current(self, task)

    def __repr__(self) -> str:
        return (f"Kernel(progs={len(self.prog_idr)}, maps={len(self.map_idr)}, "
                f"btfs={len(self.btf_idr)}, links={len(self.link_idr)})")


class RawTracepoints:
    """The raw tracepoints of an instance (``bpf_get_raw_tracepoint``).

    Names are those of the reference kernel (``btf_trace_<name>`` typedefs in its BTF),
    falling back to a short built-in list. Programs attached through
    ``BPF_RAW_TRACEPOINT_OPEN`` are kept per name; :meth:`fire` runs them, which is how a
    host event reaches BPF programs in pybpf.
    """

    FALLBACK = ("sys_enter", "sys_exit", "sched_switch", "sched_wakeup", "sched_process_exec",
                "sched_process_fork", "sched_process_exit", "task_newtask", "kfree_skb",
                "netif_receive_skb", "xdp_exception", "bpf_test_finish")

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._names: frozenset[str] | None = None
        self.attached: dict[str, list[Any]] = {}

    def names(self) -> frozenset[str]:
        if self._names is None:
            self._names = frozenset(_btf_trace_names(self.kernel.vmlinux_btf_path)
                                    or self.FALLBACK)
        return self._names

    def exists(self, name: str) -> bool:
        return name in self.names()

    def register(self, name: str, link: Any) -> None:
        self.attached.setdefault(name, []).append(link)

    def unregister(self, name: str, link: Any) -> None:
        links = self.attached.get(name, [])
        if link in links:
            links.remove(link)

    def fire(self, name: str, *args: int) -> list[int]:
        """Run every program attached to ``name`` with R1 pointing at ``args`` as a u64
        array (E2BIG past 12 arguments)."""
        from pybpf.hooks.attachments import run_on_args

        return run_on_args(self.kernel, list(self.attached.get(name, ())), args, name)


def _btf_trace_names(path: str | None) -> list[str]:
    """``<name>`` of every ``btf_trace_<name>`` string in a BTF blob's string section."""
    if not path:
        return []
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    import struct

    if len(data) < 24 or struct.unpack_from("<H", data, 0)[0] != 0xEB9F:
        return []
    hdr_len, _toff, _tlen, str_off, str_len = struct.unpack_from("<IIIII", data, 4)
    strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
    prefix = b"btf_trace_"
    return [s[len(prefix):].decode("ascii", "replace")
            for s in strings.split(b"\0") if s.startswith(prefix)]


_DEFAULT: Kernel | None = None
_DEFAULT_LOCK = threading.Lock()


def default_kernel() -> Kernel:
    """The process-wide default instance (created on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Kernel()
        return _DEFAULT


def set_default_kernel(kernel: Kernel | None) -> Kernel | None:
    """Replace the default instance (``None``: a new one on next use); returns the old one.

    For test isolation and for tools that want the CLI and ``pybpf.bpf`` on an instance of
    their own.
    """
    global _DEFAULT
    with _DEFAULT_LOCK:
        old, _DEFAULT = _DEFAULT, kernel
        return old


def bpf(cmd: int, attr: Any, size: int | None = None) -> int:
    """``bpf(cmd, attr, size)`` on the default instance: an fd, 0, or ``-errno``."""
    return default_kernel().bpf(cmd, attr, size)
