"""``pybpf prog load|loadall|dump xlated|dump jited`` in bpftool's grammar and output.

``load OBJ [PATH]`` loads an object and pins its first program at PATH; ``loadall OBJ
PATH`` pins every program as ``PATH/<name>`` (as ``bpftool prog loadall``). Both take
bpftool's ``type TYPE``, ``map {idx IDX | name NAME} MAP`` (reuse an existing map for one
of the object's maps), ``pinmaps DIR`` and ``autoattach`` (refused: attaching is not
available from the CLI yet).

``dump xlated|jited PROG [linum] [opcodes]`` print the translated program / the JIT's
native code as bpftool does, plain or JSON (``pybpf -j ...`` or ``-j`` after the command);
PROG is ``id N | pinned P | name NAME | tag TAG``.

By default the commands act on this process's pybpf :class:`~pybpf.kernel.Kernel`; since
its bpffs does not outlive the process yet, ``--obj FILE`` loads objects into it first::

    pybpf prog dump xlated name xdp_firewall linum --obj examples/xdp_firewall.o

``--live`` targets the machine's kernel (root needed). Errors are reported as bpftool
reports them, with the verifier log where there is one — never a traceback.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

import click

from pybpf.cli._proginfo import (
    ProgInfo,
    jited_json,
    jited_plain,
    jited_records,
    xlated_json,
    xlated_plain,
    xlated_records,
)
from pybpf.cli._target import (
    backend,
    dumps,
    fail,
    get_info,
    json_mode,
    json_options,
    obj_option,
    object_fd,
    preload,
)
from pybpf.cli.btf_cmds import _group
from pybpf.errors import BpfError
from pybpf.uapi import BpfCmd, bpf_attr_obj

# --------------------------------------------------------------------------- load


def pin_fd(sys_: Any, fd: int, path: str, what: str = "program") -> None:
    buf = ctypes.create_string_buffer(path.encode())
    attr = bpf_attr_obj()
    attr.pathname, attr.bpf_fd = ctypes.addressof(buf), fd
    ret = sys_.bpf(BpfCmd.BPF_OBJ_PIN, attr)
    if ret < 0:
        raise fail(f"failed to pin {what} at {path}: {os.strerror(-ret)}")


class _ReuseMaps:
    """Syscalls that hand the loader an existing map instead of creating one.

    libbpf's ``bpf_map__reuse_fd``: a ``BPF_MAP_CREATE`` for a reused map's name returns
    the given fd, which the loader then must not close.
    """

    def __init__(self, inner: Any, by_name: dict[str, int]) -> None:
        self.inner, self.by_name = inner, by_name
        self.reused = set(by_name.values())

    def bpf(self, cmd: int, attr: Any, size: int | None = None) -> int:
        if cmd == BpfCmd.BPF_MAP_CREATE:
            name = bytes(attr.map_name).split(b"\0")[0].decode(errors="replace")
            if name in self.by_name:
                return self.by_name[name]
        return int(self.inner.bpf(cmd, attr, size)) if size is not None else \
            int(self.inner.bpf(cmd, attr))

    def close(self, fd: int) -> Any:
        return None if fd in self.reused else self.inner.close(fd)


def _parse_load_args(args: tuple[str, ...]) -> dict[str, Any]:
    """bpftool's keywords after ``OBJ PATH``: type, map, pinmaps, autoattach."""
    opts: dict[str, Any] = {"type": None, "maps": [], "pinmaps": None, "autoattach": False}
    rest = list(args)
    while rest:
        kw = rest.pop(0)
        if kw == "type":
            if not rest:
                raise click.UsageError("expected TYPE after 'type'")
            opts["type"] = rest.pop(0)
        elif kw == "map":
            if len(rest) < 4 or rest[0] not in ("idx", "name"):
                raise click.UsageError("expected 'map {idx IDX | name NAME} MAP'")
            opts["maps"].append((rest.pop(0), rest.pop(0), rest.pop(0), rest.pop(0)))
        elif kw == "pinmaps":
            if not rest:
                raise click.UsageError("expected MAP_DIR after 'pinmaps'")
            opts["pinmaps"] = rest.pop(0)
        elif kw == "autoattach":
            opts["autoattach"] = True
        elif kw == "dev":
            raise fail("offloaded programs ('dev NAME') are not supported by pybpf")
        else:
            raise click.UsageError(f"expected no more arguments, 'type', 'map' or 'dev', "
                                   f"got: '{kw}'?")
    return opts


