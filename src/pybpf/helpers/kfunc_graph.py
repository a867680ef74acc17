"""Run time of the graph collections: ``bpf_list_*``, ``bpf_rbtree_*`` (and freeing them).

A ``bpf_list_head`` or ``bpf_rb_root`` (16 bytes in a map value or an allocated object)
holds, in its first word, a handle to a :class:`GraphRoot`: the node addresses in list
order, or for an rbtree a red-black tree of the kernel's shape (helpers/rbtree.py: the
descent calls the program's ``less`` as ``rb_add_cached`` does, node by node, and
``bpf_rbtree_root/left/right`` walk the same tree a program walks in the kernel). The handle is
created on first use, as the kernel initialises a zeroed head lazily. Programs cannot
read or write the head (the verifier refuses direct access), and the syscall side never
sees it (``copy_map_value`` skips special fields), so the handle is private to pybpf.

A node keeps its owner where ``struct bpf_list_node_kern`` / ``bpf_rb_node_kern`` do
(offset 16 / 24 of the node): 0 when free, the root's handle while in a collection. Pushing a node that is already in a collection fails with ``-EINVAL`` and drops
that reference (``__bpf_list_add``), popping clears the owner.

Freeing a root (its map element deleted or overwritten, the map freed, the object that
holds it dropped) drops every node still in it (``bpf_list_head_free``).
"""

from __future__ import annotations

import itertools
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pybpf.helpers.kfunc_alloc import FIELD_FREERS, drop_object
from pybpf.helpers.rbtree import RbTree
from pybpf.runtime.memory import REGISTRY

if TYPE_CHECKING:
    from pybpf.runtime.context import RunContext

_U64 = struct.Struct("<Q")
EINVAL = 22
M64 = (1 << 64) - 1
LIST_NODE_OWNER = 16  # offsetof(struct bpf_list_node_kern, owner)
RB_NODE_OWNER = 24  # offsetof(struct bpf_rb_node_kern, owner)
OWNER_OFF = {"bpf_list_head": LIST_NODE_OWNER, "bpf_rb_root": RB_NODE_OWNER}


@dataclass(eq=False)
class GraphRoot:
    kind: str
    nodes: list[int] = field(default_factory=list)  # a list's node (member) addresses, in order
    tree: RbTree = field(default_factory=RbTree)  # an rbtree's nodes (helpers/rbtree.py)

    def members(self) -> list[int]:
        """Every node address, in order."""
        return list(self.tree.addrs()) if self.kind == "bpf_rb_root" else list(self.nodes)


ROOTS: dict[int, GraphRoot] = {}
_HANDLES = itertools.count(1)
_LOCK = threading.Lock()


def _read64(addr: int) -> int:
    return int(_U64.unpack(REGISTRY.read(addr, 8))[0])


def _write64(addr: int, value: int) -> None:
    REGISTRY.write(addr, _U64.pack(value & M64))


def root_at(addr: int, kind: str) -> tuple[int, GraphRoot]:
    """The collection whose head is at ``addr``, created on first use."""
    handle = _read64(addr)
    root = ROOTS.get(handle)
    if root is None:
        with _LOCK:
            handle = next(_HANDLES)
            root = ROOTS[handle] = GraphRoot(kind)
        _write64(addr, handle)
    return handle, root


def free_root(handle: int, f: Any) -> None:
    """``bpf_list_head_free``: drop every node still in the collection ``handle``."""
    root = ROOTS.pop(handle, None) if handle else None
    if root is None:
        return
    for node in root.members():
        _write64(node + OWNER_OFF[root.kind], 0)
        drop_object(node - f.node_offset)
    root.nodes.clear()
    root.tree = RbTree()


def _free_field(addr: int, f: Any) -> None:
    free_root(_read64(addr), f)


FIELD_FREERS["bpf_list_head"] = _free_field
FIELD_FREERS["bpf_rb_root"] = _free_field


# -- bpf_list_* ----------------------------------------------------------------------------

def _list_add(head: int, node: int, off: int, tail: bool) -> int:
    if _read64(node + LIST_NODE_OWNER):  # already in a collection: the reference is dropped
        drop_object(node - off)
        return -EINVAL & M64
    handle, root = root_at(head, "bpf_list_head")
    if tail:
        root.nodes.append(node)
    else:
        root.nodes.insert(0, node)
    _write64(node + LIST_NODE_OWNER, handle)
    return 0


def list_push_front(ctx: RunContext | None, head: int, node: int, meta: int, off: int, *_: int) -> int:
    return _list_add(head, node, off, False)


