"""``pybpf map dump|lookup|update|delete|getnext MAP ...`` in bpftool's grammar and output.

MAP is ``id N | pinned PATH | name NAME``; key and value bytes are given as bpftool takes
them (``key 1 0 0 0``, ``key hex 01 00 00 00``). Output is bpftool's: hex bytes
(``key: 01 00 00 00  value: ...``) for maps without BTF, the BTF-typed values (decoded by
:mod:`pybpf.btf.codec`) for maps with BTF, and ``-j`` JSON with raw bytes plus
``formatted``. Without ``--live`` the maps are those of this process's pybpf instance:
load an object first with ``--obj FILE``, e.g.
``pybpf map dump name drops --obj examples/xdp_firewall.o``.
"""

from __future__ import annotations

import ctypes
import errno as E
import os
from typing import Any

import click

from pybpf.cli._target import (
    backend,
    fail,
    get_info,
    json_mode,
    json_options,
    obj_option,
    object_fd,
    preload,
)
from pybpf.cli.btf_cmds import _group
from pybpf.uapi import BpfCmd, BpfMapType, bpf_attr_map_elem

_PERCPU = {BpfMapType.BPF_MAP_TYPE_PERCPU_ARRAY, BpfMapType.BPF_MAP_TYPE_PERCPU_HASH,
           BpfMapType.BPF_MAP_TYPE_LRU_PERCPU_HASH, BpfMapType.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE}
_FLAGS = {"any": 0, "noexist": 1, "exist": 2}


def writer(value: Any, pretty: bool) -> str:
    """bpftool's ``json_writer``: compact, or its own pretty layout (not Python's)."""
    import json

    if not pretty:
        return json.dumps(value, separators=(",", ":"))
    out: list[str] = []

    def emit(v: Any, depth: int) -> None:
        if isinstance(v, dict):
            out.append("{")
            for n, (k, item) in enumerate(v.items()):
                out.append(("," if n else "") + "\n" + "    " * (depth + 1) + json.dumps(k) + ": ")
                emit(item, depth + 1)
            out.append(("\n" + "    " * depth if v else "") + "}")
        elif isinstance(v, list):
            out.append("[")
            for n, item in enumerate(v):
                out.append("," if n else "")
                emit(item, depth + 1)
            out.append(("\n" + "    " * depth if v else "") + "]")
        else:
            out.append(json.dumps(v))

    emit(value, 0)
    return "".join(out)


