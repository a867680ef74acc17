"""Constant map keys: 6.18's NULL-check elision for array lookups.

Since Linux 6.14 the verifier reads the key a helper passes to an ``ARRAY`` or
``PERCPU_ARRAY`` map when it is a constant on the stack (``get_constant_map_key``). A
``bpf_map_lookup_elem`` whose constant key is below ``max_entries`` cannot fail, so its
result is ``map_value``, not ``map_value_or_null`` (``can_elide_value_nullness``); the
program's NULL check after it is then always taken, and the dead-code passes remove the
other branch from the xlated program — what the live kernel's dump shows.

A key counts as constant when its bytes are all ``STACK_ZERO`` (key 0) or are exactly one
spilled scalar of the key's size whose value is known; the key's stack slot is then made
precise, so that no state with another key prunes this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pybpf.verifier.regs import Reg, RegType
from pybpf.verifier.state import STACK_SPILL, STACK_ZERO

if TYPE_CHECKING:
    from pybpf.verifier.core import Verifier

BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY = 2, 6
BPF_FUNC_map_lookup_elem = 1
S64_SIGN = 1 << 63


def can_elide_value_nullness(map_type: int) -> bool:
    """``can_elide_value_nullness``: lookups of these types fail only out of bounds."""
    return map_type in (BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY)


def get_constant_map_key(v: Verifier, key: Reg, key_size: int) -> int | None:
    """``get_constant_map_key``: the key's value (as a signed 64-bit number), or ``None``
    when it is not a constant the verifier knows."""
    if not v.bpf_capable or key.type != RegType.PTR_TO_STACK or key.var_off.mask:
        return None
    stack_off = key.off + key.var_off.value
    if stack_off >= S64_SIGN:
        stack_off -= 1 << 64
    slot = -stack_off - 1
    if slot < 0:
        return None
    spi, off = divmod(slot, 8)
    frame = v.state.frames[key.frameno]
    if spi >= len(frame.stack):
        return None
    st = frame.stack[spi]
    types = st.types
    zero = 0
    i = off
    while i >= 0 and types[i] == STACK_ZERO:
        zero += 1
        i -= 1
    if zero >= key_size:
        return 0
    spilled = st.spilled
    if not st.is_spill() or spilled is None or spilled.type != RegType.SCALAR_VALUE:
        return None
    spill = 0
    i = off
    while i >= 0 and types[i] == STACK_SPILL:
        spill += 1
        i -= 1
    if spill != key_size or spilled.var_off.mask:
        return None
    v.mark_chain_precision_stack(key.frameno, spi)  # relied on: no pruning on another key
    value = spilled.var_off.value
    return value - (1 << 64) if value & S64_SIGN else value


def note_map_key(v: Verifier, meta: dict[str, Any], key: Reg) -> None:
    """The ``ARG_PTR_TO_MAP_KEY`` part of ``check_func_arg``: remember a constant key."""
    m = meta["map_ptr"]
    meta["const_map_key"] = -1
    if m is not None and can_elide_value_nullness(int(getattr(m, "map_type", -1))):
        value = get_constant_map_key(v, key, int(m.key_size))
        if value is not None:
            meta["const_map_key"] = value


def lookup_cannot_fail(meta: dict[str, Any]) -> bool:
    """The map_value a ``bpf_map_lookup_elem`` returns is never NULL."""
    m = meta["map_ptr"]
    key = meta.get("const_map_key", -1)
    return (meta["func_id"] == BPF_FUNC_map_lookup_elem and m is not None
            and can_elide_value_nullness(int(getattr(m, "map_type", -1)))
            and 0 <= key < int(m.max_entries))
