"""pcap and pcapng files: a reader for both and a pcap writer (``struct`` only).

Formats: libpcap (magic ``a1b2c3d4`` µs / ``a1b23c4d`` ns, either byte order) and pcapng
(Section Header, Interface Description, Enhanced/Simple/obsolete Packet blocks). Only
Ethernet link types (1) carry frames the device hooks understand; others are reported with
their link type so a caller can skip them.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

LINKTYPE_ETHERNET = 1
_PCAP_MAGICS = {0xA1B2C3D4: 1000, 0xA1B23C4D: 1}  # ns per timestamp unit
_PCAPNG_SHB = 0x0A0D0D0A
_BOM = 0x1A2B3C4D


class PcapError(ValueError):
    """A malformed or unsupported capture file."""


@dataclass
class PcapPacket:
    data: bytes
    ts_ns: int = 0
    linktype: int = LINKTYPE_ETHERNET
    orig_len: int = 0


def read_pcap(path: str | os.PathLike[str]) -> Iterator[PcapPacket]:
    """Every packet of a pcap or pcapng file, in file order."""
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4:
            raise PcapError(f"{path}: too short for a capture file")
        f.seek(0)
        if struct.unpack("<I", head)[0] == _PCAPNG_SHB:
            yield from _read_pcapng(f)
        else:
            yield from _read_classic(f)


def _read_classic(f: BinaryIO) -> Iterator[PcapPacket]:
    hdr = f.read(24)
    if len(hdr) < 24:
        raise PcapError("truncated pcap header")
    for endian in ("<", ">"):
        magic = struct.unpack(endian + "I", hdr[:4])[0]
        if magic in _PCAP_MAGICS:
            break
    else:
        raise PcapError(f"not a pcap file (magic {hdr[:4].hex()})")
    unit = _PCAP_MAGICS[magic]
    linktype = struct.unpack(endian + "I", hdr[20:24])[0] & 0x0FFFFFFF
    rec = struct.Struct(endian + "IIII")
    while True:
        rh = f.read(16)
        if not rh:
            return
        if len(rh) < 16:
            raise PcapError("truncated packet record header")
        sec, frac, incl, orig = rec.unpack(rh)
        if incl > 0x40000:
            raise PcapError(f"packet record of {incl} bytes: corrupt file")
        data = f.read(incl)
        if len(data) < incl:
            raise PcapError("truncated packet data")
        yield PcapPacket(data, sec * 1_000_000_000 + frac * unit, linktype, orig)


def _read_pcapng(f: BinaryIO) -> Iterator[PcapPacket]:
    endian = "<"
    links: list[tuple[int, int]] = []  # (linktype, ns per tick)
    while True:
        bh = f.read(8)
        if not bh:
            return
        if len(bh) < 8:
            raise PcapError("truncated pcapng block header")
        btype = struct.unpack("<I", bh[:4])[0]
        if btype == _PCAPNG_SHB:
            bom = f.read(4)
            if len(bom) < 4:
                raise PcapError("truncated pcapng section header")
            endian = "<" if struct.unpack("<I", bom)[0] == _BOM else ">"
            if struct.unpack(endian + "I", bom)[0] != _BOM:
                raise PcapError("bad pcapng byte-order magic")
            blen = struct.unpack(endian + "I", bh[4:])[0]
            if blen < 28 or blen % 4:
                raise PcapError(f"bad pcapng section header length {blen}")
            body = bom + f.read(blen - 16)  # the magic was part of the body
            links = []
        else:
            btype, blen = struct.unpack(endian + "II", bh)
            if blen < 12 or blen % 4:
                raise PcapError(f"bad pcapng block length {blen}")
            body = f.read(blen - 12)
        if len(body) < blen - 12 or len(f.read(4)) < 4:
            raise PcapError("truncated pcapng block")
        if btype == 1:  # Interface Description Block
            linktype = struct.unpack(endian + "H", body[:2])[0]
            links.append((linktype, _if_tsresol(body[8:], endian)))
        elif btype in (6, 2):  # Enhanced / obsolete Packet Block
            if btype == 6:
                ifid, hi, lo, cap, orig = struct.unpack(endian + "IIIII", body[:20])
            else:
                ifid, _drops, hi, lo, cap, orig = struct.unpack(endian + "HHIIII", body[:20])
            if ifid >= len(links):
                raise PcapError(f"packet on undeclared interface {ifid}")
            linktype, tick = links[ifid]
            yield PcapPacket(body[20:20 + cap], ((hi << 32) | lo) * tick, linktype, orig)
        elif btype == 3:  # Simple Packet Block
            orig = struct.unpack(endian + "I", body[:4])[0]
            linktype = links[0][0] if links else LINKTYPE_ETHERNET
            yield PcapPacket(body[4:4 + orig], 0, linktype, orig)


def _if_tsresol(opts: bytes, endian: str) -> int:
    """ns per timestamp tick from an IDB's ``if_tsresol`` option (default µs)."""
    i = 0
    while i + 4 <= len(opts):
        code, length = struct.unpack(endian + "HH", opts[i:i + 4])
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = opts[i + 4]
            if v & 0x80:
                return max(1, int(1e9 / (2 ** (v & 0x7F))))
            return max(1, 10 ** max(0, 9 - v))
        i += 4 + (length + 3) // 4 * 4
    return 1000


class PcapWriter:
    """Write a classic little-endian pcap (µs timestamps, Ethernet)."""

    def __init__(self, path: str | os.PathLike[str], linktype: int = LINKTYPE_ETHERNET,
                 snaplen: int = 262144) -> None:
        self._f = open(path, "wb")  # noqa: SIM115 - closed by close()/__exit__
        self._f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))

    def write(self, data: bytes, ts_ns: int = 0) -> None:
        sec, usec = divmod(ts_ns // 1000, 1_000_000)
        self._f.write(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def count_packets(path: str | os.PathLike[str]) -> int:
    """Packets in a capture (a pass over the file; for the progress bar's total)."""
    return sum(1 for _ in read_pcap(path))