class _Map:
    def __init__(self, sys_: Any, fd: int) -> None:
        from pybpf.uapi import bpf_map_info

        self.sys, self.fd = sys_, fd
        self.info = get_info(sys_, fd, bpf_map_info(), "map")
        self.percpu = self.info.type in _PERCPU
        from pybpf.maps.core import num_possible_cpus

        self.ncpus = num_possible_cpus() if self.percpu else 1
        self.vstep = (self.info.value_size + 7) & ~7 if self.percpu else self.info.value_size
        self.kcodec = self.vcodec = None
        if self.info.btf_id and self.info.btf_value_type_id:
            from pybpf.btf.codec import codec_for
            from pybpf.cli._proginfo import fetch_btf

            btf = fetch_btf(sys_, self.info.btf_id)
            if btf is not None:
                try:
                    self.kcodec = codec_for(btf, self.info.btf_key_type_id) \
                        if self.info.btf_key_type_id else None
                    self.vcodec = codec_for(btf, self.info.btf_value_type_id)
                except (ValueError, KeyError, NotImplementedError):
                    self.kcodec = self.vcodec = None

    def _elem(self, cmd: int, key: bytes | None, value: bytes | None = None,
              flags: int = 0) -> tuple[int, bytes]:
        kbuf = ctypes.create_string_buffer(key or b"\0", max(len(key or b""), 1))
        vsize = self.vstep * self.ncpus if cmd != BpfCmd.BPF_MAP_GET_NEXT_KEY \
            else self.info.key_size
        vbuf = ctypes.create_string_buffer(value or b"", max(vsize, 1))
        attr = bpf_attr_map_elem()
        attr.map_fd, attr.key = self.fd, ctypes.addressof(kbuf) if key is not None else 0
        if cmd != BpfCmd.BPF_MAP_DELETE_ELEM:  # DELETE's attr ends at key (CHECK_ATTR)
            ctypes.c_uint64.from_address(ctypes.addressof(attr) + 16).value = \
                ctypes.addressof(vbuf)
            attr.flags = flags
        ret = int(self.sys.bpf(cmd, attr))
        return ret, vbuf.raw[:vsize]

    def lookup(self, key: bytes) -> bytes | None:
        ret, val = self._elem(BpfCmd.BPF_MAP_LOOKUP_ELEM, key)
        if ret == -E.ENOENT:
            return None
        if ret < 0:
            raise fail(f"lookup failed: {os.strerror(-ret)}")
        return val

    def next_key(self, key: bytes | None) -> bytes | None:
        ret, nxt = self._elem(BpfCmd.BPF_MAP_GET_NEXT_KEY, key)
        if ret == -E.ENOENT:
            return None
        if ret < 0:
            raise fail(f"can't get next key: {os.strerror(-ret)}")
        return nxt

    def all_keys(self) -> list[bytes]:
        out: list[bytes] = []
        key: bytes | None = None
        while (key := self.next_key(key)) is not None and len(out) <= self.info.max_entries:
            out.append(key)
        return out

    # ---- formatting

    def formatted(self, key: bytes, value: bytes) -> dict[str, Any] | None:
        if self.vcodec is None:
            return None
        k = self.kcodec.unpack(key) if self.kcodec is not None else _hex(key)
        if self.percpu:
            return {"key": _plain(k), "values": [
                {"cpu": c, "value": _plain(self.vcodec.unpack(
                    value[c * self.vstep:c * self.vstep + self.info.value_size]))}
                for c in range(self.ncpus)]}
        return {"key": _plain(k), "value": _plain(self.vcodec.unpack(value))}

    def json_entry(self, key: bytes, value: bytes) -> dict[str, Any]:
        rec: dict[str, Any] = {"key": _hex(key)}
        if self.percpu:
            rec["values"] = [{"cpu": c, "value": _hex(value[c * self.vstep:c * self.vstep
                                                              + self.info.value_size])}
                             for c in range(self.ncpus)]
        else:
            rec["value"] = _hex(value)
        fmt = self.formatted(key, value)
        if fmt is not None:
            rec["formatted"] = fmt
        return rec

    def plain_entry(self, key: bytes, value: bytes) -> str:
        ks, vs = self.info.key_size, self.info.value_size
        if not self.percpu:
            brk = ks > 16 or vs > 16
            single = ks + vs <= 24 and not brk
            return (f"key:{chr(10) if brk else ' '}{fprint_hex(key)}{'  ' if single else chr(10)}"
                    f"value:{chr(10) if brk else ' '}{fprint_hex(value)}")
        lines = ["key:", fprint_hex(key)]
        for c in range(self.ncpus):
            lines.append(f"value (CPU {c:02d}):{chr(10) if vs > 16 else ' '}"
                         f"{fprint_hex(value[c * self.vstep:c * self.vstep + vs])}")
        return "\n".join(lines)


def _hex(b: bytes) -> list[str]:
    return [f"0x{x:02x}" for x in b]


def _plain(v: Any) -> Any:
    """Codec output → JSON values as bpftool's btf_dumper prints them."""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).split(b"\0")[0].decode(errors="replace")
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def fprint_hex(data: bytes) -> str:
    """bpftool's ``fprint_hex``: bytes in groups of 8, 16 per line."""
    out = []
    for i, b in enumerate(data):
        pfx = "" if not i else ("\n" if not i % 16 else ("  " if not i % 8 else " "))
        out.append(f"{pfx}{b:02x}")
    return "".join(out)


def parse_bytes(words: list[str], size: int, what: str) -> bytes:
    """bpftool's ``parse_bytes``: each word a byte (base 0), or ``hex`` then hex bytes."""
    base = 0
    if words and words[0] == "hex":
        base, words = 16, words[1:]
    if len(words) != size:
        raise fail(f"{what} expected {size} bytes got {len(words)}")
    try:
        vals = [int(w, base) for w in words]
    except ValueError:
        raise fail(f"error parsing byte: {next(w for w in words if not _isint(w, base))}") \
            from None
    if any(not 0 <= v <= 255 for v in vals):
        raise fail(f"error parsing byte: {next(w for w, v in zip(words, vals) if v > 255)}")
    return bytes(vals)


def _isint(w: str, base: int) -> bool:
    try:
        int(w, base)
        return True
    except ValueError:
        return False


