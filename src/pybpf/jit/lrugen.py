"""Native LRU_HASH / LRU_PERCPU_HASH updates and deletes (``htab_lru_map_update_elem``).

Which keys an LRU map evicts is observable, so native code must leave the LRU lists of
:mod:`pybpf.maps.bpf_lru` exactly as the Python path does. The split follows the kernel's
own fast/slow paths:

- ``bpf_lru_pop_free``, common LRU, when the CPU's local free list has a node: taken
  natively (unlink it, mark it LOCAL_PENDING on this CPU, clear its ref bit, add it at
  the head of the CPU's pending list) — the case of every update until the local list
  runs dry;
- everything else of ``bpf_lru_pop_free`` (flushing the pending list, rotating, shrinking
  with evictions from the hash table, stealing from other CPUs; every pop of a per-CPU
  LRU) calls back into :meth:`pybpf.maps.bpf_lru.BpfLru.pop_free` through one ctypes
  callback. The map's native mutex is held; the callback takes no lock (its caller
  holds the map's), evictions it makes go through the table's Python code, which keeps
  ``count`` in the control block, and the native caller bumps ``gen`` afterwards so the
  Python side re-reads the table;
- ``bpf_lru_push_free`` (an element leaves the table): natively — back to its CPU's
  local free list when still pending, else moved to the FREE list of its LRU list with
  the ACTIVE/INACTIVE counts and the inactive-rotation cursor kept as ``__bpf_lru_node_move``
  keeps them.

The table surgery around them (find, link at the head, unlink, ``count``, ``gen``) is
:class:`pybpf.jit.mapgen._Htab`'s.
"""

from __future__ import annotations

import ctypes
import errno
from typing import Any

import llvmlite.ir as ir

from pybpf.jit.translate import I32, I64

M64 = (1 << 64) - 1
# node types (pybpf.maps.bpf_lru)
ACTIVE, INACTIVE, FREE, LOCAL_FREE, LOCAL_PENDING = range(5)
NR_LIST_COUNT = 2
BPF_NOEXIST, BPF_EXIST = 1, 2
HTAB_FREE = 0


# --- the slow path: Python's bpf_lru_pop_free ----------------------------------------------
POP_SLOW_TYPE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint64)


def _pop_slow(map_addr: int, cpu: int) -> int:
    """``bpf_lru_pop_free`` in Python for the map at ``map_addr``: element index or -1."""
    try:
        from pybpf.maps.core import map_from_addr

        bmap: Any = map_from_addr(map_addr)
        if bmap is None or bmap.lru_lists is None:
            return -1
        return int(bmap.lru_lists.pop_free(int(cpu)))
    except BaseException:  # an exception cannot cross native frames: no element
        return -1


POP_SLOW = POP_SLOW_TYPE(_pop_slow)
POP_SLOW_ADDR: int = ctypes.cast(POP_SLOW, ctypes.c_void_p).value or 0


def lru_layout(n_elems: int, nr_cpus: int, percpu_lru: bool) -> tuple[int, int]:
    """(u32 index of the list state, number of list heads) of the native LRU area."""
    heads = 3 * nr_cpus if percpu_lru else 3 + 2 * nr_cpus
    return 4 * (n_elems + heads), heads


