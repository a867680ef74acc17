"""Build the kernel's BPF selftest programs into a directory of objects, for
``tools/object_agreement.py`` (every program loaded in the live kernel and in pybpf).

    python tools/build_selftests.py OUT [--source /usr/src/linux-source-6.12.tar.xz]
    python tools/object_agreement.py OUT

The programs (``tools/testing/selftests/bpf/progs/*.c``) come from a kernel source tarball
(Debian's ``linux-source-*`` package), the headers they include from the same tarball plus
the installed libbpf's ``bpf_helper_defs.h``, and ``vmlinux.h`` from the running kernel's
BTF (``bpftool btf dump``). They need a clang that emits ``btf_type_tag`` (``clang-19``).
Programs that do not build here (generated headers, newer libbpf features) are skipped and
counted. Nothing of the selftests enters the repository: they are a local, differential
corpus, GPL-licensed, built on demand.
"""

from __future__ import annotations

import argparse
import glob
import shutil
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SELFTESTS = "tools/testing/selftests/bpf"
CFLAGS = ["-g", "-Wall", "-D__TARGET_ARCH_x86", "-mlittle-endian", "-std=gnu11",
          "-fno-strict-aliasing", "-Wno-compare-distinct-pointer-types", "-O2", "--target=bpf",
          "-mcpu=v3", "-DENABLE_ATOMICS_TESTS"]


def _extract(tarball: Path, dest: Path) -> Path:
    """The selftests' programs and headers, libbpf's headers and the tools' uapi headers."""
    wanted = (f"/{SELFTESTS}/", "/tools/lib/bpf/", "/tools/include/")
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers()
                   if any(w in m.name for w in wanted) and (m.name.endswith((".c", ".h")) or m.isdir())
                   and (f"/{SELFTESTS}/" not in m.name or "/progs/" in m.name or m.name.endswith(".h"))]
        tar.extractall(dest, members=members, filter="data")
    roots = sorted(dest.glob("*/" + SELFTESTS))
    if not roots:
        raise SystemExit(f"{tarball}: no {SELFTESTS} inside")
    return roots[0].parents[3]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="directory for the .o files")
    ap.add_argument("--source", help="kernel source tarball (default: /usr/src/linux-source-*)")
    ap.add_argument("--clang", default="clang-19")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    args = ap.parse_args()
    source = args.source or next(iter(sorted(glob.glob("/usr/src/linux-source-*.tar.*"))), None)
    if source is None or shutil.which(args.clang) is None or shutil.which("bpftool") is None:
        print("needs a kernel source tarball, clang 19 and bpftool")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tree = _extract(Path(source), work)
        inc = work / "include"
        (inc / "bpf").mkdir(parents=True)
        for h in (tree / "tools/lib/bpf").glob("*.h"):
            shutil.copy(h, inc / "bpf")
        shutil.copy("/usr/include/bpf/bpf_helper_defs.h", inc / "bpf")
        with open(inc / "vmlinux.h", "w") as f:
            subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"],
                           stdout=f, check=True)
        st = tree / SELFTESTS
        flags = [*CFLAGS, f"-I{inc}", f"-I{st}", f"-I{st}/progs", f"-I{tree}/tools/include/uapi"]

        def build(src: Path) -> bool:
            res = subprocess.run([args.clang, *flags, "-c", str(src), "-o", str(out / (src.stem + ".o"))],
                                 capture_output=True, check=False)
            return res.returncode == 0

        sources = sorted((st / "progs").glob("*.c"))
        with ThreadPoolExecutor(args.jobs) as pool:
            built = sum(pool.map(build, sources))
    print(f"{built}/{len(sources)} selftest programs built into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
