"""Kernel-internal call targets of rewritten programs, and the names xlated code shows.

After verification the kernel rewrites some helper calls into calls of kernel functions a
program may not name itself (``do_misc_fixups``): ``bpf_map_lookup_elem`` on a hash map
becomes ``call __htab_map_lookup_elem`` followed by an add of the value's offset in the
element, map helpers become direct calls of the map type's ops, and so on. pybpf's xlated
program does the same, so that ``pybpf prog dump xlated`` reads like ``bpftool prog dump
xlated``; the call targets it introduces get ids from :data:`INTERNAL_BASE` up, far above
``__BPF_FUNC_MAX_ID`` so no user program can name them (the verifier refuses any
``func_id >= __BPF_FUNC_MAX_ID`` before the rewrite).

Ids (``INTERNAL_BASE + n``) and what the implementation returns:

==========  ==========================  ================================================
``+1``      ``__htab_map_lookup_elem``  the element's address: value address minus
                                        ``offsetof(struct htab_elem, key) +
                                        round_up(key_size, 8)`` (the program adds that
                                        back), or 0. pybpf's hash layout differs from
                                        the kernel's, but only the sum is ever used.
``+2..4``   ``bpf_skb_load_helper_{8,    ``LD_ABS``/``LD_IND`` as ``bpf_gen_ld_abs``
            16,32}_no_cache``           rewrites them: ``(skb, offset)`` -> the bytes
                                        in network order, or ``-EFAULT`` (the program
                                        then returns 0).
``+5``      ``__htab_map_lookup_elem``  on a HASH_OF_MAPS (``htab_of_map_gen_lookup``):
                                        the element, moved back as for ``+1``; the
                                        program loads the inner map from its value.
``+0x100``  map types' own operations     ``bpf_map_*_elem`` called directly on the map
 and up     (``htab_map_update_elem``…)     type's function (``do_misc_fixups`` turns a map
                                        helper whose map is known into ``call
                                        map->ops->map_update_elem``): same arguments,
                                        same result as the generic helper, so the
                                        implementation *is* the generic helper's. The
                                        ids follow :data:`MAP_OPS_NAMES`, in order.
==========  ==========================  ================================================

:data:`PROTOS` publishes them into every :class:`~pybpf.kernel.Kernel`'s helper table (so
the interpreter and the JIT's Python bridge find them by id); :func:`xlated_call_name`
names any call immediate of a pybpf xlated program as the kernel's dump would.
"""

from __future__ import annotations

from errno import EFAULT
from typing import Any

from pybpf.helpers.proto import FuncProto, RetType

#: First id of a kernel-internal call target (not a ``BPF_FUNC_*``).
INTERNAL_BASE = 0x10000
HTAB_MAP_LOOKUP_ELEM = INTERNAL_BASE + 1
#: size in bytes -> ``bpf_skb_load_helper_<bits>_no_cache``
SKB_LOAD_HELPER = {1: INTERNAL_BASE + 2, 2: INTERNAL_BASE + 3, 4: INTERNAL_BASE + 4}
#: ``__htab_map_lookup_elem`` as ``htab_of_map_gen_lookup`` calls it: the same kernel
#: function, a pybpf id of its own because the generic helper on a HASH_OF_MAPS returns
#: the inner map, while this returns the element (the program loads the inner map from
#: the element's value slot)
HTAB_OF_MAPS_LOOKUP_ELEM = INTERNAL_BASE + 5
#: ``arch_bpf_timed_may_goto``: the refill of a ``may_goto`` counter (``do_misc_fixups``'
#: timed form). Its calling convention is its own: the stack offset of the counter pair
#: comes in BPF_REG_AX (r11), the new count goes back in AX, R0-R5 are left alone; the
#: tiers call it with ``fp + AX`` and put the result into AX (see :func:`timed_may_goto`).
TIMED_MAY_GOTO = INTERNAL_BASE + 6
#: ``BPF_MAX_TIMED_LOOPS``: the count a refill gives
BPF_MAX_TIMED_LOOPS = 0xFFFF
#: refills before the loop is stopped: the kernel stops after 250 ms of looping; pybpf, to
#: stay deterministic, after as many iterations as the untimed ``BPF_MAX_LOOPS`` (8M)
TIMED_MAY_GOTO_REFILLS = (8 * 1024 * 1024) // BPF_MAX_TIMED_LOOPS

