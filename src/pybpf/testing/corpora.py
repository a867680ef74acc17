"""Real-world BPF objects for differential runs: the objects libbpf skeletons embed in
Debian's ``libbpf-tools`` and ``xdp-tools`` binaries (fetched with ``apt-get download``)."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

DEBIAN_PACKAGES = ("libbpf-tools", "xdp-tools")
EM_BPF = 247


def extract_bpf_objects(blob: bytes) -> list[bytes]:
    """ELF64 EM_BPF images embedded in a binary (libbpf skeletons embed their object)."""
    out, pos = [], 0
    while (i := blob.find(b"\x7fELF\x02\x01", pos)) >= 0:
        pos = i + 1
        if i == 0 or i + 64 > len(blob) or struct.unpack_from("<H", blob, i + 18)[0] != EM_BPF:
            continue
        shoff, = struct.unpack_from("<Q", blob, i + 0x28)
        shentsize, shnum = struct.unpack_from("<HH", blob, i + 0x3A)
        end = i + shoff + shentsize * shnum
        if end <= len(blob):
            out.append(blob[i:end])
    return out


def debian_bpf_objects(workdir: Path, packages: tuple[str, ...] = DEBIAN_PACKAGES) -> list[Path]:
    """Download ``packages``, unpack them below ``workdir`` and write every embedded BPF
    object as ``<binary>.<n>.bpf.o``; raises ``subprocess.CalledProcessError`` (or
    ``OSError``) when apt/dpkg cannot."""
    subprocess.run(["apt-get", "download", *packages], cwd=workdir, check=True,
                   capture_output=True, timeout=300)
    tree = workdir / "tree"
    for deb in sorted(workdir.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(tree)], check=True, timeout=120)
    out = []
    for exe in sorted((tree / "usr" / "sbin").iterdir()):
        for k, image in enumerate(extract_bpf_objects(exe.read_bytes())):
            path = workdir / f"{exe.name}.{k}.bpf.o"
            path.write_bytes(image)
            out.append(path)
    return out