def _open_and_load(obj_path: str, live: bool, opts: dict[str, Any]) -> Any:
    import pybpf.skel as skel
    from pybpf.loader.secdef import prog_type_by_name

    if opts["autoattach"]:
        raise fail("autoattach: attaching programs is not supported by the pybpf CLI yet")
    try:
        obj = skel.open(obj_path, kernel="live" if live else None)
    except (OSError, ValueError, BpfError) as exc:
        raise fail(f"failed to open object file {obj_path}: {exc}") from None
    if opts["type"]:
        try:
            ptype, attach = prog_type_by_name(opts["type"])
        except LookupError:
            raise fail(f"unrecognized program type: {opts['type']}") from None
        for p in obj.progs:
            p.type, p.expected_attach_type = ptype, attach
    sys_ = obj._syscalls()
    if opts["maps"]:
        specs = list(obj.spec.maps)
        reuse: dict[str, int] = {}
        for key, sel, how, what in opts["maps"]:
            if key == "idx":
                try:
                    spec = specs[int(sel, 0)]
                except (ValueError, IndexError):
                    raise fail(f"unable to find map idx {sel} in object") from None
            else:
                found = [m for m in specs if sel in (m.name, m.real_name)]
                if not found:
                    raise fail(f"unable to find map name {sel} in object")
                spec = found[0]
            fd = object_fd(sys_, "map", how, what)
            _check_reuse(sys_, fd, spec)
            reuse[spec.name[:15]] = fd
        wrapped = _ReuseMaps(sys_, reuse)
        obj._syscalls = lambda: wrapped  # type: ignore[method-assign]  # loader creates maps here
    try:
        return obj.load()
    except BpfError as exc:
        raise fail(f"failed to load object file {obj_path}\n{exc}") from None
    except (OSError, ValueError) as exc:
        raise fail(f"failed to load object file {obj_path}: {exc}") from None


def _check_reuse(sys_: Any, fd: int, spec: Any) -> None:
    """libbpf's ``map_is_reuse_compat``: same type, sizes, max_entries and flags."""
    from pybpf.uapi import bpf_map_info

    info = get_info(sys_, fd, bpf_map_info(), "map")
    want = (spec.type, spec.key_size, spec.value_size, spec.max_entries, spec.map_flags)
    have = (info.type, info.key_size, info.value_size, info.max_entries, info.map_flags)
    if want != have and not (spec.max_entries == 0 and want[:3] == have[:3]):
        raise fail(f"map '{spec.name}': can't reuse map: incompatible definition "
                   f"(type, key, value, max_entries, flags) {have} != {want}")


def _pinmaps(obj: Any, live: bool, directory: str) -> None:
    sys_ = obj._syscalls()
    if live:
        os.makedirs(directory, exist_ok=True)
    lo = obj._loaded
    for i, spec in enumerate(obj.spec.maps):
        if lo is not None and i < len(lo.map_fds) and lo.map_fds[i] >= 0:
            pin_fd(sys_, lo.map_fds[i], f"{directory.rstrip('/')}/{spec.name}", "map")


def _emit_done() -> None:
    as_json, _ = json_mode()
    if as_json:
        click.echo("null")


