"""``Program``: a loaded BPF program as a Python object, a thin layer over ``bpf()``.

Every method is one or two system calls on the program's :class:`~pybpf.kernel.Kernel`
(``BPF_PROG_LOAD``, ``BPF_OBJ_GET_INFO_BY_FD``, ``BPF_PROG_TEST_RUN``, ``BPF_OBJ_PIN``…);
failures raise :class:`~pybpf.errors.BpfError` with the kernel's errno and, for a load, the
verifier log.

>>> prog = Program.load(kernel, BPF_PROG_TYPE_SOCKET_FILTER, insns, license="GPL")
>>> prog.test_run(data_in=bytes(64)).retval
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pybpf.errors import BpfError
from pybpf.fdobject import FdObject
from pybpf.isa.insn import Insn, encode
from pybpf.kernel import Kernel, Task, default_kernel
from pybpf.uapi import BpfCmd, bpf_attr

DEFAULT_LOG_SIZE = 1 << 20


@dataclass
class TestRun:
    """Result of :meth:`Program.test_run` (libbpf's ``bpf_test_run_opts`` outputs)."""

    __test__ = False

    retval: int
    data_out: bytes
    ctx_out: bytes
    duration: int
    data_size_out: int = 0
    ctx_size_out: int = 0
    ctx_in: bytes = b""  # the ctx_in buffer after the run (syscall programs write into it)

    def packet(self) -> Any:
        """``data_out`` as a scapy ``Ether`` packet (needs the optional ``scapy``)."""
        try:
            from scapy.layers.l2 import Ether
        except ImportError as e:  # pragma: no cover - exercised without scapy only
            raise ImportError("TestRun.packet() needs scapy: pip install 'pybpf[net]'") from e
        return Ether(self.data_out)


def as_bytes(data: Any, what: str) -> bytes:
    """Packets and contexts as the syscall wants them: bytes-like objects, scapy packets
    and ctypes structures (anything ``bytes()`` accepts without inventing content)."""
    if data is None:
        return b""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, int) or not (hasattr(data, "__bytes__") or hasattr(data, "_fields_")
                                     or hasattr(data, "__buffer__")):
        raise TypeError(f"{what} must be bytes, a scapy packet or a ctypes structure, "
                        f"not {type(data).__name__}")
    return bytes(data)


def _addr(buf: Any) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


