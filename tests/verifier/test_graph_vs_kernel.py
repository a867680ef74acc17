"""Allocated objects and graph collections (``tests/verifier/graph/``) against the live kernel.

Every program of every object is loaded on its own into the live kernel and into pybpf:
same errno, same error line (the last line before the statistics) and the same
``processed N insns``. The refusals cover a leaked ``bpf_obj_new`` object, use after
``bpf_obj_drop``, the type id of a non-struct or not a constant, ``bpf_refcount_acquire``
of a type without ``bpf_refcount``, direct access to special fields, a list operation
without the lock, a node used after ``bpf_spin_unlock`` or pushed twice, a popped node not
released, a node at the wrong offset. Then the runnable programs run (``test_run`` on
both tiers) in a fixed order that builds and drains lists in a map: same return values,
same map contents outside the special fields, and pybpf frees every object when the map
goes."""

from __future__ import annotations

import re
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pybpf.helpers.kfunc_alloc import live_objects
from pybpf.kernel import Kernel
from pybpf.testing.object_logs import ProgLog, program_logs
from pybpf.testing.verifier_diff import pybpf_instance

DIR = Path(__file__).parent / "graph"
OBJECTS = sorted(DIR.glob("graph_*.o"))
_PROCESSED = re.compile(r"^processed (\d+) insns", re.M)
_LOGS: dict[tuple[str, str], dict[str, ProgLog]] = {}


def _logs(path: Path, world: str) -> dict[str, ProgLog]:
    key = (path.name, world)
    if key not in _LOGS:
        _LOGS[key] = program_logs(path, "live" if world == "live" else Kernel(), 1)
    return _LOGS[key]


def outcome(res: ProgLog) -> tuple[int, str, int | None]:
    """errno, the error line (refusals only) and the processed-instruction count."""
    m = _PROCESSED.search(res.log)
    lines = [ln for ln in res.log.splitlines()
             if ln.strip() and not ln.startswith(("processed ", "verification time"))]
    return res.errno, (lines[-1] if res.errno and lines else ""), int(m.group(1)) if m else None


def _cases() -> list[tuple[Path, str]]:
    return [(p, name) for p in OBJECTS for name in sorted(_logs(p, "pybpf"))]


@pytest.mark.parametrize(("path", "name"), _cases(), ids=lambda x: x.stem if isinstance(x, Path) else x)
def test_graph_verdict_as_kernel(kernel: ModuleType, path: Path, name: str) -> None:
    live = _logs(path, "live")
    assert name in live, f"the kernel did not load {name}"
    assert outcome(_logs(path, "pybpf")[name]) == outcome(live[name])


def test_graph_objects_cover_both_verdicts() -> None:
    """The shipped objects hold accepted and refused programs (pybpf alone)."""
    verdicts = {f"{p.stem}:{n}": r.errno for p in OBJECTS for n, r in _logs(p, "pybpf").items()}
    assert verdicts["graph_alloc:new_drop"] == 0 and verdicts["graph_list:push_pop"] == 0
    assert verdicts["graph_alloc:new_leak"] == 22 and verdicts["graph_list:push_no_lock"] == 22


# -- run time ------------------------------------------------------------------------------

LIST_RUN = ["push_pop", "add", "peek", "take"]
#: (program, packet length = skb->len): adds 20, 30, 40, peeks and drains, adds 50 (left in
#: the map when it is freed)
LIST_SCRIPT = [("push_pop", 64), ("add", 20), ("add", 30), ("add", 40), ("peek", 64), ("take", 64),
               ("peek", 64), ("take", 64), ("take", 64), ("take", 64), ("add", 50), ("peek", 64)]
ALLOC_RUN = ["new_drop", "refcount_ok"]
ALLOC_SCRIPT = [("new_drop", 64), ("refcount_ok", 64), ("new_drop", 64)]


def _run(world: Any, path: Path, progs: list[str], script: list[tuple[str, int]],
         map_name: str | None) -> tuple[list[int], list[bytes]]:
    import pybpf.skel as skel
    from pybpf.testing import kernel as K

    o = skel.open(str(path), kernel=world)
    for p in o.progs:
        p.autoload = p.name in progs
    o.load()
    try:
        rets = [getattr(o.progs, name).test_run(data_in=bytes(n)).retval for name, n in script]
        vals: list[bytes] = []
        if map_name is not None:
            m = getattr(o.maps, map_name)
            for k in range(2):
                key = struct.pack("<i", k)
                if world == "live":
                    vals.append(K.map_lookup(m.fd, key, m.value_size))
                else:
                    bm = m.api().bmap
                    vals.append(bytes(bm.ops.sys_lookup(bm, key, 0)))
    finally:
        o.close()
    return rets, vals


def _outside_roots(val: bytes) -> bytes:
    """struct map_val { lock; count; head }: the kernel's lookup copies the head's pointers
    out; compare what is not a special field."""
    return val[8:16]