_LOAD_HELP = ("Load OBJ and pin its first program at PATH (bpftool prog load). "
              "ARGS: [type TYPE] [map {idx IDX | name NAME} MAP] [pinmaps MAP_DIR] "
              "[autoattach]; MAP := id N | pinned P | name NAME.")


@click.command("load", help=_LOAD_HELP)
@click.argument("obj", type=click.Path(dir_okay=False))
@click.argument("path", required=False)
@click.argument("args", nargs=-1)
@click.option("--live", is_flag=True, help="load into the machine's kernel instead of pybpf")
@json_options
def prog_load(obj: str, path: str | None, args: tuple[str, ...], live: bool) -> None:
    if path in ("type", "map", "pinmaps", "autoattach"):
        args, path = (path, *args), None
    opts = _parse_load_args(args)
    loaded = _open_and_load(obj, live, opts)
    progs = [p for p in loaded.progs if p.autoload]
    if not progs:
        raise fail(f"object file {obj} doesn't contain any bpf program")
    if path:
        pin_fd(loaded._syscalls(), progs[0].fd, path)
    if opts["pinmaps"]:
        _pinmaps(loaded, live, opts["pinmaps"])
    if not path and not json_mode()[0]:
        click.echo(f"loaded {progs[0].name} (fd {progs[0].fd}); pass PATH to pin it")
    _emit_done()


@click.command("loadall", help=_LOAD_HELP.replace(
    "pin its first program at PATH (bpftool prog load)",
    "pin every program as PATH/<name> (bpftool prog loadall)"))
@click.argument("obj", type=click.Path(dir_okay=False))
@click.argument("path")
@click.argument("args", nargs=-1)
@click.option("--live", is_flag=True, help="load into the machine's kernel instead of pybpf")
@json_options
def prog_loadall(obj: str, path: str, args: tuple[str, ...], live: bool) -> None:
    opts = _parse_load_args(args)
    loaded = _open_and_load(obj, live, opts)
    sys_ = loaded._syscalls()
    if live:
        os.makedirs(path, exist_ok=True)
    for p in loaded.progs:
        if p.autoload:
            pin_fd(sys_, p.fd, f"{path.rstrip('/')}/{p.name}")
    if opts["pinmaps"]:
        _pinmaps(loaded, live, opts["pinmaps"])
    _emit_done()


# --------------------------------------------------------------------------- dump


def _dump_flags(flags: tuple[str, ...]) -> tuple[bool, bool]:
    bad = [f for f in flags if f not in ("linum", "opcodes", "visual", "file")]
    if bad:
        raise click.UsageError(f"unknown keyword {bad[0]!r}")
    if "visual" in flags or "file" in flags:
        raise fail("'visual' and 'file' are not supported by pybpf")
    return "linum" in flags, "opcodes" in flags


def _prog_info(how: str, what: str, live: bool, objs: tuple[str, ...]) -> ProgInfo:
    preload(objs, live)
    sys_ = backend(live)
    fd = object_fd(sys_, "prog", how, what)
    try:
        return ProgInfo(sys_, fd)
    finally:
        sys_.close(fd)


def _write(lines: list[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))


@click.group("dump", help="Dump a loaded program (bpftool prog dump).")
def prog_dump() -> None:
    pass


_DUMP_HELP = ("dump {kind} PROG [linum] [opcodes], PROG := id N | pinned P | name NAME | "
              "tag TAG. Without --live, load objects into this process's pybpf instance "
              "first with --obj FILE, e.g. `pybpf prog dump {kind} name xdp_firewall linum "
              "--obj examples/xdp_firewall.o`. Output and -j JSON as bpftool's.")