#: ``offsetof(struct htab_elem, key)`` on x86-64 6.18 (BTF: ``struct htab_elem``).
HTAB_ELEM_KEY_OFF = 48
#: ``offsetof(struct htab_elem, lru_node) + offsetof(struct bpf_lru_node, ref)``: the byte
#: an inlined LRU lookup sets (pybpf's element keeps its ref word there, see maps/htab.py)
LRU_REF_OFF = 35

#: internal id -> kernel function name
INTERNAL_NAMES: dict[int, str] = {
    HTAB_MAP_LOOKUP_ELEM: "__htab_map_lookup_elem",
    HTAB_OF_MAPS_LOOKUP_ELEM: "__htab_map_lookup_elem",
    **{fid: f"bpf_skb_load_helper_{8 * size}_no_cache" for size, fid in SKB_LOAD_HELPER.items()},
    TIMED_MAY_GOTO: "arch_bpf_timed_may_goto",
}

#: helper -> the kernel function its proto points at, where that is not ``bpf_<name>``
#: (``bpf_func_proto.func``; what bpftool prints after the call is resolved).
KERNEL_FUNC_NAMES: dict[int, str] = {
    7: "bpf_user_rnd_u32",  # get_prandom_u32
    4: "bpf_probe_read_compat",  # probe_read
    45: "bpf_probe_read_compat_str",  # probe_read_str
}


#: (map type, helper id) -> the map type's own function the kernel calls instead
#: (``struct bpf_map_ops`` of 6.18). Lookups of types with ``map_gen_lookup`` are not here:
#: they are inlined (see :mod:`pybpf.verifier.misc_fixups`).
MAP_OPS_NAMES: dict[tuple[int, int], str] = {
    (1, 2): "htab_map_update_elem", (1, 3): "htab_map_delete_elem",
    (1, 164): "bpf_for_each_hash_elem",
    (2, 1): "array_map_lookup_elem", (2, 2): "array_map_update_elem", (2, 3): "array_map_delete_elem",
    (2, 164): "bpf_for_each_array_elem",
    (5, 1): "htab_percpu_map_lookup_elem", (5, 2): "htab_percpu_map_update_elem",
    (5, 3): "htab_map_delete_elem", (5, 195): "htab_percpu_map_lookup_percpu_elem",
    (5, 164): "bpf_for_each_hash_elem",
    (6, 1): "percpu_array_map_lookup_elem", (6, 2): "array_map_update_elem",
    (6, 3): "array_map_delete_elem", (6, 195): "percpu_array_map_lookup_percpu_elem",
    (6, 164): "bpf_for_each_array_elem",
    (9, 2): "htab_lru_map_update_elem", (9, 3): "htab_lru_map_delete_elem",
    (9, 164): "bpf_for_each_hash_elem",
    (10, 1): "htab_lru_percpu_map_lookup_elem", (10, 2): "htab_lru_percpu_map_update_elem",
    (10, 3): "htab_lru_map_delete_elem", (10, 195): "htab_lru_percpu_map_lookup_percpu_elem",
    (10, 164): "bpf_for_each_hash_elem",
    (11, 1): "trie_lookup_elem", (11, 2): "trie_update_elem", (11, 3): "trie_delete_elem",
    (22, 87): "queue_map_push_elem", (22, 88): "queue_map_pop_elem",
    (22, 89): "queue_map_peek_elem",
    (23, 87): "stack_map_push_elem", (23, 88): "stack_map_pop_elem",
    (23, 89): "stack_map_peek_elem",
    (30, 87): "bloom_map_push_elem", (30, 89): "bloom_map_peek_elem",
}
MAP_OPS_BASE = INTERNAL_BASE + 0x100
_MAP_OPS_IDS: dict[tuple[int, int], int] = {
    key: MAP_OPS_BASE + n for n, key in enumerate(MAP_OPS_NAMES)}
INTERNAL_NAMES.update({_MAP_OPS_IDS[key]: name for key, name in MAP_OPS_NAMES.items()})


def map_op_call_id(map_type: int, func_id: int) -> int | None:
    """The internal id of ``map_type``'s own function for helper ``func_id``, if any."""
    return _MAP_OPS_IDS.get((map_type, func_id))


