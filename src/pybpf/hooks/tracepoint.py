"""Tracepoints the host declares and fires (``TRACE_EVENT`` for Python programs).

``tp = kernel.tracepoint("myapp", "request", fields=[("u32", "status"), ("char[16]",
"path")])`` declares an event whose record is laid out like
``/sys/kernel/tracing/events/<cat>/<name>/format``: the common fields (``common_type``,
``common_flags``, ``common_preempt_count``, ``common_pid``) then the declared ones at their
natural alignment. TRACEPOINT programs attach with ``tp.attach(prog)`` (a perf-event link);
``tp.fire(status=200, path=b"/")`` builds the record in registered memory and runs every
attached program on it. The same event is also a raw tracepoint of the instance, so
RAW_TRACEPOINT programs opened on ``name`` see the fired values as their u64 arguments.
"""

from __future__ import annotations

import os
import re
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pybpf.errors import BpfError
from pybpf.hooks.attachments import close_link, hook_link, run_link
from pybpf.runtime.memory import REGISTRY

_SCALARS = {"u8": ("B", 1), "s8": ("b", 1), "u16": ("H", 2), "s16": ("h", 2),
            "u32": ("I", 4), "s32": ("i", 4), "int": ("i", 4), "u64": ("Q", 8),
            "s64": ("q", 8), "long": ("q", 8), "char": ("c", 1), "bool": ("?", 1),
            "pid_t": ("i", 4), "void *": ("Q", 8)}
_ARRAY = re.compile(r"^\s*([a-z_0-9 *]+?)\s*\[(\d+)\]\s*$")
PROG_TYPE_TRACEPOINT = 5


@dataclass
class Field:
    ctype: str
    name: str
    offset: int
    size: int
    signed: bool
    count: int = 0  # array length (0: scalar)

    def format_line(self) -> str:
        decl = f"{self.ctype.split('[')[0]} {self.name}" + (f"[{self.count}]" if self.count
                                                             else "")
        return (f"\tfield:{decl};\toffset:{self.offset};\tsize:{self.size};"
                f"\tsigned:{int(self.signed)};")


COMMON = [("u16", "common_type"), ("u8", "common_flags"), ("u8", "common_preempt_count"),
          ("int", "common_pid")]


def layout(fields: Iterable[tuple[str, str]]) -> tuple[list[Field], int]:
    """Offsets of the common fields + ``fields``; returns (fields, record size)."""
    out: list[Field] = []
    off = 0
    align_max = 1
    for ctype, name in [*COMMON, *fields]:
        if not re.fullmatch(r"[A-Za-z_]\w*", name) or any(f.name == name for f in out):
            raise BpfError(22, f"bad or duplicate field name {name!r}")
        m = _ARRAY.match(ctype)
        base, count = (m.group(1), int(m.group(2))) if m else (ctype.strip(), 0)
        if base not in _SCALARS:
            raise BpfError(22, f"unknown field type {ctype!r}")
        fmt, size = _SCALARS[base]
        align = size
        off = (off + align - 1) // align * align
        total = size * max(count, 1) if count else size
        signed = (fmt.islower() and fmt not in ("c", "?")) or base == "char"
        out.append(Field(ctype, name, off, total, signed, count))
        off += total
        align_max = max(align_max, align)
    return out, (off + align_max - 1) // align_max * align_max


