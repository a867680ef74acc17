"""The ``ProgTypeOps`` protocol (the kernel's ``bpf_verifier_ops`` + ``bpf_prog_ops``).

DESIGN decision 1: a program type is one module implementing :class:`ProgTypeOps` and
registering it with :func:`register_prog_type`. The syscall layer (``BPF_PROG_LOAD``,
``BPF_PROG_TEST_RUN``), the verifier (ctx accesses, helper availability) and the hooks
reach program-type behaviour only through it.
"""

from __future__ import annotations

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

    def convert_ctx_access(self, insn: Any, prog: Any) -> list[Any]:
        """The instructions a ctx access becomes after verification (may be unchanged)."""

    def test_run(self, prog: Any, kernel: Any, opts: Any) -> Any:
        """``BPF_PROG_TEST_RUN`` for this type (``net/bpf/test_run.c`` rules)."""


_REGISTRY: dict[int, ProgTypeOps] = {}


def register_prog_type(ops: ProgTypeOps) -> ProgTypeOps:
    _REGISTRY[int(ops.prog_type)] = ops
    return ops


def find_prog_type(prog_type: int) -> ProgTypeOps | None:
    if not _REGISTRY:
        _load_builtin_types()
    return _REGISTRY.get(int(prog_type))


def _load_builtin_types() -> None:
    import importlib
    import pkgutil

    import pybpf.progs as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("type_"):
            importlib.import_module(f"pybpf.progs.{info.name}")
