"""``struct btf`` as a kernel object: a BTF blob with an ID, a name and references.

``BPF_BTF_LOAD`` creates one from a user blob; the instance's vmlinux BTF (ID 1, name
``vmlinux``, ``kernel_btf``) is created with the :class:`~pybpf.kernel.Kernel`, its data
read lazily from ``/sys/kernel/btf/vmlinux``. Maps (key/value types), programs
(``prog_btf_fd``, ``attach_btf``) and fds hold references; the ID is freed with the last.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pybpf.kernel import Kernel


class BtfObject:
    """One BTF object of an instance."""

    def __init__(self, kernel: Kernel, data: bytes | None, *, name: str = "",
                 kernel_btf: bool = False, path: str | None = None) -> None:
        self.kernel = kernel
        self._data = data
        self._path = path
        self.name = name
        self.kernel_btf = kernel_btf
        self.id = 0
        self.refcnt = 1  # kernel BTF ignores puts: it is never freed
        self.freed = False
        self._parsed: Any = None
        self._lock = threading.Lock()

    @property
    def data(self) -> bytes:
        if self._data is None:
            if self._path is None:
                return b""
            with open(self._path, "rb") as f:
                self._data = f.read()
        return self._data

    @property
    def data_size(self) -> int:
        if self._data is None and self._path is not None:
            import os

            return os.path.getsize(self._path)
        return len(self.data)

    def parsed(self) -> Any:
        """The blob as a :class:`pybpf.btf.raw.Btf` (parsed once)."""
        if self._parsed is None:
            from pybpf.btf.raw import Btf

            self._parsed = Btf.from_bytes(self.data)
        return self._parsed

    def get(self) -> BtfObject:
        with self._lock:
            self.refcnt += 1
        return self

    def put(self) -> None:
        if self.kernel_btf:
            return
        with self._lock:
            self.refcnt -= 1
            last = self.refcnt == 0
        if last and not self.freed:
            self.freed = True
            if self.id:
                self.kernel.btf_idr.remove(self.id)
                self.id = 0

    def put_pin(self) -> None:
        self.put()

    def __repr__(self) -> str:
        return f"BtfObject(id={self.id}, name={self.name!r}, size={self.data_size})"
