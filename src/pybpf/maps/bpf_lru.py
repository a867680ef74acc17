"""The LRU lists behind LRU_HASH and LRU_PERCPU_HASH (``kernel/bpf/bpf_lru_list.c``).

Which keys an LRU map evicts is observable from user space, so pybpf keeps Linux's
algorithm, not just "some LRU": elements (LRU *nodes*) live on doubly linked lists

- common LRU (the default): one global ``bpf_lru_list`` with ACTIVE, INACTIVE and FREE
  lists, plus per CPU a *local* FREE list and a *local* PENDING list. An update on CPU
  ``c`` pops a node from ``c``'s local free list; when that is empty it first flushes
  ``c``'s pending nodes into the global lists (referenced → ACTIVE, else INACTIVE),
  rotates the global lists, and refills the local free list with up to ``target_free``
  nodes — from the global FREE list, then by *shrinking* the INACTIVE list from its tail
  (unreferenced nodes are evicted from the hash table; referenced ones move to ACTIVE),
  and if that frees nothing, by force-evicting the oldest node. ``target_free`` is
  ``clamp(max_entries / possible_cpus / 2, 1, 128)``, which is why a full map loses
  several keys at once. When a CPU finds nothing, it steals a free or pending node from
  the CPUs' local lists round robin.
- per-CPU LRU (``BPF_F_NO_COMMON_LRU``): one ``bpf_lru_list`` per CPU owning
  ``max_entries / possible_cpus`` nodes; a new node goes straight to that CPU's INACTIVE
  list; an empty FREE list is refilled by shrinking 4 nodes.

The *ref* bit of a node is word ``REF_WORD`` (4, bytes 16..19) of its hash element (:mod:`pybpf.maps.htab`): program
lookups set it (syscall lookups do not); every list move clears it.

Native layout (u32 words at ``lru`` — control field 96 of the hash table)::

    node records: (n_elems + n_heads) * 4 words
        node i (i < n_elems is element i; i >= n_elems are list heads / sentinels)
        +0 prev   +1 next   (node indices; lists are circular through their head)
        +2 type   0 ACTIVE, 1 INACTIVE, 2 FREE, 3 LOCAL_FREE, 4 LOCAL_PENDING
        +3 cpu    CPU whose local list (common) or whose LRU list (per-CPU) owns it
    list heads (node index = n_elems + h):
        common:  h = 0 ACTIVE, 1 INACTIVE, 2 FREE, then CPU c: 3 + 2c LOCAL_FREE,
                 4 + 2c LOCAL_PENDING
        per-CPU: h = 3c + type for CPU c's list
    list state (after the node records), 3 words per bpf_lru_list:
        counts[ACTIVE], counts[INACTIVE], next_inactive_rotation (node index)
    then per CPU (common LRU only): next_steal
    then: target_free, nr_scans, percpu flag

Native code may take the fast path itself — pop the first node of its CPU's LOCAL_FREE
list, set type LOCAL_PENDING and cpu, clear ref, add it at the head of LOCAL_PENDING —
and must call back into Python (:meth:`BpfLru.pop_free`) when the local list is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pybpf.runtime.memory import Region

ACTIVE, INACTIVE, FREE, LOCAL_FREE, LOCAL_PENDING = range(5)
NR_LIST_COUNT = 2  # only ACTIVE and INACTIVE are counted
LOCAL_FREE_TARGET = 128
LOCAL_NR_SCANS = LOCAL_FREE_TARGET
PERCPU_FREE_TARGET = 4
PERCPU_NR_SCANS = PERCPU_FREE_TARGET
NODE_WORDS = 4
#: the u32 word of a hash element that is its LRU ref bit (any non-zero value is set)
REF_WORD = 4


def lru_words(n_elems: int, nr_cpus: int, percpu: bool) -> int:
    """u32 words of the native LRU area."""
    heads = 3 * nr_cpus if percpu else 3 + 2 * nr_cpus
    lists = nr_cpus if percpu else 1
    return NODE_WORDS * (n_elems + heads) + 3 * lists + (0 if percpu else nr_cpus) + 3


class BpfLru:
    """``struct bpf_lru`` over native memory; nodes are hash-element indices.

    ``del_from_htab(idx) -> bool`` removes element ``idx`` from the hash table if it is
    there (``htab_lru_map_delete_node``); ``ref`` is the element words array and ``ew``
    its stride, so ``ref[idx * ew + REF_WORD]`` is the node's ref bit.
    """

    def __init__(self, region: Region, n_elems: int, nr_cpus: int, percpu: bool,
                 del_from_htab: Callable[[int], bool], ref: memoryview, ew: int) -> None:
        self.w = region.mv.cast("I")
        self.n = n_elems
        self.nr_cpus = nr_cpus
        self.percpu = percpu
        self.del_from_htab = del_from_htab
        self.ref = ref
        self.ew = ew
        heads = 3 * nr_cpus if percpu else 3 + 2 * nr_cpus
        self.state = NODE_WORDS * (n_elems + heads)
        nlists = nr_cpus if percpu else 1
        self.steal_base = self.state + 3 * nlists
        self.ctl = self.steal_base + (0 if percpu else nr_cpus)
        self.nr_scans = PERCPU_NR_SCANS if percpu else LOCAL_NR_SCANS
        w = self.w
        for h in range(n_elems, n_elems + heads):
            w[4 * h] = w[4 * h + 1] = h
        for lst in range(nlists):
            w[self.state + 3 * lst + 2] = self.head(lst, INACTIVE)
        if not percpu:
            for cpu in range(nr_cpus):
                w[self.steal_base + cpu] = cpu
        self.target_free = 0
        self.populate()
        w[self.ctl] = self.target_free
        w[self.ctl + 1] = self.nr_scans
        w[self.ctl + 2] = int(percpu)

    # -- list primitives (include/linux/list.h on node indices) --------------------------
    def head(self, lst: int, typ: int) -> int:
        """Node index of list ``typ`` of bpf_lru_list ``lst``."""
        return self.n + (3 * lst if self.percpu else 0) + typ

    def local_head(self, cpu: int, typ: int) -> int:
        return self.n + 3 + 2 * cpu + (typ - LOCAL_FREE)

    def _del(self, i: int) -> None:
        w = self.w
        p, nx = w[4 * i], w[4 * i + 1]
        w[4 * p + 1] = nx
        w[4 * nx] = p

    def _add(self, i: int, head: int) -> None:
        w = self.w
        first = w[4 * head + 1]
        w[4 * i] = head
        w[4 * i + 1] = first
        w[4 * first] = i
        w[4 * head + 1] = i

    def _move_list(self, i: int, head: int) -> None:
        self._del(i)
        self._add(i, head)

    def _empty(self, head: int) -> bool:
        return self.w[4 * head + 1] == head

    def is_ref(self, i: int) -> bool:
        return bool(self.ref[i * self.ew + REF_WORD])

    def clear_ref(self, i: int) -> None:
        self.ref[i * self.ew + REF_WORD] = 0

    def node_type(self, i: int) -> int:
        return self.w[4 * i + 2]

    def node_cpu(self, i: int) -> int:
        return self.w[4 * i + 3]

    # -- bpf_lru_list bookkeeping --------------------------------------------------------
    def _count(self, lst: int, typ: int, delta: int) -> None:
        if typ < NR_LIST_COUNT:
            self.w[self.state + 3 * lst + typ] += delta

    def _nir(self, lst: int) -> int:
        return self.w[self.state + 3 * lst + 2]

    def _set_nir(self, lst: int, node: int) -> None:
        self.w[self.state + 3 * lst + 2] = node

    def _node_move(self, lst: int, i: int, tgt: int) -> None:
        """``__bpf_lru_node_move``: between/within ACTIVE, INACTIVE, FREE; clears ref."""
        w = self.w
        typ = w[4 * i + 2]
        if typ != tgt:
            self._count(lst, typ, -1)
            self._count(lst, tgt, 1)
            w[4 * i + 2] = tgt
        self.clear_ref(i)
        if i == self._nir(lst):
            self._set_nir(lst, w[4 * i])
        self._move_list(i, self.head(lst, tgt))

    def _node_move_to_free(self, lst: int, i: int, free_head: int, free_type: int) -> None:
        """``__bpf_lru_node_move_to_free`` (keeps the ref bit, as the kernel does)."""
        if i == self._nir(lst):
            self._set_nir(lst, self.w[4 * i])
        self._count(lst, self.w[4 * i + 2], -1)
        self.w[4 * i + 2] = free_type
        self._move_list(i, free_head)

    def _node_move_in(self, lst: int, i: int, tgt: int) -> None:
        """``__bpf_lru_node_move_in``: from a local list into the LRU list."""
        self._count(lst, tgt, 1)
        self.w[4 * i + 2] = tgt
        self.clear_ref(i)
        self._move_list(i, self.head(lst, tgt))

    # -- rotation and shrinking ----------------------------------------------------------
    def _rotate_active(self, lst: int) -> None:
        w = self.w
        active = self.head(lst, ACTIVE)
        first = w[4 * active + 1]
        node = w[4 * active]
        scanned = 0
        while node != active:
            prev = w[4 * node]
            self._node_move(lst, node, ACTIVE if self.is_ref(node) else INACTIVE)
            scanned += 1
            if scanned == self.nr_scans or node == first:
                break
            node = prev

    def _rotate_inactive(self, lst: int) -> None:
        w = self.w
        inactive = self.head(lst, INACTIVE)
        if self._empty(inactive):
            return
        cur = self._nir(lst)
        last = w[4 * cur + 1]
        if last == inactive:
            last = w[4 * last + 1]
        nxt = inactive
        scanned = 0
        while scanned < self.nr_scans:
            if cur == inactive:
                cur = w[4 * cur]
                continue
            nxt = w[4 * cur]
            if self.is_ref(cur):
                self._node_move(lst, cur, ACTIVE)
            if cur == last:
                break
            cur = nxt
            scanned += 1
        self._set_nir(lst, nxt)

    def _rotate(self, lst: int) -> None:
        base = self.state + 3 * lst
        if self.w[base + INACTIVE] < self.w[base + ACTIVE]:
            self._rotate_active(lst)
        self._rotate_inactive(lst)

    def _shrink_inactive(self, lst: int, tgt: int, free_head: int, free_type: int) -> int:
        w = self.w
        inactive = self.head(lst, INACTIVE)
        node = w[4 * inactive]
        shrunk = scanned = 0
        while node != inactive:
            prev = w[4 * node]
            if self.is_ref(node):
                self._node_move(lst, node, ACTIVE)
            elif self.del_from_htab(node):
                self._node_move_to_free(lst, node, free_head, free_type)
                shrunk += 1
                if shrunk == tgt:
                    break
            scanned += 1
            if scanned == self.nr_scans:
                break
            node = prev
        return shrunk

    def _shrink(self, lst: int, tgt: int, free_head: int, free_type: int) -> int:
        """``__bpf_lru_list_shrink``: honour ref bits first, then force out the oldest."""
        shrunk = self._shrink_inactive(lst, tgt, free_head, free_type)
        if shrunk:
            return shrunk
        w = self.w
        force = self.head(lst, INACTIVE)
        if self._empty(force):
            force = self.head(lst, ACTIVE)
        node = w[4 * force]
        while node != force:
            prev = w[4 * node]
            if self.del_from_htab(node):
                self._node_move_to_free(lst, node, free_head, free_type)
                return 1
            node = prev
        return 0

    # -- common LRU ------------------------------------------------------------------------
    def _flush(self, cpu: int) -> None:
        w = self.w
        pending = self.local_head(cpu, LOCAL_PENDING)
        node = w[4 * pending]
        while node != pending:
            prev = w[4 * node]
            self._node_move_in(0, node, ACTIVE if self.is_ref(node) else INACTIVE)
            node = prev

    def _pop_free_to_local(self, cpu: int) -> None:
        w = self.w
        self._flush(cpu)
        self._rotate(0)
        free = self.head(0, FREE)
        local_free = self.local_head(cpu, LOCAL_FREE)
        moved = 0
        node = w[4 * free + 1]
        while node != free:
            nxt = w[4 * node + 1]
            self._node_move_to_free(0, node, local_free, LOCAL_FREE)
            moved += 1
            if moved == self.target_free:
                break
            node = nxt
        if moved < self.target_free:
            self._shrink(0, self.target_free - moved, local_free, LOCAL_FREE)

    def _local_pop_free(self, cpu: int) -> int:
        head = self.local_head(cpu, LOCAL_FREE)
        node = self.w[4 * head + 1]
        if node == head:
            return -1
        self._del(node)
        return node

    def _local_pop_pending(self, cpu: int) -> int:
        w = self.w
        pending = self.local_head(cpu, LOCAL_PENDING)
        for force in (False, True):
            node = w[4 * pending]
            while node != pending:
                if (force or not self.is_ref(node)) and self.del_from_htab(node):
                    self._del(node)
                    return node
                node = w[4 * node]
        return -1

    def _add_pending(self, cpu: int, node: int) -> None:
        w = self.w
        w[4 * node + 3] = cpu
        w[4 * node + 2] = LOCAL_PENDING
        self.clear_ref(node)
        self._add(node, self.local_head(cpu, LOCAL_PENDING))

    def _common_pop_free(self, cpu: int) -> int:
        node = self._local_pop_free(cpu)
        if node < 0:
            self._pop_free_to_local(cpu)
            node = self._local_pop_free(cpu)
        if node >= 0:
            self._add_pending(cpu, node)
            return node
        slot = self.steal_base + cpu
        first = steal = self.w[slot]
        while True:
            node = self._local_pop_free(steal)
            if node < 0:
                node = self._local_pop_pending(steal)
            steal = (steal + 1) % self.nr_cpus
            if node >= 0 or steal == first:
                break
        self.w[slot] = steal
        if node >= 0:
            self._add_pending(cpu, node)
        return node

    def _common_push_free(self, node: int) -> None:
        w = self.w
        if w[4 * node + 2] == LOCAL_PENDING:
            w[4 * node + 2] = LOCAL_FREE
            self.clear_ref(node)
            self._move_list(node, self.local_head(w[4 * node + 3], LOCAL_FREE))
            return
        self._node_move(0, node, FREE)

    # -- per-CPU LRU -----------------------------------------------------------------------
    def _percpu_pop_free(self, cpu: int) -> int:
        self._rotate(cpu)
        free = self.head(cpu, FREE)
        if self._empty(free):
            self._shrink(cpu, PERCPU_FREE_TARGET, free, FREE)
        if self._empty(free):
            return -1
        node = self.w[4 * free + 1]
        self.clear_ref(node)
        self._node_move(cpu, node, INACTIVE)
        return node

    # -- bpf_lru API ---------------------------------------------------------------------
    def pop_free(self, cpu: int) -> int:
        """``bpf_lru_pop_free`` on ``cpu``: a free element index (may evict), or -1."""
        if self.percpu:
            return self._percpu_pop_free(cpu % self.nr_cpus)
        return self._common_pop_free(cpu % self.nr_cpus)

    def push_free(self, node: int) -> None:
        """``bpf_lru_push_free``: element ``node`` left the hash table."""
        if self.percpu:
            self._node_move(self.w[4 * node + 3], node, FREE)
        else:
            self._common_push_free(node)

    def populate(self) -> None:
        """``bpf_lru_populate``: every element starts on a FREE list."""
        w, n = self.w, self.n
        if not self.percpu:
            free = self.head(0, FREE)
            for i in range(n):
                w[4 * i + 2] = FREE
                self.clear_ref(i)
                self._add(i, free)
            per_cpu = n // self.nr_cpus
            self.target_free = min(max(per_cpu // 2, 1), LOCAL_FREE_TARGET)
            return
        per_cpu = n // self.nr_cpus
        i = 0
        for cpu in range(self.nr_cpus):
            free = self.head(cpu, FREE)
            while i < n:
                w[4 * i + 3] = cpu
                w[4 * i + 2] = FREE
                self.clear_ref(i)
                self._add(i, free)
                i += 1
                if per_cpu == 0 or i % per_cpu == 0:
                    break
            if i == n:
                break

    # -- introspection (tests, debugging) --------------------------------------------------
    def walk(self, head: int) -> list[int]:
        """Node indices of the list at ``head``, head to tail."""
        out = []
        node = self.w[4 * head + 1]
        while node != head:
            out.append(node)
            node = self.w[4 * node + 1]
        return out
