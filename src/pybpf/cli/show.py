"""``pybpf prog|map|btf|link show``: bpftool's listing, plain and ``-j``/``-p`` JSON.

Objects are those of the CLI's own instance (:func:`pybpf.kernel.default_kernel`); a
bpffs shared across processes comes later. Output follows ``bpftool`` 7.x::

    18290: socket_filter  name myprog  tag 0bd0168676c7c779  gpl
            loaded_at 2026-11-22T04:25:24+0000  uid 0
            xlated 32B  not jited  memlock 4096B  map_ids 19362

Grammar: ``show [id N | pinned PATH]`` (``list`` is an alias); ``-j``/``--json`` and
``-p``/``--pretty`` may come before or after the subcommand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import click

from pybpf.cli._target import json_mode, json_options
from pybpf.kernel import Kernel, boottime_ns, default_kernel
from pybpf.uapi import BpfLinkType, BpfMapType, BpfProgType


def _type_name(enum: Any, prefix: str, value: int) -> str:
    try:
        return str(enum(value).name).removeprefix(prefix).lower()
    except ValueError:
        return f"type {value}"


def _wallclock(load_time_ns: int) -> int:
    """bpftool's conversion of boot-time nanoseconds to a wall-clock epoch."""
    return int(time.time() - (boottime_ns() - load_time_ns) / 1e9)


def prog_record(prog: Any, kernel: Kernel) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": prog.id,
                           "type": _type_name(BpfProgType, "BPF_PROG_TYPE_", prog.type)}
    if prog.name:
        rec["name"] = prog.name_str
    rec["tag"] = prog.tag.hex()
    rec["gpl_compatible"] = bool(prog.gpl_compatible)
    if kernel.stats_enabled():
        rec["run_time_ns"] = prog.stats.run_time_ns
        rec["run_cnt"] = prog.stats.run_cnt
    rec["loaded_at"] = _wallclock(prog.load_time)
    rec["uid"] = prog.uid
    rec["bytes_xlated"] = prog.len * 8
    rec["jited"] = bool(prog.jited)
    if prog.jited:
        rec["bytes_jited"] = prog.jited_len
    rec["bytes_memlock"] = prog.memlock
    if prog.used_maps:
        rec["map_ids"] = prog.map_ids()
    if prog.btf is not None:
        rec["btf_id"] = prog.btf.id
    pins = kernel.bpffs.paths_of(prog)
    if pins:
        rec["pinned"] = pins
    return rec


def prog_plain(rec: dict[str, Any]) -> str:
    line1 = f"{rec['id']}: {rec['type']}  "
    if "name" in rec:
        line1 += f"name {rec['name']}  "
    line1 += f"tag {rec['tag']}"
    if rec["gpl_compatible"]:
        line1 += "  gpl"
    if "run_cnt" in rec:
        line1 += f" run_time_ns {rec['run_time_ns']} run_cnt {rec['run_cnt']}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(rec["loaded_at"]))
    line2 = f"\tloaded_at {stamp}  uid {rec['uid']}"
    line3 = f"\txlated {rec['bytes_xlated']}B  "
    line3 += f"jited {rec['bytes_jited']}B  " if rec["jited"] else "not jited  "
    line3 += f"memlock {rec['bytes_memlock']}B"
    if "map_ids" in rec:
        line3 += "  map_ids " + ",".join(str(i) for i in rec["map_ids"])
    out = [line1, line2, line3]
    if "btf_id" in rec:
        out.append(f"\tbtf_id {rec['btf_id']}")
    for p in rec.get("pinned", ()):
        out.append(f"\tpinned {p}")
    return "\n".join(out)


def map_record(kmap: Any, kernel: Kernel) -> dict[str, Any]:
    bmap = kmap.bmap
    rec: dict[str, Any] = {"id": kmap.id,
                           "type": _type_name(BpfMapType, "BPF_MAP_TYPE_", kmap.map_type)}
    if kmap.name:
        rec["name"] = kmap.name.decode("ascii", "replace")
    rec["flags"] = int(bmap.map_flags)
    rec["bytes_key"] = int(bmap.key_size)
    rec["bytes_value"] = int(bmap.value_size)
    rec["max_entries"] = int(bmap.max_entries)
    rec["bytes_memlock"] = kmap.mem_usage()
    rec["frozen"] = 1 if kmap.frozen else 0
    if kmap.btf is not None:
        rec["btf_id"] = kmap.btf.id
    pins = kernel.bpffs.paths_of(kmap)
    if pins:
        rec["pinned"] = pins
    return rec


def map_plain(rec: dict[str, Any]) -> str:
    line1 = f"{rec['id']}: {rec['type']}  "
    if "name" in rec:
        line1 += f"name {rec['name']}  "
    line1 += f"flags {rec['flags']:#x}"
    line2 = (f"\tkey {rec['bytes_key']}B  value {rec['bytes_value']}B  "
             f"max_entries {rec['max_entries']}  memlock {rec['bytes_memlock']}B")
    if rec["frozen"]:
        line2 += "  frozen"
    out = [line1, line2]
    if "btf_id" in rec:
        out.append(f"\tbtf_id {rec['btf_id']}")
    for p in rec.get("pinned", ()):
        out.append(f"\tpinned {p}")
    return "\n".join(out)