class HostTracepoint:
    """One declared event. See the module docstring."""

    def __init__(self, registry: HostTracepoints, category: str, name: str,
                 fields: list[tuple[str, str]], event_id: int) -> None:
        self.registry = registry
        self.kernel = registry.kernel
        self.category, self.name, self.id = category, name, event_id
        self.declared = fields
        self.fields, self.size = layout(fields)
        self.links: list[Any] = []
        self.fired = 0
        self._lock = threading.Lock()

    @property
    def format(self) -> str:
        """The ``format`` file text of the event."""
        common = "\n".join(f.format_line() for f in self.fields[:4])
        own = "\n".join(f.format_line() for f in self.fields[4:])
        return (f"name: {self.name}\nID: {self.id}\nformat:\n{common}\n\n{own}\n\n"
                f"print fmt: \"{' '.join(f.name + '=%d' for f in self.fields[4:])}\"\n")

    def attach(self, prog: Any) -> Any:
        """Attach a TRACEPOINT program; returns its link (close with :meth:`detach`)."""
        return hook_link(self.kernel, self, prog, (PROG_TYPE_TRACEPOINT,))

    def detach(self, link: Any) -> None:
        close_link(self.kernel, link)

    def register(self, link: Any) -> None:
        with self._lock:
            self.links.append(link)

    def unregister(self, link: Any) -> None:
        with self._lock:
            if link in self.links:
                self.links.remove(link)

    def record(self, **values: Any) -> bytes:
        """The record bytes for ``values`` (missing fields are zero)."""
        buf = bytearray(self.size)
        byname = {f.name: f for f in self.fields}
        values.setdefault("common_type", self.id)
        values.setdefault("common_pid", os.getpid())
        for key, value in values.items():
            f = byname.get(key)
            if f is None:
                raise BpfError(22, f"{self.category}:{self.name} has no field {key!r}")
            base = (_ARRAY.match(f.ctype).group(1) if f.count else f.ctype.strip())  # type: ignore[union-attr]
            fmt, size = _SCALARS[base]
            if f.count or fmt == "c":
                raw = value.encode() if isinstance(value, str) else bytes(value)
                buf[f.offset:f.offset + f.size] = raw[:f.size].ljust(f.size, b"\0")
            else:
                mask = (1 << (8 * size)) - 1
                struct.pack_into("<" + fmt.upper() if fmt not in ("?",) else "<?", buf,
                                 f.offset, int(value) & mask if fmt != "?" else bool(value))
        return bytes(buf)

    def fire(self, **values: Any) -> list[int]:
        """Run every attached program on one record; their return values in order."""
        self.fired += 1
        data = self.record(**values)
        links = list(self.links)
        rets: list[int] = []
        if links:
            region = REGISTRY.alloc(max(self.size, 8), f"tp {self.category}:{self.name}",
                                    writable=False)
            try:
                region.mv[:len(data)] = data
                for link in links:
                    r0 = run_link(self.kernel, link, region.start)
                    if r0 is not None:
                        rets.append(r0)
            finally:
                REGISTRY.remove(region)
        raw_args = [int(values.get(f.name, 0)) if not f.count and isinstance(
            values.get(f.name, 0), int) else 0 for f in self.fields[4:]]
        rets += self.kernel.tracepoints.fire(self.name, *raw_args) \
            if self.kernel.tracepoints.attached.get(self.name) else []
        return rets


class HostTracepoints:
    """The declared events of an instance, by ``category:name``; IDs from 10000 up."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self._events: dict[tuple[str, str], HostTracepoint] = {}
        self._next_id = 10000

    def declare(self, category: str, name: str,
                fields: Iterable[tuple[str, str]] | None) -> HostTracepoint:
        key = (category, name)
        tp = self._events.get(key)
        if tp is not None:
            if fields is not None and list(fields) != tp.declared:
                raise BpfError(17, f"{category}:{name} already declared with other fields")
            return tp
        tp = HostTracepoint(self, category, name, list(fields or ()), self._next_id)
        self._next_id += 1
        self._events[key] = tp
        raw = self.kernel.tracepoints
        names = set(raw.names())
        names.add(name)
        raw._names = frozenset(names)  # RAW_TRACEPOINT_OPEN finds the host event too
        return tp

    def get(self, category: str, name: str) -> HostTracepoint | None:
        return self._events.get((category, name))

    def __iter__(self) -> Any:
        return iter(list(self._events.values()))
