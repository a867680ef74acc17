"""``pybpf btf dump file F [format c|raw]`` — bpftool's BTF dump, from :mod:`pybpf.btf.dump`.

The ``btf`` group may also be created by another CLI module (``show.py`` adds ``btf
show``); whichever module is imported second attaches its subcommands to the first's
group, so ``pybpf btf`` is one group either way.
"""

from __future__ import annotations

import sys

import click

from pybpf.btf.dump import DumpError, dump_c, dump_raw
from pybpf.btf.raw import Btf, BtfFormatError


@click.command("dump", help="Dump BTF like `bpftool btf dump file F [format c|raw]`.")
@click.argument("source", type=click.Choice(["file"]))
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("fmt", nargs=-1)
def btf_dump(source: str, path: str, fmt: tuple[str, ...]) -> None:
    style = "raw"
    if fmt:
        if len(fmt) != 2 or fmt[0] != "format" or fmt[1] not in ("c", "raw"):
            raise click.UsageError("expected 'format c' or 'format raw'")
        style = fmt[1]
    try:
        btf = Btf.from_file(path)
    except (OSError, BtfFormatError) as exc:
        raise click.ClickException(f"failed to load BTF from {path}: {exc}") from None
    try:
        text = dump_c(btf) if style == "c" else dump_raw(btf)
    except DumpError as exc:
        raise click.ClickException(str(exc)) from None
    sys.stdout.write(text)


BTF_SUBCOMMANDS: list[click.Command] = [btf_dump]


def _group(name: str, help_text: str, subcommands: list[click.Command]) -> list[click.Command]:
    """Attach to an existing ``name`` group of an already imported CLI module, or make one."""
    show = sys.modules.get("pybpf.cli.show")
    for cmd in getattr(show, "COMMANDS", ()) if show is not None else ():
        if isinstance(cmd, click.Group) and cmd.name == name:
            for sub in subcommands:
                cmd.add_command(sub)
            return []
    group = click.Group(name, help=help_text)
    for sub in subcommands:
        group.add_command(sub)
    return [group]


COMMANDS: list[click.Command] = _group("btf", "Inspect BTF (bpftool btf).", BTF_SUBCOMMANDS)