def btf_record(btf: Any, kernel: Kernel) -> dict[str, Any]:
    progs = [p.id for p in kernel.progs() if p.btf is btf]
    maps = [m.id for m in kernel.maps() if m.btf is btf]
    rec: dict[str, Any] = {"id": btf.id, "size": btf.data_size, "prog_ids": progs,
                           "map_ids": maps, "kernel": bool(btf.kernel_btf)}
    if btf.name:
        rec["name"] = btf.name
    return rec


def btf_plain(rec: dict[str, Any]) -> str:
    line = f"{rec['id']}: "
    if "name" in rec:
        line += f"name [{rec['name']}]  " if rec["kernel"] else f"name {rec['name']}  "
    line += f"size {rec['size']}B"
    if rec["prog_ids"]:
        line += "  prog_ids " + ",".join(map(str, rec["prog_ids"]))
    if rec["map_ids"]:
        line += "  map_ids " + ",".join(map(str, rec["map_ids"]))
    return line


def link_record(link: Any, kernel: Kernel) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": link.id,
                           "type": _type_name(BpfLinkType, "BPF_LINK_TYPE_", link.type),
                           "prog_id": link.prog.id if link.prog is not None else 0}
    if "tp_name" in link.extra:
        rec["tp_name"] = link.extra["tp_name"]
    pins = kernel.bpffs.paths_of(link)
    if pins:
        rec["pinned"] = pins
    return rec


def link_plain(rec: dict[str, Any]) -> str:
    line = f"{rec['id']}: {rec['type']}  prog {rec['prog_id']}"
    if "tp_name" in rec:
        line += f"  \n\ttp '{rec['tp_name']}'"
    for p in rec.get("pinned", ()):
        line += f"\n\tpinned {p}"
    return line


_KINDS: dict[str, tuple[Callable[[Kernel], list[Any]], Callable[..., dict[str, Any]],
                        Callable[[dict[str, Any]], str]]] = {
    "prog": (lambda k: k.progs(), prog_record, prog_plain),
    "map": (lambda k: k.maps(), map_record, map_plain),
    "btf": (lambda k: k.btfs(), btf_record, btf_plain),
    "link": (lambda k: k.links(), link_record, link_plain),
}


def render(kind: str, kernel: Kernel, *, ident: int | None = None, pinned: str | None = None,
           as_json: bool = False, pretty: bool = False) -> str:
    """The text ``pybpf <kind> show`` prints (also used by tests)."""
    objects_of, record, plain = _KINDS[kind]
    objs = objects_of(kernel)
    if ident is not None:
        objs = [o for o in objs if o.id == ident]
        if not objs:
            raise click.ClickException(f"get by id ({ident}): No such file or directory")
    if pinned is not None:
        try:
            inode = kernel.bpffs.lookup(None, pinned)
        except OSError as exc:
            raise click.ClickException(f"bpf obj get ({pinned}): {exc.strerror}") from None
        objs = [inode.obj] if inode.obj is not None else []
    recs = [record(o, kernel) for o in objs]
    if as_json or pretty:
        payload: Any = recs[0] if (ident is not None or pinned is not None) and recs else recs
        return json.dumps(payload, indent=4 if pretty else None,
                          separators=None if pretty else (",", ":"))
    return "\n".join(plain(r) for r in recs)


def _show_command(kind: str) -> click.Command:
    @click.command("show", help=f"Show {kind}s of the instance, like `bpftool {kind} show`.")
    @click.argument("selector", nargs=-1)
    @json_options
    @click.pass_context
    def show(ctx: click.Context, selector: tuple[str, ...]) -> None:
        as_json, pretty = json_mode(ctx)
        ident: int | None = None
        pinned: str | None = None
        if selector:
            if len(selector) != 2 or selector[0] not in ("id", "pinned"):
                raise click.UsageError(f"expected 'id N' or 'pinned PATH', got {selector}")
            if selector[0] == "id":
                try:
                    ident = int(selector[1], 0)
                except ValueError:
                    raise click.UsageError(f"bad id {selector[1]!r}") from None
            else:
                pinned = selector[1]
        out = render(kind, default_kernel(), ident=ident, pinned=pinned, as_json=as_json,
                     pretty=pretty)
        if out:
            click.echo(out)

    return show


def _attach(kind: str) -> click.Group | None:
    """Add ``show``/``list`` to another module's ``kind`` group, or make our own group."""
    import importlib
    import pkgutil

    import pybpf.cli as pkg

    show = _show_command(kind)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name in ("main", "show") or info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"pybpf.cli.{info.name}")
        except ImportError:
            continue
        for cmd in getattr(module, "COMMANDS", ()):
            if isinstance(cmd, click.Group) and cmd.name == kind:
                if "show" not in cmd.commands:
                    cmd.add_command(show, "show")
                    cmd.add_command(show, "list")
                return None
    group = click.Group(kind, help=f"Inspect BPF {kind}s (bpftool {kind}).")
    group.add_command(show, "show")
    group.add_command(show, "list")
    return group


COMMANDS: list[click.Command] = [g for g in (_attach(k) for k in _KINDS) if g is not None]
