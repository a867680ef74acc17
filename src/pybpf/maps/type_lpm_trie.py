"""``BPF_MAP_TYPE_LPM_TRIE`` (``kernel/bpf/lpm_trie.c``): longest-prefix match.

Keys are ``struct bpf_lpm_trie_key_u8``: ``u32 prefixlen`` then ``key_size - 4`` data
bytes (big-endian bit order: bit 0 is the top bit of ``data[0]``). Creation requires
``BPF_F_NO_PREALLOC``, ``5 <= key_size <= 260``. The trie is the kernel's: real nodes and
intermediate (IM) nodes, children chosen by the bit after a node's prefix, lookup
returns the longest matching real node, ``get_next_key`` walks post-order (leftmost leaf
first; a missing key restarts from the leftmost). A full trie is ENOSPC.

Layout: the tree shape lives in Python objects (no JIT fast path is required for LPM);
values live in a native slab (``header.data``, ``max_entries + 1`` slots of
``round_up(value_size, 8)``) so lookups return stable addresses while the entry lives.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from pybpf.errors import BpfError
from pybpf.maps.base import BaseMapOps, ForEachCallback
from pybpf.maps.batch import (
    BatchResult,
    generic_delete_batch,
    generic_lookup_batch,
    generic_update_batch,
)
from pybpf.maps.common import BPF_F_ACCESS_MASK, KMALLOC_MAX_SIZE, bpf_map_flags_access_ok
from pybpf.maps.core import BpfMap, MapAttr
from pybpf.maps.ops import register_map_ops
from pybpf.maps.storage import alloc_region
from pybpf.uapi import (
    BPF_EXIST,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_MAP_TYPE_LPM_TRIE,
    BPF_NOEXIST,
)

LPM_DATA_SIZE_MAX = 256
LPM_DATA_SIZE_MIN = 1
SIZEOF_LPM_TRIE_NODE = 24
LPM_VAL_SIZE_MAX = KMALLOC_MAX_SIZE - LPM_DATA_SIZE_MAX - SIZEOF_LPM_TRIE_NODE
LPM_CREATE_FLAG_MASK = BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK


@dataclass(eq=False)
class Node:
    prefixlen: int
    data: bytes
    slot: int = -1  # value slot; -1 for an intermediate node
    child: list[Node | None] = field(default_factory=lambda: [None, None])

    @property
    def im(self) -> bool:
        return self.slot < 0


def extract_bit(data: bytes, index: int) -> int:
    return (data[index >> 3] >> (7 - (index & 7))) & 1


def longest_prefix_match(node: Node, prefixlen: int, data: bytes) -> int:
    limit = min(node.prefixlen, prefixlen)
    a = int.from_bytes(node.data, "big")
    b = int.from_bytes(data, "big")
    bits = len(data) * 8
    diff = a ^ b
    common = bits - diff.bit_length()
    return min(common, limit)


class LpmTrieMap(BpfMap):
    def __init__(self, ops: BaseMapOps, attr: MapAttr) -> None:
        super().__init__(ops, attr)
        self.data_size = self.key_size - 4
        self.max_prefixlen = self.data_size * 8
        self.root: Node | None = None
        self.n_entries = 0
        self.slab = alloc_region(self, (self.max_entries + 1) * self.value_stride, "values")
        self.free_slots = list(range(self.max_entries, -1, -1))
        self.key_scratch = alloc_region(self, self.key_size, "key scratch")
        self.write_header(elem_size=self.value_stride, data=self.slab.start)

    def split(self, key: bytes) -> tuple[int, bytes]:
        return int.from_bytes(key[:4], "little"), key[4:4 + self.data_size]

    def value_of(self, node: Node) -> bytes:
        off = node.slot * self.value_stride
        return self.slab.mv[off:off + self.value_size].tobytes()

    def lookup(self, key: bytes) -> Node | None:
        prefixlen, data = self.split(key)
        if prefixlen > self.max_prefixlen:
            return None
        found = None
        node = self.root
        while node is not None:
            matchlen = longest_prefix_match(node, prefixlen, data)
            if matchlen == self.max_prefixlen:
                return node
            if matchlen < node.prefixlen:
                break
            if not node.im:
                found = node
            node = node.child[extract_bit(data, node.prefixlen)]
        return found


class LpmTrieOps(BaseMapOps):
    map_type = BPF_MAP_TYPE_LPM_TRIE

    def map_alloc_check(self, attr: MapAttr) -> None:
        if (attr.max_entries == 0 or not attr.map_flags & BPF_F_NO_PREALLOC
                or attr.map_flags & ~LPM_CREATE_FLAG_MASK
                or not bpf_map_flags_access_ok(attr.map_flags)
                or attr.key_size < 4 + LPM_DATA_SIZE_MIN
                or attr.key_size > 4 + LPM_DATA_SIZE_MAX
                or attr.value_size < 1 or attr.value_size > LPM_VAL_SIZE_MAX):
            raise BpfError(errno.EINVAL)

    def map_alloc(self, attr: MapAttr) -> BpfMap:
        return LpmTrieMap(self, attr)

    def mem_usage(self, bmap: BpfMap) -> int:
        assert isinstance(bmap, LpmTrieMap)
        return (SIZEOF_LPM_TRIE_NODE + bmap.data_size + bmap.value_size) * bmap.n_entries

    # -- update / delete ----------------------------------------------------------------
    def update(self, bmap: LpmTrieMap, key: bytes, value: bytes, flags: int) -> int:
        if flags > BPF_EXIST:
            return errno.EINVAL
        prefixlen, data = bmap.split(key)
        if prefixlen > bmap.max_prefixlen:
            return errno.EINVAL
        with bmap.lock:
            def check_add() -> int:
                if flags == BPF_EXIST:
                    return errno.ENOENT
                if bmap.n_entries == bmap.max_entries:
                    return errno.ENOSPC
                bmap.n_entries += 1
                return 0

            new = Node(prefixlen, data)
            parent: Node | None = None
            side = 0
            node = bmap.root
            matchlen = 0
            while node is not None:
                matchlen = longest_prefix_match(node, prefixlen, data)
                if (node.prefixlen != matchlen or node.prefixlen == prefixlen
                        or node.prefixlen == bmap.max_prefixlen):
                    break
                parent, side = node, extract_bit(data, node.prefixlen)
                node = node.child[side]

            def place(n: Node) -> None:
                if parent is None:
                    bmap.root = n
                else:
                    parent.child[side] = n

            def fill(n: Node) -> None:
                n.slot = bmap.free_slots.pop()
                off = n.slot * bmap.value_stride
                bmap.slab.mv[off:off + bmap.value_size] = value[:bmap.value_size]

            if node is None:
                err = check_add()
                if err:
                    return err
                fill(new)
                place(new)
                return 0
            if node.prefixlen == matchlen:
                if not node.im:
                    if flags == BPF_NOEXIST:
                        return errno.EEXIST
                else:
                    err = check_add()
                    if err:
                        return err
                fill(new)
                new.child = list(node.child)
                place(new)
                if not node.im:
                    bmap.free_slots.append(node.slot)
                return 0
            err = check_add()
            if err:
                return err
            fill(new)
            if matchlen == prefixlen:
                new.child[extract_bit(node.data, matchlen)] = node
                place(new)
                return 0
            im = Node(matchlen, node.data)
            if extract_bit(data, matchlen):
                im.child = [node, new]
            else:
                im.child = [new, node]
            place(im)
            return 0

    def delete(self, bmap: LpmTrieMap, key: bytes) -> int:
        prefixlen, data = bmap.split(key)
        if prefixlen > bmap.max_prefixlen:
            return errno.EINVAL
        with bmap.lock:
            grand: Node | None = None
            parent: Node | None = None
            node = bmap.root
            matchlen = 0
            while node is not None:
                matchlen = longest_prefix_match(node, prefixlen, data)
                if node.prefixlen != matchlen or node.prefixlen == prefixlen:
                    break
                grand, parent = parent, node
                node = node.child[extract_bit(data, node.prefixlen)]
            if (node is None or node.prefixlen != prefixlen or node.prefixlen != matchlen
                    or node.im):
                return errno.ENOENT
            bmap.n_entries -= 1
            bmap.free_slots.append(node.slot)
            if node.child[0] is not None and node.child[1] is not None:
                node.slot = -1
                return 0

            def replace(holder: Node | None, old: Node, new: Node | None) -> None:
                if holder is None:
                    bmap.root = new
                elif holder.child[0] is old:
                    holder.child[0] = new
                else:
                    holder.child[1] = new

            if (parent is not None and parent.im and node.child[0] is None
                    and node.child[1] is None):
                sibling = parent.child[1] if parent.child[0] is node else parent.child[0]
                replace(grand, parent, sibling)
                return 0
            replace(parent, node, node.child[0] if node.child[0] is not None
                    else node.child[1])
            return 0

    def get_next(self, bmap: LpmTrieMap, key: bytes | None) -> Node | None:
        root = bmap.root
        if root is None:
            return None

        def leftmost(n: Node | None) -> Node | None:
            nxt = None
            while n is not None:
                if n.im:
                    n = n.child[0]
                else:
                    nxt = n
                    n = n.child[0] if n.child[0] is not None else n.child[1]
            return nxt

        if key is None:
            return leftmost(root)
        prefixlen, data = bmap.split(key)
        if prefixlen > bmap.max_prefixlen:
            return leftmost(root)
        stack: list[Node] = []
        node: Node | None = root
        matchlen = 0
        while node is not None:
            stack.append(node)
            matchlen = longest_prefix_match(node, prefixlen, data)
            if node.prefixlen != matchlen or node.prefixlen == prefixlen:
                break
            node = node.child[extract_bit(data, node.prefixlen)]
        if node is None or node.prefixlen != matchlen or node.im:
            return leftmost(root)
        node = stack[-1]
        while len(stack) > 1:
            parent = stack[-2]
            if parent.child[0] is node and parent.child[1] is not None:
                return leftmost(parent.child[1])
            if not parent.im:
                return parent
            node = parent
            stack.pop()
        return None

    # -- syscall side -------------------------------------------------------------------
    def sys_lookup(self, bmap: BpfMap, key: bytes, flags: int, value: bytes | None = None
                   ) -> bytes:
        assert isinstance(bmap, LpmTrieMap)
        with bmap.lock:
            node = bmap.lookup(key)
            if node is None:
                raise BpfError(errno.ENOENT)
            return bmap.value_of(node)

    def sys_update(self, bmap: BpfMap, key: bytes, value: bytes, flags: int) -> None:
        assert isinstance(bmap, LpmTrieMap)
        err = self.update(bmap, key, value, flags)
        if err:
            raise BpfError(err)

    def sys_delete(self, bmap: BpfMap, key: bytes) -> None:
        assert isinstance(bmap, LpmTrieMap)
        err = self.delete(bmap, key)
        if err:
            raise BpfError(err)

    def sys_get_next_key(self, bmap: BpfMap, key: bytes | None) -> bytes:
        assert isinstance(bmap, LpmTrieMap)
        with bmap.lock:
            node = self.get_next(bmap, key)
            if node is None:
                raise BpfError(errno.ENOENT)
            return node.prefixlen.to_bytes(4, "little") + node.data

    def sys_lookup_batch(self, bmap: BpfMap, in_batch: bytes | None, count: int,
                         elem_flags: int, flags: int) -> BatchResult:
        return generic_lookup_batch(self, bmap, in_batch, count, elem_flags, flags)

    def sys_update_batch(self, bmap: BpfMap, keys: bytes, values: bytes, count: int,
                         elem_flags: int, flags: int) -> BatchResult:
        return generic_update_batch(self, bmap, keys, values, count, elem_flags, flags)

    def sys_delete_batch(self, bmap: BpfMap, keys: bytes, count: int, elem_flags: int,
                         flags: int) -> BatchResult:
        return generic_delete_batch(self, bmap, keys, count, elem_flags, flags)

    # -- program side ---------------------------------------------------------------------
    def map_lookup_elem(self, bmap: BpfMap, key_addr: int, cpu: int = 0) -> int:
        assert isinstance(bmap, LpmTrieMap)
        key = bmap.mem.read(key_addr, bmap.key_size)
        with bmap.lock:
            node = bmap.lookup(key)
            return 0 if node is None else bmap.slab.start + node.slot * bmap.value_stride

    def map_for_each_callback(self, bmap: BpfMap, callback: ForEachCallback,
                              cpu: int = 0) -> int:
        return -errno.EINVAL


register_map_ops(LpmTrieOps())
