"""``run_object_demo()``: load, verify and show the shipped example objects.

For each ``examples/*.o``: open it as libbpf would, load it into a pybpf
:class:`~pybpf.kernel.Kernel` (or the live kernel), and print one line per program —
section, type, instruction count, verdict — with the first lines of the verifier log when
a program is rejected. Meant for ``pybpf demo --objects`` (the lead's CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pybpf.errors import BpfError

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def run_object_demo(paths: list[Path] | None = None, *, kernel: Any = None,
                    echo: Callable[[str], None] = print) -> dict[str, bool]:
    """Load every example; returns ``{"file.o": loaded}`` and prints a report via ``echo``."""
    import pybpf.skel as skel

    results: dict[str, bool] = {}
    for path in paths if paths is not None else sorted(EXAMPLES.glob("*.o")):
        try:
            obj = skel.open(path, kernel=kernel)
        except BpfError as exc:
            echo(f"{path.name}: cannot open: {exc.message if hasattr(exc, 'message') else exc}")
            results[path.name] = False
            continue
        progs = ", ".join(f"{p.name} ({p.section}, {len(p.insns)} insns)" for p in obj.progs)
        maps = ", ".join(m.name for m in obj.maps)
        echo(f"{path.name}: programs {progs}; maps {maps or '-'}")
        try:
            obj.load()
        except BpfError as exc:
            first = str(exc).splitlines()
            echo("  rejected: " + "\n  ".join(first[:6]))
            results[path.name] = False
            continue
        for p in obj.progs:
            echo(f"  {p.name}: loaded, fd {p.fd}")
        obj.close()
        results[path.name] = True
    ok = sum(results.values())
    echo(f"{ok}/{len(results)} objects loaded")
    return results


__all__ = ["run_object_demo"]
