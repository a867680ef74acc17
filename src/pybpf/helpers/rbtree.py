"""A red-black tree shaped as Linux's ``lib/rbtree.c`` shapes it.

``bpf_rbtree_root``, ``bpf_rbtree_left`` and ``bpf_rbtree_right`` let a program walk the
tree itself, so the tree must have the kernel's shape after every sequence of additions
and removals, not merely the kernel's order. The kernel's tree is the textbook one:

- insertion descends from the root, going left when ``less(new, node)`` holds and right
  otherwise (``rb_add_cached``: equal keys go right, after their equals), links the new node
  red and repairs colours upwards (``__rb_insert``: recolour under a red uncle, otherwise
  one or two rotations at the grandparent);
- removal of a node with two children puts its in-order successor (the leftmost node of its
  right subtree) in its place, taking its colour; a node with one child is replaced by that
  (red) child painted black; a black leaf leaves a double-black hole repaired from its parent
  (``__rb_erase_color``: rotate a red sibling up, recolour a sibling with black children,
  else one or two rotations at the parent).

Nodes are the addresses of the programs' ``bpf_rb_node`` members; the tree keeps its links
in Python (programs cannot read a node's links: the verifier refuses direct access).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass(eq=False)
class RbNode:
    addr: int
    left: RbNode | None = None
    right: RbNode | None = None
    parent: RbNode | None = None
    red: bool = True


def _red(n: RbNode | None) -> bool:
    return n is not None and n.red


@dataclass(eq=False)
class RbTree:
    """``struct rb_root_cached``: the root, the leftmost node, and the nodes by address."""

    root: RbNode | None = None
    leftmost: RbNode | None = None
    by_addr: dict[int, RbNode] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.by_addr)

    def __contains__(self, addr: int) -> bool:
        return addr in self.by_addr

    def addrs(self) -> Iterator[int]:
        """In-order addresses."""
        n = self.leftmost
        while n is not None:
            yield n.addr
            n = _next(n)

    # -- rotations ------------------------------------------------------------------------
    def _replace_child(self, old: RbNode, new: RbNode | None, parent: RbNode | None) -> None:
        if parent is None:
            self.root = new
        elif parent.left is old:
            parent.left = new
        else:
            parent.right = new

    def _rotate_left(self, x: RbNode) -> None:
        y = x.right
        assert y is not None
        x.right = y.left
        if y.left is not None:
            y.left.parent = x
        y.parent = x.parent
        self._replace_child(x, y, x.parent)
        y.left = x
        x.parent = y

    def _rotate_right(self, x: RbNode) -> None:
        y = x.left
        assert y is not None
        x.left = y.right
        if y.right is not None:
            y.right.parent = x
        y.parent = x.parent
        self._replace_child(x, y, x.parent)
        y.right = x
        x.parent = y

    # -- insertion ------------------------------------------------------------------------
    def add(self, addr: int, less: Callable[[int, int], bool]) -> None:
        """``rb_add_cached``: ``less(new, existing)`` picks the side at each level."""
        node = RbNode(addr)
        parent, link_left, leftmost = None, False, True
        cur = self.root
        while cur is not None:
            parent = cur
            if less(addr, cur.addr):
                link_left, cur = True, cur.left
            else:
                link_left, cur, leftmost = False, cur.right, False
        node.parent = parent
        if parent is None:
            self.root = node
        elif link_left:
            parent.left = node
        else:
            parent.right = node
        if leftmost:
            self.leftmost = node
        self.by_addr[addr] = node
        self._insert_color(node)

    def _rotate(self, x: RbNode, left: bool) -> None:
        (self._rotate_left if left else self._rotate_right)(x)

    def _insert_color(self, node: RbNode) -> None:
        while True:
            parent = node.parent
            if parent is None:
                node.red = False
                return
            if not parent.red:
                return
            gparent = parent.parent
            assert gparent is not None  # a red node is never the root
            on_left = parent is gparent.left
            uncle = gparent.right if on_left else gparent.left
            if uncle is not None and uncle.red:  # recolour and go up two levels
                parent.red = uncle.red = False
                gparent.red = True
                node = gparent
                continue
            if node is (parent.right if on_left else parent.left):  # the inner grandchild
                self._rotate(parent, on_left)
                node, parent = parent, node
            self._rotate(gparent, not on_left)
            parent.red, gparent.red = False, True
            return

    # -- removal --------------------------------------------------------------------------
    def remove(self, addr: int) -> bool:
        """``rb_erase_cached``; False when ``addr`` is not in the tree."""
        node = self.by_addr.pop(addr, None)
        if node is None:
            return False
        if self.leftmost is node:
            self.leftmost = _next(node)
        rebalance: RbNode | None = None
        if node.left is None or node.right is None:
            child = node.left if node.left is not None else node.right
            self._replace_child(node, child, node.parent)
            if child is not None:  # a lone child is red: it takes the black place
                child.parent, child.red = node.parent, node.red
            elif not node.red:
                rebalance = node.parent
        else:
            succ = node.right
            if succ.left is None:  # the right child itself succeeds
                parent, child2 = succ, succ.right
            else:
                while succ.left is not None:
                    succ = succ.left
                parent, child2 = succ.parent, succ.right
                assert parent is not None
                parent.left = child2
                succ.right = node.right
                node.right.parent = succ
            succ.left = node.left
            node.left.parent = succ
            self._replace_child(node, succ, node.parent)
            succ.parent = node.parent
            succ_red, succ.red = succ.red, node.red
            if child2 is not None:
                child2.parent, child2.red = parent, False
            elif not succ_red:
                rebalance = parent
        if rebalance is not None:
            self._erase_color(rebalance)
        return True

    def _erase_color(self, parent: RbNode) -> None:
        node: RbNode | None = None  # the double-black position, a hole below ``parent``
        while True:
            left = node is not parent.right  # the hole is on the left
            sibling = parent.right if left else parent.left
            assert sibling is not None
            if sibling.red:  # make the sibling black: rotate it up
                self._rotate(parent, left)
                sibling.red, parent.red = False, True
                sibling = parent.right if left else parent.left
                assert sibling is not None
            near, far = (sibling.left, sibling.right) if left else (sibling.right, sibling.left)
            if not _red(near) and not _red(far):  # push the missing black up
                sibling.red = True
                if parent.red:
                    parent.red = False
                    return
                node, up = parent, parent.parent
                if up is None:
                    return
                parent = up
                continue
            if not _red(far):  # turn the red near nephew into the far one
                self._rotate(sibling, not left)
                sibling.red = True
                sibling = parent.right if left else parent.left
                assert sibling is not None
                sibling.red = False
            self._rotate(parent, left)
            sibling.red, parent.red = parent.red, False
            far = sibling.right if left else sibling.left
            if far is not None:
                far.red = False
            return

    def check(self) -> None:
        """Assert the red-black properties and the parent links (tests)."""
        def walk(n: RbNode | None, parent: RbNode | None) -> int:
            if n is None:
                return 1
            assert n.parent is parent
            assert not (n.red and (_red(n.left) or _red(n.right))), "red node with a red child"
            hl, hr = walk(n.left, n), walk(n.right, n)
            assert hl == hr, "unequal black heights"
            return hl + (0 if n.red else 1)

        assert not _red(self.root)
        walk(self.root, None)


def _next(n: RbNode) -> RbNode | None:
    """``rb_next``: the in-order successor."""
    if n.right is not None:
        n = n.right
        while n.left is not None:
            n = n.left
        return n
    while n.parent is not None and n is n.parent.right:
        n = n.parent
    return n.parent


__all__ = ["RbNode", "RbTree"]