@prog_dump.command("xlated", help=_DUMP_HELP.format(kind="xlated"))
@click.argument("how")
@click.argument("what")
@click.argument("flags", nargs=-1)
@click.option("--live", is_flag=True, help="read from the machine's kernel instead of pybpf")
@obj_option
@json_options
def prog_dump_xlated(how: str, what: str, flags: tuple[str, ...], live: bool,
                     objs: tuple[str, ...]) -> None:
    linum, opcodes = _dump_flags(flags)
    info = _prog_info(how, what, live, objs)
    if not info.insns:
        raise fail("no instructions returned")
    records = _name_calls(xlated_records(info, linum, live), live, _prog_type(how, what, live))
    as_json, pretty = json_mode()
    if as_json:
        click.echo(dumps(xlated_json(records, opcodes), pretty))
    else:
        _write(xlated_plain(records, opcodes))


def _prog_type(how: str, what: str, live: bool) -> int:
    """``bpf_prog_info.type`` of the program (helper names depend on it)."""
    from pybpf.uapi import bpf_prog_info

    sys_ = backend(live)
    fd = object_fd(sys_, "prog", how, what)
    try:
        return int(get_info(sys_, fd, bpf_prog_info()).type)
    finally:
        sys_.close(fd)


def _name_calls(records: list[dict[str, Any]], live: bool, prog_type: int) -> list[dict[str, Any]]:
    """Helper calls named as bpftool names them: the kernel function the call was
    resolved to (``call bpf_user_rnd_u32#…``, ``call __htab_map_lookup_elem#…``).

    A live program's immediate is relative to ``__bpf_call_base`` (negative ones too); a
    pybpf program's is the helper id or an internal target id
    (:mod:`pybpf.helpers.internal`), named per program type.
    """
    from pybpf.cli._proginfo import live_helper_name
    from pybpf.helpers.internal import xlated_call_name
    from pybpf.isa.insn import Insn
    from pybpf.kernel import default_kernel
    from pybpf.verifier.kfunc_fixup import xlated_kfunc_name

    live_name = live_helper_name() if live else None
    for rec in records:
        raw = rec["raw"]
        if len(raw) != 8 or raw[0] != 0x85:
            continue
        if raw[1] >> 4 == 1:  # bpf-to-bpf: bpftool prints `off`, the relative target
            rec["disasm"] = f"(85) call pc{int.from_bytes(raw[2:4], 'little', signed=True):+d}"
            continue
        src = raw[1] >> 4
        if src not in (0, 2):  # 2: a kfunc, named after the kernel function it resolved to
            continue
        imm = int.from_bytes(raw[4:8], "little", signed=True)
        if live_name is not None:
            name = live_name(imm & 0xFFFFFFFF)
        elif src == 2:
            name = xlated_kfunc_name(default_kernel(), Insn(0x85, 0, 2, 0, imm))
        else:
            name = xlated_call_name(imm, prog_type)
        if name is not None:
            rec["disasm"] = f"(85) call {name}#{imm}"
    return records


@prog_dump.command("jited", help=_DUMP_HELP.format(kind="jited"))
@click.argument("how")
@click.argument("what")
@click.argument("flags", nargs=-1)
@click.option("--live", is_flag=True, help="read from the machine's kernel instead of pybpf")
@obj_option
@json_options
def prog_dump_jited(how: str, what: str, flags: tuple[str, ...], live: bool,
                    objs: tuple[str, ...]) -> None:
    linum, opcodes = _dump_flags(flags)
    info = _prog_info(how, what, live, objs)
    if not info.jited:
        raise fail("no instructions returned")  # bpftool's words for a non-JITed program
    funcs = jited_records(info, linum, live)
    as_json, pretty = json_mode()
    if as_json:
        click.echo(dumps(jited_json(funcs, opcodes), pretty))
    else:
        _write(jited_plain(funcs, opcodes))


PROG_SUBCOMMANDS: list[click.Command] = [prog_load, prog_loadall, prog_dump]

COMMANDS: list[click.Command] = _group("prog", "Load and inspect BPF programs (bpftool prog).",
                                       PROG_SUBCOMMANDS)

__all__ = ["COMMANDS", "PROG_SUBCOMMANDS", "pin_fd"]