_SKB_TYPES = (1, 3, 4, 8, 10, 11, 12, 14, 19, 21)  # programs whose ctx is an sk_buff
_TC = (3, 4)
#: (helper, program types) -> the function that type's ``get_func_proto`` gives
#: (``bpf_func_proto.func`` differs by program type for these helpers).
_BY_PROG_TYPE: list[tuple[int, tuple[int, ...], str]] = [
    (84, _TC, "bpf_tc_sk_lookup_tcp"), (85, _TC, "bpf_tc_sk_lookup_udp"),
    (99, _TC, "bpf_tc_skc_lookup_tcp"),
    (84, (6,), "bpf_xdp_sk_lookup_tcp"), (85, (6,), "bpf_xdp_sk_lookup_udp"),
    (99, (6,), "bpf_xdp_skc_lookup_tcp"),
    (84, (18,), "bpf_sock_addr_sk_lookup_tcp"), (85, (18,), "bpf_sock_addr_sk_lookup_udp"),
    (99, (18,), "bpf_sock_addr_skc_lookup_tcp"),
    (25, _SKB_TYPES, "bpf_skb_event_output"), (25, (6,), "bpf_xdp_event_output"),
    (25, (9, 13, 15, 16, 18, 23, 25), "bpf_event_output_data"),
    (25, (5,), "bpf_perf_event_output_tp"), (25, (17, 24), "bpf_perf_event_output_raw_tp"),
    (122, (18,), "bpf_get_netns_cookie_sock_addr"), (122, (9,), "bpf_get_netns_cookie_sock"),
    (122, (13,), "bpf_get_netns_cookie_sock_ops"), (122, (16,), "bpf_get_netns_cookie_sk_msg"),
    (46, (9,), "bpf_get_socket_cookie_sock"), (46, (18,), "bpf_get_socket_cookie_sock_addr"),
    (46, (13,), "bpf_get_socket_cookie_sock_ops"),
    (39, (14,), "sk_skb_pull_data"), (50, (14,), "sk_skb_change_tail"),
    (38, (14,), "sk_skb_change_head"), (43, (14,), "sk_skb_adjust_room"),
    (69, (6,), "bpf_xdp_fib_lookup"), (69, _TC, "bpf_skb_fib_lookup"),
    (26, (22,), "bpf_flow_dissector_load_bytes"), (124, (30,), "bpf_sk_lookup_assign"),
    (27, (7,), "bpf_get_stackid_pe"), (27, (5,), "bpf_get_stackid_tp"),
    (27, (17, 24), "bpf_get_stackid_raw_tp"),
    (67, (7,), "bpf_get_stack_pe"), (67, (5,), "bpf_get_stack_tp"),
    (67, (17, 24), "bpf_get_stack_raw_tp"),
]
PROG_TYPE_FUNC_NAMES: dict[tuple[int, int], str] = {
    (fid, t): name for fid, types, name in _BY_PROG_TYPE for t in types}


def htab_elem_value_off(key_size: int) -> int:
    """Where a hash element's value starts, from the element (``htab_elem_value``)."""
    return HTAB_ELEM_KEY_OFF + ((key_size + 7) & ~7)


def _htab_map_lookup_elem(ctx: Any, r1: int, r2: int, *_: int) -> int:
    from pybpf.helpers.maps import map_lookup_elem
    from pybpf.maps.core import map_from_addr

    value = map_lookup_elem(ctx, r1, r2, 0, 0, 0)
    if not value:
        return 0
    bmap = map_from_addr(r1)
    key_size = bmap.key_size if bmap is not None else 0
    return (value - htab_elem_value_off(key_size)) & 0xFFFFFFFFFFFFFFFF


def _htab_of_maps_lookup_elem(ctx: Any, r1: int, r2: int, *_: int) -> int:
    """The element holding ``key`` in a HASH_OF_MAPS, moved back as
    :func:`_htab_map_lookup_elem`'s result is: its value slot (the inner map's address)
    is at the result plus ``htab_elem_value_off(key_size)``."""
    from pybpf.maps.core import map_from_addr
    from pybpf.maps.htab import HtabOps

    bmap = map_from_addr(r1)
    if bmap is None:
        return 0
    slot = HtabOps.map_lookup_elem(bmap.ops, bmap, r2)  # type: ignore[arg-type]
    if not slot:
        return 0
    return (slot - htab_elem_value_off(bmap.key_size)) & 0xFFFFFFFFFFFFFFFF


