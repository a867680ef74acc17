"""Multi-program attach points with ordering and revisions (``kernel/bpf/mprog.c``).

A :class:`MprogEntry` is the ordered list of (program, link) pairs of one tcx hook. Attach,
detach and query follow 6.18's ``bpf_mprog_attach`` / ``bpf_mprog_detach`` /
``bpf_mprog_query`` rules: position by ``BPF_F_BEFORE``/``BPF_F_AFTER`` relative to a
program or link named by fd or ID (``BPF_F_ID``, ``BPF_F_LINK``), ``BPF_F_REPLACE`` of an
exact program, ``expected_revision`` (``ESTALE``), at most 64 entries (``ERANGE``), a
program attached once (``EEXIST``), link-owned entries not removable through the
prog path (``EBUSY``). Every successful change bumps the revision, which starts at 1.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pybpf.errors import BpfError

BPF_F_REPLACE = 1 << 2
BPF_F_BEFORE = 1 << 3
BPF_F_AFTER = 1 << 4
BPF_F_ID = 1 << 5
BPF_F_LINK = 1 << 13
MPROG_MAX = 64


@dataclass
class Tuple:
    """``struct bpf_tuple``: a program and the link that owns it (if any)."""

    prog: Any = None
    link: Any = None


def _err(code: int, msg: str) -> BpfError:
    return BpfError(code, msg)


class MprogEntry:
    """The programs of one hook, in run order."""

    def __init__(self) -> None:
        self.items: list[Tuple] = []
        self.revision = 1

    # -- positions ----------------------------------------------------------------------
    def _exact(self, t: Tuple) -> int:
        for i, it in enumerate(self.items):
            if it.prog is t.prog:
                return i if it.link is t.link else -errno.EBUSY
        return -errno.ENOENT

    def _before(self, t: Tuple) -> int:
        for i, it in enumerate(self.items):
            if t.prog is it.prog and (t.link is None or t.link is it.link):
                return i - 1
        return -errno.ENOENT if t.prog is not None else -1

    def _after(self, t: Tuple) -> int:
        for i, it in enumerate(self.items):
            if t.prog is it.prog and (t.link is None or t.link is it.link):
                return i + 1
        return -errno.ENOENT if t.prog is not None else len(self.items)

    def _position(self, idx: int, flags: int, rel: Tuple) -> tuple[int, int]:
        """The shared BEFORE/AFTER/default resolution of attach and detach."""
        if flags & BPF_F_BEFORE:
            tidx = self._before(rel)
            if tidx < -1 or (idx >= -1 and tidx != idx):
                raise _err(-tidx if tidx < -1 else errno.ERANGE, "BPF_F_BEFORE position")
            idx = tidx
        if flags & BPF_F_AFTER:
            tidx = self._after(rel)
            if tidx < -1 or (idx >= -1 and tidx != idx):
                raise _err(-tidx if tidx < 0 else errno.ERANGE, "BPF_F_AFTER position")
            idx = tidx
        if idx < -1:
            if rel.prog is not None or flags:
                raise _err(errno.EINVAL, "relative program without BPF_F_BEFORE/AFTER")
            idx = len(self.items)
            flags = BPF_F_AFTER
        if idx >= MPROG_MAX:
            raise _err(errno.ERANGE, "too many programs")
        return idx, flags

    # -- operations ---------------------------------------------------------------------
    def exists(self, prog: Any) -> bool:
        return any(it.prog is prog for it in self.items)

    def attach(self, prog: Any, link: Any, prog_old: Any, flags: int,
               rel: Tuple | Callable[[], Tuple], revision: int) -> Any:
        """Insert or replace; returns the replaced program (the caller drops its ref).

        ``rel`` may be a callable: the relative program/link is then looked up where
        ``bpf_mprog_attach`` looks it up (after the revision and EEXIST checks), so a bad
        relative fd and a stale revision give the kernel's errno in the kernel's order.
        """
        if revision and revision != self.revision:
            raise _err(errno.ESTALE, "expected_revision does not match")
        if self.exists(prog):
            raise _err(errno.EEXIST, "program already attached")
        if callable(rel):
            rel = rel()
        idx = -errno.ERANGE
        if flags & BPF_F_REPLACE:
            tidx = self._exact(Tuple(prog_old, link))
            if tidx < 0:
                raise _err(-tidx, "program to replace not attached")
            idx = tidx
        idx, flags = self._position(idx, flags, rel)
        new = Tuple(prog, link)
        if flags & BPF_F_REPLACE:
            old = self.items[idx].prog
            self.items[idx] = new
            self.revision += 1
            return old
        if idx == len(self.items):
            self.items.append(new)
        else:
            self.items.insert(idx + 1 if flags & BPF_F_BEFORE else idx, new)
        self.revision += 1
        return None

    def detach(self, prog: Any, link: Any, flags: int, rel: Tuple | Callable[[], Tuple],
               revision: int) -> Tuple:
        """Remove and return the (prog, link) taken out (``rel`` as in :meth:`attach`)."""
        if flags & BPF_F_REPLACE:
            raise _err(errno.EINVAL, "BPF_F_REPLACE on detach")
        if revision and revision != self.revision:
            raise _err(errno.ESTALE, "expected_revision does not match")
        if not self.items:
            raise _err(errno.ENOENT, "nothing attached")
        if callable(rel):
            rel = rel()
        idx = -errno.ERANGE
        if prog is not None:
            tidx = self._exact(Tuple(prog, link))
            if tidx < 0:
                raise _err(-tidx, "program not attached")
            idx = tidx
        idx, flags = self._position(idx, flags, rel)
        if not self.items:
            raise _err(errno.ENOENT, "nothing attached")
        if idx == -1:
            idx = 0
        elif idx == len(self.items):
            idx = len(self.items) - 1
        it = self.items[idx]
        if it.link is not None and link is None:
            raise _err(errno.EBUSY, "entry belongs to a link")
        del self.items[idx]
        self.revision += 1
        return it

    def progs(self) -> list[Any]:
        return [it.prog for it in self.items]

    def __len__(self) -> int:
        return len(self.items)