class LruOps:
    """IR for one LRU map's lists; ``h`` is the map's :class:`~pybpf.jit.mapgen._Htab`."""

    def __init__(self, h: Any) -> None:
        self.h = h
        s = h.s
        self.s = s
        self.n = s.n_elems
        self.state, _ = lru_layout(s.n_elems, s.nr_cpus, s.lru_percpu)
        self._pop: ir.Function | None = None
        self._push: ir.Function | None = None

    # -- words ---------------------------------------------------------------------------
    def _addr(self, b: ir.IRBuilder, word: ir.Value) -> ir.Value:
        from pybpf.jit.mapgen import _c

        return b.add(_c(self.s.lru_area), b.shl(word, _c(2)))

    def _rd(self, b: ir.IRBuilder, word: ir.Value) -> ir.Value:
        from pybpf.jit.mapgen import _load

        return b.zext(_load(b, self._addr(b, word), I32), I64)

    def _wr(self, b: ir.IRBuilder, word: ir.Value, val: ir.Value) -> None:
        from pybpf.jit.mapgen import _store

        _store(b, self._addr(b, word), b.trunc(val, I32) if val.type == I64 else val)

    def _node(self, b: ir.IRBuilder, i: ir.Value, field: int) -> ir.Value:
        from pybpf.jit.mapgen import _c

        return b.add(b.shl(i, _c(2)), _c(field))

    def _clear_ref(self, b: ir.IRBuilder, i: ir.Value) -> None:
        from pybpf.jit.mapgen import HTAB_ELEM_REF, _c, _store

        _store(b, b.add(self.h.elem(b, i), _c(HTAB_ELEM_REF)), _c(0, I32))

    def _del(self, b: ir.IRBuilder, i: ir.Value) -> None:
        p = self._rd(b, self._node(b, i, 0))
        nx = self._rd(b, self._node(b, i, 1))
        self._wr(b, self._node(b, p, 1), nx)
        self._wr(b, self._node(b, nx, 0), p)

    def _add(self, b: ir.IRBuilder, i: ir.Value, head: ir.Value) -> None:
        first = self._rd(b, self._node(b, head, 1))
        self._wr(b, self._node(b, i, 0), head)
        self._wr(b, self._node(b, i, 1), first)
        self._wr(b, self._node(b, first, 0), i)
        self._wr(b, self._node(b, head, 1), i)

    # -- bpf_lru_pop_free --------------------------------------------------------------------
    def pop(self) -> ir.Function:
        """``i64 pop(i64 cpu)``: a free element index (may evict), or -1."""
        if self._pop is not None:
            return self._pop
        from pybpf.jit.mapgen import _c, _call_addr

        s = self.s
        fn, b = self.h._fn("lru_pop", ir.FunctionType(I64, [I64]))
        (cpu_in,) = fn.args
        cpu = b.urem(cpu_in, _c(s.nr_cpus))
        slow = fn.append_basic_block("slow")
        if not s.lru_percpu:
            fast = fn.append_basic_block("fast")
            local_free = b.add(_c(self.n + 3), b.shl(cpu, _c(1)))
            node = self._rd(b, self._node(b, local_free, 1))
            b.cbranch(b.icmp_unsigned("==", node, local_free), slow, fast)
            b.position_at_end(fast)
            self._del(b, node)
            self._wr(b, self._node(b, node, 3), cpu)
            self._wr(b, self._node(b, node, 2), _c(LOCAL_PENDING))
            self._clear_ref(b, node)
            self._add(b, node, b.add(local_free, _c(1)))
            b.ret(node)
        else:
            b.branch(slow)
        b.position_at_end(slow)
        got = _call_addr(b, POP_SLOW_ADDR, ir.FunctionType(I64, [I64, I64]),
                         [_c(s.addr), cpu])
        b.ret(got)
        self._pop = fn
        return fn

    # -- bpf_lru_push_free -------------------------------------------------------------------
    def push(self) -> ir.Function:
        """``void push(i64 node)``: element ``node`` left the hash table."""
        if self._push is not None:
            return self._push
        from pybpf.jit.mapgen import _c

        s = self.s
        fn, b = self.h._fn("lru_push", ir.FunctionType(ir.VoidType(), [I64]))
        (node,) = fn.args
        typ = self._rd(b, self._node(b, node, 2))
        owner = self._rd(b, self._node(b, node, 3))
        move = fn.append_basic_block("node_move")
        if not s.lru_percpu:
            pending = fn.append_basic_block("pending")
            b.cbranch(b.icmp_unsigned("==", typ, _c(LOCAL_PENDING)), pending, move)
            b.position_at_end(pending)
            self._wr(b, self._node(b, node, 2), _c(LOCAL_FREE))
            self._clear_ref(b, node)
            self._del(b, node)
            self._add(b, node, b.add(_c(self.n + 3), b.shl(owner, _c(1))))
            b.ret_void()
            lst: ir.Value = _c(0)
        else:
            b.branch(move)
            lst = owner
        # __bpf_lru_node_move(l, node, BPF_LRU_LIST_T_FREE)
        b.position_at_end(move)
        base = b.add(_c(self.state), b.mul(lst, _c(3)))
        counted = fn.append_basic_block("counted")
        moved = fn.append_basic_block("moved")
        b.cbranch(b.icmp_unsigned("<", typ, _c(NR_LIST_COUNT)), counted, moved)
        b.position_at_end(counted)
        cnt = b.add(base, typ)
        self._wr(b, cnt, b.sub(self._rd(b, cnt), _c(1)))
        b.branch(moved)
        b.position_at_end(moved)
        self._wr(b, self._node(b, node, 2), _c(FREE))
        self._clear_ref(b, node)
        nir = b.add(base, _c(2))
        prev = self._rd(b, self._node(b, node, 0))
        is_nir = b.icmp_unsigned("==", self._rd(b, nir), node)
        self._wr(b, nir, b.select(is_nir, prev, self._rd(b, nir)))
        self._del(b, node)
        head = b.add(_c(self.n + FREE), b.mul(lst, _c(3)) if s.lru_percpu else _c(0))
        self._add(b, node, head)
        b.ret_void()
        self._push = fn
        return fn


