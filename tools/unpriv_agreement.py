"""Unprivileged verifier agreement: the map-free socket-filter cases of the shared corpus
loaded by a task without capabilities, in the live kernel and in pybpf.

The live side needs root: it sets ``kernel.unprivileged_bpf_disabled`` to 0 for the
duration (restoring the old value in any case), forks a child that drops every capability
with ``capset(2)`` and loads every case there. pybpf verifies the same programs with
``bpf_capable = perfmon_capable = net_admin = False``.

    .venv/bin/python tools/unpriv_agreement.py [--list] [--logs]

``--logs`` also compares whole level-2 logs, loaded through
:func:`pybpf.testing.unpriv_kernel.load_unprivileged`.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pybpf.isa.insn import decode
from pybpf.testing import kernel as oracle
from pybpf.verifier import corpus
from pybpf.verifier.api import VerifierInput, bpf_check

SYSCTL = "/proc/sys/kernel/unprivileged_bpf_disabled"
SOCKET_FILTER = 1
_SYS_CAPSET = 126  # x86-64


def cases(limit: int | None = None) -> list[dict[str, Any]]:
    out = [c for c in corpus.load() if not c["fixups"] and int(c["prog_type"]) == SOCKET_FILTER
           and int(c["insn_cnt"]) < 4000]
    return out[:limit] if limit else out


def _drop_caps() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    hdr = ctypes.create_string_buffer(struct.pack("<Ii", 0x20080522, 0), 8)
    data = ctypes.create_string_buffer(bytes(24), 24)
    if libc.syscall(_SYS_CAPSET, hdr, data) != 0:
        os._exit(99)


def _last_error(log: str) -> str:
    lines = log.strip().splitlines()
    return lines[-2] if len(lines) > 1 else (lines[-1] if lines else "")


def live_unprivileged(selected: list[dict[str, Any]]) -> dict[str, tuple[bool, str, int]]:
    """Verdict and first error line of every case, loaded without capabilities."""
    with open(SYSCTL) as f:
        old = f.read().strip()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        with open(SYSCTL, "w") as f:
            f.write("0")
        pid = os.fork()
        if pid == 0:
            try:
                _drop_caps()
                out = {}
                for c in selected:
                    r = oracle.prog_load(SOCKET_FILTER, bytes.fromhex(c["insns"]), log_level=1,
                                         log_size=1 << 20, prog_flags=int(c["prog_flags"]))
                    if r.fd >= 0:
                        os.close(r.fd)
                    out[str(c["index"])] = (r.fd >= 0, _last_error(r.log), r.errno)
                with open(path, "w") as f:
                    json.dump(out, f)
            finally:
                os._exit(0)
        _pid, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise OSError("the capability-less child failed (capset refused?)")
        with open(path) as f:
            return {k: (bool(v[0]), str(v[1]), int(v[2])) for k, v in json.load(f).items()}
    finally:
        with open(SYSCTL, "w") as f:
            f.write(old)
        os.unlink(path)


def pybpf_unprivileged(c: dict[str, Any]) -> tuple[bool, str, int]:
    r = bpf_check(VerifierInput(insns=decode(bytes.fromhex(c["insns"])), prog_type=SOCKET_FILTER,
                                prog_flags=int(c["prog_flags"]), log_level=1, bpf_capable=False,
                                perfmon_capable=False, net_admin=False,
                                map_by_fd=lambda fd: corpus.labeller_map_by_fd({}, fd)))
    return r.errno == 0, _last_error(r.log), r.errno


def compare(selected: list[dict[str, Any]]) -> tuple[int, int, int, int, list[str]]:
    """(verdicts equal, messages equal, errnos equal, both rejected, disagreements)."""
    want = live_unprivileged(selected)
    verdict = msg = errs = rejected = 0
    diffs = []
    for c in selected:
        k_ok, k_err, k_errno = want[str(c["index"])]
        p_ok, p_err, p_errno = pybpf_unprivileged(c)
        if k_ok != p_ok:
            diffs.append(f"VERDICT {c['index']} [{c['descr']}] kernel={k_ok} {k_err!r} pybpf={p_ok} {p_err!r}")
            continue
        verdict += 1
        if not k_ok:
            rejected += 1
            if k_errno == p_errno:
                errs += 1
            else:
                diffs.append(f"ERRNO {c['index']} [{c['descr']}] kernel={k_errno} pybpf={p_errno} {k_err!r}")
            if k_err == p_err:
                msg += 1
            else:
                diffs.append(f"MESSAGE {c['index']} [{c['descr']}] kernel={k_err!r} pybpf={p_err!r}")
    return verdict, msg, errs, rejected, diffs


_TIME = re.compile(r"^verification time \d+ usec\n", re.M)


def compare_logs(selected: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Whole level-2 logs (``P`` precision marks, state lines, the statistics) of every
    case: (equal logs, the first differing line of each other case)."""
    from pybpf.testing.unpriv_kernel import UnprivJob, load_unprivileged

    jobs = [UnprivJob(SOCKET_FILTER, bytes.fromhex(c["insns"]), int(c["prog_flags"]), 2)
            for c in selected]
    equal, diffs = 0, []
    for c, live in zip(selected, load_unprivileged(jobs), strict=True):
        r = bpf_check(VerifierInput(insns=decode(bytes.fromhex(c["insns"])), prog_type=SOCKET_FILTER,
                                    prog_flags=int(c["prog_flags"]), log_level=2, bpf_capable=False,
                                    perfmon_capable=False, net_admin=False,
                                    map_by_fd=lambda fd: corpus.labeller_map_by_fd({}, fd)))
        want, got = _TIME.sub("", live.log).splitlines(), _TIME.sub("", r.log).splitlines()
        if want == got:
            equal += 1
            continue
        at = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
        diffs.append(f"LOG {c['index']} [{c['descr']}] line {at + 1}: kernel="
                     f"{want[at] if at < len(want) else None!r} pybpf={got[at] if at < len(got) else None!r}")
    return equal, diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print every disagreement")
    ap.add_argument("--logs", action="store_true", help="also compare whole level-2 logs")
    args = ap.parse_args()
    ok, why = oracle.available()
    if not ok or os.geteuid() != 0:
        print(f"needs the live bpf() as root: {why or 'not root'}")
        return 2
    selected = cases()
    verdict, msg, errs, rejected, diffs = compare(selected)
    print(f"unprivileged: verdict {verdict}/{len(selected)}, message {msg}/{rejected}, "
          f"errno {errs}/{rejected}")
    if args.logs:
        equal, log_diffs = compare_logs(selected)
        print(f"unprivileged level-2 logs: {equal}/{len(selected)}")
        diffs += log_diffs
    if args.list:
        print("\n".join(diffs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