@pytest.mark.parametrize("jit", [0, 1])
def test_list_programs_run_as_kernel(kernel: ModuleType, jit: int) -> None:
    path = DIR / "graph_list.o"
    want_rets, want_vals = _run("live", path, LIST_RUN, LIST_SCRIPT, "lists")
    before = live_objects()
    rets, vals = _run(pybpf_instance(jit), path, LIST_RUN, LIST_SCRIPT, "lists")
    assert rets == want_rets
    assert [_outside_roots(v) for v in vals] == [_outside_roots(v) for v in want_vals]
    assert live_objects() == before  # the node left in the list went with the map


@pytest.mark.parametrize("jit", [0, 1])
def test_alloc_programs_run_as_kernel(kernel: ModuleType, jit: int) -> None:
    path = DIR / "graph_alloc.o"
    want, _ = _run("live", path, ALLOC_RUN, ALLOC_SCRIPT, None)
    before = live_objects()
    got, _ = _run(pybpf_instance(jit), path, ALLOC_RUN, ALLOC_SCRIPT, None)
    assert got == want == [42, 42, 42]
    assert live_objects() == before


RBTREE_RUN = ["add", "take_first", "peek_first", "remove_owning"]
#: keys 40, 20, 30, 20 (a tie goes after its equal), peeks, removals, an owning node that is
#: in no tree (remove gives NULL), 90 left in the tree when the map goes
RBTREE_SCRIPT = [("peek_first", 64), ("add", 40), ("add", 20), ("add", 30), ("add", 20), ("peek_first", 64),
                 ("take_first", 64), ("remove_owning", 64), ("take_first", 64), ("add", 15),
                 ("take_first", 64), ("take_first", 64), ("add", 90)]


@pytest.mark.parametrize("jit", [0, 1])
def test_rbtree_programs_run_as_kernel(kernel: ModuleType, jit: int) -> None:
    """``bpf_rbtree_add_impl`` calls the program's ``less`` on both tiers."""
    path = DIR / "graph_rbtree.o"
    want, _ = _run("live", path, RBTREE_RUN, RBTREE_SCRIPT, None)
    before = live_objects()
    got, _ = _run(pybpf_instance(jit), path, RBTREE_RUN, RBTREE_SCRIPT, None)
    assert got == want
    assert live_objects() == before


REFCOUNTED_RUN = ["add_both", "take_both", "acquire_non_owning"]
REFCOUNTED_SCRIPT = [("acquire_non_owning", 64), ("add_both", 50), ("add_both", 20), ("acquire_non_owning", 64),
                     ("take_both", 64), ("acquire_non_owning", 64), ("take_both", 64), ("take_both", 64),
                     ("add_both", 33)]


@pytest.mark.parametrize("jit", [0, 1])
def test_refcounted_nodes_run_as_kernel(kernel: ModuleType, jit: int) -> None:
    """A refcounted node in a list and a tree at once; the last one, left in both when the
    map goes, is freed after both collections dropped their reference."""
    path = DIR / "graph_refcounted.o"
    want, _ = _run("live", path, REFCOUNTED_RUN, REFCOUNTED_SCRIPT, None)
    before = live_objects()
    got, _ = _run(pybpf_instance(jit), path, REFCOUNTED_RUN, REFCOUNTED_SCRIPT, None)
    assert got == want
    assert live_objects() == before


def test_list_map_frees_nodes_on_update_and_delete() -> None:
    """Overwriting a map value empties its list (``bpf_obj_free_fields``); the syscall side
    reads zeros where the head is (pybpf alone)."""
    import pybpf.skel as skel

    k = Kernel()
    o = skel.open(str(DIR / "graph_list.o"), kernel=k)
    for p in o.progs:
        p.autoload = p.name in LIST_RUN
    o.load()
    try:
        before = live_objects()
        for n in (20, 30):
            assert o.progs.add.test_run(data_in=bytes(n)).retval == 0
        assert live_objects() == before + 2
        bm = o.maps.lists.api().bmap
        key = struct.pack("<i", 0)
        val = bytes(bm.ops.sys_lookup(bm, key, 0))
        assert val[16:] == bytes(16) and val[8:16] == struct.pack("<q", 2)
        bm.ops.sys_update(bm, key, bytes(len(val)), 0)
        assert live_objects() == before
        assert o.progs.take.test_run(data_in=bytes(64)).retval == 0xFFFFFFFF  # empty: -1
    finally:
        o.close()


# -- xlated --------------------------------------------------------------------------------

@pytest.mark.parametrize(("obj", "name"), [(o, n) for o, progs in (("graph_alloc", ALLOC_RUN),
                                                                   ("graph_list", LIST_RUN),
                                                                   ("graph_rbtree", RBTREE_RUN),
                                                                   ("graph_refcounted", REFCOUNTED_RUN))
                                           for n in progs])
