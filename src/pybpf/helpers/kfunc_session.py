"""The kprobe/uprobe session kfuncs: ``bpf_session_cookie`` and ``bpf_session_is_return``.

A session program runs at a function's entry and again at its return; the two runs share
one u64 (the cookie) and the second one is told it is the return. The run context carries
both (``ctx.data["session_cookie"]``, a region of pybpf's memory, and
``ctx.data["session_is_return"]``); a run that is not part of a session gets a zeroed
cookie of its thread's and "entry".
"""

from __future__ import annotations

import threading
from typing import Any

from pybpf.runtime.memory import REGISTRY

_THREAD = threading.local()


def session_cookie(ctx: Any, *_: int) -> int:
    """``bpf_session_cookie``: the address of the session's cookie."""
    region = ctx.data.get("session_cookie")
    if region is None:
        region = getattr(_THREAD, "cookie", None)
        if region is None:
            region = _THREAD.cookie = REGISTRY.alloc(8, "session cookie")
        region.mv[:] = bytes(8)
        ctx.data["session_cookie"] = region
    return int(region.start)


def session_is_return(ctx: Any, *_: int) -> int:
    """``bpf_session_is_return``: 1 in the run at the function's return."""
    return int(bool(ctx.data.get("session_is_return", False)))


SESSION_IMPLS = {"bpf_session_cookie": session_cookie,
                 "bpf_session_is_return": session_is_return}
