"""Which fields of ``struct bpf_sock`` / ``bpf_tcp_sock`` / ``bpf_xdp_sock`` a program may read
(``bpf_sock_is_valid_access`` and friends in ``net/core/filter.c``)."""

from __future__ import annotations

from pybpf.verifier.regs import RegType

BPF_SOCK_SIZE = 80
BPF_TCP_SOCK_END = 112


def _narrow_ok(size: int, default: int) -> bool:
    return size <= default and (size & (size - 1)) == 0


def sock_is_valid(off: int, size: int) -> bool:
    if off < 0 or off >= BPF_SOCK_SIZE or off % size:
        return False
    if off in (72, 4, 8, 12, 44, 76) or 24 <= off < 28 or 28 <= off < 44 or 52 <= off < 56 \
            or 56 <= off < 72:
        return _narrow_ok(size, 4)
    if 48 <= off < 52:
        if off >= 50:
            return False
        return _narrow_ok(size, 4 if size == 4 else 2)
    return size == 4


def sock_common_is_valid(off: int, size: int) -> bool:
    if 8 <= off < 24:  # type .. priority
        return False
    return sock_is_valid(off, size)


def tcp_sock_is_valid(off: int, size: int) -> bool:
    if off < 0 or off >= BPF_TCP_SOCK_END or off % size:
        return False
    if off in (80, 88):
        return size == 8
    return size == 4


def xdp_sock_is_valid(off: int, size: int) -> bool:
    return off == 0 and size == 4


def is_valid(reg_type: int, off: int, size: int, write: bool) -> bool:
    if reg_type == RegType.PTR_TO_SOCK_COMMON:
        return sock_common_is_valid(off, size)
    if reg_type == RegType.PTR_TO_SOCKET:
        return sock_is_valid(off, size)
    if reg_type == RegType.PTR_TO_TCP_SOCK:
        return tcp_sock_is_valid(off, size)
    if reg_type == RegType.PTR_TO_XDP_SOCK:
        return xdp_sock_is_valid(off, size)
    return False
