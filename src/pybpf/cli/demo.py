"""``pybpf demo``: the README's main job on the shipped examples.

1. Load, verify and show the compiled example objects (``examples/*.o``, built by clang
   from the C sources beside them): each is opened as libbpf would, its maps created and
   its programs verified and loaded into one pybpf ``Kernel`` instance; then the instance
   is listed like ``bpftool prog show`` / ``bpftool map show`` and one program's
   translated instructions are dumped like ``bpftool prog dump xlated``.
2. Assemble, disassemble and run the shipped assembly examples on the checked
   interpreter and compare r0 with the expected value.

Exits non-zero if any example misbehaves.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples"


def _object_demo(console: Any, quiet: bool) -> int:
    """Load every ``examples/*.o`` into one instance; return the number of failures."""
    from rich.table import Table

    import pybpf.skel as skel
    from pybpf.cli.show import render
    from pybpf.errors import BpfError
    from pybpf.isa.disasm import bpftool_imm64, disasm_kernel
    from pybpf.kernel import Kernel
    from pybpf.syscall.info import insn_prepare_dump

    objects = sorted(EXAMPLES_DIR.glob("*.o"))
    if not objects:
        console.print(f"[yellow]no compiled examples in {EXAMPLES_DIR}[/yellow]")
        return 0
    kernel = Kernel()
    table = Table(title="pybpf demo: example objects loaded into a pybpf instance")
    for col in ("object", "program", "section", "insns", "verdict"):
        table.add_column(col)
    failures = 0
    loaded: list[Any] = []
    for path in objects:
        try:
            obj = skel.open(path, kernel=kernel)
            obj.load()
        except BpfError as exc:
            failures += 1
            table.add_row(path.name, "-", "-", "-", f"[red]{str(exc).splitlines()[0]}[/red]")
            continue
        loaded.append(obj)
        for prog in obj.progs:
            table.add_row(path.name, prog.name, prog.section, str(len(prog.insns)),
                          "[green]loaded[/green]")
    console.print(table)
    if not quiet:
        console.rule("[bold]pybpf prog show[/bold]")
        console.print(render("prog", kernel), highlight=False, markup=False)
        console.rule("[bold]pybpf map show[/bold]")
        console.print(render("map", kernel), highlight=False, markup=False)
        progs = kernel.progs()
        if progs:
            first = min(progs, key=lambda p: p.len)
            console.rule(f"[bold]pybpf prog dump xlated id {first.id}[/bold]")
            dump = insn_prepare_dump(first)  # map pointers back to map ids, as the kernel does
            for line in disasm_kernel(dump, pseudo_imm64=bpftool_imm64, numbered=True):
                console.print(line, highlight=False, markup=False)
    for obj in loaded:
        obj.close()
    return failures


def _asm_demo(console: Any, quiet: bool) -> int:
    from rich.table import Table

    from pybpf.errors import AsmError, BpfFault
    from pybpf.examples import asm_examples
    from pybpf.isa.asm import assemble
    from pybpf.isa.disasm import disasm_kernel
    from pybpf.isa.insn import iter_program
    from pybpf.testing.conformance import run_program

    table = Table(title="pybpf demo: assembly examples on the interpreter")
    for col in ("example", "insns", "r0", "expected", "time", "ok"):
        table.add_column(col)
    failures = 0
    for ex in asm_examples():
        try:
            insns = assemble(ex.text)
            if not quiet:
                console.rule(f"[bold]{ex.name}[/bold] — {ex.description}")
                for (pc, _ins, _spec), line in zip(iter_program(insns), disasm_kernel(insns)):
                    console.print(f"{pc:4d}: {line}", highlight=False, markup=False)
            start = time.perf_counter()
            r0 = run_program(insns, ex.mem)
            elapsed = time.perf_counter() - start
        except (AsmError, BpfFault) as exc:
            failures += 1
            table.add_row(ex.name, "-", "-", str(ex.expect), "-", f"[red]{exc}[/red]")
            continue
        ok = ex.expect is None or r0 == ex.expect
        failures += not ok
        table.add_row(ex.name, str(len(insns)), f"{r0:#x} ({r0})",
                      "-" if ex.expect is None else f"{ex.expect:#x}",
                      f"{elapsed * 1e3:.2f} ms", "[green]yes[/green]" if ok else "[red]NO[/red]")
    console.print(table)
    return failures


@click.command("demo")
@click.option("--quiet", is_flag=True, help="Only the summary tables.")
def demo(quiet: bool) -> None:
    """Load, verify and show the shipped example objects; run the assembly examples."""
    from rich.console import Console

    console = Console()
    failures = _object_demo(console, quiet)
    failures += _asm_demo(console, quiet)
    sys.exit(1 if failures else 0)


COMMANDS = [demo]