def _split(args: tuple[str, ...], keywords: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    cur: str | None = None
    for a in args:
        if a in keywords and a not in out:
            cur = a
            out[a] = []
        elif cur is None:
            raise click.UsageError(f"expected {' or '.join(keywords)}, got: '{a}'")
        else:
            out[cur].append(a)
    return out


def _open_map(how: str, what: str, live: bool, objs: tuple[str, ...]) -> _Map:
    preload(objs, live)
    sys_ = backend(live)
    return _Map(sys_, object_fd(sys_, "map", how, what))


def _common(f: Any) -> Any:
    f = click.argument("args", nargs=-1)(f)
    f = click.argument("what")(f)
    f = click.argument("how")(f)
    f = click.option("--live", is_flag=True, help="use the machine's kernel instead of pybpf")(f)
    return json_options(obj_option(f))


def _out(text: str) -> None:
    click.echo(text)


@click.command("dump", help="dump MAP: every entry (bpftool map dump); MAP := id N | pinned P "
               "| name NAME. Without --live, load objects first with --obj FILE.")
@_common
def map_dump(how: str, what: str, args: tuple[str, ...], live: bool,
             objs: tuple[str, ...]) -> None:
    if args:
        raise click.UsageError(f"unexpected argument '{args[0]}'")
    m = _open_map(how, what, live, objs)
    as_json, pretty = json_mode()
    entries = []
    for key in m.all_keys():
        value = m.lookup(key)
        if value is not None:
            entries.append((key, value))
    if as_json:
        _out(writer([m.json_entry(k, v) for k, v in entries], pretty))
    elif m.vcodec is not None:
        _out(writer([m.formatted(k, v) for k, v in entries], True))
    else:
        for k, v in entries:
            _out(m.plain_entry(k, v))
        _out(f"Found {len(entries)} element{'' if len(entries) == 1 else 's'}")


@click.command("lookup", help="lookup MAP key DATA (bpftool map lookup).")
@_common
def map_lookup(how: str, what: str, args: tuple[str, ...], live: bool,
               objs: tuple[str, ...]) -> None:
    m = _open_map(how, what, live, objs)
    parts = _split(args, ("key",))
    key = parse_bytes(parts.get("key", []), m.info.key_size, "key")
    value = m.lookup(key)
    as_json, pretty = json_mode()
    if value is None:
        raise fail("lookup failed: No such file or directory") if as_json else fail(
            f"key:\n{fprint_hex(key)}\n\nNot found")
    if as_json:
        _out(writer(m.json_entry(key, value), pretty))
    elif m.vcodec is not None:
        _out(writer(m.formatted(key, value), True))
    else:
        _out(m.plain_entry(key, value))


@click.command("update", help="update MAP key DATA value VALUE [any|exist|noexist] "
               "(bpftool map update).")
@_common
def map_update(how: str, what: str, args: tuple[str, ...], live: bool,
               objs: tuple[str, ...]) -> None:
    m = _open_map(how, what, live, objs)
    parts = _split(args, ("key", "value"))
    vwords = parts.get("value", [])
    flags = 0
    if vwords and vwords[-1] in _FLAGS:
        flags = _FLAGS[vwords.pop()]
    key = parse_bytes(parts.get("key", []), m.info.key_size, "key")
    value = parse_bytes(vwords, m.info.value_size * (m.ncpus if m.percpu else 1), "value")
    if m.percpu:
        value = b"".join(value[c * m.info.value_size:(c + 1) * m.info.value_size].ljust(
            m.vstep, b"\0") for c in range(m.ncpus))
    ret, _ = m._elem(BpfCmd.BPF_MAP_UPDATE_ELEM, key, value, flags)
    if ret < 0:
        raise fail(f"update failed: {os.strerror(-ret)}")
    if json_mode()[0]:
        _out("null")


@click.command("delete", help="delete MAP key DATA (bpftool map delete).")
@_common
def map_delete(how: str, what: str, args: tuple[str, ...], live: bool,
               objs: tuple[str, ...]) -> None:
    m = _open_map(how, what, live, objs)
    key = parse_bytes(_split(args, ("key",)).get("key", []), m.info.key_size, "key")
    ret, _ = m._elem(BpfCmd.BPF_MAP_DELETE_ELEM, key)
    if ret < 0:
        raise fail(f"delete failed: {os.strerror(-ret)}")
    if json_mode()[0]:
        _out("null")


@click.command("getnext", help="getnext MAP [key DATA] (bpftool map getnext).")
@_common
def map_getnext(how: str, what: str, args: tuple[str, ...], live: bool,
                objs: tuple[str, ...]) -> None:
    m = _open_map(how, what, live, objs)
    parts = _split(args, ("key",))
    key = parse_bytes(parts["key"], m.info.key_size, "key") if "key" in parts else None
    nxt = m.next_key(key)
    if nxt is None:
        raise fail("can't get next key: No such file or directory")
    as_json, pretty = json_mode()
    if as_json:
        _out(writer({"key": _hex(key) if key is not None else None, "next_key": _hex(nxt)},
                    pretty))
    else:
        head = f"key:\n{fprint_hex(key)}\n" if key is not None else "key: None"
        _out(f"{head}\nnext key:\n{fprint_hex(nxt)}")


MAP_SUBCOMMANDS: list[click.Command] = [map_dump, map_lookup, map_update, map_delete,
                                        map_getnext]

COMMANDS: list[click.Command] = _group("map", "Inspect and edit BPF maps (bpftool map).",
                                       MAP_SUBCOMMANDS)

__all__ = ["COMMANDS", "MAP_SUBCOMMANDS", "fprint_hex", "parse_bytes", "writer"]
