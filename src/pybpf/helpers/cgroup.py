"""The current task's cgroup: ``bpf_get_current_cgroup_id``,
``bpf_get_current_ancestor_cgroup_id``, ``bpf_current_task_under_cgroup`` and
``bpf_skb_under_cgroup`` (``kernel/bpf/helpers.c``, ``net/core/filter.c``).

The task running a program is this process (as for ``BPF_PROG_TEST_RUN`` in the kernel, and
as pybpf's ``_user`` probes read this process's memory), so its cgroup is the host's cgroup
v2 of this process: the id of a cgroup is the inode number of its directory under
``/sys/fs/cgroup``, level 0 being the root. Without a cgroup v2 hierarchy the task sits in
the root cgroup (id 1). pybpf has no cgroup fds, so a ``BPF_MAP_TYPE_CGROUP_ARRAY`` slot is
always empty: the ``*_under_cgroup`` helpers answer ``-EAGAIN`` for an index in range
(``-E2BIG`` beyond).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from functools import lru_cache

from pybpf.runtime.context import RunContext

M64 = (1 << 64) - 1
CGROUP2_ROOT = "/sys/fs/cgroup"
ROOT_CGROUP_ID = 1


@lru_cache(maxsize=1)
def _cgroup_chain() -> tuple[int, ...]:
    """Ids of this process's cgroup and its ancestors, root first."""
    try:
        with open("/proc/self/cgroup") as f:
            path = next((ln.split("::", 1)[1].strip() for ln in f if ln.startswith("0::")), None)
    except OSError:
        path = None
    if path is None or not os.path.isdir(CGROUP2_ROOT):
        return (ROOT_CGROUP_ID,)
    ids = []
    cur = CGROUP2_ROOT
    for part in [""] + [p for p in path.split("/") if p]:
        cur = os.path.join(cur, part) if part else cur
        try:
            ids.append(os.stat(cur).st_ino)
        except OSError:
            break
    return tuple(ids) or (ROOT_CGROUP_ID,)


def get_current_cgroup_id(ctx: RunContext, *_: int) -> int:
    return _cgroup_chain()[-1] & M64


def get_current_ancestor_cgroup_id(ctx: RunContext, level: int, *_: int) -> int:
    """The ancestor at ``level`` (0: the root); 0 below the task's own level."""
    chain = _cgroup_chain()
    level &= 0xFFFFFFFF
    return chain[level] & M64 if level < len(chain) else 0


def _under_cgroup(map_addr: int, idx: int) -> int:
    from pybpf.maps.core import map_from_addr

    m = map_from_addr(map_addr)
    if (idx & 0xFFFFFFFF) >= int(getattr(m, "max_entries", 0)):
        return (-errno.E2BIG) & M64
    return (-errno.EAGAIN) & M64  # no cgroup can be stored in pybpf's cgroup arrays


def current_task_under_cgroup(ctx: RunContext, map_addr: int, idx: int, *_: int) -> int:
    return _under_cgroup(map_addr, idx)


def skb_under_cgroup(ctx: RunContext, skb: int, map_addr: int, idx: int, *_: int) -> int:
    """The skb's full socket's cgroup decides; a test-run skb has the kernel's dummy full
    socket, so the answer is the cgroup array's (``-E2BIG``/``-EAGAIN``)."""
    return _under_cgroup(map_addr, idx)


IMPLS: dict[int, Callable[..., int]] = {
    33: skb_under_cgroup,
    37: current_task_under_cgroup,
    80: get_current_cgroup_id,
    123: get_current_ancestor_cgroup_id,
}
