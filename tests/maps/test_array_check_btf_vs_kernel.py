"""``array_map_check_btf``: the BTF key and value an array map may be created with, vs Linux.

An array's key must be a plain 32-bit integer. Only global data — a one-element
``BPF_MAP_TYPE_ARRAY`` whose value type is a DATASEC (libbpf's ``.data``/``.bss``/
``.rodata`` maps) — may omit the key type. The same BTF blob is loaded into the live kernel
and into a pybpf instance and every creation must give the same errno.
"""

from __future__ import annotations

import ctypes
from types import ModuleType

from pybpf.btf.raw import (
    BtfDatasec,
    BtfInt,
    BtfMember,
    BtfStruct,
    BtfTypedef,
    BtfVar,
    BtfVarSecinfo,
    IntEncoding,
)
from pybpf.btf.writer import StringTable, build_blob, encode_types
from pybpf.kernel import Kernel
from pybpf.uapi import BpfCmd, bpf_attr

ARRAY, PERCPU_ARRAY, HASH = 2, 6, 1
#: type ids of :func:`_blob`
U32, U64, BITS16, KEY_STRUCT, VALUE, DATASEC, U32_TYPEDEF, SIGNED32 = 1, 2, 3, 4, 5, 7, 8, 9


def _blob() -> bytes:
    """u32, u64, a 16-bit int, a 4-byte struct, an 8-byte value struct, a VAR and the
    DATASEC holding it (8 bytes), a typedef of u32, a signed 32-bit int."""
    types = [
        BtfInt(U32, "u32", 0, False, 4, IntEncoding.NONE, 0, 32),
        BtfInt(U64, "u64", 0, False, 8, IntEncoding.NONE, 0, 64),
        BtfInt(BITS16, "u16in32", 0, False, 4, IntEncoding.NONE, 0, 16),
        BtfStruct(KEY_STRUCT, "key", 0, False, 4, (BtfMember("k", 0, U32, 0, 0),)),
        BtfStruct(VALUE, "val", 0, False, 8, (BtfMember("v", 0, U64, 0, 0),)),
        BtfVar(6, "counter", 0, False, U64, 1),
        BtfDatasec(DATASEC, ".data", 0, False, 8, (BtfVarSecinfo(6, 0, 8),)),
        BtfTypedef(U32_TYPEDEF, "key_t", 0, False, U32),
        BtfInt(SIGNED32, "int", 0, False, 4, IntEncoding.SIGNED, 0, 32),
    ]
    strings = StringTable()
    return build_blob(encode_types(types, strings), bytes(strings.data))


#: (map type, max_entries, key type id, value type id)
CASES = [
    (ARRAY, 1, U32, VALUE),            # the usual
    (ARRAY, 1, U32_TYPEDEF, VALUE),    # a typedef of u32
    (ARRAY, 1, SIGNED32, VALUE),       # a signed int is fine too
    (ARRAY, 1, KEY_STRUCT, VALUE),     # a struct key: EINVAL
    (ARRAY, 1, BITS16, VALUE),         # a 16-bit int in 4 bytes: EINVAL
    (ARRAY, 1, 0, DATASEC),            # global data
    (ARRAY, 2, 0, DATASEC),            # keyless, but two elements: EINVAL
    (ARRAY, 1, 0, VALUE),              # keyless, value not a DATASEC: EINVAL
    (PERCPU_ARRAY, 1, 0, DATASEC),     # keyless per-CPU array: EINVAL
    (PERCPU_ARRAY, 1, U32, VALUE),
    (PERCPU_ARRAY, 1, KEY_STRUCT, VALUE),
    (HASH, 1, KEY_STRUCT, VALUE),      # hash keys may be anything of the right size
]


def _create_all(world: object, blob: bytes) -> list[int]:
    """The errno (0: created) of every case in ``world`` (``bpf(cmd, attr)``, ``close(fd)``)."""
    bpf, close = world.bpf, world.close  # type: ignore[attr-defined]
    buf = ctypes.create_string_buffer(blob, len(blob))
    a = bpf_attr()
    a.btf, a.btf_size = ctypes.addressof(buf), len(blob)
    btf_fd = bpf(BpfCmd.BPF_BTF_LOAD, a)
    assert btf_fd > 0, btf_fd
    out = []
    for mt, n, key_id, value_id in CASES:
        a = bpf_attr()
        a.map_type, a.key_size, a.value_size, a.max_entries = mt, 4, 8, n
        a.btf_fd, a.btf_key_type_id, a.btf_value_type_id = btf_fd, key_id, value_id
        fd = bpf(BpfCmd.BPF_MAP_CREATE, a)
        out.append(0 if fd >= 0 else -fd)
        if fd >= 0:
            close(fd)
    close(btf_fd)
    return out


def test_array_btf_keys_as_kernel(kernel: ModuleType) -> None:
    from pybpf.loader.load import LiveSyscalls

    assert _create_all(Kernel(), _blob()) == _create_all(LiveSyscalls(), _blob())


def test_array_btf_keys() -> None:
    """pybpf alone: the keyless global-data array is the one exception."""
    got = dict(zip(CASES, _create_all(Kernel(), _blob()), strict=True))
    assert got[(ARRAY, 1, 0, DATASEC)] == 0 and got[(ARRAY, 1, U32, VALUE)] == 0
    assert got[(ARRAY, 2, 0, DATASEC)] == got[(ARRAY, 1, KEY_STRUCT, VALUE)] == 22