class Program(FdObject):
    """A program fd in a task of a kernel instance."""

    GET_FD_BY_ID = BpfCmd.BPF_PROG_GET_FD_BY_ID
    ID_FIELD = "prog_id"
    KIND = "program"

    def __init__(self, task: Task, fd: int, log: str = "") -> None:
        super().__init__(task, fd)
        self.log = log

    @property
    def kernel(self) -> Kernel:
        return self.task.kernel

    # -- construction ------------------------------------------------------------------
    @classmethod
    def load(cls, kernel: Kernel | None, prog_type: int, insns: Sequence[Insn] | bytes, *,
             license: str = "GPL", log_level: int = 0, log_size: int | None = None,
             name: str = "", expected_attach_type: int = 0, prog_flags: int = 0,
             task: Task | None = None, **fields: Any) -> Program:
        """``BPF_PROG_LOAD``. With ``log_level`` > 0 a log buffer of ``log_size`` bytes (1 MiB
        by default) is passed; on failure the log is retried at level 1 for the error."""
        kernel = kernel or default_kernel()
        task = task or kernel.root
        raw = insns if isinstance(insns, (bytes, bytearray)) else encode(insns)
        code = ctypes.create_string_buffer(bytes(raw), max(len(raw), 1))
        lic = ctypes.create_string_buffer(license.encode())

        def attempt(level: int) -> tuple[int, str]:
            size = (log_size if log_size is not None else DEFAULT_LOG_SIZE) if level else 0
            logbuf = ctypes.create_string_buffer(size) if size else None
            attr = bpf_attr()
            attr.prog_type, attr.insn_cnt = prog_type, len(raw) // 8
            attr.insns, attr.license = ctypes.addressof(code), ctypes.addressof(lic)
            attr.log_level, attr.log_size, attr.log_buf = level, size, _addr(logbuf)
            attr.prog_name = name.encode()
            attr.expected_attach_type, attr.prog_flags = expected_attach_type, prog_flags
            for key, value in fields.items():
                setattr(attr, key, value)
            ret = task.bpf(BpfCmd.BPF_PROG_LOAD, attr)
            text = logbuf.value.decode("utf-8", "replace") if logbuf is not None else ""
            return ret, text

        ret, log = attempt(log_level)
        if ret < 0 and not log_level and -ret not in (errno.EPERM, errno.E2BIG, errno.EFAULT):
            _ret2, log = attempt(1)
        if ret < 0:
            raise BpfError(-ret, "BPF_PROG_LOAD failed", log)
        return cls(task, ret, log)

    @classmethod
    def from_fd(cls, task: Task, fd: int) -> Program:
        return cls(task, fd)

    @property
    def tag(self) -> str:
        return bytes(self.info().tag).hex()

    @property
    def name(self) -> str:
        return bytes(self.info().name).decode()

    @property
    def obj(self) -> Any:
        """The kernel-side :class:`pybpf.core.prog.BpfProg` (for tools and tests)."""
        file = self.task.fds.get(self.fd)
        if file is None:
            raise BpfError(errno.EBADF, f"fd {self.fd} is not open")
        return file.obj

    # -- actions -----------------------------------------------------------------------
    def test_run(self, data_in: Any = b"", *, data_size_out: int | None = None,
                 ctx_in: Any = None, ctx_size_out: int | None = None,
                 repeat: int = 1, flags: int = 0, cpu: int = 0,
                 batch_size: int = 0) -> TestRun:
        """``BPF_PROG_TEST_RUN`` with libbpf's option names.

        ``data_in`` and ``ctx_in`` may be bytes, scapy packets or ctypes structures
        (e.g. ``pybpf.uapi.sk_buff``). As with libbpf, the context comes back only when
        ``ctx_size_out`` asks for it (program types without a ctx_out, such as raw
        tracepoints and syscall programs, refuse one); ``data_out`` defaults to room for
        the input plus 512 bytes. :meth:`TestRun.packet` parses ``data_out`` with scapy.
        """
        data_in = as_bytes(data_in, "data_in")
        ctx_in = as_bytes(ctx_in, "ctx_in") if ctx_in is not None else None
        if data_size_out is None:
            data_size_out = len(data_in) + 512 if data_in else 0
        if ctx_size_out is None:
            ctx_size_out = 0
        din = ctypes.create_string_buffer(data_in, len(data_in)) if data_in else None
        dout = ctypes.create_string_buffer(data_size_out) if data_size_out else None
        cin = ctypes.create_string_buffer(ctx_in, len(ctx_in)) if ctx_in else None
        cout = ctypes.create_string_buffer(ctx_size_out) if ctx_size_out else None
        attr = bpf_attr()
        t = attr.test
        t.prog_fd, t.repeat, t.flags, t.cpu, t.batch_size = self.fd, repeat, flags, cpu, \
            batch_size
        t.data_in, t.data_size_in = _addr(din), len(data_in)
        t.data_out, t.data_size_out = _addr(dout), data_size_out
        t.ctx_in, t.ctx_size_in = _addr(cin), len(ctx_in or b"")
        t.ctx_out, t.ctx_size_out = _addr(cout), ctx_size_out
        ret = self.task.bpf(BpfCmd.BPF_PROG_TEST_RUN, attr)
        if ret < 0:
            raise BpfError(-ret, "BPF_PROG_TEST_RUN failed")
        data = dout.raw[:min(t.data_size_out, data_size_out)] if dout is not None else b""
        ctx = cout.raw[:min(t.ctx_size_out, ctx_size_out)] if cout is not None else b""
        return TestRun(t.retval, data, ctx, t.duration, t.data_size_out, t.ctx_size_out,
                       cin.raw[:len(ctx_in or b"")] if cin is not None else b"")

    def bind_map(self, map_fd: int) -> None:
        attr = bpf_attr()
        attr.prog_bind_map.prog_fd, attr.prog_bind_map.map_fd = self.fd, map_fd
        ret = self.task.bpf(BpfCmd.BPF_PROG_BIND_MAP, attr)
        if ret < 0:
            raise BpfError(-ret, "BPF_PROG_BIND_MAP failed")

    def attach_tcx(self, dev: Any, *, ingress: bool = True) -> Any:
        """A tcx link on a device (a :class:`pybpf.net.device.NetDevice`, or an ifindex)."""
        from pybpf.link import Link

        return Link.tcx(self, int(getattr(dev, "ifindex", dev)), ingress=ingress)

    def attach_xdp(self, dev: Any, flags: int = 0) -> Any:
        """An XDP link on a device (a :class:`pybpf.net.device.NetDevice`, or an ifindex)."""
        from pybpf.link import Link

        return Link.xdp(self, int(getattr(dev, "ifindex", dev)), flags)

    def attach_perf_event(self, perf_fd: int | None = None, *, timer: Any = None,
                          cookie: int = 0) -> Any:
        """``BPF_LINK_CREATE`` with ``BPF_PERF_EVENT``: on a perf event fd of this task
        (``kernel.perf_event_open(...)``), or on a new event of a host ``timer``
        (``kernel.perf_timer(freq)``, driven with ``timer.tick()``/``start()``)."""
        from pybpf.link import Link

        if perf_fd is None:
            return self._attach_new_event(cookie, timer=timer)
        return Link.perf_event(self, perf_fd, cookie)

    def _attach_new_event(self, cookie: int, **event: Any) -> Any:
        fd = self.kernel.perf_event_open(task=self.task, **event)
        try:
            return self.attach_perf_event(fd, cookie=cookie)
        finally:
            self.task.close(fd)  # the link keeps the event alive

    def attach_tracepoint(self, category: str, name: str, *, cookie: int = 0) -> Any:
        """Link this TRACEPOINT program to the host tracepoint ``category:name``."""
        return self._attach_new_event(cookie, tracepoint=(category, name))

    def attach_kprobe(self, func: Any, *, retprobe: bool = False, cookie: int = 0) -> Any:
        """Link this KPROBE program to a probed Python function (``kernel.kprobe(f)``)."""
        return self._attach_new_event(cookie, kprobe=func, retprobe=retprobe)

    def attach_trace(self, *, cookie: int = 0) -> Any:
        """Link this fentry/fexit/fmod_ret program to the trampoline of its target."""
        from pybpf.link import Link

        return Link.trace(self, int(self.obj.expected_attach_type), cookie)

    def attach_raw_tracepoint(self, name: str) -> Any:
        """``BPF_RAW_TRACEPOINT_OPEN``: a :class:`pybpf.link.Link`."""
        from pybpf.link import Link

        return Link.raw_tracepoint(self, name)
