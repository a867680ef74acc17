"""``pybpf conformance-plugin``: the bpf_conformance plugin protocol.

The suite's runner writes the program as one line of space-separated hex bytes on stdin
and passes the memory as an optional hex argument; the plugin prints r0 in hex and exits
0, or prints a message on stderr and exits non-zero.
"""

from __future__ import annotations

import sys

import click

from pybpf.errors import BpfFault


def _parse_hex(text: str) -> bytes:
    cleaned = "".join(text.split())
    if cleaned.startswith(("0x", "0X")):
        cleaned = cleaned[2:]
    return bytes.fromhex(cleaned)


@click.command("conformance-plugin")
@click.argument("memhex", required=False, default="")
@click.option("--tier", type=click.Choice(["interp", "jit"]), default="interp",
              show_default=True, help="Execution tier to run the program on.")
@click.option("--program", "program_hex", default=None,
              help="Program bytes as hex (instead of reading stdin).")
def conformance_plugin(memhex: str, tier: str, program_hex: str | None) -> None:
    """Run one program per the bpf_conformance plugin protocol."""
    from pybpf.testing.conformance import run_program

    text = program_hex if program_hex is not None else sys.stdin.readline()
    try:
        program = _parse_hex(text)
        mem = _parse_hex(memhex) if memhex else b""
    except ValueError as exc:
        click.echo(f"invalid hex input: {exc}", err=True)
        sys.exit(2)
    if not program or len(program) % 8:
        click.echo(f"program length {len(program)} is not a positive multiple of 8", err=True)
        sys.exit(2)
    try:
        r0 = run_program(program, mem, tier=tier)
    except BpfFault as exc:
        click.echo(f"program faulted: {exc}", err=True)
        sys.exit(1)
    except (ImportError, NotImplementedError) as exc:
        click.echo(f"tier {tier} is not available: {exc}", err=True)
        sys.exit(3)
    click.echo(f"{r0:x}")
COMMANDS = [conformance_plugin]