def _generic(func_id: int) -> Any:
    """The generic map helper's implementation (looked up at call time, so a helper table
    override of the generic helper is not bypassed by the direct call)."""
    from pybpf.helpers import maps

    name = {1: "map_lookup_elem", 2: "map_update_elem", 3: "map_delete_elem",
            87: "map_push_elem", 88: "map_pop_elem", 89: "map_peek_elem",
            164: "for_each_map_elem", 195: "map_lookup_percpu_elem"}[func_id]
    return getattr(maps, name)


def _map_op_impl(func_id: int) -> Any:
    def impl(ctx: Any, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        return int(_generic(func_id)(ctx, r1, r2, r3, r4, r5))

    impl.__name__ = f"map_op_{func_id}"
    return impl


def _skb_load_helper(size: int) -> Any:
    def impl(ctx: Any, r1: int, r2: int, *_: int) -> int:
        from pybpf.progs.testrun_skb import skb_ld_abs

        value = skb_ld_abs(ctx, r1, r2 & 0xFFFFFFFF, size)
        return (-EFAULT if value is None else int(value)) & 0xFFFFFFFFFFFFFFFF

    impl.__name__ = f"bpf_skb_load_helper_{8 * size}_no_cache"
    return impl


def timed_may_goto(ctx: Any, ptr: int, *_: int) -> int:
    """``bpf_check_timed_may_goto`` on ``struct bpf_timed_may_goto {count; timestamp}`` at
    ``ptr`` (the frame's counter pair): the first refill stamps the pair, each later one
    counts, and after :data:`TIMED_MAY_GOTO_REFILLS` the answer is 0 (the loop ends)."""
    stamp = int.from_bytes(ctx.mem.read(ptr + 8, 8), "little")
    if stamp >= TIMED_MAY_GOTO_REFILLS:
        return 0
    ctx.mem.write(ptr + 8, (stamp + 1).to_bytes(8, "little"))
    return BPF_MAX_TIMED_LOOPS


IMPLS: dict[int, Any] = {
    TIMED_MAY_GOTO: timed_may_goto,
    HTAB_MAP_LOOKUP_ELEM: _htab_map_lookup_elem,
    HTAB_OF_MAPS_LOOKUP_ELEM: _htab_of_maps_lookup_elem,
    **{fid: _skb_load_helper(size) for size, fid in SKB_LOAD_HELPER.items()},
    **{_MAP_OPS_IDS[key]: _map_op_impl(key[1]) for key in MAP_OPS_NAMES},
}

PROTOS = [FuncProto(fid, INTERNAL_NAMES[fid], impl, RetType.RET_INTEGER)
          for fid, impl in IMPLS.items()]


def generic_helper(fid: int, key_size: int = 0) -> tuple[int, int] | None:
    """For a native tier: ``(generic helper id, bias)`` such that internal target ``fid``
    returns ``generic(...) - bias`` when the result is non-zero (``bias`` is the
    element-to-value step of ``__htab_map_lookup_elem`` for ``key_size``, else 0), or
    ``None`` for an id that is not such a wrapper (the load helpers)."""
    if fid == HTAB_MAP_LOOKUP_ELEM:
        return 1, htab_elem_value_off(key_size)
    for key, ident in _MAP_OPS_IDS.items():
        if ident == fid:
            return key[1], 0
    return None


def xlated_call_name(imm: int, prog_type: int = 0) -> str | None:
    """The name ``bpftool prog dump xlated`` shows for a helper call of ``imm`` in a
    program of ``prog_type`` (the kernel function the call was resolved to)."""
    name = INTERNAL_NAMES.get(imm) or PROG_TYPE_FUNC_NAMES.get((imm, prog_type))
    if name is not None:
        return name
    name = KERNEL_FUNC_NAMES.get(imm)
    if name is not None:
        return name
    from pybpf.uapi import BpfFuncId

    try:
        return "bpf_" + BpfFuncId(imm).name.removeprefix("BPF_FUNC_")
    except ValueError:
        return None
