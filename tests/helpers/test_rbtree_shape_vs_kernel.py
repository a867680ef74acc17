"""The rbtree's shape, against the live kernel (``tests/verifier/graph/graph_rbwalk.o``).

``bpf_rbtree_root/left/right`` let a program walk the tree, so pybpf's tree
(``pybpf.helpers.rbtree``) must have Linux's shape after any sequence of additions and
removals. A script adds keys (ties included) and removes the root or its left child; after
every step the whole tree is read back through the ``walk`` program (depth-first: one run
per node, following a path of left/right steps from the root) in the kernel and in pybpf on
both tiers. A tree in global data is built and walked the same way, the walkers' xlated
programs match the kernel's, and a hypothesis property checks the red-black invariants of
the tree itself. (The verifier's refusals are in the same object, compared by
``tests/verifier/test_graph_vs_kernel.py``.)"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.helpers.kfunc_alloc import live_objects
from pybpf.helpers.rbtree import RbTree
from pybpf.testing.verifier_diff import pybpf_instance

OBJ = Path(__file__).parents[1] / "verifier" / "graph" / "graph_rbwalk.o"
PROGS = ["add", "walk", "remove_root", "remove_left"]
#: keys to add (with a repeat), then removals interleaved with more additions
SCRIPT: list[tuple[str, int]] = [("add", k) for k in (50, 30, 70, 20, 40, 60, 80, 30, 35, 65, 90, 15)] + [
    ("remove_root", 64), ("remove_left", 64), ("add", 45), ("remove_root", 64), ("add", 25),
    ("remove_left", 64), ("remove_left", 64), ("remove_root", 64), ("add", 55), ("remove_root", 64)]
NONE = 0xFFFFFFFF  # the walk's -1


def _shape(prog: Any) -> dict[str, int]:
    """Path ("" for the root, then "L"/"R" steps) -> key, for every node."""
    out: dict[str, int] = {}
    todo = [""]
    while todo:
        path = todo.pop()
        bits = sum(1 << i for i, c in enumerate(path) if c == "R")
        key = prog.test_run(data_in=bytes(64 + 256 * len(path) + bits)).retval
        if key == NONE:
            continue
        out[path] = key
        todo += [path + "L", path + "R"]
    return out


def _run(world: Any, script: list[tuple[str, int]] | None = None) -> list[tuple[int, dict[str, int]]]:
    import pybpf.skel as skel

    o = skel.open(str(OBJ), kernel=world)
    for p in o.progs:
        p.autoload = p.name in PROGS
    o.load()
    try:
        steps = []
        for name, n in script or SCRIPT:
            ret = getattr(o.progs, name).test_run(data_in=bytes(n)).retval
            steps.append((ret, _shape(o.progs.walk)))
        return steps
    finally:
        o.close()


@pytest.fixture(scope="module")
def kernel_steps(kernel: ModuleType) -> list[tuple[int, dict[str, int]]]:
    return _run("live")


@pytest.mark.parametrize("jit", [0, 1])
def test_shapes_as_kernel(kernel_steps: list[tuple[int, dict[str, int]]], jit: int) -> None:
    before = live_objects()
    steps = _run(pybpf_instance(jit))
    for i, (got, want) in enumerate(zip(steps, kernel_steps, strict=True)):
        assert got == want, (i, SCRIPT[i])
    assert live_objects() == before  # the nodes left in the tree went with the map
    assert max(len(shape) for _, shape in kernel_steps) == 12
    assert any(len(p) >= 3 for p in kernel_steps[11][1])  # deep enough to have rotated


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=80))
def test_tree_stays_red_black(ops: list[tuple[bool, int]]) -> None:
    """Random additions (keys with repeats) and removals: the red-black invariants hold,
    the in-order walk is sorted with equal keys in insertion order, the leftmost is first."""
    tree, keys, model = RbTree(), {}, []  # model: (key, addr) in the order Linux keeps them
    for addr, (is_add, k) in enumerate(ops, start=1):
        if is_add or not model:
            keys[addr] = k
            tree.add(addr, lambda a, b: keys[a] < keys[b])
            at = next((i for i, (mk, _) in enumerate(model) if k < mk), len(model))
            model.insert(at, (k, addr))
        else:
            _, victim = model.pop(k % len(model))
            assert tree.remove(victim)
        tree.check()
        assert list(tree.addrs()) == [a for _, a in model]
        assert (tree.leftmost.addr if tree.leftmost else None) == (model[0][1] if model else None)
    assert not tree.remove(10**9)


@pytest.mark.parametrize("seed", range(3))
def test_random_scripts_as_kernel(kernel: ModuleType, seed: int) -> None:
    """Random scripts of 40 steps (JIT tier)."""
    import random

    rnd = random.Random(seed)
    script = [("add", rnd.randrange(14, 200)) if rnd.random() < 0.7 else
              (rnd.choice(["remove_root", "remove_left"]), 64) for _ in range(40)]
    assert _run(pybpf_instance(1), script) == _run("live", script)


#: a tree in global data (a `.data.W` section beside its lock): additions, then the key of
#: the root's right child after each
GLOBAL_SCRIPT = [("walk_global", 64), ("add_global_ok", 20), ("walk_global", 64),
                 ("add_global_ok", 30), ("walk_global", 64), ("add_global_ok", 40),
                 ("walk_global", 64), ("add_global_ok", 15), ("add_global_ok", 35),
                 ("walk_global", 64), ("add_global_ok", 37), ("walk_global", 64)]


def _run_global(world: Any) -> list[int]:
    import pybpf.skel as skel

    o = skel.open(str(OBJ), kernel=world)
    for p in o.progs:
        p.autoload = p.name in ("add_global_ok", "walk_global")
    o.load()
    try:
        return [getattr(o.progs, name).test_run(data_in=bytes(n)).retval for name, n in GLOBAL_SCRIPT]
    finally:
        o.close()


@pytest.mark.parametrize("jit", [0, 1])
def test_global_tree_as_kernel(kernel: ModuleType, jit: int) -> None:
    want = _run_global("live")
    assert want[:3] == [NONE, 0, NONE] and want[-1] == 37  # the walk saw rotations
    before = live_objects()
    assert _run_global(pybpf_instance(jit)) == want
    assert live_objects() == before


@pytest.mark.parametrize("name", ["walk", "walk_global", "remove_left"])
def test_walk_xlated_as_kernel(kernel: ModuleType, name: str) -> None:
    """The walkers are called as they are: no rewrite around bpf_rbtree_root/left/right."""
    from pybpf.kernel import Kernel
    from pybpf.testing.xlated import comparable, object_xlated

    want = comparable(object_xlated(OBJ, name, "live"), kfunc_imms=False)
    assert comparable(object_xlated(OBJ, name, Kernel()), kfunc_imms=False) == want