def _free_elem(h: Any, b: ir.IRBuilder, idx: ir.Value) -> None:
    """``htab`` push_free for an LRU map: state FREE, then back to the LRU."""
    from pybpf.jit.mapgen import _c, _store

    _store(b, b.add(h.elem(b, idx), _c(8)), _c(HTAB_FREE, I32))
    b.call(h.lru_ops().push(), [idx])


def _count_add(h: Any, b: ir.IRBuilder, delta: int) -> None:
    from pybpf.jit.mapgen import CTL_COUNT, _c, _load, _store

    count = h._ctl(CTL_COUNT)
    _store(b, count, b.add(_load(b, count, I32), _c(delta, I32)))


def lru_update(h: Any) -> ir.Function:
    """``i64 update(i64 key, i64 value, i64 flags, i64 cpu)`` of an LRU map: 0 or -errno.

    LRU_HASH (``htab_lru_map_update_elem``): pop a free element first (which may evict,
    even the key being updated), then check the flags; the new element, linked at the
    head, replaces an existing one, which gets the ref bit on the new element and
    returns to the LRU. LRU_PERCPU_HASH (``__htab_lru_percpu_map_update_elem``): an
    existing key's CPU slot is written in place and its ref bit set; a new key takes the
    popped element with the other CPUs' slots zeroed; ``BPF_EXIST`` pops nothing.
    """
    from pybpf.jit.mapgen import HTAB_ELEM_REF, _c, _memcpy, _memset0, _store, jhash_ir

    s = h.s
    lru = h.lru_ops()
    fn, b = h._fn("update", ir.FunctionType(I64, [I64, I64, I64, I64]))
    key, value, flags, cpu = fn.args
    new_v = b.alloca(I64, name="new")
    err_v = b.alloca(I64, name="err")
    bad = fn.append_basic_block("einval")
    go = fn.append_basic_block("go")
    b.cbranch(b.icmp_unsigned(">", flags, _c(BPF_EXIST)), bad, go)
    b.position_at_end(bad)
    b.ret(_c(-errno.EINVAL))
    b.position_at_end(go)
    h_val = jhash_ir(b, key, s.key_size, s.hashrnd)
    h._lock(b)
    b.store(_c(-1), new_v)
    b.store(_c(0), err_v)
    popped = fn.append_basic_block("popped")
    if s.percpu:
        do_pop = fn.append_basic_block("do_pop")
        b.cbranch(b.icmp_unsigned("==", flags, _c(BPF_EXIST)), popped, do_pop)
        b.position_at_end(do_pop)
    new = b.call(lru.pop(), [cpu])
    b.store(new, new_v)
    nomem = fn.append_basic_block("enomem")
    b.cbranch(b.icmp_signed("<", new, _c(0)), nomem, popped)
    b.position_at_end(nomem)
    h._bump_gen(b)  # the failed pop may still have evicted elements
    h._ret_unlocked(b, -errno.ENOMEM)
    b.position_at_end(popped)
    old = b.call(h.find(), [key, h_val])
    exists = b.icmp_unsigned("!=", old, _c(0))
    eexist = b.and_(exists, b.icmp_unsigned("==", flags, _c(BPF_NOEXIST)))
    enoent = b.and_(b.not_(exists), b.icmp_unsigned("==", flags, _c(BPF_EXIST)))
    err = b.select(eexist, _c(errno.EEXIST), b.select(enoent, _c(errno.ENOENT), _c(0)))
    b.store(err, err_v)
    ok = fn.append_basic_block("ok")
    finish = fn.append_basic_block("finish")
    b.cbranch(b.icmp_unsigned("==", err, _c(0)), ok, finish)
    b.position_at_end(ok)
    have = fn.append_basic_block("have")
    fresh = fn.append_basic_block("fresh")
    b.cbranch(exists, have, fresh)
    if s.percpu:
        b.position_at_end(have)
        old_idx = b.sub(old, _c(1))
        _store(b, b.add(h.elem(b, old_idx), _c(HTAB_ELEM_REF)), _c(1, I32))
        _memcpy(h.tr, b, h.value_addr(b, old_idx, cpu), value, s.value_size)
        b.branch(finish)
        b.position_at_end(fresh)
        nidx = b.load(new_v)
        block = s.nr_cpus * s.vstride
        _memset0(h.tr, b, b.add(_c(s.pcpu), b.mul(nidx, _c(block))), block)
        _memcpy(h.tr, b, h.value_addr(b, nidx, cpu), value, s.value_size)
        h._link_new(b, nidx, h_val, key, None)
        _count_add(h, b, 1)
        b.store(_c(-1), new_v)
        b.branch(finish)
    else:
        b.position_at_end(fresh)
        link = fn.append_basic_block("link")
        b.branch(link)
        b.position_at_end(have)
        b.branch(link)
        b.position_at_end(link)
        nidx = b.load(new_v)
        h._link_new(b, nidx, h_val, key, value)
        _count_add(h, b, 1)
        b.store(_c(-1), new_v)
        replace = fn.append_basic_block("replace")
        b.cbranch(exists, replace, finish)
        b.position_at_end(replace)
        _store(b, b.add(h.elem(b, nidx), _c(HTAB_ELEM_REF)), _c(1, I32))
        h._unlink(fn, b, old, h.bucket_addr(b, h_val))
        _count_add(h, b, -1)
        _free_elem(h, b, b.sub(old, _c(1)))
        b.branch(finish)
    b.position_at_end(finish)
    left = b.load(new_v)
    give_back = fn.append_basic_block("give_back")
    done = fn.append_basic_block("done")
    b.cbranch(b.icmp_signed(">=", left, _c(0)), give_back, done)
    b.position_at_end(give_back)
    _free_elem(h, b, left)
    b.branch(done)
    b.position_at_end(done)
    h._bump_gen(b)
    result = b.sub(_c(0), b.load(err_v))
    h._unlock(b)
    b.ret(result)
    return fn


def lru_delete(h: Any) -> ir.Function:
    """``i64 delete(i64 key)`` of an LRU map (``htab_lru_map_delete_elem``): 0 or -ENOENT."""
    from pybpf.jit.mapgen import _c, jhash_ir

    s = h.s
    fn, b = h._fn("delete", ir.FunctionType(I64, [I64]))
    (key,) = fn.args
    h_val = jhash_ir(b, key, s.key_size, s.hashrnd)
    h._lock(b)
    old = b.call(h.find(), [key, h_val])
    missing = fn.append_basic_block("missing")
    found = fn.append_basic_block("found")
    b.cbranch(b.icmp_unsigned("==", old, _c(0)), missing, found)
    b.position_at_end(missing)
    h._ret_unlocked(b, -errno.ENOENT)
    b.position_at_end(found)
    h._unlink(fn, b, old, h.bucket_addr(b, h_val))
    _count_add(h, b, -1)
    _free_elem(h, b, b.sub(old, _c(1)))
    h._bump_gen(b)
    h._ret_unlocked(b, 0)
    return fn


__all__ = ["POP_SLOW_ADDR", "LruOps", "lru_delete", "lru_layout", "lru_update"]
