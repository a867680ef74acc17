"""Entry point of the ``pybpf`` command.

Each ``pybpf.cli.<topic>`` module exposes ``COMMANDS`` (click commands or groups); this
module collects them, so adding a subcommand never means editing a shared file.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from pybpf import __version__
from pybpf.cli._target import json_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pybpf")
@json_options
def cli() -> None:
    """pybpf — the Linux eBPF subsystem in userspace."""


def _register() -> None:
    import pybpf.cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name == "main" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"pybpf.cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry: never lets a Python traceback reach the user."""
    try:
        cli.main(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
