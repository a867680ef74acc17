"""The ``ProgTypeOps`` protocol (the kernel's ``bpf_verifier_ops`` + ``bpf_prog_ops``).

DESIGN decision 1: a program type is one module implementing :class:`ProgTypeOps` and
registering it with :func:`register_prog_type`. The syscall layer (``BPF_PROG_LOAD``,
``BPF_PROG_TEST_RUN``), the verifier (ctx accesses, helper availability) and the hooks
reach program-type behaviour only through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pybpf.helpers.proto import FuncProto


@runtime_checkable
class ProgTypeOps(Protocol):
    """Behaviour of one ``BPF_PROG_TYPE_*``."""

    prog_type: int
    ctx_size: int  # size of the user-visible context struct (0 if none)

    def get_func_proto(self, func_id: int, prog: Any) -> FuncProto | None:
        """The helper prototype this type offers for ``func_id``, or ``None``."""

    def is_valid_access(self, off: int, size: int, write: bool, prog: Any,
                        info: dict[str, Any]) -> bool:
        """Whether a ctx access is allowed; may set ``info['reg_type']`` (e.g. PTR_TO_PACKET)
        and ``info['ctx_field_size']`` for narrow loads, as the kernel's callback does."""

    def convert_ctx_access(self, write: bool, insn: Any,
                           prog: Any) -> tuple[list[Any], int] | None:
        """The instructions a verified ctx access becomes, and the size of the field read
        (``target_size``, for narrow loads), as the kernel's ``convert_ctx_access``:
        they reach pybpf's internal object (``sk_buff``, ``xdp_buff``…) that ``r1`` really
        points to at run time. ``None``: this type reads its ctx in place (kprobe
        ``pt_regs``, raw tracepoint args). Narrow loads arrive widened to the field's size;
        :mod:`pybpf.verifier.ctx_convert` adds the shift and mask."""

    def test_run(self, prog: Any, kernel: Any, opts: TestRunOpts) -> TestRunResult:
        """``BPF_PROG_TEST_RUN`` for this type (``net/bpf/test_run.c`` rules).

        ``prog`` is the :class:`pybpf.core.prog.BpfProg` (run it with ``prog.run(ctx_addr)``
        so run statistics are counted), ``kernel`` the instance. See :class:`TestRunOpts`
        and :class:`TestRunResult` for what the syscall layer does around this call.
        """


_BUILTINS_LOADED = False  # every type_*.py imported once, whatever registered first
_REGISTRY: dict[int, ProgTypeOps] = {}


def register_prog_type(ops: ProgTypeOps) -> ProgTypeOps:
    _REGISTRY[int(ops.prog_type)] = ops
    return ops


def find_prog_type(prog_type: int) -> ProgTypeOps | None:
    _load_builtin_types()
    return _REGISTRY.get(int(prog_type))


def _load_builtin_types() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    import importlib
    import pkgutil

    import pybpf.progs as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("type_"):
            importlib.import_module(f"pybpf.progs.{info.name}")


# ---------------------------------------------------------------------------- test_run
#
# BPF_PROG_TEST_RUN is split like net/bpf/test_run.c: the syscall layer
# (pybpf.syscall.prog_cmds) does the common part — CHECK_ATTR, the ctx_in/ctx_size_in and
# ctx_out/ctx_size_out pairing (EINVAL), fd → program (EBADF/EINVAL), ENOTSUPP (524) for
# types without ``test_run`` — and, after the run, ``bpf_test_finish``/``bpf_ctx_finish``:
# copying data_out/ctx_out back with their ENOSPC truncation rule and writing retval,
# duration, data_size_out and ctx_size_out. The type's ``test_run`` does everything in
# between: its own size and flag checks, building the context, running the program.