def list_push_back(ctx: RunContext | None, head: int, node: int, meta: int, off: int, *_: int) -> int:
    return _list_add(head, node, off, True)


def _list_del(head: int, tail: bool) -> int:
    root = root_at(head, "bpf_list_head")[1]
    if not root.nodes:
        return 0
    node = root.nodes.pop() if tail else root.nodes.pop(0)
    _write64(node + LIST_NODE_OWNER, 0)
    return node


def list_pop_front(ctx: RunContext | None, head: int, *_: int) -> int:
    return _list_del(head, False)


def list_pop_back(ctx: RunContext | None, head: int, *_: int) -> int:
    return _list_del(head, True)


def list_front(ctx: RunContext | None, head: int, *_: int) -> int:
    root = root_at(head, "bpf_list_head")[1]
    return root.nodes[0] if root.nodes else 0


def list_back(ctx: RunContext | None, head: int, *_: int) -> int:
    root = root_at(head, "bpf_list_head")[1]
    return root.nodes[-1] if root.nodes else 0


# -- bpf_rbtree_* --------------------------------------------------------------------------

def rbtree_add(ctx: RunContext, root_addr: int, node: int, less: int, meta: int, off: int) -> int:
    """``__bpf_rbtree_add``: descend calling the program's ``less(new, node)``, link, and
    rebalance as Linux does (helpers/rbtree.py)."""
    from pybpf.helpers.impls import callback_pc

    if _read64(node + RB_NODE_OWNER):
        drop_object(node - off)
        return -EINVAL & M64
    _write64(node + RB_NODE_OWNER, M64)  # BPF_PTR_POISON while the callback runs
    handle, root = root_at(root_addr, "bpf_rb_root")
    pc = callback_pc(ctx, less)
    root.tree.add(node, lambda a, b: bool(ctx.call_subprog(pc, a, b, 0, 0, 0) & 0xFF))
    _write64(node + RB_NODE_OWNER, handle)
    return 0


def rbtree_first(ctx: RunContext | None, root_addr: int, *_: int) -> int:
    """``bpf_rbtree_first``: the leftmost node (``rb_first_cached``)."""
    tree = root_at(root_addr, "bpf_rb_root")[1].tree
    return tree.leftmost.addr if tree.leftmost is not None else 0


def rbtree_remove(ctx: RunContext | None, root_addr: int, node: int, *_: int) -> int:
    """``bpf_rbtree_remove``: NULL unless the node is in this tree."""
    handle, root = root_at(root_addr, "bpf_rb_root")
    if _read64(node + RB_NODE_OWNER) != handle or not root.tree.remove(node):
        return 0
    _write64(node + RB_NODE_OWNER, 0)
    return node


def rbtree_root(ctx: RunContext | None, root_addr: int, *_: int) -> int:
    """``bpf_rbtree_root``: the tree's root node, or NULL."""
    tree = root_at(root_addr, "bpf_rb_root")[1].tree
    return tree.root.addr if tree.root is not None else 0


def _child(root_addr: int, node: int, left: bool) -> int:
    handle, root = root_at(root_addr, "bpf_rb_root")
    if _read64(node + RB_NODE_OWNER) != handle:
        return 0
    n = root.tree.by_addr.get(node)
    child = (n.left if left else n.right) if n is not None else None
    return child.addr if child is not None else 0


def rbtree_left(ctx: RunContext | None, root_addr: int, node: int, *_: int) -> int:
    """``bpf_rbtree_left``: the node's left child, NULL when it has none or is not in
    this tree."""
    return _child(root_addr, node, True)


def rbtree_right(ctx: RunContext | None, root_addr: int, node: int, *_: int) -> int:
    """``bpf_rbtree_right``: the node's right child (see :func:`rbtree_left`)."""
    return _child(root_addr, node, False)


GRAPH_IMPLS: dict[str, Callable[..., int]] = {
    "bpf_rbtree_add_impl": rbtree_add,
    "bpf_rbtree_first": rbtree_first,
    "bpf_rbtree_remove": rbtree_remove,
    "bpf_rbtree_root": rbtree_root,
    "bpf_rbtree_left": rbtree_left,
    "bpf_rbtree_right": rbtree_right,
    "bpf_list_push_front_impl": list_push_front,
    "bpf_list_push_back_impl": list_push_back,
    "bpf_list_pop_front": list_pop_front,
    "bpf_list_pop_back": list_pop_back,
    "bpf_list_front": list_front,
    "bpf_list_back": list_back,
}

__all__ = ["GRAPH_IMPLS", "ROOTS", "free_root", "root_at"]
