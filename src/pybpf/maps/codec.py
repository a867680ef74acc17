"""Key/value codecs: how a :class:`~pybpf.maps.api.Map` turns Python objects into map bytes.

A codec has ``size``, ``encode(obj) -> bytes`` and ``decode(bytes) -> obj``. Built in:
:class:`AutoCodec` (ints for 1/2/4/8-byte fields, bytes otherwise; accepts ints, bytes,
bytearray, memoryview and ctypes objects), :class:`IntCodec`, :class:`BytesCodec`,
:class:`CtypesCodec` (a ctypes type). BTF-typed views plug in through the same
interface: the loader passes a codec built from the map's BTF key/value types.
"""

from __future__ import annotations

import ctypes
from typing import Any, Protocol


class Codec(Protocol):
    size: int

    def encode(self, obj: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


def _raw(obj: Any, size: int) -> bytes | None:
    if isinstance(obj, bytes):
        data = obj
    elif isinstance(obj, (bytearray, memoryview, ctypes.Structure, ctypes.Union, ctypes.Array,
                          ctypes._SimpleCData)):
        data = bytes(obj)
    else:
        return None
    if len(data) != size:
        raise ValueError(f"expected {size} bytes, got {len(data)}")
    return data


class BytesCodec:
    def __init__(self, size: int) -> None:
        self.size = size

    def encode(self, obj: Any) -> bytes:
        if type(obj) is bytes and len(obj) == self.size:
            return obj
        data = _raw(obj, self.size)
        if data is None:
            raise TypeError(f"cannot use {type(obj).__name__} as {self.size} bytes")
        return data

    def decode(self, data: bytes) -> Any:
        return data


class IntCodec:
    def __init__(self, size: int, signed: bool = False) -> None:
        self.size = size
        self.signed = signed

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, int):
            return obj.to_bytes(self.size, "little", signed=self.signed and obj < 0)
        data = _raw(obj, self.size)
        if data is None:
            raise TypeError(f"cannot use {type(obj).__name__} as a {self.size}-byte int")
        return data

    def decode(self, data: bytes) -> Any:
        return int.from_bytes(data, "little", signed=self.signed)


class AutoCodec(IntCodec):
    """Ints for sizes 1, 2, 4 and 8; bytes for anything else."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.as_int = size in (1, 2, 4, 8)
        self.mask = (1 << (8 * size)) - 1

    def encode(self, obj: Any) -> bytes:
        if type(obj) is bytes and len(obj) == self.size:
            return obj
        if isinstance(obj, int):
            if not self.size:
                raise TypeError("this map has no keys")
            return (obj & self.mask).to_bytes(self.size, "little")
        data = _raw(obj, self.size)
        if data is None:
            raise TypeError(f"cannot use {type(obj).__name__} as {self.size} bytes")
        return data

    def decode(self, data: bytes) -> Any:
        return int.from_bytes(data, "little") if self.as_int else data


class CtypesCodec:
    def __init__(self, ctype: Any) -> None:
        self.ctype = ctype
        self.size = ctypes.sizeof(ctype)

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, int) and issubclass(self.ctype, ctypes._SimpleCData):
            return bytes(self.ctype(obj))
        data = _raw(obj, self.size)
        if data is None:
            raise TypeError(f"cannot use {type(obj).__name__} as {self.ctype.__name__}")
        return data

    def decode(self, data: bytes) -> Any:
        return self.ctype.from_buffer_copy(data)


def make_codec(spec: Any, size: int) -> Codec:
    """A codec from ``None`` (auto), a ctypes type, ``int``, ``bytes`` or a codec object."""
    if spec is None:
        return AutoCodec(size)
    if spec is int:
        return IntCodec(size)
    if spec is bytes:
        return BytesCodec(size)
    if isinstance(spec, type) and issubclass(spec, (ctypes._SimpleCData, ctypes.Structure,
                                                    ctypes.Union, ctypes.Array)):
        return CtypesCodec(spec)
    if hasattr(spec, "encode") and hasattr(spec, "decode"):
        return spec
    raise TypeError(f"no codec for {spec!r}")