class TestRunOpts:
    """What ``ProgTypeOps.test_run`` receives: the ``bpf_attr.test`` fields, decoded.

    Field names are libbpf's ``struct bpf_test_run_opts``. ``data_in`` and ``ctx_in`` are
    copied from the caller's memory *when first read*: a type performs its size checks
    (``EINVAL``) first and only then touches the bytes, so a bad pointer gives ``EFAULT``
    exactly where the kernel's ``copy_from_user`` would. Reading them raises
    :class:`pybpf.errors.BpfError` (``EFAULT``) for an unreadable buffer.

    - ``data_in`` (bytes): the packet/input, ``data_size_in`` bytes (``b""`` when none);
    - ``data_size_out``: the caller's data_out buffer size (0: no size hint — the kernel
      then copies the whole output; ``has_data_out`` tells whether a buffer was given);
    - ``ctx_in`` (bytes | None): the context struct the caller passed, ``None`` when not;
    - ``ctx_size_out``: the caller's ctx_out buffer size (0 with ``has_ctx_out`` False);
    - ``repeat``: runs to perform (the type maps 0 to 1, as ``bpf_test_run`` does);
    - ``flags``: ``BPF_F_TEST_*`` flags (the type rejects those it does not know: EINVAL);
    - ``cpu``: with ``BPF_F_TEST_RUN_ON_CPU``, the CPU to run on;
    - ``batch_size``: XDP live-frames batch size.
    ``task`` is the calling :class:`pybpf.kernel.Task` (credentials), ``kernel`` its
    instance.
    """

    __test__ = False  # not a pytest class

    def __init__(self, *, data_in: bytes | Callable[[], bytes] = b"", data_size_in: int = 0,
                 data_size_out: int = 0, has_data_out: bool = False,
                 ctx_in: bytes | Callable[[], bytes] | None = None, ctx_size_in: int = 0,
                 ctx_size_out: int = 0, has_ctx_out: bool = False, repeat: int = 1,
                 flags: int = 0, cpu: int = 0, batch_size: int = 0, task: Any = None,
                 kernel: Any = None, has_data_in: bool | None = None, duration: int = 0,
                 ctx_in_addr: int = 0) -> None:
        self._data_in = data_in
        # what bpf_attr said, for types that refuse a data_in pointer or an input duration
        self.has_data_in = bool(data_in) if has_data_in is None else has_data_in
        self.duration = duration
        self.ctx_in_addr = ctx_in_addr  # the caller's ctx_in (syscall programs write back)
        self.data_size_in = data_size_in if data_size_in or callable(data_in) \
            else len(data_in)
        self.data_size_out = data_size_out
        self.has_data_out = has_data_out
        self._ctx_in = ctx_in
        self.ctx_size_in = ctx_size_in if ctx_size_in or ctx_in is None or callable(ctx_in) \
            else len(ctx_in)
        self.ctx_size_out = ctx_size_out
        self.has_ctx_out = has_ctx_out
        self.repeat = repeat
        self.flags = flags
        self.cpu = cpu
        self.batch_size = batch_size
        self.task = task
        self.kernel = kernel

    @property
    def data_in(self) -> bytes:
        if callable(self._data_in):
            self._data_in = self._data_in()
        return self._data_in

    @property
    def ctx_in(self) -> bytes | None:
        if callable(self._ctx_in):
            self._ctx_in = self._ctx_in()
        return self._ctx_in

    def __repr__(self) -> str:
        return (f"TestRunOpts(data_size_in={self.data_size_in}, "
                f"data_size_out={self.data_size_out}, ctx_size_in={self.ctx_size_in}, "
                f"ctx_size_out={self.ctx_size_out}, repeat={self.repeat}, "
                f"flags={self.flags:#x}, cpu={self.cpu}, batch_size={self.batch_size})")


@dataclass
class TestRunResult:
    """What ``ProgTypeOps.test_run`` returns.

    - ``errno``: non-zero to fail the command with that errno; nothing is copied back
      (the type's own EINVAL/EFAULT/EPERM… before or after running);
    - ``retval``: the program's return value (low 32 bits reach ``bpf_attr.test.retval``);
    - ``data_out``: the output packet/data, or ``None`` for types that report no data
      (then only retval and duration are written back);
    - ``ctx_out``: the context after the run, or ``None`` when the type has no ctx to
      report (``bpf_ctx_finish`` is skipped);
    - ``duration``: average ns per run (``bpf_attr.test.duration``);
    - ``write_duration``: False for types whose kernel test_run never writes duration
      (raw_tracepoint, syscall programs).
    """

    __test__ = False

    retval: int = 0
    data_out: bytes | None = None
    ctx_out: bytes | None = None
    duration: int = 0
    errno: int = 0
    write_duration: bool = True


def bpf_test_run_loop(run_once: Callable[[], int], repeat: int) -> tuple[int, int]:
    """``bpf_test_run``'s timing loop: run ``max(repeat, 1)`` times and return
    ``(retval of the last run, mean duration in ns)`` — for the types' ``test_run``."""
    import time

    repeat = max(int(repeat), 1)
    retval = 0
    start = time.perf_counter_ns()
    for _ in range(repeat):
        retval = run_once()
    elapsed = time.perf_counter_ns() - start
    return retval, min(elapsed // repeat, 0xFFFFFFFF)
