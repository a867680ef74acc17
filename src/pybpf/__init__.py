"""pybpf: the Linux eBPF subsystem rebuilt in userspace, in Python.

The public names of DESIGN.md are reachable from here and imported on first use, so
``import pybpf`` stays cheap:

- ``pybpf.bpf(cmd, attr, size=None)`` — the system call on the default instance;
- ``pybpf.Kernel`` — one userspace instance of the subsystem;
- ``pybpf.Map``, ``pybpf.Program``, ``pybpf.Link``, ``pybpf.Btf`` — the object API;
- ``pybpf.load(path)`` / ``pybpf.open(path)`` — libbpf-style object loading;
- ``pybpf.BpfError``, ``pybpf.BpfFault``, ``pybpf.AsmError`` — errors.
"""

from __future__ import annotations

import importlib
from typing import Any

from pybpf.errors import AsmError, BpfError, BpfFault

__version__ = "0.1.0"

_LAZY: dict[str, tuple[str, str]] = {
    "bpf": ("pybpf.kernel", "bpf"),
    "Kernel": ("pybpf.kernel", "Kernel"),
    "Map": ("pybpf.maps.api", "Map"),
    "Program": ("pybpf.program", "Program"),
    "Link": ("pybpf.link", "Link"),
    "Btf": ("pybpf.btf", "Btf"),
    "load": ("pybpf.skel", "load"),
    "open": ("pybpf.skel", "open"),
    "assemble": ("pybpf.isa.asm", "assemble"),
}

__all__ = ["AsmError", "BpfError", "BpfFault", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'pybpf' has no attribute {name!r}")
    module_name, attr = target
    try:
        value = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise AttributeError(f"pybpf.{name} is not available: {exc}") from exc
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
