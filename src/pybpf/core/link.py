"""``struct bpf_link``: a program attached to a hook, as an object with its own fd and ID.

A link holds a reference to its program; closing its last fd/pin detaches it
(``release``) and frees it. ``BPF_LINK_DETACH`` detaches early while the link object
lives on (its info then shows the program it had). Each hook kind supplies a
:class:`LinkOps` — the kernel's ``struct bpf_link_ops`` — with ``release``, ``detach``,
``update_prog`` and ``fill_link_info``; a hook that lacks an operation gets the kernel's
errno for it (``EOPNOTSUPP`` for detach, ``EINVAL`` for update).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pybpf.core.prog import BpfProg
    from pybpf.kernel import Kernel


class LinkOps(Protocol):
    """Per-hook link behaviour. Methods a hook does not have are simply absent."""

    def release(self, link: BpfLink) -> None:
        """Detach from the hook (called once, when the link is freed or detached)."""

    def fill_link_info(self, link: BpfLink, info: Any, task: Any) -> None:
        """Fill the type-specific union of ``bpf_link_info``; raise ``BpfError`` on error."""


class BpfLink:
    """A link. ``type`` is a ``BPF_LINK_TYPE_*``; ``ops`` a :class:`LinkOps`."""

    def __init__(self, kernel: Kernel, link_type: int, ops: Any, prog: BpfProg | None,
                 attach_type: int = 0) -> None:
        self.kernel = kernel
        self.type = link_type
        self.ops = ops
        self.prog = prog
        self.attach_type = attach_type
        self.id = 0
        self.refcnt = 1
        self.flags = 0
        self.detached = False
        self.freed = False
        self.extra: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self) -> BpfLink:
        with self._lock:
            self.refcnt += 1
        return self

    def put(self) -> None:
        with self._lock:
            self.refcnt -= 1
            last = self.refcnt == 0
        if last:
            self._free()

    def put_pin(self) -> None:
        self.put()

    def detach(self) -> None:
        """``BPF_LINK_DETACH``: leave the hook now, keep the link object."""
        if not self.detached:
            self.detached = True
            release = getattr(self.ops, "release", None)
            if callable(release):
                release(self)

    def _free(self) -> None:
        if self.freed:
            return
        self.freed = True
        if self.id:
            self.kernel.link_idr.remove(self.id)
            self.id = 0
        if self.prog is not None:
            self.detach()
            prog, self.prog = self.prog, None
            prog.put()

    def run(self, *args: int) -> int:
        """Run the attached program (what the hook does when it fires)."""
        if self.prog is None or self.detached:
            return 0
        return self.prog.run(*args)

    def __repr__(self) -> str:
        pid = self.prog.id if self.prog is not None else 0
        return f"BpfLink(id={self.id}, type={self.type}, prog_id={pid}, refcnt={self.refcnt})"