def test_graph_xlated_as_kernel(kernel: ModuleType, obj: str, name: str) -> None:
    """``fixup_kfunc_call``'s rewrites: ``r1 = size`` and the struct meta in ``r2`` for
    bpf_obj_new, the meta for bpf_obj_drop / bpf_refcount_acquire, the meta and the node
    offset for list pushes (``r3``/``r4``) and bpf_rbtree_add_impl (``r4``/``r5``)."""
    from pybpf.testing.xlated import comparable, object_xlated

    path = DIR / f"{obj}.o"
    want = comparable(object_xlated(path, name, "live"), kfunc_imms=False)
    assert comparable(object_xlated(path, name, Kernel()), kfunc_imms=False) == want


# -- global data, objects holding locks and lists, local and per-CPU kptrs -----------------

#: (object, script): every program of the script is loaded, then run in order; the kernel's
#: return values are the answer. Global data: a list and an rbtree in `.data.*` sections.
#: An array of roots and a root in a nested struct. Objects: a list in a bpf_obj_new object,
#: the object pushed onto a map's list (freed with the map), a local kptr in an object. Kptrs: nodes stashed in and taken out of a map's local kptr, per-CPU objects
#: stashed, cleared on every CPU (the kernel may hand out a recycled per-CPU object without
#: zeroing it), updated through bpf_this_cpu_ptr and replaced (the old one dropped).
STATE_SCRIPTS = {
    "graph_global": [("g_push", 20), ("g_push", 30), ("g_pop", 64), ("g_rb", 40), ("g_rb", 25),
                     ("g_rb", 60), ("g_push", 44), ("g_pop", 64), ("g_pop", 64), ("g_pop", 64),
                     ("g_counter", 64), ("g_push", 70), ("g_array_roots", 30), ("g_nested_root", 40)],
    "graph_in_obj": [("in_obj", 20), ("in_obj_keep", 30), ("in_obj", 40), ("lock_obj", 20),
                     ("in_obj_keep", 50)],
    "graph_kptr": [("unstash_node", 64), ("stash_node", 20), ("stash_node", 30), ("stash_read", 64),
                   ("unstash_node", 64), ("unstash_node", 64), ("stash_node", 40), ("pcpu_use", 64),
                   ("pcpu_new", 64), ("pcpu_zero", 64), ("pcpu_use", 20), ("pcpu_use", 30),
                   ("pcpu_new", 64), ("pcpu_zero", 64), ("pcpu_use", 25), ("nested_kptr", 33),
                   ("nested_kptr_kept", 64), ("rb_stash_peek", 64), ("rb_stash_put", 21),
                   ("rb_stash_peek", 64), ("rb_stash_put", 22)],
}


@pytest.mark.parametrize("jit", [0, 1])
@pytest.mark.parametrize("obj", sorted(STATE_SCRIPTS))
def test_stateful_programs_run_as_kernel(kernel: ModuleType, obj: str, jit: int) -> None:
    """Same return values as the kernel on both tiers, and every object freed when the
    maps go. The process is pinned to CPU 0 so both worlds update the same CPU's copy of a
    per-CPU object."""
    import os

    path = DIR / f"{obj}.o"
    script = STATE_SCRIPTS[obj]
    progs = sorted({name for name, _ in script})
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        want, _ = _run("live", path, progs, script, None)
        before = live_objects()
        got, _ = _run(pybpf_instance(jit), path, progs, script, None)
    finally:
        os.sched_setaffinity(0, cpus)
    assert got == want
    assert live_objects() == before


def test_stateful_scripts_cover_the_cases() -> None:
    """The scripts see data come back out (pybpf alone, so the check runs without a kernel)."""
    path = DIR / "graph_kptr.o"
    script = STATE_SCRIPTS["graph_kptr"]
    got, _ = _run(pybpf_instance(0), path, sorted({n for n, _ in script}), script, None)
    assert got[:7] == [0xFFFFFFFF, 0, 20, 30, 30, 0xFFFFFFFF, 0]
    assert got[-11:-8] == [20, 50, 0] and got[-7:] == [25, 33, 0, 0xFFFFFFFF, 0, 21, 0]


@pytest.mark.parametrize(("obj", "name"), [("graph_kptr", "pcpu_use"), ("graph_kptr", "pcpu_new"),
                                           ("graph_kptr", "stash_node"), ("graph_global", "g_push"),
                                           ("graph_in_obj", "in_obj")])
def test_state_xlated_as_kernel(kernel: ModuleType, obj: str, name: str) -> None:
    """``r1 = size`` and a NULL meta for bpf_percpu_obj_new, ``r1 = *(u64 *)(r1 + 0)``
    before bpf_this_cpu_ptr / bpf_per_cpu_ptr of a per-CPU object, the metas of objects
    holding lists."""
    test_graph_xlated_as_kernel(kernel, obj, name)
