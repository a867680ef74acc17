"""``pybpf demo``: the README's main job on the shipped examples.

For each example: assemble it, show the kernel-syntax disassembly (as ``bpftool prog dump
xlated`` prints it), run it on the checked interpreter and compare r0 with the expected
value. Exits non-zero if any example misbehaves.
"""

from __future__ import annotations

import sys
import time

import click


@click.command("demo")
@click.option("--quiet", is_flag=True, help="Only the summary table.")
def demo(quiet: bool) -> None:
    """Assemble, disassemble and run the shipped example programs."""
    from rich.console import Console
    from rich.table import Table

    from pybpf.errors import AsmError, BpfFault
    from pybpf.examples import asm_examples
    from pybpf.isa.asm import assemble
    from pybpf.isa.disasm import disasm_kernel
    from pybpf.isa.insn import iter_program
    from pybpf.testing.conformance import run_program

    console = Console()
    table = Table(title="pybpf demo: shipped examples on the interpreter")
    for col in ("example", "insns", "r0", "expected", "time", "ok"):
        table.add_column(col)
    failures = 0
    for ex in asm_examples():
        try:
            insns = assemble(ex.text)
            if not quiet:
                console.rule(f"[bold]{ex.name}[/bold] — {ex.description}")
                for (pc, _ins, _spec), line in zip(iter_program(insns), disasm_kernel(insns)):
                    console.print(f"{pc:4d}: {line}", highlight=False)
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
    sys.exit(1 if failures else 0)
COMMANDS = [demo]
