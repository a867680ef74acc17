"""Building test packets without scapy, and turning scapy packets into bytes.

The builders produce Ethernet frames with correct IPv4 header and L4 checksums, which is
what the kernel's ``BPF_PROG_TEST_RUN`` and pybpf's devices both accept as ``data_in``.
"""

from __future__ import annotations

import struct
from typing import Any

ETH_P_IP, ETH_P_IPV6, ETH_P_ARP = 0x0800, 0x86DD, 0x0806
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58
_DST_MAC = bytes.fromhex("020000000001")
_SRC_MAC = bytes.fromhex("020000000002")


def to_bytes(pkt: Any) -> bytes:
    """``bytes``/``bytearray``/``memoryview`` as is; a scapy packet through ``bytes()``."""
    if isinstance(pkt, (bytes, bytearray, memoryview)):
        return bytes(pkt)
    build = getattr(pkt, "build", None)
    if callable(build):  # scapy (optional dependency)
        return bytes(pkt)
    raise TypeError(f"cannot send {type(pkt).__name__} as a packet (bytes or scapy packet)")


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_addr(text: str) -> bytes:
    return bytes(int(p) for p in text.split("."))


def ipv6_addr(text: str) -> bytes:
    import ipaddress

    return ipaddress.IPv6Address(text).packed


def eth(proto: int, payload: bytes, dst: bytes = _DST_MAC, src: bytes = _SRC_MAC) -> bytes:
    return dst + src + struct.pack("!H", proto) + payload


def _l4(proto: int, sport: int, dport: int, payload: bytes, pseudo: bytes) -> bytes:
    if proto == IPPROTO_TCP:
        hdr = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
        seg = hdr + payload
        csum = checksum(pseudo + struct.pack("!xBH", proto, len(seg)) + seg)
        return seg[:16] + struct.pack("!H", csum) + seg[18:]
    if proto == IPPROTO_UDP:
        seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        csum = checksum(pseudo + struct.pack("!xBH", proto, len(seg)) + seg) or 0xFFFF
        return seg[:6] + struct.pack("!H", csum) + seg[8:]
    if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        msg = struct.pack("!BBHHH", 8 if proto == IPPROTO_ICMP else 128, 0, 0, sport, dport)
        msg += payload
        extra = pseudo + struct.pack("!xBH", proto, len(msg)) if proto == IPPROTO_ICMPV6 else b""
        csum = checksum(extra + msg)
        return msg[:2] + struct.pack("!H", csum) + msg[4:]
    return payload


def ipv4(src: str, dst: str, proto: int, sport: int = 1234, dport: int = 80,
         payload: bytes = b"", ttl: int = 64) -> bytes:
    """An Ethernet + IPv4 frame with a TCP/UDP/ICMP (echo) or raw payload."""
    s, d = ipv4_addr(src), ipv4_addr(dst)
    # the pseudo header's protocol/length are appended by _l4
    l4 = _l4(proto, sport, dport, payload, s + d)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, ttl, proto, 0, s, d)
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return eth(ETH_P_IP, hdr + l4)


def ipv6(src: str, dst: str, proto: int, sport: int = 1234, dport: int = 80,
         payload: bytes = b"", hop_limit: int = 64) -> bytes:
    s, d = ipv6_addr(src), ipv6_addr(dst)
    l4 = _l4(proto, sport, dport, payload, s + d)
    hdr = struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, hop_limit, s, d)
    return eth(ETH_P_IPV6, hdr + l4)


def arp_request(sender: str = "10.0.0.2", target: str = "10.0.0.1") -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, 1, _SRC_MAC, ipv4_addr(sender),
                       b"\0" * 6, ipv4_addr(target))
    return eth(ETH_P_ARP, body, dst=b"\xff" * 6)
