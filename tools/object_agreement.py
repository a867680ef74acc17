"""Real-world BPF objects, live kernel vs pybpf: every program of every object loaded on
its own by pybpf's loader (``pybpf.testing.object_logs``) at log level 1; errno, the
statistics line and the first error line must agree.

    python tools/object_agreement.py [DIR]      # default: Debian's libbpf-tools, xdp-tools

Without DIR the objects are extracted from the ``libbpf-tools`` and ``xdp-tools`` Debian
packages (``apt-get download``; their binaries embed the objects as libbpf skeletons).
Programs the live kernel refuses with EPERM and an empty log (fentry/LSM here) are counted
as skipped, objects the loader cannot open (as libbpf could not: meant for static linking,
say) are counted and left out.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pybpf.kernel import Kernel
from pybpf.loader.errors import LoaderError
from pybpf.testing.corpora import debian_bpf_objects
from pybpf.testing.object_logs import ProgLog, program_logs


def _key(pl: ProgLog) -> tuple[int, str, str]:
    lines = [ln for ln in pl.log.strip().splitlines() if ln]
    stats = [ln for ln in lines if ln.startswith("processed ")]
    err = lines[-2] if pl.errno and len(lines) > 1 else ""
    return pl.errno, stats[-1] if stats else "", err


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?", help="a directory of .o files")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per object")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = sorted(Path(args.dir).glob("*.o")) if args.dir else debian_bpf_objects(Path(tmp))
        total = agree = skipped = unopened = 0
        bad: list[str] = []
        t0 = time.time()
        for path in paths:
            try:
                live = program_logs(path, "live", 1)
            except LoaderError as exc:  # libbpf cannot open it either (e.g. for static linking)
                unopened += 1
                if args.verbose:
                    print(f"{path.name}: not opened: {exc}", flush=True)
                continue
            ours = program_logs(path, Kernel(), 1)
            for name, want in live.items():
                if want.errno == 1 and not want.log.strip():
                    skipped += 1
                    continue
                total += 1
                got = ours.get(name)
                if got is not None and _key(got) == _key(want):
                    agree += 1
                else:
                    bad.append(f"{path.name}:{name}: kernel {_key(want)} pybpf "
                               f"{_key(got) if got else None}")
            if args.verbose:
                print(f"{path.name}: {len(live)} programs", flush=True)
        print(f"{len(paths)} objects: {agree}/{total} programs agree (errno, statistics line, "
              f"first error line); {skipped} skipped (kernel EPERM); {unopened} objects the "
              f"loader refuses to open; {time.time() - t0:.0f}s")
        for line in bad:
            print(line)
    return 0 if agree == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
