"""Pieces the verifier's differential tests share: the BTF of a program with a ``bpf_loop``
callback, and what a load answered (verdict, first error message, processed count)."""

from __future__ import annotations

import re
import struct

_STATS = re.compile(r"^processed (\d+) insns", re.M)


def callback_btf(params: tuple[str, str] = ("int", "ptr")) -> bytes:
    """Raw BTF: int, ``int main(void)`` and a static callback ``int cb(a, b)`` whose two
    parameters are ``"int"`` or ``"ptr"`` (``void *``) — bpf_loop's ``cb(int i, void *c)``
    by default. The kernel checks a static callback's registers against it and only logs a
    mismatch (``R2 is not a scalar``), so other callbacks may use it too. func_info: main is
    type 3, cb type 5."""
    kinds = {"int": 1, "ptr": 6}
    strings = b"\0int\0main\0cb\0i\0c\0"
    s_int, s_main, s_cb, s_i, s_c = 1, 5, 10, 13, 15
    types = b"".join([
        struct.pack("<IIII", s_int, 1 << 24, 4, (1 << 24) | 32),  # [1] INT int
        struct.pack("<III", 0, 13 << 24, 1),  # [2] FUNC_PROTO int(void)
        struct.pack("<III", s_main, 12 << 24, 2),  # [3] FUNC main
        struct.pack("<III", 0, (13 << 24) | 2, 1)  # [4] FUNC_PROTO int(a, b)
        + struct.pack("<IIII", s_i, kinds[params[0]], s_c, kinds[params[1]]),
        struct.pack("<III", s_cb, 12 << 24, 4),  # [5] FUNC cb
        struct.pack("<III", 0, 2 << 24, 0),  # [6] PTR void
    ])
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def load_outcome(ok: bool, log: str) -> tuple[bool, str, int]:
    """Verdict, first error message (the last log line before the statistics) and the
    processed instruction count (-1 when the log has none)."""
    m = _STATS.search(log)
    processed = int(m.group(1)) if m else -1
    msg = ""
    if not ok:
        lines = [ln for ln in log[:m.start() if m else len(log)].splitlines() if ln.strip()]
        msg = lines[-1] if lines else ""
    return ok, msg, processed
