"""Bob Jenkins' lookup3 hash as ``include/linux/jhash.h`` computes it.

Hash maps bucket keys with ``jhash2`` (key length a multiple of 4) or ``jhash`` over the
key bytes, seeded with the map's ``hashrnd`` (0 under ``BPF_F_ZERO_SEED``); bloom
filters hash values the same way with ``seed + i``. Using the kernel's function makes
iteration order and bloom false positives of zero-seeded maps identical to Linux, and
gives the JIT a documented, stable function to inline.
"""

from __future__ import annotations

JHASH_INITVAL = 0xDEADBEEF
M = 0xFFFFFFFF


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & M


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & M; a ^= _rol(c, 4); c = (c + b) & M  # noqa: E702
    b = (b - a) & M; b ^= _rol(a, 6); a = (a + c) & M  # noqa: E702
    c = (c - b) & M; c ^= _rol(b, 8); b = (b + a) & M  # noqa: E702
    a = (a - c) & M; a ^= _rol(c, 16); c = (c + b) & M  # noqa: E702
    b = (b - a) & M; b ^= _rol(a, 19); a = (a + c) & M  # noqa: E702
    c = (c - b) & M; c ^= _rol(b, 4); b = (b + a) & M  # noqa: E702
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b; c = (c - _rol(b, 14)) & M  # noqa: E702
    a ^= c; a = (a - _rol(c, 11)) & M  # noqa: E702
    b ^= a; b = (b - _rol(a, 25)) & M  # noqa: E702
    c ^= b; c = (c - _rol(b, 16)) & M  # noqa: E702
    a ^= c; a = (a - _rol(c, 4)) & M  # noqa: E702
    b ^= a; b = (b - _rol(a, 14)) & M  # noqa: E702
    c ^= b; c = (c - _rol(b, 24)) & M  # noqa: E702
    return c


def jhash(key: bytes, initval: int) -> int:
    """``jhash(key, len(key), initval)``."""
    length = len(key)
    a = b = c = (JHASH_INITVAL + length + initval) & M
    k = 0
    while length > 12:
        a = (a + int.from_bytes(key[k:k + 4], "little")) & M
        b = (b + int.from_bytes(key[k + 4:k + 8], "little")) & M
        c = (c + int.from_bytes(key[k + 8:k + 12], "little")) & M
        a, b, c = _mix(a, b, c)
        length -= 12
        k += 12
    if length == 0:
        return c
    tail = key[k:] + bytes(12 - length)
    a = (a + int.from_bytes(tail[0:4], "little")) & M
    b = (b + int.from_bytes(tail[4:8], "little")) & M
    c = (c + int.from_bytes(tail[8:12], "little")) & M
    return _final(a, b, c)


def jhash2(key: bytes, initval: int) -> int:
    """``jhash2((u32 *)key, len(key) / 4, initval)``; ``len(key)`` is a multiple of 4."""
    n = len(key) // 4
    a = b = c = (JHASH_INITVAL + (n << 2) + initval) & M
    k = 0
    while n > 3:
        a = (a + int.from_bytes(key[k:k + 4], "little")) & M
        b = (b + int.from_bytes(key[k + 4:k + 8], "little")) & M
        c = (c + int.from_bytes(key[k + 8:k + 12], "little")) & M
        a, b, c = _mix(a, b, c)
        n -= 3
        k += 12
    if n == 0:
        return c
    a = (a + int.from_bytes(key[k:k + 4], "little")) & M
    if n > 1:
        b = (b + int.from_bytes(key[k + 4:k + 8], "little")) & M
    if n > 2:
        c = (c + int.from_bytes(key[k + 8:k + 12], "little")) & M
    return _final(a, b, c)


def htab_map_hash(key: bytes, hashrnd: int) -> int:
    """``htab_map_hash``: jhash2 for keys of whole words, jhash otherwise."""
    if len(key) % 4 == 0:
        return jhash2(key, hashrnd)
    return jhash(key, hashrnd)
