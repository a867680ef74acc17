"""What the ``prog``/``map`` commands act on, shared by the CLI modules.

* The **backend**: pybpf's default :class:`~pybpf.kernel.Kernel` of this process, or the
  machine's kernel with ``--live``.
* The **single-process flow**: pybpf's bpffs does not outlive the process yet, so a
  command that inspects a pybpf object can first load objects into the same instance with
  ``--obj FILE`` (repeatable); ``name NAME`` / ``id N`` then find what they created.
* Object selectors in bpftool's grammar: ``id N | pinned PATH | name NAME | tag TAG``.
* The global ``-j/--json`` and ``-p/--pretty`` flags (``pybpf -j prog dump ...``): the root
  group declares them with :func:`json_options` (stored in ``ctx.meta``); every command
  also accepts them after its own name. :func:`json_mode` reads them.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

import click

from pybpf.errors import BpfError
from pybpf.uapi import BpfCmd, bpf_attr_get_id, bpf_attr_info, bpf_attr_obj

_META_JSON = "pybpf.json"
_META_PRETTY = "pybpf.pretty"


def fail(message: str) -> click.ClickException:
    return click.ClickException(message)


def backend(live: bool) -> Any:
    """Where syscalls go: the live kernel or pybpf's default instance."""
    if live:
        from pybpf.loader.load import LiveSyscalls

        return LiveSyscalls()
    from pybpf.kernel import default_kernel

    return default_kernel()


# ----------------------------------------------------------------- global JSON flags


def _set_meta(key: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.meta[key] = True
    return callback


def json_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``-j/--json`` and ``-p/--pretty`` on a command (stored in ``ctx.meta``)."""
    f = click.option("-p", "--pretty", is_flag=True, expose_value=False,
                     callback=_set_meta(_META_PRETTY), help="pretty JSON output")(f)
    return click.option("-j", "--json", is_flag=True, expose_value=False,
                        callback=_set_meta(_META_JSON), help="JSON output")(f)


def json_mode(ctx: click.Context | None = None) -> tuple[bool, bool]:
    """(json output?, pretty?) from the global or the command's own flags."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root().params
    pretty = bool(ctx.meta.get(_META_PRETTY) or root.get("pretty"))
    as_json = bool(ctx.meta.get(_META_JSON) or root.get("as_json")) or pretty
    return as_json, pretty


def dumps(value: Any, pretty: bool) -> str:
    """bpftool's JSON writer: compact, or its own pretty layout."""
    from pybpf.cli.map_cmds import writer

    return writer(value, pretty)


# ----------------------------------------------------------------- same-process objects


def obj_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--obj", "objs", multiple=True, type=click.Path(dir_okay=False),
        help="first load this object file into the instance (repeatable); pybpf's bpffs "
             "does not persist across processes yet, so this is how one command both "
             "loads and inspects")(f)


_KEEP: list[Any] = []  # objects loaded by --obj stay open until the process ends


def preload(objs: tuple[str, ...], live: bool) -> None:
    import pybpf.skel as skel

    for path in objs:
        try:
            _KEEP.append(skel.load(path, kernel="live" if live else None))
        except BpfError as exc:
            raise fail(f"failed to load object file {path}\n{exc}") from None
        except (OSError, ValueError) as exc:
            raise fail(f"failed to open object file {path}: {exc}") from None


# ----------------------------------------------------------------- selectors


def get_info(sys_: Any, fd: int, info: Any, what: str = "prog") -> Any:
    attr = bpf_attr_info()
    attr.bpf_fd, attr.info_len, attr.info = fd, ctypes.sizeof(info), ctypes.addressof(info)
    ret = sys_.bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, attr)
    if ret < 0:
        raise fail(f"can't get {what} info: {os.strerror(-ret)}")
    return info


_KINDS = {
    "prog": (BpfCmd.BPF_PROG_GET_NEXT_ID, BpfCmd.BPF_PROG_GET_FD_BY_ID),
    "map": (BpfCmd.BPF_MAP_GET_NEXT_ID, BpfCmd.BPF_MAP_GET_FD_BY_ID),
}


def _fd_by_id(sys_: Any, kind: str, ident: int) -> int:
    attr = bpf_attr_get_id()
    ctypes.c_uint32.from_address(ctypes.addressof(attr)).value = ident
    return int(sys_.bpf(_KINDS[kind][1], attr))


def _ids(sys_: Any, kind: str) -> list[int]:
    out: list[int] = []
    nxt = 0
    while True:
        attr = bpf_attr_get_id()
        ctypes.c_uint32.from_address(ctypes.addressof(attr)).value = nxt
        if sys_.bpf(_KINDS[kind][0], attr) < 0:
            return out
        nxt = attr.next_id
        out.append(nxt)


def _info_struct(kind: str) -> Any:
    from pybpf.uapi import bpf_map_info, bpf_prog_info

    return bpf_prog_info() if kind == "prog" else bpf_map_info()


def object_fd(sys_: Any, kind: str, how: str, what: str) -> int:
    """An fd for ``kind`` ("prog"/"map") selected as bpftool does (first match)."""
    if how == "id":
        try:
            ident = int(what, 0)
        except ValueError:
            raise click.UsageError(f"can't parse {what} as ID") from None
        fd = _fd_by_id(sys_, kind, ident)
        if fd < 0:
            raise fail(f"get by id ({ident}): {os.strerror(-fd)}")
        return fd
    if how == "pinned":
        buf = ctypes.create_string_buffer(what.encode())
        attr = bpf_attr_obj()
        attr.pathname = ctypes.addressof(buf)
        fd = int(sys_.bpf(BpfCmd.BPF_OBJ_GET, attr))
        if fd < 0:
            raise fail(f"bpf obj get ({what}): {os.strerror(-fd)}")
        return fd
    if how in ("name", "tag") and (how == "name" or kind == "prog"):
        if how == "tag":
            try:
                want_tag = bytes.fromhex(what.replace(":", ""))
            except ValueError:
                raise click.UsageError(f"can't parse tag {what}") from None
        for ident in _ids(sys_, kind):
            fd = _fd_by_id(sys_, kind, ident)
            if fd < 0:
                continue
            info = get_info(sys_, fd, _info_struct(kind), kind)
            name = bytes(info.name).split(b"\0")[0].decode(errors="replace")
            if (how == "name" and name == what) or (how == "tag" and bytes(info.tag) == want_tag):
                return fd
            sys_.close(fd)
        raise fail(f"no {kind} with {how} {what} found")
    keys = "'id', 'pinned', 'tag' or 'name'" if kind == "prog" else "'id', 'pinned' or 'name'"
    raise click.UsageError(f"expected {keys}, got: '{how}'?")


__all__ = ["backend", "dumps", "fail", "get_info", "json_mode",
           "json_options", "obj_option", "object_fd", "preload"]
