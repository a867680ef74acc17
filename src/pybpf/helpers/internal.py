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
==========  ==========================  ================================================

:data:`PROTOS` publishes them into every :class:`~pybpf.kernel.Kernel`'s helper table (so
the interpreter and the JIT's Python bridge find them by id); :func:`xlated_call_name`
names any call immediate of a pybpf xlated program as the kernel's dump would.
"""

from __future__ import annotations

from typing import Any

from pybpf.helpers.proto import FuncProto, RetType

#: First id of a kernel-internal call target (not a ``BPF_FUNC_*``).
INTERNAL_BASE = 0x10000
HTAB_MAP_LOOKUP_ELEM = INTERNAL_BASE + 1

#: ``offsetof(struct htab_elem, key)`` on x86-64 6.18 (BTF: ``struct htab_elem``).
HTAB_ELEM_KEY_OFF = 48

#: internal id -> kernel function name
INTERNAL_NAMES: dict[int, str] = {
    HTAB_MAP_LOOKUP_ELEM: "__htab_map_lookup_elem",
}

#: helper -> the kernel function its proto points at, where that is not ``bpf_<name>``
#: (``bpf_func_proto.func``; what bpftool prints after the call is resolved).
KERNEL_FUNC_NAMES: dict[int, str] = {
    7: "bpf_user_rnd_u32",  # get_prandom_u32
    4: "bpf_probe_read_compat",  # probe_read
    45: "bpf_probe_read_compat_str",  # probe_read_str
}


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


IMPLS = {
    HTAB_MAP_LOOKUP_ELEM: _htab_map_lookup_elem,
}

PROTOS = [
    FuncProto(HTAB_MAP_LOOKUP_ELEM, "__htab_map_lookup_elem", _htab_map_lookup_elem,
              RetType.RET_INTEGER),
]


def xlated_call_name(imm: int) -> str | None:
    """The name ``bpftool prog dump xlated`` shows for a helper call of ``imm``."""
    name = INTERNAL_NAMES.get(imm)
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
