"""``pybpf asm``, ``pybpf disasm``, ``pybpf run``: the ISA from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pybpf.errors import AsmError, BpfFault
from pybpf.isa.insn import Insn


def _read_program(path: str) -> bytes:
    """A program from a text file (either syntax) or a raw binary of 8-byte slots."""
    from pybpf.isa.asm import assemble_bytes

    data = Path(path).read_bytes()
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return data
    if "\0" in text:
        return data
    return assemble_bytes(text)


@click.command("asm")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write raw instruction bytes here (default: hex on stdout).")
@click.option("--syntax", type=click.Choice(["auto", "conformance", "kernel"]), default="auto")
def asm_cmd(source: str, output: str | None, syntax: str) -> None:
    """Assemble SOURCE (conformance or kernel/LLVM pseudo-C syntax)."""
    from pybpf.isa.asm import assemble_bytes

    try:
        raw = assemble_bytes(Path(source).read_text(), syntax=syntax)
    except AsmError as exc:
        click.echo(f"{source}: {exc}", err=True)
        sys.exit(1)
    if output:
        Path(output).write_bytes(raw)
    else:
        click.echo(" ".join(f"{b:02x}" for b in raw))


@click.command("disasm")
@click.argument("program", type=click.Path(exists=True, dir_okay=False))
@click.option("--syntax", type=click.Choice(["kernel", "conformance"]), default="kernel")
@click.option("--opcodes", is_flag=True, help="Also print the raw bytes of each instruction.")
def disasm_cmd(program: str, syntax: str, opcodes: bool) -> None:
    """Disassemble PROGRAM (raw bytes or assembly text) like `bpftool prog dump xlated`."""
    from pybpf.isa.disasm import disasm_conformance, disasm_kernel
    from pybpf.isa.insn import decode

    try:
        insns = decode(_read_program(program))
    except (AsmError, ValueError) as exc:
        click.echo(f"{program}: {exc}", err=True)
        sys.exit(1)
    lines = disasm_kernel(insns) if syntax == "kernel" else disasm_conformance(insns)
    _print_listing(insns, lines, opcodes, numbered=syntax == "kernel")


def _print_listing(insns: list[Insn], lines: list[str], opcodes: bool, numbered: bool) -> None:
    from pybpf.isa.insn import iter_program

    for (pc, ins, spec), line in zip(iter_program(insns), lines):
        click.echo(f"{pc:4d}: {line}" if numbered else line)
        if opcodes:
            raw = ins.encode()
            if spec is not None and spec.is_wide and pc + 1 < len(insns):
                raw += insns[pc + 1].encode()
            click.echo("       " + " ".join(f"{b:02x}" for b in raw))


@click.command("run")
@click.argument("program", type=click.Path(exists=True, dir_okay=False))
@click.option("--mem", "memhex", default="", help="Memory for r1 (hex); r2 gets its length.")
@click.option("--steps", type=int, default=10_000_000, show_default=True,
              help="Instruction budget for this unverified run.")
def run_cmd(program: str, memhex: str, steps: int) -> None:
    """Run PROGRAM on the checked interpreter (no verifier) and print r0."""
    from pybpf.testing.conformance import run_program

    try:
        raw = _read_program(program)
        r0 = run_program(raw, bytes.fromhex("".join(memhex.split())), steps=steps)
    except (AsmError, ValueError) as exc:
        click.echo(f"{program}: {exc}", err=True)
        sys.exit(1)
    except BpfFault as exc:
        click.echo(f"{program}: program faulted: {exc}", err=True)
        sys.exit(1)
    click.echo(f"r0 = {r0:#x} ({r0})")
COMMANDS = [asm_cmd, disasm_cmd, run_cmd]
